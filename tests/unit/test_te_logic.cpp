// The TE core's pure logic: profile parsing, the lifecycle, the registry on a
// temporary database.

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "te/db.hpp"
#include "te/errors.hpp"
#include "te/lifecycle.hpp"
#include "te/profile.hpp"
#include "te/registry.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;
using testing::HasSubstr;
using testing::Not;

const char* const kK = "465b5ce8b199b49faa5f0a2ee238a6bc";
const char* const kOpc = "cd63cb71954a9f4e48a5994e37a02baf";

json good_profile() {
    return json{{"iccid", "89490200001234567892"},
                {"imsi", "262011234567890"},
                {"label", "test"},
                {"operator", "Example"},
                {"algorithm", "milenage"},
                {"k", kK},
                {"opc", kOpc},
                {"amf", "8000"}};
}

MidProfile parse(const json& j) {
    const std::string text = j.dump();
    return parse_profile(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

void expect_invalid(const json& j, const std::string& field) {
    try {
        parse(j);
        FAIL() << "accepted: " << field;
    } catch (const TeError& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        EXPECT_THAT(e.what(), HasSubstr(field)) << e.what();
        EXPECT_THAT(e.what(), Not(HasSubstr(kK)));
        EXPECT_THAT(e.what(), Not(HasSubstr("465b5ce8")));
    }
}

TEST(Profile, ParsesAMilenageProfile) {
    const MidProfile p = parse(good_profile());
    EXPECT_EQ(p.iccid, "89490200001234567892");
    EXPECT_EQ(p.mcc_mnc(), "26201");
    EXPECT_EQ(p.msin(), "1234567890");
    EXPECT_EQ(p.algorithm, Algorithm::Milenage);
    EXPECT_EQ(p.k.reveal_hex(), kK);
    EXPECT_EQ(p.opc.reveal_hex(), kOpc);
    EXPECT_FALSE(p.op_given);
    EXPECT_EQ(hex_encode(p.amf), "8000");
    EXPECT_FALSE(p.sqn.has_value());
    EXPECT_FALSE(p.policy.pin_required);
}

TEST(Profile, ParsesEveryOptionalPart) {
    json j = good_profile();
    j["algorithm"] = "tuak";
    j["k"] = std::string(64, 'a');
    j.erase("opc");
    j["op"] = std::string(64, '5');
    j["tuak"] = {{"res_bits", 128},
                 {"mac_bits", 128},
                 {"ck_bits", 256},
                 {"ik_bits", 256},
                 {"keccak_iterations", 2}};
    j["sqn"] = "000000000123";
    j["pin"] = "1234";
    j["puk"] = "12345678";
    j["isim"] = {{"impi", "user@ims.example.org"},
                 {"impu", {"sip:user@ims.example.org", "tel:+491234"}},
                 {"domain", "ims.example.org"}};
    j["suci"] = {
        {"profile", "A"},
        {"hn_key_id", 1},
        {"hn_public_key", "5a8d38864820197c3394b92613b20b91633cbd897119273bf8e4a6f4eec0a650"},
        {"routing_indicator", "678"}};
    j["mnc_length"] = 3;
    const MidProfile p = parse(j);
    EXPECT_EQ(p.algorithm, Algorithm::Tuak);
    EXPECT_TRUE(p.op_given);
    EXPECT_EQ(p.k.size(), 32u);
    EXPECT_EQ(p.tuak.ck_bits, 256u);
    EXPECT_EQ(p.sqn, std::optional<std::uint64_t>(0x123));
    ASSERT_TRUE(p.pin.has_value());
    EXPECT_EQ(p.pin->size(), 4u);
    EXPECT_TRUE(p.policy.pin_required); // a PIN without a policy means: required
    ASSERT_TRUE(p.isim.has_value());
    EXPECT_EQ(p.isim->impu.size(), 2u);
    ASSERT_TRUE(p.suci.has_value());
    EXPECT_EQ(p.suci->profile, usim::SuciProfile::A);
    EXPECT_EQ(p.mcc_mnc(), "262011");
}

TEST(Profile, RejectsEachMalformedFieldNamingIt) {
    auto with = [](const char* key, json value) {
        json j = good_profile();
        j[key] = std::move(value);
        return j;
    };
    expect_invalid(with("iccid", "89490200001234567893"), "iccid"); // bad check digit
    expect_invalid(with("iccid", "89490200001234567a97"), "iccid");
    expect_invalid(with("imsi", "26201"), "imsi");
    expect_invalid(with("algorithm", "comp128"), "algorithm");
    expect_invalid(with("k", std::string(kK).substr(1)), "k");
    expect_invalid(with("k", std::string(kK) + "00"), "k");
    expect_invalid(with("k", std::string(kK).replace(3, 1, "x")), "k");
    expect_invalid(with("opc", std::string(30, '0')), "opc");
    expect_invalid(with("amf", "80"), "amf");
    expect_invalid(with("sqn", "00000000012"), "sqn");
    expect_invalid(with("pin", "12"), "pin");
    expect_invalid(with("pin", 1234), "pin");
    expect_invalid(with("tuak", json::object()), "tuak");
    expect_invalid(with("colour", "blue"), "colour");
    expect_invalid(with("isim", {{"impi", "nope"}, {"impu", {"sip:a@b"}}, {"domain", "b"}}),
                   "impi");
    expect_invalid(with("suci", {{"profile", "C"}}), "suci");
    json both = good_profile();
    both["op"] = kOpc;
    expect_invalid(both, "opc");
    json none = good_profile();
    none.erase("opc");
    expect_invalid(none, "opc");
    json puk_only = good_profile();
    puk_only["puk"] = "12345678";
    expect_invalid(puk_only, "puk");
}

TEST(Profile, RejectsNonJsonWithoutQuotingIt) {
    const std::string text = std::string("{\"k\": \"") + kK + "\", oops";
    try {
        parse_profile(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
        FAIL();
    } catch (const TeError& e) {
        EXPECT_THAT(e.what(), HasSubstr("not valid JSON"));
        EXPECT_THAT(e.what(), Not(HasSubstr("465b")));
    }
}

TEST(Profile, GarbageNeverCrashes) {
    std::mt19937 rng(4242);
    const std::string base = good_profile().dump();
    for (int n = 0; n < 3000; ++n) {
        std::string text = base;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = rng() % text.size();
            switch (rng() % 3) {
            case 0:
                text[at] = static_cast<char>(rng() % 256);
                break;
            case 1:
                text.erase(at, 1 + rng() % 8);
                break;
            default:
                text.insert(at, 1, static_cast<char>(rng() % 256));
            }
            if (text.empty()) {
                text = "{";
            }
        }
        try {
            parse_profile(
                ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
        } catch (const TeError& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        }
    }
}

TEST(Luhn, ChecksTheIccidCheckDigit) {
    EXPECT_TRUE(luhn_valid("79927398713"));
    EXPECT_FALSE(luhn_valid("79927398710"));
    EXPECT_FALSE(luhn_valid(""));
    EXPECT_FALSE(luhn_valid("12a"));
}

TEST(Lifecycle, AllowsExactlyTheTransitionsOfTheDesign) {
    using E = LifecycleEvent;
    using S = MidState;
    EXPECT_EQ(next_state(S::Inactive, E::Activate), S::Active);
    EXPECT_EQ(next_state(S::Active, E::Deactivate), S::Inactive);
    EXPECT_EQ(next_state(S::Suspended, E::Deactivate), S::Inactive);
    EXPECT_EQ(next_state(S::Active, E::Suspend), S::Suspended);
    EXPECT_EQ(next_state(S::Suspended, E::Resume), S::Active);
    EXPECT_EQ(next_state(S::Inactive, E::Delete), S::Deleted);
    EXPECT_EQ(next_state(S::Blocked, E::Unblock), S::Inactive);
    for (const S s : {S::Inactive, S::Active, S::Suspended}) {
        EXPECT_EQ(next_state(s, E::Block), S::Blocked);
    }
    // And nothing else.
    EXPECT_EQ(next_state(S::Active, E::Delete), std::nullopt);
    EXPECT_EQ(next_state(S::Active, E::Activate), std::nullopt);
    EXPECT_EQ(next_state(S::Blocked, E::Activate), std::nullopt);
    EXPECT_EQ(next_state(S::Deleted, E::Activate), std::nullopt);
    EXPECT_EQ(next_state(S::Deleted, E::Block), std::nullopt);
    EXPECT_EQ(next_state(S::Inactive, E::Resume), std::nullopt);
    int allowed = 0;
    for (const S s : {S::Inactive, S::Active, S::Suspended, S::Blocked, S::Deleted}) {
        for (const E e :
             {E::Activate, E::Deactivate, E::Suspend, E::Resume, E::Block, E::Unblock, E::Delete}) {
            allowed += next_state(s, e).has_value() ? 1 : 0;
        }
        EXPECT_EQ(parse_mid_state(to_string(s)), s);
    }
    EXPECT_EQ(allowed, 10);
}

// The number of statements SQLite holds on the connection.
int statements_on(const Db& db) {
    int n = 0;
    for (sqlite3_stmt* s = sqlite3_next_stmt(db.handle(), nullptr); s != nullptr;
         s = sqlite3_next_stmt(db.handle(), s)) {
        ++n;
    }
    return n;
}

TEST(DbTest, AFinishedStatementIsReusedWithItsBindingsClearedAndNestedUseGetsItsOwn) {
    char tmpl[] = "/tmp/tresim-db-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    {
        Db db(dir + "/t.db");
        db.exec("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)");
        const char* insert = "INSERT INTO t (a, b) VALUES (?, ?)";
        db.prepare(insert).bind(1, std::int64_t{1}).bind(2, std::string_view("one")).run();
        EXPECT_EQ(statements_on(db), 1) << "kept for the next use";
        // Reused: no second compiled statement, and the old "one" is not bound.
        db.prepare(insert).bind(1, std::int64_t{2}).run();
        EXPECT_EQ(statements_on(db), 1);
        {
            auto q = db.prepare("SELECT b FROM t WHERE a = ?");
            ASSERT_TRUE(q.bind(1, std::int64_t{2}).step());
            EXPECT_TRUE(q.column_is_null(0));
            // The same SQL while the first is in use: a statement of its own.
            auto q2 = db.prepare("SELECT b FROM t WHERE a = ?");
            ASSERT_TRUE(q2.bind(1, std::int64_t{1}).step());
            EXPECT_EQ(q2.column_text(0), "one");
            EXPECT_EQ(q.column_text(0), "") << "q keeps its own row";
            EXPECT_EQ(statements_on(db), 3);
        }
        EXPECT_EQ(statements_on(db), 2) << "one idle statement per SQL text";
        // A statement that failed is reusable.
        EXPECT_THROW(db.prepare(insert).bind(1, std::int64_t{1}).run(), DbError);
        db.prepare(insert).bind(1, std::int64_t{3}).bind(2, std::string_view("three")).run();
        auto c = db.prepare("SELECT count(*) FROM t");
        ASSERT_TRUE(c.step());
        EXPECT_EQ(c.column_int(0), 3);
    }
    std::filesystem::remove_all(dir);
}

class RegistryTest : public testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/tresim-registry-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        db_ = std::make_unique<Db>(dir_ + "/state.db");
        registry_ = std::make_unique<Registry>(*db_);
        registry_->create_schema();
    }
    void TearDown() override {
        registry_.reset();
        db_.reset();
        std::filesystem::remove_all(dir_);
    }
    MidRecord record(const std::string& iccid) {
        MidRecord m;
        m.iccid = iccid;
        m.imsi = "262011234567890";
        m.label = "l";
        m.algorithm = Algorithm::Tuak;
        m.tuak.res_bits = 128;
        m.amf = {0x80, 0x00};
        m.authority = Bytes(34, 0x0b);
        m.isim = IsimIdentity{"u@r", {"sip:u@r"}, "r"};
        m.sqn = usim::SqnState::from_highest(0x1234);
        return m;
    }
    std::string dir_;
    std::unique_ptr<Db> db_;
    std::unique_ptr<Registry> registry_;
};

