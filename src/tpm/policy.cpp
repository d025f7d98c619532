#include "policy.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <tss2/tss2_mu.h>

#include "error.hpp"
#include "hash_alg.hpp"

namespace tresim::tpm {

namespace {

struct MdCtxFree {
    void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct BioFree {
    void operator()(BIO* p) const noexcept { BIO_free(p); }
};
struct BnFree {
    void operator()(BIGNUM* p) const noexcept { BN_free(p); }
};
struct EcdsaSigFree {
    void operator()(ECDSA_SIG* p) const noexcept { ECDSA_SIG_free(p); }
};
struct ParamBldFree {
    void operator()(OSSL_PARAM_BLD* p) const noexcept { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
    void operator()(OSSL_PARAM* p) const noexcept { OSSL_PARAM_free(p); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ParamFree>;

[[noreturn]] void openssl_failure(const char* what) {
    ERR_clear_error();
    throw std::runtime_error(std::string("OpenSSL: ") + what + " failed");
}

void put_u16(Bytes& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void put_u32(Bytes& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        out.push_back(static_cast<std::uint8_t>(v >> shift));
    }
}

Bytes be32(std::uint32_t v) {
    Bytes b;
    put_u32(b, v);
    return b;
}

// Marshals any TSS type with its Tss2_MU_*_Marshal function.
template <class T, class F> Bytes marshal(const T& value, F fn, const char* what) {
    std::array<std::uint8_t, sizeof(T) + 16> buffer{};
    size_t offset = 0;
    check(fn(&value, buffer.data(), buffer.size(), &offset), what);
    return {buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(offset)};
}

template <class T, class F>
T unmarshal(ByteView bytes, F fn, std::string_view argument, const char* type) {
    T value{};
    size_t offset = 0;
    if (fn(bytes.data(), bytes.size(), &offset, &value) != TSS2_RC_SUCCESS ||
        offset != bytes.size()) {
        throw InvalidArgument(std::string(argument), std::string("is not a marshalled ") + type);
    }
    return value;
}

// The PCR banks of the selection syntax: the hashes tresim computes in software.
TPMI_ALG_HASH bank_of(std::string_view name) {
    if (const HashAlgorithm* h = find_software_hash(name)) {
        return h->alg;
    }
    throw InvalidArgument("pcrs", "names an unknown PCR bank (use sha1, sha256, sha384 or sha512)");
}

std::string bank_name(TPMI_ALG_HASH alg) {
    if (const HashAlgorithm* h = find_software_hash(alg)) {
        return std::string(h->name);
    }
    return "alg" + std::to_string(alg);
}

Bytes bn_to_bytes(const BIGNUM* bn, std::size_t size) {
    Bytes out(size);
    if (BN_bn2binpad(bn, out.data(), static_cast<int>(size)) < 0) {
        openssl_failure("BN_bn2binpad");
    }
    return out;
}

BnPtr bn_from(const TPM2B_ECC_PARAMETER& p) {
    BnPtr bn(BN_bin2bn(p.buffer, p.size, nullptr));
    if (!bn) {
        openssl_failure("BN_bin2bn");
    }
    return bn;
}

void copy_ecc_parameter(TPM2B_ECC_PARAMETER& out, ByteView value) {
    out.size = static_cast<UINT16>(value.size());
    std::copy(value.begin(), value.end(), out.buffer);
}

bool is_p256(EVP_PKEY* key) {
    if (EVP_PKEY_is_a(key, "EC") != 1) {
        return false;
    }
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &len) != 1) {
        return false;
    }
    return std::string_view(group, len) == SN_X9_62_prime256v1;
}

Bytes key_coordinate(EVP_PKEY* key, const char* which) {
    BIGNUM* raw = nullptr;
    if (EVP_PKEY_get_bn_param(key, which, &raw) != 1) {
        openssl_failure("EVP_PKEY_get_bn_param");
    }
    const BnPtr bn(raw);
    return bn_to_bytes(bn.get(), 32);
}

Bytes read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw InvalidArgument("authority-key", "names a file that cannot be read: " + path);
    }
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

Bytes sha256_concat(std::initializer_list<ByteView> parts) {
    const MdCtxPtr md(EVP_MD_CTX_new());
    if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) {
        openssl_failure("SHA-256 init");
    }
    for (const ByteView p : parts) {
        if (EVP_DigestUpdate(md.get(), p.data(), p.size()) != 1) {
            openssl_failure("SHA-256 update");
        }
    }
    Bytes out(kDigestSize);
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(md.get(), out.data(), &len) != 1 || len != kDigestSize) {
        openssl_failure("SHA-256 final");
    }
    return out;
}

// ---------------------------------------------------------------------------
// PCR selections

PcrSelection parse_pcr_selection(std::string_view text) {
    const std::size_t colon = text.find(':');
    if (colon == std::string_view::npos) {
        throw InvalidArgument("pcrs", "needs a bank and a list, e.g. sha256:0,2,4,7");
    }
    PcrSelection sel;
    sel.bank = bank_of(text.substr(0, colon));
    std::string_view list = text.substr(colon + 1);
    if (list.empty()) {
        throw InvalidArgument("pcrs", "has a bank without PCR numbers");
    }
    while (true) {
        const std::size_t comma = std::min(list.find(','), list.size());
        const std::string_view num = list.substr(0, comma);
        if (num.empty() || num.size() > 2 ||
            !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            throw InvalidArgument("pcrs", "has a PCR number that is not 0..23");
        }
        const unsigned index = static_cast<unsigned>(std::stoul(std::string(num)));
        if (index > 23) {
            throw InvalidArgument("pcrs", "has a PCR number that is not 0..23");
        }
        if (std::find(sel.pcrs.begin(), sel.pcrs.end(), index) != sel.pcrs.end()) {
            throw InvalidArgument("pcrs", "names a PCR twice");
        }
        sel.pcrs.push_back(index);
        if (comma == list.size()) {
            break;
        }
        list = list.substr(comma + 1);
    }
    return sel;
}

std::string format_pcr_selection(const PcrSelection& selection) {
    std::vector<unsigned> sorted = selection.pcrs;
    std::sort(sorted.begin(), sorted.end());
    std::string out = bank_name(selection.bank) + ':';
    for (std::size_t i = 0; i < sorted.size(); ++i) {
        out += (i == 0 ? "" : ",") + std::to_string(sorted[i]);
    }
    return out;
}

TPML_PCR_SELECTION to_tpml(const PcrSelection& selection) {
    TPML_PCR_SELECTION sel{};
    sel.count = 1;
    TPMS_PCR_SELECTION& s = sel.pcrSelections[0];
    s.hash = selection.bank;
    s.sizeofSelect = 3;
    for (const unsigned i : selection.pcrs) {
        if (i > 23) {
            throw InvalidArgument("pcrs", "has a PCR number that is not 0..23");
        }
        s.pcrSelect[i / 8] |= static_cast<BYTE>(1u << (i % 8));
    }
    return sel;
}

PcrSelection selection_of(const PcrValues& values) {
    PcrSelection sel;
    sel.bank = values.bank;
    for (const auto& [index, value] : values.values) {
        sel.pcrs.push_back(index);
    }
    return sel;
}

Bytes pcr_composite_digest(const PcrValues& values) {
    const MdCtxPtr md(EVP_MD_CTX_new());
    if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) {
        openssl_failure("SHA-256 init");
    }
    for (const auto& [index, value] : values.values) { // std::map: ascending index
        if (EVP_DigestUpdate(md.get(), value.data(), value.size()) != 1) {
            openssl_failure("SHA-256 update");
        }
    }
    Bytes out(kDigestSize);
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(md.get(), out.data(), &len) != 1) {
        openssl_failure("SHA-256 final");
    }
    return out;
}

