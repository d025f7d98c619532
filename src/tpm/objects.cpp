#include "objects.hpp"

#include <algorithm>

#include <tss2/tss2_mu.h>

#include "error.hpp"
#include "policy.hpp"

namespace tresim::tpm {

namespace {

TPMA_OBJECT mid_attributes(ObjectOrigin origin, bool no_da) {
    TPMA_OBJECT a = TPMA_OBJECT_ADMINWITHPOLICY; // userWithAuth CLEAR
    if (origin == ObjectOrigin::CreatedInTpm) {
        a |= TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT;
    }
    if (no_da) {
        a |= TPMA_OBJECT_NODA;
    }
    return a;
}

void set_policy(TPMT_PUBLIC& p, ByteView auth_policy) {
    require_size(auth_policy, kDigestSize, "auth-policy");
    p.authPolicy = to_digest(auth_policy, "auth-policy");
}

// Sets the session attributes for one command and restores continueSession
// alone afterwards.
class SessionAttributes {
public:
    SessionAttributes(Context& ctx, ESYS_TR session, TPMA_SESSION attributes)
        : ctx_(ctx), session_(session) {
        if (session_ != ESYS_TR_PASSWORD && session_ != ESYS_TR_NONE) {
            check(Esys_TRSess_SetAttributes(ctx_, session_,
                                            attributes | TPMA_SESSION_CONTINUESESSION, 0xff),
                  "set session attributes");
        }
    }
    ~SessionAttributes() {
        if (session_ != ESYS_TR_PASSWORD && session_ != ESYS_TR_NONE) {
            Esys_TRSess_SetAttributes(ctx_, session_, TPMA_SESSION_CONTINUESESSION, 0xff);
        }
    }
    SessionAttributes(const SessionAttributes&) = delete;
    SessionAttributes& operator=(const SessionAttributes&) = delete;

private:
    Context& ctx_;
    ESYS_TR session_;
};

TPM2B_AUTH to_auth(const SecretBytes& auth_value) {
    TPM2B_AUTH a{};
    if (auth_value.size() > kDigestSize) {
        throw InvalidArgument("auth-value", "is longer than 32 bytes");
    }
    a.size = static_cast<UINT16>(auth_value.size());
    std::copy(auth_value.view().begin(), auth_value.view().end(), a.buffer);
    return a;
}

template <class T, class F> Bytes marshal_tpm2b(const T& value, F fn, const char* what) {
    Bytes buffer(sizeof(T) + 2);
    size_t offset = 0;
    check(fn(&value, buffer.data(), buffer.size(), &offset), what);
    buffer.resize(offset);
    return buffer;
}

ObjectBlobs create_object(Context& ctx, ESYS_TR parent, const TPM2B_PUBLIC& tmpl,
                          const SecretBytes& data, const ObjectOptions& options, const char* what) {
    TPM2B_SENSITIVE_CREATE sensitive{};
    sensitive.sensitive.userAuth = to_auth(options.auth_value);
    sensitive.sensitive.data.size = static_cast<UINT16>(data.size());
    std::copy(data.view().begin(), data.view().end(), sensitive.sensitive.data.buffer);

    // An HMAC session salted with the parent's public key: the session key is
    // known only to this process and the TPM, and TPMA_SESSION_DECRYPT makes
    // ESAPI encrypt inSensitive with it.
    TPMT_SYM_DEF sym{};
    sym.algorithm = TPM2_ALG_AES;
    sym.keyBits.aes = 128;
    sym.mode.aes = TPM2_ALG_CFB;
    ESYS_TR raw_session = ESYS_TR_NONE;
    TSS2_RC rc =
        Esys_StartAuthSession(ctx, parent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              nullptr, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &raw_session);
    if (rc != TSS2_RC_SUCCESS) {
        wipe(&sensitive, sizeof(sensitive));
        throw TpmError("TPM2_StartAuthSession(salted with the SRK)", rc);
    }
    const Handle session = Handle::session(ctx, raw_session);
    rc = Esys_TRSess_SetAttributes(ctx, session,
                                   TPMA_SESSION_DECRYPT | TPMA_SESSION_CONTINUESESSION, 0xff);
    if (rc != TSS2_RC_SUCCESS) {
        wipe(&sensitive, sizeof(sensitive));
        throw TpmError("set session attributes", rc);
    }

    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    TPM2B_PRIVATE* out_private = nullptr;
    TPM2B_PUBLIC* out_public = nullptr;
    TPM2B_CREATION_DATA* creation = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    rc = Esys_Create(ctx, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl, &outside,
                     &no_pcrs, &out_private, &out_public, &creation, &creation_hash, &ticket);
    wipe(&sensitive, sizeof(sensitive));
    const EsysPtr<TPM2B_PRIVATE> priv(out_private);
    const EsysPtr<TPM2B_PUBLIC> pub(out_public);
    Esys_Free(creation);
    Esys_Free(creation_hash);
    Esys_Free(ticket);
    check(rc, what);
    return {marshal_public(*pub),
            marshal_tpm2b(*priv, Tss2_MU_TPM2B_PRIVATE_Marshal, "marshal TPM2B_PRIVATE")};
}

void esys_check_session(ESYS_TR session) {
    if (session == ESYS_TR_NONE) {
        throw InvalidArgument("session", "is required: MID objects are used only through a policy");
    }
}

} // namespace

TPM2B_PUBLIC aes_key_template(ByteView auth_policy, ObjectOrigin origin, bool no_da) {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.type = TPM2_ALG_SYMCIPHER;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes =
        mid_attributes(origin, no_da) | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT;
    set_policy(p, auth_policy);
    p.parameters.symDetail.sym.algorithm = TPM2_ALG_AES;
    p.parameters.symDetail.sym.keyBits.aes = 128;
    p.parameters.symDetail.sym.mode.aes = TPM2_ALG_NULL; // chosen per EncryptDecrypt2 call
    return t;
}

TPM2B_PUBLIC sealed_data_template(ByteView auth_policy, ObjectOrigin origin, bool no_da) {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.type = TPM2_ALG_KEYEDHASH;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = mid_attributes(origin, no_da);
    set_policy(p, auth_policy);
    p.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
    return t;
}

ObjectBlobs create_aes_key(Context& ctx, ESYS_TR parent, const SecretBytes& key,
                           const ObjectOptions& options) {
    require_size(key.view(), 16, "k");
    return create_object(
        ctx, parent,
        aes_key_template(options.auth_policy, ObjectOrigin::CreatedInTpm, options.no_da), key,
        options, "TPM2_Create(AES-128 key object)");
}

ObjectBlobs create_sealed_data(Context& ctx, ESYS_TR parent, const SecretBytes& data,
                               const ObjectOptions& options) {
    if (data.empty() || data.size() > kMaxSealedData) {
        throw InvalidArgument("data", "must be 1 to 128 bytes to be sealed");
    }
    return create_object(
        ctx, parent,
        sealed_data_template(options.auth_policy, ObjectOrigin::CreatedInTpm, options.no_da), data,
        options, "TPM2_Create(sealed data object)");
}

Bytes blob_name(const ObjectBlobs& blobs) {
    return object_name(unmarshal_public(blobs.public_area, "public-blob").publicArea);
}

Handle load_object(Context& ctx, ESYS_TR parent, const ObjectBlobs& blobs) {
    const TPM2B_PUBLIC pub = unmarshal_public(blobs.public_area, "public-blob");
    TPM2B_PRIVATE priv{};
    size_t offset = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(blobs.private_area.data(), blobs.private_area.size(),
                                        &offset, &priv) != TSS2_RC_SUCCESS ||
        offset != blobs.private_area.size()) {
        throw InvalidArgument("private-blob", "is not a marshalled TPM2B_PRIVATE");
    }
    ESYS_TR loaded = ESYS_TR_NONE;
    check(
        Esys_Load(ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &loaded),
        "TPM2_Load(MID object)");
    return Handle::transient(ctx, loaded);
}