TEST_F(RegistryTest, StoresAndReadsBackEveryField) {
    Transaction t(*db_);
    const std::int64_t idx = registry_->insert(record("89490200001234567892"));
    registry_->put_object(idx, "k", {Bytes{1, 2, 3}, Bytes{4, 5}});
    t.commit();
    const auto m = registry_->find(idx);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->iccid, "89490200001234567892");
    EXPECT_EQ(m->algorithm, Algorithm::Tuak);
    EXPECT_EQ(m->tuak.res_bits, 128u);
    EXPECT_EQ(m->sqn, usim::SqnState::from_highest(0x1234));
    ASSERT_TRUE(m->isim.has_value());
    EXPECT_EQ(m->isim->impu.at(0), "sip:u@r");
    EXPECT_EQ(registry_->object(idx, "k")->private_area, (Bytes{4, 5}));
    EXPECT_FALSE(registry_->object(idx, "opc").has_value());
    EXPECT_EQ(registry_->find_by_iccid("89490200001234567892")->index, idx);
}

TEST_F(RegistryTest, AllowsOneMidPerSlot) {
    Transaction t(*db_);
    MidRecord a = record("89490200001234567892");
    a.slot = 0;
    registry_->insert(a);
    MidRecord b = record("89490200001234567884");
    b.slot = 0;
    EXPECT_THROW(registry_->insert(b), DbError);
    b.slot = 1;
    EXPECT_NO_THROW(registry_->insert(b));
}

TEST_F(RegistryTest, AnUncommittedTransactionChangesNothing) {
    {
        Transaction t(*db_);
        registry_->insert(record("89490200001234567892"));
    }
    EXPECT_TRUE(registry_->list().empty());
}

TEST_F(RegistryTest, SqnRoundTripsThroughItsEncoding) {
    usim::SqnConfig c;
    c.ind_bits = 3;
    c.age_limit = 99;
    const usim::SqnState s(c, {1, 2, 3, 4, 5, 6, 7, 8});
    EXPECT_EQ(decode_sqn(encode_sqn(s)), s);
    EXPECT_THROW(decode_sqn(Bytes(10, 0)), TeError);
    Bytes bad = encode_sqn(s);
    bad.resize(bad.size() - 8);
    EXPECT_THROW(decode_sqn(bad), TeError);
}

} // namespace
