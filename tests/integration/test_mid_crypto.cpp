// TPM-backed MID computation (src/te/mid_crypto.hpp) on swtpm: the official
// Milenage (TS 35.208, 20 sets) and TUAK (TS 35.233, 6 sets) results through
// the TPM in every mode, the platform-state, authority and PIN refusals, and
// the TPM command count of one USIM authentication.
//
// The expected values are the 3GPP test data (tests/vectors/*.json); the
// round trips compare with vectors made by the software algorithms of
// libtresim-usim (themselves tested against the same data).

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <variant>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "swtpm.hpp"
#include "te/errors.hpp"
#include "te/mid_crypto.hpp"
#include "tpm/capabilities.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"
#include "tpm/policy.hpp"
#include "tpm/srk.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"
#include "usim/tuak.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using testing::ElementsAre;
using testing::HasSubstr;

// Upper bounds of TPM commands per computation, warm ticket cache, as measured
// on swtpm (see mid_crypto.hpp for the breakdown).
constexpr std::uint64_t kMaxAuthenticateTpm = 13; // TpmEcb and TpmCfb, usim_authenticate
constexpr std::uint64_t kMaxAllTpm = 10;          // TpmEcb and TpmCfb, all()
constexpr std::uint64_t kMaxAuthenticateSealed = 7;
constexpr std::uint64_t kPinExtraTpm = 3;    // one PolicyAuthValue per use
constexpr std::uint64_t kPinExtraSealed = 1; // one use
constexpr std::uint64_t kSeparateOpcExtra = 5;

const Bytes kRef = {'m', 'i', 'd'};
constexpr ComputationMode kModes[] = {ComputationMode::TpmEcb, ComputationMode::TpmCfb,
                                      ComputationMode::Sealed};

nlohmann::json load(const std::string& file, const char* key) {
    const char* dir = std::getenv("TRESIM_VECTORS_DIR");
    const std::string path = std::string(dir != nullptr ? dir : "tests/vectors") + "/" + file;
    std::ifstream in(path);
    if (!in) {
        ADD_FAILURE() << "cannot read " << path << " (set TRESIM_VECTORS_DIR)";
        return nlohmann::json::array();
    }
    return nlohmann::json::parse(in).at(key);
}

std::string s(const nlohmann::json& v, const char* field) {
    return v.at(field).get<std::string>();
}
SecretBytes secret(const nlohmann::json& v, const char* field) {
    return SecretBytes::from_hex(s(v, field), field);
}
usim::Rand rand_of(const nlohmann::json& v) {
    return hex_decode_array<16>(s(v, "rand"), "rand");
}
usim::Sqn sqn_of(const nlohmann::json& v) {
    return hex_decode_array<6>(s(v, "sqn"), "sqn");
}
usim::Amf amf_of(const nlohmann::json& v) {
    return hex_decode_array<2>(s(v, "amf"), "amf");
}
usim::TuakParams tuak_params(const nlohmann::json& v) {
    usim::TuakParams p;
    p.mac_bits = v.at("mac_len_bits").get<unsigned>();
    p.res_bits = v.at("res_len_bits").get<unsigned>();
    p.ck_bits = v.at("ck_len_bits").get<unsigned>();
    p.ik_bits = v.at("ik_len_bits").get<unsigned>();
    p.keccak_iterations = v.at("keccak_iterations").get<unsigned>();
    return p;
}

void extend_pcr(tpm::Context& ctx, ESYS_TR pcr, std::uint8_t byte) {
    TPML_DIGEST_VALUES v{};
    v.count = 1;
    v.digests[0].hashAlg = TPM2_ALG_SHA256;
    std::fill_n(v.digests[0].digest.sha256, 32, byte);
    tpm::check(Esys_PCR_Extend(ctx, pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &v),
               "TPM2_PCR_Extend");
}

