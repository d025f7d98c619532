#include "service.hpp"

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <set>
#include <unistd.h>

#include "approval.hpp"
#include "isim_adaptor.h"
#include "log.hpp"
#include "manager_adaptor.h"
#include "mid_adaptor.h"
#include "te/errors.hpp"
#include "tpm/policy.hpp"
#include "usim_adaptor.h"

namespace tresim::daemon {
namespace {

using Blob = std::vector<std::uint8_t>;

constexpr std::size_t kMaxProfile = 64 * 1024;

Blob to_blob(ByteView v) {
    return Blob(v.begin(), v.end());
}

ByteView text_view(const std::string& s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

[[noreturn]] void invalid(const std::string& argument, const std::string& reason) {
    throw te::TeError(te::ErrorCode::InvalidArgument, argument + ": " + reason);
}

usim::Rand rand_of(const Blob& rand) {
    if (rand.size() != 16) {
        invalid("rand", "must be 16 bytes");
    }
    usim::Rand r{};
    std::copy(rand.begin(), rand.end(), r.begin());
    return r;
}

// The profile from a descriptor, straight into wiped memory; at most 64 KiB,
// and a writer that stalls for 10 s is given up on.
SecretBytes read_profile(int fd) {
    SecretBytes buf(kMaxProfile + 1);
    std::size_t used = 0;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        const int ready = poll(&p, 1, 10000);
        if (ready == 0) {
            invalid("fd", "no data for 10 s");
        }
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            invalid("fd", std::string("cannot be read (") + std::strerror(errno) + ")");
        }
        const ssize_t n = read(fd, buf.data() + used, buf.size() - used);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            invalid("fd", std::string("cannot be read (") + std::strerror(errno) + ")");
        }
        if (n == 0) {
            break;
        }
        used += static_cast<std::size_t>(n);
        if (used > kMaxProfile) {
            invalid("profile", "is larger than 64 KiB");
        }
    }
    buf.resize(used);
    return buf;
}

} // namespace

std::string mid_path(std::int64_t index) {
    return std::string(kRootPath) + "/mid/" + std::to_string(index);
}

// ---------------------------------------------------------------------------
// /org/tresim1

