// The Trusted Environment's cost on swtpm (issue 3), measured in one run:
//
//  1. TPM commands and NV writes of every TrustedEnvironment operation (open,
//     add_approval, import, activate, deactivate, AKA in each computation mode,
//     GSM, SUCI, verify_audit), the per-AKA average over 64 AKAs (what rollback
//     protection costs on the authentication path), and an audit-only append
//     (AuditLog::record: TrustedEnvironment has no audit-only call), counted by
//     the counting TCTI of tpm::Context and printed as a Markdown table with the
//     commands by code ("PolicyPCR×3").
//  2. With Google Benchmark (real time: the work happens in the swtpm process):
//     TrustedEnvironment::authenticate end to end in each mode, the TPM
//     computation alone (make_mid_algorithm + usim_authenticate, no database),
//     and the software-only usim_authenticate with the same keys; then the
//     ratios TPM time / software time.
//
// The TE runs on its own swtpm (tests/integration/swtpm.hpp); the audit-only
// append and the computation-only algorithms each get another one. Exits 77
// when swtpm or swtpm_setup is not installed. Pass Google Benchmark flags as
// usual, e.g.
//   bench_te --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "collecting_reporter.hpp"
#include "swtpm.hpp"
#include "te/audit.hpp"
#include "te/db.hpp"
#include "te/mid_crypto.hpp"
#include "te/te.hpp"
#include "tpm/context.hpp"
#include "tpm/policy.hpp"
#include "tpm/srk.hpp"
#include "usim/aka.hpp"
#include "usim/gsm.hpp"
#include "usim/milenage.hpp"
#include "usim/tuak.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;

// TS 35.208 set 1 for Milenage; for TUAK a 256-bit K and TOPc of no
// significance (the values do not matter for cost).
constexpr const char* kMilenageK = "465b5ce8b199b49faa5f0a2ee238a6bc";
constexpr const char* kMilenageOpc = "cd63cb71954a9f4e48a5994e37a02baf";
constexpr const char* kTuakK = "abababababababababababababababababababababababababababababababab";
constexpr const char* kTuakTopc =
    "bd04d9530e87513c5d837ac2ad954623a8e2330c115305a73eb45d1f40cccbff";
constexpr const char* kAmf = "8000";
// TS 33.501 C.4.3 Profile A home network public key.
constexpr const char* kHnPublicA =
    "5a8d38864820197c3394b92613b20b91633cbd897119273bf8e4a6f4eec0a650";
constexpr unsigned kIndBits = 5;
constexpr unsigned kRollbackAkas = 64;

// ---- TPM command names --------------------------------------------------------

std::string cc_name(TPM2_CC cc) {
    switch (cc) {
#define TRESIM_CC(name)                                                                            \
    case TPM2_CC_##name:                                                                           \
        return #name;
        TRESIM_CC(Startup)
        TRESIM_CC(GetCapability)
        TRESIM_CC(TestParms)
        TRESIM_CC(GetRandom)
        TRESIM_CC(ReadPublic)
        TRESIM_CC(CreatePrimary)
        TRESIM_CC(Create)
        TRESIM_CC(Load)
        TRESIM_CC(LoadExternal)
        TRESIM_CC(EvictControl)
        TRESIM_CC(FlushContext)
        TRESIM_CC(ContextSave)
        TRESIM_CC(ContextLoad)
        TRESIM_CC(StartAuthSession)
        TRESIM_CC(PolicyPCR)
        TRESIM_CC(PolicyAuthorize)
        TRESIM_CC(PolicyAuthValue)
        TRESIM_CC(PolicySecret)
        TRESIM_CC(PolicyCommandCode)
        TRESIM_CC(PolicyNV)
        TRESIM_CC(PolicyGetDigest)
        TRESIM_CC(PolicyRestart)
        TRESIM_CC(VerifySignature)
        TRESIM_CC(EncryptDecrypt)
        TRESIM_CC(EncryptDecrypt2)
        TRESIM_CC(Unseal)
        TRESIM_CC(HMAC)
        TRESIM_CC(Hash)
        TRESIM_CC(PCR_Read)
        TRESIM_CC(PCR_Extend)
        TRESIM_CC(NV_ReadPublic)
        TRESIM_CC(NV_Read)
        TRESIM_CC(NV_Write)
        TRESIM_CC(NV_Increment)
        TRESIM_CC(NV_Extend)
        TRESIM_CC(NV_DefineSpace)
        TRESIM_CC(NV_UndefineSpace)
        TRESIM_CC(NV_Certify)
        TRESIM_CC(Certify)
        TRESIM_CC(Quote)
        TRESIM_CC(Sign)
        TRESIM_CC(ObjectChangeAuth)
#undef TRESIM_CC
    default:
        break;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "CC_0x%03x", static_cast<unsigned>(cc));
    return buf;
}

