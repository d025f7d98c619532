// The Trusted Environment core end to end on swtpm: import, lifecycle,
// authentication through the TPM, platform state changes, rollback, audit.

#include "te/te.hpp"

#include <cstring>
#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "swtpm.hpp"
#include "te_test_util.hpp"
#include "tpm/error.hpp"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"
#include "usim/tuak.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;
using test::extend_pcr;
using test::load_json;
using test::text_bytes;
using testing::HasSubstr;

// This file's ICCIDs, distinct from the other TE tests'.
std::string iccid(int n) {
    return test::iccid(n, 1000000);
}

// The TPM's dictionary-attack parameters, as an installer would set them.
void set_dictionary_attack(const std::string& tcti, std::uint32_t max_tries) {
    tpm::Context ctx(tcti);
    tpm::check(Esys_DictionaryAttackParameters(ctx, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD,
                                               ESYS_TR_NONE, ESYS_TR_NONE, max_tries, 3600, 3600),
               "DictionaryAttackParameters");
    tpm::check(Esys_DictionaryAttackLockReset(ctx, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD,
                                              ESYS_TR_NONE, ESYS_TR_NONE),
               "DictionaryAttackLockReset");
}

Bytes digits(const char* s) {
    return Bytes(s, s + std::strlen(s));
}

class TeTest : public testing::Test {
protected:
    void SetUp() override {
        dir_ = test::make_temp_dir("tresim-te-");
        config_.state_dir = dir_ + "/state";
        config_.tcti = swtpm_.tcti();
        config_.slots = 2;
        open();
    }
    void TearDown() override {
        te_.reset();
        test::remove_tree(dir_);
    }
    void open() { te_ = std::make_unique<TrustedEnvironment>(config_); }
    void close() { te_.reset(); }

    MidApproval approve_now() { return approve(authority_, te_->current_pcrs(), false, {}); }

    std::int64_t import(const json& profile) {
        return te_->import_profile(text_bytes(profile.dump()), authority_.tpm_public(),
                                   approve_now());
    }

    json milenage_profile(const json& set, int n) {
        return {{"iccid", iccid(n)},
                {"imsi", "26201" + std::to_string(1000000000 + n)},
                {"algorithm", "milenage"},
                {"k", set.at("k")},
                {"opc", set.at("opc")},
                {"amf", set.at("amf")},
                {"label", set.value("name", "")}};
    }

    test::Swtpm swtpm_;
    std::string dir_;
    TeConfig config_;
    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
    std::unique_ptr<TrustedEnvironment> te_;
};

// Runs a software-made vector through the TE and checks RES/CK/IK against it.
void expect_aka_matches_software(TrustedEnvironment& te, std::int64_t index, usim::AkaAlgorithm& sw,
                                 std::uint64_t sqn, const usim::Amf& amf) {
    const usim::Rand rand = usim::random_rand();
    const usim::AuthVector v = usim::generate_vector(sw, rand, sqn, amf);
    const usim::AkaResult r = te.authenticate(index, rand, v.autn);
    ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(r));
    const auto& ok = std::get<usim::AkaSuccess>(r);
    EXPECT_EQ(ok.res, v.xres);
    EXPECT_TRUE(ok.ck == v.ck);
    EXPECT_TRUE(ok.ik == v.ik);
}

TEST_F(TeTest, ImportedMilenageMidAuthenticatesLikeSoftwareInEveryMode) {
    const json sets = load_json("milenage.json").at("milenage");
    int n = 0;
    for (const auto mode :
         {ComputationMode::TpmEcb, ComputationMode::TpmCfb, ComputationMode::Sealed}) {
        close();
        config_.force_mode = mode;
        open();
        for (std::size_t i = 0; i < sets.size(); i += 7) { // three sets per mode
            const json& set = sets.at(i);
            SCOPED_TRACE(std::string(to_string(mode)) + " " + set.value("name", ""));
            const std::int64_t idx = import(milenage_profile(set, ++n));
            EXPECT_EQ(te_->get(idx).mode, mode);
            te_->activate(idx, 0);
            auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                               hex_decode(set.at("opc").get<std::string>(), "opc"));
            const usim::Amf amf = hex_decode_array<2>(set.at("amf").get<std::string>(), "amf");
            expect_aka_matches_software(*te_, idx, *sw, 0x21, amf);
            expect_aka_matches_software(*te_, idx, *sw, 0x41, amf);
            te_->deactivate(idx);
        }
    }
}

