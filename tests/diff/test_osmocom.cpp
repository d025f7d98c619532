// Differential tests: tresim's Milenage, AKA and GSM conversion against libosmocore's
// (osmo_auth_gen_vec / osmo_auth_gen_vec_auts, OSMO_AUTH_ALG_MILENAGE) over many
// random inputs. The seed is printed with every failure; rerun one with
// TRESIM_DIFF_SEED=<seed>. TRESIM_DIFF_ITERATIONS overrides the number of rounds.

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <variant>

#include <gtest/gtest.h>

#include "usim/aka.hpp"
#include "usim/block_cipher.hpp"
#include "usim/bytes.hpp"
#include "usim/gsm.hpp"
#include "usim/milenage.hpp"

extern "C" {
#include <osmocom/crypt/auth.h>
}

namespace {

using namespace tresim;
using namespace tresim::usim;

std::uint64_t seed() {
    static const std::uint64_t s = [] {
        if (const char* e = std::getenv("TRESIM_DIFF_SEED")) {
            return static_cast<std::uint64_t>(std::stoull(e));
        }
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }();
    return s;
}

int iterations() {
    if (const char* e = std::getenv("TRESIM_DIFF_ITERATIONS")) {
        return std::stoi(e);
    }
    return 20000;
}

std::string seed_note() {
    return "seed " + std::to_string(seed()) +
           " (rerun with TRESIM_DIFF_SEED=" + std::to_string(seed()) + ")";
}

template <std::size_t N> std::array<std::uint8_t, N> random_bytes(std::mt19937_64& rng) {
    std::array<std::uint8_t, N> out{};
    for (auto& b : out) {
        b = static_cast<std::uint8_t>(rng());
    }
    return out;
}

std::uint64_t uniform(std::mt19937_64& rng, std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
}

std::string hex(ByteView b) {
    return hex_encode(b);
}

// One random subscriber, known to both implementations. With op_mode the operator
// constant is OP (osmocom derives OPc itself, tresim through Milenage::compute_opc).
struct Subscriber {
    std::array<std::uint8_t, 16> k{};
    std::array<std::uint8_t, 16> op_or_opc{};
    bool op_mode = false;
    Amf amf{};
    unsigned ind_bits = 0;
    unsigned ind = 0;

    static Subscriber random(std::mt19937_64& rng) {
        Subscriber s;
        s.k = random_bytes<16>(rng);
        s.op_or_opc = random_bytes<16>(rng);
        s.op_mode = (rng() & 1) != 0;
        s.amf = random_bytes<2>(rng);
        s.ind_bits = static_cast<unsigned>(uniform(rng, 0, 10));
        s.ind = static_cast<unsigned>(uniform(rng, 0, (1u << s.ind_bits) - 1));
        return s;
    }

    osmo_sub_auth_data osmocom(std::uint64_t last_sqn) const {
        osmo_sub_auth_data aud{};
        aud.type = OSMO_AUTH_TYPE_UMTS;
        aud.algo = OSMO_AUTH_ALG_MILENAGE;
        std::memcpy(aud.u.umts.k, k.data(), 16);
        std::memcpy(aud.u.umts.opc, op_or_opc.data(), 16);
        aud.u.umts.opc_is_op = op_mode ? 1 : 0;
        std::memcpy(aud.u.umts.amf, amf.data(), 2);
        aud.u.umts.sqn = last_sqn;
        aud.u.umts.ind_bitlen = ind_bits;
        aud.u.umts.ind = ind;
        return aud;
    }

    std::unique_ptr<Milenage> tresim() const {
        if (!op_mode) {
            return Milenage::software(k, op_or_opc);
        }
        SoftwareAes128 ek(k);
        const Opc opc = Milenage::compute_opc(ek, op_or_opc);
        return Milenage::software(k, opc.view());
    }

    SqnConfig usim_config() const {
        SqnConfig c;
        c.ind_bits = ind_bits;
        return c;
    }

