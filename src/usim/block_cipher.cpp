#include "block_cipher.hpp"

#include <stdexcept>

#include <openssl/evp.h>

namespace tresim::usim {

struct SoftwareAes128::Ctx {
    EVP_CIPHER_CTX* ctx = nullptr;
    ~Ctx() { EVP_CIPHER_CTX_free(ctx); }
};

SoftwareAes128::SoftwareAes128(ByteView key) : ctx_(std::make_unique<Ctx>()) {
    require_size(key, 16, "k");
    ctx_->ctx = EVP_CIPHER_CTX_new();
    if (ctx_->ctx == nullptr ||
        EVP_EncryptInit_ex(ctx_->ctx, EVP_aes_128_ecb(), nullptr, key.data(), nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx_->ctx, 0) != 1) {
        throw std::runtime_error("OpenSSL could not set up AES-128-ECB");
    }
}

SoftwareAes128::~SoftwareAes128() = default;

void SoftwareAes128::encrypt(std::span<const Block> in, std::span<Block> out) {
    if (in.size() != out.size()) {
        throw std::logic_error("SoftwareAes128::encrypt: in and out differ in length");
    }
    int len = 0;
    // ECB over consecutive blocks is exactly n independent E_K calls.
    if (EVP_EncryptUpdate(ctx_->ctx, out.data()->data(), &len, in.data()->data(),
                          static_cast<int>(in.size() * 16)) != 1 ||
        static_cast<std::size_t>(len) != in.size() * 16) {
        throw std::runtime_error("OpenSSL AES-128-ECB encryption failed");
    }
}

} // namespace tresim::usim