TEST_F(TeTest, ImportedTuakMidAuthenticatesLikeSoftware) {
    const json set = load_json("tuak.json").at("tuak").at(3);
    const json profile = {{"iccid", iccid(1)},
                          {"imsi", "262011234567890"},
                          {"algorithm", "tuak"},
                          {"k", set.at("k")},
                          {"op", set.at("top")},
                          {"amf", set.at("amf")},
                          {"tuak",
                           {{"res_bits", set.at("res_len_bits")},
                            {"mac_bits", set.at("mac_len_bits")},
                            {"ck_bits", set.at("ck_len_bits")},
                            {"ik_bits", set.at("ik_len_bits")},
                            {"keccak_iterations", set.at("keccak_iterations")}}}};
    const std::int64_t idx = import(profile);
    EXPECT_EQ(te_->get(idx).mode, ComputationMode::Sealed);
    te_->activate(idx, 0);
    usim::TuakParams p;
    p.res_bits = set.at("res_len_bits");
    p.mac_bits = set.at("mac_len_bits");
    p.ck_bits = set.at("ck_len_bits");
    p.ik_bits = set.at("ik_len_bits");
    p.keccak_iterations = set.at("keccak_iterations");
    usim::Tuak sw(SecretBytes::from_hex(set.at("k").get<std::string>(), "k"),
                  usim::Topc(hex_decode(set.at("topc").get<std::string>(), "topc")), p);
    expect_aka_matches_software(*te_, idx, sw, 0x21,
                                hex_decode_array<2>(set.at("amf").get<std::string>(), "amf"));
}

TEST_F(TeTest, SqnIsPersistedSoAReplayIsASyncFailureEvenAfterARestart) {
    const json set = load_json("milenage.json").at("milenage").at(0);
    const std::int64_t idx = import(milenage_profile(set, 1));
    te_->activate(idx, 0);
    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    const usim::Rand rand = usim::random_rand();
    const usim::AuthVector v = usim::generate_vector(*sw, rand, 0x21, {0x80, 0x00});
    ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(te_->authenticate(idx, rand, v.autn)));
    close();
    open();
    const usim::AkaResult again = te_->authenticate(idx, rand, v.autn);
    ASSERT_TRUE(std::holds_alternative<usim::AkaSyncFailure>(again));
    EXPECT_EQ(usim::resync(*sw, rand, std::get<usim::AkaSyncFailure>(again).auts),
              std::optional<std::uint64_t>(0x21));
}

TEST_F(TeTest, APcrChangeSuspendsTheMidNamingThePcrUntilANewApproval) {
    const json set = load_json("milenage.json").at("milenage").at(2);
    const std::int64_t idx = import(milenage_profile(set, 1));
    te_->activate(idx, 0);
    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    close();
    extend_pcr(swtpm_.tcti(), 7);
    open();
    const usim::Rand rand = usim::random_rand();
    const usim::AuthVector v = usim::generate_vector(*sw, rand, 0x21, {0x80, 0x00});
    try {
        te_->authenticate(idx, rand, v.autn);
        FAIL() << "authenticated in an unapproved platform state";
    } catch (const PlatformMismatch& e) {
        EXPECT_EQ(e.pcrs(), std::vector<unsigned>{7});
        EXPECT_THAT(e.what(), HasSubstr("PCR 7"));
    }
    EXPECT_EQ(te_->get(idx).state, MidState::Suspended);

    // Another key's approval does not count.
    const tpm::PolicyAuthority stranger = tpm::PolicyAuthority::generate();
    te_->add_approval(approve(stranger, te_->current_pcrs(), false, {}));
    EXPECT_EQ(te_->get(idx).state, MidState::Suspended);

    // The MID's authority approves the new state: usable again, not re-imported.
    te_->add_approval(approve_now());
    EXPECT_EQ(te_->get(idx).state, MidState::Active);
    expect_aka_matches_software(*te_, idx, *sw, 0x41, {0x80, 0x00});
}

