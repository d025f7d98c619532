#include "jws.hpp"

#include <memory>
#include <optional>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "base64url.hpp"

namespace tresim::protocol {
namespace {

using nlohmann::json;

constexpr std::size_t kCoordinate = 32; // P-256

struct EcdsaSigFree {
    void operator()(ECDSA_SIG* s) const noexcept { ECDSA_SIG_free(s); }
};
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

ByteView as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// DER ECDSA-Sig-Value -> r || s (32 bytes each).
Bytes der_to_raw(const Bytes& der) {
    const unsigned char* p = der.data();
    EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig || p != der.data() + der.size()) {
        throw std::runtime_error("ECDSA signing produced no DER signature");
    }
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    Bytes raw(2 * kCoordinate);
    if (BN_bn2binpad(r, raw.data(), kCoordinate) != static_cast<int>(kCoordinate) ||
        BN_bn2binpad(s, raw.data() + kCoordinate, kCoordinate) != static_cast<int>(kCoordinate)) {
        throw std::runtime_error("ECDSA signature values are longer than 32 bytes");
    }
    return raw;
}

// r || s -> DER ECDSA-Sig-Value.
Bytes raw_to_der(ByteView raw) {
    EcdsaSigPtr sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(raw.data(), kCoordinate, nullptr);
    BIGNUM* s = BN_bin2bn(raw.data() + kCoordinate, kCoordinate, nullptr);
    if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        throw std::runtime_error("cannot build an ECDSA signature");
    }
    const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (len <= 0) {
        throw std::runtime_error("cannot encode an ECDSA signature");
    }
    Bytes der(static_cast<std::size_t>(len));
    unsigned char* p = der.data();
    if (i2d_ECDSA_SIG(sig.get(), &p) != len) {
        throw std::runtime_error("cannot encode an ECDSA signature");
    }
    return der;
}

[[noreturn]] void malformed(const std::string& why) {
    throw JwsError("malformed", "the JWS is malformed: " + why);
}

json decode_json_part(std::string_view part, const char* name) {
    Bytes raw;
    try {
        raw = b64url_decode(part, name);
    } catch (const InvalidArgument& e) {
        malformed(e.what());
    }
    try {
        return json::parse(raw.begin(), raw.end());
    } catch (const json::exception&) {
        malformed(std::string("its ") + name + " is not JSON");
    }
}

bool verify_es256(EVP_PKEY* key, std::string_view signing_input, ByteView raw_signature) {
    const Bytes der = raw_to_der(raw_signature);
    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) {
        throw std::runtime_error("EVP_DigestVerifyInit failed");
    }
    const ByteView in = as_bytes(signing_input);
    return EVP_DigestVerify(ctx.get(), der.data(), der.size(), in.data(), in.size()) == 1;
}

} // namespace

std::string jwk_thumbprint(const tpm::PolicyAuthority& key) {
    const TPMS_ECC_POINT point = tpm::ecc_point(key.pkey());
    // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
    const std::string jwk = R"({"crv":"P-256","kty":"EC","x":")" +
                            b64url_encode(ByteView(point.x.buffer, point.x.size)) + R"(","y":")" +
                            b64url_encode(ByteView(point.y.buffer, point.y.size)) + R"("})";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(jwk.data(), jwk.size(), md, &len, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(SHA-256) failed");
    }
    return b64url_encode(ByteView(md, len));
}

std::string jws_sign(const nlohmann::json& payload, const tpm::PolicyAuthority& key,
                     std::string_view typ) {
    if (!key.has_private()) {
        throw InvalidArgument("signing-key", "is a public key; signing needs the private key");
    }
    const json header = {{"alg", "ES256"}, {"typ", std::string(typ)}, {"kid", jwk_thumbprint(key)}};
    const std::string signing_input =
        b64url_encode(as_bytes(header.dump())) + "." + b64url_encode(as_bytes(payload.dump()));
    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.pkey()) != 1) {
        throw std::runtime_error("EVP_DigestSignInit failed");
    }
    const ByteView in = as_bytes(signing_input);
    std::size_t len = 0;
    if (EVP_DigestSign(ctx.get(), nullptr, &len, in.data(), in.size()) != 1) {
        throw std::runtime_error("EVP_DigestSign failed");
    }
    Bytes der(len);
    if (EVP_DigestSign(ctx.get(), der.data(), &len, in.data(), in.size()) != 1) {
        throw std::runtime_error("EVP_DigestSign failed");
    }
    der.resize(len);
    return signing_input + "." + b64url_encode(der_to_raw(der));
}

VerifiedJws jws_verify(std::string_view compact, const std::vector<tpm::PolicyAuthority>& trusted,
                       std::string_view typ) {
    const std::size_t dot1 = compact.find('.');
    const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : compact.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || compact.find('.', dot2 + 1) != std::string_view::npos) {
        malformed("compact serialization needs exactly three parts");
    }
    const std::string_view header_part = compact.substr(0, dot1);
    const std::string_view payload_part = compact.substr(dot1 + 1, dot2 - dot1 - 1);
    const std::string_view signature_part = compact.substr(dot2 + 1);

    VerifiedJws out;
    out.header = decode_json_part(header_part, "header");
    if (!out.header.is_object()) {
        malformed("its header is not a JSON object");
    }
    const auto alg = out.header.find("alg");
    if (alg == out.header.end() || !alg->is_string()) {
        malformed("its header has no \"alg\"");
    }
    if (*alg != "ES256") {
        throw JwsError("unsigned", "the JWS is not signed with ES256 (alg \"" +
                                       alg->get<std::string>().substr(0, 16) + "\")");
    }
    if (out.header.contains("crit")) {
        malformed("its header has \"crit\" extensions this verifier does not know");
    }
    if (!typ.empty()) {
        const auto t = out.header.find("typ");
        if (t == out.header.end() || !t->is_string() || *t != typ) {
            malformed("its typ is not \"" + std::string(typ) + "\"");
        }
    }
    std::optional<std::string> kid;
    if (const auto k = out.header.find("kid"); k != out.header.end()) {
        if (!k->is_string()) {
            malformed("its kid is not a string");
        }
        kid = k->get<std::string>();
    }
    Bytes signature;
    try {
        signature = b64url_decode(signature_part, "signature");
    } catch (const InvalidArgument& e) {
        malformed(e.what());
    }
    if (signature.size() != 2 * kCoordinate) {
        malformed("an ES256 signature is 64 bytes, this one " + std::to_string(signature.size()));
    }
    out.payload = decode_json_part(payload_part, "payload");
    if (!out.payload.is_object()) {
        malformed("its payload is not a JSON object");
    }

    const std::string_view signing_input = compact.substr(0, dot2);
    bool candidate = false;
    for (std::size_t i = 0; i < trusted.size(); ++i) {
        if (kid && jwk_thumbprint(trusted[i]) != *kid) {
            continue;
        }
        candidate = true;
        if (verify_es256(trusted[i].pkey(), signing_input, signature)) {
            out.key_index = i;
            return out;
        }
    }
    if (!candidate) {
        throw JwsError("unknown-key", "the JWS is signed by a key that is not trusted (kid " +
                                          kid.value_or("").substr(0, 64) + ")");
    }
    throw JwsError("bad-signature", "the JWS signature does not verify");
}

} // namespace tresim::protocol