std::string format_count(double v) {
    char buf[32];
    if (v == static_cast<double>(static_cast<std::uint64_t>(v))) {
        std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
    } else {
        std::snprintf(buf, sizeof buf, "%.3g", v);
    }
    return buf;
}

// "EncryptDecrypt2×3, FlushContext×2, Load, ..." (by name) divided by `per`.
std::string by_code(const tpm::CommandCounts& d, unsigned per) {
    std::map<std::string, std::uint64_t> named;
    for (const auto& [cc, n] : d.by_code) {
        if (n != 0) {
            named[cc_name(cc)] += n;
        }
    }
    std::string out;
    for (const auto& [name, n] : named) {
        if (!out.empty()) {
            out += ", ";
        }
        out += name;
        const double v = static_cast<double>(n) / per;
        if (v != 1.0) {
            out += "×" + format_count(v);
        }
    }
    return out.empty() ? "none" : out;
}

struct Row {
    std::string operation;
    std::string mode;
    tpm::CommandCounts d;
    unsigned per = 1; // d covers `per` operations
};

void print_table(const std::vector<Row>& rows) {
    std::printf("\n| operation | mode | TPM commands | NV writes | commands by code |\n"
                "|---|---|---:|---:|---|\n");
    for (const Row& r : rows) {
        std::printf("| %s | %s | %s | %s | %s |\n", r.operation.c_str(), r.mode.c_str(),
                    format_count(static_cast<double>(r.d.commands) / r.per).c_str(),
                    format_count(static_cast<double>(r.d.nv_writes) / r.per).c_str(),
                    by_code(r.d, r.per).c_str());
    }
    std::printf("\n");
    std::fflush(stdout);
}

// ---- Subscribers ------------------------------------------------------------------

std::string iccid(int n) {
    std::string body = "894902000000" + std::to_string(1000000 + n);
    for (char d = '0'; d <= '9'; ++d) {
        if (luhn_valid(body + d)) {
            return body + d;
        }
    }
    return body;
}

// One MID in the TE with its software twin, which makes the vectors.
struct Subscriber {
    std::string name; // "tpm-ecb", ..., "sealed (TUAK)"
    std::string slug; // "tpm-ecb", ..., "sealed-tuak"
    ComputationMode mode = ComputationMode::TpmEcb;
    bool tuak = false;
    std::int64_t index = 0;
    std::unique_ptr<usim::AkaAlgorithm> sw;
    usim::Amf amf = hex_decode_array<2>(kAmf, "amf");
    std::uint64_t seq = 0;

    // The next fresh vector (SEQ + 1, IND 0).
    usim::AuthVector next_vector(const usim::Rand& rand) {
        ++seq;
        return usim::generate_vector(*sw, rand, seq << kIndBits, amf);
    }
};

json profile_for(const Subscriber& s, int n) {
    json p = {{"iccid", iccid(n)},
              {"imsi", "26201" + std::to_string(1000000000 + n)},
              {"algorithm", s.tuak ? "tuak" : "milenage"},
              {"k", s.tuak ? kTuakK : kMilenageK},
              {"opc", s.tuak ? kTuakTopc : kMilenageOpc},
              {"amf", kAmf},
              {"ind_bits", kIndBits},
              {"suci", {{"profile", "A"}, {"hn_key_id", 1}, {"hn_public_key", kHnPublicA}}}};
    if (s.tuak) {
        p["tuak"] = {{"res_bits", 64}, {"mac_bits", 64}, {"ck_bits", 128}, {"ik_bits", 128}};
    }
    return p;
}

std::unique_ptr<usim::AkaAlgorithm> software_twin(bool tuak) {
    if (tuak) {
        return std::make_unique<usim::Tuak>(SecretBytes::from_hex(kTuakK, "k"),
                                            usim::Topc(hex_decode(kTuakTopc, "topc")),
                                            usim::TuakParams{});
    }
    return usim::Milenage::software(hex_decode(kMilenageK, "k"), hex_decode(kMilenageOpc, "opc"));
}

Bytes text_bytes(const std::string& s) {
    return Bytes(s.begin(), s.end());
}

template <class F> tpm::CommandCounts measure(const TrustedEnvironment& te, F&& f) {
    const tpm::CommandCounts before = te.counts();
    f();
    return te.counts() - before;
}

void require_success(const usim::AkaResult& r, const std::string& what) {
    if (!std::holds_alternative<usim::AkaSuccess>(r)) {
        throw std::runtime_error(what + ": the TE refused a fresh vector");
    }
}