void set_auth_value(Context& ctx, ESYS_TR object, const SecretBytes& auth_value) {
    TPM2B_AUTH a = to_auth(auth_value);
    const TSS2_RC rc = Esys_TR_SetAuth(ctx, object, &a);
    wipe(&a, sizeof(a));
    check(rc, "set auth value");
}

SecretBytes encrypt_decrypt(Context& ctx, ESYS_TR key, ESYS_TR session, CipherMode mode,
                            ByteView iv, ByteView data, bool decrypt, bool encrypt_parameters) {
    esys_check_session(session);
    if (data.empty() || data.size() > kMaxCipherData) {
        throw InvalidArgument("data", "must be 1 to 1024 bytes for one EncryptDecrypt2");
    }
    if (mode == CipherMode::Cfb) {
        require_size(iv, kAesBlock, "iv");
    } else {
        if (!iv.empty()) {
            throw InvalidArgument("iv", "must be empty in ECB mode");
        }
        if (data.size() % kAesBlock != 0) {
            throw InvalidArgument("data", "must be whole 16-byte blocks in ECB mode");
        }
    }
    TPM2B_MAX_BUFFER in{};
    in.size = static_cast<UINT16>(data.size());
    std::copy(data.begin(), data.end(), in.buffer);
    TPM2B_IV iv_in{};
    iv_in.size = static_cast<UINT16>(iv.size());
    std::copy(iv.begin(), iv.end(), iv_in.buffer);
    TPM2B_MAX_BUFFER* out = nullptr;
    TPM2B_IV* iv_out = nullptr;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    {
        const SessionAttributes attrs(
            ctx, session,
            encrypt_parameters ? TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT : TPMA_SESSION{0});
        rc = Esys_EncryptDecrypt2(
            ctx, key, session, ESYS_TR_NONE, ESYS_TR_NONE, &in, decrypt ? TPM2_YES : TPM2_NO,
            mode == CipherMode::Cfb ? TPM2_ALG_CFB : TPM2_ALG_ECB, &iv_in, &out, &iv_out);
    }
    wipe(&in, sizeof(in));
    const EsysPtr<TPM2B_MAX_BUFFER> result(out);
    const EsysPtr<TPM2B_IV> next_iv(iv_out);
    if (iv_out != nullptr) {
        wipe(iv_out, sizeof(*iv_out)); // E_K of the last block in CFB
    }
    check(rc, decrypt ? "TPM2_EncryptDecrypt2(decrypt)" : "TPM2_EncryptDecrypt2(encrypt)");
    SecretBytes secret(ByteView(result->buffer, result->size));
    wipe(result.get(), sizeof(*result));
    return secret;
}

