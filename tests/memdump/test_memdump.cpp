// "In TPM-resident mode, no process memory ever holds K": a worker
// (mid_holder.cpp) imports a MID from a profile file, activates it and
// authenticates several times, as tresimd does; while it waits, this driver
// reads every mapping of its memory through /proc/PID/mem and searches it for
// K as raw bytes, lower- and upper-case hex and base64. OPc is searched for and
// reported too.
//
// The positive control runs the same search on the worker in --leak mode,
// which keeps K where the search must find it: if the search could not see
// K, that test fails, so a clean result of the others means something.
//
// K and OPc are random per run, so no constant in a binary can match.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <optional>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../integration/swtpm.hpp"
#include "te/profile.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"

namespace {

using namespace tresim;

Bytes random_bytes(std::size_t n) {
    Bytes b(n);
    if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    return b;
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](char c) {
        return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    });
    return s;
}

std::string base64(ByteView b) {
    std::string out(4 * ((b.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), b.data(),
                                  static_cast<int>(b.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

// ---- the memory dump ---------------------------------------------------------

struct Mapping {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::string perms;
    std::string name; // path, [heap], [stack], or empty (anonymous)
    Bytes bytes;      // empty when it could not be read
    bool read = false;
};

struct Dump {
    bool permitted = true; // false: /proc/PID/mem is not readable here (skip)
    std::vector<Mapping> mappings;
    std::size_t bytes_read = 0;
    std::size_t unreadable = 0;
};

std::string describe(const Mapping& m) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%012llx-%012llx ", static_cast<unsigned long long>(m.start),
                  static_cast<unsigned long long>(m.end));
    return buf + m.perms + " " + (m.name.empty() ? "(anonymous)" : m.name);
}

// Reads the whole memory of `pid`: every mapping that /proc/PID/mem serves
// (as root even those mapped without read permission; [vvar] and
// [vsyscall] do not read and are counted as unreadable).
Dump dump_memory(pid_t pid) {
    Dump dump;
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    const int fd = open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (!maps || fd < 0) {
        dump.permitted = false;
        if (fd >= 0) {
            close(fd);
        }
        return dump;
    }
    std::string line;
    bool any_read = false;
    int first_errno = 0;
    while (std::getline(maps, line)) {
        Mapping m;
        std::istringstream in(line);
        std::string range;
        std::string offset;
        std::string dev;
        std::string inode;
        in >> range >> m.perms >> offset >> dev >> inode;
        std::getline(in >> std::ws, m.name);
        const auto dash = range.find('-');
        m.start = std::stoull(range.substr(0, dash), nullptr, 16);
        m.end = std::stoull(range.substr(dash + 1), nullptr, 16);
        const std::uint64_t size = m.end - m.start;
        if (m.name != "[vvar]" && m.name != "[vsyscall]" && size <= (std::uint64_t{1} << 30)) {
            m.bytes.resize(size);
            std::size_t done = 0;
            while (done < size) {
                const ssize_t n = pread(fd, m.bytes.data() + done, size - done,
                                        static_cast<off_t>(m.start + done));
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n <= 0) {
                    if (first_errno == 0 && n < 0) {
                        first_errno = errno;
                    }
                    break;
                }
                done += static_cast<std::size_t>(n);
            }
            m.read = done == size;
            if (m.read) {
                any_read = true;
                dump.bytes_read += size;
            } else {
                m.bytes.clear();
                m.bytes.shrink_to_fit();
            }
        }
        if (!m.read) {
            ++dump.unreadable;
        }
        dump.mappings.push_back(std::move(m));
    }
    close(fd);
    if (!any_read && (first_errno == EPERM || first_errno == EACCES)) {
        dump.permitted = false;
    }
    return dump;
}

struct Hit {
    std::string encoding;
    std::string mapping;
    std::uint64_t address = 0;
    std::size_t from = 0;   // the matching part of the encoded secret: [from, from + length)
    std::size_t length = 0; // of the encoded secret's `total` bytes
    std::size_t total = 0;
    std::string context; // hex and text of the bytes around it
};

std::string context_of(const Mapping& m, std::size_t at, std::size_t length) {
    const std::size_t from = at >= 48 ? at - 48 : 0;
    const std::size_t to = std::min(m.bytes.size(), at + length + 48);
    std::string hex;
    std::string text;
    for (std::size_t i = from; i < to; ++i) {
        char b[4];
        std::snprintf(b, sizeof(b), "%02x", m.bytes[i]);
        if (i == at) {
            hex += "[";
        }
        hex += b;
        if (i + 1 == at + length) {
            hex += "]";
        }
        text += std::isprint(m.bytes[i]) != 0 ? static_cast<char>(m.bytes[i]) : '.';
    }
    return hex + "  |" + text + "|";
}

// One encoding of a secret, and the shortest piece of it that counts as found.
struct Needle {
    std::string encoding;
    Bytes bytes;
    std::size_t min_piece;
};

// K (or OPc) in every encoding the code could hold it in. Pieces count: freed
// memory keeps what the allocator's bookkeeping did not overwrite, and a
// growing buffer frees a prefix. 6 bytes of the secret raw, or 12 hex digits
// (48 bits of it), are a leak; a random 48-bit value occurs by chance in
// 15 MB of memory with a probability of about 1e-6.
std::vector<Needle> encodings_of(const std::string& what, ByteView secret) {
    const std::string lower = hex_encode(secret);
    const std::string up = upper(lower);
    const std::string b64 = base64(secret);
    return {{what + " raw", Bytes(secret.begin(), secret.end()), 6},
            {what + " lower-case hex", Bytes(lower.begin(), lower.end()), 12},
            {what + " upper-case hex", Bytes(up.begin(), up.end()), 12},
            {what + " base64", Bytes(b64.begin(), b64.end()), b64.size()}};
}

// Every place where a piece of at least min_piece bytes of a needle lies,
// widened to the whole piece that matches there.
std::vector<Hit> search(const Dump& dump, const std::vector<Needle>& needles) {
    std::vector<Hit> hits;
    for (const Mapping& m : dump.mappings) {
        const Bytes& mem = m.bytes;
        for (const Needle& n : needles) {
            std::vector<std::pair<std::size_t, std::size_t>> seen; // [start, end) in mem
            for (std::size_t j = 0; j + n.min_piece <= n.bytes.size(); ++j) {
                const auto first = n.bytes.begin() + static_cast<std::ptrdiff_t>(j);
                const std::boyer_moore_horspool_searcher searcher(
                    first, first + static_cast<std::ptrdiff_t>(n.min_piece));
                auto it = mem.begin();
                while (true) {
                    it = std::search(it, mem.end(), searcher);
                    if (it == mem.end()) {
                        break;
                    }
                    std::size_t at = static_cast<std::size_t>(it - mem.begin());
                    std::size_t from = j;
                    std::size_t len = n.min_piece;
                    while (at > 0 && from > 0 && mem[at - 1] == n.bytes[from - 1]) {
                        --at;
                        --from;
                        ++len;
                    }
                    while (at + len < mem.size() && from + len < n.bytes.size() &&
                           mem[at + len] == n.bytes[from + len]) {
                        ++len;
                    }
                    if (std::none_of(seen.begin(), seen.end(),
                                     [&](const auto& s) { return s.first == at; })) {
                        seen.emplace_back(at, at + len);
                        hits.push_back({n.encoding, describe(m), m.start + at, from, len,
                                        n.bytes.size(), context_of(m, at, len)});
                    }
                    ++it;
                }
            }
        }
    }
    return hits;
}

std::string report(const std::vector<Hit>& hits) {
    std::string out;
    for (const Hit& h : hits) {
        char where[160];
        std::snprintf(where, sizeof(where), " (bytes %zu..%zu of %zu) at 0x%llx in ", h.from,
                      h.from + h.length, h.total, static_cast<unsigned long long>(h.address));
        out += "  " + h.encoding + where + h.mapping + "\n    " + h.context + "\n";
    }
    return out;
}

// Whether `encoding` was found, at least `length` bytes of it in one piece.
bool found(const std::vector<Hit>& hits, const std::string& encoding, std::size_t length) {
    return std::any_of(hits.begin(), hits.end(),
                       [&](const Hit& h) { return h.encoding == encoding && h.length >= length; });
}

// ---- the worker --------------------------------------------------------------

// One MID with random K and OPc, its profile file and public vectors.
struct Scenario {
    Bytes k = random_bytes(16);
    Bytes opc = random_bytes(16);
    std::vector<usim::AuthVector> vectors;
    std::string dir = test::make_temp_dir("tresim-memdump-");

    Scenario() {
        const std::string iccid = [] {
            const std::string body = "8949020000001234567";
            for (char d = '0'; d <= '9'; ++d) {
                if (te::luhn_valid(body + d)) {
                    return body + d;
                }
            }
            return body;
        }();
        std::ofstream(dir + "/profile.json")
            << "{\"iccid\": \"" << iccid << "\", \"imsi\": \"262011234567890\", "
            << "\"algorithm\": \"milenage\", \"k\": \"" << hex_encode(k) << "\", \"opc\": \""
            << hex_encode(opc) << "\", \"amf\": \"8000\"}\n";
        auto sw = usim::Milenage::software(k, opc);
        std::ofstream v(dir + "/vectors.txt");
        for (std::uint64_t i = 1; i <= 5; ++i) { // SEQ 1..5, IND 1..5
            const usim::AuthVector vec =
                usim::generate_vector(*sw, usim::random_rand(), (i << 5) | i, {0x80, 0x00});
            v << hex_encode(vec.rand) << " " << hex_encode(vec.autn) << "\n";
            vectors.push_back(vec);
        }
    }
    ~Scenario() { test::remove_tree(dir); }
    Scenario(const Scenario&) = delete;
    Scenario& operator=(const Scenario&) = delete;
};

class Worker {
public:
    Worker(const Scenario& s, const std::string& tcti, const std::string& mode, bool leak) {
        const char* exe = std::getenv("TRESIM_MID_HOLDER");
        if (exe == nullptr) {
            throw std::runtime_error("TRESIM_MID_HOLDER is not set (run through meson test)");
        }
        std::vector<std::string> args = {exe,
                                         "--tcti",
                                         tcti,
                                         "--state",
                                         s.dir + "/state-" + mode + (leak ? "-leak" : ""),
                                         "--mode",
                                         mode,
                                         "--profile",
                                         s.dir + "/profile.json",
                                         "--vectors",
                                         s.dir + "/vectors.txt"};
        if (leak) {
            args.emplace_back("--leak");
        }
        int in[2];
        int out[2];
        if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe failed");
        }
        pid_ = fork();
        if (pid_ == 0) {
            dup2(in[0], 0);
            dup2(out[1], 1);
            std::vector<char*> argv;
            for (auto& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(in[0]);
        close(out[1]);
        stdin_ = in[1];
        stdout_ = out[0];
    }
    ~Worker() {
        if (stdin_ >= 0) {
            close(stdin_); // the worker exits when its stdin closes
        }
        if (pid_ > 0) {
            int status = 0;
            for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i) {
                usleep(50 * 1000);
            }
            if (waitpid(pid_, &status, WNOHANG) == 0) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &status, 0);
            }
        }
        if (stdout_ >= 0) {
            close(stdout_);
        }
    }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // The lines the worker printed up to a line starting with `stop`
    // (nullopt: it failed or timed out).
    std::optional<std::vector<std::string>> wait_for(const std::string& stop, int timeout_ms) {
        std::vector<std::string> lines;
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (true) {
            std::size_t nl = 0;
            while ((nl = pending_.find('\n')) != std::string::npos) {
                lines.push_back(pending_.substr(0, nl));
                pending_.erase(0, nl + 1);
                if (lines.back().rfind(stop, 0) == 0) {
                    return lines;
                }
                if (lines.back() == "ERROR") {
                    return std::nullopt;
                }
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  deadline - std::chrono::steady_clock::now())
                                  .count();
            if (left <= 0) {
                return std::nullopt;
            }
            pollfd p{stdout_, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left)) <= 0) {
                continue;
            }
            char buf[512];
            const ssize_t n = read(stdout_, buf, sizeof(buf));
            if (n <= 0) {
                return std::nullopt;
            }
            pending_.append(buf, static_cast<std::size_t>(n));
        }
    }
    // Lets the worker go on from its stop after the import.
    void resume() {
        const char line[] = "continue\n";
        if (write(stdin_, line, sizeof(line) - 1) != static_cast<ssize_t>(sizeof(line) - 1)) {
            throw std::runtime_error("cannot write to the worker");
        }
    }
    pid_t pid() const noexcept { return pid_; }

