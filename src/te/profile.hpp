#pragma once
// The MID profile file for local (out-of-band, factory) import: JSON, documented
// in docs/profile-format.md. Parsing keeps every secret (K, OP/OPc, PIN, PUK)
// in secure memory: the document is parsed with strings allocated from the
// secure heap, which wipes them when they are freed.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "errors.hpp"
#include "usim/aka.hpp"
#include "usim/secret.hpp"
#include "usim/suci.hpp"
#include "usim/tuak.hpp"

namespace tresim::te {

enum class Algorithm { Milenage, Tuak };
const char* to_string(Algorithm a) noexcept;

struct IsimIdentity {
    std::string impi;              // private identity, an NAI (user@realm)
    std::vector<std::string> impu; // public identities: sip: or tel: URIs, at least one
    std::string domain;            // home network domain
};

struct SuciConfig {
    usim::SuciProfile profile = usim::SuciProfile::Null;
    std::uint8_t hn_key_id = 0;
    Bytes hn_public_key;
    std::string routing_indicator = "0";
};

// The MID's own security policy (TR 33.812: the TE enforces it).
struct MidPolicy {
    bool pin_required = false; // every use needs a verified PIN (PolicyAuthValue)
    // May its functions serve another MID, and may it use another MID's
    // (TR 33.812: only where both policies allow it and both MIDs are active).
    bool share_functions = false;
    // Actions the MID allows: "authenticate", "gsm", "suci", "isim". Empty = all.
    std::vector<std::string> allowed_actions;
    bool allows(std::string_view action) const;
};

struct MidProfile {
    std::string iccid;
    std::string imsi;
    unsigned mnc_length = 2; // digits of the MNC inside the IMSI (2 or 3)
    std::string label;
    std::string operator_name;
    Algorithm algorithm = Algorithm::Milenage;
    SecretBytes k;         // 16 bytes (TUAK: 16 or 32)
    SecretBytes opc;       // OPc (16) or TOPc (32); OP/TOP when op_given
    bool op_given = false; // the file had "op": OPc is computed with K at import
    usim::Amf amf{};
    std::optional<std::uint64_t> sqn; // the highest SQN already used
    usim::SqnConfig sqn_config;
    usim::TuakParams tuak;
    std::optional<SecretBytes> pin;
    std::optional<SecretBytes> puk;
    std::optional<IsimIdentity> isim;
    std::optional<SuciConfig> suci;
    MidPolicy policy;
    // An ISIM-only MID: the ICCID of the MID whose USIM function (K, OPc,
    // algorithm, SQN array) its IMS AKA runs on (docs/te.md "Shared
    // functions"). Empty for a MID with keys of its own. When set, the profile
    // has isim and policy.share_functions, and none of the key, SQN, SUCI or
    // PIN fields: k, opc, algorithm, amf, ... keep their defaults.
    std::string functions_from;

    bool borrows_functions() const { return !functions_from.empty(); }
    std::string mcc_mnc() const { return imsi.substr(0, 3 + mnc_length); }
    std::string msin() const { return imsi.substr(3 + mnc_length); }
};

// Parses and validates a profile. Every problem is a TeError(InvalidArgument)
// whose message names the field ("profile: k: must be 16 bytes ...") and never
// contains a secret value. Unknown top-level fields are refused, so a typo does
// not silently drop a setting.
MidProfile parse_profile(ByteView json_text);

// ICCID check digit (ITU-T E.118, Luhn) over all digits.
bool luhn_valid(std::string_view digits) noexcept;

} // namespace tresim::te
