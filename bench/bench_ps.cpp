// tresim-ps's cost (issue 5, section 5), measured in one run:
//
//  1. quote verification per core, CPU time: what the PS's evidence handler
//     runs for a quote (unmarshal the session's AK public, convert it to an
//     OpenSSL key, tpm::verify_quote: signature, TPM_GENERATED magic, type,
//     nonce, PCR selection and digest) against OpenSSL's raw ECDSA P-256
//     verification of a 32-byte digest (EVP_PKEY_verify with a prepared
//     context, what `openssl speed ecdsap256` measures) and against the
//     one-shot EVP_DigestVerify of the same attestation bytes. The quotes are
//     TPMS_ATTEST structures in the TPM's exact wire form signed with a
//     software P-256 AK, and one real quote made once by a swtpm (when
//     swtpm is there) is verified the same way as a cross-check;
//  2. complete provisioning sessions (hello, evidence, results: the
//     activation-code flow of docs/protocol.md) against a real tresim-ps
//     process over TLS 1.3 on loopback with its SQLite store, with one client
//     and with four concurrent clients. The device side is software here, so
//     that the server and not a swtpm is measured: a fresh device per session
//     with P-256 EK (certified by a software manufacturer CA the PS trusts),
//     AK and SRK keys, credential activation done in software (ECDH + KDFe +
//     KDFa + AES-CFB, what TPM2_ActivateCredential computes) and quotes and
//     the SRK certification as signed TPMS_ATTESTs. The device's own time is
//     measured apart, and the PS process's CPU time per session is read from
//     /proc;
//  3. (when swtpm is there) a few sessions with a swtpm playing the device
//     through the TPM layer, as tests/ps does, splitting each session's wall
//     time into the device's TPM time and the rest.
//
// Environment: TRESIM_PS (the server), PS_DEV_PKI (tools/ps-dev-pki).
// --sessions=N sets the sessions per repetition with one client (default 30;
// the four clients run N/4+1 each); --benchmark_repetitions applies to both.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tss2/tss2_mu.h>

#include "collecting_reporter.hpp"
#include "protocol/base64url.hpp"
#include "protocol/eventlog.hpp"
#include "swtpm.hpp"
#include "te/profile.hpp"
#include "tpm/attest.hpp"
#include "tpm/duplicate.hpp"
#include "tpm/keys.hpp"
#include "tpm/policy.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kClass[] = "gw-bench";
constexpr char kSelection[] = "sha256:0,2,4,7";
constexpr int kConcurrentClients = 4;

struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct X509Free {
    void operator()(X509* p) const { X509_free(p); }
};

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr) {
        throw std::runtime_error(std::string("bench_ps needs $") + name);
    }
    return v;
}

void ensure(bool ok, const std::string& what) {
    if (!ok) {
        throw std::runtime_error(what);
    }
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

std::string b64(ByteView b) {
    return protocol::b64url_encode(b);
}

Pkey p256_key() {
    Pkey k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    ensure(k != nullptr, "P-256 key generation failed");
    return k;
}

// A TPM public area from `tmpl` carrying the P-256 point of `key`.
TPM2B_PUBLIC with_point(TPM2B_PUBLIC tmpl, const EVP_PKEY* key) {
    std::uint8_t point[65];
    std::size_t len = 0;
    ensure(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point,
                                           &len) == 1 &&
               len == 65 && point[0] == 0x04,
           "cannot read a P-256 point");
    auto& u = tmpl.publicArea.unique.ecc;
    u.x.size = 32;
    u.y.size = 32;
    std::memcpy(u.x.buffer, point + 1, 32);
    std::memcpy(u.y.buffer, point + 33, 32);
    return tmpl;
}

// DER ECDSA signature with SHA-256, as the TPM layer hands out a TPM's.
Bytes sign(EVP_PKEY* key, ByteView data) {
    const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                      &EVP_MD_CTX_free);
    std::size_t len = 0;
    ensure(ctx && EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
               EVP_DigestSign(ctx.get(), nullptr, &len, data.data(), data.size()) == 1,
           "ECDSA signing failed");
    Bytes out(len);
    ensure(EVP_DigestSign(ctx.get(), out.data(), &len, data.data(), data.size()) == 1,
           "ECDSA signing failed");
    out.resize(len);
    return out;
}

Bytes marshal_attest(const TPMS_ATTEST& a) {
    Bytes out(sizeof(TPMS_ATTEST));
    std::size_t off = 0;
    ensure(Tss2_MU_TPMS_ATTEST_Marshal(&a, out.data(), out.size(), &off) == TSS2_RC_SUCCESS,
           "cannot marshal a TPMS_ATTEST");
    out.resize(off);
    return out;
}

template <typename B> void fill(B& b, ByteView data) {
    ensure(data.size() <= sizeof(b.buffer), "a TPM2B is too small");
    b.size = static_cast<std::uint16_t>(data.size());
    std::memcpy(b.buffer, data.data(), data.size());
}
template <typename N> void fill_name(N& n, ByteView data) {
    ensure(data.size() <= sizeof(n.name), "a name is too long");
    n.size = static_cast<std::uint16_t>(data.size());
    std::memcpy(n.name, data.data(), data.size());
}

// ---- the boot both kinds of device measure -----------------------------------------