// A software TPM with its SRK, a local policy authority approving PCRs 0 and 7.
struct Te {
    test::Swtpm swtpm;
    tpm::Context ctx{swtpm.tcti()};
    tpm::Srk srk = tpm::ensure_srk(ctx);
    tpm::PolicyAuthority authority = tpm::PolicyAuthority::generate();
    tpm::PcrSelection sel = tpm::parse_pcr_selection("sha256:0,7");
    tpm::TicketCache tickets;

    MidApproval approval(bool auth_value = false) {
        return approve(authority, tpm::read_pcrs(ctx, sel), auth_value, kRef);
    }
    MidKeyMaterial milenage(const nlohmann::json& v, ComputationMode mode,
                            bool separate_opc = false, bool from_op = false,
                            std::optional<SecretBytes> auth_value = std::nullopt) {
        MidCreateOptions o;
        o.mode = mode;
        o.separate_opc_object = separate_opc;
        o.auth_value = auth_value;
        return create_milenage_mid(ctx, srk.handle, secret(v, "k"),
                                   secret(v, from_op ? "op" : "opc"), from_op, o,
                                   approval(auth_value.has_value()), tickets);
    }
    MidKeyMaterial tuak(const nlohmann::json& v, bool separate_opc = false) {
        MidCreateOptions o;
        o.separate_opc_object = separate_opc;
        return create_tuak_mid(ctx, srk.handle, secret(v, "k"),
                               usim::Topc(secret(v, "topc").view()), tuak_params(v), o, approval());
    }
    std::unique_ptr<MidAlgorithm> algorithm(const MidKeyMaterial& m) {
        return make_mid_algorithm(ctx, srk.handle, m, tickets);
    }
};

// f1..f5* through all() against the official values.
void expect_official(usim::AkaAlgorithm& alg, const nlohmann::json& v, const std::string& label) {
    const usim::AllOutputs o = alg.begin(rand_of(v))->all(sqn_of(v), amf_of(v));
    EXPECT_EQ(hex_encode(o.mac_a), s(v, "f1")) << label;
    EXPECT_EQ(hex_encode(o.mac_s), s(v, "f1star")) << label;
    EXPECT_EQ(hex_encode(o.res), s(v, "f2")) << label;
    EXPECT_EQ(o.ck.reveal_hex(), s(v, "f3")) << label;
    EXPECT_EQ(o.ik.reveal_hex(), s(v, "f4")) << label;
    EXPECT_EQ(hex_encode(o.ak), s(v, "f5")) << label;
    EXPECT_EQ(hex_encode(o.ak_star), s(v, "f5star")) << label;
}

// usim_authenticate through the TPM on a vector the software network side made;
// with a stale SQN state, the AUTS equals the software USIM's.
void expect_round_trip(usim::AkaAlgorithm& tpm_alg, usim::AkaAlgorithm& software,
                       const nlohmann::json& v, const std::string& label, bool resync = false) {
    const usim::Rand rand = rand_of(v);
    // Within the default SQN window of a fresh USIM (delta 2^28 SEQ steps).
    const std::uint64_t sqn = load_be(sqn_of(v)) & 0xffffffull;
    const usim::AuthVector vec = usim::generate_vector(software, rand, sqn, amf_of(v));
    const usim::AkaResult r = usim::usim_authenticate(tpm_alg, usim::SqnState{}, rand, vec.autn);
    const auto* ok = std::get_if<usim::AkaSuccess>(&r);
    ASSERT_NE(ok, nullptr) << label;
    EXPECT_EQ(hex_encode(ok->res), hex_encode(vec.xres)) << label;
    EXPECT_EQ(ok->ck.reveal_hex(), vec.ck.reveal_hex()) << label;
    EXPECT_EQ(ok->ik.reveal_hex(), vec.ik.reveal_hex()) << label;
    EXPECT_EQ(ok->sqn, sqn) << label;
    if (resync) {
        const usim::SqnState ahead = usim::SqnState::from_highest(sqn + 64);
        const usim::AkaResult t = usim::usim_authenticate(tpm_alg, ahead, rand, vec.autn);
        const usim::AkaResult w = usim::usim_authenticate(software, ahead, rand, vec.autn);
        ASSERT_TRUE(std::holds_alternative<usim::AkaSyncFailure>(t)) << label;
        ASSERT_TRUE(std::holds_alternative<usim::AkaSyncFailure>(w)) << label;
        EXPECT_EQ(hex_encode(std::get<usim::AkaSyncFailure>(t).auts),
                  hex_encode(std::get<usim::AkaSyncFailure>(w).auts))
            << label;
        EXPECT_EQ(usim::resync(software, rand, std::get<usim::AkaSyncFailure>(t).auts),
                  std::optional<std::uint64_t>(sqn + 64))
            << label;
    }
}

