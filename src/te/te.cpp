#include "te.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "approval_json.hpp"
#include "pin.hpp"
#include "tpm/error.hpp"
#include "tpm/hash_alg.hpp"
#include "tpm/keys.hpp"

namespace tresim::te {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kRoleKey = "key";
constexpr const char* kRoleOpc = "opc";
constexpr const char* kRoleOpcWrap = "opc-wrap";
constexpr const char* kRolePinGate = "pin-gate";
constexpr const char* kRolePukGate = "puk-gate";

SecretBytes random_secret(std::size_t n) {
    SecretBytes s(n);
    if (RAND_priv_bytes(s.data(), static_cast<int>(n)) != 1) {
        throw std::runtime_error("OpenSSL's random generator failed");
    }
    return s;
}

// The TE's machine secret: the auth value of its NV indexes and HMAC key. A
// file only tresimd's user can read; created at first start.
SecretBytes load_or_create_secret(const std::string& dir, bool may_create) {
    const std::string path = dir + "/te.secret";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        SecretBytes s(32);
        const ssize_t n = ::read(fd, s.data(), s.size());
        ::close(fd);
        if (n != 32) {
            throw TeError(ErrorCode::StateCorrupt, path + " is not 32 bytes");
        }
        return s;
    }
    if (errno != ENOENT || !may_create) {
        throw TeError(ErrorCode::StateCorrupt, "cannot read " + path + ": " + std::strerror(errno));
    }
    SecretBytes s(32);
    if (RAND_priv_bytes(s.data(), 32) != 1) {
        throw std::runtime_error("OpenSSL's random generator failed");
    }
    const std::string tmp = path + ".tmp";
    const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0 || ::write(out, s.data(), 32) != 32 || ::fsync(out) != 0) {
        if (out >= 0) {
            ::close(out);
        }
        throw TeError(ErrorCode::StateCorrupt, "cannot write " + tmp + ": " + std::strerror(errno));
    }
    ::close(out);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        throw TeError(ErrorCode::StateCorrupt, "cannot create " + path);
    }
    return s;
}

Bytes authority_name(const TPM2B_PUBLIC& authority) {
    return tpm::object_name(authority.publicArea);
}

std::string mid_label(const MidRecord& m) {
    return m.iccid;
}

// Runs a computation that may use the kept session and key object. A
// TpmFailure after reusing them may come from stale handles (the TPM was
// reset under a running TE, or a resource manager dropped the contexts): the
// computation then runs once more from scratch, which is safe because nothing
// is committed before it succeeded.
template <class F> auto with_warm(WarmState& warm, F&& f) -> decltype(f()) {
    warm.reused = false;
    try {
        return f();
    } catch (const TeError& e) {
        if (e.code() != ErrorCode::TpmFailure || !warm.reused) {
            throw;
        }
    }
    warm.release();
    return f();
}

// Usim.Authenticate, GsmAuthenticate and GetSuci need a USIM function of the
// MID's own: an ISIM-only MID has none.
void require_own_usim(const MidRecord& m) {
    if (m.borrows_functions()) {
        throw TeError(ErrorCode::InvalidArgument,
                      "index: MID " + m.iccid +
                          " has no USIM function of its own (it is an ISIM that uses MID " +
                          m.functions_from + "'s)");
    }
}

[[noreturn]] void bad_approval(const std::string& what) {
    throw TeError(ErrorCode::InvalidArgument, "approval: " + what);
}

// Checks an approval in software and with the TPM (TPM2_VerifySignature)
// without changing anything: it must be for exactly the TE's PCR selection,
// with digest-sized values, a policyRef a TPM nonce can hold, a policy digest
// that is the policy of its values, and a signature by its authority.
TPMT_TK_VERIFIED verify_approval(tpm::Context& ctx, const tpm::PcrSelection& selection,
                                 const MidApproval& approval) {
    const std::string wanted_text = tpm::format_pcr_selection(selection);
    if (approval.pcrs.bank != selection.bank) {
        bad_approval("pcrs: not the bank of the TE's PCR selection " + wanted_text);
    }
    std::vector<unsigned> wanted = selection.pcrs;
    std::sort(wanted.begin(), wanted.end());
    std::vector<unsigned> given;
    for (const auto& [pcr, value] : approval.pcrs.values) {
        given.push_back(pcr);
        if (value.size() != tpm::digest_size(approval.pcrs.bank)) {
            bad_approval("pcrs: the value of PCR " + std::to_string(pcr) + " is not " +
                         std::to_string(tpm::digest_size(approval.pcrs.bank)) + " bytes");
        }
    }
    if (given != wanted) {
        bad_approval("pcrs: must be exactly the PCRs of " + wanted_text);
    }
    if (approval.policy_ref.size() > tpm::kDigestSize) {
        bad_approval("policy_ref: is longer than 32 bytes");
    }
    if (approved_policy_for(approval.pcrs, approval.auth_value) != approval.approved_policy) {
        bad_approval("its policy digest is not the policy of its PCR values");
    }
    try {
        return tpm::verify_policy_signature(ctx, approval.authority, approval.approved_policy,
                                            approval.policy_ref, approval.signature);
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::PolicyDenied,
                      std::string("approval: the signature does not verify: ") + e.what());
    } catch (const InvalidArgument& e) {
        bad_approval(e.what());
    }
}