TEST_F(TeTest, RestoringAnOlderStateFolderIsRefused) {
    const json set = load_json("milenage.json").at("milenage").at(0);
    const std::int64_t idx = import(milenage_profile(set, 1));
    close();
    const std::string copy = dir_ + "/copy";
    std::filesystem::copy(config_.state_dir, copy, std::filesystem::copy_options::recursive);
    open();
    te_->activate(idx, 0);
    close();
    std::filesystem::remove_all(config_.state_dir);
    std::filesystem::copy(copy, config_.state_dir, std::filesystem::copy_options::recursive);
    try {
        open();
        FAIL() << "an older state folder was accepted";
    } catch (const TeError& e) {
        EXPECT_EQ(e.code(), ErrorCode::RollbackDetected);
        EXPECT_THAT(e.what(), HasSubstr("older copy"));
    }
}

TEST_F(TeTest, IllegalTransitionsAreTypedErrorsThatChangeNothing) {
    const json sets = load_json("milenage.json").at("milenage");
    const std::int64_t a = import(milenage_profile(sets.at(0), 1));
    const std::int64_t b = import(milenage_profile(sets.at(2), 2));
    te_->activate(a, 0);
    const std::uint64_t epoch = te_->info().epoch;

    auto expect_code = [&](ErrorCode code, auto&& call) {
        try {
            call();
            FAIL() << "no error, expected " << nick(code);
        } catch (const TeError& e) {
            EXPECT_EQ(e.code(), code) << e.what();
        }
    };
    expect_code(ErrorCode::IllegalTransition, [&] { te_->activate(a, 1); });
    expect_code(ErrorCode::SlotOccupied, [&] { te_->activate(b, 0); });
    expect_code(ErrorCode::IllegalTransition, [&] { te_->remove(a); });
    expect_code(ErrorCode::IllegalTransition, [&] { te_->deactivate(b); });
    expect_code(ErrorCode::UnknownMid, [&] { te_->activate(99, 1); });
    expect_code(ErrorCode::InvalidArgument, [&] { te_->activate(b, 7); });
    expect_code(ErrorCode::IllegalTransition,
                [&] { te_->authenticate(b, usim::Rand{}, Bytes(16, 0)); });
    expect_code(ErrorCode::InvalidArgument,
                [&] { te_->authenticate(a, usim::Rand{}, Bytes(15, 0)); });
    expect_code(ErrorCode::AlreadyExists, [&] { import(milenage_profile(sets.at(0), 1)); });
    expect_code(ErrorCode::InvalidArgument, [&] {
        te_->import_profile(text_bytes("{\"iccid\": 1}"), authority_.tpm_public());
    });
    EXPECT_EQ(te_->get(a).state, MidState::Active);
    EXPECT_EQ(te_->get(a).slot, std::optional<unsigned>(0));
    EXPECT_EQ(te_->get(b).state, MidState::Inactive);
    EXPECT_EQ(te_->list().size(), 2u);
    EXPECT_EQ(te_->info().epoch, epoch);

    te_->deactivate(a);
    te_->remove(a);
    expect_code(ErrorCode::UnknownMid, [&] { te_->get(a); });
    EXPECT_TRUE(te_->verify_audit().ok);
}

TEST_F(TeTest, TheAuditRecordVerifiesAndListsEveryChange) {
    const json set = load_json("milenage.json").at("milenage").at(0);
    const std::int64_t idx = import(milenage_profile(set, 1));
    te_->activate(idx, 1);
    te_->deactivate(idx);
    te_->remove(idx);
    const AuditVerification v = te_->verify_audit();
    EXPECT_TRUE(v.ok) << v.message;
    const json exported = te_->export_audit();
    const std::string text = exported.dump();
    EXPECT_THAT(text, HasSubstr("install"));
    EXPECT_THAT(text, HasSubstr("lifecycle-change"));
    EXPECT_THAT(text, HasSubstr("deletion"));
    EXPECT_THAT(text, testing::Not(HasSubstr(set.at("k").get<std::string>())));
}

TEST_F(TeTest, SqnUpdatesCostAnNvWriteOnlyEverySqnInterval) {
    const json set = load_json("milenage.json").at("milenage").at(0);
    const std::int64_t idx = import(milenage_profile(set, 1));
    te_->activate(idx, 0);
    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    const tpm::CommandCounts before = te_->counts();
    for (std::uint64_t seq = 1; seq <= 32; ++seq) {
        const usim::Rand rand = usim::random_rand();
        const auto v = usim::generate_vector(*sw, rand, seq << 5, {0x80, 0x00});
        ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(te_->authenticate(idx, rand, v.autn)));
    }
    const tpm::CommandCounts d = te_->counts() - before;
    EXPECT_EQ(d.nv_writes, 32u / config_.sqn_interval);
    RecordProperty("tpm_commands_per_aka", std::to_string(d.commands / 32));
    RecordProperty("nv_writes_per_32_aka", std::to_string(d.nv_writes));
}

