// tresim-ps: the Provisioning Server (docs/ps.md, docs/protocol.md).

#include <csignal>
#include <filesystem>
#include <fstream>
#include <pthread.h>
#include <thread>
#include <unistd.h>

// CLI11's headers trip GCC 12's -Wnull-dereference (as in tresimd and tresim-auc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include "config.hpp"
#include "ek_trust.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "service.hpp"
#include "sqlite_store.hpp"
#include "usim/secret.hpp"
#include "vault.hpp"

using namespace tresim;
using namespace tresim::ps;

int main(int argc, char** argv) {
    CLI::App app{"tresim-ps: the tresim Provisioning Server"};
    std::string config_path;
    std::string port_file;
    app.add_option("-c,--config", config_path, "configuration file (JSON, see docs/ps.md)")
        ->required();
    app.add_option("--port-file", port_file,
                   "write the port it listens on to this file once it accepts connections");
    app.set_version_flag("--version", std::string("tresim-ps ") + TRESIM_VERSION);
    CLI11_PARSE(app, argc, argv);

    secure_heap_init();
    // SIGINT/SIGTERM are taken by one thread (sigwait); every other thread blocks them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    try {
        const Config config = load_config(config_path);
        std::filesystem::create_directories(config.state_dir);
        auto store = std::make_unique<SqliteStore>(config.state_dir + "/ps.db");
        auto trust = std::make_unique<EkTrust>(config.ca_dir);
        if (trust->size() == 0) {
            log(Level::Warning, "the CA folder " + config.ca_dir +
                                    " holds no certificate: every EK will be refused");
        }
        Service service(config, std::move(store), Vault::load(config.at_rest_key), std::move(trust),
                        tpm::PolicyAuthority::load(config.signing_key),
                        tpm::PolicyAuthority::load(config.policy_authority_key));
        HttpServer server(service, config);
        const int port = server.bind();
        log(Level::Info, "listening on https://" + config.listen_address + ":" +
                             std::to_string(port) + " (TLS 1.3)");
        if (!port_file.empty()) {
            const std::string tmp = port_file + ".tmp";
            std::ofstream(tmp) << port << "\n";
            std::filesystem::rename(tmp, port_file);
        }
        std::thread waiter([&server, signals] {
            int sig = 0;
            sigwait(&signals, &sig);
            server.stop();
        });
        const bool ok = server.serve();
        kill(getpid(), SIGTERM); // wakes the waiter when serve() ended by itself
        waiter.join();
        log(Level::Info, "stopped");
        return ok ? 0 : 1;
    } catch (const std::exception& e) {
        log(Level::Error, e.what());
        return 1;
    }
}