// A PIN or PUK argument, named as in the D-Bus interface (old_pin, new_pin...).
void check_pin_argument(ByteView value, bool puk, const char* name) {
    try {
        check_pin_format(value, puk);
    } catch (const TeError&) {
        throw TeError(ErrorCode::InvalidArgument,
                      std::string(name) + (puk ? ": must be 8 digits" : ": must be 4 to 8 digits"));
    }
}

} // namespace

TrustedEnvironment::TrustedEnvironment(TeConfig config) : config_(std::move(config)) {
    if (config_.slots == 0 || config_.slots > 16) {
        throw TeError(ErrorCode::InvalidArgument, "slots: must be 1 to 16");
    }
    try {
        selection_ = tpm::parse_pcr_selection(config_.pcrs);
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::InvalidArgument, e.what());
    }
    std::error_code ec;
    fs::create_directories(config_.state_dir, ec);
    const bool have_db = fs::exists(config_.state_dir + "/tresim.db");
    secret_ = load_or_create_secret(config_.state_dir, !have_db);

    try {
        ctx_ = std::make_unique<tpm::Context>(config_.tcti);
        caps_ = tpm::probe(*ctx_);
        srk_ = tpm::ensure_srk(*ctx_);
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::TpmFailure, std::string("TPM: ") + e.what());
    }
    db_ = std::make_unique<Db>(config_.state_dir + "/tresim.db");
    registry_ = std::make_unique<Registry>(*db_);
    registry_->create_schema();
    ensure_audit_schema(*db_);
    guard_ =
        std::make_unique<StateGuard>(*ctx_, srk_.handle, *registry_, secret_, config_.sqn_interval);
    guard_status_ = guard_->verify_at_start();
    audit_ = std::make_unique<AuditLog>(AuditLog::open_tpm(*db_, *ctx_, secret_));
}

TrustedEnvironment::~TrustedEnvironment() = default;

const tpm::CommandCounts& TrustedEnvironment::counts() const {
    return ctx_->counts();
}

TeInfo TrustedEnvironment::info() {
    std::lock_guard lock(mutex_);
    TeInfo i;
    i.caps = caps_;
    i.milenage_mode = choose_mode(caps_, Algorithm::Milenage, config_.force_mode);
    i.epoch = guard_->epoch();
    i.recovered_crash = guard_status_.recovered_crash;
    i.pcr_selection = tpm::format_pcr_selection(selection_);
    i.audit = audit_->status();
    return i;
}

tpm::PcrValues TrustedEnvironment::current_pcrs() {
    std::lock_guard lock(mutex_);
    return tpm::read_pcrs(*ctx_, selection_);
}

void TrustedEnvironment::add_approval(const MidApproval& approval) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    // The TPM checks the signature too; the ticket is kept for later uses.
    const TPMT_TK_VERIFIED ticket = verify_approval(*ctx_, selection_, approval);
    tickets_.put(authority_name(approval.authority), approval.approved_policy, approval.policy_ref,
                 ticket);
    const tpm::PcrValues now = tpm::read_pcrs(*ctx_, selection_);
    current_approval_.clear();
    guard_->prepare(true);
    Transaction t(*db_);
    put_approval_locked(approval, now, json::object());
    guard_->stamp();
    t.commit();
    audit_->anchor();
}

