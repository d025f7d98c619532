// SUCI computation (TS 33.501 §6.12.2 and Annex C.3). The ECIES profiles share one
// pipeline: ECDH with the home network key, the ANSI X9.63 KDF (SHA-256) over the shared
// secret with SharedInfo1 = the ephemeral public key as it appears in the scheme output
// (for profile B the compressed point: the Annex C.4.4 data settle it), giving the
// encryption key (128 bits), the ICB (128 bits) and the MAC key (256 bits); AES-128-CTR;
// HMAC-SHA-256 truncated to 64 bits over the ciphertext.

#include "suci.hpp"

#include <array>
#include <cctype>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "kdf.hpp"

namespace tresim::usim {

namespace {

struct PkeyDeleter {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct PkeyCtxDeleter {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxDeleter {
    void operator()(EVP_CIPHER_CTX* p) const noexcept { EVP_CIPHER_CTX_free(p); }
};
struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct BnDeleter {
    void operator()(BIGNUM* p) const noexcept { BN_clear_free(p); }
};
struct BnCtxDeleter {
    void operator()(BN_CTX* p) const noexcept { BN_CTX_free(p); }
};
struct GroupDeleter {
    void operator()(EC_GROUP* p) const noexcept { EC_GROUP_free(p); }
};
struct PointDeleter {
    void operator()(EC_POINT* p) const noexcept { EC_POINT_clear_free(p); }
};
struct ParamBldDeleter {
    void operator()(OSSL_PARAM_BLD* p) const noexcept { OSSL_PARAM_BLD_free(p); }
};
struct ParamDeleter {
    // OSSL_PARAM_free wipes the secure block that holds a private BIGNUM (OpenSSL 3.0).
    void operator()(OSSL_PARAM* p) const noexcept { OSSL_PARAM_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;
using BnCtxPtr = std::unique_ptr<BN_CTX, BnCtxDeleter>;
using GroupPtr = std::unique_ptr<EC_GROUP, GroupDeleter>;
using PointPtr = std::unique_ptr<EC_POINT, PointDeleter>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ParamDeleter>;

constexpr std::size_t kPrivateKeySize = 32; // X25519 and secp256r1 scalars
constexpr std::size_t kX25519PublicSize = 32;
constexpr std::size_t kCompressedSize = 33;
constexpr std::size_t kUncompressedSize = 65;
constexpr std::size_t kEncKeySize = 16;
constexpr std::size_t kIcbSize = 16;
constexpr std::size_t kMacKeySize = 32;
constexpr std::size_t kKdfOutput = kEncKeySize + kIcbSize + kMacKeySize;
constexpr std::size_t kTagSize = 8;
constexpr std::size_t kMaxImsiDigits = 15;
constexpr const char* kP256Name = "prime256v1";

[[noreturn]] void crypto_failure(const char* what) {
    throw std::runtime_error(std::string("OpenSSL failed: ") + what);
}

bool all_digits(std::string_view text) {
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

std::string upper_hex(ByteView bytes) {
    std::string out = hex_encode(bytes);
    for (char& c : out) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return out;
}

std::size_t public_key_size(SuciProfile profile) {
    return profile == SuciProfile::A ? kX25519PublicSize : kCompressedSize;
}

// ---- X25519 -------------------------------------------------------------------------

PkeyPtr x25519_private(ByteView priv) {
    PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, priv.data(), priv.size()));
    if (!key) {
        crypto_failure("EVP_PKEY_new_raw_private_key(X25519)");
    }
    return key;
}

PkeyPtr x25519_public(ByteView pub) {
    PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, pub.data(), pub.size()));
    if (!key) {
        crypto_failure("EVP_PKEY_new_raw_public_key(X25519)");
    }
    return key;
}

Bytes x25519_public_bytes(EVP_PKEY* key) {
    Bytes out(kX25519PublicSize);
    std::size_t size = out.size();
    if (EVP_PKEY_get_raw_public_key(key, out.data(), &size) != 1 || size != kX25519PublicSize) {
        crypto_failure("EVP_PKEY_get_raw_public_key");
    }
    return out;
}

// ---- secp256r1 ----------------------------------------------------------------------

GroupPtr p256_group() {
    GroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
    if (!group) {
        crypto_failure("EC_GROUP_new_by_curve_name");
    }
    return group;
}

// The scalar as a BIGNUM in secure memory, or null when it is 0 or not below the order.
BnPtr p256_scalar(const EC_GROUP* group, ByteView priv) {
    BnPtr scalar(BN_secure_new());
    if (!scalar || BN_bin2bn(priv.data(), static_cast<int>(priv.size()), scalar.get()) == nullptr) {
        crypto_failure("BN_bin2bn");
    }
    if (BN_is_zero(scalar.get()) || BN_cmp(scalar.get(), EC_GROUP_get0_order(group)) >= 0) {
        return nullptr;
    }
    return scalar;
}

Bytes point_bytes(const EC_GROUP* group, const EC_POINT* point, point_conversion_form_t form,
                  BN_CTX* bn_ctx) {
    Bytes out(form == POINT_CONVERSION_COMPRESSED ? kCompressedSize : kUncompressedSize);
    if (EC_POINT_point2oct(group, point, form, out.data(), out.size(), bn_ctx) != out.size()) {
        crypto_failure("EC_POINT_point2oct");
    }
    return out;
}

PkeyPtr pkey_from_params(const OSSL_PARAM* params, int selection) {
    const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
        crypto_failure("EVP_PKEY_fromdata_init(EC)");
    }
    EVP_PKEY* raw = nullptr;
    // EVP_PKEY_fromdata's params argument is not const in OpenSSL 3.0.
    if (EVP_PKEY_fromdata(ctx.get(), &raw, selection, const_cast<OSSL_PARAM*>(params)) != 1) {
        crypto_failure("EVP_PKEY_fromdata(EC)");
    }
    return PkeyPtr(raw);
}

struct P256Private {
    PkeyPtr key;
    Bytes compressed_public;
};

// A secp256r1 key pair from its 32-byte scalar; nullopt-like (null key) when the scalar is
// out of range.
P256Private p256_private(ByteView priv) {
    const GroupPtr group = p256_group();
    const BnPtr scalar = p256_scalar(group.get(), priv);
    if (!scalar) {
        return {};
    }
    const BnCtxPtr bn_ctx(BN_CTX_secure_new());
    const PointPtr point(EC_POINT_new(group.get()));
    if (!bn_ctx || !point ||
        EC_POINT_mul(group.get(), point.get(), scalar.get(), nullptr, nullptr, bn_ctx.get()) != 1) {
        crypto_failure("EC_POINT_mul");
    }
    const Bytes uncompressed =
        point_bytes(group.get(), point.get(), POINT_CONVERSION_UNCOMPRESSED, bn_ctx.get());

    const ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kP256Name, 0) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, scalar.get()) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, uncompressed.data(),
                                         uncompressed.size()) != 1) {
        crypto_failure("OSSL_PARAM_BLD (EC private key)");
    }
    const ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
    if (!params) {
        crypto_failure("OSSL_PARAM_BLD_to_param");
    }
    P256Private out;
    out.key = pkey_from_params(params.get(), EVP_PKEY_KEYPAIR);
    out.compressed_public =
        point_bytes(group.get(), point.get(), POINT_CONVERSION_COMPRESSED, bn_ctx.get());
    return out;
}

