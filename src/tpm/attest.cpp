#include "attest.hpp"

#include <algorithm>
#include <cstring>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "error.hpp"
#include "handles.hpp"

namespace tresim::tpm {

namespace {

struct MdCtxFree {
    void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxFree {
    void operator()(EVP_CIPHER_CTX* p) const noexcept { EVP_CIPHER_CTX_free(p); }
};
struct EcdsaSigFree {
    void operator()(ECDSA_SIG* p) const noexcept { ECDSA_SIG_free(p); }
};

constexpr unsigned kPcrCount = 24;
constexpr std::size_t kPcrSelectBytes = 3;

void append_u16(Bytes& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void append_u32(Bytes& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        out.push_back(static_cast<std::uint8_t>(v >> shift));
    }
}

TPML_PCR_SELECTION tpml_of(TPMI_ALG_HASH bank, const std::vector<unsigned>& pcrs) {
    TPML_PCR_SELECTION sel{};
    sel.count = 1;
    sel.pcrSelections[0].hash = bank;
    sel.pcrSelections[0].sizeofSelect = kPcrSelectBytes;
    for (const unsigned pcr : pcrs) {
        if (pcr >= kPcrCount) {
            throw InvalidArgument("pcrs", "a PCR index is not in 0..23");
        }
        sel.pcrSelections[0].pcrSelect[pcr / 8] |= static_cast<std::uint8_t>(1u << (pcr % 8));
    }
    return sel;
}

TPM2B_DATA to_data(ByteView bytes, const char* argument) {
    TPM2B_DATA d{};
    if (bytes.size() > sizeof(d.buffer)) {
        throw InvalidArgument(argument, "is longer than a TPM2B_DATA (64 bytes)");
    }
    d.size = static_cast<std::uint16_t>(bytes.size());
    std::copy(bytes.begin(), bytes.end(), d.buffer);
    return d;
}

// The TPM's ECDSA signature as DER ECDSA-Sig-Value.
Bytes ecdsa_der(const TPMT_SIGNATURE& sig) {
    if (sig.sigAlg != TPM2_ALG_ECDSA || sig.signature.ecdsa.hash != TPM2_ALG_SHA256) {
        throw std::runtime_error("the AK signed with another scheme than ECDSA-SHA256");
    }
    const auto& r = sig.signature.ecdsa.signatureR;
    const auto& s = sig.signature.ecdsa.signatureS;
    std::unique_ptr<ECDSA_SIG, EcdsaSigFree> es(ECDSA_SIG_new());
    BIGNUM* br = BN_bin2bn(r.buffer, r.size, nullptr);
    BIGNUM* bs = BN_bin2bn(s.buffer, s.size, nullptr);
    if (!es || br == nullptr || bs == nullptr || ECDSA_SIG_set0(es.get(), br, bs) != 1) {
        BN_free(br);
        BN_free(bs);
        throw std::bad_alloc();
    }
    const int len = i2d_ECDSA_SIG(es.get(), nullptr);
    if (len <= 0) {
        throw std::runtime_error("cannot encode the ECDSA signature");
    }
    Bytes out(static_cast<std::size_t>(len));
    unsigned char* p = out.data();
    i2d_ECDSA_SIG(es.get(), &p);
    return out;
}

Attestation to_attestation(const TPM2B_ATTEST& attest, const TPMT_SIGNATURE& sig) {
    Attestation a;
    a.attest.assign(attest.attestationData, attest.attestationData + attest.size);
    a.signature = ecdsa_der(sig);
    return a;
}

// KDFa (TPM 2.0 Part 1 §11.4.10.2): HMAC(key, [i] || label || 00 || u || v || [bits]).
SecretBytes kdfa(const EVP_MD* md, ByteView key, const char* label, ByteView context_u,
                 ByteView context_v, std::uint32_t bits) {
    const std::size_t want = (bits + 7) / 8;
    const auto hlen = static_cast<std::size_t>(EVP_MD_get_size(md));
    SecretBytes out(((want + hlen - 1) / hlen) * hlen);
    Bytes msg;
    for (std::uint32_t i = 1, done = 0; done < want;
         ++i, done += static_cast<std::uint32_t>(hlen)) {
        msg.clear();
        append_u32(msg, i);
        msg.insert(msg.end(), label, label + std::strlen(label) + 1);
        msg.insert(msg.end(), context_u.begin(), context_u.end());
        msg.insert(msg.end(), context_v.begin(), context_v.end());
        append_u32(msg, bits);
        unsigned int len = 0;
        if (HMAC(md, key.data(), static_cast<int>(key.size()), msg.data(), msg.size(),
                 out.data() + done, &len) == nullptr) {
            throw std::runtime_error("HMAC failed");
        }
    }
    out.resize(want);
    return out;
}

// KDFe (Part 1 §11.4.10.3): H([i] || Z || label || 00 || partyU || partyV).
SecretBytes kdfe(const EVP_MD* md, ByteView z, const char* label, ByteView party_u,
                 ByteView party_v, std::uint32_t bits) {
    const std::size_t want = (bits + 7) / 8;
    const auto hlen = static_cast<std::size_t>(EVP_MD_get_size(md));
    SecretBytes out(((want + hlen - 1) / hlen) * hlen);
    const std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    for (std::uint32_t i = 1, done = 0; done < want;
         ++i, done += static_cast<std::uint32_t>(hlen)) {
        Bytes counter;
        append_u32(counter, i);
        if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
            EVP_DigestUpdate(ctx.get(), counter.data(), counter.size()) != 1 ||
            EVP_DigestUpdate(ctx.get(), z.data(), z.size()) != 1 ||
            EVP_DigestUpdate(ctx.get(), label, std::strlen(label) + 1) != 1 ||
            EVP_DigestUpdate(ctx.get(), party_u.data(), party_u.size()) != 1 ||
            EVP_DigestUpdate(ctx.get(), party_v.data(), party_v.size()) != 1 ||
            EVP_DigestFinal_ex(ctx.get(), out.data() + done, nullptr) != 1) {
            throw std::runtime_error("KDFe digest failed");
        }
    }
    out.resize(want);
    return out;
}

// RSA: the seed is random and encrypted with OAEP(nameAlg, label "IDENTITY").
Bytes rsa_seed(const TPMT_PUBLIC& ek, const EVP_MD* md, SecretBytes& seed) {
    seed = SecretBytes(static_cast<std::size_t>(EVP_MD_get_size(md)));
    if (RAND_priv_bytes(seed.data(), static_cast<int>(seed.size())) != 1) {
        throw std::runtime_error("RAND_priv_bytes failed");
    }
    const EvpPkeyPtr key = to_evp_pkey(ek);
    const std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
        EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    static const char kLabel[] = "IDENTITY";
    void* label = OPENSSL_memdup(kLabel, sizeof(kLabel)); // with its terminating zero
    if (!ctx || label == nullptr || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
        EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, sizeof(kLabel)) != 1) {
        OPENSSL_free(label);
        throw std::runtime_error("cannot set up RSA-OAEP for the EK");
    }
    std::size_t len = 0;
    if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, seed.data(), seed.size()) != 1) {
        throw std::runtime_error("RSA-OAEP encryption to the EK failed");
    }
    Bytes out(len);
    if (EVP_PKEY_encrypt(ctx.get(), out.data(), &len, seed.data(), seed.size()) != 1) {
        throw std::runtime_error("RSA-OAEP encryption to the EK failed");
    }
    out.resize(len);
    return out;
}