std::unique_ptr<usim::AkaAlgorithm> software_milenage(const nlohmann::json& v) {
    return usim::Milenage::software(secret(v, "k").view(), secret(v, "opc").view());
}

template <class F> void expect_te_error(F&& f, ErrorCode code, const std::string& label) {
    try {
        f();
        ADD_FAILURE() << label << ": no error";
    } catch (const TeError& e) {
        EXPECT_EQ(nick(e.code()), std::string(nick(code))) << label << ": " << e.what();
    }
}

TEST(MidCrypto, ChoosesTheModeFromTheCapabilitiesAndHonoursAForcedOne) {
    Te te;
    const tpm::Capabilities caps = tpm::probe(te.ctx);
    EXPECT_EQ(choose_mode(caps, Algorithm::Milenage), ComputationMode::TpmEcb) << caps.summary();
    EXPECT_EQ(choose_mode(caps, Algorithm::Milenage, ComputationMode::TpmCfb),
              ComputationMode::TpmCfb);
    EXPECT_EQ(choose_mode(caps, Algorithm::Tuak), ComputationMode::Sealed);
    expect_te_error([&] { choose_mode(caps, Algorithm::Tuak, ComputationMode::TpmEcb); },
                    ErrorCode::InvalidArgument, "TUAK in the TPM");

    tpm::Capabilities cfb_only = caps;
    cfb_only.ecb = false;
    EXPECT_EQ(choose_mode(cfb_only, Algorithm::Milenage), ComputationMode::TpmCfb);
    expect_te_error([&] { choose_mode(cfb_only, Algorithm::Milenage, ComputationMode::TpmEcb); },
                    ErrorCode::InvalidArgument, "ECB forced without ECB");
    tpm::Capabilities none = caps;
    none.encrypt_decrypt2 = false;
    EXPECT_EQ(choose_mode(none, Algorithm::Milenage), ComputationMode::Sealed);

    for (const ComputationMode m : kModes) {
        EXPECT_EQ(parse_computation_mode(to_string(m)), m);
    }
    EXPECT_EQ(parse_computation_mode("ecb"), std::nullopt);
}

TEST(MidCrypto, MilenageGivesTheOfficialResultsThroughTheTpmInEveryMode) {
    Te te;
    const nlohmann::json sets = load("milenage.json", "milenage");
    ASSERT_EQ(sets.size(), 20u);
    for (const ComputationMode mode : kModes) {
        for (std::size_t i = 0; i < sets.size(); ++i) {
            const nlohmann::json& v = sets[i];
            const std::string label = std::string(to_string(mode)) + " " + s(v, "name");
            const auto alg = te.algorithm(te.milenage(v, mode));
            EXPECT_EQ(alg->mode(), mode);
            EXPECT_STREQ(alg->name(), "milenage");
            expect_official(*alg, v, label);
            const auto software = software_milenage(v);
            expect_round_trip(*alg, *software, v, label, i == 0);
        }
    }
}

