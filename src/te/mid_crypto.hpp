#pragma once
// TPM-backed MID computation (DESIGN.md §2): a MID's K and OPc/TOPc live in TPM
// objects under the SRK whose authPolicy is PolicyAuthorize(authority,
// policyRef); every use of them runs the approved policy
// PolicyPCR(selection, digest) [+ PolicyAuthValue] + PolicyAuthorize in the TPM
// again (the TPM resets a policy session after each command it authorizes).
//
// Computation modes:
//  - TpmEcb: K is an AES-128 key object. Independent E_K blocks (the blocks
//    after TEMP) go in one ECB TPM2_EncryptDecrypt2.
//  - TpmCfb: the same key object, for TPMs without ECB. Independent blocks go
//    in one CFB *decrypt* with a public IV (the zero block) over
//    (x1, ..., xn, 0): P_1 = x1 xor E_K(0) is discarded and
//    E_K(x_i) = P_{i+1} xor C_{i+1}. Unlike tpm::aes_encrypt_blocks (IV = x1)
//    no block travels outside the parameter-encrypted buffer.
//  - Sealed: K is a sealed data object unsealed for one computation into
//    secure memory and wiped when the computation ends. Always for TUAK
//    (Keccak cannot run in a TPM), and for Milenage on TPMs without
//    EncryptDecrypt2/AES-CFB.
//
// OPc storage (a deliberate refinement of "OPc is a sealed data object"):
//  - TPM modes store OPc *wrapped by K*: opc_wrapped = OPc xor E_K(N) for a
//    random public nonce N. The first TPM command of an authentication is one
//    CFB *encrypt* with IV = N over (opc_wrapped xor RAND, 0, R): its output
//    blocks are OPc xor RAND and TEMP = E_K(RAND xor OPc) (R is random, so
//    that the unencrypted ivOut, R xor E_K(TEMP), reveals nothing). OPc thus
//    costs no TPM command, no object slot and no Load/Unseal/Flush, is bound to
//    the same policy (it needs a use of K) and is in host memory only during
//    one authentication.
//  - Sealed mode seals K || OPc (Milenage) or K || TOPc (TUAK) in one object:
//    one Load and one Unseal per authentication.
//  - `opc` (a separate sealed object, the form in which a Provisioning Server
//    may deliver OPc) is supported in every mode; it costs a Load, a policy,
//    an Unseal and a Flush (5 commands) per authentication.
//
// TPM commands per USIM authentication (usim_authenticate: begin, f2345, f1),
// warm ticket cache, measured on swtpm and asserted in
// tests/integration/test_mid_crypto.cpp:
//   TpmEcb / TpmCfb: 13 = StartAuthSession + Load(K)
//                       + 3 uses x (PolicyPCR + PolicyAuthorize + EncryptDecrypt2)
//                       + FlushContext(K) + FlushContext(session)
//   Sealed:           7 = StartAuthSession + Load + PolicyPCR + PolicyAuthorize
//                       + Unseal + FlushContext(object) + FlushContext(session)
//   PolicyAuthValue adds one command per use (TPM modes +3, Sealed +1); a cold
//   ticket cache adds LoadExternal + VerifySignature + FlushContext once.
//   With a WarmState holding the session and the key (the TE's steady state
//   for the MID it used last): TpmEcb / TpmCfb 9, Sealed 3 (the policy and the
//   uses only).
// Three uses are the minimum for Milenage on the USIM side: TEMP needs RAND,
// CK/IK need rotations of TEMP (no TPM cipher mode can rotate, so they cannot
// be chained behind TEMP), and MAC-A needs SQN, which the caller knows only
// after f2345 returned AK. Each use costs three commands because the policy
// is reset after every command it authorizes. A network-side all() or
// vector() needs two uses (10 commands).
//
// Sessions are salted with the SRK and every EncryptDecrypt2/Unseal encrypts
// its data parameters, so neither the blocks nor OPc/K cross the TPM bus in
// clear.
//
// Errors are TeErrors: PlatformMismatch when PolicyPCR fails (naming the PCRs
// that differ from the approval's values), PolicyDenied when the approval is
// not by the objects' authority or its signature does not verify, PinRequired
// when the approval needs an auth value and none was given, WrongPin when the
// TPM refuses the auth value, TpmLockout, StateCorrupt for malformed key
// material, TpmFailure for the rest.

