// The NV counter (state epoch), the policy-delete protected extend index
// (audit chain) with NV_Certify, and the TPM-resident HMAC key, on swtpm.
//
// Measured on swtpm 0.7 (libtpms), and asserted below so a change shows:
// - An orderly counter killed without TPM2_Shutdown comes back as
//   value | 0xff (TPM2_PT_ORDERLY_COUNT): forward by at most 255, never back;
//   a second kill without increments does not move it again; the next
//   increment lands on a multiple of 256.
// - TPM2_Shutdown(STATE) or (CLEAR) before the kill keeps the exact value;
//   an increment after the Shutdown cancels that (the kill jumps again).
// - A non-orderly counter never jumps.
// - TPMA_NV_POLICY_DELETE needs a platform-created index; owner and platform
//   TPM2_NV_UndefineSpace are refused, only TPM2_NV_UndefineSpaceSpecial
//   (platform auth + PolicyCommandCode session) deletes it.

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <tss2/tss2_mu.h>

#include "swtpm.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"
#include "tpm/handles.hpp"
#include "tpm/hmac.hpp"
#include "tpm/nv.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using namespace tresim::tpm;

SecretBytes secret(std::string_view text) {
    return SecretBytes(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

Bytes bytes(std::string_view text) {
    return Bytes(text.begin(), text.end());
}

std::string hex(ByteView b) {
    return hex_encode(b);
}

std::string hex(const TPM2B_NAME& n) {
    return hex_encode(ByteView(n.name, n.size));
}

void shutdown(Context& ctx, TPM2_SU type) {
    check(Esys_Shutdown(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, type), "TPM2_Shutdown");
}

// A restricted ECC P-256 signing key (the AK's shape, DESIGN.md §2) under the SRK.
struct SigningKey {
    Handle handle;
    TPMT_PUBLIC pub{};
};

SigningKey create_signing_key(Context& ctx, ESYS_TR parent) {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.type = TPM2_ALG_ECC;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                         TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                         TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    const TPM2B_SENSITIVE_CREATE sensitive{};
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    TPM2B_PRIVATE* priv = nullptr;
    TPM2B_PUBLIC* pub = nullptr;
    TPM2B_CREATION_DATA* cd = nullptr;
    TPM2B_DIGEST* ch = nullptr;
    TPMT_TK_CREATION* tk = nullptr;
    check(Esys_Create(ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &t,
                      &outside, &no_pcrs, &priv, &pub, &cd, &ch, &tk),
          "TPM2_Create(signing key)");
    const EsysPtr<TPM2B_PRIVATE> o1(priv);
    const EsysPtr<TPM2B_PUBLIC> o2(pub);
    const EsysPtr<TPM2B_CREATION_DATA> o3(cd);
    const EsysPtr<TPM2B_DIGEST> o4(ch);
    const EsysPtr<TPMT_TK_CREATION> o5(tk);
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_Load(ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &tr),
          "TPM2_Load(signing key)");
    return {Handle::transient(ctx, tr), pub->publicArea};
}

// Asks the TPM directly (an ESYS_TR would be shared with the object under test).
bool index_exists(Context& ctx, TPM2_HANDLE index) {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA* data = nullptr;
    check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, index,
                             1, &more, &data),
          "TPM2_GetCapability(handles)");
    const EsysPtr<TPMS_CAPABILITY_DATA> owner(data);
    return data->data.handles.count == 1 && data->data.handles.handle[0] == index;
}

// ---- The counter ---------------------------------------------------------------

