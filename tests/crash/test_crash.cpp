// Crash injection (issue: "kill the process at random points during import,
// lifecycle changes and SQN updates; afterwards the state is the old or the
// new one, never a third, the audit log verifies, and SQN never goes back").
//
// te_worker (te_worker.cpp) runs a random script of TE operations on one state
// folder and acknowledges each on stdout. This driver kills it with SIGKILL
// (script.cpp): after a random delay, right after an acknowledgement, at a
// random point inside an operation, or exactly at a TPM command boundary
// (its TPM traffic goes through a proxy, harness.cpp: before the TPM sees a
// command, or after the TPM executed it but before the worker got the answer,
// in particular the epoch counter's NV_Increment and the audit NV_Extend).
// Now and then swtpm is killed too (a power cut), and sometimes the next start
// is killed as well before anything checked (a crash during recovery). Then
// the driver opens the TrustedEnvironment itself and checks the state against
// a model of the acknowledged operations.
//
// The random choices come from one seed, printed at the start;
// TRESIM_CRASH_SEED=<seed> repeats them (the delays depend on timing, so a
// repeat diverges once a delayed kill lands elsewhere), TRESIM_CRASH_KILLS=<n>
// sets the number of kills, TRESIM_CRASH_TRACE=<file> logs every TPM command
// and kill.
//
// Without a resource manager between the TE and swtpm, a killed process
// leaves its transient objects and sessions loaded in the TPM; the kernel's
// /dev/tpmrm0 (the daemon's default TCTI) flushes them when the process dies.
// The driver does the same after each kill (flush_leftovers), and counts them.

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "script.hpp"
#include "swtpm.hpp"
#include "te/te.hpp"
#include "tpm/error.hpp"
#include "tpm/policy.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;
using namespace tresim::test::crash;
namespace fs = std::filesystem;

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::stoull(v, nullptr, 0) : fallback;
}

// TRESIM_TE_WORKER (meson test sets it), else te_worker beside this executable.
std::string worker_path() {
    const char* p = std::getenv("TRESIM_TE_WORKER");
    if (p != nullptr && *p != '\0') {
        return p;
    }
    std::error_code ec;
    return (fs::read_symlink("/proc/self/exe", ec).parent_path() / "te_worker").string();
}

// ---- The test ----------------------------------------------------------------------------

struct Stats {
    int iterations = 0;
    int kills = 0;          // of the worker running operations
    int recovery_kills = 0; // of a start after a kill, before anything checked
    int power_cuts = 0;
    std::map<std::string, int> phases;
    int committed_unacknowledged = 0; // the op in progress had committed
    int lost_unacknowledged = 0;      // the op in progress had not
    int intent_without_increment = 0; // killed between the intent commit and the increment
    int recovered_crash = 0;          // GuardStatus.recovered_crash: counter one ahead
    int audit_reanchors = 0;          // committed records not (known to be) in the NV index
    int leftovers_flushed = 0;        // transient objects and sessions of killed workers
    int replays_refused = 0;
    std::map<std::string, int> tpm_kills; // "before X" / "inside X": aimed at TPM command X
};

