// The ESAPI context, the counting TCTI and the capability probe on swtpm.

#include <cstring>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "swtpm.hpp"
#include "tpm/capabilities.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"

namespace {

using namespace tresim;
using namespace tresim::tpm;

TEST(TpmContext, OpensOnASoftwareTpmAndCountsCommands) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const CommandCounts before = ctx.counts();
    TPM2B_DIGEST* random = nullptr;
    check(Esys_GetRandom(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 16, &random), "GetRandom");
    Esys_Free(random);
    const CommandCounts d = ctx.counts() - before;
    EXPECT_EQ(d.commands, 1u);
    EXPECT_EQ(d.nv_writes, 0u);
    EXPECT_EQ(d.by_code.at(TPM2_CC_GetRandom), 1u);
}

TEST(TpmContext, FailsWithAClearErrorWhenNoTpmAnswers) {
    try {
        Context ctx("swtpm:host=127.0.0.1,port=1");
        FAIL() << "a context opened on a closed port";
    } catch (const TpmError& e) {
        EXPECT_THAT(e.what(), testing::HasSubstr("TCTI"));
    }
}

TEST(TpmErrorDecoding, MasksParameterNumbersForComparison) {
    // TPM2_RC_SIZE on parameter 4 (0x4d5) is still TPM2_RC_SIZE.
    const TpmError e("op", 0x4d5);
    EXPECT_TRUE(e.is(TPM2_RC_SIZE));
    EXPECT_FALSE(e.is(TPM2_RC_VALUE));
    EXPECT_THAT(e.what(), testing::HasSubstr("op: "));
    EXPECT_TRUE(TpmError("x", 0x98e).is_auth_failure()); // AUTH_FAIL on session 1
    EXPECT_TRUE(TpmError("x", TPM2_RC_LOCKOUT).is_lockout());
}

TEST(Capabilities, ProbeReportsSwtpmFacts) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Capabilities c = probe(ctx);
    EXPECT_EQ(c.manufacturer, "IBM");
    EXPECT_TRUE(c.encrypt_decrypt2);
    EXPECT_TRUE(c.aes);
    EXPECT_TRUE(c.cfb);
    EXPECT_TRUE(c.ecb);
    EXPECT_GE(c.transient_slots, 3u);
    ASSERT_FALSE(c.pcr_banks.empty());
    bool sha256 = false;
    for (const auto& b : c.pcr_banks) {
        if (b.name == "sha256") {
            sha256 = true;
            EXPECT_EQ(b.pcrs.size(), 24u);
        }
    }
    EXPECT_TRUE(sha256);
    EXPECT_THAT(c.summary(), testing::HasSubstr("IBM"));
}

TEST(Swtpm, ComesWithEkCertificatesInNv) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    // The RSA EK certificate index of the TCG EK credential profile.
    ESYS_TR nv = ESYS_TR_NONE;
    check(Esys_TR_FromTPMPublic(ctx, 0x01c00002, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv),
          "TR_FromTPMPublic(0x01c00002)");
    TPM2B_NV_PUBLIC* pub = nullptr;
    TPM2B_NAME* name = nullptr;
    check(Esys_NV_ReadPublic(ctx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name),
          "NV_ReadPublic");
    EXPECT_GT(pub->nvPublic.dataSize, 500u);
    Esys_Free(pub);
    Esys_Free(name);
    Esys_TR_Close(ctx, &nv);
}

} // namespace

#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using namespace tresim::tpm;

TEST(Srk, IsCreatedAndPersistedOnceThenReused) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const Srk first = ensure_srk(ctx);
    EXPECT_TRUE(first.created);
    EXPECT_TRUE(matches_srk_template(first.pub.publicArea));
    EXPECT_EQ(first.pub.publicArea.unique.ecc.x.size, 32);
    const Srk again = ensure_srk(ctx);
    EXPECT_FALSE(again.created);
    ASSERT_EQ(again.name.size, first.name.size);
    EXPECT_EQ(0, std::memcmp(again.name.name, first.name.name, first.name.size));
}

TEST(Srk, RefusesAForeignKeyAtTheSrkHandle) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    // Someone persisted a key with another template (here: without noDA).
    TPM2B_PUBLIC other = srk_template();
    other.publicArea.objectAttributes &= ~TPMA_OBJECT_NODA;
    const TPM2B_SENSITIVE_CREATE sensitive{};
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    ESYS_TR key = ESYS_TR_NONE;
    TPM2B_PUBLIC* p = nullptr;
    TPM2B_CREATION_DATA* cd = nullptr;
    TPM2B_DIGEST* ch = nullptr;
    TPMT_TK_CREATION* tk = nullptr;
    check(Esys_CreatePrimary(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                             &sensitive, &other, &outside, &no_pcrs, &key, &p, &cd, &ch, &tk),
          "CreatePrimary");
    Esys_Free(p);
    Esys_Free(cd);
    Esys_Free(ch);
    Esys_Free(tk);
    ESYS_TR persistent = ESYS_TR_NONE;
    check(Esys_EvictControl(ctx, ESYS_TR_RH_OWNER, key, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE, kSrkHandle, &persistent),
          "EvictControl");
    Esys_FlushContext(ctx, key);
    Esys_TR_Close(ctx, &persistent);
    EXPECT_THROW(ensure_srk(ctx), SrkMismatch);
}

} // namespace
