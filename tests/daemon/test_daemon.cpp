// tresimd end to end: a private dbus-daemon, a swtpm and the real tresimd
// executable, driven over the bus with the generated sdbus-c++ proxies. The
// methods that succeed; error paths are in test_daemon_errors.cpp, several
// clients at once in test_daemon_concurrency.cpp.

#include <condition_variable>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <unistd.h>

#include "fixture.hpp"
#include "swtpm.hpp"
#include "usim/suci.hpp"

namespace {

using namespace tresim;
using namespace tresim::test;
using namespace std::chrono_literals;

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

struct MainConfig {
    static std::string config() {
        return "[mids]\nslots = 3\n[authorization]\npolkit = auto\nauthenticate = uid:65534\n";
    }
    static constexpr bool notify_socket = true;
    static constexpr unsigned da_max_tries = 1000;
};

class Daemon : public DaemonSuite<MainConfig> {
protected:
    static void TearDownTestSuite() {
        // A clean stop on SIGTERM, announced to systemd.
        if (env_ != nullptr && env_->alive()) {
            EXPECT_EQ(env_->stop(), 0) << "tresimd did not stop cleanly on SIGTERM";
            EXPECT_TRUE((env_->notified().find("STOPPING=1") != std::string::npos));
        }
        DaemonSuite::TearDownTestSuite();
    }

    std::string import(const json& profile, bool pin = false) {
        ManagerProxy manager(calls());
        return manager.ImportMid(json_blob(profile), env_->approval(authority_, pin).dump());
    }

    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

Blob blob_of(const std::string& hex) {
    return hex_decode(hex, "test data");
}

TEST_F(Daemon, ItNotifiesReadyAndPingsTheWatchdog) {
    std::string messages = env_->notified();
    EXPECT_TRUE((messages.find("READY=1") != std::string::npos)) << messages;
    std::this_thread::sleep_for(500ms);
    messages += env_->notified();
    EXPECT_TRUE((messages.find("WATCHDOG=1") != std::string::npos)) << messages;
}

TEST_F(Daemon, ManagerPropertiesDescribeTheTpmAndTheConfiguration) {
    ManagerProxy manager(calls());
    EXPECT_EQ(manager.Slots(), 3u);
    EXPECT_EQ(manager.PcrSelection(), "sha256:0,2,4,7");
    EXPECT_EQ(manager.TpmManufacturer(), "IBM");
    const std::string identity = manager.Identity();
    EXPECT_EQ(identity.size(), 64u);
    EXPECT_EQ(identity.find_first_not_of("0123456789abcdef"), std::string::npos) << identity;
    const std::string firmware = manager.TpmFirmware();
    EXPECT_EQ(std::count(firmware.begin(), firmware.end(), '.'), 3) << firmware;
    const std::set<std::string> modes{"tpm-ecb", "tpm-cfb", "sealed"};
    EXPECT_TRUE(modes.contains(manager.ComputationMode())) << manager.ComputationMode();
    const auto banks = manager.PcrBanks();
    EXPECT_NE(std::find(banks.begin(), banks.end(), "sha256"), banks.end());
    EXPECT_FALSE(manager.AuditAnchor().empty());
    const auto pcrs = manager.GetPlatformState();
    ASSERT_EQ(pcrs.size(), 4u);
    for (const std::uint32_t index : {0u, 2u, 4u, 7u}) {
        ASSERT_TRUE(pcrs.contains(index)) << "PCR " << index;
        EXPECT_EQ(pcrs.at(index).size(), 32u);
    }
    // A fresh swtpm: no PCR of the selection was extended.
    EXPECT_EQ(pcrs.at(0), Blob(32, 0));
}

TEST_F(Daemon, AnImportedMidAppearsActivatesAndRunsAkaWithResyncOnReplay) {
    ObjectManagerWatch watch(env_->signals());
    const json set = milenage_set(0);
    json p = profile_json(set, 1);
    p["operator"] = "Example Mobile";
    const std::string path = import(p);
    EXPECT_TRUE(path.starts_with("/org/tresim1/mid/"));
    EXPECT_TRUE(watch.wait_added(path)) << "no InterfacesAdded for " << path;

    MidProxy mid(calls(), path);
    EXPECT_EQ("/org/tresim1/mid/" + std::to_string(mid.Index()), path);
    EXPECT_EQ(mid.Iccid(), iccid(1));
    EXPECT_EQ(mid.Imsi(), imsi(1));
    EXPECT_EQ(mid.Label(), "daemon test");
    EXPECT_EQ(mid.Operator(), "Example Mobile");
    EXPECT_EQ(mid.Algorithm(), "milenage");
    EXPECT_EQ(mid.ComputationMode(), ManagerProxy(calls()).ComputationMode());
    EXPECT_EQ(mid.Applications(), std::vector<std::string>{"usim"});
    EXPECT_FALSE(mid.PinRequired());
    EXPECT_FALSE(mid.PinVerified());
    EXPECT_EQ(mid.PinRetries(), 0u);
    EXPECT_EQ(mid.PukRetries(), 0u);
    EXPECT_EQ(mid.State(), "inactive");
    EXPECT_EQ(mid.Slot(), -1);
    mid.Activate(1);
    EXPECT_EQ(mid.State(), "active");
    EXPECT_EQ(mid.Slot(), 1);

    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x21);
    const Blob rand = to_blob(v.rand);
    const Blob autn = to_blob(v.autn);
    const auto [result, res, ck, ik, auts] = mid.Authenticate(rand, autn);
    EXPECT_EQ(result, "success");
    EXPECT_EQ(res, to_blob(v.xres));
    EXPECT_EQ(ck, to_blob(v.ck.view()));
    EXPECT_EQ(ik, to_blob(v.ik.view()));
    EXPECT_TRUE(auts.empty());

