// Milenage against the official 3GPP test data (TS 35.207/35.208 sets).

#include <gtest/gtest.h>

#include "usim/aka.hpp"
#include "usim/bytes.hpp"
#include "usim/milenage.hpp"
#include "vectors.hpp"

namespace {

using namespace tresim;
using namespace tresim::usim;
using nlohmann::json;

std::string hex(const json& set, const char* field) {
    return set.at(field).get<std::string>();
}

// Checks one set; returns the number of fields compared.
void expect_set_matches(const json& set) {
    SCOPED_TRACE(set.value("name", std::string("unnamed set")));
    const Bytes k = hex_decode(hex(set, "k"), "k", 16);
    const auto op = hex_decode_array<16>(hex(set, "op"), "op");
    SoftwareAes128 ek(k);
    const Opc opc = Milenage::compute_opc(ek, op);
    EXPECT_EQ(hex_encode(opc.view()), hex(set, "opc"));

    auto m = Milenage::software(k, opc.view());
    const auto rand = hex_decode_array<16>(hex(set, "rand"), "rand");
    const auto sqn = hex_decode_array<6>(hex(set, "sqn"), "sqn");
    const auto amf = hex_decode_array<2>(hex(set, "amf"), "amf");

    // The batched path (network side) ...
    const AllOutputs all = m->begin(rand)->all(sqn, amf);
    EXPECT_EQ(hex_encode(all.mac_a), hex(set, "f1"));
    EXPECT_EQ(hex_encode(all.mac_s), hex(set, "f1star"));
    EXPECT_EQ(hex_encode(all.res), hex(set, "f2"));
    EXPECT_EQ(all.ck.reveal_hex(), hex(set, "f3"));
    EXPECT_EQ(all.ik.reveal_hex(), hex(set, "f4"));
    EXPECT_EQ(hex_encode(all.ak), hex(set, "f5"));
    EXPECT_EQ(hex_encode(all.ak_star), hex(set, "f5star"));

    // ... and the single-function path (USIM side) agree with the test data.
    auto c = m->begin(rand);
    EXPECT_EQ(hex_encode(c->f1(sqn, amf)), hex(set, "f1"));
    EXPECT_EQ(hex_encode(c->f1star(sqn, amf)), hex(set, "f1star"));
    const F2345 f = c->f2345();
    EXPECT_EQ(hex_encode(f.res), hex(set, "f2"));
    EXPECT_EQ(f.ck.reveal_hex(), hex(set, "f3"));
    EXPECT_EQ(f.ik.reveal_hex(), hex(set, "f4"));
    EXPECT_EQ(hex_encode(f.ak), hex(set, "f5"));
    EXPECT_EQ(hex_encode(c->f5star()), hex(set, "f5star"));
}

TEST(Milenage, MatchesEveryOfficialTestSet) {
    const json sets = test::load_vectors("milenage.json").at("milenage");
    ASSERT_GE(sets.size(), 19u);
    for (const json& set : sets) {
        expect_set_matches(set);
    }
}

TEST(Milenage, MatchesTheSharedSampleSets) {
    const json sample = test::load_shared_sample();
    if (sample.is_null()) {
        GTEST_SKIP() << "../shared/vectors/sample.json is not beside this checkout";
    }
    ASSERT_FALSE(sample.at("milenage").empty());
    for (const json& set : sample.at("milenage")) {
        expect_set_matches(set);
    }
}

TEST(Milenage, RejectsKeysOfTheWrongLength) {
    const Bytes opc(16, 0);
    EXPECT_THROW(Milenage::software(Bytes(15, 0), opc), InvalidArgument);
    EXPECT_THROW(Milenage::software(Bytes(32, 0), opc), InvalidArgument);
    try {
        Milenage::software(Bytes(16, 0), Bytes(17, 0));
        FAIL() << "a 17-byte OPc was accepted";
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "opc");
    }
}

TEST(Milenage, AuthVectorAutnIsSqnXorAkAmfAndMac) {
    const json set = test::load_vectors("milenage.json").at("milenage").at(0);
    auto m = Milenage::software(hex_decode(hex(set, "k"), "k"), hex_decode(hex(set, "opc"), "opc"));
    const auto rand = hex_decode_array<16>(hex(set, "rand"), "rand");
    const auto amf = hex_decode_array<2>(hex(set, "amf"), "amf");
    const std::uint64_t sqn = load_be(hex_decode(hex(set, "sqn"), "sqn"));
    const AuthVector v = generate_vector(*m, rand, sqn, amf);
    Bytes sqn_xor_ak = hex_decode(hex(set, "sqn"), "sqn");
    xor_into(sqn_xor_ak, sqn_xor_ak, hex_decode(hex(set, "f5"), "f5"));
    EXPECT_EQ(hex_encode(v.autn), hex_encode(sqn_xor_ak) + hex(set, "amf") + hex(set, "f1"));
    EXPECT_EQ(hex_encode(v.xres), hex(set, "f2"));
}

} // namespace