protocol::EventLog boot_log() {
    protocol::EventLog log;
    log.banks = {TPM2_ALG_SHA256};
    const auto add = [&](unsigned pcr, std::uint32_t type, const std::string& data) {
        protocol::Event e;
        e.pcr = pcr;
        e.type = type;
        e.data = Bytes(data.begin(), data.end());
        e.digests[TPM2_ALG_SHA256] = sha256(e.data);
        log.events.push_back(std::move(e));
    };
    add(0, protocol::EV_S_CRTM_VERSION, "firmware 1.0");
    add(2, protocol::EV_EFI_BOOT_SERVICES_APPLICATION, "option rom");
    add(4, protocol::EV_EFI_BOOT_SERVICES_APPLICATION, "shim");
    add(4, protocol::EV_EFI_BOOT_SERVICES_APPLICATION, "grub");
    add(7, protocol::EV_EFI_VARIABLE_DRIVER_CONFIG, "SecureBoot=1");
    for (const unsigned pcr : {0u, 2u, 4u, 7u}) {
        add(pcr, protocol::EV_SEPARATOR, std::string(4, '\0'));
    }
    return log;
}

const protocol::EventLog& the_log() {
    static const protocol::EventLog log = boot_log();
    return log;
}
const Bytes& the_log_bytes() {
    static const Bytes bytes = protocol::write_event_log(the_log());
    return bytes;
}
const tpm::PcrValues& the_pcrs() {
    static const tpm::PcrValues v =
        protocol::replay(the_log(), tpm::parse_pcr_selection(kSelection));
    return v;
}

json pcrs_json(const tpm::PcrValues& v) {
    json values = json::object();
    for (const auto& [i, value] : v.values) {
        values[std::to_string(i)] = hex_encode(value);
    }
    return {{"bank", "sha256"}, {"values", values}};
}

// ---- a software manufacturer CA and a software device ----------------------------------

struct SoftCa {
    Pkey key = p256_key();
    std::unique_ptr<X509, X509Free> cert;
    long serial = 1;
    std::mutex mutex;

    SoftCa() { cert = make(key.get(), "tresim bench TPM manufacturer CA", true); }

    std::unique_ptr<X509, X509Free> make(EVP_PKEY* subject_key, const std::string& cn, bool ca) {
        std::unique_ptr<X509, X509Free> x(X509_new());
        X509_NAME* name = X509_NAME_new();
        ensure(x && name &&
                   X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                              reinterpret_cast<const unsigned char*>(cn.c_str()),
                                              -1, -1, 0) == 1,
               "cannot make a certificate");
        X509_set_version(x.get(), 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial++);
        X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x.get()), 365L * 86400);
        X509_set_subject_name(x.get(), name);
        X509_set_issuer_name(x.get(), ca ? name : X509_get_subject_name(cert.get()));
        X509_NAME_free(name);
        X509_set_pubkey(x.get(), subject_key);
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, ca ? x.get() : cert.get(), x.get(), nullptr, nullptr, 0);
        const auto ext = [&](int nid, const char* value) {
            X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
            ensure(e != nullptr && X509_add_ext(x.get(), e, -1) == 1, "cannot add an extension");
            X509_EXTENSION_free(e);
        };
        ext(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
        ext(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,keyAgreement");
        ensure(X509_sign(x.get(), key.get(), EVP_sha256()) > 0, "cannot sign a certificate");
        return x;
    }

    Bytes ek_certificate(EVP_PKEY* ek) {
        const std::lock_guard lock(mutex);
        const auto x = make(ek, "tresim bench EK", false);
        const int len = i2d_X509(x.get(), nullptr);
        Bytes der(static_cast<std::size_t>(len));
        std::uint8_t* p = der.data();
        i2d_X509(x.get(), &p);
        return der;
    }

    void write_pem(const std::string& path) const {
        FILE* f = std::fopen(path.c_str(), "w");
        ensure(f != nullptr && PEM_write_X509(f, cert.get()) == 1, "cannot write " + path);
        std::fclose(f);
    }
};

// One device: its keys in software, the TPM's computations done in software.
struct SoftDevice {
    Pkey ek_key = p256_key();
    Pkey ak_key = p256_key();
    Pkey srk_key = p256_key();
    TPM2B_PUBLIC ek = with_point(tpm::ek_template(tpm::EkType::EccP256), ek_key.get());
    TPM2B_PUBLIC ak = with_point(tpm::ak_template(), ak_key.get());
    TPM2B_PUBLIC srk = with_point(tpm::srk_template(), srk_key.get());
    Bytes ak_name = tpm::object_name(ak.publicArea);
    Bytes srk_name = tpm::object_name(srk.publicArea);
    Bytes ek_cert;
    std::uint64_t clock = 100000;
    std::string code; // the activation code of its subscription

    explicit SoftDevice(SoftCa& ca) : ek_cert(ca.ek_certificate(ek_key.get())) {}

    json hello() const {
        return {{"format", "tresim-hello-1"},
                {"ek_public", b64(tpm::marshal_public(ek))},
                {"ek_certificate", b64(ek_cert)},
                {"ek_chain", json::array()},
                {"ak_public", b64(tpm::marshal_public(ak))},
                {"srk_public", b64(tpm::marshal_public(srk))},
                {"platform",
                 {{"class", kClass},
                  {"tpm_manufacturer", "bench"},
                  {"computation_mode", "tpm-ecb"},
                  {"pcr_selection", kSelection}}},
                {"activation_code", code}};
    }

