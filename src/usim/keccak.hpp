#pragma once
// The Keccak-f[1600] permutation (FIPS 202 §3), written for TUAK.

#include <array>
#include <cstdint>

namespace tresim::usim {

using KeccakState = std::array<std::uint64_t, 25>; // lane (x, y) at index x + 5*y

// 24 rounds of Keccak-f[1600] in place.
void keccak_f1600(KeccakState& state) noexcept;

} // namespace tresim::usim
