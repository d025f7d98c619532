#pragma once
// JWS compact serialization (RFC 7515) with ES256 only (RFC 7518 §3.4: P-256,
// SHA-256, the signature as raw r || s, 64 bytes): how the Provisioning Server
// signs instructions (docs/protocol.md §3). Keys are tpm::PolicyAuthority
// (ECC P-256, PEM in and out).

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tpm/policy.hpp"
#include "usim/bytes.hpp"

namespace tresim::protocol {

// Why a JWS was refused; reason() is one of "malformed", "unsigned" (alg is
// not ES256, e.g. "none"), "unknown-key" (no trusted key has the header's
// kid), "bad-signature". what() is a sentence for logs.
class JwsError : public std::runtime_error {
public:
    JwsError(std::string reason, const std::string& message)
        : std::runtime_error(message), reason_(std::move(reason)) {}
    const std::string& reason() const noexcept { return reason_; }

private:
    std::string reason_;
};

// RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-256 public key: the kid.
std::string jwk_thumbprint(const tpm::PolicyAuthority& key);

// Signs `payload` (serialized compactly) with header
// {"alg":"ES256","typ":typ,"kid":jwk_thumbprint(key)}. `key` must have its
// private part (InvalidArgument("signing-key") otherwise).
std::string jws_sign(const nlohmann::json& payload, const tpm::PolicyAuthority& key,
                     std::string_view typ);

struct VerifiedJws {
    nlohmann::json header;
    nlohmann::json payload;
    std::size_t key_index = 0; // which trusted key verified it
};

// Verifies a compact JWS against the trusted keys (selected by kid) and
// returns its parsed header and payload (the payload must be a JSON object).
// Throws JwsError. The typ is checked when `typ` is not empty ("malformed").
VerifiedJws jws_verify(std::string_view compact, const std::vector<tpm::PolicyAuthority>& trusted,
                       std::string_view typ);

} // namespace tresim::protocol