// A secp256r1 public key from its compressed or uncompressed encoding; null when the
// bytes are not a point of the curve (or are the point at infinity).
PkeyPtr p256_public(ByteView encoded) {
    if (encoded.size() != kCompressedSize && encoded.size() != kUncompressedSize) {
        return nullptr;
    }
    const GroupPtr group = p256_group();
    const BnCtxPtr bn_ctx(BN_CTX_new());
    const PointPtr point(EC_POINT_new(group.get()));
    if (!bn_ctx || !point) {
        crypto_failure("EC_POINT_new");
    }
    if (EC_POINT_oct2point(group.get(), point.get(), encoded.data(), encoded.size(),
                           bn_ctx.get()) != 1 ||
        EC_POINT_is_at_infinity(group.get(), point.get()) == 1 ||
        EC_POINT_is_on_curve(group.get(), point.get(), bn_ctx.get()) != 1) {
        return nullptr;
    }
    const Bytes uncompressed =
        point_bytes(group.get(), point.get(), POINT_CONVERSION_UNCOMPRESSED, bn_ctx.get());
    const ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kP256Name, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, uncompressed.data(),
                                         uncompressed.size()) != 1) {
        crypto_failure("OSSL_PARAM_BLD (EC public key)");
    }
    const ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
    if (!params) {
        crypto_failure("OSSL_PARAM_BLD_to_param");
    }
    return pkey_from_params(params.get(), EVP_PKEY_PUBLIC_KEY);
}

