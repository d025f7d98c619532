// Remote provisioning in the TE on swtpm: a delivery made in software the way
// the Provisioning Server makes it (a duplication blob for this TPM's SRK, a
// PS-signed approval, OPc wrapped with K), installed by an instruction and used
// for AKA with the official TS 35.208 data; instruction counters, replays,
// atomicity, switch-slot with confirmation and fallback; the attestation the
// provisioning client presents.

#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "swtpm.hpp"
#include "te/approval_json.hpp"
#include "te/te.hpp"
#include "te_test_util.hpp"
#include "tpm/attest.hpp"
#include "tpm/duplicate.hpp"
#include "tpm/keys.hpp"
#include "tpm/policy.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;
using test::extend_pcr;
using test::milenage_set;
using testing::HasSubstr;

// This file's ICCIDs, distinct from the other TE tests'.
std::string iccid(int n) {
    return test::iccid(n, 3000000);
}

std::string b64url(ByteView data) {
    static const char* alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (const std::uint8_t b : data) {
        acc = (acc << 8) | b;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(alphabet[(acc >> bits) & 0x3f]);
        }
    }
    if (bits > 0) {
        out.push_back(alphabet[(acc << (6 - bits)) & 0x3f]);
    }
    return out;
}

// AES-128 of one block with OpenSSL (what the PS computes with K).
Bytes aes_block(ByteView key, ByteView block) {
    std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> c(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
    Bytes out(32);
    int n = 0;
    EXPECT_EQ(EVP_EncryptInit_ex(c.get(), EVP_aes_128_ecb(), nullptr, key.data(), nullptr), 1);
    EVP_CIPHER_CTX_set_padding(c.get(), 0);
    EXPECT_EQ(EVP_EncryptUpdate(c.get(), out.data(), &n, block.data(), 16), 1);
    out.resize(16);
    return out;
}

Bytes hex(const json& v) {
    return hex_decode(v.get<std::string>(), "vector");
}

std::string hex12(std::uint64_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(v));
    return buf;
}

class TeProvisionedTest : public testing::Test {
protected:
    void SetUp() override {
        dir_ = test::make_temp_dir("tresim-prov-");
        config_.state_dir = dir_ + "/state";
        config_.tcti = swtpm_.tcti();
        config_.slots = 2;
        config_.confirm_within = 60;
        open();
    }
    void TearDown() override {
        te_.reset();
        test::remove_tree(dir_);
    }
    void open() { te_ = std::make_unique<TrustedEnvironment>(config_); }
    void close() { te_.reset(); }

    json public_profile(const json& set, int n) {
        // The official SQN is the next one: the USIM has used the one before.
        const std::uint64_t sqn = load_be(hex(set.at("sqn")));
        return {{"iccid", iccid(n)},
                {"imsi", "26201" + std::to_string(1000000000 + n)},
                {"algorithm", "milenage"},
                {"amf", set.at("amf")},
                {"sqn", hex12(sqn - 32)},
                {"label", "delivered " + std::to_string(n)},
                {"operator", "PS test operator"}};
    }

    // The install body as the PS makes it for this TPM's SRK.
    json install_body(const json& set, int n, std::optional<TPMT_PUBLIC> srk = std::nullopt,
                      bool sealed = false) {
        const TPMT_PUBLIC parent = srk ? *srk : te_->attestation_keys().srk_public.publicArea;
        const Bytes k = hex(set.at("k"));
        const Bytes opc = hex(set.at("opc"));
        tpm::ObjectOptions options;
        options.auth_policy = mid_auth_policy(authority_.tpm_public(), {});
        const MidApproval approval = approve(authority_, te_->current_pcrs(), false, {});
        json body = {{"profile", public_profile(set, n)}, {"approval", approval_to_json(approval)}};
        if (sealed) {
            Bytes both = k;
            both.insert(both.end(), opc.begin(), opc.end());
            body["mode"] = "sealed";
            body["key"] = b64url(
                tpm::duplicate_sealed_data(parent, SecretBytes(ByteView(both)), options).marshal());
        } else {
            Bytes nonce(16);
            RAND_bytes(nonce.data(), 16);
            const Bytes pad = aes_block(k, nonce);
            Bytes wrapped(16);
            for (std::size_t i = 0; i < 16; ++i) {
                wrapped[i] = opc[i] ^ pad[i];
            }
            body["mode"] = to_string(te_->info().milenage_mode);
            body["key"] =
                b64url(tpm::duplicate_aes_key(parent, SecretBytes(ByteView(k)), options).marshal());
            body["opc_wrapped"] = hex_encode(wrapped);
            body["wrap_nonce"] = hex_encode(nonce);
        }
        return body;
    }

