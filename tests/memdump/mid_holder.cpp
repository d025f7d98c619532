// The worker of the memory-dump test (test_memdump.cpp): a process that does
// with a MID what tresimd does, then holds still so that its memory can be
// searched for K.
//
//   mid_holder --tcti T --state DIR --mode tpm-ecb|tpm-cfb|sealed
//              --profile FILE --vectors FILE [--leak]
//
// It sets up the secure heap first, reads the profile file straight into
// SecretBytes (read(2), no stdio or iostream buffer), imports it into a
// TrustedEnvironment under a fresh policy authority, activates the MID, runs
// one authentication per line of the vectors file ("RAND AUTN" in hex),
// printing "AKA <RES hex>" (or "AKA failed") for each, then prints
// "READY <pid>" and waits until its stdin closes. It stops once before, right
// after the import: it prints "IMPORTED <pid>" and waits for a line on stdin.
//
// --leak is the positive control: it keeps K and OPc where the search must
// find them (raw K and OPc in secure memory, their lower-case hex in a
// std::string on the heap, and a fragment, K[2..12), as upper-case hex in
// static storage: the search must find pieces of K too).

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "te/te.hpp"
#include "tpm/policy.hpp"
#include "usim/secret.hpp"

namespace {

using namespace tresim;

// Reads a whole file into secure memory with read(2) alone.
SecretBytes read_secret_file(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > 64 * 1024) {
        close(fd);
        throw std::runtime_error(path + ": not a regular file of 1 byte to 64 KiB");
    }
    SecretBytes out(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < out.size()) {
        const ssize_t n = read(fd, out.data() + done, out.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            close(fd);
            throw std::runtime_error("cannot read " + path);
        }
        done += static_cast<std::size_t>(n);
    }
    close(fd);
    return out;
}

// The positive control's copies (see the top of the file).
SecretBytes g_leaked_raw;
std::string g_leaked_lower;
volatile char g_leaked_upper[2 * 10]; // volatile: the stores must stay

void leak(const SecretBytes& profile) {
    const auto doc = nlohmann::json::parse(profile.view().begin(), profile.view().end());
    for (const char* name : {"k", "opc"}) {
        const std::string hex = doc.at(name).get<std::string>();
        if (std::string(name) == "k") {
            g_leaked_raw = SecretBytes::from_hex(hex, "k");
        } else {
            g_leaked_raw.resize(32);
            const SecretBytes opc = SecretBytes::from_hex(hex, "opc");
            std::copy_n(opc.data(), 16, g_leaked_raw.data() + 16);
        }
    }
    // Lower-case hex of K then OPc on the heap; a piece of K in static storage.
    g_leaked_lower = hex_encode(g_leaked_raw.view());
    const std::string k_hex = hex_encode(g_leaked_raw.view().subspan(2, 10));
    for (std::size_t i = 0; i < k_hex.size(); ++i) {
        g_leaked_upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(k_hex[i])));
    }
}

std::vector<std::pair<usim::Rand, Bytes>> read_vectors(const std::string& path) {
    std::vector<std::pair<usim::Rand, Bytes>> out;
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) {
        throw std::runtime_error("cannot open " + path);
    }
    char rand_hex[80];
    char autn_hex[160];
    while (std::fscanf(f, "%79s %159s", rand_hex, autn_hex) == 2) {
        out.emplace_back(hex_decode_array<16>(rand_hex, "rand"), hex_decode(autn_hex, "autn"));
    }
    std::fclose(f);
    return out;
}

int usage() {
    std::cerr << "usage: mid_holder --tcti T --state DIR --mode tpm-ecb|tpm-cfb|sealed "
                 "--profile FILE --vectors FILE [--leak]\n";
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    // As the daemon does: before any secret exists.
    const bool locked = secure_heap_init();

    std::string tcti;
    std::string state;
    std::string mode_text;
    std::string profile_path;
    std::string vectors_path;
    bool leak_mode = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--leak") {
            leak_mode = true;
            continue;
        }
        if (i + 1 >= argc) {
            return usage();
        }
        const std::string v = argv[++i];
        if (a == "--tcti") {
            tcti = v;
        } else if (a == "--state") {
            state = v;
        } else if (a == "--mode") {
            mode_text = v;
        } else if (a == "--profile") {
            profile_path = v;
        } else if (a == "--vectors") {
            vectors_path = v;
        } else {
            return usage();
        }
    }
    const auto mode = te::parse_computation_mode(mode_text);
    if (tcti.empty() || state.empty() || !mode || profile_path.empty() || vectors_path.empty()) {
        return usage();
    }

    try {
        te::TeConfig config;
        config.state_dir = state;
        config.tcti = tcti;
        config.force_mode = *mode;
        te::TrustedEnvironment te(config);
        const tpm::PolicyAuthority authority = tpm::PolicyAuthority::generate();

        std::int64_t index = 0;
        {
            SecretBytes profile = read_secret_file(profile_path);
            if (leak_mode) {
                leak(profile);
            }
            const te::MidApproval approval =
                te::approve(authority, te.current_pcrs(), false, Bytes{});
            index = te.import_profile(profile.view(), authority.tpm_public(), approval);
        } // the profile text is wiped here
        // First stop: right after the import, before later allocations can
        // happen to overwrite what the import left in freed memory.
        std::cout << "IMPORTED " << getpid() << std::endl;
        std::string line;
        if (!std::getline(std::cin, line)) {
            return 0;
        }
        te.activate(index, 0);

        for (const auto& [rand, autn] : read_vectors(vectors_path)) {
            const usim::AkaResult r = te.authenticate(index, rand, autn);
            if (const auto* ok = std::get_if<usim::AkaSuccess>(&r)) {
                std::cout << "AKA " << hex_encode(ok->res.view()) << "\n";
            } else {
                std::cout << "AKA failed\n";
            }
        }
        std::cout << "READY " << getpid() << " secure-heap-locked=" << (locked ? 1 : 0)
                  << std::endl;
        // Hold still (as a daemon between requests) until the driver is done.
        while (std::getline(std::cin, line)) {
        }
    } catch (const std::exception& e) {
        std::cerr << "mid_holder: " << e.what() << "\n";
        std::cout << "ERROR" << std::endl;
        return 1;
    }
    return 0;
}