    // What osmo_auth_gen_vec uses after last_sqn: the next SEQ, with our IND.
    std::uint64_t next_sqn(std::uint64_t last_sqn) const {
        const std::uint64_t step = std::uint64_t{1} << ind_bits;
        return ((last_sqn + step) & ~(step - 1)) | ind;
    }

    std::string describe() const {
        return "k=" + hex(k) + (op_mode ? " op=" : " opc=") + hex(op_or_opc) + " amf=" + hex(amf) +
               " ind-bits=" + std::to_string(ind_bits) + " ind=" + std::to_string(ind);
    }
};

// A previous SQN for osmocom: mostly anywhere in 48 bits, sometimes tiny.
std::uint64_t random_last_sqn(std::mt19937_64& rng) {
    constexpr std::uint64_t kHeadroom = std::uint64_t{1} << 12; // next SQN stays within 48 bits
    if (rng() % 8 == 0) {
        return uniform(rng, 0, 2000);
    }
    return uniform(rng, 0, kSqnMax - kHeadroom);
}

// Runs body(i) for every round and stops at the first round that failed, naming it.
template <class Body> void rounds(std::uint64_t salt, Body body) {
    SCOPED_TRACE(seed_note());
    std::mt19937_64 rng(seed() ^ salt);
    const int n = iterations();
    for (int i = 0; i < n; ++i) {
        body(rng);
        if (::testing::Test::HasFailure()) {
            ADD_FAILURE() << "first failing round: " << i << " of " << n;
            return;
        }
    }
}

TEST(DiffOsmocom, NetworkVectorsAndGsmTripletsMatchLibosmocore) {
    rounds(0x6e6574, [](std::mt19937_64& rng) {
        const Subscriber sub = Subscriber::random(rng);
        const std::uint64_t last = random_last_sqn(rng);
        const Rand rand = random_bytes<16>(rng);
        SCOPED_TRACE(sub.describe() + " last-sqn=" + std::to_string(last) + " rand=" + hex(rand));

        osmo_sub_auth_data aud = sub.osmocom(last);
        osmo_auth_vector vec{};
        ASSERT_EQ(osmo_auth_gen_vec(&vec, &aud, rand.data()), 0);
        const std::uint64_t sqn = sub.next_sqn(last);
        ASSERT_EQ(aud.u.umts.sqn, sqn) << "osmocom chose another SQN than expected";
        ASSERT_EQ(vec.auth_types, unsigned{OSMO_AUTH_TYPE_UMTS | OSMO_AUTH_TYPE_GSM});
        ASSERT_EQ(vec.res_len, 8);

        auto m = sub.tresim();
        const AuthVector v = generate_vector(*m, rand, sqn, sub.amf);
        EXPECT_EQ(hex(v.autn), hex(ByteView(vec.autn, 16)));
        EXPECT_EQ(hex(v.xres), hex(ByteView(vec.res, vec.res_len)));
        EXPECT_EQ(v.ck.reveal_hex(), hex(ByteView(vec.ck, 16)));
        EXPECT_EQ(v.ik.reveal_hex(), hex(ByteView(vec.ik, 16)));
        EXPECT_EQ(hex(v.rand), hex(rand));

        const GsmContext g = gsm_authenticate(*m, rand);
        EXPECT_EQ(hex(g.sres), hex(ByteView(vec.sres, 4)));
        EXPECT_EQ(hex(g.kc.view()), hex(ByteView(vec.kc, 8)));
        // GSM-Milenage's SRES#2 is the first 32 bits of RES.
        EXPECT_EQ(hex(g.sres2), hex(ByteView(vec.res, 4)));
        // c2/c3 alone agree with osmocom's conversion too.
        std::array<std::uint8_t, 8> kc{};
        osmo_auth_c3(kc.data(), vec.ck, vec.ik);
        EXPECT_EQ(hex(c3(v.ck.view(), v.ik.view()).view()), hex(kc));
    });
}

TEST(DiffOsmocom, UsimAcceptsLibosmocoreVectorsWithTheSameKeys) {
    rounds(0x7573696d, [](std::mt19937_64& rng) {
        const Subscriber sub = Subscriber::random(rng);
        const std::uint64_t last = random_last_sqn(rng);
        const Rand rand = random_bytes<16>(rng);
        SCOPED_TRACE(sub.describe() + " last-sqn=" + std::to_string(last) + " rand=" + hex(rand));

        osmo_sub_auth_data aud = sub.osmocom(last);
        osmo_auth_vector vec{};
        ASSERT_EQ(osmo_auth_gen_vec(&vec, &aud, rand.data()), 0);
        const std::uint64_t sqn = sub.next_sqn(last);
        ASSERT_EQ(aud.u.umts.sqn, sqn);

        auto m = sub.tresim();
        const SqnState state = SqnState::from_highest(last, sub.usim_config());
        const AkaResult r = usim_authenticate(*m, state, rand, ByteView(vec.autn, 16));
        ASSERT_TRUE(std::holds_alternative<AkaSuccess>(r))
            << "index " << r.index() << " (1 = sync failure, 2 = MAC failure)";
        const auto& ok = std::get<AkaSuccess>(r);
        EXPECT_EQ(ok.sqn, sqn);
        EXPECT_EQ(hex(ok.res), hex(ByteView(vec.res, vec.res_len)));
        EXPECT_EQ(ok.ck.reveal_hex(), hex(ByteView(vec.ck, 16)));
        EXPECT_EQ(ok.ik.reveal_hex(), hex(ByteView(vec.ik, 16)));
        EXPECT_EQ(ok.state.highest_sqn(), sqn);
        // The same vector a second time is a replay.
        const AkaResult again = usim_authenticate(*m, ok.state, rand, ByteView(vec.autn, 16));
        ASSERT_TRUE(std::holds_alternative<AkaSyncFailure>(again));
        EXPECT_EQ(std::get<AkaSyncFailure>(again).reason, SqnVerdict::Replayed);

        // One flipped bit of MAC-A: a MAC failure, whatever the SQN.
        std::array<std::uint8_t, 16> forged{};
        std::memcpy(forged.data(), vec.autn, 16);
        forged[8 + rng() % 8] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        EXPECT_TRUE(
            std::holds_alternative<AkaMacFailure>(usim_authenticate(*m, state, rand, forged)));
    });
}

TEST(DiffOsmocom, LibosmocoreRecoversSqnMsFromTresimSyncFailures) {
    rounds(0x73796e63, [](std::mt19937_64& rng) {
        const Subscriber sub = Subscriber::random(rng);
        const Rand rand = random_bytes<16>(rng);
        const Rand rand2 = random_bytes<16>(rng);
        const std::uint64_t step = std::uint64_t{1} << sub.ind_bits;
        const std::uint64_t delta = SqnConfig{}.delta;

        // The network's SQN, and a USIM state that refuses it: either the USIM has
        // seen a higher SEQ (by two, so every IND slot has, C.3.2), or the network
        // jumped more than delta ahead (C.2.1).
        const bool replay = rng() % 4 != 0;
        std::uint64_t last = 0;
        std::uint64_t sqn_ms = 0;
        if (replay) {
            last = uniform(rng, 0, (kSqnMax >> 1));
            sqn_ms = sub.next_sqn(last) + 2 * step + uniform(rng, 0, std::uint64_t{1} << 30);
        } else {
            sqn_ms = uniform(rng, step, kSqnMax >> 2);
            last = sqn_ms + (delta + 2) * step + uniform(rng, 0, std::uint64_t{1} << 40);
        }
        SCOPED_TRACE(sub.describe() + " last-sqn=" + std::to_string(last) +
                     " sqn-ms=" + std::to_string(sqn_ms) + " rand=" + hex(rand));

        osmo_sub_auth_data aud = sub.osmocom(last);
        osmo_auth_vector vec{};
        ASSERT_EQ(osmo_auth_gen_vec(&vec, &aud, rand.data()), 0);

        auto m = sub.tresim();
        const SqnState state = SqnState::from_highest(sqn_ms, sub.usim_config());
        ASSERT_EQ(state.highest_sqn(), sqn_ms);
        const AkaResult r = usim_authenticate(*m, state, rand, ByteView(vec.autn, 16));
        ASSERT_TRUE(std::holds_alternative<AkaSyncFailure>(r)) << "index " << r.index();
        const auto& fail = std::get<AkaSyncFailure>(r);
        EXPECT_EQ(fail.reason, replay ? SqnVerdict::Replayed : SqnVerdict::TooFar);
        ASSERT_EQ(fail.auts.size(), 14u);

        // Both network sides recover SQN_MS from the AUTS.
        const std::optional<std::uint64_t> ours = resync(*m, rand, fail.auts);
        ASSERT_TRUE(ours.has_value());
        EXPECT_EQ(*ours, sqn_ms);
        osmo_auth_vector vec2{};
        ASSERT_EQ(osmo_auth_gen_vec_auts(&vec2, &aud, fail.auts.data(), rand.data(), rand2.data()),
                  0);
        EXPECT_EQ(aud.u.umts.sqn_ms, sqn_ms);

        // osmocom's vector after the resynchronisation is fresh for the USIM.
        const std::uint64_t next = sub.next_sqn(sqn_ms);
        EXPECT_EQ(aud.u.umts.sqn, next);
        const AkaResult r2 = usim_authenticate(*m, state, rand2, ByteView(vec2.autn, 16));
        ASSERT_TRUE(std::holds_alternative<AkaSuccess>(r2)) << "index " << r2.index();
        EXPECT_EQ(std::get<AkaSuccess>(r2).sqn, next);
        EXPECT_EQ(hex(std::get<AkaSuccess>(r2).res), hex(ByteView(vec2.res, vec2.res_len)));
    });
}

TEST(DiffOsmocom, LibosmocoreAcceptsAutsFromMakeAutsAndBothRejectTamperedOnes) {
    rounds(0x61757473, [](std::mt19937_64& rng) {
        const Subscriber sub = Subscriber::random(rng);
        const Rand rand = random_bytes<16>(rng);
        const Rand rand2 = random_bytes<16>(rng);
        const std::uint64_t sqn_ms =
            rng() % 8 == 0 ? uniform(rng, 0, 2000) : uniform(rng, 0, kSqnMax);
        SCOPED_TRACE(sub.describe() + " sqn-ms=" + std::to_string(sqn_ms) + " rand=" + hex(rand));

        auto m = sub.tresim();
        const Auts auts = make_auts(*m->begin(rand), sqn_ms);
        ASSERT_EQ(auts.size(), 14u);

        osmo_sub_auth_data aud = sub.osmocom(0);
        osmo_auth_vector vec{};
        ASSERT_EQ(osmo_auth_gen_vec_auts(&vec, &aud, auts.data(), rand.data(), rand2.data()), 0);
        EXPECT_EQ(aud.u.umts.sqn_ms, sqn_ms);
        const std::optional<std::uint64_t> ours = resync(*m, rand, auts);
        ASSERT_TRUE(ours.has_value());
        EXPECT_EQ(*ours, sqn_ms);

        // One flipped bit anywhere (concealed SQN or MAC-S): both refuse it.
        Bytes bad = auts.to_bytes();
        bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        osmo_sub_auth_data aud2 = sub.osmocom(0);
        osmo_auth_vector vec3{};
        EXPECT_LT(osmo_auth_gen_vec_auts(&vec3, &aud2, bad.data(), rand.data(), rand2.data()), 0);
        EXPECT_FALSE(resync(*m, rand, bad).has_value());
        // The right AUTS under another RAND is refused too.
        EXPECT_FALSE(resync(*m, rand2, auts).has_value());
    });
}

} // namespace