    InstructionResult run(std::uint64_t counter, const std::string& op, const json& body,
                          std::int64_t now = 1000) {
        InstructionResult r = te_->execute_instruction(
            {kServer, counter, "order-" + std::to_string(counter), op, body}, now);
        // As the client does once the server acknowledged the result.
        te_->clear_late_result(kServer, counter);
        return r;
    }

    // RES of the official vector (RAND, SQN, AMF -> AUTN from f1 and f5) must
    // be its f2 (XRES).
    void expect_official_aka(std::int64_t index, const json& set) {
        const Bytes sqn = hex(set.at("sqn"));
        const Bytes ak = hex(set.at("f5"));
        Bytes autn(16);
        for (std::size_t i = 0; i < 6; ++i) {
            autn[i] = sqn[i] ^ ak[i];
        }
        const Bytes amf = hex(set.at("amf"));
        const Bytes mac = hex(set.at("f1"));
        std::copy(amf.begin(), amf.end(), autn.begin() + 6);
        std::copy(mac.begin(), mac.end(), autn.begin() + 8);
        usim::Rand rand{};
        const Bytes r = hex(set.at("rand"));
        std::copy(r.begin(), r.end(), rand.begin());
        const usim::AkaResult result = te_->authenticate(index, rand, autn);
        ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(result));
        const auto& ok = std::get<usim::AkaSuccess>(result);
        EXPECT_EQ(hex_encode(ByteView(ok.res.data(), ok.res.size())),
                  set.at("f2").get<std::string>());
        EXPECT_EQ(hex_encode(ok.ck.view()), set.at("f3").get<std::string>());
        EXPECT_EQ(hex_encode(ok.ik.view()), set.at("f4").get<std::string>());
    }

    std::vector<json> audit_records(const std::string& type) {
        std::vector<json> out;
        const json audit = te_->export_audit(); // kept alive for the loop
        for (const json& r : audit.at("records")) {
            if (r.at("type") == type) {
                out.push_back(r);
            }
        }
        return out;
    }

    static constexpr const char* kServer = "test-kid";
    test::Swtpm swtpm_;
    std::string dir_;
    TeConfig config_;
    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
    std::unique_ptr<TrustedEnvironment> te_;
};

TEST_F(TeProvisionedTest, ADeliveredMidAuthenticatesWithTheOfficialVector) {
    const json set = milenage_set(2);
    json body = install_body(set, 1);
    body["slot"] = 0;
    const InstructionResult r = run(1, "install", body);
    ASSERT_EQ(r.status, "ok") << r.error << ": " << r.message;
    ASSERT_EQ(r.mids.size(), 1u);
    const MidRecord m = te_->get(r.mids[0]);
    EXPECT_EQ(m.state, MidState::Active);
    EXPECT_EQ(m.slot, std::optional<unsigned>(0));
    EXPECT_EQ(m.provisioned_by, kServer);
    EXPECT_EQ(m.operator_name, "PS test operator");
    expect_official_aka(m.index, set);

    // The install record names the instruction.
    const auto installs = audit_records("install");
    ASSERT_EQ(installs.size(), 1u);
    EXPECT_EQ(installs[0].at("details").at("source"), "provisioned");
    EXPECT_EQ(installs[0].at("details").at("instruction").at("counter"), 1);
    EXPECT_TRUE(te_->verify_audit().ok);
}

TEST_F(TeProvisionedTest, ASealedDeliveryAuthenticatesToo) {
    const json set = milenage_set(4);
    json body = install_body(set, 2, std::nullopt, true);
    body["slot"] = 1;
    const InstructionResult r = run(5, "install", body);
    ASSERT_EQ(r.status, "ok") << r.error << ": " << r.message;
    EXPECT_EQ(te_->get(r.mids[0]).mode, ComputationMode::Sealed);
    expect_official_aka(r.mids[0], set);
}