private:
    pid_t pid_ = -1;
    int stdin_ = -1;
    int stdout_ = -1;
    std::string pending_;
};

// What one dump of the worker showed.
struct Scan {
    std::vector<Hit> k_hits;
    std::vector<Hit> opc_hits;
    std::size_t bytes_read = 0;
};

struct Outcome {
    bool skipped = false;
    Scan after_import; // stopped right after import_profile returned
    Scan after_use;    // after activation and the authentications
};

Scan scan(const Scenario& s, pid_t pid, const std::string& what, bool& skipped) {
    Scan r;
    const Dump dump = dump_memory(pid);
    if (!dump.permitted) {
        skipped = true;
        return r;
    }
    r.k_hits = search(dump, encodings_of("K", s.k));
    r.opc_hits = search(dump, encodings_of("OPc", s.opc));
    r.bytes_read = dump.bytes_read;
    std::printf("[memdump] %s: searched %zu bytes in %zu mappings (%zu unreadable): "
                "K found %zu times, OPc %zu times\n%s%s",
                what.c_str(), dump.bytes_read, dump.mappings.size(), dump.unreadable,
                r.k_hits.size(), r.opc_hits.size(), report(r.k_hits).c_str(),
                report(r.opc_hits).c_str());
    std::fflush(stdout);
    return r;
}