// ---------------------------------------------------------------------------
// Names and marshalling

Bytes marshal_signature(const TPMT_SIGNATURE& signature) {
    return marshal(signature, Tss2_MU_TPMT_SIGNATURE_Marshal, "marshal TPMT_SIGNATURE");
}

TPMT_SIGNATURE unmarshal_signature(ByteView bytes, std::string_view argument) {
    return unmarshal<TPMT_SIGNATURE>(bytes, Tss2_MU_TPMT_SIGNATURE_Unmarshal, argument,
                                     "TPMT_SIGNATURE");
}

Bytes marshal_ticket(const TPMT_TK_VERIFIED& ticket) {
    return marshal(ticket, Tss2_MU_TPMT_TK_VERIFIED_Marshal, "marshal TPMT_TK_VERIFIED");
}

TPMT_TK_VERIFIED unmarshal_ticket(ByteView bytes, std::string_view argument) {
    return unmarshal<TPMT_TK_VERIFIED>(bytes, Tss2_MU_TPMT_TK_VERIFIED_Unmarshal, argument,
                                       "TPMT_TK_VERIFIED");
}

TPM2B_DIGEST to_digest(ByteView bytes, std::string_view argument) {
    TPM2B_DIGEST d{};
    if (bytes.size() > sizeof(d.buffer)) {
        throw InvalidArgument(std::string(argument), "is longer than a digest");
    }
    d.size = static_cast<UINT16>(bytes.size());
    std::copy(bytes.begin(), bytes.end(), d.buffer);
    return d;
}

