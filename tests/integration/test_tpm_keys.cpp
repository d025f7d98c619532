// The EK, its certificates, the AK, credential activation, quotes and
// certifications on swtpm. Every software computation (MakeCredential, quote
// and certification checks, names) is checked against what the TPM does.

#include <algorithm>
#include <cstdio>
#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "swtpm.hpp"
#include "tpm/attest.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"
#include "tpm/keys.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using namespace tresim::tpm;

struct X509Free {
    void operator()(X509* p) const noexcept { X509_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
struct StoreFree {
    void operator()(X509_STORE* p) const noexcept { X509_STORE_free(p); }
};
struct StoreCtxFree {
    void operator()(X509_STORE_CTX* p) const noexcept { X509_STORE_CTX_free(p); }
};
struct StackFree {
    void operator()(STACK_OF(X509) * p) const noexcept { sk_X509_pop_free(p, X509_free); }
};

X509Ptr parse_der(const Bytes& der) {
    const unsigned char* p = der.data();
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    EXPECT_TRUE(cert) << "not a DER certificate";
    EXPECT_EQ(p, der.data() + der.size()) << "bytes after the certificate";
    return cert;
}

X509Ptr read_pem(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) {
        ADD_FAILURE() << "cannot open " << path;
        return nullptr;
    }
    X509Ptr cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
    std::fclose(f);
    return cert;
}

// SHA-256 of the certificate's SubjectPublicKeyInfo, straight from the
// certificate (not through the code under test).
std::string cert_key_hash(X509* cert) {
    unsigned char* der = nullptr;
    const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    EXPECT_GT(len, 0);
    unsigned char digest[32];
    EVP_Digest(der, static_cast<std::size_t>(len), digest, nullptr, EVP_sha256(), nullptr);
    OPENSSL_free(der);
    return hex_encode(digest);
}

bool chains_to_ca(const Bytes& der, const test::Swtpm& swtpm, const std::vector<Bytes>& chain) {
    X509Ptr leaf = parse_der(der);
    X509Ptr root = read_pem(swtpm.ca_root_cert());
    X509Ptr issuer = read_pem(swtpm.ca_issuer_cert());
    if (!leaf || !root || !issuer) {
        return false;
    }
    std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
    X509_STORE_add_cert(store.get(), root.get());
    std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
    sk_X509_push(untrusted.get(), issuer.release());
    for (const Bytes& c : chain) {
        sk_X509_push(untrusted.get(), parse_der(c).release());
    }
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), untrusted.get());
    const int ok = X509_verify_cert(ctx.get());
    if (ok != 1) {
        ADD_FAILURE() << "X509_verify_cert: "
                      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
    }
    return ok == 1;
}

Bytes tpm_name(Context& ctx, ESYS_TR tr) {
    TPM2B_NAME* name = nullptr;
    check(Esys_TR_GetName(ctx, tr, &name), "Esys_TR_GetName");
    const EsysPtr<TPM2B_NAME> owned(name);
    return Bytes(name->name, name->name + name->size);
}

