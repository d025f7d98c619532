#include "hmac.hpp"

#include <cstring>

#include <tss2/tss2_mu.h>

#include "error.hpp"

namespace tresim::tpm {

namespace {

constexpr TPMA_OBJECT kHmacKeyAttributes =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT;

HmacSha256 to_mac(const TPM2B_DIGEST& d, const char* what) {
    HmacSha256 out{};
    if (d.size != out.size()) {
        throw std::runtime_error(std::string(what) + " returned " + std::to_string(d.size) +
                                 " bytes instead of 32");
    }
    std::memcpy(out.data(), d.buffer, out.size());
    return out;
}

TPM2B_MAX_BUFFER chunk(ByteView data) {
    TPM2B_MAX_BUFFER b{};
    b.size = static_cast<UINT16>(data.size());
    std::memcpy(b.buffer, data.data(), data.size());
    return b;
}

} // namespace

TPM2B_PUBLIC hmac_key_template() {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.type = TPM2_ALG_KEYEDHASH;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = kHmacKeyAttributes;
    p.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_HMAC;
    p.parameters.keyedHashDetail.scheme.details.hmac.hashAlg = TPM2_ALG_SHA256;
    return t;
}

bool matches_hmac_key_template(const TPMT_PUBLIC& pub) {
    const auto& s = pub.parameters.keyedHashDetail.scheme;
    return pub.type == TPM2_ALG_KEYEDHASH && pub.nameAlg == TPM2_ALG_SHA256 &&
           pub.objectAttributes == kHmacKeyAttributes && pub.authPolicy.size == 0 &&
           s.scheme == TPM2_ALG_HMAC && s.details.hmac.hashAlg == TPM2_ALG_SHA256;
}

HmacKeyBlob create_hmac_key(Context& ctx, ESYS_TR parent, const SecretBytes& auth) {
    TPM2B_SENSITIVE_CREATE sensitive{};
    if (auth.size() > sizeof(sensitive.sensitive.userAuth.buffer) || auth.size() > 32) {
        throw InvalidArgument("auth", "an HMAC key auth value is at most 32 bytes");
    }
    sensitive.sensitive.userAuth.size = static_cast<UINT16>(auth.size());
    std::memcpy(sensitive.sensitive.userAuth.buffer, auth.data(), auth.size());
    const TPM2B_PUBLIC tmpl = hmac_key_template();
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    TPM2B_PRIVATE* priv = nullptr;
    TPM2B_PUBLIC* pub = nullptr;
    TPM2B_CREATION_DATA* creation = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    const TSS2_RC rc =
        Esys_Create(ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl,
                    &outside, &no_pcrs, &priv, &pub, &creation, &creation_hash, &ticket);
    wipe(&sensitive, sizeof(sensitive));
    const EsysPtr<TPM2B_PRIVATE> priv_owner(priv);
    const EsysPtr<TPM2B_PUBLIC> pub_owner(pub);
    const EsysPtr<TPM2B_CREATION_DATA> creation_owner(creation);
    const EsysPtr<TPM2B_DIGEST> hash_owner(creation_hash);
    const EsysPtr<TPMT_TK_CREATION> ticket_owner(ticket);
    check(rc, "TPM2_Create(HMAC key)");

    HmacKeyBlob blob;
    blob.public_blob.resize(sizeof(TPM2B_PUBLIC));
    std::size_t len = 0;
    check(Tss2_MU_TPM2B_PUBLIC_Marshal(pub, blob.public_blob.data(), blob.public_blob.size(), &len),
          "Tss2_MU_TPM2B_PUBLIC_Marshal");
    blob.public_blob.resize(len);
    blob.private_blob.resize(sizeof(TPM2B_PRIVATE));
    len = 0;
    check(Tss2_MU_TPM2B_PRIVATE_Marshal(priv, blob.private_blob.data(), blob.private_blob.size(),
                                        &len),
          "Tss2_MU_TPM2B_PRIVATE_Marshal");
    blob.private_blob.resize(len);
    return blob;
}

HmacKey HmacKey::load(Context& ctx, ESYS_TR parent, const HmacKeyBlob& blob,
                      const SecretBytes& auth) {
    TPM2B_AUTH a{};
    if (auth.size() > 32) {
        throw InvalidArgument("auth", "an HMAC key auth value is at most 32 bytes");
    }
    TPM2B_PUBLIC pub{};
    TPM2B_PRIVATE priv{};
    std::size_t off = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob.public_blob.data(), blob.public_blob.size(), &off,
                                       &pub) != TSS2_RC_SUCCESS ||
        off != blob.public_blob.size()) {
        throw InvalidArgument("hmac-key-blob", "the public blob is not a marshalled TPM2B_PUBLIC");
    }
    off = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob.private_blob.data(), blob.private_blob.size(), &off,
                                        &priv) != TSS2_RC_SUCCESS ||
        off != blob.private_blob.size()) {
        throw InvalidArgument("hmac-key-blob",
                              "the private blob is not a marshalled TPM2B_PRIVATE");
    }
    if (!matches_hmac_key_template(pub.publicArea)) {
        throw HmacKeyMismatch("the stored HMAC key is not a TPM-generated HMAC-SHA256 key from "
                              "tresim's template; refusing to use it");
    }
    HmacKey key(ctx);
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_Load(ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &tr),
          "TPM2_Load(HMAC key)");
    key.handle_ = Handle::transient(ctx, tr);
    a.size = static_cast<UINT16>(auth.size());
    std::memcpy(a.buffer, auth.data(), auth.size());
    const TSS2_RC rc = Esys_TR_SetAuth(ctx, tr, &a);
    wipe(&a, sizeof(a));
    check(rc, "Esys_TR_SetAuth(HMAC key)");
    return key;
}

