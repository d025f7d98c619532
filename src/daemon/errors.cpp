#include "errors.hpp"

#include <new>

#include "log.hpp"
#include "te/errors.hpp"
#include "tpm/error.hpp"
#include "usim/bytes.hpp"

namespace tresim::daemon {

sdbus::Error to_dbus_error(const char* method, std::optional<std::int64_t> mid) {
    const std::string prefix(kErrorPrefix);
    try {
        throw;
    } catch (const sdbus::Error& e) {
        return e;
    } catch (const te::TeError& e) {
        if (e.code() == te::ErrorCode::TpmFailure || e.code() == te::ErrorCode::RollbackDetected ||
            e.code() == te::ErrorCode::StateCorrupt) {
            log(LOG_ERR, std::string(method) + ": " + e.what(), {mid, std::nullopt});
        } else {
            log(LOG_DEBUG, std::string(method) + ": " + te::nick(e.code()) + ": " + e.what(),
                {mid, std::nullopt});
        }
        return sdbus::Error(prefix + te::nick(e.code()), e.what());
    } catch (const NotAuthorized& e) {
        log(LOG_NOTICE, std::string(method) + ": " + e.what(), {mid, std::nullopt});
        return sdbus::Error(prefix + "NotAuthorized", e.what());
    } catch (const InvalidArgument& e) {
        return sdbus::Error(prefix + "InvalidArgument", e.what());
    } catch (const tpm::TpmError& e) {
        log(LOG_ERR, std::string(method) + ": " + e.what(), {mid, e.rc()});
        return sdbus::Error(prefix + (e.is_lockout() ? "TpmLockout" : "TpmFailure"), e.what());
    } catch (const std::bad_alloc&) {
        return sdbus::Error("org.freedesktop.DBus.Error.NoMemory", "out of memory");
    } catch (const std::exception& e) {
        log(LOG_ERR, std::string("bug: ") + method + " failed unexpectedly: " + e.what(),
            {mid, std::nullopt});
        return sdbus::Error("org.freedesktop.DBus.Error.Failed", e.what());
    } catch (...) {
        log(LOG_ERR, std::string("bug: ") + method + " failed with an unknown exception",
            {mid, std::nullopt});
        return sdbus::Error("org.freedesktop.DBus.Error.Failed", "internal error");
    }
}

} // namespace tresim::daemon