// ECC: an ephemeral key; Z = x of ECDH with the EK; seed = KDFe(Z, "IDENTITY",
// ephemeral x, EK x). The secret is the ephemeral point as a TPMS_ECC_POINT.
Bytes ecc_seed(const TPMT_PUBLIC& ek, const EVP_MD* md, SecretBytes& seed) {
    const EvpPkeyPtr ek_key = to_evp_pkey(ek);
    char group[64] = {};
    if (EVP_PKEY_get_utf8_string_param(ek_key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                       sizeof(group), nullptr) != 1) {
        throw std::runtime_error("cannot read the EK's curve");
    }
    const EvpPkeyPtr eph(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group));
    if (!eph) {
        throw std::runtime_error("cannot generate an ephemeral ECC key");
    }
    const std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
        EVP_PKEY_CTX_new_from_pkey(nullptr, eph.get(), nullptr));
    std::size_t zlen = 0;
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
        EVP_PKEY_derive_set_peer(ctx.get(), ek_key.get()) != 1 ||
        EVP_PKEY_derive(ctx.get(), nullptr, &zlen) != 1) {
        throw std::runtime_error("ECDH with the EK failed");
    }
    SecretBytes z(zlen);
    if (EVP_PKEY_derive(ctx.get(), z.data(), &zlen) != 1) {
        throw std::runtime_error("ECDH with the EK failed");
    }
    z.resize(zlen);

    std::uint8_t point[1 + 2 * 66];
    std::size_t plen = 0;
    if (EVP_PKEY_get_octet_string_param(eph.get(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                        &plen) != 1 ||
        point[0] != 0x04 || plen % 2 != 1) {
        throw std::runtime_error("cannot read the ephemeral ECC point");
    }
    const std::size_t flen = plen / 2;
    TPMS_ECC_POINT q{};
    q.x.size = static_cast<std::uint16_t>(flen);
    q.y.size = static_cast<std::uint16_t>(flen);
    std::memcpy(q.x.buffer, point + 1, flen);
    std::memcpy(q.y.buffer, point + 1 + flen, flen);

    // PartyVInfo is the EK's x, padded to the field size like Z.
    Bytes ek_x(flen - std::min<std::size_t>(flen, ek.unique.ecc.x.size), 0);
    ek_x.insert(ek_x.end(), ek.unique.ecc.x.buffer, ek.unique.ecc.x.buffer + ek.unique.ecc.x.size);
    seed = kdfe(md, z.view(), "IDENTITY", ByteView(q.x.buffer, flen), ek_x,
                static_cast<std::uint32_t>(EVP_MD_get_size(md)) * 8);

    Bytes out(sizeof(TPMS_ECC_POINT));
    std::size_t len = 0;
    check(Tss2_MU_TPMS_ECC_POINT_Marshal(&q, out.data(), out.size(), &len),
          "marshal TPMS_ECC_POINT");
    out.resize(len);
    return out;
}