PcrValues read_pcrs(Context& ctx, const std::vector<unsigned>& indexes) {
    TPML_PCR_SELECTION sel{};
    sel.count = 1;
    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    for (const unsigned i : indexes) {
        sel.pcrSelections[0].pcrSelect[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
    }
    std::uint32_t counter = 0;
    TPML_PCR_SELECTION* out_sel = nullptr;
    TPML_DIGEST* values = nullptr;
    check(Esys_PCR_Read(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &counter, &out_sel,
                        &values),
          "TPM2_PCR_Read");
    const EsysPtr<TPML_PCR_SELECTION> o1(out_sel);
    const EsysPtr<TPML_DIGEST> o2(values);
    PcrValues pcrs;
    EXPECT_EQ(values->count, indexes.size());
    std::size_t k = 0;
    for (unsigned i = 0; i < 24 && k < values->count; ++i) { // values come in ascending index
        if (std::find(indexes.begin(), indexes.end(), i) != indexes.end()) {
            pcrs.values[i] = Bytes(values->digests[k].buffer,
                                   values->digests[k].buffer + values->digests[k].size);
            ++k;
        }
    }
    return pcrs;
}

void extend_pcr16(Context& ctx) {
    TPML_DIGEST_VALUES digests{};
    digests.count = 1;
    digests.digests[0].hashAlg = TPM2_ALG_SHA256;
    digests.digests[0].digest.sha256[0] = 0x42;
    check(
        Esys_PCR_Extend(ctx, ESYS_TR_PCR16, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digests),
        "TPM2_PCR_Extend(16)");
}

SecretBytes secret_of(const std::string& text) {
    return SecretBytes(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

// One TPM with an SRK and a loaded AK, shared by the tests that need both.
struct TpmWithAk {
    test::Swtpm swtpm;
    Context ctx{swtpm.tcti()};
    Srk srk = ensure_srk(ctx);
    AkBlob blob = create_ak(ctx, srk);
    Ak ak = load_ak(ctx, srk, blob);
};

// ---- EK ---------------------------------------------------------------------

TEST(TpmEk, RsaTemplateGivesTheKeyInTheNvCertificate) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Ek ek = create_ek(ctx, EkType::Rsa2048);
    EXPECT_TRUE(matches_ek_template(ek.pub.publicArea, EkType::Rsa2048));
    EXPECT_EQ(ek.name, tpm_name(ctx, ek.handle));

    const EkCertificates certs = read_ek_certificates(ctx);
    ASSERT_TRUE(certs.rsa2048.has_value());
    const X509Ptr cert = parse_der(*certs.rsa2048);
    ASSERT_TRUE(cert);
    const EvpPkeyPtr key = to_evp_pkey(ek.pub.publicArea);
    EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(cert.get()), key.get()), 1)
        << "the EK made from template L-1 is not the certified key";
    EXPECT_EQ(te_identity(ek.pub.publicArea), cert_key_hash(cert.get()));
    EXPECT_EQ(te_identity(ek.pub.publicArea).size(), 64u);
}

TEST(TpmEk, EccP256TemplateGivesAStableEk) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    Bytes first_name;
    {
        const Ek ek = create_ek(ctx, EkType::EccP256);
        EXPECT_TRUE(matches_ek_template(ek.pub.publicArea, EkType::EccP256));
        EXPECT_FALSE(matches_ek_template(ek.pub.publicArea, EkType::Rsa2048));
        EXPECT_EQ(ek.name, tpm_name(ctx, ek.handle));
        first_name = ek.name;
        const EvpPkeyPtr key = to_evp_pkey(ek.pub.publicArea);
        EXPECT_EQ(EVP_PKEY_get_bits(key.get()), 256);
    }
    // A primary from the same template and seed is the same key.
    EXPECT_EQ(create_ek(ctx, EkType::EccP256).name, first_name);
}

TEST(TpmEk, CertificatesChainToTheManufacturerCa) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const EkCertificates certs = read_ek_certificates(ctx);
    ASSERT_TRUE(certs.rsa2048.has_value());
    EXPECT_TRUE(chains_to_ca(*certs.rsa2048, swtpm, certs.chain));
    // swtpm 0.7 certifies an ECC P-384 EK (0x01c00016) rather than P-256.
    ASSERT_TRUE(certs.ecc_p384.has_value() || certs.ecc_p256.has_value());
    EXPECT_TRUE(
        chains_to_ca(certs.ecc_p384 ? *certs.ecc_p384 : *certs.ecc_p256, swtpm, certs.chain));
    EXPECT_FALSE(read_nv_certificate(ctx, 0x01c0ffff).has_value());
}