TEST_F(TeProvisionedTest, ReplayedCountersAreRefusedAndAReSentInstructionIsNotExecutedTwice) {
    const json set = milenage_set(2);
    const InstructionResult first = run(7, "install", install_body(set, 1));
    ASSERT_EQ(first.status, "ok") << first.message;
    const auto state = te_->provisioning_state(kServer);
    ASSERT_TRUE(state);
    EXPECT_EQ(state->counter, 7u);
    EXPECT_EQ(state->id, "order-7");

    // The PS re-sends it (it lost our results): the stored answer, no second MID.
    const InstructionResult again = run(7, "install", install_body(set, 1));
    EXPECT_EQ(again.status, "ok");
    EXPECT_EQ(again.mids, first.mids);
    EXPECT_EQ(te_->list().size(), 1u);

    // An older counter, or the same counter with another id: refused.
    const InstructionResult old = run(6, "deactivate", {{"iccid", iccid(1)}});
    EXPECT_EQ(old.status, "refused");
    EXPECT_EQ(old.error, "replayed");
    const InstructionResult other = te_->execute_instruction(
        {kServer, 7, "another-order", "activate", {{"iccid", iccid(1)}, {"slot", 0}}}, 1000);
    EXPECT_EQ(other.status, "refused");
    EXPECT_EQ(other.error, "replayed");
    EXPECT_EQ(te_->list().at(0).state, MidState::Inactive);
    const auto refused = audit_records("instruction-refused");
    ASSERT_EQ(refused.size(), 2u);
    EXPECT_EQ(refused[0].at("details").at("reason"), "replayed");
    EXPECT_EQ(te_->provisioning_state(kServer)->counter, 7u);

    // Counters are per server key.
    const InstructionResult elsewhere = te_->execute_instruction(
        {"other-kid", 1, "x", "activate", {{"iccid", iccid(1)}, {"slot", 0}}}, 1000);
    EXPECT_EQ(elsewhere.status, "ok") << elsewhere.message;
}

TEST_F(TeProvisionedTest, AFailingInstructionChangesNothingButItsCounterAndAuditRecord) {
    const json set = milenage_set(2);
    // A blob wrapped for another TPM's storage key: a valid P-256 point that is not our SRK.
    TPMT_PUBLIC foreign = te_->attestation_keys().srk_public.publicArea;
    foreign.unique.ecc = authority_.tpm_public().publicArea.unique.ecc;
    const std::uint64_t epoch = te_->info().epoch;
    const InstructionResult r = run(1, "install", install_body(set, 1, foreign));
    EXPECT_EQ(r.status, "failed");
    EXPECT_EQ(r.error, "InvalidArgument");
    EXPECT_THAT(r.message, HasSubstr("not made for this TPM"));
    EXPECT_TRUE(te_->list().empty());
    EXPECT_EQ(te_->provisioning_state(kServer)->result.status, "failed");
    EXPECT_TRUE(audit_records("policy-update").empty()); // the approval was not stored either
    ASSERT_EQ(audit_records("instruction-refused").size(), 1u);
    EXPECT_GT(te_->info().epoch, epoch);

    // Install into an occupied slot: the install part is rolled back with it.
    ASSERT_EQ(run(2, "install",
                  [&] {
                      json b = install_body(set, 1);
                      b["slot"] = 0;
                      return b;
                  }())
                  .status,
              "ok");
    json clash = install_body(milenage_set(3), 2);
    clash["slot"] = 0;
    const InstructionResult occupied = run(3, "install", clash);
    EXPECT_EQ(occupied.status, "failed");
    EXPECT_EQ(occupied.error, "SlotOccupied");
    ASSERT_EQ(te_->list().size(), 1u);
    EXPECT_EQ(te_->list()[0].iccid, iccid(1));
    EXPECT_EQ(audit_records("install").size(), 1u);
    EXPECT_TRUE(te_->verify_audit().ok);

    // Malformed bodies and unknown ops fail cleanly too.
    EXPECT_EQ(run(4, "install", {{"mode", "tpm-ecb"}}).error, "InvalidArgument");
    EXPECT_EQ(run(5, "format-disk", json::object()).error, "InvalidArgument");
    json secret = install_body(set, 3);
    secret["profile"]["k"] = set.at("k");
    const InstructionResult leaked = run(6, "install", secret);
    EXPECT_EQ(leaked.status, "failed");
    EXPECT_THAT(leaked.message, HasSubstr("must not carry secrets"));
    EXPECT_THAT(leaked.message, testing::Not(HasSubstr(set.at("k").get<std::string>())));
    EXPECT_EQ(te_->list().size(), 1u);
}

