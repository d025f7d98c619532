#include "util.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "protocol/base64url.hpp"

namespace tresim::ps {

using nlohmann::json;

json parse_body(std::string_view body) {
    json doc;
    try {
        doc = json::parse(body);
    } catch (const json::exception&) {
        invalid("body", "is not JSON");
    }
    if (!doc.is_object()) {
        invalid("body", "is not a JSON object");
    }
    return doc;
}

const json& member(const json& doc, const std::string& name, json::value_t type, const char* what) {
    const auto it = doc.find(name);
    if (it == doc.end()) {
        invalid(name, "is missing");
    }
    if (it->type() != type && !(type == json::value_t::number_unsigned && it->is_number_integer() &&
                                it->get<std::int64_t>() >= 0)) {
        invalid(name, std::string("must be ") + what);
    }
    return *it;
}

std::string string_member(const json& doc, const std::string& name) {
    return member(doc, name, json::value_t::string, "a string").get<std::string>();
}

std::optional<std::string> optional_string(const json& doc, const std::string& name) {
    const auto it = doc.find(name);
    if (it == doc.end() || it->is_null()) {
        return std::nullopt;
    }
    if (!it->is_string()) {
        invalid(name, "must be a string");
    }
    return it->get<std::string>();
}

Bytes b64_member(const json& doc, const std::string& name) {
    const std::string text = string_member(doc, name);
    try {
        return protocol::b64url_decode(text, name);
    } catch (const InvalidArgument& e) {
        invalid(name, "is not base64url without padding");
    }
}

Bytes random_bytes(std::size_t n) {
    Bytes b(n);
    if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    return b;
}

std::string random_id() {
    return protocol::b64url_encode(random_bytes(16));
}

Bytes sha256(ByteView data) {
    Bytes out(32);
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(SHA-256) failed");
    }
    return out;
}

std::string sha256_hex(std::string_view text) {
    return hex_encode(sha256(text_view(text)));
}

tpm::PcrValues pcrs_from_json(const json& j, const std::string& field) {
    if (!j.is_object()) {
        invalid(field, "must be an object {\"bank\", \"values\"}");
    }
    const auto bank = j.find("bank");
    const auto values = j.find("values");
    if (bank == j.end() || !bank->is_string() || values == j.end() || !values->is_object() ||
        values->empty()) {
        invalid(field, "must be {\"bank\": \"sha256\", \"values\": {\"0\": hex, ...}}");
    }
    tpm::PcrValues out;
    try {
        out.bank = tpm::parse_pcr_selection(bank->get<std::string>() + ":0").bank;
    } catch (const InvalidArgument&) {
        invalid(field + ".bank", "is not a PCR bank");
    }
    const std::size_t size = static_cast<std::size_t>(EVP_MD_get_size(tpm::evp_md(out.bank)));
    for (const auto& [key, value] : values->items()) {
        unsigned index = 24;
        if (!key.empty() && key.size() <= 2 &&
            key.find_first_not_of("0123456789") == std::string::npos) {
            index = static_cast<unsigned>(std::stoul(key));
        }
        if (index > 23) {
            invalid(field + ".values", "keys must be PCR indexes 0..23");
        }
        if (!value.is_string()) {
            invalid(field + ".values." + key, "must be hex");
        }
        try {
            out.values[index] = hex_decode(value.get<std::string>(), "pcr", size);
        } catch (const InvalidArgument&) {
            invalid(field + ".values." + key, "must be " + std::to_string(size) + " bytes of hex");
        }
    }
    return out;
}

json pcrs_to_json(const tpm::PcrValues& v) {
    json values = json::object();
    for (const auto& [index, value] : v.values) {
        values[std::to_string(index)] = hex_encode(value);
    }
    const std::string sel = tpm::format_pcr_selection(tpm::selection_of(v));
    return {{"bank", sel.substr(0, sel.find(':'))}, {"values", values}};
}

} // namespace tresim::ps
