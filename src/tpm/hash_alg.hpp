#pragma once
// The hash algorithms tresim knows by name: TPM algorithm identifier, the name
// tpm2-tools and the PCR selection syntax use ("sha256"), the digest size and
// OpenSSL's implementation. The one table behind PCR bank names, event-log
// digest sizes and the capability probe.

#include <cstddef>
#include <optional>
#include <string_view>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

namespace tresim::tpm {

struct HashAlgorithm {
    TPMI_ALG_HASH alg = TPM2_ALG_NULL;
    std::string_view name; // "sha256"
    std::size_t digest_size = 0;
    // OpenSSL's digest, or nullptr where tresim cannot compute it (SM3).
    const EVP_MD* (*md)() = nullptr;

    // Whether tresim computes this digest in software: the PCR banks it can
    // parse, replay and check.
    bool in_software() const noexcept { return md != nullptr; }
};

// sha1, sha256, sha384, sha512 and sm3_256; nullptr for any other.
const HashAlgorithm* find_hash(TPMI_ALG_HASH alg) noexcept;
const HashAlgorithm* find_hash(std::string_view name) noexcept;

// The same, restricted to the algorithms tresim computes in software.
const HashAlgorithm* find_software_hash(TPMI_ALG_HASH alg) noexcept;
const HashAlgorithm* find_software_hash(std::string_view name) noexcept;

// The digest size of a known algorithm (32 for sha256), else 0.
std::size_t digest_size(TPMI_ALG_HASH alg) noexcept;

// The name of a known algorithm ("sha256"), else nothing.
std::optional<std::string_view> hash_name(TPMI_ALG_HASH alg) noexcept;

} // namespace tresim::tpm
