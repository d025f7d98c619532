// Bad input to every public function of the Trusted Environment (issue 3 §4):
// each is refused with a TeError of the right code whose message names what
// was bad and carries no secret, and leaves everything as it was: every row of
// the state database (registry, approvals, objects, audit, rollback stamp), the
// epoch, the TPM's NV (no write), the audit chain, and the MID still
// authenticates with the next SQN. Malformed profiles and approvals come from
// tables of mutations of a valid one (a small table-driven fuzz).

#include <cstring>
#include <functional>
#include <limits>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "swtpm.hpp"
#include "te/pin.hpp"
#include "te/te.hpp"
#include "te_test_util.hpp"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;
using test::dump_database;
using test::milenage_set;
using test::text_bytes;
using testing::HasSubstr;
using testing::Not;

// This file's ICCIDs, distinct from the other TE tests'.
std::string iccid(int n) {
    return test::iccid(n, 5000000);
}

std::string upper(std::string s) {
    for (char& c : s) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return s;
}

class TeBadInput : public testing::Test {
protected:
    void SetUp() override {
        dir_ = test::make_temp_dir("tresim-te-bad-");
        config_.state_dir = dir_ + "/state";
        config_.tcti = swtpm_.tcti();
        config_.slots = 2;
        te_ = std::make_unique<TrustedEnvironment>(config_);

        // A: active in slot 0, the MID that must keep working. C: inactive.
        // P: inactive, with PIN 1234 and PUK 12345678.
        const json set = milenage_set(0);
        a_ = import(profile(1));
        te_->activate(a_, 0);
        c_ = import(profile(2));
        json p = profile(3);
        p["pin"] = kPin;
        p["puk"] = kPuk;
        p_ = te_->import_profile(text_bytes(p.dump()), authority_.tpm_public(),
                                 approve(authority_, te_->current_pcrs(), true, {}));
        sw_ = usim::Milenage::software(hex_decode(set.at("k").get<std::string>(), "k"),
                                       hex_decode(set.at("opc").get<std::string>(), "opc"));
        still_authenticates();
    }

    void TearDown() override {
        te_.reset();
        test::remove_tree(dir_);
    }

    // A valid Milenage profile (the official set 0's K and OPc).
    static json profile(int n) {
        const json set = milenage_set(0);
        return {{"iccid", iccid(n)},       {"imsi", "26201" + std::to_string(1000000000 + n)},
                {"algorithm", "milenage"}, {"k", set.at("k")},
                {"opc", set.at("opc")},    {"amf", set.at("amf")},
                {"label", "bad input"}};
    }
    static std::string k_hex() { return milenage_set(0).at("k").get<std::string>(); }
    static std::string opc_hex() { return milenage_set(0).at("opc").get<std::string>(); }

    MidApproval approve_now(bool pin = false) {
        return approve(authority_, te_->current_pcrs(), pin, {});
    }
    std::int64_t import(const json& p) {
        return te_->import_profile(text_bytes(p.dump()), authority_.tpm_public(), approve_now());
    }

    struct Snapshot {
        std::string database;
        std::uint64_t epoch = 0;
        std::uint64_t nv_increments = 0;
        std::uint64_t nv_writes = 0;
        std::int64_t audit_records = 0;
    };
    Snapshot snapshot() {
        Snapshot s;
        s.database = dump_database(config_.state_dir + "/tresim.db");
        s.epoch = te_->info().epoch;
        s.nv_increments = te_->guard().nv_increments();
        s.nv_writes = te_->counts().nv_writes;
        s.audit_records = te_->info().audit.records;
        return s;
    }
    void expect_unchanged(const Snapshot& before) {
        const Snapshot after = snapshot();
        EXPECT_EQ(after.epoch, before.epoch);
        EXPECT_EQ(after.nv_increments, before.nv_increments);
        EXPECT_EQ(after.nv_writes, before.nv_writes) << "an NV write";
        EXPECT_EQ(after.audit_records, before.audit_records);
        EXPECT_TRUE(after.database == before.database) << "the state database changed";
        const AuditVerification v = te_->verify_audit();
        EXPECT_TRUE(v.ok) << v.message;
    }

