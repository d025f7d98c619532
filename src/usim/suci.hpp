#pragma once
// SUCI: the Subscription Concealed Identifier (TS 33.501 §6.12 and Annex C,
// string form TS 23.003 §2.2B), for the null scheme and ECIES profiles A
// (X25519) and B (secp256r1, compressed ephemeral point).

#include "bytes.hpp"
#include "secret.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tresim::usim {

enum class SuciProfile { Null = 0, A = 1, B = 2 }; // the protection scheme identifier

// "null", "A", "B" (also "a", "b", "0", "1", "2"); InvalidArgument("profile").
SuciProfile parse_suci_profile(std::string_view text);

struct SuciParams {
    SuciProfile profile = SuciProfile::Null;
    std::string mcc_mnc;                 // 5 or 6 digits (MCC then MNC)
    std::string routing_indicator = "0"; // 1 to 4 digits
    std::uint8_t hn_key_id = 0;          // 0 for the null scheme
    Bytes hn_public_key;                 // A: 32 bytes; B: 33 (compressed) or 65 bytes
    void validate() const;               // InvalidArgument naming the field
};

struct Suci {
    std::string text;   // suci-0-<mcc>-<mnc>-<ri>-<scheme>-<key id>-<scheme output>
    Bytes scheme_output; // null: the MSIN's BCD bytes; A/B: eph key || ciphertext || MAC tag
};

// UE side for an IMSI-type SUPI. msin is the IMSI's digits after MCC and MNC.
// The ephemeral private key is random unless given (32 bytes; for tests).
Suci conceal_imsi(const SuciParams& params, std::string_view msin,
                  const std::optional<SecretBytes>& eph_private_key = std::nullopt);

// Home network side (SIDF), for tests and the provisioning server: recovers the
// scheme input (the BCD-coded MSIN for IMSI) from the scheme output; nullopt when
// the MAC tag does not verify. InvalidArgument("scheme-output") when malformed.
std::optional<Bytes> deconceal(SuciProfile profile, ByteView hn_private_key,
                               ByteView scheme_output);

// The MSIN's digits as TS 24.501 BCD (two digits a byte, low nibble first, 0xF fill).
Bytes bcd_encode(std::string_view digits); // InvalidArgument("msin") on a non-digit

} // namespace tresim::usim
