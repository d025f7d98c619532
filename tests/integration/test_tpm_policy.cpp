// Policies on swtpm: every software policy digest against TPM2_PolicyGetDigest,
// and the MID policy (PolicyAuthorize of an authority, approved PolicyPCR
// [+ PolicyAuthValue]) through a platform change and a new signed approval.

#include <array>
#include <cstdio>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "swtpm.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"
#include "tpm/objects.hpp"
#include "tpm/policy.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using namespace tresim::tpm;
using testing::ElementsAre;

const Bytes kPolicyRef = {'t', 'r', 'e', 's', 'i', 'm', '-', 'm', 'i', 'd'};

// OpenSSL's AES-128 of one block: the reference the TPM's results are compared with.
Bytes openssl_aes128(ByteView key, ByteView block) {
    std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> c(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
    Bytes out(32);
    int len = 0;
    EXPECT_EQ(EVP_EncryptInit_ex(c.get(), EVP_aes_128_ecb(), nullptr, key.data(), nullptr), 1);
    EVP_CIPHER_CTX_set_padding(c.get(), 0);
    EXPECT_EQ(EVP_EncryptUpdate(c.get(), out.data(), &len, block.data(), 16), 1);
    out.resize(16);
    return out;
}

TPMT_TK_VERIFIED null_ticket() {
    TPMT_TK_VERIFIED t{};
    t.tag = TPM2_ST_VERIFIED;
    t.hierarchy = TPM2_RH_NULL;
    return t;
}

void extend_pcr(Context& ctx, ESYS_TR pcr, std::uint8_t byte) {
    TPML_DIGEST_VALUES v{};
    v.count = 1;
    v.digests[0].hashAlg = TPM2_ALG_SHA256;
    std::fill_n(v.digests[0].digest.sha256, 32, byte);
    check(Esys_PCR_Extend(ctx, pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &v),
          "TPM2_PCR_Extend");
}

// An ordinary 8-byte NV index holding `value` (owner/auth read and write).
Handle define_nv_counter(Context& ctx, TPM2_HANDLE index, ByteView value) {
    TPM2B_NV_PUBLIC pub{};
    pub.nvPublic.nvIndex = index;
    pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
    pub.nvPublic.attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD |
                              TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA;
    pub.nvPublic.dataSize = static_cast<UINT16>(value.size());
    const TPM2B_AUTH auth{};
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                              &auth, &pub, &tr),
          "TPM2_NV_DefineSpace");
    TPM2B_MAX_NV_BUFFER data{};
    data.size = static_cast<UINT16>(value.size());
    std::copy(value.begin(), value.end(), data.buffer);
    check(Esys_NV_Write(ctx, tr, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data, 0),
          "TPM2_NV_Write");
    return Handle::persistent(ctx, tr); // closed, not flushed, at the end
}

