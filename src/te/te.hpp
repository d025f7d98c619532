#pragma once
// The Trusted Environment core (TR 33.812 §5.1): the MID registry with its
// lifecycle, import, authentication through the TPM-backed algorithms, the
// security policies, rollback protection and the audit record, behind one
// object. It knows no D-Bus and no HTTP; tresimd puts an API on it.
//
// Every change is one database transaction that also carries its audit record
// and the rollback stamp; the SQN array is committed before RES/CK/IK are
// returned. Methods throw TeError (errors.hpp) and change nothing when they do.

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "audit.hpp"
#include "mid_crypto.hpp"
#include "registry.hpp"
#include "state_guard.hpp"
#include "tpm/attest.hpp"
#include "tpm/capabilities.hpp"
#include "tpm/context.hpp"
#include "tpm/duplicate.hpp"
#include "tpm/keys.hpp"
#include "tpm/srk.hpp"
#include "usim/aka.hpp"
#include "usim/gsm.hpp"
#include "usim/suci.hpp"

namespace tresim::te {

struct TeConfig {
    std::string state_dir; // holds tresim.db and te.secret
    std::string tcti;      // tpm2-tools style
    unsigned slots = 1;    // modem slots
    std::optional<ComputationMode> force_mode;
    std::string pcrs = "sha256:0,2,4,7"; // the PCRs MID policies bind to
    unsigned sqn_interval = 16;          // see state_guard.hpp
    unsigned pin_retries = 3;
    unsigned puk_retries = 10;
    // The confirmation window of a switch-slot instruction whose body gives
    // none (0): the TE policy's confirm_within (docs/protocol.md).
    unsigned confirm_within = 600;
};

// ---- Remote provisioning (docs/protocol.md, src/te/provisioned.cpp) ------------

// An instruction whose JWS the caller has verified (signature by a pinned key,
// device, expiry, platform validation): what the TE executes. The counter check
// against the last accepted instruction of `server` is the TE's own, in the
// same transaction as the operation.
struct Instruction {
    std::string server;        // the signing key's JWK thumbprint (kid): counters are per key
    std::uint64_t counter = 0; // must be greater than the last accepted one
    std::string id;            // the PS's order id
    std::string op;            // install, activate, deactivate, delete, update, policy-update,
                               // switch-slot
    nlohmann::json body;       // the op's body (docs/protocol.md §3)
};

// The result of one instruction, as reported to the PS.
struct InstructionResult {
    std::string id;
    std::uint64_t counter = 0;
    std::string status = "ok"; // "ok", "failed" or "refused"
    // failed: the TE error nick (InvalidArgument, AlreadyExists, TpmFailure, ...);
    // refused: the reason (malformed, unsigned, unknown-key, bad-signature,
    // foreign, replayed, expired, not-validated).
    std::string error;
    std::string message;
    bool fallback = false;          // switch-slot: the TE switched back to the previous MID
    std::vector<std::int64_t> mids; // MID indexes it installed or changed (not reported)

    // {"id", "counter", "status", "error", "message", "fallback"} (protocol form).
    nlohmann::json to_json() const;
    static InstructionResult from_json(const nlohmann::json& j);
};

// What the TE remembers per server signing key.
struct ProvisioningState {
    std::uint64_t counter = 0; // the last accepted instruction's counter
    std::string id;            // its id
    InstructionResult result;  // and its result (answered again to a re-sent instruction)
};

// A switch-slot waiting for Mid.ConfirmActivation.
struct PendingSwitch {
    unsigned slot = 0;
    std::int64_t mid = 0;                 // the MID switched to
    std::optional<std::int64_t> previous; // the MID it displaced (the fallback)
    std::int64_t deadline = 0;            // Unix seconds
    std::string server;
    std::uint64_t counter = 0;
    std::string id; // the switch-slot instruction's
};

// A result the PS has not heard yet (a fallback after the session ended).
struct LateResult {
    std::string server;
    InstructionResult result;
};

// The TPM identity a provisioning session presents (docs/protocol.md hello).
struct AttestationKeys {
    TPM2B_PUBLIC ek_public{};
    tpm::EkType ek_type = tpm::EkType::Rsa2048;
    std::optional<Bytes> ek_certificate; // DER, from NV
    std::vector<Bytes> ek_chain;
    TPM2B_PUBLIC ak_public{};
    TPM2B_PUBLIC srk_public{};
    std::string identity; // tpm::te_identity of the EK
};

struct QuoteWithPcrs {
    tpm::Attestation quote;
    tpm::PcrValues pcrs; // the values the quote covers
};

struct TeInfo {
    tpm::Capabilities caps;
    ComputationMode milenage_mode = ComputationMode::TpmEcb;
    std::uint64_t epoch = 0;
    bool recovered_crash = false;
    std::string pcr_selection;
    AuditStatus audit;
};

class TrustedEnvironment {
public:
    // Opens the TPM and the state folder and checks the state against the TPM
    // (RollbackDetected / StateCorrupt when it does not match: nothing is served).
    explicit TrustedEnvironment(TeConfig config);
    ~TrustedEnvironment();
    TrustedEnvironment(const TrustedEnvironment&) = delete;
    TrustedEnvironment& operator=(const TrustedEnvironment&) = delete;

