#include "error.hpp"

#include <cstdio>

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tpm2_types.h>

namespace tresim::tpm {

std::string decode(TSS2_RC rc) {
    const char* text = Tss2_RC_Decode(rc);
    char code[16];
    std::snprintf(code, sizeof(code), "0x%08x", rc);
    return std::string(text != nullptr ? text : "unknown") + " (" + code + ")";
}

TpmError::TpmError(std::string operation, TSS2_RC rc)
    : std::runtime_error(operation + ": " + decode(rc)), operation_(std::move(operation)), rc_(rc) {
}

TSS2_RC TpmError::base_rc() const noexcept {
    const TSS2_RC layerless = rc_ & ~TSS2_RC_LAYER_MASK;
    if ((layerless & TPM2_RC_FMT1) != 0) {
        // Format one: error number plus the parameter/handle/session bits.
        return (layerless & 0xbf) | TPM2_RC_FMT1;
    }
    return layerless;
}

bool TpmError::is_lockout() const noexcept {
    return base_rc() == TPM2_RC_LOCKOUT;
}

bool TpmError::is_auth_failure() const noexcept {
    const TSS2_RC b = base_rc();
    return b == TPM2_RC_AUTH_FAIL || b == TPM2_RC_BAD_AUTH;
}

bool TpmError::is_policy_failure() const noexcept {
    const TSS2_RC b = base_rc();
    return b == TPM2_RC_POLICY_FAIL || b == TPM2_RC_VALUE || b == TPM2_RC_POLICY_CC;
}

void check(TSS2_RC rc, const char* operation) {
    if (rc != TSS2_RC_SUCCESS) {
        throw TpmError(operation, rc);
    }
}

} // namespace tresim::tpm
