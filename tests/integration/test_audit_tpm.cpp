// The audit record anchored in swtpm's NV extend index: one NV write per
// record, verify against the NV value, detection of altered and restored
// databases, recovery of a crash between commit and extend, NV_Certify by the
// AK checked in software, and the owner-index fallback when the platform
// hierarchy is disabled.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "swtpm.hpp"
#include "te/audit.hpp"
#include "te/db.hpp"
#include "te/errors.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"
#include "tpm/keys.hpp"
#include "tpm/nv.hpp"
#include "tpm/srk.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;

SecretBytes secret(std::string_view text) {
    return SecretBytes(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

std::string hex(const Sha256Digest& d) {
    return hex_encode(d);
}

// A state folder with the database, removed at the end.
struct StateDir {
    std::string path = test::make_temp_dir("tresim-audit");
    ~StateDir() { test::remove_tree(path); }
    std::string db() const { return path + "/state.db"; }
};

// One change with its record, committed, then anchored.
void change(Db& db, AuditLog& log, AuditType type, const std::optional<std::string>& mid,
            const json& details) {
    Transaction tx(db);
    log.append(type, mid, details);
    tx.commit();
    log.anchor();
}

// The software chain of every record's hash from `base`.
Sha256Digest software_chain(Db& db, Sha256Digest base = {}) {
    for (const AuditRecord& r : load_records(db)) {
        base = tpm::extend_chain(base, r.hash);
    }
    return base;
}

void disable_platform_hierarchy(tpm::Context& ctx) {
    // What PC firmware does before the OS runs.
    tpm::check(Esys_HierarchyControl(ctx, ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                     ESYS_TR_NONE, ESYS_TR_RH_PLATFORM, TPM2_NO),
               "TPM2_HierarchyControl(platform off)");
}

const SecretBytes kAuth = secret("audit-auth");

TEST(TpmAudit, EachRecordExtendsTheNvIndexWithOneNvWriteAndVerifies) {
    test::Swtpm swtpm;
    StateDir dir;
    {
        tpm::Context ctx(swtpm.tcti());
        Db db(dir.db());
        AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
        const AuditStatus s = log.status();
        EXPECT_EQ(s.kind, AnchorKind::Platform);
        EXPECT_EQ(s.index, tpm::kDefaultAuditIndex);
        EXPECT_TRUE(s.policy_delete);
        EXPECT_TRUE(s.consistent);

        for (int i = 0; i < 3; ++i) {
            const tpm::CommandCounts before = ctx.counts();
            change(db, log, AuditType::LifecycleChange, "8988280666000000001" + std::to_string(i),
                   {{"to", "active"}});
            tpm::CommandCounts d = ctx.counts() - before;
            EXPECT_EQ(d.nv_writes, 1u);
            EXPECT_EQ(d.by_code[TPM2_CC_NV_Extend], 1u);
        }
        const tpm::CommandCounts before = ctx.counts();
        log.record(AuditType::InstructionRefused, std::nullopt, {{"reason", "expired"}});
        EXPECT_EQ((ctx.counts() - before).nv_writes, 1u);

        // The TPM's value is the chain of the record hashes, computed in software.
        tpm::NvExtendIndex index = tpm::NvExtendIndex::open_or_define(ctx, kAuth);
        EXPECT_EQ(hex(index.read()), hex(software_chain(db)));
        const AuditVerification v = log.verify();
        EXPECT_TRUE(v.ok) << v.message;
        EXPECT_EQ(v.count, 4);

        const json doc = log.export_json();
        EXPECT_EQ(doc["anchor"]["kind"], "platform");
        EXPECT_EQ(doc["anchor"]["index"], "0x01500101");
        EXPECT_EQ(doc["anchor"]["nv_value"], hex(index.read()));
        EXPECT_EQ(doc["records"].size(), 4u);
    }
    swtpm.restart();
    tpm::Context ctx(swtpm.tcti());
    Db db(dir.db());
    const tpm::CommandCounts before = ctx.counts();
    AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
    EXPECT_EQ((ctx.counts() - before).nv_writes, 0u) << "opening writes nothing";
    const AuditVerification v = log.verify();
    EXPECT_TRUE(v.ok) << v.message;
    EXPECT_EQ(v.count, 4);
}

TEST(TpmAudit, AnAlteredRecordOrAnOlderCopyOfTheDatabaseFailsVerify) {
    test::Swtpm swtpm;
    StateDir dir;
    tpm::Context ctx(swtpm.tcti());
    const std::string old_copy = dir.path + "/old.db";
    {
        Db db(dir.db());
        AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
        for (int i = 1; i <= 3; ++i) {
            change(db, log, AuditType::Install, std::to_string(i), {{"slot", 0}});
        }
        db.exec("VACUUM INTO '" + old_copy + "'"); // a backup taken now
        change(db, log, AuditType::PolicyUpdate, "1", {{"policy", "v2"}});
        change(db, log, AuditType::Deletion, "2", {{"state", "inactive"}});
        ASSERT_TRUE(log.verify().ok);

        db.exec("UPDATE audit_record SET details = '{\"slot\":1}' WHERE seq = 2");
        const AuditVerification v = log.verify();
        EXPECT_FALSE(v.ok);
        EXPECT_EQ(v.problem, AuditProblem::HashMismatch);
        EXPECT_EQ(v.seq, 2) << v.message;
    }
    // The older copy put back in place of the database.
    Db db(old_copy);
    const tpm::CommandCounts before = ctx.counts();
    AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
    EXPECT_EQ((ctx.counts() - before).nv_writes, 0u) << "nothing may be extended onto it";
    EXPECT_FALSE(log.status().consistent);
    const AuditVerification v = log.verify();
    EXPECT_FALSE(v.ok);
    EXPECT_EQ(v.problem, AuditProblem::NvMismatch);
    EXPECT_EQ(v.seq, 4) << v.message;
    EXPECT_EQ(v.count, 3);
}

TEST(TpmAudit, ACrashBetweenCommitAndExtendIsRecoveredAtTheNextStart) {
    test::Swtpm swtpm;
    StateDir dir;
    Sha256Digest lost_mark_hash{};
    {
        tpm::Context ctx(swtpm.tcti());
        Db db(dir.db());
        AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
        change(db, log, AuditType::Install, "1", {});
        // Two changes commit; the daemon dies before anchor() (simulated by
        // skipping it), and the TPM loses power.
        for (int i = 0; i < 2; ++i) {
            Transaction tx(db);
            log.append(AuditType::PinFailure, "1", {{"retries_left", 2 - i}});
            tx.commit();
        }
        const AuditVerification v = log.verify();
        EXPECT_EQ(v.problem, AuditProblem::Unanchored);
        EXPECT_EQ(v.seq, 2) << v.message;
    }
    swtpm.restart();
    {
        tpm::Context ctx(swtpm.tcti());
        Db db(dir.db());
        const tpm::CommandCounts before = ctx.counts();
        AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
        tpm::CommandCounts d = ctx.counts() - before;
        EXPECT_EQ(d.nv_writes, 2u) << "exactly the two pending records, in order";
        EXPECT_EQ(d.by_code[TPM2_CC_NV_Extend], 2u);
        const AuditVerification v = log.verify();
        EXPECT_TRUE(v.ok) << v.message;
        EXPECT_EQ(v.count, 3);

        // Now the other window: the extend reached the TPM, the mark did not.
        AuditRecord r;
        {
            Transaction tx(db);
            r = log.append(AuditType::Deletion, "1", {});
            tx.commit();
        }
        log.anchor_object().extend(r.hash);
        lost_mark_hash = r.hash;
        EXPECT_EQ(log.status().anchored, 3);
    }
    swtpm.restart();
    tpm::Context ctx(swtpm.tcti());
    Db db(dir.db());
    const tpm::CommandCounts before = ctx.counts();
    AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
    EXPECT_EQ((ctx.counts() - before).nv_writes, 0u) << "record 4 must not be extended twice";
    EXPECT_EQ(log.status().anchored, 4);
    const AuditVerification v = log.verify();
    EXPECT_TRUE(v.ok) << v.message;
    EXPECT_EQ(v.count, 4);
    EXPECT_EQ(hex(load_records(db).back().hash), hex(lost_mark_hash));
}

TEST(TpmAudit, TheAkCertifiesTheNvValueAndTheCertificationVerifiesWithTheNonce) {
    test::Swtpm swtpm;
    StateDir dir;
    tpm::Context ctx(swtpm.tcti());
    const tpm::Srk srk = tpm::ensure_srk(ctx);
    const tpm::Ak ak = tpm::load_ak(ctx, srk, tpm::create_ak(ctx, srk));
    Db db(dir.db());
    AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
    for (int i = 1; i <= 3; ++i) {
        change(db, log, AuditType::PlatformValidation, std::nullopt,
               {{"result", "ok"}, {"round", i}});
    }
    const Bytes nonce = hex_decode("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "nonce");

    const tpm::CommandCounts before = ctx.counts();
    const AuditCertification c = log.certify(ak, nonce);
    EXPECT_EQ((ctx.counts() - before).nv_writes, 0u);
    EXPECT_EQ(c.kind, AnchorKind::Platform);
    EXPECT_EQ(c.records, 3);
    EXPECT_EQ(hex(c.nv_value), hex(software_chain(db)));
    EXPECT_TRUE(tpm::matches_template(
        c.nv_public, tpm::extend_index_template(tpm::kDefaultAuditIndex).nvPublic));

    // What the Provisioning Server does with the AK public it already trusts.
    const TPMS_ATTEST a = tpm::verify_nv_certification(c.certification, ak.pub.publicArea, nonce,
                                                       tpm::nv_name(c.nv_public), c.nv_value);
    EXPECT_EQ(a.type, TPM2_ST_ATTEST_NV);
    Bytes other_nonce = nonce;
    other_nonce[0] ^= 1;
    EXPECT_THROW(tpm::verify_nv_certification(c.certification, ak.pub.publicArea, other_nonce,
                                              tpm::nv_name(c.nv_public), c.nv_value),
                 tpm::NvAttestationInvalid);
    // A value the database's chain does not reach (an older copy) is refused.
    Sha256Digest older{};
    for (const AuditRecord& r : load_records(db)) {
        if (r.seq < 3) {
            older = tpm::extend_chain(older, r.hash);
        }
    }
    EXPECT_THROW(tpm::verify_nv_certification(c.certification, ak.pub.publicArea, nonce,
                                              tpm::nv_name(c.nv_public), older),
                 tpm::NvAttestationInvalid);
}

TEST(TpmAudit, FallsBackToAnOwnerIndexWhenThePlatformHierarchyIsDisabled) {
    test::Swtpm swtpm;
    StateDir dir;
    {
        tpm::Context ctx(swtpm.tcti());
        disable_platform_hierarchy(ctx);
        const tpm::Srk srk = tpm::ensure_srk(ctx);
        const tpm::Ak ak = tpm::load_ak(ctx, srk, tpm::create_ak(ctx, srk));
        Db db(dir.db());
        AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
        const AuditStatus s = log.status();
        EXPECT_EQ(s.kind, AnchorKind::Owner);
        EXPECT_EQ(s.index, kFallbackAuditIndex);
        EXPECT_FALSE(s.policy_delete);
        EXPECT_NE(s.note.find("without policy-delete"), std::string::npos) << s.note;
        EXPECT_EQ(log.export_json()["anchor"]["policy_delete"], false);

        for (int i = 1; i <= 3; ++i) {
            const tpm::CommandCounts before = ctx.counts();
            change(db, log, AuditType::Install, std::to_string(i), {});
            EXPECT_EQ((ctx.counts() - before).nv_writes, 1u);
        }
        EXPECT_TRUE(log.verify().ok);

        const Bytes nonce(32, 0x5a);
        const AuditCertification c = log.certify(ak, nonce);
        EXPECT_EQ(c.kind, AnchorKind::Owner);
        EXPECT_EQ(c.records, 3);
        EXPECT_TRUE(tpm::matches_template(
            c.nv_public, owner_extend_index_template(kFallbackAuditIndex).nvPublic));
        EXPECT_EQ(c.nv_public.attributes & TPMA_NV_POLICY_DELETE, 0u);
        EXPECT_NO_THROW(tpm::verify_nv_certification(c.certification, ak.pub.publicArea, nonce,
                                                     tpm::nv_name(c.nv_public), c.nv_value));
    }
    // After a reboot the platform hierarchy is back (swtpm; firmware would
    // disable it again), but the database recorded the owner index: no switch.
    swtpm.restart();
    tpm::Context ctx(swtpm.tcti());
    Db db(dir.db());
    AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
    EXPECT_EQ(log.status().kind, AnchorKind::Owner);
    change(db, log, AuditType::Deletion, "1", {});
    const AuditVerification v = log.verify();
    EXPECT_TRUE(v.ok) << v.message;
    EXPECT_EQ(v.count, 4);
}

TEST(TpmAudit, APlatformAnchoredChainIsNotDowngradedWhenThePlatformIndexBecomesUnavailable) {
    test::Swtpm swtpm;
    StateDir dir;
    {
        tpm::Context ctx(swtpm.tcti());
        Db db(dir.db());
        AuditLog log = AuditLog::open_tpm(db, ctx, kAuth);
        change(db, log, AuditType::Install, "1", {});
        // Hide platform NV indices, then disable the platform hierarchy.
        tpm::check(Esys_HierarchyControl(ctx, ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                         ESYS_TR_NONE, ESYS_TR_RH_PLATFORM_NV, TPM2_NO),
                   "TPM2_HierarchyControl(platform NV off)");
        disable_platform_hierarchy(ctx);
    }
    tpm::Context ctx(swtpm.tcti());
    Db db(dir.db());
    try {
        (void)AuditLog::open_tpm(db, ctx, kAuth);
        ADD_FAILURE() << "fell back to the owner index";
    } catch (const TeError& e) {
        EXPECT_EQ(e.code(), ErrorCode::TpmFailure);
        EXPECT_NE(std::string(e.what()).find("0x01500101"), std::string::npos) << e.what();
    }
    EXPECT_EQ(AuditLog::recorded_anchor(db)->kind, AnchorKind::Platform);
}

} // namespace
