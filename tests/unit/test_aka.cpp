// AKA on both sides and the Annex C.3 SQN array (TS 33.102).

#include <random>

#include <gtest/gtest.h>

#include "usim/aka.hpp"
#include "usim/bytes.hpp"
#include "usim/milenage.hpp"

namespace {

using namespace tresim;
using namespace tresim::usim;

// TS 35.207 set 1 keys; the SQN values below are chosen per test.
std::unique_ptr<Milenage> set1() {
    return Milenage::software(hex_decode("465b5ce8b199b49faa5f0a2ee238a6bc", "k"),
                              hex_decode("cd63cb71954a9f4e48a5994e37a02baf", "opc"));
}
const Amf kAmf{0x80, 0x00};

Rand rand_n(std::uint8_t n) {
    Rand r{};
    r.fill(n);
    return r;
}

std::uint64_t sqn_of(std::uint64_t seq, std::uint64_t ind, unsigned ind_bits = 5) {
    return (seq << ind_bits) | ind;
}

TEST(UsimAuthenticate, AcceptsAFreshVectorAndReturnsTheNetworkValues) {
    auto m = set1();
    const SqnState state;
    const AuthVector v = generate_vector(*m, rand_n(1), sqn_of(1, 0), kAmf);
    const AkaResult r = usim_authenticate(*m, state, v.rand, v.autn);
    ASSERT_TRUE(std::holds_alternative<AkaSuccess>(r));
    const auto& ok = std::get<AkaSuccess>(r);
    EXPECT_EQ(ok.res, v.xres);
    EXPECT_TRUE(ok.ck == v.ck);
    EXPECT_TRUE(ok.ik == v.ik);
    EXPECT_EQ(ok.sqn, sqn_of(1, 0));
    EXPECT_EQ(ok.state.seq()[0], 1u);
    EXPECT_EQ(ok.state.highest_sqn(), sqn_of(1, 0));
}

TEST(UsimAuthenticate, RejectsAReplayedAutnWithAutsThatResynchronises) {
    auto m = set1();
    const AuthVector v = generate_vector(*m, rand_n(2), sqn_of(7, 3), kAmf);
    const auto first = usim_authenticate(*m, SqnState{}, v.rand, v.autn);
    ASSERT_TRUE(std::holds_alternative<AkaSuccess>(first));
    const SqnState after = std::get<AkaSuccess>(first).state;

    const auto replay = usim_authenticate(*m, after, v.rand, v.autn);
    ASSERT_TRUE(std::holds_alternative<AkaSyncFailure>(replay));
    EXPECT_EQ(std::get<AkaSyncFailure>(replay).reason, SqnVerdict::Replayed);
    // The network recovers SQN_MS = the highest SQN accepted, from AUTS.
    const auto sqn_ms = resync(*m, v.rand, std::get<AkaSyncFailure>(replay).auts);
    ASSERT_TRUE(sqn_ms.has_value());
    EXPECT_EQ(*sqn_ms, sqn_of(7, 3));
}

TEST(UsimAuthenticate, ChecksMacBeforeFreshness) {
    auto m = set1();
    AuthVector v = generate_vector(*m, rand_n(3), sqn_of(1, 0), kAmf);
    // A replayed SQN with a bad MAC is a MAC failure, not a sync failure (which
    // would disclose SQN_MS to whoever forged it).
    SqnState ahead = SqnState::from_highest(sqn_of(100, 0));
    v.autn.back() ^= 0x01;
    EXPECT_TRUE(
        std::holds_alternative<AkaMacFailure>(usim_authenticate(*m, ahead, v.rand, v.autn)));
}

TEST(UsimAuthenticate, DetectsAChangeInAnyBitOfAutnOrRand) {
    auto m = set1();
    const AuthVector v = generate_vector(*m, rand_n(4), sqn_of(2, 1), kAmf);
    for (std::size_t bit = 0; bit < v.autn.size() * 8; ++bit) {
        Bytes autn = v.autn.to_bytes();
        autn[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
        EXPECT_TRUE(
            std::holds_alternative<AkaMacFailure>(usim_authenticate(*m, SqnState{}, v.rand, autn)))
            << "bit " << bit;
    }
    Rand other = v.rand;
    other[15] ^= 0x80;
    EXPECT_TRUE(
        std::holds_alternative<AkaMacFailure>(usim_authenticate(*m, SqnState{}, other, v.autn)));
}

TEST(UsimAuthenticate, RejectsAutnOfTheWrongLength) {
    auto m = set1();
    for (std::size_t n : {0u, 15u, 17u, 32u}) {
        try {
            usim_authenticate(*m, SqnState{}, rand_n(5), Bytes(n, 0));
            FAIL() << n << " bytes accepted";
        } catch (const InvalidArgument& e) {
            EXPECT_EQ(e.argument(), "autn");
        }
    }
}

TEST(UsimAuthenticate, GarbageAutnNeverSucceeds) {
    auto m = set1();
    std::mt19937 rng(777);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int n = 0; n < 2000; ++n) {
        Bytes autn(16);
        for (auto& b : autn) {
            b = static_cast<std::uint8_t>(byte(rng));
        }
        EXPECT_TRUE(std::holds_alternative<AkaMacFailure>(
            usim_authenticate(*m, SqnState{}, rand_n(6), autn)));
    }
}

TEST(SqnArray, EachIndSlotAdvancesOnItsOwn) {
    SqnState s;
    s = s.accept(sqn_of(10, 0));
    // Another slot may take a lower SEQ (vectors used out of order across VLRs).
    EXPECT_EQ(s.check(sqn_of(5, 1)), SqnVerdict::Fresh);
    s = s.accept(sqn_of(5, 1));
    // Slot 0 refuses anything not above 10, slot 1 anything not above 5.
    EXPECT_EQ(s.check(sqn_of(10, 0)), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(sqn_of(9, 0)), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(sqn_of(5, 1)), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(sqn_of(6, 1)), SqnVerdict::Fresh);
    EXPECT_EQ(s.check(sqn_of(11, 0)), SqnVerdict::Fresh);
    EXPECT_EQ(s.highest_sqn(), sqn_of(10, 0));
}

TEST(SqnArray, RefusesASeqMoreThanDeltaAboveTheHighest) {
    SqnConfig cfg;
    cfg.delta = 1000;
    SqnState s(cfg);
    s = s.accept(sqn_of(50, 2));
    EXPECT_EQ(s.check(sqn_of(1050, 2)), SqnVerdict::Fresh);
    EXPECT_EQ(s.check(sqn_of(1051, 2)), SqnVerdict::TooFar);
    EXPECT_EQ(s.check(sqn_of(1051, 7)), SqnVerdict::TooFar);
}

TEST(SqnArray, AgeLimitRefusesSeqsTooFarBelowTheHighest) {
    SqnConfig cfg;
    cfg.age_limit = 10;
    SqnState s(cfg);
    s = s.accept(sqn_of(100, 0));
    EXPECT_EQ(s.check(sqn_of(90, 1)), SqnVerdict::Fresh);
    EXPECT_EQ(s.check(sqn_of(89, 1)), SqnVerdict::TooOld);
    // Without L the same SQN is fresh.
    EXPECT_EQ(SqnState{}.accept(sqn_of(100, 0)).check(sqn_of(89, 1)), SqnVerdict::Fresh);
}

TEST(SqnArray, DoesNotWrapAroundAtTheTopOfTheCounter) {
    const std::uint64_t top_seq = (std::uint64_t{1} << 43) - 1;
    SqnConfig cfg;
    SqnState s = SqnState::from_highest(sqn_of(top_seq - 1, 31), cfg);
    EXPECT_EQ(s.check(sqn_of(top_seq, 4)), SqnVerdict::Fresh);
    s = s.accept(sqn_of(top_seq, 4));
    // The counter cannot go further in that slot, and a wrapped (small) SEQ is old.
    EXPECT_EQ(s.check(sqn_of(top_seq, 4)), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(sqn_of(1, 4)), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(kSqnMax + 1), SqnVerdict::Replayed);
}

TEST(SqnArray, FromHighestIsTheMostPermissiveConsistentState) {
    const SqnState s = SqnState::from_highest(sqn_of(20, 3));
    EXPECT_EQ(s.highest_sqn(), sqn_of(20, 3));
    EXPECT_EQ(s.check(sqn_of(20, 3)), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(sqn_of(20, 2)), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(sqn_of(20, 4)), SqnVerdict::Fresh);
    EXPECT_EQ(s.check(sqn_of(21, 0)), SqnVerdict::Fresh);
}

TEST(SqnArray, RestoreRejectsInconsistentArrays) {
    SqnConfig cfg;
    cfg.ind_bits = 2;
    EXPECT_NO_THROW(SqnState(cfg, {1, 2, 3, 4}));
    EXPECT_THROW(SqnState(cfg, {1, 2, 3}), InvalidArgument);
    EXPECT_THROW(SqnState(cfg, {1, 2, 3, std::uint64_t{1} << 46}), InvalidArgument);
    cfg.ind_bits = 11;
    EXPECT_THROW(SqnState{cfg}, InvalidArgument);
}

TEST(SqnArray, IndBitsZeroIsAPlainCounter) {
    SqnConfig cfg;
    cfg.ind_bits = 0;
    SqnState s(cfg);
    s = s.accept(5);
    EXPECT_EQ(s.check(5), SqnVerdict::Replayed);
    EXPECT_EQ(s.check(6), SqnVerdict::Fresh);
    EXPECT_EQ(s.highest_sqn(), 5u);
}

TEST(Resync, RejectsAutsWithABadMacAndWrongLengths) {
    auto m = set1();
    Bytes auts = make_auts(*m->begin(rand_n(8)), 12345).to_bytes();
    EXPECT_EQ(resync(*m, rand_n(8), auts), std::optional<std::uint64_t>(12345));
    auts[13] ^= 0x10;
    EXPECT_FALSE(resync(*m, rand_n(8), auts).has_value());
    EXPECT_THROW(resync(*m, rand_n(8), Bytes(13, 0)), InvalidArgument);
    EXPECT_THROW(resync(*m, rand_n(8), Bytes(15, 0)), InvalidArgument);
}

TEST(GenerateVector, RejectsSqnBeyond48Bits) {
    auto m = set1();
    EXPECT_THROW(generate_vector(*m, rand_n(9), kSqnMax + 1, kAmf), InvalidArgument);
    EXPECT_NO_THROW(generate_vector(*m, rand_n(9), kSqnMax, kAmf));
}

TEST(RandomRand, DiffersBetweenCalls) {
    EXPECT_NE(random_rand(), random_rand());
}

} // namespace