// Runs the worker on a fresh swtpm, dumps its memory after the import and
// after the authentications (whose results it checks).
Outcome run(const std::string& mode, bool leak) {
    Outcome o;
    Scenario s;
    test::Swtpm swtpm;
    Worker w(s, swtpm.tcti(), mode, leak);
    const std::string name = mode + (leak ? " --leak" : "");
    if (!w.wait_for("IMPORTED", 45000)) {
        ADD_FAILURE() << "the worker failed or timed out before the import (see its stderr)";
        return o;
    }
    o.after_import = scan(s, w.pid(), name + " after import", o.skipped);
    if (o.skipped) {
        return o;
    }
    w.resume();
    const auto lines = w.wait_for("READY", 45000);
    if (!lines) {
        ADD_FAILURE() << "the worker failed or timed out (see its stderr)";
        return o;
    }
    std::size_t aka = 0;
    for (const std::string& line : *lines) {
        if (line.rfind("AKA ", 0) == 0) {
            EXPECT_LT(aka, s.vectors.size());
            if (aka < s.vectors.size()) {
                EXPECT_EQ(line.substr(4), hex_encode(s.vectors[aka].xres))
                    << "authentication " << aka << " did not give the expected RES";
            }
            ++aka;
        }
    }
    EXPECT_EQ(aka, s.vectors.size());
    o.after_use = scan(s, w.pid(), name + " after use", o.skipped);
    return o;
}

