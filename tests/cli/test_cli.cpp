// tresimctl end to end: a private dbus-daemon, a swtpm and the real tresimd
// (the harness of tests/daemon), driven by running the real tresimctl
// executable: human output, --json, exit statuses and error names.

#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "fixture.hpp"
#include "usim/suci.hpp"

namespace {

using namespace tresim;
using namespace tresim::test;
using namespace std::chrono_literals;

struct Outcome {
    int status = -1;
    std::string out;
    std::string err;
};

struct CliConfig {
    static std::string config() { return "[mids]\nslots = 2\n[authorization]\npolkit = auto\n"; }
    static constexpr bool notify_socket = false;
    static constexpr unsigned da_max_tries = 1000;
};

class Tresimctl : public DaemonSuite<CliConfig> {
protected:
    // Runs tresimctl with `args`; its exit status and output.
    static Outcome ctl(std::vector<std::string> args) {
        args.insert(args.begin(), env_or("TRESIMCTL", "src/cli/tresimctl"));
        const std::string out = env_->dir() + "/out", err = env_->dir() + "/err";
        const pid_t pid = fork();
        if (pid == 0) {
            const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(o, 1);
            dup2(e, 2);
            std::vector<char*> argv;
            for (const auto& a : args) {
                argv.push_back(const_cast<char*>(a.c_str()));
            }
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        Outcome r;
        r.status = wait_exit(pid, 30s);
        r.out = slurp(out);
        r.err = slurp(err);
        return r;
    }

    // Writes `profile` and an approval to files; their paths.
    std::pair<std::string, std::string> files(const json& profile, int n, bool pin = false) {
        const std::string profile_file = env_->dir() + "/profile-" + std::to_string(n) + ".json";
        const std::string approval_file = env_->dir() + "/approval-" + std::to_string(n) + ".json";
        std::ofstream(profile_file) << profile.dump();
        std::ofstream(approval_file) << env_->approval(authority_, pin).dump();
        return {profile_file, approval_file};
    }
    std::pair<std::string, std::string> files(const json& set, int n, const char* label) {
        return files(profile_json(set, n, label), n);
    }

    // Imports `profile` with tresimctl; the MID's object path.
    std::string import(const json& profile, int n, bool pin = false) {
        const auto [profile_file, approval_file] = files(profile, n, pin);
        const Outcome r =
            ctl({"--session", "--json", "import", profile_file, "--approval", approval_file});
        EXPECT_EQ(r.status, 0) << r.err;
        return r.status == 0 ? json::parse(r.out).at("mid").get<std::string>() : "";
    }

    static json show(const std::string& mid) {
        const Outcome r = ctl({"--session", "--json", "show", mid});
        EXPECT_EQ(r.status, 0) << r.err;
        return r.status == 0 ? json::parse(r.out) : json::object();
    }

    // The "name: value" lines of human output.
    static std::map<std::string, std::string> fields(const std::string& out) {
        std::map<std::string, std::string> f;
        std::istringstream in(out);
        for (std::string line; std::getline(in, line);) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                const auto value = line.find_first_not_of(' ', colon + 1);
                f[line.substr(0, colon)] = value == std::string::npos ? "" : line.substr(value);
            }
        }
        return f;
    }

