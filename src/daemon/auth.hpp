#pragma once
// Authorization of a method's action (docs/dbus-api.md, "Authorization"):
// root always; otherwise polkit (CheckAuthorization for the caller's bus name)
// when it runs and the configuration lets it decide, else the [authorization]
// rules, matched against the caller's UID and GIDs as the bus reports them.

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <vector>

#include "config.hpp"

namespace sdbus {
class Message;
class IConnection;
class IProxy;
} // namespace sdbus

namespace tresim::daemon {

enum class Action { Authenticate, Manage, Provision };
const char* to_string(Action action) noexcept; // "org.tresim1.authenticate", ...

struct Caller {
    uid_t uid = 0;
    std::vector<gid_t> gids; // primary and supplementary
};

class Authorizer {
public:
    // `bus` (the daemon's connection) is where polkit is asked; without it
    // only the rules apply.
    explicit Authorizer(const Config& config, sdbus::IConnection* bus = nullptr);
    ~Authorizer();
    Authorizer(const Authorizer&) = delete;
    Authorizer& operator=(const Authorizer&) = delete;

    // The caller's credentials from the bus (never from the message's content).
    static Caller caller_of(const sdbus::Message& message);
    // The same, remembered per unique bus name: the bus fixes a connection's
    // credentials when it connects and never gives its unique name to another
    // connection, so an entry cannot describe another caller. Each lookup on
    // the bus costs three round trips to dbus-daemon (UID, GID, groups), about
    // half of the daemon's overhead per call (docs/performance.md).
    Caller cached_caller_of(const sdbus::Message& message) const;

    // The decision without polkit: root, else the rules ("polkit = yes"
    // refuses, since polkit would have had to decide).
    bool allowed(Action action, const Caller& caller) const;
    // Throws NotAuthorized naming the action.
    void require(Action action, const sdbus::Message* message) const;

private:
    bool polkit_running() const;
    bool polkit_allows(Action action, const std::string& sender) const;

    sdbus::IConnection* bus_;
    std::unique_ptr<sdbus::IProxy> dbus_;
    std::unique_ptr<sdbus::IProxy> authority_;
    PolkitMode polkit_;
    std::vector<Principal> authenticate_;
    std::vector<Principal> manage_;
    std::vector<Principal> provision_;

    static constexpr std::size_t kCachedCallers = 64; // the oldest is forgotten first
    mutable std::mutex callers_mutex_;
    mutable std::map<std::string, Caller> callers_;
    mutable std::deque<std::string> caller_order_;
};

} // namespace tresim::daemon