TEST(TpmNvCounter, IsDefinedOnceThenReadAndIncrementedWithOneNvWriteEach) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const SecretBytes auth = secret("epoch-read-auth");

    CommandCounts before = ctx.counts();
    NvCounter counter = NvCounter::open_or_define(ctx, auth);
    CommandCounts d = ctx.counts() - before;
    EXPECT_TRUE(counter.created());
    EXPECT_EQ(counter.index(), kDefaultEpochCounterIndex);
    EXPECT_EQ(d.nv_writes, 1u);
    EXPECT_EQ(d.by_code[TPM2_CC_NV_DefineSpace], 1u);

    before = ctx.counts();
    EXPECT_EQ(counter.read(), std::nullopt) << "a counter never incremented has no value";
    EXPECT_EQ((ctx.counts() - before).commands, 1u);

    before = ctx.counts();
    counter.increment();
    d = ctx.counts() - before;
    EXPECT_EQ(d.commands, 1u);
    EXPECT_EQ(d.nv_writes, 1u);
    EXPECT_EQ(d.by_code[TPM2_CC_NV_Increment], 1u);

    before = ctx.counts();
    const std::optional<std::uint64_t> first = counter.read();
    d = ctx.counts() - before;
    EXPECT_EQ(d.commands, 1u);
    EXPECT_EQ(d.nv_writes, 0u);
    ASSERT_TRUE(first.has_value());
    // A fresh TPM's highest counter so far is 0, so the first increment gives 1.
    EXPECT_EQ(*first, 1u);
    for (int i = 0; i < 4; ++i) {
        before = ctx.counts();
        counter.increment();
        EXPECT_EQ((ctx.counts() - before).nv_writes, 1u);
    }
    EXPECT_EQ(counter.read(), *first + 4);

    // Opening it again: no definition, no NV write, same value.
    before = ctx.counts();
    NvCounter again = NvCounter::open_or_define(ctx, auth);
    d = ctx.counts() - before;
    EXPECT_FALSE(again.created());
    EXPECT_EQ(d.nv_writes, 0u);
    EXPECT_EQ(d.commands, 2u); // NV_ReadPublic for the ESYS_TR, NV_ReadPublic to verify
    EXPECT_EQ(again.read(), *first + 4);

    // The software name of the template (with WRITTEN) is the TPM's name.
    TPM2B_NV_PUBLIC expected = counter_template(kDefaultEpochCounterIndex);
    expected.nvPublic.attributes |= TPMA_NV_WRITTEN;
    EXPECT_EQ(hex(nv_name(expected.nvPublic)), hex(again.name()));
}

TEST(TpmNvCounter, ReadingNeedsTheAuthValue) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    NvCounter counter = NvCounter::open_or_define(ctx, secret("right"));
    counter.increment();
    NvCounter wrong = NvCounter::open_or_define(ctx, secret("wrong"));
    try {
        (void)wrong.read();
        FAIL() << "read with a wrong auth value";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is_auth_failure()) << e.what();
    }
    EXPECT_THROW(NvCounter::open_or_define(ctx, SecretBytes(33)), InvalidArgument);
}

TEST(TpmNvCounter, JumpsForwardToTheLastValueBeforeTheNextMultipleOf256WhenKilled) {
    test::Swtpm swtpm;
    const SecretBytes auth = secret("epoch");
    std::uint64_t v = 0;
    {
        Context ctx(swtpm.tcti());
        EXPECT_EQ(orderly_count(ctx), 0xffu);
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        for (int i = 0; i < 5; ++i) {
            c.increment();
        }
        v = c.read().value();
        EXPECT_EQ(v, 5u);
    }
    swtpm.restart(); // a kill: no TPM2_Shutdown
    std::uint64_t after = 0;
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        after = c.read().value();
        EXPECT_GE(after, v) << "an orderly counter must never go back";
        EXPECT_EQ(after, v | orderly_count(ctx)); // 5 -> 0xff
        EXPECT_LE(after - v, orderly_count(ctx));
    }
    swtpm.restart(); // a second kill without increments does not move it
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        EXPECT_EQ(c.read(), after);
        c.increment();
        EXPECT_EQ(c.read(), 0x100u); // the increment that makes the TPM write NV
        c.increment();
        c.increment();
        EXPECT_EQ(c.read(), 0x102u);
    }
    swtpm.restart();
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        EXPECT_EQ(c.read(), 0x1ffu);
    }
}

