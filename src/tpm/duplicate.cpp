#include "duplicate.hpp"

#include <algorithm>
#include <array>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <tss2/tss2_mu.h>

#include "error.hpp"
#include "policy.hpp"
#include "usim/kdf.hpp"

namespace tresim::tpm {

namespace {

struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxFree {
    void operator()(EVP_CIPHER_CTX* p) const noexcept { EVP_CIPHER_CTX_free(p); }
};
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

[[noreturn]] void openssl_failure(const char* what) {
    ERR_clear_error();
    throw std::runtime_error(std::string("OpenSSL: ") + what + " failed");
}

Bytes be32(std::uint32_t v) {
    return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
            static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

// The label as KDFa/KDFe use it: with its terminating zero octet.
Bytes label_bytes(std::string_view label) {
    Bytes b(label.begin(), label.end());
    b.push_back(0);
    return b;
}

void check_new_parent(const TPMT_PUBLIC& p) {
    const auto& e = p.parameters.eccDetail;
    const TPMA_OBJECT storage = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    if (p.type != TPM2_ALG_ECC || p.nameAlg != TPM2_ALG_SHA256 ||
        (p.objectAttributes & storage) != storage ||
        (p.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) != 0 || e.curveID != TPM2_ECC_NIST_P256 ||
        e.symmetric.algorithm != TPM2_ALG_AES || e.symmetric.keyBits.aes != 128 ||
        e.symmetric.mode.aes != TPM2_ALG_CFB) {
        throw InvalidArgument("srk-public", "is not an ECC P-256 storage key with AES-128-CFB and "
                                            "SHA-256 (the SRK template)");
    }
}

SecretBytes ecdh_x(EVP_PKEY* own, EVP_PKEY* peer) {
    const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, own, nullptr));
    std::size_t len = 0;
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
        EVP_PKEY_derive_set_peer(ctx.get(), peer) != 1 ||
        EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) {
        openssl_failure("ECDH");
    }
    SecretBytes z(len);
    if (EVP_PKEY_derive(ctx.get(), z.data(), &len) != 1 || len != 32) {
        openssl_failure("ECDH");
    }
    return z;
}

// AES-128-CFB with a zero IV, as the TPM's outer (and inner) wrappers use it.
Bytes aes128_cfb_zero_iv(ByteView key, ByteView plain) {
    const CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
    const std::array<std::uint8_t, 16> iv{};
    Bytes out(plain.size());
    int len = 0;
    int tail = 0;
    if (!ctx ||
        EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_cfb128(), nullptr, key.data(), iv.data()) != 1 ||
        EVP_EncryptUpdate(ctx.get(), out.data(), &len, plain.data(),
                          static_cast<int>(plain.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &tail) != 1) {
        openssl_failure("AES-128-CFB");
    }
    return out;
}

template <class T, class F> Bytes marshal_any(const T& value, F fn, const char* what) {
    Bytes buffer(sizeof(T) + 2);
    size_t offset = 0;
    check(fn(&value, buffer.data(), buffer.size(), &offset), what);
    buffer.resize(offset);
    return buffer;
}

template <class T, class F> T take(ByteView bytes, size_t& offset, F fn, const char* what) {
    T value{};
    if (fn(bytes.data(), bytes.size(), &offset, &value) != TSS2_RC_SUCCESS) {
        throw InvalidArgument("duplication-blob", std::string("has no valid ") + what);
    }
    return value;
}

} // namespace

// ---------------------------------------------------------------------------

Bytes DuplicationBlob::marshal() const {
    Bytes out = object_public;
    out.insert(out.end(), duplicate.begin(), duplicate.end());
    out.insert(out.end(), encrypted_seed.begin(), encrypted_seed.end());
    return out;
}

DuplicationBlob DuplicationBlob::unmarshal(ByteView bytes) {
    size_t offset = 0;
    const auto pub =
        take<TPM2B_PUBLIC>(bytes, offset, Tss2_MU_TPM2B_PUBLIC_Unmarshal, "public area");
    const auto dup =
        take<TPM2B_PRIVATE>(bytes, offset, Tss2_MU_TPM2B_PRIVATE_Unmarshal, "duplicate");
    const auto seed = take<TPM2B_ENCRYPTED_SECRET>(
        bytes, offset, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal, "encrypted seed");
    if (offset != bytes.size()) {
        throw InvalidArgument("duplication-blob", "has trailing bytes");
    }
    return {marshal_public(pub),
            marshal_any(dup, Tss2_MU_TPM2B_PRIVATE_Marshal, "marshal TPM2B_PRIVATE"),
            marshal_any(seed, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal,
                        "marshal TPM2B_ENCRYPTED_SECRET")};
}

