#pragma once
// Plumbing of the crash-injection test (test_crash.cpp): a proxy that sees
// every TPM command of the worker, what a resource manager would flush after a
// killed client, and a read-only look at the state database. The swtpm the
// driver power-cuts is test::Swtpm (tests/integration/swtpm.hpp).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <poll.h>
#include <set>
#include <string>
#include <sys/types.h>
#include <unistd.h>
#include <vector>

namespace tresim::test::crash {

using Clock = std::chrono::steady_clock;

// Appends a line to the file TRESIM_CRASH_TRACE names, if set (debugging).
void trace(const std::string& line);

// A non-blocking listening socket on loopback, or -1.
int listen_on(int port);
// A socket connected to loopback:port, or -1.
int connect_to(int port);
bool write_all(int fd, const std::uint8_t* p, std::size_t n);

// "NV_Increment", ... or the hex code.
std::string code_name(std::uint32_t code);
bool is_nv_write(std::uint32_t code);

// What /dev/tpmrm0 does when a client dies: flush the transient objects and
// sessions it left in the TPM (tpm::flush_stale_handles, which tresimd runs at
// start on a raw TPM). Returns how many there were.
int flush_leftovers(const std::string& tcti);

// What the killed process left, read through a read-only connection (which
// neither checkpoints nor removes the WAL, so the TE still finds it as left).
struct DbPeek {
    std::uint64_t epoch = 0;
    std::uint64_t pending = 0;                             // an intent: prepared epoch, 0 when none
    std::int64_t records = 0;                              // audit records
    std::int64_t anchored = 0;                             // of which known to be in the NV index
    std::map<std::int64_t, std::string> mids;              // index -> mode
    std::map<std::int64_t, std::set<std::string>> objects; // index -> roles
};

DbPeek peek(const std::string& path);

std::string read_file_text(const std::string& path);

// A TCP proxy between the worker and swtpm (its command port and its control
// port) that sees every TPM command and response, so that a kill can be aimed
// at a TPM command boundary: before the TPM executes a command, or after it
// did but before the worker learns it.
class TpmProxy {
public:
    struct Message {
        bool command = false;   // else a response
        std::uint32_t code = 0; // command code (for a response: its command's)
        std::uint64_t n = 0;    // commands so far, this one included
    };
    // Returns false to hold the message (the caller kills the worker).
    using Hook = std::function<bool(const Message&)>;

    TpmProxy();
    ~TpmProxy() {
        drop();
        close(listen_[0]);
        close(listen_[1]);
    }
    TpmProxy(const TpmProxy&) = delete;
    TpmProxy& operator=(const TpmProxy&) = delete;

    std::string tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }

    void begin(int upstream_port, Hook hook) {
        trace("begin upstream=" + std::to_string(upstream_port));
        drop();
        upstream_ = upstream_port;
        hook_ = std::move(hook);
        commands_ = 0;
        held_ = false;
    }
    std::uint64_t commands() const noexcept { return commands_; }
    void hold() noexcept { // forward nothing more: the worker is killed
        trace("hold");
        held_ = true;
    }

    void add_fds(std::vector<pollfd>& fds) const {
        fds.push_back({listen_[0], POLLIN, 0});
        fds.push_back({listen_[1], POLLIN, 0});
        for (const Link& l : links_) {
            fds.push_back({l.client, POLLIN, 0});
            fds.push_back({l.server, POLLIN, 0});
        }
    }
    // Serves what poll() found ready in fds[from..].
    void service(const std::vector<pollfd>& fds, std::size_t from);
    // Closes every connection, and refuses the ones still waiting in the
    // listen queue: tcti-swtpm connects once per command, so a killed worker
    // may have left a command there that the TPM must never see (with a
    // kernel resource manager, a dead process's command is done or dropped
    // before anyone else's).
    void drop();

private:
    struct Link {
        int client = -1;
        int server = -1;
        bool control = false;
        bool open = true;
        std::vector<std::uint8_t> up, down; // partial command, partial response
        std::uint32_t last_code = 0;
    };
    static void close_link(Link& l) {
        if (l.open) {
            close(l.client);
            close(l.server);
            l.open = false;
        }
    }
    // Moves bytes one way; TPM messages go whole, after the hook saw them.
    void pump(Link& l, bool from_client);
    static std::uint32_t load_be32(const std::uint8_t* p) {
        return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
               (std::uint32_t{p[2]} << 8) | p[3];
    }

    int port_ = 0;
    int listen_[2] = {-1, -1};
    int upstream_ = 0;
    std::vector<Link> links_;
    Hook hook_;
    std::uint64_t commands_ = 0;
    bool held_ = false;
};

} // namespace tresim::test::crash
