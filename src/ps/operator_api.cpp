// The operator API (docs/protocol.md "Operator API", docs/ps.md).

#include <set>

#include "protocol/base64url.hpp"
#include "service.hpp"
#include "te/approval_json.hpp"
#include "te/errors.hpp"
#include "te/mid_crypto.hpp"
#include "te/profile.hpp"
#include "tpm/keys.hpp"
#include "util.hpp"

namespace tresim::ps {

using nlohmann::json;

namespace {

constexpr char kCodeAlphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"; // 32 symbols, no 0/O/1/I

// 20 symbols (100 bits) in groups of four.
std::string new_activation_code() {
    const Bytes r = random_bytes(20);
    std::string code;
    for (std::size_t i = 0; i < r.size(); ++i) {
        if (i > 0 && i % 4 == 0) {
            code.push_back('-');
        }
        code.push_back(kCodeAlphabet[r[i] & 31]);
    }
    return code;
}

bool live(const std::string& state) {
    return state != "deleted" && state != "failed";
}

} // namespace

Reply Service::create_subscription(std::string_view body) {
    const std::lock_guard lock(mutex_);
    const json doc = parse_body(body);
    const json& profile = member(doc, "profile", json::value_t::object, "an object");
    te::MidProfile parsed;
    try {
        std::string text = profile.dump();
        try {
            parsed = te::parse_profile(text_view(text));
        } catch (...) {
            wipe(text.data(), text.size());
            throw;
        }
        wipe(text.data(), text.size());
    } catch (const te::TeError& e) {
        {
            const std::string m = e.what();
            invalid("profile", m.rfind("profile: ", 0) == 0 ? m.substr(9) : m);
        }
    }
    if (parsed.borrows_functions()) {
        invalid("profile.functions_from",
                "ISIM-only MIDs are not provisioned remotely by this version");
    }
    if (parsed.pin || parsed.puk || parsed.policy.pin_required) {
        invalid("profile", "PIN-protected MIDs are not provisioned remotely by this version");
    }
    const bool tuak = parsed.algorithm == te::Algorithm::Tuak;
    if (tuak && parsed.tuak.keccak_iterations > 255) {
        invalid("profile.tuak.keccak_iterations", "must be at most 255");
    }
    for (const SubscriptionRecord& s : store_->subscriptions()) {
        if (s.iccid == parsed.iccid && live(s.state)) {
            invalid("profile.iccid", "another live subscription has this ICCID (" + s.id + ")",
                    409);
        }
    }

    SubscriptionRecord sub;
    sub.id = random_id();
    sub.iccid = parsed.iccid;
    sub.algorithm = te::to_string(parsed.algorithm);
    sub.device_class = optional_string(doc, "class").value_or("");
    sub.created = now();
    sub.state = "registered";
    if (const auto it = doc.find("slot"); it != doc.end()) {
        if (!it->is_number_unsigned() || it->get<std::uint64_t>() > 255) {
            invalid("slot", "must be a slot number");
        }
        sub.slot = it->get<int>();
    }
    json pub = profile;
    for (const char* secret : {"k", "opc", "op", "pin", "puk"}) {
        pub.erase(secret);
    }
    sub.profile_public = pub.dump();
    SecretBytes secrets(3 + parsed.k.size() + parsed.opc.size());
    secrets[0] = parsed.op_given ? 1 : 0;
    secrets[1] = static_cast<std::uint8_t>(parsed.k.size());
    secrets[2] = static_cast<std::uint8_t>(parsed.tuak.keccak_iterations);
    std::copy(parsed.k.view().begin(), parsed.k.view().end(), secrets.data() + 3);
    std::copy(parsed.opc.view().begin(), parsed.opc.view().end(),
              secrets.data() + 3 + parsed.k.size());
    sub.secrets = vault_.seal(secrets, sub.id);

    const json& bind = member(doc, "bind", json::value_t::object, "an object");
    json reply = {{"id", sub.id}};
    std::optional<ActivationCodeRecord> code;
    if (const auto d = optional_string(bind, "device")) {
        try {
            sub.device = hex_encode(hex_decode(*d, "bind.device", 32));
        } catch (const InvalidArgument&) {
            invalid("bind.device", "must be the 64 hex digits of a device identity");
        }
        sub.bind = "device";
    } else if (bind.contains("ek_certificate")) {
        const Bytes der = b64_member(bind, "ek_certificate");
        X509Ptr cert;
        try {
            cert = parse_certificate(der, "bind.ek_certificate");
        } catch (const InvalidArgument&) {
            invalid("bind.ek_certificate", "is not a base64url DER X.509 certificate");
        }
        sub.device = tpm::te_identity(X509_get0_pubkey(cert.get()));
        sub.bind = "ek_certificate";
    } else if (bind.value("activation_code", false) == true) {
        const std::string text = new_activation_code();
        code = ActivationCodeRecord{activation_code_hash(text), sub.id, "", 0, "unused", ""};
        if (const auto c = optional_string(bind, "confirmation_code")) {
            if (c->empty() || c->size() > 64) {
                invalid("bind.confirmation_code", "must be 1 to 64 characters");
            }
            code->confirmation_hash = confirmation_code_hash(code->hash, *c);
        }
        sub.bind = "activation_code";
        reply["activation_code"] = text;
    } else {
        invalid("bind", "must be {\"device\": hex}, {\"ek_certificate\": b64url} or "
                        "{\"activation_code\": true, \"confirmation_code\"?: text}");
    }
    add_history(sub, "registered, bound by " + sub.bind);
    store_->transaction([&] {
        store_->put_subscription(sub);
        if (code) {
            store_->put_code(*code);
        } else {
            store_->put_order({random_id(), sub.device, sub.id, "install", "{}", std::nullopt,
                               "pending", "", now()});
        }
        audit(sub.device, "subscription", "ok",
              "subscription " + sub.id + " for ICCID " + sub.iccid + " bound by " + sub.bind);
    });
    return {201, reply};
}

Reply Service::list_subscriptions() {
    const std::lock_guard lock(mutex_);
    json out = json::array();
    for (const SubscriptionRecord& s : store_->subscriptions()) {
        out.push_back(subscription_json(s));
    }
    return {200, {{"subscriptions", out}}};
}

Reply Service::get_subscription(const std::string& id) {
    const std::lock_guard lock(mutex_);
    const auto s = store_->subscription(id);
    if (!s) {
        invalid("subscription", "no subscription " + id, 404);
    }
    return {200, subscription_json(*s)};
}

Reply Service::list_devices() {
    const std::lock_guard lock(mutex_);
    json out = json::array();
    for (const DeviceRecord& d : store_->devices()) {
        out.push_back(device_json(d));
    }
    return {200, {{"devices", out}}};
}

Reply Service::get_device(const std::string& id) {
    const std::lock_guard lock(mutex_);
    const auto d = store_->device(id);
    if (!d) {
        invalid("device", "no device " + id, 404);
    }
    return {200, device_json(*d)};
}

Reply Service::create_order(const std::string& device, std::string_view body) {
    const std::lock_guard lock(mutex_);
    if (!store_->device(device)) {
        invalid("device", "no device " + device, 404);
    }
    const json doc = parse_body(body);
    const std::string op = string_member(doc, "op");
    static const std::set<std::string> ops = {"activate", "deactivate", "delete", "update",
                                              "switch-slot"};
    if (!ops.contains(op)) {
        invalid("op", "must be activate, deactivate, delete, update or switch-slot");
    }
    const std::string iccid = string_member(doc, "iccid");
    std::optional<SubscriptionRecord> sub;
    for (const SubscriptionRecord& s : store_->subscriptions()) {
        if (s.device == device && s.iccid == iccid && live(s.state) && s.state != "registered") {
            sub = s;
        }
    }
    if (!sub) {
        invalid("iccid", "the device holds no MID " + iccid + " from this server", 404);
    }
    const auto slot = [&]() -> int {
        const json& v = member(doc, "slot", json::value_t::number_unsigned, "a slot number");
        if (v.get<std::uint64_t>() > 255) {
            invalid("slot", "must be a slot number");
        }
        return v.get<int>();
    };
    json b = {{"iccid", iccid}};
    if (op == "activate") {
        b["slot"] = slot();
    } else if (op == "switch-slot") {
        b["slot"] = slot();
        const auto it = doc.find("confirm_within");
        if (it != doc.end() && !it->is_number_unsigned()) {
            invalid("confirm_within", "must be seconds");
        }
        b["confirm_within"] = it == doc.end() ? 0 : it->get<std::uint64_t>();
    } else if (op == "update") {
        bool any = false;
        for (const char* field : {"label", "operator"}) {
            if (const auto v = optional_string(doc, field)) {
                if (v->size() > 64) {
                    invalid(field, "is longer than 64 characters");
                }
                b[field] = *v;
                any = true;
            }
        }
        for (const char* field : {"suci", "isim"}) {
            if (const auto it = doc.find(field); it != doc.end()) {
                if (!it->is_object()) {
                    invalid(field, "must be an object as in the profile format");
                }
                b[field] = *it;
                any = true;
            }
        }
        if (!any) {
            invalid("update", "names none of label, operator, suci, isim");
        }
    }
    const OrderRecord order{random_id(),  device,    sub->id, op,   b.dump(),
                            std::nullopt, "pending", "",      now()};
    store_->transaction([&] {
        store_->put_order(order);
        add_history(*sub, op + " ordered (" + order.id + ")");
        store_->put_subscription(*sub);
        audit(device, "order", "ok", op + " of " + iccid + " ordered as " + order.id);
    });
    return {201, {{"id", order.id}}};
}

Reply Service::create_reference(std::string_view body) {
    const std::lock_guard lock(mutex_);
    const json doc = parse_body(body);
    const std::string device_class = string_member(doc, "class");
    if (device_class.empty() || device_class.size() > 64) {
        invalid("class", "must be 1 to 64 characters");
    }
    const tpm::PcrValues pcrs =
        pcrs_from_json(member(doc, "pcrs", json::value_t::object, "an object"), "pcrs");
    const ReferenceRecord ref{random_id(), device_class, pcrs_to_json(pcrs).dump(), now()};
    std::size_t updates = 0;
    store_->transaction([&] {
        store_->put_reference(ref);
        // Devices of the class that hold MIDs get the new state approved.
        std::set<std::string> holders;
        for (const SubscriptionRecord& s : store_->subscriptions()) {
            if (!s.device.empty() &&
                (s.state == "installed" || s.state == "active" || s.state == "inactive")) {
                const auto d = store_->device(s.device);
                if (d && d->device_class == device_class) {
                    holders.insert(s.device);
                }
            }
        }
        for (const std::string& d : holders) {
            const te::MidApproval a = te::approve(authority_, pcrs, false, {});
            store_->put_order({random_id(), d, "", "policy-update",
                               json{{"approval", te::approval_to_json(a)}}.dump(), std::nullopt,
                               "pending", "", now()});
            ++updates;
        }
        audit("", "reference", "ok",
              "reference " + ref.id + " for class " + device_class + "; " +
                  std::to_string(updates) + " policy update(s) queued");
    });
    return {201, {{"id", ref.id}, {"policy_updates", updates}}};
}

Reply Service::get_audit(std::int64_t after) {
    const std::lock_guard lock(mutex_);
    json out = json::array();
    for (const AuditRecord& r : store_->audit(after, 1000)) {
        out.push_back({{"seq", r.seq},
                       {"time", r.time},
                       {"device", r.device},
                       {"event", r.event},
                       {"outcome", r.outcome},
                       {"detail", r.detail}});
    }
    return {200, {{"audit", out}}};
}

} // namespace tresim::ps