TEST(TpmNvCounter, KeepsItsExactValueAcrossAnOrderlyShutdown) {
    test::Swtpm swtpm;
    const SecretBytes auth = secret("epoch");
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        for (int i = 0; i < 3; ++i) {
            c.increment();
        }
        shutdown(ctx, TPM2_SU_STATE);
        EXPECT_EQ(c.read(), 3u); // a read after the Shutdown does not cancel it
    }
    swtpm.restart();
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        EXPECT_EQ(c.read(), 3u) << "Shutdown(STATE) saved the exact value";
        c.increment();
        shutdown(ctx, TPM2_SU_CLEAR); // what the Linux kernel sends on a clean reboot
    }
    swtpm.restart();
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        EXPECT_EQ(c.read(), 4u) << "Shutdown(CLEAR) saved the exact value";
        shutdown(ctx, TPM2_SU_STATE);
        c.increment(); // a change after the Shutdown cancels its effect
        EXPECT_EQ(c.read(), 5u);
    }
    swtpm.restart();
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth);
        EXPECT_EQ(c.read(), 0xffu);
    }
}

TEST(TpmNvCounter, ANonOrderlyCounterNeverJumps) {
    test::Swtpm swtpm;
    const SecretBytes auth = secret("epoch");
    {
        Context ctx(swtpm.tcti());
        NvCounter c = NvCounter::open_or_define(ctx, auth, 0x01500200, false);
        for (int i = 0; i < 3; ++i) {
            c.increment();
        }
    }
    swtpm.restart();
    Context ctx(swtpm.tcti());
    NvCounter c = NvCounter::open_or_define(ctx, auth, 0x01500200, false);
    EXPECT_EQ(c.read(), 3u);
}

TEST(TpmNvCounter, RefusesAnExistingIndexWithOtherAttributes) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const SecretBytes auth = secret("epoch");
    (void)NvCounter::open_or_define(ctx, auth, kDefaultEpochCounterIndex, false);
    EXPECT_THROW(NvCounter::open_or_define(ctx, auth, kDefaultEpochCounterIndex, true), NvMismatch);

    // An ordinary owner index where the audit index belongs.
    TPM2B_NV_PUBLIC ordinary{};
    ordinary.nvPublic.nvIndex = kDefaultAuditIndex;
    ordinary.nvPublic.nameAlg = TPM2_ALG_SHA256;
    ordinary.nvPublic.attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD |
                                   TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA;
    ordinary.nvPublic.dataSize = 32;
    const TPM2B_AUTH empty{};
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                              &empty, &ordinary, &tr),
          "define ordinary index");
    Esys_TR_Close(ctx, &tr);
    EXPECT_THROW(NvExtendIndex::open_or_define(ctx, auth), NvMismatch);
    EXPECT_THROW(NvCounter::open_or_define(ctx, auth, kDefaultAuditIndex), NvMismatch);
}

// ---- The audit extend index -------------------------------------------------------

TEST(TpmNvExtend, DeleteOnlyPolicyMatchesWhatTheTpmComputes) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    TPMT_SYM_DEF no_cipher{};
    no_cipher.algorithm = TPM2_ALG_NULL;
    ESYS_TR s = ESYS_TR_NONE;
    check(Esys_StartAuthSession(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                ESYS_TR_NONE, nullptr, TPM2_SE_TRIAL, &no_cipher, TPM2_ALG_SHA256,
                                &s),
          "trial session");
    const Handle trial = Handle::session(ctx, s);
    check(Esys_PolicyCommandCode(ctx, s, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                 TPM2_CC_NV_UndefineSpaceSpecial),
          "PolicyCommandCode");
    TPM2B_DIGEST* digest = nullptr;
    check(Esys_PolicyGetDigest(ctx, s, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &digest),
          "PolicyGetDigest");
    const EsysPtr<TPM2B_DIGEST> owner(digest);
    const Sha256Digest soft = undefine_special_policy();
    EXPECT_EQ(hex(ByteView(digest->buffer, digest->size)), hex(soft));
    // Also printed by tpm2_policycommandcode and by python hashlib.
    EXPECT_EQ(hex(soft), "1d2dc485e177ddd0a40a344913ceeb420caa093c42587d2e1b132b157ccb5db0");
}

