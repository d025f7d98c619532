#include "ps_server.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <openssl/evp.h>

#include "protocol/base64url.hpp"
#include "tpm/error.hpp"

namespace fs = std::filesystem;

namespace tresim::test {

std::string need_env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) {
        throw std::runtime_error(std::string("the test needs $") + name);
    }
    return v;
}

Bytes sha256(ByteView data) {
    Bytes out(32);
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
}

ByteView view(const std::string& s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

void measure(tpm::Context& ctx, protocol::EventLog& log, unsigned pcr, std::uint32_t type,
             const std::string& data) {
    protocol::Event e;
    e.pcr = pcr;
    e.type = type;
    e.data = Bytes(data.begin(), data.end());
    e.digests[TPM2_ALG_SHA256] = sha256(e.data);
    TPML_DIGEST_VALUES v{};
    v.count = 1;
    v.digests[0].hashAlg = TPM2_ALG_SHA256;
    std::copy_n(e.digests[TPM2_ALG_SHA256].begin(), 32, v.digests[0].digest.sha256);
    tpm::check(
        Esys_PCR_Extend(ctx, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &v),
        "TPM2_PCR_Extend");
    log.events.push_back(std::move(e));
}

json attestation_json(const tpm::Attestation& a) {
    return {{"attest", protocol::b64url_encode(a.attest)},
            {"signature", protocol::b64url_encode(a.signature)}};
}

json pcrs_json(const std::map<unsigned, Bytes>& values) {
    json v = json::object();
    for (const auto& [i, value] : values) {
        v[std::to_string(i)] = hex_encode(value);
    }
    return {{"bank", "sha256"}, {"values", v}};
}

DevPki make_dev_pki(const std::string& dir, const std::vector<std::string>& ek_cas) {
    std::string cmd = need_env("PS_DEV_PKI") + " " + dir + " --port 0";
    for (const std::string& ca : ek_cas) {
        cmd += " --ek-ca " + ca;
    }
    cmd += " 2>/dev/null";
    FILE* f = popen(cmd.c_str(), "r");
    char line[256] = {};
    const bool read = f != nullptr && std::fgets(line, sizeof(line), f) != nullptr;
    if (f == nullptr || pclose(f) != 0 || !read) {
        throw std::runtime_error("ps-dev-pki failed");
    }
    DevPki out{dir, line};
    while (!out.token.empty() && (out.token.back() == '\n' || out.token.back() == '\r')) {
        out.token.pop_back();
    }
    return out;
}

PsServer::PsServer(const DevPki& pki, std::string dir, const std::function<void(json&)>& tweak)
    : dir_(std::move(dir)), token_(pki.token) {
    fs::copy(pki.dir, dir_, fs::copy_options::recursive);
    try {
        if (tweak) {
            json conf = json::parse(std::ifstream(dir_ + "/ps.conf"));
            tweak(conf);
            std::ofstream(dir_ + "/ps.conf") << conf.dump(2);
        }
        start();
    } catch (...) {
        std::error_code ec;
        fs::remove_all(dir_, ec);
        throw;
    }
}

PsServer::~PsServer() {
    stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
}

void PsServer::start() {
    const std::string config = dir_ + "/ps.conf";
    if (port_ != 0) { // the same port again
        json conf = json::parse(std::ifstream(config));
        conf["port"] = port_;
        std::ofstream(config) << conf.dump(2);
    }
    const std::string port_file = dir_ + "/port";
    fs::remove(port_file);
    const std::string log = dir_ + "/ps.log";
    const std::string exe = need_env("TRESIM_PS");
    pid_ = fork();
    if (pid_ < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
        const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0) {
            _exit(126);
        }
        execl(exe.c_str(), exe.c_str(), "--config", config.c_str(), "--port-file",
              port_file.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!fs::exists(port_file)) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("tresim-ps exited at start; see " + log);
        }
        if (std::chrono::steady_clock::now() > deadline) {
            stop(SIGKILL);
            throw std::runtime_error("tresim-ps did not start in 10 s; see " + log);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20)); // written, maybe not complete
    int port = 0;
    std::ifstream(port_file) >> port;
    if (port == 0) {
        stop(SIGKILL);
        throw std::runtime_error("tresim-ps wrote no port; see " + log);
    }
    port_ = port;
}

void PsServer::stop(int sig) {
    if (pid_ <= 0) {
        return;
    }
    kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            kill(pid_, SIGKILL);
            waitpid(pid_, &status, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
}

Response PsServer::post(const std::string& path, const json& body) {
    return call("POST", path, body.dump());
}

Response PsServer::get(const std::string& path) {
    return call("GET", path, "");
}

json PsServer::audit() {
    return get("/v1/operator/audit").body.at("audit");
}

std::size_t PsServer::audited(const std::string& device, const std::string& outcome,
                              const std::string& event) {
    std::size_t n = 0;
    for (const json& r : audit()) {
        n += r.value("device", "") == device && r.value("outcome", "") == outcome &&
             (event.empty() || r.value("event", "") == event);
    }
    return n;
}

std::string PsServer::reference(const std::string& device_class,
                                const std::map<unsigned, Bytes>& pcrs) {
    const Response r =
        post("/v1/operator/references", {{"class", device_class}, {"pcrs", pcrs_json(pcrs)}});
    if (r.status != 201) {
        throw std::runtime_error("the reference values were refused (" + std::to_string(r.status) +
                                 "): " + r.body.dump());
    }
    return r.body.value("id", "");
}

std::string PsServer::subscription_state(const std::string& id) {
    return get("/v1/operator/subscriptions/" + id).body.value("state", "?");
}

tpm::PolicyAuthority PsServer::signing_key() const {
    return tpm::PolicyAuthority::load(dir_ + "/ps-signing.pub.pem");
}

Response PsServer::call(const std::string& method, const std::string& path,
                        const std::string& body) {
    httplib::SSLClient client("localhost", port_);
    client.set_ca_cert_path((dir_ + "/ca.pem").c_str());
    client.enable_server_certificate_verification(true);
    client.set_read_timeout(30, 0);
    httplib::Headers headers;
    if (path.starts_with("/v1/operator/")) {
        headers.emplace("Authorization", "Bearer " + token_);
    }
    const httplib::Result r = method == "GET"
                                  ? client.Get(path.c_str(), headers)
                                  : client.Post(path.c_str(), headers, body, "application/json");
    if (!r) {
        throw std::runtime_error("HTTPS " + method + " " + path +
                                 " failed: " + httplib::to_string(r.error()));
    }
    Response out;
    out.status = r->status;
    if (!r->body.empty()) {
        out.body = json::parse(r->body);
    }
    return out;
}

} // namespace tresim::test