// ---- Part 1 (and the TE for part 2) -------------------------------------------------

struct TeBench {
    test::Swtpm swtpm;
    std::string dir = test::make_temp_dir("tresim-bench-te-");
    TeConfig config;
    tpm::PolicyAuthority authority = tpm::PolicyAuthority::generate();
    std::unique_ptr<TrustedEnvironment> te;
    std::vector<Subscriber> subscribers;
    std::vector<Row> rows;

    TeBench() {
        config.state_dir = dir + "/state";
        config.tcti = swtpm.tcti();
        config.slots = 4;
    }
    ~TeBench() {
        te.reset();
        test::remove_tree(dir);
    }
    TeBench(const TeBench&) = delete;
    TeBench& operator=(const TeBench&) = delete;

    void add(std::string operation, std::string mode, tpm::CommandCounts d, unsigned per = 1) {
        rows.push_back({std::move(operation), std::move(mode), std::move(d), per});
    }

    void open(std::optional<ComputationMode> mode, const char* row) {
        te.reset();
        config.force_mode = mode;
        te = std::make_unique<TrustedEnvironment>(config);
        if (row != nullptr) {
            add(row, "-", te->counts()); // counts since the TE was opened
        }
    }

    void run_counts() {
        open(ComputationMode::TpmEcb,
             "open, first start (SRK, epoch counter, MAC key, audit index)");
        const MidApproval approval = approve(authority, te->current_pcrs(), false, {});
        add("add_approval", "-", measure(*te, [&] { te->add_approval(approval); }));

        const std::pair<ComputationMode, bool> kinds[] = {{ComputationMode::TpmEcb, false},
                                                          {ComputationMode::TpmCfb, false},
                                                          {ComputationMode::Sealed, false},
                                                          {ComputationMode::Sealed, true}};
        int n = 0;
        for (const auto& [mode, tuak] : kinds) {
            if (mode != config.force_mode) {
                open(mode, mode == ComputationMode::Sealed ? "open, restart" : nullptr);
            }
            Subscriber s;
            s.mode = mode;
            s.tuak = tuak;
            s.name = std::string(to_string(mode)) + (tuak ? " (TUAK)" : "");
            s.slug = std::string(to_string(mode)) + (tuak ? "-tuak" : "");
            s.sw = software_twin(tuak);
            const std::string text = profile_for(s, ++n).dump();
            s.index = 0;
            add(std::string("import (") + (tuak ? "TUAK" : "Milenage") + ")", s.name,
                measure(*te, [&] {
                    s.index = te->import_profile(text_bytes(text), authority.tpm_public());
                }));
            if (te->get(s.index).mode != mode) {
                throw std::runtime_error("the MID was not imported in mode " + s.name);
            }
            subscribers.push_back(std::move(s));
        }

        Subscriber& first = subscribers.front();
        add("activate", "-", measure(*te, [&] { te->activate(first.index, 0); }));
        add("deactivate", "-", measure(*te, [&] { te->deactivate(first.index); }));
        for (std::size_t i = 0; i < subscribers.size(); ++i) {
            te->activate(subscribers[i].index, static_cast<unsigned>(i));
        }

        for (Subscriber& s : subscribers) {
            // Single AKAs until one without and one with an epoch bump were seen.
            std::optional<tpm::CommandCounts> plain;
            std::optional<tpm::CommandCounts> bump;
            for (unsigned i = 0; i < 2 * config.sqn_interval && (!plain || !bump); ++i) {
                const usim::Rand rand = usim::random_rand();
                const usim::AuthVector v = s.next_vector(rand);
                const tpm::CommandCounts d = measure(
                    *te, [&] { require_success(te->authenticate(s.index, rand, v.autn), s.name); });
                (d.nv_writes == 0 ? plain : bump) = d;
            }
            if (plain) {
                add("AKA (usim_authenticate + SQN commit)", s.name, *plain);
            }
            if (bump) {
                add("AKA, the one in sqn_interval that bumps the epoch", s.name, *bump);
            }
            const tpm::CommandCounts before = te->counts();
            for (unsigned i = 0; i < kRollbackAkas; ++i) {
                const usim::Rand rand = usim::random_rand();
                const usim::AuthVector v = s.next_vector(rand);
                require_success(te->authenticate(s.index, rand, v.autn), s.name);
            }
            add("AKA, mean of " + std::to_string(kRollbackAkas), s.name, te->counts() - before,
                kRollbackAkas);
        }
        for (Subscriber& s : subscribers) {
            add("GSM (SRES/Kc)", s.name, measure(*te, [&] {
                    const usim::GsmContext g = te->gsm_authenticate(s.index, usim::random_rand());
                    benchmark::DoNotOptimize(g);
                }));
        }
        add("SUCI (Profile A)", subscribers.front().name, measure(*te, [&] {
                const usim::Suci c = te->suci(subscribers.front().index);
                benchmark::DoNotOptimize(c.text);
            }));
        add("verify_audit", "-", measure(*te, [&] {
                if (!te->verify_audit().ok) {
                    throw std::runtime_error("the audit record does not verify");
                }
            }));
        add("add_approval (again, same state)", "-",
            measure(*te, [&] { te->add_approval(approval); }));
    }
};

