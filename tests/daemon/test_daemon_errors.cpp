// tresimd's error paths over the bus: every failed call gets its typed error
// (org.tresim1.Error.<Nick>, dbus/errors.md) and changes nothing a client can
// see: the MIDs and their properties, the audit record, and the SQN state (a
// vector refused by a failed call is still accepted afterwards). The only
// documented exceptions: wrong PINs/PUKs are counted (and audited).

#include <fcntl.h>
#include <fstream>
#include <unistd.h>

#include <climits>

#include "fixture.hpp"

namespace {

using namespace tresim;
using namespace tresim::test;
using namespace std::chrono_literals;

constexpr const char* kInvalidArgument = "org.tresim1.Error.InvalidArgument";
constexpr const char* kIllegalTransition = "org.tresim1.Error.IllegalTransition";
constexpr const char* kNotAuthorized = "org.tresim1.Error.NotAuthorized";
constexpr const char* kPolicyDenied = "org.tresim1.Error.PolicyDenied";
constexpr const char* kWrongPin = "org.tresim1.Error.WrongPin";
constexpr const char* kPinBlocked = "org.tresim1.Error.PinBlocked";
constexpr const char* kUnknownObject = "org.freedesktop.DBus.Error.UnknownObject";

struct ErrorsConfig {
    static std::string config() {
        return "[mids]\nslots = 3\npin_retries = 3\npuk_retries = 2\n"
               "[authorization]\npolkit = no\nauthenticate = uid:65534\n";
    }
    static constexpr bool notify_socket = false;
    static constexpr unsigned da_max_tries = 1000;
};

class DaemonErrors : public DaemonSuite<ErrorsConfig> {
protected:
    std::string import(const json& profile, bool pin = false) {
        return ManagerProxy(calls()).ImportMid(json_blob(profile),
                                               env_->approval(authority_, pin).dump());
    }

    // The error `f` fails with, after checking that it changed nothing.
    static std::string refused(const std::function<void()>& f) {
        const Snapshot before = snapshot(calls());
        const std::string name = error_name(f);
        const Snapshot after = snapshot(calls());
        EXPECT_TRUE(after.audit_ok);
        EXPECT_EQ(after, before) << "before:\n"
                                 << describe(before) << "after:\n"
                                 << describe(after);
        return name;
    }

    // The message of the error `f` fails with.
    static std::string message_of(const std::function<void()>& f) {
        try {
            f();
        } catch (const sdbus::Error& e) {
            return e.getMessage();
        }
        return "(no error)";
    }

