#include "provision.hpp"

#include <algorithm>
#include <ctime>
#include <fstream>
#include <httplib.h>
#include <map>
#include <sstream>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "config.hpp"
#include "log.hpp"
#include "protocol/base64url.hpp"
#include "protocol/jws.hpp"
#include "te/errors.hpp"
#include "tpm/attest.hpp"
#include "tpm/keys.hpp"

namespace tresim::daemon {
namespace {

using nlohmann::json;

constexpr const char* kInstructionType = "tresim-instruction";

std::string read_text(const std::string& path, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(what + ": " + path + " cannot be read");
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string sha256_hex(ByteView data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("SHA-256 failed");
    }
    return hex_encode(ByteView(md, n));
}

// The id and counter of an instruction that failed a check, read from its
// unverified payload only to name it in the result (never trusted otherwise).
void name_unverified(std::string_view compact, te::InstructionResult& r) {
    try {
        const auto first = compact.find('.');
        const auto second = compact.find('.', first + 1);
        if (first == std::string_view::npos || second == std::string_view::npos) {
            return;
        }
        const Bytes payload =
            protocol::b64url_decode(compact.substr(first + 1, second - first - 1), "payload");
        const json p = json::parse(payload.begin(), payload.end());
        if (p.contains("id") && p.at("id").is_string()) {
            r.id = p.at("id").get<std::string>().substr(0, 128);
        }
        if (p.contains("counter") && p.at("counter").is_number_unsigned()) {
            r.counter = p.at("counter").get<std::uint64_t>();
        }
    } catch (const std::exception&) {
        // Unreadable: the result names no instruction.
    }
}

} // namespace

// ---- the TE policy file ------------------------------------------------------------

TePolicy parse_te_policy(const std::string& text, const std::string& file) {
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::exception& e) {
        throw ConfigError(file + ": is not JSON: " + e.what());
    }
    TePolicy p;
    if (!doc.is_object() || !doc.contains("provisioning")) {
        return p; // no provisioning section: no server, nothing to poll
    }
    const json& prov = doc.at("provisioning");
    const std::string at = file + ": provisioning.";
    try {
        if (!prov.is_object()) {
            throw ConfigError(file + ": provisioning: must be an object");
        }
        for (const auto& [key, value] : prov.items()) {
            (void)value;
            if (key != "servers" && key != "require_validation" && key != "confirm_within" &&
                key != "poll_interval") {
                throw ConfigError(at + key + ": is not a known field");
            }
        }
        if (prov.contains("servers")) {
            std::size_t i = 0;
            for (const json& s : prov.at("servers")) {
                const std::string where = at + "servers[" + std::to_string(i++) + "].";
                ServerTrust t;
                t.url = s.at("url").get<std::string>();
                if (t.url.rfind("https://", 0) != 0) {
                    throw ConfigError(where + "url: must be an https:// URL");
                }
                t.tls_root = s.at("tls_root").get<std::string>();
                (void)read_text(t.tls_root, where + "tls_root");
                for (const json& k : s.at("signing_keys")) {
                    const std::string path = k.get<std::string>();
                    try {
                        t.signing_keys.push_back(tpm::PolicyAuthority::load(path));
                    } catch (const std::exception& e) {
                        throw ConfigError(where + "signing_keys: " + path + ": " + e.what());
                    }
                    t.kids.push_back(protocol::jwk_thumbprint(t.signing_keys.back()));
                }
                if (t.signing_keys.empty()) {
                    throw ConfigError(where + "signing_keys: must name at least one key");
                }
                p.servers.push_back(std::move(t));
            }
        }
        if (prov.contains("require_validation")) {
            p.require_validation.clear();
            for (const json& op : prov.at("require_validation")) {
                p.require_validation.insert(op.get<std::string>());
            }
        }
        if (prov.contains("confirm_within")) {
            p.confirm_within = prov.at("confirm_within").get<unsigned>();
            if (p.confirm_within == 0) {
                throw ConfigError(at + "confirm_within: must be at least 1 second");
            }
        }
        if (prov.contains("poll_interval")) {
            p.poll_interval = prov.at("poll_interval").get<unsigned>();
        }
    } catch (const json::exception& e) {
        throw ConfigError(file + ": provisioning: " + e.what());
    }
    return p;
}

TePolicy load_te_policy(const std::string& path) {
    return parse_te_policy(read_text(path, "te_policy"), path);
}