// Inside the caller's transaction: stores a verified approval with its audit
// record; suspended MIDs whose objects it opens (same authority, policyRef and
// PIN-ness) and whose platform state it approves resume. `details` go into
// both audit records (a provisioned approval names its instruction).
void TrustedEnvironment::put_approval_locked(const MidApproval& approval, const tpm::PcrValues& now,
                                             const json& details) {
    const Bytes name = authority_name(approval.authority);
    registry_->put_approval(name, approval.auth_value,
                            tpm::authorization_hash(approval.approved_policy, approval.policy_ref),
                            encode_stored_approval(approval));
    json update = details;
    update["authority"] = hex_encode(name);
    update["pcrs"] = tpm::format_pcr_selection(tpm::selection_of(approval.pcrs));
    audit_->append(AuditType::PolicyUpdate, std::nullopt, update);
    for (MidRecord& m : registry_->list()) {
        if (m.state == MidState::Suspended && m.authority == name &&
            m.policy_ref == approval.policy_ref && m.has_pin == approval.auth_value &&
            same_pcr_values(approval.pcrs, now)) {
            m.state = MidState::Active;
            registry_->update(m);
            json resumed = details;
            resumed["event"] = "resume";
            resumed["state"] = "active";
            audit_->append(AuditType::LifecycleChange, mid_label(m), resumed);
        }
    }
}

std::optional<MidApproval> TrustedEnvironment::approval_for(const Bytes& name, bool auth_value,
                                                            const std::optional<Bytes>& policy_ref,
                                                            const tpm::PcrValues& current) {
    std::optional<MidApproval> newest;
    for (const Bytes& encoded : registry_->approvals(name, auth_value)) {
        MidApproval a = decode_stored_approval(encoded);
        if (policy_ref && a.policy_ref != *policy_ref) {
            continue; // it would not open objects bound to another policyRef
        }
        if (same_pcr_values(a.pcrs, current)) {
            return a;
        }
        if (!newest) {
            newest = std::move(a);
        }
    }
    return newest; // does not match: using it names the PCRs that differ
}