#include <memory>
#include <optional>
#include <string_view>

#include <tss2/tss2_esys.h>

#include "errors.hpp"
#include "profile.hpp"
#include "tpm/capabilities.hpp"
#include "tpm/context.hpp"
#include "tpm/handles.hpp"
#include "tpm/objects.hpp"
#include "tpm/policy.hpp"
#include "usim/aka_algorithm.hpp"
#include "usim/block_cipher.hpp"
#include "usim/milenage.hpp"
#include "usim/secret.hpp"
#include "usim/tuak.hpp"

namespace tresim::te {

enum class ComputationMode { TpmEcb, TpmCfb, Sealed };

// "tpm-ecb", "tpm-cfb", "sealed" (the config file's spelling).
const char* to_string(ComputationMode mode) noexcept;
std::optional<ComputationMode> parse_computation_mode(std::string_view text) noexcept;

// The mode for a new MID: TUAK is always Sealed; Milenage uses TpmEcb where the
// TPM has EncryptDecrypt2 with AES-CFB and ECB, TpmCfb where it has CFB only,
// else Sealed. `forced` (from the config) wins when the TPM can do it, else
// TeError(InvalidArgument) naming "computation-mode".
ComputationMode choose_mode(const tpm::Capabilities& caps, Algorithm algorithm,
                            std::optional<ComputationMode> forced = std::nullopt);

// The authority's approval of one platform state for a MID.
struct MidApproval {
    tpm::PcrValues pcrs;        // the approved values (their selection is the policy's)
    bool auth_value = false;    // PolicyAuthValue follows PolicyPCR (the MID has a PIN)
    Bytes approved_policy;      // PolicyPCR(selection, digest) [+ PolicyAuthValue]
    Bytes policy_ref;           // at most 32 bytes
    TPM2B_PUBLIC authority{};   // the authority's public area (ECC P-256)
    TPMT_SIGNATURE signature{}; // over SHA-256(approved_policy || policy_ref)
};

// The approved policy digest for these values.
Bytes approved_policy_for(const tpm::PcrValues& pcrs, bool auth_value);
// authPolicy of every MID object: PolicyAuthorize(authority name, policy_ref).
Bytes mid_auth_policy(const TPM2B_PUBLIC& authority, ByteView policy_ref);
// The authority's side (software): approves `pcrs`.
MidApproval approve(const tpm::PolicyAuthority& authority, tpm::PcrValues pcrs, bool auth_value,
                    Bytes policy_ref);

// The TPM objects of one MID and what is needed to use them.
struct MidKeyMaterial {
    Algorithm algorithm = Algorithm::Milenage;
    usim::TuakParams tuak; // TUAK only
    ComputationMode mode = ComputationMode::TpmEcb;
    // TpmEcb/TpmCfb: AES-128 key object holding K. Sealed: sealed data object
    // holding K, followed by OPc/TOPc when `opc` is absent.
    tpm::ObjectBlobs key;
    // OPc/TOPc as its own sealed data object (optional, see above).
    std::optional<tpm::ObjectBlobs> opc;
    // TPM modes without `opc`: OPc xor E_K(wrap_nonce), and the nonce (16 bytes each).
    Bytes opc_wrapped;
    Bytes wrap_nonce;
    MidApproval approval;
    // The PIN-derived auth value of every object (when the approval has
    // PolicyAuthValue). Not stored: supplied once the PIN is verified.
    std::optional<SecretBytes> auth_value;
};

// AKA algorithms whose computations run on the MID's TPM objects.
class MidAlgorithm : public usim::AkaAlgorithm {
public:
    virtual ComputationMode mode() const noexcept = 0;
    // TPM commands of the last computation (begin() until the computation was
    // destroyed); empty before the first one ends.
    virtual const tpm::CommandCounts& last_counts() const noexcept = 0;
};

// What a caller may keep in the TPM between computations: the policy session
// and the loaded key object (`MidKeyMaterial::key`) of the MID used last. The
// policy is still run in the TPM before every use of the key, exactly as with
// a fresh session (a policy session starts each command's authorization from
// the empty digest again); what is saved is StartAuthSession, Load and the two
// FlushContext of every computation (4 commands). It holds at most one session
// and one key object. A key with a PIN-derived auth value is never kept (ESAPI
// would hold the auth value in ordinary memory between computations).
// release() flushes both; the owner calls it before anything that needs TPM
// object or session slots (a raw TPM has three of each), when the key's MID is
// deactivated or deleted, and a computation releases it itself when it failed
// (a half-satisfied policy session must not be reused).
struct WarmState {
    WarmState() = default;
    ~WarmState() { release(); }
    WarmState(const WarmState&) = delete;
    WarmState& operator=(const WarmState&) = delete;