// Part 1b on a second swtpm: an audit-only append (AuditLog::record in its own
// transaction, then the anchor), which TrustedEnvironment does not expose.
tpm::CommandCounts audit_only_append() {
    test::Swtpm swtpm;
    const std::string dir = test::make_temp_dir("tresim-bench-audit-");
    tpm::CommandCounts d;
    {
        tpm::Context ctx(swtpm.tcti());
        Db db(dir + "/audit.db");
        AuditLog log = AuditLog::open_tpm(db, ctx, SecretBytes(32));
        log.record(AuditType::PolicyUpdate, std::nullopt, {{"warm-up", true}});
        const tpm::CommandCounts before = ctx.counts();
        log.record(AuditType::PolicyUpdate, std::nullopt, {{"bench", true}});
        d = ctx.counts() - before;
    }
    test::remove_tree(dir);
    return d;
}

// ---- Part 2: time ---------------------------------------------------------------------

// The TPM computation alone (no database), on its own swtpm: what
// TrustedEnvironment::authenticate runs inside the TPM, with the same keys.
struct ComputeBench {
    test::Swtpm swtpm;
    tpm::Context ctx{swtpm.tcti()};
    tpm::Srk srk = tpm::ensure_srk(ctx);
    tpm::PolicyAuthority authority = tpm::PolicyAuthority::generate();
    tpm::TicketCache tickets;
    MidApproval approval = approve(
        authority, tpm::read_pcrs(ctx, tpm::parse_pcr_selection("sha256:0,2,4,7")), false, {});

    MidKeyMaterial material(ComputationMode mode, bool tuak) {
        MidCreateOptions o;
        o.mode = mode;
        if (tuak) {
            return create_tuak_mid(ctx, srk.handle, SecretBytes::from_hex(kTuakK, "k"),
                                   usim::Topc(hex_decode(kTuakTopc, "topc")), usim::TuakParams{}, o,
                                   approval);
        }
        return create_milenage_mid(ctx, srk.handle, SecretBytes::from_hex(kMilenageK, "k"),
                                   SecretBytes::from_hex(kMilenageOpc, "opc"), false, o, approval,
                                   tickets);
    }
};

// usim_authenticate over `alg` with one fixed vector (the state is not advanced).
void time_usim_authenticate(benchmark::State& state, usim::AkaAlgorithm& alg,
                            usim::AkaAlgorithm& sw) {
    usim::SqnConfig config;
    config.ind_bits = kIndBits;
    const usim::SqnState sqn_state(config);
    const usim::Rand rand = usim::random_rand();
    const usim::AuthVector v = usim::generate_vector(sw, rand, std::uint64_t{1} << kIndBits,
                                                     hex_decode_array<2>(kAmf, "amf"));
    for (auto _ : state) {
        const usim::AkaResult r = usim::usim_authenticate(alg, sqn_state, rand, v.autn);
        if (!std::holds_alternative<usim::AkaSuccess>(r)) {
            state.SkipWithError("usim_authenticate refused the vector");
            break;
        }
        benchmark::DoNotOptimize(std::get<usim::AkaSuccess>(r).res.data());
    }
}

std::string bench_name(const char* what, const std::string& slug) {
    return std::string(what) + "/" + slug;
}