std::int64_t TrustedEnvironment::import_profile(ByteView profile_json,
                                                const TPM2B_PUBLIC& authority,
                                                const std::optional<MidApproval>& approval) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    MidProfile p = parse_profile(profile_json);
    if (registry_->find_by_iccid(p.iccid)) {
        throw TeError(ErrorCode::AlreadyExists, "a MID with ICCID " + p.iccid + " is installed");
    }
    if (p.borrows_functions()) {
        // The lender must be there and have keys of its own; whether it shares
        // is its policy's say at each use.
        const auto lender = registry_->find_by_iccid(p.functions_from);
        if (!lender) {
            throw TeError(ErrorCode::InvalidArgument,
                          "profile: functions_from: no MID with ICCID " + p.functions_from +
                              " is installed");
        }
        if (lender->borrows_functions()) {
            throw TeError(ErrorCode::InvalidArgument,
                          "profile: functions_from: MID " + p.functions_from +
                              " has no USIM function of its own to share");
        }
    }
    Bytes name;
    try {
        name = authority_name(authority);
    } catch (const InvalidArgument&) {
        throw TeError(ErrorCode::InvalidArgument,
                      "authority: not a public key area with a supported name algorithm");
    }
    if (approval) {
        // Verified now, stored in the import's own transaction: a failed
        // import leaves no approval behind.
        const TPMT_TK_VERIFIED ticket = verify_approval(*ctx_, selection_, *approval);
        if (authority_name(approval->authority) != name) {
            throw TeError(ErrorCode::InvalidArgument,
                          "approval: not by the authority the MID is imported under");
        }
        tickets_.put(name, approval->approved_policy, approval->policy_ref, ticket);
    }
    const tpm::PcrValues now = tpm::read_pcrs(*ctx_, selection_);
    const bool has_pin = p.pin.has_value();
    // With an approval given, the MID's objects are bound to its policyRef;
    // without, to that of the stored approval chosen.
    std::optional<MidApproval> a = approval_for(
        name, has_pin, approval ? std::optional<Bytes>(approval->policy_ref) : std::nullopt, now);
    if (approval && approval->auth_value == has_pin &&
        (same_pcr_values(approval->pcrs, now) || !a || !same_pcr_values(a->pcrs, now))) {
        a = *approval; // the newest, as if stored first
    }
    if (!a) {
        throw TeError(ErrorCode::PolicyDenied,
                      std::string("no approval of the current platform state by this authority") +
                          (has_pin ? " for PIN-protected MIDs (with PolicyAuthValue)" : "") +
                          ": add one first");
    }

    MidCreateOptions options;
    MidKeyMaterial material;
    std::optional<SecretBytes> unlock;
    Bytes pin_salt;
    std::optional<tpm::ObjectBlobs> pin_gate;
    std::optional<tpm::ObjectBlobs> puk_gate;
    if (has_pin) {
        unlock = random_secret(32);
        options.auth_value = *unlock;
        const SecretBytes salt = random_secret(16);
        pin_salt.assign(salt.view().begin(), salt.view().end());
        pin_gate =
            create_gate(*ctx_, srk_.handle, *unlock, stretch_pin(p.pin->view(), pin_salt), *a);
        if (p.puk) {
            puk_gate =
                create_gate(*ctx_, srk_.handle, *unlock, stretch_pin(p.puk->view(), pin_salt), *a);
        }
    }
    try {
        if (p.borrows_functions()) {
            // An ISIM-only MID: no TPM objects of its own.
        } else if (p.algorithm == Algorithm::Milenage) {
            options.mode = choose_mode(caps_, Algorithm::Milenage, config_.force_mode);
            material = create_milenage_mid(*ctx_, srk_.handle, p.k, p.opc, p.op_given, options, *a,
                                           tickets_);
        } else {
            usim::Topc topc(p.opc.view());
            if (p.op_given) {
                usim::Top top{};
                std::copy(p.opc.view().begin(), p.opc.view().end(), top.begin());
                topc = usim::Tuak::compute_topc(p.k.view(), top, p.tuak.keccak_iterations);
                wipe(top.data(), top.size());
            }
            material = create_tuak_mid(*ctx_, srk_.handle, p.k, topc, p.tuak, options, *a);
        }
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::TpmFailure,
                      std::string("creating the MID's TPM objects: ") + e.what());
    }

    MidRecord m;
    m.iccid = p.iccid;
    m.imsi = p.imsi;
    m.mnc_length = p.mnc_length;
    m.label = p.label;
    m.operator_name = p.operator_name;
    m.algorithm = p.algorithm;
    m.tuak = p.tuak;
    m.amf = p.amf;
    m.mode = material.mode;
    m.state = MidState::Inactive;
    m.isim = p.isim;
    m.suci = p.suci;
    m.policy = p.policy;
    m.functions_from = p.functions_from;
    m.authority = name;
    m.policy_ref = a->policy_ref; // what its objects' PolicyAuthorize names
    m.has_pin = has_pin;
    m.has_puk = p.puk.has_value();
    m.pin_salt = pin_salt;
    m.pin_retries = has_pin ? config_.pin_retries : 0;
    m.puk_retries = p.puk ? config_.puk_retries : 0;
    m.sqn =
        p.sqn ? usim::SqnState::from_highest(*p.sqn, p.sqn_config) : usim::SqnState(p.sqn_config);

    if (approval) {
        current_approval_.clear();
    }
    guard_->prepare(true);
    Transaction t(*db_);
    if (approval) {
        put_approval_locked(*approval, now, json::object());
    }
    const std::int64_t index = registry_->insert(m);
    if (!m.borrows_functions()) {
        registry_->put_object(index, kRoleKey, material.key);
    }
    if (material.opc) {
        registry_->put_object(index, kRoleOpc, *material.opc);
    }
    if (!material.opc_wrapped.empty()) {
        registry_->put_object(index, kRoleOpcWrap, {material.wrap_nonce, material.opc_wrapped});
    }
    if (pin_gate) {
        registry_->put_object(index, kRolePinGate, *pin_gate);
    }
    if (puk_gate) {
        registry_->put_object(index, kRolePukGate, *puk_gate);
    }
    json installed = {{"index", index}, {"imsi", m.imsi}, {"source", "local"}};
    if (m.borrows_functions()) {
        installed["functions_from"] = m.functions_from;
    } else {
        installed["algorithm"] = to_string(m.algorithm);
        installed["mode"] = to_string(m.mode);
    }
    audit_->append(AuditType::Install, m.iccid, installed);
    guard_->stamp();
    t.commit();
    audit_->anchor();
    return index;
}

std::vector<MidRecord> TrustedEnvironment::list() {
    std::lock_guard lock(mutex_);
    return registry_->list();
}

MidRecord TrustedEnvironment::require(std::int64_t index) {
    auto m = registry_->find(index);
    if (!m) {
        throw TeError(ErrorCode::UnknownMid, "no MID with index " + std::to_string(index));
    }
    return *m;
}

MidRecord TrustedEnvironment::get(std::int64_t index) {
    std::lock_guard lock(mutex_);
    return require(index);
}

MidRecord TrustedEnvironment::get_by_iccid(std::string_view iccid) {
    std::lock_guard lock(mutex_);
    auto m = registry_->find_by_iccid(iccid);
    if (!m) {
        const bool plain =
            iccid.size() <= 20 &&
            std::all_of(iccid.begin(), iccid.end(), [](char c) { return c >= '0' && c <= '9'; });
        throw TeError(ErrorCode::UnknownMid, plain ? "no MID with ICCID " + std::string(iccid)
                                                   : std::string("no MID with that ICCID (an "
                                                                 "ICCID is 18 to 20 digits)"));
    }
    return *m;
}