    void release() noexcept {
        key.reset();
        key_blobs = {};
        session.reset();
    }
    bool empty() const noexcept { return !session && !key; }

    std::unique_ptr<tpm::PolicySession> session;
    tpm::Handle key;
    tpm::ObjectBlobs key_blobs; // which object `key` is
    // Set by a computation that used the kept session or key; the owner clears
    // it before a computation to know whether a TpmFailure may come from a
    // stale handle (the TPM was reset under a running TE).
    bool reused = false;
};

// The factory. Checks the approval in software first (it must be consistent
// with its PCR values, and by the authority the objects' authPolicy names:
// else PolicyDenied). Without `warm`, every begin() starts one policy session
// (salted with the SRK) and loads the objects, and the computation flushes
// them when destroyed; with `warm` the session and the key object are taken
// from it or left in it. The computation must not outlive the algorithm,
// `ctx`, the SRK handle, `tickets` or `warm`.
std::unique_ptr<MidAlgorithm> make_mid_algorithm(tpm::Context& ctx, ESYS_TR srk,
                                                 const MidKeyMaterial& material,
                                                 tpm::TicketCache& tickets,
                                                 WarmState* warm = nullptr);

// ---- creation for local import ---------------------------------------------

struct MidCreateOptions {
    ComputationMode mode = ComputationMode::TpmEcb;
    // OPc/TOPc in its own sealed object instead of wrapped by K / sealed with K.
    bool separate_opc_object = false;
    std::optional<SecretBytes> auth_value; // at most 32 bytes
};

// Creates a Milenage MID's objects under the SRK with the approval's
// authority's PolicyAuthorize policy. `opc` is OPc, or OP when opc_is_op: then
// OPc = OP xor E_K(OP) is computed with the new TPM-resident K in TPM modes
// (in one command with the wrapping pad), so K never enters a host AES
// context (in Sealed mode K is used in software anyway). The approval must
// hold for the current PCRs when a TPM use is needed (OP given, or wrapping).
MidKeyMaterial create_milenage_mid(tpm::Context& ctx, ESYS_TR srk, const SecretBytes& k,
                                   const SecretBytes& opc, bool opc_is_op,
                                   const MidCreateOptions& options, const MidApproval& approval,
                                   tpm::TicketCache& tickets);

// TUAK (always Sealed; options.mode is ignored). K is 16 or 32 bytes.
MidKeyMaterial create_tuak_mid(tpm::Context& ctx, ESYS_TR srk, const SecretBytes& k,
                               const usim::Topc& topc, const usim::TuakParams& params,
                               const MidCreateOptions& options, const MidApproval& approval);

// OPc = OP xor E_K(OP) with the MID's TPM-resident K (TpmEcb/TpmCfb material,
// else TeError(InvalidArgument) naming "computation-mode").
usim::Opc compute_opc_in_tpm(tpm::Context& ctx, ESYS_TR srk, const MidKeyMaterial& material,
                             tpm::TicketCache& tickets, const usim::Block& op);

} // namespace tresim::te
