#pragma once
// The TPM's identity keys (DESIGN.md §2).
//
// EK: the endorsement key, recreated on demand as a transient primary in the
// endorsement hierarchy from the TCG EK Credential Profile templates (L-1:
// RSA-2048, L-2: ECC NIST P-256), so it is the same key the manufacturer
// certified. Its certificates are read from the NV indexes the profile names.
// The "TE identity" is SHA-256 over the EK public key's DER SubjectPublicKeyInfo.
//
// AK: the attestation key, a restricted ECC P-256 signing key (ECDSA-SHA256)
// under the SRK. It is created once; the daemon keeps its marshalled
// public and private blobs (the private part is wrapped by the SRK, so only
// this TPM can load it) in its state folder and loads it back when needed.
//
// Public-key helpers (EVP_PKEY conversion, names, marshalling) are software
// only, for the Provisioning Server as much as for the TE.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/evp.h>

#include "context.hpp"
#include "handles.hpp"
#include "srk.hpp"
#include "usim/bytes.hpp"

namespace tresim::tpm {

// ---- OpenSSL public keys --------------------------------------------------

struct EvpPkeyFree {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;

// The public key of an RSA or ECC (NIST P-256/384/521) TPM object as an
// OpenSSL key. Throws InvalidArgument("public") for other types or curves.
EvpPkeyPtr to_evp_pkey(const TPMT_PUBLIC& pub);

// DER SubjectPublicKeyInfo of a public key.
Bytes spki_der(const EVP_PKEY* key);

// The OpenSSL digest for a TPM hash algorithm (SHA-1, SHA-256, SHA-384,
// SHA-512); nullptr for anything else.
const EVP_MD* evp_md(TPMI_ALG_HASH alg) noexcept;

// ---- TPM object names and marshalling -------------------------------------

// The object's name as the TPM computes it: nameAlg (2 bytes, big-endian)
// followed by nameAlg's hash of the marshalled TPMT_PUBLIC.
Bytes object_name(const TPMT_PUBLIC& pub);

// A TPM2B_PUBLIC in the TPM's wire form, and back. unmarshal_public throws
// InvalidArgument(argument) when the bytes are not exactly one TPM2B_PUBLIC.
Bytes marshal_public(const TPM2B_PUBLIC& pub);
TPM2B_PUBLIC unmarshal_public(ByteView bytes, const std::string& argument);

// ---- EK -------------------------------------------------------------------

enum class EkType {
    Rsa2048, // template L-1
    EccP256, // template L-2
};

// The TCG EK Credential Profile default templates: fixedTPM, fixedParent,
// sensitiveDataOrigin, adminWithPolicy, restricted, decrypt; authPolicy
// PolicySecret(TPM_RH_ENDORSEMENT) ("PolicyA", 8371...69aa); AES-128-CFB;
// RSA-2048 with exponent 0 and a 256-byte zero unique, or NIST P-256 with
// 32-byte zero x and y.
TPM2B_PUBLIC ek_template(EkType type);

// True when `pub` has the template's type, nameAlg, attributes, authPolicy and
// parameters (the key itself is not compared). The Provisioning Server uses
// this to check that a public key it is told is an EK really is one.
bool matches_ek_template(const TPMT_PUBLIC& pub, EkType type);

struct Ek {
    EkType type = EkType::Rsa2048;
    Handle handle; // transient primary: flushed when the Ek goes away
    TPM2B_PUBLIC pub{};
    Bytes name;
};

// Creates the EK as a transient primary in the endorsement hierarchy (empty
// endorsement auth). The same template always gives the same key.
Ek create_ek(Context& ctx, EkType type);

// NV indexes of the EK Credential Profile.
inline constexpr TPM2_HANDLE kEkCertNvRsa2048 = 0x01c00002;
inline constexpr TPM2_HANDLE kEkCertNvEccP256 = 0x01c0000a;
inline constexpr TPM2_HANDLE kEkCertNvEccP384 = 0x01c00016; // swtpm 0.7 puts its ECC EK cert here
inline constexpr TPM2_HANDLE kEkChainNvFirst = 0x01c00100;
inline constexpr TPM2_HANDLE kEkChainNvLast = 0x01c001ff;

// The contents of one NV index (a DER certificate for the EK indexes), or
// nullopt when the index is not defined.
std::optional<Bytes> read_nv_certificate(Context& ctx, TPM2_HANDLE index);

struct EkCertificates {
    std::optional<Bytes> rsa2048;  // 0x01c00002
    std::optional<Bytes> ecc_p256; // 0x01c0000a
    std::optional<Bytes> ecc_p384; // 0x01c00016
    // Chain (intermediate) certificates from 0x01c00100..0x01c001ff in index
    // order; an index holding several concatenated DER certificates gives
    // several entries.
    std::vector<Bytes> chain;
};

// Every EK certificate and chain certificate the TPM holds, as DER.
EkCertificates read_ek_certificates(Context& ctx);

// The TE identity: lower-case hex SHA-256 of the EK public key's DER
// SubjectPublicKeyInfo (equal to the hash of the certificate's key).
std::string te_identity(const TPMT_PUBLIC& ek_public);
std::string te_identity(const EVP_PKEY* ek_public);

// ---- AK -------------------------------------------------------------------

// Restricted ECC P-256 signing key: fixedTPM, fixedParent, sensitiveDataOrigin,
// userWithAuth, restricted, sign; scheme ECDSA-SHA256; nameAlg SHA-256; empty
// auth and policy.
TPM2B_PUBLIC ak_template();

// The AK as kept in the state folder: marshalled TPM2B_PUBLIC and
// TPM2B_PRIVATE (the latter encrypted by the SRK; not readable off this TPM).
struct AkBlob {
    Bytes pub;
    Bytes priv;
};

struct Ak {
    Handle handle; // transient: flushed when the Ak goes away
    TPM2B_PUBLIC pub{};
    Bytes name;
};

// Creates a new AK under the SRK (TPM2_Create); nothing is loaded.
AkBlob create_ak(Context& ctx, const Srk& srk);

// Loads an AK from its blobs under the SRK. Throws InvalidArgument("ak-blob")
// when the blobs are malformed or the public part is not an AK from
// ak_template(), TpmError when the TPM refuses them (another TPM or SRK).
Ak load_ak(Context& ctx, const Srk& srk, const AkBlob& blob);

} // namespace tresim::tpm