// ---- the ECIES pipeline -------------------------------------------------------------

// The raw ECDH shared secret (X25519 output, or the x coordinate for secp256r1). Throws
// InvalidArgument(argument) when the peer key gives no usable secret (a low-order X25519
// point).
SecretBytes ecdh(EVP_PKEY* own, EVP_PKEY* peer, const char* argument) {
    const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, own, nullptr));
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) {
        crypto_failure("EVP_PKEY_derive_init");
    }
    if (EVP_PKEY_derive_set_peer(ctx.get(), peer) != 1) {
        throw InvalidArgument(argument, "is not a usable public key for this profile");
    }
    std::size_t size = 0;
    if (EVP_PKEY_derive(ctx.get(), nullptr, &size) != 1) {
        crypto_failure("EVP_PKEY_derive (size)");
    }
    SecretBytes secret(size);
    if (EVP_PKEY_derive(ctx.get(), secret.data(), &size) != 1) {
        // X25519 refuses an all-zero result, which only a low-order point gives.
        throw InvalidArgument(argument, "gives no usable shared secret (low-order point)");
    }
    secret.resize(size);
    return secret;
}

struct EciesKeys {
    SecretArray<kEncKeySize> enc;
    SecretArray<kIcbSize> icb;
    SecretArray<kMacKeySize> mac;
};

// ANSI X9.63 KDF with SHA-256: K = SHA-256(Z || 00000001 || SharedInfo1) || SHA-256(Z ||
// 00000002 || SharedInfo1), split into encryption key, ICB and MAC key.
EciesKeys derive_ecies_keys(ByteView shared_secret, ByteView shared_info) {
    static_assert(kKdfOutput == 64, "two SHA-256 blocks");
    SecretArray<kKdfOutput> block;
    const MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx) {
        crypto_failure("EVP_MD_CTX_new");
    }
    for (std::uint8_t counter = 1; counter <= 2; ++counter) {
        const std::array<std::uint8_t, 4> counter_be{0, 0, 0, counter};
        unsigned int written = 0;
        if (EVP_DigestInit_ex2(ctx.get(), EVP_sha256(), nullptr) != 1 ||
            EVP_DigestUpdate(ctx.get(), shared_secret.data(), shared_secret.size()) != 1 ||
            EVP_DigestUpdate(ctx.get(), counter_be.data(), counter_be.size()) != 1 ||
            EVP_DigestUpdate(ctx.get(), shared_info.data(), shared_info.size()) != 1 ||
            EVP_DigestFinal_ex(ctx.get(), block.data() + 32 * (counter - 1), &written) != 1 ||
            written != 32) {
            crypto_failure("SHA-256 (X9.63 KDF)");
        }
    }
    EciesKeys keys;
    keys.enc = SecretArray<kEncKeySize>(block.view().first(kEncKeySize));
    keys.icb = SecretArray<kIcbSize>(block.view().subspan(kEncKeySize, kIcbSize));
    keys.mac = SecretArray<kMacKeySize>(block.view().subspan(kEncKeySize + kIcbSize));
    return keys;
}