TEST_F(TeProvisionedTest, APolicyUpdateResumesTheMidsItsApprovalOpens) {
    const json set = milenage_set(4);
    json body = install_body(set, 1);
    body["slot"] = 0;
    ASSERT_EQ(run(1, "install", body).status, "ok");
    const std::int64_t idx = te_->list().at(0).index;
    ASSERT_EQ(te_->get(idx).state, MidState::Active);
    close();
    extend_pcr(swtpm_.tcti(), 7);
    open();
    const usim::Rand rand{};
    EXPECT_THROW(te_->authenticate(idx, rand, Bytes(16, 0)), PlatformMismatch);
    ASSERT_EQ(te_->get(idx).state, MidState::Suspended);

    // Another policyRef's approval of the new state does not open its objects.
    const json other = approval_to_json(
        approve(authority_, te_->current_pcrs(), false, Bytes{'o', 't', 'h', 'e', 'r'}));
    ASSERT_EQ(run(2, "policy-update", {{"approval", other}}).status, "ok");
    EXPECT_EQ(te_->get(idx).state, MidState::Suspended);

    const json fresh = approval_to_json(approve(authority_, te_->current_pcrs(), false, {}));
    ASSERT_EQ(run(3, "policy-update", {{"approval", fresh}}).status, "ok");
    EXPECT_EQ(te_->get(idx).state, MidState::Active);
    const std::vector<json> changes = audit_records("lifecycle-change");
    ASSERT_FALSE(changes.empty());
    EXPECT_EQ(changes.back().at("details").at("event"), "resume");
    EXPECT_TRUE(changes.back().at("details").contains("instruction"));
    expect_official_aka(idx, set);
    EXPECT_TRUE(te_->verify_audit().ok);
}

TEST_F(TeProvisionedTest, LifecycleInstructionsActivateUpdateDeactivateAndDelete) {
    const json set = milenage_set(2);
    ASSERT_EQ(run(1, "install", install_body(set, 1)).status, "ok");
    const std::int64_t idx = te_->list().at(0).index;
    EXPECT_EQ(run(2, "activate", {{"iccid", iccid(1)}, {"slot", 1}}).status, "ok");
    EXPECT_EQ(te_->get(idx).slot, std::optional<unsigned>(1));
    EXPECT_EQ(run(3, "update", {{"iccid", iccid(1)}, {"label", "renamed"}}).status, "ok");
    EXPECT_EQ(te_->get(idx).label, "renamed");
    EXPECT_EQ(run(4, "update", {{"iccid", iccid(1)}, {"imsi", "262019999999999"}}).error,
              "InvalidArgument");
    EXPECT_EQ(run(5, "delete", {{"iccid", iccid(1)}}).error, "IllegalTransition");
    EXPECT_EQ(run(6, "deactivate", {{"iccid", iccid(1)}}).status, "ok");
    EXPECT_EQ(run(7, "delete", {{"iccid", iccid(1)}}).status, "ok");
    EXPECT_TRUE(te_->list().empty());
    EXPECT_EQ(audit_records("deletion").size(), 1u);

    // A locally imported MID is not the server's to manage.
    const json local = {{"iccid", iccid(9)}, {"imsi", "262019000000009"}, {"algorithm", "milenage"},
                        {"k", set.at("k")},  {"opc", set.at("opc")},      {"amf", set.at("amf")}};
    const std::string text = local.dump();
    te_->import_profile(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
                        authority_.tpm_public(),
                        approve(authority_, te_->current_pcrs(), false, {}));
    EXPECT_EQ(run(8, "activate", {{"iccid", iccid(9)}, {"slot", 0}}).error, "PolicyDenied");
}

