#pragma once
// The Provisioning Server's logic (docs/protocol.md), independent of HTTP:
// each API call takes the request body and returns a Reply or throws ApiError
// with the protocol's error nick. One request at a time (a mutex): the store
// is one SQLite connection and every call is short.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "config.hpp"
#include "ek_trust.hpp"
#include "store.hpp"
#include "tpm/attest.hpp"
#include "tpm/policy.hpp"
#include "vault.hpp"

namespace tresim::ps {

// A refusal: HTTP status, the protocol's nick, a message without secrets and
// extra fields for the error body ("what", "pcrs", "field").
class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string nick, const std::string& message,
             nlohmann::json extra = nlohmann::json::object())
        : std::runtime_error(message), status_(status), nick_(std::move(nick)),
          extra_(std::move(extra)) {}
    int status() const noexcept { return status_; }
    const std::string& nick() const noexcept { return nick_; }
    const nlohmann::json& extra() const noexcept { return extra_; }
    // {"error": nick, "message": what(), ...extra}
    nlohmann::json body() const;

private:
    int status_;
    std::string nick_;
    nlohmann::json extra_;
};

struct Reply {
    int status = 200;
    nlohmann::json body; // null for 204
};

class Service {
public:
    using Clock = std::function<std::int64_t()>; // unix seconds

    Service(Config config, std::unique_ptr<Store> store, Vault vault,
            std::unique_ptr<EkTrust> trust, tpm::PolicyAuthority signing_key,
            tpm::PolicyAuthority policy_authority, Clock clock = {});

    // ---- device API
    Reply hello(std::string_view body);
    Reply sync(std::string_view body);
    Reply evidence(std::string_view body);
    Reply results(std::string_view body);

    // ---- operator API (the caller checks authorized() first)
    bool authorized(std::string_view authorization_header) const;
    Reply create_subscription(std::string_view body);
    Reply list_subscriptions();
    Reply get_subscription(const std::string& id);
    Reply list_devices();
    Reply get_device(const std::string& id);
    Reply create_order(const std::string& device, std::string_view body);
    Reply create_reference(std::string_view body);
    Reply get_audit(std::int64_t after);

    // Records an event in the audit trail (also used for refusals at the HTTP edge).
    void audit(const std::string& device, const std::string& event, const std::string& outcome,
               const std::string& detail);

    const Config& config() const noexcept { return config_; }

private:
    struct HelloInput;
    Reply start_session(std::string_view body, bool sync);
    HelloInput parse_hello(const nlohmann::json& doc, bool sync);
    void check_identity(const HelloInput& in);
    std::vector<std::string> issue_instructions(DeviceRecord& device, const SessionRecord& session,
                                                const std::optional<tpm::PcrValues>& reference);
    nlohmann::json install_body(const SubscriptionRecord& sub, const SessionRecord& session,
                                const tpm::PcrValues& reference);
    void apply_result(const std::string& device, const nlohmann::json& result);
    void add_history(SubscriptionRecord& sub, const std::string& event);
    nlohmann::json subscription_json(const SubscriptionRecord& sub) const;
    nlohmann::json device_json(const DeviceRecord& d);
    std::int64_t now() const { return clock_(); }

    Config config_;
    std::unique_ptr<Store> store_;
    Vault vault_;
    std::unique_ptr<EkTrust> trust_;
    tpm::PolicyAuthority signing_;
    tpm::PolicyAuthority authority_;
    Clock clock_;
    std::mutex mutex_;
};

} // namespace tresim::ps