// ---- checks -------------------------------------------------------------------------

std::vector<CheckedInstruction> check_instructions(const std::vector<std::string>& instructions,
                                                   const CheckContext& context,
                                                   te::TrustedEnvironment& te) {
    std::vector<CheckedInstruction> out;
    std::map<std::string, std::uint64_t> batch_counter; // per kid: the last accepted here
    for (const std::string& compact : instructions) {
        CheckedInstruction c;
        c.server = "unknown";
        c.refusal.status = "refused";
        auto refuse = [&](const std::string& reason, const std::string& message) {
            c.refusal.error = reason;
            c.refusal.message = message;
            out.push_back(c);
        };
        name_unverified(compact, c.refusal);
        if (context.server == nullptr) {
            refuse("unknown-key", "no server is pinned for this session");
            continue;
        }
        protocol::VerifiedJws v;
        try {
            v = protocol::jws_verify(compact, context.server->signing_keys, kInstructionType);
        } catch (const protocol::JwsError& e) {
            refuse(e.reason(), e.what());
            continue;
        } catch (const std::exception& e) {
            refuse("malformed", e.what());
            continue;
        }
        const std::string kid = context.server->kids.at(v.key_index);
        c.server = kid;
        const json& p = v.payload;
        te::Instruction in;
        in.server = kid;
        try {
            in.counter = p.at("counter").get<std::uint64_t>();
            in.id = p.at("id").get<std::string>();
            in.op = p.at("op").get<std::string>();
            in.body = p.value("body", json::object());
            (void)p.at("exp").get<std::int64_t>();
            (void)p.at("device").get<std::string>();
        } catch (const json::exception&) {
            refuse("malformed", "the payload lacks device, counter, exp, id or op, or has one of "
                                "the wrong type");
            continue;
        }
        c.refusal.id = in.id;
        c.refusal.counter = in.counter;
        if (p.at("device").get<std::string>() != context.device) {
            refuse("foreign", "the instruction is for another device");
            continue;
        }
        const auto last = te.provisioning_state(kid);
        const bool resent = last && in.counter == last->counter && in.id == last->id;
        std::uint64_t floor = last ? last->counter : 0;
        if (const auto it = batch_counter.find(kid); it != batch_counter.end()) {
            floor = std::max(floor, it->second);
        }
        if ((in.counter <= floor && !resent) || (resent && batch_counter.contains(kid))) {
            refuse("replayed", "counter " + std::to_string(in.counter) +
                                   " is not greater than the last accepted " +
                                   std::to_string(floor));
            continue;
        }
        if (p.at("exp").get<std::int64_t>() <= context.now) {
            refuse("expired",
                   "the instruction expired at " + std::to_string(p.at("exp").get<std::int64_t>()));
            continue;
        }
        if (context.require_validation.contains(in.op)) {
            const json validation = p.value("validation", json());
            if (context.validation.empty() || !validation.is_string() ||
                validation.get<std::string>() != context.validation) {
                refuse("not-validated", "op " + in.op.substr(0, 40) +
                                            " requires the platform validation of this session");
                continue;
            }
        }
        batch_counter[kid] = std::max(batch_counter[kid], in.counter);
        c.accepted = std::move(in);
        out.push_back(std::move(c));
    }
    return out;
}

std::vector<te::InstructionResult>
process_instructions(const std::vector<std::string>& instructions, const CheckContext& context,
                     te::TrustedEnvironment& te) {
    const std::vector<CheckedInstruction> checked = check_instructions(instructions, context, te);
    std::vector<te::InstructionResult> results;
    for (const CheckedInstruction& c : checked) {
        if (!c.accepted) {
            te.record_refusal(c.server, c.refusal);
            log(LOG_NOTICE,
                "refused an instruction (" + c.refusal.error + "): " + c.refusal.message);
            results.push_back(c.refusal);
            continue;
        }
        te::InstructionResult r = te.execute_instruction(*c.accepted, context.now);
        if (r.status != "ok") {
            log(LOG_WARNING, "instruction " + c.accepted->op + " " + r.status + " (" + r.error +
                                 "): " + r.message);
        } else {
            log(LOG_INFO, "executed instruction " + c.accepted->op + " #" +
                              std::to_string(c.accepted->counter));
        }
        results.push_back(std::move(r));
    }
    return results;
}

// ---- a session ----------------------------------------------------------------------

