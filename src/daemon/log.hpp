#pragma once
// tresimd's log: the journal when there is one (with the MID= and TPM_RC=
// fields of docs/operations.md), else stderr. Messages never hold a secret.

#include <cstdint>
#include <optional>
#include <string>
#include <syslog.h>

namespace tresim::daemon {

struct LogFields {
    std::optional<std::int64_t> mid;
    std::optional<std::uint32_t> tpm_rc;
};

// Decides once between the journal and stderr; `verbose` lets LOG_DEBUG through.
void log_init(bool verbose);
void log(int priority, const std::string& message, const LogFields& fields = {});

} // namespace tresim::daemon
