// SUCI against every TS 33.501 Annex C.4 test set (tests/vectors/suci.json), the string
// and NAI forms of TS 23.003, the home network side, and input validation.

#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "usim/bytes.hpp"
#include "usim/suci.hpp"
#include "vectors.hpp"

namespace {

using namespace tresim;
using namespace tresim::usim;
using nlohmann::json;

// Not given by Annex C.4; chosen values that show up in the SUCI text.
constexpr const char* kRoutingIndicator = "678";
constexpr std::uint8_t kKeyId = 27;

std::string field(const json& set, const char* name) {
    return set.at(name).get<std::string>();
}

Bytes bytes(const json& set, const char* name) {
    return hex_decode(field(set, name), name);
}

void expect_invalid(const std::function<void()>& f, const std::string& argument) {
    try {
        f();
        ADD_FAILURE() << "no InvalidArgument for " << argument;
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), argument) << e.what();
    }
}

const json& sets() {
    static const json all = tresim::test::load_vectors("suci.json");
    return all.at("suci");
}

const json& set_named(const std::string& name) {
    for (const json& set : sets()) {
        if (field(set, "name") == name) {
            return set;
        }
    }
    throw std::runtime_error("no SUCI set " + name);
}

std::string scheme_digit(SuciProfile p) {
    return std::to_string(static_cast<int>(p));
}

// The home network public keys a set offers: A has one, B a compressed and an
// uncompressed encoding of the same point (either must give the same SUCI).
std::vector<Bytes> hn_public_keys(const json& set) {
    if (set.contains("hn_public_key")) {
        return {bytes(set, "hn_public_key")};
    }
    return {bytes(set, "hn_public_key_compressed"), bytes(set, "hn_public_key_uncompressed")};
}

SuciParams params_for(const json& set, const Bytes& hn_public_key) {
    SuciParams p;
    p.profile = parse_suci_profile(field(set, "profile"));
    if (set.contains("mcc_mnc")) {
        p.mcc_mnc = field(set, "mcc_mnc");
    }
    p.routing_indicator = kRoutingIndicator;
    p.hn_key_id = p.profile == SuciProfile::Null ? 0 : kKeyId;
    p.hn_public_key = hn_public_key;
    return p;
}

// eph public key || ciphertext || MAC tag, from the set's listed parts.
Bytes listed_scheme_output(const json& set) {
    Bytes out = bytes(set, "eph_public_key");
    const Bytes ct = bytes(set, "ciphertext");
    const Bytes tag = bytes(set, "mac_tag");
    out.insert(out.end(), ct.begin(), ct.end());
    out.insert(out.end(), tag.begin(), tag.end());
    return out;
}

void expect_tampering_detected(SuciProfile profile, const Bytes& hn_private_key,
                               const Bytes& scheme_output, std::size_t eph_size) {
    // One flipped bit anywhere in the ciphertext or the tag makes the MAC fail.
    for (std::size_t i = eph_size; i < scheme_output.size(); ++i) {
        for (const std::uint8_t bit : {0x01, 0x80}) {
            Bytes tampered = scheme_output;
            tampered[i] ^= bit;
            EXPECT_EQ(deconceal(profile, hn_private_key, tampered), std::nullopt)
                << "byte " << i << " bit " << int(bit);
        }
    }
}

TEST(Suci, TheVectorFileHoldsEveryAnnexC4Set) {
    std::set<std::string> clauses;
    for (const json& set : sets()) {
        clauses.insert(field(set, "clause"));
    }
    EXPECT_EQ(clauses, (std::set<std::string>{"C.4.2.1", "C.4.2.2", "C.4.3.1", "C.4.3.2", "C.4.4.1",
                                              "C.4.4.2"}));
}

TEST(Suci, EciesImsiSetsGiveTheOfficialSchemeOutputAndText) {
    int checked = 0;
    for (const json& set : sets()) {
        if (field(set, "supi_type") != "IMSI" || field(set, "profile") == "null") {
            continue;
        }
        SCOPED_TRACE(field(set, "name"));
        const auto eph = SecretBytes::from_hex(field(set, "eph_private_key"), "eph");
        for (const Bytes& hn_key : hn_public_keys(set)) {
            const SuciParams p = params_for(set, hn_key);
            const Suci suci = conceal_imsi(p, field(set, "msin"), eph);
            EXPECT_EQ(hex_encode(suci.scheme_output), field(set, "scheme_output_hex"));
            EXPECT_EQ(suci.scheme_output, listed_scheme_output(set));
            EXPECT_EQ(suci.text, "suci-0-274-012-678-" + scheme_digit(p.profile) + "-27-" +
                                     field(set, "scheme_output_hex"));
            ++checked;
        }
    }
    EXPECT_EQ(checked, 3); // A, B compressed key, B uncompressed key
}

