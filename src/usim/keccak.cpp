#include "keccak.hpp"

#include <cstddef>

#include "secret.hpp"

namespace tresim::usim {

namespace {

// FIPS 202 §3.2.5: the round constants RC[ir], i.e. the output of the rc(t) LFSR
// placed at bit positions 2^j - 1.
constexpr std::array<std::uint64_t, 24> round_constants{
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

// FIPS 202 §3.2.2: rotation offset of lane (x, y), indexed x + 5*y.
constexpr std::array<unsigned, 25> rho_offsets{
    0,  1,  62, 28, 27, // y = 0
    36, 44, 6,  55, 20, // y = 1
    3,  10, 43, 25, 39, // y = 2
    41, 45, 15, 21, 8,  // y = 3
    18, 2,  61, 56, 14, // y = 4
};

constexpr std::uint64_t rotl(std::uint64_t v, unsigned n) noexcept {
    return n == 0 ? v : (v << n) | (v >> (64 - n));
}

constexpr std::size_t lane(std::size_t x, std::size_t y) noexcept {
    return x + 5 * y;
}

constexpr std::array<std::size_t, 5> kPlus1{1, 2, 3, 4, 0};
constexpr std::array<std::size_t, 5> kPlus2{2, 3, 4, 0, 1};
constexpr std::array<std::size_t, 5> kMinus1{4, 0, 1, 2, 3};

// pi: where lane i = (x, y) goes, lane(y, 2x + 3y).
constexpr std::array<std::size_t, 25> kPi = [] {
    std::array<std::size_t, 25> t{};
    for (std::size_t x = 0; x < 5; ++x) {
        for (std::size_t y = 0; y < 5; ++y) {
            t[lane(x, y)] = lane(y, (2 * x + 3 * y) % 5);
        }
    }
    return t;
}();

} // namespace

// The loops below run over constant bounds with index tables computed at
// compile time; GCC unrolls them fully (the permutation is the whole cost of
// TUAK, and a rolled loop with modulo indexing is five times slower).
void keccak_f1600(KeccakState& a) noexcept {
    std::array<std::uint64_t, 5> c{};
    KeccakState b{};
    for (const std::uint64_t rc : round_constants) {
        // theta: add the parities of two neighbouring columns to every lane.
#pragma GCC unroll 5
        for (std::size_t x = 0; x < 5; ++x) {
            c[x] = a[lane(x, 0)] ^ a[lane(x, 1)] ^ a[lane(x, 2)] ^ a[lane(x, 3)] ^ a[lane(x, 4)];
        }
#pragma GCC unroll 5
        for (std::size_t x = 0; x < 5; ++x) {
            const std::uint64_t d = c[kMinus1[x]] ^ rotl(c[kPlus1[x]], 1);
#pragma GCC unroll 5
            for (std::size_t y = 0; y < 5; ++y) {
                a[lane(x, y)] ^= d;
            }
        }
        // rho and pi: rotate each lane, then move lane (x, y) to (y, 2x + 3y).
#pragma GCC unroll 25
        for (std::size_t i = 0; i < 25; ++i) {
            b[kPi[i]] = rotl(a[i], rho_offsets[i]);
        }
        // chi: the only non-linear step, row by row.
#pragma GCC unroll 5
        for (std::size_t y = 0; y < 5; ++y) {
#pragma GCC unroll 5
            for (std::size_t x = 0; x < 5; ++x) {
                a[lane(x, y)] = b[lane(x, y)] ^ (~b[lane(kPlus1[x], y)] & b[lane(kPlus2[x], y)]);
            }
        }
        // iota
        a[0] ^= rc;
    }
    // b and c held (linear images of) the state, which may carry key material.
    wipe(b.data(), sizeof(b));
    wipe(c.data(), sizeof(c));
}

} // namespace tresim::usim
