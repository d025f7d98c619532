#pragma once
// Attestation with the AK (DESIGN.md §2, §7): what the TPM produces (quotes,
// certifications, activated credentials) and what the Provisioning Server
// computes and checks in software without a TPM (MakeCredential, TPMS_ATTEST
// parsing and signature verification, quote PCR digests).
//
// Signatures travel as DER-encoded ECDSA-Sig-Value (SEQUENCE { r, s }), the
// form OpenSSL and X.509 use; attestation structures as the marshalled
// TPMS_ATTEST bytes the TPM signed (the contents of TPM2B_ATTEST, without its
// size prefix).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "context.hpp"
#include "keys.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::tpm {

// PCRs of one bank.
struct PcrSelection {
    TPMI_ALG_HASH bank = TPM2_ALG_SHA256;
    std::vector<unsigned> pcrs; // indexes 0..23, any order
};

// PCR values of one bank, by index (the order of a quote is ascending index).
struct PcrValues {
    TPMI_ALG_HASH bank = TPM2_ALG_SHA256;
    std::map<unsigned, Bytes> values;
};

struct Attestation {
    Bytes attest;    // marshalled TPMS_ATTEST, as signed
    Bytes signature; // DER ECDSA-Sig-Value over SHA-256(attest)
};

// ---- TPM side ---------------------------------------------------------------

// TPM2_Quote with the AK over the selected PCRs. qualifying_data (at most 64
// bytes; the PS's nonce or a hash of what the quote binds) becomes extraData.
Attestation quote(Context& ctx, const Ak& ak, const PcrSelection& pcrs, ByteView qualifying_data);

// TPM2_Certify: the AK certifies that `object` (loaded, with an empty auth
// value and userWithAuth/adminWithPolicy clear, as the SRK) is in this TPM.
Attestation certify(Context& ctx, const Ak& ak, ESYS_TR object, ByteView qualifying_data);

// TPM2_ActivateCredential: the EK (authorized with a PolicySecret(endorsement)
// session) decrypts `secret`, checks that `credential_blob` was made for the
// AK's name and returns the credential. Both inputs are in the marshalled
// forms make_credential() produces. A credential made for another name or EK
// fails with a TpmError (TPM2_RC_INTEGRITY or TPM2_RC_VALUE, ...).
SecretBytes activate_credential(Context& ctx, const Ak& ak, const Ek& ek, ByteView credential_blob,
                                ByteView secret);

// ---- software side ----------------------------------------------------------

struct Credential {
    Bytes credential_blob; // marshalled TPM2B_ID_OBJECT
    Bytes secret;          // marshalled TPM2B_ENCRYPTED_SECRET
};

// TPM2_MakeCredential in software (TPM 2.0 Part 1 §24) for an RSA EK (OAEP
// SHA-256 with label "IDENTITY" of a random seed) or an ECC EK (ephemeral
// ECDH and KDFe), then KDFa for the AES and HMAC keys, AES-CFB of the
// credential and the integrity HMAC over encIdentity || name. `ek` must be an
// EK public area (matches_ek_template, either type); `ak_name` the AK's name
// (object_name); `credential` 1..32 bytes. Errors: InvalidArgument naming
// "ek-public", "ak-name" or "credential".
Credential make_credential(const TPMT_PUBLIC& ek, ByteView ak_name, const SecretBytes& credential);

// A quote's or certification's check failed; argument() names what differed
// ("signature", "magic", "type", "qualifying-data", "reset-count",
// "restart-count", "clock", "firmware-version", "pcr-selection",
// "pcr-digest", "name", "qualified-name"). Malformed input is a plain
// InvalidArgument ("attest", "signature", "ak-public", ...).
class AttestationMismatch : public InvalidArgument {
public:
    using InvalidArgument::InvalidArgument;
};

// Unmarshals a TPMS_ATTEST (the whole input, nothing after it) and checks the
// TPM_GENERATED magic. InvalidArgument("attest") when it is not one,
// AttestationMismatch("magic") when the magic is wrong.
TPMS_ATTEST parse_attest(ByteView attest);

// Checks that `signature` (DER ECDSA) is the AK's signature over `attest`
// (ECDSA with SHA-256). AttestationMismatch("signature") when it is not.
void verify_signature(ByteView attest, ByteView signature, const EVP_PKEY* ak_public);

// What a verifier expects of any TPMS_ATTEST besides the signature.
// Note: for a signing key outside the endorsement and platform hierarchies
// (our AK lives under the SRK, in the owner hierarchy) the TPM obfuscates
// resetCount, restartCount and firmwareVersion with a per-key offset, so only
// compare them with earlier attestations by the same AK; clock and safe are
// not obfuscated.
struct AttestExpectations {
    Bytes qualifying_data; // extraData must equal this
    std::optional<std::uint32_t> reset_count;
    std::optional<std::uint32_t> restart_count;
    std::optional<std::uint64_t> min_clock; // clock must not be below (it never goes back)
    std::optional<std::uint64_t> firmware_version;
};

// The quote's pcrDigest for these values: SHA-256 (the AK scheme's hash) of
// the values concatenated in ascending PCR index.
Bytes quote_pcr_digest(const PcrValues& pcrs);

// Verifies a quote: signature, magic, type TPM_ST_ATTEST_QUOTE, the
// expectations, a selection of exactly pcrs.bank/pcrs.values' indexes and a
// pcrDigest equal to quote_pcr_digest(pcrs). Returns the parsed structure
// (clock, counters) for the caller's own records. Throws AttestationMismatch
// naming the first thing that differed.
TPMS_ATTEST verify_quote(const Attestation& quote, const EVP_PKEY* ak_public,
                         const AttestExpectations& expect, const PcrValues& pcrs);

// Verifies a certification: signature, magic, type TPM_ST_ATTEST_CERTIFY,
// the expectations, and that the certified name is `name` (and the qualified
// name `qualified_name` when given).
TPMS_ATTEST verify_certify(const Attestation& certification, const EVP_PKEY* ak_public,
                           const AttestExpectations& expect, ByteView name,
                           std::optional<Bytes> qualified_name = std::nullopt);

} // namespace tresim::tpm