TEST(Suci, EciesNaiSetsGiveTheOfficialSchemeOutputInNaiForm) {
    int checked = 0;
    for (const json& set : sets()) {
        if (field(set, "supi_type") != "NAI" || field(set, "profile") == "null") {
            continue;
        }
        SCOPED_TRACE(field(set, "name"));
        const auto eph = SecretBytes::from_hex(field(set, "eph_private_key"), "eph");
        for (const Bytes& hn_key : hn_public_keys(set)) {
            const SuciParams p = params_for(set, hn_key);
            const Suci suci = conceal_nai(p, field(set, "supi"), eph);
            EXPECT_EQ(suci.scheme_output, listed_scheme_output(set));
            EXPECT_EQ(suci.text, "type1.rid678.schid" + scheme_digit(p.profile) + ".hnkey27." +
                                     field(set, "scheme_output_nai") + "@3gpp.com");
            ++checked;
        }
    }
    EXPECT_EQ(checked, 3);
}

TEST(Suci, HomeNetworkRecoversTheSchemeInputOfEveryEciesSet) {
    int checked = 0;
    for (const json& set : sets()) {
        if (field(set, "profile") == "null") {
            continue;
        }
        SCOPED_TRACE(field(set, "name"));
        const SuciProfile profile = parse_suci_profile(field(set, "profile"));
        const auto input =
            deconceal(profile, bytes(set, "hn_private_key"), listed_scheme_output(set));
        ASSERT_TRUE(input.has_value());
        EXPECT_EQ(hex_encode(*input), field(set, "scheme_input"));
        ++checked;
    }
    EXPECT_EQ(checked, 4);
}

TEST(Suci, AFlippedBitInCiphertextOrTagMakesDeconcealFail) {
    for (const json& set : sets()) {
        if (field(set, "profile") == "null") {
            continue;
        }
        SCOPED_TRACE(field(set, "name"));
        const SuciProfile profile = parse_suci_profile(field(set, "profile"));
        expect_tampering_detected(profile, bytes(set, "hn_private_key"), listed_scheme_output(set),
                                  bytes(set, "eph_public_key").size());
    }
}

TEST(Suci, DeconcealWithTheWrongHomeNetworkKeyFails) {
    const json& set = set_named("suci-profilea-imsi");
    Bytes wrong = bytes(set, "hn_private_key");
    wrong[5] ^= 0x10;
    EXPECT_EQ(deconceal(SuciProfile::A, wrong, bytes(set, "scheme_output_hex")), std::nullopt);
}

TEST(Suci, NullSchemeImsiCarriesTheBcdMsinAndWritesTheDigits) {
    const json& set = set_named("suci-null-imsi");
    const SuciParams p = params_for(set, {});
    const Suci suci = conceal_imsi(p, field(set, "msin"));
    EXPECT_EQ(hex_encode(suci.scheme_output), field(set, "scheme_output_hex"));
    EXPECT_EQ(suci.text, "suci-0-274-012-678-0-0-001002086");
    EXPECT_EQ(deconceal(SuciProfile::Null, {}, suci.scheme_output), bytes(set, "scheme_input"));
}

TEST(Suci, NullSchemeNaiWritesTheUsername) {
    const json& set = set_named("suci-null-nai");
    const SuciParams p = params_for(set, {});
    const Suci suci = conceal_nai(p, field(set, "supi"));
    EXPECT_EQ(hex_encode(suci.scheme_output), field(set, "scheme_input"));
    EXPECT_EQ(suci.text, "type1.rid678.schid0." + field(set, "scheme_output_nai") + "@3gpp.com");
}

TEST(Suci, TwoDigitMncIsWrittenAsGiven) {
    SuciParams p;
    p.mcc_mnc = "20893";
    p.routing_indicator = "0";
    EXPECT_EQ(conceal_imsi(p, "0000000001").text, "suci-0-208-93-0-0-0-0000000001");
}

