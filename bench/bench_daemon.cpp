// tresimd's own cost (issue 4, section 7), measured in one run with swtpm:
//
//  1. the AKA round trip over D-Bus (Usim.Authenticate through a private
//     dbus-daemon to a real tresimd) against the same authentication called
//     in-process (te::TrustedEnvironment::authenticate), each on its own swtpm
//     made from the same manufactured template, with the same profile and
//     configuration. Google Benchmark times both (real time: the work happens
//     in swtpm, tresimd and dbus-daemon); every call is also timed on its own,
//     so the table gives per-call medians and 90th percentiles, the daemon's
//     overhead (median D-Bus - median in-process) and the ratio;
//  2. the start-up time to READY: from fork+exec of tresimd to the READY=1 it
//     sends to NOTIFY_SOCKET (a socket this program listens on), the first
//     start on an empty state folder and the median of the restarts;
//  3. tresimd's memory (/proc/PID/status, smaps_rollup) after the start, with
//     16 MIDs imported, and after the AKAs, and which mappings it is made of
//     (Rss, Pss and private memory per library from /proc/PID/smaps);
//  4. the daemon's own cost without the TPM: swtpm's time per command varies by
//     milliseconds, a hundred times the 0.3 ms goal, so the AKA difference
//     above cannot show it. Usim.Authenticate on an inactive MID goes through
//     everything the daemon does for an AKA (the bus, sdbus-c++'s dispatch, the
//     authorization check, TrustedEnvironment::authenticate, the refresh of the
//     properties, the reply) except the TPM commands, which the TE only sends
//     after its state check; it is timed against the same call in-process on
//     the same state, next to Peer.Ping and Properties.Get (the bus alone). The
//     TPM commands of the in-process calls are counted, and swtpm's CPU time
//     during the D-Bus calls is read, to show that neither touches the TPM.
//
// Runs as any user: the daemon's configuration authorizes this process's UID.
// Exits 77 when swtpm, swtpm_setup or dbus-daemon is missing. Environment:
// TRESIMD (the daemon, default src/daemon/tresimd under the build folder),
// TRESIM_BENCH_PAIRS (the AKA pairs, 100), BENCH_DAEMON_ENV ("NAME=VALUE ..."
// added to tresimd's environment only, to measure a setting's effect on its
// memory).

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <variant>
#include <vector>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <sdbus-c++/sdbus-c++.h>

#include "collecting_reporter.hpp"
#include "manager_proxy.h"
#include "mid_proxy.h"
#include "swtpm.hpp"
#include "te/mid_crypto.hpp"
#include "te/profile.hpp"
#include "te/te.hpp"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"
#include "usim_proxy.h"