TEST_F(TeTest, TheSqnIntervalCountsAcrossRestarts) {
    // Regression: the count of SQN updates since the last epoch bump lived only
    // in memory, so a daemon restarted more often than every sqn_interval
    // authentications never moved the epoch for them.
    const json set = load_json("milenage.json").at("milenage").at(0);
    const std::int64_t idx = import(milenage_profile(set, 1));
    te_->activate(idx, 0);
    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    const std::uint64_t e0 = te_->info().epoch;
    for (std::uint64_t seq = 1; seq <= config_.sqn_interval; ++seq) {
        if (seq % 4 == 0) {
            close();
            open();
        }
        const usim::Rand rand = usim::random_rand();
        const auto v = usim::generate_vector(*sw, rand, seq << 5, {0x80, 0x00});
        ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(te_->authenticate(idx, rand, v.autn)));
    }
    EXPECT_EQ(te_->info().epoch, e0 + 1);
}

TEST_F(TeTest, PinProtectedMidNeedsThePinCountsFailuresAndUnblocksWithThePuk) {
    close();
    set_dictionary_attack(swtpm_.tcti(), 32);
    open();
    const json set = load_json("milenage.json").at("milenage").at(4);
    json profile = milenage_profile(set, 1);
    profile["pin"] = "1234";
    profile["puk"] = "12345678";
    const std::int64_t idx =
        te_->import_profile(text_bytes(profile.dump()), authority_.tpm_public(),
                            approve(authority_, te_->current_pcrs(), true, {}));
    te_->activate(idx, 0);
    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    auto expect_code = [&](ErrorCode code, auto&& call, const char* text = "") {
        try {
            call();
            FAIL() << "no error, expected " << nick(code);
        } catch (const TeError& e) {
            EXPECT_EQ(e.code(), code) << e.what();
            EXPECT_THAT(e.what(), HasSubstr(text));
        }
    };
    const usim::Rand rand = usim::random_rand();
    const auto v = usim::generate_vector(*sw, rand, 0x21, {0x80, 0x00});
    expect_code(ErrorCode::PinRequired, [&] { te_->authenticate(idx, rand, v.autn); });
    expect_code(ErrorCode::InvalidArgument, [&] { te_->verify_pin(idx, digits("12a4")); });
    expect_code(
        ErrorCode::WrongPin, [&] { te_->verify_pin(idx, digits("9999")); }, "2 tries left");
    EXPECT_EQ(te_->get(idx).pin_retries, 2u);
    te_->verify_pin(idx, digits("1234"));
    EXPECT_EQ(te_->get(idx).pin_retries, 3u);
    expect_aka_matches_software(*te_, idx, *sw, 0x41, {0x80, 0x00});

    // Three wrong PINs block it; the PIN then no longer helps.
    expect_code(ErrorCode::WrongPin, [&] { te_->verify_pin(idx, digits("0000")); });
    expect_code(ErrorCode::WrongPin, [&] { te_->verify_pin(idx, digits("0000")); });
    expect_code(ErrorCode::PinBlocked, [&] { te_->verify_pin(idx, digits("0000")); });
    EXPECT_EQ(te_->get(idx).state, MidState::Blocked);
    expect_code(ErrorCode::PinBlocked, [&] { te_->verify_pin(idx, digits("1234")); });
    expect_code(ErrorCode::IllegalTransition, [&] { te_->activate(idx, 0); });

    // The PUK unblocks it with a new PIN.
    expect_code(
        ErrorCode::WrongPin, [&] { te_->unblock_pin(idx, digits("87654321"), digits("4321")); },
        "9 tries left");
    te_->unblock_pin(idx, digits("12345678"), digits("4321"));
    EXPECT_EQ(te_->get(idx).state, MidState::Inactive);
    EXPECT_EQ(te_->get(idx).pin_retries, 3u);
    te_->activate(idx, 0);
    expect_aka_matches_software(*te_, idx, *sw, 0x61, {0x80, 0x00});

    // After a restart the new PIN opens it, the old one does not; ChangePin works.
    close();
    open();
    expect_code(ErrorCode::WrongPin, [&] { te_->verify_pin(idx, digits("1234")); });
    te_->change_pin(idx, digits("4321"), digits("55555"));
    close();
    open();
    expect_code(ErrorCode::WrongPin, [&] { te_->verify_pin(idx, digits("4321")); });
    te_->verify_pin(idx, digits("55555"));
    expect_aka_matches_software(*te_, idx, *sw, 0x81, {0x80, 0x00});
    EXPECT_TRUE(te_->verify_audit().ok);
}

