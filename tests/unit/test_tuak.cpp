// TUAK (TS 35.231) against the official test sets of TS 35.233, and the
// Keccak-f[1600] permutation under it against FIPS 202 / Keccak team values.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "usim/bytes.hpp"
#include "usim/keccak.hpp"
#include "usim/secret.hpp"
#include "usim/tuak.hpp"
#include "vectors.hpp"

namespace {

using namespace tresim;
using namespace tresim::usim;
using nlohmann::json;

// ---------------------------------------------------------------------------
// Keccak-f[1600]

// The Keccak team's KeccakF-1600-IntermediateValues.txt: the all-zero state
// after one and after two applications of the permutation, lane (x, y) at x + 5y.
constexpr KeccakState kZeroOnce{
    0xF1258F7940E1DDE7ULL, 0x84D5CCF933C0478AULL, 0xD598261EA65AA9EEULL, 0xBD1547306F80494DULL,
    0x8B284E056253D057ULL, 0xFF97A42D7F8E6FD4ULL, 0x90FEE5A0A44647C4ULL, 0x8C5BDA0CD6192E76ULL,
    0xAD30A6F71B19059CULL, 0x30935AB7D08FFC64ULL, 0xEB5AA93F2317D635ULL, 0xA9A6E6260D712103ULL,
    0x81A57C16DBCF555FULL, 0x43B831CD0347C826ULL, 0x01F22F1A11A5569FULL, 0x05E5635A21D9AE61ULL,
    0x64BEFEF28CC970F2ULL, 0x613670957BC46611ULL, 0xB87C5A554FD00ECBULL, 0x8C3EE88A1CCF32C8ULL,
    0x940C7922AE3A2614ULL, 0x1841F924A2C509E4ULL, 0x16F53526E70465C2ULL, 0x75F644E97F30A13BULL,
    0xEAF1FF7B5CECA249ULL,
};
constexpr KeccakState kZeroTwice{
    0x2D5C954DF96ECB3CULL, 0x6A332CD07057B56DULL, 0x093D8D1270D76B6CULL, 0x8A20D9B25569D094ULL,
    0x4F9C4F99E5E7F156ULL, 0xF957B9A2DA65FB38ULL, 0x85773DAE1275AF0DULL, 0xFAF4F247C3D810F7ULL,
    0x1F1B9EE6F79A8759ULL, 0xE4FECC0FEE98B425ULL, 0x68CE61B6B9CE68A1ULL, 0xDEEA66C4BA8F974FULL,
    0x33C43D836EAFB1F5ULL, 0xE00654042719DBD9ULL, 0x7CF8A9F009831265ULL, 0xFD5449A6BF174743ULL,
    0x97DDAD33D8994B40ULL, 0x48EAD5FC5D0BE774ULL, 0xE3B8C8EE55B7B03CULL, 0x91A0226E649E42E9ULL,
    0x900E3129E7BADD7BULL, 0x202A9EC5FAA3CCE8ULL, 0x5B3402464E1C3DB6ULL, 0x609F4E62A44C1059ULL,
    0x20D06CD26A8FBF5CULL,
};

TEST(Keccak, PermutesTheZeroStateAsTheKeccakTeamPublished) {
    KeccakState s{};
    keccak_f1600(s);
    EXPECT_EQ(s, kZeroOnce);
    keccak_f1600(s);
    EXPECT_EQ(s, kZeroTwice);
}

// SHA3-256 (FIPS 202 §6.1) as a sponge over keccak_f1600, with rate 136 bytes and
// the domain suffix 01 followed by pad10*1.
Bytes sponge_sha3_256(const Bytes& message) {
    constexpr std::size_t rate = 136;
    Bytes padded = message;
    padded.push_back(0x06);
    while (padded.size() % rate != 0) {
        padded.push_back(0x00);
    }
    padded.back() |= 0x80;
    KeccakState s{};
    for (std::size_t block = 0; block < padded.size(); block += rate) {
        for (std::size_t i = 0; i < rate; ++i) {
            s[i / 8] ^= std::uint64_t{padded[block + i]} << (8 * (i % 8));
        }
        keccak_f1600(s);
    }
    Bytes digest(32);
    for (std::size_t i = 0; i < digest.size(); ++i) {
        digest[i] = static_cast<std::uint8_t>(s[i / 8] >> (8 * (i % 8)));
    }
    return digest;
}

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};

Bytes openssl_sha3_256(const Bytes& message) {
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    Bytes digest(32);
    unsigned int length = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha3_256(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), message.data(), message.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1 || length != 32) {
        ADD_FAILURE() << "OpenSSL SHA3-256 failed";
    }
    return digest;
}

