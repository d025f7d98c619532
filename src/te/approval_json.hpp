#pragma once
// The approval JSON ("tresim-approval-1", docs/dbus-api.md#approval-json): how a
// policy authority's approval of a platform state travels, over D-Bus
// (AddApproval, ImportMid), from tresim-approve and inside provisioning
// instructions. Both directions live here so that every producer and the TE
// agree on one format.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "mid_crypto.hpp"
#include "tpm/attest.hpp"

namespace tresim::te {

struct ParsedApproval {
    TPM2B_PUBLIC authority{};
    std::optional<MidApproval> approval; // absent in the reference form
};

// Parses and checks (in software: the policy digest and the signature) an
// approval for the PCRs of `selection`. `allow_reference` accepts the form that
// names only the authority. Errors are TeError: InvalidArgument naming
// "approval: <field>", PolicyDenied for a signature that does not verify.
ParsedApproval parse_approval(const std::string& json, const tpm::PcrSelection& selection,
                              bool allow_reference);

// The JSON form of a complete approval (what parse_approval reads back).
nlohmann::json approval_to_json(const MidApproval& approval);

// The form in which the registry stores an approval (its TPM structures
// marshalled, not PEM/DER): StateCorrupt when a stored one is unreadable.
Bytes encode_stored_approval(const MidApproval& approval);
MidApproval decode_stored_approval(ByteView stored);

// Whether every PCR the approval names has its approved value in `current`.
bool same_pcr_values(const tpm::PcrValues& approved, const tpm::PcrValues& current);

} // namespace tresim::te
