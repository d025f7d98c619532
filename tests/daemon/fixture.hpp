#pragma once
// The shared harness of the tresimd and tresimctl end-to-end tests: a swtpm, a
// private dbus-daemon and the real tresimd on it, the generated proxies, and
// the helpers both suites need (test data from tests/vectors, profiles,
// approvals signed like an authority signs them, a snapshot of the daemon's
// visible state to show that a failed call changed nothing).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sdbus-c++/sdbus-c++.h>

#include "isim_proxy.h"
#include "manager_proxy.h"
#include "mid_proxy.h"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"
#include "usim_proxy.h"

namespace tresim::test {

class Swtpm; // tests/integration/swtpm.hpp

using Blob = std::vector<std::uint8_t>;
using nlohmann::json;

// ---------------------------------------------------------------------------
// Test data and small helpers

// A file of tests/vectors (TRESIM_VECTORS_DIR), parsed.
json vectors(const std::string& file);
// TS 35.208 Milenage test set i (0-based) of milenage.json.
json milenage_set(std::size_t i);

// A valid (Luhn) ICCID and an IMSI for test MID n; distinct for distinct n.
std::string iccid(int n);
std::string imsi(int n);

// A profile (docs/profile-format.md) for MID n with the K, OPc and AMF of `set`.
json profile_json(const json& set, int n, const std::string& label = "daemon test");
Blob json_blob(const json& j);
Blob to_blob(ByteView bytes);

// The network side of AKA for `set`: a software Milenage with its K and OPc.
std::unique_ptr<usim::Milenage> network(const json& set);
// A vector for `sqn` with a fresh RAND and AMF 8000.
usim::AuthVector make_vector(usim::Milenage& net, std::uint64_t sqn);

// fork + execv; the child's pid.
pid_t spawn(const std::vector<std::string>& args);
// Waits for a child; its exit status, or 128 + signal, or -1 after `limit`.
int wait_exit(pid_t pid, std::chrono::milliseconds limit);
std::string env_or(const char* name, const char* fallback);
std::string slurp(const std::string& path);

// The D-Bus error name `f` throws, or "(no error)".
std::string error_name(const std::function<void()>& f);

// ---------------------------------------------------------------------------
// Proxies

class ManagerProxy final : public sdbus::ProxyInterfaces<org::tresim1::Manager_proxy> {
public:
    explicit ManagerProxy(sdbus::IConnection& c)
        : ProxyInterfaces(c, "org.tresim1", "/org/tresim1") {
        registerProxy();
    }
    ~ManagerProxy() { unregisterProxy(); }
};

class MidProxy final
    : public sdbus::ProxyInterfaces<org::tresim1::Mid_proxy, org::tresim1::Usim_proxy> {
public:
    MidProxy(sdbus::IConnection& c, const std::string& path)
        : ProxyInterfaces(c, "org.tresim1", path) {
        registerProxy();
    }
    ~MidProxy() { unregisterProxy(); }
};

class IsimProxy final : public sdbus::ProxyInterfaces<org::tresim1::Isim_proxy> {
public:
    IsimProxy(sdbus::IConnection& c, const std::string& path)
        : ProxyInterfaces(c, "org.tresim1", path) {
        registerProxy();
    }
    ~IsimProxy() { unregisterProxy(); }
};

// Every object of the daemon with its interfaces and their properties, from
// org.freedesktop.DBus.ObjectManager.GetManagedObjects on /org/tresim1.
using ManagedObjects =
    std::map<sdbus::ObjectPath, std::map<std::string, std::map<std::string, sdbus::Variant>>>;
ManagedObjects managed_objects(sdbus::IConnection& c);

// ---------------------------------------------------------------------------
// What a client can see of the daemon's state: every MID's properties (from
// GetManagedObjects) and the audit record's verification. Equal snapshots
// before and after a failed call show that it changed nothing.

struct Snapshot {
    std::map<std::string, std::string> mids; // path -> "Name=value ..." of Mid properties
    bool audit_ok = false;
    std::int64_t audit_records = -1;
    friend bool operator==(const Snapshot&, const Snapshot&) = default;
};
Snapshot snapshot(sdbus::IConnection& c);
std::string describe(const Snapshot& s);

// ---------------------------------------------------------------------------
// The environment: swtpm + dbus-daemon + tresimd with `config` as its
// configuration file. DBUS_SESSION_BUS_ADDRESS points at the private bus (and
// DBUS_SYSTEM_BUS_ADDRESS at nothing) for this process and its children.

struct DaemonOptions {
    std::string config;        // tresimd.conf text
    bool notify_socket = true; // give tresimd NOTIFY_SOCKET and a 0.4 s watchdog
    // The TPM's dictionary-attack maxTries (recovery 1 s); 0 = a lockout that
    // stays for the suite's life after the first failed authorization.
    unsigned da_max_tries = 1000;
};

class TestDaemon {
public:
    explicit TestDaemon(const DaemonOptions& options);
    ~TestDaemon(); // SIGTERM to tresimd, then the bus and swtpm go
    TestDaemon(const TestDaemon&) = delete;
    TestDaemon& operator=(const TestDaemon&) = delete;