TEST(Suci, SharedSampleSetsAgree) {
    const json sample = tresim::test::load_shared_sample();
    if (sample.is_null() || !sample.contains("suci")) {
        GTEST_SKIP() << "../shared/vectors/sample.json not present";
    }
    for (const json& set : sample.at("suci")) {
        SCOPED_TRACE(field(set, "name"));
        const auto eph = SecretBytes::from_hex(field(set, "eph_private_key"), "eph");
        for (const Bytes& hn_key : hn_public_keys(set)) {
            const Suci suci = conceal_imsi(params_for(set, hn_key), field(set, "msin"), eph);
            EXPECT_EQ(hex_encode(suci.scheme_output), field(set, "scheme_output_hex"));
        }
        const auto input = deconceal(parse_suci_profile(field(set, "profile")),
                                     bytes(set, "hn_private_key"), bytes(set, "scheme_output_hex"));
        ASSERT_TRUE(input.has_value());
        EXPECT_EQ(hex_encode(*input), field(set, "scheme_input"));
    }
}

TEST(Suci, ARandomEphemeralKeyGivesAFreshOutputThatStillDeconceals) {
    for (const char* name : {"suci-profilea-imsi", "suci-profileb-imsi"}) {
        SCOPED_TRACE(name);
        const json& set = set_named(name);
        const SuciParams p = params_for(set, hn_public_keys(set).front());
        const Suci first = conceal_imsi(p, field(set, "msin"));
        const Suci second = conceal_imsi(p, field(set, "msin"));
        EXPECT_NE(first.scheme_output, second.scheme_output);
        EXPECT_NE(first.text, second.text);
        EXPECT_NE(hex_encode(first.scheme_output), field(set, "scheme_output_hex"));
        EXPECT_EQ(first.scheme_output.size(), bytes(set, "scheme_output_hex").size());
        for (const Suci& s : {first, second}) {
            const auto input = deconceal(p.profile, bytes(set, "hn_private_key"), s.scheme_output);
            ASSERT_TRUE(input.has_value());
            EXPECT_EQ(hex_encode(*input), field(set, "scheme_input"));
        }
    }
}

TEST(Suci, EncodesDigitsAsBcdLowNibbleFirst) {
    EXPECT_EQ(hex_encode(bcd_encode("001002086")), "00012080f6");
    EXPECT_EQ(hex_encode(bcd_encode("1234")), "2143");
    EXPECT_EQ(hex_encode(bcd_encode("7")), "f7");
    expect_invalid([] { bcd_encode("12a4"); }, "msin");
    expect_invalid([] { bcd_encode(""); }, "msin");
}

TEST(Suci, ParsesEveryProfileSpelling) {
    for (const char* t : {"null", "0"}) {
        EXPECT_EQ(parse_suci_profile(t), SuciProfile::Null) << t;
    }
    for (const char* t : {"A", "a", "1"}) {
        EXPECT_EQ(parse_suci_profile(t), SuciProfile::A) << t;
    }
    for (const char* t : {"B", "b", "2"}) {
        EXPECT_EQ(parse_suci_profile(t), SuciProfile::B) << t;
    }
    for (const char* t : {"C", "3", "", "profile-a"}) {
        expect_invalid([t] { parse_suci_profile(t); }, "profile");
    }
}

TEST(Suci, RejectsABadMccMnc) {
    for (const char* bad : {"", "2740", "2740123", "27401a", "274-12"}) {
        SuciParams p;
        p.mcc_mnc = bad;
        expect_invalid([&] { conceal_imsi(p, "001002086"); }, "mcc-mnc");
    }
}

TEST(Suci, RejectsAnMsinThatIsNotDigitsOrTooLong) {
    SuciParams p;
    p.mcc_mnc = "274012";
    expect_invalid([&] { conceal_imsi(p, "00100208x"); }, "msin");
    expect_invalid([&] { conceal_imsi(p, ""); }, "msin");
    expect_invalid([&] { conceal_imsi(p, "0010020861"); }, "msin"); // 16 IMSI digits
    const json& set = set_named("suci-profilea-imsi");
    const SuciParams a = params_for(set, bytes(set, "hn_public_key"));
    expect_invalid([&] { conceal_imsi(a, "0010 2086"); }, "msin");
}

