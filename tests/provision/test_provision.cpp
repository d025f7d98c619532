// Remote provisioning end to end: the real tresim-ps (tools/ps-dev-pki's
// configuration, TLS 1.3 on loopback) and the real tresimd on a swtpm with a
// private dbus-daemon (tests/daemon/fixture.hpp), never run against each
// other before this test. The operator side is driven over HTTPS with
// cpp-httplib's SSLClient; the device side over D-Bus and with tresimctl.
//
// Instructions a correct PS never sends (forged, replayed, expired, foreign,
// unsigned, a blob for another TPM) come from a small misbehaving HTTPS server
// in this test that speaks the device API: it is pinned in the TE policy as a
// second server with its own signing key, so its counters never touch the
// real PS's. Forging inside tresim-ps's database would test the store, not
// the device's checks.
//
// Expected AKA results are the official TS 35.208 values
// (tests/vectors/milenage.json): the network side computes RES/XRES in
// software from K and OPc, the device inside its TPM.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <iostream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "fixture.hpp"
#include "protocol/base64url.hpp"
#include "protocol/eventlog.hpp"
#include "protocol/jws.hpp"
#include "ps_server.hpp"
#include "swtpm.hpp"
#include "te/approval_json.hpp"
#include "te/mid_crypto.hpp"
#include "tpm/attest.hpp"
#include "tpm/context.hpp"
#include "tpm/duplicate.hpp"
#include "tpm/error.hpp"
#include "tpm/keys.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using namespace tresim::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr char kClass[] = "gw-e2e";

// ---- the Provisioning Server --------------------------------------------------------

// One tresim-ps on a copy of the PKI folder; keeps its port and state across
// restarts.
class PsServer : public test::PsServer {
public:
    // `empty_ca`: a server that knows no manufacturer CA.
    PsServer(const DevPki& pki, const std::string& name, bool empty_ca)
        : test::PsServer(pki, pki.dir + "-" + name, [&](json&) {
              if (empty_ca) {
                  const std::string cas = pki.dir + "-" + name + "/manufacturer-ca";
                  fs::remove_all(cas);
                  fs::create_directory(cas);
              }
          }) {}

    void reference(const std::map<unsigned, Bytes>& pcrs) {
        test::PsServer::reference(kClass, pcrs);
    }
    Response subscribe(const json& set, int n, const json& bind) {
        const json profile = {{"iccid", iccid(n)},
                              {"imsi", imsi(n)},
                              {"algorithm", "milenage"},
                              {"label", "e2e " + std::to_string(n)},
                              {"k", set.at("k")},
                              {"opc", set.at("opc")},
                              {"amf", "8000"}};
        return post("/v1/operator/subscriptions",
                    {{"profile", profile}, {"class", kClass}, {"bind", bind}});
    }
    std::string order(const std::string& device, const json& order) {
        const Response r = post("/v1/operator/devices/" + device + "/orders", order);
        EXPECT_EQ(r.status / 100, 2) << r.body.dump();
        return r.body.value("id", "");
    }
    json device(const std::string& id) { return get("/v1/operator/devices/" + id).body; }
    json mids(const std::string& id) { return device(id).at("mids"); }
    std::string order_state(const std::string& device_id, const std::string& order) {
        const json d = device(device_id);
        for (const json& o : d.at("orders")) {
            if (o.at("id") == order) {
                return o.at("state");
            }
        }
        return "(none)";
    }
};

// ---- a misbehaving server --------------------------------------------------------------

// Speaks the device API with a real MakeCredential (the device must get past
// credential activation) and answers the evidence with whatever `make`
// returns for this device, its session's validation hash, SRK and PCRs.
struct RogueSession {
    std::string device;
    std::string validation;
    TPM2B_PUBLIC srk{};
    std::string mode;
    tpm::PcrValues pcrs;
};

