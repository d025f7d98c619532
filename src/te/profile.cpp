#include "profile.hpp"

#include <algorithm>
#include <cctype>
#include <map>

#include <nlohmann/json.hpp>

namespace tresim::te {

namespace {

// A JSON document whose strings, objects and arrays live in the secure heap.
using SecureString = std::basic_string<char, std::char_traits<char>, SecureAllocator<char>>;
using SecureJson = nlohmann::basic_json<std::map, std::vector, SecureString, bool, std::int64_t,
                                        std::uint64_t, double, SecureAllocator>;

[[noreturn]] void bad(const std::string& field, const std::string& reason) {
    throw TeError(ErrorCode::InvalidArgument, "profile: " + field + ": " + reason);
}

const SecureJson* member(const SecureJson& obj, const char* name) {
    const auto it = obj.find(name);
    return it == obj.end() ? nullptr : &*it;
}

std::string text(const SecureJson& obj, const char* name, bool required,
                 std::size_t max_len = 256) {
    const SecureJson* v = member(obj, name);
    if (v == nullptr || v->is_null()) {
        if (required) {
            bad(name, "is missing");
        }
        return {};
    }
    if (!v->is_string()) {
        bad(name, "must be a string");
    }
    const auto& s = v->get_ref<const SecureString&>();
    if (s.size() > max_len) {
        bad(name, "is longer than " + std::to_string(max_len) + " characters");
    }
    for (const char c : s) {
        if (static_cast<unsigned char>(c) < 0x20) {
            bad(name, "contains a control character");
        }
    }
    return std::string(s.begin(), s.end());
}

std::string digits(const SecureJson& obj, const char* name, bool required, std::size_t min,
                   std::size_t max) {
    std::string s = text(obj, name, required, 64);
    if (s.empty() && !required) {
        return s;
    }
    if (s.size() < min || s.size() > max ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        bad(name, "must be " + std::to_string(min) + " to " + std::to_string(max) + " digits");
    }
    return s;
}

// Decodes a hex secret straight from the secure string into SecretBytes.
SecretBytes secret_hex(const SecureJson& v, const char* name) {
    if (!v.is_string()) {
        bad(name, "must be a hex string");
    }
    const auto& s = v.get_ref<const SecureString&>();
    try {
        return SecretBytes::from_hex(std::string_view(s.data(), s.size()), name);
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::InvalidArgument, std::string("profile: ") + e.what());
    }
}

unsigned small_uint(const SecureJson& obj, const char* name, unsigned deflt, unsigned max) {
    const SecureJson* v = member(obj, name);
    if (v == nullptr) {
        return deflt;
    }
    if (!v->is_number_unsigned() || v->get<std::uint64_t>() > max) {
        bad(name, "must be a whole number from 0 to " + std::to_string(max));
    }
    return static_cast<unsigned>(v->get<std::uint64_t>());
}

void check_keys(const SecureJson& obj, const char* where,
                std::initializer_list<const char*> allowed) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        const std::string key(it.key().begin(), it.key().end());
        if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; })) {
            bad(std::string(where) + key.substr(0, 40), "is not a known field");
        }
    }
}

} // namespace

const char* to_string(Algorithm a) noexcept {
    return a == Algorithm::Milenage ? "milenage" : "tuak";
}

bool MidPolicy::allows(std::string_view action) const {
    return allowed_actions.empty() || std::find(allowed_actions.begin(), allowed_actions.end(),
                                                action) != allowed_actions.end();
}

bool luhn_valid(std::string_view digits) noexcept {
    if (digits.empty()) {
        return false;
    }
    unsigned sum = 0;
    bool twice = false;
    for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
        if (*it < '0' || *it > '9') {
            return false;
        }
        unsigned d = static_cast<unsigned>(*it - '0');
        if (twice) {
            d *= 2;
            if (d > 9) {
                d -= 9;
            }
        }
        sum += d;
        twice = !twice;
    }
    return sum % 10 == 0;
}

