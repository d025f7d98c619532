#pragma once
// Every TSS2_RC that is not success becomes a TpmError carrying the operation
// and tpm2-tss's decoded text. Callers branch on expected codes with is().

#include <stdexcept>
#include <string>

#include <tss2/tss2_common.h>

namespace tresim::tpm {

class TpmError : public std::runtime_error {
public:
    TpmError(std::string operation, TSS2_RC rc);
    TSS2_RC rc() const noexcept { return rc_; }
    const std::string& operation() const noexcept { return operation_; }
    // The TPM's own response code with the layer, handle, session and parameter
    // numbers masked off, for comparison with TPM2_RC_* constants.
    TSS2_RC base_rc() const noexcept;
    bool is(TSS2_RC tpm_rc) const noexcept { return base_rc() == tpm_rc; }
    // TPM2_RC_LOCKOUT: the dictionary-attack protection is engaged.
    bool is_lockout() const noexcept;
    // An authorization failed (bad auth value or a policy that does not verify).
    bool is_auth_failure() const noexcept;
    bool is_policy_failure() const noexcept;

private:
    std::string operation_;
    TSS2_RC rc_;
};

// Throws TpmError(operation, rc) unless rc is TSS2_RC_SUCCESS.
void check(TSS2_RC rc, const char* operation);

// The decoded text of a response code (for logs: "TPM_RC=0x...").
std::string decode(TSS2_RC rc);

} // namespace tresim::tpm
