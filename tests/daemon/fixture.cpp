#include "fixture.hpp"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <grp.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <openssl/evp.h>

#include "swtpm.hpp"
#include "te/mid_crypto.hpp"
#include "te/profile.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"

namespace tresim::test {

using namespace std::chrono_literals;

json vectors(const std::string& file) {
    std::ifstream in(env_or("TRESIM_VECTORS_DIR", "tests/vectors") + "/" + file);
    if (!in) {
        throw std::runtime_error("cannot open the test vectors " + file);
    }
    return json::parse(in);
}

json milenage_set(std::size_t i) {
    return vectors("milenage.json").at("milenage").at(i);
}

std::string iccid(int n) {
    const std::string body = "894902000000" + std::to_string(2000000 + n);
    for (char d = '0'; d <= '9'; ++d) {
        if (te::luhn_valid(body + d)) {
            return body + d;
        }
    }
    return body;
}

std::string imsi(int n) {
    return "26201" + std::to_string(1000000000 + n);
}

json profile_json(const json& set, int n, const std::string& label) {
    return json{{"iccid", iccid(n)}, {"imsi", imsi(n)},      {"algorithm", "milenage"},
                {"k", set.at("k")},  {"opc", set.at("opc")}, {"amf", set.value("amf", "8000")},
                {"label", label}};
}

Blob json_blob(const json& j) {
    const std::string text = j.dump();
    return Blob(text.begin(), text.end());
}

Blob to_blob(ByteView bytes) {
    return Blob(bytes.begin(), bytes.end());
}

std::unique_ptr<usim::Milenage> network(const json& set) {
    return usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                    hex_decode(set.at("opc").get<std::string>(), "opc"));
}

usim::AuthVector make_vector(usim::Milenage& net, std::uint64_t sqn) {
    return usim::generate_vector(net, usim::random_rand(), sqn, {0x80, 0x00});
}