class Rogue {
public:
    explicit Rogue(const std::string& pki)
        : server_((pki + "/server.pem").c_str(), (pki + "/server.key").c_str()),
          key_(tpm::PolicyAuthority::generate()) {
        SSL_CTX_set_min_proto_version(server_.ssl_context(), TLS1_3_VERSION);
        key_.save(pki + "/rogue-signing.pem");
        std::ofstream(pki + "/rogue-signing.pub.pem") << key_.public_pem();
        const auto start = [this](const httplib::Request& req, httplib::Response& res) {
            const json h = json::parse(req.body);
            const TPM2B_PUBLIC ek = tpm::unmarshal_public(
                protocol::b64url_decode(h.at("ek_public").get<std::string>(), "ek"), "ek");
            const TPM2B_PUBLIC ak = tpm::unmarshal_public(
                protocol::b64url_decode(h.at("ak_public").get<std::string>(), "ak"), "ak");
            std::lock_guard lock(mutex_);
            session_.device = tpm::te_identity(ek.publicArea);
            session_.srk = tpm::unmarshal_public(
                protocol::b64url_decode(h.at("srk_public").get<std::string>(), "srk"), "srk");
            session_.mode = h.at("platform").value("computation_mode", "sealed");
            const tpm::Credential c = tpm::make_credential(
                ek.publicArea, tpm::object_name(ak.publicArea), SecretBytes(Bytes(32, 7)));
            res.set_content(json{{"session", "rogue"},
                                 {"credential_blob", protocol::b64url_encode(c.credential_blob)},
                                 {"secret", protocol::b64url_encode(c.secret)},
                                 {"nonce", protocol::b64url_encode(Bytes(32, 1))},
                                 {"pcr_selection", "sha256:0,2,4,7"},
                                 {"expires", 4102444800}}
                                .dump(),
                            "application/json");
        };
        server_.Post("/v1/device/hello", start);
        server_.Post("/v1/device/sync", start);
        server_.Post("/v1/device/evidence", [this](const httplib::Request& req,
                                                   httplib::Response& res) {
            const json e = json::parse(req.body);
            std::lock_guard lock(mutex_);
            const Bytes attest =
                protocol::b64url_decode(e.at("quote").at("attest").get<std::string>(), "attest");
            session_.validation = hex_encode(sha256(attest));
            session_.pcrs = tpm::PcrValues{};
            session_.pcrs.bank = TPM2_ALG_SHA256;
            for (const auto& [i, v] : e.at("pcrs").at("values").items()) {
                session_.pcrs.values[static_cast<unsigned>(std::stoul(i))] =
                    hex_decode(v.get<std::string>(), "pcr");
            }
            const std::vector<std::string> list =
                make ? make(session_) : std::vector<std::string>{};
            res.set_content(json{{"validated", true}, {"instructions", list}}.dump(),
                            "application/json");
        });
        server_.Post(
            "/v1/device/results", [this](const httplib::Request& req, httplib::Response& res) {
                const json r = json::parse(req.body);
                std::lock_guard lock(mutex_);
                results = json::parse(r.at("results").get<std::string>());
                res.set_content(json{{"accepted", results.size()}}.dump(), "application/json");
            });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
    }
    ~Rogue() {
        server_.stop();
        thread_.join();
    }
    Rogue(const Rogue&) = delete;
    Rogue& operator=(const Rogue&) = delete;

    std::string url() const { return "https://localhost:" + std::to_string(port_); }
    const tpm::PolicyAuthority& key() const { return key_; }

    // A signed instruction; `tweak` edits the payload first.
    std::string sign(const RogueSession& s, std::uint64_t counter, const std::string& op,
                     const json& body, const std::function<void(json&)>& tweak = {},
                     const tpm::PolicyAuthority* key = nullptr) const {
        const std::int64_t now = std::time(nullptr);
        json p = {{"iss", "rogue"},
                  {"device", s.device},
                  {"counter", counter},
                  {"iat", now},
                  {"exp", now + 600},
                  {"id", "rogue-" + std::to_string(counter)},
                  {"validation", s.validation},
                  {"op", op},
                  {"body", body}};
        if (tweak) {
            tweak(p);
        }
        return protocol::jws_sign(p, key != nullptr ? *key : key_, "tresim-instruction");
    }

    std::function<std::vector<std::string>(const RogueSession&)> make;
    json results = json::array();

private:
    httplib::SSLServer server_;
    tpm::PolicyAuthority key_;
    std::mutex mutex_;
    RogueSession session_;
    int port_ = 0;
    std::thread thread_;
};

// ---- the environment ------------------------------------------------------------------

struct World {
    std::string dir; // test files: PKI, TE policy, event log
    DevPki pki;      // tools/ps-dev-pki's output in dir/pki, with the operator token
    std::unique_ptr<PsServer> ps;
    std::unique_ptr<PsServer> ps_no_ca; // knows no manufacturer CA
    std::unique_ptr<Rogue> rogue;
    std::unique_ptr<TestDaemon> daemon;
    pid_t own_daemon = -1; // a tresimd this test restarted itself
    protocol::EventLog log;
    std::string identity;
    int next_mid = 1;
};

World* world = nullptr;

std::string daemon_config(const std::string& dir) {
    return "[mids]\nslots = 2\n[provisioning]\nte_policy = " + dir +
           "/te-policy.json\nevent_log = " + dir + "/event.log\nplatform_class = " + kClass +
           "\ntimeout = 10\nretry_min = 1\nretry_max = 2\n";
}