TEST(TpmEk, LeafWithoutItsIssuerDoesNotChain) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const EkCertificates certs = read_ek_certificates(ctx);
    ASSERT_TRUE(certs.rsa2048.has_value());
    // The root alone does not vouch for the leaf: the verification really
    // depends on the chain.
    X509Ptr leaf = parse_der(*certs.rsa2048);
    std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
    X509_STORE_add_cert(store.get(), read_pem(swtpm.ca_root_cert()).get());
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> sctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(sctx.get(), store.get(), leaf.get(), nullptr); // no issuer given
    EXPECT_NE(X509_verify_cert(sctx.get()), 1);
}

Bytes pem_to_der(const std::string& path) {
    X509Ptr cert = read_pem(path);
    unsigned char* der = nullptr;
    const int len = i2d_X509(cert.get(), &der);
    Bytes out(der, der + len);
    OPENSSL_free(der);
    return out;
}

// Defines an owner NV index holding `data` (as a manufacturer would store
// chain certificates).
void store_in_nv(Context& ctx, TPM2_HANDLE index, const Bytes& data) {
    TPM2B_NV_PUBLIC pub{};
    pub.nvPublic.nvIndex = index;
    pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
    pub.nvPublic.attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD |
                              TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA;
    pub.nvPublic.dataSize = static_cast<std::uint16_t>(data.size());
    const TPM2B_AUTH no_auth{};
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                              &no_auth, &pub, &tr),
          "TPM2_NV_DefineSpace");
    for (std::size_t off = 0; off < data.size(); off += 512) {
        TPM2B_MAX_NV_BUFFER chunk{};
        chunk.size = static_cast<std::uint16_t>(std::min<std::size_t>(512, data.size() - off));
        std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(off), chunk.size, chunk.buffer);
        check(Esys_NV_Write(ctx, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                            &chunk, static_cast<std::uint16_t>(off)),
              "TPM2_NV_Write");
    }
    Esys_TR_Close(ctx, &tr);
}

// A small self-signed certificate, to fill an index with two certificates
// within the TPM's NV index size limit.
Bytes small_certificate() {
    EvpPkeyPtr key(EVP_EC_gen("P-256"));
    X509Ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("tresim test"), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
    X509_set_pubkey(cert.get(), key.get());
    EXPECT_GT(X509_sign(cert.get(), key.get(), EVP_sha256()), 0);
    unsigned char* der = nullptr;
    const int len = i2d_X509(cert.get(), &der);
    Bytes out(der, der + len);
    OPENSSL_free(der);
    return out;
}

TEST(TpmEk, ChainCertificatesAreReadFromTheChainRange) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Bytes issuer = pem_to_der(swtpm.ca_issuer_cert());
    const Bytes root = pem_to_der(swtpm.ca_root_cert());
    const Bytes small = small_certificate();
    // One index with two concatenated certificates, one with a certificate
    // and padding, and an index just outside the range that must be ignored.
    Bytes two = small;
    two.insert(two.end(), root.begin(), root.end());
    store_in_nv(ctx, 0x01c00101, two);
    Bytes padded = issuer;
    padded.insert(padded.end(), 16, 0xff);
    store_in_nv(ctx, 0x01c00180, padded);
    store_in_nv(ctx, 0x01c00200, root);

    const EkCertificates certs = read_ek_certificates(ctx);
    ASSERT_EQ(certs.chain.size(), 3u);
    EXPECT_EQ(certs.chain[0], small);
    EXPECT_EQ(certs.chain[1], root);
    EXPECT_EQ(certs.chain[2], issuer);
    // The chain from the TPM alone links the EK certificate to the root.
    ASSERT_TRUE(certs.rsa2048.has_value());
    X509Ptr leaf = parse_der(*certs.rsa2048);
    std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
    X509_STORE_add_cert(store.get(), read_pem(swtpm.ca_root_cert()).get());
    std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
    for (const Bytes& c : certs.chain) {
        sk_X509_push(untrusted.get(), parse_der(c).release());
    }
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> sctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(sctx.get(), store.get(), leaf.get(), untrusted.get());
    EXPECT_EQ(X509_verify_cert(sctx.get()), 1);
}

// ---- AK ---------------------------------------------------------------------

