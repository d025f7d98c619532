// The TS 33.220 KDF and what 5G and EAP-AKA' derive with it, against reference data
// that does not come from this code (RFC 5448 Appendix C, published 5G test data; see
// the "source" of each set in tests/vectors/kdf.json).

#include <algorithm>
#include <array>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "usim/bytes.hpp"
#include "usim/kdf.hpp"
#include "vectors.hpp"

namespace {

using namespace tresim;
using namespace tresim::usim;
using nlohmann::json;

std::string field(const json& set, const char* name) {
    return set.at(name).get<std::string>();
}

Bytes bytes(const json& set, const char* name) {
    return hex_decode(field(set, name), name);
}

template <std::size_t N> std::array<std::uint8_t, N> array(const json& set, const char* name) {
    return hex_decode_array<N>(field(set, name), name);
}

ByteView text_view(const std::string& text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// Runs f and expects an InvalidArgument naming `argument`.
void expect_invalid(const std::function<void()>& f, const std::string& argument) {
    try {
        f();
        ADD_FAILURE() << "no InvalidArgument for " << argument;
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), argument) << e.what();
    }
}

const json& sets(const char* kind) {
    static const json all = tresim::test::load_vectors("kdf.json");
    return all.at(kind);
}

TEST(Kdf, DerivesCkIkPrimeForEveryRfc5448TestCase) {
    ASSERT_EQ(sets("ck_ik_prime").size(), 4U);
    for (const json& set : sets("ck_ik_prime")) {
        SCOPED_TRACE(field(set, "name"));
        const Bytes autn = bytes(set, "autn");
        Ak sqn_xor_ak{};
        std::copy_n(autn.begin(), sqn_xor_ak.size(), sqn_xor_ak.begin());
        EXPECT_EQ(hex_encode(sqn_xor_ak), field(set, "sqn_xor_ak"));

        const CkIkPrime keys = derive_ck_ik_prime(
            bytes(set, "ck"), bytes(set, "ik"), field(set, "access_network_identity"), sqn_xor_ak);
        EXPECT_EQ(keys.ck_prime.reveal_hex(), field(set, "ck_prime"));
        EXPECT_EQ(keys.ik_prime.reveal_hex(), field(set, "ik_prime"));
    }
}

TEST(Kdf, DerivesResStarAndHxresStarOfThePublishedSet) {
    ASSERT_FALSE(sets("res_star").empty());
    for (const json& set : sets("res_star")) {
        SCOPED_TRACE(field(set, "name"));
        const std::string snn = serving_network_name(field(set, "mcc"), field(set, "mnc"));
        EXPECT_EQ(snn, field(set, "serving_network_name"));
        const Rand rand = array<16>(set, "rand");
        const Bytes res_star =
            derive_res_star(bytes(set, "ck"), bytes(set, "ik"), snn, rand, bytes(set, "res"));
        EXPECT_EQ(hex_encode(res_star), field(set, "res_star"));
        EXPECT_EQ(hex_encode(derive_hxres_star(rand, res_star)), field(set, "hxres_star"));
    }
}

TEST(Kdf, DerivesKausfAndKseafOfTheReferenceSets) {
    ASSERT_FALSE(sets("kausf").empty());
    for (const json& set : sets("kausf")) {
        SCOPED_TRACE(field(set, "name"));
        const SecretBytes kausf =
            derive_kausf(bytes(set, "ck"), bytes(set, "ik"), field(set, "serving_network_name"),
                         array<6>(set, "sqn_xor_ak"));
        EXPECT_EQ(kausf.reveal_hex(), field(set, "kausf"));
    }
    ASSERT_FALSE(sets("kseaf").empty());
    for (const json& set : sets("kseaf")) {
        SCOPED_TRACE(field(set, "name"));
        const SecretBytes kseaf =
            derive_kseaf(bytes(set, "kausf"), field(set, "serving_network_name"));
        EXPECT_EQ(kseaf.reveal_hex(), field(set, "kseaf"));
    }
}

TEST(Kdf, ChainsFromAkaOutputsToKseaf) {
    // The kausf reference set is built on the res_star set's CK, IK and AUTN; the chain
    // through this API must land on the kseaf reference value.
    const json& av = sets("res_star").at(0);
    const json& ref = sets("kseaf").at(0);
    const Bytes autn = bytes(av, "autn");
    Ak sqn_xor_ak{};
    std::copy_n(autn.begin(), sqn_xor_ak.size(), sqn_xor_ak.begin());
    const std::string snn = serving_network_name(field(av, "mcc"), field(av, "mnc"));
    const SecretBytes kausf = derive_kausf(bytes(av, "ck"), bytes(av, "ik"), snn, sqn_xor_ak);
    EXPECT_EQ(derive_kseaf(kausf.view(), snn).reveal_hex(), field(ref, "kseaf"));
}