TEST(Suci, RejectsAHomeNetworkKeyOfTheWrongLengthOrNotOnTheCurve) {
    const json& a = set_named("suci-profilea-imsi");
    const json& b = set_named("suci-profileb-imsi");
    for (const std::size_t n : {0, 31, 33}) {
        const SuciParams p = params_for(a, Bytes(n, 9));
        expect_invalid([&] { conceal_imsi(p, "001002086"); }, "hn-public-key");
    }
    for (const std::size_t n : {0, 32, 64, 66}) {
        const SuciParams p = params_for(b, Bytes(n, 2));
        expect_invalid([&] { conceal_imsi(p, "001002086"); }, "hn-public-key");
    }
    Bytes off_curve = bytes(b, "hn_public_key_uncompressed");
    off_curve.back() ^= 0x01;
    const SuciParams p = params_for(b, off_curve);
    expect_invalid([&] { conceal_imsi(p, "001002086"); }, "hn-public-key");
    // An X25519 point of small order gives an all-zero secret: refused.
    const SuciParams small_order = params_for(a, Bytes(32, 0));
    expect_invalid([&] { conceal_imsi(small_order, "001002086"); }, "hn-public-key");
}

TEST(Suci, RejectsAnUnknownProfileAndBadOtherFields) {
    const json& a = set_named("suci-profilea-imsi");
    SuciParams p = params_for(a, bytes(a, "hn_public_key"));
    p.profile = static_cast<SuciProfile>(7);
    expect_invalid([&] { p.validate(); }, "profile");
    expect_invalid([&] { conceal_imsi(p, "001002086"); }, "profile");
    expect_invalid([&] { deconceal(p.profile, Bytes(32, 1), Bytes(50, 1)); }, "profile");

    for (const char* ri : {"", "12345", "1a"}) {
        SuciParams q = params_for(a, bytes(a, "hn_public_key"));
        q.routing_indicator = ri;
        expect_invalid([&] { q.validate(); }, "routing-indicator");
    }
    SuciParams null_with_key;
    null_with_key.mcc_mnc = "274012";
    null_with_key.hn_key_id = 3;
    expect_invalid([&] { null_with_key.validate(); }, "hn-key-id");
}

TEST(Suci, RejectsABadEphemeralKey) {
    const json& a = set_named("suci-profilea-imsi");
    const json& b = set_named("suci-profileb-imsi");
    const SuciParams pa = params_for(a, bytes(a, "hn_public_key"));
    const SuciParams pb = params_for(b, bytes(b, "hn_public_key_compressed"));
    expect_invalid([&] { conceal_imsi(pa, "001002086", SecretBytes(Bytes(31, 1))); },
                   "eph-private-key");
    expect_invalid([&] { conceal_imsi(pb, "001002086", SecretBytes(Bytes(32, 0))); },
                   "eph-private-key");
    expect_invalid([&] { conceal_imsi(pb, "001002086", SecretBytes(Bytes(32, 0xff))); },
                   "eph-private-key");
}

TEST(Suci, RejectsAMalformedSchemeOutputOrHomeNetworkPrivateKey) {
    const json& a = set_named("suci-profilea-imsi");
    const json& b = set_named("suci-profileb-imsi");
    expect_invalid([&] { deconceal(SuciProfile::A, bytes(a, "hn_private_key"), Bytes(40, 1)); },
                   "scheme-output");
    expect_invalid([&] { deconceal(SuciProfile::B, bytes(b, "hn_private_key"), Bytes(41, 1)); },
                   "scheme-output");
    expect_invalid([] { deconceal(SuciProfile::Null, {}, {}); }, "scheme-output");
    // The B output must start with a compressed point of the curve.
    Bytes not_a_point = bytes(b, "scheme_output_hex");
    not_a_point[0] = 0x05;
    expect_invalid([&] { deconceal(SuciProfile::B, bytes(b, "hn_private_key"), not_a_point); },
                   "scheme-output");
    expect_invalid([&] { deconceal(SuciProfile::A, Bytes(31, 1), bytes(a, "scheme_output_hex")); },
                   "hn-private-key");
}

TEST(Suci, RejectsAnNaiWithoutUsernameAndRealm) {
    const json& set = set_named("suci-null-nai");
    const SuciParams p = params_for(set, {});
    for (const char* bad : {"verylongusername1", "@3gpp.com", "user@", "a@b@c"}) {
        expect_invalid([&] { conceal_nai(p, bad); }, "nai");
    }
}

} // namespace