TEST(PcrSelection, ParsesAndFormatsBankLists) {
    const PcrSelection s = parse_pcr_selection("sha256:0,2,4,7");
    EXPECT_EQ(s.bank, TPM2_ALG_SHA256);
    EXPECT_THAT(s.pcrs, ElementsAre(0u, 2u, 4u, 7u));
    const TPML_PCR_SELECTION t = to_tpml(s);
    ASSERT_EQ(t.count, 1u);
    EXPECT_EQ(t.pcrSelections[0].hash, TPM2_ALG_SHA256);
    EXPECT_EQ(t.pcrSelections[0].sizeofSelect, 3);
    EXPECT_EQ(t.pcrSelections[0].pcrSelect[0], 0x95);
    EXPECT_EQ(format_pcr_selection(s), "sha256:0,2,4,7");
    EXPECT_EQ(format_pcr_selection(parse_pcr_selection("sha1:23,16,0")), "sha1:0,16,23");
    for (const char* bad : {"", "sha256", "sha256:", "sha256:24", "md5:1", "sha256:1,,2",
                            "sha256:1,1", "sha256:x", "sha256:0+sha1:0"}) {
        try {
            parse_pcr_selection(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const InvalidArgument& e) {
            EXPECT_EQ(e.argument(), "pcrs");
        }
    }
    EXPECT_EQ(describe_pcr_difference({7}), "PCR 7 differs");
    EXPECT_EQ(describe_pcr_difference({0, 7}), "PCRs 0, 7 differ");
}

TEST(PolicyDigests, SoftwareDigestsEqualTheTpmsInTrialAndRealSessions) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const PcrSelection sel = parse_pcr_selection("sha256:7,0,4,2"); // any order
    extend_pcr(ctx, ESYS_TR_PCR4, 0x44); // not all zero, so the order matters
    const PcrValues pcrs = read_pcrs(ctx, sel);
    ASSERT_EQ(pcrs.values.size(), 4u);
    EXPECT_NE(pcrs.values.at(4), Bytes(32, 0));
    const Bytes composite = pcr_composite_digest(pcrs);

    const PolicyAuthority authority = PolicyAuthority::generate();
    const Handle nv = define_nv_counter(ctx, 0x01500020, Bytes{0, 0, 0, 0, 0, 0, 0, 5});
    TPM2B_NV_PUBLIC* nv_pub = nullptr;
    TPM2B_NAME* nv_tpm_name = nullptr;
    check(Esys_NV_ReadPublic(ctx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv_pub,
                             &nv_tpm_name),
          "NV_ReadPublic");
    const EsysPtr<TPM2B_NV_PUBLIC> nv_pub_owner(nv_pub);
    const EsysPtr<TPM2B_NAME> nv_name_owner(nv_tpm_name);
    const Bytes index_name(nv_tpm_name->name, nv_tpm_name->name + nv_tpm_name->size);
    const Bytes operand{0, 0, 0, 0, 0, 0, 0, 5};
    const Bytes owner_name{0x40, 0x00, 0x00, 0x01};

    PolicyDigest sw;
    for (const auto type : {PolicySession::Type::Trial, PolicySession::Type::Real}) {
        SCOPED_TRACE(type == PolicySession::Type::Trial ? "trial" : "real");
        PolicySession s(ctx, type);
        EXPECT_EQ(s.digest(), Bytes(32, 0));
        s.pcr(sel, type == PolicySession::Type::Trial ? Bytes{} : composite);
        sw = PolicyDigest().pcr(sel, composite);
        EXPECT_EQ(s.digest(), sw.value()) << "PolicyPCR";
        s.auth_value();
        EXPECT_EQ(s.digest(), sw.auth_value().value()) << "PolicyAuthValue";
        s.nv(nv, nv, operand, 0, TPM2_EO_UNSIGNED_LE);
        EXPECT_EQ(s.digest(), sw.nv(index_name, operand, 0, TPM2_EO_UNSIGNED_LE).value())
            << "PolicyNV";
        s.command_code(TPM2_CC_EncryptDecrypt2);
        EXPECT_EQ(s.digest(), sw.command_code(TPM2_CC_EncryptDecrypt2).value())
            << "PolicyCommandCode";
        s.secret(ESYS_TR_RH_OWNER, kPolicyRef);
        EXPECT_EQ(s.digest(), sw.secret(owner_name, kPolicyRef).value()) << "PolicySecret";

        // PolicyAuthorize: a trial session takes any ticket; a real one a ticket
        // for exactly the current digest.
        const Bytes approved = s.digest();
        if (type == PolicySession::Type::Trial) {
            s.authorize(approved, kPolicyRef, authority.name(), null_ticket());
        } else {
            s.authorize(authority.tpm_public(), approved, kPolicyRef,
                        authority.sign_policy(approved, kPolicyRef));
        }
        EXPECT_EQ(s.digest(), sw.authorize(authority.name(), kPolicyRef).value())
            << "PolicyAuthorize";
        // Without a policyRef too.
        s.restart();
        s.pcr(sel, composite);
        const Bytes approved2 = s.digest();
        if (type == PolicySession::Type::Trial) {
            s.authorize(approved2, {}, authority.name(), null_ticket());
        } else {
            s.authorize(authority.tpm_public(), approved2, {},
                        authority.sign_policy(approved2, {}));
        }
        EXPECT_EQ(s.digest(), PolicyDigest().authorize(authority.name()).value());
    }
}