TPM2B_NONCE to_nonce(ByteView bytes, std::string_view argument) {
    return to_digest(bytes, argument); // TPM2B_NONCE is TPM2B_DIGEST
}

// ---------------------------------------------------------------------------
// Software policy digests

PolicyDigest::PolicyDigest(ByteView start) : value_(start.begin(), start.end()) {
    require_size(start, kDigestSize, "policy");
}

PolicyDigest& PolicyDigest::pcr(const PcrSelection& selection, ByteView pcr_digest) {
    require_size(pcr_digest, kDigestSize, "pcr-digest");
    value_ = sha256_concat({value_, be32(TPM2_CC_PolicyPCR),
                            marshal(to_tpml(selection), Tss2_MU_TPML_PCR_SELECTION_Marshal,
                                    "marshal TPML_PCR_SELECTION"),
                            pcr_digest});
    return *this;
}

PolicyDigest& PolicyDigest::auth_value() {
    value_ = sha256_concat({value_, be32(TPM2_CC_PolicyAuthValue)});
    return *this;
}

PolicyDigest& PolicyDigest::command_code(TPM2_CC code) {
    value_ = sha256_concat({value_, be32(TPM2_CC_PolicyCommandCode), be32(code)});
    return *this;
}

PolicyDigest& PolicyDigest::secret(ByteView auth_object_name, ByteView policy_ref) {
    to_nonce(policy_ref, "policy-ref");
    value_ = sha256_concat({value_, be32(TPM2_CC_PolicySecret), auth_object_name});
    value_ = sha256_concat({value_, policy_ref});
    return *this;
}

PolicyDigest& PolicyDigest::authorize(ByteView key_name, ByteView policy_ref) {
    to_nonce(policy_ref, "policy-ref");
    const Bytes zero(kDigestSize, 0);
    value_ = sha256_concat({zero, be32(TPM2_CC_PolicyAuthorize), key_name});
    value_ = sha256_concat({value_, policy_ref});
    return *this;
}

PolicyDigest& PolicyDigest::nv(ByteView nv_index_name, ByteView operand_b, std::uint16_t offset,
                               TPM2_EO operation) {
    Bytes tail;
    put_u16(tail, offset);
    put_u16(tail, operation);
    const Bytes args = sha256_concat({operand_b, tail});
    value_ = sha256_concat({value_, be32(TPM2_CC_PolicyNV), args, nv_index_name});
    return *this;
}

