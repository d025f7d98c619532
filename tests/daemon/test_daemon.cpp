// tresimd end to end: a private dbus-daemon, a swtpm and the real tresimd
// executable, driven over the bus with the generated sdbus-c++ proxies.

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <grp.h>
#include <mutex>
#include <set>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <sdbus-c++/sdbus-c++.h>

#include "manager_proxy.h"
#include "mid_proxy.h"
#include "swtpm.hpp"
#include "te/mid_crypto.hpp"
#include "te/profile.hpp"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/gsm.hpp"
#include "usim/milenage.hpp"
#include "usim_proxy.h"

namespace {

using namespace tresim;
using nlohmann::json;
using Blob = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

json milenage_set(std::size_t i) {
    const char* dir = std::getenv("TRESIM_VECTORS_DIR");
    std::ifstream in(std::string(dir != nullptr ? dir : "tests/vectors") + "/milenage.json");
    return json::parse(in).at("milenage").at(i);
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

// Waits for a child; its exit status, or 128 + signal, or -1 on timeout.
int wait_exit(pid_t pid, std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        std::this_thread::sleep_for(20ms);
    }
    return -1;
}

std::string tresimd_path() {
    const char* p = std::getenv("TRESIMD");
    return p != nullptr ? p : "src/daemon/tresimd";
}

// ObjectManager signals, on a connection with its own event loop.
class ObjectManagerWatch final : public sdbus::ProxyInterfaces<sdbus::ObjectManager_proxy> {
public:
    explicit ObjectManagerWatch(sdbus::IConnection& c)
        : ProxyInterfaces(c, "org.tresim1", "/org/tresim1") {
        registerProxy();
    }
    ~ObjectManagerWatch() { unregisterProxy(); }

    bool wait_added(const std::string& path) { return wait(added_, path); }
    bool wait_removed(const std::string& path) { return wait(removed_, path); }

private:
    void onInterfacesAdded(
        const sdbus::ObjectPath& path,
        const std::map<std::string, std::map<std::string, sdbus::Variant>>&) override {
        std::lock_guard lock(m_);
        added_.insert(path);
        cv_.notify_all();
    }
    void onInterfacesRemoved(const sdbus::ObjectPath& path,
                             const std::vector<std::string>&) override {
        std::lock_guard lock(m_);
        removed_.insert(path);
        cv_.notify_all();
    }
    bool wait(std::set<std::string>& set, const std::string& path) {
        std::unique_lock lock(m_);
        return cv_.wait_for(lock, 5s, [&] { return set.contains(path); });
    }
    std::mutex m_;
    std::condition_variable cv_;
    std::set<std::string> added_;
    std::set<std::string> removed_;
};

// PropertiesChanged of one object.
class PropertiesWatch final : public sdbus::ProxyInterfaces<sdbus::Properties_proxy> {
public:
    PropertiesWatch(sdbus::IConnection& c, const std::string& path)
        : ProxyInterfaces(c, "org.tresim1", path) {
        registerProxy();
    }
    ~PropertiesWatch() { unregisterProxy(); }

    bool wait_changed(const std::string& name) {
        std::unique_lock lock(m_);
        return cv_.wait_for(lock, 5s, [&] { return changed_.contains(name); });
    }

private:
    void onPropertiesChanged(const std::string& interface,
                             const std::map<std::string, sdbus::Variant>& changed,
                             const std::vector<std::string>& invalidated) override {
        std::lock_guard lock(m_);
        for (const auto& [name, value] : changed) {
            changed_.insert(interface + "." + name);
        }
        for (const auto& name : invalidated) {
            changed_.insert(interface + "." + name);
        }
        cv_.notify_all();
    }
    std::mutex m_;
    std::condition_variable cv_;
    std::set<std::string> changed_;
};

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

// One bus, one TPM, one daemon for the whole suite (each test its own MIDs).
class Daemon : public testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = test::make_temp_dir("tresim-daemon-");
        swtpm_ = new test::Swtpm();
        chmod(dir_.c_str(), 0755); // the unprivileged caller reaches the bus socket
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
        std::ofstream(dir_ + "/tresimd.conf") << "[mids]\nslots = 2\n[authorization]\n"
                                                 "polkit = auto\nauthenticate = uid:65534\n";
        // sd_notify messages come to this socket; the watchdog wants a ping every 0.2 s.
        notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string notify = dir_ + "/notify";
        std::strncpy(addr.sun_path, notify.c_str(), sizeof addr.sun_path - 1);
        bind(notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        setenv("NOTIFY_SOCKET", notify.c_str(), 1);
        setenv("WATCHDOG_USEC", "400000", 1);
        daemon_pid_ = spawn({tresimd_path(), "--session", "--tcti", swtpm_->tcti(), "--state-dir",
                             dir_ + "/state", "--config", dir_ + "/tresimd.conf"});
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        calls_ = sdbus::createSessionBusConnection().release();
        signals_ = sdbus::createSessionBusConnection().release();
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
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
        FAIL() << "tresimd did not take the name org.tresim1";
    }

