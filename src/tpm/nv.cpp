#include "nv.hpp"

#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <tss2/tss2_mu.h>

#include "error.hpp"
#include "handles.hpp"

namespace tresim::tpm {

namespace {

struct EvpMdCtxFree {
    void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct EvpPkeyFree {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct EvpPkeyCtxFree {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct EcdsaSigFree {
    void operator()(ECDSA_SIG* p) const noexcept { ECDSA_SIG_free(p); }
};
struct BnFree {
    void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
struct OpensslFree {
    void operator()(unsigned char* p) const noexcept { OPENSSL_free(p); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxFree>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

Sha256Digest sha256(std::initializer_list<ByteView> parts) {
    const MdCtxPtr md(EVP_MD_CTX_new());
    if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("SHA-256 is not available from OpenSSL");
    }
    for (const ByteView part : parts) {
        if (EVP_DigestUpdate(md.get(), part.data(), part.size()) != 1) {
            throw std::runtime_error("SHA-256 update failed");
        }
    }
    Sha256Digest out{};
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(md.get(), out.data(), &len) != 1 || len != out.size()) {
        throw std::runtime_error("SHA-256 final failed");
    }
    return out;
}

std::array<std::uint8_t, 4> be32(std::uint32_t v) {
    return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
            static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

std::string hex_handle(TPM2_HANDLE h) {
    char text[16];
    std::snprintf(text, sizeof(text), "0x%08x", h);
    return text;
}

// An auth value for an NV index: at most the name algorithm's digest size.
// The caller wipes the result.
TPM2B_AUTH to_auth(const SecretBytes& auth) {
    TPM2B_AUTH a{};
    if (auth.size() > 32) {
        throw InvalidArgument("auth", "an NV index auth value is at most 32 bytes");
    }
    a.size = static_cast<UINT16>(auth.size());
    std::memcpy(a.buffer, auth.data(), auth.size());
    return a;
}

// Sets the auth value ESAPI uses for `tr` in password sessions.
void set_auth(Context& ctx, ESYS_TR tr, const SecretBytes& auth) {
    TPM2B_AUTH a = to_auth(auth);
    const TSS2_RC rc = Esys_TR_SetAuth(ctx, tr, &a);
    wipe(&a, sizeof(a));
    check(rc, "Esys_TR_SetAuth(NV index)");
}

TPMS_NV_PUBLIC read_nv_public(Context& ctx, ESYS_TR tr, const char* what) {
    TPM2B_NV_PUBLIC* pub = nullptr;
    TPM2B_NAME* name = nullptr;
    check(Esys_NV_ReadPublic(ctx, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name), what);
    const EsysPtr<TPM2B_NV_PUBLIC> pub_owner(pub);
    const EsysPtr<TPM2B_NAME> name_owner(name);
    return pub->nvPublic;
}

TPM2B_NAME esys_name(const Context& ctx, ESYS_TR tr) {
    TPM2B_NAME* name = nullptr;
    check(Esys_TR_GetName(ctx, tr, &name), "Esys_TR_GetName(NV index)");
    const EsysPtr<TPM2B_NAME> owner(name);
    return *name;
}

// Opens an existing index: returns ESYS_TR_NONE when the TPM has no index
// there (or hides it: a platform index while phEnableNV is clear), else checks
// its public area against `want`.
ESYS_TR open_existing(Context& ctx, const TPMS_NV_PUBLIC& want, const char* what) {
    ESYS_TR tr = ESYS_TR_NONE;
    const TSS2_RC rc =
        Esys_TR_FromTPMPublic(ctx, want.nvIndex, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
    if (rc != TSS2_RC_SUCCESS) {
        const TpmError e(std::string("open NV index ") + hex_handle(want.nvIndex), rc);
        if (e.is(TPM2_RC_HANDLE)) {
            return ESYS_TR_NONE;
        }
        throw e;
    }
    const TPMS_NV_PUBLIC have = read_nv_public(ctx, tr, "TPM2_NV_ReadPublic");
    if (!matches_template(have, want)) {
        throw NvMismatch(std::string("the NV index at ") + hex_handle(want.nvIndex) +
                         " is not the " + what +
                         " tresim defines (type, attributes, name algorithm, policy or size "
                         "differ); refusing to use it");
    }
    return tr;
}

bool is_platform_unavailable(const TpmError& e) {
    return e.is(TPM2_RC_HIERARCHY) || e.is_auth_failure();
}

PkeyPtr ecc_public_key(const TPMT_PUBLIC& pub) {
    const char* group = nullptr;
    std::size_t field = 0;
    switch (pub.parameters.eccDetail.curveID) {
    case TPM2_ECC_NIST_P256:
        group = "P-256";
        field = 32;
        break;
    case TPM2_ECC_NIST_P384:
        group = "P-384";
        field = 48;
        break;
    default:
        throw NvAttestationInvalid("the signing key's curve is neither NIST P-256 nor P-384");
    }
    const TPMS_ECC_POINT& p = pub.unique.ecc;
    if (p.x.size == 0 || p.x.size > field || p.y.size == 0 || p.y.size > field) {
        throw NvAttestationInvalid("the signing key's public point has a wrong size");
    }
    // Uncompressed point 04 || x || y, coordinates left-padded to the field size.
    std::vector<std::uint8_t> point(1 + 2 * field, 0);
    point[0] = 0x04;
    std::memcpy(point.data() + 1 + field - p.x.size, p.x.buffer, p.x.size);
    std::memcpy(point.data() + 1 + 2 * field - p.y.size, p.y.buffer, p.y.size);
    std::string group_name(group);
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group_name.data(), 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
        OSSL_PARAM_construct_end(),
    };
    const PkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* key = nullptr;
    if (!pctx || EVP_PKEY_fromdata_init(pctx.get()) != 1 ||
        EVP_PKEY_fromdata(pctx.get(), &key, EVP_PKEY_PUBLIC_KEY, const_cast<OSSL_PARAM*>(params)) !=
            1) {
        throw NvAttestationInvalid("the signing key's public point is not on its curve");
    }
    return PkeyPtr(key);
}

// Verifies an ECDSA TPMT_SIGNATURE over `message` with the key in `signer`.
void verify_ecdsa(const TPMT_PUBLIC& signer, const TPMT_SIGNATURE& sig, ByteView message) {
    if (signer.type != TPM2_ALG_ECC) {
        throw NvAttestationInvalid("the signing key is not an ECC key");
    }
    if ((signer.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) == 0 ||
        (signer.objectAttributes & TPMA_OBJECT_RESTRICTED) == 0) {
        throw NvAttestationInvalid("the signing key is not a restricted signing key, so its "
                                   "signature does not prove the TPM made the attestation");
    }
    if (sig.sigAlg != TPM2_ALG_ECDSA) {
        throw NvAttestationInvalid("the signature is not ECDSA");
    }
    const EVP_MD* md = nullptr;
    switch (sig.signature.ecdsa.hash) {
    case TPM2_ALG_SHA256:
        md = EVP_sha256();
        break;
    case TPM2_ALG_SHA384:
        md = EVP_sha384();
        break;
    default:
        throw NvAttestationInvalid("the signature's hash is neither SHA-256 nor SHA-384");
    }
    const PkeyPtr key = ecc_public_key(signer);
    const TPM2B_ECC_PARAMETER& r = sig.signature.ecdsa.signatureR;
    const TPM2B_ECC_PARAMETER& s = sig.signature.ecdsa.signatureS;
    BnPtr br(BN_bin2bn(r.buffer, r.size, nullptr));
    BnPtr bs(BN_bin2bn(s.buffer, s.size, nullptr));
    const EcdsaSigPtr es(ECDSA_SIG_new());
    if (!br || !bs || !es || ECDSA_SIG_set0(es.get(), br.get(), bs.get()) != 1) {
        throw std::runtime_error("out of memory building an ECDSA signature");
    }
    br.release(); // owned by es now
    bs.release();
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(es.get(), &der);
    if (der_len <= 0) {
        throw NvAttestationInvalid("the ECDSA signature cannot be encoded");
    }
    const std::unique_ptr<unsigned char, OpensslFree> der_owner(der);
    const MdCtxPtr ctx(EVP_MD_CTX_new());
    const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) == 1 &&
                    EVP_DigestVerify(ctx.get(), der, static_cast<std::size_t>(der_len),
                                     message.data(), message.size()) == 1;
    if (!ok) {
        throw NvAttestationInvalid("the signature over the attestation does not verify with "
                                   "the signing key");
    }
}

} // namespace

// ---- Public areas -----------------------------------------------------------

TPM2B_NV_PUBLIC counter_template(TPM2_HANDLE index, bool orderly) {
    TPM2B_NV_PUBLIC t{};
    TPMS_NV_PUBLIC& p = t.nvPublic;
    p.nvIndex = index;
    p.nameAlg = TPM2_ALG_SHA256;
    p.attributes = (static_cast<TPMA_NV>(TPM2_NT_COUNTER) << TPMA_NV_TPM2_NT_SHIFT) |
                   TPMA_NV_OWNERWRITE | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA;
    if (orderly) {
        p.attributes |= TPMA_NV_ORDERLY;
    }
    p.dataSize = 8;
    return t;
}

TPM2B_NV_PUBLIC extend_index_template(TPM2_HANDLE index) {
    TPM2B_NV_PUBLIC t{};
    TPMS_NV_PUBLIC& p = t.nvPublic;
    p.nvIndex = index;
    p.nameAlg = TPM2_ALG_SHA256;
    p.attributes = (static_cast<TPMA_NV>(TPM2_NT_EXTEND) << TPMA_NV_TPM2_NT_SHIFT) |
                   TPMA_NV_AUTHWRITE | TPMA_NV_AUTHREAD | TPMA_NV_POLICY_DELETE |
                   TPMA_NV_PLATFORMCREATE | TPMA_NV_NO_DA;
    const Sha256Digest policy = undefine_special_policy();
    p.authPolicy.size = static_cast<UINT16>(policy.size());
    std::memcpy(p.authPolicy.buffer, policy.data(), policy.size());
    p.dataSize = 32;
    return t;
}

bool matches_template(const TPMS_NV_PUBLIC& pub, const TPMS_NV_PUBLIC& want) {
    constexpr TPMA_NV state_bits = TPMA_NV_WRITTEN | TPMA_NV_WRITELOCKED | TPMA_NV_READLOCKED;
    return pub.nvIndex == want.nvIndex && pub.nameAlg == want.nameAlg &&
           (pub.attributes & ~state_bits) == (want.attributes & ~state_bits) &&
           pub.dataSize == want.dataSize && pub.authPolicy.size == want.authPolicy.size &&
           std::memcmp(pub.authPolicy.buffer, want.authPolicy.buffer, want.authPolicy.size) == 0;
}

// ---- Software computations --------------------------------------------------

Sha256Digest undefine_special_policy() {
    const Sha256Digest zero{};
    const auto cc = be32(TPM2_CC_PolicyCommandCode);
    const auto code = be32(TPM2_CC_NV_UndefineSpaceSpecial);
    return sha256({zero, cc, code});
}

TPM2B_NAME nv_name(const TPMS_NV_PUBLIC& pub) {
    if (pub.nameAlg != TPM2_ALG_SHA256) {
        throw InvalidArgument("nv-public", "only SHA-256 NV names are supported");
    }
    std::array<std::uint8_t, sizeof(TPMS_NV_PUBLIC)> buf{};
    std::size_t len = 0;
    check(Tss2_MU_TPMS_NV_PUBLIC_Marshal(&pub, buf.data(), buf.size(), &len),
          "Tss2_MU_TPMS_NV_PUBLIC_Marshal");
    const Sha256Digest h = sha256({ByteView(buf.data(), len)});
    TPM2B_NAME name{};
    name.size = static_cast<UINT16>(2 + h.size());
    name.name[0] = static_cast<std::uint8_t>(pub.nameAlg >> 8);
    name.name[1] = static_cast<std::uint8_t>(pub.nameAlg);
    std::memcpy(name.name + 2, h.data(), h.size());
    return name;
}

Sha256Digest extend_chain(ByteView old, ByteView data) {
    require_size(old, 32, "old");
    return sha256({old, data});
}

std::uint32_t orderly_count(Context& ctx) {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA* data = nullptr;
    check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                             TPM2_PT_ORDERLY_COUNT, 1, &more, &data),
          "TPM2_GetCapability(TPM2_PT_ORDERLY_COUNT)");
    const EsysPtr<TPMS_CAPABILITY_DATA> owner(data);
    const TPML_TAGGED_TPM_PROPERTY& props = data->data.tpmProperties;
    if (props.count < 1 || props.tpmProperty[0].property != TPM2_PT_ORDERLY_COUNT) {
        throw std::runtime_error("the TPM does not report TPM2_PT_ORDERLY_COUNT");
    }
    return props.tpmProperty[0].value;
}

// ---- NvCounter ----------------------------------------------------------------

NvCounter NvCounter::open_or_define(Context& ctx, const SecretBytes& auth, TPM2_HANDLE index,
                                    bool orderly) {
    (void)to_auth(auth); // size check before touching the TPM
    NvCounter c(ctx, index);
    const TPM2B_NV_PUBLIC want = counter_template(index, orderly);
    c.handle_ = open_existing(ctx, want.nvPublic, "epoch counter");
    if (c.handle_ == ESYS_TR_NONE) {
        TPM2B_AUTH a = to_auth(auth);
        ESYS_TR tr = ESYS_TR_NONE;
        const TSS2_RC rc = Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                               ESYS_TR_NONE, ESYS_TR_NONE, &a, &want, &tr);
        wipe(&a, sizeof(a));
        check(rc, "TPM2_NV_DefineSpace(counter)");
        c.handle_ = tr;
        c.created_ = true;
    }
    set_auth(ctx, c.handle_, auth);
    return c;
}

std::optional<std::uint64_t> NvCounter::read() {
    TPM2B_MAX_NV_BUFFER* data = nullptr;
    const TSS2_RC rc = Esys_NV_Read(*ctx_, handle_, handle_, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                    ESYS_TR_NONE, 8, 0, &data);
    if (rc != TSS2_RC_SUCCESS) {
        const TpmError e("TPM2_NV_Read(counter)", rc);
        if (e.is(TPM2_RC_NV_UNINITIALIZED)) {
            return std::nullopt;
        }
        throw e;
    }
    const EsysPtr<TPM2B_MAX_NV_BUFFER> owner(data);
    if (data->size != 8) {
        throw std::runtime_error("TPM2_NV_Read(counter) returned " + std::to_string(data->size) +
                                 " bytes instead of 8");
    }
    return load_be(ByteView(data->buffer, 8));
}

void NvCounter::increment() {
    check(Esys_NV_Increment(*ctx_, ESYS_TR_RH_OWNER, handle_, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE),
          "TPM2_NV_Increment(counter)");
}

void NvCounter::undefine() {
    check(Esys_NV_UndefineSpace(*ctx_, ESYS_TR_RH_OWNER, handle_, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE),
          "TPM2_NV_UndefineSpace(counter)");
    handle_ = ESYS_TR_NONE; // ESAPI dropped the object with the index
}

TPM2B_NAME NvCounter::name() const {
    return esys_name(*ctx_, handle_);
}

// ---- NvExtendIndex -------------------------------------------------------------

NvExtendIndex NvExtendIndex::open_or_define(Context& ctx, const SecretBytes& auth,
                                            TPM2_HANDLE index) {
    (void)to_auth(auth);
    NvExtendIndex x(ctx, index);
    const TPM2B_NV_PUBLIC want = extend_index_template(index);
    x.handle_ = open_existing(ctx, want.nvPublic, "audit extend index");
    if (x.handle_ == ESYS_TR_NONE) {
        TPM2B_AUTH a = to_auth(auth);
        ESYS_TR tr = ESYS_TR_NONE;
        const TSS2_RC rc = Esys_NV_DefineSpace(ctx, ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD,
                                               ESYS_TR_NONE, ESYS_TR_NONE, &a, &want, &tr);
        wipe(&a, sizeof(a));
        if (rc != TSS2_RC_SUCCESS) {
            const TpmError e("TPM2_NV_DefineSpace(audit index, platform)", rc);
            if (is_platform_unavailable(e)) {
                throw NvPlatformUnavailable(
                    "the audit NV index needs the platform hierarchy to be defined "
                    "(TPMA_NV_POLICY_DELETE), and the platform hierarchy is disabled or "
                    "its authorization is unknown: " +
                    std::string(e.what()));
            }
            throw e;
        }
        x.handle_ = tr;
        x.created_ = true;
    }
    set_auth(ctx, x.handle_, auth);
    return x;
}

void NvExtendIndex::extend(ByteView data) {
    TPM2B_MAX_NV_BUFFER buf{};
    if (data.empty() || data.size() > 1024) {
        throw InvalidArgument("data", "an NV extend takes 1 to 1024 bytes");
    }
    buf.size = static_cast<UINT16>(data.size());
    std::memcpy(buf.buffer, data.data(), data.size());
    check(
        Esys_NV_Extend(*ctx_, handle_, handle_, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buf),
        "TPM2_NV_Extend(audit index)");
}

Sha256Digest NvExtendIndex::read() {
    TPM2B_MAX_NV_BUFFER* data = nullptr;
    const TSS2_RC rc = Esys_NV_Read(*ctx_, handle_, handle_, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                    ESYS_TR_NONE, 32, 0, &data);
    Sha256Digest out{};
    if (rc != TSS2_RC_SUCCESS) {
        const TpmError e("TPM2_NV_Read(audit index)", rc);
        if (e.is(TPM2_RC_NV_UNINITIALIZED)) {
            return out; // never extended: the chain starts from zero
        }
        throw e;
    }
    const EsysPtr<TPM2B_MAX_NV_BUFFER> owner(data);
    if (data->size != out.size()) {
        throw std::runtime_error("TPM2_NV_Read(audit index) returned " +
                                 std::to_string(data->size) + " bytes instead of 32");
    }
    std::memcpy(out.data(), data->buffer, out.size());
    return out;
}

NvCertification NvExtendIndex::certify(ESYS_TR signer, ByteView qualifying_data) {
    TPM2B_DATA q{};
    if (qualifying_data.size() > sizeof(q.buffer)) {
        throw InvalidArgument("nonce", "qualifying data is at most 64 bytes");
    }
    q.size = static_cast<UINT16>(qualifying_data.size());
    std::memcpy(q.buffer, qualifying_data.data(), qualifying_data.size());
    TPMT_SIG_SCHEME scheme{};
    scheme.scheme = TPM2_ALG_ECDSA;
    scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    TPM2B_ATTEST* info = nullptr;
    TPMT_SIGNATURE* sig = nullptr;
    check(Esys_NV_Certify(*ctx_, signer, handle_, handle_, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD,
                          ESYS_TR_NONE, &q, &scheme, 32, 0, &info, &sig),
          "TPM2_NV_Certify(audit index)");
    const EsysPtr<TPM2B_ATTEST> info_owner(info);
    const EsysPtr<TPMT_SIGNATURE> sig_owner(sig);
    NvCertification c;
    c.attest.assign(info->attestationData, info->attestationData + info->size);
    c.signature.resize(sizeof(TPMT_SIGNATURE));
    std::size_t len = 0;
    check(Tss2_MU_TPMT_SIGNATURE_Marshal(sig, c.signature.data(), c.signature.size(), &len),
          "Tss2_MU_TPMT_SIGNATURE_Marshal");
    c.signature.resize(len);
    return c;
}

TPMS_NV_PUBLIC NvExtendIndex::read_public() {
    return read_nv_public(*ctx_, handle_, "TPM2_NV_ReadPublic(audit index)");
}

void NvExtendIndex::undefine_special() {
    TPMT_SYM_DEF no_cipher{};
    no_cipher.algorithm = TPM2_ALG_NULL;
    ESYS_TR s = ESYS_TR_NONE;
    check(Esys_StartAuthSession(*ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                ESYS_TR_NONE, nullptr, TPM2_SE_POLICY, &no_cipher, TPM2_ALG_SHA256,
                                &s),
          "TPM2_StartAuthSession(policy)");
    Handle session = Handle::session(*ctx_, s);
    check(Esys_PolicyCommandCode(*ctx_, s, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                 TPM2_CC_NV_UndefineSpaceSpecial),
          "TPM2_PolicyCommandCode(NV_UndefineSpaceSpecial)");
    // Let the TPM flush the session with the command that uses it.
    check(Esys_TRSess_SetAttributes(*ctx_, s, 0, TPMA_SESSION_CONTINUESESSION),
          "Esys_TRSess_SetAttributes");
    // The policy has no PolicyAuthValue, so the index's auth value is not part of
    // the session's HMAC key; ESAPI would still use it to check the response
    // (TSS2_ESYS_RC_RSP_AUTH_FAILED after the TPM deleted the index).
    const TPM2B_AUTH empty{};
    check(Esys_TR_SetAuth(*ctx_, handle_, &empty), "Esys_TR_SetAuth(audit index)");
    const TSS2_RC rc = Esys_NV_UndefineSpaceSpecial(*ctx_, handle_, ESYS_TR_RH_PLATFORM, s,
                                                    ESYS_TR_PASSWORD, ESYS_TR_NONE);
    if (rc != TSS2_RC_SUCCESS) {
        const TpmError e("TPM2_NV_UndefineSpaceSpecial(audit index)", rc);
        if (is_platform_unavailable(e)) {
            throw NvPlatformUnavailable("deleting the audit NV index needs platform "
                                        "authorization, which is unavailable: " +
                                        std::string(e.what()));
        }
        throw e;
    }
    session.release();
    handle_ = ESYS_TR_NONE; // ESAPI dropped the object with the index
}

TPM2B_NAME NvExtendIndex::name() const {
    return esys_name(*ctx_, handle_);
}

// ---- Verification -------------------------------------------------------------

TPMS_ATTEST verify_nv_certification(const NvCertification& c, const TPMT_PUBLIC& signer,
                                    ByteView nonce, const TPM2B_NAME& index_name, ByteView contents,
                                    std::uint16_t offset) {
    TPMS_ATTEST a{};
    std::size_t off = 0;
    if (Tss2_MU_TPMS_ATTEST_Unmarshal(c.attest.data(), c.attest.size(), &off, &a) !=
            TSS2_RC_SUCCESS ||
        off != c.attest.size()) {
        throw NvAttestationInvalid("the attestation is not a well-formed TPMS_ATTEST");
    }
    TPMT_SIGNATURE sig{};
    off = 0;
    if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(c.signature.data(), c.signature.size(), &off, &sig) !=
            TSS2_RC_SUCCESS ||
        off != c.signature.size()) {
        throw NvAttestationInvalid("the signature is not a well-formed TPMT_SIGNATURE");
    }
    verify_ecdsa(signer, sig, c.attest);
    if (a.magic != TPM2_GENERATED_VALUE) {
        throw NvAttestationInvalid("the attestation lacks the TPM_GENERATED magic");
    }
    if (a.type != TPM2_ST_ATTEST_NV) {
        throw NvAttestationInvalid("the attestation is not of type TPM_ST_ATTEST_NV");
    }
    if (!equal_ct(ByteView(a.extraData.buffer, a.extraData.size), nonce)) {
        throw NvAttestationInvalid("the attestation's qualifying data is not the nonce");
    }
    const TPMS_NV_CERTIFY_INFO& nv = a.attested.nv;
    if (!equal_ct(ByteView(nv.indexName.name, nv.indexName.size),
                  ByteView(index_name.name, index_name.size))) {
        throw NvAttestationInvalid("the attestation names another NV index");
    }
    if (nv.offset != offset) {
        throw NvAttestationInvalid("the attestation certifies another offset");
    }
    if (!equal_ct(ByteView(nv.nvContents.buffer, nv.nvContents.size), contents)) {
        throw NvAttestationInvalid("the certified NV contents differ from the expected value");
    }
    return a;
}

} // namespace tresim::tpm
