// tresim-auc suci: conceal an IMSI into a SUCI (TS 33.501 Annex C) and print it in
// the TS 23.003 string form.

#include "usim/suci.hpp"

#include <algorithm>

#include "commands.hpp"

namespace tresim::auc {

namespace {

bool all_digits(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Digits only, between min and max of them.
void require_digits(std::string_view value, std::string_view name, std::size_t min,
                    std::size_t max) {
    if (!all_digits(value)) {
        throw InvalidArgument(std::string(name), "must hold decimal digits only");
    }
    if (value.size() < min || value.size() > max) {
        throw InvalidArgument(std::string(name),
                              "must be " + std::to_string(min) +
                                  (min == max ? "" : " to " + std::to_string(max)) +
                                  " digits, got " + std::to_string(value.size()));
    }
}

Fields run_suci(const Args& args) {
    usim::SuciParams params;
    params.profile = usim::parse_suci_profile(args.required("profile"));
    params.mcc_mnc = args.required("mcc-mnc");
    require_digits(params.mcc_mnc, "mcc-mnc", 5, 6);
    const std::string& msin = args.required("msin");
    // An IMSI has at most 15 digits (TS 23.003 §2.2).
    require_digits(msin, "msin", 1, 15 - params.mcc_mnc.size());
    if (const auto ri = args.optional("routing-indicator")) {
        require_digits(*ri, "routing-indicator", 1, 4);
        params.routing_indicator = std::string(*ri);
    }

    params.hn_key_id = static_cast<std::uint8_t>(parse_unsigned(args, "hn-key-id", 0, 255, 0));
    std::optional<SecretBytes> eph;
    if (params.profile == usim::SuciProfile::Null) {
        for (const std::string_view name : {"hn-public-key", "eph-private-key"}) {
            if (args.has(name)) {
                throw InvalidArgument(std::string(name), "applies only to profiles A and B");
            }
        }
        if (params.hn_key_id != 0) {
            throw InvalidArgument("hn-key-id", "must be 0 for the null scheme");
        }
    } else {
        args.required("hn-key-id");
        params.hn_public_key = hex_decode(args.required("hn-public-key"), "hn-public-key");
        if (const auto key = args.optional("eph-private-key")) {
            eph = SecretBytes::from_hex(*key, "eph-private-key", 32);
        }
    }
    params.validate();

    const usim::Suci suci = usim::conceal_imsi(params, msin, eph);
    return {{"suci", suci.text}, {"scheme_output", hex_encode(suci.scheme_output)}};
}

} // namespace

Command suci_command() {
    Command cmd;
    cmd.name = "suci";
    cmd.description = "Conceal an IMSI into a SUCI (null scheme, ECIES profile A or B)";
    cmd.options = {
        {"profile", "protection scheme: null, A (X25519) or B (secp256r1) (required)", "PROFILE"},
        {"mcc-mnc", "MCC and MNC, 5 or 6 digits (required)", "DIGITS"},
        {"msin", "MSIN: the IMSI's digits after MCC and MNC (required)", "DIGITS"},
        {"routing-indicator", "routing indicator, 1 to 4 digits (default 0)", "DIGITS"},
        {"hn-key-id", "home network public key identifier, 0 to 255 (profiles A and B)", "N"},
        {"hn-public-key",
         "home network public key, hex: A 32 bytes; B 33 (compressed) or 65 bytes (A and B)"},
        {"eph-private-key", "ephemeral private key, 32 bytes hex (random when omitted)"},
    };
    cmd.batch = false;
    cmd.run = run_suci;
    return cmd;
}

} // namespace tresim::auc