class CrashTest : public testing::Test {
protected:
    void SetUp() override {
        if (worker_path().empty() || !fs::exists(worker_path())) {
            GTEST_SKIP() << "no te_worker at " << worker_path() << " (set TRESIM_TE_WORKER)";
        }
        seed_ = env_number("TRESIM_CRASH_SEED",
                           std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32));
        std::cout << "crash injection seed: " << seed_ << " (TRESIM_CRASH_SEED=" << seed_
                  << " repeats the choices)" << std::endl;
        RecordProperty("seed", std::to_string(seed_));
        rng_.seed(seed_);
        dir_ = test::make_temp_dir("tresim-crash-");
        state_ = dir_ + "/state";
        data_ = dir_ + "/data";
        fs::create_directories(data_);
    }
    void TearDown() override {
        if (!dir_.empty()) {
            if (HasFailure()) {
                std::cout << "state kept for inspection in " << dir_ << std::endl;
            } else {
                test::remove_tree(dir_);
            }
        }
    }

    // Profiles with K and OPc from the seed, and the authority's key.
    void write_data() {
        for (int n = 0; n < kProfiles; ++n) {
            Bytes k(16), opc(16);
            for (auto& b : k) {
                b = static_cast<std::uint8_t>(rng_());
            }
            for (auto& b : opc) {
                b = static_cast<std::uint8_t>(rng_());
            }
            const json p = {{"iccid", iccid(n)},
                            {"imsi", "26201" + std::to_string(2000000000 + n)},
                            {"algorithm", "milenage"},
                            {"k", hex_encode(k)},
                            {"opc", hex_encode(opc)},
                            {"amf", "8000"},
                            {"label", "crash " + std::to_string(n)}};
            std::ofstream(data_ + "/profile-" + std::to_string(n) + ".json") << p.dump();
        }
        authority_.save(data_ + "/authority.pem");
    }

    TeConfig config(const std::string& tcti) const {
        TeConfig c;
        c.state_dir = state_;
        c.tcti = tcti;
        c.slots = kSlots;
        return c;
    }

    View observe(TrustedEnvironment& te) {
        View v;
        for (int n = 0; n < kProfiles; ++n) {
            try {
                const MidRecord m = te.get_by_iccid(iccid(n));
                MidView& x = v[static_cast<std::size_t>(n)];
                x.present = true;
                x.state = to_string(m.state);
                x.slot = m.slot ? static_cast<int>(*m.slot) : -1;
                x.sqn = m.sqn.highest_sqn();
                x.index = m.index;
            } catch (const TeError& e) {
                if (e.code() != ErrorCode::UnknownMid) {
                    throw;
                }
            }
        }
        return v;
    }

    std::uint64_t seed_ = 0;
    std::mt19937_64 rng_;
    std::string dir_, state_, data_;
    tpm::PolicyAuthority authority_ = tpm::PolicyAuthority::generate();
};

struct AckedAka {
    int n = 0;
    std::int64_t index = 0;
    usim::Rand rand{};
    Bytes autn;
    std::uint64_t sqn = 0;
};

