// libtresim-protocol: base64url (RFC 4648), ES256 JWS (RFC 7515/7518/7638) and
// TCG PC Client crypto-agile event logs. Expected values come from the RFCs or
// from independent computations (python3 `cryptography`, plain EVP SHA-256),
// never from the code under test.

#include <cstring>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "protocol/base64url.hpp"
#include "protocol/eventlog.hpp"
#include "protocol/jws.hpp"
#include "tpm/policy.hpp"

namespace {

using namespace tresim;
using namespace tresim::protocol;

Bytes text_bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

// ---- base64url ---------------------------------------------------------------

TEST(Base64url, EncodesTheRfc4648TestVectorsWithoutPadding) {
    // RFC 4648 §10, padding removed (§5 / §3.2).
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    for (const auto& [plain, encoded] : vectors) {
        EXPECT_EQ(b64url_encode(text_bytes(plain)), encoded) << plain;
        EXPECT_EQ(b64url_decode(encoded, "x"), text_bytes(plain)) << encoded;
    }
}

TEST(Base64url, UsesTheUrlSafeAlphabet) {
    // base64 of fb ff is "+/8=": the URL alphabet has '-' and '_' instead.
    EXPECT_EQ(b64url_encode(Bytes{0xfb, 0xff}), "-_8");
    EXPECT_EQ(b64url_decode("-_8", "x"), (Bytes{0xfb, 0xff}));
}

TEST(Base64url, RefusesBadTextNamingTheField) {
    for (const char* bad : {"Zg==", "Z", "Zh", "Zm9v+A", "Zm9v/A", "Zm 9v", "Zm9v\n"}) {
        try {
            b64url_decode(bad, "nonce");
            ADD_FAILURE() << "accepted " << bad;
        } catch (const InvalidArgument& e) {
            EXPECT_EQ(e.argument(), "nonce") << bad;
        }
    }
}

// ---- JWS ---------------------------------------------------------------------

// RFC 7515 Appendix A.3: the P-256 key (its public part, as python3
// `cryptography` serializes the JWK's x and y) and the ES256 JWS.
constexpr char kA3PublicPem[] = "-----BEGIN PUBLIC KEY-----\n"
                                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEf83OJ3D2xF1Bg8vub9tLe1gHMzV7\n"
                                "6e8Tus9uPHvRVEXH8UTNG72bfocs3+257rn0s2ldbqkLJK2KRiMohYjlrQ==\n"
                                "-----END PUBLIC KEY-----\n";
constexpr char kA3Jws[] =
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
// SHA-256 over {"crv":"P-256","kty":"EC","x":...,"y":...} of that key, computed
// with python3 hashlib.
constexpr char kA3Thumbprint[] = "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U";

tpm::PolicyAuthority a3_key() {
    return tpm::PolicyAuthority::from_pem(text_bytes(kA3PublicPem));
}

std::string jws_reason(std::string_view compact, const std::vector<tpm::PolicyAuthority>& keys,
                       std::string_view typ = {}) {
    try {
        jws_verify(compact, keys, typ);
    } catch (const JwsError& e) {
        return e.reason();
    }
    return "accepted";
}

TEST(Jws, VerifiesTheRfc7515AppendixA3Example) {
    std::vector<tpm::PolicyAuthority> keys;
    keys.push_back(a3_key());
    const VerifiedJws v = jws_verify(kA3Jws, keys, "");
    EXPECT_EQ(v.header, nlohmann::json({{"alg", "ES256"}}));
    EXPECT_EQ(v.payload["iss"], "joe");
    EXPECT_EQ(v.payload["exp"], 1300819380);
    EXPECT_EQ(v.payload["http://example.com/is_root"], true);
    EXPECT_EQ(v.key_index, 0u);
}

TEST(Jws, ThumbprintOfAP256KeyMatchesAnIndependentComputation) {
    EXPECT_EQ(jwk_thumbprint(a3_key()), kA3Thumbprint);
}

TEST(Jws, RefusesATamperedSignatureAsBadSignature) {
    std::string tampered = kA3Jws;
    tampered.back() = 'A'; // 'Q' -> 'A': still canonical, a different s
    std::vector<tpm::PolicyAuthority> keys;
    keys.push_back(a3_key());
    EXPECT_EQ(jws_reason(tampered, keys), "bad-signature");
}

TEST(Jws, RefusesAlgNoneAsUnsigned) {
    const std::string header = b64url_encode(text_bytes(R"({"alg":"none"})"));
    const std::string payload = b64url_encode(text_bytes(R"({"a":1})"));
    std::vector<tpm::PolicyAuthority> keys;
    keys.push_back(a3_key());
    EXPECT_EQ(jws_reason(header + "." + payload + ".", keys), "unsigned");
    const std::string hs256 = b64url_encode(text_bytes(R"({"alg":"HS256"})"));
    EXPECT_EQ(jws_reason(hs256 + "." + payload + ".AAAA", keys), "unsigned");
}

TEST(Jws, RefusesMalformedSerializations) {
    std::vector<tpm::PolicyAuthority> keys;
    keys.push_back(a3_key());
    const std::string a3 = kA3Jws;
    const std::size_t dot = a3.rfind('.');
    EXPECT_EQ(jws_reason(a3.substr(0, dot), keys), "malformed"); // two parts
    EXPECT_EQ(jws_reason(a3 + ".x", keys), "malformed");         // four parts
    EXPECT_EQ(jws_reason("!!." + a3.substr(a3.find('.') + 1), keys), "malformed");
    EXPECT_EQ(jws_reason(a3.substr(0, dot) + ".AAAA", keys), "malformed"); // not 64 bytes
    EXPECT_EQ(jws_reason(a3, keys, "tresim-instruction"), "malformed");    // no typ
    const std::string not_object = b64url_encode(text_bytes("[1]"));
    EXPECT_EQ(jws_reason(a3.substr(0, a3.find('.')) + "." + not_object + a3.substr(dot), keys),
              "malformed");
}

TEST(Jws, SignsWithRawSignatureAndThumbprintKidThatVerify) {
    const tpm::PolicyAuthority key = tpm::PolicyAuthority::generate();
    const nlohmann::json payload = {{"device", "ab"}, {"counter", 17}};
    const std::string jws = jws_sign(payload, key, "tresim-instruction");

    const std::size_t dot = jws.rfind('.');
    EXPECT_EQ(b64url_decode(jws.substr(dot + 1), "sig").size(), 64u);
    std::vector<tpm::PolicyAuthority> keys;
    keys.push_back(tpm::PolicyAuthority::generate());
    keys.push_back(tpm::PolicyAuthority::from_pem(text_bytes(key.public_pem())));
    const VerifiedJws v = jws_verify(jws, keys, "tresim-instruction");
    EXPECT_EQ(v.payload, payload);
    EXPECT_EQ(v.header["alg"], "ES256");
    EXPECT_EQ(v.header["typ"], "tresim-instruction");
    EXPECT_EQ(v.header["kid"], jwk_thumbprint(keys[1]));
    EXPECT_EQ(v.key_index, 1u);

    // Only other keys trusted: unknown-key; a changed payload: bad-signature.
    keys.pop_back();
    EXPECT_EQ(jws_reason(jws, keys), "unknown-key");
    keys.push_back(tpm::PolicyAuthority::from_pem(text_bytes(key.public_pem())));
    const std::string other = b64url_encode(text_bytes(R"({"device":"ab","counter":18})"));
    const std::size_t dot1 = jws.find('.');
    EXPECT_EQ(jws_reason(jws.substr(0, dot1 + 1) + other + jws.substr(dot), keys), "bad-signature");
}

TEST(Jws, SigningNeedsThePrivateKey) {
    const tpm::PolicyAuthority key =
        tpm::PolicyAuthority::from_pem(text_bytes(tpm::PolicyAuthority::generate().public_pem()));
    EXPECT_THROW(jws_sign({{"a", 1}}, key, "x"), InvalidArgument);
}

// ---- event logs --------------------------------------------------------------

Bytes sha256(ByteView data) {
    Bytes out(32);
    unsigned int len = 0;
    EXPECT_EQ(EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr), 1);
    return out;
}

