// MID objects on swtpm: the AES key object against OpenSSL's AES (CFB with a
// zero block, ECB, and the CFB-decrypt batch), sealed data, and software
// duplication blobs imported by the TPM.

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "swtpm.hpp"
#include "tpm/context.hpp"
#include "tpm/duplicate.hpp"
#include "tpm/error.hpp"
#include "tpm/objects.hpp"
#include "tpm/policy.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using namespace tresim::tpm;

const Bytes kPolicyRef = {'m', 'i', 'd'};

// OpenSSL AES-128-ECB over whole blocks: the independent reference.
Bytes openssl_aes128_ecb(ByteView key, ByteView blocks) {
    std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> c(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
    Bytes out(blocks.size() + 16);
    int len = 0;
    EXPECT_EQ(EVP_EncryptInit_ex(c.get(), EVP_aes_128_ecb(), nullptr, key.data(), nullptr), 1);
    EVP_CIPHER_CTX_set_padding(c.get(), 0);
    EXPECT_EQ(EVP_EncryptUpdate(c.get(), out.data(), &len, blocks.data(),
                                static_cast<int>(blocks.size())),
              1);
    out.resize(static_cast<std::size_t>(len));
    return out;
}

Bytes bytes_of(const SecretBytes& s) {
    return {s.view().begin(), s.view().end()};
}

// A TPM with its SRK and an authority that approves the current PCR 0 and 7.
struct Mid {
    test::Swtpm swtpm;
    Context ctx{swtpm.tcti()};
    Srk srk = ensure_srk(ctx);
    PolicyAuthority authority = PolicyAuthority::generate();
    PcrSelection sel = parse_pcr_selection("sha256:0,7");
    Bytes pcr_digest = pcr_composite_digest(read_pcrs(ctx, sel));
    Bytes policy = PolicyDigest().authorize(authority.name(), kPolicyRef).value();
    Bytes approved = PolicyDigest().pcr(sel, pcr_digest).value();
    TPMT_SIGNATURE signature = authority.sign_policy(approved, kPolicyRef);
    TicketCache tickets;

    ObjectOptions options() const { return {policy, {}, false}; }

    // A policy session ready to authorize one command on a MID object.
    std::unique_ptr<PolicySession> session(ESYS_TR salt = ESYS_TR_NONE) {
        auto s = std::make_unique<PolicySession>(ctx, PolicySession::Type::Real, salt);
        s->pcr(sel, pcr_digest);
        s->authorize(authority.tpm_public(), approved, kPolicyRef, signature, &tickets);
        return s;
    }
};

const SecretBytes kKey = SecretBytes::from_hex("000102030405060708090a0b0c0d0e0f", "k");

TEST(TpmAesKey, CfbWithIvXOverAZeroBlockIsTheAesOfX) {
    Mid m;
    const Handle key =
        load_object(m.ctx, m.srk.handle, create_aes_key(m.ctx, m.srk.handle, kKey, m.options()));
    const Bytes x = hex_decode("00112233445566778899aabbccddeeff", "x");
    // FIPS-197 Appendix C.1 gives 69c4e0d86a7b0430d8cdb78070b4c55a for this key and block.
    const Bytes want = hex_decode("69c4e0d86a7b0430d8cdb78070b4c55a", "want");
    ASSERT_EQ(openssl_aes128_ecb(kKey.view(), x), want);
    {
        auto s = m.session();
        EXPECT_EQ(
            bytes_of(encrypt_decrypt(m.ctx, key, *s, CipherMode::Cfb, x, Bytes(16, 0), false)),
            want);
    }
    // The same through a session salted with the SRK, with x and E_K(x)
    // parameter-encrypted on the bus.
    auto salted = m.session(m.srk.handle);
    EXPECT_EQ(bytes_of(encrypt_decrypt(m.ctx, key, *salted, CipherMode::Cfb, x, Bytes(16, 0), false,
                                       true)),
              want);
}

TEST(TpmAesKey, EcbEncryptsEveryBlockIndependently) {
    Mid m;
    const Handle key =
        load_object(m.ctx, m.srk.handle, create_aes_key(m.ctx, m.srk.handle, kKey, m.options()));
    Bytes blocks(64);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        blocks[i] = static_cast<std::uint8_t>(i * 7 + 3);
    }
    auto s = m.session();
    EXPECT_EQ(bytes_of(encrypt_decrypt(m.ctx, key, *s, CipherMode::Ecb, {}, blocks, false)),
              openssl_aes128_ecb(kKey.view(), blocks));
    auto s2 = m.session();
    EXPECT_EQ(bytes_of(aes_encrypt_blocks(m.ctx, key, *s2, blocks, CipherMode::Ecb)),
              openssl_aes128_ecb(kKey.view(), blocks));
}

