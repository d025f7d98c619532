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
#include <vector>

#include "audit.hpp"
#include "mid_crypto.hpp"
#include "registry.hpp"
#include "state_guard.hpp"
#include "tpm/capabilities.hpp"
#include "tpm/context.hpp"
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
    usim::AkaResult authenticate(std::int64_t index, const usim::Rand& rand, ByteView autn);
    usim::GsmContext gsm_authenticate(std::int64_t index, const usim::Rand& rand);
    usim::Suci suci(std::int64_t index);

    // PIN (for MIDs imported with one). VerifyPin unlocks the MID for this
    // session; wrong PINs count down to a block; the PUK unblocks and sets a new
    // PIN. Errors: WrongPin (tries left in the message), PinBlocked, TpmLockout.
    void verify_pin(std::int64_t index, ByteView pin);
    void change_pin(std::int64_t index, ByteView old_pin, ByteView new_pin);
    void unblock_pin(std::int64_t index, ByteView puk, ByteView new_pin);
    bool pin_verified(std::int64_t index);

    AuditVerification verify_audit();
    nlohmann::json export_audit();

    // TPM commands and NV writes since the TE was opened (for measurements).
    const tpm::CommandCounts& counts() const;
    StateGuard& guard() { return *guard_; }

private:
    MidRecord require(std::int64_t index);
    MidKeyMaterial material_for(const MidRecord& mid);
    std::optional<MidApproval> approval_for(const Bytes& authority_name, bool auth_value,
                                            const tpm::PcrValues& current);
    void transition(MidRecord& mid, LifecycleEvent event, std::optional<unsigned> slot,
                    const nlohmann::json& details);
    std::unique_ptr<MidAlgorithm> algorithm_for(MidRecord& mid);

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
    std::map<std::int64_t, SecretBytes> unlocked_; // PIN verified: the unlock secret
    // The approval that held at the last use, per (authority, has PIN).
    std::map<std::pair<Bytes, bool>, MidApproval> current_approval_;
    SecretBytes secret_;
    GuardStatus guard_status_;
    tpm::PcrSelection selection_;
};

} // namespace tresim::te
