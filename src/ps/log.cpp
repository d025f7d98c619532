#include "log.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace tresim::ps {

void log(Level level, const std::string& message) {
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    static std::mutex m;
    const std::lock_guard lock(m);
    if (journal) {
        std::fprintf(stderr, "<%d>%s\n", static_cast<int>(level), message.c_str());
    } else {
        const char* name = level == Level::Error     ? "error"
                           : level == Level::Warning ? "warning"
                           : level == Level::Info    ? "info"
                                                     : "debug";
        std::fprintf(stderr, "tresim-ps: %s: %s\n", name, message.c_str());
    }
    std::fflush(stderr);
}

} // namespace tresim::ps