// The batch trick for TPMs with CFB only: CFB decryption computes
// P_i = C_i xor E_K(C_{i-1}) with C_0 = IV, and every E_K input is a ciphertext
// block the caller chooses. One decrypt with IV = x1 over (x2, ..., xn, 0) thus
// gives E_K(x_i) = P_i xor C_i for n independent blocks in one command.
TEST(TpmAesKey, OneCfbDecryptBatchesIndependentBlocks) {
    Mid m;
    const Handle key =
        load_object(m.ctx, m.srk.handle, create_aes_key(m.ctx, m.srk.handle, kKey, m.options()));
    const Bytes x = hex_decode("6bc1bee22e409f96e93d7e117393172a"
                               "ae2d8a571e03ac9c9eb76fac45af8e51"
                               "30c81c46a35ce411e5fbc1191a0a52ef"
                               "f69f2445df4f9b17ad2b417be66c3710",
                               "x");
    const Bytes want = openssl_aes128_ecb(kKey.view(), x);

    // By hand, as documented.
    Bytes c(x.begin() + 16, x.end());
    c.resize(x.size(), 0);
    auto s = m.session();
    const SecretBytes p =
        encrypt_decrypt(m.ctx, key, *s, CipherMode::Cfb, ByteView(x).first(16), c, true);
    Bytes got(x.size());
    xor_into(got, p.view(), c);
    EXPECT_EQ(got, want);

    // Through the helper.
    auto s2 = m.session();
    EXPECT_EQ(bytes_of(aes_encrypt_blocks(m.ctx, key, *s2, x, CipherMode::Cfb)), want);

    // A CFB *encrypt* over the same blocks chains them instead: only its first
    // block is E_K(IV) xor P_1.
    auto s3 = m.session();
    const SecretBytes chained = encrypt_decrypt(m.ctx, key, *s3, CipherMode::Cfb,
                                                ByteView(x).first(16), Bytes(64, 0), false);
    EXPECT_EQ(Bytes(chained.view().begin(), chained.view().begin() + 16),
              Bytes(want.begin(), want.begin() + 16));
    EXPECT_NE(Bytes(chained.view().begin() + 16, chained.view().begin() + 32),
              Bytes(want.begin() + 16, want.begin() + 32));
}

TEST(TpmAesKey, RefusesUseWithoutThePolicyAndBadArguments) {
    Mid m;
    const Handle key =
        load_object(m.ctx, m.srk.handle, create_aes_key(m.ctx, m.srk.handle, kKey, m.options()));
    PolicySession empty(m.ctx);
    try {
        encrypt_decrypt(m.ctx, key, empty, CipherMode::Cfb, Bytes(16, 0), Bytes(16, 0), false);
        FAIL() << "used without its policy";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is_policy_failure()) << e.what();
    }
    // userWithAuth is clear: a password session does not work either.
    EXPECT_THROW(encrypt_decrypt(m.ctx, key, ESYS_TR_PASSWORD, CipherMode::Cfb, Bytes(16, 0),
                                 Bytes(16, 0), false),
                 TpmError);
    try {
        create_aes_key(m.ctx, m.srk.handle, SecretBytes(Bytes(15, 1)), m.options());
        FAIL();
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "k");
    }
    try {
        create_aes_key(m.ctx, m.srk.handle, kKey, {Bytes(20, 0), {}, false});
        FAIL();
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "auth-policy");
    }
    try {
        create_sealed_data(m.ctx, m.srk.handle, SecretBytes(Bytes(129, 1)), m.options());
        FAIL();
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "data");
    }
    // The public area says what DESIGN.md §2 asks.
    const ObjectBlobs blobs = create_aes_key(m.ctx, m.srk.handle, kKey, m.options());
    const TPMT_PUBLIC pub = unmarshal_public(blobs.public_area, "public").publicArea;
    EXPECT_EQ(pub.objectAttributes & TPMA_OBJECT_USERWITHAUTH, 0u);
    EXPECT_NE(pub.objectAttributes & TPMA_OBJECT_ADMINWITHPOLICY, 0u);
    EXPECT_NE(pub.objectAttributes & TPMA_OBJECT_FIXEDTPM, 0u);
    EXPECT_NE(pub.objectAttributes & TPMA_OBJECT_FIXEDPARENT, 0u);
    EXPECT_EQ(pub.objectAttributes & TPMA_OBJECT_SENSITIVEDATAORIGIN, 0u);
    EXPECT_EQ(Bytes(pub.authPolicy.buffer, pub.authPolicy.buffer + pub.authPolicy.size), m.policy);
}

