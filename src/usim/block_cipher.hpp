#pragma once
// E_K, the 128-bit block cipher Milenage is built on, as an interface: software
// AES here, TPM-resident AES in the TE core. encrypt() takes several independent
// blocks at once so that an implementation can do them in one call (one EVP call,
// one TPM command).

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "secret.hpp"

namespace tresim::usim {

using Block = std::array<std::uint8_t, 16>;

class BlockCipher {
public:
    virtual ~BlockCipher() = default;
    // out[i] = E_K(in[i]); in and out have the same length and may not overlap.
    virtual void encrypt(std::span<const Block> in, std::span<Block> out) = 0;
};

// AES-128 with OpenSSL's EVP, one context created at construction and reused for
// every call (no per-call key schedule). The key lives only in OpenSSL's context.
class SoftwareAes128 final : public BlockCipher {
public:
    explicit SoftwareAes128(ByteView key); // 16 bytes, else InvalidArgument("k")
    ~SoftwareAes128() override;
    SoftwareAes128(const SoftwareAes128&) = delete;
    SoftwareAes128& operator=(const SoftwareAes128&) = delete;
    void encrypt(std::span<const Block> in, std::span<Block> out) override;

private:
    struct Ctx;
    std::unique_ptr<Ctx> ctx_;
};

} // namespace tresim::usim