    // tresimd took the name org.tresim1 and has not exited since.
    bool alive();
    pid_t pid() const noexcept { return daemon_pid_; }
    const std::string& dir() const noexcept { return dir_; }
    std::string tcti() const;

    // A connection for calls (no event loop) and one with an event loop for signals.
    sdbus::IConnection& calls() { return *calls_; }
    sdbus::IConnection& signals() { return *signals_; }

    // SIGTERM; tresimd's exit status (-1 when it does not stop in 20 s).
    int stop();
    // The sd_notify messages received since the last call, one per line.
    std::string notified();

    // An approval of the current platform state signed with `key`
    // (docs/dbus-api.md "Approval JSON"); auth_value for PIN-protected MIDs.
    json approval(const tpm::PolicyAuthority& key, bool auth_value = false);

private:
    std::string dir_;
    std::unique_ptr<Swtpm> swtpm_;
    int notify_fd_ = -1;
    pid_t bus_pid_ = -1;
    pid_t daemon_pid_ = -1;
    std::unique_ptr<sdbus::IConnection> calls_;
    std::unique_ptr<sdbus::IConnection> signals_;
};

// A gtest fixture with one TestDaemon for the whole suite, configured with
// Traits::config() (tresimd.conf text). Each test leaves with every slot free.
template <typename Traits> class DaemonSuite : public testing::Test {
protected:
    static void SetUpTestSuite() {
        env_ = new TestDaemon(
            DaemonOptions{Traits::config(), Traits::notify_socket, Traits::da_max_tries});
        if (!env_->alive()) {
            FAIL() << "tresimd did not take the name org.tresim1";
        }
    }
    static void TearDownTestSuite() {
        delete env_;
        env_ = nullptr;
    }
    void SetUp() override { ASSERT_TRUE(env_->alive()) << "tresimd is not running"; }
    void TearDown() override {
        if (!env_->alive()) {
            return;
        }
        for (const auto& [path, text] : snapshot(env_->calls()).mids) {
            if (text.find("State=active") != std::string::npos ||
                text.find("State=suspended") != std::string::npos) {
                MidProxy(env_->calls(), path).Deactivate();
            }
        }
    }

    static sdbus::IConnection& calls() { return env_->calls(); }
    static inline TestDaemon* env_ = nullptr;
};

// Runs `calls` in a child process as `uid`/`gid` on its own bus connection;
// what it returns (or "exception: ..."). Needs root.
std::string run_as(uid_t uid, gid_t gid,
                   const std::function<std::string(sdbus::IConnection&)>& calls);

} // namespace tresim::test