TEST(PolicyDigests, NamesMatchWhatTheTpmComputes) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Srk srk = ensure_srk(ctx);
    EXPECT_EQ(object_name(srk.pub.publicArea), Bytes(srk.name.name, srk.name.name + srk.name.size));

    const PolicyAuthority authority = PolicyAuthority::generate();
    const TPM2B_PUBLIC pub = authority.tpm_public();
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_LoadExternal(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr, &pub,
                            ESYS_TR_RH_OWNER, &tr),
          "LoadExternal");
    const Handle loaded = Handle::transient(ctx, tr);
    // ESAPI computes names itself; ReadPublic returns the TPM's.
    TPM2B_PUBLIC* out_pub = nullptr;
    TPM2B_NAME* name = nullptr;
    TPM2B_NAME* qname = nullptr;
    check(Esys_ReadPublic(ctx, loaded, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &out_pub, &name,
                          &qname),
          "ReadPublic");
    const EsysPtr<TPM2B_PUBLIC> a(out_pub);
    const EsysPtr<TPM2B_NAME> b(name);
    const EsysPtr<TPM2B_NAME> c(qname);
    EXPECT_EQ(authority.name(), Bytes(name->name, name->name + name->size));
}

TEST(PolicyAuthority, RoundTripsThroughPemAndVerifiesItsOwnSignatures) {
    const PolicyAuthority a = PolicyAuthority::generate();
    const SecretBytes pem = a.private_pem();
    const PolicyAuthority b = PolicyAuthority::from_pem(pem.view());
    EXPECT_TRUE(b.has_private());
    EXPECT_EQ(a.name(), b.name());
    const std::string pub_pem = a.public_pem();
    const PolicyAuthority c = PolicyAuthority::from_pem(
        ByteView(reinterpret_cast<const std::uint8_t*>(pub_pem.data()), pub_pem.size()));
    EXPECT_FALSE(c.has_private());
    EXPECT_EQ(c.name(), a.name());
    EXPECT_EQ(PolicyAuthority::from_public(a.tpm_public().publicArea).name(), a.name());

    const Bytes approved(32, 0xab);
    const TPMT_SIGNATURE sig = b.sign_policy(approved, kPolicyRef);
    EXPECT_TRUE(c.verify_policy(approved, kPolicyRef, sig));
    EXPECT_FALSE(c.verify_policy(approved, {}, sig));
    const TPMT_SIGNATURE again = unmarshal_signature(marshal_signature(sig), "signature");
    EXPECT_TRUE(c.verify_policy(approved, kPolicyRef, again));
    EXPECT_THROW(c.sign_policy(approved, kPolicyRef), InvalidArgument);

    const std::string path = test::make_temp_dir("authority") + "/key.pem";
    a.save(path);
    EXPECT_EQ(PolicyAuthority::load(path).name(), a.name());
    test::remove_tree(path.substr(0, path.rfind('/')));

    const std::string junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    try {
        PolicyAuthority::from_pem(
            ByteView(reinterpret_cast<const std::uint8_t*>(junk.data()), junk.size()));
        FAIL() << "junk accepted";
    } catch (const InvalidArgument& e) {
        EXPECT_EQ(e.argument(), "authority-key");
    }
}

// One MID key, its authority and the PCRs its approvals cover.
struct MidSetup {
    test::Swtpm swtpm;
    std::unique_ptr<Context> ctx = std::make_unique<Context>(swtpm.tcti());
    Srk srk = ensure_srk(*ctx);
    PolicyAuthority authority = PolicyAuthority::generate();
    PcrSelection sel = parse_pcr_selection("sha256:0,2,4,7");
    SecretBytes k = SecretBytes::from_hex("465b5ce8b199b49faa5f0a2ee238a6bc", "k");
    Bytes policy = PolicyDigest().authorize(authority.name(), kPolicyRef).value();

    struct Approval {
        PcrValues pcrs;
        Bytes approved;
        TPMT_SIGNATURE signature;
    };
    Approval approve_current(bool with_auth_value = false) {
        Approval a;
        a.pcrs = read_pcrs(*ctx, sel);
        PolicyDigest d;
        d.pcr(sel, pcr_composite_digest(a.pcrs));
        if (with_auth_value) {
            d.auth_value();
        }
        a.approved = d.value();
        a.signature = authority.sign_policy(a.approved, kPolicyRef);
        return a;
    }
    // E_K(x) through the TPM with a fresh policy session.
    Bytes aes(ESYS_TR key, const Approval& a, ByteView x, TicketCache* cache = nullptr,
              bool with_auth_value = false) {
        PolicySession s(*ctx);
        s.pcr(sel, pcr_composite_digest(a.pcrs));
        if (with_auth_value) {
            s.auth_value();
        }
        s.authorize(authority.tpm_public(), a.approved, kPolicyRef, a.signature, cache);
        const SecretBytes out =
            encrypt_decrypt(*ctx, key, s, CipherMode::Cfb, x, Bytes(16, 0), false);
        return {out.view().begin(), out.view().end()};
    }
};

