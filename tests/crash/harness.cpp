#include "harness.hpp"

#include <arpa/inet.h>
#include <cstdio>
#include <fstream>
#include <memory>
#include <netinet/in.h>
#include <random>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tpm/context.hpp"
#include "tpm/stale.hpp"

namespace tresim::test::crash {

// Debug trace (TRESIM_CRASH_TRACE=file).
void trace(const std::string& line) {
    static const char* path = std::getenv("TRESIM_CRASH_TRACE");
    if (path != nullptr) {
        std::ofstream(path, std::ios::app) << line << "\n";
    }
}

// ---- sockets of the proxy -------------------------------------------------------

namespace {

sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    return a;
}

} // namespace

int listen_on(int port) {
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const sockaddr_in a = loopback(port);
    if (bind(s, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0 || listen(s, 4) != 0) {
        close(s);
        return -1;
    }
    return s;
}

int connect_to(int port) {
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in a = loopback(port);
    if (connect(s, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0) {
        close(s);
        return -1; // swtpm is gone (a power cut): the client sees its connection close
    }
    return s;
}

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

bool is_nv_write(std::uint32_t code) {
    return code == TPM2_CC_NV_Increment || code == TPM2_CC_NV_Extend || code == TPM2_CC_NV_Write ||
           code == TPM2_CC_NV_DefineSpace;
}

std::string code_name(std::uint32_t code) {
    static const std::map<std::uint32_t, const char*> names = {
        {TPM2_CC_NV_Increment, "NV_Increment"},
        {TPM2_CC_NV_Extend, "NV_Extend"},
        {TPM2_CC_NV_Write, "NV_Write"},
        {TPM2_CC_NV_Read, "NV_Read"},
        {TPM2_CC_NV_ReadPublic, "NV_ReadPublic"},
        {TPM2_CC_NV_DefineSpace, "NV_DefineSpace"},
        {TPM2_CC_Create, "Create"},
        {TPM2_CC_Load, "Load"},
        {TPM2_CC_FlushContext, "FlushContext"},
        {TPM2_CC_StartAuthSession, "StartAuthSession"},
        {TPM2_CC_PolicyPCR, "PolicyPCR"},
        {TPM2_CC_PolicyAuthorize, "PolicyAuthorize"},
        {TPM2_CC_EncryptDecrypt2, "EncryptDecrypt2"},
        {TPM2_CC_Unseal, "Unseal"},
        {TPM2_CC_HMAC, "HMAC"},
        {TPM2_CC_PCR_Read, "PCR_Read"},
        {TPM2_CC_VerifySignature, "VerifySignature"},
        {TPM2_CC_LoadExternal, "LoadExternal"},
        {TPM2_CC_ReadPublic, "ReadPublic"},
        {TPM2_CC_GetCapability, "GetCapability"},
        {TPM2_CC_Startup, "Startup"},
        {TPM2_CC_TestParms, "TestParms"},
        {TPM2_CC_GetRandom, "GetRandom"},
        {TPM2_CC_CreatePrimary, "CreatePrimary"},
        {TPM2_CC_EvictControl, "EvictControl"},
    };
    const auto it = names.find(code);
    if (it != names.end()) {
        return it->second;
    }
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%03x", code);
    return hex;
}

int flush_leftovers(const std::string& tcti) {
    tpm::Context ctx(tcti);
    return static_cast<int>(tpm::flush_stale_handles(ctx).total());
}

// ---- The database, read without the TE ----------------------------------------------

struct SqliteClose {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtFinalize {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};

DbPeek peek(const std::string& path) {
    DbPeek p;
    sqlite3* raw = nullptr;
    if (sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        sqlite3_close_v2(raw);
        throw std::runtime_error("cannot open " + path + " read-only");
    }
    const std::unique_ptr<sqlite3, SqliteClose> db(raw);
    sqlite3_busy_timeout(db.get(), 5000);
    auto each = [&](const char* sql, auto&& row) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db.get(), sql, -1, &s, nullptr) != SQLITE_OK) {
            throw std::runtime_error(std::string("peek: ") + sqlite3_errmsg(db.get()));
        }
        const std::unique_ptr<sqlite3_stmt, StmtFinalize> stmt(s);
        int rc = 0;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            row(s);
        }
        if (rc != SQLITE_DONE) {
            throw std::runtime_error(std::string("peek: ") + sqlite3_errmsg(db.get()));
        }
    };
    auto be64 = [](sqlite3_stmt* s) {
        std::uint64_t v = 0;
        const auto* b = static_cast<const std::uint8_t*>(sqlite3_column_blob(s, 1));
        if (b != nullptr && sqlite3_column_bytes(s, 1) == 8) {
            for (int i = 0; i < 8; ++i) {
                v = (v << 8) | b[i];
            }
        }
        return v;
    };
    each("SELECT key, value FROM meta WHERE key IN ('guard_epoch', 'guard_pending')",
         [&](sqlite3_stmt* s) {
             const std::string key = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
             (key == "guard_epoch" ? p.epoch : p.pending) = be64(s);
         });
    each("SELECT IFNULL(MAX(seq), 0) FROM audit_record",
         [&](sqlite3_stmt* s) { p.records = sqlite3_column_int64(s, 0); });
    each("SELECT anchored_seq FROM audit_anchor WHERE id = 1",
         [&](sqlite3_stmt* s) { p.anchored = sqlite3_column_int64(s, 0); });
    each("SELECT idx, mode FROM mids", [&](sqlite3_stmt* s) {
        p.mids[sqlite3_column_int64(s, 0)] =
            reinterpret_cast<const char*>(sqlite3_column_text(s, 1));
    });
    each("SELECT mid, role FROM objects", [&](sqlite3_stmt* s) {
        p.objects[sqlite3_column_int64(s, 0)].insert(
            reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
    });
    return p;
}