    // MID A answers an authentication with the next SQN like the software.
    void still_authenticates() {
        next_sqn_ += 0x20;
        const usim::Rand rand = usim::random_rand();
        const usim::AuthVector v = usim::generate_vector(*sw_, rand, next_sqn_, {0x80, 0x00});
        const usim::AkaResult r = te_->authenticate(a_, rand, v.autn);
        ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(r)) << "SQN " << next_sqn_;
        EXPECT_EQ(std::get<usim::AkaSuccess>(r).res, v.xres);
    }

    // `call` must throw TeError(code) naming `names`, without any of
    // `secrets` in its text, and change nothing.
    void expect_refused(const std::string& what, ErrorCode code, const std::string& names,
                        const std::function<void()>& call, std::vector<std::string> secrets = {}) {
        SCOPED_TRACE(what);
        secrets.push_back(k_hex());
        secrets.push_back(opc_hex());
        const Snapshot before = snapshot();
        try {
            call();
            ADD_FAILURE() << "accepted; expected " << nick(code);
        } catch (const TeError& e) {
            EXPECT_EQ(e.code(), code) << nick(e.code()) << ": " << e.what();
            EXPECT_THAT(e.what(), HasSubstr(names));
            EXPECT_LT(std::strlen(e.what()), 400u) << "an error text that long quotes its input";
            for (const std::string& s : secrets) {
                if (!s.empty()) {
                    EXPECT_THAT(e.what(), Not(HasSubstr(s))) << "a secret in the error text";
                    EXPECT_THAT(e.what(), Not(HasSubstr(upper(s))));
                }
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << "not a TeError: " << e.what();
        }
        expect_unchanged(before);
        still_authenticates();
    }

    static constexpr const char* kPin = "1234";
    static constexpr const char* kPuk = "12345678";

    test::Swtpm swtpm_;
    std::string dir_;
    TeConfig config_;
    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
    std::unique_ptr<TrustedEnvironment> te_;
    std::unique_ptr<usim::AkaAlgorithm> sw_;
    std::int64_t a_ = 0, c_ = 0, p_ = 0;
    std::uint64_t next_sqn_ = 0;
};

// ---------------------------------------------------------------------------
// Lookups and lifecycle

TEST_F(TeBadInput, LookupsOfUnknownMidsAreUnknownMidNamingTheIndexOrIccid) {
    for (const std::int64_t index :
         {std::int64_t{0}, std::int64_t{-1}, std::int64_t{99},
          std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()}) {
        expect_refused("get " + std::to_string(index), ErrorCode::UnknownMid,
                       "index " + std::to_string(index), [&] { te_->get(index); });
    }
    for (const std::string& id : {std::string(), iccid(77), std::string("89490200000012345x"),
                                  std::string("' OR 1=1 --"), std::string(100000, '8')}) {
        expect_refused("get_by_iccid " + id.substr(0, 20), ErrorCode::UnknownMid, "ICCID",
                       [&] { te_->get_by_iccid(id); });
    }
    EXPECT_EQ(te_->get_by_iccid(iccid(1)).index, a_);
}

TEST_F(TeBadInput, LifecycleCallsRefuseUnknownMidsBadSlotsAndIllegalTransitions) {
    expect_refused("activate unknown", ErrorCode::UnknownMid, "99", [&] { te_->activate(99, 1); });
    expect_refused("activate slot 2", ErrorCode::InvalidArgument, "slot",
                   [&] { te_->activate(c_, 2); });
    expect_refused("activate huge slot", ErrorCode::InvalidArgument, "slot",
                   [&] { te_->activate(c_, std::numeric_limits<unsigned>::max()); });
    expect_refused("activate in an occupied slot", ErrorCode::SlotOccupied, "slot 0",
                   [&] { te_->activate(c_, 0); });
    expect_refused("activate an active MID", ErrorCode::IllegalTransition, "active",
                   [&] { te_->activate(a_, 1); });
    expect_refused("deactivate unknown", ErrorCode::UnknownMid, "-5", [&] { te_->deactivate(-5); });
    expect_refused("deactivate an inactive MID", ErrorCode::IllegalTransition, "inactive",
                   [&] { te_->deactivate(c_); });
    expect_refused("remove unknown", ErrorCode::UnknownMid, "1000", [&] { te_->remove(1000); });
    expect_refused("remove an active MID", ErrorCode::IllegalTransition, "active",
                   [&] { te_->remove(a_); });
    EXPECT_EQ(te_->get(a_).state, MidState::Active);
    EXPECT_EQ(te_->get(c_).state, MidState::Inactive);
}