TEST(MemoryDump, FindsKInEveryEncodingInAProcessThatDeliberatelyKeepsIt) {
    const Outcome o = run("tpm-ecb", true);
    if (o.skipped) {
        GTEST_SKIP() << "/proc/PID/mem is not readable here";
    }
    // Raw K sits in the secure heap, its lower-case hex on the ordinary heap,
    // a piece (K[2..12), 20 hex digits) in upper case in static storage:
    // every kind of mapping is searched, and pieces are found.
    for (const Scan* r : {&o.after_import, &o.after_use}) {
        EXPECT_TRUE(found(r->k_hits, "K raw", 16));
        EXPECT_TRUE(found(r->k_hits, "K lower-case hex", 32));
        EXPECT_TRUE(found(r->k_hits, "K upper-case hex", 20));
        EXPECT_TRUE(found(r->opc_hits, "OPc raw", 16));
        EXPECT_TRUE(found(r->opc_hits, "OPc lower-case hex", 32));
    }
}

void expect_no_k(const std::string& mode) {
    const Outcome o = run(mode, false);
    if (o.skipped) {
        GTEST_SKIP() << "/proc/PID/mem is not readable here";
    }
    for (const auto& [r, when] : {std::pair{&o.after_import, "after the import"},
                                  std::pair{&o.after_use, "after the authentications"}}) {
        EXPECT_GT(r->bytes_read, 0u);
        EXPECT_TRUE(r->k_hits.empty())
            << "K is in the memory of a process that holds a " << mode << " MID, " << when << ":\n"
            << report(r->k_hits);
        // OPc is in host memory during an authentication only.
        EXPECT_TRUE(r->opc_hits.empty()) << "OPc is in the memory of a process that holds a "
                                         << mode << " MID, " << when << ":\n"
                                         << report(r->opc_hits);
    }
}

TEST(MemoryDump, NoMemoryOfAProcessThatImportedAndUsedATpmEcbMidHoldsK) {
    expect_no_k("tpm-ecb");
}

TEST(MemoryDump, NoMemoryOfAProcessThatImportedAndUsedATpmCfbMidHoldsK) {
    expect_no_k("tpm-cfb");
}

// Sealed mode has K in secure memory during each computation; it must be gone after.
TEST(MemoryDump, NoMemoryOfAProcessThatUsedASealedMidHoldsKAfterTheComputation) {
    expect_no_k("sealed");
}

} // namespace
