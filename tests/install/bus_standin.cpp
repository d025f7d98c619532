// A stand-in for tresimd on a private bus, for test_bus_policy.sh: it tests
// the bus policy (policy/org.tresim1.conf), not the daemon.
//
//   bus_standin own ADDRESS      requests org.tresim1; prints "owned" and
//                                serves /org/tresim1 (org.tresim1.Test:
//                                Ping() -> "pong", Emit() emits the signal
//                                Poked("poke"), Quit()) for at most 60 s;
//                                exit 3 when the bus refuses the name
//   bus_standin listen ADDRESS MS  subscribes to Poked from org.tresim1,
//                                prints "listening", exit 0 on the first
//                                signal, 1 when none came within MS ms
//
// Exit 2 for a usage or connection error.

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <systemd/sd-bus.h>

namespace {

constexpr const char* kName = "org.tresim1";
constexpr const char* kPath = "/org/tresim1";
constexpr const char* kInterface = "org.tresim1.Test";

struct BusUnref {
    void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
struct SlotUnref {
    void operator()(sd_bus_slot* slot) const { sd_bus_slot_unref(slot); }
};

bool quit = false;
bool poked = false;

sd_bus* connect(const char* address) {
    sd_bus* bus = nullptr;
    int r = sd_bus_new(&bus);
    if (r >= 0) {
        r = sd_bus_set_address(bus, address);
    }
    if (r >= 0) {
        r = sd_bus_set_bus_client(bus, 1);
    }
    if (r >= 0) {
        r = sd_bus_start(bus);
    }
    if (r < 0) {
        std::fprintf(stderr, "bus_standin: cannot connect to %s: %s\n", address, std::strerror(-r));
        sd_bus_unref(bus);
        return nullptr;
    }
    return bus;
}

int on_message(sd_bus_message* m, void* /*userdata*/, sd_bus_error* /*error*/) {
    if (sd_bus_message_is_method_call(m, kInterface, "Ping") > 0) {
        return sd_bus_reply_method_return(m, "s", "pong");
    }
    if (sd_bus_message_is_method_call(m, kInterface, "Emit") > 0) {
        const int r =
            sd_bus_emit_signal(sd_bus_message_get_bus(m), kPath, kInterface, "Poked", "s", "poke");
        if (r < 0) {
            return r;
        }
        return sd_bus_reply_method_return(m, "");
    }
    if (sd_bus_message_is_method_call(m, kInterface, "Quit") > 0) {
        quit = true;
        return sd_bus_reply_method_return(m, "");
    }
    return 0; // sd-bus answers UnknownMethod
}

int on_signal(sd_bus_message* /*m*/, void* /*userdata*/, sd_bus_error* /*error*/) {
    poked = true;
    return 0;
}

// Processes messages until `done` or the deadline; false on a bus error.
bool serve(sd_bus* bus, const bool& done, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done) {
        const int r = sd_bus_process(bus, nullptr);
        if (r < 0) {
            std::fprintf(stderr, "bus_standin: %s\n", std::strerror(-r));
            return false;
        }
        if (r > 0) {
            continue;
        }
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return true;
        }
        sd_bus_wait(bus, static_cast<std::uint64_t>(left.count()));
    }
    return true;
}

int own(const char* address) {
    std::unique_ptr<sd_bus, BusUnref> bus(connect(address));
    if (!bus) {
        return 2;
    }
    sd_bus_slot* raw_slot = nullptr;
    if (const int r = sd_bus_add_object(bus.get(), &raw_slot, kPath, on_message, nullptr); r < 0) {
        std::fprintf(stderr, "bus_standin: add object: %s\n", std::strerror(-r));
        return 2;
    }
    std::unique_ptr<sd_bus_slot, SlotUnref> slot(raw_slot);
    if (const int r = sd_bus_request_name(bus.get(), kName, 0); r < 0) {
        std::printf("refused: %s\n", std::strerror(-r));
        return 3;
    }
    std::printf("owned\n");
    std::fflush(stdout);
    return serve(bus.get(), quit, std::chrono::seconds(60)) ? 0 : 2;
}

int listen(const char* address, long timeout_ms) {
    std::unique_ptr<sd_bus, BusUnref> bus(connect(address));
    if (!bus) {
        return 2;
    }
    const std::string match = std::string("type='signal',sender='") + kName + "',interface='" +
                              kInterface + "',member='Poked'";
    sd_bus_slot* raw_slot = nullptr;
    // Synchronous AddMatch: once "listening" is printed, the bus routes the signal here.
    if (const int r = sd_bus_add_match(bus.get(), &raw_slot, match.c_str(), on_signal, nullptr);
        r < 0) {
        std::fprintf(stderr, "bus_standin: add match: %s\n", std::strerror(-r));
        return 2;
    }
    std::unique_ptr<sd_bus_slot, SlotUnref> slot(raw_slot);
    std::printf("listening\n");
    std::fflush(stdout);
    if (!serve(bus.get(), poked, std::chrono::milliseconds(timeout_ms))) {
        return 2;
    }
    std::printf(poked ? "received\n" : "nothing\n");
    return poked ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "own" && argc == 3) {
        return own(argv[2]);
    }
    if (mode == "listen" && argc == 4) {
        return listen(argv[2], std::strtol(argv[3], nullptr, 10));
    }
    std::fprintf(stderr, "usage: bus_standin own ADDRESS | listen ADDRESS TIMEOUT_MS\n");
    return 2;
}
