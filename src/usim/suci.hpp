#pragma once
// SUCI: the Subscription Concealed Identifier (TS 33.501 §6.12 and Annex C,
// string form TS 23.003 §2.2B), for the null scheme and ECIES profiles A
// (X25519) and B (secp256r1, compressed ephemeral point).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "bytes.hpp"
#include "secret.hpp"

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
    std::string text;    // suci-0-<mcc>-<mnc>-<ri>-<scheme>-<key id>-<scheme output>
                         // (conceal_nai: the NAI form of TS 23.003 §28.7.3)
    Bytes scheme_output; // null: the MSIN's BCD bytes; A/B: eph key || ciphertext || MAC tag
};

// UE side for an IMSI-type SUPI. msin is the IMSI's digits after MCC and MNC.
// The ephemeral private key is random unless given (32 bytes; for tests).
Suci conceal_imsi(const SuciParams& params, std::string_view msin,
                  const std::optional<SecretBytes>& eph_private_key = std::nullopt);

// UE side for a network-specific-identifier SUPI "username@realm" (SUPI type 1). The
// scheme input is the username's bytes; params.mcc_mnc is not used (the realm is the home
// network identifier). scheme_output is as for conceal_imsi (null: the username's bytes);
// text is the SUCI in NAI form (TS 23.003 §28.7.3), hex in upper case as TS 33.501 Annex
// C.4 writes it:
//   type1.rid<ri>.schid0.userid<username>@<realm>                              (null)
//   type1.rid<ri>.schid<1|2>.hnkey<key id>.ecckey<hex>.cip<hex>.mac<hex>@<realm>  (A, B)
// InvalidArgument("nai") when nai is not username@realm.
Suci conceal_nai(const SuciParams& params, std::string_view nai,
                 const std::optional<SecretBytes>& eph_private_key = std::nullopt);

// Home network side (SIDF), for tests and the provisioning server: recovers the
// scheme input (the BCD-coded MSIN for IMSI, the username's bytes for an NAI) from the
// scheme output; nullopt when the MAC tag does not verify. InvalidArgument("scheme-output")
// when malformed, InvalidArgument("hn-private-key") when the key is not 32 bytes.
std::optional<Bytes> deconceal(SuciProfile profile, ByteView hn_private_key,
                               ByteView scheme_output);

// The MSIN's digits as TS 24.501 BCD (two digits a byte, low nibble first, 0xF fill).
Bytes bcd_encode(std::string_view digits); // InvalidArgument("msin") on a non-digit

} // namespace tresim::usim
