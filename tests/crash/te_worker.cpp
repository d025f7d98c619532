// te_worker: opens a TrustedEnvironment and runs a scripted sequence of
// operations, so that the crash-injection test (test_crash.cpp) can kill it
// with SIGKILL anywhere in between.
//
//   te_worker --state DIR --tcti TCTI --data DIR [--sqn-interval N]
//             [--mode tpm-ecb|tpm-cfb|sealed] OP...
//
// OP is one of import:N, activate:N:SLOT, deactivate:N, remove:N, aka:N:SQN
// (N: the profile DATA/profile-N.json the driver wrote, with K and OPc; SQN
// in hex). The worker prints one line per step and writes it at once (one
// write(2), no buffering), so that whatever the driver read before the kill
// is exactly what was acknowledged:
//
//   open epoch=E recovered=0|1      the TE opened
//   begin OP [rand=HEX autn=HEX]    OP starts (for aka: the challenge)
//   done OP                         OP returned: it is acknowledged
//   error OP: MESSAGE               OP threw (exit status 3)
//   end                             every OP is done (exit status 0)
//
// The MID of profile N is found by its ICCID, so the driver never needs the
// indexes the TE assigns.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "te/te.hpp"
#include "usim/aka.hpp"
#include "usim/milenage.hpp"

namespace {

using namespace tresim;
using nlohmann::json;

// One line, one write(2): the driver sees it even when SIGKILL follows at once.
void say(const std::string& line) {
    const std::string text = line + "\n";
    std::size_t off = 0;
    while (off < text.size()) {
        const ssize_t n = ::write(STDOUT_FILENO, text.data() + off, text.size() - off);
        if (n <= 0) {
            std::_Exit(4);
        }
        off += static_cast<std::size_t>(n);
    }
}

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr, "te_worker: %s\n", why.c_str());
    std::exit(2);
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        usage("cannot read " + path);
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    std::stringstream ss(s);
    std::string part;
    while (std::getline(ss, part, sep)) {
        parts.push_back(part);
    }
    return parts;
}

struct Worker {
    te::TrustedEnvironment& te;
    std::string data;
    tpm::PolicyAuthority authority;

    json profile(const std::string& n) {
        return json::parse(read_text(data + "/profile-" + n + ".json"));
    }
    std::int64_t index_of(const std::string& n) {
        return te.get_by_iccid(profile(n).at("iccid").get<std::string>()).index;
    }

    void run(const std::string& op) {
        const std::vector<std::string> f = split(op, ':');
        if (f.size() < 2) {
            usage("bad operation " + op);
        }
        if (f[0] == "import") {
            const std::string text = profile(f[1]).dump();
            say("begin " + op);
            te.import_profile(Bytes(text.begin(), text.end()), authority.tpm_public());
        } else if (f[0] == "activate" && f.size() == 3) {
            const std::int64_t index = index_of(f[1]);
            say("begin " + op);
            te.activate(index, static_cast<unsigned>(std::stoul(f[2])));
        } else if (f[0] == "deactivate") {
            const std::int64_t index = index_of(f[1]);
            say("begin " + op);
            te.deactivate(index);
        } else if (f[0] == "remove") {
            const std::int64_t index = index_of(f[1]);
            say("begin " + op);
            te.remove(index);
        } else if (f[0] == "aka" && f.size() == 3) {
            const json p = profile(f[1]);
            const std::int64_t index = index_of(f[1]);
            auto sw = usim::Milenage::software(hex_decode(p.at("k").get<std::string>(), "k"),
                                               hex_decode(p.at("opc").get<std::string>(), "opc"));
            const usim::Amf amf = hex_decode_array<2>(p.at("amf").get<std::string>(), "amf");
            const usim::Rand rand = usim::random_rand();
            const std::uint64_t sqn = std::stoull(f[2], nullptr, 16);
            const usim::AuthVector v = usim::generate_vector(*sw, rand, sqn, amf);
            say("begin " + op + " rand=" + hex_encode(rand) + " autn=" + hex_encode(v.autn));
            const usim::AkaResult r = te.authenticate(index, rand, v.autn);
            const auto* ok = std::get_if<usim::AkaSuccess>(&r);
            if (ok == nullptr) {
                say("error " + op + ": not accepted (" +
                    (std::holds_alternative<usim::AkaSyncFailure>(r) ? "sync failure"
                                                                     : "MAC failure") +
                    ")");
                std::exit(3);
            }
            if (ok->res != v.xres || !(ok->ck == v.ck) || !(ok->ik == v.ik) || ok->sqn != sqn) {
                say("error " + op + ": RES/CK/IK differ from the software vector");
                std::exit(3);
            }
        } else {
            usage("bad operation " + op);
        }
        say("done " + op);
    }
};

} // namespace

int main(int argc, char** argv) {
    te::TeConfig config;
    config.slots = 2;
    std::string data;
    std::vector<std::string> ops;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage(a + " needs a value");
            }
            return argv[++i];
        };
        if (a == "--state") {
            config.state_dir = value();
        } else if (a == "--tcti") {
            config.tcti = value();
        } else if (a == "--data") {
            data = value();
        } else if (a == "--sqn-interval") {
            config.sqn_interval = static_cast<unsigned>(std::stoul(value()));
        } else if (a == "--mode") {
            config.force_mode = te::parse_computation_mode(value());
            if (!config.force_mode) {
                usage("bad --mode");
            }
        } else {
            ops.push_back(a);
        }
    }
    if (config.state_dir.empty() || config.tcti.empty() || data.empty()) {
        usage("--state, --tcti and --data are required");
    }
    std::string current = "open";
    try {
        te::TrustedEnvironment te(config);
        const te::TeInfo info = te.info();
        say("open epoch=" + std::to_string(info.epoch) +
            " recovered=" + (info.recovered_crash ? "1" : "0"));
        Worker w{te, data, tpm::PolicyAuthority::load(data + "/authority.pem")};
        for (const std::string& op : ops) {
            current = op;
            w.run(op);
        }
    } catch (const std::exception& e) {
        say("error " + current + ": " + e.what());
        return 3;
    }
    say("end");
    return 0;
}
