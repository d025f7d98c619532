#include "approval_json.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include "errors.hpp"
#include "tpm/hash_alg.hpp"
#include "tpm/keys.hpp"
#include "tpm/policy.hpp"
#include "usim/bytes.hpp"

namespace tresim::te {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& field, const std::string& reason) {
    throw TeError(ErrorCode::InvalidArgument, "approval: " + field + " " + reason);
}

struct EcdsaSigFree {
    void operator()(ECDSA_SIG* s) const noexcept { ECDSA_SIG_free(s); }
};

// DER ECDSA-Sig-Value -> TPMT_SIGNATURE (ECDSA, SHA-256), r and s padded to 32 bytes.
TPMT_SIGNATURE signature_from_der(const Bytes& der) {
    const unsigned char* p = der.data();
    std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(
        d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig || p != der.data() + der.size()) {
        bad("signature", "is not a DER ECDSA signature");
    }
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    TPMT_SIGNATURE out{};
    out.sigAlg = TPM2_ALG_ECDSA;
    out.signature.ecdsa.hash = TPM2_ALG_SHA256;
    if (BN_num_bytes(r) > 32 || BN_num_bytes(s) > 32 ||
        BN_bn2binpad(r, out.signature.ecdsa.signatureR.buffer, 32) != 32 ||
        BN_bn2binpad(s, out.signature.ecdsa.signatureS.buffer, 32) != 32) {
        bad("signature", "is not a P-256 ECDSA signature");
    }
    out.signature.ecdsa.signatureR.size = 32;
    out.signature.ecdsa.signatureS.size = 32;
    return out;
}

// TPMT_SIGNATURE (ECDSA) -> DER ECDSA-Sig-Value.
Bytes signature_to_der(const TPMT_SIGNATURE& signature) {
    if (signature.sigAlg != TPM2_ALG_ECDSA) {
        bad("signature", "is not an ECDSA signature");
    }
    std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(signature.signature.ecdsa.signatureR.buffer,
                          signature.signature.ecdsa.signatureR.size, nullptr);
    BIGNUM* s = BN_bin2bn(signature.signature.ecdsa.signatureS.buffer,
                          signature.signature.ecdsa.signatureS.size, nullptr);
    if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        bad("signature", "cannot be encoded");
    }
    const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    Bytes out(static_cast<std::size_t>(len > 0 ? len : 0));
    unsigned char* p = out.data();
    if (len <= 0 || i2d_ECDSA_SIG(sig.get(), &p) != len) {
        bad("signature", "cannot be encoded");
    }
    return out;
}

const json& field(const json& doc, const char* name, json::value_t type, const char* what) {
    const auto it = doc.find(name);
    if (it == doc.end()) {
        bad(name, "is missing");
    }
    if (it->type() != type) {
        bad(name, std::string("must be ") + what);
    }
    return *it;
}

Bytes hex_field(const json& value, const std::string& name) {
    try {
        return hex_decode(value.get<std::string>(), name);
    } catch (const InvalidArgument&) {
        bad(name, "is not hex");
    }
}

} // namespace

ParsedApproval parse_approval(const std::string& text, const tpm::PcrSelection& selection,
                              bool allow_reference) {
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::exception&) {
        throw TeError(ErrorCode::InvalidArgument, "approval: not a JSON document");
    }
    if (!doc.is_object()) {
        throw TeError(ErrorCode::InvalidArgument, "approval: not a JSON object");
    }
    static const std::set<std::string> known = {
        "format", "authority", "pcrs", "auth_value", "policy_ref", "signature", "approved_policy"};
    for (const auto& [key, value] : doc.items()) {
        if (!known.contains(key)) {
            bad(key, "is not a known field");
        }
    }
    if (field(doc, "format", json::value_t::string, "a string") != "tresim-approval-1") {
        bad("format", "must be \"tresim-approval-1\"");
    }
    const std::string pem = field(doc, "authority", json::value_t::string, "a string");
    ParsedApproval out;
    std::optional<tpm::PolicyAuthority> authority;
    try {
        authority = tpm::PolicyAuthority::from_pem(
            ByteView(reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size()));
    } catch (const std::exception&) {
        bad("authority", "is not a PEM ECC P-256 public key");
    }
    if (authority->has_private()) {
        bad("authority", "must be the public key, not a private key");
    }
    out.authority = authority->tpm_public();

    if (doc.size() == 2 && allow_reference) {
        return out; // reference form: format and authority only
    }

    MidApproval a;
    a.authority = out.authority;
    const json& pcrs = field(doc, "pcrs", json::value_t::object, "an object");
    for (const auto& [key, value] : pcrs.items()) {
        if (key != "bank" && key != "values") {
            bad("pcrs." + key, "is not a known field");
        }
    }
    const std::string bank = field(pcrs, "bank", json::value_t::string, "a string");
    try {
        a.pcrs.bank = tpm::parse_pcr_selection(bank + ":0").bank;
    } catch (const std::exception&) {
        bad("pcrs.bank", "is not a PCR bank");
    }
    if (a.pcrs.bank != selection.bank) {
        bad("pcrs.bank", "is not the bank of PcrSelection");
    }
    const json& values = field(pcrs, "values", json::value_t::object, "an object");
    for (const auto& [key, value] : values.items()) {
        unsigned index = 0;
        if (key.empty() || key.size() > 2 ||
            !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            bad("pcrs.values", "keys must be PCR indexes");
        }
        index = static_cast<unsigned>(std::stoul(key));
        if (!value.is_string()) {
            bad("pcrs.values." + key, "must be a hex string");
        }
        Bytes v = hex_field(value, "pcrs.values." + key);
        if (v.size() != tpm::digest_size(a.pcrs.bank)) {
            bad("pcrs.values." + key, "has the wrong length for the bank");
        }
        a.pcrs.values[index] = std::move(v);
    }
    std::set<unsigned> wanted(selection.pcrs.begin(), selection.pcrs.end());
    std::set<unsigned> given;
    for (const auto& [index, value] : a.pcrs.values) {
        given.insert(index);
    }
    if (wanted != given) {
        bad("pcrs.values", "must hold exactly the PCRs of PcrSelection");
    }
    if (const auto it = doc.find("auth_value"); it != doc.end()) {
        if (!it->is_boolean()) {
            bad("auth_value", "must be true or false");
        }
        a.auth_value = it->get<bool>();
    }
    if (const auto it = doc.find("policy_ref"); it != doc.end()) {
        if (!it->is_string()) {
            bad("policy_ref", "must be a hex string");
        }
        a.policy_ref = hex_field(*it, "policy_ref");
        if (a.policy_ref.size() > 32) {
            bad("policy_ref", "is longer than 32 bytes");
        }
    }
    a.approved_policy = approved_policy_for(a.pcrs, a.auth_value);
    if (const auto it = doc.find("approved_policy"); it != doc.end()) {
        if (!it->is_string() || hex_field(*it, "approved_policy") != a.approved_policy) {
            bad("approved_policy", "does not match the digest of pcrs and auth_value");
        }
    }
    const json& sig = field(doc, "signature", json::value_t::string, "a hex string");
    a.signature = signature_from_der(hex_field(sig, "signature"));
    if (!authority->verify_policy(a.approved_policy, a.policy_ref, a.signature)) {
        throw TeError(ErrorCode::PolicyDenied,
                      "approval: the signature does not verify with the authority's key");
    }
    out.approval = std::move(a);
    return out;
}