pid_t spawn(const std::vector<std::string>& args) {
    const pid_t pid = fork();
    if (pid == 0) {
        std::vector<char*> argv;
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

int wait_exit(pid_t pid, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (std::chrono::steady_clock::now() >= end) {
            return -1;
        }
        std::this_thread::sleep_for(10ms);
    }
}

std::string env_or(const char* name, const char* fallback) {
    const char* p = std::getenv(name);
    return p != nullptr ? p : fallback;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string error_name(const std::function<void()>& f) {
    try {
        f();
    } catch (const sdbus::Error& e) {
        return e.getName();
    }
    return "(no error)";
}

// ---------------------------------------------------------------------------

namespace {

std::string variant_text(const sdbus::Variant& v) {
    const std::string type = v.peekValueType();
    if (type == "s" || type == "o") {
        return v.get<std::string>();
    }
    if (type == "b") {
        return v.get<bool>() ? "true" : "false";
    }
    if (type == "i") {
        return std::to_string(v.get<std::int32_t>());
    }
    if (type == "u") {
        return std::to_string(v.get<std::uint32_t>());
    }
    if (type == "x") {
        return std::to_string(v.get<std::int64_t>());
    }
    if (type == "t") {
        return std::to_string(v.get<std::uint64_t>());
    }
    if (type == "as") {
        std::string out;
        for (const auto& s : v.get<std::vector<std::string>>()) {
            out += (out.empty() ? "" : ",") + s;
        }
        return "[" + out + "]";
    }
    return "(" + type + ")";
}

} // namespace

ManagedObjects managed_objects(sdbus::IConnection& c) {
    auto root = sdbus::createProxy(c, "org.tresim1", "/org/tresim1");
    ManagedObjects objects;
    root->callMethod("GetManagedObjects")
        .onInterface("org.freedesktop.DBus.ObjectManager")
        .storeResultsTo(objects);
    return objects;
}

Snapshot snapshot(sdbus::IConnection& c) {
    Snapshot s;
    for (const auto& [path, interfaces] : managed_objects(c)) {
        std::string text;
        for (const auto& [interface, properties] : interfaces) {
            text += interface + "{";
            for (const auto& [name, value] : properties) {
                text += " " + name + "=" + variant_text(value);
            }
            text += " } ";
        }
        s.mids[path] = text;
    }
    ManagerProxy manager(c);
    const auto [ok, records, message] = manager.AuditVerify();
    s.audit_ok = ok;
    s.audit_records = records;
    return s;
}

std::string describe(const Snapshot& s) {
    std::string out = "audit ok=" + std::string(s.audit_ok ? "true" : "false") +
                      " records=" + std::to_string(s.audit_records) + "\n";
    for (const auto& [path, text] : s.mids) {
        out += path + ": " + text + "\n";
    }
    return out;
}

// ---------------------------------------------------------------------------

namespace {

// The TPM's dictionary-attack parameters, as an installer would set them: the
// PIN tests' wrong guesses must not lock the TPM out for the rest of the suite.
void set_dictionary_attack(const std::string& tcti, unsigned max_tries) {
    tpm::Context ctx(tcti);
    const std::uint32_t recovery = max_tries == 0 ? 3600 : 1;
    tpm::check(Esys_DictionaryAttackParameters(ctx, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD,
                                               ESYS_TR_NONE, ESYS_TR_NONE,
                                               max_tries == 0 ? 1 : max_tries, recovery, recovery),
               "DictionaryAttackParameters");
    tpm::check(Esys_DictionaryAttackLockReset(ctx, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD,
                                              ESYS_TR_NONE, ESYS_TR_NONE),
               "DictionaryAttackLockReset");
}

} // namespace

TestDaemon::TestDaemon(const DaemonOptions& options) {
    dir_ = make_temp_dir("tresim-daemon-");
    swtpm_ = std::make_unique<Swtpm>();
    set_dictionary_attack(swtpm_->tcti(), options.da_max_tries);
    chmod(dir_.c_str(), 0755); // unprivileged callers reach the bus socket
    const std::string socket = dir_ + "/bus";
    std::ofstream(dir_ + "/bus.conf")
        << "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration "
           "1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
           "<busconfig><type>session</type><listen>unix:path="
        << socket
        << "</listen><auth>EXTERNAL</auth><policy context=\"default\">"
           "<allow user=\"*\"/><allow send_destination=\"*\" eavesdrop=\"true\"/>"
           "<allow eavesdrop=\"true\"/>"
           "<allow own=\"*\"/></policy></busconfig>\n";
    bus_pid_ = spawn({"/usr/bin/dbus-daemon", "--config-file=" + dir_ + "/bus.conf", "--nofork",
                      "--nopidfile", "--nosyslog"});
    for (int i = 0; i < 250 && access(socket.c_str(), F_OK) != 0; ++i) {
        std::this_thread::sleep_for(20ms);
    }
    setenv("DBUS_SESSION_BUS_ADDRESS", ("unix:path=" + socket).c_str(), 1);
    // Clients that ask for the system bus must not reach this one (or a real one).
    setenv("DBUS_SYSTEM_BUS_ADDRESS", ("unix:path=" + dir_ + "/no-such-bus").c_str(), 1);
    std::ofstream(dir_ + "/tresimd.conf") << options.config;
    if (options.notify_socket) {
        // sd_notify messages come to this socket; the watchdog wants a ping every 0.2 s.
        notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string notify = dir_ + "/notify";
        std::strncpy(addr.sun_path, notify.c_str(), sizeof addr.sun_path - 1);
        bind(notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        setenv("NOTIFY_SOCKET", notify.c_str(), 1);
        setenv("WATCHDOG_USEC", "400000", 1);
    }
    daemon_pid_ =
        spawn({env_or("TRESIMD", "src/daemon/tresimd"), "--session", "--tcti", swtpm_->tcti(),
               "--state-dir", dir_ + "/state", "--config", dir_ + "/tresimd.conf"});
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    calls_ = sdbus::createSessionBusConnection();
    signals_ = sdbus::createSessionBusConnection();
    signals_->enterEventLoopAsync();
    auto bus = sdbus::createProxy(*calls_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    for (int i = 0; i < 1500; ++i) {
        bool owned = false;
        bus->callMethod("NameHasOwner")
            .onInterface("org.freedesktop.DBus")
            .withArguments(std::string("org.tresim1"))
            .storeResultsTo(owned);
        if (owned) {
            return;
        }
        int status = 0;
        if (waitpid(daemon_pid_, &status, WNOHANG) == daemon_pid_) {
            daemon_pid_ = -1;
            return;
        }
        std::this_thread::sleep_for(20ms);
    }
    kill(daemon_pid_, SIGKILL);
    wait_exit(daemon_pid_, 5s);
    daemon_pid_ = -1;
}

TestDaemon::~TestDaemon() {
    stop();
    if (notify_fd_ >= 0) {
        close(notify_fd_);
    }
    if (signals_) {
        signals_->leaveEventLoop();
    }
    signals_.reset();
    calls_.reset();
    if (bus_pid_ > 0) {
        kill(bus_pid_, SIGTERM);
        wait_exit(bus_pid_, 5s);
    }
    swtpm_.reset();
    remove_tree(dir_);
}

std::string TestDaemon::tcti() const {
    return swtpm_->tcti();
}

bool TestDaemon::alive() {
    if (daemon_pid_ <= 0) {
        return false;
    }
    int status = 0;
    if (waitpid(daemon_pid_, &status, WNOHANG) == daemon_pid_) {
        daemon_pid_ = -1;
        return false;
    }
    return true;
}

int TestDaemon::stop() {
    if (daemon_pid_ <= 0) {
        return -1;
    }
    kill(daemon_pid_, SIGTERM);
    const int status = wait_exit(daemon_pid_, 20s);
    if (status < 0) {
        kill(daemon_pid_, SIGKILL);
        wait_exit(daemon_pid_, 5s);
    }
    daemon_pid_ = -1;
    return status;
}

std::string TestDaemon::notified() {
    std::string all;
    char buf[4096];
    for (ssize_t n; notify_fd_ >= 0 && (n = recv(notify_fd_, buf, sizeof buf, 0)) > 0;) {
        all.append(buf, static_cast<std::size_t>(n)).append("\n");
    }
    return all;
}

json TestDaemon::approval(const tpm::PolicyAuthority& key, bool auth_value) {
    ManagerProxy manager(*calls_);
    tpm::PcrValues pcrs;
    json values = json::object();
    for (const auto& [index, value] : manager.GetPlatformState()) {
        pcrs.values[index] = value;
        values[std::to_string(index)] = hex_encode(value);
    }
    const Bytes policy = te::approved_policy_for(pcrs, auth_value);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    std::size_t len = 0;
    if (EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.pkey()) != 1 ||
        EVP_DigestSign(md.get(), nullptr, &len, policy.data(), policy.size()) != 1) {
        throw std::runtime_error("cannot sign the approval");
    }
    Blob sig(len);
    if (EVP_DigestSign(md.get(), sig.data(), &len, policy.data(), policy.size()) != 1) {
        throw std::runtime_error("cannot sign the approval");
    }
    sig.resize(len);
    return {{"format", "tresim-approval-1"},
            {"authority", key.public_pem()},
            {"pcrs", {{"bank", "sha256"}, {"values", values}}},
            {"auth_value", auth_value},
            {"policy_ref", ""},
            {"signature", hex_encode(sig)}};
}

// ---------------------------------------------------------------------------

std::string run_as(uid_t uid, gid_t gid,
                   const std::function<std::string(sdbus::IConnection&)>& calls) {
    int out[2];
    if (pipe(out) != 0) {
        return "pipe failed";
    }
    const pid_t pid = fork();
    if (pid == 0) {
        close(out[0]);
        std::string report;
        if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
            _exit(2);
        }
        try {
            auto c = sdbus::createSessionBusConnection();
            report = calls(*c);
        } catch (const std::exception& e) {
            report += std::string("exception: ") + e.what() + "\n";
        }
        (void)!write(out[1], report.data(), report.size());
        _exit(0);
    }
    close(out[1]);
    std::string report;
    char buf[512];
    for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) {
        report.append(buf, static_cast<std::size_t>(n));
    }
    close(out[0]);
    if (wait_exit(pid, 20s) != 0) {
        report += "(the child failed)\n";
    }
    return report;
}

} // namespace tresim::test
