// tresim-ps end to end: the real server (started from tools/ps-dev-pki's
// configuration on a free loopback port) and a swtpm on which this test plays
// the device side with the TPM layer: EK/AK, SRK certification, credential
// activation, quotes, PCR extensions with their event log, import of the
// delivered duplication blob and an AKA on it, over HTTPS (TLS 1.3) with
// cpp-httplib's SSLClient. Expected AKA results are the official TS 35.208
// values (tests/vectors/milenage.json).

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "protocol/base64url.hpp"
#include "protocol/eventlog.hpp"
#include "protocol/jws.hpp"
#include "ps_server.hpp"
#include "swtpm.hpp"
#include "te/approval_json.hpp"
#include "te/mid_crypto.hpp"
#include "tpm/attest.hpp"
#include "tpm/duplicate.hpp"
#include "tpm/error.hpp"
#include "tpm/keys.hpp"
#include "tpm/policy.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using nlohmann::json;
namespace fs = std::filesystem;

constexpr char kClass[] = "gw-test";
constexpr char kSelection[] = "sha256:0,2,4,7";

using test::Response;
using test::sha256;
using test::view;

json vector_set(std::size_t i) {
    std::ifstream in(test::need_env("TRESIM_VECTORS_DIR") + "/milenage.json");
    return json::parse(in).at("milenage").at(i);
}

std::string b64(ByteView b) {
    return protocol::b64url_encode(b);
}

// ---- the PKI, made once per test program --------------------------------------

const test::DevPki& pki() {
    static const test::DevPki* p = [] { // never destroyed: the atexit handler reads it
        const std::string dir = test::make_temp_dir("tresim-ps-pki-");
        test::Swtpm swtpm; // only for its (shared) manufacturer CA files
        const auto* made = new test::DevPki(
            test::make_dev_pki(dir + "/pki", {swtpm.ca_root_cert(), swtpm.ca_issuer_cert()}));
        std::atexit([] { test::remove_tree(fs::path(pki().dir).parent_path().string()); });
        return made;
    }();
    return *p;
}

// ---- one tresim-ps process ---------------------------------------------------

class PsProcess : public test::PsServer {
public:
    // `tweak` edits the configuration before the server starts.
    explicit PsProcess(const std::function<void(json&)>& tweak = {})
        : PsServer(pki(), test::make_temp_dir("tresim-ps-"), tweak) {}

    std::string reference(const tpm::PcrValues& v) { return PsServer::reference(kClass, v.values); }
    Response subscribe(const json& vector, const std::string& iccid, const json& bind,
                       bool use_op = false) {
        json profile = {{"iccid", iccid},
                        {"imsi", "262011234567890"},
                        {"algorithm", "milenage"},
                        {"k", vector["k"]},
                        {"amf", vector["amf"]}};
        profile[use_op ? "op" : "opc"] = vector[use_op ? "op" : "opc"];
        return post("/v1/operator/subscriptions",
                    {{"profile", profile}, {"class", kClass}, {"bind", bind}});
    }
};

// ---- the device side -----------------------------------------------------------

struct Device {
    test::Swtpm swtpm;
    tpm::Context ctx{swtpm.tcti()};
    tpm::Ek ek = tpm::create_ek(ctx, tpm::EkType::Rsa2048);
    tpm::EkCertificates certs = tpm::read_ek_certificates(ctx);
    tpm::Srk srk = tpm::ensure_srk(ctx);
    tpm::Ak ak = tpm::load_ak(ctx, srk, tpm::create_ak(ctx, srk));
    protocol::EventLog log;
    tpm::TicketCache tickets;

    Device() {
        log.banks = {TPM2_ALG_SHA256};
        // A boot: firmware, option ROMs, boot loader, Secure Boot state.
        measure(0, protocol::EV_S_CRTM_VERSION, "firmware 1.0");
        measure(2, protocol::EV_EFI_BOOT_SERVICES_APPLICATION, "option rom");
        measure(4, protocol::EV_EFI_BOOT_SERVICES_APPLICATION, "shim");
        measure(4, protocol::EV_EFI_BOOT_SERVICES_APPLICATION, "grub");
        measure(7, protocol::EV_EFI_VARIABLE_DRIVER_CONFIG, "SecureBoot=1");
        for (const unsigned pcr : {0u, 2u, 4u, 7u}) {
            measure(pcr, protocol::EV_SEPARATOR, std::string(4, '\0'));
        }
    }