// PCR extension computed here: new = SHA-256(old || digest).
void extend(Bytes& pcr, ByteView digest) {
    Bytes in = pcr;
    in.insert(in.end(), digest.begin(), digest.end());
    pcr = sha256(in);
}

void le32(Bytes& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
}

// A crypto-agile log assembled byte by byte from the TCG PFP spec's layout,
// with SHA-1 and SHA-256 banks and one event for PCR 7.
Bytes hand_made_log(ByteView pcr7_digest_sha256) {
    Bytes spec = text_bytes(std::string_view("Spec ID Event03\0", 16));
    le32(spec, 0);
    spec.insert(spec.end(), {0, 2, 0, 2});
    le32(spec, 2);
    spec.insert(spec.end(), {0x04, 0x00, 20, 0x00, 0x0b, 0x00, 32, 0x00}); // sha1/20, sha256/32
    spec.push_back(0);
    Bytes log;
    le32(log, 0);
    le32(log, 3);
    log.insert(log.end(), 20, 0);
    le32(log, static_cast<std::uint32_t>(spec.size()));
    log.insert(log.end(), spec.begin(), spec.end());
    le32(log, 7);
    le32(log, 0x80000001);
    le32(log, 2);
    log.insert(log.end(), {0x04, 0x00});
    log.insert(log.end(), 20, 0x11);
    log.insert(log.end(), {0x0b, 0x00});
    log.insert(log.end(), pcr7_digest_sha256.begin(), pcr7_digest_sha256.end());
    le32(log, 3);
    log.insert(log.end(), {'a', 'b', 'c'});
    return log;
}

