#pragma once
// The approval JSON lives in the TE library (te/approval_json.hpp); the daemon
// keeps its historical names for it.

#include "te/approval_json.hpp"

namespace tresim::daemon {

using ParsedApproval = te::ParsedApproval;
using te::parse_approval;

} // namespace tresim::daemon