    std::string identity() const { return tpm::te_identity(ek.pub.publicArea); }

    void measure(unsigned pcr, std::uint32_t type, const std::string& data) {
        test::measure(ctx, log, pcr, type, data);
    }

    tpm::PcrValues pcrs() { return tpm::read_pcrs(ctx, tpm::parse_pcr_selection(kSelection)); }

    json hello(const std::optional<std::string>& code = std::nullopt,
               const std::optional<std::string>& confirmation = std::nullopt,
               const std::string& mode = "tpm-ecb") const {
        json h = {{"format", "tresim-hello-1"},
                  {"ek_public", b64(tpm::marshal_public(ek.pub))},
                  {"ek_certificate", b64(*certs.rsa2048)},
                  {"ek_chain", json::array()},
                  {"ak_public", b64(tpm::marshal_public(ak.pub))},
                  {"srk_public", b64(tpm::marshal_public(srk.pub))},
                  {"platform",
                   {{"class", kClass},
                    {"tpm_manufacturer", "IBM"},
                    {"computation_mode", mode},
                    {"pcr_selection", kSelection}}}};
        if (code) {
            h["activation_code"] = *code;
        }
        if (confirmation) {
            h["confirmation_code"] = *confirmation;
        }
        return h;
    }

    struct Evidence {
        json body;
        Bytes quote_attest;
    };

    // The evidence for a hello reply, optionally spoiled by `spoil`.
    Evidence evidence(const json& reply, Bytes nonce_override = {}) {
        const Bytes nonce = protocol::b64url_decode(reply.at("nonce").get<std::string>(), "nonce");
        if (ek.handle.get() == ESYS_TR_NONE) {
            ek = tpm::create_ek(ctx, tpm::EkType::Rsa2048);
        }
        const SecretBytes credential = tpm::activate_credential(
            ctx, ak, ek,
            protocol::b64url_decode(reply.at("credential_blob").get<std::string>(), "blob"),
            protocol::b64url_decode(reply.at("secret").get<std::string>(), "secret"));
        ek.handle.reset(); // swtpm has three object slots: room for the AK, a MID and more
        const tpm::PcrSelection sel =
            tpm::parse_pcr_selection(reply.at("pcr_selection").get<std::string>());
        const tpm::Attestation quote =
            tpm::quote(ctx, ak, sel, nonce_override.empty() ? nonce : nonce_override);
        const tpm::Attestation cert = tpm::certify(ctx, ak, srk.handle, nonce);
        const tpm::PcrValues values = tpm::read_pcrs(ctx, sel);
        Evidence e;
        e.quote_attest = quote.attest;
        e.body = {{"session", reply.at("session")},
                  {"credential", b64(credential.view())},
                  {"quote", test::attestation_json(quote)},
                  {"srk_certification", test::attestation_json(cert)},
                  {"pcrs", test::pcrs_json(values.values)},
                  {"event_log", b64(protocol::write_event_log(log))}};
        return e;
    }

    json results(const json& session, const json& list) {
        const std::string text = list.dump();
        const tpm::Attestation q =
            tpm::quote(ctx, ak, tpm::parse_pcr_selection(kSelection), sha256(view(text)));
        return {{"session", session}, {"results", text}, {"quote", test::attestation_json(q)}};
    }
};

// A delivered install, imported into the device's TPM.
struct Installed {
    json payload;
    te::MidKeyMaterial material;
};

Installed import_install(Device& d, const json& payload) {
    const json& body = payload.at("body");
    Installed out;
    out.payload = payload;
    te::MidKeyMaterial& m = out.material;
    m.algorithm = te::Algorithm::Milenage;
    m.mode = *te::parse_computation_mode(body.at("mode").get<std::string>());
    const tpm::DuplicationBlob blob = tpm::DuplicationBlob::unmarshal(
        protocol::b64url_decode(body.at("key").get<std::string>(), "key"));
    m.key = tpm::import_duplicate(d.ctx, d.srk.handle, blob);
    if (m.mode != te::ComputationMode::Sealed) {
        m.opc_wrapped = hex_decode(body.at("opc_wrapped").get<std::string>(), "opc_wrapped", 16);
        m.wrap_nonce = hex_decode(body.at("wrap_nonce").get<std::string>(), "wrap_nonce", 16);
    }
    m.approval =
        *te::parse_approval(body.at("approval").dump(), tpm::parse_pcr_selection(kSelection), false)
             .approval;
    return out;
}