// ---------------------------------------------------------------------------
// Authentication

TEST_F(TeBadInput, AuthenticationRefusesBadAutnLengthsUnknownAndInactiveMids) {
    const usim::Rand rand = usim::random_rand();
    for (const std::size_t n : {0u, 1u, 15u, 17u, 32u, 4096u}) {
        expect_refused("AUTN of " + std::to_string(n) + " bytes", ErrorCode::InvalidArgument,
                       "autn", [&] { te_->authenticate(a_, rand, Bytes(n, 0x5a)); });
    }
    expect_refused("authenticate unknown", ErrorCode::UnknownMid, "index 42",
                   [&] { te_->authenticate(42, rand, Bytes(16, 0)); });
    expect_refused("authenticate inactive", ErrorCode::IllegalTransition, "inactive",
                   [&] { te_->authenticate(c_, rand, Bytes(16, 0)); });
    expect_refused("gsm unknown", ErrorCode::UnknownMid, "index 42",
                   [&] { te_->gsm_authenticate(42, rand); });
    expect_refused("gsm inactive", ErrorCode::IllegalTransition, "inactive",
                   [&] { te_->gsm_authenticate(c_, rand); });
    expect_refused("suci unknown", ErrorCode::UnknownMid, "index 42", [&] { te_->suci(42); });
    expect_refused("suci inactive", ErrorCode::IllegalTransition, "inactive",
                   [&] { te_->suci(c_); });

    // A wrong MAC is a result, not an error, and changes no SQN.
    const Snapshot before = snapshot();
    const usim::AkaResult r = te_->authenticate(a_, rand, Bytes(16, 0));
    EXPECT_TRUE(std::holds_alternative<usim::AkaMacFailure>(r));
    expect_unchanged(before);
    still_authenticates();
}

TEST_F(TeBadInput, ActionsTheMidPolicyForbidsArePolicyDenied) {
    json p = profile(4);
    p["policy"] = {{"allowed_actions", {"authenticate"}}};
    const std::int64_t d = import(p);
    te_->activate(d, 1);
    expect_refused("gsm", ErrorCode::PolicyDenied, "GSM",
                   [&] { te_->gsm_authenticate(d, usim::random_rand()); });
    expect_refused("suci", ErrorCode::PolicyDenied, "SUCI", [&] { te_->suci(d); });
}

TEST_F(TeBadInput, SuciOfAMidWithoutSuciParametersIsTheNullScheme) {
    // Not an error by design (TS 33.501 §6.12.2: without a home network key
    // the null scheme is used), and nothing but the use counter moves.
    const usim::Suci s = te_->suci(a_);
    EXPECT_EQ(s.text, "suci-0-262-01-0-0-0-1000000001");
    EXPECT_TRUE(te_->verify_audit().ok);
    still_authenticates();
}

// ---------------------------------------------------------------------------
// PIN