TEST(EventLog, ParsesAHandMadeCryptoAgileLog) {
    const Bytes d = sha256(text_bytes("SecureBoot"));
    const EventLog log = parse_event_log(hand_made_log(d));
    EXPECT_EQ(log.banks, (std::vector<TPMI_ALG_HASH>{TPM2_ALG_SHA1, TPM2_ALG_SHA256}));
    ASSERT_EQ(log.events.size(), 1u);
    EXPECT_EQ(log.events[0].pcr, 7u);
    EXPECT_EQ(log.events[0].type, EV_EFI_VARIABLE_DRIVER_CONFIG);
    EXPECT_EQ(log.events[0].digests.at(TPM2_ALG_SHA256), d);
    EXPECT_EQ(log.events[0].digests.at(TPM2_ALG_SHA1), Bytes(20, 0x11));
    EXPECT_EQ(log.events[0].data, text_bytes("abc"));

    const tpm::PcrValues v = replay(log, tpm::parse_pcr_selection("sha256:0,7"));
    Bytes pcr7(32, 0);
    extend(pcr7, d);
    EXPECT_EQ(v.values.at(7), pcr7);
    EXPECT_EQ(v.values.at(0), Bytes(32, 0));
}

TEST(EventLog, WrittenLogReplaysToAnIndependentlyExtendedState) {
    EventLog log;
    log.banks = {TPM2_ALG_SHA256};
    log.startup_locality = 3;
    std::map<unsigned, Bytes> expected = {
        {0, Bytes(32, 0)}, {2, Bytes(32, 0)}, {4, Bytes(32, 0)}, {7, Bytes(32, 0)}};
    expected[0].back() = 3;
    const std::pair<unsigned, const char*> events[] = {
        {0, "crtm"}, {7, "sb"}, {4, "shim"}, {4, "grub"}, {2, "opt"}, {7, "db"}, {9, "other"}};
    for (const auto& [pcr, what] : events) {
        Event e;
        e.pcr = pcr;
        e.type = EV_EFI_BOOT_SERVICES_APPLICATION;
        e.data = text_bytes(what);
        e.digests[TPM2_ALG_SHA256] = sha256(e.data);
        if (expected.contains(pcr)) {
            extend(expected[pcr], e.digests[TPM2_ALG_SHA256]);
        }
        log.events.push_back(e);
    }
    const Bytes bytes = write_event_log(log);
    const EventLog parsed = parse_event_log(bytes);
    EXPECT_EQ(parsed.startup_locality, 3);
    EXPECT_EQ(parsed.events.size(), log.events.size()); // the locality event is not listed
    const tpm::PcrValues v = replay(parsed, tpm::parse_pcr_selection("sha256:0,2,4,7"));
    EXPECT_EQ(v.values, expected);
}

std::string event_log_error(ByteView bytes) {
    try {
        parse_event_log(bytes);
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "event-log");
        return e.what();
    }
    return "accepted";
}

TEST(EventLog, RefusesTruncatedLogs) {
    const Bytes log = hand_made_log(Bytes(32, 1));
    for (std::size_t cut : {std::size_t{1}, std::size_t{3}, std::size_t{40}, log.size() - 10}) {
        const Bytes shorter(log.begin(), log.end() - static_cast<long>(cut));
        EXPECT_NE(event_log_error(shorter).find("truncated"), std::string::npos) << cut;
    }
    EXPECT_NE(event_log_error(Bytes{}).find("truncated"), std::string::npos);
}

TEST(EventLog, RefusesAWrongHeader) {
    Bytes log = hand_made_log(Bytes(32, 1));
    Bytes bad = log;
    bad[32] = 'X'; // "Spec ID Event03" -> "XpecID..."
    EXPECT_NE(event_log_error(bad).find("Spec ID"), std::string::npos);
    bad = log;
    bad[4] = 1; // header event type EV_POST_CODE instead of EV_NO_ACTION
    EXPECT_NE(event_log_error(bad).find("header"), std::string::npos);
    bad = log;
    bad[32 + 16 + 4 + 4 + 4 + 4] = 0x99; // first algorithm id: unknown
    EXPECT_NE(event_log_error(bad).find("unknown digest algorithm"), std::string::npos);
}

TEST(EventLog, RefusesPcrOutOfRangeAndUnknownBanks) {
    Bytes log = hand_made_log(Bytes(32, 1));
    const std::size_t first_event = 32 + 16 + 4 + 4 + 4 + 8 + 1;
    log[first_event] = 24;
    EXPECT_NE(event_log_error(log).find("PCR 24"), std::string::npos);
    const EventLog ok = parse_event_log(hand_made_log(Bytes(32, 1)));
    EXPECT_THROW(replay(ok, tpm::parse_pcr_selection("sha384:0")), InvalidArgument);
}

} // namespace