// RES of the imported MID for the vector's RAND.
std::string res_of(Device& d, const te::MidKeyMaterial& m, const json& vector) {
    const auto alg = te::make_mid_algorithm(d.ctx, d.srk.handle, m, d.tickets);
    usim::Rand rand{};
    const Bytes r = hex_decode(vector["rand"].get<std::string>(), "rand", 16);
    std::copy(r.begin(), r.end(), rand.begin());
    return hex_encode(alg->begin(rand)->f2345().res);
}

// Verifies every instruction with the PS's public signing key.
std::vector<json> verify_instructions(PsProcess& ps, const json& reply) {
    std::vector<tpm::PolicyAuthority> keys;
    keys.push_back(ps.signing_key());
    std::vector<json> out;
    for (const json& jws : reply.at("instructions")) {
        out.push_back(
            protocol::jws_verify(jws.get<std::string>(), keys, "tresim-instruction").payload);
    }
    return out;
}

// ---- tests ------------------------------------------------------------------------

TEST(ProvisioningServer, ProvisionsByActivationCodeAndTheMidAuthenticates) {
    PsProcess ps;
    Device d;
    const json v = vector_set(0);
    ps.reference(d.pcrs());
    const Response sub = ps.subscribe(v, "8949020000123456788",
                                      {{"activation_code", true}, {"confirmation_code", "4711"}});
    ASSERT_EQ(sub.status, 201) << sub.body.dump();
    const std::string code = sub.body.at("activation_code");

    const Response hello = ps.post("/v1/device/hello", d.hello(code, "4711"));
    ASSERT_EQ(hello.status, 200) << hello.body.dump();
    EXPECT_EQ(hello.body["pcr_selection"], kSelection);
    const Device::Evidence ev = d.evidence(hello.body);
    const Response evidence = ps.post("/v1/device/evidence", ev.body);
    ASSERT_EQ(evidence.status, 200) << evidence.body.dump();
    EXPECT_EQ(evidence.body["validated"], true);

    const std::vector<json> instructions = verify_instructions(ps, evidence.body);
    ASSERT_EQ(instructions.size(), 1u);
    const json& p = instructions[0];
    EXPECT_EQ(p["op"], "install");
    EXPECT_EQ(p["device"], d.identity());
    EXPECT_EQ(p["validation"], hex_encode(sha256(ev.quote_attest)));
    EXPECT_GT(p["exp"].get<std::int64_t>(), p["iat"].get<std::int64_t>());
    EXPECT_FALSE(p["body"]["profile"].contains("k"));
    EXPECT_FALSE(p["body"]["profile"].contains("opc"));
    EXPECT_EQ(p["body"]["mode"], "tpm-ecb");

    const Installed mid = import_install(d, p);
    EXPECT_EQ(res_of(d, mid.material, v), v["f2"]);

    // Results: a quote over other bytes is refused, the right one accepted.
    const json list = json::array({{{"id", p["id"]}, {"counter", p["counter"]}, {"status", "ok"}}});
    json bad = d.results(hello.body["session"], list);
    bad["results"] =
        json::array({{{"id", p["id"]}, {"counter", p["counter"]}, {"status", "failed"}}}).dump();
    const Response refused = ps.post("/v1/device/results", bad);
    EXPECT_EQ(refused.status, 403);
    EXPECT_EQ(refused.body["error"], "bad-quote");
    EXPECT_EQ(refused.body["what"], "qualifying-data");
    EXPECT_EQ(ps.subscription_state(sub.body["id"]), "delivering");
    const Response accepted = ps.post("/v1/device/results", d.results(hello.body["session"], list));
    ASSERT_EQ(accepted.status, 200) << accepted.body.dump();
    EXPECT_EQ(accepted.body["accepted"], 1);
    EXPECT_EQ(ps.subscription_state(sub.body["id"]), "inactive");

    // The code is single use.
    const Response again = ps.post("/v1/device/hello", d.hello(code, "4711"));
    EXPECT_EQ(again.status, 409);
    EXPECT_EQ(again.body["error"], "code-used");
    EXPECT_TRUE(ps.audited(d.identity(), "code-used"));
}

