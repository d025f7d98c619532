// GSM conversion functions and GSM-Milenage against TS 55.205.

#include <gtest/gtest.h>

#include "usim/bytes.hpp"
#include "usim/gsm.hpp"
#include "usim/milenage.hpp"
#include "vectors.hpp"

namespace {

using namespace tresim;
using namespace tresim::usim;
using nlohmann::json;

void expect_gsm_set_matches(const json& set) {
    SCOPED_TRACE(set.value("name", std::string("unnamed set")));
    const Bytes k = hex_decode(set.at("k").get<std::string>(), "k");
    Bytes opc;
    if (set.contains("opc")) {
        opc = hex_decode(set.at("opc").get<std::string>(), "opc");
    } else {
        SoftwareAes128 ek(k);
        const Opc computed =
            Milenage::compute_opc(ek, hex_decode_array<16>(set.at("op").get<std::string>(), "op"));
        opc.assign(computed.view().begin(), computed.view().end());
    }
    auto m = Milenage::software(k, opc);
    const auto rand = hex_decode_array<16>(set.at("rand").get<std::string>(), "rand");
    const GsmContext g = gsm_authenticate(*m, rand);
    EXPECT_EQ(hex_encode(g.sres), set.at("sres1_c2").get<std::string>());
    EXPECT_EQ(hex_encode(g.sres2), set.at("sres2_gsm_milenage").get<std::string>());
    EXPECT_EQ(hex_encode(g.kc.view()), set.at("kc").get<std::string>());
}

TEST(GsmMilenage, MatchesEveryOfficialTestSet) {
    const json sets = test::load_vectors("gsm_milenage.json").at("gsm_milenage");
    ASSERT_GE(sets.size(), 19u);
    for (const json& set : sets) {
        expect_gsm_set_matches(set);
    }
}

TEST(GsmMilenage, MatchesTheSharedSampleSet) {
    const json sample = test::load_shared_sample();
    if (sample.is_null()) {
        GTEST_SKIP() << "../shared/vectors/sample.json is not beside this checkout";
    }
    for (const json& set : sample.at("gsm_milenage")) {
        expect_gsm_set_matches(set);
    }
}

TEST(GsmConversion, C2FoldsTheFourWordsOfRes) {
    // RES = 11111111 22222222 44444444 88888888 -> ff ff ff ff
    const Bytes res = hex_decode("11111111222222224444444488888888", "res");
    EXPECT_EQ(hex_encode(c2(res)), "ffffffff");
    // A 64-bit RES is padded with zeros: only two words count.
    EXPECT_EQ(hex_encode(c2(hex_decode("0102030410203040", "res"))), "11223344");
    // A 32-bit RES is its own SRES.
    EXPECT_EQ(hex_encode(c2(hex_decode("deadbeef", "res"))), "deadbeef");
}

TEST(GsmConversion, C3FoldsTheHalvesOfCkAndIk) {
    const Bytes ck = hex_decode("0000000000000001"
                                "0000000000000010",
                                "ck");
    const Bytes ik = hex_decode("0000000000000100"
                                "0000000000001000",
                                "ik");
    EXPECT_EQ(hex_encode(c3(ck, ik).view()), "0000000000001111");
}

TEST(GsmConversion, RejectsWrongSizes) {
    EXPECT_THROW(c2(Bytes(3, 0)), InvalidArgument);
    EXPECT_THROW(c2(Bytes(17, 0)), InvalidArgument);
    EXPECT_THROW(c3(Bytes(15, 0), Bytes(16, 0)), InvalidArgument);
    EXPECT_THROW(c3(Bytes(16, 0), Bytes(32, 0)), InvalidArgument);
}

} // namespace
