#include "kdf.hpp"

#include <array>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace tresim::usim {

namespace {

struct MacDeleter {
    void operator()(EVP_MAC* p) const noexcept { EVP_MAC_free(p); }
};
struct MacCtxDeleter {
    void operator()(EVP_MAC_CTX* p) const noexcept { EVP_MAC_CTX_free(p); }
};
struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
using MacPtr = std::unique_ptr<EVP_MAC, MacDeleter>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

constexpr std::size_t kKeyHalf = 16;     // CK and IK
constexpr std::size_t kOutput = 32;      // HMAC-SHA-256
constexpr std::size_t kResStarSize = 16; // RES*, XRES*, HXRES*
constexpr std::size_t kKausfSize = 32;
constexpr std::size_t kMinResSize = 4; // RES is 32 to 128 bits (TS 33.102 §6.3.2)
constexpr std::size_t kMaxResSize = 16;

[[noreturn]] void crypto_failure(const char* what) {
    throw std::runtime_error(std::string("OpenSSL failed: ") + what);
}

ByteView text_view(std::string_view text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

void require_not_empty(std::string_view text, const char* argument) {
    if (text.empty()) {
        throw InvalidArgument(argument, "must not be empty");
    }
}

bool all_digits(std::string_view text) {
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

// CK || IK in secure memory, after checking both sizes.
SecretArray<2 * kKeyHalf> ck_ik_key(ByteView ck, ByteView ik) {
    require_size(ck, kKeyHalf, "ck");
    require_size(ik, kKeyHalf, "ik");
    SecretArray<2 * kKeyHalf> key;
    std::copy(ck.begin(), ck.end(), key.data());
    std::copy(ik.begin(), ik.end(), key.data() + kKeyHalf);
    return key;
}

// HMAC-SHA-256 over the concatenation of parts.
SecretBytes hmac_parts(ByteView key, std::span<const ByteView> parts) {
    const MacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (!mac) {
        crypto_failure("EVP_MAC_fetch(HMAC)");
    }
    const MacCtxPtr ctx(EVP_MAC_CTX_new(mac.get()));
    if (!ctx) {
        crypto_failure("EVP_MAC_CTX_new");
    }
    char digest[] = "SHA256";
    const std::array<OSSL_PARAM, 2> params{
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end()};
    // HMAC accepts an empty key; OpenSSL wants a non-null pointer for it.
    static constexpr std::uint8_t no_key = 0;
    if (EVP_MAC_init(ctx.get(), key.empty() ? &no_key : key.data(), key.size(), params.data()) !=
        1) {
        crypto_failure("EVP_MAC_init");
    }
    for (const ByteView part : parts) {
        if (!part.empty() && EVP_MAC_update(ctx.get(), part.data(), part.size()) != 1) {
            crypto_failure("EVP_MAC_update");
        }
    }
    SecretBytes out(kOutput);
    std::size_t written = 0;
    if (EVP_MAC_final(ctx.get(), out.data(), &written, out.size()) != 1 || written != kOutput) {
        crypto_failure("EVP_MAC_final");
    }
    return out;
}

} // namespace

SecretBytes hmac_sha256(ByteView key, std::initializer_list<ByteView> data) {
    return hmac_parts(key, std::span<const ByteView>(data.begin(), data.size()));
}

SecretBytes kdf(ByteView key, std::uint8_t fc, std::initializer_list<ByteView> params) {
    // S = FC || P0 || L0 || ... ; the lengths are built here, the parameters are passed
    // through without copying (some of them are secrets).
    std::vector<std::array<std::uint8_t, 2>> lengths;
    lengths.reserve(params.size());
    for (const ByteView p : params) {
        if (p.size() > 0xffff) {
            throw InvalidArgument("kdf-parameter", "longer than 65535 bytes");
        }
        lengths.push_back(
            {static_cast<std::uint8_t>(p.size() >> 8), static_cast<std::uint8_t>(p.size() & 0xff)});
    }
    std::vector<ByteView> parts;
    parts.reserve(1 + 2 * params.size());
    const std::array<std::uint8_t, 1> fc_byte{fc};
    parts.emplace_back(fc_byte);
    std::size_t i = 0;
    for (const ByteView p : params) {
        parts.push_back(p);
        parts.emplace_back(lengths[i]);
        ++i;
    }

    return hmac_parts(key, parts);
}

std::string serving_network_name(std::string_view mcc, std::string_view mnc) {
    if (mcc.size() != 3 || !all_digits(mcc)) {
        throw InvalidArgument("mcc-mnc", "the MCC must be 3 decimal digits");
    }
    if ((mnc.size() != 2 && mnc.size() != 3) || !all_digits(mnc)) {
        throw InvalidArgument("mcc-mnc", "the MNC must be 2 or 3 decimal digits");
    }
    std::string name = "5G:mnc";
    if (mnc.size() == 2) {
        name += '0';
    }
    name += mnc;
    name += ".mcc";
    name += mcc;
    name += ".3gppnetwork.org";
    return name;
}

Bytes derive_res_star(ByteView ck, ByteView ik, std::string_view serving_network_name,
                      const Rand& rand, ByteView res) {
    const auto key = ck_ik_key(ck, ik);
    require_not_empty(serving_network_name, "serving-network-name");
    if (res.size() < kMinResSize || res.size() > kMaxResSize) {
        throw InvalidArgument("res", "must be 4 to 16 bytes (32 to 128 bits), got " +
                                         std::to_string(res.size()));
    }
    const SecretBytes out = kdf(key.view(), 0x6b, {text_view(serving_network_name), rand, res});
    return {out.view().begin() + (kOutput - kResStarSize), out.view().end()};
}

Bytes derive_hxres_star(const Rand& rand, ByteView xres_star) {
    require_size(xres_star, kResStarSize, "xres-star");
    const MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx) {
        crypto_failure("EVP_MD_CTX_new");
    }
    std::array<std::uint8_t, kOutput> digest{};
    unsigned int written = 0;
    if (EVP_DigestInit_ex2(ctx.get(), EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), rand.data(), rand.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), xres_star.data(), xres_star.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), digest.data(), &written) != 1 || written != kOutput) {
        crypto_failure("SHA-256");
    }
    return {digest.begin() + (kOutput - kResStarSize), digest.end()};
}

SecretBytes derive_kausf(ByteView ck, ByteView ik, std::string_view serving_network_name,
                         const Ak& sqn_xor_ak) {
    const auto key = ck_ik_key(ck, ik);
    require_not_empty(serving_network_name, "serving-network-name");
    return kdf(key.view(), 0x6a, {text_view(serving_network_name), sqn_xor_ak});
}

SecretBytes derive_kseaf(ByteView kausf, std::string_view serving_network_name) {
    require_size(kausf, kKausfSize, "kausf");
    require_not_empty(serving_network_name, "serving-network-name");
    return kdf(kausf, 0x6c, {text_view(serving_network_name)});
}

CkIkPrime derive_ck_ik_prime(ByteView ck, ByteView ik, std::string_view access_network_identity,
                             const Ak& sqn_xor_ak) {
    const auto key = ck_ik_key(ck, ik);
    require_not_empty(access_network_identity, "access-network-identity");
    const SecretBytes out = kdf(key.view(), 0x20, {text_view(access_network_identity), sqn_xor_ak});
    CkIkPrime result;
    result.ck_prime = SecretBytes(out.view().first(kKeyHalf));
    result.ik_prime = SecretBytes(out.view().subspan(kKeyHalf, kKeyHalf));
    return result;
}

} // namespace tresim::usim