TEST(MidCrypto, MilenageWorksWithOpcInItsOwnSealedObjectAndWithOpcComputedFromOp) {
    Te te;
    const nlohmann::json sets = load("milenage.json", "milenage");
    ASSERT_FALSE(sets.empty());
    for (const ComputationMode mode : kModes) {
        for (const std::size_t i : {2u, 9u, 19u}) {
            const nlohmann::json& v = sets[i];
            const std::string label = std::string(to_string(mode)) + " " + s(v, "name");
            // OPc as a separate sealed object (the form a PS delivers).
            const MidKeyMaterial separate = te.milenage(v, mode, true);
            EXPECT_TRUE(separate.opc.has_value());
            expect_official(*te.algorithm(separate), v, label + " (separate OPc)");
            // OP given: OPc computed at creation (in the TPM in TPM modes).
            const MidKeyMaterial from_op = te.milenage(v, mode, false, true);
            expect_official(*te.algorithm(from_op), v, label + " (from OP)");
            if (mode != ComputationMode::Sealed) {
                const usim::Opc opc = compute_opc_in_tpm(te.ctx, te.srk.handle, from_op, te.tickets,
                                                         hex_decode_array<16>(s(v, "op"), "op"));
                EXPECT_EQ(hex_encode(opc.view()), s(v, "opc")) << label;
                // The wrapped OPc is not OPc.
                EXPECT_NE(hex_encode(from_op.opc_wrapped), s(v, "opc")) << label;
            }
        }
    }
    const MidKeyMaterial sealed = te.milenage(sets[0], ComputationMode::Sealed);
    expect_te_error(
        [&] { compute_opc_in_tpm(te.ctx, te.srk.handle, sealed, te.tickets, usim::Block{}); },
        ErrorCode::InvalidArgument, "OPc from a sealed K");
}

TEST(MidCrypto, TuakGivesTheOfficialResultsThroughASealedObject) {
    Te te;
    const nlohmann::json sets = load("tuak.json", "tuak");
    ASSERT_EQ(sets.size(), 6u);
    for (const nlohmann::json& v : sets) {
        const std::string label = s(v, "name");
        const MidKeyMaterial m = te.tuak(v);
        EXPECT_EQ(m.mode, ComputationMode::Sealed);
        const auto alg = te.algorithm(m);
        EXPECT_STREQ(alg->name(), "tuak");
        expect_official(*alg, v, label);
        usim::Tuak software(secret(v, "k"), usim::Topc(secret(v, "topc").view()), tuak_params(v));
        EXPECT_EQ(alg->sizes().mac, software.sizes().mac);
        EXPECT_EQ(alg->sizes().res, software.sizes().res);
        expect_round_trip(*alg, software, v, label, &v == &sets[0]);
        EXPECT_LE(alg->last_counts().commands, kMaxAuthenticateSealed + 2) << label;
    }
    expect_official(*te.algorithm(te.tuak(sets[1], true)), sets[1], "TUAK set 2, separate TOPc");
    MidKeyMaterial forced = te.tuak(sets[0]);
    forced.mode = ComputationMode::TpmEcb;
    expect_te_error([&] { te.algorithm(forced); }, ErrorCode::InvalidArgument, "TUAK forced");
}

TEST(MidCrypto, RefusesAfterAPcrChangeNamingItAndWorksAgainWithANewApproval) {
    Te te;
    const nlohmann::json v = load("milenage.json", "milenage").at(0);
    std::vector<MidKeyMaterial> mids;
    for (const ComputationMode mode : kModes) {
        mids.push_back(te.milenage(v, mode));
        expect_official(*te.algorithm(mids.back()), v, to_string(mode));
    }
    extend_pcr(te.ctx, ESYS_TR_PCR7, 0x07);
    for (const MidKeyMaterial& m : mids) {
        const auto alg = te.algorithm(m);
        try {
            alg->begin(rand_of(v));
            ADD_FAILURE() << to_string(m.mode) << ": worked after PCR 7 changed";
        } catch (const PlatformMismatch& e) {
            EXPECT_EQ(e.code(), ErrorCode::PlatformStateMismatch);
            EXPECT_THAT(e.pcrs(), ElementsAre(7u));
            EXPECT_THAT(e.what(), HasSubstr("PCR 7 differs from the approved platform state"));
        }
    }
    // The authority approves the new state: the same objects work again.
    const MidApproval renewed = te.approval();
    EXPECT_NE(renewed.approved_policy, mids[0].approval.approved_policy);
    for (MidKeyMaterial& m : mids) {
        m.approval = renewed;
        const auto alg = te.algorithm(m);
        expect_official(*alg, v, std::string(to_string(m.mode)) + " renewed");
        expect_round_trip(*alg, *software_milenage(v), v, to_string(m.mode));
    }
}

