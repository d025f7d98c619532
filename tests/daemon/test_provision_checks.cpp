// The provisioning client's instruction checks (docs/protocol.md §3) against a
// real TE on swtpm: every kind of bad instruction is refused with its reason,
// recorded in the TE's audit log, and nothing of it is executed.

#include <ctime>
#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "protocol/base64url.hpp"
#include "protocol/jws.hpp"
#include "provision.hpp"
#include "swtpm.hpp"
#include "te/te.hpp"

namespace {

using namespace tresim;
using nlohmann::json;

constexpr const char* kDevice = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
constexpr const char* kValidation =
    "0101010101010101010101010101010101010101010101010101010101010101";

class ProvisionChecks : public testing::Test {
protected:
    void SetUp() override {
        dir_ = test::make_temp_dir("tresim-checks-");
        te::TeConfig c;
        c.state_dir = dir_ + "/state";
        c.tcti = swtpm_.tcti();
        te_ = std::make_unique<te::TrustedEnvironment>(c);
        server_.url = "https://ps.test:8443";
        server_.signing_keys.push_back(tpm::PolicyAuthority::generate());
        server_.kids.push_back(protocol::jwk_thumbprint(server_.signing_keys[0]));
        context_.server = &server_;
        context_.device = kDevice;
        context_.now = static_cast<std::int64_t>(std::time(nullptr));
        context_.require_validation = {"install", "update", "policy-update", "switch-slot"};
        context_.validation = kValidation;
    }
    void TearDown() override {
        te_.reset();
        test::remove_tree(dir_);
    }

    json payload(std::uint64_t counter, const std::string& op = "deactivate") {
        return {{"iss", "tresim-ps"},
                {"device", kDevice},
                {"counter", counter},
                {"iat", context_.now},
                {"exp", context_.now + 600},
                {"id", "order-" + std::to_string(counter)},
                {"op", op},
                {"body", {{"iccid", "8949020000000000001"}}}};
    }
    std::string sign(const json& p) {
        return protocol::jws_sign(p, server_.signing_keys[0], "tresim-instruction");
    }

    // Runs one batch; every result must be a refusal with `reason`.
    void expect_refused(const std::vector<std::string>& batch, const std::string& reason) {
        const auto before = refusals();
        const auto results = daemon::process_instructions(batch, context_, *te_);
        ASSERT_EQ(results.size(), batch.size());
        for (const te::InstructionResult& r : results) {
            EXPECT_EQ(r.status, "refused");
            EXPECT_EQ(r.error, reason) << r.message;
        }
        const auto after = refusals();
        ASSERT_EQ(after.size(), before.size() + batch.size()) << te_->export_audit().dump();
        EXPECT_EQ(after.back().at("details").at("reason"), reason);
        EXPECT_FALSE(te_->provisioning_state(server_.kids[0]).has_value() &&
                     te_->provisioning_state(server_.kids[0])->counter > accepted_)
            << "a refused instruction moved the counter";
    }

    std::vector<json> refusals() {
        std::vector<json> out;
        const json audit = te_->export_audit(); // kept alive for the loop
        for (const json& r : audit.at("records")) {
            if (r.at("type") == "instruction-refused") {
                out.push_back(r);
            }
        }
        return out;
    }

    test::Swtpm swtpm_;
    std::string dir_;
    std::unique_ptr<te::TrustedEnvironment> te_;
    daemon::ServerTrust server_;
    daemon::CheckContext context_;
    std::uint64_t accepted_ = 0;
};

TEST_F(ProvisionChecks, AWellFormedInstructionIsExecutedAndMovesTheCounter) {
    const auto results = daemon::process_instructions({sign(payload(3))}, context_, *te_);
    ASSERT_EQ(results.size(), 1u);
    // Executed: the MID does not exist, so the TE's answer is a failure of the
    // operation, not a refusal of the instruction.
    EXPECT_EQ(results[0].status, "failed");
    EXPECT_EQ(results[0].error, "UnknownMid");
    ASSERT_TRUE(te_->provisioning_state(server_.kids[0]));
    EXPECT_EQ(te_->provisioning_state(server_.kids[0])->counter, 3u);
}

TEST_F(ProvisionChecks, GarbageIsMalformed) {
    expect_refused({"not a jws", "a.b", sign(payload(1)) + ".extra"}, "malformed");
}

TEST_F(ProvisionChecks, AlgNoneIsUnsigned) {
    const std::string header = R"({"alg":"none","typ":"tresim-instruction"})";
    const std::string body = payload(1).dump();
    const std::string compact =
        protocol::b64url_encode(
            ByteView(reinterpret_cast<const std::uint8_t*>(header.data()), header.size())) +
        "." +
        protocol::b64url_encode(
            ByteView(reinterpret_cast<const std::uint8_t*>(body.data()), body.size())) +
        ".";
    expect_refused({compact}, "unsigned");
}

TEST_F(ProvisionChecks, AKeyThatIsNotPinnedIsUnknown) {
    const tpm::PolicyAuthority other = tpm::PolicyAuthority::generate();
    expect_refused({protocol::jws_sign(payload(1), other, "tresim-instruction")}, "unknown-key");
}

TEST_F(ProvisionChecks, AnAlteredSignatureIsBad) {
    std::string jws = sign(payload(1));
    char& c = jws[jws.size() - 10];
    c = c == 'A' ? 'B' : 'A';
    expect_refused({jws}, "bad-signature");
    // An altered payload under the original signature too.
    std::string moved = sign(payload(1));
    const auto dot = moved.find('.');
    const json p = payload(99);
    const std::string text = p.dump();
    moved = moved.substr(0, dot + 1) +
            protocol::b64url_encode(
                ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())) +
            moved.substr(moved.rfind('.'));
    expect_refused({moved}, "bad-signature");
}

