#pragma once
// A TPM-resident HMAC-SHA256 key: the database's rollback MAC (DESIGN.md §3)
// is made by a key that never leaves the TPM, so a copy of the state folder
// cannot be re-MACed elsewhere.
//
// The key is a keyedhash object under the SRK (fixedTPM, fixedParent,
// sensitiveDataOrigin: the TPM chose the key bits and nobody knows them),
// kept in the state folder as its marshalled public and private blobs and
// loaded at start.

#include <array>
#include <cstdint>
#include <stdexcept>

#include <tss2/tss2_esys.h>

#include "context.hpp"
#include "handles.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::tpm {

using HmacSha256 = std::array<std::uint8_t, 32>;

// The loaded blob is not an HMAC key from hmac_key_template() (for example a
// key whose bits someone imported and therefore knows): refuse it.
class HmacKeyMismatch : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The two blobs TPM2_Create returns, marshalled (Tss2_MU_TPM2B_PUBLIC /
// Tss2_MU_TPM2B_PRIVATE). The private blob is wrapped by the parent: it is
// useless without this TPM, so it may be stored as a file.
struct HmacKeyBlob {
    Bytes public_blob;
    Bytes private_blob;
};

// keyedhash, HMAC-SHA256 scheme, sign, fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth, noDA; SHA-256 name algorithm; no policy.
// noDA: the auth value is a machine secret (not a guessable PIN), and a
// DA-protected object used before a power loss counts as a failed try at the
// next start, which on a gateway that loses power often ends in lockout.
TPM2B_PUBLIC hmac_key_template();

// True when `pub` has the template's type, name algorithm, attributes, empty
// policy and scheme.
bool matches_hmac_key_template(const TPMT_PUBLIC& pub);

// TPM2_Create of a new key under `parent` (the SRK from ensure_srk; empty
// parent auth) with `auth` (at most 32 bytes) as its auth value. One command,
// no NV write.
HmacKeyBlob create_hmac_key(Context& ctx, ESYS_TR parent, const SecretBytes& auth);

class HmacKey {
public:
    // TPM2_Load of `blob` under `parent`; the public area must match
    // hmac_key_template() (else HmacKeyMismatch). Malformed blobs throw
    // InvalidArgument("hmac-key-blob"). One command.
    static HmacKey load(Context& ctx, ESYS_TR parent, const HmacKeyBlob& blob,
                        const SecretBytes& auth);

    // HMAC-SHA256 of `data` (any length) inside the TPM.
    HmacSha256 mac(ByteView data);

    // Recomputes the HMAC and compares in constant time.
    bool verify(ByteView data, ByteView mac);

    ESYS_TR handle() const noexcept { return handle_.get(); }
    TPM2B_NAME name() const;

private:
    explicit HmacKey(Context& ctx) : ctx_(&ctx) {}
    Context* ctx_;
    Handle handle_;
};

// The largest chunk one TPM command takes (TPM2B_MAX_BUFFER).
inline constexpr std::size_t kHmacChunk = TPM2_MAX_DIGEST_BUFFER;

// HMAC-SHA256 with any loaded HMAC-SHA256 key whose auth value is set on ctx:
// one TPM2_HMAC up to kHmacChunk bytes; beyond that TPM2_HMAC_Start, one
// TPM2_SequenceUpdate per full chunk but the last, TPM2_SequenceComplete.
HmacSha256 tpm_hmac_sha256(Context& ctx, ESYS_TR key, ByteView data);

} // namespace tresim::tpm
