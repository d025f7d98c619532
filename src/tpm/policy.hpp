#pragma once
// Policies for MID objects (DESIGN.md §2).
//
// Every MID object carries authPolicy = PolicyAuthorize(authority key name,
// policyRef). The authority (an ECC P-256 key: the Provisioning Server's
// policy-signing key, or a local key for local import) approves a platform state
// by signing approvedPolicy || policyRef, where approvedPolicy is
// PolicyPCR(selection, digest) [+ PolicyAuthValue when the MID has a PIN]
// [+ PolicyNV on a revocation counter]. Nothing here ever builds a policy that
// allows TPM2_Duplicate.
//
// Three parts:
//  - software digest calculators (PolicyDigest), names and PCR selections, so
//    policies can be computed without a TPM (the Provisioning Server, unit tests)
//    and compared with TPM2_PolicyGetDigest;
//  - the authority's signing side (PolicyAuthority, OpenSSL);
//  - the TPM side: PolicySession (RAII over a policy or trial session), signature
//    verification into a TPMT_TK_VERIFIED ticket with a cache, and the PCR diff
//    that names the PCRs that moved when PolicyPCR fails.
//
// All policies use SHA-256 (the session hash and every object's nameAlg).

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <tss2/tss2_esys.h>

#include "attest.hpp"
#include "context.hpp"
#include "handles.hpp"
#include "keys.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::tpm {

inline constexpr std::size_t kDigestSize = 32; // SHA-256

// SHA-256 of the concatenation of the parts.
Bytes sha256_concat(std::initializer_list<ByteView> parts);

// ---------------------------------------------------------------------------
// PCR selections and values (PcrSelection and PcrValues from attest.hpp: one
// bank; policies use the SHA-256 bank)

// Parses "sha256:0,2,4,7" (banks sha1, sha256, sha384, sha512; PCRs 0..23, each
// once). Errors are InvalidArgument("pcrs", ...).
PcrSelection parse_pcr_selection(std::string_view text);
// The inverse, indexes ascending: "sha256:0,2,4,7".
std::string format_pcr_selection(const PcrSelection& selection);
// The TPM structure (one TPMS_PCR_SELECTION, sizeofSelect 3).
TPML_PCR_SELECTION to_tpml(const PcrSelection& selection);
// The selection the values cover.
PcrSelection selection_of(const PcrValues& values);

// The pcrDigest PolicyPCR takes for a SHA-256 session: SHA-256 over the values
// concatenated in ascending PCR index (the TPM's order within a bank).
Bytes pcr_composite_digest(const PcrValues& values);

// ---------------------------------------------------------------------------
// Marshalling (object names and public areas: object_name, marshal_public and
// unmarshal_public in keys.hpp; NV names: nv_name in nv.hpp)

Bytes marshal_signature(const TPMT_SIGNATURE& signature);
TPMT_SIGNATURE unmarshal_signature(ByteView bytes, std::string_view argument);
Bytes marshal_ticket(const TPMT_TK_VERIFIED& ticket);
TPMT_TK_VERIFIED unmarshal_ticket(ByteView bytes, std::string_view argument);

// ---------------------------------------------------------------------------
// Software policy digests (TPM 2.0 Part 3, the "policyDigest update" of each
// TPM2_PolicyXxx command), chained like the commands themselves:
//   PolicyDigest().pcr(sel, digest).auth_value().value()
class PolicyDigest {
public:
    PolicyDigest() : value_(kDigestSize, 0) {}
    explicit PolicyDigest(ByteView start); // 32 bytes, else InvalidArgument("policy")

    // H(old || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || pcrDigest)
    PolicyDigest& pcr(const PcrSelection& selection, ByteView pcr_digest);
    // H(old || TPM_CC_PolicyAuthValue); PolicyPassword gives the same digest.
    PolicyDigest& auth_value();
    // H(old || TPM_CC_PolicyCommandCode || code)
    PolicyDigest& command_code(TPM2_CC code);
    // H(H(old || TPM_CC_PolicySecret || authObject name) || policyRef)
    PolicyDigest& secret(ByteView auth_object_name, ByteView policy_ref = {});
    // Resets to zero, then H(H(0 || TPM_CC_PolicyAuthorize || keyName) || policyRef)
    PolicyDigest& authorize(ByteView key_name, ByteView policy_ref = {});
    // H(old || TPM_CC_PolicyNV || H(operandB || offset || operation) || nvIndex name)
    PolicyDigest& nv(ByteView nv_index_name, ByteView operand_b, std::uint16_t offset,
                     TPM2_EO operation);