TEST(MidCrypto, RefusesAnApprovalNotSignedByTheMidsAuthority) {
    Te te;
    const nlohmann::json v = load("milenage.json", "milenage").at(3);
    const tpm::PolicyAuthority other = tpm::PolicyAuthority::generate();
    std::vector<MidKeyMaterial> mids;
    for (const ComputationMode mode : kModes) {
        mids.push_back(te.milenage(v, mode));
    }
    // The platform changes; approvals of the new state that the MID's authority
    // did not sign must not open the objects.
    extend_pcr(te.ctx, ESYS_TR_PCR7, 0x42);
    const tpm::PcrValues now = tpm::read_pcrs(te.ctx, te.sel);
    for (const MidKeyMaterial& good : mids) {
        const std::string label = to_string(good.mode);

        // Another authority's own approval: its name is not in the objects' policy.
        MidKeyMaterial foreign = good;
        foreign.approval = approve(other, now, false, kRef);
        expect_te_error([&] { te.algorithm(foreign); }, ErrorCode::PolicyDenied,
                        label + " foreign authority");

        // The MID's authority named, but signed by another key: the TPM's
        // VerifySignature refuses it (no ticket is cached for this policy).
        MidKeyMaterial forged = good;
        forged.approval = approve(te.authority, now, false, kRef);
        forged.approval.signature = other.sign_policy(forged.approval.approved_policy, kRef);
        expect_te_error([&] { te.algorithm(forged)->begin(rand_of(v)); }, ErrorCode::PolicyDenied,
                        label + " forged signature");

        // An approved digest that is not the one for the approval's PCR values.
        MidKeyMaterial tampered = good;
        tampered.approval.pcrs = now;
        expect_te_error([&] { te.algorithm(tampered); }, ErrorCode::PolicyDenied,
                        label + " tampered values");
    }
    // The genuine approval of the new state works. (From here its ticket is
    // cached: a second signature over the same, approved, policy would not be
    // checked again, and need not be.)
    for (MidKeyMaterial& m : mids) {
        m.approval = approve(te.authority, now, false, kRef);
        expect_official(*te.algorithm(m), v, std::string(to_string(m.mode)) + " genuine");
    }
    EXPECT_EQ(te.tickets.find(te.authority.name(), mids[0].approval.approved_policy, kRef) !=
                  nullptr,
              true);
}

// MID objects are subject to the TPM's dictionary-attack protection (the TE
// checks the PIN itself first, so the TPM sees a wrong auth value only when
// that check is bypassed): each mode gets its own TPM, and the last one is
// driven into lockout.
TEST(MidCrypto, NeedsTheRightAuthValueWhenTheMidHasAPin) {
    const nlohmann::json v = load("milenage.json", "milenage").at(5);
    const SecretBytes pin = SecretBytes::from_hex("3132333435363738", "auth-value");
    for (const ComputationMode mode : kModes) {
        Te te;
        const std::string label = to_string(mode);
        const MidKeyMaterial m = te.milenage(v, mode, false, false, pin);
        EXPECT_TRUE(m.approval.auth_value);

        MidKeyMaterial none = m;
        none.auth_value.reset();
        expect_te_error([&] { te.algorithm(none); }, ErrorCode::PinRequired, label + " no PIN");

        MidKeyMaterial wrong = m;
        wrong.auth_value = SecretBytes::from_hex("3030303030303030", "auth-value");
        expect_te_error([&] { te.algorithm(wrong)->begin(rand_of(v)); }, ErrorCode::WrongPin,
                        label + " wrong PIN");

        const auto alg = te.algorithm(m);
        expect_official(*alg, v, label + " right PIN");
        expect_round_trip(*alg, *software_milenage(v), v, label + " right PIN");

        if (mode == ComputationMode::Sealed) {
            bool locked = false;
            for (int attempt = 0; attempt < 20 && !locked; ++attempt) {
                try {
                    te.algorithm(wrong)->begin(rand_of(v));
                    ADD_FAILURE() << "a wrong PIN worked";
                } catch (const TeError& e) {
                    locked = e.code() == ErrorCode::TpmLockout;
                    if (!locked) {
                        EXPECT_EQ(nick(e.code()), std::string("WrongPin")) << e.what();
                    }
                }
            }
            EXPECT_TRUE(locked) << "the TPM never reported its lockout";
            expect_te_error([&] { alg->begin(rand_of(v)); }, ErrorCode::TpmLockout,
                            "the right PIN during lockout");
        }
    }
}