SecretBytes kdfa_sha256(ByteView key, std::string_view label, ByteView context_u,
                        ByteView context_v, std::size_t bits) {
    const Bytes l = label_bytes(label);
    const Bytes length = be32(static_cast<std::uint32_t>(bits));
    const std::size_t bytes = (bits + 7) / 8;
    SecretBytes out;
    for (std::uint32_t counter = 1; out.size() < bytes; ++counter) {
        const SecretBytes block =
            usim::hmac_sha256(key, {be32(counter), l, context_u, context_v, length});
        const std::size_t old = out.size();
        const std::size_t take_n = std::min(block.size(), bytes - old);
        out.resize(old + take_n);
        std::copy_n(block.data(), take_n, out.data() + old);
    }
    if (bits % 8 != 0) { // the unused high-order bits of the first octet are zero
        out[0] &= static_cast<std::uint8_t>(0xff >> (8 - bits % 8));
    }
    return out;
}

SecretBytes kdfe_sha256(ByteView z, std::string_view label, ByteView party_u, ByteView party_v,
                        std::size_t bits) {
    const Bytes l = label_bytes(label);
    const std::size_t bytes = (bits + 7) / 8;
    SecretBytes out;
    for (std::uint32_t counter = 1; out.size() < bytes; ++counter) {
        Bytes block = sha256_concat({be32(counter), z, l, party_u, party_v});
        const std::size_t old = out.size();
        const std::size_t take_n = std::min(block.size(), bytes - old);
        out.resize(old + take_n);
        std::copy_n(block.data(), take_n, out.data() + old);
        wipe(block.data(), block.size());
    }
    return out;
}

DuplicationBlob make_duplication_blob(const TPMT_PUBLIC& new_parent,
                                      const TPM2B_PUBLIC& object_public, const SecretBytes& secret,
                                      const SecretBytes& auth_value) {
    check_new_parent(new_parent);
    TPM2B_PUBLIC pub = object_public;
    TPMT_PUBLIC& p = pub.publicArea;
    if (p.nameAlg != TPM2_ALG_SHA256) {
        throw InvalidArgument("public", "has a name algorithm other than SHA-256");
    }
    if ((p.objectAttributes & (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT)) != 0) {
        throw InvalidArgument("public", "has fixedTPM or fixedParent set: it cannot be imported");
    }
    if (auth_value.size() > kDigestSize) {
        throw InvalidArgument("auth-value", "is longer than 32 bytes");
    }

    // The sensitive area: auth value, a fresh seedValue (obfuscation value, the
    // size of the name digest) and the secret itself.
    TPMT_SENSITIVE sensitive{};
    sensitive.sensitiveType = p.type;
    sensitive.authValue.size = static_cast<UINT16>(auth_value.size());
    std::copy_n(auth_value.data(), auth_value.size(), sensitive.authValue.buffer);
    sensitive.seedValue.size = kDigestSize;
    if (RAND_priv_bytes(sensitive.seedValue.buffer, kDigestSize) != 1) {
        openssl_failure("RAND_priv_bytes");
    }
    const ByteView seed_value(sensitive.seedValue.buffer, kDigestSize);
    if (p.type == TPM2_ALG_SYMCIPHER) {
        if (p.parameters.symDetail.sym.algorithm != TPM2_ALG_AES ||
            secret.size() * 8 != p.parameters.symDetail.sym.keyBits.aes) {
            throw InvalidArgument("k", "does not match the key size of the public area");
        }
        sensitive.sensitive.sym.size = static_cast<UINT16>(secret.size());
        std::copy_n(secret.data(), secret.size(), sensitive.sensitive.sym.buffer);
        // unique = H_nameAlg(seedValue || key)
        const Bytes u = sha256_concat({seed_value, secret.view()});
        p.unique.sym.size = static_cast<UINT16>(u.size());
        std::copy(u.begin(), u.end(), p.unique.sym.buffer);
    } else if (p.type == TPM2_ALG_KEYEDHASH) {
        if (secret.empty() || secret.size() > kMaxSealedData) {
            throw InvalidArgument("data", "must be 1 to 128 bytes to be sealed");
        }
        sensitive.sensitive.bits.size = static_cast<UINT16>(secret.size());
        std::copy_n(secret.data(), secret.size(), sensitive.sensitive.bits.buffer);
        const Bytes u = sha256_concat({seed_value, secret.view()});
        p.unique.keyedHash.size = static_cast<UINT16>(u.size());
        std::copy(u.begin(), u.end(), p.unique.keyedHash.buffer);
    } else {
        throw InvalidArgument("public", "is neither an AES key nor a sealed data object");
    }

    // TPM2B_SENSITIVE: 2-byte size, then TPMT_SENSITIVE.
    SecretBytes plain(2 + sizeof(TPMT_SENSITIVE));
    size_t offset = 2;
    const TSS2_RC rc =
        Tss2_MU_TPMT_SENSITIVE_Marshal(&sensitive, plain.data(), plain.size(), &offset);
    wipe(&sensitive, sizeof(sensitive));
    check(rc, "marshal TPMT_SENSITIVE");
    plain[0] = static_cast<std::uint8_t>((offset - 2) >> 8);
    plain[1] = static_cast<std::uint8_t>(offset - 2);
    plain.resize(offset);

    const Bytes name = object_name(p);

    // Seed: ECDH with an ephemeral key against the new parent's point, then KDFe.
    const EvpPkeyPtr parent_key = p256_public_key(new_parent, "srk-public");
    const EvpPkeyPtr ephemeral(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!ephemeral) {
        openssl_failure("P-256 key generation");
    }
    const TPMS_ECC_POINT qe = ecc_point(ephemeral.get());
    const SecretBytes z = ecdh_x(ephemeral.get(), parent_key.get());
    const SecretBytes seed = kdfe_sha256(
        z.view(), "DUPLICATE", ByteView(qe.x.buffer, qe.x.size),
        ByteView(new_parent.unique.ecc.x.buffer, new_parent.unique.ecc.x.size), kDigestSize * 8);

    // Outer wrapper.
    const SecretBytes sym_key = kdfa_sha256(seed.view(), "STORAGE", name, {}, 128);
    const Bytes enc = aes128_cfb_zero_iv(sym_key.view(), plain.view());
    const SecretBytes hmac_key = kdfa_sha256(seed.view(), "INTEGRITY", {}, {}, kDigestSize * 8);
    const SecretBytes outer_hmac = usim::hmac_sha256(hmac_key.view(), {enc, name});

    TPM2B_PRIVATE dup{};
    if (2 + outer_hmac.size() + enc.size() > sizeof(dup.buffer)) {
        throw InvalidArgument("data", "is too large for a duplication blob");
    }
    dup.size = static_cast<UINT16>(2 + outer_hmac.size() + enc.size());
    dup.buffer[0] = static_cast<std::uint8_t>(outer_hmac.size() >> 8);
    dup.buffer[1] = static_cast<std::uint8_t>(outer_hmac.size());
    std::copy_n(outer_hmac.data(), outer_hmac.size(), dup.buffer + 2);
    std::copy(enc.begin(), enc.end(), dup.buffer + 2 + outer_hmac.size());

    TPM2B_ENCRYPTED_SECRET sym_seed{};
    size_t seed_len = 0;
    check(Tss2_MU_TPMS_ECC_POINT_Marshal(&qe, sym_seed.secret, sizeof(sym_seed.secret), &seed_len),
          "marshal TPMS_ECC_POINT");
    sym_seed.size = static_cast<UINT16>(seed_len);

    return {marshal_public(pub),
            marshal_any(dup, Tss2_MU_TPM2B_PRIVATE_Marshal, "marshal TPM2B_PRIVATE"),
            marshal_any(sym_seed, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal,
                        "marshal TPM2B_ENCRYPTED_SECRET")};
}