const EVP_CIPHER* aes_cfb(std::uint16_t bits) {
    switch (bits) {
    case 128:
        return EVP_aes_128_cfb128();
    case 192:
        return EVP_aes_192_cfb128();
    case 256:
        return EVP_aes_256_cfb128();
    default:
        return nullptr;
    }
}

void require(bool ok, const char* what, const std::string& reason) {
    if (!ok) {
        throw AttestationMismatch(what, reason);
    }
}

bool equal(ByteView a, const std::uint8_t* b, std::size_t blen) {
    return a.size() == blen && std::equal(a.begin(), a.end(), b);
}

void check_common(const TPMS_ATTEST& a, TPMI_ST_ATTEST type, const AttestExpectations& e) {
    require(a.type == type, "type",
            type == TPM2_ST_ATTEST_QUOTE ? "the attestation is not a quote"
                                         : "the attestation is not a certification");
    require(equal(e.qualifying_data, a.extraData.buffer, a.extraData.size), "qualifying-data",
            "the qualifying data (nonce) is not the one asked for");
    require(!e.reset_count || *e.reset_count == a.clockInfo.resetCount, "reset-count",
            "the TPM was reset since the reference attestation");
    require(!e.restart_count || *e.restart_count == a.clockInfo.restartCount, "restart-count",
            "the TPM was restarted since the reference attestation");
    require(!e.min_clock || *e.min_clock <= a.clockInfo.clock, "clock",
            "the TPM clock is behind the reference attestation's");
    require(!e.firmware_version || *e.firmware_version == a.firmwareVersion, "firmware-version",
            "the TPM firmware version differs");
}

} // namespace

// ---- TPM side ---------------------------------------------------------------

Attestation quote(Context& ctx, const Ak& ak, const PcrSelection& pcrs, ByteView qualifying_data) {
    const TPM2B_DATA data = to_data(qualifying_data, "qualifying-data");
    const TPML_PCR_SELECTION sel = tpml_of(pcrs.bank, pcrs.pcrs);
    const TPMT_SIG_SCHEME scheme{.scheme = TPM2_ALG_NULL, .details = {}};
    TPM2B_ATTEST* raw_attest = nullptr;
    TPMT_SIGNATURE* raw_sig = nullptr;
    check(Esys_Quote(ctx, ak.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data, &scheme,
                     &sel, &raw_attest, &raw_sig),
          "TPM2_Quote(AK)");
    const EsysPtr<TPM2B_ATTEST> attest(raw_attest);
    const EsysPtr<TPMT_SIGNATURE> sig(raw_sig);
    return to_attestation(*attest, *sig);
}