    static std::string authenticate(MidProxy& mid, const usim::AuthVector& v) {
        return std::get<0>(mid.Authenticate(to_blob(v.rand), to_blob(v.autn)));
    }

    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

TEST_F(DaemonErrors, MalformedProfilesAreRefusedWithoutQuotingASecret) {
    ManagerProxy manager(calls());
    const std::string approval = env_->approval(authority_).dump();
    const json good = profile_json(milenage_set(0), 1);
    const std::string k = good.at("k");
    std::vector<json> bad;
    json p = good;
    p["k"] = "zz" + k.substr(2); // not hex
    bad.push_back(p);
    p = good;
    p["k"] = k.substr(0, 30); // 15 bytes
    bad.push_back(p);
    p = good;
    p["opc"] = good.at("opc").get<std::string>() + "00"; // 17 bytes
    bad.push_back(p);
    p = good;
    p["amf"] = "800";
    bad.push_back(p);
    p = good;
    p["iccid"] = good.at("iccid").get<std::string>().substr(0, 19) + "x"; // not digits
    bad.push_back(p);
    p = good;
    p["imsi"] = "12345";
    bad.push_back(p);
    p = good;
    p["colour"] = "blue"; // unknown field
    bad.push_back(p);
    p = good;
    p.erase("k");
    bad.push_back(p);
    for (const json& profile : bad) {
        const Blob b = json_blob(profile);
        EXPECT_EQ(refused([&] { manager.ImportMid(b, approval); }), kInvalidArgument)
            << profile.dump();
        const std::string message = message_of([&] { manager.ImportMid(b, approval); });
        EXPECT_EQ(message.find(k.substr(2)), std::string::npos) << message;
    }
    const Blob not_json{'{', '"'};
    EXPECT_EQ(refused([&] { manager.ImportMid(not_json, approval); }), kInvalidArgument);
    EXPECT_EQ(refused([&] { manager.ImportMid(Blob(64 * 1024 + 1, ' '), approval); }),
              kInvalidArgument);
    EXPECT_EQ(refused([&] { manager.ImportMid(Blob{}, approval); }), kInvalidArgument);
}

TEST_F(DaemonErrors, ImportFromADescriptorRefusesEmptyOversizedAndBadContent) {
    ManagerProxy manager(calls());
    const std::string approval = env_->approval(authority_).dump();
    const auto from_bytes = [&](const Blob& content) {
        const std::string file = env_->dir() + "/fd-profile";
        std::ofstream(file, std::ios::binary)
            .write(reinterpret_cast<const char*>(content.data()),
                   static_cast<std::streamsize>(content.size()));
        const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
        std::remove(file.c_str());
        return refused(
            [&] { manager.ImportMidFromFd(sdbus::UnixFd(fd, sdbus::adopt_fd), approval); });
    };
    EXPECT_EQ(from_bytes(Blob{}), kInvalidArgument);
    EXPECT_EQ(from_bytes(Blob(64 * 1024 + 1, ' ')), kInvalidArgument);
    EXPECT_EQ(from_bytes(Blob{'n', 'o', 'p', 'e'}), kInvalidArgument);
    // A descriptor that cannot be read (a write-only end).
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    close(fds[0]);
    EXPECT_EQ(
        refused([&] { manager.ImportMidFromFd(sdbus::UnixFd(fds[1], sdbus::adopt_fd), approval); }),
        kInvalidArgument);
}

TEST_F(DaemonErrors, BadApprovalsAreRefusedByImportAndAddApproval) {
    ManagerProxy manager(calls());
    const Blob profile = json_blob(profile_json(milenage_set(1), 2));
    const json good = env_->approval(authority_);
    std::vector<std::pair<json, std::string>> cases;
    json a = good;
    a["signature"] = "zz";
    cases.emplace_back(a, kInvalidArgument); // not hex
    a = good;
    a["signature"] = "3006020101020101";
    cases.emplace_back(a, kPolicyDenied); // DER, but not the authority's signature
    a = good;
    a["authority"] = tpm::PolicyAuthority::generate().public_pem();
    cases.emplace_back(a, kPolicyDenied); // signed by another key
    a = good;
    a["approved_policy"] = std::string(64, '0');
    cases.emplace_back(a, kInvalidArgument); // does not match the PCR values
    a = good;
    a["pcrs"]["values"].erase("7");
    cases.emplace_back(a, kInvalidArgument); // not the selection
    a = good;
    a["pcrs"]["values"]["0"] = "00";
    cases.emplace_back(a, kInvalidArgument); // wrong length
    a = good;
    a["pcrs"]["bank"] = "sha1";
    cases.emplace_back(a, kInvalidArgument);
    a = good;
    a["format"] = "tresim-approval-2";
    cases.emplace_back(a, kInvalidArgument);
    a = good;
    a["extra"] = 1;
    cases.emplace_back(a, kInvalidArgument);
    a = good;
    a["authority"] = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    cases.emplace_back(a, kInvalidArgument);
    for (const auto& [approval, error] : cases) {
        const std::string text = approval.dump();
        EXPECT_EQ(refused([&] { manager.AddApproval(text); }), error) << text;
        EXPECT_EQ(refused([&] { manager.ImportMid(profile, text); }), error) << text;
    }
    EXPECT_EQ(refused([&] { manager.AddApproval("{"); }), kInvalidArgument);
    EXPECT_EQ(refused([&] { manager.AddApproval(""); }), kInvalidArgument);
    // The reference form names an authority with no stored approval.
    const json reference{{"format", "tresim-approval-1"},
                         {"authority", tpm::PolicyAuthority::generate().public_pem()}};
    EXPECT_EQ(refused([&] { manager.ImportMid(profile, reference.dump()); }), kPolicyDenied);
    // ... and is not a complete approval for AddApproval.
    EXPECT_EQ(refused([&] { manager.AddApproval(reference.dump()); }), kInvalidArgument);
    // After all that, the good approval still works.
    manager.ImportMid(profile, good.dump());
    EXPECT_EQ(refused([&] { manager.ImportMid(profile, good.dump()); }),
              "org.tresim1.Error.AlreadyExists");
}

TEST_F(DaemonErrors, IllegalLifecycleTransitionsChangeNothing) {
    MidProxy a(calls(), import(profile_json(milenage_set(2), 3)));
    MidProxy b(calls(), import(profile_json(milenage_set(3), 4)));
    a.Activate(0);
    EXPECT_EQ(refused([&] { b.Activate(0); }), "org.tresim1.Error.SlotOccupied");
    EXPECT_TRUE(message_of([&] { b.Activate(0); }).find(std::to_string(a.Index())) !=
                std::string::npos);
    EXPECT_EQ(refused([&] { a.Activate(1); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { a.Activate(0); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { a.Delete(); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { b.Deactivate(); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { b.Activate(3); }), kInvalidArgument);
    EXPECT_EQ(refused([&] { b.Activate(UINT32_MAX); }), kInvalidArgument);
    // An inactive MID does not authenticate, whatever it is asked.
    auto net = network(milenage_set(3));
    const usim::AuthVector v = make_vector(*net, 0x20);
    EXPECT_EQ(refused([&] { authenticate(b, v); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { b.GsmAuthenticate(to_blob(v.rand)); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { b.GetSuci(); }), kIllegalTransition);
    // The refused vector was not consumed.
    b.Activate(1);
    EXPECT_EQ(authenticate(b, v), "success");
}

TEST_F(DaemonErrors, BadLengthsAndBadMacsConsumeNoSqn) {
    const json set = milenage_set(4);
    const std::string path = import(profile_json(set, 5));
    MidProxy mid(calls(), path);
    mid.Activate(0);
    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x20);
    const Blob rand = to_blob(v.rand);
    const Blob autn = to_blob(v.autn);
    for (const std::size_t n : {0u, 15u, 17u, 32u}) {
        Blob r = rand;
        r.resize(n, 0x55);
        EXPECT_EQ(refused([&] { mid.Authenticate(r, autn); }), kInvalidArgument) << n;
        EXPECT_EQ(refused([&] { mid.GsmAuthenticate(r); }), kInvalidArgument) << n;
        EXPECT_NE(message_of([&] { mid.GsmAuthenticate(r); }).find("rand"), std::string::npos);
    }
    for (const std::size_t n : {0u, 8u, 15u, 17u, 24u}) {
        Blob a = autn;
        a.resize(n, 0x55);
        EXPECT_EQ(refused([&] { mid.Authenticate(rand, a); }), kInvalidArgument) << n;
        EXPECT_NE(message_of([&] { mid.Authenticate(rand, a); }).find("autn"), std::string::npos);
    }
    // A wrong MAC is a result, not an error, and consumes nothing either.
    Blob forged = autn;
    forged.back() ^= 0x01;
    const Snapshot before = snapshot(calls());
    const auto [result, res, ck, ik, auts] = mid.Authenticate(rand, forged);
    EXPECT_EQ(result, "mac-failure");
    EXPECT_TRUE(res.empty() && ck.empty() && ik.empty() && auts.empty());
    EXPECT_EQ(snapshot(calls()), before);
    // Another RAND under the same AUTN: MAC failure too.
    Blob other = rand;
    other[0] ^= 0x01;
    EXPECT_EQ(std::get<0>(mid.Authenticate(other, autn)), "mac-failure");
    EXPECT_EQ(authenticate(mid, v), "success");
    mid.Deactivate();
    EXPECT_EQ(refused([&] { mid.Deactivate(); }), kIllegalTransition);
}

TEST_F(DaemonErrors, AnUnknownOrDeletedMidIsRefusedByTheBus) {
    MidProxy gone(calls(), "/org/tresim1/mid/999");
    EXPECT_EQ(refused([&] { gone.Activate(0); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.Deactivate(); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.Delete(); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.VerifyPin("1234"); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.ChangePin("1234", "4321"); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.UnblockPin("12345678", "1234"); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.Authenticate(Blob(16), Blob(16)); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.GsmAuthenticate(Blob(16)); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.GetSuci(); }), kUnknownObject);
    EXPECT_EQ(refused([&] { gone.State(); }), kUnknownObject);

    const std::string path = import(profile_json(milenage_set(5), 6));
    MidProxy mid(calls(), path);
    mid.Delete();
    EXPECT_EQ(refused([&] { mid.Delete(); }), kUnknownObject);
    EXPECT_EQ(refused([&] { mid.Activate(0); }), kUnknownObject);
    EXPECT_EQ(refused([&] { mid.GetSuci(); }), kUnknownObject);
}

TEST_F(DaemonErrors, ThePolicyOfAMidLimitsItsFunctions) {
    const json set = milenage_set(6);
    json p = profile_json(set, 7);
    p["policy"] = {{"allowed_actions", {"authenticate"}}};
    p["isim"] = {{"impi", "user@ims.example.org"},
                 {"impu", {"sip:user@ims.example.org"}},
                 {"domain", "ims.example.org"}};
    const std::string path = import(p);
    MidProxy mid(calls(), path);
    IsimProxy isim(calls(), path);
    mid.Activate(0);
    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x20);
    EXPECT_EQ(refused([&] { mid.GsmAuthenticate(to_blob(v.rand)); }), kPolicyDenied);
    EXPECT_EQ(refused([&] { mid.GetSuci(); }), kPolicyDenied);
    EXPECT_EQ(refused([&] { isim.Authenticate(to_blob(v.rand), to_blob(v.autn)); }), kPolicyDenied);
    EXPECT_EQ(refused([&] { isim.Authenticate(Blob(15), to_blob(v.autn)); }), kInvalidArgument);
    EXPECT_EQ(authenticate(mid, v), "success");
}

TEST_F(DaemonErrors, PinMethodsOnAMidWithoutPinAreInvalid) {
    MidProxy mid(calls(), import(profile_json(milenage_set(7), 8)));
    EXPECT_EQ(refused([&] { mid.VerifyPin("1234"); }), kInvalidArgument);
    EXPECT_EQ(refused([&] { mid.ChangePin("1234", "4321"); }), kInvalidArgument);
    EXPECT_EQ(refused([&] { mid.UnblockPin("12345678", "4321"); }), kInvalidArgument);
}

// The SIM behaviour of TS 31.102 with the TPM behind it: wrong PINs count down
// and block, the PUK unblocks, and a MID whose PIN is not verified does not
// authenticate (without consuming the vector).
TEST_F(DaemonErrors, APinProtectedMidCountsWrongPinsBlocksAndUnblocksWithThePuk) {
    const json set = milenage_set(8);
    json p = profile_json(set, 9);
    p["pin"] = "1234";
    p["puk"] = "12345678";
    const std::string path = import(p, true);
    MidProxy mid(calls(), path);
    EXPECT_TRUE(mid.PinRequired());
    EXPECT_FALSE(mid.PinVerified());
    EXPECT_EQ(mid.PinRetries(), 3u);
    EXPECT_EQ(mid.PukRetries(), 2u);
    mid.Activate(0);
    auto net = network(set);
    const usim::AuthVector v1 = make_vector(*net, 0x20);
    EXPECT_EQ(refused([&] { authenticate(mid, v1); }), "org.tresim1.Error.PinRequired");
    EXPECT_EQ(refused([&] { mid.GsmAuthenticate(to_blob(v1.rand)); }),
              "org.tresim1.Error.PinRequired");

    // Malformed PINs are not tries.
    for (const std::string bad : {"12a4", "123", "123456789", "", "12 4"}) {
        EXPECT_EQ(refused([&] { mid.VerifyPin(bad); }), kInvalidArgument) << bad;
        EXPECT_EQ(refused([&] { mid.ChangePin("1234", bad); }), kInvalidArgument) << bad;
        EXPECT_EQ(refused([&] { mid.UnblockPin("12345678", bad); }), kInvalidArgument) << bad;
    }
    EXPECT_EQ(refused([&] { mid.UnblockPin("1234567", "1234"); }), kInvalidArgument);

    // A wrong PIN is counted (and audited).
    std::int64_t records = snapshot(calls()).audit_records;
    EXPECT_EQ(error_name([&] { mid.VerifyPin("9999"); }), kWrongPin);
    EXPECT_EQ(mid.PinRetries(), 2u);
    EXPECT_EQ(mid.State(), "active");
    EXPECT_GT(snapshot(calls()).audit_records, records);
    EXPECT_TRUE(snapshot(calls()).audit_ok);
    EXPECT_NE(message_of([&] { mid.VerifyPin("9998"); }).find("1 tries left"), std::string::npos);
    mid.VerifyPin("1234");
    EXPECT_TRUE(mid.PinVerified());
    EXPECT_EQ(mid.PinRetries(), 3u);
    EXPECT_EQ(authenticate(mid, v1), "success"); // not consumed by the PinRequired refusal

    // ChangePin: a wrong old PIN counts; the new PIN replaces the old one.
    EXPECT_EQ(error_name([&] { mid.ChangePin("0000", "4321"); }), kWrongPin);
    EXPECT_EQ(mid.PinRetries(), 2u);
    mid.ChangePin("1234", "4321");
    EXPECT_EQ(mid.PinRetries(), 3u);
    EXPECT_EQ(error_name([&] { mid.VerifyPin("1234"); }), kWrongPin);
    mid.VerifyPin("4321");

    // Three wrong PINs block the MID, which leaves its slot.
    EXPECT_EQ(error_name([&] { mid.VerifyPin("0001"); }), kWrongPin);
    EXPECT_EQ(error_name([&] { mid.VerifyPin("0002"); }), kWrongPin);
    EXPECT_EQ(error_name([&] { mid.VerifyPin("0003"); }), kPinBlocked);
    EXPECT_EQ(mid.State(), "blocked");
    EXPECT_EQ(mid.Slot(), -1);
    EXPECT_EQ(mid.PinRetries(), 0u);
    EXPECT_FALSE(mid.PinVerified());
    const usim::AuthVector v2 = make_vector(*net, 0x40);
    EXPECT_EQ(refused([&] { mid.VerifyPin("4321"); }), kPinBlocked); // even the right one
    EXPECT_EQ(refused([&] { mid.ChangePin("4321", "5555"); }), kPinBlocked);
    EXPECT_EQ(refused([&] { authenticate(mid, v2); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { mid.Activate(0); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { mid.Deactivate(); }), kIllegalTransition);
    EXPECT_EQ(refused([&] { mid.Delete(); }), kIllegalTransition);

    // A wrong PUK is counted; the right one unblocks and sets the new PIN.
    EXPECT_EQ(error_name([&] { mid.UnblockPin("00000000", "1111"); }), kWrongPin);
    EXPECT_EQ(mid.PukRetries(), 1u);
    EXPECT_EQ(mid.State(), "blocked");
    mid.UnblockPin("12345678", "1111");
    EXPECT_EQ(mid.State(), "inactive");
    EXPECT_EQ(mid.PinRetries(), 3u);
    EXPECT_EQ(mid.PukRetries(), 2u);
    EXPECT_TRUE(mid.PinVerified());
    mid.Activate(0);
    EXPECT_EQ(authenticate(mid, v2), "success");
    EXPECT_EQ(error_name([&] { mid.VerifyPin("4321"); }), kWrongPin); // the old PIN is gone
    mid.VerifyPin("1111");
    EXPECT_TRUE(snapshot(calls()).audit_ok);
}

TEST_F(DaemonErrors, AMidWhosePukIsExhaustedStaysBlocked) {
    json p = profile_json(milenage_set(9), 10);
    p["pin"] = "2468";
    p["puk"] = "87654321";
    MidProxy mid(calls(), import(p, true));
    for (const std::string wrong : {"0000", "0001"}) {
        EXPECT_EQ(error_name([&] { mid.VerifyPin(wrong); }), kWrongPin);
    }
    EXPECT_EQ(error_name([&] { mid.VerifyPin("0002"); }), kPinBlocked);
    EXPECT_EQ(mid.State(), "blocked");
    EXPECT_EQ(error_name([&] { mid.UnblockPin("00000000", "1357"); }), kWrongPin);
    EXPECT_EQ(error_name([&] { mid.UnblockPin("00000001", "1357"); }), kWrongPin);
    EXPECT_EQ(mid.PukRetries(), 0u);
    EXPECT_EQ(refused([&] { mid.UnblockPin("87654321", "1357"); }), kPinBlocked);
    EXPECT_EQ(mid.State(), "blocked");
    EXPECT_TRUE(snapshot(calls()).audit_ok);
}

// Every method needs its action: UID 65534 has authenticate only, UID 2 (bin)
// nothing. Refusals change nothing, and a refused vector stays usable.
TEST_F(DaemonErrors, EveryMethodRefusesACallerWithoutItsAction) {
    const json set = milenage_set(10);
    json p = profile_json(set, 11);
    p["isim"] = {{"impi", "user@ims.example.org"},
                 {"impu", {"sip:user@ims.example.org"}},
                 {"domain", "ims.example.org"}};
    const std::string path = import(p);
    MidProxy(calls(), path).Activate(0);
    const std::string approval = env_->approval(authority_).dump();
    const Blob profile = json_blob(profile_json(milenage_set(11), 12));
    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x20);
    const Blob rand = to_blob(v.rand);
    const Blob autn = to_blob(v.autn);

    const Snapshot before = snapshot(calls());
    const std::string manage = run_as(65534, 65534, [&](sdbus::IConnection& c) {
        ManagerProxy m(c);
        MidProxy mid(c, path);
        std::string r;
        const auto add = [&](const char* method, const std::function<void()>& f) {
            r += std::string(method) + " " + error_name(f) + "\n";
        };
        add("ImportMid", [&] { m.ImportMid(profile, approval); });
        add("ImportMidFromFd", [&] {
            m.ImportMidFromFd(
                sdbus::UnixFd(open("/dev/null", O_RDONLY | O_CLOEXEC), sdbus::adopt_fd), approval);
        });
        add("AddApproval", [&] { m.AddApproval(approval); });
        add("GetPlatformState", [&] { m.GetPlatformState(); });
        add("AuditVerify", [&] { m.AuditVerify(); });
        add("AuditExport", [&] { m.AuditExport(); });
        add("Activate", [&] { mid.Activate(1); });
        add("Deactivate", [&] { mid.Deactivate(); });
        add("Delete", [&] { mid.Delete(); });
        add("VerifyPin", [&] { mid.VerifyPin("1234"); });
        add("ChangePin", [&] { mid.ChangePin("1234", "4321"); });
        add("UnblockPin", [&] { mid.UnblockPin("12345678", "4321"); });
        return r;
    });
    std::string expected;
    for (const char* method : {"ImportMid", "ImportMidFromFd", "AddApproval", "GetPlatformState",
                               "AuditVerify", "AuditExport", "Activate", "Deactivate", "Delete",
                               "VerifyPin", "ChangePin", "UnblockPin"}) {
        expected += std::string(method) + " " + kNotAuthorized + "\n";
    }
    EXPECT_EQ(manage, expected);

    const std::string auth = run_as(2, 2, [&](sdbus::IConnection& c) {
        MidProxy mid(c, path);
        IsimProxy isim(c, path);
        std::string r;
        r += error_name([&] { mid.Authenticate(rand, autn); }) + "\n";
        r += error_name([&] { mid.GsmAuthenticate(rand); }) + "\n";
        r += error_name([&] { mid.GetSuci(); }) + "\n";
        r += error_name([&] { isim.Authenticate(rand, autn); }) + "\n";
        r += mid.State() + "\n"; // reading properties needs no action
        return r;
    });
    EXPECT_EQ(auth, std::string(kNotAuthorized) + "\n" + kNotAuthorized + "\n" + kNotAuthorized +
                        "\n" + kNotAuthorized + "\nactive\n");
    const Snapshot after = snapshot(calls());
    EXPECT_EQ(after, before) << "before:\n" << describe(before) << "after:\n" << describe(after);
    MidProxy mid(calls(), path);
    EXPECT_EQ(authenticate(mid, v), "success");
}

struct LockoutConfig {
    static std::string config() { return "[mids]\nslots = 1\n[authorization]\npolkit = no\n"; }
    static constexpr bool notify_socket = false;
    static constexpr unsigned da_max_tries = 0; // locked out by the first wrong PIN
};

class DaemonLockout : public DaemonSuite<LockoutConfig> {};

// The TPM's dictionary-attack lockout is TpmLockout, and a PIN that the TPM
// refused to check is not charged to the MID.
TEST_F(DaemonLockout, ATpmInLockoutIsTpmLockoutAndChargesNoTry) {
    const tpm::PolicyAuthority authority = tpm::PolicyAuthority::generate();
    json p = profile_json(milenage_set(12), 1);
    p["pin"] = "1234";
    p["puk"] = "12345678";
    MidProxy mid(calls(), ManagerProxy(calls()).ImportMid(json_blob(p),
                                                          env_->approval(authority, true).dump()));
    EXPECT_EQ(error_name([&] { mid.VerifyPin("9999"); }), "org.tresim1.Error.WrongPin");
    EXPECT_EQ(mid.PinRetries(), 2u);
    const Snapshot before = snapshot(calls());
    for (const std::string pin : {"1234", "9999"}) {
        EXPECT_EQ(error_name([&] { mid.VerifyPin(pin); }), "org.tresim1.Error.TpmLockout") << pin;
    }
    EXPECT_EQ(error_name([&] { mid.UnblockPin("12345678", "1111"); }),
              "org.tresim1.Error.TpmLockout");
    EXPECT_EQ(snapshot(calls()), before);
    EXPECT_EQ(mid.PinRetries(), 2u);
    EXPECT_EQ(mid.PukRetries(), 10u);
    EXPECT_FALSE(mid.PinVerified());
}

} // namespace
