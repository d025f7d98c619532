#pragma once
// MID objects under the SRK (DESIGN.md §2): an AES-128 key object holding
// Milenage's K, and sealed data objects (keyedhash, up to 128 bytes) holding
// OPc/TOPc, TUAK's K, PIN data.
//
// Attributes: userWithAuth CLEAR (only the policy authorizes use), adminWithPolicy
// SET, sensitiveDataOrigin CLEAR (the caller supplies the secret), fixedTPM and
// fixedParent SET for objects created in this TPM (they can never be duplicated)
// and CLEAR for objects imported from a duplication blob (duplicable by nature:
// their policy must simply never authorize TPM2_Duplicate).
//
// The AES key has sign and decrypt SET and mode NULL, so that EncryptDecrypt2
// works in both directions and in any mode (CFB, and ECB where the TPM has it).
//
// Blobs are the marshalled TPM2B_PUBLIC and TPM2B_PRIVATE (the format of
// tpm2-tools' .pub/.priv files): the private part is encrypted by the SRK and
// useless outside this TPM.

#include <cstdint>

#include <tss2/tss2_esys.h>

#include "context.hpp"
#include "handles.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::tpm {

struct ObjectBlobs {
    Bytes public_area;  // marshalled TPM2B_PUBLIC
    Bytes private_area; // marshalled TPM2B_PRIVATE
};

// Where the object comes from: decides fixedTPM/fixedParent.
enum class ObjectOrigin { CreatedInTpm, Imported };

struct ObjectOptions {
    Bytes auth_policy;      // 32 bytes (SHA-256), required: InvalidArgument("auth-policy")
    SecretBytes auth_value; // the PIN-derived auth value, at most 32 bytes; may be empty
    bool no_da = false;     // exempt from the TPM's dictionary-attack lockout
};

inline constexpr std::size_t kMaxSealedData = 128;  // MAX_SYM_DATA
inline constexpr std::size_t kMaxCipherData = 1024; // MAX_DIGEST_BUFFER of EncryptDecrypt2
inline constexpr std::size_t kAesBlock = 16;

// The public templates (unique left empty for TPM2_Create).
TPM2B_PUBLIC aes_key_template(ByteView auth_policy, ObjectOrigin origin, bool no_da = false);
TPM2B_PUBLIC sealed_data_template(ByteView auth_policy, ObjectOrigin origin, bool no_da = false);

// TPM2_Create under `parent` (the SRK) with inSensitive.data = key (16 bytes,
// InvalidArgument("k")). The key material crosses the bus encrypted: the command
// is authorized by an HMAC session salted with the parent (the SRK as tpmKey)
// and with TPMA_SESSION_DECRYPT, so inSensitive is AES-CFB encrypted.
ObjectBlobs create_aes_key(Context& ctx, ESYS_TR parent, const SecretBytes& key,
                           const ObjectOptions& options);
// The same for a sealed data object (1..128 bytes, InvalidArgument("data")).
ObjectBlobs create_sealed_data(Context& ctx, ESYS_TR parent, const SecretBytes& data,
                               const ObjectOptions& options);

// TPM2_Load under `parent` (the SRK, empty auth).
Handle load_object(Context& ctx, ESYS_TR parent, const ObjectBlobs& blobs);

// The auth value ESAPI uses when a session with PolicyAuthValue authorizes the
// object (at most 32 bytes, InvalidArgument("auth-value")).
void set_auth_value(Context& ctx, ESYS_TR object, const SecretBytes& auth_value);

// The name of an object from its public blob.
Bytes blob_name(const ObjectBlobs& blobs);

enum class CipherMode { Cfb, Ecb };

// Parameter encryption: with `encrypt_parameters` the session (which must be
// salted for this to mean anything) encrypts the command's first parameter
// (TPMA_SESSION_DECRYPT) and the response's (TPMA_SESSION_ENCRYPT), where the
// command has them.

// TPM2_EncryptDecrypt2 authorized by `session` (a policy session whose
// assertions have just been run). CFB: iv is 16 bytes, data any length up to
// 1024. ECB: iv empty, data a multiple of 16 bytes. The output is treated as a
// secret (Milenage's intermediate values are).
SecretBytes encrypt_decrypt(Context& ctx, ESYS_TR key, ESYS_TR session, CipherMode mode,
                            ByteView iv, ByteView data, bool decrypt,
                            bool encrypt_parameters = false);

// E_K of n independent 16-byte blocks (n <= 64) in one TPM command.
//  - ECB: one encrypt over the blocks.
//  - CFB: one *decrypt* with IV = x1 over the "ciphertext" (x2, ..., xn, 0).
//    CFB decryption computes P_i = C_i xor E_K(C_{i-1}) with C_0 = IV; here
//    C_{i-1} = x_i, so E_K(x_i) = P_i xor C_i. The blocks are independent (no
//    chaining of secrets), so Milenage can batch its AES calls even on TPMs that
//    offer only CFB. (A CFB *encrypt* would chain: C_1 = P_1 xor E(IV) feeds the
//    next block.)
SecretBytes aes_encrypt_blocks(Context& ctx, ESYS_TR key, ESYS_TR session, ByteView blocks,
                               CipherMode mode, bool encrypt_parameters = false);

// TPM2_Unseal authorized by `session`.
SecretBytes unseal(Context& ctx, ESYS_TR object, ESYS_TR session, bool encrypt_parameters = false);

// TPM2_ObjectChangeAuth (ADMIN role: with adminWithPolicy the session's policy
// must include PolicyCommandCode(TPM_CC_ObjectChangeAuth)). Returns the new
// private blob; the old blob stays loadable with the old auth value, so the
// caller must replace it.
Bytes change_auth(Context& ctx, ESYS_TR object, ESYS_TR parent, ESYS_TR session,
                  const SecretBytes& new_auth_value, bool encrypt_parameters = false);

} // namespace tresim::tpm
