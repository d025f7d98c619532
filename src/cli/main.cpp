// tresimctl: the command-line client of tresimd (docs/dbus-api.md), like mmcli.
// Exit status: 0 on success, 1 when a call fails, 2 for a bad command line.

#include <iostream>

#include "cli.hpp"

int main(int argc, char** argv) {
    using namespace tresim::cli;
    CLI::App app("tresimctl: control tresimd, the TPM-backed SIM, over D-Bus", "tresimctl");
    app.require_subcommand(1);
    Context ctx;
    auto* system =
        app.add_flag("--system", ctx.system, "talk to tresimd on the system bus (default)");
    app.add_flag("--session", ctx.session, "talk to tresimd on the session bus")->excludes(system);
    app.add_flag("--json", ctx.json, "print one JSON document instead of text");

    Commands commands;
    for (auto* add : {add_status, add_list, add_show, add_import, add_activate, add_deactivate,
                      add_delete, add_pin, add_authenticate, add_gsm_authenticate, add_suci,
                      add_audit, add_approve, add_pcrs, add_provision}) {
        for (auto& c : add(app)) {
            commands.push_back(std::move(c));
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;
    }
    ctx.system = !ctx.session;
    try {
        for (const auto& c : commands) {
            if (c.app->parsed() && c.run) {
                c.run(ctx);
                return 0;
            }
        }
        std::cerr << "tresimctl: a subcommand is required\n";
        return 2;
    } catch (const UsageError& e) {
        std::cerr << "tresimctl: " << e.what() << '\n';
        return 2;
    } catch (const Failure& e) {
        std::cerr << "tresimctl: ";
        if (!e.name().empty()) {
            std::cerr << e.name() << ": ";
        }
        std::cerr << e.what() << '\n';
        return 1;
    } catch (const sdbus::Error& e) {
        std::cerr << "tresimctl: " << e.getName() << ": " << e.getMessage() << '\n';
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "tresimctl: " << e.what() << '\n';
        return 1;
    }
}
