#include "ek_trust.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace tresim::ps {
namespace {

struct BioFree {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct StoreCtxFree {
    void operator()(X509_STORE_CTX* c) const noexcept { X509_STORE_CTX_free(c); }
};
struct StackFree {
    void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_free(s); }
};

bool waivable(const ASN1_OBJECT* oid) {
    char text[128];
    if (OBJ_obj2txt(text, sizeof(text), oid, 1) <= 0) {
        return false;
    }
    return std::strncmp(text, "2.23.133.", 9) == 0 || std::strcmp(text, "2.5.29.9") == 0;
}

// Waives unknown critical extensions of the leaf when they are TCG ones.
int verify_callback(int ok, X509_STORE_CTX* ctx) {
    if (ok != 0 || X509_STORE_CTX_get_error(ctx) != X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION ||
        X509_STORE_CTX_get_error_depth(ctx) != 0) {
        return ok;
    }
    X509* cert = X509_STORE_CTX_get_current_cert(ctx);
    for (int i = 0; i < X509_get_ext_count(cert); ++i) {
        X509_EXTENSION* ext = X509_get_ext(cert, i);
        if (X509_EXTENSION_get_critical(ext) != 0 && X509_supported_extension(ext) == 0 &&
            !waivable(X509_EXTENSION_get_object(ext))) {
            return 0;
        }
    }
    X509_STORE_CTX_set_error(ctx, X509_V_OK);
    return 1;
}

} // namespace

X509Ptr parse_certificate(ByteView der, const std::string& field) {
    const unsigned char* p = der.data();
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (!cert || p != der.data() + der.size()) {
        ERR_clear_error();
        throw InvalidArgument(field, "is not a DER X.509 certificate");
    }
    return cert;
}

EkTrust::EkTrust(const std::string& dir) : store_(X509_STORE_new()) {
    if (store_ == nullptr) {
        throw std::bad_alloc();
    }
    X509_STORE_set_verify_cb(store_, verify_callback);
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) {
        X509_STORE_free(store_);
        throw InvalidArgument("ca_dir", "cannot read the folder " + dir + ": " + ec.message());
    }
    for (const auto& entry : it) {
        if (!entry.is_regular_file()) {
            continue;
        }
        std::string data(static_cast<std::size_t>(entry.file_size()), '\0');
        std::ifstream in(entry.path(), std::ios::binary);
        in.read(data.data(), static_cast<std::streamsize>(data.size()));
        data.resize(static_cast<std::size_t>(in.gcount()));
        std::unique_ptr<BIO, BioFree> bio(
            BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
        bool any = false;
        while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
            X509_STORE_add_cert(store_, x);
            X509_free(x);
            ++count_;
            any = true;
        }
        if (!any) {
            const auto* p = reinterpret_cast<const unsigned char*>(data.data());
            if (X509* x = d2i_X509(nullptr, &p, static_cast<long>(data.size()))) {
                X509_STORE_add_cert(store_, x);
                X509_free(x);
                ++count_;
            }
        }
        ERR_clear_error();
    }
}

EkTrust::~EkTrust() {
    X509_STORE_free(store_);
}

std::string EkTrust::verify(X509* certificate, const std::vector<X509Ptr>& chain) const {
    std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
    for (const X509Ptr& c : chain) {
        sk_X509_push(untrusted.get(), c.get());
    }
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store_, certificate, untrusted.get()) != 1) {
        throw std::runtime_error("X509_STORE_CTX_init failed");
    }
    const int ok = X509_verify_cert(ctx.get());
    ERR_clear_error();
    if (ok == 1) {
        return {};
    }
    return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

} // namespace tresim::ps
