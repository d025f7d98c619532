#pragma once
// TUAK (3GPP TS 35.231): the Keccak-based alternative to Milenage, with every
// parameter the specification allows.

#include <array>
#include <cstdint>

#include "aka_algorithm.hpp"

namespace tresim::usim {

struct TuakParams {
    unsigned mac_bits = 64;         // 64, 128, 256
    unsigned res_bits = 64;         // 32, 64, 128, 256
    unsigned ck_bits = 128;         // 128, 256
    unsigned ik_bits = 128;         // 128, 256
    unsigned keccak_iterations = 1; // >= 1 (up to 255)
    // InvalidArgument naming "mac-bits", "res-bits", "ck-bits", "ik-bits" or
    // "keccak-iterations" when a value is not one TS 35.231 allows.
    void validate() const;
};

using Top = std::array<std::uint8_t, 32>;
using Topc = SecretArray<32>;

class Tuak final : public AkaAlgorithm {
public:
    // K is 16 or 32 bytes (InvalidArgument("k") otherwise); params are validated.
    Tuak(SecretBytes k, const Topc& topc, TuakParams params);

    // TOPc from TOP (TS 35.231 §6.2).
    static Topc compute_topc(ByteView k, const Top& top, unsigned keccak_iterations);

    std::unique_ptr<AkaComputation> begin(const Rand& rand) override;
    OutputSizes sizes() const override;
    const char* name() const override { return "tuak"; }
    const TuakParams& params() const noexcept { return params_; }

private:
    SecretBytes k_;
    Topc topc_;
    TuakParams params_;
};

} // namespace tresim::usim
