// Hex parsing, byte helpers and the secret types.

#include <cctype>
#include <new>
#include <random>

#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace {

using namespace tresim;

TEST(Hex, RoundTripsEveryByteValue) {
    Bytes all(256);
    for (std::size_t i = 0; i < all.size(); ++i) {
        all[i] = static_cast<std::uint8_t>(i);
    }
    const std::string text = hex_encode(all);
    EXPECT_EQ(text.substr(0, 8), "00010203");
    EXPECT_EQ(text.substr(text.size() - 4), "feff");
    EXPECT_EQ(hex_decode(text, "x"), all);
}

TEST(Hex, AcceptsUpperCase) {
    EXPECT_EQ(hex_decode("ABcdEF", "x"), (Bytes{0xab, 0xcd, 0xef}));
}

TEST(Hex, RejectsOddLengthNamingTheArgument) {
    try {
        hex_decode("abc", "rand");
        FAIL() << "odd hex was accepted";
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "rand");
        EXPECT_NE(std::string(e.what()).find("odd"), std::string::npos);
    }
}

TEST(Hex, RejectsWrongLengthWithBothSizesInTheMessage) {
    try {
        hex_decode("00112233", "amf", 2);
        FAIL() << "4 bytes were accepted for a 2-byte field";
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "amf");
        EXPECT_NE(std::string(e.what()).find("must be 2 bytes"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("got 4"), std::string::npos);
    }
}

TEST(Hex, ErrorsNeverEchoTheInput) {
    const std::string secretish = "465b5ce8b199b49faa5f0a2ee238a6bz";
    try {
        SecretBytes::from_hex(secretish, "k", 16);
        FAIL();
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(std::string(e.what()).find("465b5ce8"), std::string::npos);
        EXPECT_EQ(e.argument(), "k");
    }
}

TEST(Hex, GarbageNeverCrashesAndIsEitherValidOrInvalidArgument) {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> len(0, 80);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int n = 0; n < 20000; ++n) {
        std::string s(static_cast<std::size_t>(len(rng)), '\0');
        for (char& c : s) {
            c = static_cast<char>(byte(rng));
        }
        bool valid = s.size() % 2 == 0;
        for (char c : s) {
            valid = valid && std::isxdigit(static_cast<unsigned char>(c)) != 0;
        }
        if (valid) {
            EXPECT_EQ(hex_decode(s, "x").size(), s.size() / 2);
        } else {
            EXPECT_THROW(hex_decode(s, "x"), InvalidArgument);
            EXPECT_THROW(SecretBytes::from_hex(s, "x"), InvalidArgument);
        }
    }
}

TEST(BigEndian, StoresAndLoadsA48BitSqn) {
    std::array<std::uint8_t, 6> b{};
    store_be(0xff9bb4d0b607, b);
    EXPECT_EQ(hex_encode(b), "ff9bb4d0b607");
    EXPECT_EQ(load_be(b), 0xff9bb4d0b607u);
}

TEST(ConstantTimeEqual, ComparesContentAndLength) {
    EXPECT_TRUE(equal_ct(Bytes{1, 2, 3}, Bytes{1, 2, 3}));
    EXPECT_FALSE(equal_ct(Bytes{1, 2, 3}, Bytes{1, 2, 4}));
    EXPECT_FALSE(equal_ct(Bytes{1, 2, 3}, Bytes{1, 2}));
}

TEST(SecretBytes, DecodesHexIntoItsOwnMemory) {
    const SecretBytes k = SecretBytes::from_hex("000102", "k");
    EXPECT_EQ(k.size(), 3u);
    EXPECT_EQ(k[2], 2);
    EXPECT_EQ(k.reveal_hex(), "000102");
}

TEST(SecretBytes, ComparesInConstantTime) {
    EXPECT_EQ(SecretBytes::from_hex("00ff", "a"), SecretBytes::from_hex("00FF", "b"));
    EXPECT_FALSE(SecretBytes::from_hex("00ff", "a") == SecretBytes::from_hex("00fe", "b"));
}

TEST(SecretBytes, LivesInTheSecureHeapOnceItIsInitialised) {
    ASSERT_TRUE(secure_heap_init(16 * 1024)) << "the kernel refused to lock the secure heap";
    const SecretBytes k(16);
    EXPECT_EQ(CRYPTO_secure_allocated(k.data()), 1);
}

TEST(SecretArray, WipesOnDestruction) {
    alignas(SecretArray<16>) unsigned char storage[sizeof(SecretArray<16>)];
    auto* s = new (storage) SecretArray<16>();
    std::fill(s->span().begin(), s->span().end(), std::uint8_t{0xaa});
    s->~SecretArray<16>();
    for (unsigned char c : storage) {
        EXPECT_EQ(c, 0);
    }
}

} // namespace
