#pragma once
// GSM compatibility (TS 33.102 §6.8.1.2, TS 31.102 §7.1.2, TS 55.205).

#include <array>
#include <cstdint>

#include "aka_algorithm.hpp"

namespace tresim::usim {

using Sres = std::array<std::uint8_t, 4>;
using Kc = SecretArray<8>;

// c2: SRES = XOR of the four 32-bit words of RES padded with zeros to 128 bits.
// RES is 4 to 16 bytes, else InvalidArgument("res").
Sres c2(ByteView res);
// c3: Kc = CK1 xor CK2 xor IK1 xor IK2 (64-bit halves). 16-byte CK and IK.
Kc c3(ByteView ck, ByteView ik);

struct GsmContext {
    Sres sres{};  // c2(RES): what a USIM answers in GSM security context
    Sres sres2{}; // GSM-Milenage's alternative SRES: the first 32 bits of RES (TS 55.205)
    Kc kc;
};

// The USIM's GSM security context authentication: f2, f3, f4 on RAND, then c2/c3.
GsmContext gsm_authenticate(AkaAlgorithm& alg, const Rand& rand);

} // namespace tresim::usim