void TrustedEnvironment::transition(MidRecord& mid, LifecycleEvent event,
                                    std::optional<unsigned> slot, const json& details) {
    const auto next = next_state(mid.state, event);
    if (!next) {
        throw TeError(ErrorCode::IllegalTransition, std::string("cannot ") + to_string(event) +
                                                        " a MID that is " + to_string(mid.state));
    }
    warm_.release(); // a MID leaving (or entering) active keeps nothing loaded
    json d = details;
    d["event"] = to_string(event);
    d["from"] = to_string(mid.state);
    d["state"] = to_string(*next);
    mid.state = *next;
    if (*next == MidState::Active && slot) {
        mid.slot = slot;
    } else if (*next == MidState::Inactive || *next == MidState::Blocked) {
        mid.slot.reset();
    }
    guard_->prepare(true);
    Transaction t(*db_);
    try {
        registry_->update(mid);
    } catch (const DbError&) {
        // The one-MID-per-slot index refused it.
        throw TeError(ErrorCode::SlotOccupied,
                      "slot " + std::to_string(slot.value_or(0)) + " already has an active MID");
    }
    audit_->append(AuditType::LifecycleChange, mid_label(mid), d);
    guard_->stamp();
    t.commit();
    audit_->anchor();
}

void TrustedEnvironment::activate(std::int64_t index, unsigned slot) {
    std::lock_guard lock(mutex_);
    if (slot >= config_.slots) {
        throw TeError(ErrorCode::InvalidArgument,
                      "slot: must be below " + std::to_string(config_.slots));
    }
    MidRecord m = require(index);
    if (auto other = registry_->in_slot(slot); other && other->index != index) {
        throw TeError(ErrorCode::SlotOccupied, "slot " + std::to_string(slot) +
                                                   " already has MID " +
                                                   std::to_string(other->index) + " active");
    }
    transition(m, LifecycleEvent::Activate, slot, {{"slot", slot}});
}

void TrustedEnvironment::deactivate(std::int64_t index) {
    std::lock_guard lock(mutex_);
    MidRecord m = require(index);
    transition(m, LifecycleEvent::Deactivate, std::nullopt, json::object());
}

void TrustedEnvironment::remove(std::int64_t index) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    MidRecord m = require(index);
    if (!next_state(m.state, LifecycleEvent::Delete)) {
        throw TeError(ErrorCode::IllegalTransition, std::string("cannot delete a MID that is ") +
                                                        to_string(m.state) +
                                                        ": deactivate it first");
    }
    guard_->prepare(true);
    Transaction t(*db_);
    unlocked_.erase(index);
    registry_->remove(index);
    audit_->append(AuditType::Deletion, mid_label(m),
                   {{"index", index}, {"imsi", m.imsi}, {"from", to_string(m.state)}});
    guard_->stamp();
    t.commit();
    audit_->anchor();
}

MidKeyMaterial TrustedEnvironment::material_for(const MidRecord& mid) {
    MidKeyMaterial k;
    k.algorithm = mid.algorithm;
    k.tuak = mid.tuak;
    k.mode = mid.mode;
    const auto key = registry_->object(mid.index, kRoleKey);
    if (!key) {
        throw TeError(ErrorCode::StateCorrupt,
                      "MID " + std::to_string(mid.index) + " has no key object");
    }
    k.key = *key;
    k.opc = registry_->object(mid.index, kRoleOpc);
    if (auto wrap = registry_->object(mid.index, kRoleOpcWrap)) {
        k.wrap_nonce = wrap->public_area;
        k.opc_wrapped = wrap->private_area;
    }
    // The approval that held last time is tried first (no PCR_Read on the
    // authentication path); a PlatformMismatch makes the caller look again.
    const auto key_of = std::make_tuple(mid.authority, mid.has_pin, mid.policy_ref);
    auto cached = current_approval_.find(key_of);
    if (cached == current_approval_.end()) {
        const tpm::PcrValues now = tpm::read_pcrs(*ctx_, selection_);
        auto a = approval_for(mid.authority, mid.has_pin, mid.policy_ref, now);
        if (!a) {
            throw TeError(ErrorCode::PolicyDenied, "no approval by the MID's authority is stored");
        }
        cached = current_approval_.emplace(key_of, std::move(*a)).first;
    }
    k.approval = cached->second;
    if (mid.has_pin) {
        const auto it = unlocked_.find(mid.index);
        if (it == unlocked_.end()) {
            throw TeError(ErrorCode::PinRequired, "the MID's PIN must be verified first");
        }
        k.auth_value = it->second;
    }
    return k;
}

std::unique_ptr<MidAlgorithm> TrustedEnvironment::algorithm_for(MidRecord& mid) {
    return make_mid_algorithm(*ctx_, srk_.handle, material_for(mid), tickets_, &warm_);
}