TEST(TpmNvExtend, ChainEqualsTheSoftwareChainWithOneNvWritePerExtend) {
    test::Swtpm swtpm;
    const SecretBytes auth = secret("audit-auth");
    Sha256Digest chain{};
    {
        Context ctx(swtpm.tcti());
        CommandCounts before = ctx.counts();
        NvExtendIndex audit = NvExtendIndex::open_or_define(ctx, auth);
        CommandCounts d = ctx.counts() - before;
        EXPECT_TRUE(audit.created());
        EXPECT_EQ(d.nv_writes, 1u);
        EXPECT_EQ(audit.read(), chain) << "never extended reads as zero";

        const std::vector<Bytes> records = {bytes("hello"), Bytes(32, 0xa5), Bytes(1024, 0x01),
                                            Bytes(1, 0x00)};
        for (const Bytes& r : records) {
            before = ctx.counts();
            audit.extend(r);
            d = ctx.counts() - before;
            EXPECT_EQ(d.commands, 1u);
            EXPECT_EQ(d.nv_writes, 1u);
            EXPECT_EQ(d.by_code[TPM2_CC_NV_Extend], 1u);
            chain = extend_chain(chain, r);
            if (&r == &records.front()) {
                // SHA256(0^32 || "hello"), from python hashlib and tpm2_nvextend.
                EXPECT_EQ(hex(chain),
                          "a41de667c15557cbd8acdd71ef0fef5dc73561374baed8330f8adb0e1424cd62");
            }
            before = ctx.counts();
            EXPECT_EQ(hex(audit.read()), hex(chain));
            EXPECT_EQ((ctx.counts() - before).commands, 1u);
        }
        EXPECT_THROW(audit.extend(Bytes(1025, 0)), InvalidArgument);
        EXPECT_THROW(audit.extend(Bytes{}), InvalidArgument);

        const TPMS_NV_PUBLIC pub = audit.read_public();
        EXPECT_TRUE(matches_template(pub, extend_index_template(kDefaultAuditIndex).nvPublic));
        EXPECT_NE(pub.attributes & TPMA_NV_WRITTEN, 0u);
        EXPECT_NE(pub.attributes & TPMA_NV_POLICY_DELETE, 0u);
        EXPECT_EQ(hex(nv_name(pub)), hex(audit.name()));
    }
    swtpm.restart(); // not orderly: every extend is already in NV
    Context ctx(swtpm.tcti());
    NvExtendIndex audit = NvExtendIndex::open_or_define(ctx, auth);
    EXPECT_FALSE(audit.created());
    EXPECT_EQ(hex(audit.read()), hex(chain));
}

