#pragma once
// The reporter every benchmark here uses to print ratios against a reference
// measured in the same run: it shows the results as Google Benchmark's default
// display reporter would (the console, unless --benchmark_format asks
// otherwise) and keeps each benchmark's real and CPU time per iteration, in
// microseconds: the median over repetitions when there are repetitions, else
// the mean of the runs.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace tresim::bench {

class CollectingReporter final : public benchmark::BenchmarkReporter {
public:
    CollectingReporter() : inner_(benchmark::CreateDefaultDisplayReporter()) {}

    bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }

    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            if (run.error_occurred) {
                continue;
            }
            Times& t = times_[run.run_name.function_name];
            const double real = to_us(run.GetAdjustedRealTime(), run.time_unit);
            const double cpu = to_us(run.GetAdjustedCPUTime(), run.time_unit);
            if (run.run_type == Run::RT_Aggregate) {
                if (run.aggregate_name == "median") {
                    t.median_real = real;
                    t.median_cpu = cpu;
                }
            } else {
                t.sum_real += real;
                t.sum_cpu += cpu;
                ++t.runs;
            }
        }
        inner_->ReportRuns(runs);
    }

    void Finalize() override { inner_->Finalize(); }

    // Real time per iteration, or this process's CPU time; none when the
    // benchmark did not run (filtered out, or it failed).
    std::optional<double> real_us(const std::string& name) const { return get(name, false); }
    std::optional<double> cpu_us(const std::string& name) const { return get(name, true); }

private:
    struct Times {
        std::optional<double> median_real;
        std::optional<double> median_cpu;
        double sum_real = 0;
        double sum_cpu = 0;
        int runs = 0;
    };

    static double to_us(double t, benchmark::TimeUnit unit) {
        switch (unit) {
        case benchmark::kNanosecond:
            return t / 1e3;
        case benchmark::kMicrosecond:
            return t;
        case benchmark::kMillisecond:
            return t * 1e3;
        case benchmark::kSecond:
            return t * 1e6;
        }
        return t;
    }

    std::optional<double> get(const std::string& name, bool cpu) const {
        const auto it = times_.find(name);
        if (it == times_.end()) {
            return std::nullopt;
        }
        const Times& t = it->second;
        if (const auto& m = cpu ? t.median_cpu : t.median_real) {
            return m;
        }
        if (t.runs == 0) {
            return std::nullopt;
        }
        return (cpu ? t.sum_cpu : t.sum_real) / t.runs;
    }

    benchmark::BenchmarkReporter* inner_; // owned by the benchmark library
    std::map<std::string, Times> times_;
};

} // namespace tresim::bench