Attestation certify(Context& ctx, const Ak& ak, ESYS_TR object, ByteView qualifying_data) {
    const TPM2B_DATA data = to_data(qualifying_data, "qualifying-data");
    const TPMT_SIG_SCHEME scheme{.scheme = TPM2_ALG_NULL, .details = {}};
    TPM2B_ATTEST* raw_attest = nullptr;
    TPMT_SIGNATURE* raw_sig = nullptr;
    check(Esys_Certify(ctx, object, ak.handle, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                       &data, &scheme, &raw_attest, &raw_sig),
          "TPM2_Certify(AK)");
    const EsysPtr<TPM2B_ATTEST> attest(raw_attest);
    const EsysPtr<TPMT_SIGNATURE> sig(raw_sig);
    return to_attestation(*attest, *sig);
}

SecretBytes activate_credential(Context& ctx, const Ak& ak, const Ek& ek, ByteView credential_blob,
                                ByteView secret) {
    TPM2B_ID_OBJECT blob{};
    std::size_t offset = 0;
    if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(credential_blob.data(), credential_blob.size(), &offset,
                                          &blob) != TSS2_RC_SUCCESS ||
        offset != credential_blob.size()) {
        throw InvalidArgument("credential-blob", "is not a marshalled TPM2B_ID_OBJECT");
    }
    TPM2B_ENCRYPTED_SECRET enc{};
    offset = 0;
    if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(secret.data(), secret.size(), &offset, &enc) !=
            TSS2_RC_SUCCESS ||
        offset != secret.size()) {
        throw InvalidArgument("secret", "is not a marshalled TPM2B_ENCRYPTED_SECRET");
    }

    // The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT).
    const TPMT_SYM_DEF no_sym{.algorithm = TPM2_ALG_NULL, .keyBits = {}, .mode = {}};
    ESYS_TR session_tr = ESYS_TR_NONE;
    check(Esys_StartAuthSession(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                ESYS_TR_NONE, nullptr, TPM2_SE_POLICY, &no_sym, TPM2_ALG_SHA256,
                                &session_tr),
          "TPM2_StartAuthSession(EK policy)");
    const Handle session = Handle::session(ctx, session_tr);
    const TPM2B_NONCE nonce_tpm{};
    const TPM2B_DIGEST cp_hash{};
    const TPM2B_NONCE policy_ref{};
    TPM2B_TIMEOUT* timeout = nullptr;
    TPMT_TK_AUTH* ticket = nullptr;
    check(Esys_PolicySecret(ctx, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE, &nonce_tpm, &cp_hash, &policy_ref, 0, &timeout, &ticket),
          "TPM2_PolicySecret(endorsement)");
    Esys_Free(timeout);
    Esys_Free(ticket);

    TPM2B_DIGEST* raw_cert = nullptr;
    check(Esys_ActivateCredential(ctx, ak.handle, ek.handle, ESYS_TR_PASSWORD, session,
                                  ESYS_TR_NONE, &blob, &enc, &raw_cert),
          "TPM2_ActivateCredential(AK, EK)");
    const EsysPtr<TPM2B_DIGEST> cert(raw_cert);
    SecretBytes out(ByteView(cert->buffer, cert->size));
    wipe(cert->buffer, sizeof(cert->buffer));
    return out;
}

// ---- software side ----------------------------------------------------------