// ---------------------------------------------------------------------------
// The policy authority

Bytes authorization_hash(ByteView approved_policy, ByteView policy_ref) {
    return sha256_concat({approved_policy, policy_ref});
}

PolicyAuthority PolicyAuthority::generate() {
    EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!key) {
        openssl_failure("P-256 key generation");
    }
    return PolicyAuthority(std::move(key), true);
}

PolicyAuthority PolicyAuthority::from_pem(ByteView pem) {
    const BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) {
        openssl_failure("BIO_new_mem_buf");
    }
    bool has_private = true;
    EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
        ERR_clear_error();
        has_private = false;
        BIO_reset(bio.get());
        key.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    }
    ERR_clear_error();
    if (!key) {
        throw InvalidArgument("authority-key", "is not a PEM private or public key");
    }
    if (!is_p256(key.get())) {
        throw InvalidArgument("authority-key", "is not an ECC P-256 key");
    }
    return PolicyAuthority(std::move(key), has_private);
}

EvpPkeyPtr p256_public_key(const TPMT_PUBLIC& pub, std::string_view argument) {
    if (pub.type != TPM2_ALG_ECC || pub.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        pub.unique.ecc.x.size != 32 || pub.unique.ecc.y.size != 32) {
        throw InvalidArgument(std::string(argument), "is not an ECC P-256 public area");
    }
    Bytes point{0x04};
    point.insert(point.end(), pub.unique.ecc.x.buffer, pub.unique.ecc.x.buffer + 32);
    point.insert(point.end(), pub.unique.ecc.y.buffer, pub.unique.ecc.y.buffer + 32);
    const ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, SN_X9_62_prime256v1,
                                        0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1) {
        openssl_failure("OSSL_PARAM_BLD");
    }
    const ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
    const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        ERR_clear_error();
        throw InvalidArgument(std::string(argument), "is not a point on P-256");
    }
    EvpPkeyPtr key(raw);
    // fromdata does not check that the point is on the curve.
    const PkeyCtxPtr check_ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    if (!check_ctx || EVP_PKEY_public_check(check_ctx.get()) != 1) {
        ERR_clear_error();
        throw InvalidArgument(std::string(argument), "is not a point on P-256");
    }
    return key;
}

TPMS_ECC_POINT ecc_point(EVP_PKEY* key) {
    TPMS_ECC_POINT p{};
    copy_ecc_parameter(p.x, key_coordinate(key, OSSL_PKEY_PARAM_EC_PUB_X));
    copy_ecc_parameter(p.y, key_coordinate(key, OSSL_PKEY_PARAM_EC_PUB_Y));
    return p;
}

PolicyAuthority PolicyAuthority::from_public(const TPMT_PUBLIC& pub) {
    return PolicyAuthority(p256_public_key(pub, "authority-key"), false);
}

PolicyAuthority PolicyAuthority::load(const std::string& path) {
    const Bytes pem = read_file(path);
    PolicyAuthority a = from_pem(pem);
    return a;
}

void PolicyAuthority::save(const std::string& path) const {
    const SecretBytes pem = private_pem();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        throw InvalidArgument("authority-key", "names a file that cannot be written: " + path +
                                                   ": " + std::strerror(errno));
    }
    bool ok = ::fchmod(fd, 0600) == 0;
    std::size_t done = 0;
    while (ok && done < pem.size()) {
        const ssize_t n = ::write(fd, pem.data() + done, pem.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        ok = n > 0;
        done += ok ? static_cast<std::size_t>(n) : 0;
    }
    ok = ::fsync(fd) == 0 && ok;
    ok = ::close(fd) == 0 && ok;
    if (!ok) {
        throw InvalidArgument("authority-key", "could not be written to " + path);
    }
}

