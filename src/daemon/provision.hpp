#pragma once
// The daemon's provisioning client (docs/protocol.md): the TE policy file that
// pins the Provisioning Servers, the checks every instruction passes before the
// TE executes it, and one provisioning session (hello or sync, credential
// activation, evidence, instructions, results) over HTTPS.
//
// Nothing here touches D-Bus: a session runs on a worker thread and reports
// its progress through a callback (provision_jobs.hpp puts it on the bus).

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "te/te.hpp"
#include "tpm/policy.hpp"

namespace tresim::daemon {

// ---- the TE policy file ("Trust on the device") -----------------------------

struct ServerTrust {
    std::string url;      // https://host[:port]
    std::string tls_root; // PEM file: the only CA the server's certificate may chain to
    std::vector<tpm::PolicyAuthority> signing_keys;
    std::vector<std::string> kids; // jwk_thumbprint of each signing key
};

struct TePolicy {
    std::vector<ServerTrust> servers;
    std::set<std::string> require_validation = {"install", "update", "policy-update",
                                                "switch-slot"};
    unsigned confirm_within = 600; // seconds
    unsigned poll_interval = 3600; // seconds; 0: no periodic poll
};

// Parses the policy file's text; `file` names it in errors (ConfigError from
// config.hpp, naming the field). Signing keys are PEM files (public keys).
TePolicy parse_te_policy(const std::string& text, const std::string& file);
TePolicy load_te_policy(const std::string& path);

// ---- instruction checks ---------------------------------------------------------

struct CheckContext {
    const ServerTrust* server = nullptr;
    std::string device;   // this TE's identity (hex SHA-256 of the EK's SPKI)
    std::int64_t now = 0; // Unix seconds
    std::set<std::string> require_validation;
    std::string validation; // hex SHA-256 of this session's quote attest bytes; "" = none
};

struct CheckedInstruction {
    std::optional<te::Instruction> accepted;
    te::InstructionResult refusal; // when not accepted: status "refused"
    std::string server;            // the kid (or "unknown") the refusal is recorded under
};

// Verifies each JWS in order: well-formed (malformed), ES256 (unsigned), kid
// pinned for the server (unknown-key), signature (bad-signature), device
// (foreign), counter above the last accepted one of that key and above the
// earlier ones of this batch (replayed; a re-sent instruction with the last
// accepted counter and id passes, the TE answers it with its stored result),
// exp (expired), and validation for the ops that require it (not-validated).
// Reads the counters from `te`; changes nothing.
std::vector<CheckedInstruction> check_instructions(const std::vector<std::string>& instructions,
                                                   const CheckContext& context,
                                                   te::TrustedEnvironment& te);

// check_instructions, then every refusal is recorded in the TE's audit log and
// the accepted instructions are executed in order. One result per instruction.
std::vector<te::InstructionResult>
process_instructions(const std::vector<std::string>& instructions, const CheckContext& context,
                     te::TrustedEnvironment& te);

// ---- a session --------------------------------------------------------------------

struct ClientOptions {
    std::string event_log = "/sys/kernel/security/tpm0/binary_bios_measurements";
    std::string platform_class = "generic";
    unsigned timeout = 30; // seconds per HTTP exchange
};

struct SessionRequest {
    std::string server;            // a URL of the policy's servers; "" = the first
    std::string activation_code;   // empty for a sync
    std::string confirmation_code; // optional
    bool sync = false;             // POST /v1/device/sync instead of hello
};

struct SessionOutcome {
    bool ok = false;
    std::string error;    // a nick: the PS's (unknown-code, platform-mismatch, ...) or the
                          // client's (no-server, connection-failed, bad-reply, te-failure,
                          // instruction-failed)
    std::string message;  // never a secret
    bool no_work = false; // sync: the PS had nothing (204)
    std::vector<std::int64_t> mids; // MIDs the instructions installed or changed
    std::vector<te::InstructionResult> results;
};

// Progress: "connecting", "attesting", "validated", "installing".
using ProgressFn = std::function<void(const std::string& state)>;

// One session against one server. Thread-safe as far as the TE is (its calls
// are serialized by its mutex); blocks on the network.
SessionOutcome run_session(te::TrustedEnvironment& te, const TePolicy& policy,
                           const ClientOptions& options, const SessionRequest& request,
                           const ProgressFn& progress);

} // namespace tresim::daemon
