#pragma once
// Shared pieces of tresimctl (docs/dbus-api.md): the bus connection, the
// generated proxies, MID resolution, output and the errors that set the exit
// status. One file per subcommand registers itself with an add_*() function.

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// GCC 12 reports a false -Wnull-dereference inside CLI11's inlined string code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <nlohmann/json.hpp>
#include <sdbus-c++/sdbus-c++.h>

#include "manager_proxy.h"
#include "mid_proxy.h"
#include "usim_proxy.h"

namespace tresim::cli {

inline constexpr const char* kService = "org.tresim1";
inline constexpr const char* kManagerPath = "/org/tresim1";

// A failure reported as "tresimctl: NAME: MESSAGE", exit status 1. NAME is a
// D-Bus error name (from the daemon, or org.tresim1.Error.UnknownMid when a
// MID argument matches nothing); an empty NAME leaves it out (a local file
// that cannot be read).
class Failure : public std::runtime_error {
public:
    Failure(std::string name, const std::string& message)
        : std::runtime_error(message), name_(std::move(name)) {}
    const std::string& name() const noexcept { return name_; }

private:
    std::string name_;
};

// A bad command line (exit status 2), e.g. a RAND that is not hex.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class ManagerProxy final : public sdbus::ProxyInterfaces<org::tresim1::Manager_proxy> {
public:
    explicit ManagerProxy(sdbus::IConnection& c) : ProxyInterfaces(c, kService, kManagerPath) {
        registerProxy();
    }
    ~ManagerProxy() { unregisterProxy(); }
};

class MidProxy final
    : public sdbus::ProxyInterfaces<org::tresim1::Mid_proxy, org::tresim1::Usim_proxy> {
public:
    MidProxy(sdbus::IConnection& c, const std::string& path) : ProxyInterfaces(c, kService, path) {
        registerProxy();
    }
    ~MidProxy() { unregisterProxy(); }
};

using Properties = std::map<std::string, sdbus::Variant>;
using Interfaces = std::map<std::string, Properties>;

// What every command gets: the global options and the bus, connected on first
// use (so a bad command line is reported before any bus error).
struct Context {
    bool system = false;
    bool session = false;
    bool json = false;

    sdbus::IConnection& bus();
    // Every MID object with its interfaces and properties (GetManagedObjects).
    std::map<sdbus::ObjectPath, Interfaces> mids();
    // MID given as an index, an object path or an ICCID -> object path.
    std::string resolve(const std::string& mid);

private:
    std::unique_ptr<sdbus::IConnection> connection_;
};

// One (sub)command: its CLI11 node and what it does once parsed.
struct Command {
    CLI::App* app;
    std::function<void(Context&)> run;
};
using Commands = std::vector<Command>;

// Output: aligned "name: value" lines, or one JSON document on one line.
using Fields = std::vector<std::pair<std::string, std::string>>;
void print_fields(const Fields& fields, const std::string& indent = "");
void print_json(const nlohmann::json& j);
nlohmann::json to_json(const sdbus::Variant& v);
std::string to_text(const sdbus::Variant& v);
// "TpmManufacturer" -> "tpm_manufacturer"
std::string snake(const std::string& name);

// Hex option value -> bytes; a UsageError naming the option when not hex.
std::vector<std::uint8_t> parse_hex(const std::string& hex, const std::string& option);
std::string hex(const std::vector<std::uint8_t>& bytes);

// A small text file (an approval JSON); a Failure naming the file when it
// cannot be read. Never used for profiles, which hold keys.
std::string read_text_file(const std::string& path);
// Prints "PATH: done" style acknowledgements, or {"mid": PATH} with --json.
void print_done(const Context& ctx, const std::string& mid, const std::string& what);

// The subcommands, one file each.
Commands add_status(CLI::App& app);
Commands add_list(CLI::App& app);
Commands add_show(CLI::App& app);
Commands add_import(CLI::App& app);
Commands add_activate(CLI::App& app);
Commands add_deactivate(CLI::App& app);
Commands add_delete(CLI::App& app);
Commands add_pin(CLI::App& app);
Commands add_authenticate(CLI::App& app);
Commands add_gsm_authenticate(CLI::App& app);
Commands add_suci(CLI::App& app);
Commands add_audit(CLI::App& app);
Commands add_approve(CLI::App& app);
Commands add_pcrs(CLI::App& app);
Commands add_provision(CLI::App& app); // provision, sync, confirm

} // namespace tresim::cli