namespace {

using namespace tresim;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Blob = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

// TS 35.208 set 1 K and OPc; the values do not matter for cost.
constexpr const char* kK = "465b5ce8b199b49faa5f0a2ee238a6bc";
constexpr const char* kOpc = "cd63cb71954a9f4e48a5994e37a02baf";
constexpr const char* kAmf = "8000";
constexpr unsigned kIndBits = 5;
constexpr int kMids = 16;
constexpr int kStarts = 7; // the first on an empty state folder, then restarts

std::string iccid(int n) {
    const std::string body = "894902000000" + std::to_string(3000000 + n);
    for (char d = '0'; d <= '9'; ++d) {
        if (te::luhn_valid(body + d)) {
            return body + d;
        }
    }
    return body;
}

Blob profile(int n) {
    const std::string text = json{{"iccid", iccid(n)},
                                  {"imsi", "26201" + std::to_string(1000000000 + n)},
                                  {"algorithm", "milenage"},
                                  {"k", kK},
                                  {"opc", kOpc},
                                  {"amf", kAmf},
                                  {"ind_bits", kIndBits},
                                  {"label", "bench " + std::to_string(n)}}
                                 .dump();
    return Blob(text.begin(), text.end());
}

// Any RAND and AUTN for the calls that are refused before they are looked at.
constexpr usim::Rand kRand{};
const Blob kAutn(16, 0);

// The network side: a fresh vector per call (SEQ + 1, IND 0).
struct Network {
    std::unique_ptr<usim::AkaAlgorithm> sw =
        usim::Milenage::software(hex_decode(kK, "k"), hex_decode(kOpc, "opc"));
    std::uint64_t seq = 0;
    usim::AuthVector next(const usim::Rand& rand) {
        ++seq;
        return usim::generate_vector(*sw, rand, seq << kIndBits, hex_decode_array<2>(kAmf, "amf"));
    }
};

// The q-quantile (nearest rank) of `v`.
double quantile(std::vector<double> v, double q) {
    if (v.empty()) {
        return 0;
    }
    const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

double median_of(std::vector<double> v) {
    return quantile(std::move(v), 0.5);
}

double thread_cpu_us() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// One call: its wall time and the CPU time of the calling thread, µs.
struct Call {
    double wall = 0;
    double cpu = 0;
};

struct Stopwatch {
    Clock::time_point t0 = Clock::now();
    double cpu0 = thread_cpu_us();
    Call stop() const {
        return {std::chrono::duration<double, std::micro>(Clock::now() - t0).count(),
                thread_cpu_us() - cpu0};
    }
};

// ---- In-process --------------------------------------------------------------------

struct InProcess {
    test::Swtpm swtpm;
    std::string dir = test::make_temp_dir("tresim-bench-daemon-te-");
    tpm::PolicyAuthority authority = tpm::PolicyAuthority::generate();
    std::unique_ptr<te::TrustedEnvironment> te;
    std::int64_t index = 0;
    std::int64_t inactive = 0; // another of the 16, never activated
    Network network;

    InProcess() {
        te::TeConfig config; // the daemon's defaults
        config.state_dir = dir + "/state";
        config.tcti = swtpm.tcti();
        te = std::make_unique<te::TrustedEnvironment>(config);
        te->add_approval(te::approve(authority, te->current_pcrs(), false, {}));
        for (int n = kMids; n >= 1; --n) { // as many MIDs as the daemon holds
            index = te->import_profile(profile(n), authority.tpm_public());
            if (n == 2) {
                inactive = index;
            }
        }
        te->activate(index, 0);
    }
    ~InProcess() {
        te.reset();
        test::remove_tree(dir);
    }
    InProcess(const InProcess&) = delete;
    InProcess& operator=(const InProcess&) = delete;

    // One AKA with a fresh vector (made before the clocks start).
    Call one() {
        const usim::Rand rand = usim::random_rand();
        const usim::AuthVector v = network.next(rand);
        const Stopwatch watch;
        const usim::AkaResult r = te->authenticate(index, rand, v.autn);
        Call c = watch.stop();
        if (!std::holds_alternative<usim::AkaSuccess>(r)) {
            throw std::runtime_error("the TE refused a fresh vector");
        }
        return c;
    }

    // The AKA on the inactive MID: the TE refuses it after reading the MID's
    // record, before any TPM command (the same call tresimd makes).
    Call refused() {
        const Stopwatch watch;
        try {
            te->authenticate(inactive, kRand, kAutn);
        } catch (const te::TeError& e) {
            Call c = watch.stop();
            if (e.code() != te::ErrorCode::IllegalTransition) {
                throw;
            }
            return c;
        }
        throw std::runtime_error("the TE authenticated with an inactive MID");
    }

    std::uint64_t tpm_commands() const { return te->counts().commands; }

    void bench(benchmark::State& state) {
        for (auto _ : state) {
            state.PauseTiming();
            const usim::Rand rand = usim::random_rand();
            const usim::AuthVector v = network.next(rand);
            state.ResumeTiming();
            if (!std::holds_alternative<usim::AkaSuccess>(te->authenticate(index, rand, v.autn))) {
                state.SkipWithError("the TE refused a fresh vector");
                break;
            }
        }
    }
};

// ---- tresimd on a private bus -----------------------------------------------------------

class ManagerProxy final : public sdbus::ProxyInterfaces<org::tresim1::Manager_proxy> {
public:
    explicit ManagerProxy(sdbus::IConnection& c)
        : ProxyInterfaces(c, "org.tresim1", "/org/tresim1") {
        registerProxy();
    }
    ~ManagerProxy() { unregisterProxy(); }
};

class MidProxy final : public sdbus::ProxyInterfaces<org::tresim1::Mid_proxy,
                                                     org::tresim1::Usim_proxy, sdbus::Peer_proxy> {
public:
    MidProxy(sdbus::IConnection& c, const std::string& path)
        : ProxyInterfaces(c, "org.tresim1", path) {
        registerProxy();
    }
    ~MidProxy() { unregisterProxy(); }
};

// Starts `args`, with `env` ("NAME=VALUE" words separated by spaces) added to
// the child's environment.
pid_t spawn(const std::vector<std::string>& args, const std::string& env = {}) {
    std::vector<std::string> words;
    std::istringstream in(env);
    for (std::string w; in >> w;) {
        words.push_back(w);
    }
    const pid_t pid = fork();
    if (pid == 0) {
        for (auto& w : words) {
            putenv(w.data());
        }
        std::vector<char*> argv;
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    if (pid < 0) {
        throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    return pid;
}

int stop(pid_t pid) {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// "VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads" (kB, or a count) of /proc/PID/status.
std::map<std::string, long> proc_status(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::map<std::string, long> out;
    std::string line;
    while (std::getline(in, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) {
            continue;
        }
        const std::string key = line.substr(0, colon);
        if (key == "VmRSS" || key == "VmHWM" || key == "RssAnon" || key == "RssFile" ||
            key == "RssShmem" || key == "Threads" || key == "VmLck") {
            out[key] = std::strtol(line.c_str() + colon + 1, nullptr, 10);
        }
    }
    return out;
}

// The CPU time a process (all its threads) has run, µs (/proc/PID/schedstat
// of each task: nanosecond resolution, unlike utime/stime).
double cpu_us(pid_t pid) {
    double total = 0;
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
        std::ifstream in(task.path() / "schedstat");
        unsigned long long ns = 0;
        if (in >> ns) {
            total += static_cast<double>(ns) / 1e3;
        }
    }
    return total;
}

// /proc/PID/smaps_rollup: the whole process (kB).
std::map<std::string, long> smaps_rollup(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
    std::map<std::string, long> out;
    std::string line;
    while (std::getline(in, line)) {
        const auto colon = line.find(':');
        if (colon != std::string::npos && line.find("kB") != std::string::npos) {
            out[line.substr(0, colon)] = std::strtol(line.c_str() + colon + 1, nullptr, 10);
        }
    }
    return out;
}

// One mapped file (all its mappings) or kind of anonymous memory, kB.
struct Mapping {
    std::string name;
    long rss = 0;
    long pss = 0;
    long priv = 0; // Private_Clean + Private_Dirty
    long text = 0; // Rss of the executable mappings
};

// /proc/PID/smaps summed per file, the largest Rss first.
std::vector<Mapping> smaps(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
    std::map<std::string, Mapping> by_name;
    std::string line;
    Mapping* m = nullptr;
    bool exec = false;
    while (std::getline(in, line)) {
        if (line.empty()) {
            continue;
        }
        if (std::isxdigit(static_cast<unsigned char>(line[0])) != 0 &&
            line.find('-') < line.find(' ')) { // a mapping's header: "start-end perms ... path"
            std::istringstream fields(line);
            std::string perms;
            std::string skip;
            std::string name;
            fields >> skip >> perms >> skip >> skip >> skip;
            std::getline(fields >> std::ws, name);
            if (name.empty()) {
                name = "[anonymous]";
            }
            name = name.substr(name.rfind('/') + 1);
            m = &by_name[name];
            m->name = name;
            exec = perms.size() > 2 && perms[2] == 'x';
            continue;
        }
        if (m == nullptr) {
            continue;
        }
        const long kb = std::strtol(line.c_str() + line.find(':') + 1, nullptr, 10);
        if (line.rfind("Rss:", 0) == 0) {
            m->rss += kb;
            if (exec) {
                m->text += kb;
            }
        } else if (line.rfind("Pss:", 0) == 0) {
            m->pss += kb;
        } else if (line.rfind("Private_Clean:", 0) == 0 || line.rfind("Private_Dirty:", 0) == 0) {
            m->priv += kb;
        }
    }
    std::vector<Mapping> out;
    for (auto& [name, mapping] : by_name) {
        out.push_back(mapping);
    }
    std::sort(out.begin(), out.end(),
              [](const Mapping& a, const Mapping& b) { return a.rss > b.rss; });
    return out;
}

// A child process stopped with SIGTERM when this goes (also when a constructor
// that holds it throws).
struct Child {
    pid_t pid = -1;
    Child() = default;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() {
        if (pid > 0) {
            stop(pid);
        }
    }
};

struct Fd {
    int fd = -1;
    Fd() = default;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0) {
            close(fd);
        }
    }
};

struct TempDir {
    std::string path;
    explicit TempDir(const std::string& prefix) : path(test::make_temp_dir(prefix)) {}
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() { test::remove_tree(path); }
};

struct OverDbus {
    TempDir temp{"tresim-bench-daemon-"};
    const std::string& dir = temp.path;
    test::Swtpm swtpm;
    std::string tresimd;
    Child bus;
    Child daemon;
    Fd notify;
    std::unique_ptr<sdbus::IConnection> calls;
    std::unique_ptr<MidProxy> mid;
    std::unique_ptr<MidProxy> inactive; // another of the 16, never activated
    tpm::PolicyAuthority authority = tpm::PolicyAuthority::generate();
    Network network;

    explicit OverDbus(std::string program) : tresimd(std::move(program)) {
        const std::string socket = dir + "/bus";
        std::ofstream(dir + "/bus.conf")
            << "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration "
               "1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
               "<busconfig><type>session</type><listen>unix:path="
            << socket
            << "</listen><auth>EXTERNAL</auth><policy context=\"default\">"
               "<allow user=\"*\"/><allow send_destination=\"*\" eavesdrop=\"true\"/>"
               "<allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n";
        bus.pid = spawn({"/usr/bin/dbus-daemon", "--config-file=" + dir + "/bus.conf", "--nofork",
                         "--nopidfile", "--nosyslog"});
        for (int i = 0; i < 250 && access(socket.c_str(), F_OK) != 0; ++i) {
            std::this_thread::sleep_for(20ms);
        }
        setenv("DBUS_SESSION_BUS_ADDRESS", ("unix:path=" + socket).c_str(), 1);
        const std::string uid = std::to_string(getuid());
        std::ofstream(dir + "/tresimd.conf")
            << "[authorization]\npolkit = no\nauthenticate = uid:" << uid
            << "\nmanage = uid:" << uid << "\n";
        notify.fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = dir + "/notify";
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        if (bind(notify.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            throw std::runtime_error("cannot bind the notify socket " + path);
        }
        calls = sdbus::createSessionBusConnection();
    }
    ~OverDbus() {
        inactive.reset();
        mid.reset();
        calls.reset();
    }
    OverDbus(const OverDbus&) = delete;
    OverDbus& operator=(const OverDbus&) = delete;

    // Starts tresimd and returns the time from fork to READY=1 (ms).
    double start() {
        setenv("NOTIFY_SOCKET", (dir + "/notify").c_str(), 1);
        const auto t0 = Clock::now();
        const char* env = std::getenv("BENCH_DAEMON_ENV");
        daemon.pid = spawn({tresimd, "--session", "--tcti", swtpm.tcti(), "--state-dir",
                            dir + "/state", "--config", dir + "/tresimd.conf"},
                           env != nullptr ? env : "");
        unsetenv("NOTIFY_SOCKET");
        char buf[4096];
        while (Clock::now() - t0 < 60s) {
            pollfd fd{notify.fd, POLLIN, 0};
            if (poll(&fd, 1, 100) > 0) {
                const ssize_t n = recv(notify.fd, buf, sizeof buf - 1, 0);
                if (n > 0 && std::string(buf, static_cast<std::size_t>(n)).find("READY=1") !=
                                 std::string::npos) {
                    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
                }
            }
            int status = 0;
            if (waitpid(daemon.pid, &status, WNOHANG) == daemon.pid) {
                daemon.pid = -1;
                throw std::runtime_error("tresimd exited before READY=1 (status " +
                                         std::to_string(status) + ")");
            }
        }
        throw std::runtime_error("tresimd sent no READY=1 in 60 s");
    }

    void restart_daemon() {
        if (const int rc = stop(daemon.pid); rc != 0) {
            throw std::runtime_error("tresimd exited with " + std::to_string(rc) + " on SIGTERM");
        }
        daemon.pid = -1;
    }

    std::string approval(ManagerProxy& manager) {
        tpm::PcrValues pcrs;
        json values = json::object();
        for (const auto& [index, value] : manager.GetPlatformState()) {
            pcrs.values[index] = value;
            values[std::to_string(index)] = hex_encode(value);
        }
        const Bytes policy = te::approved_policy_for(pcrs, false);
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                                   EVP_MD_CTX_free);
        std::size_t len = 0;
        if (EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, authority.pkey()) != 1 ||
            EVP_DigestSign(md.get(), nullptr, &len, policy.data(), policy.size()) != 1) {
            throw std::runtime_error("cannot sign the approval");
        }
        Bytes sig(len);
        EVP_DigestSign(md.get(), sig.data(), &len, policy.data(), policy.size());
        sig.resize(len);
        return json{{"format", "tresim-approval-1"},
                    {"authority", authority.public_pem()},
                    {"pcrs", {{"bank", "sha256"}, {"values", values}}},
                    {"auth_value", false},
                    {"policy_ref", ""},
                    {"signature", hex_encode(sig)}}
            .dump();
    }

    // Imports kMids MIDs and activates the first in slot 0.
    void import_mids() {
        ManagerProxy manager(*calls);
        const std::string a = approval(manager);
        std::string first;
        std::string second;
        for (int n = 1; n <= kMids; ++n) {
            const std::string path = manager.ImportMid(profile(n), a);
            if (n == 1) {
                first = path;
            } else if (n == 2) {
                second = path;
            }
        }
        mid = std::make_unique<MidProxy>(*calls, first);
        mid->Activate(0);
        inactive = std::make_unique<MidProxy>(*calls, second);
    }

    // Usim.Authenticate on the inactive MID: all of the daemon's work for an
    // AKA but the TPM commands; the reply is org.tresim1.Error.IllegalTransition.
    Call refused() {
        const Stopwatch watch;
        try {
            inactive->Authenticate(Blob(kRand.begin(), kRand.end()), kAutn);
        } catch (const sdbus::Error& e) {
            Call c = watch.stop();
            if (e.getName() != "org.tresim1.Error.IllegalTransition") {
                throw;
            }
            return c;
        }
        throw std::runtime_error("tresimd authenticated with an inactive MID");
    }

    // Properties.Get (Mid.State): the bus and sdbus-c++'s dispatch in tresimd.
    Call get() {
        const Stopwatch watch;
        benchmark::DoNotOptimize(inactive->State());
        return watch.stop();
    }

    // org.freedesktop.DBus.Peer.Ping, which libsystemd's sd-bus answers inside
    // tresimd without calling sdbus-c++ or tresim code: the bus alone.
    Call ping() {
        const Stopwatch watch;
        inactive->Ping();
        return watch.stop();
    }

    Call one() {
        const usim::Rand rand = usim::random_rand();
        const usim::AuthVector v = network.next(rand);
        const Blob rand_blob(rand.begin(), rand.end());
        const Blob autn(v.autn.data(), v.autn.data() + v.autn.size());
        const Stopwatch watch;
        const auto r = mid->Authenticate(rand_blob, autn);
        Call c = watch.stop();
        if (std::get<0>(r) != "success") {
            throw std::runtime_error("tresimd refused a fresh vector: " + std::get<0>(r));
        }
        return c;
    }

    void bench(benchmark::State& state) {
        for (auto _ : state) {
            state.PauseTiming();
            const usim::Rand rand = usim::random_rand();
            const usim::AuthVector v = network.next(rand);
            const Blob rand_blob(rand.begin(), rand.end());
            const Blob autn(v.autn.data(), v.autn.data() + v.autn.size());
            state.ResumeTiming();
            if (std::get<0>(mid->Authenticate(rand_blob, autn)) != "success") {
                state.SkipWithError("tresimd refused a fresh vector");
                break;
            }
        }
    }

    // The bus and the daemon's dispatch without the TPM: Properties.Get of a
    // MID property.
    void bench_property(benchmark::State& state) {
        for (auto _ : state) {
            benchmark::DoNotOptimize(mid->State());
        }
    }
};

// ---- Reporting ----------------------------------------------------------------------------

std::string cell(std::optional<double> v, int decimals) {
    if (!v) {
        return "n/a";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, *v);
    return buf;
}

std::string memory_row(const char* when, const std::map<std::string, long>& m) {
    auto kb = [&](const char* key) {
        const auto it = m.find(key);
        return it == m.end() ? std::string("n/a") : std::to_string(it->second);
    };
    char buf[256];
    const auto rss = m.find("VmRSS");
    std::snprintf(
        buf, sizeof buf, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", when, kb("VmRSS").c_str(),
        rss == m.end() ? "n/a" : cell(rss->second / 1024.0, 2).c_str(), kb("RssAnon").c_str(),
        kb("RssFile").c_str(), kb("VmHWM").c_str(), kb("VmLck").c_str(), kb("Threads").c_str());
    return buf;
}

std::string tresimd_path() {
    const char* p = std::getenv("TRESIMD");
    return p != nullptr && *p != '\0' ? p : "src/daemon/tresimd";
}

// Pairs of AKAs, one in-process and one over D-Bus, alternating which goes
// first, so that both see the same load on a shared machine.
struct Paired {
    std::vector<double> local_wall, bus_wall, diff, local_cpu, client_cpu;
    std::vector<double> daemon_call_cpu; // tresimd's CPU time during each D-Bus AKA
    double daemon_cpu = 0;               // tresimd, µs per D-Bus AKA
    double bus_cpu = 0;                  // dbus-daemon, µs per D-Bus AKA
};

double mean_of(const std::vector<double>& v) {
    double sum = 0;
    for (const double x : v) {
        sum += x;
    }
    return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

Paired run_pairs(InProcess& local, OverDbus& remote, int pairs) {
    Paired p;
    const double daemon0 = cpu_us(remote.daemon.pid);
    const double bus0 = cpu_us(remote.bus.pid);
    for (int i = 0; i < pairs; ++i) {
        Call a;
        Call b;
        double daemon_before = 0;
        double daemon_after = 0;
        auto over_bus = [&] {
            daemon_before = cpu_us(remote.daemon.pid);
            b = remote.one();
            daemon_after = cpu_us(remote.daemon.pid);
        };
        if (i % 2 == 0) {
            a = local.one();
            over_bus();
        } else {
            over_bus();
            a = local.one();
        }
        p.daemon_call_cpu.push_back(daemon_after - daemon_before);
        p.local_wall.push_back(a.wall);
        p.local_cpu.push_back(a.cpu);
        p.bus_wall.push_back(b.wall);
        p.client_cpu.push_back(b.cpu);
        p.diff.push_back(b.wall - a.wall);
    }
    p.daemon_cpu = (cpu_us(remote.daemon.pid) - daemon0) / pairs;
    p.bus_cpu = (cpu_us(remote.bus.pid) - bus0) / pairs;
    return p;
}

// The pid of this process's child whose command line holds `needle` (swtpm,
// which test::Swtpm starts), or -1.
pid_t child_with(const std::string& needle) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = entry.path().filename();
        if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) == 0) {
            continue;
        }
        std::ifstream stat(entry.path() / "stat");
        std::string line;
        std::getline(stat, line);
        const auto close = line.rfind(')');
        if (close == std::string::npos) {
            continue;
        }
        std::istringstream fields(line.substr(close + 2));
        std::string state;
        long ppid = 0;
        fields >> state >> ppid;
        if (ppid != getpid()) {
            continue;
        }
        std::ifstream cmd(entry.path() / "cmdline");
        std::string args; // the arguments separated by NULs, without a newline
        std::getline(cmd, args);
        if (args.find(needle) != std::string::npos) {
            return static_cast<pid_t>(std::stol(name));
        }
    }
    return -1;
}