TEST(TpmNvExtend, CertificationVerifiesOnlyWithTheRightNonceAndContents) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Srk srk = ensure_srk(ctx);
    const SigningKey ak = create_signing_key(ctx, srk.handle);
    NvExtendIndex audit = NvExtendIndex::open_or_define(ctx, secret("audit-auth"));
    audit.extend(bytes("record 1"));
    audit.extend(bytes("record 2"));
    const Sha256Digest value = audit.read();
    const TPM2B_NAME name = nv_name(audit.read_public());
    const Bytes nonce = hex_decode("00112233445566778899aabbccddeeff", "nonce");

    const CommandCounts before = ctx.counts();
    const NvCertification c = audit.certify(ak.handle, nonce);
    const CommandCounts d = ctx.counts() - before;
    EXPECT_EQ(d.commands, 1u);
    EXPECT_EQ(d.nv_writes, 0u);

    const TPMS_ATTEST a = verify_nv_certification(c, ak.pub, nonce, name, value);
    EXPECT_EQ(a.type, TPM2_ST_ATTEST_NV);
    EXPECT_EQ(a.attested.nv.nvContents.size, 32u);

    const auto refused = [&](const NvCertification& cc, const TPMT_PUBLIC& signer, ByteView n,
                             const TPM2B_NAME& nm, ByteView contents, std::uint16_t offset,
                             const char* why) {
        try {
            (void)verify_nv_certification(cc, signer, n, nm, contents, offset);
            ADD_FAILURE() << "accepted: " << why;
        } catch (const NvAttestationInvalid& e) {
            SCOPED_TRACE(why);
            EXPECT_GT(std::strlen(e.what()), 0u);
        }
    };
    Bytes wrong_nonce = nonce;
    wrong_nonce[0] ^= 1;
    refused(c, ak.pub, wrong_nonce, name, value, 0, "wrong nonce");
    Sha256Digest other_value = value;
    other_value[31] ^= 1;
    refused(c, ak.pub, nonce, name, other_value, 0, "other contents");
    refused(c, ak.pub, nonce, name, value, 1, "other offset");
    TPM2B_NAME other_name = name;
    other_name.name[5] ^= 1;
    refused(c, ak.pub, nonce, other_name, value, 0, "other index name");

    // Tampered signed data: the last bytes of the attestation are the contents.
    NvCertification tampered = c;
    tampered.attest.back() ^= 1;
    Sha256Digest tampered_value = value;
    tampered_value[31] ^= 1;
    refused(tampered, ak.pub, nonce, name, tampered_value, 0, "tampered attestation");
    NvCertification bad_sig = c;
    bad_sig.signature[bad_sig.signature.size() - 1] ^= 1;
    refused(bad_sig, ak.pub, nonce, name, value, 0, "tampered signature");

    const SigningKey other = create_signing_key(ctx, srk.handle);
    refused(c, other.pub, nonce, name, value, 0, "another signing key");
    TPMT_PUBLIC unrestricted = ak.pub;
    unrestricted.objectAttributes &= ~TPMA_OBJECT_RESTRICTED;
    refused(c, unrestricted, nonce, name, value, 0, "unrestricted signer");
}

TEST(TpmNvExtend, CannotBeDeletedWithOwnerOrPlatformUndefineSpace) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const SecretBytes auth = secret("audit-auth");

    // POLICY_DELETE on an owner-defined index is refused by the TPM.
    TPM2B_NV_PUBLIC owner_pub = extend_index_template(0x01500300);
    owner_pub.nvPublic.attributes &= ~TPMA_NV_PLATFORMCREATE;
    const TPM2B_AUTH empty{};
    ESYS_TR tr = ESYS_TR_NONE;
    const TSS2_RC define_rc =
        Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                            &empty, &owner_pub, &tr);
    EXPECT_TRUE(TpmError("", define_rc).is(TPM2_RC_ATTRIBUTES)) << decode(define_rc);

    NvExtendIndex audit = NvExtendIndex::open_or_define(ctx, auth);
    audit.extend(bytes("record"));
    for (const ESYS_TR hierarchy : {ESYS_TR_RH_OWNER, ESYS_TR_RH_PLATFORM}) {
        const TSS2_RC rc = Esys_NV_UndefineSpace(ctx, hierarchy, audit.handle(), ESYS_TR_PASSWORD,
                                                 ESYS_TR_NONE, ESYS_TR_NONE);
        ASSERT_NE(rc, TSS2_RC_SUCCESS);
        const TpmError e("", rc);
        // TPMA_NV_POLICY_DELETE is checked first, whoever authorizes.
        EXPECT_TRUE(e.is(TPM2_RC_ATTRIBUTES)) << e.what();
        EXPECT_EQ(hex(audit.read()), hex(extend_chain(Sha256Digest{}, bytes("record"))));
    }
    EXPECT_TRUE(index_exists(ctx, kDefaultAuditIndex));

    const CommandCounts before = ctx.counts();
    audit.undefine_special();
    const CommandCounts d = ctx.counts() - before;
    EXPECT_EQ(d.commands, 3u); // StartAuthSession, PolicyCommandCode, NV_UndefineSpaceSpecial
    EXPECT_EQ(d.nv_writes, 1u);
    EXPECT_FALSE(index_exists(ctx, kDefaultAuditIndex));
}

