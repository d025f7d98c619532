#include "swtpm.hpp"

#include <arpa/inet.h>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <random>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;

namespace tresim::test {

int run_command(const std::string& command) {
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string make_temp_dir(const std::string& prefix) {
    std::string tmpl = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) {
        throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
    }
    return tmpl;
}

void remove_tree(const std::string& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
}

namespace {

// Two consecutive free ports (server, control), picked at random from a range
// outside the kernel's ephemeral ports (so that the TIME_WAIT sockets of
// earlier tests do not sit on them), both bindable with SO_REUSEADDR as swtpm
// binds them.
bool bindable(int port) {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(s);
    return ok;
}

int free_port_pair() {
    static std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> pick(10000, 30000);
    for (int attempt = 0; attempt < 200; ++attempt) {
        const int port = pick(rng) & ~1;
        if (bindable(port) && bindable(port + 1)) {
            return port;
        }
    }
    throw std::runtime_error("no free pair of loopback ports for swtpm");
}

bool port_open(int port) {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(s);
    return ok;
}

void write_file(const fs::path& p, const std::string& text) {
    std::ofstream out(p);
    out << text;
    if (!out) {
        throw std::runtime_error("cannot write " + p.string());
    }
}

// Manufactures a TPM state with EK certificates into dir/tpm, with the local
// CA's files in dir/ca. Returns false when swtpm_setup fails.
void manufacture(const fs::path& dir) {
    fs::create_directories(dir / "tpm");
    fs::create_directories(dir / "ca");
    write_file(dir / "swtpm-localca.conf",
               "statedir = " + (dir / "ca").string() + "\n" +
                   "signingkey = " + (dir / "ca" / "signkey.pem").string() + "\n" +
                   "issuercert = " + (dir / "ca" / "issuercert.pem").string() + "\n" +
                   "certserial = " + (dir / "ca" / "certserial").string() + "\n");
    write_file(dir / "swtpm-localca.options",
               "--platform-manufacturer tresim\n--platform-version 1.0\n--platform-model test\n");
    write_file(dir / "swtpm_setup.conf", "create_certs_tool = /usr/bin/swtpm_localca\n"
                                         "create_certs_tool_config = " +
                                             (dir / "swtpm-localca.conf").string() +
                                             "\n"
                                             "create_certs_tool_options = " +
                                             (dir / "swtpm-localca.options").string() +
                                             "\n"
                                             "active_pcr_banks = sha256\n");
    const std::string cmd = "swtpm_setup --tpm2 --tpmstate " + (dir / "tpm").string() +
                            " --config " + (dir / "swtpm_setup.conf").string() +
                            " --create-ek-cert --lock-nvram --overwrite --pcr-banks sha1,sha256"
                            " >" +
                            (dir / "setup.log").string() + " 2>&1";
    if (run_command(cmd) != 0) {
        throw std::runtime_error("swtpm_setup failed; see " + (dir / "setup.log").string());
    }
}

std::once_flag g_template_once;
std::string g_template_dir;

void copy_template_to(const fs::path& dir) {
    std::call_once(g_template_once, [] {
        g_template_dir = make_temp_dir("tresim-swtpm-template-");
        manufacture(g_template_dir);
        // Removed when the test process exits.
        std::atexit([] { remove_tree(g_template_dir); });
    });
    fs::copy(g_template_dir, dir, fs::copy_options::recursive);
}

} // namespace

Swtpm::Swtpm() : dir_(make_temp_dir("tresim-swtpm-")) {
    try {
        copy_template_to(dir_);
        start();
    } catch (...) {
        remove_tree(dir_);
        throw;
    }
}

Swtpm::~Swtpm() {
    stop();
    remove_tree(dir_);
}

std::string Swtpm::tcti() const {
    return "swtpm:host=127.0.0.1,port=" + std::to_string(port_);
}

std::string Swtpm::ca_root_cert() const {
    return dir_ + "/ca/swtpm-localca-rootca-cert.pem";
}

std::string Swtpm::ca_issuer_cert() const {
    return dir_ + "/ca/issuercert.pem";
}

void Swtpm::start() {
    port_ = free_port_pair();
    const std::string server = "type=tcp,port=" + std::to_string(port_) + ",bindaddr=127.0.0.1";
    const std::string ctrl = "type=tcp,port=" + std::to_string(port_ + 1) + ",bindaddr=127.0.0.1";
    const std::string state = "dir=" + dir_ + "/tpm";
    const std::string log = "file=" + dir_ + "/swtpm.log";
    pid_ = fork();
    if (pid_ < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
        execlp("swtpm", "swtpm", "socket", "--tpm2", "--tpmstate", state.c_str(), "--server",
               server.c_str(), "--ctrl", ctrl.c_str(), "--flags", "not-need-init,startup-clear",
               "--log", log.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!port_open(port_)) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("swtpm exited at start; see " + dir_ + "/swtpm.log");
        }
        if (std::chrono::steady_clock::now() > deadline) {
            stop();
            throw std::runtime_error("swtpm did not open its port in 10 s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

void Swtpm::stop(int signal) {
    if (pid_ > 0) {
        kill(pid_, signal);
        int status = 0;
        waitpid(pid_, &status, 0);
        pid_ = -1;
    }
}

void Swtpm::restart() {
    stop();
    start();
}

void Swtpm::power_cut() {
    stop(SIGKILL);
    start();
}

} // namespace tresim::test