SecretBytes PolicyAuthority::private_pem() const {
    if (!has_private_) {
        throw InvalidArgument("authority-key", "has no private key");
    }
    const BioPtr bio(BIO_new(BIO_s_secmem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr,
                                         nullptr) != 1) {
        openssl_failure("PEM_write_bio_PrivateKey");
    }
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return SecretBytes(
        ByteView(reinterpret_cast<const std::uint8_t*>(data), static_cast<std::size_t>(len)));
}

std::string PolicyAuthority::public_pem() const {
    const BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) {
        openssl_failure("PEM_write_bio_PUBKEY");
    }
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

TPM2B_PUBLIC PolicyAuthority::tpm_public() const {
    TPM2B_PUBLIC out{};
    TPMT_PUBLIC& p = out.publicArea;
    p.type = TPM2_ALG_ECC;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_USERWITHAUTH;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    p.unique.ecc = ecc_point(key_.get());
    return out;
}

Bytes PolicyAuthority::name() const {
    return object_name(tpm_public().publicArea);
}

TPMT_SIGNATURE PolicyAuthority::sign_policy(ByteView approved_policy, ByteView policy_ref) const {
    if (!has_private_) {
        throw InvalidArgument("authority-key", "has no private key to sign with");
    }
    to_nonce(policy_ref, "policy-ref");
    const Bytes ahash = authorization_hash(approved_policy, policy_ref);
    const PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key_.get(), nullptr));
    if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) {
        openssl_failure("EVP_PKEY_sign_init");
    }
    // ECDSA over the digest aHash itself: what VerifySignature checks.
    std::size_t der_len = 0;
    if (EVP_PKEY_sign(ctx.get(), nullptr, &der_len, ahash.data(), ahash.size()) != 1) {
        openssl_failure("EVP_PKEY_sign");
    }
    Bytes der(der_len);
    if (EVP_PKEY_sign(ctx.get(), der.data(), &der_len, ahash.data(), ahash.size()) != 1) {
        openssl_failure("EVP_PKEY_sign");
    }
    const std::uint8_t* p = der.data();
    const EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_len)));
    if (!sig) {
        openssl_failure("d2i_ECDSA_SIG");
    }
    TPMT_SIGNATURE out{};
    out.sigAlg = TPM2_ALG_ECDSA;
    out.signature.ecdsa.hash = TPM2_ALG_SHA256;
    copy_ecc_parameter(out.signature.ecdsa.signatureR,
                       bn_to_bytes(ECDSA_SIG_get0_r(sig.get()), 32));
    copy_ecc_parameter(out.signature.ecdsa.signatureS,
                       bn_to_bytes(ECDSA_SIG_get0_s(sig.get()), 32));
    return out;
}

bool PolicyAuthority::verify_policy(ByteView approved_policy, ByteView policy_ref,
                                    const TPMT_SIGNATURE& signature) const {
    if (signature.sigAlg != TPM2_ALG_ECDSA || signature.signature.ecdsa.hash != TPM2_ALG_SHA256) {
        return false;
    }
    const EcdsaSigPtr sig(ECDSA_SIG_new());
    BnPtr r = bn_from(signature.signature.ecdsa.signatureR);
    BnPtr s = bn_from(signature.signature.ecdsa.signatureS);
    if (!sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
        openssl_failure("ECDSA_SIG_set0");
    }
    r.release(); // owned by sig now
    s.release();
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(sig.get(), &der);
    if (der_len <= 0) {
        openssl_failure("i2d_ECDSA_SIG");
    }
    const Bytes der_bytes(der, der + der_len);
    OPENSSL_free(der);
    const Bytes ahash = authorization_hash(approved_policy, policy_ref);
    const PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key_.get(), nullptr));
    if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) {
        openssl_failure("EVP_PKEY_verify_init");
    }
    const int rc =
        EVP_PKEY_verify(ctx.get(), der_bytes.data(), der_bytes.size(), ahash.data(), ahash.size());
    ERR_clear_error();
    return rc == 1;
}