Credential make_credential(const TPMT_PUBLIC& ek, ByteView ak_name, const SecretBytes& credential) {
    const EVP_MD* md = evp_md(ek.nameAlg);
    const auto& sym = ek.type == TPM2_ALG_RSA ? ek.parameters.rsaDetail.symmetric
                                              : ek.parameters.eccDetail.symmetric;
    const TPMA_OBJECT need = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    if ((ek.type != TPM2_ALG_RSA && ek.type != TPM2_ALG_ECC) || md == nullptr ||
        (ek.objectAttributes & need) != need || sym.algorithm != TPM2_ALG_AES ||
        sym.mode.aes != TPM2_ALG_CFB || aes_cfb(sym.keyBits.aes) == nullptr) {
        throw InvalidArgument("ek-public", "is not a restricted RSA or ECC decryption key with "
                                           "AES-CFB and a supported name algorithm");
    }
    const auto hlen = static_cast<std::size_t>(EVP_MD_get_size(md));
    if (ak_name.size() < 2 ||
        evp_md(static_cast<TPMI_ALG_HASH>(ak_name[0] << 8 | ak_name[1])) == nullptr) {
        throw InvalidArgument("ak-name", "is not a TPM object name");
    }
    const EVP_MD* name_md = evp_md(static_cast<TPMI_ALG_HASH>(ak_name[0] << 8 | ak_name[1]));
    if (ak_name.size() != 2 + static_cast<std::size_t>(EVP_MD_get_size(name_md))) {
        throw InvalidArgument("ak-name", "has the wrong length for its hash algorithm");
    }
    if (credential.empty() || credential.size() > hlen) {
        throw InvalidArgument("credential", "must be 1 to " + std::to_string(hlen) + " bytes");
    }

    SecretBytes seed;
    Credential out;
    const Bytes encrypted_seed =
        ek.type == TPM2_ALG_RSA ? rsa_seed(ek, md, seed) : ecc_seed(ek, md, seed);
    const SecretBytes sym_key = kdfa(md, seed.view(), "STORAGE", ak_name, {}, sym.keyBits.aes);
    const SecretBytes hmac_key =
        kdfa(md, seed.view(), "INTEGRITY", {}, {}, static_cast<std::uint32_t>(hlen * 8));

    // encIdentity = AES-CFB(symKey, IV 0, TPM2B_DIGEST(credential)).
    SecretBytes plain(2 + credential.size());
    plain[0] = static_cast<std::uint8_t>(credential.size() >> 8);
    plain[1] = static_cast<std::uint8_t>(credential.size());
    std::copy(credential.view().begin(), credential.view().end(), plain.data() + 2);
    Bytes enc_identity(plain.size());
    const std::uint8_t iv[16] = {};
    const std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> cctx(EVP_CIPHER_CTX_new());
    int len1 = 0;
    int len2 = 0;
    if (!cctx ||
        EVP_EncryptInit_ex(cctx.get(), aes_cfb(sym.keyBits.aes), nullptr, sym_key.data(), iv) !=
            1 ||
        EVP_EncryptUpdate(cctx.get(), enc_identity.data(), &len1, plain.data(),
                          static_cast<int>(plain.size())) != 1 ||
        EVP_EncryptFinal_ex(cctx.get(), enc_identity.data() + len1, &len2) != 1 ||
        static_cast<std::size_t>(len1 + len2) != plain.size()) {
        throw std::runtime_error("AES-CFB encryption of the credential failed");
    }

    // outerHMAC = HMAC(hmacKey, encIdentity || name).
    Bytes mac_input = enc_identity;
    mac_input.insert(mac_input.end(), ak_name.begin(), ak_name.end());
    Bytes outer_hmac(hlen);
    unsigned int mac_len = 0;
    if (HMAC(md, hmac_key.data(), static_cast<int>(hmac_key.size()), mac_input.data(),
             mac_input.size(), outer_hmac.data(), &mac_len) == nullptr) {
        throw std::runtime_error("HMAC failed");
    }

    // TPM2B_ID_OBJECT { TPM2B_DIGEST(outerHMAC) || encIdentity }.
    Bytes id_object;
    append_u16(id_object, static_cast<std::uint16_t>(2 + hlen + enc_identity.size()));
    append_u16(id_object, static_cast<std::uint16_t>(hlen));
    id_object.insert(id_object.end(), outer_hmac.begin(), outer_hmac.end());
    id_object.insert(id_object.end(), enc_identity.begin(), enc_identity.end());
    out.credential_blob = std::move(id_object);

    // TPM2B_ENCRYPTED_SECRET.
    append_u16(out.secret, static_cast<std::uint16_t>(encrypted_seed.size()));
    out.secret.insert(out.secret.end(), encrypted_seed.begin(), encrypted_seed.end());
    return out;
}

TPMS_ATTEST parse_attest(ByteView attest) {
    TPMS_ATTEST a{};
    std::size_t offset = 0;
    if (Tss2_MU_TPMS_ATTEST_Unmarshal(attest.data(), attest.size(), &offset, &a) !=
            TSS2_RC_SUCCESS ||
        offset != attest.size()) {
        throw InvalidArgument("attest", "is not a marshalled TPMS_ATTEST");
    }
    require(a.magic == TPM2_GENERATED_VALUE, "magic",
            "the attestation does not carry the TPM_GENERATED magic");
    return a;
}