SecretBytes aes_encrypt_blocks(Context& ctx, ESYS_TR key, ESYS_TR session, ByteView blocks,
                               CipherMode mode, bool encrypt_parameters) {
    if (blocks.empty() || blocks.size() % kAesBlock != 0 || blocks.size() > kMaxCipherData) {
        throw InvalidArgument("blocks", "must be 1 to 64 whole 16-byte blocks");
    }
    if (mode == CipherMode::Ecb) {
        return encrypt_decrypt(ctx, key, session, mode, {}, blocks, false, encrypt_parameters);
    }
    // CFB decrypt with IV = x1 over (x2, ..., xn, 0): P_i = C_i xor E_K(x_i).
    SecretBytes shifted(blocks.size());
    std::copy(blocks.begin() + kAesBlock, blocks.end(), shifted.data());
    SecretBytes plain = encrypt_decrypt(ctx, key, session, mode, blocks.first(kAesBlock),
                                        shifted.view(), true, encrypt_parameters);
    xor_into(plain.span(), plain.view(), shifted.view());
    return plain;
}

SecretBytes unseal(Context& ctx, ESYS_TR object, ESYS_TR session, bool encrypt_parameters) {
    esys_check_session(session);
    TPM2B_SENSITIVE_DATA* out = nullptr;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    {
        const SessionAttributes attrs(ctx, session,
                                      encrypt_parameters ? TPMA_SESSION_ENCRYPT : TPMA_SESSION{0});
        rc = Esys_Unseal(ctx, object, session, ESYS_TR_NONE, ESYS_TR_NONE, &out);
    }
    const EsysPtr<TPM2B_SENSITIVE_DATA> data(out);
    check(rc, "TPM2_Unseal");
    SecretBytes secret(ByteView(data->buffer, data->size));
    wipe(data.get(), sizeof(*data));
    // ESAPI decrypted the response in place in its command buffer.
    ctx.scrub_command_buffer();
    return secret;
}

Bytes change_auth(Context& ctx, ESYS_TR object, ESYS_TR parent, ESYS_TR session,
                  const SecretBytes& new_auth_value, bool encrypt_parameters) {
    esys_check_session(session);
    TPM2B_AUTH auth = to_auth(new_auth_value);
    TPM2B_PRIVATE* out = nullptr;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    {
        const SessionAttributes attrs(ctx, session,
                                      encrypt_parameters ? TPMA_SESSION_DECRYPT : TPMA_SESSION{0});
        rc = Esys_ObjectChangeAuth(ctx, object, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, &auth,
                                   &out);
    }
    wipe(&auth, sizeof(auth));
    const EsysPtr<TPM2B_PRIVATE> priv(out);
    check(rc, "TPM2_ObjectChangeAuth");
    return marshal_tpm2b(*priv, Tss2_MU_TPM2B_PRIVATE_Marshal, "marshal TPM2B_PRIVATE");
}

} // namespace tresim::tpm
