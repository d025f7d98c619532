#include "options.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "usim/block_cipher.hpp"
#include "usim/milenage.hpp"
#include "usim/tuak.hpp"

namespace tresim::auc {

Args::~Args() {
    for (auto& [name, value] : values_) {
        wipe(value.data(), value.size());
    }
}

void Args::set(const std::string& name, std::string value) {
    auto it = values_.find(name);
    if (it != values_.end()) {
        wipe(it->second.data(), it->second.size());
        it->second = std::move(value);
    } else {
        values_.emplace(name, std::move(value));
    }
}

bool Args::has(std::string_view name) const {
    return values_.find(name) != values_.end();
}

const std::string& Args::required(std::string_view name) const {
    auto it = values_.find(name);
    if (it == values_.end()) {
        throw InvalidArgument(std::string(name), "is required");
    }
    return it->second;
}

std::optional<std::string_view> Args::optional(std::string_view name) const {
    auto it = values_.find(name);
    if (it == values_.end()) {
        return std::nullopt;
    }
    return std::string_view(it->second);
}

void print_human(std::ostream& out, const Fields& fields) {
    std::size_t width = 0;
    for (const auto& [name, value] : fields) {
        width = std::max(width, name.size());
    }
    for (const auto& [name, value] : fields) {
        out << name << ':' << std::string(width - name.size() + 1, ' ') << value << '\n';
    }
}

std::string to_json_line(const Fields& fields) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& [name, value] : fields) {
        j[name] = value;
    }
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::vector<OptionSpec> key_options() {
    return {
        {"alg", "algorithm set: milenage or tuak (required)", "NAME"},
        {"k", "subscriber key K, hex (16 bytes; TUAK also 32) (required)"},
        {"op", "operator variant OP (Milenage, 16 bytes) or TOP (TUAK, 32 bytes), hex"},
        {"opc", "OPc (Milenage, 16 bytes) or TOPc (TUAK, 32 bytes), hex; give --op or --opc"},
        {"res-bits", "TUAK: RES length in bits, 32, 64, 128 or 256 (default 64)", "N"},
        {"mac-bits", "TUAK: MAC-A/MAC-S length in bits, 64, 128 or 256 (default 64)", "N"},
        {"ck-bits", "TUAK: CK length in bits, 128 or 256 (default 128)", "N"},
        {"ik-bits", "TUAK: IK length in bits, 128 or 256 (default 128)", "N"},
        {"keccak-iterations", "TUAK: Keccak iterations, 1 to 255 (default 1)", "N"},
    };
}

namespace {

constexpr std::string_view kTuakOnly[] = {"res-bits", "mac-bits", "ck-bits", "ik-bits",
                                          "keccak-iterations"};

// Which of --op/--opc was given: true for OPc. Exactly one must be.
bool takes_opc(const Args& args) {
    const bool op = args.has("op");
    const bool opc = args.has("opc");
    if (op && opc) {
        throw InvalidArgument("opc", "give either --op or --opc, not both");
    }
    if (!op && !opc) {
        throw InvalidArgument("opc", "is required (or --op)");
    }
    return opc;
}

std::string size_text(std::size_t bytes) {
    return std::to_string(bytes) + " bytes (" + std::to_string(bytes * 2) + " hex digits)";
}

std::unique_ptr<usim::AkaAlgorithm> make_milenage(const Args& args, std::string* opc_hex) {
    for (const std::string_view name : kTuakOnly) {
        if (args.has(name)) {
            throw InvalidArgument(std::string(name), "applies only to --alg tuak");
        }
    }
    const SecretBytes k = SecretBytes::from_hex(args.required("k"), "k", 16);
    const bool given_opc = takes_opc(args);
    usim::Opc opc;
    if (given_opc) {
        const SecretBytes raw = SecretBytes::from_hex(args.required("opc"), "opc", 16);
        opc = usim::Opc(raw.view());
    } else {
        const SecretBytes raw = SecretBytes::from_hex(args.required("op"), "op", 16);
        SecretArray<16> op(raw.view());
        usim::SoftwareAes128 aes(k.view());
        opc = usim::Milenage::compute_opc(aes, op.array());
    }
    if (opc_hex != nullptr) {
        *opc_hex = hex_encode(opc.view());
    }
    return usim::Milenage::software(k.view(), opc.view());
}

std::unique_ptr<usim::AkaAlgorithm> make_tuak(const Args& args, std::string* opc_hex) {
    usim::TuakParams params;
    params.res_bits = parse_unsigned(args, "res-bits", 0, 65535, 64);
    params.mac_bits = parse_unsigned(args, "mac-bits", 0, 65535, 64);
    params.ck_bits = parse_unsigned(args, "ck-bits", 0, 65535, 128);
    params.ik_bits = parse_unsigned(args, "ik-bits", 0, 65535, 128);
    params.keccak_iterations = parse_unsigned(args, "keccak-iterations", 0, 65535, 1);
    params.validate();

    SecretBytes k = SecretBytes::from_hex(args.required("k"), "k");
    if (k.size() != 16 && k.size() != 32) {
        throw InvalidArgument("k", "must be " + size_text(16) + " or " + size_text(32) + ", got " +
                                       std::to_string(k.size()));
    }
    const bool given_topc = takes_opc(args);
    usim::Topc topc;
    if (given_topc) {
        const SecretBytes raw = SecretBytes::from_hex(args.required("opc"), "opc", 32);
        topc = usim::Topc(raw.view());
    } else {
        const SecretBytes raw = SecretBytes::from_hex(args.required("op"), "op", 32);
        SecretArray<32> top(raw.view());
        topc = usim::Tuak::compute_topc(k.view(), top.array(), params.keccak_iterations);
    }
    if (opc_hex != nullptr) {
        *opc_hex = hex_encode(topc.view());
    }
    return std::make_unique<usim::Tuak>(std::move(k), topc, params);
}

} // namespace

