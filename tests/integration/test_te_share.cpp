// Shared functions (TR 33.812 per-MID security policy; docs/te.md "Shared
// functions") on swtpm: an ISIM-only MID B (functions_from) runs IMS AKA with
// the USIM function of a MID A: A's K and OPc, A's SQN array. The results are
// checked against the software Milenage with A's K/OPc from the official test
// sets; every refusal is a typed TeError that leaves every row of the state
// database as it was (A's SQN array included).

#include <cstring>
#include <functional>
#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "swtpm.hpp"
#include "te/te.hpp"
#include "te_test_util.hpp"
#include "tpm/error.hpp"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;
using test::dump_database;
using test::milenage_set;
using test::query;
using test::text_bytes;
using testing::HasSubstr;

// This file's ICCIDs, distinct from the other TE tests'.
std::string iccid(int n) {
    return test::iccid(n, 7000000);
}

class TeShare : public testing::Test {
protected:
    void SetUp() override {
        dir_ = test::make_temp_dir("tresim-te-share-");
        config_.state_dir = dir_ + "/state";
        config_.tcti = swtpm_.tcti();
        config_.slots = 8;
        te_ = std::make_unique<TrustedEnvironment>(config_);
    }
    void TearDown() override {
        te_.reset();
        test::remove_tree(dir_);
    }

    // A lender: a Milenage MID with official test set `set`'s K and OPc that
    // shares its functions.
    static json lender(int n, std::size_t set = 0) {
        const json s = milenage_set(set);
        return {{"iccid", iccid(n)},
                {"imsi", "26201" + std::to_string(1000000000 + n)},
                {"algorithm", "milenage"},
                {"k", s.at("k")},
                {"opc", s.at("opc")},
                {"amf", s.at("amf")},
                {"policy", {{"share_functions", true}}}};
    }
    // An ISIM-only MID using the USIM function of the MID with ICCID `from`.
    static json borrower(int n, const std::string& from) {
        return {{"iccid", iccid(n)},
                {"imsi", "26201" + std::to_string(1000000000 + n)},
                {"label", "ims only"},
                {"functions_from", from},
                {"isim",
                 {{"impi", "user" + std::to_string(n) + "@ims.example.org"},
                  {"impu", {"sip:user" + std::to_string(n) + "@ims.example.org"}},
                  {"domain", "ims.example.org"}}},
                {"policy", {{"share_functions", true}}}};
    }

    std::int64_t import(const json& p, bool pin = false) {
        return te_->import_profile(text_bytes(p.dump()), authority_.tpm_public(),
                                   approve(authority_, te_->current_pcrs(), pin, {}));
    }

    // The software network side for official test set `set`.
    static std::unique_ptr<usim::AkaAlgorithm> network(std::size_t set = 0) {
        const json s = milenage_set(set);
        return usim::Milenage::software(hex_decode(s.at("k").get<std::string>(), "k"),
                                        hex_decode(s.at("opc").get<std::string>(), "opc"));
    }
    static usim::AuthVector vector(usim::AkaAlgorithm& net, std::uint64_t sqn) {
        return usim::generate_vector(net, usim::random_rand(), sqn, {0x80, 0x00});
    }