namespace {

// A refusal or failure that ends the session.
struct SessionError : std::runtime_error {
    SessionError(std::string nick_, const std::string& message, bool refused_ = false)
        : std::runtime_error(message), nick(std::move(nick_)), refused(refused_) {}
    std::string nick;
    bool refused = false; // the server refused (an error reply), not a transport failure
};

struct Url {
    std::string host;
    int port = 443;
    std::string prefix; // path before /v1, without a trailing slash
};

Url parse_url(const std::string& url) {
    Url u;
    std::string rest = url.substr(std::string("https://").size());
    const auto slash = rest.find('/');
    if (slash != std::string::npos) {
        u.prefix = rest.substr(slash);
        while (!u.prefix.empty() && u.prefix.back() == '/') {
            u.prefix.pop_back();
        }
        rest = rest.substr(0, slash);
    }
    const auto colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find(']') == std::string::npos) {
        u.port = std::stoi(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
    }
    u.host = rest;
    return u;
}

class Channel {
public:
    Channel(const ServerTrust& server, unsigned timeout)
        : url_(parse_url(server.url)), client_(url_.host, url_.port) {
        client_.set_ca_cert_path(server.tls_root);
        client_.enable_server_certificate_verification(true);
        SSL_CTX_set_min_proto_version(client_.ssl_context(), TLS1_3_VERSION);
        client_.set_connection_timeout(static_cast<time_t>(timeout), 0);
        client_.set_read_timeout(static_cast<time_t>(timeout), 0);
        client_.set_write_timeout(static_cast<time_t>(timeout), 0);
        // Headers and body go out as two writes: without this every request
        // waits for the peer's delayed ACK (about 40 ms; docs/performance.md).
        client_.set_tcp_nodelay(true);
    }

