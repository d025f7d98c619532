#include "lifecycle.hpp"

namespace tresim::te {

const char* to_string(MidState s) noexcept {
    switch (s) {
    case MidState::Inactive:
        return "inactive";
    case MidState::Active:
        return "active";
    case MidState::Suspended:
        return "suspended";
    case MidState::Blocked:
        return "blocked";
    case MidState::Deleted:
        return "deleted";
    }
    return "unknown";
}

const char* to_string(LifecycleEvent e) noexcept {
    switch (e) {
    case LifecycleEvent::Activate:
        return "activate";
    case LifecycleEvent::Deactivate:
        return "deactivate";
    case LifecycleEvent::Suspend:
        return "suspend";
    case LifecycleEvent::Resume:
        return "resume";
    case LifecycleEvent::Block:
        return "block";
    case LifecycleEvent::Unblock:
        return "unblock";
    case LifecycleEvent::Delete:
        return "delete";
    }
    return "unknown";
}

std::optional<MidState> parse_mid_state(std::string_view text) noexcept {
    for (const MidState s : {MidState::Inactive, MidState::Active, MidState::Suspended,
                             MidState::Blocked, MidState::Deleted}) {
        if (text == to_string(s)) {
            return s;
        }
    }
    return std::nullopt;
}

std::optional<MidState> next_state(MidState from, LifecycleEvent event) noexcept {
    switch (event) {
    case LifecycleEvent::Activate:
        return from == MidState::Inactive ? std::optional(MidState::Active) : std::nullopt;
    case LifecycleEvent::Deactivate:
        return from == MidState::Active || from == MidState::Suspended
                   ? std::optional(MidState::Inactive)
                   : std::nullopt;
    case LifecycleEvent::Suspend:
        return from == MidState::Active ? std::optional(MidState::Suspended) : std::nullopt;
    case LifecycleEvent::Resume:
        return from == MidState::Suspended ? std::optional(MidState::Active) : std::nullopt;
    case LifecycleEvent::Block:
        return from != MidState::Deleted && from != MidState::Blocked
                   ? std::optional(MidState::Blocked)
                   : std::nullopt;
    case LifecycleEvent::Unblock:
        return from == MidState::Blocked ? std::optional(MidState::Inactive) : std::nullopt;
    case LifecycleEvent::Delete:
        return from == MidState::Inactive ? std::optional(MidState::Deleted) : std::nullopt;
    }
    return std::nullopt;
}

} // namespace tresim::te
