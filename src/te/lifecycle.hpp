#pragma once
// The MID lifecycle of DESIGN.md §5 as a pure state machine:
//
//             install                activate
//  (none) ───────────▶ inactive ◀────────────▶ active
//                         │        deactivate     │
//                  delete │                       │ PCR/policy mismatch
//                         ▼                       ▼
//                      deleted               suspended ──(valid policy)──▶ active
//   any ──(PIN/PUK exhausted, or PS order)──▶ blocked ──(unblock)──▶ inactive

#include <optional>
#include <string_view>

namespace tresim::te {

enum class MidState { Inactive, Active, Suspended, Blocked, Deleted };

enum class LifecycleEvent {
    Activate,   // inactive -> active
    Deactivate, // active or suspended -> inactive
    Suspend,    // active -> suspended (platform state no longer approved)
    Resume,     // suspended -> active (a valid policy for the current state)
    Block,      // any but deleted -> blocked
    Unblock,    // blocked -> inactive
    Delete,     // inactive -> deleted
};

const char* to_string(MidState s) noexcept;
const char* to_string(LifecycleEvent e) noexcept;
std::optional<MidState> parse_mid_state(std::string_view text) noexcept;

// The state after `event`, or nullopt when the lifecycle does not allow it.
std::optional<MidState> next_state(MidState from, LifecycleEvent event) noexcept;

} // namespace tresim::te