TEST(Kdf, HmacSha256MatchesRfc4231TestCase2) {
    // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
    const std::string key = "Jefe";
    const std::string data = "what do ya want for nothing?";
    EXPECT_EQ(hmac_sha256(text_view(key), {text_view(data)}).reveal_hex(),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    // Split input gives the same MAC.
    EXPECT_EQ(hmac_sha256(text_view(key), {text_view(data).first(5), text_view(data).subspan(5)})
                  .reveal_hex(),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Kdf, EncodesEachParameterWithItsTwoByteLength) {
    // S = FC || P0 || L0 || P1 || L1 (TS 33.220 B.2.0), here built by hand.
    const Bytes key = hex_decode("000102030405060708090a0b0c0d0e0f", "key");
    const Bytes p0 = hex_decode("aabbcc", "p0");
    const Bytes p1(300, 0x5a);
    Bytes s = {0x6b};
    s.insert(s.end(), p0.begin(), p0.end());
    s.insert(s.end(), {0x00, 0x03});
    s.insert(s.end(), p1.begin(), p1.end());
    s.insert(s.end(), {0x01, 0x2c});
    EXPECT_EQ(kdf(key, 0x6b, {p0, p1}).reveal_hex(), hmac_sha256(key, {s}).reveal_hex());
    EXPECT_EQ(kdf(key, 0x10, {}).reveal_hex(), hmac_sha256(key, {Bytes{0x10}}).reveal_hex());
}

TEST(Kdf, WritesTheServingNetworkNameWithAThreeDigitMnc) {
    EXPECT_EQ(serving_network_name("001", "01"), "5G:mnc001.mcc001.3gppnetwork.org");
    EXPECT_EQ(serving_network_name("208", "93"), "5G:mnc093.mcc208.3gppnetwork.org");
    EXPECT_EQ(serving_network_name("310", "410"), "5G:mnc410.mcc310.3gppnetwork.org");
}

TEST(Kdf, RejectsAMalformedMccOrMnc) {
    expect_invalid([] { serving_network_name("01", "01"); }, "mcc-mnc");
    expect_invalid([] { serving_network_name("0011", "01"); }, "mcc-mnc");
    expect_invalid([] { serving_network_name("00a", "01"); }, "mcc-mnc");
    expect_invalid([] { serving_network_name("001", "1"); }, "mcc-mnc");
    expect_invalid([] { serving_network_name("001", "0123"); }, "mcc-mnc");
    expect_invalid([] { serving_network_name("001", "0x"); }, "mcc-mnc");
}

TEST(Kdf, NamesTheArgumentThatHasTheWrongSize) {
    const Bytes k16(16, 1);
    const Bytes k15(15, 1);
    const Bytes k17(17, 1);
    const Rand rand{};
    const Ak sqn_xor_ak{};
    const std::string snn = "5G:mnc001.mcc001.3gppnetwork.org";
    const Bytes res8(8, 2);

    expect_invalid([&] { derive_res_star(k15, k16, snn, rand, res8); }, "ck");
    expect_invalid([&] { derive_res_star(k16, k17, snn, rand, res8); }, "ik");
    expect_invalid([&] { derive_res_star(k16, k16, snn, rand, Bytes(3, 0)); }, "res");
    expect_invalid([&] { derive_res_star(k16, k16, snn, rand, Bytes(17, 0)); }, "res");
    expect_invalid([&] { derive_res_star(k16, k16, "", rand, res8); }, "serving-network-name");
    expect_invalid([&] { derive_hxres_star(rand, Bytes(8, 0)); }, "xres-star");
    expect_invalid([&] { derive_kausf(k16, k15, snn, sqn_xor_ak); }, "ik");
    expect_invalid([&] { derive_kausf(Bytes{}, k16, snn, sqn_xor_ak); }, "ck");
    expect_invalid([&] { derive_kseaf(k16, snn); }, "kausf");
    expect_invalid([&] { derive_ck_ik_prime(k17, k16, "WLAN", sqn_xor_ak); }, "ck");
    expect_invalid([&] { derive_ck_ik_prime(k16, k16, "", sqn_xor_ak); },
                   "access-network-identity");
}

TEST(Kdf, AcceptsEveryResLengthFrom32To128Bits) {
    const Bytes k16(16, 1);
    const Rand rand{};
    Bytes previous;
    for (std::size_t n = 4; n <= 16; ++n) {
        const Bytes res_star = derive_res_star(k16, k16, "x", rand, Bytes(n, 7));
        EXPECT_EQ(res_star.size(), 16U);
        EXPECT_NE(res_star, previous); // the length is part of the input
        previous = res_star;
    }
}

} // namespace
