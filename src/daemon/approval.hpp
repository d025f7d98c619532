#pragma once
// The approval JSON of docs/dbus-api.md ("tresim-approval-1").

#include <optional>
#include <string>

#include "te/mid_crypto.hpp"
#include "tpm/attest.hpp"

namespace tresim::daemon {

struct ParsedApproval {
    TPM2B_PUBLIC authority{};
    std::optional<te::MidApproval> approval; // absent in the reference form
};

// Parses and checks (in software: the policy digest and the signature) an
// approval for the PCRs of `selection`. `allow_reference` accepts the form that
// names only the authority. Errors are te::TeError: InvalidArgument naming
// "approval: <field>", PolicyDenied for a signature that does not verify.
ParsedApproval parse_approval(const std::string& json, const tpm::PcrSelection& selection,
                              bool allow_reference);

} // namespace tresim::daemon