bool contains(const Bytes& haystack, ByteView needle) {
    return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
           haystack.end();
}

Bytes read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The key material is sent to TPM2_Create encrypted (salted session with the
// SRK, TPMA_SESSION_DECRYPT): a capture of every command and response (the
// pcap TCTI) never holds it. The control, the same bytes hashed with
// TPM2_Hash, shows the capture would have caught it.
TEST(TpmAesKey, KeyMaterialNeverCrossesTheBusInClear) {
    test::Swtpm swtpm;
    const std::string dir = test::make_temp_dir("pcap");
    const std::string capture = dir + "/bus.pcap";
    ::setenv("TCTI_PCAP_FILE", capture.c_str(), 1);
    const SecretBytes k = SecretBytes::from_hex("c0ffee00c0ffee01c0ffee02c0ffee03", "k");
    const SecretBytes data = SecretBytes::from_hex("5ea1ed005ea1ed015ea1ed025ea1ed03", "data");
    {
        Context ctx("pcap:" + swtpm.tcti());
        const Srk srk = ensure_srk(ctx);
        const PolicyAuthority authority = PolicyAuthority::generate();
        const ObjectOptions options{
            PolicyDigest().authorize(authority.name(), kPolicyRef).value(), {}, false};
        create_aes_key(ctx, srk.handle, k, options);
        create_sealed_data(ctx, srk.handle, data, options);
        const Bytes control{0x5a, 0xa5, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
                            0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee};
        TPM2B_MAX_BUFFER in{};
        in.size = static_cast<UINT16>(control.size());
        std::copy(control.begin(), control.end(), in.buffer);
        TPM2B_DIGEST* digest = nullptr;
        TPMT_TK_HASHCHECK* ticket = nullptr;
        check(Esys_Hash(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &in, TPM2_ALG_SHA256,
                        ESYS_TR_RH_OWNER, &digest, &ticket),
              "TPM2_Hash");
        Esys_Free(digest);
        Esys_Free(ticket);
        const Bytes bus = read_all(capture);
        EXPECT_TRUE(contains(bus, control)) << "the capture does not work";
    }
    ::unsetenv("TCTI_PCAP_FILE");
    const Bytes bus = read_all(capture);
    EXPECT_GT(bus.size(), 1000u);
    EXPECT_FALSE(contains(bus, k.view())) << "K crossed the bus in clear";
    EXPECT_FALSE(contains(bus, data.view())) << "sealed data crossed the bus in clear";
    test::remove_tree(dir);
}

TEST(SealedData, RoundTripsThroughCreateLoadAndUnseal) {
    Mid m;
    const SecretBytes opc = SecretBytes::from_hex("cd63cb71954a9f4e48a5994e37a02baf", "opc");
    const ObjectBlobs blobs = create_sealed_data(m.ctx, m.srk.handle, opc, m.options());
    const Handle obj = load_object(m.ctx, m.srk.handle, blobs);
    // A TPM holds few loaded sessions (three on swtpm): keep them short-lived.
    EXPECT_TRUE(unseal(m.ctx, obj, *m.session()) == opc);
    {
        // Salted with the SRK and the response encrypted.
        auto salted = m.session(m.srk.handle);
        EXPECT_TRUE(salted->salted());
        EXPECT_TRUE(unseal(m.ctx, obj, *salted, true) == opc);
    }
    const SecretBytes big(Bytes(128, 0xa5));
    const Handle obj2 =
        load_object(m.ctx, m.srk.handle, create_sealed_data(m.ctx, m.srk.handle, big, m.options()));
    EXPECT_TRUE(unseal(m.ctx, obj2, *m.session()) == big);
    PolicySession empty(m.ctx);
    EXPECT_THROW(unseal(m.ctx, obj2, empty), TpmError);
}

TEST(TpmAesKey, ChangesItsAuthValueWithAnApprovedAdminBranch) {
    Mid m;
    const SecretBytes old_auth = SecretBytes::from_hex("31313131", "auth-value");
    const SecretBytes new_auth = SecretBytes::from_hex("32323232", "auth-value");
    ObjectBlobs blobs = create_aes_key(m.ctx, m.srk.handle, kKey, {m.policy, old_auth, false});
    const Handle key = load_object(m.ctx, m.srk.handle, blobs);
    set_auth_value(m.ctx, key, old_auth);
    // ObjectChangeAuth needs the ADMIN role: the approved branch names the command.
    const Bytes admin = PolicyDigest()
                            .pcr(m.sel, m.pcr_digest)
                            .auth_value()
                            .command_code(TPM2_CC_ObjectChangeAuth)
                            .value();
    PolicySession s(m.ctx, PolicySession::Type::Real, m.srk.handle);
    s.pcr(m.sel, m.pcr_digest).auth_value().command_code(TPM2_CC_ObjectChangeAuth);
    s.authorize(m.authority.tpm_public(), admin, kPolicyRef,
                m.authority.sign_policy(admin, kPolicyRef));
    blobs.private_area = change_auth(m.ctx, key, m.srk.handle, s, new_auth, true);

    const Handle changed = load_object(m.ctx, m.srk.handle, blobs);
    set_auth_value(m.ctx, changed, new_auth);
    const Bytes use = PolicyDigest().pcr(m.sel, m.pcr_digest).auth_value().value();
    PolicySession u(m.ctx);
    u.pcr(m.sel, m.pcr_digest).auth_value();
    u.authorize(m.authority.tpm_public(), use, kPolicyRef,
                m.authority.sign_policy(use, kPolicyRef));
    const Bytes x(16, 0x42);
    EXPECT_EQ(bytes_of(encrypt_decrypt(m.ctx, changed, u, CipherMode::Cfb, x, Bytes(16, 0), false)),
              openssl_aes128_ecb(kKey.view(), x));
}

// --- Duplication blobs -----------------------------------------------------

TEST(Duplication, ASoftwareBlobImportsAndGivesTheAesOfTheKeyMaterial) {
    Mid m;
    const SecretBytes k = SecretBytes::from_hex("fec86ba6eb707ed08905757b1bb44b8f", "k");
    // The Provisioning Server's side: only the SRK's public area is needed.
    const DuplicationBlob blob = duplicate_aes_key(m.srk.pub.publicArea, k, m.options());
    const DuplicationBlob transported = DuplicationBlob::unmarshal(blob.marshal());
    EXPECT_EQ(transported.marshal(), blob.marshal());

    const ObjectBlobs imported = import_duplicate(m.ctx, m.srk.handle, transported);
    const Handle key = load_object(m.ctx, m.srk.handle, imported);
    const TPMT_PUBLIC pub = unmarshal_public(imported.public_area, "public").publicArea;
    EXPECT_EQ(pub.objectAttributes & (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT), 0u);
    EXPECT_EQ(pub.objectAttributes & TPMA_OBJECT_USERWITHAUTH, 0u);

    const Bytes x = hex_decode("9f7c8d021accf4db213ccff0c7f71a6a", "x");
    auto s = m.session();
    EXPECT_EQ(bytes_of(encrypt_decrypt(m.ctx, key, *s, CipherMode::Cfb, x, Bytes(16, 0), false)),
              openssl_aes128_ecb(k.view(), x));
    auto s2 = m.session();
    EXPECT_EQ(bytes_of(aes_encrypt_blocks(m.ctx, key, *s2, Bytes(32, 3), CipherMode::Cfb)),
              openssl_aes128_ecb(k.view(), Bytes(32, 3)));
}

TEST(Duplication, ASealedDataBlobImportsAndUnsealsWithItsAuthValue) {
    Mid m;
    const SecretBytes data(Bytes(100, 0x3c));
    const SecretBytes auth = SecretBytes::from_hex("0102030405", "auth-value");
    const Bytes policy =
        PolicyDigest().authorize(m.authority.name(), kPolicyRef).value(); // same authority
    const DuplicationBlob blob =
        duplicate_sealed_data(m.srk.pub.publicArea, data, {policy, auth, false});
    const Handle obj =
        load_object(m.ctx, m.srk.handle, import_duplicate(m.ctx, m.srk.handle, blob));
    set_auth_value(m.ctx, obj, auth);
    const Bytes approved = PolicyDigest().pcr(m.sel, m.pcr_digest).auth_value().value();
    PolicySession s(m.ctx);
    s.pcr(m.sel, m.pcr_digest).auth_value();
    s.authorize(m.authority.tpm_public(), approved, kPolicyRef,
                m.authority.sign_policy(approved, kPolicyRef));
    EXPECT_TRUE(unseal(m.ctx, obj, s) == data);
}

TEST(Duplication, ABlobForAnotherTpmsSrkFailsToImportWithAClearError) {
    Mid m;
    // Another TPM's SRK: the same template around a different P-256 point.
    TPM2B_PUBLIC other = srk_template();
    other.publicArea.unique = PolicyAuthority::generate().tpm_public().publicArea.unique;
    const DuplicationBlob blob = duplicate_aes_key(other.publicArea, kKey, m.options());
    try {
        import_duplicate(m.ctx, m.srk.handle, blob);
        FAIL() << "a blob for another SRK was imported";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is(TPM2_RC_INTEGRITY)) << e.what();
        EXPECT_EQ(e.operation(), "TPM2_Import(duplication blob)");
    }
}

