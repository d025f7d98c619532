// Objects and sessions that a killed process left in a raw TPM (no resource
// manager): the next context finds them with TPM2_GetCapability and flushes
// them, so that it can load its own objects again.

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "swtpm.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"
#include "tpm/srk.hpp"
#include "tpm/stale.hpp"

namespace {

using namespace tresim;
using namespace tresim::tpm;

// A transient ECC primary in the null hierarchy (the TPM holds three at most).
TSS2_RC try_create_primary(Context& ctx, ESYS_TR* out) {
    const TPM2B_SENSITIVE_CREATE sensitive{};
    const TPM2B_PUBLIC pub = srk_template();
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION pcrs{};
    TPM2B_PUBLIC* out_public = nullptr;
    TPM2B_CREATION_DATA* creation_data = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    const TSS2_RC rc = Esys_CreatePrimary(ctx, ESYS_TR_RH_NULL, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                          ESYS_TR_NONE, &sensitive, &pub, &outside, &pcrs, out,
                                          &out_public, &creation_data, &creation_hash, &ticket);
    Esys_Free(out_public);
    Esys_Free(creation_data);
    Esys_Free(creation_hash);
    Esys_Free(ticket);
    return rc;
}

ESYS_TR create_primary(Context& ctx) {
    ESYS_TR tr = ESYS_TR_NONE;
    check(try_create_primary(ctx, &tr), "TPM2_CreatePrimary");
    return tr;
}

ESYS_TR start_session(Context& ctx, TPM2_SE type) {
    const TPMT_SYM_DEF symmetric{.algorithm = TPM2_ALG_NULL, .keyBits = {}, .mode = {}};
    ESYS_TR session = ESYS_TR_NONE;
    check(Esys_StartAuthSession(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                ESYS_TR_NONE, nullptr, type, &symmetric, TPM2_ALG_SHA256, &session),
          "TPM2_StartAuthSession");
    return session;
}

// Fills every transient slot, starts an HMAC and a policy session and a third
// session that is context-saved, then forgets all of them without a flush.
void abandon_objects_and_sessions(Context& ctx) {
    for (int i = 0; i < 3; ++i) {
        create_primary(ctx);
    }
    start_session(ctx, TPM2_SE_HMAC);
    start_session(ctx, TPM2_SE_POLICY);
    const ESYS_TR saved = start_session(ctx, TPM2_SE_HMAC);
    TPMS_CONTEXT* blob = nullptr;
    check(Esys_ContextSave(ctx, saved, &blob), "TPM2_ContextSave");
    Esys_Free(blob);
}

void expect_three_objects_and_sessions_fit(Context& ctx) {
    for (int i = 0; i < 3; ++i) {
        Esys_FlushContext(ctx, start_session(ctx, TPM2_SE_HMAC));
    }
    ESYS_TR objects[3];
    for (ESYS_TR& object : objects) {
        object = create_primary(ctx);
    }
    for (const ESYS_TR object : objects) {
        Esys_FlushContext(ctx, object);
    }
}

TEST(TctiIsRawTpm, TrustsOnlyTctisThatCertainlyHaveNoResourceManager) {
    EXPECT_TRUE(tcti_is_raw_tpm("swtpm:host=127.0.0.1,port=2321"));
    EXPECT_TRUE(tcti_is_raw_tpm("swtpm"));
    EXPECT_TRUE(tcti_is_raw_tpm("mssim:host=localhost,port=2321"));
    EXPECT_TRUE(tcti_is_raw_tpm("libtss2-tcti-swtpm.so.0:port=2321"));
    EXPECT_TRUE(tcti_is_raw_tpm("device:/dev/tpm0"));
    EXPECT_TRUE(tcti_is_raw_tpm("device:/dev/tpm1"));

    EXPECT_FALSE(tcti_is_raw_tpm("device:/dev/tpmrm0"));
    EXPECT_FALSE(tcti_is_raw_tpm("libtss2-tcti-device.so.0:/dev/tpmrm0"));
    EXPECT_FALSE(tcti_is_raw_tpm("device"));  // the loader tries /dev/tpmrm0 first
    EXPECT_FALSE(tcti_is_raw_tpm("device:")); // likewise
    EXPECT_FALSE(tcti_is_raw_tpm("device:/tmp/tpm0"));
    EXPECT_FALSE(tcti_is_raw_tpm("tabrmd"));
    EXPECT_FALSE(tcti_is_raw_tpm("tabrmd:bus_type=session"));
    EXPECT_FALSE(tcti_is_raw_tpm(""));
    EXPECT_FALSE(tcti_is_raw_tpm("cmd:tpm2_send"));
    EXPECT_FALSE(tcti_is_raw_tpm("pcap:swtpm"));
    EXPECT_FALSE(tcti_is_raw_tpm("swtpmx:port=1"));
}

TEST(StaleHandles, AFreshTpmHasNothingToFlush) {
    test::Swtpm swtpm;
    Context ctx(swtpm.tcti());
    const StaleFlush flushed = flush_stale_handles(ctx);
    EXPECT_EQ(flushed.total(), 0u);
    expect_three_objects_and_sessions_fit(ctx);
}

TEST(StaleHandles, ObjectsAndSessionsOfAnAbandonedContextAreFlushedByTheNext) {
    test::Swtpm swtpm;
    {
        Context ctx(swtpm.tcti());
        abandon_objects_and_sessions(ctx);
    }
    Context ctx(swtpm.tcti());
    ESYS_TR none = ESYS_TR_NONE;
    EXPECT_TRUE(TpmError("x", try_create_primary(ctx, &none)).is(TPM2_RC_OBJECT_MEMORY))
        << "the abandoned objects should still fill the TPM";

    const StaleFlush flushed = flush_stale_handles(ctx);
    EXPECT_EQ(flushed.objects, 3u);
    EXPECT_EQ(flushed.sessions, 3u);
    expect_three_objects_and_sessions_fit(ctx);
    EXPECT_EQ(flush_stale_handles(ctx).total(), 0u);
}

TEST(StaleHandles, WhatAProcessKilledWithSigkillLeftIsFlushedOnRestart) {
    test::Swtpm swtpm;
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        try {
            Context ctx(swtpm.tcti());
            abandon_objects_and_sessions(ctx);
            raise(SIGKILL);
        } catch (...) {
        }
        _exit(1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;

    Context ctx(swtpm.tcti());
    const StaleFlush flushed = flush_stale_handles(ctx);
    EXPECT_EQ(flushed.objects, 3u);
    EXPECT_EQ(flushed.sessions, 3u);
    expect_three_objects_and_sessions_fit(ctx);
}

} // namespace
