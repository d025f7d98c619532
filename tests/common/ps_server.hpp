#pragma once
// A real tresim-ps for the tests that play the device against it (tests/ps,
// tests/provision): a development PKI from tools/ps-dev-pki, the server
// started from a copy of it on a free loopback port, and its HTTPS API
// (TLS 1.3, the PKI's CA pinned) for the device and the operator; and what
// the device side shares (measurements with their event log, the JSON of
// attestations and PCR values). No gtest here: failures are exceptions, so
// that benchmarks can use it too.

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <sys/types.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/eventlog.hpp"
#include "tpm/attest.hpp"
#include "tpm/context.hpp"
#include "tpm/policy.hpp"
#include "usim/bytes.hpp"

namespace tresim::test {

using nlohmann::json;

// The value of an environment variable the test needs; throws when unset.
std::string need_env(const char* name);

Bytes sha256(ByteView data);
ByteView view(const std::string& s);

// Measures like a boot: extends the sha256 bank's `pcr` with SHA-256(data)
// and appends the event to `log`.
void measure(tpm::Context& ctx, protocol::EventLog& log, unsigned pcr, std::uint32_t type,
             const std::string& data);

// {"attest": ..., "signature": ...} in base64url, as the device API wants it.
json attestation_json(const tpm::Attestation& a);
// {"bank": "sha256", "values": {"0": hex, ...}}.
json pcrs_json(const std::map<unsigned, Bytes>& values);

// ps-dev-pki's output: CA, server certificate, signing key, ps.conf, and the
// operator token it printed.
struct DevPki {
    std::string dir;
    std::string token;
};

// Runs $PS_DEV_PKI on `dir` (which must not exist yet) with `--port 0` and
// the manufacturer CA files the PS is to trust for EK certificates.
DevPki make_dev_pki(const std::string& dir, const std::vector<std::string>& ek_cas);

struct Response {
    int status = 0;
    json body; // null when the answer had no body
};

// One $TRESIM_PS process on a copy of a DevPki folder.
class PsServer {
public:
    // Copies `pki` to `dir`, lets `tweak` edit its ps.conf and starts the
    // server. `dir` is removed when the server goes away.
    PsServer(const DevPki& pki, std::string dir, const std::function<void(json&)>& tweak = {});
    ~PsServer();
    PsServer(const PsServer&) = delete;
    PsServer& operator=(const PsServer&) = delete;

    // Starts the server; after a stop, again on the same port (devices pin
    // its URL) and state.
    void start();
    // Sends `sig` and waits for the exit (SIGKILL after 10 s).
    void stop(int sig = SIGTERM);

    int port() const noexcept { return port_; }
    std::string url() const { return "https://localhost:" + std::to_string(port_); }
    const std::string& dir() const noexcept { return dir_; }

    // Requests under /v1/operator/ carry the operator token, others none.
    Response post(const std::string& path, const json& body);
    Response get(const std::string& path);

    // ---- the operator API
    json audit();
    // Audit records of `device` with `outcome` (and `event` when not empty).
    std::size_t audited(const std::string& device, const std::string& outcome,
                        const std::string& event = "");
    // Publishes sha256 reference values for a device class; returns their id.
    std::string reference(const std::string& device_class, const std::map<unsigned, Bytes>& pcrs);
    std::string subscription_state(const std::string& id);
    // The key the server signs instructions with.
    tpm::PolicyAuthority signing_key() const;

private:
    Response call(const std::string& method, const std::string& path, const std::string& body);

    std::string dir_;
    std::string token_;
    pid_t pid_ = -1;
    int port_ = 0;
};

} // namespace tresim::test