    static void TearDownTestSuite() {
        if (daemon_pid_ > 0) {
            kill(daemon_pid_, SIGTERM);
            EXPECT_EQ(wait_exit(daemon_pid_, 20s), 0) << "tresimd did not stop cleanly on SIGTERM";
            EXPECT_TRUE((notified().find("STOPPING=1") != std::string::npos));
        }
        close(notify_fd_);
        if (signals_ != nullptr) {
            signals_->leaveEventLoop();
        }
        delete signals_;
        delete calls_;
        kill(bus_pid_, SIGTERM);
        wait_exit(bus_pid_, 5s);
        delete swtpm_;
        test::remove_tree(dir_);
    }

    void SetUp() override {
        if (daemon_pid_ <= 0) {
            GTEST_SKIP() << "tresimd is not running";
        }
    }

    // An approval of the current platform state, signed with `key` as
    // docs/dbus-api.md describes (DER ECDSA over approved_policy || policy_ref).
    json approval(const tpm::PolicyAuthority& key) {
        ManagerProxy manager(*calls_);
        tpm::PcrValues pcrs;
        json values = json::object();
        for (const auto& [index, value] : manager.GetPlatformState()) {
            pcrs.values[index] = value;
            values[std::to_string(index)] = hex_encode(value);
        }
        const Bytes policy = te::approved_policy_for(pcrs, false);
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                                   EVP_MD_CTX_free);
        EXPECT_EQ(EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.pkey()), 1);
        std::size_t len = 0;
        EVP_DigestSign(md.get(), nullptr, &len, policy.data(), policy.size());
        Blob sig(len);
        EXPECT_EQ(EVP_DigestSign(md.get(), sig.data(), &len, policy.data(), policy.size()), 1);
        sig.resize(len);
        return {{"format", "tresim-approval-1"},
                {"authority", key.public_pem()},
                {"pcrs", {{"bank", "sha256"}, {"values", values}}},
                {"auth_value", false},
                {"policy_ref", ""},
                {"signature", hex_encode(sig)}};
    }

    static Blob profile(const json& set, int n) {
        const std::string text = json{
            {"iccid", iccid(n)},       {"imsi", "26201" + std::to_string(1000000000 + n)},
            {"algorithm", "milenage"}, {"k", set.at("k")},
            {"opc", set.at("opc")},    {"amf", set.at("amf")},
            {"label", "daemon test"}}.dump();
        return Blob(text.begin(), text.end());
    }

    static std::string error_name(const std::function<void()>& f) {
        try {
            f();
        } catch (const sdbus::Error& e) {
            return e.getName();
        }
        return "(no error)";
    }

    // The sd_notify messages received since the last call, one per line.
    static std::string notified() {
        std::string all;
        char buf[4096];
        for (ssize_t n; (n = recv(notify_fd_, buf, sizeof buf, 0)) > 0;) {
            all.append(buf, static_cast<std::size_t>(n)).append("\n");
        }
        return all;
    }

    static inline std::string dir_;
    static inline int notify_fd_ = -1;
    static inline test::Swtpm* swtpm_ = nullptr;
    static inline pid_t bus_pid_ = -1;
    static inline pid_t daemon_pid_ = -1;
    static inline sdbus::IConnection* calls_ = nullptr;
    static inline sdbus::IConnection* signals_ = nullptr;
    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

TEST_F(Daemon, ItNotifiesReadyAndPingsTheWatchdog) {
    std::string messages = notified();
    EXPECT_TRUE((messages.find("READY=1") != std::string::npos)) << messages;
    std::this_thread::sleep_for(500ms);
    messages += notified();
    EXPECT_TRUE((messages.find("WATCHDOG=1") != std::string::npos)) << messages;
}