TEST_F(TeTest, TpmLockoutIsADistinctErrorFromAWrongPin) {
    close();
    set_dictionary_attack(swtpm_.tcti(), 2);
    open();
    const json set = load_json("milenage.json").at("milenage").at(4);
    json profile = milenage_profile(set, 1);
    profile["pin"] = "1234";
    const std::int64_t idx =
        te_->import_profile(text_bytes(profile.dump()), authority_.tpm_public(),
                            approve(authority_, te_->current_pcrs(), true, {}));
    bool locked = false;
    for (int i = 0; i < 3 && !locked; ++i) {
        try {
            te_->verify_pin(idx, digits("0000"));
        } catch (const TeError& e) {
            locked = e.code() == ErrorCode::TpmLockout;
            if (!locked) {
                EXPECT_TRUE(e.code() == ErrorCode::WrongPin || e.code() == ErrorCode::PinBlocked)
                    << e.what();
            }
        }
    }
    ASSERT_TRUE(locked) << "the TPM never reported lockout";
    // While locked out even the right PIN is refused with TpmLockout, and the
    // MID's own counter is not charged for it.
    const unsigned left = te_->get(idx).pin_retries;
    try {
        te_->verify_pin(idx, digits("1234"));
        FAIL();
    } catch (const TeError& e) {
        EXPECT_EQ(e.code(), ErrorCode::TpmLockout) << e.what();
    }
    EXPECT_EQ(te_->get(idx).pin_retries, left);
}

TEST_F(TeTest, GsmAndSuciRunThroughTheTe) {
    json set = load_json("gsm_milenage.json").at("gsm_milenage").at(0);
    set["amf"] = "8000"; // GSM test data has none; it plays no part in SRES/Kc
    const std::int64_t idx = import(milenage_profile(set, 1));
    te_->activate(idx, 0);
    const usim::Rand rand = hex_decode_array<16>(set.at("rand").get<std::string>(), "rand");
    const usim::GsmContext g = te_->gsm_authenticate(idx, rand);
    EXPECT_EQ(hex_encode(g.sres), set.at("sres1_c2").get<std::string>());
    EXPECT_EQ(hex_encode(g.kc.view()), set.at("kc").get<std::string>());
    const usim::Suci s = te_->suci(idx);
    // No SUCI parameters in the profile: the null scheme, which shows the MSIN.
    EXPECT_EQ(s.text, "suci-0-262-01-0-0-0-1000000001");
}

