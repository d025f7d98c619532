#include "service.hpp"

#include <chrono>

#include "protocol/base64url.hpp"
#include "protocol/jws.hpp"
#include "te/approval_json.hpp"
#include "te/mid_crypto.hpp"
#include "tpm/duplicate.hpp"
#include "tpm/objects.hpp"
#include "usim/block_cipher.hpp"
#include "usim/milenage.hpp"
#include "usim/tuak.hpp"
#include "util.hpp"

namespace tresim::ps {

using nlohmann::json;

json ApiError::body() const {
    json b = extra_.is_object() ? extra_ : json::object();
    b["error"] = nick_;
    b["message"] = what();
    return b;
}

Service::Service(Config config, std::unique_ptr<Store> store, Vault vault,
                 std::unique_ptr<EkTrust> trust, tpm::PolicyAuthority signing_key,
                 tpm::PolicyAuthority policy_authority, Clock clock)
    : config_(std::move(config)), store_(std::move(store)), vault_(std::move(vault)),
      trust_(std::move(trust)), signing_(std::move(signing_key)),
      authority_(std::move(policy_authority)), clock_(std::move(clock)) {
    if (!signing_.has_private() || !authority_.has_private()) {
        throw InvalidArgument("signing_key", "the PS needs the private signing and authority keys");
    }
    if (!clock_) {
        clock_ = [] {
            return static_cast<std::int64_t>(
                std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count());
        };
    }
}

void Service::audit(const std::string& device, const std::string& event, const std::string& outcome,
                    const std::string& detail) {
    store_->append_audit({0, now(), device, event, outcome, detail});
}

bool Service::authorized(std::string_view header) const {
    constexpr std::string_view prefix = "Bearer ";
    if (header.substr(0, prefix.size()) != prefix) {
        return false;
    }
    const Bytes hash = sha256(text_view(header.substr(prefix.size())));
    bool ok = false;
    for (const std::string& h : config_.operator_token_hashes) {
        ok |= equal_ct(hash, hex_decode(h, "token"));
    }
    return ok;
}

void Service::add_history(SubscriptionRecord& sub, const std::string& event) {
    json h = json::parse(sub.history.empty() ? "[]" : sub.history);
    h.push_back({{"time", now()}, {"event", event}});
    sub.history = h.dump();
}

// Secrets layout inside the vault: flags (bit 0: OP/TOP given instead of
// OPc/TOPc), K length, Keccak iterations (TUAK), K, OPc/OP.
json Service::install_body(const SubscriptionRecord& sub, const SessionRecord& session,
                           const tpm::PcrValues& reference) {
    const SecretBytes secrets = vault_.open(sub.secrets, sub.id);
    if (secrets.size() < 3) {
        throw std::runtime_error("subscription secrets are malformed");
    }
    const bool op_given = (secrets[0] & 1) != 0;
    const std::size_t klen = secrets[1];
    const unsigned iterations = secrets[2];
    const bool tuak = sub.algorithm == "tuak";
    const std::size_t olen = tuak ? 32 : 16;
    if (secrets.size() != 3 + klen + olen) {
        throw std::runtime_error("subscription secrets are malformed");
    }
    const SecretBytes k(secrets.view().subspan(3, klen));
    SecretBytes opc(secrets.view().subspan(3 + klen, olen));
    if (op_given && tuak) {
        usim::Top top{};
        std::copy_n(opc.data(), 32, top.begin());
        opc = SecretBytes(usim::Tuak::compute_topc(k.view(), top, iterations).view());
    }
    std::optional<usim::SoftwareAes128> aes;
    if (!tuak) {
        aes.emplace(k.view());
        if (op_given) {
            usim::Block op{};
            std::copy_n(opc.data(), 16, op.begin());
            opc = SecretBytes(usim::Milenage::compute_opc(*aes, op).view());
        }
    }

    te::ComputationMode mode =
        te::parse_computation_mode(session.mode).value_or(te::ComputationMode::Sealed);
    if (tuak) {
        mode = te::ComputationMode::Sealed;
    }
    const TPM2B_PUBLIC srk = tpm::unmarshal_public(session.srk_public, "srk_public");
    const tpm::ObjectOptions options{te::mid_auth_policy(authority_.tpm_public(), {}),
                                     SecretBytes{}, false};
    const te::MidApproval approval = te::approve(authority_, reference, false, {});

    json body = json::parse(sub.profile_public);
    json out = {{"profile", body}, {"mode", te::to_string(mode)}};
    if (mode == te::ComputationMode::Sealed) {
        SecretBytes both(k.size() + opc.size());
        std::copy(k.view().begin(), k.view().end(), both.data());
        std::copy(opc.view().begin(), opc.view().end(), both.data() + k.size());
        const tpm::DuplicationBlob blob = tpm::duplicate_sealed_data(srk.publicArea, both, options);
        out["key"] = protocol::b64url_encode(blob.marshal());
    } else {
        const tpm::DuplicationBlob blob = tpm::duplicate_aes_key(srk.publicArea, k, options);
        // As the TE's create_milenage_mid: opc_wrapped = OPc xor E_K(N), N random.
        const Bytes nonce = random_bytes(16);
        usim::Block in{};
        std::copy_n(nonce.begin(), 16, in.begin());
        usim::Block pad{};
        aes->encrypt(std::span<const usim::Block>(&in, 1), std::span<usim::Block>(&pad, 1));
        Bytes wrapped(16);
        xor_into(wrapped, opc.view(), pad);
        wipe(pad.data(), pad.size());
        out["key"] = protocol::b64url_encode(blob.marshal());
        out["opc_wrapped"] = hex_encode(wrapped);
        out["wrap_nonce"] = hex_encode(nonce);
    }
    out["approval"] = te::approval_to_json(approval);
    if (sub.slot) {
        out["slot"] = *sub.slot;
    }
    return out;
}

std::vector<std::string>
Service::issue_instructions(DeviceRecord& device, const SessionRecord& session,
                            const std::optional<tpm::PcrValues>& reference) {
    std::vector<std::string> out;
    for (OrderRecord order : store_->orders_of(device.id)) {
        if (order.state != "pending" && order.state != "sent") {
            continue;
        }
        if (!order.counter) {
            order.counter = ++device.counter;
        }
        json body;
        if (order.op == "install") {
            auto sub = store_->subscription(order.subscription);
            if (!sub || !reference) {
                continue;
            }
            body = install_body(*sub, session, *reference);
            if (sub->state == "registered") {
                sub->state = "delivering";
                add_history(*sub, "install instruction issued to " + device.id);
                store_->put_subscription(*sub);
            }
        } else {
            body = json::parse(order.body);
        }
        const std::int64_t t = now();
        const json payload = {{"iss", "tresim-ps"},
                              {"device", device.id},
                              {"counter", *order.counter},
                              {"iat", t},
                              {"exp", t + config_.instruction_lifetime},
                              {"id", order.id},
                              {"validation", session.validation},
                              {"op", order.op},
                              {"body", body}};
        out.push_back(protocol::jws_sign(payload, signing_, "tresim-instruction"));
        order.state = "sent";
        store_->put_order(order);
    }
    store_->put_device(device);
    return out;
}

void Service::apply_result(const std::string& device, const json& result) {
    if (!result.is_object() || !result.contains("id") || !result["id"].is_string() ||
        !result.contains("status") || !result["status"].is_string()) {
        invalid("results", "each result needs a string id and status");
    }
    auto order = store_->order(result["id"].get<std::string>());
    if (!order || order->device != device) {
        return; // not an instruction of this device: ignored
    }
    if (result.contains("counter") && (!result["counter"].is_number_unsigned() || !order->counter ||
                                       result["counter"].get<std::uint64_t>() != *order->counter)) {
        return;
    }
    const std::string status = result["status"].get<std::string>();
    if (status != "ok" && status != "failed" && status != "refused") {
        invalid("results", "status must be ok, failed or refused");
    }
    order->state = status == "ok" ? "done" : status;
    order->result = result.dump();
    store_->put_order(*order);

    auto sub = store_->subscription(order->subscription);
    if (!sub) {
        return;
    }
    const bool fallback = result.value("fallback", false);
    std::string next = sub->state;
    if (status == "ok") {
        if (order->op == "install") {
            next = sub->slot ? "active" : "inactive";
        } else if (order->op == "activate") {
            next = "active";
        } else if (order->op == "deactivate") {
            next = "inactive";
        } else if (order->op == "delete") {
            next = "deleted";
        } else if (order->op == "switch-slot") {
            next = fallback ? "inactive" : "active";
            if (fallback) {
                // The slot went back to the MID this switch displaced.
                const std::string mark = "\"displaced by " + sub->iccid + "\"";
                for (SubscriptionRecord other : store_->subscriptions()) {
                    if (other.device == device && other.id != sub->id &&
                        other.state == "inactive" &&
                        other.history.find(mark) != std::string::npos) {
                        other.state = "active";
                        add_history(other, "active again after the fallback of " + sub->iccid);
                        store_->put_subscription(other);
                    }
                }
            } else {
                // The MID it displaced in that slot is inactive now (kept).
                const json body = json::parse(order->body);
                for (SubscriptionRecord other : store_->subscriptions()) {
                    if (other.device == device && other.id != sub->id && other.state == "active" &&
                        other.slot && body.contains("slot") && *other.slot == body["slot"]) {
                        other.state = "inactive";
                        add_history(other, "displaced by " + sub->iccid);
                        store_->put_subscription(other);
                    }
                }
                if (body.contains("slot") && body["slot"].is_number_integer()) {
                    sub->slot = body["slot"].get<int>();
                }
            }
        }
        if (order->op == "activate") {
            const json body = json::parse(order->body);
            if (body.contains("slot") && body["slot"].is_number_integer()) {
                sub->slot = body["slot"].get<int>();
            }
        }
    } else if (order->op == "install") {
        next = "failed";
    }
    sub->state = next;
    add_history(*sub, order->op + " " + status + (fallback ? " (fallback)" : ""));
    store_->put_subscription(*sub);
}

json Service::subscription_json(const SubscriptionRecord& s) const {
    json j = {{"id", s.id},
              {"iccid", s.iccid},
              {"class", s.device_class},
              {"algorithm", s.algorithm},
              {"bind", s.bind},
              {"device", s.device},
              {"state", s.state},
              {"created", s.created},
              {"history", json::parse(s.history.empty() ? "[]" : s.history)}};
    if (s.slot) {
        j["slot"] = *s.slot;
    }
    return j;
}

json Service::device_json(const DeviceRecord& d) {
    json mids = json::array();
    for (const SubscriptionRecord& s : store_->subscriptions()) {
        if (s.device == d.id) {
            mids.push_back({{"subscription", s.id}, {"iccid", s.iccid}, {"state", s.state}});
        }
    }
    json orders = json::array();
    for (const OrderRecord& o : store_->orders_of(d.id)) {
        json j = {{"id", o.id}, {"op", o.op}, {"state", o.state}};
        if (o.counter) {
            j["counter"] = *o.counter;
        }
        orders.push_back(j);
    }
    return {{"id", d.id},
            {"class", d.device_class},
            {"mode", d.mode},
            {"counter", d.counter},
            {"last_validation", d.last_validation},
            {"last_result", d.last_result},
            {"mids", mids},
            {"orders", orders}};
}

} // namespace tresim::ps