    const Bytes& value() const noexcept { return value_; }

private:
    Bytes value_;
};

// TPM2B_DIGEST / TPM2B_NONCE from bytes (InvalidArgument(argument) when too long).
TPM2B_DIGEST to_digest(ByteView bytes, std::string_view argument);
TPM2B_NONCE to_nonce(ByteView bytes, std::string_view argument);

// ---------------------------------------------------------------------------
// The policy authority (software signing side)

// An ECC P-256 public key from a TPM public area (InvalidArgument(argument) when
// it is not one), and the affine coordinates of an EC key, 32 bytes each.
EvpPkeyPtr p256_public_key(const TPMT_PUBLIC& pub, std::string_view argument);
TPMS_ECC_POINT ecc_point(EVP_PKEY* key);

// aHash = SHA-256(approvedPolicy || policyRef): what the authority signs and
// what TPM2_VerifySignature checks.
Bytes authorization_hash(ByteView approved_policy, ByteView policy_ref);

// An ECC P-256 key that authorizes policies. Either with its private key (the PS,
// a local import authority, tests) or public only (the TE verifying).
class PolicyAuthority {
public:
    static PolicyAuthority generate();
    // A PEM private key (PKCS#8 or SEC1) or public key (SubjectPublicKeyInfo).
    // InvalidArgument("authority-key") unless it is an ECC P-256 key.
    static PolicyAuthority from_pem(ByteView pem);
    // The key of a TPM public area (type ECC, curve P-256).
    static PolicyAuthority from_public(const TPMT_PUBLIC& pub);
    // Files: load accepts private or public PEM; save writes the private key
    // (mode 0600). Errors are InvalidArgument("authority-key").
    static PolicyAuthority load(const std::string& path);
    void save(const std::string& path) const;

    bool has_private() const noexcept { return has_private_; }
    SecretBytes private_pem() const; // PKCS#8; InvalidArgument when public only
    std::string public_pem() const;

    // The public area loaded with TPM2_LoadExternal: ECC P-256, nameAlg SHA-256,
    // sign|decrypt|userWithAuth, no scheme, no symmetric (the attributes
    // tpm2-tools' loadexternal and systemd use, so names agree with theirs).
    TPM2B_PUBLIC tpm_public() const;
    // Its name, the keyName of PolicyAuthorize.
    Bytes name() const;

    // ECDSA-SHA256 signature over aHash, as TPM2_VerifySignature takes it.
    TPMT_SIGNATURE sign_policy(ByteView approved_policy, ByteView policy_ref) const;
    // Software check of such a signature.
    bool verify_policy(ByteView approved_policy, ByteView policy_ref,
                       const TPMT_SIGNATURE& signature) const;

    EVP_PKEY* pkey() const noexcept { return key_.get(); }

private:
    PolicyAuthority(EvpPkeyPtr key, bool has_private)
        : key_(std::move(key)), has_private_(has_private) {}
    EvpPkeyPtr key_;
    bool has_private_ = false;
};

// ---------------------------------------------------------------------------
// TPM side

// TPMT_TK_VERIFIED tickets from the owner hierarchy, keyed by (authority name,
// aHash). They stay valid across reboots until TPM2_Clear changes the owner
// proof, so callers may persist them (marshal_ticket) and skip LoadExternal +
// VerifySignature on every use.
class TicketCache {
public:
    const TPMT_TK_VERIFIED* find(ByteView key_name, ByteView approved_policy,
                                 ByteView policy_ref) const;
    void put(ByteView key_name, ByteView approved_policy, ByteView policy_ref,
             const TPMT_TK_VERIFIED& ticket);
    void erase(ByteView key_name, ByteView approved_policy, ByteView policy_ref);
    std::size_t size() const noexcept { return tickets_.size(); }
    void clear() noexcept { tickets_.clear(); }

private:
    std::map<Bytes, TPMT_TK_VERIFIED> tickets_;
};

