// The device API (docs/protocol.md §1-§5): hello/sync, evidence, results.

#include <algorithm>

#include <openssl/x509.h>

#include "protocol/base64url.hpp"
#include "protocol/eventlog.hpp"
#include "service.hpp"
#include "te/mid_crypto.hpp"
#include "tpm/attest.hpp"
#include "tpm/keys.hpp"
#include "util.hpp"

namespace tresim::ps {

using nlohmann::json;

namespace {

constexpr std::uint32_t kHalf = 0x80000000u;

[[noreturn]] void refuse(int status, const std::string& nick, const std::string& message,
                         json extra = json::object()) {
    throw ApiError(status, nick, message, std::move(extra));
}

TPM2B_PUBLIC public_member(const json& doc, const std::string& name) {
    const Bytes raw = b64_member(doc, name);
    try {
        return tpm::unmarshal_public(raw, name);
    } catch (const InvalidArgument&) {
        invalid(name, "is not a marshalled TPM2B_PUBLIC");
    }
}

tpm::Attestation attestation_member(const json& doc, const std::string& name) {
    const json& a = member(doc, name, json::value_t::object, "an object");
    tpm::Attestation out;
    try {
        out.attest = b64_member(a, "attest");
        out.signature = b64_member(a, "signature");
    } catch (const ApiError& e) {
        invalid(name, e.what());
    }
    return out;
}

bool has(TPMA_OBJECT attributes, TPMA_OBJECT bit) {
    return (attributes & bit) != 0;
}

void check_ak(const TPMT_PUBLIC& p) {
    const TPMA_OBJECT need = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                             TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED |
                             TPMA_OBJECT_SIGN_ENCRYPT;
    if (p.type != TPM2_ALG_ECC || p.nameAlg != TPM2_ALG_SHA256 ||
        p.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        p.parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
        p.parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256 ||
        (p.objectAttributes & need) != need || has(p.objectAttributes, TPMA_OBJECT_DECRYPT)) {
        refuse(403, "bad-ak",
               "ak_public is not a restricted ECC P-256 ECDSA-SHA256 signing key with fixedTPM, "
               "fixedParent and sensitiveDataOrigin");
    }
}

void check_srk(const TPMT_PUBLIC& p) {
    const TPMA_OBJECT need = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    if (p.type != TPM2_ALG_ECC || p.nameAlg != TPM2_ALG_SHA256 ||
        p.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        (p.objectAttributes & need) != need || has(p.objectAttributes, TPMA_OBJECT_SIGN_ENCRYPT) ||
        p.parameters.eccDetail.symmetric.algorithm != TPM2_ALG_AES ||
        p.parameters.eccDetail.symmetric.keyBits.aes != 128 ||
        p.parameters.eccDetail.symmetric.mode.aes != TPM2_ALG_CFB) {
        refuse(403, "bad-srk",
               "srk_public is not an ECC P-256 restricted decryption key with AES-128-CFB");
    }
}

std::vector<unsigned> differing(const tpm::PcrValues& a, const tpm::PcrValues& b) {
    std::vector<unsigned> out;
    for (const auto& [index, value] : a.values) {
        const auto it = b.values.find(index);
        if (it == b.values.end() || it->second != value) {
            out.push_back(index);
        }
    }
    return out;
}

std::string list(const std::vector<unsigned>& v) {
    std::string s;
    for (const unsigned i : v) {
        s += (s.empty() ? "" : ", ") + std::to_string(i);
    }
    return s;
}

std::string code_hash_of(const std::string& code) {
    std::string normal;
    for (const char c : code) {
        if (c != '-' && c != ' ') {
            normal.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
        }
    }
    return sha256_hex("tresim-activation-code:" + normal);
}

} // namespace

std::string activation_code_hash(const std::string& code) {
    return code_hash_of(code);
}

std::string confirmation_code_hash(const std::string& code_hash, const std::string& confirmation) {
    return sha256_hex("tresim-confirmation:" + code_hash + ":" + confirmation);
}

struct Service::HelloInput {
    TPM2B_PUBLIC ek{};
    Bytes ek_raw;
    X509Ptr certificate;
    std::vector<X509Ptr> chain;
    TPM2B_PUBLIC ak{};
    Bytes ak_raw;
    TPM2B_PUBLIC srk{};
    Bytes srk_raw;
    std::string device_class;
    std::string mode;
    std::optional<tpm::PcrSelection> selection;
    std::optional<std::string> activation_code;
    std::optional<std::string> confirmation_code;
    bool results_pending = false; // sync: the device holds results for this server
    std::string identity;
};

Service::HelloInput Service::parse_hello(const json& doc, bool sync) {
    HelloInput in;
    if (string_member(doc, "format") != "tresim-hello-1") {
        invalid("format", "must be \"tresim-hello-1\"");
    }
    in.ek = public_member(doc, "ek_public");
    in.ek_raw = tpm::marshal_public(in.ek);
    const Bytes cert = b64_member(doc, "ek_certificate");
    try {
        in.certificate = parse_certificate(cert, "ek_certificate");
    } catch (const InvalidArgument& e) {
        invalid("ek_certificate", "is not a DER X.509 certificate");
    }
    if (const auto it = doc.find("ek_chain"); it != doc.end()) {
        if (!it->is_array()) {
            invalid("ek_chain", "must be an array of base64url DER certificates");
        }
        for (const json& c : *it) {
            if (!c.is_string()) {
                invalid("ek_chain", "must be an array of base64url DER certificates");
            }
            try {
                in.chain.push_back(parse_certificate(
                    protocol::b64url_decode(c.get<std::string>(), "ek_chain"), "ek_chain"));
            } catch (const InvalidArgument&) {
                invalid("ek_chain", "holds something that is not a base64url DER certificate");
            }
        }
    }
    in.ak = public_member(doc, "ak_public");
    in.ak_raw = tpm::marshal_public(in.ak);
    in.srk = public_member(doc, "srk_public");
    in.srk_raw = tpm::marshal_public(in.srk);
    const json& platform = member(doc, "platform", json::value_t::object, "an object");
    in.device_class = optional_string(platform, "class").value_or("");
    in.mode = optional_string(platform, "computation_mode").value_or("sealed");
    if (!te::parse_computation_mode(in.mode)) {
        invalid("platform.computation_mode", "must be tpm-ecb, tpm-cfb or sealed");
    }
    if (const auto sel = optional_string(platform, "pcr_selection")) {
        try {
            in.selection = tpm::parse_pcr_selection(*sel);
        } catch (const InvalidArgument&) {
            invalid("platform.pcr_selection", "is not a PCR selection like sha256:0,2,4,7");
        }
    }
    if (!sync) {
        in.activation_code = optional_string(doc, "activation_code");
        in.confirmation_code = optional_string(doc, "confirmation_code");
    } else if (const auto it = doc.find("results_pending"); it != doc.end()) {
        if (!it->is_boolean()) {
            invalid("results_pending", "must be true or false");
        }
        in.results_pending = it->get<bool>();
    }
    return in;
}

void Service::check_identity(const HelloInput& in) {
    if (!tpm::matches_ek_template(in.ek.publicArea, tpm::EkType::Rsa2048) &&
        !tpm::matches_ek_template(in.ek.publicArea, tpm::EkType::EccP256)) {
        refuse(403, "ek-mismatch", "ek_public is not an EK from the TCG EK credential templates");
    }
    const std::string reason = trust_->verify(in.certificate.get(), in.chain);
    if (!reason.empty()) {
        refuse(403, "unknown-ek-ca",
               "the EK certificate does not chain to a manufacturer CA of this server (" + reason +
                   ")");
    }
    const tpm::EvpPkeyPtr ek_key = tpm::to_evp_pkey(in.ek.publicArea);
    if (tpm::spki_der(X509_get0_pubkey(in.certificate.get())) != tpm::spki_der(ek_key.get())) {
        refuse(403, "ek-mismatch", "the EK certificate certifies another key than ek_public");
    }
    check_ak(in.ak.publicArea);
    check_srk(in.srk.publicArea);
}

Reply Service::hello(std::string_view body) {
    return start_session(body, false);
}

Reply Service::sync(std::string_view body) {
    return start_session(body, true);
}

Reply Service::start_session(std::string_view body, bool sync) {
    const std::lock_guard lock(mutex_);
    const char* event = sync ? "sync" : "hello";
    std::string device;
    try {
        const HelloInput in = parse_hello(parse_body(body), sync);
        device = tpm::te_identity(in.ek.publicArea);
        check_identity(in);

        // The work: an activation code, or pending orders.
        SessionRecord s;
        std::string device_class;
        const std::optional<DeviceRecord> known = store_->device(device);
        if (in.activation_code) {
            s.code_hash = code_hash_of(*in.activation_code);
            auto code = store_->code(s.code_hash);
            if (!code) {
                refuse(404, "unknown-code", "the activation code is not known");
            }
            if (code->state == "used") {
                refuse(409, "code-used", "the activation code has been used");
            }
            if (code->state == "locked") {
                refuse(403, "code-locked",
                       "the activation code is locked after repeated wrong confirmation codes");
            }
            if (!code->confirmation_hash.empty()) {
                const Bytes given = hex_decode(
                    confirmation_code_hash(s.code_hash, in.confirmation_code.value_or("")), "c");
                if (!in.confirmation_code ||
                    !equal_ct(given, hex_decode(code->confirmation_hash, "c"))) {
                    ++code->wrong_confirmations;
                    const bool locked = code->wrong_confirmations >= 3;
                    if (locked) {
                        code->state = "locked";
                    }
                    store_->put_code(*code);
                    refuse(403, "wrong-confirmation",
                           locked ? std::string("wrong confirmation code; the activation code is "
                                                "now locked")
                                  : "wrong confirmation code (" +
                                        std::to_string(3 - code->wrong_confirmations) +
                                        " attempts left)");
                }
            }
            const auto sub = store_->subscription(code->subscription);
            device_class = sub ? sub->device_class : "";
        } else {
            const auto orders = store_->orders_of(device);
            const bool work = std::any_of(orders.begin(), orders.end(), [](const OrderRecord& o) {
                return o.state == "pending" || o.state == "sent";
            });
            // A device with results the PS has not heard (a switch-slot that fell
            // back after its session) gets a session to report them in.
            if (!work && !(sync && in.results_pending)) {
                if (sync) {
                    audit(device, event, "ok", "no pending instructions");
                    return {204, nullptr};
                }
                refuse(404, "no-work", "there is no subscription or order for this device");
            }
            for (const OrderRecord& o : orders) {
                if (o.op == "install" && (o.state == "pending" || o.state == "sent")) {
                    if (const auto sub = store_->subscription(o.subscription)) {
                        device_class = sub->device_class;
                    }
                }
            }
            if (device_class.empty() && known) {
                device_class = known->device_class;
            }
        }
        if (device_class.empty()) {
            device_class = in.device_class;
        }

        // The PCRs to quote: those of the class's newest reference state.
        const auto refs = store_->references(device_class);
        tpm::PcrSelection selection =
            in.selection.value_or(tpm::parse_pcr_selection("sha256:0,2,4,7"));
        if (!refs.empty()) {
            selection = tpm::selection_of(pcrs_from_json(json::parse(refs.front().pcrs), "pcrs"));
        }

        const SecretBytes credential(random_bytes(32));
        const tpm::Credential made =
            tpm::make_credential(in.ek.publicArea, tpm::object_name(in.ak.publicArea), credential);
        s.id = random_id();
        s.device = device;
        s.ek_public = in.ek_raw;
        s.ak_public = in.ak_raw;
        s.srk_public = in.srk_raw;
        s.credential_hash = sha256(credential.view());
        s.nonce = random_bytes(32);
        s.pcr_selection = tpm::format_pcr_selection(selection);
        s.device_class = device_class;
        s.mode = in.mode;
        s.expires = now() + config_.session_lifetime;
        s.state = "hello";
        // The session and its audit record: one commit (one fsync) per request.
        store_->transaction([&] {
            store_->put_session(s);
            audit(device, event, "ok", "session started, class " + device_class);
        });
        return {200,
                {{"session", s.id},
                 {"credential_blob", protocol::b64url_encode(made.credential_blob)},
                 {"secret", protocol::b64url_encode(made.secret)},
                 {"nonce", protocol::b64url_encode(s.nonce)},
                 {"pcr_selection", s.pcr_selection},
                 {"expires", s.expires}}};
    } catch (const ApiError& e) {
        audit(device, event, e.nick(), e.what());
        throw;
    }
}

Reply Service::evidence(std::string_view body) {
    const std::lock_guard lock(mutex_);
    std::string device;
    try {
        const json doc = parse_body(body);
        const std::string id = string_member(doc, "session");
        auto s = store_->session(id);
        if (!s) {
            refuse(404, "unknown-session", "no such session");
        }
        device = s->device;
        if (s->state != "hello") {
            refuse(404, "unknown-session", "the session has already presented its evidence");
        }
        if (now() > s->expires) {
            s->state = "expired";
            store_->put_session(*s);
            refuse(410, "session-expired", "the session expired; start a new one");
        }
        s->state = "evidence"; // one attempt per session
        store_->put_session(*s);

        // 2. The credential: the AK is in the TPM of that EK.
        const Bytes credential = b64_member(doc, "credential");
        if (!equal_ct(sha256(credential), s->credential_hash)) {
            refuse(403, "credential-mismatch",
                   "the credential is not the one made for this EK and AK");
        }

        // 3. The quote.
        const tpm::Attestation quote = attestation_member(doc, "quote");
        const tpm::PcrValues pcrs =
            pcrs_from_json(member(doc, "pcrs", json::value_t::object, "an object"), "pcrs");
        if (tpm::format_pcr_selection(tpm::selection_of(pcrs)) != s->pcr_selection) {
            refuse(403, "bad-quote",
                   "pcrs do not cover exactly the requested selection " + s->pcr_selection,
                   {{"what", "pcr-selection"}});
        }
        const TPM2B_PUBLIC ak = tpm::unmarshal_public(s->ak_public, "ak_public");
        const tpm::EvpPkeyPtr ak_key = tpm::to_evp_pkey(ak.publicArea);
        tpm::AttestExpectations expect;
        expect.qualifying_data = s->nonce;
        TPMS_ATTEST attest{};
        try {
            attest = tpm::verify_quote(quote, ak_key.get(), expect, pcrs);
        } catch (const tpm::AttestationMismatch& e) {
            refuse(403, "bad-quote", std::string("the quote is refused: ") + e.what(),
                   {{"what", e.argument()}});
        } catch (const InvalidArgument& e) {
            refuse(403, "bad-quote", std::string("the quote is malformed: ") + e.what(),
                   {{"what", "malformed"}});
        }
        const std::string ak_name = hex_encode(tpm::object_name(ak.publicArea));
        const auto last = store_->ak_clock(ak_name);
        if (last) {
            // resetCount/restartCount are obfuscated by a per-AK offset (they
            // only compare with the same AK's values): differences mod 2^32.
            const std::uint32_t dreset = attest.clockInfo.resetCount - last->reset_count;
            const std::uint32_t drestart = attest.clockInfo.restartCount - last->restart_count;
            if (dreset >= kHalf) {
                refuse(403, "bad-quote", "the quote's reset count went back",
                       {{"what", "reset-count"}});
            }
            if (dreset == 0 && drestart >= kHalf) {
                refuse(403, "bad-quote", "the quote's restart count went back",
                       {{"what", "restart-count"}});
            }
            // After a TPM reset that was not orderly the clock may lag (safe = NO).
            if (attest.clockInfo.clock < last->clock &&
                !(dreset != 0 && attest.clockInfo.safe == TPM2_NO)) {
                refuse(403, "bad-quote", "the quote's clock went back", {{"what", "clock"}});
            }
        }

        // 4. The SRK certification.
        const tpm::Attestation certification = attestation_member(doc, "srk_certification");
        const TPM2B_PUBLIC srk = tpm::unmarshal_public(s->srk_public, "srk_public");
        try {
            tpm::verify_certify(certification, ak_key.get(), expect,
                                tpm::object_name(srk.publicArea));
        } catch (const InvalidArgument& e) {
            refuse(403, "bad-srk-certification",
                   std::string("the SRK certification is refused: ") + e.what());
        }

        // 5. The event log.
        const Bytes log_bytes = b64_member(doc, "event_log");
        tpm::PcrValues replayed;
        try {
            replayed =
                protocol::replay(protocol::parse_event_log(log_bytes), tpm::selection_of(pcrs));
        } catch (const InvalidArgument& e) {
            refuse(403, "event-log-mismatch", std::string("the event log is refused: ") + e.what(),
                   {{"pcrs", json::array()}});
        }
        if (const auto d = differing(pcrs, replayed); !d.empty()) {
            refuse(403, "event-log-mismatch",
                   "the event log does not replay to the quoted PCR " + list(d), {{"pcrs", d}});
        }

        // 6. The reference states of the class.
        const auto refs = store_->references(s->device_class);
        std::optional<tpm::PcrValues> matched;
        std::string matched_id;
        std::vector<unsigned> closest;
        bool any = false;
        for (const ReferenceRecord& r : refs) {
            const tpm::PcrValues ref = pcrs_from_json(json::parse(r.pcrs), "pcrs");
            if (tpm::format_pcr_selection(tpm::selection_of(ref)) != s->pcr_selection) {
                continue;
            }
            const auto d = differing(ref, pcrs);
            if (d.empty()) {
                matched = ref;
                matched_id = r.id;
                break;
            }
            if (!any || d.size() < closest.size()) {
                closest = d;
                any = true;
            }
        }
        if (!matched) {
            if (!any) {
                refuse(403, "platform-mismatch",
                       "there is no reference state for class \"" + s->device_class + "\"",
                       {{"pcrs", json::array()}});
            }
            refuse(403, "platform-mismatch",
                   std::string(closest.size() == 1 ? "PCR " : "PCRs ") + list(closest) +
                       (closest.size() == 1 ? " differs" : " differ") +
                       " from the reference state of class \"" + s->device_class + "\"",
                   {{"pcrs", closest}});
        }

        // Validated: record it, consume the activation code, issue instructions.
        std::vector<std::string> instructions;
        store_->transaction([&] {
            store_->put_ak_clock({ak_name, attest.clockInfo.clock, attest.clockInfo.resetCount,
                                  attest.clockInfo.restartCount});
            DeviceRecord d = store_->device(device).value_or(DeviceRecord{});
            d.id = device;
            d.device_class = s->device_class;
            d.ek_public = s->ek_public;
            d.ak_public = s->ak_public;
            d.srk_public = s->srk_public;
            d.mode = s->mode;
            d.last_validation = now();
            d.last_result = "validated";
            if (!s->code_hash.empty()) {
                auto code = store_->code(s->code_hash);
                if (!code || code->state != "unused") {
                    refuse(409, "code-used", "the activation code has been used meanwhile");
                }
                code->state = "used";
                code->used_by = device;
                store_->put_code(*code);
                auto sub = store_->subscription(code->subscription);
                if (sub) {
                    sub->device = device;
                    add_history(*sub, "activation code used by " + device);
                    store_->put_subscription(*sub);
                    store_->put_order({random_id(), device, sub->id, "install", "{}", std::nullopt,
                                       "pending", "", now()});
                }
            }
            s->state = "validated";
            s->validation = hex_encode(sha256(quote.attest));
            s->reference = matched_id;
            store_->put_session(*s);
            instructions = issue_instructions(d, *s, matched);
            audit(device, "evidence", "ok",
                  "platform validated against reference " + matched_id + "; " +
                      std::to_string(instructions.size()) + " instruction(s) issued");
        });
        return {200, {{"validated", true}, {"instructions", instructions}}};
    } catch (const ApiError& e) {
        audit(device, "evidence", e.nick(), e.what());
        if (!device.empty()) {
            if (auto d = store_->device(device)) {
                d->last_result = e.nick();
                store_->put_device(*d);
            }
        }
        throw;
    }
}

Reply Service::results(std::string_view body) {
    const std::lock_guard lock(mutex_);
    std::string device;
    try {
        const json doc = parse_body(body);
        auto s = store_->session(string_member(doc, "session"));
        if (!s) {
            refuse(404, "unknown-session", "no such session");
        }
        device = s->device;
        if (s->state != "validated") {
            refuse(404, "unknown-session", "the session has no validated evidence to report on");
        }
        if (now() > s->expires) {
            refuse(410, "session-expired", "the session expired; results are taken again later");
        }
        const std::string text = string_member(doc, "results");
        const tpm::Attestation quote = attestation_member(doc, "quote");
        const TPM2B_PUBLIC ak = tpm::unmarshal_public(s->ak_public, "ak_public");
        const tpm::EvpPkeyPtr ak_key = tpm::to_evp_pkey(ak.publicArea);
        try {
            tpm::verify_signature(quote.attest, quote.signature, ak_key.get());
            const TPMS_ATTEST a = tpm::parse_attest(quote.attest);
            if (a.type != TPM2_ST_ATTEST_QUOTE) {
                throw tpm::AttestationMismatch("type", "is not a quote");
            }
            const Bytes extra(a.extraData.buffer, a.extraData.buffer + a.extraData.size);
            if (extra != sha256(text_view(text))) {
                throw tpm::AttestationMismatch("qualifying-data",
                                               "is not the SHA-256 of the results");
            }
        } catch (const tpm::AttestationMismatch& e) {
            refuse(403, "bad-quote", std::string("the results quote is refused: ") + e.what(),
                   {{"what", e.argument()}});
        } catch (const InvalidArgument& e) {
            refuse(403, "bad-quote", std::string("the results quote is malformed: ") + e.what(),
                   {{"what", "malformed"}});
        }
        json results;
        try {
            results = json::parse(text);
        } catch (const json::exception&) {
            invalid("results", "is not JSON text");
        }
        if (!results.is_array()) {
            invalid("results", "must be the JSON text of an array");
        }
        std::size_t n = 0;
        store_->transaction([&] {
            for (const json& r : results) {
                apply_result(device, r);
                ++n;
            }
            s->state = "done";
            store_->put_session(*s);
            audit(device, "results", "ok", std::to_string(n) + " result(s) accepted");
        });
        return {200, {{"accepted", n}}};
    } catch (const ApiError& e) {
        audit(device, "results", e.nick(), e.what());
        throw;
    }
}

} // namespace tresim::ps
