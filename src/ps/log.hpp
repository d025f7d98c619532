#pragma once
// tresim-ps logs to stderr, one line per event; under systemd (JOURNAL_STREAM
// set) each line carries its syslog level as a "<N>" prefix for journald.
// Never pass a secret.

#include <string>

namespace tresim::ps {

enum class Level { Error = 3, Warning = 4, Info = 6, Debug = 7 };

void log(Level level, const std::string& message);

} // namespace tresim::ps
