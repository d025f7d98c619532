#include "keys.hpp"

#include <algorithm>
#include <cstring>

#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include "error.hpp"
#include "hash_alg.hpp"

namespace tresim::tpm {

namespace {

struct ParamBldFree {
    void operator()(OSSL_PARAM_BLD* p) const noexcept { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
    void operator()(OSSL_PARAM* p) const noexcept { OSSL_PARAM_free(p); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct BnFree {
    void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};

// PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the EK profile's PolicyA.
constexpr std::uint8_t kPolicyA[32] = {
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

constexpr TPMA_OBJECT kEkAttributes =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
    TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;

constexpr TPMA_OBJECT kAkAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                      TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                      TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;

struct Curve {
    TPMI_ECC_CURVE id;
    const char* name;
    std::size_t size;
};
constexpr Curve kCurves[] = {
    {TPM2_ECC_NIST_P256, "prime256v1", 32},
    {TPM2_ECC_NIST_P384, "secp384r1", 48},
    {TPM2_ECC_NIST_P521, "secp521r1", 66},
};

const Curve* find_curve(TPMI_ECC_CURVE id) {
    for (const Curve& c : kCurves) {
        if (c.id == id) {
            return &c;
        }
    }
    return nullptr;
}

// Left-pads a big-endian integer to `size` bytes (TPMs may strip leading zeros).
void append_padded(Bytes& out, const std::uint8_t* data, std::size_t len, std::size_t size) {
    if (len > size) {
        throw InvalidArgument("public", "an ECC coordinate is longer than the curve's field");
    }
    out.insert(out.end(), size - len, 0);
    out.insert(out.end(), data, data + len);
}

EvpPkeyPtr from_params(const char* type, OSSL_PARAM_BLD* bld) {
    const std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
    const std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> pctx(
        EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* pkey = nullptr;
    if (!params || !pctx || EVP_PKEY_fromdata_init(pctx.get()) != 1 ||
        EVP_PKEY_fromdata(pctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        throw InvalidArgument("public",
                              "the TPM public key is not a valid " + std::string(type) + " key");
    }
    return EvpPkeyPtr(pkey);
}

bool same_ecc_params(const TPMS_ECC_PARMS& a, const TPMS_ECC_PARMS& b) {
    return a.symmetric.algorithm == b.symmetric.algorithm &&
           (a.symmetric.algorithm == TPM2_ALG_NULL ||
            (a.symmetric.keyBits.sym == b.symmetric.keyBits.sym &&
             a.symmetric.mode.sym == b.symmetric.mode.sym)) &&
           a.scheme.scheme == b.scheme.scheme &&
           (a.scheme.scheme == TPM2_ALG_NULL ||
            a.scheme.details.anySig.hashAlg == b.scheme.details.anySig.hashAlg) &&
           a.curveID == b.curveID && a.kdf.scheme == b.kdf.scheme;
}

bool same_header(const TPMT_PUBLIC& a, const TPMT_PUBLIC& b) {
    return a.type == b.type && a.nameAlg == b.nameAlg && a.objectAttributes == b.objectAttributes &&
           a.authPolicy.size == b.authPolicy.size &&
           std::memcmp(a.authPolicy.buffer, b.authPolicy.buffer, a.authPolicy.size) == 0;
}

bool matches_ak_template(const TPMT_PUBLIC& pub) {
    const TPMT_PUBLIC want = ak_template().publicArea;
    return same_header(pub, want) &&
           same_ecc_params(pub.parameters.eccDetail, want.parameters.eccDetail);
}

// Splits concatenated DER certificates (an EK chain index may hold several);
// stops at padding (anything that does not start a DER SEQUENCE).
std::vector<Bytes> split_der(const Bytes& data) {
    std::vector<Bytes> out;
    std::size_t pos = 0;
    while (pos + 2 <= data.size() && data[pos] == 0x30) {
        std::size_t header = 2;
        std::size_t len = data[pos + 1];
        if (len & 0x80) {
            const std::size_t n = len & 0x7f;
            if (n == 0 || n > 4 || pos + 2 + n > data.size()) {
                break;
            }
            len = 0;
            for (std::size_t i = 0; i < n; ++i) {
                len = (len << 8) | data[pos + 2 + i];
            }
            header += n;
        }
        if (pos + header + len > data.size()) {
            break;
        }
        out.emplace_back(data.begin() + static_cast<std::ptrdiff_t>(pos),
                         data.begin() + static_cast<std::ptrdiff_t>(pos + header + len));
        pos += header + len;
    }
    return out;
}

std::uint32_t nv_buffer_max(Context& ctx) {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA* raw = nullptr;
    check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                             TPM2_PT_NV_BUFFER_MAX, 1, &more, &raw),
          "TPM2_GetCapability(NV_BUFFER_MAX)");
    const EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
    const auto& props = cap->data.tpmProperties;
    if (props.count == 1 && props.tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX &&
        props.tpmProperty[0].value > 0) {
        return std::min<std::uint32_t>(props.tpmProperty[0].value, TPM2_MAX_NV_BUFFER_SIZE);
    }
    return 512;
}

} // namespace

// ---- OpenSSL public keys --------------------------------------------------

const EVP_MD* evp_md(TPMI_ALG_HASH alg) noexcept {
    const HashAlgorithm* h = find_software_hash(alg);
    return h != nullptr ? h->md() : nullptr;
}

EvpPkeyPtr to_evp_pkey(const TPMT_PUBLIC& pub) {
    const std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
    if (!bld) {
        throw std::bad_alloc();
    }
    if (pub.type == TPM2_ALG_RSA) {
        const auto& n = pub.unique.rsa;
        const std::uint32_t exponent =
            pub.parameters.rsaDetail.exponent == 0 ? 65537 : pub.parameters.rsaDetail.exponent;
        const std::unique_ptr<BIGNUM, BnFree> bn_n(BN_bin2bn(n.buffer, n.size, nullptr));
        const std::unique_ptr<BIGNUM, BnFree> bn_e(BN_new());
        if (!bn_n || !bn_e || BN_set_word(bn_e.get(), exponent) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
            throw InvalidArgument("public", "cannot convert the RSA public key");
        }
        return from_params("RSA", bld.get());
    }
    if (pub.type == TPM2_ALG_ECC) {
        const Curve* curve = find_curve(pub.parameters.eccDetail.curveID);
        if (curve == nullptr) {
            throw InvalidArgument("public", "the ECC curve is not NIST P-256, P-384 or P-521");
        }
        Bytes point{0x04};
        append_padded(point, pub.unique.ecc.x.buffer, pub.unique.ecc.x.size, curve->size);
        append_padded(point, pub.unique.ecc.y.buffer, pub.unique.ecc.y.size, curve->size);
        if (OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve->name,
                                            0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                             point.size()) != 1) {
            throw InvalidArgument("public", "cannot convert the ECC public key");
        }
        return from_params("EC", bld.get());
    }
    throw InvalidArgument("public", "the TPM object is neither an RSA nor an ECC key");
}

Bytes spki_der(const EVP_PKEY* key) {
    const int len = i2d_PUBKEY(key, nullptr);
    if (len <= 0) {
        throw InvalidArgument("public", "cannot encode the public key as SubjectPublicKeyInfo");
    }
    Bytes out(static_cast<std::size_t>(len));
    unsigned char* p = out.data();
    i2d_PUBKEY(key, &p);
    return out;
}

// ---- names and marshalling -------------------------------------------------

Bytes object_name(const TPMT_PUBLIC& pub) {
    const EVP_MD* md = evp_md(pub.nameAlg);
    if (md == nullptr) {
        throw InvalidArgument("public", "the object's name algorithm is not a supported hash");
    }
    std::uint8_t buf[sizeof(TPMT_PUBLIC)];
    std::size_t len = 0;
    check(Tss2_MU_TPMT_PUBLIC_Marshal(&pub, buf, sizeof(buf), &len), "marshal TPMT_PUBLIC");
    Bytes name(2 + static_cast<std::size_t>(EVP_MD_get_size(md)));
    name[0] = static_cast<std::uint8_t>(pub.nameAlg >> 8);
    name[1] = static_cast<std::uint8_t>(pub.nameAlg);
    if (EVP_Digest(buf, len, name.data() + 2, nullptr, md, nullptr) != 1) {
        throw std::runtime_error("EVP_Digest failed");
    }
    return name;
}

Bytes marshal_public(const TPM2B_PUBLIC& pub) {
    Bytes out(sizeof(TPM2B_PUBLIC));
    std::size_t len = 0;
    check(Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, out.data(), out.size(), &len), "marshal TPM2B_PUBLIC");
    out.resize(len);
    return out;
}

TPM2B_PUBLIC unmarshal_public(ByteView bytes, const std::string& argument) {
    TPM2B_PUBLIC pub{};
    std::size_t offset = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(bytes.data(), bytes.size(), &offset, &pub) !=
            TSS2_RC_SUCCESS ||
        offset != bytes.size()) {
        throw InvalidArgument(argument, "is not a marshalled TPM2B_PUBLIC");
    }
    return pub;
}

// ---- EK -------------------------------------------------------------------

TPM2B_PUBLIC ek_template(EkType type) {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = kEkAttributes;
    p.authPolicy.size = sizeof(kPolicyA);
    std::memcpy(p.authPolicy.buffer, kPolicyA, sizeof(kPolicyA));
    if (type == EkType::Rsa2048) {
        p.type = TPM2_ALG_RSA;
        auto& r = p.parameters.rsaDetail;
        r.symmetric.algorithm = TPM2_ALG_AES;
        r.symmetric.keyBits.aes = 128;
        r.symmetric.mode.aes = TPM2_ALG_CFB;
        r.scheme.scheme = TPM2_ALG_NULL;
        r.keyBits = 2048;
        r.exponent = 0;
        p.unique.rsa.size = 256;
    } else {
        p.type = TPM2_ALG_ECC;
        auto& e = p.parameters.eccDetail;
        e.symmetric.algorithm = TPM2_ALG_AES;
        e.symmetric.keyBits.aes = 128;
        e.symmetric.mode.aes = TPM2_ALG_CFB;
        e.scheme.scheme = TPM2_ALG_NULL;
        e.curveID = TPM2_ECC_NIST_P256;
        e.kdf.scheme = TPM2_ALG_NULL;
        p.unique.ecc.x.size = 32;
        p.unique.ecc.y.size = 32;
    }
    return t;
}

bool matches_ek_template(const TPMT_PUBLIC& pub, EkType type) {
    const TPMT_PUBLIC want = ek_template(type).publicArea;
    if (!same_header(pub, want)) {
        return false;
    }
    if (type == EkType::EccP256) {
        return same_ecc_params(pub.parameters.eccDetail, want.parameters.eccDetail);
    }
    const auto& a = pub.parameters.rsaDetail;
    const auto& b = want.parameters.rsaDetail;
    return a.symmetric.algorithm == b.symmetric.algorithm &&
           a.symmetric.keyBits.aes == b.symmetric.keyBits.aes &&
           a.symmetric.mode.aes == b.symmetric.mode.aes && a.scheme.scheme == b.scheme.scheme &&
           a.keyBits == b.keyBits && (a.exponent == 0 || a.exponent == 65537) &&
           pub.unique.rsa.size == 256;
}

Ek create_ek(Context& ctx, EkType type) {
    const TPM2B_SENSITIVE_CREATE sensitive{};
    const TPM2B_PUBLIC tmpl = ek_template(type);
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    ESYS_TR tr = ESYS_TR_NONE;
    TPM2B_PUBLIC* out_pub = nullptr;
    TPM2B_CREATION_DATA* creation = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    check(Esys_CreatePrimary(ctx, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                             ESYS_TR_NONE, &sensitive, &tmpl, &outside, &no_pcrs, &tr, &out_pub,
                             &creation, &creation_hash, &ticket),
          type == EkType::Rsa2048 ? "TPM2_CreatePrimary(EK RSA-2048)"
                                  : "TPM2_CreatePrimary(EK ECC P-256)");
    const EsysPtr<TPM2B_PUBLIC> pub(out_pub);
    const EsysPtr<TPM2B_CREATION_DATA> c1(creation);
    const EsysPtr<TPM2B_DIGEST> c2(creation_hash);
    const EsysPtr<TPMT_TK_CREATION> c3(ticket);
    Ek ek;
    ek.type = type;
    ek.handle = Handle::transient(ctx, tr);
    ek.pub = *pub;
    ek.name = object_name(pub->publicArea);
    return ek;
}

std::optional<Bytes> read_nv_certificate(Context& ctx, TPM2_HANDLE index) {
    ESYS_TR tr = ESYS_TR_NONE;
    const TSS2_RC rc =
        Esys_TR_FromTPMPublic(ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
    if (rc != TSS2_RC_SUCCESS) {
        if (TpmError("", rc).is(TPM2_RC_HANDLE)) {
            return std::nullopt;
        }
        throw TpmError("open NV index", rc);
    }
    const Handle nv = Handle::persistent(ctx, tr);
    TPM2B_NV_PUBLIC* raw_pub = nullptr;
    TPM2B_NAME* raw_name = nullptr;
    check(
        Esys_NV_ReadPublic(ctx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw_pub, &raw_name),
        "TPM2_NV_ReadPublic(EK certificate)");
    const EsysPtr<TPM2B_NV_PUBLIC> nv_pub(raw_pub);
    const EsysPtr<TPM2B_NAME> nv_name(raw_name);
    const std::uint16_t size = nv_pub->nvPublic.dataSize;
    const TPMA_NV attrs = nv_pub->nvPublic.attributes;
    // The profile's indexes are readable with their own (empty) auth and by
    // the owner; prefer the index itself, which needs no hierarchy auth.
    const ESYS_TR auth = (attrs & TPMA_NV_AUTHREAD) != 0 ? nv.get() : ESYS_TR_RH_OWNER;
    const std::uint32_t chunk = nv_buffer_max(ctx);
    Bytes out;
    out.reserve(size);
    while (out.size() < size) {
        const auto n = static_cast<std::uint16_t>(std::min<std::size_t>(chunk, size - out.size()));
        TPM2B_MAX_NV_BUFFER* raw_data = nullptr;
        check(Esys_NV_Read(ctx, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n,
                           static_cast<std::uint16_t>(out.size()), &raw_data),
              "TPM2_NV_Read(EK certificate)");
        const EsysPtr<TPM2B_MAX_NV_BUFFER> data(raw_data);
        if (data->size == 0) {
            throw std::runtime_error("TPM2_NV_Read(EK certificate) returned no data");
        }
        out.insert(out.end(), data->buffer, data->buffer + data->size);
    }
    return out;
}

EkCertificates read_ek_certificates(Context& ctx) {
    EkCertificates certs;
    certs.rsa2048 = read_nv_certificate(ctx, kEkCertNvRsa2048);
    certs.ecc_p256 = read_nv_certificate(ctx, kEkCertNvEccP256);
    certs.ecc_p384 = read_nv_certificate(ctx, kEkCertNvEccP384);

    std::vector<TPM2_HANDLE> chain_indexes;
    TPM2_HANDLE next = kEkChainNvFirst;
    TPMI_YES_NO more = TPM2_YES;
    while (more == TPM2_YES && next <= kEkChainNvLast) {
        TPMS_CAPABILITY_DATA* raw = nullptr;
        check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                                 next, kEkChainNvLast - next + 1, &more, &raw),
              "TPM2_GetCapability(NV indexes)");
        const EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
        const TPML_HANDLE& handles = cap->data.handles;
        if (handles.count == 0) {
            break;
        }
        for (std::uint32_t i = 0; i < handles.count; ++i) {
            if (handles.handle[i] <= kEkChainNvLast) {
                chain_indexes.push_back(handles.handle[i]);
            }
        }
        next = handles.handle[handles.count - 1] + 1;
    }
    for (const TPM2_HANDLE index : chain_indexes) {
        if (const auto data = read_nv_certificate(ctx, index)) {
            for (Bytes& cert : split_der(*data)) {
                certs.chain.push_back(std::move(cert));
            }
        }
    }
    return certs;
}

std::string te_identity(const EVP_PKEY* ek_public) {
    const Bytes der = spki_der(ek_public);
    std::uint8_t digest[32];
    if (EVP_Digest(der.data(), der.size(), digest, nullptr, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest failed");
    }
    return hex_encode(digest);
}

std::string te_identity(const TPMT_PUBLIC& ek_public) {
    return te_identity(to_evp_pkey(ek_public).get());
}

// ---- AK -------------------------------------------------------------------

TPM2B_PUBLIC ak_template() {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.type = TPM2_ALG_ECC;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = kAkAttributes;
    auto& e = p.parameters.eccDetail;
    e.symmetric.algorithm = TPM2_ALG_NULL;
    e.scheme.scheme = TPM2_ALG_ECDSA;
    e.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    e.curveID = TPM2_ECC_NIST_P256;
    e.kdf.scheme = TPM2_ALG_NULL;
    return t;
}

AkBlob create_ak(Context& ctx, const Srk& srk) {
    const TPM2B_SENSITIVE_CREATE sensitive{};
    const TPM2B_PUBLIC tmpl = ak_template();
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    TPM2B_PRIVATE* out_priv = nullptr;
    TPM2B_PUBLIC* out_pub = nullptr;
    TPM2B_CREATION_DATA* creation = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    check(Esys_Create(ctx, srk.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                      &tmpl, &outside, &no_pcrs, &out_priv, &out_pub, &creation, &creation_hash,
                      &ticket),
          "TPM2_Create(AK)");
    const EsysPtr<TPM2B_PRIVATE> priv(out_priv);
    const EsysPtr<TPM2B_PUBLIC> pub(out_pub);
    const EsysPtr<TPM2B_CREATION_DATA> c1(creation);
    const EsysPtr<TPM2B_DIGEST> c2(creation_hash);
    const EsysPtr<TPMT_TK_CREATION> c3(ticket);
    AkBlob blob;
    blob.pub = marshal_public(*pub);
    blob.priv.resize(sizeof(TPM2B_PRIVATE));
    std::size_t len = 0;
    check(Tss2_MU_TPM2B_PRIVATE_Marshal(priv.get(), blob.priv.data(), blob.priv.size(), &len),
          "marshal TPM2B_PRIVATE");
    blob.priv.resize(len);
    return blob;
}

Ak load_ak(Context& ctx, const Srk& srk, const AkBlob& blob) {
    Ak ak;
    ak.pub = unmarshal_public(blob.pub, "ak-blob");
    if (!matches_ak_template(ak.pub.publicArea)) {
        throw InvalidArgument("ak-blob", "the public part is not an AK made from the AK template");
    }
    TPM2B_PRIVATE priv{};
    std::size_t offset = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob.priv.data(), blob.priv.size(), &offset, &priv) !=
            TSS2_RC_SUCCESS ||
        offset != blob.priv.size()) {
        throw InvalidArgument("ak-blob", "the private part is not a marshalled TPM2B_PRIVATE");
    }
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_Load(ctx, srk.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &ak.pub,
                    &tr),
          "TPM2_Load(AK)");
    ak.handle = Handle::transient(ctx, tr);
    ak.name = object_name(ak.pub.publicArea);
    return ak;
}

} // namespace tresim::tpm