usim::AkaResult TrustedEnvironment::authenticate(std::int64_t index, const usim::Rand& rand,
                                                 ByteView autn) {
    std::lock_guard lock(mutex_);
    MidRecord m = require(index);
    require_own_usim(m);
    if (m.state != MidState::Active) {
        throw TeError(ErrorCode::IllegalTransition,
                      std::string("the MID is ") + to_string(m.state) + ", not active");
    }
    if (!m.policy.allows("authenticate")) {
        throw TeError(ErrorCode::PolicyDenied, "the MID's policy does not allow authentication");
    }
    return usim_aka_locked(m, rand, autn, nullptr);
}

usim::AkaResult TrustedEnvironment::usim_aka_locked(MidRecord& m, const usim::Rand& rand,
                                                    ByteView autn, const MidRecord* user) {
    usim::AkaResult result;
    try {
        result = with_warm(warm_, [&] {
            try {
                auto alg = algorithm_for(m);
                return usim::usim_authenticate(*alg, m.sqn, rand, autn);
            } catch (const PlatformMismatch&) {
                // The cached approval no longer holds: another stored one may.
                current_approval_.erase(std::make_tuple(m.authority, m.has_pin, m.policy_ref));
                auto alg = algorithm_for(m);
                return usim::usim_authenticate(*alg, m.sqn, rand, autn);
            }
        });
    } catch (const PlatformMismatch&) {
        // DESIGN.md §5: an active MID whose platform state is no longer approved
        // is suspended until a valid policy arrives.
        MidRecord s = m;
        transition(s, LifecycleEvent::Suspend, std::nullopt, {{"reason", "platform-state"}});
        throw;
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::InvalidArgument, e.what());
    }
    if (auto* ok = std::get_if<usim::AkaSuccess>(&result)) {
        // The new SQN state is durable before RES/CK/IK leave this function.
        guard_->prepare(false);
        Transaction t(*db_);
        registry_->update_sqn(m.index, ok->state);
        count_use(*db_, mid_label(m), UseKind::Authentication,
                  static_cast<std::int64_t>(std::time(nullptr)));
        if (user != nullptr) {
            // A shared use (isim_authenticate): counted on the borrower too.
            count_use(*db_, mid_label(*user), UseKind::Authentication,
                      static_cast<std::int64_t>(std::time(nullptr)));
        }
        guard_->stamp();
        t.commit();
    }
    return result;
}

usim::AkaResult TrustedEnvironment::isim_authenticate(std::int64_t index, const usim::Rand& rand,
                                                      ByteView autn) {
    std::lock_guard lock(mutex_);
    MidRecord m = require(index);
    if (!m.isim) {
        throw TeError(ErrorCode::InvalidArgument,
                      "index: MID " + m.iccid + " has no ISIM (no IMS identities)");
    }
    if (m.state != MidState::Active) {
        throw TeError(ErrorCode::IllegalTransition,
                      std::string("the MID is ") + to_string(m.state) + ", not active");
    }
    if (!m.policy.allows("isim")) {
        throw TeError(ErrorCode::PolicyDenied,
                      "the MID's policy does not allow IMS authentication");
    }
    if (!m.borrows_functions()) {
        // Its own ISIM: the MID's AKA, so "authenticate" must be allowed too.
        if (!m.policy.allows("authenticate")) {
            throw TeError(ErrorCode::PolicyDenied,
                          "the MID's policy does not allow authentication");
        }
        return usim_aka_locked(m, rand, autn, nullptr);
    }
    MidRecord lender = lender_for(m);
    return usim_aka_locked(lender, rand, autn, &m);
}

// TR 33.812: a MID's functions serve another MID only where both MIDs'
// policies allow it and both are active (docs/te.md "Shared functions").
MidRecord TrustedEnvironment::lender_for(const MidRecord& borrower) {
    const std::string& iccid = borrower.functions_from;
    auto lender = registry_->find_by_iccid(iccid);
    if (!lender) {
        throw TeError(ErrorCode::UnknownMid, "MID " + iccid +
                                                 ", whose USIM function this MID uses, is not "
                                                 "installed");
    }
    if (lender->borrows_functions()) {
        throw TeError(ErrorCode::PolicyDenied,
                      "MID " + iccid + " has no USIM function of its own to share");
    }
    if (!borrower.policy.share_functions) {
        throw TeError(ErrorCode::PolicyDenied, "MID " + borrower.iccid +
                                                   " does not share functions "
                                                   "(policy.share_functions)");
    }
    if (!lender->policy.share_functions) {
        throw TeError(ErrorCode::PolicyDenied,
                      "MID " + iccid + " does not share its functions (policy.share_functions)");
    }
    if (lender->state != MidState::Active) {
        throw TeError(ErrorCode::PolicyDenied, "MID " + iccid +
                                                   ", whose USIM function this MID uses, is " +
                                                   to_string(lender->state) + ", not active");
    }
    if (!lender->policy.allows("isim")) {
        throw TeError(ErrorCode::PolicyDenied,
                      "MID " + iccid + "'s policy does not allow IMS authentication");
    }
    return *lender;
}