    TeInfo info();
    // The current values of the configured PCRs (for an authority to approve).
    tpm::PcrValues current_pcrs();

    // Stores an approval of a platform state by a policy authority (verified in
    // software and by the TPM first). Suspended MIDs of that authority whose
    // approval now holds become active again.
    void add_approval(const MidApproval& approval);

    // Local import of a profile (profile.hpp) under `authority`, which must have
    // an approval for the current platform state (add it first, or pass one).
    std::int64_t import_profile(ByteView profile_json, const TPM2B_PUBLIC& authority,
                                const std::optional<MidApproval>& approval = std::nullopt);

    std::vector<MidRecord> list();
    MidRecord get(std::int64_t index);
    MidRecord get_by_iccid(std::string_view iccid);

    void activate(std::int64_t index, unsigned slot);
    void deactivate(std::int64_t index);
    void remove(std::int64_t index); // only when inactive; keeps a tombstone

    // 3G/4G AKA. The MID must be active and its policy must allow it.
    // These three need a USIM function of the MID's own: an ISIM-only MID
    // (functions_from) gets InvalidArgument.
    usim::AkaResult authenticate(std::int64_t index, const usim::Rand& rand, ByteView autn);
    usim::GsmContext gsm_authenticate(std::int64_t index, const usim::Rand& rand);
    usim::Suci suci(std::int64_t index);

    // IMS AKA (the ISIM's AUTHENTICATE) on a MID with IMS identities, active,
    // whose policy allows "isim". With keys of its own it is the MID's AKA
    // (its policy must allow "authenticate" too). An ISIM-only MID runs it with
    // the USIM function of the MID its functions_from names (docs/te.md
    // "Shared functions"): that MID must be installed, have keys of its own,
    // be active, and share (policy.share_functions) and allow "isim"; its PIN
    // rules apply, its SQN array advances, and the use counts on both MIDs.
    // Refusals: PolicyDenied naming the MID that does not share or is not
    // active, UnknownMid naming the ICCID of a lender that is gone.
    usim::AkaResult isim_authenticate(std::int64_t index, const usim::Rand& rand, ByteView autn);

    // PIN (for MIDs imported with one). VerifyPin unlocks the MID for this
    // session; wrong PINs count down to a block; the PUK unblocks and sets a new
    // PIN. Errors: WrongPin (tries left in the message), PinBlocked, TpmLockout.
    void verify_pin(std::int64_t index, ByteView pin);
    void change_pin(std::int64_t index, ByteView old_pin, ByteView new_pin);
    void unblock_pin(std::int64_t index, ByteView puk, ByteView new_pin);
    bool pin_verified(std::int64_t index);

    AuditVerification verify_audit();
    nlohmann::json export_audit();

    // ---- remote provisioning (provisioned.cpp) ----

    // Installs a MID delivered by a Provisioning Server: `public_profile` is a
    // profile without k/opc/op/pin/puk; `key` a duplication blob for this TPM's
    // SRK (TPM modes: the AES key K; sealed: K || OPc or K || TOPc) whose
    // authPolicy is PolicyAuthorize(approval's authority, empty ref);
    // opc_wrapped/wrap_nonce (TPM modes) from mid_crypto.hpp. The approval is
    // stored as add_approval does. One transaction; returns the MID's index.
    std::int64_t install_provisioned(ByteView public_profile, ComputationMode mode,
                                     const tpm::DuplicationBlob& key, ByteView opc_wrapped,
                                     ByteView wrap_nonce, const MidApproval& approval,
                                     const std::string& server = "local-test");

    // The last accepted instruction of a server key, if any.
    std::optional<ProvisioningState> provisioning_state(const std::string& server);

    // Executes one verified instruction: refused ("replayed") when its counter
    // is not greater than the last accepted one, except that a re-sent
    // instruction (same counter and id as the last accepted) gets the stored
    // result without executing again. Otherwise the operation, its audit record
    // and the new counter are one transaction; an operation that fails leaves
    // nothing of itself behind (its result, status "failed", is stored with the
    // counter and an instruction-refused audit record). Never throws a TeError
    // for the operation: the result says what happened.
    InstructionResult execute_instruction(const Instruction& instruction, std::int64_t now);

    // Records an instruction the caller refused before execution (a bad JWS, a
    // foreign device, ...) in the audit log. Changes nothing else.
    void record_refusal(const std::string& server, const InstructionResult& refusal);

    // Records the server's verdict on this TE's attestation (hello, sync,
    // evidence) as a platform-validation audit record: `validated`, or the
    // server's refusal nick ("platform-mismatch", "unknown-ek-ca",
    // "wrong-confirmation", ...) and its message. Changes nothing else.
    void record_platform_validation(const std::string& server, bool validated,
                                    const std::string& reason, const std::string& message);