TEST_F(Daemon, ManagerPropertiesDescribeTheTpmAndTheConfiguration) {
    ManagerProxy manager(*calls_);
    EXPECT_EQ(manager.Slots(), 2u);
    EXPECT_EQ(manager.PcrSelection(), "sha256:0,2,4,7");
    EXPECT_EQ(manager.TpmManufacturer(), "IBM");
    EXPECT_EQ(manager.Identity().size(), 64u);
    const auto banks = manager.PcrBanks();
    EXPECT_NE(std::find(banks.begin(), banks.end(), "sha256"), banks.end());
    EXPECT_EQ(manager.GetPlatformState().size(), 4u);
}

TEST_F(Daemon, AnImportedMidAppearsActivatesAndRunsAkaWithResyncOnReplay) {
    ObjectManagerWatch watch(*signals_);
    ManagerProxy manager(*calls_);
    const json set = milenage_set(0);
    const std::string path = manager.ImportMid(profile(set, 1), approval(authority_).dump());
    EXPECT_TRUE(path.starts_with("/org/tresim1/mid/"));
    EXPECT_TRUE(watch.wait_added(path)) << "no InterfacesAdded for " << path;

    MidProxy mid(*calls_, path);
    EXPECT_EQ(mid.State(), "inactive");
    EXPECT_EQ(mid.Slot(), -1);
    EXPECT_EQ(mid.Label(), "daemon test");
    mid.Activate(1);
    EXPECT_EQ(mid.State(), "active");
    EXPECT_EQ(mid.Slot(), 1);

    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    const usim::Rand rand = usim::random_rand();
    const usim::AuthVector v = usim::generate_vector(*sw, rand, 0x21, {0x80, 0x00});
    const Blob rand_blob(rand.begin(), rand.end());
    const Blob autn(v.autn.data(), v.autn.data() + v.autn.size());
    const auto [result, res, ck, ik, auts] = mid.Authenticate(rand_blob, autn);
    EXPECT_EQ(result, "success");
    EXPECT_EQ(res, Blob(v.xres.data(), v.xres.data() + v.xres.size()));
    EXPECT_EQ(ck, Blob(v.ck.data(), v.ck.data() + v.ck.size()));
    EXPECT_EQ(ik, Blob(v.ik.data(), v.ik.data() + v.ik.size()));
    EXPECT_TRUE(auts.empty());

    const auto [again, res2, ck2, ik2, auts2] = mid.Authenticate(rand_blob, autn);
    EXPECT_EQ(again, "sync-failure");
    EXPECT_TRUE(res2.empty());
    ASSERT_EQ(auts2.size(), 14u);
    EXPECT_EQ(usim::resync(*sw, rand, auts2), std::optional<std::uint64_t>(0x21));

    EXPECT_EQ(error_name([&] { mid.Authenticate(rand_blob, Blob(autn.begin(), autn.end() - 1)); }),
              "org.tresim1.Error.InvalidArgument");
    EXPECT_EQ(error_name([&] { mid.Authenticate(Blob(15), autn); }),
              "org.tresim1.Error.InvalidArgument");
    EXPECT_EQ(error_name([&] { mid.Activate(0); }), "org.tresim1.Error.IllegalTransition");
    EXPECT_EQ(error_name([&] { mid.Delete(); }), "org.tresim1.Error.IllegalTransition");
    mid.Deactivate(); // frees slot 1 for the other tests
}

TEST_F(Daemon, ADeletedMidDisappearsWithInterfacesRemoved) {
    ObjectManagerWatch watch(*signals_);
    ManagerProxy manager(*calls_);
    const std::string path =
        manager.ImportMid(profile(milenage_set(1), 2), approval(authority_).dump());
    MidProxy mid(*calls_, path);
    EXPECT_EQ(error_name([&] { mid.Activate(2); }), "org.tresim1.Error.InvalidArgument");
    mid.Delete();
    EXPECT_TRUE(watch.wait_removed(path)) << "no InterfacesRemoved for " << path;
    EXPECT_EQ(error_name([&] { mid.Activate(0); }), "org.freedesktop.DBus.Error.UnknownObject");
}

TEST_F(Daemon, CallsOnAnUnknownMidPathAreRefused) {
    MidProxy mid(*calls_, "/org/tresim1/mid/999");
    EXPECT_EQ(error_name([&] { mid.Activate(0); }), "org.freedesktop.DBus.Error.UnknownObject");
}