usim::GsmContext TrustedEnvironment::gsm_authenticate(std::int64_t index, const usim::Rand& rand) {
    std::lock_guard lock(mutex_);
    MidRecord m = require(index);
    require_own_usim(m);
    if (m.state != MidState::Active) {
        throw TeError(ErrorCode::IllegalTransition,
                      std::string("the MID is ") + to_string(m.state) + ", not active");
    }
    if (!m.policy.allows("gsm")) {
        throw TeError(ErrorCode::PolicyDenied,
                      "the MID's policy does not allow GSM authentication");
    }
    usim::GsmContext g;
    try {
        g = with_warm(warm_, [&] {
            auto alg = algorithm_for(m);
            return usim::gsm_authenticate(*alg, rand);
        });
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::InvalidArgument, e.what());
    }
    Transaction t(*db_);
    count_use(*db_, mid_label(m), UseKind::Gsm, static_cast<std::int64_t>(std::time(nullptr)));
    t.commit();
    return g;
}

usim::Suci TrustedEnvironment::suci(std::int64_t index) {
    std::lock_guard lock(mutex_);
    MidRecord m = require(index);
    require_own_usim(m);
    if (m.state != MidState::Active) {
        throw TeError(ErrorCode::IllegalTransition,
                      std::string("the MID is ") + to_string(m.state) + ", not active");
    }
    if (!m.policy.allows("suci")) {
        throw TeError(ErrorCode::PolicyDenied, "the MID's policy does not allow SUCI");
    }
    usim::SuciParams p;
    if (m.suci) {
        p.profile = m.suci->profile;
        p.hn_key_id = m.suci->hn_key_id;
        p.hn_public_key = m.suci->hn_public_key;
        p.routing_indicator = m.suci->routing_indicator;
    }
    p.mcc_mnc = m.imsi.substr(0, 3 + m.mnc_length);
    usim::Suci s;
    try {
        s = usim::conceal_imsi(p, m.imsi.substr(3 + m.mnc_length));
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::InvalidArgument,
                      std::string("the MID's IMSI or SUCI parameters: ") + e.what());
    }
    Transaction t(*db_);
    count_use(*db_, mid_label(m), UseKind::Suci, static_cast<std::int64_t>(std::time(nullptr)));
    t.commit();
    return s;
}

SecretBytes TrustedEnvironment::open_pin_gate(const MidRecord& mid, const char* role,
                                              ByteView pin) {
    const auto gate = registry_->object(mid.index, role);
    if (!gate) {
        throw TeError(ErrorCode::StateCorrupt, std::string("MID has no ") + role);
    }
    const tpm::PcrValues now = tpm::read_pcrs(*ctx_, selection_);
    const auto a = approval_for(mid.authority, true, mid.policy_ref, now);
    if (!a) {
        throw TeError(ErrorCode::PolicyDenied, "no approval by the MID's authority is stored");
    }
    return open_gate(*ctx_, srk_.handle, *gate, stretch_pin(pin, mid.pin_salt), *a, tickets_);
}

void TrustedEnvironment::pin_failure(MidRecord& mid, bool puk) {
    unsigned& left = puk ? mid.puk_retries : mid.pin_retries;
    if (left > 0) {
        --left;
    }
    json details = {{"what", puk ? "puk" : "pin"}, {"tries_left", left}};
    guard_->prepare(true);
    Transaction t(*db_);
    if (!puk && left == 0 && mid.state != MidState::Blocked) {
        details["from"] = to_string(mid.state);
        mid.state = MidState::Blocked;
        mid.slot.reset();
        unlocked_.erase(mid.index);
    }
    registry_->update(mid);
    audit_->append(AuditType::PinFailure, mid_label(mid), details);
    if (mid.state == MidState::Blocked && details.contains("from")) {
        audit_->append(AuditType::LifecycleChange, mid_label(mid),
                       {{"event", "block"},
                        {"from", details["from"]},
                        {"state", "blocked"},
                        {"reason", "pin-exhausted"}});
    }
    guard_->stamp();
    t.commit();
    audit_->anchor();
}