    // TPM2_ActivateCredential for an ECC EK (TPM 2.0 Part 1 §24): Z from ECDH of
    // the EK with the point in `secret`, seed = KDFe(Z, "IDENTITY", point x, EK
    // x), symKey = KDFa(seed, "STORAGE", AK name), AES-128-CFB of the blob.
    Bytes activate(ByteView blob, ByteView secret) const {
        ensure(secret.size() > 2, "secret too short");
        TPMS_ECC_POINT q{};
        std::size_t off = 0;
        ensure(Tss2_MU_TPMS_ECC_POINT_Unmarshal(secret.data() + 2, secret.size() - 2, &off, &q) ==
                   TSS2_RC_SUCCESS,
               "secret is not an ECC point");
        TPM2B_PUBLIC eph = ek;
        eph.publicArea.unique.ecc = q;
        const tpm::EvpPkeyPtr peer = tpm::to_evp_pkey(eph.publicArea);
        const std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
            EVP_PKEY_CTX_new_from_pkey(nullptr, ek_key.get(), nullptr), &EVP_PKEY_CTX_free);
        std::size_t zlen = 32;
        Bytes z(32);
        ensure(ctx && EVP_PKEY_derive_init(ctx.get()) == 1 &&
                   EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) == 1 &&
                   EVP_PKEY_derive(ctx.get(), z.data(), &zlen) == 1 && zlen == 32,
               "ECDH failed");
        const auto& ex = ek.publicArea.unique.ecc.x;
        const SecretBytes seed = tpm::kdfe_sha256(z, "IDENTITY", ByteView(q.x.buffer, q.x.size),
                                                  ByteView(ex.buffer, ex.size), 256);
        const SecretBytes sym = tpm::kdfa_sha256(seed.view(), "STORAGE", ak_name, {}, 128);
        // TPM2B_ID_OBJECT: size, TPM2B_DIGEST(outer HMAC), encIdentity.
        ensure(blob.size() > 4, "credential blob too short");
        const std::size_t hlen = (std::size_t{blob[2]} << 8) | blob[3];
        ensure(blob.size() > 4 + hlen + 2, "credential blob too short");
        const ByteView enc = blob.subspan(4 + hlen);
        Bytes plain(enc.size());
        const std::uint8_t iv[16] = {};
        const std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> c(
            EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
        int l1 = 0;
        int l2 = 0;
        ensure(
            c && EVP_DecryptInit_ex(c.get(), EVP_aes_128_cfb128(), nullptr, sym.data(), iv) == 1 &&
                EVP_DecryptUpdate(c.get(), plain.data(), &l1, enc.data(),
                                  static_cast<int>(enc.size())) == 1 &&
                EVP_DecryptFinal_ex(c.get(), plain.data() + l1, &l2) == 1,
            "AES-CFB failed");
        const std::size_t n = (std::size_t{plain[0]} << 8) | plain[1];
        ensure(n + 2 <= plain.size(), "credential malformed");
        return Bytes(plain.begin() + 2, plain.begin() + 2 + static_cast<std::ptrdiff_t>(n));
    }

    TPMS_ATTEST attest_header(TPMI_ST_ATTEST type, ByteView extra) {
        TPMS_ATTEST a{};
        a.magic = TPM2_GENERATED_VALUE;
        a.type = type;
        fill_name(a.qualifiedSigner, ak_name);
        fill(a.extraData, extra);
        clock += 1500;
        a.clockInfo.clock = clock;
        a.clockInfo.resetCount = 7;
        a.clockInfo.restartCount = 0;
        a.clockInfo.safe = TPM2_YES;
        a.firmwareVersion = 0x2019102300163800ull;
        return a;
    }

    tpm::Attestation quote(ByteView extra, const tpm::PcrValues& pcrs) {
        TPMS_ATTEST a = attest_header(TPM2_ST_ATTEST_QUOTE, extra);
        auto& sel = a.attested.quote.pcrSelect;
        sel.count = 1;
        sel.pcrSelections[0].hash = pcrs.bank;
        sel.pcrSelections[0].sizeofSelect = 3;
        for (const auto& entry : pcrs.values) {
            sel.pcrSelections[0].pcrSelect[entry.first / 8] |=
                static_cast<std::uint8_t>(1u << (entry.first % 8));
        }
        fill(a.attested.quote.pcrDigest, tpm::quote_pcr_digest(pcrs));
        tpm::Attestation out;
        out.attest = marshal_attest(a);
        out.signature = sign(ak_key.get(), out.attest);
        return out;
    }

    tpm::Attestation certify_srk(ByteView extra) {
        TPMS_ATTEST a = attest_header(TPM2_ST_ATTEST_CERTIFY, extra);
        fill_name(a.attested.certify.name, srk_name);
        fill_name(a.attested.certify.qualifiedName, srk_name);
        tpm::Attestation out;
        out.attest = marshal_attest(a);
        out.signature = sign(ak_key.get(), out.attest);
        return out;
    }
};

json attestation_json(const tpm::Attestation& a) {
    return {{"attest", b64(a.attest)}, {"signature", b64(a.signature)}};
}

// The instructions' payloads (the device would verify them; not measured here).
std::vector<json> payloads(const json& reply) {
    std::vector<json> out;
    for (const json& jws : reply.at("instructions")) {
        const std::string s = jws.get<std::string>();
        const auto a = s.find('.');
        const auto b = s.find('.', a + 1);
        const Bytes p = protocol::b64url_decode(s.substr(a + 1, b - a - 1), "payload");
        out.push_back(json::parse(p.begin(), p.end()));
    }
    return out;
}