// AES-128-CTR with the ICB as the initial counter block (encryption and decryption alike).
// The output goes into the caller's buffer, which may be secure memory.
void aes128_ctr(const EciesKeys& keys, ByteView in, std::span<std::uint8_t> out) {
    const CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
    if (!ctx || EVP_EncryptInit_ex2(ctx.get(), EVP_aes_128_ctr(), keys.enc.data(), keys.icb.data(),
                                    nullptr) != 1) {
        crypto_failure("EVP_EncryptInit_ex2(AES-128-CTR)");
    }
    int written = 0;
    if (!in.empty() && (EVP_EncryptUpdate(ctx.get(), out.data(), &written, in.data(),
                                          static_cast<int>(in.size())) != 1 ||
                        static_cast<std::size_t>(written) != in.size())) {
        crypto_failure("EVP_EncryptUpdate(AES-128-CTR)");
    }
    int tail = 0;
    if (EVP_EncryptFinal_ex(ctx.get(), out.data() + written, &tail) != 1 || tail != 0) {
        crypto_failure("EVP_EncryptFinal_ex(AES-128-CTR)");
    }
}

Bytes mac_tag(const EciesKeys& keys, ByteView ciphertext) {
    const SecretBytes full = hmac_sha256(keys.mac.view(), {ciphertext});
    return {full.view().begin(), full.view().begin() + kTagSize};
}

struct Ephemeral {
    PkeyPtr key;
    Bytes public_key; // as the scheme output carries it
};

Ephemeral make_ephemeral(SuciProfile profile, ByteView priv) {
    Ephemeral eph;
    if (profile == SuciProfile::A) {
        eph.key = x25519_private(priv);
        eph.public_key = x25519_public_bytes(eph.key.get());
    } else {
        P256Private p = p256_private(priv);
        if (!p.key) {
            throw InvalidArgument("eph-private-key",
                                  "is not a valid secp256r1 scalar (0 or not below the order)");
        }
        eph.key = std::move(p.key);
        eph.public_key = std::move(p.compressed_public);
    }
    return eph;
}

Ephemeral random_ephemeral(SuciProfile profile) {
    SecretBytes priv(kPrivateKeySize);
    for (;;) {
        if (RAND_priv_bytes(priv.data(), static_cast<int>(priv.size())) != 1) {
            crypto_failure("RAND_priv_bytes");
        }
        if (profile == SuciProfile::A) {
            return make_ephemeral(profile, priv.view()); // every 32 bytes is an X25519 key
        }
        const GroupPtr group = p256_group();
        if (p256_scalar(group.get(), priv.view())) {
            return make_ephemeral(profile, priv.view());
        }
    }
}

PkeyPtr hn_public_key(SuciProfile profile, ByteView key) {
    if (profile == SuciProfile::A) {
        return x25519_public(key);
    }
    PkeyPtr pub = p256_public(key);
    if (!pub) {
        throw InvalidArgument("hn-public-key", "is not a point of secp256r1");
    }
    return pub;
}

// eph public key || ciphertext || MAC tag.
Bytes ecies_encrypt(SuciProfile profile, ByteView hn_key, ByteView plaintext,
                    const std::optional<SecretBytes>& eph_private_key) {
    Ephemeral eph;
    if (eph_private_key) {
        require_size(eph_private_key->view(), kPrivateKeySize, "eph-private-key");
        eph = make_ephemeral(profile, eph_private_key->view());
    } else {
        eph = random_ephemeral(profile);
    }
    const PkeyPtr peer = hn_public_key(profile, hn_key);
    const SecretBytes shared = ecdh(eph.key.get(), peer.get(), "hn-public-key");
    const EciesKeys keys = derive_ecies_keys(shared.view(), eph.public_key);

    Bytes out = eph.public_key;
    const std::size_t ct_at = out.size();
    out.resize(ct_at + plaintext.size());
    aes128_ctr(keys, plaintext, std::span<std::uint8_t>(out).subspan(ct_at));
    const Bytes tag = mac_tag(keys, ByteView(out).subspan(ct_at));
    out.insert(out.end(), tag.begin(), tag.end());
    return out;
}

