#include "config.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <grp.h>
#include <map>
#include <pwd.h>
#include <set>
#include <sstream>

#include "te/mid_crypto.hpp"
#include "tpm/policy.hpp"

namespace tresim::daemon {
namespace {

std::string_view trim(std::string_view s) {
    const auto first = s.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = s.find_last_not_of(" \t\r");
    return s.substr(first, last - first + 1);
}

std::optional<unsigned> parse_unsigned(std::string_view s) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
        return std::nullopt;
    }
    return value;
}

std::optional<unsigned> lookup_user(const std::string& name) {
    const passwd* pw = getpwnam(name.c_str()); // NOLINT(concurrency-mt-unsafe): read at start
    if (pw == nullptr) {
        return std::nullopt;
    }
    return pw->pw_uid;
}

std::optional<unsigned> lookup_group(const std::string& name) {
    const group* gr = getgrnam(name.c_str()); // NOLINT(concurrency-mt-unsafe): read at start
    if (gr == nullptr) {
        return std::nullopt;
    }
    return gr->gr_gid;
}

} // namespace

std::vector<Principal> parse_principals(std::string_view value, const std::string& where) {
    std::vector<Principal> out;
    std::istringstream in{std::string(value)};
    std::string word;
    while (in >> word) {
        const auto colon = word.find(':');
        if (colon == std::string::npos) {
            throw ConfigError(where + ": \"" + word +
                              "\" is not user:NAME, uid:N, group:NAME or gid:N");
        }
        const std::string kind = word.substr(0, colon);
        const std::string name = word.substr(colon + 1);
        Principal p;
        std::optional<unsigned> id;
        if (kind == "uid" || kind == "gid") {
            id = parse_unsigned(name);
            p.kind = kind == "uid" ? Principal::Kind::Uid : Principal::Kind::Gid;
        } else if (kind == "user") {
            id = lookup_user(name);
            p.kind = Principal::Kind::Uid;
        } else if (kind == "group") {
            id = lookup_group(name);
            p.kind = Principal::Kind::Gid;
        } else {
            throw ConfigError(where + ": \"" + word +
                              "\" is not user:NAME, uid:N, group:NAME or gid:N");
        }
        if (!id) {
            throw ConfigError(where + ": unknown " + kind + " \"" + name + "\"");
        }
        p.id = *id;
        out.push_back(p);
    }
    return out;
}

Config default_config() {
    Config c;
    // The documented default "group:tresim": only when that group exists.
    if (const auto gid = lookup_group("tresim")) {
        c.authenticate.push_back({Principal::Kind::Gid, *gid});
    }
    return c;
}