// ---------------------------------------------------------------------------
// Tickets

namespace {

Bytes ticket_key(ByteView key_name, ByteView approved_policy, ByteView policy_ref) {
    Bytes k(key_name.begin(), key_name.end());
    const Bytes h = authorization_hash(approved_policy, policy_ref);
    k.insert(k.end(), h.begin(), h.end());
    return k;
}

TPM2B_NAME to_name(ByteView name) {
    TPM2B_NAME n{};
    if (name.size() > sizeof(n.name)) {
        throw InvalidArgument("key-name", "is longer than a TPM name");
    }
    n.size = static_cast<UINT16>(name.size());
    std::copy(name.begin(), name.end(), n.name);
    return n;
}

// PolicyAuthorize refuses a ticket with TPM_RC_VALUE on its fourth parameter,
// checkTicket (TPM_RC_VALUE on the first, approvedPolicy, is a policy that does
// not match the session); TPM_RC_TICKET is accepted too.
bool is_bad_ticket(const TpmError& e) {
    const TSS2_RC rc = e.rc() & ~TSS2_RC_LAYER_MASK;
    return e.is(TPM2_RC_TICKET) || rc == (TPM2_RC_VALUE | TPM2_RC_P | TPM2_RC_4);
}

} // namespace

const TPMT_TK_VERIFIED* TicketCache::find(ByteView key_name, ByteView approved_policy,
                                          ByteView policy_ref) const {
    const auto it = tickets_.find(ticket_key(key_name, approved_policy, policy_ref));
    return it == tickets_.end() ? nullptr : &it->second;
}

void TicketCache::put(ByteView key_name, ByteView approved_policy, ByteView policy_ref,
                      const TPMT_TK_VERIFIED& ticket) {
    tickets_[ticket_key(key_name, approved_policy, policy_ref)] = ticket;
}

void TicketCache::erase(ByteView key_name, ByteView approved_policy, ByteView policy_ref) {
    tickets_.erase(ticket_key(key_name, approved_policy, policy_ref));
}

TPMT_TK_VERIFIED verify_policy_signature(Context& ctx, const TPM2B_PUBLIC& authority,
                                         ByteView approved_policy, ByteView policy_ref,
                                         const TPMT_SIGNATURE& signature) {
    ESYS_TR loaded = ESYS_TR_NONE;
    // The owner hierarchy, not NULL: a key in the NULL hierarchy gets a NULL
    // ticket, which PolicyAuthorize refuses.
    check(Esys_LoadExternal(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr, &authority,
                            ESYS_TR_RH_OWNER, &loaded),
          "TPM2_LoadExternal(policy authority)");
    const Handle key = Handle::transient(ctx, loaded);
    const TPM2B_DIGEST ahash =
        to_digest(authorization_hash(approved_policy, policy_ref), "approved-policy");
    TPMT_TK_VERIFIED* raw = nullptr;
    check(Esys_VerifySignature(ctx, key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &ahash,
                               &signature, &raw),
          "TPM2_VerifySignature(policy approval)");
    const EsysPtr<TPMT_TK_VERIFIED> ticket(raw);
    return *ticket;
}

// ---------------------------------------------------------------------------
// Policy sessions

PolicySession::PolicySession(Context& ctx, Type type, ESYS_TR salt_key)
    : ctx_(ctx), salted_(salt_key != ESYS_TR_NONE) {
    TPMT_SYM_DEF sym{};
    sym.algorithm = TPM2_ALG_AES;
    sym.keyBits.aes = 128;
    sym.mode.aes = TPM2_ALG_CFB;
    ESYS_TR session = ESYS_TR_NONE;
    check(Esys_StartAuthSession(ctx, salt_key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                ESYS_TR_NONE, nullptr,
                                type == Type::Trial ? TPM2_SE_TRIAL : TPM2_SE_POLICY, &sym,
                                TPM2_ALG_SHA256, &session),
          type == Type::Trial ? "TPM2_StartAuthSession(trial)" : "TPM2_StartAuthSession(policy)");
    handle_ = Handle::session(ctx, session);
    set_attributes(0);
}