void validate_common(const SuciParams& p) {
    switch (p.profile) {
    case SuciProfile::Null:
        if (p.hn_key_id != 0) {
            throw InvalidArgument("hn-key-id", "must be 0 for the null scheme");
        }
        break;
    case SuciProfile::A:
        require_size(p.hn_public_key, kX25519PublicSize, "hn-public-key");
        break;
    case SuciProfile::B:
        if (p.hn_public_key.size() != kCompressedSize &&
            p.hn_public_key.size() != kUncompressedSize) {
            throw InvalidArgument("hn-public-key",
                                  "must be a secp256r1 point of 33 (compressed) or 65 "
                                  "(uncompressed) bytes, got " +
                                      std::to_string(p.hn_public_key.size()));
        }
        break;
    default:
        throw InvalidArgument("profile", "unknown protection scheme (expected null, A or B)");
    }
    if (p.routing_indicator.empty() || p.routing_indicator.size() > 4 ||
        !all_digits(p.routing_indicator)) {
        throw InvalidArgument("routing-indicator", "must be 1 to 4 decimal digits");
    }
}

int scheme_id(SuciProfile profile) {
    return static_cast<int>(profile);
}

} // namespace

SuciProfile parse_suci_profile(std::string_view text) {
    if (text == "null" || text == "Null" || text == "NULL" || text == "0") {
        return SuciProfile::Null;
    }
    if (text == "A" || text == "a" || text == "1") {
        return SuciProfile::A;
    }
    if (text == "B" || text == "b" || text == "2") {
        return SuciProfile::B;
    }
    throw InvalidArgument("profile", "unknown protection scheme (expected null, A or B)");
}

void SuciParams::validate() const {
    validate_common(*this);
    if ((mcc_mnc.size() != 5 && mcc_mnc.size() != 6) || !all_digits(mcc_mnc)) {
        throw InvalidArgument("mcc-mnc", "must be 5 or 6 decimal digits (MCC then MNC)");
    }
}

Bytes bcd_encode(std::string_view digits) {
    if (digits.empty()) {
        throw InvalidArgument("msin", "must not be empty");
    }
    if (!all_digits(digits)) {
        throw InvalidArgument("msin", "must be decimal digits only");
    }
    Bytes out((digits.size() + 1) / 2, 0);
    for (std::size_t i = 0; i < digits.size(); ++i) {
        const auto d = static_cast<std::uint8_t>(digits[i] - '0');
        out[i / 2] |= (i % 2 == 0) ? d : static_cast<std::uint8_t>(d << 4);
    }
    if (digits.size() % 2 != 0) {
        out.back() |= 0xf0;
    }
    return out;
}

Suci conceal_imsi(const SuciParams& params, std::string_view msin,
                  const std::optional<SecretBytes>& eph_private_key) {
    params.validate();
    const std::size_t max_msin = kMaxImsiDigits - params.mcc_mnc.size();
    if (msin.empty() || msin.size() > max_msin) {
        throw InvalidArgument("msin", "must be 1 to " + std::to_string(max_msin) +
                                          " digits (an IMSI has at most 15)");
    }
    const Bytes scheme_input = bcd_encode(msin);

    Suci suci;
    suci.scheme_output =
        params.profile == SuciProfile::Null
            ? scheme_input
            : ecies_encrypt(params.profile, params.hn_public_key, scheme_input, eph_private_key);
    const std::string_view mcc_mnc = params.mcc_mnc;
    suci.text =
        "suci-0-" + std::string(mcc_mnc.substr(0, 3)) + "-" + std::string(mcc_mnc.substr(3)) + "-" +
        params.routing_indicator + "-" + std::to_string(scheme_id(params.profile)) + "-" +
        std::to_string(params.hn_key_id) + "-" +
        (params.profile == SuciProfile::Null ? std::string(msin) : hex_encode(suci.scheme_output));
    return suci;
}