DuplicationBlob duplicate_aes_key(const TPMT_PUBLIC& new_parent, const SecretBytes& key,
                                  const ObjectOptions& options) {
    require_size(key.view(), 16, "k");
    return make_duplication_blob(
        new_parent, aes_key_template(options.auth_policy, ObjectOrigin::Imported, options.no_da),
        key, options.auth_value);
}

DuplicationBlob duplicate_sealed_data(const TPMT_PUBLIC& new_parent, const SecretBytes& data,
                                      const ObjectOptions& options) {
    return make_duplication_blob(
        new_parent,
        sealed_data_template(options.auth_policy, ObjectOrigin::Imported, options.no_da), data,
        options.auth_value);
}

ObjectBlobs import_duplicate(Context& ctx, ESYS_TR parent, const DuplicationBlob& blob) {
    const TPM2B_PUBLIC pub = unmarshal_public(blob.object_public, "duplication-blob");
    size_t offset = 0;
    const auto dup =
        take<TPM2B_PRIVATE>(blob.duplicate, offset, Tss2_MU_TPM2B_PRIVATE_Unmarshal, "duplicate");
    offset = 0;
    const auto seed = take<TPM2B_ENCRYPTED_SECRET>(
        blob.encrypted_seed, offset, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal, "encrypted seed");
    const TPM2B_DATA no_inner_key{};
    TPMT_SYM_DEF_OBJECT no_inner{};
    no_inner.algorithm = TPM2_ALG_NULL;
    TPM2B_PRIVATE* out = nullptr;
    check(Esys_Import(ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &no_inner_key,
                      &pub, &dup, &seed, &no_inner, &out),
          "TPM2_Import(duplication blob)");
    const EsysPtr<TPM2B_PRIVATE> priv(out);
    return {marshal_public(pub),
            marshal_any(*priv, Tss2_MU_TPM2B_PRIVATE_Marshal, "marshal TPM2B_PRIVATE")};
}

} // namespace tresim::tpm
