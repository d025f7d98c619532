// tresim-auc: offline AuC/USIM calculator. Wires the subcommands to CLI11.

#include <cctype>
#include <iostream>
#include <map>

// GCC 12 reports a false "potential null pointer dereference" inside CLI11's
// inlined std::vector<std::string> code (CLI::detail::split); not ours to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include "commands.hpp"
#include "usim/secret.hpp"

#ifndef TRESIM_VERSION
#define TRESIM_VERSION "unknown"
#endif

namespace {

using namespace tresim;
using namespace tresim::auc;

// One subcommand registered with CLI11, with where its option values land.
struct Registered {
    explicit Registered(Command c) : command(std::move(c)) {}
    Command command;
    CLI::App* app = nullptr;
    std::map<std::string, std::string> values;
    std::map<std::string, CLI::Option*> options;
    bool json = false;
    bool batch = false;
};

void add(CLI::App& app, Registered& reg) {
    reg.app = app.add_subcommand(reg.command.name, reg.command.description);
    // Unknown arguments are reported by us, without echoing them (one could be a key).
    reg.app->allow_extras();
    for (const OptionSpec& spec : reg.command.options) {
        reg.options[spec.name] =
            reg.app->add_option("--" + spec.name, reg.values[spec.name], spec.help)
                ->type_name(spec.value);
    }
    reg.app->add_flag("--json", reg.json, "print the result as one JSON object");
    if (reg.command.batch) {
        reg.app->add_flag("--batch", reg.batch,
                          "read one JSON request a line from standard input, write one JSON "
                          "result a line");
    }
}

// An argument that looks like an option name ("--foo", "--foo=...", "-x"), as
// opposed to a value.
bool option_like(const std::string& arg) {
    const std::size_t start = arg.rfind("--", 0) == 0 ? 2 : (arg.rfind('-', 0) == 0 ? 1 : 0);
    return start != 0 && arg.size() > start && std::isalpha(static_cast<unsigned char>(arg[start]));
}

// Names unexpected arguments without their values: "--k=..." gives "--k"; values
// are only counted.
std::string describe_extras(const std::vector<std::string>& extras) {
    std::string named;
    std::size_t values = 0;
    for (const std::string& e : extras) {
        if (option_like(e)) {
            named += (named.empty() ? "" : ", ") + e.substr(0, e.find('='));
        } else {
            ++values;
        }
    }
    std::string text = "unexpected argument" + std::string(extras.size() > 1 ? "s" : "");
    if (!named.empty()) {
        text += ": " + named;
    }
    if (values != 0) {
        text += (named.empty() ? " (" : " and ") + std::to_string(values) +
                (values > 1 ? " values" : " value") + (named.empty() ? ")" : "");
    }
    return text;
}

} // namespace

int main(int argc, char** argv) {
    tresim::secure_heap_init();

    CLI::App app{"tresim-auc: offline AuC/USIM calculator for Milenage, TUAK and SUCI",
                 "tresim-auc"};
    app.set_version_flag("--version", std::string("tresim-auc ") + TRESIM_VERSION);
    app.require_subcommand(1);
    app.allow_extras();

    // CLI11 keeps pointers into these: they must not move once added.
    Registered commands[] = {Registered(gen_command()), Registered(check_command()),
                             Registered(resync_command()), Registered(suci_command())};
    for (Registered& reg : commands) {
        add(app, reg);
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "tresim-auc: " << e.what() << '\n';
        return kExitBadInput;
    }

    for (Registered& reg : commands) {
        if (!reg.app->parsed()) {
            continue;
        }
        std::vector<std::string> extras = app.remaining();
        const std::vector<std::string> own = reg.app->remaining();
        extras.insert(extras.end(), own.begin(), own.end());
        if (!extras.empty()) {
            std::cerr << "tresim-auc: " << reg.command.name << ": " << describe_extras(extras)
                      << '\n';
            return kExitBadInput;
        }
        Args args;
        for (auto& [name, option] : reg.options) {
            if (option->count() > 0) {
                args.set(name, reg.values[name]);
            }
            wipe(reg.values[name].data(), reg.values[name].size());
        }
        if (reg.batch) {
            return run_batch(reg.command, args, std::cin, std::cout, std::cerr);
        }
        return run_once(reg.command, args, reg.json, std::cout, std::cerr);
    }
    return kExitBadInput; // not reached: a subcommand is required
}
