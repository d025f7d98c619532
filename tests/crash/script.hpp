#pragma once
// The crash-injection test's model of the TE state and its runner of
// te_worker: random operation scripts that are legal from a given state, what
// each operation does to the state, and the kill strategies (test_crash.cpp).

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "usim/aka.hpp"

namespace tresim::test::crash {

constexpr int kProfiles = 4;
constexpr unsigned kSlots = 2;
constexpr unsigned kIndBits = 5; // SqnConfig's default

// ---- The model ------------------------------------------------------------------------

struct MidView {
    bool present = false;
    std::string state; // "inactive", "active", ...
    int slot = -1;
    std::uint64_t sqn = 0;  // the highest accepted SQN
    std::int64_t index = 0; // assigned by the TE; not compared
    bool operator==(const MidView& o) const {
        return present == o.present &&
               (!present || (state == o.state && slot == o.slot && sqn == o.sqn));
    }
};
using View = std::array<MidView, kProfiles>;

std::string describe(const View& v);

enum class OpKind { Import, Activate, Deactivate, Remove, Aka };

const char* kind_name(OpKind k);

struct Op {
    OpKind kind = OpKind::Aka;
    int n = 0;
    unsigned slot = 0;
    std::uint64_t sqn = 0;

    std::string arg() const {
        std::ostringstream o;
        o << kind_name(kind) << ':' << n;
        if (kind == OpKind::Activate) {
            o << ':' << slot;
        } else if (kind == OpKind::Aka) {
            o << ':' << std::hex << sqn;
        }
        return o.str();
    }
    bool security() const { return kind != OpKind::Aka; } // one audit record each
};

View after(View v, const Op& op);

// A random script of operations that are all legal from `v` on.
std::vector<Op> make_script(View v, std::mt19937_64& rng);

// An ICCID with a valid Luhn check digit, distinct per n.
std::string iccid(int n);

// ---- Running and killing the worker --------------------------------------------------

enum class KillMode {
    None,        // let it finish
    Delay,       // a random delay after the start
    AfterDone,   // right after the k-th acknowledgement (between operations)
    InOp,        // a random delay after operation k began (inside it)
    TpmCommand,  // operation k's j-th TPM command reaches the proxy: the TPM never sees it
    TpmResponse, // the TPM answered operation k's j-th command: the worker never sees it
    TpmNv,       // operation k's first NV write (increment, extend), command or response
};

const char* mode_name(KillMode m);

struct Plan {
    std::vector<Op> ops;
    KillMode mode = KillMode::None;
    std::size_t k = 0;
    bool nv_response = false; // TpmNv: kill at the response (else at the command)
    bool power_cut = false;
    unsigned sqn_interval = 16;
    std::string compute_mode;
};

struct Outcome {
    bool opened = false;
    std::size_t done = 0;  // acknowledged operations
    std::size_t began = 0; // operations begun
    bool ended = false;    // "end" seen
    bool killed = false;   // the driver sent SIGKILL
    int status = 0;        // waitpid status
    std::vector<std::string> lines;
    std::map<std::size_t, std::pair<usim::Rand, Bytes>> challenges; // aka op -> RAND, AUTN
    std::string phase;          // where the worker was when it died
    std::string tpm_kill;       // "before TPM2_CC 0x..." / "inside TPM2_CC 0x..." when aimed there
    std::uint64_t commands = 0; // TPM commands the worker sent

    bool in_progress() const { return began > done; }
};

// Running averages of how long things take and how many TPM commands they
// send, to aim the kills.
struct Timing {
    double open_ms = 150;
    std::map<OpKind, double> op_ms{{OpKind::Import, 60},
                                   {OpKind::Activate, 30},
                                   {OpKind::Deactivate, 30},
                                   {OpKind::Remove, 30},
                                   {OpKind::Aka, 30}};
    std::map<OpKind, double> op_commands{{OpKind::Import, 30},
                                         {OpKind::Activate, 8},
                                         {OpKind::Deactivate, 8},
                                         {OpKind::Remove, 8},
                                         {OpKind::Aka, 15}};
    std::set<const double*> calibrated;
    // The first measurement replaces the guess; later ones move the average.
    void learn(double& avg, double value) {
        avg = calibrated.insert(&avg).second ? value : 0.8 * avg + 0.2 * value;
    }
    double script_ms(const std::vector<Op>& ops) const {
        double t = open_ms;
        for (const Op& op : ops) {
            t += op_ms.at(op.kind);
        }
        return t;
    }
};

// Up to the last lines, indented, for failure messages.
std::string tail(const std::vector<std::string>& lines);

class Runner {
public:
    Runner(std::string worker, std::mt19937_64& rng, Timing& timing, TpmProxy& proxy)
        : worker_(std::move(worker)), rng_(rng), timing_(timing), proxy_(proxy) {}

    // Runs the worker on `plan` with its TPM traffic through the proxy to
    // swtpm at `tpm_port`; `before_kill` runs right before the SIGKILL (the
    // power cut kills swtpm there).
    Outcome run(const std::vector<std::string>& base_args, int tpm_port, const Plan& plan,
                const std::string& stderr_path, const std::function<void()>& before_kill);

private:
    std::string worker_;
    std::mt19937_64& rng_;
    Timing& timing_;
    TpmProxy& proxy_;
};

} // namespace tresim::test::crash
