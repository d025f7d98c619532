#pragma once
// The adaptor boundary: sdbus-c++ 1.2 turns only sdbus::Error into an error
// reply, so every handler runs inside guarded(), which maps whatever it throws
// onto the fixed list of dbus/errors.md.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include <sdbus-c++/Error.h>

namespace tresim::daemon {

inline constexpr const char* kErrorPrefix = "org.tresim1.Error.";

// The daemon's own refusal of an action (NotAuthorized).
class NotAuthorized : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Converts the exception in flight (call only inside a catch block) into the
// sdbus::Error to reply with, logging TPM failures and defects.
sdbus::Error to_dbus_error(const char* method, std::optional<std::int64_t> mid);

// Runs `f`; any exception leaves as an sdbus::Error.
template <typename F>
auto guarded(const char* method, std::optional<std::int64_t> mid, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (...) {
        throw to_dbus_error(method, mid);
    }
}

} // namespace tresim::daemon