TEST(Duplication, ATamperedBlobFailsTheIntegrityCheck) {
    Mid m;
    const DuplicationBlob good = duplicate_aes_key(m.srk.pub.publicArea, kKey, m.options());
    for (const std::size_t at : {std::size_t{10}, good.duplicate.size() - 1}) {
        DuplicationBlob bad = good;
        bad.duplicate[at] ^= 0x01; // in the outer HMAC, then in the encrypted sensitive
        try {
            import_duplicate(m.ctx, m.srk.handle, bad);
            FAIL() << "a tampered blob was imported (byte " << at << ")";
        } catch (const TpmError& e) {
            EXPECT_TRUE(e.is(TPM2_RC_INTEGRITY)) << e.what();
        }
    }
    // A different public area (another policy) changes the name the HMAC covers.
    DuplicationBlob swapped = good;
    TPM2B_PUBLIC pub = unmarshal_public(good.object_public, "public");
    pub.publicArea.authPolicy.buffer[0] ^= 0xff;
    swapped.object_public = marshal_public(pub);
    EXPECT_THROW(import_duplicate(m.ctx, m.srk.handle, swapped), TpmError);
    // The untouched blob still imports.
    EXPECT_NO_THROW(import_duplicate(m.ctx, m.srk.handle, good));
}

