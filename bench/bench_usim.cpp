// Throughput of libtresim-usim's hot paths, with libosmocore's Milenage measured in
// the same run as the reference. After the usual Google Benchmark output it prints
// ns per vector for both Milenage generators and, as the very last line,
//   milenage_vs_libosmocore: R
// where R = tresim vectors per second / libosmocore vectors per second, from the
// per-iteration CPU time (the median when --benchmark_repetitions is given).
// --secure-heap (before the benchmark flags) first sets up OpenSSL's secure heap, as
// tresimd does, so that SecretBytes come from it.

#include "usim/aka.hpp"
#include "usim/milenage.hpp"
#include "usim/secret.hpp"

#ifndef TRESIM_BENCH_TUAK
#define TRESIM_BENCH_TUAK 1
#endif
#if TRESIM_BENCH_TUAK
#include "usim/tuak.hpp"
#endif

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "collecting_reporter.hpp"

extern "C" {
#include <osmocom/crypt/auth.h>
}

namespace {

using namespace tresim;
using namespace tresim::usim;

// TS 35.208 set 1 as the subscriber; the values do not matter for speed.
const std::array<std::uint8_t, 16> kK = {0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f,
                                         0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc};
const std::array<std::uint8_t, 16> kOpc = {0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e,
                                           0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf};
const Rand kRand = {0x23, 0x55, 0x3c, 0xbe, 0x96, 0x37, 0xa8, 0x9d,
                    0x21, 0x8a, 0xe6, 0x4d, 0xae, 0x47, 0xbf, 0x35};
const Amf kAmf = {0xb9, 0xb9};
constexpr unsigned kIndBits = 5;
constexpr std::uint64_t kSqnStart = 0x000000001000;
constexpr std::uint64_t kSqnWrap = std::uint64_t{1} << 47;

const char* const kTresimVector = "BM_TresimMilenageVector";
const char* const kOsmocomVector = "BM_OsmocomMilenageVector";

// Network side: one vector per iteration, the algorithm object created once.
void BM_TresimMilenageVector(benchmark::State& state) {
    auto m = Milenage::software(kK, kOpc);
    std::uint64_t sqn = kSqnStart;
    for (auto _ : state) {
        AuthVector v = generate_vector(*m, kRand, sqn, kAmf);
        benchmark::DoNotOptimize(v.autn.data());
        benchmark::DoNotOptimize(v.ck.data());
        sqn = (sqn + (std::uint64_t{1} << kIndBits)) % kSqnWrap;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TresimMilenageVector);

// USIM side: verify AUTN, check SQN freshness, answer RES/CK/IK and the new state.
void BM_TresimUsimAuthenticate(benchmark::State& state) {
    auto m = Milenage::software(kK, kOpc);
    SqnConfig config;
    config.ind_bits = kIndBits;
    const SqnState sqn_state = SqnState::from_highest(kSqnStart, config);
    const std::uint64_t sqn = kSqnStart + (std::uint64_t{1} << kIndBits);
    const AuthVector v = generate_vector(*m, kRand, sqn, kAmf);
    for (auto _ : state) {
        AkaResult r = usim_authenticate(*m, sqn_state, kRand, v.autn);
        if (!std::holds_alternative<AkaSuccess>(r)) {
            state.SkipWithError("usim_authenticate refused the vector");
            break;
        }
        benchmark::DoNotOptimize(std::get<AkaSuccess>(r).res.data());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TresimUsimAuthenticate);

#if TRESIM_BENCH_TUAK
// TUAK vector generation with the default parameters (64-bit MAC and RES, 128-bit
// CK/IK, one Keccak iteration) and a 128-bit K.
void BM_TresimTuakVector(benchmark::State& state) {
    const TuakParams params{};
    Top top{};
    top.fill(0x55);
    const Topc topc = Tuak::compute_topc(kK, top, params.keccak_iterations);
    Tuak tuak(SecretBytes(ByteView(kK)), topc, params);
    std::uint64_t sqn = kSqnStart;
    for (auto _ : state) {
        AuthVector v = generate_vector(tuak, kRand, sqn, kAmf);
        benchmark::DoNotOptimize(v.autn.data());
        benchmark::DoNotOptimize(v.ck.data());
        sqn = (sqn + (std::uint64_t{1} << kIndBits)) % kSqnWrap;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TresimTuakVector);
#endif

// The reference: libosmocore's osmo_auth_gen_vec (Milenage, OPc given). It also
// advances the SQN (by 2^ind_bitlen) and fills the GSM triplet, as an HLR uses it.
void BM_OsmocomMilenageVector(benchmark::State& state) {
    osmo_sub_auth_data aud{};
    aud.type = OSMO_AUTH_TYPE_UMTS;
    aud.algo = OSMO_AUTH_ALG_MILENAGE;
    std::memcpy(aud.u.umts.k, kK.data(), 16);
    std::memcpy(aud.u.umts.opc, kOpc.data(), 16);
    std::memcpy(aud.u.umts.amf, kAmf.data(), 2);
    aud.u.umts.opc_is_op = 0;
    aud.u.umts.ind_bitlen = kIndBits;
    aud.u.umts.sqn = kSqnStart;
    osmo_auth_vector vec{};
    for (auto _ : state) {
        if (osmo_auth_gen_vec(&vec, &aud, kRand.data()) != 0) {
            state.SkipWithError("osmo_auth_gen_vec failed");
            break;
        }
        benchmark::DoNotOptimize(vec.autn);
        benchmark::ClobberMemory();
        aud.u.umts.sqn %= kSqnWrap;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OsmocomMilenageVector);

} // namespace

int main(int argc, char** argv) {
    // Our own flag first, so that benchmark::Initialize does not see it.
    bool use_secure_heap = false;
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i) {
        if (i > 0 && std::string_view(argv[i]) == "--secure-heap") {
            use_secure_heap = true;
        } else {
            args.push_back(argv[i]);
        }
    }
    int n = static_cast<int>(args.size());
    args.push_back(nullptr);
    if (use_secure_heap && !tresim::secure_heap_init(1 << 20)) {
        std::fprintf(stderr, "note: the secure heap could not be locked (it is still used)\n");
    }
    benchmark::Initialize(&n, args.data());
    if (benchmark::ReportUnrecognizedArguments(n, args.data())) {
        return 1;
    }
    tresim::bench::CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();

    // CPU and real ns per iteration.
    const auto ns = [&](const char* name) -> std::optional<std::pair<double, double>> {
        const auto cpu = reporter.cpu_us(name);
        const auto real = reporter.real_us(name);
        if (!cpu || !real) {
            return std::nullopt;
        }
        return std::make_pair(*cpu * 1e3, *real * 1e3);
    };
    const auto ours = ns(kTresimVector);
    const auto theirs = ns(kOsmocomVector);
    std::fflush(stdout);
    if (ours) {
        std::printf("tresim Milenage vector: %.1f ns (cpu), %.1f ns (real)%s\n", ours->first,
                    ours->second, use_secure_heap ? ", secure heap" : "");
    }
    if (theirs) {
        std::printf("libosmocore Milenage vector: %.1f ns (cpu), %.1f ns (real)\n", theirs->first,
                    theirs->second);
    }
    if (ours && theirs && ours->first > 0) {
        std::printf("milenage_vs_libosmocore: %.2f\n", theirs->first / ours->first);
    } else {
        std::printf("milenage_vs_libosmocore: n/a (run both %s and %s)\n", kTresimVector,
                    kOsmocomVector);
    }
    return 0;
}
