// tresimctl end to end: a private dbus-daemon, a swtpm and the real tresimd
// (as in tests/daemon), driven by running the real tresimctl executable.

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <sdbus-c++/sdbus-c++.h>

#include "manager_proxy.h"
#include "swtpm.hpp"
#include "te/mid_crypto.hpp"
#include "te/profile.hpp"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"

namespace {

using namespace tresim;
using nlohmann::json;
using namespace std::chrono_literals;

json milenage_set(std::size_t i) {
    const char* dir = std::getenv("TRESIM_VECTORS_DIR");
    std::ifstream in(std::string(dir != nullptr ? dir : "tests/vectors") + "/milenage.json");
    return json::parse(in).at("milenage").at(i);
}

std::string iccid(int n) {
    const std::string body = "894902000000" + std::to_string(3000000 + n);
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

struct Outcome {
    int status = -1;
    std::string out;
    std::string err;
};

class ManagerProxy final : public sdbus::ProxyInterfaces<org::tresim1::Manager_proxy> {
public:
    explicit ManagerProxy(sdbus::IConnection& c)
        : ProxyInterfaces(c, "org.tresim1", "/org/tresim1") {
        registerProxy();
    }
    ~ManagerProxy() { unregisterProxy(); }
};

class Tresimctl : public testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = test::make_temp_dir("tresim-cli-");
        swtpm_ = new test::Swtpm();
        chmod(dir_.c_str(), 0755);
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
        // The system bus must not be what the client reaches with --session.
        setenv("DBUS_SYSTEM_BUS_ADDRESS", ("unix:path=" + dir_ + "/no-such-bus").c_str(), 1);
        std::ofstream(dir_ + "/tresimd.conf") << "[mids]\nslots = 2\n[authorization]\n"
                                                 "polkit = auto\n";
        daemon_pid_ =
            spawn({env_or("TRESIMD", "src/daemon/tresimd"), "--session", "--tcti", swtpm_->tcti(),
                   "--state-dir", dir_ + "/state", "--config", dir_ + "/tresimd.conf"});
        calls_ = sdbus::createSessionBusConnection().release();
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
            wait_exit(daemon_pid_, 20s);
        }
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

