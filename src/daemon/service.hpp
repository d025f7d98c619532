#pragma once
// The bus objects of tresimd: /org/tresim1 (ObjectManager + Manager) and one
// object per MID (Mid + Usim, + Isim with IMS identities; Mid + Isim for an
// ISIM-only MID), all mapped onto the TrustedEnvironment. Handlers run on the
// one thread of the event loop.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sdbus-c++/sdbus-c++.h>

#include "auth.hpp"
#include "config.hpp"
#include "provision_jobs.hpp"
#include "te/te.hpp"

namespace tresim::daemon {

inline constexpr const char* kBusName = "org.tresim1";
inline constexpr const char* kRootPath = "/org/tresim1";

std::string mid_path(std::int64_t index);

class Service;

// What a MID object shows: a snapshot of its record, refreshed after each call.
struct MidView {
    te::MidRecord record;
    bool pin_verified = false;
};

class MidObject {
public:
    virtual ~MidObject() = default;
    virtual std::int64_t index() const = 0;
    // Takes a new snapshot and announces the properties that changed.
    virtual void update(const MidView& view) = 0;
    virtual void announce_added() = 0;
    virtual void announce_removed() = 0;
    // Once deleted, calls on the object (until it is reaped) get UnknownMid.
    virtual void mark_deleted() = 0;
};

class ManagerObject;

class Service {
public:
    // `policy` is the TE policy file's content (provisioning servers; none:
    // Provision and Sync are refused and nothing is polled).
    Service(sdbus::IConnection& connection, te::TrustedEnvironment& te, const Config& config,
            std::string identity, TePolicy policy = {});
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    te::TrustedEnvironment& te() noexcept { return te_; }
    const Authorizer& authorizer() const noexcept { return authorizer_; }
    const Config& config() const noexcept { return config_; }
    const std::string& identity() const noexcept { return identity_; }
    const tpm::PcrSelection& selection() const noexcept { return selection_; }

    // Runs a handler: authorization (when `action`), the call, the mapping of
    // any exception to an sdbus::Error, and the property refresh afterwards.
    template <typename F>
    auto call(const char* method, std::optional<Action> action, std::optional<std::int64_t> mid,
              const sdbus::Message* message, F&& f) -> decltype(f());

    // After an import: a new object, announced with InterfacesAdded.
    sdbus::ObjectPath add_mid(std::int64_t index);
    // After a deletion: InterfacesRemoved now, the object freed by reap().
    void remove_mid(std::int64_t index);
    // Frees deleted objects; called by the event loop between messages.
    void reap();
    // Compares the objects' snapshots with the TE and emits PropertiesChanged:
    // the Manager's and `only`'s (a call on one MID changes only that one), or
    // every MID's (Manager calls: an approval can resume several).
    void refresh(std::optional<std::int64_t> only = std::nullopt) noexcept;
    // After a provisioning session: objects for new MIDs (InterfacesAdded),
    // none for deleted ones (InterfacesRemoved), fresh properties for the rest.
    void sync_objects() noexcept;

    Provisioner& provisioner() noexcept { return *provisioner_; }
    // The event loop's part in provisioning (provision_jobs.hpp).
    int wakeup_fd() const noexcept { return provisioner_->wakeup_fd(); }
    void dispatch() { provisioner_->dispatch(); }
    int timeout_ms() { return provisioner_->timeout_ms(); }
    void tick() { provisioner_->tick(); }

private:
    std::unique_ptr<MidObject> make_mid(const MidView& view);

    sdbus::IConnection& connection_;
    te::TrustedEnvironment& te_;
    Config config_;
    Authorizer authorizer_;
    std::string identity_;
    tpm::PcrSelection selection_;
    std::unique_ptr<ManagerObject> manager_;
    std::map<std::int64_t, std::unique_ptr<MidObject>> mids_;
    std::vector<std::unique_ptr<MidObject>> graveyard_;
    std::unique_ptr<Provisioner> provisioner_; // last: its worker stops first
};

} // namespace tresim::daemon

#include "service_impl.hpp"
