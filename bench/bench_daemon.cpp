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
//     16 MIDs imported, and after the AKAs.
//
// Runs as any user: the daemon's configuration authorizes this process's UID.
// Exits 77 when swtpm, swtpm_setup or dbus-daemon is missing. Environment:
// TRESIMD (the daemon, default src/daemon/tresimd under the build folder).

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
    Network network;

    InProcess() {
        te::TeConfig config; // the daemon's defaults
        config.state_dir = dir + "/state";
        config.tcti = swtpm.tcti();
        te = std::make_unique<te::TrustedEnvironment>(config);
        te->add_approval(te::approve(authority, te->current_pcrs(), false, {}));
        for (int n = kMids; n >= 1; --n) { // as many MIDs as the daemon holds
            index = te->import_profile(profile(n), authority.tpm_public());
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

class MidProxy final
    : public sdbus::ProxyInterfaces<org::tresim1::Mid_proxy, org::tresim1::Usim_proxy> {
public:
    MidProxy(sdbus::IConnection& c, const std::string& path)
        : ProxyInterfaces(c, "org.tresim1", path) {
        registerProxy();
    }
    ~MidProxy() { unregisterProxy(); }
};

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

// Pss and the largest resident mappings (kB) from /proc/PID/smaps.
struct Smaps {
    long pss = 0;
    std::vector<std::pair<long, std::string>> largest; // (Rss, mapping)
};

Smaps smaps(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
    std::map<std::string, long> rss_by_name;
    Smaps out;
    std::string line;
    std::string name;
    while (std::getline(in, line)) {
        if (line.empty()) {
            continue;
        }
        if (std::isxdigit(static_cast<unsigned char>(line[0])) != 0 &&
            line.find('-') < line.find(' ')) { // a mapping's header: "start-end perms ... path"
            std::istringstream fields(line);
            std::string skip;
            fields >> skip >> skip >> skip >> skip >> skip;
            std::getline(fields >> std::ws, name);
            if (name.empty()) {
                name = "[anonymous]";
            }
            name = name.substr(name.rfind('/') + 1);
        } else if (line.rfind("Rss:", 0) == 0) {
            rss_by_name[name] += std::strtol(line.c_str() + 4, nullptr, 10);
        } else if (line.rfind("Pss:", 0) == 0) {
            out.pss += std::strtol(line.c_str() + 4, nullptr, 10);
        }
    }
    for (const auto& [n, kb] : rss_by_name) {
        out.largest.emplace_back(kb, n);
    }
    std::sort(out.largest.rbegin(), out.largest.rend());
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
        mid.reset();
        calls.reset();
    }
    OverDbus(const OverDbus&) = delete;
    OverDbus& operator=(const OverDbus&) = delete;

    // Starts tresimd and returns the time from fork to READY=1 (ms).
    double start() {
        setenv("NOTIFY_SOCKET", (dir + "/notify").c_str(), 1);
        const auto t0 = Clock::now();
        daemon.pid = spawn({tresimd, "--session", "--tcti", swtpm.tcti(), "--state-dir",
                            dir + "/state", "--config", dir + "/tresimd.conf"});
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
        for (int n = 1; n <= kMids; ++n) {
            const std::string path = manager.ImportMid(profile(n), a);
            if (n == 1) {
                first = path;
            }
        }
        mid = std::make_unique<MidProxy>(*calls, first);
        mid->Activate(0);
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
    double daemon_cpu = 0; // tresimd, µs per D-Bus AKA
    double bus_cpu = 0;    // dbus-daemon, µs per D-Bus AKA
    // Properties.Get (Mid.State): the bus and the daemon's dispatch without the TPM.
    std::vector<double> get_wall;
    double get_daemon_cpu = 0;
    double get_bus_cpu = 0;
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
        if (i % 2 == 0) {
            a = local.one();
            b = remote.one();
        } else {
            b = remote.one();
            a = local.one();
        }
        p.local_wall.push_back(a.wall);
        p.local_cpu.push_back(a.cpu);
        p.bus_wall.push_back(b.wall);
        p.client_cpu.push_back(b.cpu);
        p.diff.push_back(b.wall - a.wall);
    }
    p.daemon_cpu = (cpu_us(remote.daemon.pid) - daemon0) / pairs;
    p.bus_cpu = (cpu_us(remote.bus.pid) - bus0) / pairs;
    const int gets = 4 * pairs;
    const double get_daemon0 = cpu_us(remote.daemon.pid);
    const double get_bus0 = cpu_us(remote.bus.pid);
    for (int i = 0; i < gets; ++i) {
        const Stopwatch watch;
        benchmark::DoNotOptimize(remote.mid->State());
        p.get_wall.push_back(watch.stop().wall);
    }
    p.get_daemon_cpu = (cpu_us(remote.daemon.pid) - get_daemon0) / gets;
    p.get_bus_cpu = (cpu_us(remote.bus.pid) - get_bus0) / gets;
    return p;
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
    remote.import_mids();
    const auto with_mids = proc_status(remote.daemon.pid);

    InProcess local;
    const std::string mode = te::to_string(local.te->get(local.index).mode);
    for (int warm = 0; warm < 3; ++warm) {
        local.one();
        remote.one();
    }
    const Paired paired = run_pairs(local, remote, pairs);

    benchmark::RegisterBenchmark("BM_InProcessAuthenticate",
                                 [&local](benchmark::State& s) { local.bench(s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_DbusAuthenticate",
                                 [&remote](benchmark::State& s) { remote.bench(s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_DbusPropertyGet",
                                 [&remote](benchmark::State& s) { remote.bench_property(s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    tresim::bench::CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    std::fflush(stdout);
    const auto after_akas = proc_status(remote.daemon.pid);
    const Smaps maps = smaps(remote.daemon.pid);

    const double in_med = median_of(paired.local_wall);
    const double bus_med = median_of(paired.bus_wall);
    std::printf(
        "\nAKA (Milenage, mode %s, sqn_interval 16, 16 MIDs) per call, µs, %d interleaved pairs "
        "(wall time; CPU time of the calling thread):\n\n"
        "| path | median | p10 | p90 | CPU here, median |\n|---|---:|---:|---:|---:|\n"
        "| in-process TrustedEnvironment::authenticate | %.0f | %.0f | %.0f | %.0f |\n"
        "| D-Bus Usim.Authenticate to tresimd | %.0f | %.0f | %.0f | %.0f |\n\n"
        "daemon overhead, median D-Bus - median in-process: %.0f µs (goal < 300); median of the "
        "pairwise differences: %.0f µs (p10 %.0f, p90 %.0f); ratio of the medians: %.3f\n"
        "CPU per AKA, means: tresimd %.0f µs, the in-process TE %.0f µs; per D-Bus AKA "
        "dbus-daemon %.0f µs, the client's thread %.0f µs\n"
        "Properties.Get (Mid.State) over the bus, %zu calls: median %.0f µs (p90 %.0f); CPU per "
        "call: tresimd %.0f µs, dbus-daemon %.0f µs\n"
        "Google Benchmark (real time, median of the repetitions): in-process %s µs, D-Bus %s µs, "
        "Properties.Get (Mid.State) round trip %s µs\n",
        mode.c_str(), pairs, in_med, quantile(paired.local_wall, 0.1),
        quantile(paired.local_wall, 0.9), median_of(paired.local_cpu), bus_med,
        quantile(paired.bus_wall, 0.1), quantile(paired.bus_wall, 0.9),
        median_of(paired.client_cpu), bus_med - in_med, median_of(paired.diff),
        quantile(paired.diff, 0.1), quantile(paired.diff, 0.9), bus_med / in_med, paired.daemon_cpu,
        mean_of(paired.local_cpu), paired.bus_cpu, mean_of(paired.client_cpu),
        paired.get_wall.size(), median_of(paired.get_wall), quantile(paired.get_wall, 0.9),
        paired.get_daemon_cpu, paired.get_bus_cpu,
        cell(reporter.real_us("BM_InProcessAuthenticate"), 0).c_str(),
        cell(reporter.real_us("BM_DbusAuthenticate"), 0).c_str(),
        cell(reporter.real_us("BM_DbusPropertyGet"), 0).c_str());

    std::printf("\nStart-up to READY=1 (fork+exec to the notification), ms: first start on an "
                "empty state folder %.0f, median of %d restarts %.0f (",
                starts.front(), kStarts - 1,
                median_of(std::vector<double>(starts.begin() + 1, starts.end())));
    for (std::size_t i = 1; i < starts.size(); ++i) {
        std::printf("%s%.0f", i > 1 ? ", " : "", starts[i]);
    }
    std::printf(")\n\ntresimd memory (/proc/PID/status, kB; goal VmRSS < 8 MiB):\n\n"
                "| when | VmRSS | MiB | RssAnon | RssFile | VmHWM | VmLck | threads |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    std::printf("%s", memory_row("after start, no MID", at_start).c_str());
    std::printf("%s", memory_row("16 MIDs imported", with_mids).c_str());
    std::printf("%s", memory_row("16 MIDs, after the AKAs", after_akas).c_str());
    std::printf("\nPss %ld kB; the largest resident mappings (kB): ", maps.pss);
    for (std::size_t i = 0; i < maps.largest.size() && i < 10; ++i) {
        std::printf("%s%s %ld", i > 0 ? ", " : "", maps.largest[i].second.c_str(),
                    maps.largest[i].first);
    }
    std::printf("\n\n");
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
