// tresim-approve: the policy authority's offline tool (docs/tresim-approve.md).
// Makes the authority key, signs approvals of platform states
// ("tresim-approval-1", docs/dbus-api.md#approval-json) and checks them, with
// the TE's own code: te::approve signs, te::approval_to_json writes the JSON
// and te::parse_approval (what tresimd runs on AddApproval) checks it.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <sys/stat.h>

// GCC 12 reports a false "potential null pointer dereference" inside CLI11's
// inlined std::vector<std::string> code (CLI::detail::split); not ours to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <nlohmann/json.hpp>

#include "te/approval_json.hpp"
#include "te/errors.hpp"
#include "te/mid_crypto.hpp"
#include "tpm/hash_alg.hpp"
#include "tpm/keys.hpp"
#include "tpm/policy.hpp"
#include "usim/bytes.hpp"

#ifndef TRESIM_VERSION
#define TRESIM_VERSION "unknown"
#endif

namespace {

using namespace tresim;
using nlohmann::json;

constexpr const char* kDefaultSelection = "sha256:0,2,4,7"; // the TE's default

// A failure the user can fix; printed as "tresim-approve: <message>", exit 1.
struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string read_text(const std::string& path, const char* what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Failure(std::string(what) + ": cannot read " + path + ": " + std::strerror(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (text.str().size() > (1u << 20)) {
        throw Failure(std::string(what) + ": " + path + " is larger than 1 MiB");
    }
    return text.str();
}

void write_text(const std::string& path, const std::string& text, const char* what) {
    if (path == "-") {
        std::cout << text;
        return;
    }
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        out.flush();
        if (!out) {
            throw Failure(std::string(what) + ": cannot write " + tmp);
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Failure(std::string(what) + ": cannot write " + path + ": " + std::strerror(errno));
    }
}

TPMI_ALG_HASH bank_of(const std::string& name) {
    return tpm::parse_pcr_selection(name + ":0").bank; // InvalidArgument("pcrs") if unknown
}

// PCR values by bank, as read from an input.
using AllValues = std::map<TPMI_ALG_HASH, std::map<unsigned, Bytes>>;

void put_value(AllValues& all, TPMI_ALG_HASH bank, const std::string& index,
               const std::string& hex) {
    if (index.empty() || index.size() > 2 ||
        !std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoul(index) > 23) {
        throw Failure("pcrs: \"" + index.substr(0, 8) + "\" is not a PCR number (0 to 23)");
    }
    std::string digits = hex;
    if (digits.rfind("0x", 0) == 0 || digits.rfind("0X", 0) == 0) {
        digits = digits.substr(2);
    }
    Bytes value = hex_decode(digits, "pcr " + index);
    if (value.size() != tpm::digest_size(bank)) {
        throw Failure("pcrs: the value of PCR " + index + " is not " +
                      std::to_string(tpm::digest_size(bank)) + " bytes");
    }
    all[bank][static_cast<unsigned>(std::stoul(index))] = std::move(value);
}

// "sha256:0=HEX,2=HEX,..." (several banks separated by '+' or whitespace).
AllValues parse_value_list(const std::string& text) {
    AllValues all;
    std::istringstream groups(std::regex_replace(text, std::regex("\\+"), " "));
    std::string group;
    while (groups >> group) {
        const std::size_t colon = group.find(':');
        if (colon == std::string::npos) {
            throw Failure("pcr-values: expected BANK:INDEX=HEX,..., e.g. sha256:0=3d45...,7=...");
        }
        const TPMI_ALG_HASH bank = bank_of(group.substr(0, colon));
        std::istringstream items(group.substr(colon + 1));
        std::string item;
        while (std::getline(items, item, ',')) {
            const std::size_t eq = item.find('=');
            if (eq == std::string::npos) {
                throw Failure("pcr-values: \"" + item.substr(0, 8) + "\" has no =HEX");
            }
            put_value(all, bank, item.substr(0, eq), item.substr(eq + 1));
        }
    }
    return all;
}

// The output of tpm2_pcrread: a "  sha256:" line, then "    0 : 0xHEX" lines.
AllValues parse_pcrread(const std::string& text) {
    AllValues all;
    const std::regex bank_line(R"(^\s*(sha1|sha256|sha384|sha512)\s*:\s*$)");
    const std::regex value_line(R"(^\s*(\d+)\s*:\s*(0x[0-9A-Fa-f]+|[0-9A-Fa-f]+)\s*$)");
    TPMI_ALG_HASH bank = TPM2_ALG_NULL; // none until a bank line
    std::istringstream lines(text);
    std::string line;
    std::smatch m;
    while (std::getline(lines, line)) {
        if (std::regex_match(line, m, bank_line)) {
            bank = bank_of(m[1]);
        } else if (bank != TPM2_ALG_NULL && std::regex_match(line, m, value_line)) {
            put_value(all, bank, m[1], m[2]);
        } else if (line.find_first_not_of(" \t\r") != std::string::npos) {
            bank = TPM2_ALG_NULL; // another bank (sm3_256...) or another section
        }
    }
    return all;
}

// The values from a file: the JSON "pcrs" object of an approval (or a whole
// approval), tpm2_pcrread's output, or the --pcr-values text form.
AllValues parse_pcrs_file(const std::string& text) {
    const json doc = json::parse(text, nullptr, false);
    if (!doc.is_discarded() && doc.is_object()) {
        const json& p = doc.contains("pcrs") ? doc.at("pcrs") : doc;
        if (!p.is_object() || !p.contains("bank") || !p.contains("values") ||
            !p.at("bank").is_string() || !p.at("values").is_object()) {
            throw Failure("pcrs: a JSON file needs {\"bank\": ..., \"values\": {...}}");
        }
        AllValues all;
        const TPMI_ALG_HASH bank = bank_of(p.at("bank").get<std::string>());
        for (const auto& [index, value] : p.at("values").items()) {
            if (!value.is_string()) {
                throw Failure("pcrs: the value of PCR " + index.substr(0, 8) + " is not a string");
            }
            put_value(all, bank, index, value.get<std::string>());
        }
        return all;
    }
    if (std::regex_search(text, std::regex(R"((^|\n)\s*sha(1|256|384|512)\s*:\s*\n)"))) {
        return parse_pcrread(text);
    }
    return parse_value_list(text);
}

// Exactly the PCRs of `selection`, from what was read.
tpm::PcrValues select(const AllValues& all, const tpm::PcrSelection& selection) {
    tpm::PcrValues out;
    out.bank = selection.bank;
    const auto bank = all.find(selection.bank);
    for (const unsigned pcr : selection.pcrs) {
        if (bank == all.end() || bank->second.count(pcr) == 0) {
            throw Failure("pcrs: no value for PCR " + std::to_string(pcr) + " of " +
                          tpm::format_pcr_selection(selection));
        }
        out.values[pcr] = bank->second.at(pcr);
    }
    return out;
}

std::string describe(const tpm::PcrValues& v) {
    std::string text = tpm::format_pcr_selection(tpm::selection_of(v)) + " =";
    for (const auto& [pcr, value] : v.values) {
        text += " " + std::to_string(pcr) + ":" + hex_encode(value).substr(0, 16) + "...";
    }
    return text;
}

// ---- subcommands ---------------------------------------------------------------

struct KeygenOptions {
    std::string out;
    std::string public_out;
    bool force = false;
    bool json = false;
};

int keygen(const KeygenOptions& o) {
    struct stat st {};
    if (!o.force && ::stat(o.out.c_str(), &st) == 0) {
        throw Failure("out: " + o.out +
                      " exists; an authority key is not replaced without --force (MIDs bound to "
                      "it would need approvals from the new key)");
    }
    const tpm::PolicyAuthority key = tpm::PolicyAuthority::generate();
    key.save(o.out);
    if (!o.public_out.empty()) {
        write_text(o.public_out, key.public_pem(), "public-out");
    }
    const std::string name = hex_encode(key.name());
    if (o.json) {
        std::cout << json{{"key", o.out}, {"public_key", key.public_pem()}, {"name", name}}.dump()
                  << "\n";
    } else {
        std::cout << key.public_pem() << "name: " << name << "\n";
        std::cerr << "private key written to " << o.out << " (mode 0600): keep it off devices\n";
    }
    return 0;
}

struct SignOptions {
    std::string key;
    std::string pcrs_file;
    std::string pcr_values;
    std::string selection = kDefaultSelection;
    std::string policy_ref;
    bool pin_bound = false;
    std::string out;
};

int sign(const SignOptions& o) {
    const tpm::PolicyAuthority key = tpm::PolicyAuthority::load(o.key);
    if (!key.has_private()) {
        throw Failure("key: " + o.key + " holds a public key; signing needs the private key");
    }
    const tpm::PcrSelection selection = tpm::parse_pcr_selection(o.selection);
    const AllValues all = o.pcrs_file.empty() ? parse_value_list(o.pcr_values)
                                              : parse_pcrs_file(read_text(o.pcrs_file, "pcrs"));
    const tpm::PcrValues values = select(all, selection);
    const Bytes policy_ref = hex_decode(o.policy_ref, "policy-ref");
    if (policy_ref.size() > 32) {
        throw Failure("policy-ref: is longer than 32 bytes");
    }
    const te::MidApproval approval = te::approve(key, values, o.pin_bound, policy_ref);
    const std::string text = te::approval_to_json(approval).dump(2) + "\n";
    // What the TE will run on it, before anything is written.
    te::parse_approval(text, selection, false);
    write_text(o.out, text, "out");
    std::cerr << "approval of " << describe(values) << (o.pin_bound ? ", PIN-bound" : "") << " by "
              << hex_encode(key.name()) << " written to " << o.out << "\n";
    return 0;
}

struct VerifyOptions {
    std::string file;
    std::string authority;
    std::string selection = kDefaultSelection;
    bool json = false;
};

int verify(const VerifyOptions& o) {
    const tpm::PolicyAuthority expected = tpm::PolicyAuthority::load(o.authority);
    const tpm::PcrSelection selection = tpm::parse_pcr_selection(o.selection);
    const te::ParsedApproval parsed =
        te::parse_approval(read_text(o.file, "approval"), selection, false);
    const te::MidApproval& a = *parsed.approval;
    const Bytes name = tpm::object_name(a.authority.publicArea);
    if (name != expected.name()) {
        throw te::TeError(te::ErrorCode::PolicyDenied,
                          "approval: signed by authority " + hex_encode(name) + ", not by " +
                              o.authority + " (" + hex_encode(expected.name()) + ")");
    }
    if (o.json) {
        json values = json::object();
        for (const auto& [pcr, value] : a.pcrs.values) {
            values[std::to_string(pcr)] = hex_encode(value);
        }
        std::cout << json{{"valid", true},
                          {"authority", hex_encode(name)},
                          {"pcrs", tpm::format_pcr_selection(selection)},
                          {"values", values},
                          {"pin_bound", a.auth_value},
                          {"policy_ref", hex_encode(a.policy_ref)},
                          {"approved_policy", hex_encode(a.approved_policy)}}
                         .dump()
                  << "\n";
    } else {
        std::cout << "valid: approval of " << describe(a.pcrs)
                  << (a.auth_value ? ", PIN-bound" : "") << "\nauthority: " << hex_encode(name)
                  << "\napproved policy: " << hex_encode(a.approved_policy) << "\n";
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"tresim-approve: sign and check approvals of platform states for tresim "
                 "(docs/tresim-approve.md)"};
    app.set_version_flag("--version", std::string("tresim-approve ") + TRESIM_VERSION);
    app.require_subcommand(1);

    KeygenOptions kg;
    auto* keygen_cmd = app.add_subcommand("keygen", "make an authority key (ECC P-256)");
    keygen_cmd->add_option("--out", kg.out, "the private key file to write (PEM, mode 0600)")
        ->required();
    keygen_cmd->add_option("--public-out", kg.public_out, "also write the public key (PEM)");
    keygen_cmd->add_flag("--force", kg.force, "replace an existing key file");
    keygen_cmd->add_flag("--json", kg.json, "print the public key and name as JSON");

    SignOptions sg;
    auto* sign_cmd = app.add_subcommand("sign", "sign an approval of PCR values");
    sign_cmd->add_option("--key", sg.key, "the authority's private key (PEM)")->required();
    auto* pcrs_opt = sign_cmd->add_option(
        "--pcrs", sg.pcrs_file,
        "file with the values: tpm2_pcrread output, an approval or its \"pcrs\" JSON, or the "
        "--pcr-values form");
    auto* values_opt = sign_cmd->add_option("--pcr-values", sg.pcr_values,
                                            "the values: sha256:0=HEX,2=HEX,4=HEX,7=HEX");
    pcrs_opt->excludes(values_opt);
    sign_cmd->add_option("--selection", sg.selection, "the PCRs to approve: the TE's pcrs setting")
        ->capture_default_str();
    sign_cmd->add_flag("--pin-bound", sg.pin_bound,
                       "approve for PIN-protected MIDs (adds PolicyAuthValue)");
    sign_cmd->add_option("--policy-ref", sg.policy_ref, "policyRef, hex, 0 to 32 bytes");
    sign_cmd->add_option("--out", sg.out, "the approval file to write (- for stdout)")->required();

    VerifyOptions vf;
    auto* verify_cmd = app.add_subcommand("verify", "check an approval as the TE will");
    verify_cmd->add_option("APPROVAL", vf.file, "the approval JSON")->required();
    verify_cmd->add_option("--authority", vf.authority, "the authority's public (or private) key")
        ->required();
    verify_cmd->add_option("--selection", vf.selection, "the TE's pcrs setting")
        ->capture_default_str();
    verify_cmd->add_flag("--json", vf.json, "print the result as JSON");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    try {
        if (*sign_cmd && pcrs_opt->count() == 0 && values_opt->count() == 0) {
            throw Failure("sign: give --pcrs FILE or --pcr-values VALUES");
        }
        if (*keygen_cmd) {
            return keygen(kg);
        }
        if (*sign_cmd) {
            return sign(sg);
        }
        return verify(vf);
    } catch (const te::TeError& e) {
        std::cerr << "tresim-approve: " << te::nick(e.code()) << ": " << e.what() << "\n";
    } catch (const InvalidArgument& e) {
        std::cerr << "tresim-approve: " << e.what() << "\n";
    } catch (const std::exception& e) {
        std::cerr << "tresim-approve: " << e.what() << "\n";
    }
    return 1;
}