TEST(TpmAk, SavedBlobLoadsBackWithTheSameName) {
    test::Swtpm swtpm;
    AkBlob blob;
    Bytes name;
    {
        Context ctx(swtpm.tcti());
        const Srk srk = ensure_srk(ctx);
        blob = create_ak(ctx, srk);
        const Ak ak = load_ak(ctx, srk, blob);
        name = ak.name;
        EXPECT_EQ(ak.name, tpm_name(ctx, ak.handle)); // software name == TPM's
        EXPECT_EQ(ak.pub.publicArea.objectAttributes, ak_template().publicArea.objectAttributes);
        EXPECT_EQ(EVP_PKEY_get_bits(to_evp_pkey(ak.pub.publicArea).get()), 256);
    }
    swtpm.restart(); // a reboot: the SRK persists, the AK comes back from its blob
    Context ctx(swtpm.tcti());
    const Srk srk = ensure_srk(ctx);
    EXPECT_FALSE(srk.created);
    const Ak ak = load_ak(ctx, srk, blob);
    EXPECT_EQ(ak.name, name);
    EXPECT_EQ(object_name(unmarshal_public(blob.pub, "ak-blob").publicArea), name);
}

TEST(TpmAk, MalformedOrForeignBlobIsRefused) {
    TpmWithAk t;
    AkBlob truncated = t.blob;
    truncated.priv.pop_back();
    EXPECT_THROW(load_ak(t.ctx, t.srk, truncated), InvalidArgument);

    // A public part that is not an AK (the SRK template) is refused before the TPM sees it.
    AkBlob not_ak = t.blob;
    not_ak.pub = marshal_public(t.srk.pub);
    EXPECT_THROW(load_ak(t.ctx, t.srk, not_ak), InvalidArgument);

    // Another AK's public with this AK's private: the TPM's integrity check fails.
    AkBlob mixed = t.blob;
    mixed.pub = create_ak(t.ctx, t.srk).pub;
    EXPECT_THROW(load_ak(t.ctx, t.srk, mixed), TpmError);
}

// ---- credential activation ----------------------------------------------------

void expect_activation(EkType type) {
    TpmWithAk t;
    // swtpm, like most TPMs, has 3 object slots and no resource manager here:
    // make the second AK before the EK occupies one.
    const AkBlob other_blob = create_ak(t.ctx, t.srk);
    const Bytes other_name = object_name(unmarshal_public(other_blob.pub, "ak-blob").publicArea);
    ASSERT_NE(other_name, t.ak.name);
    const Ek ek = create_ek(t.ctx, type);
    const SecretBytes credential = secret_of("0123456789abcdef0123456789abcdef");
    const Credential made = make_credential(ek.pub.publicArea, t.ak.name, credential);
    EXPECT_TRUE(activate_credential(t.ctx, t.ak, ek, made.credential_blob, made.secret) ==
                credential);

    // The same again: the policy session is fresh for every activation.
    const SecretBytes shorter = secret_of("nonce");
    const Credential again = make_credential(ek.pub.publicArea, t.ak.name, shorter);
    EXPECT_TRUE(activate_credential(t.ctx, t.ak, ek, again.credential_blob, again.secret) ==
                shorter);

    // Made for another AK's name: the TPM refuses to release it to this AK.
    const Credential for_other = make_credential(ek.pub.publicArea, other_name, credential);
    try {
        activate_credential(t.ctx, t.ak, ek, for_other.credential_blob, for_other.secret);
        ADD_FAILURE() << "a credential made for another AK was activated";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is(TPM2_RC_INTEGRITY)) << e.what();
    }
    // ...while the AK it was made for gets it.
    t.ak.handle.reset();
    const Ak other = load_ak(t.ctx, t.srk, other_blob);
    EXPECT_TRUE(activate_credential(t.ctx, other, ek, for_other.credential_blob,
                                    for_other.secret) == credential);
}