HmacSha256 HmacKey::mac(ByteView data) {
    return tpm_hmac_sha256(*ctx_, handle_, data);
}

bool HmacKey::verify(ByteView data, ByteView mac) {
    const HmacSha256 expected = tpm_hmac_sha256(*ctx_, handle_, data);
    return equal_ct(expected, mac);
}

TPM2B_NAME HmacKey::name() const {
    TPM2B_NAME* name = nullptr;
    check(Esys_TR_GetName(*ctx_, handle_, &name), "Esys_TR_GetName(HMAC key)");
    const EsysPtr<TPM2B_NAME> owner(name);
    return *name;
}

HmacSha256 tpm_hmac_sha256(Context& ctx, ESYS_TR key, ByteView data) {
    if (data.size() <= kHmacChunk) {
        const TPM2B_MAX_BUFFER buf = chunk(data);
        TPM2B_DIGEST* out = nullptr;
        check(Esys_HMAC(ctx, key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buf,
                        TPM2_ALG_SHA256, &out),
              "TPM2_HMAC");
        const EsysPtr<TPM2B_DIGEST> owner(out);
        return to_mac(*out, "TPM2_HMAC");
    }
    const TPM2B_AUTH sequence_auth{};
    ESYS_TR seq = ESYS_TR_NONE;
    check(Esys_HMAC_Start(ctx, key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sequence_auth,
                          TPM2_ALG_SHA256, &seq),
          "TPM2_HMAC_Start");
    Handle sequence = Handle::transient(ctx, seq); // flushed if an update fails
    while (data.size() > kHmacChunk) {
        const TPM2B_MAX_BUFFER buf = chunk(data.first(kHmacChunk));
        check(Esys_SequenceUpdate(ctx, seq, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buf),
              "TPM2_SequenceUpdate(HMAC)");
        data = data.subspan(kHmacChunk);
    }
    const TPM2B_MAX_BUFFER last = chunk(data);
    TPM2B_DIGEST* out = nullptr;
    TPMT_TK_HASHCHECK* ticket = nullptr;
    check(Esys_SequenceComplete(ctx, seq, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &last,
                                ESYS_TR_RH_NULL, &out, &ticket),
          "TPM2_SequenceComplete(HMAC)");
    sequence.release(); // the TPM flushed the sequence object
    const EsysPtr<TPM2B_DIGEST> owner(out);
    const EsysPtr<TPMT_TK_HASHCHECK> ticket_owner(ticket);
    return to_mac(*out, "TPM2_SequenceComplete(HMAC)");
}

} // namespace tresim::tpm