int run(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }

    // Part 1: counts.
    TeBench teb;
    teb.run_counts();
    teb.add("audit-only append (AuditLog::record; not in the TE API)", "-", audit_only_append());

    // The TPM computation alone, with the same keys, on a second swtpm (the TE
    // keeps its connection to the first one open for part 2).
    ComputeBench cb;
    std::vector<std::unique_ptr<MidAlgorithm>> algorithms;
    for (const Subscriber& s : teb.subscribers) {
        algorithms.push_back(
            make_mid_algorithm(cb.ctx, cb.srk.handle, cb.material(s.mode, s.tuak), cb.tickets));
        for (int warm = 0; warm < 2; ++warm) { // the second with a warm ticket cache
            const usim::Rand rand = usim::random_rand();
            const usim::AuthVector v = usim::generate_vector(*s.sw, rand, 1u << kIndBits, s.amf);
            require_success(usim::usim_authenticate(*algorithms.back(), usim::SqnState({kIndBits}),
                                                    rand, v.autn),
                            s.name);
        }
        teb.add("usim_authenticate alone (MidAlgorithm, no database)", s.name,
                algorithms.back()->last_counts());
    }

    std::printf("TPM commands and NV writes per operation (sqn_interval %u, PCRs %s):\n",
                teb.config.sqn_interval, teb.config.pcrs.c_str());
    print_table(teb.rows);

    // Part 2: time.
    struct Timed {
        std::string mode;
        bool tuak;
        std::string te, tpm, sw;
    };
    std::vector<Timed> timed;
    std::map<bool, std::unique_ptr<usim::AkaAlgorithm>> software;
    software[false] = software_twin(false);
    software[true] = software_twin(true);
    for (const bool tuak : {false, true}) {
        const std::string name =
            bench_name("BM_SoftwareUsimAuthenticate", tuak ? "tuak" : "milenage");
        benchmark::RegisterBenchmark(name.c_str(),
                                     [&software, tuak](benchmark::State& state) {
                                         time_usim_authenticate(state, *software[tuak],
                                                                *software[tuak]);
                                     })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
    }
    for (std::size_t i = 0; i < teb.subscribers.size(); ++i) {
        Subscriber& s = teb.subscribers[i];
        Timed t{s.name, s.tuak, bench_name("BM_TeAuthenticate", s.slug),
                bench_name("BM_TpmUsimAuthenticate", s.slug),
                bench_name("BM_SoftwareUsimAuthenticate", s.tuak ? "tuak" : "milenage")};
        TrustedEnvironment& te = *teb.te;
        benchmark::RegisterBenchmark(t.te.c_str(),
                                     [&te, &s](benchmark::State& state) {
                                         for (auto _ : state) {
                                             state.PauseTiming();
                                             const usim::Rand rand = usim::random_rand();
                                             const usim::AuthVector v = s.next_vector(rand);
                                             state.ResumeTiming();
                                             const usim::AkaResult r =
                                                 te.authenticate(s.index, rand, v.autn);
                                             if (!std::holds_alternative<usim::AkaSuccess>(r)) {
                                                 state.SkipWithError("the TE refused the vector");
                                                 break;
                                             }
                                         }
                                     })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        MidAlgorithm& alg = *algorithms[i];
        usim::AkaAlgorithm& sw = *software[s.tuak];
        benchmark::RegisterBenchmark(
            t.tpm.c_str(),
            [&alg, &sw](benchmark::State& state) { time_usim_authenticate(state, alg, sw); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        timed.push_back(std::move(t));
    }

    tresim::bench::CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    std::fflush(stdout);

    std::printf("\nAKA real time per call (µs; median of the repetitions when given) and the "
                "ratio to software usim_authenticate with the same keys; the TE's CPU time in this "
                "process (the rest is swtpm and waiting):\n\n"
                "| mode | TE authenticate | of which CPU here | TPM computation only | software | "
                "TE / software | TPM only / software |\n|---|---:|---:|---:|---:|---:|---:|\n");
    auto cell = [](std::optional<double> v, int decimals) {
        char buf[32];
        if (!v) {
            return std::string("n/a");
        }
        std::snprintf(buf, sizeof buf, "%.*f", decimals, *v);
        return std::string(buf);
    };
    for (const Timed& t : timed) {
        const auto te = reporter.real_us(t.te);
        const auto tpm_only = reporter.real_us(t.tpm);
        const auto sw = reporter.real_us(t.sw);
        std::optional<double> r1;
        std::optional<double> r2;
        if (te && sw && *sw > 0) {
            r1 = *te / *sw;
        }
        if (tpm_only && sw && *sw > 0) {
            r2 = *tpm_only / *sw;
        }
        std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", t.mode.c_str(), cell(te, 0).c_str(),
                    cell(reporter.cpu_us(t.te), 0).c_str(), cell(tpm_only, 0).c_str(),
                    cell(sw, 3).c_str(), cell(r1, 0).c_str(), cell(r2, 0).c_str());
    }
    std::printf("\n");
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (tresim::test::run_command("command -v swtpm >/dev/null && command -v swtpm_setup "
                                  ">/dev/null") != 0) {
        std::fprintf(stderr, "bench_te: swtpm and swtpm_setup are needed\n");
        return 77;
    }
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "bench_te: %s\n", e.what());
        return 1;
    }
}