TEST(ProvisioningServer, ProvisionsByPreRegisteredDeviceIdentityAndEkCertificate) {
    PsProcess ps;
    Device d;
    const json v1 = vector_set(2);
    const json v2 = vector_set(3);
    ps.reference(d.pcrs());
    const Response by_id = ps.subscribe(v1, "8949020000123456796", {{"device", d.identity()}});
    ASSERT_EQ(by_id.status, 201) << by_id.body.dump();
    const Response by_cert =
        ps.subscribe(v2, "8949020000123456804", {{"ek_certificate", b64(*d.certs.rsa2048)}}, true);
    ASSERT_EQ(by_cert.status, 201) << by_cert.body.dump();

    const Response hello =
        ps.post("/v1/device/hello", d.hello(std::nullopt, std::nullopt, "sealed"));
    ASSERT_EQ(hello.status, 200) << hello.body.dump();
    const Response evidence = ps.post("/v1/device/evidence", d.evidence(hello.body).body);
    ASSERT_EQ(evidence.status, 200) << evidence.body.dump();
    const std::vector<json> instructions = verify_instructions(ps, evidence.body);
    ASSERT_EQ(instructions.size(), 2u);
    EXPECT_LT(instructions[0]["counter"].get<std::uint64_t>(),
              instructions[1]["counter"].get<std::uint64_t>());
    std::set<std::string> iccids;
    for (const json& p : instructions) {
        EXPECT_EQ(p["op"], "install");
        EXPECT_EQ(p["body"]["mode"], "sealed");
        iccids.insert(p["body"]["profile"]["iccid"].get<std::string>());
    }
    EXPECT_EQ(iccids, (std::set<std::string>{"8949020000123456796", "8949020000123456804"}));
    for (const json& p : instructions) {
        const Installed mid = import_install(d, p);
        const json& v = p["body"]["profile"]["iccid"] == "8949020000123456796" ? v1 : v2;
        EXPECT_EQ(res_of(d, mid.material, v), v["f2"]); // the second from OP: OPc made by the PS
    }

    // A blob made for this TPM does not import into another TPM (another SRK).
    Device other;
    tpm::check(
        Esys_Clear(other.ctx, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE),
        "TPM2_Clear");
    const tpm::Srk other_srk = tpm::ensure_srk(other.ctx);
    ASSERT_NE(tpm::object_name(other_srk.pub.publicArea), tpm::object_name(d.srk.pub.publicArea));
    const tpm::DuplicationBlob blob = tpm::DuplicationBlob::unmarshal(
        protocol::b64url_decode(instructions[0]["body"]["key"].get<std::string>(), "key"));
    try {
        tpm::import_duplicate(other.ctx, other_srk.handle, blob);
        ADD_FAILURE() << "a blob for another TPM was imported";
    } catch (const tpm::TpmError& e) {
        // The other SRK derives another seed: the outer HMAC does not verify.
        EXPECT_TRUE(e.is(TPM2_RC_INTEGRITY)) << e.what();
    }
}

TEST(ProvisioningServer, RefusesPcrsOutsideTheReferenceNamingThePcr) {
    PsProcess ps;
    Device d;
    tpm::PcrValues ref = d.pcrs();
    ref.values[7][0] ^= 1; // the reference expects another Secure Boot state
    ps.reference(ref);
    const Response sub =
        ps.subscribe(vector_set(0), "8949020000123456812", {{"device", d.identity()}});
    ASSERT_EQ(sub.status, 201);
    const Response hello = ps.post("/v1/device/hello", d.hello());
    ASSERT_EQ(hello.status, 200) << hello.body.dump();
    const Response evidence = ps.post("/v1/device/evidence", d.evidence(hello.body).body);
    EXPECT_EQ(evidence.status, 403);
    EXPECT_EQ(evidence.body["error"], "platform-mismatch");
    EXPECT_EQ(evidence.body["pcrs"], json::array({7}));
    EXPECT_THAT(evidence.body["message"].get<std::string>(), testing::HasSubstr("PCR 7"));
    EXPECT_FALSE(evidence.body.contains("instructions"));
    EXPECT_EQ(ps.subscription_state(sub.body["id"]), "registered");
    EXPECT_TRUE(ps.audited(d.identity(), "platform-mismatch"));

    // The session is spent: the same evidence again is refused.
    EXPECT_EQ(ps.post("/v1/device/evidence", d.evidence(hello.body).body).body["error"],
              "unknown-session");
}