    static void expect_success(const usim::AkaResult& r, const usim::AuthVector& v) {
        ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(r));
        const auto& ok = std::get<usim::AkaSuccess>(r);
        EXPECT_EQ(ok.res, v.xres);
        EXPECT_TRUE(ok.ck == v.ck);
        EXPECT_TRUE(ok.ik == v.ik);
    }

    std::string db_path() const { return config_.state_dir + "/tresim.db"; }

    // (authentications, gsm, suci) counted for the MID with ICCID `id`.
    std::int64_t authentications(const std::string& id) {
        std::int64_t n = 0;
        query(db_path(), "SELECT authentications FROM audit_use_counter WHERE mid = '" + id + "'",
              [&](sqlite3_stmt* s) { n = sqlite3_column_int64(s, 0); });
        return n;
    }

    // `call` throws TeError(code) whose text contains `names`, and changes no
    // row of the state database.
    void expect_refused(const std::string& what, ErrorCode code, const std::string& names,
                        const std::function<void()>& call) {
        SCOPED_TRACE(what);
        const std::string before = dump_database(db_path());
        const std::uint64_t epoch = te_->info().epoch;
        try {
            call();
            ADD_FAILURE() << "accepted; expected " << nick(code);
        } catch (const TeError& e) {
            EXPECT_EQ(e.code(), code) << nick(e.code()) << ": " << e.what();
            EXPECT_THAT(e.what(), HasSubstr(names));
            EXPECT_THAT(e.what(),
                        testing::Not(HasSubstr(milenage_set(0).at("k").get<std::string>())));
        } catch (const std::exception& e) {
            ADD_FAILURE() << "not a TeError: " << e.what();
        }
        EXPECT_TRUE(dump_database(db_path()) == before) << "the state database changed";
        EXPECT_EQ(te_->info().epoch, epoch);
    }

    test::Swtpm swtpm_;
    std::string dir_;
    TeConfig config_;
    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
    std::unique_ptr<TrustedEnvironment> te_;
};

TEST_F(TeShare, AnIsimOnlyMidRunsImsAkaWithItsLendersKeyAndSqnArray) {
    const std::int64_t a = import(lender(1));
    const std::int64_t b = import(borrower(2, iccid(1)));
    const MidRecord rb = te_->get(b);
    EXPECT_EQ(rb.functions_from, iccid(1));
    EXPECT_TRUE(rb.isim.has_value());
    EXPECT_TRUE(te_->get(a).functions_from.empty());
    std::int64_t objects = -1;
    query(db_path(), "SELECT COUNT(*) FROM objects WHERE mid = " + std::to_string(b),
          [&](sqlite3_stmt* s) { objects = sqlite3_column_int64(s, 0); });
    EXPECT_EQ(objects, 0) << "an ISIM-only MID has no TPM objects";

    te_->activate(a, 0);
    te_->activate(b, 1);
    auto net = network();
    const usim::AuthVector v = vector(*net, 0x20);
    expect_success(te_->isim_authenticate(b, v.rand, v.autn), v);
    EXPECT_EQ(authentications(iccid(1)), 1);
    EXPECT_EQ(authentications(iccid(2)), 1);

    // A's own SQN array advanced: the same vector is now a replay for A, and
    // A's AUTS resynchronises the network to the SQN B's use consumed.
    const usim::AkaResult again = te_->authenticate(a, v.rand, v.autn);
    ASSERT_TRUE(std::holds_alternative<usim::AkaSyncFailure>(again));
    EXPECT_EQ(usim::resync(*net, v.rand, std::get<usim::AkaSyncFailure>(again).auts),
              std::optional<std::uint64_t>(0x20));
    // And the other way round: A's use advances what B's AKA checks.
    const usim::AuthVector w = vector(*net, 0x40);
    expect_success(te_->authenticate(a, w.rand, w.autn), w);
    EXPECT_TRUE(
        std::holds_alternative<usim::AkaSyncFailure>(te_->isim_authenticate(b, w.rand, w.autn)));
    const usim::AuthVector x = vector(*net, 0x60);
    expect_success(te_->isim_authenticate(b, x.rand, x.autn), x);
    EXPECT_EQ(authentications(iccid(1)), 3);
    EXPECT_EQ(authentications(iccid(2)), 2);

    // The link survives a restart of the TE.
    te_.reset();
    te_ = std::make_unique<TrustedEnvironment>(config_);
    EXPECT_EQ(te_->get(b).functions_from, iccid(1));
    const usim::AuthVector y = vector(*net, 0x80);
    expect_success(te_->isim_authenticate(b, y.rand, y.autn), y);
    const AuditVerification audit = te_->verify_audit();
    EXPECT_TRUE(audit.ok) << audit.message;
}