void PolicySession::set_attributes(TPMA_SESSION attributes) {
    check(Esys_TRSess_SetAttributes(ctx_, handle_, attributes | TPMA_SESSION_CONTINUESESSION, 0xff),
          "set session attributes");
}

PolicySession& PolicySession::pcr(const PcrSelection& selection, ByteView pcr_digest) {
    const TPM2B_DIGEST d = to_digest(pcr_digest, "pcr-digest");
    const TPML_PCR_SELECTION tpml = to_tpml(selection);
    check(Esys_PolicyPCR(ctx_, handle_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &d, &tpml),
          "TPM2_PolicyPCR");
    return *this;
}

PolicySession& PolicySession::auth_value() {
    check(Esys_PolicyAuthValue(ctx_, handle_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE),
          "TPM2_PolicyAuthValue");
    return *this;
}

PolicySession& PolicySession::command_code(TPM2_CC code) {
    check(Esys_PolicyCommandCode(ctx_, handle_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, code),
          "TPM2_PolicyCommandCode");
    return *this;
}

PolicySession& PolicySession::secret(ESYS_TR auth_object, ByteView policy_ref,
                                     ESYS_TR auth_session) {
    const TPM2B_NONCE nonce{};
    const TPM2B_DIGEST cp_hash{};
    const TPM2B_NONCE ref = to_nonce(policy_ref, "policy-ref");
    TPM2B_TIMEOUT* timeout = nullptr;
    TPMT_TK_AUTH* ticket = nullptr;
    check(Esys_PolicySecret(ctx_, auth_object, handle_, auth_session, ESYS_TR_NONE, ESYS_TR_NONE,
                            &nonce, &cp_hash, &ref, 0, &timeout, &ticket),
          "TPM2_PolicySecret");
    Esys_Free(timeout);
    Esys_Free(ticket);
    return *this;
}

PolicySession& PolicySession::nv(ESYS_TR auth_handle, ESYS_TR nv_index, ByteView operand_b,
                                 std::uint16_t offset, TPM2_EO operation, ESYS_TR auth_session) {
    TPM2B_OPERAND operand = to_digest(operand_b, "operand");
    check(Esys_PolicyNV(ctx_, auth_handle, nv_index, handle_, auth_session, ESYS_TR_NONE,
                        ESYS_TR_NONE, &operand, offset, operation),
          "TPM2_PolicyNV");
    return *this;
}

PolicySession& PolicySession::authorize(ByteView approved_policy, ByteView policy_ref,
                                        ByteView key_name, const TPMT_TK_VERIFIED& ticket) {
    const TPM2B_DIGEST approved = to_digest(approved_policy, "approved-policy");
    const TPM2B_NONCE ref = to_nonce(policy_ref, "policy-ref");
    const TPM2B_NAME name = to_name(key_name);
    check(Esys_PolicyAuthorize(ctx_, handle_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &approved,
                               &ref, &name, &ticket),
          "TPM2_PolicyAuthorize");
    return *this;
}

PolicySession& PolicySession::authorize(const TPM2B_PUBLIC& authority, ByteView approved_policy,
                                        ByteView policy_ref, const TPMT_SIGNATURE& signature,
                                        TicketCache* cache) {
    const Bytes key_name = object_name(authority.publicArea);
    if (cache != nullptr) {
        if (const TPMT_TK_VERIFIED* t = cache->find(key_name, approved_policy, policy_ref)) {
            try {
                return authorize(approved_policy, policy_ref, key_name, *t);
            } catch (const TpmError& e) {
                // A ticket from before a TPM2_Clear (new owner proof): verify again.
                if (!is_bad_ticket(e)) {
                    throw;
                }
                cache->erase(key_name, approved_policy, policy_ref);
            }
        }
    }
    const TPMT_TK_VERIFIED ticket =
        verify_policy_signature(ctx_, authority, approved_policy, policy_ref, signature);
    if (cache != nullptr) {
        cache->put(key_name, approved_policy, policy_ref, ticket);
    }
    return authorize(approved_policy, policy_ref, key_name, ticket);
}