TEST(ProvisioningServer, RefusesAnEkCertificateFromAnUnknownCa) {
    // The PS trusts only its own development CA, not the TPM manufacturer's.
    PsProcess ps([](json& conf) { conf["ca_dir"] = "."; }); // ca.pem, server.pem: not EK CAs
    Device d;
    const Response sub =
        ps.subscribe(vector_set(0), "8949020000123456788", {{"device", d.identity()}});
    ASSERT_EQ(sub.status, 201);
    const Response hello = ps.post("/v1/device/hello", d.hello());
    EXPECT_EQ(hello.status, 403);
    EXPECT_EQ(hello.body["error"], "unknown-ek-ca");
    EXPECT_FALSE(hello.body.contains("session"));
    EXPECT_TRUE(ps.audited(d.identity(), "unknown-ek-ca"));
}

TEST(ProvisioningServer, CountsWrongConfirmationCodesAndLocksAfterThree) {
    PsProcess ps;
    Device d;
    ps.reference(d.pcrs());
    const Response sub = ps.subscribe(vector_set(0), "8949020000123456788",
                                      {{"activation_code", true}, {"confirmation_code", "4711"}});
    const std::string code = sub.body.at("activation_code");
    for (int i = 0; i < 3; ++i) {
        const Response r = ps.post("/v1/device/hello", d.hello(code, "0000"));
        EXPECT_EQ(r.status, 403);
        EXPECT_EQ(r.body["error"], "wrong-confirmation") << i;
        EXPECT_FALSE(r.body.contains("session"));
    }
    const Response locked = ps.post("/v1/device/hello", d.hello(code, "4711"));
    EXPECT_EQ(locked.body["error"], "code-locked");
    EXPECT_TRUE(ps.audited(d.identity(), "wrong-confirmation"));
    EXPECT_TRUE(ps.audited(d.identity(), "code-locked"));
    EXPECT_EQ(ps.post("/v1/device/hello", d.hello("NOPE-NOPE")).body["error"], "unknown-code");
}

TEST(ProvisioningServer, RefusesBadQuotesAndEventLogsDeliveringNothing) {
    PsProcess ps;
    Device d;
    ps.reference(d.pcrs());
    const Response sub =
        ps.subscribe(vector_set(0), "8949020000123456788", {{"device", d.identity()}});
    const auto expect_refused = [&](const json& body, const std::string& error,
                                    const std::string& what) {
        const Response r = ps.post("/v1/device/evidence", body);
        EXPECT_EQ(r.status, 403) << r.body.dump();
        EXPECT_EQ(r.body["error"], error);
        if (!what.empty()) {
            EXPECT_EQ(r.body["what"], what);
        }
        EXPECT_FALSE(r.body.contains("instructions"));
    };

    // A quote over another nonce.
    Response hello = ps.post("/v1/device/hello", d.hello());
    ASSERT_EQ(hello.status, 200);
    expect_refused(d.evidence(hello.body, Bytes(32, 0x5a)).body, "bad-quote", "qualifying-data");

    // A quote whose signed bytes were altered (its clock).
    hello = ps.post("/v1/device/hello", d.hello());
    Device::Evidence ev = d.evidence(hello.body);
    Bytes attest = ev.quote_attest;
    attest[attest.size() / 2] ^= 0x01;
    ev.body["quote"]["attest"] = b64(attest);
    const Response altered = ps.post("/v1/device/evidence", ev.body);
    EXPECT_EQ(altered.body["error"], "bad-quote");
    EXPECT_EQ(altered.body["what"], "signature");

    // An event log missing the boot loader's event: names PCR 4.
    hello = ps.post("/v1/device/hello", d.hello());
    ev = d.evidence(hello.body);
    protocol::EventLog shorter = d.log;
    shorter.events.erase(shorter.events.begin() + 3);
    ev.body["event_log"] = b64(protocol::write_event_log(shorter));
    const Response log = ps.post("/v1/device/evidence", ev.body);
    EXPECT_EQ(log.body["error"], "event-log-mismatch");
    EXPECT_EQ(log.body["pcrs"], json::array({4}));

    // A credential that is not the one the PS made.
    hello = ps.post("/v1/device/hello", d.hello());
    ev = d.evidence(hello.body);
    ev.body["credential"] = b64(Bytes(32, 1));
    expect_refused(ev.body, "credential-mismatch", "");

    EXPECT_EQ(ps.subscription_state(sub.body["id"]), "registered");
    EXPECT_TRUE(ps.audited(d.identity(), "bad-quote"));
    EXPECT_TRUE(ps.audited(d.identity(), "event-log-mismatch"));
    EXPECT_TRUE(ps.audited(d.identity(), "credential-mismatch"));
}

