#pragma once
// Rollback protection for the state database (DESIGN.md §3).
//
// The TPM holds a strict (non-orderly) NV counter: the state epoch. The
// database records the epoch it was last stamped with and a MAC, made by a
// TPM-resident HMAC key, over the epoch and a digest of the security-relevant
// state (every MID's identity, lifecycle state, slot, PIN counters, SQN array,
// authority and object blobs).
//
//  - A transaction that changes security-relevant state (import, lifecycle,
//    PIN failure or change, policy, delete) bumps the counter: one NV write.
//  - SQN updates after an authentication are committed every time (before
//    RES/CK/IK leave), but bump the counter only every `sqn_interval`-th time:
//    the NV budget on the authentication path is 1/sqn_interval writes per
//    authentication, and a restored copy of the state folder can roll SQN back
//    by at most sqn_interval - 1 authentications (set 1 for none).
//  - A bump is two-phase: prepare() first commits an intent (pending =
//    epoch + 1, under the MAC) and then increments the counter; the caller's
//    transaction then makes its change and stamp() sets epoch = pending and
//    clears it, in the same commit.
//  - At start: counter == stamped epoch is the normal case (a pending intent
//    whose increment never happened is dropped); counter == stamped + 1 with
//    pending == counter is a crash after the increment, whose change was lost
//    as a whole: the epoch is adopted. Anything else (in particular a counter
//    ahead with no intent: a restored copy) is RollbackDetected, and a MAC that
//    does not verify is StateCorrupt; the TE then refuses to serve.

#include <cstdint>
#include <optional>

#include "registry.hpp"
#include "tpm/context.hpp"
#include "tpm/hmac.hpp"
#include "tpm/nv.hpp"

namespace tresim::te {

struct GuardStatus {
    std::uint64_t epoch = 0;
    bool recovered_crash = false; // the counter was one ahead at start
    bool fresh = false;           // first start: counter and key were created
};

class StateGuard {
public:
    // Opens (or on first start defines) the epoch counter and the HMAC key;
    // the key blob and the stamp live in the registry's meta table.
    StateGuard(tpm::Context& ctx, ESYS_TR srk, Registry& registry, const SecretBytes& auth,
               unsigned sqn_interval = 16,
               TPM2_HANDLE counter_index = tpm::kDefaultEpochCounterIndex);

    // Checks the database against the TPM. Throws TeError(RollbackDetected) or
    // TeError(StateCorrupt) naming what is wrong; changes nothing then.
    GuardStatus verify_at_start();

    // Called before the caller opens its Transaction. `security` is true for
    // security-relevant changes; false for an SQN update. When the epoch must
    // move, commits the intent and increments the counter (one NV write).
    void prepare(bool security);
    // Called inside the caller's Transaction, after its changes and before its
    // commit: stamps the epoch (the prepared one) and the MAC.
    void stamp();

    std::uint64_t epoch() const noexcept { return epoch_; }
    std::uint64_t nv_increments() const noexcept { return increments_; }

    // The digest the MAC covers (exposed for tests).
    Bytes state_digest();

private:
    Bytes mac_input(std::uint64_t epoch, std::uint64_t pending);
    std::uint64_t stored_pending();
    void write_stamp(std::uint64_t epoch, std::uint64_t pending);

    tpm::Context& ctx_;
    Registry& registry_;
    unsigned sqn_interval_;
    std::optional<tpm::NvCounter> counter_;
    std::optional<tpm::HmacKey> key_;
    std::uint64_t epoch_ = 0;
    std::uint64_t pending_ = 0; // the prepared epoch, 0 when none
    std::uint64_t sqn_updates_ = 0;
    std::uint64_t increments_ = 0;
    bool created_ = false;
};

} // namespace tresim::te