    // Runs tresimctl with `args`; its exit status and output.
    static Outcome ctl(std::vector<std::string> args) {
        args.insert(args.begin(), env_or("TRESIMCTL", "src/cli/tresimctl"));
        const std::string out = dir_ + "/out", err = dir_ + "/err";
        const pid_t pid = fork();
        if (pid == 0) {
            const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(o, 1);
            dup2(e, 2);
            std::vector<char*> argv;
            for (const auto& a : args) {
                argv.push_back(const_cast<char*>(a.c_str()));
            }
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        Outcome r;
        r.status = wait_exit(pid, 30s);
        r.out = slurp(out);
        r.err = slurp(err);
        return r;
    }

    // An approval of the current platform state, signed with `key` as
    // docs/dbus-api.md describes (DER ECDSA over approved_policy || policy_ref).
    static json approval(const tpm::PolicyAuthority& key) {
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
        Bytes sig(len);
        EXPECT_EQ(EVP_DigestSign(md.get(), sig.data(), &len, policy.data(), policy.size()), 1);
        sig.resize(len);
        return {{"format", "tresim-approval-1"},
                {"authority", key.public_pem()},
                {"pcrs", {{"bank", "sha256"}, {"values", values}}},
                {"auth_value", false},
                {"policy_ref", ""},
                {"signature", hex_encode(sig)}};
    }

    // Writes a profile and an approval file; their paths.
    std::pair<std::string, std::string> files(const json& set, int n) {
        const std::string profile = dir_ + "/profile-" + std::to_string(n) + ".json";
        const std::string approval_file = dir_ + "/approval-" + std::to_string(n) + ".json";
        std::ofstream(profile) << json{
            {"iccid", iccid(n)},       {"imsi", "26201" + std::to_string(1000000000 + n)},
            {"algorithm", "milenage"}, {"k", set.at("k")},
            {"opc", set.at("opc")},    {"amf", set.at("amf")},
            {"label", "cli test"}}.dump();
        std::ofstream(approval_file) << approval(authority_).dump();
        return {profile, approval_file};
    }

    static inline std::string dir_;
    static inline test::Swtpm* swtpm_ = nullptr;
    static inline pid_t bus_pid_ = -1;
    static inline pid_t daemon_pid_ = -1;
    static inline sdbus::IConnection* calls_ = nullptr;
    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

TEST_F(Tresimctl, StatusPrintsTheManagerAsTextAndAsJson) {
    const Outcome text = ctl({"--session", "status"});
    ASSERT_EQ(text.status, 0) << text.err;
    EXPECT_NE(text.out.find("tpm manufacturer: IBM"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("slots:"), std::string::npos) << text.out;
    const Outcome j = ctl({"--session", "--json", "status"});
    ASSERT_EQ(j.status, 0) << j.err;
    const json s = json::parse(j.out);
    EXPECT_EQ(s.at("slots"), 2);
    EXPECT_EQ(s.at("tpm_manufacturer"), "IBM");
    EXPECT_EQ(s.at("identity").get<std::string>().size(), 64u);
}

TEST_F(Tresimctl, ImportsShowsActivatesAndAuthenticatesWithResyncOnReplay) {
    const json set = milenage_set(0);
    const auto [profile, approval_file] = files(set, 1);
    const Outcome imported =
        ctl({"--session", "--json", "import", profile, "--approval", approval_file});
    ASSERT_EQ(imported.status, 0) << imported.err;
    const json r = json::parse(imported.out);
    const std::string path = r.at("mid");
    const std::string index = std::to_string(r.at("index").get<std::int64_t>());
    EXPECT_EQ(path, "/org/tresim1/mid/" + index);

    const Outcome listed = ctl({"--session", "--json", "list"});
    ASSERT_EQ(listed.status, 0) << listed.err;
    bool found = false;
    const json mids = json::parse(listed.out);
    for (const auto& m : mids.at("mids")) {
        found = found || (m.at("path") == path && m.at("iccid") == iccid(1));
    }
    EXPECT_TRUE(found) << listed.out;
    const Outcome human_list = ctl({"--session", "list"});
    EXPECT_NE(human_list.out.find(path + " [" + iccid(1) + "] inactive"), std::string::npos)
        << human_list.out;

    for (const std::string& spec : {index, path, iccid(1)}) {
        const Outcome shown = ctl({"--session", "--json", "show", spec});
        ASSERT_EQ(shown.status, 0) << spec << ": " << shown.err;
        const json m = json::parse(shown.out);
        EXPECT_EQ(m.at("path"), path);
        EXPECT_EQ(m.at("state"), "inactive");
        EXPECT_EQ(m.at("label"), "cli test");
    }
    const Outcome human = ctl({"--session", "show", index});
    EXPECT_NE(human.out.find("iccid:"), std::string::npos) << human.out;

    const Outcome activated = ctl({"--session", "activate", iccid(1), "--slot", "1"});
    ASSERT_EQ(activated.status, 0) << activated.err;
    EXPECT_EQ(json::parse(ctl({"--session", "--json", "show", index}).out).at("slot"), 1);

    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    const usim::Rand rand = usim::random_rand();
    const usim::AuthVector v = usim::generate_vector(*sw, rand, 0x21, {0x80, 0x00});
    const std::string rand_hex = hex_encode(rand);
    const std::string autn_hex = hex_encode(v.autn);
    const Outcome auth =
        ctl({"--session", "--json", "authenticate", index, "--rand", rand_hex, "--autn", autn_hex});
    ASSERT_EQ(auth.status, 0) << auth.err;
    const json a = json::parse(auth.out);
    EXPECT_EQ(a.at("result"), "success");
    EXPECT_EQ(a.at("res"), hex_encode(v.xres));
    EXPECT_EQ(a.at("ck"), hex_encode(Bytes(v.ck.data(), v.ck.data() + v.ck.size())));
    EXPECT_EQ(a.at("ik"), hex_encode(Bytes(v.ik.data(), v.ik.data() + v.ik.size())));
    EXPECT_FALSE(a.contains("auts"));

    const Outcome replay =
        ctl({"--session", "--json", "authenticate", path, "--rand", rand_hex, "--autn", autn_hex});
    ASSERT_EQ(replay.status, 0) << replay.err;
    const json s = json::parse(replay.out);
    EXPECT_EQ(s.at("result"), "sync-failure");
    const Bytes auts = hex_decode(s.at("auts").get<std::string>(), "auts");
    EXPECT_EQ(usim::resync(*sw, rand, auts), std::optional<std::uint64_t>(0x21));

    const Outcome human_auth =
        ctl({"--session", "authenticate", index, "--rand", rand_hex, "--autn", autn_hex});
    EXPECT_NE(human_auth.out.find("result: sync-failure"), std::string::npos) << human_auth.out;

    const Outcome again = ctl({"--session", "activate", index});
    EXPECT_EQ(again.status, 1);
    EXPECT_TRUE(again.err.starts_with("tresimctl: org.tresim1.Error.IllegalTransition: "))
        << again.err;
    EXPECT_EQ(std::count(again.err.begin(), again.err.end(), '\n'), 1) << again.err;

    ASSERT_EQ(ctl({"--session", "deactivate", index}).status, 0);
    ASSERT_EQ(ctl({"--session", "delete", path}).status, 0);
    EXPECT_EQ(ctl({"--session", "show", path}).status, 1);
}

TEST_F(Tresimctl, AnUnknownMidIsAnErrorNamingUnknownMid) {
    for (const std::string& spec :
         std::vector<std::string>{"999", "/org/tresim1/mid/999", "89490200000000000000"}) {
        const Outcome r = ctl({"--session", "activate", spec});
        EXPECT_EQ(r.status, 1) << spec;
        EXPECT_TRUE(r.err.starts_with("tresimctl: org.tresim1.Error.UnknownMid: ")) << r.err;
    }
}

TEST_F(Tresimctl, BadHexAndBadCommandLinesAreUsageErrors) {
    const Outcome hex = ctl({"--session", "authenticate", "1", "--rand", "xyz", "--autn", "00"});
    EXPECT_EQ(hex.status, 2);
    EXPECT_NE(hex.err.find("--rand"), std::string::npos) << hex.err;
    EXPECT_EQ(ctl({"--session", "frobnicate"}).status, 2);
    EXPECT_EQ(ctl({"--session", "show"}).status, 2);
    EXPECT_EQ(ctl({"--session", "--system", "status"}).status, 2);
}

TEST_F(Tresimctl, AWrongLengthIsTheDaemonsInvalidArgument) {
    const json set = milenage_set(1);
    const auto [profile, approval_file] = files(set, 2);
    const Outcome imported =
        ctl({"--session", "--json", "import", profile, "--approval", approval_file});
    ASSERT_EQ(imported.status, 0) << imported.err;
    const std::string path = json::parse(imported.out).at("mid");
    const Outcome r = ctl({"--session", "authenticate", path, "--rand", "00", "--autn", "00"});
    EXPECT_EQ(r.status, 1);
    EXPECT_TRUE(r.err.starts_with("tresimctl: org.tresim1.Error.InvalidArgument: ")) << r.err;
    EXPECT_EQ(ctl({"--session", "delete", path}).status, 0);
}

TEST_F(Tresimctl, TheSystemBusIsNotTheSessionBus) {
    const Outcome r = ctl({"--system", "status"});
    EXPECT_EQ(r.status, 1);
    EXPECT_TRUE(r.err.starts_with("tresimctl: ")) << r.err;
}

TEST_F(Tresimctl, AuditVerifiesAndExports) {
    const Outcome v = ctl({"--session", "--json", "audit", "verify"});
    ASSERT_EQ(v.status, 0) << v.err << v.out;
    EXPECT_EQ(json::parse(v.out).at("ok"), true);
    const Outcome human = ctl({"--session", "audit", "verify"});
    EXPECT_NE(human.out.find("result:  ok"), std::string::npos) << human.out;
    const Outcome e = ctl({"--session", "--json", "audit", "export"});
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_EQ(json::parse(e.out).at("format"), "tresim-audit-1");
}

TEST_F(Tresimctl, ApproveStoresAnApproval) {
    const std::string file = dir_ + "/approve.json";
    std::ofstream(file) << approval(authority_).dump();
    const Outcome r = ctl({"--session", "approve", file});
    EXPECT_EQ(r.status, 0) << r.err;
    const Outcome missing = ctl({"--session", "approve", dir_ + "/none.json"});
    EXPECT_EQ(missing.status, 1);
}

} // namespace