std::string read_file_text(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

TpmProxy::TpmProxy() {
    std::mt19937 r(std::random_device{}());
    for (int attempt = 0; attempt < 100; ++attempt) {
        port_ = 20001 + static_cast<int>(r() % 20000) * 2;
        listen_[0] = listen_on(port_);
        listen_[1] = listen_[0] >= 0 ? listen_on(port_ + 1) : -1;
        if (listen_[1] >= 0) {
            return;
        }
        if (listen_[0] >= 0) {
            close(listen_[0]);
        }
    }
    throw std::runtime_error("no free ports for the TPM proxy");
}

void TpmProxy::service(const std::vector<pollfd>& fds, std::size_t from) {
    const std::size_t links = links_.size();
    for (std::size_t i = 0; i < links; ++i) {
        Link& l = links_[i];
        const short c = fds[from + 2 + 2 * i].revents;
        const short s = fds[from + 2 + 2 * i + 1].revents;
        if ((c & (POLLIN | POLLHUP | POLLERR)) != 0) {
            pump(l, true);
        }
        if (l.open && (s & (POLLIN | POLLHUP | POLLERR)) != 0) {
            pump(l, false);
        }
    }
    std::erase_if(links_, [](const Link& l) { return !l.open; });
    for (int ch = 0; ch < 2; ++ch) {
        if ((fds[from + static_cast<std::size_t>(ch)].revents & POLLIN) != 0) {
            const int client = accept4(listen_[ch], nullptr, nullptr, SOCK_CLOEXEC);
            const int server = client >= 0 && !held_ ? connect_to(upstream_ + ch) : -1;
            if (server < 0) {
                if (client >= 0) {
                    close(client);
                }
                continue;
            }
            Link l;
            l.client = client;
            l.server = server;
            trace("accept ch=" + std::to_string(ch) +
                  " upstream=" + std::to_string(upstream_ + ch));
            l.control = ch == 1;
            links_.push_back(std::move(l));
        }
    }
}

void TpmProxy::drop() {
    for (Link& l : links_) {
        close_link(l);
    }
    links_.clear();
    for (const int fd : listen_) {
        int c = -1;
        while ((c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC)) >= 0) {
            trace("refused a queued connection");
            close(c);
        }
    }
}

void TpmProxy::pump(Link& l, bool from_client) {
    std::uint8_t chunk[8192];
    const ssize_t n = read(from_client ? l.client : l.server, chunk, sizeof(chunk));
    if (n <= 0) {
        close_link(l);
        return;
    }
    const int to = from_client ? l.server : l.client;
    if (l.control) {
        if (!held_ && !write_all(to, chunk, static_cast<std::size_t>(n))) {
            close_link(l);
        }
        return;
    }
    std::vector<std::uint8_t>& buf = from_client ? l.up : l.down;
    buf.insert(buf.end(), chunk, chunk + n);
    while (buf.size() >= 10) {
        const std::uint32_t size = load_be32(buf.data() + 2);
        if (size < 10 || buf.size() < size) {
            break;
        }
        Message m;
        m.command = from_client;
        if (from_client) {
            l.last_code = load_be32(buf.data() + 6);
            ++commands_;
        }
        m.code = l.last_code;
        m.n = commands_;
        trace(std::string(from_client ? "cmd " : "rsp ") + code_name(m.code) +
              " n=" + std::to_string(m.n) + (held_ ? " (held)" : ""));
        if (!held_ && hook_ && !hook_(m)) {
            held_ = true;
        }
        if (!held_ && !write_all(to, buf.data(), size)) {
            close_link(l);
            return;
        }
        buf.erase(buf.begin(), buf.begin() + size);
    }
}

} // namespace tresim::test::crash
