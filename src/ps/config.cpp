#include "config.hpp"

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "usim/bytes.hpp"

namespace tresim::ps {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& path, const std::string& why) {
    throw InvalidArgument("config", path + ": " + why);
}

std::string text(const json& doc, const char* name, const std::string& file, bool required) {
    const auto it = doc.find(name);
    if (it == doc.end()) {
        if (required) {
            bad(file, std::string("\"") + name + "\" is missing");
        }
        return {};
    }
    if (!it->is_string() || it->get<std::string>().empty()) {
        bad(file, std::string("\"") + name + "\" must be a non-empty string");
    }
    return it->get<std::string>();
}

unsigned number(const json& doc, const char* name, unsigned fallback, unsigned min, unsigned max,
                const std::string& file) {
    const auto it = doc.find(name);
    if (it == doc.end()) {
        return fallback;
    }
    if (!it->is_number_unsigned() || it->get<std::uint64_t>() < min ||
        it->get<std::uint64_t>() > max) {
        bad(file, std::string("\"") + name + "\" must be a number from " + std::to_string(min) +
                      " to " + std::to_string(max));
    }
    return it->get<unsigned>();
}

} // namespace

Config load_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw InvalidArgument("config", "cannot read " + path);
    }
    json doc;
    try {
        doc = json::parse(in);
    } catch (const json::exception& e) {
        bad(path, std::string("not JSON (") + e.what() + ")");
    }
    if (!doc.is_object()) {
        bad(path, "not a JSON object");
    }
    static const std::set<std::string> known = {"listen_address",   "port",
                                                "tls_certificate",  "tls_key",
                                                "state_dir",        "ca_dir",
                                                "signing_key",      "policy_authority_key",
                                                "at_rest_key",      "operator_tokens_sha256",
                                                "session_lifetime", "instruction_lifetime",
                                                "threads"};
    for (const auto& [key, value] : doc.items()) {
        if (!known.contains(key)) {
            bad(path, "unknown field \"" + key + "\"");
        }
    }
    const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
    const auto file = [&](const char* name, bool required) {
        const std::string v = text(doc, name, path, required);
        return v.empty() ? v : (base / v).lexically_normal().string();
    };
    Config c;
    if (doc.contains("listen_address")) {
        c.listen_address = text(doc, "listen_address", path, true);
    }
    c.port = number(doc, "port", 8443, 0, 65535, path);
    c.tls_certificate = file("tls_certificate", true);
    c.tls_key = file("tls_key", true);
    c.state_dir = file("state_dir", true);
    c.ca_dir = file("ca_dir", true);
    c.signing_key = file("signing_key", true);
    c.policy_authority_key = file("policy_authority_key", false);
    if (c.policy_authority_key.empty()) {
        c.policy_authority_key = c.signing_key;
    }
    c.at_rest_key = file("at_rest_key", true);
    const auto tokens = doc.find("operator_tokens_sha256");
    if (tokens == doc.end() || !tokens->is_array()) {
        bad(path, "\"operator_tokens_sha256\" must be an array of hex SHA-256 hashes");
    }
    for (const json& t : *tokens) {
        if (!t.is_string()) {
            bad(path, "\"operator_tokens_sha256\" must hold strings");
        }
        try {
            c.operator_token_hashes.push_back(
                hex_encode(hex_decode(t.get<std::string>(), "operator_tokens_sha256", 32)));
        } catch (const InvalidArgument&) {
            bad(path, "\"operator_tokens_sha256\" entries must be 64 hex digits");
        }
    }
    c.session_lifetime = number(doc, "session_lifetime", 120, 1, 86400, path);
    c.instruction_lifetime = number(doc, "instruction_lifetime", 3600, 1, 30 * 86400, path);
    c.threads = number(doc, "threads", 8, 1, 256, path);
    return c;
}

} // namespace tresim::ps