TEST_F(TeBadInput, PinCallsRefuseMalformedPinsAndPuksWithoutChargingARetry) {
    const std::vector<std::string> bad_pins = {"",
                                               "1",
                                               "123",
                                               "123456789",
                                               "12a4",
                                               "12 4",
                                               "-123",
                                               "+1234",
                                               "1234\n",
                                               std::string("12\0004", 4),
                                               "\xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4",
                                               std::string(1 << 16, '1')};
    const std::vector<std::string> bad_puks = {"",         "1234567",  "123456789",
                                               "1234567a", "        ", std::string(1000, '9')};
    const auto b = [](const std::string& s) { return text_bytes(s); };
    for (const std::string& bad : bad_pins) {
        const std::string name = "\"" + hex_encode(b(bad)).substr(0, 24) + "\"";
        const std::vector<std::string> secrets = {kPin, kPuk, bad.size() >= 4 ? bad : ""};
        expect_refused(
            "verify_pin " + name, ErrorCode::InvalidArgument, "pin",
            [&] { te_->verify_pin(p_, b(bad)); }, secrets);
        expect_refused(
            "change_pin old " + name, ErrorCode::InvalidArgument, "pin",
            [&] { te_->change_pin(p_, b(bad), b("4321")); }, secrets);
        expect_refused(
            "change_pin new " + name, ErrorCode::InvalidArgument, "new_pin",
            [&] { te_->change_pin(p_, b(kPin), b(bad)); }, secrets);
        expect_refused(
            "unblock_pin new " + name, ErrorCode::InvalidArgument, "new_pin",
            [&] { te_->unblock_pin(p_, b(kPuk), b(bad)); }, secrets);
    }
    for (const std::string& bad : bad_puks) {
        const std::string name = "\"" + hex_encode(b(bad)).substr(0, 24) + "\"";
        expect_refused("unblock_pin puk " + name, ErrorCode::InvalidArgument, "puk",
                       [&] { te_->unblock_pin(p_, b(bad), b("4321")); },
                       {kPin, kPuk, bad.size() >= 4 ? bad : ""});
    }
    expect_refused("verify_pin unknown", ErrorCode::UnknownMid, "index 77",
                   [&] { te_->verify_pin(77, b(kPin)); });
    expect_refused("change_pin unknown", ErrorCode::UnknownMid, "index 77",
                   [&] { te_->change_pin(77, b(kPin), b("4321")); });
    expect_refused("unblock_pin unknown", ErrorCode::UnknownMid, "index 77",
                   [&] { te_->unblock_pin(77, b(kPuk), b("4321")); });
    expect_refused("verify_pin of a MID without a PIN", ErrorCode::InvalidArgument, "no PIN",
                   [&] { te_->verify_pin(a_, b(kPin)); });
    expect_refused("change_pin of a MID without a PIN", ErrorCode::InvalidArgument, "no PIN",
                   [&] { te_->change_pin(c_, b(kPin), b("4321")); });
    expect_refused("unblock_pin of a MID without a PUK", ErrorCode::InvalidArgument, "no PUK",
                   [&] { te_->unblock_pin(c_, b(kPuk), b("4321")); });

    // No retry was charged and the PIN still opens the MID.
    EXPECT_EQ(te_->get(p_).pin_retries, config_.pin_retries);
    EXPECT_EQ(te_->get(p_).puk_retries, config_.puk_retries);
    EXPECT_FALSE(te_->pin_verified(p_));
    te_->verify_pin(p_, b(kPin));
    EXPECT_TRUE(te_->pin_verified(p_));
}

// ---------------------------------------------------------------------------
// Profiles: a table of mutations of a valid one

struct ProfileCase {
    std::string what;
    std::string names; // what the error must name
    std::function<std::string()> text;
};

std::string with(const std::function<void(json&)>& change) {
    json p = {{"iccid", iccid(50)},
              {"imsi", "262019876543210"},
              {"algorithm", "milenage"},
              {"k", milenage_set(0).at("k")},
              {"opc", milenage_set(0).at("opc")},
              {"amf", "8000"},
              {"label", "mutant"}};
    change(p);
    return p.dump();
}