TEST(TpmNvExtend, NeedsThePlatformHierarchyToBeDefined) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    // What PC firmware does before the OS runs.
    check(Esys_HierarchyControl(ctx, ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, ESYS_TR_RH_PLATFORM, TPM2_NO),
          "disable platform hierarchy");
    EXPECT_THROW(NvExtendIndex::open_or_define(ctx, secret("audit")), NvPlatformUnavailable);
    // The owner counter does not depend on it.
    NvCounter c = NvCounter::open_or_define(ctx, secret("epoch"));
    c.increment();
    EXPECT_EQ(c.read(), 1u);
}

// ---- The HMAC key ------------------------------------------------------------------

TEST(TpmHmacKey, GivesTheSameMacAfterARestartAndAnotherForOtherData) {
    test::Swtpm swtpm;
    const SecretBytes auth = secret("hmac-auth");
    const Bytes data = bytes("database state, epoch 7");
    Bytes long_data(5000);
    for (std::size_t i = 0; i < long_data.size(); ++i) {
        long_data[i] = static_cast<std::uint8_t>(i * 7);
    }
    HmacKeyBlob blob;
    HmacSha256 mac{};
    HmacSha256 long_mac{};
    {
        Context ctx(swtpm.tcti());
        const Srk srk = ensure_srk(ctx);
        CommandCounts before = ctx.counts();
        blob = create_hmac_key(ctx, srk.handle, auth);
        EXPECT_EQ((ctx.counts() - before).nv_writes, 0u);
        HmacKey key = HmacKey::load(ctx, srk.handle, blob, auth);
        before = ctx.counts();
        mac = key.mac(data);
        CommandCounts d = ctx.counts() - before;
        EXPECT_EQ(d.commands, 1u);
        EXPECT_EQ(d.by_code[TPM2_CC_HMAC], 1u);
        EXPECT_EQ(d.nv_writes, 0u);
        before = ctx.counts();
        long_mac = key.mac(long_data);
        d = ctx.counts() - before;
        // 5000 = 4 * 1024 + 904: Start, 4 updates, Complete.
        EXPECT_EQ(d.by_code[TPM2_CC_HMAC_Start], 1u);
        EXPECT_EQ(d.by_code[TPM2_CC_SequenceUpdate], 4u);
        EXPECT_EQ(d.by_code[TPM2_CC_SequenceComplete], 1u);
        EXPECT_EQ(d.nv_writes, 0u);
        EXPECT_TRUE(key.verify(data, mac));
    }
    swtpm.restart();
    Context ctx(swtpm.tcti());
    const Srk srk = ensure_srk(ctx);
    HmacKey key = HmacKey::load(ctx, srk.handle, blob, auth);
    EXPECT_EQ(hex(key.mac(data)), hex(mac));
    EXPECT_EQ(hex(key.mac(long_data)), hex(long_mac));
    EXPECT_TRUE(key.verify(data, mac));
    EXPECT_TRUE(key.verify(long_data, long_mac));

    Bytes other = data;
    other.back() ^= 1;
    EXPECT_NE(hex(key.mac(other)), hex(mac));
    EXPECT_FALSE(key.verify(other, mac));
    HmacSha256 bad = mac;
    bad[0] ^= 0x80;
    EXPECT_FALSE(key.verify(data, bad));
    EXPECT_FALSE(key.verify(data, ByteView(mac.data(), 16)));

    // Another key, same data: another MAC.
    const HmacKeyBlob blob2 = create_hmac_key(ctx, srk.handle, auth);
    HmacKey key2 = HmacKey::load(ctx, srk.handle, blob2, auth);
    EXPECT_NE(hex(key2.mac(data)), hex(mac));
}