    const auto [again, res2, ck2, ik2, auts2] = mid.Authenticate(rand, autn);
    EXPECT_EQ(again, "sync-failure");
    EXPECT_TRUE(res2.empty());
    EXPECT_TRUE(ck2.empty());
    EXPECT_TRUE(ik2.empty());
    ASSERT_EQ(auts2.size(), 14u);
    EXPECT_EQ(usim::resync(*net, v.rand, auts2), std::optional<std::uint64_t>(0x21));
}

// TS 35.208 test set 1 through the daemon: the documented busctl example.
TEST_F(Daemon, TheOfficialTestSetGivesTheOfficialResults) {
    const json set = milenage_set(0);
    const std::uint64_t sqn = std::stoull(set.at("sqn").get<std::string>(), nullptr, 16);
    json p = profile_json(set, 2);
    // The highest SQN used so far: one SEQ below the set's (same IND).
    char previous[13];
    std::snprintf(previous, sizeof previous, "%012llx", static_cast<unsigned long long>(sqn - 32));
    p["sqn"] = previous;
    MidProxy mid(calls(), import(p));
    mid.Activate(0);
    auto net = network(set);
    const usim::Rand rand = hex_decode_array<16>(set.at("rand").get<std::string>(), "rand");
    const usim::AuthVector v = usim::generate_vector(
        *net, rand, sqn, hex_decode_array<2>(set.at("amf").get<std::string>(), "amf"));
    const auto [result, res, ck, ik, auts] = mid.Authenticate(to_blob(rand), to_blob(v.autn));
    EXPECT_EQ(result, "success");
    EXPECT_EQ(hex_encode(res), set.at("f2"));
    EXPECT_EQ(hex_encode(ck), set.at("f3"));
    EXPECT_EQ(hex_encode(ik), set.at("f4"));
    // AUTN = SQN xor AK || AMF || MAC-A with the set's f5 and f1.
    const Blob ak = blob_of(set.at("f5"));
    Blob expected_autn = blob_of(set.at("sqn"));
    for (std::size_t i = 0; i < 6; ++i) {
        expected_autn[i] ^= ak[i];
    }
    const Blob amf_mac =
        blob_of(set.at("amf").get<std::string>() + set.at("f1").get<std::string>());
    expected_autn.insert(expected_autn.end(), amf_mac.begin(), amf_mac.end());
    EXPECT_EQ(to_blob(v.autn), expected_autn);
}

TEST_F(Daemon, GsmAuthenticationGivesTheOfficialSresAndKc) {
    const json gsm = vectors("gsm_milenage.json").at("gsm_milenage");
    for (int i = 0; i < 3; ++i) {
        const json& set = gsm.at(static_cast<std::size_t>(i));
        json p = profile_json(set, 10 + i);
        p["amf"] = "8000";
        MidProxy mid(calls(), import(p));
        mid.Activate(2);
        const auto [sres, kc] = mid.GsmAuthenticate(blob_of(set.at("rand")));
        EXPECT_EQ(hex_encode(sres), set.at("sres1_c2")) << set.at("name");
        EXPECT_EQ(hex_encode(kc), set.at("kc")) << set.at("name");
        mid.Deactivate();
    }
}

TEST_F(Daemon, ADeletedMidDisappearsWithInterfacesRemoved) {
    ObjectManagerWatch watch(env_->signals());
    const std::string path = import(profile_json(milenage_set(1), 3));
    MidProxy mid(calls(), path);
    const std::int64_t before = snapshot(calls()).audit_records;
    mid.Delete();
    EXPECT_TRUE(watch.wait_removed(path)) << "no InterfacesRemoved for " << path;
    EXPECT_FALSE(snapshot(calls()).mids.contains(path));
    // The tombstone is in the audit record.
    EXPECT_GT(snapshot(calls()).audit_records, before);
    EXPECT_EQ(error_name([&] { mid.Activate(0); }), "org.freedesktop.DBus.Error.UnknownObject");
    // Indexes are never reused.
    const std::string next = import(profile_json(milenage_set(1), 4));
    EXPECT_NE(next, path);
}

TEST_F(Daemon, StateChangesAreAnnouncedWithPropertiesChanged) {
    const std::string path = import(profile_json(milenage_set(3), 5));
    PropertiesWatch watch(env_->signals(), path);
    MidProxy mid(calls(), path);
    mid.Activate(0);
    EXPECT_TRUE(watch.wait_changed("org.tresim1.Mid.State"));
    EXPECT_TRUE(watch.wait_changed("org.tresim1.Mid.Slot"));
    mid.Deactivate();
    EXPECT_EQ(mid.State(), "inactive");
    EXPECT_EQ(mid.Slot(), -1);
}

TEST_F(Daemon, ImportFromADescriptorWorks) {
    const Blob p = json_blob(profile_json(milenage_set(4), 6));
    const std::string file = env_->dir() + "/profile.json";
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(p.data()), static_cast<std::streamsize>(p.size()));
    const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ManagerProxy manager(calls());
    const std::string path = manager.ImportMidFromFd(sdbus::UnixFd(fd, sdbus::adopt_fd),
                                                     env_->approval(authority_).dump());
    std::remove(file.c_str());
    EXPECT_EQ(MidProxy(calls(), path).Iccid(), iccid(6));

