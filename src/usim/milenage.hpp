#pragma once
// Milenage (3GPP TS 35.206) over an abstract E_K, so that K can sit in software
// AES (here) or inside a TPM (the TE core).

#include <memory>

#include "aka_algorithm.hpp"
#include "block_cipher.hpp"

namespace tresim::usim {

using Opc = SecretArray<16>;

class Milenage final : public AkaAlgorithm {
public:
    Milenage(std::unique_ptr<BlockCipher> ek, const Opc& opc);

    // Software Milenage from K and OPc (16 bytes each; InvalidArgument names "k"/"opc").
    static std::unique_ptr<Milenage> software(ByteView k, ByteView opc);
    // OPc = OP xor E_K(OP) (TS 35.206 §4.1).
    static Opc compute_opc(BlockCipher& ek, const Block& op);

    std::unique_ptr<AkaComputation> begin(const Rand& rand) override;
    OutputSizes sizes() const override { return {8, 8, 16, 16}; }
    const char* name() const override { return "milenage"; }

    BlockCipher& cipher() noexcept { return *ek_; }
    const Opc& opc() const noexcept { return opc_; }

private:
    std::unique_ptr<BlockCipher> ek_;
    Opc opc_;
};

} // namespace tresim::usim