std::vector<ProfileCase> profile_mutations() {
    std::vector<ProfileCase> cases;
    const auto add = [&](std::string what, std::string names, std::function<void(json&)> change) {
        cases.push_back({std::move(what), std::move(names), [change] { return with(change); }});
    };
    const auto raw = [&](std::string what, std::string names, std::function<std::string()> f) {
        cases.push_back({std::move(what), std::move(names), std::move(f)});
    };
    // Each required field missing.
    for (const char* f : {"iccid", "imsi", "algorithm", "k", "opc", "amf"}) {
        add(std::string("missing ") + f, f, [f](json& p) { p.erase(f); });
    }
    // Wrong types.
    for (const char* f : {"iccid", "imsi", "algorithm", "k", "opc", "amf", "label", "operator",
                          "sqn", "pin", "puk"}) {
        add(std::string(f) + " is a number", f, [f](json& p) {
            p[f] = 12345678;
            if (std::string(f) == "puk") {
                p["pin"] = "1234";
            }
        });
        add(std::string(f) + " is an array", f, [f](json& p) { p[f] = json::array({"00"}); });
        add(std::string(f) + " is an object", f, [f](json& p) { p[f] = json::object(); });
    }
    add("iccid is null", "iccid", [](json& p) { p["iccid"] = nullptr; });
    add("mnc_length is a string", "mnc_length", [](json& p) { p["mnc_length"] = "2"; });
    add("ind_bits is negative", "ind_bits", [](json& p) { p["ind_bits"] = -1; });
    add("tuak is a string", "tuak", [](json& p) {
        p["algorithm"] = "tuak";
        p["opc"] = std::string(64, 'a');
        p["tuak"] = "x";
    });
    add("isim is a string", "isim", [](json& p) { p["isim"] = "x"; });
    add("suci is a number", "suci", [](json& p) { p["suci"] = 1; });
    add("policy is an array", "policy", [](json& p) { p["policy"] = json::array(); });
    add("policy.pin_required is a string", "policy.pin_required", [](json& p) {
        p["policy"] = {{"pin_required", "yes"}};
    });
    // Wrong lengths and values.
    const std::string k = milenage_set(0).at("k");
    add("k of 15 bytes", "k", [k](json& p) { p["k"] = k.substr(0, 30); });
    add("k of 17 bytes", "k", [k](json& p) { p["k"] = k + "00"; });
    add("k of 32 bytes for Milenage", "k", [k](json& p) { p["k"] = k + k; });
    add("k of odd length", "k", [k](json& p) { p["k"] = k.substr(0, 31); });
    add("k not hex", "k", [k](json& p) { p["k"] = "zz" + k.substr(2); });
    add("k empty", "k", [](json& p) { p["k"] = ""; });
    add("opc of 15 bytes", "opc", [](json& p) { p["opc"] = std::string(30, 'a'); });
    add("op and opc", "opc", [](json& p) { p["op"] = std::string(32, 'a'); });
    add("amf of 3 bytes", "amf", [](json& p) { p["amf"] = "800000"; });
    add("amf not hex", "amf", [](json& p) { p["amf"] = "80g0"; });
    add("sqn of 7 bytes", "sqn", [](json& p) { p["sqn"] = "00000000000001"; });
    add("iccid of 17 digits", "iccid", [](json& p) { p["iccid"] = iccid(50).substr(0, 17); });
    add("iccid of 21 digits", "iccid", [](json& p) { p["iccid"] = iccid(50) + "0"; });
    add("iccid with a bad check digit", "iccid", [](json& p) {
        std::string s = iccid(50);
        s.back() = s.back() == '9' ? '0' : static_cast<char>(s.back() + 1);
        p["iccid"] = s;
    });
    add("iccid with a letter", "iccid", [](json& p) { p["iccid"] = "8949020000005000A05"; });
    add("imsi of 5 digits", "imsi", [](json& p) { p["imsi"] = "26201"; });
    add("imsi of 16 digits", "imsi", [](json& p) { p["imsi"] = "2620198765432101"; });
    add("imsi without MSIN digits", "imsi", [](json& p) {
        p["imsi"] = "262011";
        p["mnc_length"] = 3;
    });
    add("imsi with a letter", "imsi", [](json& p) { p["imsi"] = "26201987654321x"; });
    add("mnc_length 1", "mnc_length", [](json& p) { p["mnc_length"] = 1; });
    add("mnc_length 4", "mnc_length", [](json& p) { p["mnc_length"] = 4; });
    add("algorithm unknown", "algorithm", [](json& p) { p["algorithm"] = "comp128"; });
    add("label of 65 characters", "label", [](json& p) { p["label"] = std::string(65, 'l'); });
    add("label with a control character", "label", [](json& p) { p["label"] = "a\x01z"; });
    add("pin of 3 digits", "pin", [](json& p) { p["pin"] = "123"; });
    add("pin with a letter", "pin", [](json& p) { p["pin"] = "12a4"; });
    add("puk of 7 digits", "puk", [](json& p) {
        p["pin"] = "1234";
        p["puk"] = "1234567";
    });
    add("puk without a pin", "puk", [](json& p) { p["puk"] = "12345678"; });
    add("pin_required without a pin", "pin_required", [](json& p) {
        p["policy"] = {{"pin_required", true}};
    });
    add("unknown action", "allowed_actions", [](json& p) {
        p["policy"] = {{"allowed_actions", {"authenticate", "format-disk"}}};
    });
    add("tuak block for milenage", "tuak", [](json& p) { p["tuak"] = {{"res_bits", 64}}; });
    add("tuak res_bits 65", "res", [](json& p) {
        p["algorithm"] = "tuak";
        p["opc"] = std::string(64, 'a');
        p["tuak"] = {{"res_bits", 65}};
    });
    add("isim impi without a realm", "isim.impi", [](json& p) {
        p["isim"] = {{"impi", "user"}, {"impu", {"sip:u@x"}}, {"domain", "x"}};
    });
    add("isim without impu", "isim.impu", [](json& p) {
        p["isim"] = {{"impi", "u@x"}, {"impu", json::array()}, {"domain", "x"}};
    });
    add("isim impu not a URI", "isim.impu", [](json& p) {
        p["isim"] = {{"impi", "u@x"}, {"impu", {"http://x"}}, {"domain", "x"}};
    });
    add("suci profile C", "suci", [](json& p) { p["suci"] = {{"profile", "C"}}; });
    add("suci profile A without a key", "hn_public_key", [](json& p) {
        p["suci"] = {{"profile", "A"}};
    });
    add("suci profile A with a short key", "suci", [](json& p) {
        p["suci"] = {{"profile", "A"}, {"hn_public_key", std::string(62, 'a')}};
    });
    add("suci routing indicator of 5 digits", "suci", [](json& p) {
        p["suci"] = {{"profile", "null"}, {"routing_indicator", "12345"}};
    });
    add("unknown top-level field", "kk", [](json& p) { p["kk"] = p["k"]; });
    add("unknown policy field", "policy.", [](json& p) { p["policy"] = {{"share", true}}; });
    // The document itself.
    const std::string valid = with([](json&) {});
    raw("empty", "document", [] { return std::string(); });
    raw("not JSON", "document", [] { return std::string("iccid=1"); });
    raw("null", "document", [] { return std::string("null"); });
    raw("an array", "document", [] { return std::string("[]"); });
    raw("a string", "document", [] { return std::string("\"profile\""); });
    for (const std::size_t cut :
         {std::size_t{1}, valid.size() / 3, valid.size() / 2, valid.size() - 1}) {
        raw("truncated to " + std::to_string(cut) + " bytes", "document",
            [valid, cut] { return valid.substr(0, cut); });
    }
    raw("truncated inside k", "document",
        [valid, k] { return valid.substr(0, valid.find(k) + 10); });
    raw("a NUL byte", "document", [valid] {
        std::string s = valid;
        s.insert(s.find("mutant"), 1, '\0');
        return s;
    });
    raw("k twice", "k",
        [valid, k] { return valid.substr(0, valid.size() - 1) + ",\"k\":\"" + k + "\"}"; });
    raw("trailing garbage", "document", [valid] { return valid + "}"; });
    raw("invalid UTF-8 in the label", "document", [valid] {
        std::string s = valid;
        s.replace(s.find("mutant"), 6, "mu\xff\xfent");
        return s;
    });
    raw("huge label", "label",
        [] { return with([](json& p) { p["label"] = std::string(4 << 20, 'x'); }); });
    raw("huge unknown field", "is not a known field",
        [] { return with([](json& p) { p["x"] = std::string(4 << 20, 'x'); }); });
    raw("deeply nested", "", [] { return std::string(10000, '[') + std::string(10000, ']'); });
    raw("deeply nested field", "", [] {
        return with([](json&) {}).substr(0, 1) + "\"isim\":" + std::string(5000, '[') +
               std::string(5000, ']') + "}";
    });
    return cases;
}

