#pragma once
// Validation of a device's EK certificate against the manufacturer CAs in the
// PS's CA folder (OpenSSL X509_STORE), and the check that it certifies the EK
// the device presented.
//
// Critical extensions: EK certificates carry TCG-specific content. The ones
// swtpm and common TPM vendors mark critical (subjectAltName with a directory
// name of TCG attributes, basicConstraints, keyUsage) are extensions OpenSSL
// knows. OpenSSL refuses a certificate with a critical extension it does not
// know (X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION); on the EK certificate itself
// (depth 0) that refusal is waived only when every unknown critical extension is
// under the TCG arc 2.23.133 or is subjectDirectoryAttributes (2.5.29.9, where
// the TCG puts the TPM specification attributes). CA certificates get no such
// waiver. No purpose is checked: EK certificates carry the TCG EKU
// tcg-kp-EKCertificate (2.23.133.8.1), which no OpenSSL purpose knows.

#include <memory>
#include <string>
#include <vector>

#include <openssl/x509.h>

#include "tpm/keys.hpp"
#include "usim/bytes.hpp"

namespace tresim::ps {

struct X509Free {
    void operator()(X509* x) const noexcept { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// A DER certificate; InvalidArgument(field) when it is not one.
X509Ptr parse_certificate(ByteView der, const std::string& field);

class EkTrust {
public:
    // Loads every PEM (one or more certificates) or DER certificate in `dir`.
    // InvalidArgument("ca_dir") when the folder cannot be read.
    explicit EkTrust(const std::string& dir);
    ~EkTrust();
    EkTrust(const EkTrust&) = delete;
    EkTrust& operator=(const EkTrust&) = delete;

    std::size_t size() const noexcept { return count_; }

    // Empty when `certificate` chains (through `chain`) to a CA of the folder;
    // else OpenSSL's reason.
    std::string verify(X509* certificate, const std::vector<X509Ptr>& chain) const;

private:
    X509_STORE* store_ = nullptr;
    std::size_t count_ = 0;
};

} // namespace tresim::ps