    // A pipe works too (read to its end).
    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
    const Blob p2 = json_blob(profile_json(milenage_set(4), 7));
    ASSERT_EQ(write(pipe_fds[1], p2.data(), p2.size()), static_cast<ssize_t>(p2.size()));
    close(pipe_fds[1]);
    const std::string piped = manager.ImportMidFromFd(sdbus::UnixFd(pipe_fds[0], sdbus::adopt_fd),
                                                      env_->approval(authority_).dump());
    EXPECT_EQ(MidProxy(calls(), piped).Iccid(), iccid(7));
}

TEST_F(Daemon, AddApprovalStoresAnApprovalThatLaterImportsReferTo) {
    ManagerProxy manager(calls());
    const Snapshot before = snapshot(calls());
    manager.AddApproval(env_->approval(authority_).dump());
    const Snapshot after = snapshot(calls());
    EXPECT_TRUE(after.audit_ok);
    EXPECT_EQ(after.audit_records, before.audit_records + 1);
    EXPECT_EQ(after.mids, before.mids);
    // The reference form: the authority alone names the stored approval.
    const json reference{{"format", "tresim-approval-1"}, {"authority", authority_.public_pem()}};
    const std::string path =
        manager.ImportMid(json_blob(profile_json(milenage_set(5), 8)), reference.dump());
    EXPECT_EQ(MidProxy(calls(), path).State(), "inactive");
}