TEST_F(CrashTest, KilledAnywhereTheTeKeepsTheOldOrTheNewStateAndSqnNeverGoesBack) {
    const int wanted_kills = static_cast<int>(env_number("TRESIM_CRASH_KILLS", 250));
    test::Swtpm tpm; // power-cut now and then: SIGKILL, then back on the same state
    write_data();
    {
        TrustedEnvironment te(config(tpm.tcti()));
        te.add_approval(approve(authority_, te.current_pcrs(), false, {}));
    }

    Timing timing;
    TpmProxy proxy;
    Runner runner(worker_path(), rng_, timing, proxy);
    Stats st;
    View model;
    std::int64_t records = 0;
    {
        TrustedEnvironment te(config(tpm.tcti()));
        records = te.info().audit.records;
    }
    std::map<std::int64_t, std::uint64_t> highest; // MID index -> highest SQN seen
    std::optional<AckedAka> last_aka;
    std::string history; // the last iterations, newest first, for failure messages
    const std::string stderr_path = dir_ + "/worker.log";
    const auto started = Clock::now();

    for (int it = 0; st.kills < wanted_kills; ++it) {
        SCOPED_TRACE("seed " + std::to_string(seed_) + ", iteration " + std::to_string(it));
        trace("=== iteration " + std::to_string(it));
        ASSERT_LT(it, wanted_kills * 2) << "too few kills landed";
        Plan plan;
        plan.ops = make_script(model, rng_);
        const unsigned roll = static_cast<unsigned>(rng_() % 100);
        if (it == 0 || roll < 6) {
            plan.mode = KillMode::None;
        } else if (roll < 22) {
            plan.mode = KillMode::Delay;
        } else if (roll < 34) {
            plan.mode = KillMode::AfterDone;
            plan.k = 1 + rng_() % plan.ops.size();
        } else {
            plan.mode = roll < 50   ? KillMode::InOp
                        : roll < 66 ? KillMode::TpmCommand
                        : roll < 82 ? KillMode::TpmResponse
                                    : KillMode::TpmNv;
            plan.k = rng_() % plan.ops.size();
            plan.nv_response = rng_() % 2 == 0;
        }
        plan.power_cut = it > 0 && rng_() % 100 < 12;
        plan.sqn_interval = std::array<unsigned, 3>{1, 2, 16}[rng_() % 3];
        plan.compute_mode = std::array<const char*, 3>{"tpm-ecb", "tpm-cfb", "sealed"}[rng_() % 3];

        std::ofstream(stderr_path, std::ios::app) << "--- iteration " << it << "\n";
        auto args = [&] {
            return std::vector<std::string>{"--state",        state_,
                                            "--data",         data_,
                                            "--sqn-interval", std::to_string(plan.sqn_interval),
                                            "--mode",         plan.compute_mode};
        };
        auto crash_run = [&](const Plan& p, Outcome& o) {
            bool cut = false;
            o = runner.run(args(), tpm.port(), p, stderr_path, [&] {
                if (p.power_cut && !cut) {
                    trace("power cut, old port " + std::to_string(tpm.port()));
                    tpm.power_cut(); // SIGKILL to swtpm; it comes back on the same state
                    trace("power back, port " + std::to_string(tpm.port()));
                    cut = true;
                }
            });
            if (!cut) {
                st.leftovers_flushed += flush_leftovers(tpm.tcti());
            }
            return cut;
        };
        // What a start found, counted when the start completed.
        auto count_start = [&](const DbPeek& found, bool recovered) {
            st.recovered_crash += recovered ? 1 : 0;
            st.intent_without_increment += found.pending != 0 && !recovered ? 1 : 0;
            st.audit_reanchors += found.records > found.anchored ? 1 : 0;
        };

        Outcome out;
        const bool cut = crash_run(plan, out);
        ++st.iterations;
        const bool crashed = out.killed || cut;
        if (crashed) {
            ++st.kills;
            ++st.phases[out.phase];
            st.power_cuts += cut ? 1 : 0;
            if (!out.tpm_kill.empty()) {
                ++st.tpm_kills[out.tpm_kill];
            }
        }
        const std::string script = [&] {
            std::string s;
            for (const Op& op : plan.ops) {
                s += " " + op.arg();
            }
            return s;
        }();
        const std::string how = std::string(mode_name(plan.mode)) + " k=" + std::to_string(plan.k) +
                                (out.tpm_kill.empty() ? "" : " (" + out.tpm_kill + ")") +
                                (cut ? ", power cut" : "") + ", sqn-interval " +
                                std::to_string(plan.sqn_interval);
        std::string story = "script:" + script + "\n  kill: " + how +
                            "\n  worker said:" + tail(out.lines) +
                            "\n  model before:" + describe(model) + "\n  earlier:" + history;
        if (!crashed) {
            ASSERT_TRUE(out.ended && WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0)
                << "the worker failed without a kill\n  " << story << "\n  stderr:\n"
                << [&] {
                       const std::string log = read_file_text(stderr_path);
                       return log.substr(log.size() > 3000 ? log.size() - 3000 : 0);
                   }();
        } else if (!cut) {
            // Killed, not cut: the worker never reports an error of its own.
            for (const std::string& l : out.lines) {
                ASSERT_NE(l.rfind("error ", 0), 0u) << story;
            }
        }

        // Sometimes the next start is killed too before anything checked the
        // state: a crash during the recovery of a crash.
        if (crashed && rng_() % 100 < 20) {
            const int repeats = 1 + static_cast<int>(rng_() % 2);
            for (int r = 0; r < repeats; ++r) {
                Plan again;
                again.mode = KillMode::Delay;
                again.power_cut = rng_() % 100 < 10;
                const DbPeek found = peek(state_ + "/tresim.db");
                Outcome o;
                const bool c = crash_run(again, o);
                if (o.opened) {
                    count_start(found, o.lines.front().find("recovered=1") != std::string::npos);
                }
                story += "\n  then a start, " + std::string(o.killed ? "killed" : "not killed") +
                         (c ? ", power cut" : "") + ":" + tail(o.lines);
                if (!c) {
                    for (const std::string& l : o.lines) {
                        ASSERT_NE(l.rfind("error ", 0), 0u)
                            << "a start after a crash failed\n  " << story;
                    }
                }
                if (o.killed || c) {
                    ++st.recovery_kills;
                    ++st.phases[o.opened ? "after-recovery" : "recovery"];
                    st.power_cuts += c ? 1 : 0;
                } else {
                    ASSERT_TRUE(o.ended && WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0)
                        << "a start after a crash failed" << tail(o.lines) << "\n  " << story;
                }
            }
        }

        // What the killed process left, before the TE touches it.
        const DbPeek left = peek(state_ + "/tresim.db");
        std::unique_ptr<TrustedEnvironment> te;
        try {
            te = std::make_unique<TrustedEnvironment>(config(tpm.tcti()));
        } catch (const std::exception& e) {
            FAIL() << "the TE refuses to start after a " << (cut ? "power cut" : "kill")
                   << " in phase " << out.phase << ": " << e.what() << "\n  " << story;
        }
        const TeInfo info = te->info();
        trace("driver open: epoch " + std::to_string(info.epoch) + " recovered " +
              std::to_string(info.recovered_crash) + " left epoch " + std::to_string(left.epoch) +
              " pending " + std::to_string(left.pending) + " tcti " + tpm.tcti());
        count_start(left, info.recovered_crash);
        if (info.recovered_crash) {
            ASSERT_NE(left.pending, 0u) << "recovered a crash without a stored intent";
        }

        // Old or new, never a third.
        const View seen = observe(*te);
        View expected = model;
        for (std::size_t i = 0; i < out.done; ++i) {
            expected = after(expected, plan.ops[i]);
        }
        bool took_next = false;
        if (seen == expected) {
            if (out.in_progress()) {
                ++st.lost_unacknowledged;
            }
        } else {
            ASSERT_TRUE(out.in_progress())
                << "the state is not what the acknowledged operations made\n  expected:"
                << describe(expected) << "\n  found:   " << describe(seen) << "\n  " << story;
            const View next = after(expected, plan.ops[out.done]);
            ASSERT_TRUE(seen == next)
                << "a third state after a kill inside " << plan.ops[out.done].arg()
                << "\n  old:  " << describe(expected) << "\n  new:  " << describe(next)
                << "\n  found:" << describe(seen) << "\n  " << story;
            took_next = true;
            ++st.committed_unacknowledged;
        }
        const std::size_t applied = out.done + (took_next ? 1 : 0);

        // Every MID with all its objects, no object without its MID.
        for (const auto& [index, mode] : left.mids) {
            const auto roles = left.objects.find(index);
            ASSERT_TRUE(roles != left.objects.end() && roles->second.count("key") == 1)
                << "MID " << index << " has no key object\n  " << story;
            if (mode != "sealed") {
                EXPECT_TRUE(roles->second.count("opc-wrap") + roles->second.count("opc") == 1)
                    << "MID " << index << " (" << mode << ") lacks its OPc object";
            }
        }
        for (const auto& [index, roles] : left.objects) {
            ASSERT_EQ(left.mids.count(index), 1u)
                << "objects of MID " << index << " without the MID\n  " << story;
        }

        // The audit record: verifies, and holds one record per applied change.
        const AuditVerification av = te->verify_audit();
        ASSERT_TRUE(av.ok) << av.message << "\n  " << story;
        std::int64_t changes = 0;
        for (std::size_t i = 0; i < applied; ++i) {
            changes += plan.ops[i].security() ? 1 : 0;
        }
        ASSERT_EQ(info.audit.records, records + changes)
            << "audit records do not match the applied changes\n  " << story;
        ASSERT_EQ(info.audit.anchored, info.audit.records);
        records = info.audit.records;

        // SQN never goes back; acknowledged SQNs are stored.
        for (int n = 0; n < kProfiles; ++n) {
            const MidView& m = seen[static_cast<std::size_t>(n)];
            if (!m.present) {
                continue;
            }
            const auto h = highest.find(m.index);
            if (h != highest.end()) {
                ASSERT_GE(m.sqn, h->second)
                    << "SQN went back for MID " << m.index << "\n  " << story;
            }
            highest[m.index] = m.sqn;
        }
        for (std::size_t i = 0; i < applied; ++i) {
            const Op& op = plan.ops[i];
            if (op.kind == OpKind::Aka) {
                const auto& [rand, autn] = out.challenges.at(i);
                last_aka =
                    AckedAka{op.n, seen[static_cast<std::size_t>(op.n)].index, rand, autn, op.sqn};
            }
        }

        // A replay of the last accepted AUTN is refused.
        if (last_aka) {
            const MidView& m = seen[static_cast<std::size_t>(last_aka->n)];
            if (!m.present || m.index != last_aka->index) {
                last_aka.reset();
            } else if (m.state == "active") {
                ASSERT_GE(m.sqn, last_aka->sqn);
                const usim::AkaResult r = te->authenticate(m.index, last_aka->rand, last_aka->autn);
                ASSERT_TRUE(std::holds_alternative<usim::AkaSyncFailure>(r))
                    << "a replayed AUTN (SQN 0x" << std::hex << last_aka->sqn << std::dec
                    << ") was not refused as a sync failure\n  " << story;
                ++st.replays_refused;
            }
        }
        te.reset();
        model = seen;
        history = "\n    " + std::to_string(it) + ":" + script + " / " + how + " / " +
                  std::to_string(out.done) + " acknowledged" +
                  (took_next ? ", next committed" : "") + history.substr(0, 600);
    }

    const double secs = std::chrono::duration<double>(Clock::now() - started).count();
    std::ostringstream summary;
    summary << "crash injection, seed " << seed_ << ": " << st.iterations << " iterations, "
            << st.kills << " kills while running operations and " << st.recovery_kills
            << " more of the start after one (" << st.power_cuts << " with a power cut) in " << secs
            << " s\n  kills per phase:";
    for (const auto& [phase, count] : st.phases) {
        summary << " " << phase << "=" << count;
    }
    summary << "\n  kills aimed at TPM commands (before: never executed; inside: executed, "
               "response lost):";
    for (const auto& [where, count] : st.tpm_kills) {
        summary << " " << where << "=" << count;
    }
    summary << "\n  op in progress committed/lost: " << st.committed_unacknowledged << "/"
            << st.lost_unacknowledged
            << "\n  intent stored but counter not moved: " << st.intent_without_increment
            << "\n  GuardStatus.recovered_crash (counter one ahead): " << st.recovered_crash
            << "\n  audit re-anchors at start: " << st.audit_reanchors
            << "\n  leftover TPM objects/sessions flushed: " << st.leftovers_flushed
            << "\n  replays refused: " << st.replays_refused << "\n";
    std::cout << summary.str();
    RecordProperty("kills", st.kills);
    RecordProperty("recovered_crash", st.recovered_crash);
    RecordProperty("audit_reanchors", st.audit_reanchors);
}

