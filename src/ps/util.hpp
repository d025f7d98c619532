#pragma once
// Small helpers shared by the PS's API files: request field access that
// refuses with invalid-argument naming the field, randomness, hashes.

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "service.hpp"
#include "usim/bytes.hpp"

namespace tresim::ps {

[[noreturn]] inline void invalid(const std::string& field, const std::string& why,
                                 int status = 400) {
    throw ApiError(status, "invalid-argument", field + ": " + why, {{"field", field}});
}

nlohmann::json parse_body(std::string_view body);
const nlohmann::json& member(const nlohmann::json& doc, const std::string& name,
                             nlohmann::json::value_t type, const char* what);
std::string string_member(const nlohmann::json& doc, const std::string& name);
std::optional<std::string> optional_string(const nlohmann::json& doc, const std::string& name);
Bytes b64_member(const nlohmann::json& doc, const std::string& name);

Bytes random_bytes(std::size_t n);
std::string random_id(); // 16 random bytes, base64url
Bytes sha256(ByteView data);
inline ByteView text_view(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
std::string sha256_hex(std::string_view text);

// Hashes kept instead of activation and confirmation codes (device_api.cpp).
std::string activation_code_hash(const std::string& code);
std::string confirmation_code_hash(const std::string& code_hash, const std::string& confirmation);

// {"bank": "sha256", "values": {"0": hex, ...}} <-> PcrValues.
tpm::PcrValues pcrs_from_json(const nlohmann::json& j, const std::string& field);
nlohmann::json pcrs_to_json(const tpm::PcrValues& v);

} // namespace tresim::ps
