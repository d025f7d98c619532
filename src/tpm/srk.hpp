#pragma once
// The Storage Root Key: an ECC P-256 storage primary from the TCG provisioning
// guidance template, persisted at 0x81000001 where systemd and tpm2-tools also
// expect it. Created and persisted when absent; when present its public area
// must match the template (else SrkMismatch: never use a key someone else put
// there with other properties).

#include <stdexcept>

#include "context.hpp"
#include "handles.hpp"

namespace tresim::tpm {

inline constexpr TPM2_HANDLE kSrkHandle = 0x81000001;

class SrkMismatch : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The TCG template: restricted decrypt, fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth, noDA, AES-128-CFB, NIST P-256, zero unique.
TPM2B_PUBLIC srk_template();

struct Srk {
    Handle handle;      // persistent
    TPM2B_PUBLIC pub{}; // as the TPM reports it
    TPM2B_NAME name{};
    bool created = false; // true when this call made and persisted it
};

// Opens the SRK, creating and persisting it first when the handle is empty.
// Uses the owner hierarchy with an empty authorization.
Srk ensure_srk(Context& ctx);

// True when `pub` has the template's type, name algorithm, attributes, policy
// and parameters (the unique field, the key itself, is not compared).
bool matches_srk_template(const TPMT_PUBLIC& pub);

} // namespace tresim::tpm
