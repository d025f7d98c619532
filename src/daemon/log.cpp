#include "log.hpp"

#include <cstdio>
#include <sys/stat.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

namespace tresim::daemon {
namespace {

bool g_journal = false;
bool g_verbose = false;

const char* level_name(int priority) {
    switch (priority) {
    case LOG_EMERG:
    case LOG_ALERT:
    case LOG_CRIT:
    case LOG_ERR:
        return "error";
    case LOG_WARNING:
        return "warning";
    case LOG_NOTICE:
    case LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

} // namespace

void log_init(bool verbose) {
    g_verbose = verbose;
    struct stat st {};
    // The journal when systemd runs and its socket exists (in a unit, or a
    // shell on a systemd machine); stderr in containers and tests.
    g_journal = sd_booted() > 0 && stat("/run/systemd/journal/socket", &st) == 0;
}

void log(int priority, const std::string& message, const LogFields& fields) {
    if (priority == LOG_DEBUG && !g_verbose) {
        return;
    }
    if (g_journal) {
        const std::string mid = fields.mid ? "MID=" + std::to_string(*fields.mid) : std::string();
        char rc[32] = {};
        if (fields.tpm_rc) {
            std::snprintf(rc, sizeof rc, "TPM_RC=0x%x", *fields.tpm_rc);
        }
        // Empty fields are not sent: sd_journal_send stops at the first NULL.
        if (fields.mid && fields.tpm_rc) {
            sd_journal_send("MESSAGE=%s", message.c_str(), "PRIORITY=%i", priority, "%s",
                            mid.c_str(), "%s", rc, "SYSLOG_IDENTIFIER=tresimd", nullptr);
        } else if (fields.mid) {
            sd_journal_send("MESSAGE=%s", message.c_str(), "PRIORITY=%i", priority, "%s",
                            mid.c_str(), "SYSLOG_IDENTIFIER=tresimd", nullptr);
        } else if (fields.tpm_rc) {
            sd_journal_send("MESSAGE=%s", message.c_str(), "PRIORITY=%i", priority, "%s", rc,
                            "SYSLOG_IDENTIFIER=tresimd", nullptr);
        } else {
            sd_journal_send("MESSAGE=%s", message.c_str(), "PRIORITY=%i", priority,
                            "SYSLOG_IDENTIFIER=tresimd", nullptr);
        }
        return;
    }
    std::string extra;
    if (fields.mid) {
        extra += " [MID=" + std::to_string(*fields.mid) + "]";
    }
    if (fields.tpm_rc) {
        char rc[32] = {};
        std::snprintf(rc, sizeof rc, " [TPM_RC=0x%x]", *fields.tpm_rc);
        extra += rc;
    }
    std::fprintf(stderr, "tresimd: %s: %s%s\n", level_name(priority), message.c_str(),
                 extra.c_str());
}

} // namespace tresim::daemon
