#include "vault.hpp"

#include <fstream>
#include <iterator>
#include <memory>

#include <openssl/evp.h>
#include <openssl/rand.h>

namespace tresim::ps {
namespace {

constexpr std::size_t kNonce = 12;
constexpr std::size_t kTag = 16;

struct CipherCtxFree {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

ByteView aad_of(std::string_view id) {
    return {reinterpret_cast<const std::uint8_t*>(id.data()), id.size()};
}

} // namespace

Vault Vault::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw InvalidArgument("at_rest_key", "cannot read the key file " + path);
    }
    SecretBytes text(65);
    in.read(reinterpret_cast<char*>(text.data()), 65);
    std::size_t n = static_cast<std::size_t>(in.gcount());
    const bool more = in.peek() != std::char_traits<char>::eof();
    if (n == 65 && text[64] == '\n' && !more) {
        n = 64;
    }
    if (n != 64 || more) {
        throw InvalidArgument("at_rest_key",
                              "the key file " + path + " must hold 64 hex digits (32 bytes)");
    }
    const std::string_view hex(reinterpret_cast<const char*>(text.data()), 64);
    try {
        return Vault(SecretBytes::from_hex(hex, "at_rest_key", 32));
    } catch (const InvalidArgument&) {
        throw InvalidArgument("at_rest_key",
                              "the key file " + path + " must hold 64 hex digits (32 bytes)");
    }
}

Vault::Vault(SecretBytes key) : key_(std::move(key)) {
    if (key_.size() != 32) {
        throw InvalidArgument("at_rest_key", "must be 32 bytes");
    }
}

Bytes Vault::seal(const SecretBytes& plain, std::string_view record_id) const {
    Bytes out(kNonce + plain.size() + kTag);
    if (RAND_bytes(out.data(), kNonce) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
    int len = 0;
    const ByteView aad = aad_of(record_id);
    if (!ctx ||
        EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), out.data()) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) !=
            1 ||
        EVP_EncryptUpdate(ctx.get(), out.data() + kNonce, &len, plain.data(),
                          static_cast<int>(plain.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), out.data() + kNonce + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag,
                            out.data() + kNonce + plain.size()) != 1) {
        throw std::runtime_error("AES-256-GCM encryption failed");
    }
    return out;
}

SecretBytes Vault::open(ByteView sealed, std::string_view record_id) const {
    if (sealed.size() < kNonce + kTag) {
        throw InvalidArgument("secrets", "the encrypted record is too short");
    }
    const std::size_t n = sealed.size() - kNonce - kTag;
    SecretBytes out(n);
    Bytes tag(sealed.end() - kTag, sealed.end());
    CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
    int len = 0;
    const ByteView aad = aad_of(record_id);
    const bool ok = ctx &&
                    EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(),
                                       sealed.data()) == 1 &&
                    EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                                      static_cast<int>(aad.size())) == 1 &&
                    EVP_DecryptUpdate(ctx.get(), out.data(), &len, sealed.data() + kNonce,
                                      static_cast<int>(n)) == 1 &&
                    EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) == 1 &&
                    EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &len) == 1;
    if (!ok) {
        throw InvalidArgument("secrets", "the encrypted record does not decrypt under the "
                                         "at-rest key (altered, moved or another key)");
    }
    return out;
}

} // namespace tresim::ps