TEST_F(TeBadInput, TheProfileParserRefusesEveryMutationNamingTheField) {
    // The parser alone: the same table as the import below.
    for (const ProfileCase& c : profile_mutations()) {
        SCOPED_TRACE(c.what);
        const std::string text = c.text();
        try {
            parse_profile(text_bytes(text));
            ADD_FAILURE() << "accepted";
        } catch (const TeError& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
            EXPECT_THAT(e.what(), HasSubstr(c.names));
            EXPECT_THAT(e.what(), HasSubstr("profile"));
            EXPECT_THAT(e.what(), Not(HasSubstr(k_hex())));
            EXPECT_LT(std::strlen(e.what()), 400u);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "not a TeError: " << e.what();
        }
    }
    // And the unmutated profile parses.
    EXPECT_EQ(parse_profile(text_bytes(with([](json&) {}))).iccid, iccid(50));
}

TEST_F(TeBadInput, ImportRefusesEveryMalformedProfileAndChangesNothing) {
    for (const ProfileCase& c : profile_mutations()) {
        const std::string text = c.text();
        // A valid approval comes with each: it must not be stored either.
        expect_refused("import: " + c.what, ErrorCode::InvalidArgument, c.names, [&] {
            te_->import_profile(text_bytes(text), authority_.tpm_public(), approve_now());
        });
    }
    expect_refused("import of an installed ICCID", ErrorCode::AlreadyExists, iccid(1),
                   [&] { import(profile(1)); });
    // The unmutated profile imports.
    const std::int64_t idx = import(json::parse(with([](json&) {})));
    EXPECT_EQ(te_->get(idx).iccid, iccid(50));
}

