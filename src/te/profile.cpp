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

// The characters of a secret value in the original text (see SecretSpans).
std::string_view
secret_text(const SecureJson& v, const char* name, ByteView text,
            const std::map<std::string, std::pair<std::size_t, std::size_t>>& spans,
            const char* what) {
    if (!v.is_string()) {
        bad(name, std::string("must be ") + what);
    }
    const auto it = spans.find(name);
    if (it == spans.end()) {
        // Only where the name itself is written with \u escapes.
        bad(name, "must be a plain string (its name written without escapes)");
    }
    return {reinterpret_cast<const char*>(text.data()) + it->second.first,
            it->second.second - it->second.first};
}

// Where the secret values (K, OP/OPc, PIN, PUK) lie in the profile text.
//
// nlohmann's lexer copies every character of every token into a
// std::vector<char> with the default allocator (for error messages), which
// grows by reallocation and is freed unwiped: parsing the text as it is would
// leave pieces of K's hex in freed heap memory (the memory-dump test in
// tests/memdump found them). So the text nlohmann sees has these values
// replaced by '0's of the same length, and they are decoded from the
// original text in secure memory instead.
//
// A small tokenizer finds them: string values of these names directly in the
// top-level object. Where the text is not valid JSON, nlohmann refuses the
// masked copy just the same.
struct SecretSpans {
    std::map<std::string, std::pair<std::size_t, std::size_t>> spans; // name -> [begin, end)
    std::vector<std::string> duplicates;
};

constexpr const char* kSecretFields[] = {"k", "opc", "op", "pin", "puk"};

bool is_secret_field(std::string_view name) {
    return std::any_of(std::begin(kSecretFields), std::end(kSecretFields),
                       [&](const char* f) { return name == f; });
}

SecretSpans find_secret_spans(ByteView text) {
    SecretSpans out;
    std::size_t depth = 0;
    std::string key;        // the last string token seen in the top-level object
    bool after_key = false; // key, then ':' seen: the next token is its value
    bool key_next = false;  // the next string at depth 1 is a key
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = static_cast<char>(text[i]);
        if (c == '{' || c == '[') {
            ++depth;
            after_key = false;
            key_next = depth == 1 && c == '{';
        } else if (c == '}' || c == ']') {
            depth = depth > 0 ? depth - 1 : 0;
            after_key = false;
        } else if (c == ',') {
            key_next = depth == 1;
            after_key = false;
        } else if (c == ':') {
            after_key = depth == 1 && !key.empty();
        } else if (c == '"') {
            const std::size_t begin = i + 1;
            std::size_t end = begin;
            while (end < text.size() && text[end] != '"') {
                end += text[end] == '\\' ? 2 : 1;
            }
            if (depth == 1 && key_next) {
                key.assign(reinterpret_cast<const char*>(text.data()) + begin,
                           std::min(end, text.size()) - begin);
                key_next = false;
            } else if (depth == 1 && after_key && is_secret_field(key)) {
                if (!out.spans.emplace(key, std::pair{begin, std::min(end, text.size())}).second) {
                    out.duplicates.push_back(key);
                }
                after_key = false;
            } else {
                after_key = false;
            }
            i = end;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            after_key = false; // a number or literal value
        }
    }
    return out;
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

using SpanMap = std::map<std::string, std::pair<std::size_t, std::size_t>>;

// The members of a USIM function of its own, which an ISIM-only MID
// (functions_from) must not have.
constexpr const char* kOwnFunctionFields[] = {"algorithm", "k",    "opc",  "op",  "amf", "sqn",
                                              "ind_bits",  "tuak", "suci", "pin", "puk"};

// Algorithm, K, OPc/OP, AMF, SQN, TUAK parameters, PIN and PUK.
void parse_usim_function(const SecureJson& doc, ByteView json_text, const SpanMap& spans,
                         MidProfile& p);
// The ISIM identities, the SUCI parameters and the policy.
void parse_isim_suci_policy(const SecureJson& doc, MidProfile& p);

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
    const SecretSpans secrets = find_secret_spans(json_text);
    if (!secrets.duplicates.empty()) {
        bad(secrets.duplicates.front(), "appears more than once");
    }
    SecretBytes masked(json_text);
    for (const auto& [name, span] : secrets.spans) {
        std::fill(masked.data() + span.first, masked.data() + span.second, std::uint8_t{'0'});
    }
    SecureJson doc;
    try {
        doc = SecureJson::parse(masked.view().begin(), masked.view().end());
    } catch (const nlohmann::json::parse_error& e) {
        // e.what() can quote the input around the error: report the position only.
        bad("document", "is not valid JSON (error at byte " + std::to_string(e.byte) + ")");
    }
    if (!doc.is_object()) {
        bad("document", "must be a JSON object");
    }
    check_keys(doc, "",
               {"iccid", "imsi", "mnc_length", "label", "operator", "algorithm", "k", "opc", "op",
                "amf", "sqn", "ind_bits", "tuak", "pin", "puk", "isim", "suci", "policy",
                "functions_from"});

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
    if (p.imsi.size() <= 3 + p.mnc_length) {
        bad("imsi", "has no MSIN digits after the MCC and the " + std::to_string(p.mnc_length) +
                        "-digit MNC");
    }
    p.label = text(doc, "label", false, 64);
    p.operator_name = text(doc, "operator", false, 64);

    if (member(doc, "functions_from") != nullptr) {
        p.functions_from = digits(doc, "functions_from", true, 18, 20);
        if (!luhn_valid(p.functions_from)) {
            bad("functions_from", "check digit does not match (ITU-T E.118 Luhn)");
        }
        if (p.functions_from == p.iccid) {
            bad("functions_from", "must be another MID's ICCID, not this one's");
        }
        // An ISIM-only MID has no USIM function of its own: nothing of one.
        for (const char* own : kOwnFunctionFields) {
            if (member(doc, own) != nullptr) {
                bad(own, "must not be given with \"functions_from\": the MID uses the USIM "
                         "function of the MID it names");
            }
        }
    } else {
        parse_usim_function(doc, json_text, secrets.spans, p);
    }

    parse_isim_suci_policy(doc, p);
    if (p.borrows_functions()) {
        if (!p.isim) {
            bad("isim", "is required with \"functions_from\" (the MID is an ISIM only)");
        }
        if (!p.policy.share_functions) {
            bad("policy.share_functions", "must be true with \"functions_from\"");
        }
    }
    return p;
}

namespace {

void parse_usim_function(const SecureJson& doc, ByteView json_text, const SpanMap& spans,
                         MidProfile& p) {
    const auto secret_hex = [&](const SecureJson& v, const char* name) {
        const std::string_view hex = secret_text(v, name, json_text, spans, "a hex string");
        try {
            return SecretBytes::from_hex(hex, name);
        } catch (const InvalidArgument& e) {
            throw TeError(ErrorCode::InvalidArgument, std::string("profile: ") + e.what());
        }
    };
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
        const std::string_view s = secret_text(*v, name, json_text, spans, "a string of digits");
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
}

void parse_isim_suci_policy(const SecureJson& doc, MidProfile& p) {
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
}

} // namespace

} // namespace tresim::te
