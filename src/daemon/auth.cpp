#include "auth.hpp"

#include <algorithm>

#include <sdbus-c++/sdbus-c++.h>

#include "errors.hpp"
#include "log.hpp"

namespace tresim::daemon {

const char* to_string(Action action) noexcept {
    switch (action) {
    case Action::Authenticate:
        return "org.tresim1.authenticate";
    case Action::Manage:
        return "org.tresim1.manage";
    case Action::Provision:
        return "org.tresim1.provision";
    }
    return "?";
}

namespace {
constexpr const char* kPolkitName = "org.freedesktop.PolicyKit1";
constexpr const char* kPolkitPath = "/org/freedesktop/PolicyKit1/Authority";
constexpr const char* kPolkitInterface = "org.freedesktop.PolicyKit1.Authority";
} // namespace

Authorizer::Authorizer(const Config& config, sdbus::IConnection* bus)
    : bus_(bus), polkit_(config.polkit), authenticate_(config.authenticate), manage_(config.manage),
      provision_(config.provision) {
    if (bus_ != nullptr && polkit_ != PolkitMode::No) {
        dbus_ = sdbus::createProxy(*bus_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
        authority_ = sdbus::createProxy(*bus_, kPolkitName, kPolkitPath);
    }
}

Authorizer::~Authorizer() = default;

bool Authorizer::polkit_running() const {
    if (!dbus_) {
        return false;
    }
    bool owned = false;
    dbus_->callMethod("NameHasOwner")
        .onInterface("org.freedesktop.DBus")
        .withArguments(std::string(kPolkitName))
        .storeResultsTo(owned);
    return owned;
}

bool Authorizer::polkit_allows(Action action, const std::string& sender) const {
    // Subject: the caller's unique bus name, which polkit resolves to its
    // process and user itself. No interaction: a gateway has nobody to ask.
    const sdbus::Struct<std::string, std::map<std::string, sdbus::Variant>> subject(
        std::string("system-bus-name"),
        std::map<std::string, sdbus::Variant>{{"name", sdbus::Variant(sender)}});
    sdbus::Struct<bool, bool, std::map<std::string, std::string>> result;
    authority_->callMethod("CheckAuthorization")
        .onInterface(kPolkitInterface)
        .withTimeout(std::chrono::seconds(10))
        .withArguments(subject, std::string(to_string(action)),
                       std::map<std::string, std::string>{}, std::uint32_t{0}, std::string())
        .storeResultsTo(result);
    return std::get<0>(result);
}

Caller Authorizer::caller_of(const sdbus::Message& message) {
    Caller c;
    c.uid = message.getCredsUid();
    c.gids.push_back(message.getCredsGid());
    for (const gid_t g : message.getCredsSupplementaryGids()) {
        c.gids.push_back(g);
    }
    return c;
}

Caller Authorizer::cached_caller_of(const sdbus::Message& message) const {
    const std::string sender = message.getSender();
    {
        std::lock_guard lock(callers_mutex_);
        if (const auto it = callers_.find(sender); it != callers_.end()) {
            return it->second;
        }
    }
    Caller c = caller_of(message); // outside the lock: it waits for the bus
    if (sender.empty() || sender[0] != ':') {
        return c; // not a unique name (a direct connection): nothing to key on
    }
    std::lock_guard lock(callers_mutex_);
    if (callers_.emplace(sender, c).second) {
        caller_order_.push_back(sender);
        if (caller_order_.size() > kCachedCallers) {
            callers_.erase(caller_order_.front());
            caller_order_.pop_front();
        }
    }
    return c;
}

bool Authorizer::allowed(Action action, const Caller& caller) const {
    if (caller.uid == 0) {
        return true;
    }
    // Reached when polkit did not decide: with "polkit = yes" that is a refusal
    // (polkit is required); "auto" and "no" apply the rules.
    if (polkit_ == PolkitMode::Yes) {
        return false;
    }
    const std::vector<Principal>& rules = action == Action::Authenticate ? authenticate_
                                          : action == Action::Manage     ? manage_
                                                                         : provision_;
    return std::any_of(rules.begin(), rules.end(), [&](const Principal& p) {
        if (p.kind == Principal::Kind::Uid) {
            return p.id == caller.uid;
        }
        return std::find(caller.gids.begin(), caller.gids.end(), p.id) != caller.gids.end();
    });
}

void Authorizer::require(Action action, const sdbus::Message* message) const {
    if (message == nullptr) {
        throw NotAuthorized(std::string("the caller of ") + to_string(action) +
                            " cannot be identified");
    }
    Caller caller;
    try {
        caller = cached_caller_of(*message);
    } catch (const sdbus::Error&) {
        throw NotAuthorized(std::string("the bus did not report the caller's credentials for ") +
                            to_string(action));
    }
    if (caller.uid == 0) {
        return;
    }
    if (polkit_ != PolkitMode::No && authority_) {
        bool running = false;
        try {
            running = polkit_running();
        } catch (const sdbus::Error& e) {
            log(LOG_WARNING, "cannot ask the bus whether polkit runs: " + e.getMessage());
        }
        if (running) {
            bool yes = false;
            try {
                yes = polkit_allows(action, message->getSender());
            } catch (const sdbus::Error& e) {
                log(LOG_WARNING, "polkit did not answer: " + e.getName() + ": " + e.getMessage());
                throw NotAuthorized(std::string("polkit could not decide on ") + to_string(action));
            }
            if (!yes) {
                throw NotAuthorized("polkit does not authorize UID " + std::to_string(caller.uid) +
                                    " for " + to_string(action));
            }
            return;
        }
        if (polkit_ == PolkitMode::Yes) {
            throw NotAuthorized(std::string("polkit is required but not running: ") +
                                to_string(action) + " refused");
        }
    }
    if (!allowed(action, caller)) {
        throw NotAuthorized("UID " + std::to_string(caller.uid) + " is not authorized for " +
                            to_string(action));
    }
}

} // namespace tresim::daemon