Bytes PolicySession::digest() {
    TPM2B_DIGEST* raw = nullptr;
    check(Esys_PolicyGetDigest(ctx_, handle_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw),
          "TPM2_PolicyGetDigest");
    const EsysPtr<TPM2B_DIGEST> d(raw);
    return {d->buffer, d->buffer + d->size};
}

void PolicySession::restart() {
    check(Esys_PolicyRestart(ctx_, handle_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE),
          "TPM2_PolicyRestart");
}

// ---------------------------------------------------------------------------
// PCR values

PcrValues read_pcrs(Context& ctx, const PcrSelection& selection) {
    PcrValues out;
    out.bank = selection.bank;
    TPML_PCR_SELECTION remaining = to_tpml(selection);
    const auto any_left = [&] {
        const BYTE* s = remaining.pcrSelections[0].pcrSelect;
        return (s[0] | s[1] | s[2]) != 0;
    };
    while (any_left()) {
        UINT32 counter = 0;
        TPML_PCR_SELECTION* raw_sel = nullptr;
        TPML_DIGEST* raw_values = nullptr;
        check(Esys_PCR_Read(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &remaining, &counter,
                            &raw_sel, &raw_values),
              "TPM2_PCR_Read");
        const EsysPtr<TPML_PCR_SELECTION> got(raw_sel);
        const EsysPtr<TPML_DIGEST> values(raw_values);
        std::vector<unsigned> indexes;
        for (UINT32 b = 0; b < got->count; ++b) {
            const TPMS_PCR_SELECTION& s = got->pcrSelections[b];
            for (unsigned i = 0; s.hash == selection.bank && i < s.sizeofSelect * 8u; ++i) {
                if ((s.pcrSelect[i / 8] & (1u << (i % 8))) != 0) {
                    indexes.push_back(i);
                }
            }
        }
        if (indexes.empty() || indexes.size() != values->count) {
            throw InvalidArgument("pcrs", "selects PCRs the TPM does not have (" +
                                              format_pcr_selection(selection) + ")");
        }
        for (std::size_t i = 0; i < indexes.size(); ++i) {
            const TPM2B_DIGEST& d = values->digests[i];
            out.values[indexes[i]] = Bytes(d.buffer, d.buffer + d.size);
            remaining.pcrSelections[0].pcrSelect[indexes[i] / 8] &=
                static_cast<BYTE>(~(1u << (indexes[i] % 8)));
        }
    }
    return out;
}

std::vector<unsigned> differing_pcrs(Context& ctx, const PcrValues& expected) {
    const PcrValues current = read_pcrs(ctx, selection_of(expected));
    std::vector<unsigned> differ;
    for (const auto& [index, value] : expected.values) { // ascending
        const auto it = current.values.find(index);
        if (it == current.values.end() || it->second != value) {
            differ.push_back(index);
        }
    }
    return differ;
}

std::string describe_pcr_difference(const std::vector<unsigned>& indexes) {
    if (indexes.empty()) {
        return {};
    }
    std::string out = indexes.size() == 1 ? "PCR " : "PCRs ";
    for (std::size_t i = 0; i < indexes.size(); ++i) {
        out += (i == 0 ? "" : ", ") + std::to_string(indexes[i]);
    }
    out += indexes.size() == 1 ? " differs" : " differ";
    return out;
}

} // namespace tresim::tpm
