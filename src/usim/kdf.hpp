#pragma once
// Key derivations: the TS 33.220 Annex B.2 KDF and what 5G and EAP-AKA' build on
// it (TS 33.501 Annex A, TS 33.402 Annex A.2 / RFC 5448).

#include <initializer_list>
#include <string>
#include <string_view>

#include "aka_algorithm.hpp"

namespace tresim::usim {

// HMAC-SHA-256(key, FC || P0 || L0 || P1 || L1 || ...), Li the 2-byte length of Pi.
SecretBytes kdf(ByteView key, std::uint8_t fc, std::initializer_list<ByteView> params);

// HMAC-SHA-256(key, data[0] || data[1] || ...): the primitive under kdf(), also used by
// the SUCI MAC tag. The result is 32 bytes.
SecretBytes hmac_sha256(ByteView key, std::initializer_list<ByteView> data);

// "5G:mnc<MNC 3 digits>.mcc<MCC>.3gppnetwork.org" (TS 24.501 §9.12.1); MNC of 2 or
// 3 digits (a 2-digit MNC is written with a leading zero). InvalidArgument("mcc-mnc").
std::string serving_network_name(std::string_view mcc, std::string_view mnc);

// RES* / XRES* (TS 33.501 A.4): FC 0x6B, key CK||IK, P0 serving network name,
// P1 RAND, P2 RES; the low-order 128 bits of the KDF output.
Bytes derive_res_star(ByteView ck, ByteView ik, std::string_view serving_network_name,
                      const Rand& rand, ByteView res);
// HXRES* (TS 33.501 A.5): the low-order 128 bits of SHA-256(RAND || XRES*).
Bytes derive_hxres_star(const Rand& rand, ByteView xres_star);
// KAUSF (TS 33.501 A.2): FC 0x6A, key CK||IK, P0 serving network name, P1 SQN xor AK.
SecretBytes derive_kausf(ByteView ck, ByteView ik, std::string_view serving_network_name,
                         const Ak& sqn_xor_ak);
// KSEAF (TS 33.501 A.6): FC 0x6C, key KAUSF, P0 serving network name.
SecretBytes derive_kseaf(ByteView kausf, std::string_view serving_network_name);

struct CkIkPrime {
    SecretBytes ck_prime;
    SecretBytes ik_prime;
};
// CK' and IK' (TS 33.402 A.2, RFC 5448 §3.3): FC 0x20, key CK||IK, P0 access
// network identity, P1 SQN xor AK; CK' the first 128 bits, IK' the last.
CkIkPrime derive_ck_ik_prime(ByteView ck, ByteView ik, std::string_view access_network_identity,
                             const Ak& sqn_xor_ak);

} // namespace tresim::usim
