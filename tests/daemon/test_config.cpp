// tresimd's configuration file and authorization rules (no bus, no TPM).

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "auth.hpp"
#include "config.hpp"

namespace {

using namespace tresim::daemon;
using testing::HasSubstr;

std::string config_error(const std::string& text) {
    try {
        parse_config(text, "t.conf");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(DaemonConfig, AnEmptyFileGivesTheDocumentedDefaults) {
    const Config c = parse_config("", "t.conf");
    EXPECT_EQ(c.tcti, "device:/dev/tpmrm0");
    EXPECT_EQ(c.computation_mode, "auto");
    EXPECT_EQ(c.state_dir, "/var/lib/tresim");
    EXPECT_EQ(c.sqn_interval, 16u);
    EXPECT_EQ(c.slots, 1u);
    EXPECT_EQ(c.pcrs, "sha256:0,2,4,7");
    EXPECT_EQ(c.pin_retries, 3u);
    EXPECT_EQ(c.puk_retries, 10u);
    EXPECT_EQ(c.polkit, PolkitMode::Auto);
    EXPECT_TRUE(c.manage.empty());
    EXPECT_TRUE(c.provision.empty());
}

TEST(DaemonConfig, TheShippedFileParsesToTheDefaults) {
    const char* vectors = std::getenv("TRESIM_VECTORS_DIR");
    const std::string path =
        std::string(vectors != nullptr ? vectors : "tests/vectors") + "/../../policy/tresimd.conf";
    std::ifstream in(path);
    ASSERT_TRUE(in) << path;
    std::ostringstream text;
    text << in.rdbuf();
    const Config c = parse_config(text.str(), path);
    EXPECT_EQ(c.slots, 1u);
    EXPECT_EQ(c.tcti, "device:/dev/tpmrm0");
}

TEST(DaemonConfig, ValuesAreReadWithCommentsAndBlanks) {
    const Config c = parse_config("# comment\n; another\n[tpm]\n  tcti =  swtpm:port=2321  \n"
                                  "computation_mode = sealed\n[state]\nstate_dir = /tmp/x\n"
                                  "sqn_interval = 1\n[mids]\nslots = 64\npcrs = sha1:1,3\n"
                                  "pin_retries = 255\npuk_retries = 1\n[authorization]\n"
                                  "polkit = no\nmanage = uid:1000 gid:5 user:root\n",
                                  "t.conf");
    EXPECT_EQ(c.tcti, "swtpm:port=2321");
    EXPECT_EQ(c.computation_mode, "sealed");
    EXPECT_EQ(c.state_dir, "/tmp/x");
    EXPECT_EQ(c.sqn_interval, 1u);
    EXPECT_EQ(c.slots, 64u);
    EXPECT_EQ(c.pcrs, "sha1:1,3");
    EXPECT_EQ(c.pin_retries, 255u);
    EXPECT_EQ(c.puk_retries, 1u);
    EXPECT_EQ(c.polkit, PolkitMode::No);
    ASSERT_EQ(c.manage.size(), 3u);
    EXPECT_EQ(c.manage[0].kind, Principal::Kind::Uid);
    EXPECT_EQ(c.manage[0].id, 1000u);
    EXPECT_EQ(c.manage[1].kind, Principal::Kind::Gid);
    EXPECT_EQ(c.manage[1].id, 5u);
    EXPECT_EQ(c.manage[2].kind, Principal::Kind::Uid);
    EXPECT_EQ(c.manage[2].id, 0u);
}

TEST(DaemonConfig, ErrorsNameTheFileTheLineAndTheKey) {
    EXPECT_EQ(config_error("[tpm]\n\nfoo = 1\n"), "t.conf:3: unknown key foo in [tpm]");
    EXPECT_EQ(config_error("[nope]\n"), "t.conf:1: unknown section [nope]");
    EXPECT_THAT(config_error("[mids]\nslots = 0\n"), HasSubstr("t.conf:2: slots"));
    EXPECT_THAT(config_error("[mids]\nslots = 65\n"), HasSubstr("t.conf:2: slots"));
    EXPECT_THAT(config_error("[mids]\nslots = 2x\n"), HasSubstr("t.conf:2: slots"));
    EXPECT_THAT(config_error("[state]\nsqn_interval = 1025\n"), HasSubstr("sqn_interval"));
    EXPECT_THAT(config_error("[mids]\npcrs = sha256:99\n"), HasSubstr("t.conf:2: pcrs"));
    EXPECT_THAT(config_error("[tpm]\ncomputation_mode = fast\n"), HasSubstr("computation_mode"));
    EXPECT_THAT(config_error("[authorization]\npolkit = maybe\n"), HasSubstr("polkit"));
    EXPECT_THAT(config_error("[authorization]\nmanage = bob\n"), HasSubstr("t.conf:2: manage"));
    EXPECT_THAT(config_error("[authorization]\nmanage = user:no-such-user-xyz\n"),
                HasSubstr("unknown user"));
    EXPECT_THAT(config_error("slots = 1\n"), HasSubstr("t.conf:1: key slots outside a section"));
    EXPECT_THAT(config_error("[mids]\nslots\n"), HasSubstr("t.conf:2: expected"));
    EXPECT_THAT(config_error("[mids]\nslots = 1\nslots = 2\n"), HasSubstr("t.conf:3: slots"));
    EXPECT_THAT(config_error("[mids\n"), HasSubstr("t.conf:1:"));
}

TEST(DaemonConfig, AMissingDefaultFileMeansDefaultsButANamedOneMustExist) {
    EXPECT_EQ(load_config("/nonexistent/tresimd.conf", true).slots, 1u);
    EXPECT_THROW(load_config("/nonexistent/tresimd.conf", false), ConfigError);
}

TEST(DaemonAuthorization, RootIsAlwaysAllowedOthersOnlyByTheRules) {
    Config c = parse_config("[authorization]\npolkit = no\nauthenticate = gid:4242\n"
                            "manage = uid:1000\n",
                            "t.conf");
    const Authorizer a(c);
    EXPECT_TRUE(a.allowed(Action::Manage, {0, {0}}));
    EXPECT_TRUE(a.allowed(Action::Provision, {0, {0}}));
    EXPECT_TRUE(a.allowed(Action::Manage, {1000, {1000}}));
    EXPECT_FALSE(a.allowed(Action::Authenticate, {1000, {1000}}));
    EXPECT_TRUE(a.allowed(Action::Authenticate, {1001, {1001, 4242}})); // supplementary
    EXPECT_FALSE(a.allowed(Action::Manage, {1001, {1001, 4242}}));
    EXPECT_FALSE(a.allowed(Action::Provision, {1000, {1000, 4242}})); // empty: root only
}

TEST(DaemonAuthorization, PolkitYesRefusesNonRootWhilePolkitIsNotAsked) {
    Config c = parse_config("[authorization]\npolkit = yes\nmanage = uid:1000\n", "t.conf");
    const Authorizer a(c);
    EXPECT_FALSE(a.allowed(Action::Manage, {1000, {1000}}));
    EXPECT_TRUE(a.allowed(Action::Manage, {0, {0}}));
}

} // namespace