    // Confirms a switched-to MID (Mid.ConfirmActivation): its switch no longer
    // falls back. InvalidArgument when the MID has no pending switch.
    void confirm_activation(std::int64_t index);
    // Falls back every switch whose deadline is not after `now`; returns the
    // fallen-back switches (also stored as late results for the PS).
    std::vector<PendingSwitch> expire_switches(std::int64_t now);
    std::vector<PendingSwitch> pending_switches();
    std::vector<LateResult> late_results();
    void clear_late_result(const std::string& server, std::uint64_t counter);

    // Attestation for the provisioning client. The AK is created at first use
    // and kept (TPM-wrapped) in the state database.
    AttestationKeys attestation_keys();
    // TPM2_ActivateCredential with the EK and the AK.
    SecretBytes activate_credential(ByteView credential_blob, ByteView secret);
    // TPM2_Quote by the AK over `selection` (default: the configured PCRs),
    // with the values it covers.
    QuoteWithPcrs quote(ByteView qualifying_data,
                        const std::optional<tpm::PcrSelection>& selection = std::nullopt);
    // TPM2_Certify of the SRK by the AK.
    tpm::Attestation certify_srk(ByteView qualifying_data);

    // TPM commands and NV writes since the TE was opened (for measurements).
    const tpm::CommandCounts& counts() const;
    StateGuard& guard() { return *guard_; }

private:
    MidRecord require(std::int64_t index);
    MidKeyMaterial material_for(const MidRecord& mid);
    // The stored approval of the authority (with PolicyAuthValue or not, with
    // this policyRef unless any_ref) for the current PCRs, else the newest.
    std::optional<MidApproval> approval_for(const Bytes& authority_name, bool auth_value,
                                            const std::optional<Bytes>& policy_ref,
                                            const tpm::PcrValues& current);
    void transition(MidRecord& mid, LifecycleEvent event, std::optional<unsigned> slot,
                    const nlohmann::json& details);
    std::unique_ptr<MidAlgorithm> algorithm_for(MidRecord& mid);
    void put_approval_locked(const MidApproval& approval, const tpm::PcrValues& now,
                             const nlohmann::json& details);
    // The AKA with `keys`' own USIM function, its SQN array committed before
    // the result is returned (the caller checked state and policy); the use is
    // counted on `keys` and, for a shared use, on `user`.
    usim::AkaResult usim_aka_locked(MidRecord& keys, const usim::Rand& rand, ByteView autn,
                                    const MidRecord* user);
    // The MID whose USIM function an ISIM-only MID uses, when sharing is allowed.
    MidRecord lender_for(const MidRecord& borrower);

    // provisioned.cpp: the operations inside an instruction's transaction.
    struct InstructionRun;
    void run_operation(const Instruction& in, InstructionRun& run, std::int64_t now);
    std::int64_t install_locked(ByteView public_profile, ComputationMode mode,
                                const tpm::DuplicationBlob& key, ByteView opc_wrapped,
                                ByteView wrap_nonce, const MidApproval& approval,
                                const std::string& server, const nlohmann::json& instruction);
    void store_approval_locked(const MidApproval& approval, const nlohmann::json& instruction);
    void set_state_locked(MidRecord& mid, LifecycleEvent event, std::optional<unsigned> slot,
                          nlohmann::json details);
    tpm::Ak load_ak_locked(); // created and stored at first use
    tpm::Ek create_ek_locked();

    TeConfig config_;
    std::recursive_mutex mutex_; // the TPM and the database are used by one caller at a time
    std::unique_ptr<tpm::Context> ctx_;
    tpm::Capabilities caps_;
    tpm::Srk srk_;
    std::unique_ptr<Db> db_;
    std::unique_ptr<Registry> registry_;
    std::unique_ptr<StateGuard> guard_;
    std::unique_ptr<AuditLog> audit_;
    void pin_failure(MidRecord& mid, bool puk);
    SecretBytes open_pin_gate(const MidRecord& mid, const char* role, ByteView pin);

    tpm::TicketCache tickets_;
    // The policy session and key object kept between computations
    // (mid_crypto.hpp). Released by every operation that needs TPM object or
    // session slots, or changes the MID it belongs to.
    WarmState warm_;
    std::map<std::int64_t, SecretBytes> unlocked_; // PIN verified: the unlock secret
    // The approval that held at the last use, per (authority, has PIN).
    // (authority, has PIN, policyRef) -> the approval that held last.
    std::map<std::tuple<Bytes, bool, Bytes>, MidApproval> current_approval_;
    SecretBytes secret_;
    GuardStatus guard_status_;
    tpm::PcrSelection selection_;
    std::optional<AttestationKeys> keys_; // cached by attestation_keys()
};

} // namespace tresim::te