nlohmann::json approval_to_json(const MidApproval& approval) {
    const tpm::PolicyAuthority authority =
        tpm::PolicyAuthority::from_public(approval.authority.publicArea);
    json values = json::object();
    for (const auto& [index, value] : approval.pcrs.values) {
        values[std::to_string(index)] = hex_encode(value);
    }
    std::string bank;
    switch (approval.pcrs.bank) {
    case TPM2_ALG_SHA1:
        bank = "sha1";
        break;
    case TPM2_ALG_SHA384:
        bank = "sha384";
        break;
    case TPM2_ALG_SHA512:
        bank = "sha512";
        break;
    default:
        bank = "sha256";
        break;
    }
    return {{"format", "tresim-approval-1"},
            {"authority", authority.public_pem()},
            {"pcrs", {{"bank", bank}, {"values", values}}},
            {"auth_value", approval.auth_value},
            {"policy_ref", hex_encode(approval.policy_ref)},
            {"approved_policy", hex_encode(approval.approved_policy)},
            {"signature", hex_encode(signature_to_der(approval.signature))}};
}

// ---- the registry's stored form ---------------------------------------------

namespace {

json encode_pcrs(const tpm::PcrValues& v) {
    json values = json::object();
    for (const auto& [pcr, value] : v.values) {
        values[std::to_string(pcr)] = hex_encode(value);
    }
    return {{"bank", v.bank}, {"values", values}};
}

tpm::PcrValues decode_pcrs(const json& j) {
    tpm::PcrValues v;
    v.bank = j.at("bank").get<TPMI_ALG_HASH>();
    for (const auto& [pcr, value] : j.at("values").items()) {
        v.values[static_cast<unsigned>(std::stoul(pcr))] =
            hex_decode(value.get<std::string>(), "pcr-value");
    }
    return v;
}

} // namespace

Bytes encode_stored_approval(const MidApproval& a) {
    const json j = {{"pcrs", encode_pcrs(a.pcrs)},
                    {"auth_value", a.auth_value},
                    {"approved_policy", hex_encode(a.approved_policy)},
                    {"policy_ref", hex_encode(a.policy_ref)},
                    {"authority", hex_encode(tpm::marshal_public(a.authority))},
                    {"signature", hex_encode(tpm::marshal_signature(a.signature))}};
    const std::string text = j.dump();
    return Bytes(text.begin(), text.end());
}

MidApproval decode_stored_approval(ByteView b) {
    try {
        const json j = json::parse(b.begin(), b.end());
        MidApproval a;
        a.pcrs = decode_pcrs(j.at("pcrs"));
        a.auth_value = j.at("auth_value");
        a.approved_policy = hex_decode(j.at("approved_policy").get<std::string>(), "approval");
        a.policy_ref = hex_decode(j.at("policy_ref").get<std::string>(), "approval");
        a.authority = tpm::unmarshal_public(
            hex_decode(j.at("authority").get<std::string>(), "approval"), "approval");
        a.signature = tpm::unmarshal_signature(
            hex_decode(j.at("signature").get<std::string>(), "approval"), "approval");
        return a;
    } catch (const std::exception& e) {
        throw TeError(ErrorCode::StateCorrupt,
                      std::string("a stored approval is unreadable: ") + e.what());
    }
}

bool same_pcr_values(const tpm::PcrValues& approved, const tpm::PcrValues& current) {
    if (approved.bank != current.bank) {
        return false;
    }
    for (const auto& [pcr, value] : approved.values) {
        const auto it = current.values.find(pcr);
        if (it == current.values.end() || it->second != value) {
            return false;
        }
    }
    return true;
}

} // namespace tresim::te
