#include "hash_alg.hpp"

#include <array>

namespace tresim::tpm {

namespace {

constexpr std::array<HashAlgorithm, 5> kHashes{{
    {TPM2_ALG_SHA1, "sha1", TPM2_SHA1_DIGEST_SIZE, &EVP_sha1},
    {TPM2_ALG_SHA256, "sha256", TPM2_SHA256_DIGEST_SIZE, &EVP_sha256},
    {TPM2_ALG_SHA384, "sha384", TPM2_SHA384_DIGEST_SIZE, &EVP_sha384},
    {TPM2_ALG_SHA512, "sha512", TPM2_SHA512_DIGEST_SIZE, &EVP_sha512},
    {TPM2_ALG_SM3_256, "sm3_256", TPM2_SM3_256_DIGEST_SIZE, nullptr},
}};

const HashAlgorithm* in_software(const HashAlgorithm* h) noexcept {
    return h != nullptr && h->in_software() ? h : nullptr;
}

} // namespace

const HashAlgorithm* find_hash(TPMI_ALG_HASH alg) noexcept {
    for (const HashAlgorithm& h : kHashes) {
        if (h.alg == alg) {
            return &h;
        }
    }
    return nullptr;
}

std::size_t digest_size(TPMI_ALG_HASH alg) noexcept {
    const HashAlgorithm* h = find_hash(alg);
    return h != nullptr ? h->digest_size : 0;
}

const HashAlgorithm* find_hash(std::string_view name) noexcept {
    for (const HashAlgorithm& h : kHashes) {
        if (h.name == name) {
            return &h;
        }
    }
    return nullptr;
}

const HashAlgorithm* find_software_hash(TPMI_ALG_HASH alg) noexcept {
    return in_software(find_hash(alg));
}

const HashAlgorithm* find_software_hash(std::string_view name) noexcept {
    return in_software(find_hash(name));
}

std::optional<std::string_view> hash_name(TPMI_ALG_HASH alg) noexcept {
    const HashAlgorithm* h = find_hash(alg);
    if (h == nullptr) {
        return std::nullopt;
    }
    return h->name;
}

} // namespace tresim::tpm