// The daemon's own cost without the TPM. Each repetition runs a block of
// calls of every kind (in a rotating order, so that all see the same load);
// the CPU time of tresimd, dbus-daemon and swtpm is read around each block.
enum Kind { kLocalRefused, kBusRefused, kBusGet, kBusPing, kKinds };
constexpr const char* kKindName[kKinds] = {
    "in-process TrustedEnvironment::authenticate, inactive MID",
    "D-Bus Usim.Authenticate to tresimd, inactive MID",
    "D-Bus Properties.Get (Mid.State)",
    "D-Bus Peer.Ping (answered by sd-bus in tresimd)",
};

struct Cheap {
    int repetitions = 0;
    int block = 0;
    std::vector<double> wall[kKinds];       // every call, µs
    std::vector<double> client_cpu[kKinds]; // every call, the calling thread, µs
    std::vector<double> rep_median[kKinds]; // the median of each repetition's block
    double daemon_cpu[kKinds] = {};         // tresimd, µs per call (mean)
    double bus_cpu[kKinds] = {};            // dbus-daemon, µs per call (mean)
    double swtpm_cpu[kKinds] = {};          // tresimd's swtpm, µs over all the calls
    std::uint64_t tpm_commands = 0;         // sent by the in-process TE meanwhile
};

Cheap run_cheap(InProcess& local, OverDbus& remote, int repetitions, int block) {
    Cheap c;
    c.repetitions = repetitions;
    c.block = block;
    const pid_t swtpm = child_with(remote.swtpm.state_dir() + "/tpm");
    if (swtpm < 0) {
        throw std::runtime_error("cannot find tresimd's swtpm");
    }
    const std::uint64_t commands0 = local.tpm_commands();
    for (int r = 0; r < repetitions; ++r) {
        for (int k = 0; k < kKinds; ++k) {
            const auto kind = static_cast<Kind>((k + r) % kKinds);
            const double daemon0 = cpu_us(remote.daemon.pid);
            const double bus0 = cpu_us(remote.bus.pid);
            const double swtpm0 = cpu_us(swtpm);
            std::vector<double> walls;
            for (int i = 0; i < block; ++i) {
                Call call;
                switch (kind) {
                case kLocalRefused:
                    call = local.refused();
                    break;
                case kBusRefused:
                    call = remote.refused();
                    break;
                case kBusGet:
                    call = remote.get();
                    break;
                default:
                    call = remote.ping();
                    break;
                }
                walls.push_back(call.wall);
                c.client_cpu[kind].push_back(call.cpu);
            }
            const double calls = static_cast<double>(repetitions) * block;
            c.daemon_cpu[kind] += (cpu_us(remote.daemon.pid) - daemon0) / calls;
            c.bus_cpu[kind] += (cpu_us(remote.bus.pid) - bus0) / calls;
            c.swtpm_cpu[kind] += cpu_us(swtpm) - swtpm0;
            c.rep_median[kind].push_back(median_of(walls));
            c.wall[kind].insert(c.wall[kind].end(), walls.begin(), walls.end());
        }
    }
    // What tresimd's refresh after each call asks the TE, counted here as well.
    local.te->info();
    local.te->get(local.inactive);
    local.te->pin_verified(local.inactive);
    c.tpm_commands = local.tpm_commands() - commands0;
    return c;
}