json results_list(const std::vector<json>& instructions) {
    json list = json::array();
    for (const json& p : instructions) {
        list.push_back({{"id", p["id"]}, {"counter", p["counter"]}, {"status", "ok"}});
    }
    return list;
}

struct TempDir {
    std::string path;
    explicit TempDir(const std::string& prefix) : path(test::make_temp_dir(prefix)) {}
    ~TempDir() { test::remove_tree(path); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

// ---- one tresim-ps process ------------------------------------------------------------

struct Response {
    int status = 0;
    json body;
};

class PsProcess {
public:
    PsProcess(const std::vector<std::string>& ek_cas) : dir_(test::make_temp_dir("tresim-bps-")) {
        std::string cmd = env("PS_DEV_PKI") + " " + dir_ + "/pki --port 0";
        for (const std::string& ca : ek_cas) {
            cmd += " --ek-ca " + ca;
        }
        cmd += " 2>/dev/null";
        FILE* f = popen(cmd.c_str(), "r");
        char line[256] = {};
        if (f == nullptr || std::fgets(line, sizeof(line), f) == nullptr || pclose(f) != 0) {
            test::remove_tree(dir_);
            throw std::runtime_error("ps-dev-pki failed");
        }
        token_ = line;
        while (!token_.empty() && (token_.back() == '\n' || token_.back() == '\r')) {
            token_.pop_back();
        }
        const std::string pki = dir_ + "/pki";
        const std::string port_file = pki + "/port";
        const std::string config = pki + "/ps.conf";
        log_ = dir_ + "/ps.log";
        const std::string exe = env("TRESIM_PS");
        pid_ = fork();
        if (pid_ == 0) {
            if (std::freopen(log_.c_str(), "w", stderr) == nullptr) {
                _exit(126);
            }
            execl(exe.c_str(), exe.c_str(), "--config", config.c_str(), "--port-file",
                  port_file.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        const auto deadline = Clock::now() + std::chrono::seconds(10);
        while (!fs::exists(port_file)) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("tresim-ps exited at start; see " + log_);
            }
            ensure(Clock::now() < deadline, "tresim-ps did not start in 10 s");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::ifstream(port_file) >> port_;
        ca_ = pki + "/ca.pem";
    }
    ~PsProcess() {
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            int status = 0;
            waitpid(pid_, &status, 0);
        }
        test::remove_tree(dir_);
    }
    PsProcess(const PsProcess&) = delete;
    PsProcess& operator=(const PsProcess&) = delete;

    // A TLS connection, kept alive for the requests of one session.
    std::unique_ptr<httplib::SSLClient> connect() const {
        auto c = std::make_unique<httplib::SSLClient>("localhost", port_);
        c->set_ca_cert_path(ca_.c_str());
        c->enable_server_certificate_verification(true);
        c->set_keep_alive(true);
        c->set_tcp_nodelay(nodelay_);
        c->set_read_timeout(60, 0);
        return c;
    }

    Response post(httplib::SSLClient& c, const std::string& path, const json& body,
                  bool operator_api = false) const {
        httplib::Headers headers;
        if (operator_api) {
            headers.emplace("Authorization", "Bearer " + token_);
        }
        const httplib::Result r = c.Post(path.c_str(), headers, body.dump(), "application/json");
        if (!r) {
            throw std::runtime_error("HTTPS POST " + path +
                                     " failed: " + httplib::to_string(r.error()));
        }
        Response out;
        out.status = r->status;
        if (!r->body.empty()) {
            out.body = json::parse(r->body);
        }
        return out;
    }

    Response expect(httplib::SSLClient& c, const std::string& path, const json& body, int status,
                    bool operator_api = false) const {
        Response r = post(c, path, body, operator_api);
        if (r.status != status) {
            throw std::runtime_error(path + " answered " + std::to_string(r.status) + ": " +
                                     r.body.dump());
        }
        return r;
    }

    // A subscription bound to a fresh activation code; returns the code.
    std::string subscribe(httplib::SSLClient& c, int n) const {
        std::string iccid;
        const std::string body = "8949020" + std::to_string(10000000000LL + n);
        for (char d = '0'; d <= '9'; ++d) {
            if (te::luhn_valid(body + d)) {
                iccid = body + d;
            }
        }
        const json profile = {{"iccid", iccid},
                              {"imsi", "26201" + std::to_string(1000000000 + n)},
                              {"algorithm", "milenage"},
                              {"k", "465b5ce8b199b49faa5f0a2ee238a6bc"},
                              {"opc", "cd63cb71954a9f4e48a5994e37a02baf"},
                              {"amf", "b9b9"}};
        const Response r =
            expect(c, "/v1/operator/subscriptions",
                   {{"profile", profile}, {"class", kClass}, {"bind", {{"activation_code", true}}}},
                   201, true);
        return r.body.at("activation_code").get<std::string>();
    }

    // CPU time of all its threads (/proc/PID/task/*/schedstat, nanoseconds).
    double cpu_seconds() const {
        double total = 0;
        std::error_code ec;
        for (const auto& task :
             fs::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec)) {
            std::ifstream in(task.path() / "schedstat");
            unsigned long long ns = 0;
            if (in >> ns) {
                total += static_cast<double>(ns) / 1e9;
            }
        }
        return total;
    }

private:
    std::string dir_;
    std::string token_;
    std::string log_;
    std::string ca_;
    pid_t pid_ = -1;
    int port_ = 0;
    bool nodelay_ = std::getenv("BENCH_PS_NAGLE") == nullptr;
};

// ---- measurements ---------------------------------------------------------------------

struct Samples {
    std::mutex mutex;
    std::vector<double> us;
    void add(Clock::duration d) {
        const std::lock_guard lock(mutex);
        us.push_back(std::chrono::duration<double, std::micro>(d).count());
    }
    std::optional<double> quantile(double q) {
        const std::lock_guard lock(mutex);
        if (us.empty()) {
            return std::nullopt;
        }
        std::vector<double> v = us;
        const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
        return v[k];
    }
};

struct Phases {
    Samples hello, device, evidence, results, session;
};

double median(std::vector<double> v) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

std::string cell(std::optional<double> v, int decimals) {
    if (!v) {
        return "n/a";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, *v);
    return buf;
}

// One complete session of a software device; phase times into `phases`.
void run_session(const PsProcess& ps, SoftDevice& d, Phases* phases) {
    const auto t0 = Clock::now();
    const auto c = ps.connect();
    const Response hello = ps.expect(*c, "/v1/device/hello", d.hello(), 200);
    const auto t1 = Clock::now();
    const Bytes nonce = protocol::b64url_decode(hello.body.at("nonce").get<std::string>(), "nonce");
    const Bytes credential = d.activate(
        protocol::b64url_decode(hello.body.at("credential_blob").get<std::string>(), "b"),
        protocol::b64url_decode(hello.body.at("secret").get<std::string>(), "s"));
    const json evidence = {{"session", hello.body.at("session")},
                           {"credential", b64(credential)},
                           {"quote", attestation_json(d.quote(nonce, the_pcrs()))},
                           {"srk_certification", attestation_json(d.certify_srk(nonce))},
                           {"pcrs", pcrs_json(the_pcrs())},
                           {"event_log", b64(the_log_bytes())}};
    const auto t2 = Clock::now();
    const Response validated = ps.expect(*c, "/v1/device/evidence", evidence, 200);
    const auto t3 = Clock::now();
    const std::vector<json> instructions = payloads(validated.body);
    ensure(instructions.size() == 1 && instructions[0]["op"] == "install",
           "expected one install instruction, got " + validated.body.dump());
    const std::string text = results_list(instructions).dump();
    const json results = {{"session", hello.body.at("session")},
                          {"results", text},
                          {"quote", attestation_json(d.quote(sha256(view(text)), the_pcrs()))}};
    const auto t4 = Clock::now();
    const Response accepted = ps.expect(*c, "/v1/device/results", results, 200);
    ensure(accepted.body.value("accepted", 0) == 1, "results not accepted");
    const auto t5 = Clock::now();
    if (phases != nullptr) {
        phases->hello.add(t1 - t0);
        phases->device.add((t2 - t1) + (t4 - t3));
        phases->evidence.add(t3 - t2);
        phases->results.add(t5 - t4);
        phases->session.add(t5 - t0);
    }
}

// Devices with a registered subscription each, handed out once.
struct DevicePool {
    std::vector<std::unique_ptr<SoftDevice>> devices;
    std::atomic<std::size_t> next{0};
    SoftDevice* take() {
        const std::size_t i = next.fetch_add(1);
        return i < devices.size() ? devices[i].get() : nullptr;
    }
};

// Per benchmark: sessions/s of each repetition (wall), PS CPU, sessions.
struct SessionStats {
    std::vector<double> rates;
    double ps_cpu = 0;
    double client_cpu = 0;
    std::size_t sessions = 0;
};

double process_cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// ---- a swtpm playing the device (as tests/ps) ----------------------------------------------

struct SwtpmDevice {
    test::Swtpm swtpm;
    tpm::Context ctx{swtpm.tcti()};
    tpm::EkCertificates certs = tpm::read_ek_certificates(ctx);
    tpm::Ek ek = tpm::create_ek(ctx, tpm::EkType::Rsa2048);
    tpm::Srk srk = tpm::ensure_srk(ctx);
    tpm::Ak ak = tpm::load_ak(ctx, srk, tpm::create_ak(ctx, srk));

