#include "errors.hpp"

namespace tresim::te {

const char* nick(ErrorCode code) noexcept {
    switch (code) {
    case ErrorCode::InvalidArgument:
        return "InvalidArgument";
    case ErrorCode::UnknownMid:
        return "UnknownMid";
    case ErrorCode::AlreadyExists:
        return "AlreadyExists";
    case ErrorCode::IllegalTransition:
        return "IllegalTransition";
    case ErrorCode::SlotOccupied:
        return "SlotOccupied";
    case ErrorCode::WrongPin:
        return "WrongPin";
    case ErrorCode::PinBlocked:
        return "PinBlocked";
    case ErrorCode::PinRequired:
        return "PinRequired";
    case ErrorCode::TpmLockout:
        return "TpmLockout";
    case ErrorCode::PlatformStateMismatch:
        return "PlatformStateMismatch";
    case ErrorCode::PolicyDenied:
        return "PolicyDenied";
    case ErrorCode::RollbackDetected:
        return "RollbackDetected";
    case ErrorCode::TpmFailure:
        return "TpmFailure";
    case ErrorCode::StateCorrupt:
        return "StateCorrupt";
    }
    return "Failed";
}

} // namespace tresim::te