// TPM2_LoadExternal(authority public, owner hierarchy) + TPM2_VerifySignature
// over aHash. A signature by another key or over other data is a TpmError whose
// is(TPM2_RC_SIGNATURE) holds.
TPMT_TK_VERIFIED verify_policy_signature(Context& ctx, const TPM2B_PUBLIC& authority,
                                         ByteView approved_policy, ByteView policy_ref,
                                         const TPMT_SIGNATURE& signature);

// A policy session (or trial session) with SHA-256 and AES-128-CFB parameter
// encryption available, optionally salted with a loaded key (the SRK) so that
// the session key is secret. Flushed on destruction. The TPM resets the policy
// digest after every command the session authorizes: run the assertions again
// before each use.
class PolicySession {
public:
    enum class Type { Real, Trial };
    explicit PolicySession(Context& ctx, Type type = Type::Real, ESYS_TR salt_key = ESYS_TR_NONE);

    ESYS_TR get() const noexcept { return handle_.get(); }
    operator ESYS_TR() const noexcept { return handle_.get(); }
    bool salted() const noexcept { return salted_; }

    // Session attributes for the next command, e.g. TPMA_SESSION_ENCRYPT to get
    // the response's first parameter encrypted (continueSession is always kept).
    void set_attributes(TPMA_SESSION attributes);

    // An empty pcr_digest makes the TPM use the current values (always in a
    // trial session). A real session fails with TPM2_RC_VALUE when the current
    // values do not match: use differing_pcrs() to say which.
    PolicySession& pcr(const PcrSelection& selection, ByteView pcr_digest = {});
    PolicySession& auth_value();
    PolicySession& command_code(TPM2_CC code);
    PolicySession& secret(ESYS_TR auth_object, ByteView policy_ref = {},
                          ESYS_TR auth_session = ESYS_TR_PASSWORD);
    // operandB compared with the index's contents at offset; auth_handle is the
    // index itself (with its auth value set on the ESYS_TR) or the owner.
    PolicySession& nv(ESYS_TR auth_handle, ESYS_TR nv_index, ByteView operand_b,
                      std::uint16_t offset, TPM2_EO operation,
                      ESYS_TR auth_session = ESYS_TR_PASSWORD);
    // PolicyAuthorize with a ticket already obtained.
    PolicySession& authorize(ByteView approved_policy, ByteView policy_ref, ByteView key_name,
                             const TPMT_TK_VERIFIED& ticket);
    // PolicyAuthorize: the ticket from the cache, else verified now (and cached).
    // A cached ticket the TPM no longer accepts (TPM_RC_VALUE on checkTicket: the
    // owner proof changed with TPM2_Clear) is dropped and the signature verified
    // again.
    PolicySession& authorize(const TPM2B_PUBLIC& authority, ByteView approved_policy,
                             ByteView policy_ref, const TPMT_SIGNATURE& signature,
                             TicketCache* cache = nullptr);

    Bytes digest(); // TPM2_PolicyGetDigest
    void restart(); // TPM2_PolicyRestart

private:
    Context& ctx_;
    Handle handle_;
    bool salted_ = false;
};

// TPM2_PCR_Read of a selection (several commands when it covers more than eight
// PCRs). InvalidArgument("pcrs") when the TPM has no such bank.
PcrValues read_pcrs(Context& ctx, const PcrSelection& selection);

// The indexes (ascending) of the PCRs whose current value differs from the
// expected one: what to name when PolicyPCR fails ("PCR 7 differs").
std::vector<unsigned> differing_pcrs(Context& ctx, const PcrValues& expected);

// "PCR 7 differs", "PCRs 0, 7 differ" (empty when the list is empty).
std::string describe_pcr_difference(const std::vector<unsigned>& indexes);

} // namespace tresim::tpm
