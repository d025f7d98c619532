#pragma once
// The interface every 3GPP authentication algorithm set (Milenage, TUAK) offers
// to the AKA procedures in aka.hpp. Functions follow TS 33.102 §6.3.2:
//   f1  -> MAC-A over (RAND, SQN, AMF)      f1* -> MAC-S over (RAND, SQN_MS, AMF*)
//   f2  -> RES   f3 -> CK   f4 -> IK   f5 -> AK      f5* -> AK* (resynchronisation)
// An AkaComputation is bound to one RAND, so that work depending only on RAND
// (Milenage's TEMP = E_K(RAND xor OPc)) is done once per authentication.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "bytes.hpp"
#include "secret.hpp"

namespace tresim::usim {

using Rand = std::array<std::uint8_t, 16>;
using Sqn = std::array<std::uint8_t, 6>;
using Amf = std::array<std::uint8_t, 2>;
using Ak = std::array<std::uint8_t, 6>;

// Output sizes of one configured algorithm, in bytes.
struct OutputSizes {
    std::size_t mac = 8; // MAC-A and MAC-S
    std::size_t res = 8;
    std::size_t ck = 16;
    std::size_t ik = 16;
};

// Inline buffers sized for the largest values TUAK allows (256 bits).
using Res = FixedBytes<32>;
using Mac = FixedBytes<32>;
using CipherKey = SecretBuffer<32>; // CK or IK

struct F2345 {
    Res res;
    CipherKey ck;
    CipherKey ik;
    Ak ak{};
};

// What one authentication vector needs: f1 and f2..f5.
struct VectorOutputs {
    Mac mac_a;
    Res res;
    CipherKey ck;
    CipherKey ik;
    Ak ak{};
};

// Everything one RAND/SQN/AMF gives: what 3GPP test data lists, and what the
// network side needs for a vector plus the resynchronisation values.
struct AllOutputs {
    Mac mac_a;    // f1
    Mac mac_s;    // f1*
    Res res;      // f2
    CipherKey ck; // f3
    CipherKey ik; // f4
    Ak ak{};      // f5
    Ak ak_star{}; // f5*
};

class AkaComputation {
public:
    virtual ~AkaComputation() = default;
    virtual Mac f1(const Sqn& sqn, const Amf& amf) = 0;
    virtual Mac f1star(const Sqn& sqn, const Amf& amf) = 0;
    virtual F2345 f2345() = 0;
    virtual Ak f5star() = 0;
    // All of the above in as few block operations as the algorithm allows.
    virtual AllOutputs all(const Sqn& sqn, const Amf& amf) = 0;
    // f1 and f2..f5 only (a network-side vector). The default runs f2345() and
    // f1(); an algorithm may batch them.
    virtual VectorOutputs vector(const Sqn& sqn, const Amf& amf) {
        F2345 f = f2345();
        return VectorOutputs{f1(sqn, amf), f.res, f.ck, f.ik, f.ak};
    }
};

class AkaAlgorithm {
public:
    virtual ~AkaAlgorithm() = default;
    virtual std::unique_ptr<AkaComputation> begin(const Rand& rand) = 0;
    virtual OutputSizes sizes() const = 0;
    // "milenage" or "tuak"
    virtual const char* name() const = 0;
};

} // namespace tresim::usim