class ManagerObject final
    : public sdbus::AdaptorInterfaces<org::tresim1::Manager_adaptor, sdbus::ObjectManager_adaptor,
                                      sdbus::Properties_adaptor> {
public:
    ManagerObject(sdbus::IConnection& connection, Service& service)
        : AdaptorInterfaces(connection, kRootPath), s_(service) {
        const te::TeInfo info = s_.te().info();
        manufacturer_ = info.caps.manufacturer;
        firmware_ = info.caps.firmware_text;
        mode_ = te::to_string(info.milenage_mode);
        for (const auto& bank : info.caps.pcr_banks) {
            if (!bank.pcrs.empty()) {
                banks_.push_back(bank.name);
            }
        }
        selection_ = info.pcr_selection;
        epoch_ = info.epoch;
        anchor_ = info.audit.note;
        registerAdaptor();
    }
    ~ManagerObject() { unregisterAdaptor(); }

    void refresh() {
        const te::TeInfo info = s_.te().info();
        std::vector<std::string> changed;
        if (info.epoch != epoch_) {
            epoch_ = info.epoch;
            changed.emplace_back("Epoch");
        }
        if (info.audit.note != anchor_) {
            anchor_ = info.audit.note;
            changed.emplace_back("AuditAnchor");
        }
        if (!changed.empty()) {
            emitPropertiesChangedSignal(org::tresim1::Manager_adaptor::INTERFACE_NAME, changed);
        }
    }

private:
    const sdbus::Message* message() { return getObject().getCurrentlyProcessedMessage(); }

    sdbus::ObjectPath import(ByteView profile, const std::string& approval_json) {
        const ParsedApproval a = parse_approval(approval_json, s_.selection(), true);
        const std::int64_t index = s_.te().import_profile(profile, a.authority, a.approval);
        log(LOG_INFO, "imported a MID", {index, std::nullopt});
        return s_.add_mid(index);
    }

    sdbus::ObjectPath ImportMid(const Blob& profile, const std::string& approval_json) override {
        return s_.call("ImportMid", Action::Manage, std::nullopt, message(), [&] {
            if (profile.size() > kMaxProfile) {
                invalid("profile", "is larger than 64 KiB");
            }
            return import(profile, approval_json);
        });
    }
    sdbus::ObjectPath ImportMidFromFd(const sdbus::UnixFd& fd,
                                      const std::string& approval_json) override {
        return s_.call("ImportMidFromFd", Action::Manage, std::nullopt, message(), [&] {
            const SecretBytes profile = read_profile(fd.get());
            return import(profile.view(), approval_json);
        });
    }
    void AddApproval(const std::string& approval_json) override {
        s_.call("AddApproval", Action::Manage, std::nullopt, message(), [&] {
            const ParsedApproval a = parse_approval(approval_json, s_.selection(), false);
            s_.te().add_approval(*a.approval);
        });
    }
    std::map<uint32_t, Blob> GetPlatformState() override {
        return s_.call("GetPlatformState", Action::Manage, std::nullopt, message(), [&] {
            std::map<uint32_t, Blob> out;
            for (const auto& [index, value] : s_.te().current_pcrs().values) {
                out[index] = value;
            }
            return out;
        });
    }
    std::tuple<bool, int64_t, std::string> AuditVerify() override {
        return s_.call("AuditVerify", Action::Manage, std::nullopt, message(), [&] {
            const te::AuditVerification v = s_.te().verify_audit();
            return std::make_tuple(v.ok, static_cast<int64_t>(v.count), v.message);
        });
    }
    std::string AuditExport() override {
        return s_.call("AuditExport", Action::Manage, std::nullopt, message(),
                       [&] { return s_.te().export_audit().dump(); });
    }
    sdbus::ObjectPath Provision(const std::string& server, const std::string& activation_code,
                                const std::string& confirmation_code) override {
        return s_.call("Provision", Action::Provision, std::nullopt, message(), [&] {
            return s_.provisioner().provision(server, activation_code, confirmation_code);
        });
    }
    sdbus::ObjectPath Sync() override {
        return s_.call("Sync", Action::Provision, std::nullopt, message(),
                       [&] { return s_.provisioner().sync(); });
    }

    std::string Identity() override { return s_.identity(); }
    std::string TpmManufacturer() override { return manufacturer_; }
    std::string TpmFirmware() override { return firmware_; }
    std::string ComputationMode() override { return mode_; }
    std::vector<std::string> PcrBanks() override { return banks_; }
    std::string PcrSelection() override { return selection_; }
    uint32_t Slots() override { return s_.config().slots; }
    uint64_t Epoch() override { return epoch_; }
    std::string AuditAnchor() override { return anchor_; }

    Service& s_;
    std::string manufacturer_;
    std::string firmware_;
    std::string mode_;
    std::vector<std::string> banks_;
    std::string selection_;
    std::uint64_t epoch_ = 0;
    std::string anchor_;
};

// ---------------------------------------------------------------------------
// /org/tresim1/mid/<index>

using AkaReply = std::tuple<std::string, Blob, Blob, Blob, Blob>;