TEST(TpmHmacKey, RefusesAWrongAuthValueAndAForeignKey) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Srk srk = ensure_srk(ctx);
    const HmacKeyBlob blob = create_hmac_key(ctx, srk.handle, secret("right"));
    HmacKey wrong = HmacKey::load(ctx, srk.handle, blob, secret("wrong"));
    try {
        (void)wrong.mac(bytes("x"));
        FAIL() << "HMAC with a wrong auth value";
    } catch (const TpmError& e) {
        EXPECT_TRUE(e.is_auth_failure()) << e.what();
    }

    HmacKeyBlob garbled = blob;
    garbled.public_blob.pop_back();
    EXPECT_THROW(HmacKey::load(ctx, srk.handle, garbled, secret("right")), InvalidArgument);
}

// A key whose bits we chose (not sensitiveDataOrigin), to compare the TPM's
// HMAC, single command and sequence, with OpenSSL's.
TEST(TpmHmacKey, ComputesStandardHmacSha256InOneCommandOrASequence) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Srk srk = ensure_srk(ctx);
    const Bytes k =
        hex_decode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "k");
    TPM2B_PUBLIC t = hmac_key_template();
    t.publicArea.objectAttributes &= ~TPMA_OBJECT_SENSITIVEDATAORIGIN;
    TPM2B_SENSITIVE_CREATE sensitive{};
    sensitive.sensitive.data.size = static_cast<UINT16>(k.size());
    std::memcpy(sensitive.sensitive.data.buffer, k.data(), k.size());
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    TPM2B_PRIVATE* priv = nullptr;
    TPM2B_PUBLIC* pub = nullptr;
    TPM2B_CREATION_DATA* cd = nullptr;
    TPM2B_DIGEST* ch = nullptr;
    TPMT_TK_CREATION* tk = nullptr;
    check(Esys_Create(ctx, srk.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &t,
                      &outside, &no_pcrs, &priv, &pub, &cd, &ch, &tk),
          "TPM2_Create(known HMAC key)");
    const EsysPtr<TPM2B_PRIVATE> o1(priv);
    const EsysPtr<TPM2B_PUBLIC> o2(pub);
    const EsysPtr<TPM2B_CREATION_DATA> o3(cd);
    const EsysPtr<TPM2B_DIGEST> o4(ch);
    const EsysPtr<TPMT_TK_CREATION> o5(tk);
    ESYS_TR tr = ESYS_TR_NONE;
    check(Esys_Load(ctx, srk.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &tr),
          "TPM2_Load(known HMAC key)");
    const Handle key = Handle::transient(ctx, tr);

    for (const std::size_t n : {0u, 1u, 1023u, 1024u, 1025u, 2048u, 2049u, 3000u}) {
        Bytes data(n);
        for (std::size_t i = 0; i < n; ++i) {
            data[i] = static_cast<std::uint8_t>(i ^ (i >> 8));
        }
        std::uint8_t expected[32];
        unsigned int len = 0;
        ASSERT_NE(HMAC(EVP_sha256(), k.data(), static_cast<int>(k.size()), data.data(), data.size(),
                       expected, &len),
                  nullptr);
        ASSERT_EQ(len, 32u);
        const HmacSha256 got = tpm_hmac_sha256(ctx, key, data);
        EXPECT_EQ(hex(got), hex(ByteView(expected, 32))) << "length " << n;
    }

    // The stored-blob loader refuses a key whose bits are known outside the TPM.
    std::vector<std::uint8_t> pub_blob(sizeof(TPM2B_PUBLIC));
    std::vector<std::uint8_t> priv_blob(sizeof(TPM2B_PRIVATE));
    std::size_t pl = 0;
    std::size_t vl = 0;
    check(Tss2_MU_TPM2B_PUBLIC_Marshal(pub, pub_blob.data(), pub_blob.size(), &pl), "marshal");
    check(Tss2_MU_TPM2B_PRIVATE_Marshal(priv, priv_blob.data(), priv_blob.size(), &vl), "marshal");
    pub_blob.resize(pl);
    priv_blob.resize(vl);
    EXPECT_THROW(HmacKey::load(ctx, srk.handle, {pub_blob, priv_blob}, SecretBytes()),
                 HmacKeyMismatch);
}

} // namespace