TEST(TpmCredential, SoftwareMakeCredentialForTheRsaEkActivates) {
    expect_activation(EkType::Rsa2048);
}

TEST(TpmCredential, SoftwareMakeCredentialForTheEccEkActivates) {
    expect_activation(EkType::EccP256);
}

TEST(TpmCredential, CredentialForAnotherEkIsRefused) {
    TpmWithAk t;
    const Ek rsa = create_ek(t.ctx, EkType::Rsa2048);
    const Ek ecc = create_ek(t.ctx, EkType::EccP256);
    const Credential made = make_credential(ecc.pub.publicArea, t.ak.name, secret_of("x"));
    EXPECT_THROW(activate_credential(t.ctx, t.ak, rsa, made.credential_blob, made.secret),
                 TpmError);
    const Credential for_rsa = make_credential(rsa.pub.publicArea, t.ak.name, secret_of("y"));
    EXPECT_THROW(activate_credential(t.ctx, t.ak, ecc, for_rsa.credential_blob, for_rsa.secret),
                 TpmError);
    // The refusals did not upset the TPM: the right EKs still activate.
    EXPECT_TRUE(activate_credential(t.ctx, t.ak, ecc, made.credential_blob, made.secret) ==
                secret_of("x"));
    EXPECT_TRUE(activate_credential(t.ctx, t.ak, rsa, for_rsa.credential_blob, for_rsa.secret) ==
                secret_of("y"));
}

TEST(TpmCredential, MakeCredentialNamesBadArguments) {
    TpmWithAk t;
    const TPMT_PUBLIC ek = ek_template(EkType::EccP256).publicArea; // zero key: never used
    auto argument_of = [&](const TPMT_PUBLIC& pub, ByteView name, const SecretBytes& cred) {
        try {
            make_credential(pub, name, cred);
        } catch (const InvalidArgument& e) {
            return e.argument();
        }
        return std::string("none");
    };
    EXPECT_EQ(argument_of(ek, Bytes{0x00, 0x0b, 0x01}, secret_of("x")), "ak-name");
    EXPECT_EQ(argument_of(ek, t.ak.name, SecretBytes()), "credential");
    EXPECT_EQ(argument_of(ek, t.ak.name, SecretBytes(33)), "credential");
    EXPECT_EQ(argument_of(t.ak.pub.publicArea, t.ak.name, secret_of("x")), "ek-public");
}

// ---- quotes -----------------------------------------------------------------

TEST(TpmQuote, VerifiesWithTheRightNonceAndPcrValues) {
    TpmWithAk t;
    extend_pcr16(t.ctx); // a PCR that is not all zeros
    const std::vector<unsigned> indexes{0, 7, 16};
    const Bytes nonce = hex_decode("00112233445566778899aabbccddeeff", "nonce");
    const Attestation q = quote(t.ctx, t.ak, {TPM2_ALG_SHA256, indexes}, nonce);
    const PcrValues pcrs = read_pcrs(t.ctx, indexes);
    const EvpPkeyPtr ak_key = to_evp_pkey(t.ak.pub.publicArea);

    AttestExpectations expect;
    expect.qualifying_data = nonce;
    const TPMS_ATTEST a = verify_quote(q, ak_key.get(), expect, pcrs);
    EXPECT_EQ(a.type, TPM2_ST_ATTEST_QUOTE);
    EXPECT_EQ(Bytes(a.qualifiedSigner.name, a.qualifiedSigner.name + a.qualifiedSigner.size).size(),
              34u);

    // The same counters, clock and firmware pass as expectations; the
    // signature is DER (starts with a SEQUENCE).
    expect.reset_count = a.clockInfo.resetCount;
    expect.restart_count = a.clockInfo.restartCount;
    expect.min_clock = a.clockInfo.clock;
    expect.firmware_version = a.firmwareVersion;
    EXPECT_NO_THROW(verify_quote(q, ak_key.get(), expect, pcrs));
    EXPECT_EQ(q.signature.at(0), 0x30);
}