Config parse_config(std::string_view text, const std::string& file) {
    Config c = default_config();
    static const std::map<std::string, std::set<std::string>> known = {
        {"tpm", {"tcti", "computation_mode"}},
        {"state", {"state_dir", "sqn_interval"}},
        {"mids", {"slots", "pcrs", "pin_retries", "puk_retries"}},
        {"authorization", {"polkit", "authenticate", "manage", "provision"}},
        {"provisioning",
         {"te_policy", "event_log", "platform_class", "timeout", "retry_min", "retry_max"}},
    };
    std::string section;
    std::set<std::string> seen;
    unsigned line_no = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const auto nl = text.find('\n', pos);
        const std::string_view raw =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
        ++line_no;
        const std::string_view line = trim(raw);
        const std::string at = file + ":" + std::to_string(line_no);
        if (line.empty() || line.front() == '#' || line.front() == ';') {
            continue;
        }
        if (line.front() == '[') {
            if (line.back() != ']') {
                throw ConfigError(at + ": a section header must end with \"]\"");
            }
            section = std::string(trim(line.substr(1, line.size() - 2)));
            if (!known.contains(section)) {
                throw ConfigError(at + ": unknown section [" + section + "]");
            }
            continue;
        }
        const auto eq = line.find('=');
        if (eq == std::string_view::npos) {
            throw ConfigError(at + ": expected \"key = value\"");
        }
        const std::string key(trim(line.substr(0, eq)));
        const std::string value(trim(line.substr(eq + 1)));
        if (section.empty()) {
            throw ConfigError(at + ": key " + key + " outside a section");
        }
        if (!known.at(section).contains(key)) {
            throw ConfigError(at + ": unknown key " + key + " in [" + section + "]");
        }
        const std::string where = at + ": " + key;
        if (!seen.insert(section + "." + key).second) {
            throw ConfigError(where + " is set twice");
        }
        auto number = [&](unsigned lo, unsigned hi) {
            const auto n = parse_unsigned(value);
            if (!n || *n < lo || *n > hi) {
                throw ConfigError(where + " must be a number from " + std::to_string(lo) + " to " +
                                  std::to_string(hi));
            }
            return *n;
        };
        if (key == "tcti") {
            if (value.empty()) {
                throw ConfigError(where + " must not be empty");
            }
            c.tcti = value;
        } else if (key == "computation_mode") {
            if (value != "auto" && !te::parse_computation_mode(value)) {
                throw ConfigError(where + " must be auto, tpm-ecb, tpm-cfb or sealed");
            }
            c.computation_mode = value;
        } else if (key == "state_dir") {
            if (value.empty() || value.front() != '/') {
                throw ConfigError(where + " must be an absolute path");
            }
            c.state_dir = value;
        } else if (key == "sqn_interval") {
            c.sqn_interval = number(1, 1024);
        } else if (key == "slots") {
            c.slots = number(1, 64);
        } else if (key == "pcrs") {
            try {
                (void)tpm::parse_pcr_selection(value);
            } catch (const std::exception&) {
                throw ConfigError(where + " must be \"bank:list\", e.g. sha256:0,2,4,7");
            }
            c.pcrs = value;
        } else if (key == "pin_retries") {
            c.pin_retries = number(1, 255);
        } else if (key == "puk_retries") {
            c.puk_retries = number(1, 255);
        } else if (key == "polkit") {
            if (value == "auto") {
                c.polkit = PolkitMode::Auto;
            } else if (value == "yes") {
                c.polkit = PolkitMode::Yes;
            } else if (value == "no") {
                c.polkit = PolkitMode::No;
            } else {
                throw ConfigError(where + " must be auto, yes or no");
            }
        } else if (key == "authenticate") {
            c.authenticate = parse_principals(value, where);
        } else if (key == "manage") {
            c.manage = parse_principals(value, where);
        } else if (key == "provision") {
            c.provision = parse_principals(value, where);
        } else if (key == "te_policy" || key == "event_log") {
            if (value.empty() || value.front() != '/') {
                throw ConfigError(where + " must be an absolute path");
            }
            if (key == "te_policy") {
                c.te_policy = value;
                c.te_policy_set = true;
            } else {
                c.event_log = value;
            }
        } else if (key == "platform_class") {
            if (value.empty() || value.size() > 64) {
                throw ConfigError(where + " must be 1 to 64 characters");
            }
            c.platform_class = value;
        } else if (key == "timeout") {
            c.provision_timeout = number(1, 600);
        } else if (key == "retry_min") {
            c.retry_min = number(1, 86400);
        } else if (key == "retry_max") {
            c.retry_max = number(1, 604800);
        }
    }
    if (c.retry_max < c.retry_min) {
        throw ConfigError(file + ": [provisioning] retry_max must not be below retry_min");
    }
    return c;
}

Config load_config(const std::string& path, bool missing_ok) {
    std::ifstream in(path);
    if (!in) {
        if (missing_ok && errno == ENOENT) {
            return default_config();
        }
        throw ConfigError(path + ": cannot be read (" + std::strerror(errno) + ")");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_config(text.str(), path);
}

} // namespace tresim::daemon