// The first start creates the TE's TPM objects (epoch counter, audit index, MAC
// key) and its database; a kill anywhere in it must leave something the next
// start accepts, on a TPM nobody used before.
TEST_F(CrashTest, AKillDuringTheFirstStartLeavesAStateTheNextStartAccepts) {
    const int runs = static_cast<int>(env_number("TRESIM_CRASH_FIRST_STARTS", 15));
    write_data();
    Timing timing;
    timing.open_ms = 400;
    TpmProxy proxy;
    Runner runner(worker_path(), rng_, timing, proxy);
    const json profile = json::parse(read_file_text(data_ + "/profile-0.json"));
    auto sw = usim::Milenage::software(hex_decode(profile.at("k").get<std::string>(), "k"),
                                       hex_decode(profile.at("opc").get<std::string>(), "opc"));
    const std::string text = profile.dump();
    int kills = 0;
    std::map<std::string, int> phases;
    for (int i = 0; i < runs; ++i) {
        SCOPED_TRACE("seed " + std::to_string(seed_) + ", first start " + std::to_string(i));
        test::Swtpm tpm; // a TPM nobody used
        state_ = dir_ + "/first-" + std::to_string(i);
        Plan plan;
        plan.mode = i == 0 ? KillMode::None : KillMode::Delay; // the first one calibrates
        const Outcome out = runner.run({"--state", state_, "--data", data_}, tpm.port(), plan,
                                       dir_ + "/worker.log", [] {});
        if (out.killed) {
            ++kills;
            ++phases[out.phase];
        } else {
            ASSERT_TRUE(out.ended) << tail(out.lines);
        }
        flush_leftovers(tpm.tcti());
        std::unique_ptr<TrustedEnvironment> te;
        try {
            te = std::make_unique<TrustedEnvironment>(config(tpm.tcti()));
        } catch (const std::exception& e) {
            FAIL() << "the TE refuses to start after a kill in its first start: " << e.what()
                   << tail(out.lines);
        }
        const AuditVerification av = te->verify_audit();
        ASSERT_TRUE(av.ok) << av.message;
        EXPECT_TRUE(te->list().empty());
        // And it works: approve, import, activate, authenticate.
        te->add_approval(approve(authority_, te->current_pcrs(), false, {}));
        const std::int64_t idx =
            te->import_profile(Bytes(text.begin(), text.end()), authority_.tpm_public());
        te->activate(idx, 0);
        const usim::Rand rand = usim::random_rand();
        const usim::AuthVector v = usim::generate_vector(*sw, rand, 0x20, {0x80, 0x00});
        ASSERT_TRUE(std::holds_alternative<usim::AkaSuccess>(te->authenticate(idx, rand, v.autn)));
        ASSERT_TRUE(te->verify_audit().ok);
    }
    std::cout << "first starts: " << runs << " runs, " << kills << " killed in phase";
    for (const auto& [phase, count] : phases) {
        std::cout << " " << phase << "=" << count;
    }
    std::cout << " (open: inside the first start)" << std::endl;
}

} // namespace