TEST(MidCrypto, CountsTheTpmCommandsOfOneAuthentication) {
    Te te;
    const nlohmann::json v = load("milenage.json", "milenage").at(0);
    const SecretBytes pin = SecretBytes::from_hex("31323334", "auth-value");
    const auto software = software_milenage(v);
    const usim::Rand rand = rand_of(v);
    const usim::AuthVector vec = usim::generate_vector(*software, rand, 42, amf_of(v));

    const auto authenticate = [&](MidAlgorithm& alg) {
        const usim::AkaResult r = usim::usim_authenticate(alg, usim::SqnState{}, rand, vec.autn);
        EXPECT_TRUE(std::holds_alternative<usim::AkaSuccess>(r));
        return alg.last_counts();
    };
    for (const ComputationMode mode : kModes) {
        const std::string name = to_string(mode);
        const bool in_tpm = mode != ComputationMode::Sealed;
        const auto plain = te.algorithm(te.milenage(v, mode));
        const tpm::CommandCounts warm = authenticate(*plain);
        tpm::TicketCache no_tickets; // the first use: the TPM verifies the signature
        const std::uint64_t cold =
            authenticate(
                *make_mid_algorithm(te.ctx, te.srk.handle, te.milenage(v, mode), no_tickets))
                .commands;
        plain->begin(rand)->all(sqn_of(v), amf_of(v));
        const std::uint64_t all = plain->last_counts().commands;
        const auto pinned = te.algorithm(te.milenage(v, mode, false, false, pin));
        authenticate(*pinned);
        const std::uint64_t with_pin = authenticate(*pinned).commands;
        const auto separate = te.algorithm(te.milenage(v, mode, true));
        authenticate(*separate);
        const std::uint64_t separate_opc = authenticate(*separate).commands;

        std::cout << "TPM commands, " << name << ": usim_authenticate " << warm.commands
                  << " (first " << cold << ", with PIN " << with_pin << ", OPc sealed apart "
                  << separate_opc << "), all() " << all << "\n";
        testing::Test::RecordProperty("commands_authenticate_" + name,
                                      static_cast<int>(warm.commands));
        testing::Test::RecordProperty("commands_all_" + name, static_cast<int>(all));
        testing::Test::RecordProperty("commands_authenticate_pin_" + name,
                                      static_cast<int>(with_pin));

        const std::uint64_t bound = in_tpm ? kMaxAuthenticateTpm : kMaxAuthenticateSealed;
        EXPECT_LE(warm.commands, bound) << name;
        EXPECT_EQ(warm.nv_writes, 0u) << name;
        EXPECT_EQ(cold, warm.commands + 3) << name << ": LoadExternal, VerifySignature, Flush";
        EXPECT_LE(all, in_tpm ? kMaxAllTpm : kMaxAuthenticateSealed) << name;
        EXPECT_LE(with_pin, bound + (in_tpm ? kPinExtraTpm : kPinExtraSealed)) << name;
        EXPECT_LE(separate_opc, bound + kSeparateOpcExtra) << name;
        if (in_tpm) {
            EXPECT_EQ(warm.by_code.at(TPM2_CC_EncryptDecrypt2), 3u) << name;
            EXPECT_EQ(warm.by_code.at(TPM2_CC_PolicyPCR), 3u) << name;
            EXPECT_EQ(warm.by_code.at(TPM2_CC_PolicyAuthorize), 3u) << name;
            EXPECT_EQ(warm.by_code.count(TPM2_CC_Unseal), 0u) << name;
        } else {
            EXPECT_EQ(warm.by_code.at(TPM2_CC_Unseal), 1u) << name;
        }
        EXPECT_EQ(warm.by_code.at(TPM2_CC_StartAuthSession), 1u) << name;
        EXPECT_EQ(warm.by_code.count(TPM2_CC_VerifySignature), 0u) << name;
    }
}