void TrustedEnvironment::verify_pin(std::int64_t index, ByteView pin) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    check_pin_argument(pin, false, "pin");
    MidRecord m = require(index);
    if (!m.has_pin) {
        throw TeError(ErrorCode::InvalidArgument, "the MID has no PIN");
    }
    if (m.pin_retries == 0 || m.state == MidState::Blocked) {
        throw TeError(ErrorCode::PinBlocked, "the PIN is blocked: unblock it with the PUK");
    }
    try {
        unlocked_[index] = open_pin_gate(m, kRolePinGate, pin);
    } catch (const TeError& e) {
        if (e.code() != ErrorCode::WrongPin) {
            throw;
        }
        pin_failure(m, false);
        if (m.pin_retries == 0) {
            throw TeError(ErrorCode::PinBlocked, "wrong PIN; the PIN is now blocked");
        }
        throw TeError(ErrorCode::WrongPin,
                      "wrong PIN, " + std::to_string(m.pin_retries) + " tries left");
    }
    if (m.pin_retries != config_.pin_retries) {
        m.pin_retries = config_.pin_retries;
        guard_->prepare(true);
        Transaction t(*db_);
        registry_->update(m);
        guard_->stamp();
        t.commit();
    }
}

bool TrustedEnvironment::pin_verified(std::int64_t index) {
    std::lock_guard lock(mutex_);
    return unlocked_.count(index) != 0;
}

void TrustedEnvironment::change_pin(std::int64_t index, ByteView old_pin, ByteView new_pin) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    check_pin_argument(old_pin, false, "old_pin");
    check_pin_argument(new_pin, false, "new_pin");
    verify_pin(index, old_pin);
    MidRecord m = require(index);
    const tpm::PcrValues now = tpm::read_pcrs(*ctx_, selection_);
    const auto a = approval_for(m.authority, true, m.policy_ref, now);
    const tpm::ObjectBlobs gate =
        create_gate(*ctx_, srk_.handle, unlocked_.at(index), stretch_pin(new_pin, m.pin_salt), *a);
    guard_->prepare(true);
    Transaction t(*db_);
    registry_->put_object(index, kRolePinGate, gate);
    audit_->append(AuditType::PolicyUpdate, mid_label(m), {{"what", "pin-changed"}});
    guard_->stamp();
    t.commit();
    audit_->anchor();
}

void TrustedEnvironment::unblock_pin(std::int64_t index, ByteView puk, ByteView new_pin) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    check_pin_argument(puk, true, "puk");
    check_pin_argument(new_pin, false, "new_pin");
    MidRecord m = require(index);
    if (!m.has_puk) {
        throw TeError(ErrorCode::InvalidArgument, "the MID has no PUK");
    }
    if (m.puk_retries == 0) {
        throw TeError(ErrorCode::PinBlocked, "the PUK is exhausted: the MID stays blocked");
    }
    SecretBytes unlock;
    try {
        unlock = open_pin_gate(m, kRolePukGate, puk);
    } catch (const TeError& e) {
        if (e.code() != ErrorCode::WrongPin) {
            throw;
        }
        pin_failure(m, true);
        throw TeError(ErrorCode::WrongPin,
                      "wrong PUK, " + std::to_string(m.puk_retries) + " tries left");
    }
    const tpm::PcrValues now = tpm::read_pcrs(*ctx_, selection_);
    const auto a = approval_for(m.authority, true, m.policy_ref, now);
    const tpm::ObjectBlobs gate =
        create_gate(*ctx_, srk_.handle, unlock, stretch_pin(new_pin, m.pin_salt), *a);
    json details = {{"what", "pin-unblocked"}};
    guard_->prepare(true);
    Transaction t(*db_);
    registry_->put_object(index, kRolePinGate, gate);
    m.pin_retries = config_.pin_retries;
    m.puk_retries = config_.puk_retries;
    const bool was_blocked = m.state == MidState::Blocked;
    if (was_blocked) {
        m.state = MidState::Inactive;
    }
    registry_->update(m);
    audit_->append(AuditType::PolicyUpdate, mid_label(m), details);
    if (was_blocked) {
        audit_->append(AuditType::LifecycleChange, mid_label(m),
                       {{"event", "unblock"}, {"from", "blocked"}, {"state", "inactive"}});
    }
    guard_->stamp();
    t.commit();
    audit_->anchor();
    unlocked_[index] = std::move(unlock);
}

AuditVerification TrustedEnvironment::verify_audit() {
    std::lock_guard lock(mutex_);
    return audit_->verify();
}

json TrustedEnvironment::export_audit() {
    std::lock_guard lock(mutex_);
    return audit_->export_json();
}

} // namespace tresim::te