TEST_F(TeShare, EveryRefusalIsTypedNamesTheMidAndChangesNothing) {
    // Lenders: 1 shares, 3 does not, 5 shares but does not allow isim.
    const std::int64_t a = import(lender(1));
    json no_share = lender(3);
    no_share["policy"]["share_functions"] = false;
    const std::int64_t a3 = import(no_share);
    json no_isim = lender(5);
    no_isim["policy"]["allowed_actions"] = {"authenticate", "gsm", "suci"};
    const std::int64_t a5 = import(no_isim);
    const std::int64_t b = import(borrower(2, iccid(1)));
    const std::int64_t b4 = import(borrower(4, iccid(3)));
    const std::int64_t b6 = import(borrower(6, iccid(5)));
    json b8p = borrower(8, iccid(1));
    b8p["policy"]["allowed_actions"] = {"authenticate"};
    const std::int64_t b8 = import(b8p);
    auto net = network();
    const usim::AuthVector v = vector(*net, 0x20);

    // B not active: as for any MID's own authentication.
    te_->activate(a, 0);
    expect_refused("B inactive", ErrorCode::IllegalTransition, "inactive",
                   [&] { te_->isim_authenticate(b, v.rand, v.autn); });
    // A not active.
    te_->deactivate(a);
    te_->activate(b, 1);
    expect_refused("A inactive", ErrorCode::PolicyDenied, iccid(1) + ", whose USIM",
                   [&] { te_->isim_authenticate(b, v.rand, v.autn); });
    te_->activate(a, 0);

    for (const auto& [lender_index, slot] : {std::pair{a3, 2u}, std::pair{a5, 3u}}) {
        te_->activate(lender_index, slot);
    }
    te_->activate(b4, 4);
    te_->activate(b6, 5);
    te_->activate(b8, 6);
    expect_refused("A does not share", ErrorCode::PolicyDenied,
                   "MID " + iccid(3) + " does not share",
                   [&] { te_->isim_authenticate(b4, v.rand, v.autn); });
    expect_refused("A's policy lacks isim", ErrorCode::PolicyDenied,
                   "MID " + iccid(5) + "'s policy does not allow IMS",
                   [&] { te_->isim_authenticate(b6, v.rand, v.autn); });
    expect_refused("B's policy lacks isim", ErrorCode::PolicyDenied,
                   "does not allow IMS authentication",
                   [&] { te_->isim_authenticate(b8, v.rand, v.autn); });

    // B has no USIM function of its own.
    expect_refused("Usim.Authenticate on B", ErrorCode::InvalidArgument,
                   "no USIM function of its own", [&] { te_->authenticate(b, v.rand, v.autn); });
    expect_refused("GsmAuthenticate on B", ErrorCode::InvalidArgument,
                   "no USIM function of its own", [&] { te_->gsm_authenticate(b, v.rand); });
    expect_refused("GetSuci on B", ErrorCode::InvalidArgument, "no USIM function of its own",
                   [&] { te_->suci(b); });
    // A MID without IMS identities has no ISIM.
    expect_refused("Isim.Authenticate on a USIM-only MID", ErrorCode::InvalidArgument,
                   "has no ISIM", [&] { te_->isim_authenticate(a3, v.rand, v.autn); });

    // The vector every refusal saw is still fresh: B succeeds with it now.
    expect_success(te_->isim_authenticate(b, v.rand, v.autn), v);

    // A deleted: B stays installed, refused with A's ICCID.
    for (const std::int64_t m : {a, b}) {
        te_->deactivate(m);
    }
    te_->remove(a);
    te_->activate(b, 1);
    const usim::AuthVector w = vector(*net, 0x40);
    expect_refused("A deleted", ErrorCode::UnknownMid, iccid(1) + ", whose USIM function",
                   [&] { te_->isim_authenticate(b, w.rand, w.autn); });
    EXPECT_EQ(te_->get(b).state, MidState::Active);
    const AuditVerification audit = te_->verify_audit();
    EXPECT_TRUE(audit.ok) << audit.message;
}