// The kept session and key object (WarmState): the same results with fewer
// commands, and still the policy before every use.
TEST(MidCrypto, AWarmStateSavesTheSessionAndTheLoadButNotThePolicy) {
    Te te;
    const nlohmann::json sets = load("milenage.json", "milenage");
    const nlohmann::json& v = sets.at(3);
    const auto software = software_milenage(v);
    std::uint64_t sqn = 100;
    const auto authenticate = [&](MidAlgorithm& alg, usim::AkaAlgorithm& sw) {
        const usim::Rand rand = usim::random_rand();
        const usim::AuthVector vec = usim::generate_vector(sw, rand, ++sqn, amf_of(v));
        const usim::AkaResult r = usim::usim_authenticate(alg, usim::SqnState{}, rand, vec.autn);
        const auto* ok = std::get_if<usim::AkaSuccess>(&r);
        EXPECT_NE(ok, nullptr);
        if (ok != nullptr) {
            EXPECT_EQ(hex_encode(ok->res), hex_encode(vec.xres));
            EXPECT_EQ(ok->ck.reveal_hex(), vec.ck.reveal_hex());
        }
        return alg.last_counts();
    };
    for (const ComputationMode mode : kModes) {
        const std::string name = to_string(mode);
        const bool in_tpm = mode != ComputationMode::Sealed;
        WarmState warm;
        const MidKeyMaterial m = te.milenage(v, mode);
        const auto alg = make_mid_algorithm(te.ctx, te.srk.handle, m, te.tickets, &warm);
        const tpm::CommandCounts first = authenticate(*alg, *software);
        EXPECT_FALSE(warm.reused) << name;
        EXPECT_FALSE(warm.empty()) << name;
        const tpm::CommandCounts kept = authenticate(*alg, *software);
        EXPECT_TRUE(warm.reused) << name;
        // The first starts the session and loads the key, and flushes neither.
        EXPECT_EQ(first.commands, in_tpm ? 11u : 5u) << name;
        EXPECT_EQ(first.by_code.count(TPM2_CC_FlushContext), 0u) << name;
        EXPECT_EQ(kept.commands, in_tpm ? 9u : 3u) << name;
        EXPECT_EQ(kept.by_code.count(TPM2_CC_StartAuthSession), 0u) << name;
        EXPECT_EQ(kept.by_code.count(TPM2_CC_Load), 0u) << name;
        EXPECT_EQ(kept.by_code.count(TPM2_CC_FlushContext), 0u) << name;
        const std::uint64_t uses = in_tpm ? 3u : 1u;
        EXPECT_EQ(kept.by_code.at(TPM2_CC_PolicyPCR), uses) << name;
        EXPECT_EQ(kept.by_code.at(TPM2_CC_PolicyAuthorize), uses) << name;

        // Another MID in the same WarmState: its key replaces the kept one.
        const nlohmann::json& other = sets.at(7);
        const auto other_sw = software_milenage(other);
        const auto other_alg =
            make_mid_algorithm(te.ctx, te.srk.handle, te.milenage(other, mode), te.tickets, &warm);
        warm.reused = false;
        const tpm::CommandCounts switched = authenticate(*other_alg, *other_sw);
        EXPECT_EQ(switched.by_code.at(TPM2_CC_Load), 1u) << name;
        EXPECT_EQ(switched.by_code.at(TPM2_CC_FlushContext), 1u) << name << ": the old key";
        EXPECT_EQ(switched.by_code.count(TPM2_CC_StartAuthSession), 0u) << name;
        authenticate(*alg, *software);

        // A PIN-protected MID's key is never kept (its auth value would stay in
        // ESAPI's memory), the session is.
        const auto pinned = make_mid_algorithm(
            te.ctx, te.srk.handle,
            te.milenage(v, mode, false, false, SecretBytes::from_hex("3132", "auth-value")),
            te.tickets, &warm);
        const tpm::CommandCounts with_pin = authenticate(*pinned, *software);
        EXPECT_EQ(with_pin.by_code.at(TPM2_CC_Load), 1u) << name;
        EXPECT_EQ(with_pin.by_code.at(TPM2_CC_FlushContext), 1u) << name;
        EXPECT_EQ(with_pin.by_code.count(TPM2_CC_StartAuthSession), 0u) << name;
        warm.release();
        EXPECT_TRUE(warm.empty());
    }
}

