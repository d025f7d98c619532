#pragma once
// Service::call (a template, used by the object implementations).

#include "errors.hpp"
#include "service.hpp"

namespace tresim::daemon {

template <typename F>
auto Service::call(const char* method, std::optional<Action> action,
                   std::optional<std::int64_t> mid, const sdbus::Message* message, F&& f)
    -> decltype(f()) {
    struct RefreshAfter {
        Service& s;
        std::optional<std::int64_t> mid;
        ~RefreshAfter() { s.refresh(mid); }
    } refresh_after{*this, mid};
    return guarded(method, mid, [&]() -> decltype(f()) {
        if (action) {
            authorizer_.require(*action, message);
        }
        return f();
    });
}

} // namespace tresim::daemon