TEST(Keccak, GivesOpenSslsSha3WhenUsedAsASponge) {
    // FIPS 202 example: SHA3-256 of the empty string.
    EXPECT_EQ(hex_encode(sponge_sha3_256({})),
              "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a");
    // Lengths around the 136-byte rate, so that one, two and three blocks are absorbed.
    for (const std::size_t length : {1U, 3U, 135U, 136U, 137U, 200U, 271U, 272U, 300U}) {
        Bytes message(length);
        for (std::size_t i = 0; i < length; ++i) {
            message[i] = static_cast<std::uint8_t>(i * 7 + length);
        }
        EXPECT_EQ(hex_encode(sponge_sha3_256(message)), hex_encode(openssl_sha3_256(message)))
            << "message of " << length << " bytes";
    }
}

// ---------------------------------------------------------------------------
// TUAK against the test sets

std::string field(const json& set, const char* name) {
    return set.at(name).get<std::string>();
}

unsigned bits(const json& set, const char* name) {
    return set.at(name).get<unsigned>();
}

TuakParams params_of(const json& set) {
    TuakParams p;
    p.mac_bits = bits(set, "mac_len_bits");
    p.res_bits = bits(set, "res_len_bits");
    p.ck_bits = bits(set, "ck_len_bits");
    p.ik_bits = bits(set, "ik_len_bits");
    p.keccak_iterations = bits(set, "keccak_iterations");
    return p;
}

void expect_set_matches(const json& set) {
    SCOPED_TRACE(set.value("name", std::string("unnamed set")));
    const SecretBytes k = SecretBytes::from_hex(field(set, "k"), "k");
    ASSERT_EQ(k.size() * 8, bits(set, "k_len_bits"));
    const TuakParams p = params_of(set);
    const auto top = hex_decode_array<32>(field(set, "top"), "top");
    const auto rand = hex_decode_array<16>(field(set, "rand"), "rand");
    const auto sqn = hex_decode_array<6>(field(set, "sqn"), "sqn");
    const auto amf = hex_decode_array<2>(field(set, "amf"), "amf");

    const Topc computed_topc = Tuak::compute_topc(k.view(), top, p.keccak_iterations);
    EXPECT_EQ(hex_encode(computed_topc.view()), field(set, "topc"));

    // The functions run from the listed TOPc, so that a TOPc error and an error in
    // f1..f5* show up separately.
    const Topc topc(hex_decode(field(set, "topc"), "topc", 32));
    Tuak tuak(k, topc, p);
    const OutputSizes sizes = tuak.sizes();
    EXPECT_EQ(sizes.mac * 8, p.mac_bits);
    EXPECT_EQ(sizes.res * 8, p.res_bits);
    EXPECT_EQ(sizes.ck * 8, p.ck_bits);
    EXPECT_EQ(sizes.ik * 8, p.ik_bits);

    auto c = tuak.begin(rand);
    EXPECT_EQ(hex_encode(c->f1(sqn, amf)), field(set, "f1"));
    EXPECT_EQ(hex_encode(c->f1star(sqn, amf)), field(set, "f1star"));
    const F2345 r = c->f2345();
    EXPECT_EQ(hex_encode(r.res), field(set, "f2"));
    EXPECT_EQ(r.ck.reveal_hex(), field(set, "f3"));
    EXPECT_EQ(r.ik.reveal_hex(), field(set, "f4"));
    EXPECT_EQ(hex_encode(r.ak), field(set, "f5"));
    EXPECT_EQ(hex_encode(c->f5star()), field(set, "f5star"));

    const AllOutputs all = tuak.begin(rand)->all(sqn, amf);
    EXPECT_EQ(hex_encode(all.mac_a), field(set, "f1"));
    EXPECT_EQ(hex_encode(all.mac_s), field(set, "f1star"));
    EXPECT_EQ(hex_encode(all.res), field(set, "f2"));
    EXPECT_EQ(all.ck.reveal_hex(), field(set, "f3"));
    EXPECT_EQ(all.ik.reveal_hex(), field(set, "f4"));
    EXPECT_EQ(hex_encode(all.ak), field(set, "f5"));
    EXPECT_EQ(hex_encode(all.ak_star), field(set, "f5star"));
}