TEST(ProvisioningServer, RefusesEvidenceForAnExpiredSession) {
    PsProcess ps([](json& conf) { conf["session_lifetime"] = 1; });
    Device d;
    ps.reference(d.pcrs());
    const Response sub =
        ps.subscribe(vector_set(0), "8949020000123456788", {{"device", d.identity()}});
    const Response hello = ps.post("/v1/device/hello", d.hello());
    ASSERT_EQ(hello.status, 200);
    const json body = d.evidence(hello.body).body;
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    const Response r = ps.post("/v1/device/evidence", body);
    EXPECT_EQ(r.status, 410);
    EXPECT_EQ(r.body["error"], "session-expired");
    EXPECT_EQ(ps.subscription_state(sub.body["id"]), "registered");
    EXPECT_TRUE(ps.audited(d.identity(), "session-expired"));
}

TEST(ProvisioningServer, OperatorOrdersAndNewReferencesReachTheDeviceOnSync) {
    PsProcess ps;
    Device d;
    const json v = vector_set(0);
    ps.reference(d.pcrs());
    const Response sub = ps.subscribe(v, "8949020000123456788", {{"device", d.identity()}});
    Response hello = ps.post("/v1/device/hello", d.hello());
    Response evidence = ps.post("/v1/device/evidence", d.evidence(hello.body).body);
    std::vector<json> in = verify_instructions(ps, evidence.body);
    ASSERT_EQ(in.size(), 1u);
    const std::uint64_t install_counter = in[0]["counter"];
    ASSERT_EQ(ps.post("/v1/device/results",
                      d.results(hello.body["session"],
                                json::array({{{"id", in[0]["id"]}, {"status", "ok"}}})))
                  .status,
              200);

    // Nothing pending: sync says 204.
    EXPECT_EQ(ps.post("/v1/device/sync", d.hello()).status, 204);

    // An order and a new reference state (a legitimate update of PCR 4).
    const Response order =
        ps.post("/v1/operator/devices/" + d.identity() + "/orders",
                {{"op", "activate"}, {"iccid", "8949020000123456788"}, {"slot", 0}});
    ASSERT_EQ(order.status, 201) << order.body.dump();
    tpm::PcrValues updated = d.pcrs();
    updated.values[4][5] ^= 0xff;
    const Response ref = ps.post("/v1/operator/references",
                                 {{"class", kClass}, {"pcrs", test::pcrs_json(updated.values)}});
    ASSERT_EQ(ref.status, 201);
    EXPECT_EQ(ref.body["policy_updates"], 1);

    // The device still has the old state, which is still a reference state.
    hello = ps.post("/v1/device/sync", d.hello());
    ASSERT_EQ(hello.status, 200) << hello.body.dump();
    evidence = ps.post("/v1/device/evidence", d.evidence(hello.body).body);
    ASSERT_EQ(evidence.status, 200) << evidence.body.dump();
    in = verify_instructions(ps, evidence.body);
    ASSERT_EQ(in.size(), 2u);
    EXPECT_EQ(in[0]["op"], "activate");
    EXPECT_EQ(in[0]["body"], json({{"iccid", "8949020000123456788"}, {"slot", 0}}));
    EXPECT_GT(in[0]["counter"].get<std::uint64_t>(), install_counter);
    EXPECT_EQ(in[1]["op"], "policy-update");
    const auto approval = te::parse_approval(in[1]["body"]["approval"].dump(),
                                             tpm::parse_pcr_selection(kSelection), false);
    ASSERT_TRUE(approval.approval.has_value());
    EXPECT_EQ(approval.approval->pcrs.values, updated.values);
    ASSERT_EQ(ps.post("/v1/device/results",
                      d.results(hello.body["session"],
                                json::array({{{"id", in[0]["id"]}, {"status", "ok"}},
                                             {{"id", in[1]["id"]}, {"status", "ok"}}})))
                  .status,
              200);
    EXPECT_EQ(ps.subscription_state(sub.body["id"]), "active");
    const json device = ps.get("/v1/operator/devices/" + d.identity()).body;
    EXPECT_EQ(device["last_result"], "validated");
    EXPECT_EQ(device["mids"][0]["state"], "active");
}

} // namespace