TEST_F(TeBadInput, AnImportWhoseApprovalCannotServeItStoresNeitherTheApprovalNorTheMid) {
    // Each approval is valid in itself; the import must fail as a whole.
    const tpm::PolicyAuthority stranger = tpm::PolicyAuthority::generate();
    tpm::PcrValues other = te_->current_pcrs();
    other.values.begin()->second[0] ^= 0x01;
    json pin_profile = profile(60);
    pin_profile["pin"] = kPin;

    expect_refused("PIN profile with an approval without PolicyAuthValue", ErrorCode::PolicyDenied,
                   "PIN", [&] {
                       te_->import_profile(text_bytes(pin_profile.dump()), stranger.tpm_public(),
                                           approve(stranger, te_->current_pcrs(), false, {}));
                   });
    expect_refused("profile without PIN with a PolicyAuthValue approval", ErrorCode::PolicyDenied,
                   "approval", [&] {
                       te_->import_profile(text_bytes(profile(61).dump()), stranger.tpm_public(),
                                           approve(stranger, te_->current_pcrs(), true, {}));
                   });
    expect_refused("approval by another authority than the import's", ErrorCode::InvalidArgument,
                   "authority", [&] {
                       te_->import_profile(text_bytes(profile(62).dump()), authority_.tpm_public(),
                                           approve(stranger, te_->current_pcrs(), false, {}));
                   });
    expect_refused("approval of another platform state", ErrorCode::PlatformStateMismatch, "PCR",
                   [&] {
                       te_->import_profile(text_bytes(profile(63).dump()), stranger.tpm_public(),
                                           approve(stranger, other, false, {}));
                   });
    expect_refused("no approval at all", ErrorCode::PolicyDenied, "approval", [&] {
        te_->import_profile(text_bytes(profile(64).dump()), stranger.tpm_public());
    });
    TPM2B_PUBLIC garbage{};
    garbage.publicArea.nameAlg = 0x7777;
    expect_refused("an authority that is no public area", ErrorCode::InvalidArgument, "authority",
                   [&] { te_->import_profile(text_bytes(profile(65).dump()), garbage); });
}

// ---------------------------------------------------------------------------
// Approvals: a table of mutations of a valid one

struct ApprovalCase {
    std::string what;
    ErrorCode code;
    std::string names;
    std::function<void(MidApproval&)> change;
};

