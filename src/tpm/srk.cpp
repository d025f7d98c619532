#include "srk.hpp"

#include "error.hpp"

namespace tresim::tpm {

TPM2B_PUBLIC srk_template() {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.type = TPM2_ALG_ECC;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                         TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                         TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    p.parameters.eccDetail.symmetric.keyBits.aes = 128;
    p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    p.unique.ecc.x.size = 32;
    p.unique.ecc.y.size = 32;
    return t;
}

bool matches_srk_template(const TPMT_PUBLIC& pub) {
    const TPMT_PUBLIC want = srk_template().publicArea;
    const auto& a = pub.parameters.eccDetail;
    const auto& b = want.parameters.eccDetail;
    return pub.type == want.type && pub.nameAlg == want.nameAlg &&
           pub.objectAttributes == want.objectAttributes && pub.authPolicy.size == 0 &&
           a.symmetric.algorithm == b.symmetric.algorithm &&
           a.symmetric.keyBits.aes == b.symmetric.keyBits.aes &&
           a.symmetric.mode.aes == b.symmetric.mode.aes && a.scheme.scheme == b.scheme.scheme &&
           a.curveID == b.curveID && a.kdf.scheme == b.kdf.scheme;
}

namespace {

void read_public(Context& ctx, ESYS_TR tr, Srk& srk) {
    TPM2B_PUBLIC* pub = nullptr;
    TPM2B_NAME* name = nullptr;
    TPM2B_NAME* qname = nullptr;
    check(Esys_ReadPublic(ctx, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name, &qname),
          "TPM2_ReadPublic(SRK)");
    srk.pub = *pub;
    srk.name = *name;
    Esys_Free(pub);
    Esys_Free(name);
    Esys_Free(qname);
}

} // namespace

Srk ensure_srk(Context& ctx) {
    Srk srk;
    ESYS_TR tr = ESYS_TR_NONE;
    const TSS2_RC rc =
        Esys_TR_FromTPMPublic(ctx, kSrkHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
    if (rc == TSS2_RC_SUCCESS) {
        srk.handle = Handle::persistent(ctx, tr);
        read_public(ctx, tr, srk);
        if (!matches_srk_template(srk.pub.publicArea)) {
            throw SrkMismatch("the key at persistent handle 0x81000001 is not an SRK from the TCG "
                              "ECC P-256 template; refusing to use it");
        }
        return srk;
    }
    if (!TpmError("", rc).is(TPM2_RC_HANDLE)) {
        throw TpmError("open SRK 0x81000001", rc);
    }

    const TPM2B_SENSITIVE_CREATE sensitive{};
    const TPM2B_PUBLIC tmpl = srk_template();
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    ESYS_TR transient = ESYS_TR_NONE;
    TPM2B_PUBLIC* out_pub = nullptr;
    TPM2B_CREATION_DATA* creation = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    check(Esys_CreatePrimary(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                             &sensitive, &tmpl, &outside, &no_pcrs, &transient, &out_pub, &creation,
                             &creation_hash, &ticket),
          "TPM2_CreatePrimary(SRK)");
    Esys_Free(out_pub);
    Esys_Free(creation);
    Esys_Free(creation_hash);
    Esys_Free(ticket);
    const Handle primary = Handle::transient(ctx, transient);
    ESYS_TR persistent = ESYS_TR_NONE;
    check(Esys_EvictControl(ctx, ESYS_TR_RH_OWNER, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE, kSrkHandle, &persistent),
          "TPM2_EvictControl(SRK to 0x81000001)");
    srk.handle = Handle::persistent(ctx, persistent);
    srk.created = true;
    read_public(ctx, persistent, srk);
    return srk;
}

} // namespace tresim::tpm