// The TE policy: the real PS; with `all`, also the PS without manufacturer CAs
// and the rogue server (Sync asks every pinned server, so they are pinned only
// for the tests that need them).
void write_te_policy(unsigned poll_interval, bool all = false) {
    const std::string ca = world->ps->dir() + "/ca.pem";
    const std::string key = world->ps->dir() + "/ps-signing.pub.pem";
    json servers = json::array();
    servers.push_back({{"url", world->ps->url()}, {"tls_root", ca}, {"signing_keys", {key}}});
    if (all) {
        servers.push_back(
            {{"url", world->ps_no_ca->url()}, {"tls_root", ca}, {"signing_keys", {key}}});
        servers.push_back({{"url", world->rogue->url()},
                           {"tls_root", ca},
                           {"signing_keys", {world->dir + "/pki/rogue-signing.pub.pem"}}});
    }
    const json policy = {
        {"provisioning",
         {{"servers", servers}, {"confirm_within", 600}, {"poll_interval", poll_interval}}}};
    std::ofstream(world->dir + "/te-policy.json") << policy.dump(2);
}

void write_event_log() {
    std::ofstream(world->dir + "/event.log", std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(protocol::write_event_log(world->log).data()),
               static_cast<std::streamsize>(protocol::write_event_log(world->log).size()));
}

bool daemon_alive() {
    if (world->own_daemon > 0) {
        int status = 0;
        return waitpid(world->own_daemon, &status, WNOHANG) == 0;
    }
    return world->daemon->alive();
}

// Stops tresimd (SIGTERM, or `sig`); runs `between` with the TPM free; starts
// it again on the same TPM, state, bus and configuration.
void restart_daemon(int sig = SIGTERM, const std::function<void()>& between = {}) {
    auto bus =
        sdbus::createProxy(world->daemon->calls(), "org.freedesktop.DBus", "/org/freedesktop/DBus");
    const auto owned = [&] {
        bool has = false;
        bus->callMethod("NameHasOwner")
            .onInterface("org.freedesktop.DBus")
            .withArguments(std::string("org.tresim1"))
            .storeResultsTo(has);
        return has;
    };
    if (world->own_daemon > 0) {
        kill(world->own_daemon, sig);
        wait_exit(world->own_daemon, 20s);
        world->own_daemon = -1;
    } else {
        if (sig != SIGTERM) {
            kill(world->daemon->pid(), sig);
        }
        world->daemon->stop();
    }
    for (int i = 0; i < 250 && owned(); ++i) { // until the bus notices the exit
        std::this_thread::sleep_for(20ms);
    }
    if (between) {
        between();
    }
    const std::string d = world->daemon->dir();
    world->own_daemon = spawn({need_env("TRESIMD"), "--session", "--tcti", world->daemon->tcti(),
                               "--state-dir", d + "/state", "--config", d + "/tresimd.conf"});
    for (int i = 0; i < 500; ++i) {
        if (owned()) {
            return;
        }
        std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error("the restarted tresimd did not take org.tresim1");
}

sdbus::IConnection& calls() {
    return world->daemon->calls();
}

struct Job {
    std::string state, error, message;
    std::vector<sdbus::ObjectPath> mids;
};

// Waits for a job to end.
Job wait_job(const sdbus::ObjectPath& path, std::chrono::seconds limit = 30s) {
    auto proxy = sdbus::createProxy(calls(), "org.tresim1", path);
    const auto get = [&](const char* name) {
        return proxy->getProperty(name).onInterface("org.tresim1.Job");
    };
    const auto until = std::chrono::steady_clock::now() + limit;
    Job j;
    for (;;) {
        j.state = get("State").get<std::string>();
        if (j.state == "done" || j.state == "failed" || std::chrono::steady_clock::now() > until) {
            break;
        }
        std::this_thread::sleep_for(30ms);
    }
    j.error = get("Error").get<std::string>();
    j.message = get("Message").get<std::string>();
    j.mids = get("Mids").get<std::vector<sdbus::ObjectPath>>();
    return j;
}

Job sync_job() {
    ManagerProxy manager(calls());
    return wait_job(manager.Sync());
}

Job provision_job(const std::string& server, const std::string& code,
                  const std::string& confirmation = "") {
    ManagerProxy manager(calls());
    return wait_job(manager.Provision(server, code, confirmation));
}

struct Outcome {
    int status = -1;
    std::string out, err;
};

Outcome ctl(std::vector<std::string> args) {
    args.insert(args.begin(), need_env("TRESIMCTL"));
    args.insert(args.begin() + 1, "--session");
    const std::string out = world->dir + "/ctl.out", err = world->dir + "/ctl.err";
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600), 1);
        dup2(open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600), 2);
        std::vector<char*> argv;
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    Outcome r;
    r.status = wait_exit(pid, 60s);
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