TEST_F(Daemon, ImportIsRefusedForABadOrForeignApprovalOrADuplicate) {
    ManagerProxy manager(*calls_);
    const Blob p = profile(milenage_set(2), 3);
    EXPECT_EQ(error_name([&] { manager.ImportMid(p, "{"); }), "org.tresim1.Error.InvalidArgument");
    json forged = approval(authority_);
    forged["authority"] = tpm::PolicyAuthority::generate().public_pem();
    EXPECT_EQ(error_name([&] { manager.ImportMid(p, forged.dump()); }),
              "org.tresim1.Error.PolicyDenied");
    json unknown = approval(authority_);
    unknown["extra"] = 1;
    EXPECT_EQ(error_name([&] { manager.ImportMid(p, unknown.dump()); }),
              "org.tresim1.Error.InvalidArgument");
    manager.ImportMid(p, approval(authority_).dump());
    EXPECT_EQ(error_name([&] { manager.ImportMid(p, approval(authority_).dump()); }),
              "org.tresim1.Error.AlreadyExists");
}

TEST_F(Daemon, StateChangesAreAnnouncedWithPropertiesChanged) {
    ManagerProxy manager(*calls_);
    const std::string path =
        manager.ImportMid(profile(milenage_set(3), 4), approval(authority_).dump());
    PropertiesWatch watch(*signals_, path);
    MidProxy mid(*calls_, path);
    mid.Activate(0);
    EXPECT_TRUE(watch.wait_changed("org.tresim1.Mid.State"));
    EXPECT_TRUE(watch.wait_changed("org.tresim1.Mid.Slot"));
    mid.Deactivate();
    EXPECT_EQ(mid.State(), "inactive");
    EXPECT_EQ(mid.Slot(), -1);
}

TEST_F(Daemon, ImportFromADescriptorAndGsmAuthenticationWork) {
    ManagerProxy manager(*calls_);
    const json set = milenage_set(4);
    const Blob p = profile(set, 5);
    const std::string file = dir_ + "/profile.json";
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(p.data()), static_cast<std::streamsize>(p.size()));
    const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const std::string path =
        manager.ImportMidFromFd(sdbus::UnixFd(fd, sdbus::adopt_fd), approval(authority_).dump());
    std::remove(file.c_str());
    MidProxy mid(*calls_, path);
    mid.Activate(1);
    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    const usim::Rand rand = usim::random_rand();
    const usim::GsmContext expected = usim::gsm_authenticate(*sw, rand);
    const auto [sres, kc] = mid.GsmAuthenticate(Blob(rand.begin(), rand.end()));
    EXPECT_EQ(sres, Blob(expected.sres.begin(), expected.sres.end()));
    EXPECT_EQ(kc, Blob(expected.kc.view().begin(), expected.kc.view().end()));
    mid.Deactivate();
}