std::string mismatch_of(const Attestation& q, const EVP_PKEY* key, const AttestExpectations& e,
                        const PcrValues& pcrs) {
    try {
        verify_quote(q, key, e, pcrs);
    } catch (const AttestationMismatch& m) {
        return m.argument();
    }
    return "none";
}

TEST(TpmQuote, FailsWithAChangedNoncePcrByteOrKey) {
    TpmWithAk t;
    const std::vector<unsigned> indexes{0, 16};
    const Bytes nonce(32, 0x5a);
    const Attestation q = quote(t.ctx, t.ak, {TPM2_ALG_SHA256, indexes}, nonce);
    const PcrValues pcrs = read_pcrs(t.ctx, indexes);
    const EvpPkeyPtr key = to_evp_pkey(t.ak.pub.publicArea);
    AttestExpectations expect;
    expect.qualifying_data = nonce;
    ASSERT_EQ(mismatch_of(q, key.get(), expect, pcrs), "none");

    AttestExpectations other_nonce = expect;
    other_nonce.qualifying_data[0] ^= 1;
    EXPECT_EQ(mismatch_of(q, key.get(), other_nonce, pcrs), "qualifying-data");

    PcrValues changed = pcrs;
    changed.values[16][31] ^= 1;
    EXPECT_EQ(mismatch_of(q, key.get(), expect, changed), "pcr-digest");

    PcrValues fewer = pcrs;
    fewer.values.erase(0);
    EXPECT_EQ(mismatch_of(q, key.get(), expect, fewer), "pcr-selection");

    // The platform changed after the reference values were taken.
    extend_pcr16(t.ctx);
    const Attestation after = quote(t.ctx, t.ak, {TPM2_ALG_SHA256, indexes}, nonce);
    EXPECT_EQ(mismatch_of(after, key.get(), expect, pcrs), "pcr-digest");
    EXPECT_EQ(mismatch_of(after, key.get(), expect, read_pcrs(t.ctx, indexes)), "none");

    for (std::size_t i : {std::size_t{0}, std::size_t{10}, q.attest.size() - 1}) {
        Attestation tampered = q;
        tampered.attest[i] ^= 0x01;
        EXPECT_EQ(mismatch_of(tampered, key.get(), expect, pcrs), "signature") << "byte " << i;
    }

    const Ak other = load_ak(t.ctx, t.srk, create_ak(t.ctx, t.srk));
    const EvpPkeyPtr other_key = to_evp_pkey(other.pub.publicArea);
    EXPECT_EQ(mismatch_of(q, other_key.get(), expect, pcrs), "signature");

    const Ek ek = create_ek(t.ctx, EkType::Rsa2048);
    EXPECT_THROW(mismatch_of(q, to_evp_pkey(ek.pub.publicArea).get(), expect, pcrs),
                 InvalidArgument);
}

TEST(TpmQuote, ResetCountChangesAcrossAReboot) {
    test::Swtpm swtpm;
    AkBlob blob;
    AttestExpectations expect;
    expect.qualifying_data = Bytes{1, 2, 3};
    const std::vector<unsigned> indexes{0};
    {
        Context ctx(swtpm.tcti());
        const Srk srk = ensure_srk(ctx);
        blob = create_ak(ctx, srk);
        const Ak ak = load_ak(ctx, srk, blob);
        const Attestation q = quote(ctx, ak, {TPM2_ALG_SHA256, indexes}, expect.qualifying_data);
        const TPMS_ATTEST a =
            verify_quote(q, to_evp_pkey(ak.pub.publicArea).get(), expect, read_pcrs(ctx, indexes));
        expect.reset_count = a.clockInfo.resetCount;
        expect.restart_count = a.clockInfo.restartCount;
    }
    swtpm.restart();
    Context ctx(swtpm.tcti());
    const Srk srk = ensure_srk(ctx);
    const Ak ak = load_ak(ctx, srk, blob);
    const Attestation q = quote(ctx, ak, {TPM2_ALG_SHA256, indexes}, expect.qualifying_data);
    EXPECT_EQ(mismatch_of(q, to_evp_pkey(ak.pub.publicArea).get(), expect, read_pcrs(ctx, indexes)),
              "reset-count");
}