// org.tresim1.Mid and the application interfaces `Apps` (Usim, Isim or both):
// the objects below implement the applications' methods with the helpers here.
template <typename... Apps>
class MidObjectBase
    : public sdbus::AdaptorInterfaces<org::tresim1::Mid_adaptor, Apps..., sdbus::Properties_adaptor,
                                      sdbus::ManagedObject_adaptor>,
      public MidObject {
    using Base = sdbus::AdaptorInterfaces<org::tresim1::Mid_adaptor, Apps...,
                                          sdbus::Properties_adaptor, sdbus::ManagedObject_adaptor>;

public:
    MidObjectBase(sdbus::IConnection& connection, Service& service, const MidView& view)
        : Base(connection, mid_path(view.record.index)), s_(service), v_(view) {}

    std::int64_t index() const override { return v_.record.index; }

    void update(const MidView& view) override {
        std::vector<std::string> changed;
        const te::MidRecord& a = v_.record;
        const te::MidRecord& b = view.record;
        if (a.label != b.label) {
            changed.emplace_back("Label");
        }
        if (a.operator_name != b.operator_name) {
            changed.emplace_back("Operator");
        }
        if (a.state != b.state) {
            changed.emplace_back("State");
        }
        if (a.slot != b.slot) {
            changed.emplace_back("Slot");
        }
        if (v_.pin_verified != view.pin_verified) {
            changed.emplace_back("PinVerified");
        }
        if (a.pin_retries != b.pin_retries) {
            changed.emplace_back("PinRetries");
        }
        if (a.puk_retries != b.puk_retries) {
            changed.emplace_back("PukRetries");
        }
        v_ = view;
        if (!changed.empty()) {
            this->emitPropertiesChangedSignal(org::tresim1::Mid_adaptor::INTERFACE_NAME, changed);
        }
    }
    void announce_added() override { this->emitInterfacesAddedSignal(); }
    void announce_removed() override { this->emitInterfacesRemovedSignal(); }
    void mark_deleted() override { deleted_ = true; }

protected:
    const sdbus::Message* message() { return this->getObject().getCurrentlyProcessedMessage(); }

    template <typename F> auto run(const char* method, Action action, F&& f) -> decltype(f()) {
        return s_.call(method, action, index(), message(), [&]() -> decltype(f()) {
            if (deleted_) {
                throw te::TeError(te::ErrorCode::UnknownMid,
                                  "MID " + std::to_string(index()) + " was deleted");
            }
            return f();
        });
    }

    // org.tresim1.Mid
    void Activate(const uint32_t& slot) override {
        run("Activate", Action::Manage, [&] {
            if (slot >= s_.config().slots) {
                invalid("slot", "must be less than " + std::to_string(s_.config().slots));
            }
            s_.te().activate(index(), slot);
        });
    }
    void Deactivate() override {
        run("Deactivate", Action::Manage, [&] { s_.te().deactivate(index()); });
    }
    void Delete() override {
        run("Delete", Action::Manage, [&] {
            s_.te().remove(index());
            log(LOG_INFO, "deleted a MID", {index(), std::nullopt});
            s_.remove_mid(index());
        });
    }
    void ConfirmActivation() override {
        run("ConfirmActivation", Action::Provision, [&] {
            s_.te().confirm_activation(index());
            s_.provisioner().switches_changed();
        });
    }
    void VerifyPin(const std::string& pin) override {
        run("VerifyPin", Action::Manage, [&] { s_.te().verify_pin(index(), text_view(pin)); });
    }
    void ChangePin(const std::string& old_pin, const std::string& new_pin) override {
        run("ChangePin", Action::Manage,
            [&] { s_.te().change_pin(index(), text_view(old_pin), text_view(new_pin)); });
    }
    void UnblockPin(const std::string& puk, const std::string& new_pin) override {
        run("UnblockPin", Action::Manage,
            [&] { s_.te().unblock_pin(index(), text_view(puk), text_view(new_pin)); });
    }

    int64_t Index() override { return v_.record.index; }
    std::string Iccid() override { return v_.record.iccid; }
    std::string Imsi() override { return v_.record.imsi; }
    std::string Label() override { return v_.record.label; }
    std::string Operator() override { return v_.record.operator_name; }
    // An ISIM-only MID has no algorithm or computation of its own: empty.
    std::string Algorithm() override {
        return v_.record.borrows_functions() ? "" : te::to_string(v_.record.algorithm);
    }
    std::string ComputationMode() override {
        return v_.record.borrows_functions() ? "" : te::to_string(v_.record.mode);
    }
    std::vector<std::string> Applications() override {
        if (v_.record.borrows_functions()) {
            return {"isim"};
        }
        if (v_.record.isim) {
            return {"usim", "isim"};
        }
        return {"usim"};
    }
    std::string FunctionsFrom() override { return v_.record.functions_from; }
    std::string State() override { return te::to_string(v_.record.state); }
    int32_t Slot() override { return v_.record.slot ? static_cast<int32_t>(*v_.record.slot) : -1; }
    bool PinRequired() override { return v_.record.has_pin; }
    bool PinVerified() override { return v_.pin_verified; }
    uint32_t PinRetries() override { return v_.record.pin_retries; }
    uint32_t PukRetries() override { return v_.record.puk_retries; }

    // Usim.Authenticate (`ims` false) and Isim.Authenticate (`ims` true).
    AkaReply aka(const Blob& rand, const Blob& autn, bool ims) {
        return run("Authenticate", Action::Authenticate, [&] {
            const usim::Rand r_and = rand_of(rand);
            const usim::AkaResult r = ims ? s_.te().isim_authenticate(index(), r_and, autn)
                                          : s_.te().authenticate(index(), r_and, autn);
            if (const auto* ok = std::get_if<usim::AkaSuccess>(&r)) {
                return std::make_tuple(std::string("success"),
                                       to_blob(ByteView(ok->res.data(), ok->res.size())),
                                       to_blob(ok->ck.view()), to_blob(ok->ik.view()), Blob{});
            }
            if (const auto* sync = std::get_if<usim::AkaSyncFailure>(&r)) {
                return std::make_tuple(std::string("sync-failure"), Blob{}, Blob{}, Blob{},
                                       to_blob(ByteView(sync->auts.data(), sync->auts.size())));
            }
            return std::make_tuple(std::string("mac-failure"), Blob{}, Blob{}, Blob{}, Blob{});
        });
    }
    std::tuple<Blob, Blob> gsm(const Blob& rand) {
        return run("GsmAuthenticate", Action::Authenticate, [&] {
            const usim::GsmContext g = s_.te().gsm_authenticate(index(), rand_of(rand));
            return std::make_tuple(Blob(g.sres.begin(), g.sres.end()), to_blob(g.kc.view()));
        });
    }
    std::tuple<std::string, Blob> suci() {
        return run("GetSuci", Action::Authenticate, [&] {
            const usim::Suci suci = s_.te().suci(index());
            return std::make_tuple(suci.text, suci.scheme_output);
        });
    }

    Service& s_;
    MidView v_;
    bool deleted_ = false;
};