// The MID object path of an ICCID, or "".
std::string mid_path(const std::string& iccid_) {
    for (const auto& [path, text] : snapshot(calls()).mids) {
        if (text.find("Iccid=" + iccid_ + " ") != std::string::npos) {
            return path;
        }
    }
    return "";
}

std::string mid_state(const std::string& iccid_) {
    const std::string path = mid_path(iccid_);
    return path.empty() ? "(none)" : MidProxy(calls(), path).State();
}

// TE audit records (AuditExport) of `type` whose details contain `text`.
std::size_t te_audited(const std::string& type, const std::string& text) {
    ManagerProxy manager(calls());
    std::size_t n = 0;
    const json exported = json::parse(manager.AuditExport());
    for (const json& r : exported.at("records")) {
        n += r.value("type", "") == type && r.dump().find(text) != std::string::npos;
    }
    if (n == 0 && std::getenv("PROVISION_DEBUG") != nullptr) {
        std::cerr << manager.AuditExport() << "\n";
    }
    return n;
}

// One AKA on the MID at `path` (active) with a vector the network side makes in
// software from the operator's K and OPc for the official RAND of `set`: the
// device's RES equals XRES, and both equal the official f2 output.
void expect_aka(const std::string& path, const json& set, std::uint64_t sqn) {
    auto net = network(set);
    usim::Rand rand{};
    const Bytes r = hex_decode(set.at("rand").get<std::string>(), "rand", 16);
    std::copy(r.begin(), r.end(), rand.begin());
    const usim::AuthVector v = usim::generate_vector(*net, rand, sqn, {0x80, 0x00});
    MidProxy mid(calls(), path);
    const auto [result, res, ck, ik, auts] = mid.Authenticate(to_blob(v.rand), to_blob(v.autn));
    EXPECT_EQ(result, "success");
    EXPECT_EQ(res, to_blob(v.xres));
    EXPECT_EQ(hex_encode(res), set.at("f2").get<std::string>());
    EXPECT_EQ(ck, to_blob(v.ck.view()));
}

class Provisioning : public testing::Test {
protected:
    static void SetUpTestSuite() {
        world = new World;
        world->dir = make_temp_dir("tresim-provision-");
        {
            Swtpm ca; // only for its (shared) manufacturer CA files
            world->pki =
                make_dev_pki(world->dir + "/pki", {ca.ca_root_cert(), ca.ca_issuer_cert()});
        }
        const std::string pki = world->pki.dir;
        world->rogue = std::make_unique<Rogue>(pki);
        world->ps = std::make_unique<PsServer>(world->pki, "main", false);
        world->ps_no_ca = std::make_unique<PsServer>(world->pki, "noca", true);
        world->log.banks = {TPM2_ALG_SHA256};
        write_event_log();
        write_te_policy(0);
        world->daemon =
            std::make_unique<TestDaemon>(DaemonOptions{daemon_config(world->dir), false, 1000});
        ASSERT_TRUE(world->daemon->alive()) << "tresimd did not start";
        world->identity = ManagerProxy(calls()).Identity();
        std::map<unsigned, Bytes> state;
        for (const auto& [i, v] : ManagerProxy(calls()).GetPlatformState()) {
            state[i] = v;
        }
        world->ps->reference(state);
        world->ps_no_ca->reference(state);
    }
    static void TearDownTestSuite() {
        if (world->own_daemon > 0) {
            kill(world->own_daemon, SIGTERM);
            wait_exit(world->own_daemon, 20s);
        }
        world->daemon.reset();
        world->ps.reset();
        world->ps_no_ca.reset();
        world->rogue.reset();
        remove_tree(world->dir);
        delete world;
        world = nullptr;
    }
    void SetUp() override { ASSERT_TRUE(daemon_alive()) << "tresimd is not running"; }

    // Registers a subscription bound to an activation code; the code.
    static std::string code_for(const json& set, int n, const std::string& confirmation = "") {
        json bind = {{"activation_code", true}};
        if (!confirmation.empty()) {
            bind["confirmation_code"] = confirmation;
        }
        const Response r = world->ps->subscribe(set, n, bind);
        EXPECT_EQ(r.status, 201) << r.body.dump();
        return r.body.value("activation_code", "");
    }
};

// ---- 1. provisioning ------------------------------------------------------------------