TEST(Tuak, MatchesEveryOfficialTestSet) {
    const json vectors = tresim::test::load_vectors("tuak.json");
    const json& sets = vectors.at("tuak");
    ASSERT_EQ(sets.size(), 6U) << "TS 35.233 has six TUAK test sets";
    for (const json& set : sets) {
        expect_set_matches(set);
    }
}

TEST(Tuak, MatchesTheSharedSampleSets) {
    const json sample = tresim::test::load_shared_sample();
    if (sample.is_null()) {
        GTEST_SKIP() << "../shared/vectors/sample.json is not beside the checkout";
    }
    ASSERT_TRUE(sample.contains("tuak"));
    ASSERT_FALSE(sample.at("tuak").empty());
    for (const json& set : sample.at("tuak")) {
        expect_set_matches(set);
    }
}

TEST(Tuak, NamesItselfTuak) {
    const Tuak tuak(SecretBytes(16), Topc(), TuakParams{});
    EXPECT_STREQ(tuak.name(), "tuak");
}

// ---------------------------------------------------------------------------
// Parameters and K

void expect_invalid(const TuakParams& p, const std::string& argument) {
    try {
        p.validate();
        ADD_FAILURE() << "validate() accepted a value for " << argument;
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), argument);
    }
    try {
        Tuak tuak(SecretBytes(16), Topc(), p);
        ADD_FAILURE() << "the constructor accepted a value for " << argument;
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), argument);
    }
}

TEST(TuakParams, AcceptsEveryCombinationTheSpecificationAllows) {
    for (const unsigned mac : {64U, 128U, 256U}) {
        for (const unsigned res : {32U, 64U, 128U, 256U}) {
            for (const unsigned ck : {128U, 256U}) {
                for (const unsigned ik : {128U, 256U}) {
                    for (const unsigned n : {1U, 2U, 255U}) {
                        const TuakParams p{mac, res, ck, ik, n};
                        EXPECT_NO_THROW(p.validate());
                    }
                }
            }
        }
    }
}

TEST(TuakParams, RejectsEachDisallowedValueNamingIt) {
    for (const unsigned v : {0U, 8U, 32U, 96U, 192U, 512U}) {
        TuakParams p;
        p.mac_bits = v;
        expect_invalid(p, "mac-bits");
    }
    for (const unsigned v : {0U, 16U, 48U, 96U, 192U, 512U}) {
        TuakParams p;
        p.res_bits = v;
        expect_invalid(p, "res-bits");
    }
    for (const unsigned v : {0U, 32U, 64U, 192U, 512U}) {
        TuakParams p;
        p.ck_bits = v;
        expect_invalid(p, "ck-bits");
    }
    for (const unsigned v : {0U, 32U, 64U, 192U, 512U}) {
        TuakParams p;
        p.ik_bits = v;
        expect_invalid(p, "ik-bits");
    }
    for (const unsigned v : {0U, 256U, 1000U}) {
        TuakParams p;
        p.keccak_iterations = v;
        expect_invalid(p, "keccak-iterations");
    }
}

TEST(Tuak, RejectsAKOfWrongLength) {
    for (const std::size_t length : {0U, 1U, 15U, 17U, 24U, 31U, 33U, 64U}) {
        SCOPED_TRACE(length);
        try {
            Tuak tuak(SecretBytes(length), Topc(), TuakParams{});
            ADD_FAILURE() << "the constructor accepted K";
        } catch (const InvalidArgument& e) {
            EXPECT_EQ(e.argument(), "k");
        }
        const Bytes k(length, 0x42);
        try {
            (void)Tuak::compute_topc(k, Top{}, 1);
            ADD_FAILURE() << "compute_topc accepted K";
        } catch (const InvalidArgument& e) {
            EXPECT_EQ(e.argument(), "k");
        }
    }
}

TEST(Tuak, ComputeTopcRejectsAnIterationCountOutsideOneTo255) {
    const Bytes k(16, 0x42);
    for (const unsigned n : {0U, 256U}) {
        try {
            (void)Tuak::compute_topc(k, Top{}, n);
            ADD_FAILURE() << "compute_topc accepted " << n << " iterations";
        } catch (const InvalidArgument& e) {
            EXPECT_EQ(e.argument(), "keccak-iterations");
        }
    }
}

TEST(Tuak, KeepsTheErrorMessageFreeOfK) {
    // A 17-byte K of a recognisable pattern must not appear in the message.
    try {
        Tuak tuak(SecretBytes(Bytes(17, 0xa5)), Topc(), TuakParams{});
        ADD_FAILURE() << "K of 17 bytes was accepted";
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(std::string(e.what()).find("a5a5"), std::string::npos);
    }
}

} // namespace