TEST_F(TeTest, KeepsTheLastMidsSessionAndKeyBetweenAuthenticationsAndReleasesThemForOtherWork) {
    const json sets = load_json("milenage.json").at("milenage");
    int n = 0;
    for (const auto mode :
         {ComputationMode::TpmEcb, ComputationMode::TpmCfb, ComputationMode::Sealed}) {
        SCOPED_TRACE(to_string(mode));
        const bool in_tpm = mode != ComputationMode::Sealed;
        close();
        config_.force_mode = mode;
        open();
        const json& set_a = sets.at(2);
        const json& set_b = sets.at(11);
        const std::int64_t a = import(milenage_profile(set_a, ++n));
        const std::int64_t b = import(milenage_profile(set_b, ++n));
        te_->activate(a, 0);
        te_->activate(b, 1);
        const auto software = [](const json& set) {
            return usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                            hex_decode(set.at("opc").get<std::string>(), "opc"));
        };
        auto sw_a = software(set_a);
        auto sw_b = software(set_b);
        std::uint64_t sqn = 0x40;
        // One AKA's TPM commands, without the epoch bump of every sqn_interval-th.
        const auto aka = [&](std::int64_t idx, usim::AkaAlgorithm& sw) {
            const tpm::CommandCounts before = te_->counts();
            expect_aka_matches_software(*te_, idx, sw, sqn += 0x20, {0x80, 0x00});
            tpm::CommandCounts d = te_->counts() - before;
            if (d.by_code.count(TPM2_CC_NV_Increment) != 0) {
                d.commands -= 3; // NV_Increment, NV_Read, HMAC of the epoch bump
            }
            return d;
        };
        aka(a, *sw_a);
        const tpm::CommandCounts steady = aka(a, *sw_a);
        EXPECT_EQ(steady.commands, in_tpm ? 10u : 4u) << "the uses, their policy and the stamp";
        EXPECT_EQ(steady.by_code.at(TPM2_CC_PolicyPCR), in_tpm ? 3u : 1u);
        EXPECT_EQ(steady.by_code.count(TPM2_CC_StartAuthSession), 0u);
        EXPECT_EQ(steady.by_code.count(TPM2_CC_Load), 0u);
        EXPECT_EQ(steady.nv_writes, 0u);

        // Alternating MIDs reload the key, not the session.
        const tpm::CommandCounts other = aka(b, *sw_b);
        EXPECT_EQ(other.by_code.at(TPM2_CC_Load), 1u);
        EXPECT_EQ(other.by_code.count(TPM2_CC_StartAuthSession), 0u);
        EXPECT_EQ(aka(b, *sw_b).by_code.count(TPM2_CC_Load), 0u);

        // An import needs TPM slots (three objects on a raw TPM): nothing is
        // kept across it, and it works.
        json pinned = milenage_profile(sets.at(5), ++n);
        pinned["pin"] = "2468";
        const std::int64_t c =
            te_->import_profile(text_bytes(pinned.dump()), authority_.tpm_public(),
                                approve(authority_, te_->current_pcrs(), true, {}));
        te_->verify_pin(c, text_bytes("2468"));
        const tpm::CommandCounts after_import = aka(b, *sw_b);
        EXPECT_EQ(after_import.by_code.at(TPM2_CC_StartAuthSession), 1u);
        EXPECT_EQ(after_import.by_code.at(TPM2_CC_Load), 1u);

        // Deactivating the kept key's MID releases it; the other MID still works.
        te_->deactivate(b);
        EXPECT_EQ(aka(a, *sw_a).by_code.at(TPM2_CC_StartAuthSession), 1u);
        // GSM uses the kept session and key too.
        const tpm::CommandCounts before = te_->counts();
        te_->gsm_authenticate(a, usim::random_rand());
        const tpm::CommandCounts gsm = te_->counts() - before;
        EXPECT_EQ(gsm.by_code.count(TPM2_CC_StartAuthSession), 0u);
        EXPECT_EQ(gsm.commands, in_tpm ? 6u : 3u);
        te_->deactivate(a);
    }
}

TEST_F(TeTest, OnlyApprovalsWithTheMidsPolicyRefAreChosenForIt) {
    // The authority approves per policyRef (e.g. one per operator); a newer
    // approval of the same state under another reference must not be the one
    // tried for this MID: it cannot open objects bound to the first.
    const json set = load_json("milenage.json").at("milenage").at(6);
    const Bytes ref_a = text_bytes("operator-a");
    const Bytes ref_b = text_bytes("operator-b");
    const std::int64_t idx =
        te_->import_profile(text_bytes(milenage_profile(set, 1).dump()), authority_.tpm_public(),
                            approve(authority_, te_->current_pcrs(), false, ref_a));
    EXPECT_EQ(te_->get(idx).policy_ref, ref_a);
    te_->activate(idx, 0);
    auto sw = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
    te_->add_approval(approve(authority_, te_->current_pcrs(), false, ref_b));
    close(); // no approval remembered from an earlier use
    open();
    expect_aka_matches_software(*te_, idx, *sw, 0x21, {0x80, 0x00});

    // After a PCR change only an approval under ref_a resumes the MID.
    close();
    extend_pcr(swtpm_.tcti(), 7);
    open();
    const usim::Rand rand = usim::random_rand();
    EXPECT_THROW(
        te_->authenticate(idx, rand, usim::generate_vector(*sw, rand, 0x41, {0x80, 0x00}).autn),
        PlatformMismatch);
    ASSERT_EQ(te_->get(idx).state, MidState::Suspended);
    te_->add_approval(approve(authority_, te_->current_pcrs(), false, ref_b));
    EXPECT_EQ(te_->get(idx).state, MidState::Suspended) << "resumed by another policyRef";
    te_->add_approval(approve(authority_, te_->current_pcrs(), false, ref_a));
    EXPECT_EQ(te_->get(idx).state, MidState::Active);
    expect_aka_matches_software(*te_, idx, *sw, 0x61, {0x80, 0x00});
}

} // namespace