    // A failure: exit status 1 and one line "tresimctl: NAME: MESSAGE".
    static void expect_failure(const Outcome& r, const std::string& name) {
        EXPECT_EQ(r.status, 1) << r.err;
        EXPECT_TRUE(r.err.starts_with("tresimctl: " + name + ": ")) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_EQ(r.out, "");
    }

    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

TEST_F(Tresimctl, StatusPrintsTheManagerAsTextAndAsJson) {
    const Outcome text = ctl({"--session", "status"});
    ASSERT_EQ(text.status, 0) << text.err;
    EXPECT_NE(text.out.find("tpm manufacturer: IBM"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("slots:"), std::string::npos) << text.out;
    const Outcome j = ctl({"--session", "--json", "status"});
    ASSERT_EQ(j.status, 0) << j.err;
    const json s = json::parse(j.out);
    EXPECT_EQ(s.at("slots"), 2);
    EXPECT_EQ(s.at("tpm_manufacturer"), "IBM");
    EXPECT_EQ(s.at("identity").get<std::string>().size(), 64u);
}

TEST_F(Tresimctl, PcrsPrintsThePlatformStateInTheFormsTresimApproveReads) {
    // The fixture's swtpm was never measured into: after TPM2_Startup(CLEAR)
    // every sha256 PCR of locality 0 is all zeros (TPM 2.0 Part 1 §17.6).
    const std::string zero(64, '0');
    const Outcome text = ctl({"--session", "pcrs"});
    ASSERT_EQ(text.status, 0) << text.err;
    EXPECT_EQ(text.out, "sha256:0=" + zero + ",2=" + zero + ",4=" + zero + ",7=" + zero + "\n");
    const Outcome j = ctl({"--session", "--json", "pcrs"});
    ASSERT_EQ(j.status, 0) << j.err;
    EXPECT_EQ(json::parse(j.out),
              (json{{"bank", "sha256"},
                    {"values", {{"0", zero}, {"2", zero}, {"4", zero}, {"7", zero}}}}));
}

TEST_F(Tresimctl, ImportsShowsActivatesAndAuthenticatesWithResyncOnReplay) {
    const json set = milenage_set(0);
    const auto [profile, approval_file] = files(set, 1, "cli test");
    const Outcome imported =
        ctl({"--session", "--json", "import", profile, "--approval", approval_file});
    ASSERT_EQ(imported.status, 0) << imported.err;
    const json r = json::parse(imported.out);
    const std::string path = r.at("mid");
    const std::string index = std::to_string(r.at("index").get<std::int64_t>());
    EXPECT_EQ(path, "/org/tresim1/mid/" + index);

    const Outcome listed = ctl({"--session", "--json", "list"});
    ASSERT_EQ(listed.status, 0) << listed.err;
    bool found = false;
    const json mids = json::parse(listed.out);
    for (const auto& m : mids.at("mids")) {
        found = found || (m.at("path") == path && m.at("iccid") == iccid(1));
    }
    EXPECT_TRUE(found) << listed.out;
    const Outcome human_list = ctl({"--session", "list"});
    EXPECT_NE(human_list.out.find(path + " [" + iccid(1) + "] inactive"), std::string::npos)
        << human_list.out;

    for (const std::string& spec : {index, path, iccid(1)}) {
        const json m = show(spec);
        EXPECT_EQ(m.value("path", ""), path) << spec;
        EXPECT_EQ(m.value("state", ""), "inactive");
        EXPECT_EQ(m.value("label", ""), "cli test");
    }
    const Outcome human = ctl({"--session", "show", index});
    EXPECT_NE(human.out.find("iccid:"), std::string::npos) << human.out;

    const Outcome activated = ctl({"--session", "activate", iccid(1), "--slot", "1"});
    ASSERT_EQ(activated.status, 0) << activated.err;
    EXPECT_EQ(show(index).at("slot"), 1);

    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x21);
    const std::string rand_hex = hex_encode(v.rand);
    const std::string autn_hex = hex_encode(v.autn);
    const Outcome auth =
        ctl({"--session", "--json", "authenticate", index, "--rand", rand_hex, "--autn", autn_hex});
    ASSERT_EQ(auth.status, 0) << auth.err;
    const json a = json::parse(auth.out);
    EXPECT_EQ(a.at("result"), "success");
    EXPECT_EQ(a.at("res"), hex_encode(v.xres));
    EXPECT_EQ(a.at("ck"), hex_encode(v.ck.view()));
    EXPECT_EQ(a.at("ik"), hex_encode(v.ik.view()));
    EXPECT_FALSE(a.contains("auts"));

    const Outcome replay =
        ctl({"--session", "--json", "authenticate", path, "--rand", rand_hex, "--autn", autn_hex});
    ASSERT_EQ(replay.status, 0) << replay.err;
    const json s = json::parse(replay.out);
    EXPECT_EQ(s.at("result"), "sync-failure");
    const Bytes auts = hex_decode(s.at("auts").get<std::string>(), "auts");
    EXPECT_EQ(usim::resync(*net, v.rand, auts), std::optional<std::uint64_t>(0x21));

    const Outcome human_auth =
        ctl({"--session", "authenticate", index, "--rand", rand_hex, "--autn", autn_hex});
    EXPECT_NE(human_auth.out.find("result: sync-failure"), std::string::npos) << human_auth.out;

    expect_failure(ctl({"--session", "activate", index}), "org.tresim1.Error.IllegalTransition");

    ASSERT_EQ(ctl({"--session", "deactivate", index}).status, 0);
    ASSERT_EQ(ctl({"--session", "delete", path}).status, 0);
    EXPECT_EQ(ctl({"--session", "show", path}).status, 1);
}

TEST_F(Tresimctl, AnUnknownMidIsAnErrorNamingUnknownMid) {
    for (const std::string& spec :
         std::vector<std::string>{"999", "/org/tresim1/mid/999", "89490200000000000000"}) {
        for (const std::vector<std::string>& command :
             {std::vector<std::string>{"activate", spec},
              {"pin", "verify", spec, "1234"},
              {"gsm-authenticate", spec, "--rand", std::string(32, '0')},
              {"suci", spec}}) {
            std::vector<std::string> args{"--session"};
            args.insert(args.end(), command.begin(), command.end());
            expect_failure(ctl(args), "org.tresim1.Error.UnknownMid");
        }
    }
}

TEST_F(Tresimctl, BadHexAndBadCommandLinesAreUsageErrors) {
    const Outcome hex = ctl({"--session", "authenticate", "1", "--rand", "xyz", "--autn", "00"});
    EXPECT_EQ(hex.status, 2);
    EXPECT_NE(hex.err.find("--rand"), std::string::npos) << hex.err;
    const Outcome gsm = ctl({"--session", "gsm-authenticate", "1", "--rand", "0g"});
    EXPECT_EQ(gsm.status, 2);
    EXPECT_NE(gsm.err.find("rand"), std::string::npos) << gsm.err;
    EXPECT_EQ(ctl({"--session", "frobnicate"}).status, 2);
    EXPECT_EQ(ctl({"--session", "show"}).status, 2);
    EXPECT_EQ(ctl({"--session", "--system", "status"}).status, 2);
    EXPECT_EQ(ctl({"--session", "pin"}).status, 2);
    EXPECT_EQ(ctl({"--session", "pin", "verify", "1"}).status, 2);
    EXPECT_EQ(ctl({"--session", "pin", "change", "1", "1234"}).status, 2);
    EXPECT_EQ(ctl({"--session", "pin", "unblock", "1", "12345678"}).status, 2);
    EXPECT_EQ(ctl({"--session", "gsm-authenticate", "1"}).status, 2);
    EXPECT_EQ(ctl({"--session", "suci"}).status, 2);
}

TEST_F(Tresimctl, AWrongLengthIsTheDaemonsInvalidArgument) {
    const std::string path = import(profile_json(milenage_set(1), 2, "cli test"), 2);
    expect_failure(ctl({"--session", "authenticate", path, "--rand", "00", "--autn", "00"}),
                   "org.tresim1.Error.InvalidArgument");
    expect_failure(ctl({"--session", "gsm-authenticate", path, "--rand", std::string(30, '0')}),
                   "org.tresim1.Error.InvalidArgument");
    EXPECT_EQ(ctl({"--session", "delete", path}).status, 0);
}

TEST_F(Tresimctl, TheSystemBusIsNotTheSessionBus) {
    const Outcome r = ctl({"--system", "status"});
    EXPECT_EQ(r.status, 1);
    EXPECT_TRUE(r.err.starts_with("tresimctl: ")) << r.err;
}

TEST_F(Tresimctl, AuditVerifiesAndExports) {
    const Outcome v = ctl({"--session", "--json", "audit", "verify"});
    ASSERT_EQ(v.status, 0) << v.err << v.out;
    EXPECT_EQ(json::parse(v.out).at("ok"), true);
    const Outcome human = ctl({"--session", "audit", "verify"});
    EXPECT_NE(human.out.find("result:  ok"), std::string::npos) << human.out;
    const Outcome e = ctl({"--session", "--json", "audit", "export"});
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_EQ(json::parse(e.out).at("format"), "tresim-audit-1");
}

TEST_F(Tresimctl, ApproveStoresAnApproval) {
    const std::string file = env_->dir() + "/approve.json";
    std::ofstream(file) << env_->approval(authority_).dump();
    const Outcome r = ctl({"--session", "approve", file});
    EXPECT_EQ(r.status, 0) << r.err;
    const Outcome missing = ctl({"--session", "approve", env_->dir() + "/none.json"});
    EXPECT_EQ(missing.status, 1);
}

TEST_F(Tresimctl, PinVerifyChangeAndUnblockReportTriesAndErrors) {
    json p = profile_json(milenage_set(2), 3, "pin test");
    p["pin"] = "1234";
    p["puk"] = "12345678";
    const std::string path = import(p, 3, true);
    ASSERT_FALSE(path.empty());
    const std::string index = path.substr(path.rfind('/') + 1);
    EXPECT_EQ(show(index).at("pin_required"), true);
    EXPECT_EQ(show(index).at("pin_retries"), 3);

    // Wrong PIN: the name, the tries left, and the property counts down.
    const Outcome wrong = ctl({"--session", "pin", "verify", index, "9999"});
    expect_failure(wrong, "org.tresim1.Error.WrongPin");
    EXPECT_NE(wrong.err.find("2 tries left"), std::string::npos) << wrong.err;
    EXPECT_EQ(wrong.err.find("9999"), std::string::npos) << "the PIN is echoed: " << wrong.err;
    EXPECT_EQ(show(index).at("pin_retries"), 2);
    expect_failure(ctl({"--session", "pin", "verify", index, "12"}),
                   "org.tresim1.Error.InvalidArgument");
    EXPECT_EQ(show(index).at("pin_retries"), 2);

    const Outcome verified = ctl({"--session", "pin", "verify", index, "1234"});
    ASSERT_EQ(verified.status, 0) << verified.err;
    EXPECT_EQ(verified.out, path + ": PIN verified\n");
    EXPECT_EQ(show(index).at("pin_verified"), true);
    EXPECT_EQ(show(index).at("pin_retries"), 3);

    const Outcome changed = ctl({"--session", "--json", "pin", "change", iccid(3), "1234", "4321"});
    ASSERT_EQ(changed.status, 0) << changed.err;
    EXPECT_EQ(json::parse(changed.out), (json{{"mid", path}, {"result", "PIN changed"}}));
    expect_failure(ctl({"--session", "pin", "change", index, "1234", "5555"}),
                   "org.tresim1.Error.WrongPin");
    ASSERT_EQ(ctl({"--session", "pin", "verify", path, "4321"}).status, 0);

    // Three wrong PINs block; then even the right PIN is PinBlocked.
    expect_failure(ctl({"--session", "pin", "verify", index, "0001"}),
                   "org.tresim1.Error.WrongPin");
    expect_failure(ctl({"--session", "pin", "verify", index, "0002"}),
                   "org.tresim1.Error.WrongPin");
    expect_failure(ctl({"--session", "pin", "verify", index, "0003"}),
                   "org.tresim1.Error.PinBlocked");
    EXPECT_EQ(show(index).at("state"), "blocked");
    expect_failure(ctl({"--session", "pin", "verify", index, "4321"}),
                   "org.tresim1.Error.PinBlocked");

    const Outcome bad_puk = ctl({"--session", "pin", "unblock", index, "00000000", "1111"});
    expect_failure(bad_puk, "org.tresim1.Error.WrongPin");
    EXPECT_NE(bad_puk.err.find("PUK"), std::string::npos) << bad_puk.err;
    EXPECT_EQ(show(index).at("puk_retries"), 9);
    const Outcome unblocked =
        ctl({"--session", "--json", "pin", "unblock", index, "12345678", "1111"});
    ASSERT_EQ(unblocked.status, 0) << unblocked.err;
    EXPECT_EQ(json::parse(unblocked.out), (json{{"mid", path}, {"result", "PIN unblocked"}}));
    const json m = show(index);
    EXPECT_EQ(m.at("state"), "inactive");
    EXPECT_EQ(m.at("pin_retries"), 3);
    EXPECT_EQ(m.at("puk_retries"), 10);
    const Outcome human = ctl({"--session", "pin", "unblock", index, "12345678", "2222"});
    EXPECT_EQ(human.status, 0) << human.err;
    EXPECT_EQ(human.out, path + ": PIN unblocked\n");
    ASSERT_EQ(ctl({"--session", "pin", "verify", index, "2222"}).status, 0);

    // On a MID without PIN the PIN commands are the daemon's InvalidArgument.
    const std::string plain = import(profile_json(milenage_set(3), 4, "no pin"), 4);
    expect_failure(ctl({"--session", "pin", "verify", plain, "1234"}),
                   "org.tresim1.Error.InvalidArgument");
}

// TS 55.205 GSM-Milenage sets: SRES (c2) and Kc as the specification lists them.
TEST_F(Tresimctl, GsmAuthenticatePrintsTheOfficialSresAndKc) {
    const json gsm = vectors("gsm_milenage.json").at("gsm_milenage");
    const json& set = gsm.at(3);
    const std::string path = import(profile_json(set, 5, "gsm"), 5);
    expect_failure(ctl({"--session", "gsm-authenticate", path, "--rand", set.at("rand")}),
                   "org.tresim1.Error.IllegalTransition");
    ASSERT_EQ(ctl({"--session", "activate", path, "--slot", "0"}).status, 0);

    const Outcome human = ctl({"--session", "gsm-authenticate", path, "--rand", set.at("rand")});
    ASSERT_EQ(human.status, 0) << human.err;
    EXPECT_EQ(fields(human.out), (std::map<std::string, std::string>{{"sres", set.at("sres1_c2")},
                                                                     {"kc", set.at("kc")}}))
        << human.out;
    const Outcome j =
        ctl({"--session", "--json", "gsm-authenticate", iccid(5), "--rand", set.at("rand")});
    ASSERT_EQ(j.status, 0) << j.err;
    EXPECT_EQ(json::parse(j.out), (json{{"sres", set.at("sres1_c2")}, {"kc", set.at("kc")}}));
    // Upper-case hex is hex too.
    std::string upper = set.at("rand");
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    const Outcome u = ctl({"--session", "--json", "gsm-authenticate", path, "--rand", upper});
    ASSERT_EQ(u.status, 0) << u.err;
    EXPECT_EQ(json::parse(u.out).at("kc"), set.at("kc"));
    ASSERT_EQ(ctl({"--session", "deactivate", path}).status, 0);
}

// SUCI with the home network keys of TS 33.501 C.4: the test plays the home
// network and recovers the official scheme input with its private key.
TEST_F(Tresimctl, SuciConcealsTheSupiForProfilesAAndB) {
    const json sets = vectors("suci.json").at("suci");
    int n = 10;
    for (const std::string name : {"suci-profilea-imsi", "suci-profileb-imsi"}) {
        const auto it = std::find_if(sets.begin(), sets.end(),
                                     [&](const json& s) { return s.at("name") == name; });
        ASSERT_NE(it, sets.end()) << name;
        const json& s = *it;
        const bool a = s.at("profile") == "A";
        json p = profile_json(milenage_set(4), n, "suci");
        p["imsi"] = s.at("mcc_mnc").get<std::string>() + s.at("msin").get<std::string>();
        p["mnc_length"] = 3;
        p["suci"] = {
            {"profile", s.at("profile")},
            {"hn_key_id", 3},
            {"hn_public_key", a ? s.at("hn_public_key") : s.at("hn_public_key_compressed")}};
        const std::string path = import(p, n++);
        expect_failure(ctl({"--session", "suci", path}), "org.tresim1.Error.IllegalTransition");
        ASSERT_EQ(ctl({"--session", "activate", path, "--slot", "1"}).status, 0);

        const std::string prefix = std::string("suci-0-274-012-0-") + (a ? "1" : "2") + "-3-";
        const Outcome j = ctl({"--session", "--json", "suci", path});
        ASSERT_EQ(j.status, 0) << j.err;
        const json r = json::parse(j.out);
        const std::string suci = r.at("suci");
        const std::string output = r.at("scheme_output");
        ASSERT_TRUE(suci.starts_with(prefix)) << suci;
        EXPECT_EQ(suci.substr(prefix.size()), output);
        const auto input =
            usim::deconceal(a ? usim::SuciProfile::A : usim::SuciProfile::B,
                            hex_decode(s.at("hn_private_key").get<std::string>(), "key"),
                            hex_decode(output, "scheme_output"));
        ASSERT_TRUE(input.has_value()) << name << ": the MAC tag does not verify";
        EXPECT_EQ(hex_encode(*input), s.at("scheme_input")) << name;

        const Outcome human = ctl({"--session", "suci", path});
        ASSERT_EQ(human.status, 0) << human.err;
        const auto f = fields(human.out);
        ASSERT_EQ(f.size(), 2u) << human.out;
        EXPECT_TRUE(f.at("suci").starts_with(prefix)) << human.out;
        EXPECT_EQ(f.at("suci").substr(prefix.size()), f.at("scheme output")) << human.out;
        EXPECT_NE(f.at("scheme output"), output) << "the ephemeral key was reused";
        ASSERT_EQ(ctl({"--session", "deactivate", path}).status, 0);
    }
}

TEST_F(Tresimctl, SuciWithoutAHomeNetworkKeyIsTheNullScheme) {
    const std::string path = import(profile_json(milenage_set(5), 12, "null"), 12);
    ASSERT_EQ(ctl({"--session", "activate", path, "--slot", "0"}).status, 0);
    const Outcome human = ctl({"--session", "suci", path});
    ASSERT_EQ(human.status, 0) << human.err;
    const std::string msin = imsi(12).substr(5);
    EXPECT_EQ(human.out,
              "suci:          suci-0-262-01-0-0-0-" + msin + "\nscheme output: 0100000021\n");
    const Outcome j = ctl({"--session", "--json", "suci", path});
    EXPECT_EQ(json::parse(j.out),
              (json{{"suci", "suci-0-262-01-0-0-0-" + msin}, {"scheme_output", "0100000021"}}));
    ASSERT_EQ(ctl({"--session", "deactivate", path}).status, 0);
}

} // namespace