// A MID with a USIM only.
class UsimMidObject final : public MidObjectBase<org::tresim1::Usim_adaptor> {
public:
    UsimMidObject(sdbus::IConnection& connection, Service& service, const MidView& view)
        : MidObjectBase(connection, service, view) {
        registerAdaptor();
    }
    ~UsimMidObject() override { unregisterAdaptor(); }

private:
    AkaReply Authenticate(const Blob& rand, const Blob& autn) override {
        return aka(rand, autn, false);
    }
    std::tuple<Blob, Blob> GsmAuthenticate(const Blob& rand) override { return gsm(rand); }
    std::tuple<std::string, Blob> GetSuci() override { return suci(); }
};

// A MID with a USIM and IMS identities.
class IsimMidObject final
    : public MidObjectBase<org::tresim1::Usim_adaptor, org::tresim1::Isim_adaptor> {
public:
    IsimMidObject(sdbus::IConnection& connection, Service& service, const MidView& view)
        : MidObjectBase(connection, service, view) {
        registerAdaptor();
    }
    ~IsimMidObject() override { unregisterAdaptor(); }

private:
    // One override serves Usim.Authenticate and Isim.Authenticate (the same
    // C++ signature): the message's interface tells which was called.
    AkaReply Authenticate(const Blob& rand, const Blob& autn) override {
        const sdbus::Message* m = message();
        return aka(rand, autn,
                   m != nullptr &&
                       m->getInterfaceName() == org::tresim1::Isim_adaptor::INTERFACE_NAME);
    }
    std::tuple<Blob, Blob> GsmAuthenticate(const Blob& rand) override { return gsm(rand); }
    std::tuple<std::string, Blob> GetSuci() override { return suci(); }
    std::string Impi() override { return v_.record.isim->impi; }
    std::vector<std::string> Impus() override { return v_.record.isim->impu; }
    std::string Domain() override { return v_.record.isim->domain; }
};