TEST(Duplication, AnImportedObjectCannotBeDuplicatedWithItsApprovedPolicy) {
    Mid m;
    const Handle key =
        load_object(m.ctx, m.srk.handle,
                    import_duplicate(m.ctx, m.srk.handle,
                                     duplicate_aes_key(m.srk.pub.publicArea, kKey, m.options())));
    auto s = m.session();
    const TPM2B_DATA no_key{};
    TPMT_SYM_DEF_OBJECT no_inner{};
    no_inner.algorithm = TPM2_ALG_NULL;
    TPM2B_DATA* key_out = nullptr;
    TPM2B_PRIVATE* dup = nullptr;
    TPM2B_ENCRYPTED_SECRET* seed = nullptr;
    const TSS2_RC rc = Esys_Duplicate(m.ctx, key, m.srk.handle, *s, ESYS_TR_NONE, ESYS_TR_NONE,
                                      &no_key, &no_inner, &key_out, &dup, &seed);
    Esys_Free(key_out);
    Esys_Free(dup);
    Esys_Free(seed);
    ASSERT_NE(rc, TSS2_RC_SUCCESS) << "TPM2_Duplicate succeeded";
    EXPECT_TRUE(TpmError("TPM2_Duplicate", rc).is_policy_failure()) << decode(rc);
}

TEST(Kdf, KdfaAndKdfeFollowTheirDefinitions) {
    // Independent: HMAC/SHA-256 over the byte strings the spec defines, computed
    // here with OpenSSL one-shots rather than the code under test.
    const Bytes key(32, 0x0b);
    const Bytes u{1, 2, 3};
    const Bytes v{4, 5};
    Bytes msg{0, 0, 0, 1, 'S', 'T', 'O', 'R', 'A', 'G', 'E', 0, 1, 2, 3, 4, 5, 0, 0, 0, 128};
    unsigned char mac[32];
    unsigned int mac_len = 0;
    ASSERT_NE(HMAC(EVP_sha256(), key.data(), 32, msg.data(), msg.size(), mac, &mac_len), nullptr);
    EXPECT_EQ(bytes_of(kdfa_sha256(key, "STORAGE", u, v, 128)), Bytes(mac, mac + 16));

    const Bytes z(32, 0x77);
    Bytes m2{0, 0, 0, 1};
    m2.insert(m2.end(), z.begin(), z.end());
    for (const char c : std::string("DUPLICATE")) {
        m2.push_back(static_cast<std::uint8_t>(c));
    }
    m2.push_back(0);
    m2.insert(m2.end(), u.begin(), u.end());
    m2.insert(m2.end(), v.begin(), v.end());
    unsigned char h[32];
    ASSERT_EQ(EVP_Digest(m2.data(), m2.size(), h, nullptr, EVP_sha256(), nullptr), 1);
    EXPECT_EQ(bytes_of(kdfe_sha256(z, "DUPLICATE", u, v, 256)), Bytes(h, h + 32));
}

} // namespace