MidProfile parse_profile(ByteView json_text) {
    SecureJson doc;
    try {
        doc = SecureJson::parse(json_text.begin(), json_text.end());
    } catch (const nlohmann::json::parse_error& e) {
        // e.what() can quote the input around the error: report the position only.
        bad("document", "is not valid JSON (error at byte " + std::to_string(e.byte) + ")");
    }
    if (!doc.is_object()) {
        bad("document", "must be a JSON object");
    }
    check_keys(doc, "",
               {"iccid", "imsi", "mnc_length", "label", "operator", "algorithm", "k", "opc", "op",
                "amf", "sqn", "ind_bits", "tuak", "pin", "puk", "isim", "suci", "policy"});

    MidProfile p;
    p.iccid = digits(doc, "iccid", true, 18, 20);
    if (!luhn_valid(p.iccid)) {
        bad("iccid", "check digit does not match (ITU-T E.118 Luhn)");
    }
    p.imsi = digits(doc, "imsi", true, 6, 15);
    p.mnc_length = small_uint(doc, "mnc_length", 2, 3);
    if (p.mnc_length < 2) {
        bad("mnc_length", "must be 2 or 3");
    }
    p.label = text(doc, "label", false, 64);
    p.operator_name = text(doc, "operator", false, 64);

    const std::string alg = text(doc, "algorithm", true, 16);
    if (alg == "milenage") {
        p.algorithm = Algorithm::Milenage;
    } else if (alg == "tuak") {
        p.algorithm = Algorithm::Tuak;
    } else {
        bad("algorithm", "must be \"milenage\" or \"tuak\"");
    }
    const bool tuak = p.algorithm == Algorithm::Tuak;

    const SecureJson* k = member(doc, "k");
    if (k == nullptr) {
        bad("k", "is missing");
    }
    p.k = secret_hex(*k, "k");
    if (p.k.size() != 16 && !(tuak && p.k.size() == 32)) {
        bad("k", tuak ? "must be 16 or 32 bytes for TUAK" : "must be 16 bytes for Milenage");
    }
    const SecureJson* opc = member(doc, "opc");
    const SecureJson* op = member(doc, "op");
    if ((opc == nullptr) == (op == nullptr)) {
        bad("opc", "give exactly one of \"opc\" and \"op\"");
    }
    p.op_given = op != nullptr;
    const char* op_name = p.op_given ? "op" : "opc";
    p.opc = secret_hex(p.op_given ? *op : *opc, op_name);
    if (p.opc.size() != (tuak ? 32u : 16u)) {
        bad(op_name, tuak ? "must be 32 bytes (TOP/TOPc) for TUAK" : "must be 16 bytes");
    }

    try {
        p.amf = hex_decode_array<2>(text(doc, "amf", true, 8), "amf");
        const std::string sqn = text(doc, "sqn", false, 16);
        if (!sqn.empty()) {
            p.sqn = load_be(hex_decode(sqn, "sqn", 6));
        }
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::InvalidArgument, std::string("profile: ") + e.what());
    }
    p.sqn_config.ind_bits = small_uint(doc, "ind_bits", 5, 10);

    if (const SecureJson* t = member(doc, "tuak")) {
        if (!tuak) {
            bad("tuak", "is only for \"algorithm\": \"tuak\"");
        }
        if (!t->is_object()) {
            bad("tuak", "must be an object");
        }
        check_keys(*t, "tuak.",
                   {"res_bits", "mac_bits", "ck_bits", "ik_bits", "keccak_iterations"});
        p.tuak.res_bits = small_uint(*t, "res_bits", 64, 1024);
        p.tuak.mac_bits = small_uint(*t, "mac_bits", 64, 1024);
        p.tuak.ck_bits = small_uint(*t, "ck_bits", 128, 1024);
        p.tuak.ik_bits = small_uint(*t, "ik_bits", 128, 1024);
        p.tuak.keccak_iterations = small_uint(*t, "keccak_iterations", 1, 1024);
        try {
            p.tuak.validate();
        } catch (const InvalidArgument& e) {
            throw TeError(ErrorCode::InvalidArgument, std::string("profile: tuak.") + e.what());
        }
    }

    // PIN and PUK are digit strings, kept as their ASCII bytes.
    for (const char* name : {"pin", "puk"}) {
        const SecureJson* v = member(doc, name);
        if (v == nullptr) {
            continue;
        }
        if (!v->is_string()) {
            bad(name, "must be a string of digits");
        }
        const auto& s = v->get_ref<const SecureString&>();
        const std::size_t min = name[1] == 'i' ? 4 : 8;
        const std::size_t max = 8;
        if (s.size() < min || s.size() > max ||
            !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            bad(name, name[1] == 'i' ? "must be 4 to 8 digits" : "must be 8 digits");
        }
        SecretBytes value(ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
        (name[1] == 'i' ? p.pin : p.puk) = std::move(value);
    }
    if (p.puk && !p.pin) {
        bad("puk", "needs a \"pin\"");
    }

    if (const SecureJson* isim = member(doc, "isim")) {
        if (!isim->is_object()) {
            bad("isim", "must be an object");
        }
        check_keys(*isim, "isim.", {"impi", "impu", "domain"});
        IsimIdentity id;
        id.impi = text(*isim, "impi", true);
        if (id.impi.find('@') == std::string::npos) {
            bad("isim.impi", "must be an NAI (user@realm)");
        }
        id.domain = text(*isim, "domain", true);
        const SecureJson* impu = member(*isim, "impu");
        if (impu == nullptr || !impu->is_array() || impu->empty() || impu->size() > 16) {
            bad("isim.impu", "must be an array of 1 to 16 URIs");
        }
        for (const auto& u : *impu) {
            if (!u.is_string()) {
                bad("isim.impu", "must hold strings");
            }
            std::string uri(u.get_ref<const SecureString&>().begin(),
                            u.get_ref<const SecureString&>().end());
            if (uri.rfind("sip:", 0) != 0 && uri.rfind("tel:", 0) != 0) {
                bad("isim.impu", "entries must be sip: or tel: URIs");
            }
            id.impu.push_back(std::move(uri));
        }
        p.isim = std::move(id);
    }

    if (const SecureJson* suci = member(doc, "suci")) {
        if (!suci->is_object()) {
            bad("suci", "must be an object");
        }
        check_keys(*suci, "suci.", {"profile", "hn_key_id", "hn_public_key", "routing_indicator"});
        SuciConfig c;
        try {
            c.profile = usim::parse_suci_profile(text(*suci, "profile", true, 8));
            c.hn_key_id = static_cast<std::uint8_t>(small_uint(*suci, "hn_key_id", 0, 255));
            const std::string key =
                text(*suci, "hn_public_key", c.profile != usim::SuciProfile::Null, 200);
            if (!key.empty()) {
                c.hn_public_key = hex_decode(key, "hn_public_key");
            }
            const std::string ri = text(*suci, "routing_indicator", false, 8);
            if (!ri.empty()) {
                c.routing_indicator = ri;
            }
            usim::SuciParams params{c.profile, p.mcc_mnc(), c.routing_indicator, c.hn_key_id,
                                    c.hn_public_key};
            params.validate();
        } catch (const InvalidArgument& e) {
            throw TeError(ErrorCode::InvalidArgument, std::string("profile: suci.") + e.what());
        }
        p.suci = std::move(c);
    }

    if (const SecureJson* pol = member(doc, "policy")) {
        if (!pol->is_object()) {
            bad("policy", "must be an object");
        }
        check_keys(*pol, "policy.", {"pin_required", "share_functions", "allowed_actions"});
        if (const SecureJson* v = member(*pol, "pin_required")) {
            if (!v->is_boolean()) {
                bad("policy.pin_required", "must be true or false");
            }
            p.policy.pin_required = v->get<bool>();
        }
        if (const SecureJson* v = member(*pol, "share_functions")) {
            if (!v->is_boolean()) {
                bad("policy.share_functions", "must be true or false");
            }
            p.policy.share_functions = v->get<bool>();
        }
        if (const SecureJson* v = member(*pol, "allowed_actions")) {
            if (!v->is_array()) {
                bad("policy.allowed_actions", "must be an array");
            }
            for (const auto& a : *v) {
                const std::string name = a.is_string()
                                             ? std::string(a.get_ref<const SecureString&>().begin(),
                                                           a.get_ref<const SecureString&>().end())
                                             : "";
                if (name != "authenticate" && name != "gsm" && name != "suci" && name != "isim") {
                    bad("policy.allowed_actions",
                        "entries must be authenticate, gsm, suci or isim");
                }
                p.policy.allowed_actions.push_back(name);
            }
        }
    } else {
        p.policy.pin_required = p.pin.has_value();
    }
    if (p.policy.pin_required && !p.pin) {
        bad("policy.pin_required", "needs a \"pin\"");
    }
    return p;
}

} // namespace tresim::te
