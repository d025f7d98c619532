#pragma once
// Duplication blobs: how the Provisioning Server delivers K (and other MID
// secrets) so that only this TPM can load them (DESIGN.md §7 step 4).
//
// The software side builds exactly what TPM2_Duplicate would output for an
// object with no inner wrapper (encryptionKeyIn empty, symmetricAlg NULL) and an
// outer wrapper for a new parent, here the device's SRK (ECC P-256, AES-128-CFB,
// nameAlg SHA-256). TPM 2.0 Part 1 §23.3 (duplication) and §22.4/§11.4 (KDFs):
//
//   (de, Qe)      ephemeral P-256 key; Z = x(de * Qs), Qs the SRK's point
//   seed          = KDFe(SHA-256, Z, "DUPLICATE", x(Qe), x(Qs), 256)
//   inSymSeed     = TPMS_ECC_POINT Qe
//   symKey        = KDFa(SHA-256, seed, "STORAGE", name, "", 128)
//   encSensitive  = AES-128-CFB(symKey, IV = 0, TPM2B_SENSITIVE)
//   hmacKey       = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256)
//   outerHMAC     = HMAC-SHA-256(hmacKey, encSensitive || name)
//   duplicate     = TPM2B(outerHMAC) || encSensitive
//
// where name is the duplicated object's name. The object's public area is a MID
// template with fixedTPM and fixedParent CLEAR (an imported object is duplicable
// by nature; its authPolicy, a PolicyAuthorize, must never authorize
// TPM2_Duplicate: that needs PolicyCommandCode(TPM_CC_Duplicate) or
// PolicyDuplicationSelect in an approved branch, which no authority signs).
//
// The TPM side is TPM2_Import under the SRK, giving a private blob to keep and
// TPM2_Load (load_object in objects.hpp).

#include <string_view>

#include <tss2/tss2_esys.h>

#include "context.hpp"
#include "objects.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::tpm {

struct DuplicationBlob {
    Bytes object_public;  // marshalled TPM2B_PUBLIC (objectPublic of TPM2_Import)
    Bytes duplicate;      // marshalled TPM2B_PRIVATE (duplicate)
    Bytes encrypted_seed; // marshalled TPM2B_ENCRYPTED_SECRET (inSymSeed)

    // The three concatenated (each TPM2B is self-delimiting), for transport.
    Bytes marshal() const;
    static DuplicationBlob unmarshal(ByteView bytes); // InvalidArgument("duplication-blob")
};

// KDFa (Part 1 §11.4.10.2) with HMAC-SHA-256: label with its terminating zero,
// counter and bit length as 32-bit big-endian numbers.
SecretBytes kdfa_sha256(ByteView key, std::string_view label, ByteView context_u,
                        ByteView context_v, std::size_t bits);
// KDFe (Part 1 §11.4.10.3) with SHA-256: H(counter || Z || label || 0 || partyU ||
// partyV) concatenated.
SecretBytes kdfe_sha256(ByteView z, std::string_view label, ByteView party_u, ByteView party_v,
                        std::size_t bits);

// The duplication blob of an object with public area `object_public` (a
// SYMCIPHER or KEYEDHASH template, nameAlg SHA-256, fixedTPM and fixedParent
// CLEAR; its unique field is computed here from a fresh seedValue) and sensitive
// data `secret` (the AES key or the sealed data) with auth value `auth_value`,
// for the storage parent `new_parent` (InvalidArgument("srk-public") unless it is
// an ECC P-256 restricted decryption key with AES-128-CFB and nameAlg SHA-256).
DuplicationBlob make_duplication_blob(const TPMT_PUBLIC& new_parent,
                                      const TPM2B_PUBLIC& object_public, const SecretBytes& secret,
                                      const SecretBytes& auth_value = {});

// The MID templates from objects.hpp (ObjectOrigin::Imported).
DuplicationBlob duplicate_aes_key(const TPMT_PUBLIC& new_parent, const SecretBytes& key,
                                  const ObjectOptions& options);
DuplicationBlob duplicate_sealed_data(const TPMT_PUBLIC& new_parent, const SecretBytes& data,
                                      const ObjectOptions& options);

// TPM2_Import under `parent` (the SRK, empty auth). A blob for another TPM, or
// one that was altered, is a TpmError with is(TPM2_RC_INTEGRITY) (or another
// TPM error for a malformed seed); nothing is imported.
ObjectBlobs import_duplicate(Context& ctx, ESYS_TR parent, const DuplicationBlob& blob);

} // namespace tresim::tpm