TEST_F(TeProvisionedTest, ASwitchIsKeptWhenConfirmedAndFallsBackAfterARestartWhenNot) {
    ASSERT_EQ(run(1, "install",
                  [&] {
                      json b = install_body(milenage_set(2), 1);
                      b["slot"] = 0;
                      return b;
                  }())
                  .status,
              "ok");
    ASSERT_EQ(run(2, "install", install_body(milenage_set(3), 2)).status, "ok");
    ASSERT_EQ(run(3, "install", install_body(milenage_set(4), 3)).status, "ok");
    const std::int64_t first = te_->get_by_iccid(iccid(1)).index;
    const std::int64_t second = te_->get_by_iccid(iccid(2)).index;
    const std::int64_t third = te_->get_by_iccid(iccid(3)).index;

    // Confirmed in time: stays.
    const InstructionResult s = run(4, "switch-slot", {{"iccid", iccid(2)}, {"slot", 0}}, 1000);
    ASSERT_EQ(s.status, "ok") << s.message;
    EXPECT_EQ(te_->get(first).state, MidState::Inactive);
    EXPECT_EQ(te_->get(second).slot, std::optional<unsigned>(0));
    ASSERT_EQ(te_->pending_switches().size(), 1u);
    EXPECT_EQ(te_->pending_switches()[0].deadline, 1060); // the TE default, 60 s
    te_->confirm_activation(second);
    EXPECT_TRUE(te_->expire_switches(5000).empty());
    EXPECT_EQ(te_->get(second).state, MidState::Active);
    EXPECT_THROW(te_->confirm_activation(second), TeError);

    // Not confirmed, and the TE restarts inside the window: it still falls back.
    ASSERT_EQ(
        run(5, "switch-slot", {{"iccid", iccid(3)}, {"slot", 0}, {"confirm_within", 30}}, 2000)
            .status,
        "ok");
    EXPECT_EQ(te_->get(third).state, MidState::Active);
    close();
    open();
    EXPECT_TRUE(te_->expire_switches(2029).empty());
    const auto fell = te_->expire_switches(2030);
    ASSERT_EQ(fell.size(), 1u);
    EXPECT_EQ(fell[0].mid, third);
    EXPECT_EQ(te_->get(third).state, MidState::Inactive);
    EXPECT_EQ(te_->get(second).state, MidState::Active);
    EXPECT_EQ(te_->get(second).slot, std::optional<unsigned>(0));
    // The PS hears of it: the stored result and a late result say fallback.
    EXPECT_TRUE(te_->provisioning_state(kServer)->result.fallback);
    const auto late = te_->late_results();
    ASSERT_EQ(late.size(), 1u);
    EXPECT_EQ(late[0].result.counter, 5u);
    EXPECT_EQ(late[0].result.id, "order-5");
    EXPECT_TRUE(late[0].result.fallback);
    te_->clear_late_result(kServer, 5);
    EXPECT_TRUE(te_->late_results().empty());
    expect_official_aka(second, milenage_set(3));
}

TEST_F(TeProvisionedTest, AttestationVerifiesInSoftware) {
    const AttestationKeys k = te_->attestation_keys();
    EXPECT_TRUE(tpm::matches_ek_template(k.ek_public.publicArea, k.ek_type));
    ASSERT_TRUE(k.ek_certificate.has_value());
    EXPECT_EQ(k.identity, tpm::te_identity(k.ek_public.publicArea));

    // MakeCredential in software, ActivateCredential in the TPM.
    const SecretBytes credential(Bytes(32, 0x5a));
    const tpm::Credential c = tpm::make_credential(
        k.ek_public.publicArea, tpm::object_name(k.ak_public.publicArea), credential);
    EXPECT_TRUE(te_->activate_credential(c.credential_blob, c.secret) == credential);

    const Bytes nonce(32, 0x11);
    const QuoteWithPcrs q = te_->quote(nonce);
    const auto ak = tpm::to_evp_pkey(k.ak_public.publicArea);
    tpm::AttestExpectations expect;
    expect.qualifying_data = nonce;
    EXPECT_NO_THROW(tpm::verify_quote(q.quote, ak.get(), expect, q.pcrs));
    const tpm::Attestation cert = te_->certify_srk(nonce);
    EXPECT_NO_THROW(
        tpm::verify_certify(cert, ak.get(), expect, tpm::object_name(k.srk_public.publicArea)));

    // The AK is kept: the same after a restart.
    close();
    open();
    EXPECT_EQ(tpm::marshal_public(te_->attestation_keys().ak_public),
              tpm::marshal_public(k.ak_public));
}

} // namespace