int run(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    if (access(tresimd_path().c_str(), X_OK) != 0) {
        std::fprintf(stderr, "bench_daemon: no tresimd at %s (set TRESIMD)\n",
                     tresimd_path().c_str());
        return 1;
    }
    int pairs = 100;
    if (const char* env = std::getenv("TRESIM_BENCH_PAIRS"); env != nullptr) {
        pairs = std::max(1, std::atoi(env));
    }

    // The daemon first: start-up times while nothing else of this run works.
    OverDbus remote(tresimd_path());
    std::vector<double> starts;
    for (int i = 0; i < kStarts; ++i) {
        starts.push_back(remote.start());
        if (i + 1 < kStarts) {
            remote.restart_daemon();
        }
    }
    std::this_thread::sleep_for(200ms);
    const auto at_start = proc_status(remote.daemon.pid);
    const auto rollup_start = smaps_rollup(remote.daemon.pid);
    remote.import_mids();
    std::this_thread::sleep_for(200ms);
    const auto with_mids = proc_status(remote.daemon.pid);
    const auto rollup_mids = smaps_rollup(remote.daemon.pid);
    const std::vector<Mapping> maps = smaps(remote.daemon.pid);

    InProcess local;
    const std::string mode = te::to_string(local.te->get(local.index).mode);
    for (int warm = 0; warm < 3; ++warm) {
        local.one();
        remote.one();
    }
    for (int warm = 0; warm < 50; ++warm) {
        local.refused();
        remote.refused();
        remote.get();
        remote.ping();
    }
    const Cheap cheap = run_cheap(local, remote, 5, 400);
    const Paired paired = run_pairs(local, remote, pairs);

    benchmark::RegisterBenchmark("BM_InProcessAuthenticate",
                                 [&local](benchmark::State& s) { local.bench(s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_DbusAuthenticate",
                                 [&remote](benchmark::State& s) { remote.bench(s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_InProcessRefusedAuthenticate",
                                 [&local](benchmark::State& s) {
                                     for (auto _ : s) {
                                         local.refused();
                                     }
                                 })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_DbusRefusedAuthenticate",
                                 [&remote](benchmark::State& s) {
                                     for (auto _ : s) {
                                         remote.refused();
                                     }
                                 })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_DbusPropertyGet",
                                 [&remote](benchmark::State& s) { remote.bench_property(s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_DbusPeerPing",
                                 [&remote](benchmark::State& s) {
                                     for (auto _ : s) {
                                         remote.ping();
                                     }
                                 })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    tresim::bench::CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    std::fflush(stdout);
    const auto after_akas = proc_status(remote.daemon.pid);
    const auto rollup_after = smaps_rollup(remote.daemon.pid);

    // 1. The daemon's own cost without the TPM.
    std::printf("\nThe daemon's cost without the TPM, µs per call: %d repetitions of %d calls "
                "of each kind (wall time; CPU time per call)\n\n"
                "| call | median | repetitions' medians | p10 | p90 | CPU caller (median) | "
                "CPU tresimd | CPU dbus-daemon |\n|---|---:|---|---:|---:|---:|---:|---:|\n",
                cheap.repetitions, cheap.block);
    double med[kKinds];
    for (int k = 0; k < kKinds; ++k) {
        med[k] = median_of(cheap.rep_median[k]);
        std::string reps;
        for (const double m : cheap.rep_median[k]) {
            reps += (reps.empty() ? "" : ", ") + cell(m, 0);
        }
        std::printf("| %s | %.0f | %s | %.0f | %.0f | %.0f | %s | %s |\n", kKindName[k], med[k],
                    reps.c_str(), quantile(cheap.wall[k], 0.1), quantile(cheap.wall[k], 0.9),
                    median_of(cheap.client_cpu[k]),
                    k == kLocalRefused ? "-" : cell(cheap.daemon_cpu[k], 1).c_str(),
                    k == kLocalRefused ? "-" : cell(cheap.bus_cpu[k], 1).c_str());
    }
    std::vector<double> overheads;
    for (int r = 0; r < cheap.repetitions; ++r) {
        overheads.push_back(cheap.rep_median[kBusRefused][static_cast<std::size_t>(r)] -
                            cheap.rep_median[kLocalRefused][static_cast<std::size_t>(r)]);
    }
    const double overhead = median_of(overheads);
    const double worst = *std::max_element(overheads.begin(), overheads.end());
    std::printf(
        "\ndaemon overhead per call (D-Bus median - in-process median of the same refused "
        "AKA): %.0f µs, the worst repetition %.0f µs; goal < 300 µs: %s\n"
        "of which the bus round trip (Peer.Ping) %.0f µs, sdbus-c++'s property dispatch "
        "(Get - Ping) %.0f µs, tresimd's method work (refused Authenticate - Get) %.0f µs\n"
        "CPU per refused Authenticate: tresimd %.1f µs, dbus-daemon %.1f µs, the caller %.1f "
        "µs, the same TE call in-process %.1f µs\n"
        "TPM commands sent by the in-process TE during the %d refused calls and the refresh's "
        "TE calls: %llu; swtpm CPU during the D-Bus refused calls: %.0f µs (during the "
        "Peer.Ping calls: %.0f µs)\n",
        overhead, worst, worst < 300 ? "met in every repetition" : "NOT met in every repetition",
        med[kBusPing], med[kBusGet] - med[kBusPing], med[kBusRefused] - med[kBusGet],
        cheap.daemon_cpu[kBusRefused], cheap.bus_cpu[kBusRefused],
        median_of(cheap.client_cpu[kBusRefused]), median_of(cheap.client_cpu[kLocalRefused]),
        cheap.repetitions * cheap.block, static_cast<unsigned long long>(cheap.tpm_commands),
        cheap.swtpm_cpu[kBusRefused], cheap.swtpm_cpu[kBusPing]);

    // 2. The successful AKA, with the TPM.
    const double in_med = median_of(paired.local_wall);
    const double bus_med = median_of(paired.bus_wall);
    std::printf(
        "\nAKA (Milenage, mode %s, sqn_interval 16, 16 MIDs) per call, µs, %d interleaved pairs "
        "(wall time; CPU time of the calling thread):\n\n"
        "| path | median | p10 | p90 | CPU here, median |\n|---|---:|---:|---:|---:|\n"
        "| in-process TrustedEnvironment::authenticate | %.0f | %.0f | %.0f | %.0f |\n"
        "| D-Bus Usim.Authenticate to tresimd | %.0f | %.0f | %.0f | %.0f |\n\n"
        "median D-Bus - median in-process: %.0f µs; median of the pairwise differences: %.0f µs "
        "(p10 %.0f, p90 %.0f); ratio of the medians: %.3f\n"
        "CPU per AKA: tresimd median %.0f µs (mean %.0f), the in-process TE median %.0f µs "
        "(mean %.0f), difference of the medians %.0f µs; per D-Bus AKA dbus-daemon %.0f µs, "
        "the client's thread %.0f µs (means)\n"
        "Google Benchmark (real time, median of the repetitions), µs: AKA in-process %s, "
        "D-Bus %s; refused AKA in-process %s, D-Bus %s; Properties.Get %s; Peer.Ping %s\n",
        mode.c_str(), pairs, in_med, quantile(paired.local_wall, 0.1),
        quantile(paired.local_wall, 0.9), median_of(paired.local_cpu), bus_med,
        quantile(paired.bus_wall, 0.1), quantile(paired.bus_wall, 0.9),
        median_of(paired.client_cpu), bus_med - in_med, median_of(paired.diff),
        quantile(paired.diff, 0.1), quantile(paired.diff, 0.9), bus_med / in_med,
        median_of(paired.daemon_call_cpu), paired.daemon_cpu, median_of(paired.local_cpu),
        mean_of(paired.local_cpu), median_of(paired.daemon_call_cpu) - median_of(paired.local_cpu),
        paired.bus_cpu, mean_of(paired.client_cpu),
        cell(reporter.real_us("BM_InProcessAuthenticate"), 0).c_str(),
        cell(reporter.real_us("BM_DbusAuthenticate"), 0).c_str(),
        cell(reporter.real_us("BM_InProcessRefusedAuthenticate"), 1).c_str(),
        cell(reporter.real_us("BM_DbusRefusedAuthenticate"), 0).c_str(),
        cell(reporter.real_us("BM_DbusPropertyGet"), 0).c_str(),
        cell(reporter.real_us("BM_DbusPeerPing"), 0).c_str());

    // 3. Start-up.
    std::printf("\nStart-up to READY=1 (fork+exec to the notification), ms: first start on an "
                "empty state folder %.0f, median of %d restarts %.0f (",
                starts.front(), kStarts - 1,
                median_of(std::vector<double>(starts.begin() + 1, starts.end())));
    for (std::size_t i = 1; i < starts.size(); ++i) {
        std::printf("%s%.0f", i > 1 ? ", " : "", starts[i]);
    }

    // 4. Memory.
    std::printf(")\n\ntresimd memory (/proc/PID/status, kB; goal VmRSS < 8 MiB):\n\n"
                "| when | VmRSS | MiB | RssAnon | RssFile | VmHWM | VmLck | threads |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    std::printf("%s", memory_row("after start, no MID", at_start).c_str());
    std::printf("%s", memory_row("16 MIDs imported", with_mids).c_str());
    std::printf("%s", memory_row("16 MIDs, after the AKAs", after_akas).c_str());
    auto rollup_row = [](const char* when, const std::map<std::string, long>& r) {
        auto kb = [&](const char* key) {
            const auto it = r.find(key);
            return it == r.end() ? 0L : it->second;
        };
        std::printf("| %s | %ld | %ld | %ld | %ld | %ld | %ld | %ld |\n", when, kb("Rss"),
                    kb("Pss"), kb("Pss_Anon"), kb("Pss_File"),
                    kb("Private_Clean") + kb("Private_Dirty"), kb("Private_Dirty"),
                    kb("Shared_Clean"));
    };
    std::printf("\n/proc/PID/smaps_rollup, kB (Private = Private_Clean + Private_Dirty, the USS):"
                "\n\n| when | Rss | Pss | Pss_Anon | Pss_File | Private | Private_Dirty | "
                "Shared_Clean |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    rollup_row("after start, no MID", rollup_start);
    rollup_row("16 MIDs imported", rollup_mids);
    rollup_row("16 MIDs, after the AKAs", rollup_after);
    std::printf("\nWith 16 MIDs, per mapped file (kB; text = Rss of its executable mappings):\n\n"
                "| mapping | Rss | text | Pss | Private |\n|---|---:|---:|---:|---:|\n");
    Mapping rest{"(the other mappings)"};
    Mapping total{"total"};
    for (std::size_t i = 0; i < maps.size(); ++i) {
        const Mapping& m = maps[i];
        for (Mapping* sum : {&total, i < 16 ? nullptr : &rest}) {
            if (sum != nullptr) {
                sum->rss += m.rss;
                sum->text += m.text;
                sum->pss += m.pss;
                sum->priv += m.priv;
            }
        }
        if (i < 16) {
            std::printf("| %s | %ld | %ld | %ld | %ld |\n", m.name.c_str(), m.rss, m.text, m.pss,
                        m.priv);
        }
    }
    for (const Mapping* m : {&rest, &total}) {
        std::printf("| %s | %ld | %ld | %ld | %ld |\n", m->name.c_str(), m->rss, m->text, m->pss,
                    m->priv);
    }
    std::printf("\n");
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (tresim::test::run_command("command -v swtpm >/dev/null && command -v swtpm_setup "
                                  ">/dev/null && command -v dbus-daemon >/dev/null") != 0) {
        std::fprintf(stderr, "bench_daemon: swtpm, swtpm_setup and dbus-daemon are needed\n");
        return 77;
    }
    try {
        return run(argc, argv);
    } catch (const sdbus::Error& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "bench_daemon: %s: %s\n", e.getName().c_str(), e.getMessage().c_str());
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "bench_daemon: %s\n", e.what());
    }
    return 1;
}