TEST_F(Provisioning, AnActivationCodeProvisionsAMidThatAuthenticatesWithTheOperatorsVector) {
    const json set = milenage_set(0);
    const int n = world->next_mid++;
    const std::string code = code_for(set, n, "4711");
    const Outcome r = ctl({"provision", "--server", world->ps->url(), "--activation-code", code,
                           "--confirmation-code", "4711", "--timeout", "60"});
    ASSERT_EQ(r.status, 0) << r.out << r.err << slurp(world->ps->dir() + "/ps.log");
    // Progress, then the installed MID.
    EXPECT_NE(r.out.find("attesting"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("done:"), std::string::npos) << r.out;
    const std::string path = mid_path(iccid(n));
    ASSERT_FALSE(path.empty()) << describe(snapshot(calls()));
    EXPECT_NE(r.out.find("mid: " + path), std::string::npos) << r.out;
    EXPECT_EQ(mid_state(iccid(n)), "inactive");
    MidProxy(calls(), path).Activate(0);
    expect_aka(path, set, 0x20);
    MidProxy(calls(), path).Deactivate();
    // The PS knows the MID is there; the TE recorded the server's verdict.
    EXPECT_GE(world->ps->audited(world->identity, "ok", "results"), 1u);
    EXPECT_GE(te_audited("platform-validation", "\"validated\":true"), 1u);
    // The code is spent.
    const Job again = provision_job(world->ps->url(), code, "4711");
    EXPECT_EQ(again.state, "failed");
    EXPECT_EQ(again.error, "code-used") << again.message;
}

TEST_F(Provisioning, ASubscriptionBoundToTheDeviceIdentityArrivesBySync) {
    const json set = milenage_set(1);
    const int n = world->next_mid++;
    const Response sub = world->ps->subscribe(set, n, {{"device", world->identity}});
    ASSERT_EQ(sub.status, 201) << sub.body.dump();
    const Job j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    const std::string path = mid_path(iccid(n));
    ASSERT_FALSE(path.empty());
    ASSERT_EQ(j.mids.size(), 1u);
    EXPECT_EQ(std::string(j.mids[0]), path);
    EXPECT_EQ(world->ps->subscription_state(sub.body.at("id")), "inactive");
    MidProxy(calls(), path).Activate(1);
    expect_aka(path, set, 0x40);
    MidProxy(calls(), path).Deactivate();
    // Nothing more to do: the PS answers 204 and the job ends well.
    const Job idle = sync_job();
    EXPECT_EQ(idle.state, "done") << idle.message;
}

// ---- 3. refusals ------------------------------------------------------------------------

// Every MID's visible properties (the audit record count grows with a refusal).
std::map<std::string, std::string> mids_now() {
    std::map<std::string, std::string> out;
    for (const auto& [path, text] : snapshot(calls()).mids) {
        if (path.rfind("/org/tresim1/mid/", 0) == 0) {
            out[path] = text;
        }
    }
    return out;
}

TEST_F(Provisioning, AnEkCertificateFromAnUnknownCaIsRefusedAndNothingIsDelivered) {
    write_te_policy(0, true); // until the PCR test
    restart_daemon();
    const Response sub =
        world->ps_no_ca->subscribe(milenage_set(2), 90, {{"activation_code", true}});
    ASSERT_EQ(sub.status, 201) << sub.body.dump();
    const auto before = mids_now();
    const Job j = provision_job(world->ps_no_ca->url(), sub.body.at("activation_code"));
    EXPECT_EQ(j.state, "failed");
    EXPECT_EQ(j.error, "unknown-ek-ca") << j.message;
    EXPECT_EQ(mids_now(), before);
    EXPECT_EQ(world->ps_no_ca->audited(world->identity, "unknown-ek-ca", "hello"), 1u);
    EXPECT_EQ(world->ps_no_ca->subscription_state(sub.body.at("id")), "registered");
    EXPECT_EQ(te_audited("platform-validation", "unknown-ek-ca"), 1u);
}

TEST_F(Provisioning, WrongConfirmationCodesAreCountedAndTheThirdLocksTheCode) {
    const int n = world->next_mid++;
    const std::string code = code_for(milenage_set(3), n, "2468");
    const auto before = mids_now();
    for (int i = 0; i < 3; ++i) {
        const Job j = provision_job(world->ps->url(), code, "1357");
        EXPECT_EQ(j.state, "failed");
        EXPECT_EQ(j.error, "wrong-confirmation") << j.message;
    }
    // Locked for good: the right code no longer helps.
    const Outcome r = ctl({"provision", "--activation-code", code, "--confirmation-code", "2468"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("code-locked"), std::string::npos) << r.out << r.err;
    EXPECT_EQ(mids_now(), before);
    EXPECT_EQ(world->ps->audited(world->identity, "wrong-confirmation", "hello"), 3u);
    EXPECT_EQ(world->ps->audited(world->identity, "code-locked", "hello"), 1u);
    EXPECT_EQ(te_audited("platform-validation", "wrong-confirmation"), 3u);
    EXPECT_EQ(te_audited("platform-validation", "code-locked"), 1u);
}

// Instructions a correct server never sends, from the rogue server, signed by
// its pinned key unless said otherwise.
TEST_F(Provisioning, ForgedReplayedExpiredForeignAndUnsignedInstructionsAreRefused) {
    const std::string target = iccid(1); // installed by the first test
    ASSERT_FALSE(mid_path(target).empty());
    Rogue& rogue = *world->rogue;
    rogue.make = [&](const RogueSession& s) {
        return std::vector<std::string>{
            rogue.sign(s, 10, "update", {{"iccid", target}, {"label", "rogue ok"}})};
    };
    const Job first = provision_job(rogue.url(), "");
    ASSERT_EQ(first.state, "done") << first.error << ": " << first.message;
    ASSERT_EQ(MidProxy(calls(), mid_path(target)).Label(), "rogue ok");
    const auto before = mids_now();
    // Another TPM's SRK: the same template with another key (every swtpm of the
    // fixture starts from one manufactured state, so they all share one SRK).
    const TPM2B_PUBLIC stranger_point = tpm::PolicyAuthority::generate().tpm_public();
    const tpm::PolicyAuthority stranger = tpm::PolicyAuthority::generate();
    rogue.make = [&](const RogueSession& s) {
        const json update = {{"iccid", target}, {"label", "forged"}};
        const std::string none =
            protocol::b64url_encode(view(R"({"alg":"none","typ":"tresim-instruction"})")) + "." +
            protocol::b64url_encode(view(json{
                {"device", s.device},
                {"counter", 13},
                {"exp", std::time(nullptr) + 600},
                {"id", "rogue-13"},
                {"validation", s.validation},
                {"op", "update"},
                {"body", update}}.dump())) +
            ".";
        // An install whose key blob is wrapped for the other TPM's SRK.
        const Bytes k = hex_decode(milenage_set(4).at("k").get<std::string>(), "k", 16);
        const tpm::ObjectOptions options{te::mid_auth_policy(rogue.key().tpm_public(), {}),
                                         SecretBytes{}, false};
        TPMT_PUBLIC other_srk = s.srk.publicArea;
        other_srk.unique.ecc = stranger_point.publicArea.unique.ecc;
        const tpm::DuplicationBlob blob =
            s.mode == "sealed"
                ? tpm::duplicate_sealed_data(other_srk, SecretBytes(Bytes(32, 0x42)), options)
                : tpm::duplicate_aes_key(other_srk, SecretBytes(k), options);
        json profile = {
            {"iccid", iccid(91)}, {"imsi", imsi(91)}, {"algorithm", "milenage"}, {"amf", "8000"}};
        json install = {
            {"profile", profile},
            {"mode", s.mode},
            {"key", protocol::b64url_encode(blob.marshal())},
            {"approval", te::approval_to_json(te::approve(rogue.key(), s.pcrs, false, {}))}};
        if (s.mode != "sealed") {
            install["opc_wrapped"] = std::string(32, '0');
            install["wrap_nonce"] = std::string(32, '1');
        }
        return std::vector<std::string>{
            rogue.sign(s, 9, "update", update),                                    // replayed
            rogue.sign(s, 11, "update", update, [](json& p) { p["exp"] = 1000; }), // expired
            rogue.sign(s, 12, "update", update,
                       [](json& p) { p["device"] = std::string(64, 'a'); }),
            none,                                               // unsigned
            rogue.sign(s, 14, "update", update, {}, &stranger), // unknown key
            rogue.sign(s, 15, "update", update, [](json& p) { p.erase("validation"); }),
            rogue.sign(s, 16, "install", install), // other TPM
        };
    };
    const Job j = provision_job(rogue.url(), "");
    EXPECT_EQ(j.state, "failed");
    EXPECT_EQ(j.error, "instruction-failed") << j.message;
    const json& r = rogue.results;
    ASSERT_EQ(r.size(), 7u) << r.dump();
    const std::vector<std::string> reasons = {"replayed", "expired",     "foreign",
                                              "unsigned", "unknown-key", "not-validated"};
    for (std::size_t i = 0; i < reasons.size(); ++i) {
        EXPECT_EQ(r[i].value("status", ""), "refused") << r[i].dump();
        EXPECT_EQ(r[i].value("error", ""), reasons[i]) << r[i].dump();
        EXPECT_EQ(te_audited("instruction-refused", "\"reason\":\"" + reasons[i] + "\""), 1u)
            << reasons[i];
    }
    EXPECT_EQ(r[6].value("status", ""), "failed") << r[6].dump();
    // Nothing changed: the label stays, no MID for the other TPM's blob.
    EXPECT_EQ(mids_now(), before);
    EXPECT_TRUE(mid_path(iccid(91)).empty());
    const auto [ok, records, message] = ManagerProxy(calls()).AuditVerify();
    EXPECT_TRUE(ok) << message;
}

// Last of the refusals: it changes the platform for good (PCR 7 extended).
TEST_F(Provisioning, APlatformOutsideTheReferenceIsRefusedNamingThePcr) {
    const int n = world->next_mid++;
    const json set = milenage_set(5);
    const std::string code = code_for(set, n);
    const auto before = mids_now();
    write_te_policy(0);
    restart_daemon(SIGTERM, [] {
        tpm::Context ctx(world->daemon->tcti());
        measure(ctx, world->log, 7, protocol::EV_EFI_VARIABLE_DRIVER_CONFIG, "SecureBoot=0");
        write_event_log();
    });
    const Job j = provision_job(world->ps->url(), code);
    EXPECT_EQ(j.state, "failed");
    EXPECT_EQ(j.error, "platform-mismatch") << j.message;
    EXPECT_NE(j.message.find("PCR 7 "), std::string::npos) << j.message;
    EXPECT_EQ(world->ps->audited(world->identity, "platform-mismatch", "evidence"), 1u);
    EXPECT_EQ(te_audited("platform-validation", "platform-mismatch"), 1u);
    // Nothing delivered (the MIDs now wait for a policy for the new state).
    EXPECT_TRUE(mid_path(iccid(n)).empty());
    EXPECT_EQ(mids_now().size(), before.size());

    // The operator accepts the new state: the unspent code now works, and the
    // MIDs already there get a policy-update.
    std::map<unsigned, Bytes> state;
    for (const auto& [i, v] : ManagerProxy(calls()).GetPlatformState()) {
        state[i] = v;
    }
    world->ps->reference(state);
    const Job ok = provision_job(world->ps->url(), code);
    ASSERT_EQ(ok.state, "done") << ok.error << ": " << ok.message;
    const std::string path = mid_path(iccid(n));
    ASSERT_FALSE(path.empty());
    MidProxy(calls(), path).Activate(0);
    expect_aka(path, set, 0x20);
    MidProxy(calls(), path).Deactivate();
    const std::string first = mid_path(iccid(1));
    MidProxy(calls(), first).Activate(0);
    expect_aka(first, milenage_set(0), 0x60);
    MidProxy(calls(), first).Deactivate();
}

// ---- 2. operator orders -----------------------------------------------------------------

TEST_F(Provisioning, OrdersReachTheDeviceBySync) {
    const std::string a = iccid(1), b = iccid(2);
    PsServer& ps = *world->ps;
    const std::string& dev = world->identity;
    ps.order(dev, {{"op", "activate"}, {"iccid", a}, {"slot", 0}});
    Job j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    EXPECT_EQ(mid_state(a), "active");
    EXPECT_EQ(MidProxy(calls(), mid_path(a)).Slot(), 0);

    ps.order(dev, {{"op", "deactivate"}, {"iccid", a}});
    ps.order(dev, {{"op", "update"}, {"iccid", b}, {"label", "renamed by the operator"}});
    j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    EXPECT_EQ(mid_state(a), "inactive");
    EXPECT_EQ(MidProxy(calls(), mid_path(b)).Label(), "renamed by the operator");

    ps.order(dev, {{"op", "delete"}, {"iccid", b}});
    j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    EXPECT_TRUE(mid_path(b).empty());
    EXPECT_EQ(te_audited("deletion", b), 1u);
    for (const json& m : ps.mids(dev)) {
        if (m.at("iccid") == b) {
            EXPECT_EQ(m.at("state"), "deleted");
        }
        if (m.at("iccid") == a) {
            EXPECT_EQ(m.at("state"), "inactive");
        }
    }
}

TEST_F(Provisioning, ASwitchIsKeptWhenConfirmedAndFallsBackWhenNot) {
    const std::string a = iccid(1), c = iccid(3 + 1); // the MID of the PCR test is iccid(4)
    PsServer& ps = *world->ps;
    const std::string& dev = world->identity;
    ASSERT_FALSE(mid_path(c).empty()) << describe(snapshot(calls()));
    ps.order(dev, {{"op", "activate"}, {"iccid", a}, {"slot", 0}});
    ps.order(dev, {{"op", "switch-slot"}, {"iccid", c}, {"slot", 0}, {"confirm_within", 600}});
    Job j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    EXPECT_EQ(mid_state(c), "active");
    EXPECT_EQ(mid_state(a), "inactive");
    const Outcome confirm = ctl({"confirm", c});
    EXPECT_EQ(confirm.status, 0) << confirm.out << confirm.err;

    // Back to a with a window of 1 s and no confirmation: c again.
    ps.order(dev, {{"op", "switch-slot"}, {"iccid", a}, {"slot", 0}, {"confirm_within", 1}});
    j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    for (int i = 0; i < 100 && mid_state(a) == "active"; ++i) {
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(mid_state(a), "inactive");
    EXPECT_EQ(mid_state(c), "active");
    EXPECT_EQ(te_audited("lifecycle-change", "\"reason\":\"fallback\""), 2u); // a off, c on
    // The fallback reaches the PS at the next sync although nothing is pending.
    j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    for (const json& m : ps.mids(dev)) {
        if (m.at("iccid") == a) {
            EXPECT_EQ(m.at("state"), "inactive");
        }
        if (m.at("iccid") == c) {
            EXPECT_EQ(m.at("state"), "active");
        }
    }
    MidProxy(calls(), mid_path(c)).Deactivate();
}

TEST_F(Provisioning, OrdersReachTheDeviceByThePeriodicPoll) {
    write_te_policy(1);
    restart_daemon();
    const std::string a = iccid(1);
    world->ps->order(world->identity, {{"op", "activate"}, {"iccid", a}, {"slot", 1}});
    for (int i = 0; i < 100 && mid_state(a) != "active"; ++i) {
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(mid_state(a), "active");
    world->ps->order(world->identity, {{"op", "deactivate"}, {"iccid", a}});
    for (int i = 0; i < 100 && mid_state(a) != "inactive"; ++i) {
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(mid_state(a), "inactive");
    write_te_policy(0);
    restart_daemon();
}

// ---- 4. faults ------------------------------------------------------------------------------

// Waits until the job at `path` shows `state`; false after 10 s or when it ended.
bool job_reaches(const sdbus::ObjectPath& path, const std::string& state) {
    auto proxy = sdbus::createProxy(calls(), "org.tresim1", path);
    for (int i = 0; i < 2000; ++i) {
        const std::string s = proxy->getProperty("State").onInterface("org.tresim1.Job");
        if (s == state) {
            return true;
        }
        if (s == "done" || s == "failed") {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return false;
}

TEST_F(Provisioning, AServerRestartedInTheMiddleOfASessionLosesNothing) {
    const std::string a = iccid(1);
    world->ps->order(world->identity, {{"op", "update"}, {"iccid", a}, {"label", "after restart"}});
    const sdbus::ObjectPath job = ManagerProxy(calls()).Sync();
    ASSERT_TRUE(job_reaches(job, "attesting"));
    world->ps->stop(SIGKILL);
    world->ps->start();
    Job j = wait_job(job);
    if (j.state == "failed") { // the evidence met the restart: the next sync completes
        EXPECT_EQ(j.error, "connection-failed") << j.message;
        j = sync_job();
    }
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    EXPECT_EQ(MidProxy(calls(), mid_path(a)).Label(), "after restart");
}

TEST_F(Provisioning, AConnectionCutBeforeTheResultsNeitherLosesNorRepeatsAnInstall) {
    const int n = world->next_mid++;
    const Response sub = world->ps->subscribe(milenage_set(6), n, {{"device", world->identity}});
    ASSERT_EQ(sub.status, 201);
    const sdbus::ObjectPath job = ManagerProxy(calls()).Sync();
    ASSERT_TRUE(job_reaches(job, "installing"));
    world->ps->stop(SIGKILL);
    const Job cut = wait_job(job);
    world->ps->start();
    if (cut.state == "failed") {
        EXPECT_EQ(cut.error, "connection-failed") << cut.message;
        const Job again = sync_job();
        ASSERT_EQ(again.state, "done") << again.error << ": " << again.message;
    }
    EXPECT_EQ(te_audited("install", iccid(n)), 1u);
    EXPECT_EQ(world->ps->subscription_state(sub.body.at("id")), "inactive");
    const Job idle = sync_job();
    EXPECT_EQ(idle.state, "done") << idle.message;
}

TEST_F(Provisioning, ADaemonKilledDuringAnInstallEndsWithTheMidInstalledOnce) {
    const int n = world->next_mid++;
    const Response sub = world->ps->subscribe(milenage_set(7), n, {{"device", world->identity}});
    ASSERT_EQ(sub.status, 201);
    const sdbus::ObjectPath job = ManagerProxy(calls()).Sync();
    ASSERT_TRUE(job_reaches(job, "installing"));
    // swtpm has no resource manager: the killed daemon's transient objects
    // and sessions stay loaded, and the restarted tresimd flushes them.
    restart_daemon(SIGKILL);
    const Job j = sync_job();
    ASSERT_EQ(j.state, "done") << j.error << ": " << j.message;
    EXPECT_EQ(te_audited("install", iccid(n)), 1u);
    EXPECT_EQ(world->ps->subscription_state(sub.body.at("id")), "inactive");
    const auto [ok, records, message] = ManagerProxy(calls()).AuditVerify();
    EXPECT_TRUE(ok) << message;
}

} // namespace