TEST(MidKeyPolicy, WorksWithASignedApprovalAndAgainAfterANewOneForANewPlatformState) {
    MidSetup m;
    const ObjectBlobs blobs = create_aes_key(*m.ctx, m.srk.handle, m.k, {m.policy, {}, false});
    const Handle key = load_object(*m.ctx, m.srk.handle, blobs);
    const Bytes x = hex_decode("23553cbe9637a89d218ae64dae47bf35", "x");
    const Bytes want = openssl_aes128(m.k.view(), x);

    TicketCache cache;
    const MidSetup::Approval first = m.approve_current();
    EXPECT_EQ(m.aes(key, first, x, &cache), want);
    EXPECT_EQ(cache.size(), 1u);
    EXPECT_EQ(m.aes(key, first, x, &cache), want) << "with the cached ticket";

    // A platform change: PCR 7 moves. PolicyPCR with the approved values fails,
    // and the diff names the PCR.
    extend_pcr(*m.ctx, ESYS_TR_PCR7, 0x07);
    try {
        m.aes(key, first, x, &cache);
        FAIL() << "the key worked after PCR 7 changed";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is(TPM2_RC_VALUE)) << e.what();
        EXPECT_EQ(e.operation(), "TPM2_PolicyPCR");
    }
    const std::vector<unsigned> diff = differing_pcrs(*m.ctx, first.pcrs);
    EXPECT_THAT(diff, ElementsAre(7u));
    EXPECT_EQ(describe_pcr_difference(diff), "PCR 7 differs");

    // The current values with the old approval: PolicyAuthorize refuses (the
    // session digest is not the approved policy).
    {
        PolicySession s(*m.ctx);
        s.pcr(m.sel);
        try {
            s.authorize(m.authority.tpm_public(), first.approved, kPolicyRef, first.signature,
                        &cache);
            FAIL() << "an approval for other PCR values was accepted";
        } catch (const TpmError& e) {
            EXPECT_TRUE(e.is_policy_failure()) << e.what();
        }
    }

    // The authority approves the new state: the key works again.
    const MidSetup::Approval second = m.approve_current();
    EXPECT_NE(second.approved, first.approved);
    EXPECT_EQ(m.aes(key, second, x, &cache), want);
    EXPECT_THAT(differing_pcrs(*m.ctx, second.pcrs), testing::IsEmpty());
}

TEST(MidKeyPolicy, RefusesAnApprovalSignedByAnotherKey) {
    MidSetup m;
    const ObjectBlobs blobs = create_aes_key(*m.ctx, m.srk.handle, m.k, {m.policy, {}, false});
    const Handle key = load_object(*m.ctx, m.srk.handle, blobs);
    MidSetup::Approval forged = m.approve_current();
    const PolicyAuthority other = PolicyAuthority::generate();
    forged.signature = other.sign_policy(forged.approved, kPolicyRef);

    // Verified against the MID's authority: the signature does not verify.
    try {
        verify_policy_signature(*m.ctx, m.authority.tpm_public(), forged.approved, kPolicyRef,
                                forged.signature);
        FAIL() << "a signature by another key verified";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is(TPM2_RC_SIGNATURE)) << e.what();
    }
    EXPECT_FALSE(m.authority.verify_policy(forged.approved, kPolicyRef, forged.signature));

    // Verified against the other key itself: PolicyAuthorize succeeds, but the
    // session then holds PolicyAuthorize(other key), not the object's policy.
    PolicySession s(*m.ctx);
    s.pcr(m.sel, pcr_composite_digest(forged.pcrs));
    s.authorize(other.tpm_public(), forged.approved, kPolicyRef, forged.signature);
    try {
        encrypt_decrypt(*m.ctx, key, s, CipherMode::Cfb, Bytes(16, 1), Bytes(16, 0), false);
        FAIL() << "the key worked under another authority";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is_policy_failure()) << e.what();
    }
}