TEST_F(Daemon, TheAuditRecordVerifiesAndExportsEveryRecord) {
    import(profile_json(milenage_set(6), 9));
    ManagerProxy manager(calls());
    const auto [ok, records, message] = manager.AuditVerify();
    EXPECT_TRUE(ok) << message;
    EXPECT_GE(records, 2); // at least the approval and the install
    const json exported = json::parse(manager.AuditExport());
    EXPECT_EQ(exported.at("format"), "tresim-audit-1");
    EXPECT_TRUE(exported.contains("anchor"));
    EXPECT_EQ(static_cast<std::int64_t>(exported.at("records").size()), records);
    // No secret of the profile in it.
    EXPECT_EQ(exported.dump().find(milenage_set(6).at("k").get<std::string>()), std::string::npos);
}

// The null scheme: the MSIN in the clear, as TS 23.003 §2.2B writes it.
TEST_F(Daemon, GetSuciWithoutAHomeNetworkKeyUsesTheNullScheme) {
    MidProxy mid(calls(), import(profile_json(milenage_set(7), 20)));
    mid.Activate(0);
    const auto [suci, output] = mid.GetSuci();
    const std::string msin = imsi(20).substr(5); // MCC 262, MNC 01
    EXPECT_EQ(suci, "suci-0-262-01-0-0-0-" + msin);
    // BCD, low nibble first: "1000000020" -> 01 00 00 00 02.
    EXPECT_EQ(hex_encode(output), "0100000002");
}

// ECIES profiles A and B with the home network keys of TS 33.501 C.4: the
// network side (the key's owner) recovers the official scheme input.
TEST_F(Daemon, GetSuciConcealsTheMsinForTheHomeNetworkKey) {
    const json suci_sets = vectors("suci.json").at("suci");
    int n = 21;
    for (const std::string name : {"suci-profilea-imsi", "suci-profileb-imsi"}) {
        const auto it = std::find_if(suci_sets.begin(), suci_sets.end(),
                                     [&](const json& s) { return s.at("name") == name; });
        ASSERT_NE(it, suci_sets.end()) << name;
        const json& s = *it;
        const bool a = s.at("profile") == "A";
        json p = profile_json(milenage_set(7), n++);
        const std::string mcc_mnc = s.at("mcc_mnc");
        p["imsi"] = mcc_mnc + s.at("msin").get<std::string>();
        p["mnc_length"] = 3;
        p["suci"] = {
            {"profile", s.at("profile")},
            {"hn_key_id", 7},
            {"hn_public_key", a ? s.at("hn_public_key") : s.at("hn_public_key_compressed")},
            {"routing_indicator", "12"}};
        MidProxy mid(calls(), import(p));
        mid.Activate(0);
        const auto [suci, output] = mid.GetSuci();
        const std::string prefix = "suci-0-274-012-12-" + std::string(a ? "1" : "2") + "-7-";
        ASSERT_TRUE(suci.starts_with(prefix)) << suci;
        EXPECT_EQ(suci.substr(prefix.size()), hex_encode(output)) << suci;
        EXPECT_EQ(output.size(), (a ? 32u : 33u) + 5u + 8u) << name;
        const auto input = usim::deconceal(a ? usim::SuciProfile::A : usim::SuciProfile::B,
                                           blob_of(s.at("hn_private_key")), output);
        ASSERT_TRUE(input.has_value()) << name << ": the MAC tag does not verify";
        EXPECT_EQ(hex_encode(*input), s.at("scheme_input")) << name;
        // A fresh ephemeral key each time.
        EXPECT_NE(std::get<1>(mid.GetSuci()), output);
        mid.Deactivate();
    }
}