// Runs `calls` in a child process as UID/GID 65534 (nobody) on its own bus
// connection and returns what it reports.
std::string as_nobody(const std::function<std::string(sdbus::IConnection&)>& calls) {
    int out[2];
    if (pipe(out) != 0) {
        return "pipe failed";
    }
    const pid_t pid = fork();
    if (pid == 0) {
        close(out[0]);
        std::string report;
        if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
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
    EXPECT_EQ(wait_exit(pid, 20s), 0);
    return report;
}

// A stand-in for polkit on the private bus: allows only org.tresim1.manage and
// remembers the subjects it was asked about.
class FakePolkit {
public:
    FakePolkit() : connection_(sdbus::createSessionBusConnection()) {
        object_ = sdbus::createObject(*connection_, "/org/freedesktop/PolicyKit1/Authority");
        object_->registerMethod("CheckAuthorization")
            .onInterface("org.freedesktop.PolicyKit1.Authority")
            .implementedAs(
                [this](const sdbus::Struct<std::string, std::map<std::string, sdbus::Variant>>&
                           subject,
                       const std::string& action, const std::map<std::string, std::string>&,
                       const uint32_t&, const std::string&) {
                    std::lock_guard lock(m_);
                    kinds_.insert(std::get<0>(subject));
                    return sdbus::Struct<bool, bool, std::map<std::string, std::string>>(
                        action == "org.tresim1.manage", false,
                        std::map<std::string, std::string>{});
                });
        object_->finishRegistration();
        connection_->requestName("org.freedesktop.PolicyKit1");
        connection_->enterEventLoopAsync();
    }
    ~FakePolkit() {
        connection_->releaseName("org.freedesktop.PolicyKit1");
        connection_->leaveEventLoop();
    }
    std::set<std::string> subject_kinds() {
        std::lock_guard lock(m_);
        return kinds_;
    }

private:
    std::unique_ptr<sdbus::IConnection> connection_;
    std::unique_ptr<sdbus::IObject> object_;
    std::mutex m_;
    std::set<std::string> kinds_;
};

// A caller that is not root gets only the actions the configuration grants it
// (here authenticate for UID 65534), judged by its bus credentials.
TEST_F(Daemon, ANonRootCallerIsLimitedToTheActionsOfTheRules) {
    ManagerProxy manager(*calls_);
    const std::string path =
        manager.ImportMid(profile(milenage_set(5), 6), approval(authority_).dump());
    const std::string report = as_nobody([&](sdbus::IConnection& c) {
        ManagerProxy m(c);
        MidProxy mid(c, path);
        std::string r;
        r += error_name([&] { m.GetPlatformState(); }) + "\n";
        r += error_name([&] { mid.Activate(0); }) + "\n";
        // Allowed to authenticate: the TE answers (the MID is not active).
        r += error_name([&] { mid.GsmAuthenticate(Blob(16)); }) + "\n";
        r += mid.State() + "\n"; // properties need no action
        return r;
    });
    EXPECT_EQ(report, "org.tresim1.Error.NotAuthorized\norg.tresim1.Error.NotAuthorized\n"
                      "org.tresim1.Error.IllegalTransition\ninactive\n");
}

// With polkit on the bus ("polkit = auto"), polkit decides instead of the rules.
TEST_F(Daemon, WhenPolkitRunsItDecidesForNonRootCallers) {
    ManagerProxy manager(*calls_);
    const std::string path =
        manager.ImportMid(profile(milenage_set(6), 7), approval(authority_).dump());
    FakePolkit polkit;
    const std::string report = as_nobody([&](sdbus::IConnection& c) {
        ManagerProxy m(c);
        MidProxy mid(c, path);
        std::string r;
        r += error_name([&] { m.GetPlatformState(); }) + "\n";          // manage: yes
        r += error_name([&] { mid.GsmAuthenticate(Blob(16)); }) + "\n"; // authenticate: no
        return r;
    });
    EXPECT_EQ(report, "(no error)\norg.tresim1.Error.NotAuthorized\n");
    EXPECT_EQ(polkit.subject_kinds(), std::set<std::string>{"system-bus-name"});
}

TEST_F(Daemon, AMidWithImsIdentitiesAlsoImplementsIsim) {
    ManagerProxy manager(*calls_);
    json p = json::parse(profile(milenage_set(7), 8));
    p["isim"] = {{"impi", "user@ims.example.org"},
                 {"impu", {"sip:user@ims.example.org", "tel:+49123456"}},
                 {"domain", "ims.example.org"}};
    const std::string text = p.dump();
    const std::string path =
        manager.ImportMid(Blob(text.begin(), text.end()), approval(authority_).dump());
    MidProxy mid(*calls_, path);
    EXPECT_EQ(mid.Applications(), (std::vector<std::string>{"usim", "isim"}));
    auto isim = sdbus::createProxy(*calls_, "org.tresim1", path);
    const sdbus::Variant impi = isim->getProperty("Impi").onInterface("org.tresim1.Isim");
    EXPECT_EQ(impi.get<std::string>(), "user@ims.example.org");
    const std::string plain =
        manager.ImportMid(profile(milenage_set(8), 9), approval(authority_).dump());
    EXPECT_EQ(MidProxy(*calls_, plain).Applications(), std::vector<std::string>{"usim"});
    auto usim_only = sdbus::createProxy(*calls_, "org.tresim1", plain);
    EXPECT_EQ(error_name([&] { usim_only->getProperty("Impi").onInterface("org.tresim1.Isim"); }),
              "org.freedesktop.DBus.Error.UnknownProperty");
}

// Start-up failures: one line and EX_CONFIG (78), before the bus is touched.
TEST(DaemonStart, ABadConfigurationOrAMissingTpmExitsWith78) {
    const std::string dir = test::make_temp_dir("tresim-daemon-start-");
    std::ofstream(dir + "/bad.conf") << "[mids]\nslots = 99\n";
    pid_t pid = spawn({tresimd_path(), "--session", "--config", dir + "/bad.conf", "--tcti",
                       "swtpm:host=127.0.0.1,port=1", "--state-dir", dir + "/state"});
    EXPECT_EQ(wait_exit(pid, 20s), 78);
    std::ofstream(dir + "/good.conf") << "";
    pid = spawn({tresimd_path(), "--session", "--config", dir + "/good.conf", "--tcti",
                 "swtpm:host=127.0.0.1,port=1", "--state-dir", dir + "/state"});
    EXPECT_EQ(wait_exit(pid, 30s), 78);
    test::remove_tree(dir);
}

} // namespace
