#pragma once
// The TE's typed errors. Each code maps one-to-one onto a D-Bus error
// org.tresim1.Error.<Nick> (docs/dbus-api.md), so a caller can branch on it.
// Messages never contain secrets.

#include <stdexcept>
#include <string>
#include <vector>

namespace tresim::te {

enum class ErrorCode {
    InvalidArgument,       // a malformed value (names the argument)
    UnknownMid,            // no MID with that index or ICCID
    AlreadyExists,         // a MID with that ICCID is installed
    IllegalTransition,     // the lifecycle does not allow it from the current state
    SlotOccupied,          // another MID is active in that slot
    WrongPin,              // PIN or PUK did not verify; retries left is in the message
    PinBlocked,            // no PIN retries left: unblock with the PUK
    PinRequired,           // the MID needs a verified PIN for this
    TpmLockout,            // the TPM's dictionary-attack protection is engaged
    PlatformStateMismatch, // PCRs differ from what the MID's policy approves (names them)
    PolicyDenied,          // the MID's security policy does not allow the action
    RollbackDetected,      // the state database is older than the TPM says
    TpmFailure,            // the TPM refused or failed (TPM_RC in the message)
    StateCorrupt,          // the state database fails its integrity checks
};

// "InvalidArgument", "UnknownMid", ...: the D-Bus error nick.
const char* nick(ErrorCode code) noexcept;

class TeError : public std::runtime_error {
public:
    TeError(ErrorCode code, const std::string& message)
        : std::runtime_error(message), code_(code) {}
    ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

// PlatformStateMismatch carries the PCRs that differ.
class PlatformMismatch : public TeError {
public:
    PlatformMismatch(std::vector<unsigned> pcrs, const std::string& message)
        : TeError(ErrorCode::PlatformStateMismatch, message), pcrs_(std::move(pcrs)) {}
    const std::vector<unsigned>& pcrs() const noexcept { return pcrs_; }

private:
    std::vector<unsigned> pcrs_;
};

} // namespace tresim::te
