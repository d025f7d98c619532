#pragma once
// tresimd's configuration: the file /etc/tresim/tresimd.conf (policy/tresimd.conf
// documents it), then the environment and the command line on top.

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tresim::daemon {

// A configuration file that cannot be used: the message names the file, the
// line and the key.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class PolkitMode { Auto, Yes, No };

// One entry of an [authorization] rule: "user:NAME", "uid:N", "group:NAME", "gid:N"
// (names resolved when the file is read).
struct Principal {
    enum class Kind { Uid, Gid } kind = Kind::Uid;
    unsigned id = 0;
};

struct Config {
    std::string tcti = "device:/dev/tpmrm0";
    std::string computation_mode = "auto";
    std::string state_dir = "/var/lib/tresim";
    unsigned sqn_interval = 16;
    unsigned slots = 1;
    std::string pcrs = "sha256:0,2,4,7";
    unsigned pin_retries = 3;
    unsigned puk_retries = 10;
    PolkitMode polkit = PolkitMode::Auto;
    std::vector<Principal> authenticate; // default: group:tresim (when it exists)
    std::vector<Principal> manage;
    std::vector<Principal> provision;
    // [provisioning] (docs/operations.md)
    std::string te_policy = "/etc/tresim/te-policy.json";
    bool te_policy_set = false; // named in the file: must exist
    std::string event_log = "/sys/kernel/security/tpm0/binary_bios_measurements";
    std::string platform_class = "generic";
    unsigned provision_timeout = 30; // seconds per HTTP exchange
    unsigned retry_min = 30;         // poll back-off after a failure, seconds
    unsigned retry_max = 3600;
};

// The built-in defaults (an empty file).
Config default_config();

// Parses the text of a configuration file; `file` names it in errors.
Config parse_config(std::string_view text, const std::string& file);

// Reads and parses a file. A missing file gives the defaults only when
// `missing_ok` (the default path); a file named on the command line must exist.
Config load_config(const std::string& path, bool missing_ok);

// Parses one rule value ("group:tresim uid:1000"); `where` prefixes errors.
std::vector<Principal> parse_principals(std::string_view value, const std::string& where);

} // namespace tresim::daemon