TEST_F(TeBadInput, AddApprovalRefusesEveryMalformedApprovalAndChangesNothing) {
    const tpm::PolicyAuthority stranger = tpm::PolicyAuthority::generate();
    const tpm::PcrValues now = te_->current_pcrs();
    const auto resign = [](const tpm::PolicyAuthority& key, MidApproval& a) {
        a.signature = key.sign_policy(a.approved_policy, a.policy_ref);
    };
    const auto consistent = [&, resign](MidApproval& a) {
        a.approved_policy = approved_policy_for(a.pcrs, a.auth_value);
        resign(authority_, a);
    };
    const ErrorCode bad = ErrorCode::InvalidArgument;
    const ErrorCode denied = ErrorCode::PolicyDenied;
    std::vector<ApprovalCase> cases = {
        {"empty approval", bad, "approval", [](MidApproval& a) { a = MidApproval{}; }},
        {"approved_policy empty", bad, "approval",
         [](MidApproval& a) { a.approved_policy.clear(); }},
        {"approved_policy of 31 bytes", bad, "approval",
         [](MidApproval& a) { a.approved_policy.pop_back(); }},
        {"approved_policy with a flipped bit", bad, "approval",
         [](MidApproval& a) { a.approved_policy[5] ^= 0x10; }},
        {"a PCR value changed after signing", bad, "approval",
         [](MidApproval& a) { a.pcrs.values.begin()->second[0] ^= 1; }},
        {"a PCR dropped after signing", bad, "approval",
         [](MidApproval& a) { a.pcrs.values.erase(a.pcrs.values.begin()); }},
        {"auth_value flipped after signing", bad, "approval",
         [](MidApproval& a) { a.auth_value = !a.auth_value; }},
        {"policy_ref changed after signing", denied, "signature",
         [](MidApproval& a) {
             a.policy_ref = {1, 2, 3};
         }},
        {"signature r flipped", denied, "signature",
         [](MidApproval& a) { a.signature.signature.ecdsa.signatureR.buffer[3] ^= 1; }},
        {"signature s zero", denied, "signature",
         [](MidApproval& a) {
             auto& s = a.signature.signature.ecdsa.signatureS;
             std::fill(s.buffer, s.buffer + s.size, std::uint8_t{0});
         }},
        {"signature empty", denied, "signature",
         [](MidApproval& a) { a.signature.signature.ecdsa.signatureR.size = 0; }},
        {"signature r oversized", denied, "signature",
         [](MidApproval& a) { a.signature.signature.ecdsa.signatureR.size = 0xffff; }},
        {"signature algorithm RSASSA", denied, "signature",
         [](MidApproval& a) { a.signature.sigAlg = TPM2_ALG_RSASSA; }},
        // (The hash field of an ECDSA signature is only a label: TPM2_VerifySignature
        // checks the signature over aHash whatever it says, so it is no mutation.)
        {"signature by another key", denied, "signature",
         [&, resign](MidApproval& a) { resign(stranger, a); }},
        {"authority replaced by another key", denied, "signature",
         [&](MidApproval& a) { a.authority = stranger.tpm_public(); }},
        {"authority zeroed", denied, "signature",
         [](MidApproval& a) { a.authority = TPM2B_PUBLIC{}; }},
        {"authority point off the curve", denied, "signature",
         [](MidApproval& a) { a.authority.publicArea.unique.ecc.y.buffer[31] ^= 1; }},
        {"authority on another curve", denied, "signature",
         [](MidApproval& a) { a.authority.publicArea.parameters.eccDetail.curveID = 0x0004; }},
        // Consistent and signed, but not for this TE's PCR selection.
        {"signed: PCR 0 only", bad, "pcrs",
         [&, consistent](MidApproval& a) {
             a.pcrs.values = {*now.values.begin()};
             consistent(a);
         }},
        {"signed: an extra PCR", bad, "pcrs",
         [&, consistent](MidApproval& a) {
             a.pcrs.values[1] = Bytes(32, 0);
             consistent(a);
         }},
        {"signed: PCR 30", bad, "pcrs",
         [&, resign](MidApproval& a) {
             // No policy digest exists for PCR 30: the last one signed.
             a.pcrs.values[30] = Bytes(32, 0);
             resign(authority_, a);
         }},
        {"signed: a value of 31 bytes", bad, "pcrs",
         [&, consistent](MidApproval& a) {
             a.pcrs.values.begin()->second.pop_back();
             consistent(a);
         }},
        {"signed: a value of 33 bytes", bad, "pcrs",
         [&, consistent](MidApproval& a) {
             a.pcrs.values.begin()->second.push_back(0);
             consistent(a);
         }},
        {"signed: the sha1 bank", bad, "pcrs",
         [&, consistent](MidApproval& a) {
             a.pcrs.bank = TPM2_ALG_SHA1;
             for (auto& [i, v] : a.pcrs.values) {
                 v.resize(20);
             }
             consistent(a);
         }},
        {"signed: a policy_ref of 33 bytes", bad, "policy_ref",
         [&, consistent](MidApproval& a) {
             a.policy_ref = Bytes(33, 7);
             consistent(a);
         }},
    };
    for (const ApprovalCase& c : cases) {
        MidApproval a = approve_now();
        c.change(a);
        expect_refused("add_approval: " + c.what, c.code, c.names, [&] { te_->add_approval(a); });
        // With an import too: neither the approval nor the MID is stored.
        expect_refused("import with approval: " + c.what, c.code, c.names, [&] {
            te_->import_profile(text_bytes(profile(70).dump()), authority_.tpm_public(), a);
        });
    }

    // The unmutated approval, and one for another platform state (an
    // authority may approve a coming update ahead of time), are accepted.
    te_->add_approval(approve_now());
    tpm::PcrValues next = now;
    next.values.rbegin()->second[0] ^= 0x80;
    te_->add_approval(approve(authority_, next, false, {}));
    EXPECT_EQ(te_->get(a_).state, MidState::Active);
    still_authenticates();
    EXPECT_TRUE(te_->verify_audit().ok);
}

} // namespace