TEST(MidCrypto, AWarmStateStillRefusesAfterAPcrChangeAndRecoversWithANewApproval) {
    Te te;
    const nlohmann::json v = load("milenage.json", "milenage").at(5);
    for (const ComputationMode mode : kModes) {
        const std::string name = to_string(mode);
        WarmState warm;
        MidKeyMaterial m = te.milenage(v, mode);
        expect_official(*make_mid_algorithm(te.ctx, te.srk.handle, m, te.tickets, &warm), v, name);
        ASSERT_FALSE(warm.empty()) << name;

        extend_pcr(te.ctx, ESYS_TR_PCR0, static_cast<std::uint8_t>(mode));
        const auto alg = make_mid_algorithm(te.ctx, te.srk.handle, m, te.tickets, &warm);
        try {
            alg->begin(rand_of(v))->all(sqn_of(v), amf_of(v));
            ADD_FAILURE() << name << ": the kept key worked after PCR 0 changed";
        } catch (const PlatformMismatch& e) {
            EXPECT_THAT(e.pcrs(), ElementsAre(0u)) << name;
        }
        EXPECT_TRUE(warm.empty()) << name << ": a failed computation keeps nothing";

        m.approval = te.approval(); // the authority approves the new state
        expect_official(*make_mid_algorithm(te.ctx, te.srk.handle, m, te.tickets, &warm), v,
                        name + " after the new approval");
    }
}

TEST(MidCrypto, AStaleWarmSessionIsATpmFailureAndIsReleased) {
    // What a TPM reset or a resource manager dropping the contexts looks like
    // to the kept handles: the TE runs the computation once more (te.cpp).
    Te te;
    const nlohmann::json v = load("milenage.json", "milenage").at(1);
    for (const ComputationMode mode : kModes) {
        const std::string name = to_string(mode);
        WarmState warm;
        const MidKeyMaterial m = te.milenage(v, mode);
        expect_official(*make_mid_algorithm(te.ctx, te.srk.handle, m, te.tickets, &warm), v, name);
        ASSERT_TRUE(warm.session) << name;
        tpm::check(Esys_FlushContext(te.ctx, warm.session->get()), "TPM2_FlushContext");
        warm.reused = false;
        expect_te_error(
            [&] {
                make_mid_algorithm(te.ctx, te.srk.handle, m, te.tickets, &warm)
                    ->begin(rand_of(v))
                    ->all(sqn_of(v), amf_of(v));
            },
            ErrorCode::TpmFailure, name + ": a flushed kept session");
        EXPECT_TRUE(warm.reused) << name;
        EXPECT_TRUE(warm.empty()) << name;
        expect_official(*make_mid_algorithm(te.ctx, te.srk.handle, m, te.tickets, &warm), v,
                        name + " from a fresh session");
    }
}

} // namespace
