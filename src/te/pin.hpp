#pragma once
// PIN and PUK for MIDs that require user authentication (TR 33.812: the TE
// authenticates the user where a MID's policy says so).
//
// Design: a PIN MID's TPM objects carry an auth value that is a random 32-byte
// *unlock secret*, and their approved policy includes PolicyAuthValue. The
// unlock secret is sealed twice, in a "PIN gate" whose auth value is the
// stretched PIN and in a "PUK gate" whose auth value is the stretched PUK, both
// under the MID's authority policy (so a gate opens only in an approved platform
// state). Verifying the PIN unseals the unlock secret, which the TE then holds
// in locked memory for the session; changing the PIN seals the unlock secret
// afresh under the new PIN (no TPM2_ObjectChangeAuth, so no further authority
// approval is needed); the PUK unblocks by the same route.
//
// The gates are dictionary-attack protected: the TPM's lockout is the backstop
// against guessing, and the TE's own retry counters give the SIM behaviour.

#include "mid_crypto.hpp"
#include "tpm/objects.hpp"

namespace tresim::te {

inline constexpr unsigned kPinIterations = 50000;

// PBKDF2-HMAC-SHA256(pin, "tresim-pin" || salt), 32 bytes.
SecretBytes stretch_pin(ByteView pin, ByteView salt);

// Seals `unlock` under the MID's authority policy with auth value `auth`.
tpm::ObjectBlobs create_gate(tpm::Context& ctx, ESYS_TR srk, const SecretBytes& unlock,
                             const SecretBytes& auth, const MidApproval& approval);

// Opens a gate: the approved policy with PolicyAuthValue, then Unseal. Throws
// WrongPin when the TPM refuses `auth`, TpmLockout when the TPM is locked out,
// PlatformMismatch naming the PCRs when the platform state is not approved.
SecretBytes open_gate(tpm::Context& ctx, ESYS_TR srk, const tpm::ObjectBlobs& gate,
                      const SecretBytes& auth, const MidApproval& approval,
                      tpm::TicketCache& tickets);

// A PIN or PUK from a caller: digits only; PIN 4 to 8, PUK 8.
void check_pin_format(ByteView pin, bool puk);

} // namespace tresim::te
