// Shared functions over the real bus: an ISIM-only MID (FunctionsFrom) is an
// object with org.tresim1.Mid and org.tresim1.Isim but no org.tresim1.Usim,
// and its Isim.Authenticate runs with the USIM function of the MID it names
// while both are active and both share (docs/te.md "Shared functions").

#include "fixture.hpp"

namespace {

using namespace tresim;
using namespace tresim::test;

struct ShareConfig {
    static std::string config() { return "[mids]\nslots = 2\n"; }
    static constexpr bool notify_socket = false;
    static constexpr unsigned da_max_tries = 1000;
};

class DaemonShare : public DaemonSuite<ShareConfig> {
protected:
    std::string import(const json& profile) {
        return ManagerProxy(calls()).ImportMid(json_blob(profile),
                                               env_->approval(authority_).dump());
    }

    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

// The interfaces of the object at `path`, from GetManagedObjects.
std::vector<std::string> interfaces_of(sdbus::IConnection& c, const std::string& path) {
    const ManagedObjects objects = managed_objects(c);
    std::vector<std::string> out;
    for (const auto& [interface, properties] : objects.at(sdbus::ObjectPath(path))) {
        if (interface.rfind("org.tresim1.", 0) == 0) {
            out.push_back(interface);
        }
    }
    return out;
}

TEST_F(DaemonShare, AnIsimOnlyMidAuthenticatesThroughASharingActiveMid) {
    const json set = milenage_set(3);
    json lender = profile_json(set, 1, "lender");
    lender["policy"] = {{"share_functions", true}};
    const std::string a = import(lender);
    const json borrower = {{"iccid", iccid(2)},
                           {"imsi", imsi(2)},
                           {"label", "ims only"},
                           {"functions_from", iccid(1)},
                           {"isim",
                            {{"impi", "user@ims.example.org"},
                             {"impu", {"sip:user@ims.example.org"}},
                             {"domain", "ims.example.org"}}},
                           {"policy", {{"share_functions", true}}}};
    const std::string b = import(borrower);

    MidProxy mid_a(calls(), a);
    MidProxy mid_b(calls(), b); // its Usim half must answer UnknownMethod
    IsimProxy isim_b(calls(), b);
    EXPECT_EQ(interfaces_of(calls(), b),
              (std::vector<std::string>{"org.tresim1.Isim", "org.tresim1.Mid"}));
    EXPECT_EQ(mid_b.Applications(), std::vector<std::string>{"isim"});
    EXPECT_EQ(mid_b.FunctionsFrom(), iccid(1));
    EXPECT_EQ(mid_b.Algorithm(), "");
    EXPECT_EQ(mid_a.FunctionsFrom(), "");
    EXPECT_EQ(isim_b.Impi(), "user@ims.example.org");

    mid_a.Activate(0);
    mid_b.Activate(1);
    auto net = network(set);
    const usim::AuthVector v = make_vector(*net, 0x20);
    EXPECT_EQ(error_name([&] { mid_b.Authenticate(to_blob(v.rand), to_blob(v.autn)); }),
              "org.freedesktop.DBus.Error.UnknownMethod");
    EXPECT_EQ(error_name([&] { mid_b.GetSuci(); }), "org.freedesktop.DBus.Error.UnknownMethod");

    const auto [result, res, ck, ik, auts] = isim_b.Authenticate(to_blob(v.rand), to_blob(v.autn));
    EXPECT_EQ(result, "success");
    EXPECT_EQ(res, to_blob(v.xres));
    EXPECT_EQ(ck, to_blob(v.ck.view()));
    EXPECT_EQ(ik, to_blob(v.ik.view()));
    // A's SQN array took the use: the same vector is a replay for A.
    const auto [again, r2, c2, i2, auts2] = mid_a.Authenticate(to_blob(v.rand), to_blob(v.autn));
    EXPECT_EQ(again, "sync-failure");
    EXPECT_EQ(usim::resync(*net, v.rand, auts2), std::optional<std::uint64_t>(0x20));

    // A deactivated: refused, and nothing a client can see changes.
    mid_a.Deactivate();
    const usim::AuthVector w = make_vector(*net, 0x40);
    const Snapshot before = snapshot(calls());
    EXPECT_EQ(error_name([&] { isim_b.Authenticate(to_blob(w.rand), to_blob(w.autn)); }),
              "org.tresim1.Error.PolicyDenied");
    EXPECT_EQ(snapshot(calls()), before);
    // A active again: the refused vector is still fresh.
    mid_a.Activate(0);
    EXPECT_EQ(std::get<0>(isim_b.Authenticate(to_blob(w.rand), to_blob(w.autn))), "success");
    EXPECT_TRUE(snapshot(calls()).audit_ok);
}

} // namespace
