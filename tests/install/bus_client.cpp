// The parts of test_bus_policy.sh that dbus-send cannot do, on a private bus
// given by its address. tresimd itself owns org.tresim1 in that test; this
// helper only tries to take the name, listens for the daemon's signals, and
// imports a MID with an approval signed by a fresh local authority.
//
//   bus_client own ADDRESS           requests org.tresim1 and releases it:
//                                    prints "owned" (exit 0), or "refused: ..."
//                                    and exit 3 when the bus refuses the name
//   bus_client listen ADDRESS MS     subscribes to every signal from
//                                    org.tresim1, prints "listening", exit 0
//                                    on the first signal (printing its member),
//                                    1 when none came within MS ms
//   bus_client import ADDRESS FILE   GetPlatformState, an approval of it signed
//                                    by a new authority, ImportMid(FILE): prints
//                                    the MID's object path
//
// Exit 2 for a usage, connection or call error.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <poll.h>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <sdbus-c++/sdbus-c++.h>

#include "manager_proxy.h"
#include "te/mid_crypto.hpp"
#include "tpm/policy.hpp"
#include "usim/bytes.hpp"

namespace {

using namespace tresim;
using nlohmann::json;

constexpr const char* kName = "org.tresim1";

class ManagerProxy final : public sdbus::ProxyInterfaces<org::tresim1::Manager_proxy> {
public:
    explicit ManagerProxy(sdbus::IConnection& c) : ProxyInterfaces(c, kName, "/org/tresim1") {
        registerProxy();
    }
    ~ManagerProxy() { unregisterProxy(); }
};

int own(sdbus::IConnection& bus) {
    try {
        bus.requestName(kName);
    } catch (const sdbus::Error& e) {
        std::printf("refused: %s: %s\n", e.getName().c_str(), e.getMessage().c_str());
        return 3;
    }
    std::printf("owned\n");
    bus.releaseName(kName);
    return 0;
}

int listen(sdbus::IConnection& bus, long timeout_ms) {
    std::string member;
    // Synchronous AddMatch: once "listening" is printed, the bus routes signals here.
    const sdbus::Slot slot =
        bus.addMatch(std::string("type='signal',sender='") + kName + "'",
                     [&member](sdbus::Message& m) { member = m.getMemberName(); });
    std::printf("listening\n");
    std::fflush(stdout);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (member.empty()) {
        if (bus.processPendingRequest()) {
            continue;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            break;
        }
        const auto data = bus.getEventLoopPollData();
        pollfd fd{data.fd, data.events, 0};
        const int timeout = data.getPollTimeout();
        poll(&fd, 1,
             timeout < 0 ? static_cast<int>(left.count())
                         : std::min(timeout, static_cast<int>(left.count())));
    }
    std::printf(member.empty() ? "nothing\n" : "received %s\n", member.c_str());
    return member.empty() ? 1 : 0;
}

// An approval of the current platform state (docs/dbus-api.md, "Approval JSON").
std::string approval(ManagerProxy& manager) {
    const tpm::PolicyAuthority key = tpm::PolicyAuthority::generate();
    tpm::PcrValues pcrs;
    json values = json::object();
    for (const auto& [index, value] : manager.GetPlatformState()) {
        pcrs.values[index] = value;
        values[std::to_string(index)] = hex_encode(value);
    }
    const Bytes policy = te::approved_policy_for(pcrs, false);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    std::size_t len = 0;
    if (!md || EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.pkey()) != 1 ||
        EVP_DigestSign(md.get(), nullptr, &len, policy.data(), policy.size()) != 1) {
        throw std::runtime_error("cannot sign the approval");
    }
    Bytes sig(len);
    if (EVP_DigestSign(md.get(), sig.data(), &len, policy.data(), policy.size()) != 1) {
        throw std::runtime_error("cannot sign the approval");
    }
    sig.resize(len);
    return json{{"format", "tresim-approval-1"},
                {"authority", key.public_pem()},
                {"pcrs", {{"bank", "sha256"}, {"values", values}}},
                {"auth_value", false},
                {"policy_ref", ""},
                {"signature", hex_encode(sig)}}
        .dump();
}

int import(sdbus::IConnection& bus, const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "bus_client: cannot read the profile %s\n", file.c_str());
        return 2;
    }
    const std::vector<std::uint8_t> profile((std::istreambuf_iterator<char>(in)),
                                            std::istreambuf_iterator<char>());
    ManagerProxy manager(bus);
    std::printf("%s\n", manager.ImportMid(profile, approval(manager)).c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (!((mode == "own" && argc == 3) || (mode == "listen" && argc == 4) ||
          (mode == "import" && argc == 4))) {
        std::fprintf(stderr, "usage: bus_client own ADDRESS | listen ADDRESS TIMEOUT_MS | "
                             "import ADDRESS PROFILE\n");
        return 2;
    }
    try {
        const auto bus = sdbus::createSessionBusConnectionWithAddress(argv[2]);
        if (mode == "own") {
            return own(*bus);
        }
        if (mode == "listen") {
            return listen(*bus, std::strtol(argv[3], nullptr, 10));
        }
        return import(*bus, argv[3]);
    } catch (const sdbus::Error& e) {
        std::fprintf(stderr, "bus_client: %s: %s\n", e.getName().c_str(), e.getMessage().c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bus_client: %s\n", e.what());
    }
    return 2;
}
