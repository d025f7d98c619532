#pragma once
// What the tresim-auc subcommands share: the raw option values of one request
// (from the command line or from one --batch line), the key options and the
// algorithm they select, value parsers whose errors name the option, and the two
// output forms (aligned "name: value" lines, one JSON object per line).

#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usim/aka_algorithm.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::auc {

// The values given for one request, by long option name ("rand", "mac-bits").
// Every value is text, exactly as given; the subcommand parses it. Values are
// wiped when the request is destroyed, since some of them are keys.
class Args {
public:
    Args() = default;
    Args(const Args&) = default;
    Args& operator=(const Args&) = default;
    ~Args();

    void set(const std::string& name, std::string value);
    bool has(std::string_view name) const;
    // The value, or InvalidArgument(name, "is required") when absent.
    const std::string& required(std::string_view name) const;
    // The value, or nullopt when absent.
    std::optional<std::string_view> optional(std::string_view name) const;

private:
    std::map<std::string, std::string, std::less<>> values_;
};

// One output field; the value is lower-case hex or a fixed word.
using Fields = std::vector<std::pair<std::string, std::string>>;

// "name: value" lines with the values aligned in one column.
void print_human(std::ostream& out, const Fields& fields);
// One JSON object on one line, fields in the order given.
std::string to_json_line(const Fields& fields);

struct OptionSpec {
    std::string name; // long option name without "--"
    std::string help;
    std::string value = "HEX"; // what --help shows as the value
};

// A subcommand: its options and what it computes from one request.
struct Command {
    std::string name;
    std::string description;
    std::vector<OptionSpec> options;
    bool batch = false; // offers --batch
    std::function<Fields(const Args&)> run;
};

inline constexpr int kExitOk = 0;
inline constexpr int kExitInternal = 1; // a failure that is not the input's fault
inline constexpr int kExitBadInput = 2;

// Runs `cmd` on one request and prints the result to `out` (human lines or one JSON
// line). A bad input gives "tresim-auc: --NAME: reason" on `err`. Returns the exit
// status.
int run_once(const Command& cmd, const Args& args, bool json, std::ostream& out, std::ostream& err);

// Runs `cmd` on every line of `in`: one JSON object a line, keys the long option
// names with '-' written as '_', layered over `defaults` (the command line's
// options). Writes one JSON line per request, flushed, in order; a bad line gives
// {"result":"error","argument":NAME,"message":TEXT}. Empty lines are skipped.
// Returns 2 when any line was bad.
int run_batch(const Command& cmd, const Args& defaults, std::istream& in, std::ostream& out,
              std::ostream& err);

// --alg, --k, --op, --opc and the TUAK sizes, shared by gen, check and resync.
std::vector<OptionSpec> key_options();

// The algorithm the key options select. `opc_hex`, when not null, receives OPc
// (Milenage) or TOPc (TUAK) as hex, computed from OP/TOP when that was given.
std::unique_ptr<usim::AkaAlgorithm> make_algorithm(const Args& args,
                                                   std::string* opc_hex = nullptr);

// A decimal number in [min, max]; `fallback` when absent.
unsigned parse_unsigned(const Args& args, std::string_view name, unsigned min, unsigned max,
                        unsigned fallback);

// A required hex value of exactly N bytes (not a secret).
template <std::size_t N>
std::array<std::uint8_t, N> parse_hex_array(const Args& args, std::string_view name) {
    return hex_decode_array<N>(args.required(name), name);
}

// A 48-bit SQN given as 12 hex digits.
std::uint64_t parse_sqn(const Args& args, std::string_view name);
// A 48-bit value as 12 hex digits.
std::string sqn_hex(std::uint64_t sqn);

} // namespace tresim::auc
