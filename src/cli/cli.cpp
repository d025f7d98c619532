#include "cli.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "usim/bytes.hpp"

namespace tresim::cli {

sdbus::IConnection& Context::bus() {
    if (!connection_) {
        connection_ =
            system ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection();
    }
    return *connection_;
}

std::map<sdbus::ObjectPath, Interfaces> Context::mids() {
    auto proxy = sdbus::createProxy(bus(), kService, kManagerPath);
    std::map<sdbus::ObjectPath, Interfaces> all;
    proxy->callMethod("GetManagedObjects")
        .onInterface("org.freedesktop.DBus.ObjectManager")
        .storeResultsTo(all);
    std::erase_if(all, [](const auto& entry) {
        return !entry.second.contains(org::tresim1::Mid_proxy::INTERFACE_NAME);
    });
    return all;
}

namespace {

bool all_digits(const std::string& s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

} // namespace

std::string Context::resolve(const std::string& mid) {
    enum class Kind { Index, Path, Iccid };
    const Kind kind = mid.starts_with("/")                   ? Kind::Path
                      : (all_digits(mid) && mid.size() < 18) ? Kind::Index
                                                             : Kind::Iccid;
    for (const auto& [path, interfaces] : mids()) {
        const Properties& p = interfaces.at(org::tresim1::Mid_proxy::INTERFACE_NAME);
        const bool match =
            kind == Kind::Path ? path == mid
            : kind == Kind::Index
                ? p.contains("Index") && std::to_string(p.at("Index").get<std::int64_t>()) == mid
                : p.contains("Iccid") && p.at("Iccid").get<std::string>() == mid;
        if (match) {
            return path;
        }
    }
    const char* name = kind == Kind::Path ? "path" : kind == Kind::Index ? "index" : "ICCID";
    throw Failure("org.tresim1.Error.UnknownMid", std::string("no MID with ") + name + " " + mid);
}

void print_fields(const Fields& fields, const std::string& indent) {
    std::size_t width = 0;
    for (const auto& [name, value] : fields) {
        width = std::max(width, name.size());
    }
    for (const auto& [name, value] : fields) {
        std::cout << indent << name << ':' << std::string(width - name.size() + 1, ' ') << value
                  << '\n';
    }
}

void print_json(const nlohmann::json& j) {
    std::cout << j.dump() << '\n';
}

nlohmann::json to_json(const sdbus::Variant& v) {
    const std::string type = v.peekValueType();
    if (type == "s" || type == "o") {
        return v.get<std::string>();
    }
    if (type == "b") {
        return v.get<bool>();
    }
    if (type == "x") {
        return v.get<std::int64_t>();
    }
    if (type == "t") {
        return v.get<std::uint64_t>();
    }
    if (type == "i") {
        return v.get<std::int32_t>();
    }
    if (type == "u") {
        return v.get<std::uint32_t>();
    }
    if (type == "as") {
        return v.get<std::vector<std::string>>();
    }
    if (type == "ay") {
        return hex(v.get<std::vector<std::uint8_t>>());
    }
    return "(" + type + ")";
}

std::string to_text(const sdbus::Variant& v) {
    const nlohmann::json j = to_json(v);
    if (j.is_string()) {
        return j.get<std::string>();
    }
    if (j.is_array()) {
        std::string out;
        for (const auto& e : j) {
            out += (out.empty() ? "" : ", ") + e.get<std::string>();
        }
        return out.empty() ? "none" : out;
    }
    if (j.is_boolean()) {
        return j.get<bool>() ? "yes" : "no";
    }
    return j.dump();
}

std::string snake(const std::string& name) {
    std::string out;
    for (const char c : name) {
        if (std::isupper(static_cast<unsigned char>(c)) != 0) {
            if (!out.empty()) {
                out += '_';
            }
            out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        } else {
            out += c;
        }
    }
    return out;
}

std::vector<std::uint8_t> parse_hex(const std::string& text, const std::string& option) {
    try {
        return hex_decode(text, option);
    } catch (const InvalidArgument& e) {
        throw UsageError("--" + std::string(e.what()));
    }
}

std::string hex(const std::vector<std::uint8_t>& bytes) {
    return hex_encode(bytes);
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Failure("", path + ": " + std::strerror(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        throw Failure("", path + ": cannot be read");
    }
    return text.str();
}

void print_done(const Context& ctx, const std::string& mid, const std::string& what) {
    if (ctx.json) {
        print_json({{"mid", mid}, {"result", what}});
    } else {
        std::cout << mid << ": " << what << '\n';
    }
}

} // namespace tresim::cli