TEST_F(ProvisionChecks, AnInstructionForAnotherDeviceIsForeign) {
    json p = payload(1);
    p["device"] = std::string(64, 'b');
    expect_refused({sign(p)}, "foreign");
}

TEST_F(ProvisionChecks, OldOrRepeatedCountersAreReplayed) {
    ASSERT_EQ(daemon::process_instructions({sign(payload(5))}, context_, *te_)[0].status,
              "failed"); // executed (no such MID), counter 5 accepted
    accepted_ = 5;
    json same_counter = payload(5);
    same_counter["id"] = "another-order";
    expect_refused({sign(payload(4)), sign(same_counter)}, "replayed");
    // Within one batch, a counter must also exceed the earlier ones.
    const auto results =
        daemon::process_instructions({sign(payload(9)), sign(payload(8))}, context_, *te_);
    EXPECT_EQ(results[0].status, "failed");
    EXPECT_EQ(results[1].status, "refused");
    EXPECT_EQ(results[1].error, "replayed");
    EXPECT_EQ(te_->provisioning_state(server_.kids[0])->counter, 9u);
    // The last accepted instruction, sent again, gets its stored result.
    const auto again = daemon::process_instructions({sign(payload(9))}, context_, *te_);
    EXPECT_EQ(again[0].status, "failed");
    EXPECT_EQ(again[0].error, "UnknownMid");
}

TEST_F(ProvisionChecks, APastExpiryIsExpired) {
    json p = payload(1);
    p["exp"] = context_.now - 1;
    expect_refused({sign(p)}, "expired");
}

TEST_F(ProvisionChecks, OpsThatNeedAValidationNeedThisSessions) {
    json none = payload(1, "update");
    json other = payload(2, "switch-slot");
    other["validation"] = std::string(64, 'f');
    expect_refused({sign(none), sign(other)}, "not-validated");
    // Without a validation in this session even the right-looking one fails.
    context_.validation.clear();
    json stale = payload(3, "install");
    stale["validation"] = kValidation;
    expect_refused({sign(stale)}, "not-validated");
    // With it, the instruction reaches the TE (whose body check then fails).
    context_.validation = kValidation;
    const auto ok = daemon::process_instructions({sign(stale)}, context_, *te_);
    EXPECT_EQ(ok[0].status, "failed");
    EXPECT_EQ(ok[0].error, "InvalidArgument");
}

TEST_F(ProvisionChecks, TheTePolicyFileIsParsedAndCheckedField) {
    EXPECT_TRUE(daemon::parse_te_policy("{}", "p.json").servers.empty());
    const daemon::TePolicy p = daemon::parse_te_policy(
        R"({"provisioning": {"servers": [], "require_validation": ["install"],
            "confirm_within": 30, "poll_interval": 0}})",
        "p.json");
    EXPECT_EQ(p.require_validation, std::set<std::string>{"install"});
    EXPECT_EQ(p.confirm_within, 30u);
    EXPECT_EQ(p.poll_interval, 0u);
    EXPECT_THROW(daemon::parse_te_policy(R"({"provisioning": {"pol_interval": 1}})", "p.json"),
                 std::runtime_error);
    EXPECT_THROW(
        daemon::parse_te_policy(
            R"({"provisioning": {"servers": [{"url": "http://x", "tls_root": "/x", "signing_keys": []}]}})",
            "p.json"),
        std::runtime_error);
}

} // namespace