// The lender is named by its ICCID (the subscription), not its index: a MID
// installed again under that ICCID serves the ISIM-only MID.
TEST_F(TeShare, ABorrowerFollowsItsLendersIccidAcrossReinstallation) {
    const std::int64_t a = import(lender(1, 0));
    const std::int64_t b = import(borrower(2, iccid(1)));
    te_->remove(a);
    const std::int64_t again = import(lender(1, 1)); // other K and OPc
    EXPECT_NE(again, a);
    te_->activate(again, 0);
    te_->activate(b, 1);
    auto net = network(1);
    const usim::AuthVector v = vector(*net, 0x20);
    expect_success(te_->isim_authenticate(b, v.rand, v.autn), v);
}

TEST_F(TeShare, TheLendersPinMustBeVerified) {
    json pinned = lender(1);
    pinned["pin"] = "1234";
    pinned["policy"]["pin_required"] = true;
    const std::int64_t a = import(pinned, true);
    const std::int64_t b = import(borrower(2, iccid(1)));
    te_->activate(a, 0);
    te_->activate(b, 1);
    auto net = network();
    const usim::AuthVector v = vector(*net, 0x20);
    expect_refused("A's PIN not verified", ErrorCode::PinRequired, "PIN",
                   [&] { te_->isim_authenticate(b, v.rand, v.autn); });
    const char pin[] = "1234";
    te_->verify_pin(a, ByteView(reinterpret_cast<const std::uint8_t*>(pin), 4));
    expect_success(te_->isim_authenticate(b, v.rand, v.autn), v);
}

TEST_F(TeShare, ImportRefusesBorrowerProfilesThatAreNotIsimOnly) {
    import(lender(1));
    const json s = milenage_set(0);
    struct Case {
        const char* what;
        std::function<void(json&)> change;
        std::string names;
    };
    std::vector<Case> cases = {
        {"k", [&](json& p) { p["k"] = s.at("k"); }, "k: must not be given"},
        {"opc", [&](json& p) { p["opc"] = s.at("opc"); }, "opc: must not be given"},
        {"op", [&](json& p) { p["op"] = s.at("opc"); }, "op: must not be given"},
        {"algorithm", [](json& p) { p["algorithm"] = "milenage"; }, "algorithm: must not"},
        {"tuak",
         [](json& p) {
             p["tuak"] = {{"res_bits", 64}};
         },
         "tuak: must not"},
        {"sqn", [](json& p) { p["sqn"] = "000000000020"; }, "sqn: must not"},
        {"ind_bits", [](json& p) { p["ind_bits"] = 5; }, "ind_bits: must not"},
        {"amf", [](json& p) { p["amf"] = "8000"; }, "amf: must not"},
        {"suci",
         [](json& p) {
             p["suci"] = {{"profile", "null"}};
         },
         "suci: must not"},
        {"pin", [](json& p) { p["pin"] = "1234"; }, "pin: must not"},
        {"puk", [](json& p) { p["puk"] = "12345678"; }, "puk: must not"},
        {"no isim", [](json& p) { p.erase("isim"); }, "isim: is required"},
        {"no policy", [](json& p) { p.erase("policy"); }, "policy.share_functions"},
        {"not sharing", [](json& p) { p["policy"]["share_functions"] = false; },
         "policy.share_functions"},
        {"own ICCID", [](json& p) { p["functions_from"] = iccid(2); }, "functions_from"},
        {"bad check digit",
         [](json& p) {
             std::string id = iccid(1);
             id.back() = static_cast<char>('0' + (id.back() - '0' + 1) % 10);
             p["functions_from"] = id;
         },
         "functions_from"},
        {"not digits", [](json& p) { p["functions_from"] = 8949; }, "functions_from"},
        {"not installed", [](json& p) { p["functions_from"] = iccid(9); },
         "functions_from: no MID with ICCID " + iccid(9)},
    };
    for (const Case& c : cases) {
        json p = borrower(2, iccid(1));
        c.change(p);
        expect_refused(c.what, ErrorCode::InvalidArgument, c.names, [&] { import(p); });
    }
    // A borrower cannot lend: no chains.
    import(borrower(2, iccid(1)));
    expect_refused("lender is a borrower", ErrorCode::InvalidArgument,
                   "MID " + iccid(2) + " has no USIM function of its own",
                   [&] { import(borrower(4, iccid(2))); });
}

} // namespace