void verify_signature(ByteView attest, ByteView signature, const EVP_PKEY* ak_public) {
    if (ak_public == nullptr || EVP_PKEY_get_base_id(ak_public) != EVP_PKEY_EC) {
        throw InvalidArgument("ak-public", "is not an ECC key");
    }
    const std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                                     const_cast<EVP_PKEY*>(ak_public)) != 1) {
        throw std::runtime_error("cannot set up ECDSA verification");
    }
    require(EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), attest.data(),
                             attest.size()) == 1,
            "signature", "the signature is not the AK's over this attestation");
}

Bytes quote_pcr_digest(const PcrValues& pcrs) {
    const EVP_MD* bank_md = evp_md(pcrs.bank);
    if (bank_md == nullptr) {
        throw InvalidArgument("pcr-bank", "is not a supported hash algorithm");
    }
    const std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_DigestInit failed");
    }
    for (const auto& [index, value] : pcrs.values) { // std::map: ascending index
        if (index >= kPcrCount) {
            throw InvalidArgument("pcr-values", "a PCR index is not in 0..23");
        }
        if (value.size() != static_cast<std::size_t>(EVP_MD_get_size(bank_md))) {
            throw InvalidArgument("pcr-values", "PCR " + std::to_string(index) +
                                                    " does not have the bank's digest size");
        }
        if (EVP_DigestUpdate(ctx.get(), value.data(), value.size()) != 1) {
            throw std::runtime_error("EVP_DigestUpdate failed");
        }
    }
    Bytes out(32);
    if (EVP_DigestFinal_ex(ctx.get(), out.data(), nullptr) != 1) {
        throw std::runtime_error("EVP_DigestFinal failed");
    }
    return out;
}

TPMS_ATTEST verify_quote(const Attestation& quote, const EVP_PKEY* ak_public,
                         const AttestExpectations& expect, const PcrValues& pcrs) {
    verify_signature(quote.attest, quote.signature, ak_public);
    const TPMS_ATTEST a = parse_attest(quote.attest);
    check_common(a, TPM2_ST_ATTEST_QUOTE, expect);

    std::vector<unsigned> indexes;
    for (const auto& entry : pcrs.values) {
        indexes.push_back(entry.first);
    }
    const TPML_PCR_SELECTION want = tpml_of(pcrs.bank, indexes);
    const TPML_PCR_SELECTION& got = a.attested.quote.pcrSelect;
    bool same = got.count == 1 && got.pcrSelections[0].hash == want.pcrSelections[0].hash &&
                got.pcrSelections[0].sizeofSelect <= sizeof(got.pcrSelections[0].pcrSelect);
    for (std::size_t i = 0; same && i < sizeof(got.pcrSelections[0].pcrSelect); ++i) {
        const std::uint8_t g =
            i < got.pcrSelections[0].sizeofSelect ? got.pcrSelections[0].pcrSelect[i] : 0;
        same = g == want.pcrSelections[0].pcrSelect[i];
    }
    require(same, "pcr-selection", "the quote covers other PCRs than the ones expected");
    const Bytes digest = quote_pcr_digest(pcrs);
    require(equal(digest, a.attested.quote.pcrDigest.buffer, a.attested.quote.pcrDigest.size),
            "pcr-digest", "the quoted PCR values differ from the expected ones");
    return a;
}

TPMS_ATTEST verify_certify(const Attestation& certification, const EVP_PKEY* ak_public,
                           const AttestExpectations& expect, ByteView name,
                           std::optional<Bytes> qualified_name) {
    verify_signature(certification.attest, certification.signature, ak_public);
    const TPMS_ATTEST a = parse_attest(certification.attest);
    check_common(a, TPM2_ST_ATTEST_CERTIFY, expect);
    const auto& c = a.attested.certify;
    require(equal(name, c.name.name, c.name.size), "name",
            "the certified object is not the one expected");
    require(!qualified_name || equal(*qualified_name, c.qualifiedName.name, c.qualifiedName.size),
            "qualified-name", "the certified object's qualified name differs");
    return a;
}

} // namespace tresim::tpm