std::unique_ptr<usim::AkaAlgorithm> make_algorithm(const Args& args, std::string* opc_hex) {
    const std::string& alg = args.required("alg");
    if (alg == "milenage") {
        return make_milenage(args, opc_hex);
    }
    if (alg == "tuak") {
        return make_tuak(args, opc_hex);
    }
    throw InvalidArgument("alg", "unknown algorithm (expected milenage or tuak)");
}

unsigned parse_unsigned(const Args& args, std::string_view name, unsigned min, unsigned max,
                        unsigned fallback) {
    const auto text = args.optional(name);
    if (!text) {
        return fallback;
    }
    if (text->empty() || text->size() > 9 ||
        !std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '9'; })) {
        throw InvalidArgument(std::string(name), "must be a decimal number");
    }
    unsigned value = 0;
    for (const char c : *text) {
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value < min || value > max) {
        throw InvalidArgument(std::string(name), "must be between " + std::to_string(min) +
                                                     " and " + std::to_string(max) + ", got " +
                                                     std::to_string(value));
    }
    return value;
}

std::uint64_t parse_sqn(const Args& args, std::string_view name) {
    return load_be(parse_hex_array<6>(args, name));
}

std::string sqn_hex(std::uint64_t sqn) {
    std::array<std::uint8_t, 6> b{};
    store_be(sqn, b);
    return hex_encode(b);
}

namespace {

// The reason part of an InvalidArgument ("must be 16 bytes ..."), without the
// "name: " prefix its what() starts with.
std::string reason_of(const InvalidArgument& e) {
    const std::string what = e.what();
    const std::string prefix = e.argument() + ": ";
    if (what.compare(0, prefix.size(), prefix) == 0) {
        return what.substr(prefix.size());
    }
    return what;
}

std::string batch_name(std::string name) {
    std::replace(name.begin(), name.end(), '-', '_');
    return name;
}

std::string error_line(const std::string& argument, const std::string& message) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    j["result"] = "error";
    j["argument"] = argument;
    j["message"] = message;
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

bool blank(std::string_view line) {
    return std::all_of(line.begin(), line.end(),
                       [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// Wipes every string in a parsed request line: some are keys.
void wipe_json(nlohmann::json& j) {
    if (j.is_string()) {
        auto& s = j.get_ref<std::string&>();
        wipe(s.data(), s.size());
    } else if (j.is_structured()) {
        for (auto& item : j) {
            wipe_json(item);
        }
    }
}

// The request one batch line holds, over the defaults.
Args parse_line(const Command& cmd, const Args& defaults, const std::string& line) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
        // e.what() quotes the text it read, which may be a key: give the position only.
        throw InvalidArgument("line", "not valid JSON (syntax error at byte " +
                                          std::to_string(e.byte) + ")");
    }
    struct Wiper {
        nlohmann::json& j;
        ~Wiper() { wipe_json(j); }
    } wiper{j};
    if (!j.is_object()) {
        throw InvalidArgument("line", "must be a JSON object");
    }
    Args args = defaults;
    for (auto& [key, value] : j.items()) {
        std::string name = key;
        std::replace(name.begin(), name.end(), '_', '-');
        const bool known = std::any_of(cmd.options.begin(), cmd.options.end(),
                                       [&](const OptionSpec& o) { return o.name == name; });
        if (!known) {
            throw InvalidArgument(name, "unknown option for " + cmd.name);
        }
        if (value.is_string()) {
            args.set(name, value.get<std::string>());
        } else if (value.is_number_unsigned()) {
            args.set(name, std::to_string(value.get<std::uint64_t>()));
        } else {
            throw InvalidArgument(name, "must be a string");
        }
    }
    return args;
}

} // namespace

int run_once(const Command& cmd, const Args& args, bool json, std::ostream& out,
             std::ostream& err) {
    try {
        const Fields fields = cmd.run(args);
        if (json) {
            out << to_json_line(fields) << '\n';
        } else {
            print_human(out, fields);
        }
        out.flush();
        return kExitOk;
    } catch (const InvalidArgument& e) {
        err << "tresim-auc: --" << e.argument() << ": " << reason_of(e) << '\n';
        return kExitBadInput;
    } catch (const std::exception& e) {
        err << "tresim-auc: " << cmd.name << " failed: " << e.what() << '\n';
        return kExitInternal;
    }
}

int run_batch(const Command& cmd, const Args& defaults, std::istream& in, std::ostream& out,
              std::ostream& err) {
    int status = kExitOk;
    std::string line;
    std::size_t number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (blank(line)) {
            continue;
        }
        std::string result;
        try {
            const Args args = parse_line(cmd, defaults, line);
            result = to_json_line(cmd.run(args));
        } catch (const InvalidArgument& e) {
            result = error_line(batch_name(e.argument()), reason_of(e));
            status = std::max(status, kExitBadInput);
        } catch (const std::exception& e) {
            err << "tresim-auc: " << cmd.name << " failed on line " << number << ": " << e.what()
                << '\n';
            result = error_line("", "internal error");
            status = status == kExitOk ? kExitInternal : status;
        }
        wipe(line.data(), line.size());
        out << result << '\n';
        out.flush();
    }
    return status;
}

} // namespace tresim::auc