Suci conceal_nai(const SuciParams& params, std::string_view nai,
                 const std::optional<SecretBytes>& eph_private_key) {
    validate_common(params);
    const std::size_t at = nai.find('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == nai.size() ||
        nai.find('@', at + 1) != std::string_view::npos) {
        throw InvalidArgument("nai", "must be username@realm");
    }
    const std::string_view username = nai.substr(0, at);
    const std::string_view realm = nai.substr(at + 1);
    const ByteView scheme_input(reinterpret_cast<const std::uint8_t*>(username.data()),
                                username.size());

    Suci suci;
    std::string user = "type1.rid" + params.routing_indicator + ".schid" +
                       std::to_string(scheme_id(params.profile));
    if (params.profile == SuciProfile::Null) {
        suci.scheme_output.assign(scheme_input.begin(), scheme_input.end());
        user += ".userid" + std::string(username);
    } else {
        suci.scheme_output =
            ecies_encrypt(params.profile, params.hn_public_key, scheme_input, eph_private_key);
        const ByteView out(suci.scheme_output);
        const std::size_t key_size = public_key_size(params.profile);
        user += ".hnkey" + std::to_string(params.hn_key_id) + ".ecckey" +
                upper_hex(out.first(key_size)) + ".cip" +
                upper_hex(out.subspan(key_size, out.size() - key_size - kTagSize)) + ".mac" +
                upper_hex(out.last(kTagSize));
    }
    suci.text = user + "@" + std::string(realm);
    return suci;
}

std::optional<Bytes> deconceal(SuciProfile profile, ByteView hn_private_key,
                               ByteView scheme_output) {
    if (profile == SuciProfile::Null) {
        if (scheme_output.empty()) {
            throw InvalidArgument("scheme-output", "is empty");
        }
        return Bytes(scheme_output.begin(), scheme_output.end());
    }
    if (profile != SuciProfile::A && profile != SuciProfile::B) {
        throw InvalidArgument("profile", "unknown protection scheme (expected null, A or B)");
    }
    require_size(hn_private_key, kPrivateKeySize, "hn-private-key");
    const std::size_t key_size = public_key_size(profile);
    if (scheme_output.size() <= key_size + kTagSize) {
        throw InvalidArgument("scheme-output", "too short: needs the ephemeral public key (" +
                                                   std::to_string(key_size) +
                                                   " bytes), a ciphertext and the " +
                                                   std::to_string(kTagSize) + "-byte MAC tag");
    }
    const ByteView eph_public = scheme_output.first(key_size);
    const ByteView ciphertext =
        scheme_output.subspan(key_size, scheme_output.size() - key_size - kTagSize);
    const ByteView tag = scheme_output.last(kTagSize);

    PkeyPtr own;
    PkeyPtr peer;
    if (profile == SuciProfile::A) {
        own = x25519_private(hn_private_key);
        peer = x25519_public(eph_public);
    } else {
        P256Private p = p256_private(hn_private_key);
        if (!p.key) {
            throw InvalidArgument("hn-private-key", "is not a valid secp256r1 scalar");
        }
        own = std::move(p.key);
        peer = p256_public(eph_public);
        if (!peer) {
            throw InvalidArgument("scheme-output",
                                  "does not start with a compressed secp256r1 point");
        }
    }
    const SecretBytes shared = ecdh(own.get(), peer.get(), "scheme-output");
    const EciesKeys keys = derive_ecies_keys(shared.view(), eph_public);
    if (!equal_ct(mac_tag(keys, ciphertext), tag)) {
        return std::nullopt;
    }
    Bytes plaintext(ciphertext.size());
    aes128_ctr(keys, ciphertext, plaintext);
    return plaintext;
}

} // namespace tresim::usim