    SwtpmDevice() {
        for (const protocol::Event& e : the_log().events) {
            TPML_DIGEST_VALUES v{};
            v.count = 1;
            v.digests[0].hashAlg = TPM2_ALG_SHA256;
            std::copy_n(e.digests.at(TPM2_ALG_SHA256).begin(), 32, v.digests[0].digest.sha256);
            ensure(Esys_PCR_Extend(ctx, ESYS_TR_PCR0 + e.pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                   ESYS_TR_NONE, &v) == TSS2_RC_SUCCESS,
                   "TPM2_PCR_Extend failed");
        }
        ek.handle.reset();
    }

    json hello(const std::string& code) const {
        return {{"format", "tresim-hello-1"},
                {"ek_public", b64(tpm::marshal_public(ek.pub))},
                {"ek_certificate", b64(*certs.rsa2048)},
                {"ek_chain", json::array()},
                {"ak_public", b64(tpm::marshal_public(ak.pub))},
                {"srk_public", b64(tpm::marshal_public(srk.pub))},
                {"platform",
                 {{"class", kClass},
                  {"tpm_manufacturer", "IBM"},
                  {"computation_mode", "tpm-ecb"},
                  {"pcr_selection", kSelection}}},
                {"activation_code", code}};
    }
};

// One session with the swtpm device: {TPM time, server round trips} in ms.
std::pair<double, double> swtpm_session(const PsProcess& ps, SwtpmDevice& d,
                                        const std::string& code) {
    using ms = std::chrono::duration<double, std::milli>;
    const auto c = ps.connect();
    auto t = Clock::now();
    const Response hello = ps.expect(*c, "/v1/device/hello", d.hello(code), 200);
    double server = ms(Clock::now() - t).count();
    t = Clock::now();
    const Bytes nonce = protocol::b64url_decode(hello.body.at("nonce").get<std::string>(), "nonce");
    d.ek = tpm::create_ek(d.ctx, tpm::EkType::Rsa2048);
    const SecretBytes credential = tpm::activate_credential(
        d.ctx, d.ak, d.ek,
        protocol::b64url_decode(hello.body.at("credential_blob").get<std::string>(), "blob"),
        protocol::b64url_decode(hello.body.at("secret").get<std::string>(), "secret"));
    d.ek.handle.reset();
    const tpm::PcrSelection sel = tpm::parse_pcr_selection(kSelection);
    const tpm::Attestation quote = tpm::quote(d.ctx, d.ak, sel, nonce);
    const tpm::Attestation cert = tpm::certify(d.ctx, d.ak, d.srk.handle, nonce);
    const tpm::PcrValues values = tpm::read_pcrs(d.ctx, sel);
    double device = ms(Clock::now() - t).count();
    const json evidence = {
        {"session", hello.body.at("session")}, {"credential", b64(credential.view())},
        {"quote", attestation_json(quote)},    {"srk_certification", attestation_json(cert)},
        {"pcrs", pcrs_json(values)},           {"event_log", b64(the_log_bytes())}};
    t = Clock::now();
    const Response validated = ps.expect(*c, "/v1/device/evidence", evidence, 200);
    server += ms(Clock::now() - t).count();
    const std::string text = results_list(payloads(validated.body)).dump();
    t = Clock::now();
    const tpm::Attestation rq = tpm::quote(d.ctx, d.ak, sel, sha256(view(text)));
    device += ms(Clock::now() - t).count();
    t = Clock::now();
    ps.expect(
        *c, "/v1/device/results",
        {{"session", hello.body.at("session")}, {"results", text}, {"quote", attestation_json(rq)}},
        200);
    server += ms(Clock::now() - t).count();
    return {device, server};
}

// ---- reporting ------------------------------------------------------------------------------

int run(int argc, char** argv) {
    int sessions_per_rep = 30;
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("--sessions=", 0) == 0) {
            sessions_per_rep = std::max(1, std::stoi(a.substr(11)));
        } else {
            args.push_back(argv[i]);
        }
    }
    int repetitions = 1; // also Google Benchmark's, read before it takes its flags
    for (const char* a : args) {
        const std::string arg = a;
        if (arg.rfind("--benchmark_repetitions=", 0) == 0) {
            repetitions = std::max(1, std::stoi(arg.substr(24)));
        }
    }
    int nargs = static_cast<int>(args.size());
    benchmark::Initialize(&nargs, args.data());
    env("TRESIM_PS"); // both needed: fail before making anything
    env("PS_DEV_PKI");
    const bool have_swtpm =
        test::run_command("command -v swtpm >/dev/null && command -v swtpm_setup >/dev/null") == 0;

    // ---- 1. quote verification ----
    SoftCa ca;
    const TempDir tmp("tresim-bps-ca-");
    const std::string ca_pem = tmp.path + "/bench-ek-ca.pem";
    ca.write_pem(ca_pem);

    SoftDevice qd(ca);
    const Bytes nonce = sha256(view("a nonce"));
    const tpm::Attestation soft_quote = qd.quote(nonce, the_pcrs());
    const Bytes ak_raw = tpm::marshal_public(qd.ak);
    const tpm::EvpPkeyPtr ak_key = tpm::to_evp_pkey(qd.ak.publicArea);
    tpm::AttestExpectations expect;
    expect.qualifying_data = nonce;
    tpm::verify_quote(soft_quote, ak_key.get(), expect, the_pcrs()); // it is a valid quote

    std::unique_ptr<SwtpmDevice> tpm_device;
    tpm::Attestation tpm_quote;
    Bytes tpm_ak_raw;
    tpm::PcrValues tpm_pcrs;
    if (have_swtpm) {
        tpm_device = std::make_unique<SwtpmDevice>();
        const tpm::PcrSelection sel = tpm::parse_pcr_selection(kSelection);
        tpm_quote = tpm::quote(tpm_device->ctx, tpm_device->ak, sel, nonce);
        tpm_ak_raw = tpm::marshal_public(tpm_device->ak.pub);
        tpm_pcrs = tpm::read_pcrs(tpm_device->ctx, sel);
        ensure(tpm_pcrs.values == the_pcrs().values, "swtpm PCRs differ from the event log");
        std::printf("attestation sizes: software quote %zu bytes, swtpm quote %zu bytes\n",
                    soft_quote.attest.size(), tpm_quote.attest.size());
    }

    // The reference: raw ECDSA P-256 verification of a 32-byte digest.
    const Bytes digest = sha256(soft_quote.attest);
    const std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> vctx(
        EVP_PKEY_CTX_new_from_pkey(nullptr, ak_key.get(), nullptr), &EVP_PKEY_CTX_free);
    ensure(vctx && EVP_PKEY_verify_init(vctx.get()) == 1, "EVP_PKEY_verify_init failed");
    benchmark::RegisterBenchmark("BM_OpensslEcdsaVerifyDigest", [&](benchmark::State& s) {
        for (auto _ : s) {
            const int ok =
                EVP_PKEY_verify(vctx.get(), soft_quote.signature.data(),
                                soft_quote.signature.size(), digest.data(), digest.size());
            if (ok != 1) {
                s.SkipWithError("the reference verification failed");
                break;
            }
        }
    })->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_OpensslDigestVerify", [&](benchmark::State& s) {
        for (auto _ : s) {
            EVP_MD_CTX* m = EVP_MD_CTX_new();
            const int ok =
                EVP_DigestVerifyInit(m, nullptr, EVP_sha256(), nullptr, ak_key.get()) == 1 &&
                EVP_DigestVerify(m, soft_quote.signature.data(), soft_quote.signature.size(),
                                 soft_quote.attest.data(), soft_quote.attest.size()) == 1;
            EVP_MD_CTX_free(m);
            if (!ok) {
                s.SkipWithError("EVP_DigestVerify failed");
                break;
            }
        }
    })->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_VerifyQuote", [&](benchmark::State& s) {
        for (auto _ : s) {
            benchmark::DoNotOptimize(
                tpm::verify_quote(soft_quote, ak_key.get(), expect, the_pcrs()));
        }
    })->Unit(benchmark::kMicrosecond);
    // As Service::evidence: the AK public from the session record, then the check.
    benchmark::RegisterBenchmark("BM_PsQuoteCheck", [&](benchmark::State& s) {
        for (auto _ : s) {
            const TPM2B_PUBLIC ak = tpm::unmarshal_public(ak_raw, "ak_public");
            const tpm::EvpPkeyPtr key = tpm::to_evp_pkey(ak.publicArea);
            benchmark::DoNotOptimize(tpm::verify_quote(soft_quote, key.get(), expect, the_pcrs()));
        }
    })->Unit(benchmark::kMicrosecond);
    if (tpm_device) {
        benchmark::RegisterBenchmark("BM_PsQuoteCheckSwtpmQuote", [&](benchmark::State& s) {
            for (auto _ : s) {
                const TPM2B_PUBLIC ak = tpm::unmarshal_public(tpm_ak_raw, "ak_public");
                const tpm::EvpPkeyPtr key = tpm::to_evp_pkey(ak.publicArea);
                benchmark::DoNotOptimize(tpm::verify_quote(tpm_quote, key.get(), expect, tpm_pcrs));
            }
        })->Unit(benchmark::kMicrosecond);
    }
    benchmark::RegisterBenchmark("BM_AkToEvpPkey", [&](benchmark::State& s) {
        for (auto _ : s) {
            const TPM2B_PUBLIC ak = tpm::unmarshal_public(ak_raw, "ak_public");
            benchmark::DoNotOptimize(tpm::to_evp_pkey(ak.publicArea));
        }
    })->Unit(benchmark::kMicrosecond);

    // ---- 2. sessions against a real tresim-ps ----
    std::vector<std::string> ek_cas{ca_pem};
    if (tpm_device) {
        ek_cas.push_back(tpm_device->swtpm.ca_root_cert());
        ek_cas.push_back(tpm_device->swtpm.ca_issuer_cert());
    }
    PsProcess ps(ek_cas);
    const std::size_t single = static_cast<std::size_t>(sessions_per_rep);
    const std::size_t per_thread =
        std::max<std::size_t>(1, single / static_cast<std::size_t>(kConcurrentClients) + 1);
    // Sessions of both runs over all repetitions: one prepared device each.
    const std::size_t needed = static_cast<std::size_t>(repetitions) *
                               (single + per_thread * static_cast<std::size_t>(kConcurrentClients));
    DevicePool pool;
    std::string swtpm_codes[3];
    {
        const auto t0 = Clock::now();
        const auto c = ps.connect();
        ps.expect(*c, "/v1/operator/references",
                  {{"class", kClass}, {"pcrs", pcrs_json(the_pcrs())}}, 201, true);
        for (std::size_t i = 0; i < needed; ++i) {
            auto d = std::make_unique<SoftDevice>(ca);
            d->code = ps.subscribe(*c, static_cast<int>(i));
            pool.devices.push_back(std::move(d));
        }
        if (tpm_device) {
            for (int i = 0; i < 3; ++i) {
                swtpm_codes[i] = ps.subscribe(*c, static_cast<int>(needed) + i);
            }
        }
        std::printf("registered %zu subscriptions with activation codes in %.1f s\n", needed,
                    std::chrono::duration<double>(Clock::now() - t0).count());
        // A warm-up session (TLS, SQLite caches), not counted.
        auto warm = std::make_unique<SoftDevice>(ca);
        warm->code = ps.subscribe(*c, 900000);
        run_session(ps, *warm, nullptr);
    }

    tresim::bench::CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    std::fflush(stdout);

    // ---- 2. the sessions: `clients` threads, each `per_client` sessions, per repetition ----
    Phases phases;
    std::map<int, SessionStats> stats;
    const auto sessions = [&](int clients, std::size_t per_client) {
        SessionStats& st = stats[clients];
        for (int rep = 0; rep < repetitions; ++rep) {
            const double ps_cpu0 = ps.cpu_seconds();
            const double client_cpu0 = process_cpu_seconds();
            std::atomic<std::size_t> done{0};
            std::string error;
            std::mutex error_mutex;
            const auto t0 = Clock::now();
            std::vector<std::thread> threads;
            for (int t = 0; t < clients; ++t) {
                threads.emplace_back([&] {
                    try {
                        for (std::size_t i = 0; i < per_client; ++i) {
                            SoftDevice* d = pool.take();
                            ensure(d != nullptr, "out of prepared devices");
                            run_session(ps, *d, clients == 1 ? &phases : nullptr);
                            ++done;
                        }
                    } catch (const std::exception& e) {
                        const std::lock_guard lock(error_mutex);
                        error = e.what();
                    }
                });
            }
            for (std::thread& t : threads) {
                t.join();
            }
            const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
            ensure(error.empty(), "a session failed: " + error);
            st.rates.push_back(static_cast<double>(done.load()) / wall);
            st.ps_cpu += ps.cpu_seconds() - ps_cpu0;
            st.client_cpu += process_cpu_seconds() - client_cpu0;
            st.sessions += done.load();
            std::printf("sessions, %d client(s), repetition %d: %zu in %.2f s, %.1f/s\n", clients,
                        rep + 1, done.load(), wall, st.rates.back());
            std::fflush(stdout);
        }
    };
    sessions(1, single);
    sessions(kConcurrentClients, per_thread);

    // ---- 3. a few sessions with a swtpm device ----
    std::vector<double> tpm_ms;
    std::vector<double> server_ms;
    if (tpm_device) {
        for (const std::string& code : swtpm_codes) {
            const auto [device, server] = swtpm_session(ps, *tpm_device, code);
            tpm_ms.push_back(device);
            server_ms.push_back(server);
        }
    }

    // ---- the report ----
    const auto rate = [](std::optional<double> us) -> std::optional<double> {
        if (!us || *us <= 0) {
            return std::nullopt;
        }
        return 1e6 / *us;
    };
    const auto raw = reporter.cpu_us("BM_OpensslEcdsaVerifyDigest");
    const auto oneshot = reporter.cpu_us("BM_OpensslDigestVerify");
    const auto vq = reporter.cpu_us("BM_VerifyQuote");
    const auto psq = reporter.cpu_us("BM_PsQuoteCheck");
    const auto psq_tpm = reporter.cpu_us("BM_PsQuoteCheckSwtpmQuote");
    const auto conv = reporter.cpu_us("BM_AkToEvpPkey");
    const auto ratio = [&](std::optional<double> a,
                           std::optional<double> ref) -> std::optional<double> {
        if (!a || !ref || *a <= 0) {
            return std::nullopt;
        }
        return *ref / *a;
    };
    std::printf("\nQuote verification, CPU time per verification (medians), one core:\n\n"
                "| path | µs | per second | ratio to raw ECDSA |\n|---|---:|---:|---:|\n");
    const auto row = [&](const char* what, std::optional<double> us) {
        std::printf("| %s | %s | %s | %s |\n", what, cell(us, 1).c_str(), cell(rate(us), 0).c_str(),
                    cell(ratio(us, raw), 3).c_str());
    };
    row("OpenSSL raw ECDSA P-256 verify of a 32-byte digest (reference)", raw);
    row("OpenSSL EVP_DigestVerify of the attestation (fresh context)", oneshot);
    row("tpm::verify_quote, key converted once", vq);
    row("PS quote check (unmarshal AK, to_evp_pkey, verify_quote)", psq);
    row("PS quote check of a real swtpm quote", psq_tpm);
    row("AK unmarshal + to_evp_pkey alone", conv);
    const auto r = ratio(psq, raw);
    std::printf("\nquote_vs_raw_ecdsa: %s (goal >= 0.5: %s)\n", cell(r, 3).c_str(),
                !r ? "n/a" : (*r >= 0.5 ? "met" : "NOT met"));

    std::printf("\nProvisioning sessions (hello + evidence + results, activation code, one TLS "
                "connection each) against tresim-ps with SQLite, software devices:\n\n"
                "| clients | sessions/s (median of reps) | reps | sessions | tresim-ps CPU per "
                "session | this process's CPU per session |\n|---|---:|---:|---:|---:|---:|\n");
    for (const auto& [clients, st] : stats) {
        const double n = static_cast<double>(std::max<std::size_t>(1, st.sessions));
        std::printf("| %d | %.1f | %zu | %zu | %.2f ms | %.2f ms |\n", clients, median(st.rates),
                    st.rates.size(), st.sessions, st.ps_cpu * 1e3 / n, st.client_cpu * 1e3 / n);
    }
    std::printf("\nOne client, per session (µs, median / p90 of %zu):\n\n"
                "| part | median | p90 |\n|---|---:|---:|\n",
                phases.session.us.size());
    const auto prow = [&](const char* what, Samples& s) {
        std::printf("| %s | %s | %s |\n", what, cell(s.quantile(0.5), 0).c_str(),
                    cell(s.quantile(0.9), 0).c_str());
    };
    prow("TLS connect + hello round trip", phases.hello);
    prow("evidence round trip", phases.evidence);
    prow("results round trip", phases.results);
    prow("device work in software (activation, 3 signatures)", phases.device);
    prow("whole session", phases.session);
    if (!tpm_ms.empty()) {
        std::printf("\nswtpm device, %zu sessions: device TPM time per session median %.0f ms "
                    "(create EK, ActivateCredential, Quote, Certify, PCR_Read, Quote), server "
                    "round trips %.0f ms\n",
                    tpm_ms.size(), median(tpm_ms), median(server_ms));
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "bench_ps: %s\n", e.what());
    }
    return 1;
}