// An ISIM-only MID (FunctionsFrom): Mid and Isim, no Usim. Its IMS AKA runs
// on another MID's USIM function, whose properties it can change (a platform
// state mismatch suspends that MID), so every MID is refreshed after it.
class IsimOnlyMidObject final : public MidObjectBase<org::tresim1::Isim_adaptor> {
public:
    IsimOnlyMidObject(sdbus::IConnection& connection, Service& service, const MidView& view)
        : MidObjectBase(connection, service, view) {
        registerAdaptor();
    }
    ~IsimOnlyMidObject() override { unregisterAdaptor(); }

private:
    AkaReply Authenticate(const Blob& rand, const Blob& autn) override {
        struct RefreshAll {
            Service& s;
            ~RefreshAll() { s.refresh(); }
        } refresh_all{s_};
        return aka(rand, autn, true);
    }
    std::string Impi() override { return v_.record.isim->impi; }
    std::vector<std::string> Impus() override { return v_.record.isim->impu; }
    std::string Domain() override { return v_.record.isim->domain; }
};

// ---------------------------------------------------------------------------

Service::Service(sdbus::IConnection& connection, te::TrustedEnvironment& te, const Config& config,
                 std::string identity, TePolicy policy)
    : connection_(connection), te_(te), config_(config), authorizer_(config, &connection),
      identity_(std::move(identity)), selection_(tpm::parse_pcr_selection(config.pcrs)) {
    manager_ = std::make_unique<ManagerObject>(connection_, *this);
    for (const te::MidRecord& record : te_.list()) {
        MidView view{record, te_.pin_verified(record.index)};
        mids_[record.index] = make_mid(view);
    }
    ProvisionerOptions options;
    options.client.event_log = config.event_log;
    options.client.platform_class = config.platform_class;
    options.client.timeout = config.provision_timeout;
    options.retry_min = config.retry_min;
    options.retry_max = config.retry_max;
    provisioner_ = std::make_unique<Provisioner>(connection_, te_, std::move(policy), options,
                                                 [this] { sync_objects(); });
}

Service::~Service() = default;

std::unique_ptr<MidObject> Service::make_mid(const MidView& view) {
    if (view.record.borrows_functions()) {
        return std::make_unique<IsimOnlyMidObject>(connection_, *this, view);
    }
    if (view.record.isim) {
        return std::make_unique<IsimMidObject>(connection_, *this, view);
    }
    return std::make_unique<UsimMidObject>(connection_, *this, view);
}

sdbus::ObjectPath Service::add_mid(std::int64_t index) {
    const te::MidRecord record = te_.get(index);
    auto object = make_mid(MidView{record, te_.pin_verified(index)});
    object->announce_added();
    mids_[index] = std::move(object);
    return mid_path(index);
}

void Service::remove_mid(std::int64_t index) {
    const auto it = mids_.find(index);
    if (it == mids_.end()) {
        return;
    }
    it->second->announce_removed();
    it->second->mark_deleted();
    // The object may be the one whose call is running: freed after it returns.
    graveyard_.push_back(std::move(it->second));
    mids_.erase(it);
}

void Service::reap() {
    graveyard_.clear();
}

void Service::sync_objects() noexcept {
    try {
        std::set<std::int64_t> present;
        for (const te::MidRecord& record : te_.list()) {
            present.insert(record.index);
            if (!mids_.contains(record.index)) {
                add_mid(record.index);
            }
        }
        std::vector<std::int64_t> gone;
        for (const auto& [index, object] : mids_) {
            if (!present.contains(index)) {
                gone.push_back(index);
            }
        }
        for (const std::int64_t index : gone) {
            remove_mid(index);
        }
    } catch (const std::exception& e) {
        log(LOG_WARNING, std::string("cannot update the MID objects: ") + e.what());
    }
    refresh();
}

void Service::refresh(std::optional<std::int64_t> only) noexcept {
    try {
        manager_->refresh();
        for (auto& [index, object] : mids_) {
            if (!only || *only == index) {
                object->update(MidView{te_.get(index), te_.pin_verified(index)});
            }
        }
    } catch (const std::exception& e) {
        log(LOG_WARNING, std::string("cannot refresh the properties: ") + e.what());
    } catch (...) {
        log(LOG_WARNING, "cannot refresh the properties");
    }
}

} // namespace tresim::daemon