TEST(MidKeyPolicy, AcceptsTheRightAuthValueOnly) {
    MidSetup m;
    const SecretBytes pin_auth = SecretBytes::from_hex("31323334", "auth-value"); // "1234"
    const ObjectBlobs blobs =
        create_aes_key(*m.ctx, m.srk.handle, m.k, {m.policy, pin_auth, false});
    const Handle key = load_object(*m.ctx, m.srk.handle, blobs);
    const Bytes x(16, 0x5a);
    const MidSetup::Approval a = m.approve_current(true);

    set_auth_value(*m.ctx, key, pin_auth);
    EXPECT_EQ(m.aes(key, a, x, nullptr, true), openssl_aes128(m.k.view(), x));

    set_auth_value(*m.ctx, key, SecretBytes::from_hex("30303030", "auth-value"));
    try {
        m.aes(key, a, x, nullptr, true);
        FAIL() << "a wrong auth value was accepted";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is_auth_failure()) << e.what();
    }

    // An approval without PolicyAuthValue does not open a PIN-protected branch
    // unless the authority signed exactly that (here it did not: the session
    // digest differs from the approved policy).
    set_auth_value(*m.ctx, key, pin_auth);
    PolicySession s(*m.ctx);
    s.pcr(m.sel, pcr_composite_digest(a.pcrs));
    EXPECT_THROW(s.authorize(m.authority.tpm_public(), a.approved, kPolicyRef, a.signature),
                 TpmError);
}

TEST(MidKeyPolicy, TicketsFromTheOwnerHierarchySurviveAReboot) {
    MidSetup m;
    const ObjectBlobs blobs = create_aes_key(*m.ctx, m.srk.handle, m.k, {m.policy, {}, false});
    const MidSetup::Approval a = m.approve_current();
    const Bytes x(16, 0x11);
    const Bytes want = openssl_aes128(m.k.view(), x);
    TicketCache cache;
    {
        const Handle key = load_object(*m.ctx, m.srk.handle, blobs);
        EXPECT_EQ(m.aes(key, a, x, &cache), want);
    }
    const TPMT_TK_VERIFIED* t = cache.find(m.authority.name(), a.approved, kPolicyRef);
    ASSERT_NE(t, nullptr);
    const Bytes stored = marshal_ticket(*t);

    m.srk = Srk{};
    m.ctx.reset();
    m.swtpm.restart();
    m.ctx = std::make_unique<Context>(m.swtpm.tcti());
    m.srk = ensure_srk(*m.ctx);
    EXPECT_FALSE(m.srk.created);
    const Handle key = load_object(*m.ctx, m.srk.handle, blobs);

    TicketCache restored;
    restored.put(m.authority.name(), a.approved, kPolicyRef, unmarshal_ticket(stored, "ticket"));
    const CommandCounts before = m.ctx->counts();
    EXPECT_EQ(m.aes(key, a, x, &restored), want);
    const CommandCounts d = m.ctx->counts() - before;
    EXPECT_EQ(d.by_code.count(TPM2_CC_VerifySignature), 0u);
    EXPECT_EQ(d.by_code.count(TPM2_CC_LoadExternal), 0u);
    EXPECT_EQ(d.nv_writes, 0u);
}

TEST(MidKeyPolicy, AStaleCachedTicketIsReplacedByAFreshVerification) {
    MidSetup m;
    const Handle key = load_object(
        *m.ctx, m.srk.handle, create_aes_key(*m.ctx, m.srk.handle, m.k, {m.policy, {}, false}));
    const MidSetup::Approval a = m.approve_current();
    TicketCache cache;
    TPMT_TK_VERIFIED stale = verify_policy_signature(*m.ctx, m.authority.tpm_public(), a.approved,
                                                     kPolicyRef, a.signature);
    stale.digest.buffer[0] ^= 0x01; // as if made under another owner proof
    cache.put(m.authority.name(), a.approved, kPolicyRef, stale);
    {
        PolicySession s(*m.ctx);
        s.pcr(m.sel, pcr_composite_digest(a.pcrs));
        try {
            s.authorize(a.approved, kPolicyRef, m.authority.name(), stale);
            FAIL() << "a stale ticket was accepted";
        } catch (const TpmError& e) {
            // TPM_RC_VALUE on parameter 4, checkTicket.
            EXPECT_EQ(e.rc() & 0xfff, TPM2_RC_VALUE | TPM2_RC_P | TPM2_RC_4) << e.what();
        }
    }
    const Bytes x(16, 0x77);
    EXPECT_EQ(m.aes(key, a, x, &cache), openssl_aes128(m.k.view(), x));
    const TPMT_TK_VERIFIED* fresh = cache.find(m.authority.name(), a.approved, kPolicyRef);
    ASSERT_NE(fresh, nullptr);
    EXPECT_NE(marshal_ticket(*fresh), marshal_ticket(stale));
}

} // namespace
