// tresimd with several clients at once: two connections authenticating two
// active MIDs while a third switches a third MID on and off, and clients that
// vanish in the middle of a call. Every reply must be right (RES = XRES of the
// network side), every call must end in bounded time, and the daemon and the
// SQN state must come out whole.

#include <atomic>
#include <csignal>
#include <future>
#include <thread>
#include <unistd.h>

#include "fixture.hpp"

namespace {

using namespace tresim;
using namespace tresim::test;
using namespace std::chrono_literals;

struct ConcurrencyConfig {
    static std::string config() { return "[mids]\nslots = 3\n[authorization]\npolkit = no\n"; }
    static constexpr bool notify_socket = false;
    static constexpr unsigned da_max_tries = 1000;
};

class DaemonConcurrency : public DaemonSuite<ConcurrencyConfig> {
protected:
    std::string import(const json& profile) {
        return ManagerProxy(calls()).ImportMid(json_blob(profile),
                                               env_->approval(authority_).dump());
    }

    // A connection of its own whose calls give up after 10 s instead of 25 s.
    static std::unique_ptr<sdbus::IConnection> connect() {
        auto c = sdbus::createSessionBusConnection();
        c->setMethodCallTimeout(10s);
        return c;
    }

    // SQN_MS, the highest SQN the MID accepted so far, from the AUTS of a
    // vector that can never be fresh (SEQ 0); changes nothing in the MID.
    static std::uint64_t highest_sqn(MidProxy& mid, usim::Milenage& net) {
        const usim::AuthVector probe = make_vector(net, 0);
        const auto [result, res, ck, ik, auts] =
            mid.Authenticate(to_blob(probe.rand), to_blob(probe.autn));
        EXPECT_EQ(result, "sync-failure");
        const auto sqn = usim::resync(net, probe.rand, auts);
        EXPECT_TRUE(sqn.has_value()) << "AUTS does not verify";
        return sqn.value_or(0);
    }

    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

constexpr int kRounds = 15;

// One client: kRounds authentications of its MID on its own connection,
// checked against the network side. Returns what went wrong, if anything.
std::string authenticate_loop(const std::string& path, const json& set, unsigned ind) {
    std::string problems;
    try {
        auto c = sdbus::createSessionBusConnection();
        c->setMethodCallTimeout(10s);
        MidProxy mid(*c, path);
        auto net = network(set);
        for (int k = 1; k <= kRounds; ++k) {
            const std::uint64_t sqn = (static_cast<std::uint64_t>(k) << 5) | ind;
            const usim::AuthVector v = make_vector(*net, sqn);
            const auto [result, res, ck, ik, auts] =
                mid.Authenticate(to_blob(v.rand), to_blob(v.autn));
            if (result != "success" || res != to_blob(v.xres) || ck != to_blob(v.ck.view()) ||
                ik != to_blob(v.ik.view())) {
                problems += "round " + std::to_string(k) + ": " + result + " RES " +
                            hex_encode(res) + " XRES " + hex_encode(v.xres) + "\n";
            }
        }
    } catch (const sdbus::Error& e) {
        problems += e.getName() + ": " + e.getMessage() + "\n";
    }
    return problems;
}

TEST_F(DaemonConcurrency, TwoClientsAuthenticateWhileAThirdChangesTheLifecycle) {
    const json set_a = milenage_set(0);
    const json set_b = milenage_set(1);
    const std::string a = import(profile_json(set_a, 1));
    const std::string b = import(profile_json(set_b, 2));
    const std::string c = import(profile_json(milenage_set(2), 3));
    MidProxy(calls(), a).Activate(0);
    MidProxy(calls(), b).Activate(1);

    const auto start = std::chrono::steady_clock::now();
    std::atomic<bool> done{false};
    std::atomic<int> switches{0};
    auto lifecycle = std::async(std::launch::async, [&] {
        std::string problems;
        try {
            auto conn = connect();
            MidProxy mid(*conn, c);
            while (!done) {
                mid.Activate(2);
                if (mid.State() != "active" || mid.Slot() != 2) {
                    problems += "after Activate: " + mid.State() + "\n";
                }
                mid.Deactivate();
                if (mid.State() != "inactive" || mid.Slot() != -1) {
                    problems += "after Deactivate: " + mid.State() + "\n";
                }
                ++switches;
            }
        } catch (const sdbus::Error& e) {
            problems += e.getName() + ": " + e.getMessage() + "\n";
        }
        return problems;
    });
    auto client_a = std::async(std::launch::async, authenticate_loop, a, set_a, 1u);
    auto client_b = std::async(std::launch::async, authenticate_loop, b, set_b, 2u);
    // Every call gives up after 10 s, so a deadlock shows as an error well before this.
    ASSERT_EQ(client_a.wait_for(60s), std::future_status::ready) << "client A hangs";
    ASSERT_EQ(client_b.wait_for(60s), std::future_status::ready) << "client B hangs";
    done = true;
    ASSERT_EQ(lifecycle.wait_for(20s), std::future_status::ready) << "the lifecycle client hangs";
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(client_a.get(), "");
    EXPECT_EQ(client_b.get(), "");
    EXPECT_EQ(lifecycle.get(), "");
    EXPECT_GT(switches.load(), 0);
    std::cout << "[          ] " << 2 * kRounds << " authentications and " << switches.load()
              << " activate/deactivate pairs in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms\n";

    ASSERT_TRUE(env_->alive());
    MidProxy mid_a(calls(), a);
    MidProxy mid_b(calls(), b);
    EXPECT_EQ(mid_a.State(), "active");
    EXPECT_EQ(mid_b.State(), "active");
    EXPECT_EQ(MidProxy(calls(), c).State(), "inactive");
    auto net_a = network(set_a);
    auto net_b = network(set_b);
    EXPECT_EQ(highest_sqn(mid_a, *net_a), (std::uint64_t{kRounds} << 5) | 1);
    EXPECT_EQ(highest_sqn(mid_b, *net_b), (std::uint64_t{kRounds} << 5) | 2);
    EXPECT_TRUE(snapshot(calls()).audit_ok);
}

// The caller closes its connection at some point after its Authenticate
// reached the bus: before tresimd looked at it (tresimd cannot learn the
// caller's credentials any more and refuses it: NotAuthorized to nobody), or
// while the TPM computes (the SQN is consumed, the reply goes nowhere).
// Either way tresimd keeps serving, and its SQN array agrees with SQN_MS: a
// vanished vector above SQN_MS is still fresh, one at or below it is not.
TEST_F(DaemonConcurrency, AClientThatHangsUpMidCallHarmsNothing) {
    const json set = milenage_set(3);
    const std::string path = import(profile_json(set, 4));
    MidProxy mid(calls(), path);
    mid.Activate(0);
    auto net = network(set);
    std::vector<usim::AuthVector> vanished;
    std::uint64_t live_sqn = 0;
    int i = 0;
    for (const auto delay : {0ms, 1ms, 2ms, 4ms, 8ms, 12ms, 16ms, 24ms, 32ms}) {
        // IND 1 for the vanishing calls, IND 2 for the ones that wait, so the
        // two never make each other stale whatever order the bus delivers in.
        vanished.push_back(make_vector(*net, (static_cast<std::uint64_t>(100 + i) << 5) | 1));
        {
            auto conn = sdbus::createSessionBusConnection();
            auto proxy = sdbus::createProxy(*conn, "org.tresim1", path);
            proxy->callMethodAsync("Authenticate")
                .onInterface("org.tresim1.Usim")
                .withArguments(to_blob(vanished.back().rand), to_blob(vanished.back().autn))
                .uponReplyInvoke([](const sdbus::Error*, const std::string&, const Blob&,
                                    const Blob&, const Blob&, const Blob&) {});
            // A round trip to the bus on the same connection: the bus has
            // routed the call to tresimd before it answers this.
            auto bus = sdbus::createProxy(*conn, "org.freedesktop.DBus", "/org/freedesktop/DBus");
            std::string id;
            bus->callMethod("GetId").onInterface("org.freedesktop.DBus").storeResultsTo(id);
            std::this_thread::sleep_for(delay);
            // Then the proxies and the connection go, the reply still to come.
        }
        live_sqn = (static_cast<std::uint64_t>(1 + i) << 5) | 2;
        const usim::AuthVector v = make_vector(*net, live_sqn);
        const auto [result, res, ck, ik, auts] = mid.Authenticate(to_blob(v.rand), to_blob(v.autn));
        EXPECT_EQ(result, "success") << i;
        EXPECT_EQ(res, to_blob(v.xres)) << i;
        ++i;
    }
    ASSERT_TRUE(env_->alive());
    // SQN_MS is the live client's last SQN or a vanished one that was served.
    const std::uint64_t highest = highest_sqn(mid, *net);
    const auto sqn_of = [](std::size_t k) {
        return (static_cast<std::uint64_t>(100 + k) << 5) | 1;
    };
    bool known = highest == live_sqn;
    std::size_t served = 0;
    for (std::size_t k = 0; k < vanished.size(); ++k) {
        known = known || highest == sqn_of(k);
        served = highest == sqn_of(k) ? k + 1 : served;
    }
    EXPECT_TRUE(known) << "SQN_MS " << highest << " is no SQN that was sent";
    std::cout << "[          ] SQN_MS after the hang-ups: "
              << (served == 0 ? std::string("the live client's")
                              : "vanished call " + std::to_string(served) + " of " +
                                    std::to_string(vanished.size()))
              << "\n";
    // Replayed in ascending order: at or below SQN_MS stale, above it fresh.
    for (std::size_t k = 0; k < vanished.size(); ++k) {
        const auto& v = vanished[k];
        EXPECT_EQ(std::get<0>(mid.Authenticate(to_blob(v.rand), to_blob(v.autn))),
                  sqn_of(k) <= highest ? "sync-failure" : "success")
            << "vanished call " << k + 1 << " with SQN_MS " << highest;
    }
    EXPECT_TRUE(snapshot(calls()).audit_ok);
}

// A client process killed while its call may be anywhere (not yet sent, in
// the bus, in the daemon, reply on the way): the daemon keeps serving and the
// SQN state holds either the killed call's vector or the one before.
TEST_F(DaemonConcurrency, AClientKilledMidCallHarmsNothing) {
    const std::string dbus_send = "/usr/bin/dbus-send";
    if (access(dbus_send.c_str(), X_OK) != 0) {
        GTEST_SKIP() << "no " << dbus_send;
    }
    const json set = milenage_set(4);
    const std::string path = import(profile_json(set, 5));
    MidProxy mid(calls(), path);
    mid.Activate(0);
    auto net = network(set);
    const auto bytes = [](ByteView b) {
        std::string out = "array:byte:";
        for (std::size_t i = 0; i < b.size(); ++i) {
            out += (i == 0 ? "" : ",") + std::to_string(b[i]);
        }
        return out;
    };
    std::uint64_t previous = 0x20 | 1;
    const usim::AuthVector first = make_vector(*net, previous);
    ASSERT_EQ(std::get<0>(mid.Authenticate(to_blob(first.rand), to_blob(first.autn))), "success");
    for (const auto delay : {0ms, 1ms, 3ms, 10ms, 30ms}) {
        const std::uint64_t sqn = previous + 32;
        const usim::AuthVector v = make_vector(*net, sqn);
        const pid_t pid = spawn({dbus_send, "--session", "--print-reply", "--reply-timeout=10000",
                                 "--dest=org.tresim1", path, "org.tresim1.Usim.Authenticate",
                                 bytes(v.rand), bytes(v.autn)});
        std::this_thread::sleep_for(delay);
        kill(pid, SIGKILL);
        wait_exit(pid, 5s);
        ASSERT_TRUE(env_->alive());
        // Give a call that got through time to finish, then look at SQN_MS.
        std::this_thread::sleep_for(50ms);
        const std::uint64_t highest = highest_sqn(mid, *net);
        EXPECT_TRUE(highest == previous || highest == sqn)
            << "SQN_MS " << highest << " after a call with SQN " << sqn;
        // Whatever happened, the next vector is accepted.
        const usim::AuthVector after = make_vector(*net, sqn + 32);
        EXPECT_EQ(std::get<0>(mid.Authenticate(to_blob(after.rand), to_blob(after.autn))),
                  "success");
        previous = sqn + 32;
    }
    EXPECT_TRUE(snapshot(calls()).audit_ok);
}

} // namespace
