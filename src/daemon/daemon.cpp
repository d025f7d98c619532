#include "daemon.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

// GCC 12 reports a false -Wnull-dereference inside CLI11's inlined string code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <systemd/sd-daemon.h>

#include "config.hpp"
#include "log.hpp"
#include "service.hpp"
#include "te/errors.hpp"
#include "tpm/error.hpp"
#include "tpm/keys.hpp"
#include "tpm/stale.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::daemon {
namespace {

constexpr const char* kDefaultConfig = "/etc/tresim/tresimd.conf";

struct Options {
    std::string tcti;
    std::string state_dir;
    std::string config = kDefaultConfig;
    bool config_given = false;
    bool session = false;
    bool verbose = false;
};

// The TE identity (SHA-256 of the EK's SubjectPublicKeyInfo), taken before the
// TE opens the TPM (a swtpm serves one connection at a time); empty when no EK
// can be made (the caller warns once the TE is open, so that a missing TPM
// gives one line).
std::string te_identity_of(const std::string& tcti) {
    for (const auto type : {tpm::EkType::Rsa2048, tpm::EkType::EccP256}) {
        try {
            tpm::Context ctx(tcti);
            const tpm::Ek ek = tpm::create_ek(ctx, type);
            return tpm::te_identity(ek.pub.publicArea);
        } catch (const std::exception& e) {
            log(LOG_DEBUG, std::string("cannot create the EK: ") + e.what());
        }
    }
    return {};
}

te::TeConfig te_config(const Config& c) {
    te::TeConfig t;
    t.state_dir = c.state_dir;
    t.tcti = c.tcti;
    t.slots = c.slots;
    if (c.computation_mode != "auto") {
        t.force_mode = te::parse_computation_mode(c.computation_mode);
    }
    t.pcrs = c.pcrs;
    t.sqn_interval = c.sqn_interval;
    t.pin_retries = c.pin_retries;
    t.puk_retries = c.puk_retries;
    return t;
}

std::uint64_t now_usec() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

// Serves until SIGTERM or SIGINT arrives on `signal_fd`.
void serve(sdbus::IConnection& connection, Service& service, int signal_fd) {
    std::uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) <= 0) {
        watchdog_usec = 0;
    }
    const std::uint64_t ping_every = watchdog_usec / 2;
    std::uint64_t next_ping = now_usec() + ping_every;
    for (;;) {
        while (connection.processPendingRequest()) {
            service.reap();
        }
        service.reap();
        service.tick();
        const auto poll_data = connection.getEventLoopPollData();
        int timeout = poll_data.getPollTimeout();
        if (const int timers = service.timeout_ms(); timers >= 0) {
            timeout = timeout < 0 ? timers : std::min(timeout, timers);
        }
        if (ping_every != 0) {
            const std::uint64_t now = now_usec();
            const int until_ping =
                next_ping > now ? static_cast<int>((next_ping - now + 999) / 1000) : 0;
            timeout = timeout < 0 ? until_ping : std::min(timeout, until_ping);
        }
        pollfd fds[3] = {{poll_data.fd, poll_data.events, 0},
                         {signal_fd, POLLIN, 0},
                         {service.wakeup_fd(), POLLIN, 0}};
        if (poll(fds, 3, timeout) < 0 && errno != EINTR) {
            throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
        }
        if ((fds[1].revents & POLLIN) != 0) {
            signalfd_siginfo info{};
            if (read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
                log(LOG_INFO,
                    std::string("stopping on ") + strsignal(static_cast<int>(info.ssi_signo)));
                return;
            }
        }
        if ((fds[2].revents & POLLIN) != 0) {
            // A provisioning session posted progress or its end.
            service.dispatch();
        }
        if (ping_every != 0 && now_usec() >= next_ping) {
            sd_notify(0, "WATCHDOG=1");
            next_ping = now_usec() + ping_every;
        }
    }
}

} // namespace