// Runs `calls` as UID/GID 65534 (nobody), whom the configuration grants
// org.tresim1.authenticate and nothing else.
std::string as_nobody(const std::function<std::string(sdbus::IConnection&)>& calls) {
    return run_as(65534, 65534, calls);
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
    const json set = milenage_set(8);
    const std::string path = import(profile_json(set, 30));
    MidProxy(calls(), path).Activate(0);
    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x40);
    const std::string report = as_nobody([&](sdbus::IConnection& c) {
        ManagerProxy m(c);
        MidProxy mid(c, path);
        std::string r;
        r += error_name([&] { m.GetPlatformState(); }) + "\n";
        r += error_name([&] { mid.Deactivate(); }) + "\n";
        // Allowed to authenticate.
        const auto [result, res, ck, ik, auts] = mid.Authenticate(to_blob(v.rand), to_blob(v.autn));
        r += result + " " + hex_encode(res) + "\n";
        r += mid.State() + "\n"; // properties need no action
        return r;
    });
    EXPECT_EQ(report, "org.tresim1.Error.NotAuthorized\norg.tresim1.Error.NotAuthorized\n"
                      "success " +
                          hex_encode(v.xres) + "\nactive\n");
}

// With polkit on the bus ("polkit = auto"), polkit decides instead of the rules.
TEST_F(Daemon, WhenPolkitRunsItDecidesForNonRootCallers) {
    const std::string path = import(profile_json(milenage_set(9), 31));
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

// Isim.Authenticate is the same AKA on the same SQN array as Usim.Authenticate.
TEST_F(Daemon, AMidWithImsIdentitiesAlsoImplementsIsim) {
    const json set = milenage_set(10);
    json p = profile_json(set, 40);
    p["isim"] = {{"impi", "user@ims.example.org"},
                 {"impu", {"sip:user@ims.example.org", "tel:+49123456"}},
                 {"domain", "ims.example.org"}};
    const std::string path = import(p);
    MidProxy mid(calls(), path);
    EXPECT_EQ(mid.Applications(), (std::vector<std::string>{"usim", "isim"}));
    IsimProxy isim(calls(), path);
    EXPECT_EQ(isim.Impi(), "user@ims.example.org");
    EXPECT_EQ(isim.Impus(),
              (std::vector<std::string>{"sip:user@ims.example.org", "tel:+49123456"}));
    EXPECT_EQ(isim.Domain(), "ims.example.org");

    mid.Activate(0);
    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x22);
    const auto [result, res, ck, ik, auts] = isim.Authenticate(to_blob(v.rand), to_blob(v.autn));
    EXPECT_EQ(result, "success");
    EXPECT_EQ(res, to_blob(v.xres));
    EXPECT_EQ(ck, to_blob(v.ck.view()));
    EXPECT_EQ(ik, to_blob(v.ik.view()));
    const auto [again, r2, c2, i2, auts2] = mid.Authenticate(to_blob(v.rand), to_blob(v.autn));
    EXPECT_EQ(again, "sync-failure");
    EXPECT_EQ(usim::resync(*net, v.rand, auts2), std::optional<std::uint64_t>(0x22));

    const std::string plain = import(profile_json(milenage_set(11), 41));
    EXPECT_EQ(MidProxy(calls(), plain).Applications(), std::vector<std::string>{"usim"});
    IsimProxy usim_only(calls(), plain);
    EXPECT_EQ(error_name([&] { usim_only.Impi(); }), "org.freedesktop.DBus.Error.UnknownProperty");
    EXPECT_EQ(error_name([&] { usim_only.Authenticate(to_blob(v.rand), to_blob(v.autn)); }),
              "org.freedesktop.DBus.Error.UnknownMethod");
}

// Start-up failures: one line and EX_CONFIG (78), before the bus is touched.
TEST(DaemonStart, ABadConfigurationOrAMissingTpmExitsWith78) {
    const std::string dir = make_temp_dir("tresim-daemon-start-");
    const std::string tresimd = env_or("TRESIMD", "src/daemon/tresimd");
    std::ofstream(dir + "/bad.conf") << "[mids]\nslots = 99\n";
    pid_t pid = spawn({tresimd, "--session", "--config", dir + "/bad.conf", "--tcti",
                       "swtpm:host=127.0.0.1,port=1", "--state-dir", dir + "/state"});
    EXPECT_EQ(wait_exit(pid, 20s), 78);
    std::ofstream(dir + "/good.conf") << "";
    pid = spawn({tresimd, "--session", "--config", dir + "/good.conf", "--tcti",
                 "swtpm:host=127.0.0.1,port=1", "--state-dir", dir + "/state"});
    EXPECT_EQ(wait_exit(pid, 30s), 78);
    remove_tree(dir);
}

} // namespace