TEST(TpmQuote, PcrDigestMatchesAnIndependentHash) {
    // SHA-256("") is e3b0...; SHA-256 of 64 zero bytes is f5a5fd42...: two
    // all-zero SHA-256 PCRs (independently known values).
    PcrValues none;
    EXPECT_EQ(hex_encode(quote_pcr_digest(none)),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    PcrValues two;
    two.values[3] = Bytes(32, 0);
    two.values[1] = Bytes(32, 0);
    EXPECT_EQ(hex_encode(quote_pcr_digest(two)),
              "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b");
    two.values[2] = Bytes(20, 0);
    EXPECT_THROW(quote_pcr_digest(two), InvalidArgument);
}

// ---- certification ------------------------------------------------------------

TEST(TpmCertify, AkCertifiesTheSrk) {
    TpmWithAk t;
    const Bytes nonce(16, 0xc3);
    const Attestation c = certify(t.ctx, t.ak, t.srk.handle, nonce);
    const EvpPkeyPtr key = to_evp_pkey(t.ak.pub.publicArea);
    AttestExpectations expect;
    expect.qualifying_data = nonce;

    const Bytes srk_name = object_name(t.srk.pub.publicArea);
    ASSERT_EQ(srk_name, Bytes(t.srk.name.name, t.srk.name.name + t.srk.name.size));
    // Qualified name of a primary: H(TPM_RH_OWNER || name), nameAlg-prefixed.
    Bytes qn_input(4 + srk_name.size());
    qn_input[0] = 0x40;
    qn_input[3] = 0x01;
    std::copy(srk_name.begin(), srk_name.end(), qn_input.begin() + 4);
    Bytes qn{0x00, 0x0b};
    qn.resize(34);
    EVP_Digest(qn_input.data(), qn_input.size(), qn.data() + 2, nullptr, EVP_sha256(), nullptr);

    const TPMS_ATTEST a = verify_certify(c, key.get(), expect, srk_name, qn);
    EXPECT_EQ(a.type, TPM2_ST_ATTEST_CERTIFY);

    try {
        verify_certify(c, key.get(), expect, t.ak.name);
        ADD_FAILURE() << "the certification named the AK";
    } catch (const AttestationMismatch& m) {
        EXPECT_EQ(m.argument(), "name");
    }
    AttestExpectations other_nonce = expect;
    other_nonce.qualifying_data.push_back(0);
    EXPECT_THROW(verify_certify(c, key.get(), other_nonce, srk_name), AttestationMismatch);
    // A quote is not a certification.
    const Attestation q = quote(t.ctx, t.ak, {TPM2_ALG_SHA256, {0}}, nonce);
    try {
        verify_certify(q, key.get(), expect, srk_name);
        ADD_FAILURE() << "a quote passed as a certification";
    } catch (const AttestationMismatch& m) {
        EXPECT_EQ(m.argument(), "type");
    }
}

TEST(TpmAttest, ParseRefusesWhatIsNotATpmsAttest) {
    EXPECT_THROW(parse_attest(Bytes{0xff, 0x54}), InvalidArgument);
    TpmWithAk t;
    Attestation q = quote(t.ctx, t.ak, {TPM2_ALG_SHA256, {0}}, Bytes{});
    EXPECT_NO_THROW(parse_attest(q.attest));
    q.attest.push_back(0);
    EXPECT_THROW(parse_attest(q.attest), InvalidArgument);
    q.attest.pop_back();
    q.attest[3] ^= 0xff; // TPM_GENERATED magic
    try {
        parse_attest(q.attest);
        ADD_FAILURE() << "a wrong magic was accepted";
    } catch (const AttestationMismatch& m) {
        EXPECT_EQ(m.argument(), "magic");
    }
}

} // namespace