int run(int argc, char** argv) {
    Options o;
    CLI::App app("tresimd: the tresim Trusted Environment on D-Bus", "tresimd");
    app.add_option("--tcti", o.tcti, "the TPM, as a tpm2-tools TCTI string");
    app.add_option("--state-dir", o.state_dir, "the state folder");
    app.add_option("--config", o.config, "the configuration file")->capture_default_str();
    auto* session = app.add_flag("--session", o.session, "serve the session bus (for tests)");
    bool system = false;
    app.add_flag("--system", system, "serve the system bus (the default)")->excludes(session);
    app.add_flag("-v,--verbose", o.verbose, "log debug messages");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help is 0; a wrong command line is a wrong configuration (78).
        return app.exit(e) == 0 ? 0 : kExitConfig;
    }
    o.config_given = app.count("--config") > 0;
    log_init(o.verbose);
    // Every SecretBytes (PINs, unsealed K in sealed mode, parsed profiles) comes
    // from OpenSSL's secure heap: locked, out of core dumps, wiped on free. Without
    // this call CRYPTO_secure_malloc falls back to the ordinary heap.
    if (!secure_heap_init(256 * 1024)) {
        log(LOG_WARNING, "the secure heap could not be locked into memory (RLIMIT_MEMLOCK?): "
                         "secrets stay wiped on release but may be swapped out");
    }

    // Start-up: any failure here is one line and EX_CONFIG.
    Config config;
    std::unique_ptr<te::TrustedEnvironment> te;
    std::string identity;
    TePolicy policy;
    try {
        config = load_config(o.config, !o.config_given);
        if (!o.tcti.empty()) {
            config.tcti = o.tcti;
        } else if (const char* env = std::getenv("TRESIM_TCTI"); env != nullptr && *env != '\0') {
            config.tcti = env;
        }
        if (!o.state_dir.empty()) {
            config.state_dir = o.state_dir;
        } else if (const char* env = std::getenv("STATE_DIRECTORY");
                   env != nullptr && *env != '\0') {
            // systemd may list several folders separated by ':'; the first is ours.
            config.state_dir = std::string(env).substr(0, std::string(env).find(':'));
        }
        // The TE policy file pins the provisioning servers; the default path
        // may be absent (no remote provisioning).
        if (config.te_policy_set || access(config.te_policy.c_str(), F_OK) == 0) {
            policy = load_te_policy(config.te_policy);
        }
        {
            // A raw TPM (swtpm, /dev/tpm0) keeps what a killed tresimd left
            // loaded, and a full TPM refuses the next start; behind a resource
            // manager this sends nothing (tpm/stale.hpp).
            tpm::Context stale_ctx(config.tcti);
            const tpm::StaleFlush stale = tpm::flush_stale_handles(stale_ctx);
            if (stale.total() > 0) {
                log(LOG_NOTICE, "flushed " + std::to_string(stale.objects) +
                                    " transient objects and " + std::to_string(stale.sessions) +
                                    " sessions an earlier process left in the TPM");
            }
        }
        identity = te_identity_of(config.tcti);
        te::TeConfig tc = te_config(config);
        tc.confirm_within = policy.confirm_within;
        te = std::make_unique<te::TrustedEnvironment>(tc);
    } catch (const ConfigError& e) {
        log(LOG_ERR, std::string("configuration: ") + e.what());
        return kExitConfig;
    } catch (const te::TeError& e) {
        log(LOG_ERR, "cannot open the trusted environment (TPM " + config.tcti + ", state " +
                         config.state_dir + "): " + te::nick(e.code()) + ": " + e.what());
        return kExitConfig;
    } catch (const tpm::TpmError& e) {
        log(LOG_ERR, std::string("cannot open the TPM at ") + config.tcti + ": " + e.what(),
            {std::nullopt, e.rc()});
        return kExitConfig;
    } catch (const std::exception& e) {
        log(LOG_ERR, std::string("cannot start: ") + e.what());
        return kExitConfig;
    }
    {
        const te::TeInfo info = te->info();
        log(LOG_INFO, "TPM: " + info.caps.summary());
        if (identity.empty()) {
            log(LOG_WARNING, "the TE identity is unknown: no EK could be created");
        }
        if (info.recovered_crash) {
            log(LOG_NOTICE, "recovered from an interrupted change at the last stop");
        }
    }

    // SIGTERM/SIGINT arrive on a signalfd, read by the event loop.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    const int signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (signal_fd < 0) {
        log(LOG_ERR, std::string("signalfd: ") + std::strerror(errno));
        return EXIT_FAILURE;
    }

    try {
        auto connection =
            o.session ? sdbus::createSessionBusConnection() : sdbus::createSystemBusConnection();
        {
            // Every object exists before the name is requested.
            Service service(*connection, *te, config, identity, std::move(policy));
            connection->requestName(kBusName);
            log(LOG_INFO, std::string("serving ") + kBusName + " on the " +
                              (o.session ? "session" : "system") + " bus");
            sd_notify(0, "READY=1\nSTATUS=serving");
            serve(*connection, service, signal_fd);
            sd_notify(0, "STOPPING=1");
            connection->releaseName(kBusName);
        }
    } catch (const sdbus::Error& e) {
        log(LOG_ERR, "D-Bus: " + e.getName() + ": " + e.getMessage());
        close(signal_fd);
        return EXIT_FAILURE;
    } catch (const std::exception& e) {
        log(LOG_ERR, std::string("stopped on an error: ") + e.what());
        close(signal_fd);
        return EXIT_FAILURE;
    }
    close(signal_fd);
    return EXIT_SUCCESS;
}

} // namespace tresim::daemon