    // POST; the reply's JSON (an empty object for 204). A non-2xx reply is a
    // SessionError with the PS's nick and message.
    json post(const std::string& path, const json& body, int* status = nullptr) {
        auto res = client_.Post((url_.prefix + path).c_str(), body.dump(), "application/json");
        if (!res) {
            const long verify = client_.get_openssl_verify_result();
            throw SessionError("connection-failed",
                               "POST " + path + ": " + httplib::to_string(res.error()) +
                                   (verify != X509_V_OK
                                        ? std::string(" (certificate: ") +
                                              X509_verify_cert_error_string(verify) + ")"
                                        : std::string()));
        }
        if (status != nullptr) {
            *status = res->status;
        }
        if (res->status == 204) {
            return json::object();
        }
        json reply;
        try {
            reply = json::parse(res->body);
        } catch (const json::exception&) {
            throw SessionError("bad-reply", "POST " + path + ": HTTP " +
                                                std::to_string(res->status) +
                                                " with a body that is not JSON");
        }
        if (res->status < 200 || res->status >= 300) {
            const std::string nick =
                reply.is_object() && reply.contains("error") && reply.at("error").is_string()
                    ? reply.at("error").get<std::string>()
                    : "bad-reply";
            std::string message = reply.is_object() ? reply.value("message", std::string()) : "";
            if (reply.is_object() && reply.contains("pcrs")) {
                message += " (pcrs " + reply.at("pcrs").dump() + ")";
            }
            throw SessionError(
                nick, message.empty() ? "HTTP " + std::to_string(res->status) : message, true);
        }
        if (!reply.is_object()) {
            throw SessionError("bad-reply", "POST " + path + ": the reply is not a JSON object");
        }
        return reply;
    }

private:
    Url url_;
    httplib::SSLClient client_;
};

json attestation_json(const tpm::Attestation& a) {
    return {{"attest", protocol::b64url_encode(a.attest)},
            {"signature", protocol::b64url_encode(a.signature)}};
}

std::string reply_text(const json& reply, const char* field) {
    if (!reply.contains(field) || !reply.at(field).is_string()) {
        throw SessionError("bad-reply", std::string("the reply has no ") + field);
    }
    return reply.at(field).get<std::string>();
}

Bytes reply_b64(const json& reply, const char* field) {
    try {
        return protocol::b64url_decode(reply_text(reply, field), field);
    } catch (const InvalidArgument& e) {
        throw SessionError("bad-reply", e.what());
    }
}

std::string bank_name(TPMI_ALG_HASH bank) {
    switch (bank) {
    case TPM2_ALG_SHA1:
        return "sha1";
    case TPM2_ALG_SHA384:
        return "sha384";
    case TPM2_ALG_SHA512:
        return "sha512";
    default:
        return "sha256";
    }
}

Bytes read_event_log(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return {}; // no log on this platform: the PS decides what that means
    }
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace

SessionOutcome run_session(te::TrustedEnvironment& te, const TePolicy& policy,
                           const ClientOptions& options, const SessionRequest& request,
                           const ProgressFn& progress) {
    SessionOutcome out;
    try {
        const ServerTrust* server = nullptr;
        for (const ServerTrust& s : policy.servers) {
            if (request.server.empty() || s.url == request.server) {
                server = &s;
                break;
            }
        }
        if (server == nullptr) {
            throw SessionError(
                "no-server", request.server.empty()
                                 ? "no provisioning server is configured in the TE policy"
                                 : "server: " + request.server + " is not pinned in the TE policy");
        }
        progress("connecting");
        Channel channel(*server, options.timeout);
        const te::AttestationKeys keys = te.attestation_keys();
        const te::TeInfo info = te.info();
        json hello = {{"format", "tresim-hello-1"},
                      {"ek_public", protocol::b64url_encode(tpm::marshal_public(keys.ek_public))},
                      {"ak_public", protocol::b64url_encode(tpm::marshal_public(keys.ak_public))},
                      {"srk_public", protocol::b64url_encode(tpm::marshal_public(keys.srk_public))},
                      {"platform",
                       {{"class", options.platform_class},
                        {"tpm_manufacturer", info.caps.manufacturer},
                        {"tpm_firmware", info.caps.firmware_text},
                        {"computation_mode", te::to_string(info.milenage_mode)},
                        {"pcr_selection", info.pcr_selection}}}};
        if (keys.ek_certificate) {
            hello["ek_certificate"] = protocol::b64url_encode(*keys.ek_certificate);
        }
        json chain = json::array();
        for (const Bytes& c : keys.ek_chain) {
            chain.push_back(protocol::b64url_encode(c));
        }
        hello["ek_chain"] = chain;
        if (request.sync) {
            // Results the server has not heard (a switch-slot that fell back
            // after its session): the server opens a session for them even
            // when it has no instruction (docs/protocol.md §5).
            for (const te::LateResult& late : te.late_results()) {
                if (std::find(server->kids.begin(), server->kids.end(), late.server) !=
                    server->kids.end()) {
                    hello["results_pending"] = true;
                }
            }
        } else {
            if (!request.activation_code.empty()) {
                hello["activation_code"] = request.activation_code;
            }
            if (!request.confirmation_code.empty()) {
                hello["confirmation_code"] = request.confirmation_code;
            }
        }
        int status = 0;
        const json challenge =
            channel.post(request.sync ? "/v1/device/sync" : "/v1/device/hello", hello, &status);
        if (request.sync && status == 204) {
            out.ok = true;
            out.no_work = true;
            out.message = "the server has no pending instructions";
            return out;
        }

        progress("attesting");
        const std::string session = reply_text(challenge, "session");
        const Bytes nonce = reply_b64(challenge, "nonce");
        tpm::PcrSelection selection;
        try {
            selection = tpm::parse_pcr_selection(reply_text(challenge, "pcr_selection"));
        } catch (const InvalidArgument& e) {
            throw SessionError("bad-reply", e.what());
        }
        const SecretBytes credential = te.activate_credential(
            reply_b64(challenge, "credential_blob"), reply_b64(challenge, "secret"));
        const te::QuoteWithPcrs q = te.quote(nonce, selection);
        const tpm::Attestation srk_cert = te.certify_srk(nonce);
        json values = json::object();
        for (const auto& [pcr, value] : q.pcrs.values) {
            values[std::to_string(pcr)] = hex_encode(value);
        }
        const json evidence = {
            {"session", session},
            {"credential", protocol::b64url_encode(credential.view())},
            {"quote", attestation_json(q.quote)},
            {"srk_certification", attestation_json(srk_cert)},
            {"pcrs", {{"bank", bank_name(q.pcrs.bank)}, {"values", values}}},
            {"event_log", protocol::b64url_encode(read_event_log(options.event_log))}};
        const json verdict = channel.post("/v1/device/evidence", evidence);
        if (!verdict.value("validated", false)) {
            throw SessionError("bad-reply", "the evidence reply does not say validated");
        }
        te.record_platform_validation(server->url, true, "validated",
                                      "the server validated the platform state");
        progress("validated");

        std::vector<std::string> instructions;
        if (verdict.contains("instructions")) {
            for (const json& j : verdict.at("instructions")) {
                if (!j.is_string()) {
                    throw SessionError("bad-reply", "an instruction is not a string");
                }
                instructions.push_back(j.get<std::string>());
            }
        }
        if (!instructions.empty()) {
            progress("installing");
        }
        // Results the server has not acknowledged (lost with a cut connection
        // or a crash, or a fallback after a session): reported first, and an
        // instruction that the server re-sends and that has one is answered
        // with it instead of being executed again.
        const auto ours = [&](const std::string& kid) {
            return std::find(server->kids.begin(), server->kids.end(), kid) != server->kids.end();
        };
        std::vector<te::LateResult> late;
        for (te::LateResult& l : te.late_results()) {
            if (ours(l.server)) {
                late.push_back(std::move(l));
            }
        }
        std::vector<std::string> fresh;
        for (const std::string& compact : instructions) {
            te::InstructionResult named;
            name_unverified(compact, named);
            const bool answered =
                std::any_of(late.begin(), late.end(), [&](const te::LateResult& l) {
                    return l.result.counter == named.counter && l.result.id == named.id;
                });
            if (!answered) {
                fresh.push_back(compact);
            }
        }
        CheckContext context;
        context.server = server;
        context.device = keys.identity;
        context.now = static_cast<std::int64_t>(std::time(nullptr));
        context.require_validation = policy.require_validation;
        context.validation = sha256_hex(q.quote.attest);
        out.results = process_instructions(fresh, context, te);

        json list = json::array();
        for (const te::LateResult& l : late) {
            list.push_back(l.result.to_json());
        }
        bool all_ok = true;
        for (const te::InstructionResult& r : out.results) {
            list.push_back(r.to_json());
            all_ok = all_ok && r.status == "ok";
            for (const std::int64_t m : r.mids) {
                if (std::find(out.mids.begin(), out.mids.end(), m) == out.mids.end()) {
                    out.mids.push_back(m);
                }
            }
        }
        const std::string results = list.dump();
        unsigned char digest[32];
        EVP_Digest(results.data(), results.size(), digest, nullptr, EVP_sha256(), nullptr);
        const te::QuoteWithPcrs rq = te.quote(ByteView(digest, 32), selection);
        (void)channel.post(
            "/v1/device/results",
            {{"session", session}, {"results", results}, {"quote", attestation_json(rq.quote)}});
        // The server has them: forget exactly the results it was sent (a
        // fallback that happened meanwhile stays for the next session).
        for (const te::LateResult& l : te.late_results()) {
            const std::string text = l.result.to_json().dump();
            if (ours(l.server) && std::any_of(list.begin(), list.end(),
                                              [&](const json& j) { return j.dump() == text; })) {
                te.clear_late_result(l.server, l.result.counter);
            }
        }
        out.ok = all_ok;
        if (!all_ok) {
            out.error = "instruction-failed";
            out.message = "an instruction was refused or failed (see the results)";
            for (const te::InstructionResult& r : out.results) {
                if (r.status != "ok") {
                    out.message = r.status + " (" + r.error + "): " + r.message;
                    break;
                }
            }
        } else {
            out.message = std::to_string(out.results.size()) + " instruction(s) executed";
        }
    } catch (const SessionError& e) {
        out.ok = false;
        out.error = e.nick;
        out.message = e.what();
        if (e.refused) {
            // The server's refusal (platform validation, EK, codes) goes into
            // the TE's audit log as well: both sides keep a record of it.
            try {
                te.record_platform_validation(
                    request.server.empty() && !policy.servers.empty() ? policy.servers.front().url
                                                                      : request.server,
                    false, e.nick, std::string("the server refused the session: ") + e.what());
            } catch (const std::exception& a) {
                log(LOG_ERR,
                    std::string("cannot record the refusal in the audit log: ") + a.what());
            }
        }
    } catch (const te::TeError& e) {
        out.ok = false;
        out.error = "te-failure";
        out.message = std::string(te::nick(e.code())) + ": " + e.what();
    } catch (const std::exception& e) {
        out.ok = false;
        out.error = "internal";
        out.message = e.what();
    }
    if (!out.ok) {
        log(LOG_WARNING, "provisioning session: " + out.error + ": " + out.message);
    }
    return out;
}

} // namespace tresim::daemon
