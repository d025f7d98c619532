// The audit record's pure logic: canonical encoding, the hash chain, tamper
// detection at the right record, start-up recovery and the export, with an
// in-memory database and a software anchor instead of the TPM.
//
// The golden encodings and hashes below were computed independently with
// Python (struct.pack, json.dumps(sort_keys=True, separators=(',', ':'),
// ensure_ascii=True), hashlib.sha256), not with this code.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "te/audit.hpp"
#include "te/db.hpp"
#include "te/errors.hpp"
#include "tpm/nv.hpp"
#include "usim/bytes.hpp"

namespace {

using namespace tresim;
using namespace tresim::te;
using nlohmann::json;

// The NV extend index, in memory. The state is shared so that a test can
// inspect and change it after the anchor moved into an AuditLog, and hand it
// to a second AuditLog (a restart).
struct AnchorState {
    Sha256Digest value{};
    int extends = 0;
};

class MemoryAnchor final : public AuditAnchor {
public:
    explicit MemoryAnchor(std::shared_ptr<AnchorState> s) : s_(std::move(s)) {}
    AnchorKind kind() const noexcept override { return AnchorKind::Software; }
    TPM2_HANDLE index() const noexcept override { return 0; }
    Sha256Digest read() override { return s_->value; }
    void extend(const Sha256Digest& h) override {
        s_->value = tpm::extend_chain(s_->value, h);
        ++s_->extends;
    }
    tpm::NvCertification certify(ESYS_TR, ByteView) override { throw std::logic_error("no TPM"); }
    TPMS_NV_PUBLIC read_public() override { throw std::logic_error("no TPM"); }

private:
    std::shared_ptr<AnchorState> s_;
};

struct Fixture {
    Db db{":memory:"};
    std::shared_ptr<AnchorState> anchor = std::make_shared<AnchorState>();
    std::unique_ptr<AuditLog> log;
    std::int64_t now = 1700000000;

    Fixture() { open(); }
    // Opening again is what a restart does: schema, anchor check, recovery.
    void open() {
        log.reset();
        log = std::make_unique<AuditLog>(db, std::make_unique<MemoryAnchor>(anchor));
        log->set_clock([this] { return now++; });
    }
    // One change with its record in one transaction, then the extend.
    void change(AuditType type, const std::optional<std::string>& mid, const json& details) {
        Transaction tx(db);
        log->append(type, mid, details);
        tx.commit();
        log->anchor();
    }
    void five_records() {
        change(AuditType::Install, "89882806660000000017", {{"slot", 0}});
        change(AuditType::LifecycleChange, "89882806660000000017",
               {{"from", "inactive"}, {"to", "active"}});
        change(AuditType::PinFailure, "1", {{"retries_left", 2}});
        change(AuditType::InstructionRefused, std::nullopt, {{"reason", "replayed counter"}});
        change(AuditType::PlatformValidation, std::nullopt, {{"result", "ok"}, {"pcrs", {0, 7}}});
    }
    void sql(const std::string& text) { db.exec(text); }
};

std::string hex(const Sha256Digest& d) {
    return hex_encode(d);
}

// ---- Record format ------------------------------------------------------------------

TEST(AuditRecordFormat, TypeNamesAreStableAndRoundTrip) {
    const std::vector<std::pair<AuditType, const char*>> names = {
        {AuditType::Install, "install"},
        {AuditType::LifecycleChange, "lifecycle-change"},
        {AuditType::PolicyUpdate, "policy-update"},
        {AuditType::PinFailure, "pin-failure"},
        {AuditType::PlatformValidation, "platform-validation"},
        {AuditType::RollbackDetected, "rollback-detected"},
        {AuditType::InstructionRefused, "instruction-refused"},
        {AuditType::Deletion, "deletion"},
    };
    for (const auto& [type, name] : names) {
        EXPECT_STREQ(to_string(type), name);
        EXPECT_EQ(parse_audit_type(name), type);
    }
    EXPECT_FALSE(parse_audit_type("Install").has_value());
    EXPECT_FALSE(parse_audit_type("").has_value());
}

TEST(AuditRecordFormat, CanonicalEncodingAndHashMatchAnIndependentComputation) {
    AuditRecord r1;
    r1.seq = 1;
    r1.time = 1700000000;
    r1.type = "install";
    r1.mid = "89882806660000000017";
    r1.details = canonical_details({{"slot", 0}, {"source", "local"}, {"operator", "Test"}});
    EXPECT_EQ(r1.details, R"({"operator":"Test","slot":0,"source":"local"})");
    EXPECT_EQ(hex_encode(canonical_encoding(r1)),
              "74726573696d2d61756469742d7631000000000000000001000000006553f10000000007696e73"
              "74616c6c010000001438393838323830363636303030303030303031370000002d7b226f706572"
              "61746f72223a2254657374222c22736c6f74223a302c22736f75726365223a226c6f63616c227d"
              "0000000000000000000000000000000000000000000000000000000000000000");
    const Sha256Digest h1 = record_hash(r1);
    EXPECT_EQ(hex(h1), "e71c3d6bb43826acbfe27b0c2b59db168d8b921a44c37c68b0a567aa7d3e8b85");

    // No MID, a negative time, non-ASCII text (BMP and beyond), nested values.
    AuditRecord r2;
    r2.seq = 2;
    r2.time = -5;
    r2.type = "pin-failure";
    r2.details = canonical_details({{"retries_left", 2},
                                    {"nested", {{"b", {1, true, nullptr}}, {"a", "x"}}},
                                    {"label", "Caf\xc3\xa9 \xf0\x9f\x98\x80"}});
    EXPECT_EQ(r2.details,
              R"({"label":"Caf\u00e9 \ud83d\ude00","nested":{"a":"x","b":[1,true,null]},)"
              R"("retries_left":2})");
    r2.prev_hash = h1;
    const Sha256Digest h2 = record_hash(r2);
    EXPECT_EQ(hex(h2), "98204cec9d88ea298e6da1bf629e97bf7481b0c4fd5f555c54486a0509602da2");

    // The NV value after both: SHA256(SHA256(0^32 || h1) || h2).
    const Sha256Digest nv = tpm::extend_chain(tpm::extend_chain(Sha256Digest{}, h1), h2);
    EXPECT_EQ(hex(nv), "4ce709cc90c4f295b6257fcf0189fb587c8d80e66c796a94c877dbe45919e67f");
}

TEST(AuditRecordFormat, EveryFieldChangesTheHash) {
    AuditRecord r;
    r.seq = 7;
    r.time = 100;
    r.type = "deletion";
    r.mid = "3";
    r.details = "{}";
    const std::string base = hex(record_hash(r));
    std::vector<std::function<void(AuditRecord&)>> changes = {
        [](AuditRecord& x) { x.seq = 8; },
        [](AuditRecord& x) { x.time = 101; },
        [](AuditRecord& x) { x.type = "install"; },
        [](AuditRecord& x) { x.mid = "4"; },
        [](AuditRecord& x) { x.mid = std::nullopt; },
        [](AuditRecord& x) { x.mid = ""; },
        [](AuditRecord& x) { x.details = R"({"a":1})"; },
        [](AuditRecord& x) { x.prev_hash[31] ^= 1; },
        // Moving bytes between length-prefixed fields is not a collision.
        [](AuditRecord& x) {
            x.type = "deletion3";
            x.mid = "";
        },
    };
    for (std::size_t i = 0; i < changes.size(); ++i) {
        AuditRecord c = r;
        changes[i](c);
        EXPECT_NE(hex(record_hash(c)), base) << "change " << i;
    }
}

TEST(AuditRecordFormat, DetailsMustBeAnObjectWithoutFloatsOrSecrets) {
    EXPECT_EQ(canonical_details(json::object()), "{}");
    EXPECT_EQ(canonical_details({{"b", 1}, {"a", -2}}), canonical_details({{"a", -2}, {"b", 1}}));
    EXPECT_EQ(canonical_details(json()), "{}");
    EXPECT_THROW(canonical_details(json::array()), InvalidArgument);
    EXPECT_THROW(canonical_details("text"), InvalidArgument);
    EXPECT_THROW(canonical_details({{"ratio", 0.5}}), InvalidArgument);
    for (const char* key : {"k", "opc", "op", "pin", "puk", "secret", "key", "topc"}) {
        try {
            canonical_details({{"outer", {{"list", {{{key, "00"}}}}}}});
            ADD_FAILURE() << "accepted a details key " << key;
        } catch (const InvalidArgument& e) {
            EXPECT_EQ(e.argument(), "details");
            EXPECT_EQ(std::string(e.what()).find("00\""), std::string::npos);
        }
    }
    EXPECT_THROW(canonical_details({{"bad", std::string("\xff\xfe")}}), InvalidArgument);
}

// ---- The chain -------------------------------------------------------------------------

TEST(AuditChain, LinksEachRecordToThePreviousAndExtendsOncePerRecord) {
    Fixture f;
    f.five_records();
    const std::vector<AuditRecord> records = load_records(f.db);
    ASSERT_EQ(records.size(), 5u);
    Sha256Digest prev{};
    Sha256Digest nv{};
    for (std::size_t i = 0; i < records.size(); ++i) {
        const AuditRecord& r = records[i];
        EXPECT_EQ(r.seq, static_cast<std::int64_t>(i + 1));
        EXPECT_EQ(r.time, 1700000000 + static_cast<std::int64_t>(i));
        EXPECT_EQ(hex(r.prev_hash), hex(prev));
        EXPECT_EQ(hex(r.hash), hex(record_hash(r)));
        prev = r.hash;
        nv = tpm::extend_chain(nv, r.hash);
    }
    EXPECT_EQ(records[2].type, "pin-failure");
    EXPECT_EQ(records[2].mid, "1");
    EXPECT_EQ(records[3].mid, std::nullopt);
    EXPECT_EQ(records[4].details, R"({"pcrs":[0,7],"result":"ok"})");
    EXPECT_EQ(f.anchor->extends, 5);
    EXPECT_EQ(hex(f.anchor->value), hex(nv));

    const AuditVerification v = f.log->verify();
    EXPECT_TRUE(v.ok) << v.message;
    EXPECT_EQ(v.count, 5);
    EXPECT_EQ(v.problem, AuditProblem::None);
    const AuditStatus s = f.log->status();
    EXPECT_EQ(s.records, 5);
    EXPECT_EQ(s.anchored, 5);
    EXPECT_TRUE(s.consistent);
}

TEST(AuditChain, AppendNeedsTheCallersTransactionAndAnchorRunsAfterIt) {
    Fixture f;
    EXPECT_THROW(f.log->append(AuditType::Install, "1", {}), std::logic_error);
    Transaction tx(f.db);
    f.log->append(AuditType::Install, "1", {});
    EXPECT_THROW(f.log->anchor(), std::logic_error);
    EXPECT_THROW(f.log->append(AuditType::Install, "", {}), InvalidArgument);
    tx.commit();
    EXPECT_EQ(f.log->anchor().extended, 1);
}

TEST(AuditChain, ARolledBackChangeLeavesNoRecordAndNoExtend) {
    Fixture f;
    f.change(AuditType::Install, "1", {});
    {
        Transaction tx(f.db);
        f.log->append(AuditType::Deletion, "1", {{"reason", "test"}});
        // no commit: the change failed
    }
    EXPECT_EQ(f.log->anchor().extended, 0);
    EXPECT_EQ(load_records(f.db).size(), 1u);
    EXPECT_EQ(f.anchor->extends, 1);
    // The next record takes the free seq and links to record 1.
    f.change(AuditType::Install, "2", {});
    EXPECT_TRUE(f.log->verify().ok);
}

TEST(AuditChain, TamperingWithAnyFieldOfAnyRecordIsReportedAtThatRecord) {
    struct Tamper {
        const char* what;
        std::string sql; // %d is the record's seq
        AuditProblem problem;
    };
    const std::vector<Tamper> tampers = {
        {"time", "UPDATE audit_record SET time = time + 1 WHERE seq = %d",
         AuditProblem::HashMismatch},
        {"type", "UPDATE audit_record SET type = 'policy-update' WHERE seq = %d",
         AuditProblem::HashMismatch},
        {"mid", "UPDATE audit_record SET mid = '99' WHERE seq = %d", AuditProblem::HashMismatch},
        {"mid null",
         "UPDATE audit_record SET mid = CASE WHEN mid IS NULL THEN 'x' ELSE NULL END WHERE seq = "
         "%d",
         AuditProblem::HashMismatch},
        {"details", "UPDATE audit_record SET details = '{\"x\":1}' WHERE seq = %d",
         AuditProblem::HashMismatch},
        {"hash", "UPDATE audit_record SET hash = zeroblob(1) || substr(hash, 2) WHERE seq = %d",
         AuditProblem::HashMismatch},
        {"prev_hash",
         "UPDATE audit_record SET prev_hash = x'01' || substr(prev_hash, 2) WHERE seq = %d",
         AuditProblem::BrokenLink},
        {"short hash", "UPDATE audit_record SET hash = substr(hash, 2) WHERE seq = %d",
         AuditProblem::MalformedRecord},
        {"seq", "UPDATE audit_record SET seq = 1000 WHERE seq = %d", AuditProblem::MissingRecords},
        {"deleted", "DELETE FROM audit_record WHERE seq = %d", AuditProblem::MissingRecords},
    };
    for (const Tamper& t : tampers) {
        for (int seq = 1; seq <= 5; ++seq) {
            SCOPED_TRACE(std::string(t.what) + " of record " + std::to_string(seq));
            Fixture f;
            f.five_records();
            std::string sql = t.sql;
            sql.replace(sql.find("%d"), 2, std::to_string(seq));
            f.sql(sql);
            const AuditVerification v = f.log->verify();
            EXPECT_FALSE(v.ok);
            EXPECT_EQ(v.seq, seq) << v.message;
            AuditProblem want = t.problem;
            if (std::string(t.what) == "deleted" && seq == 5) {
                // The last record gone: the chain is intact, the TPM knows better.
                want = AuditProblem::NvMismatch;
            }
            if (std::string(t.what) == "seq" && seq == 5) {
                want = AuditProblem::MissingRecords; // 1..4 then 1000
            }
            EXPECT_EQ(v.problem, want) << to_string(v.problem) << ": " << v.message;
            EXPECT_NE(v.message.find(std::to_string(seq)), std::string::npos) << v.message;
            // And the tampered record is never anchored by a later change.
            f.open();
            EXPECT_EQ(f.anchor->extends, 5);
        }
    }
}

TEST(AuditChain, ReorderingRecordsIsReportedAtTheFirstMovedOne) {
    Fixture f;
    f.five_records();
    f.sql("UPDATE audit_record SET seq = 100 WHERE seq = 2");
    f.sql("UPDATE audit_record SET seq = 2 WHERE seq = 3");
    f.sql("UPDATE audit_record SET seq = 3 WHERE seq = 100");
    const AuditVerification v = f.log->verify();
    EXPECT_FALSE(v.ok);
    EXPECT_EQ(v.seq, 2);
    EXPECT_EQ(v.problem, AuditProblem::BrokenLink) << v.message;
}

TEST(AuditChain, AConsistentlyRewrittenChainStillFailsAgainstTheNvValue) {
    Fixture f;
    f.five_records();
    // Rewrite record 3 and recompute every later hash and link: the database
    // alone looks perfect, only the NV value tells.
    std::vector<AuditRecord> records = load_records(f.db);
    records[2].details = R"({"retries_left":3})";
    for (std::size_t i = 2; i < records.size(); ++i) {
        records[i].prev_hash = records[i - 1].hash;
        records[i].hash = record_hash(records[i]);
        Statement st = f.db.prepare(
            "UPDATE audit_record SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?");
        st.bind(1, records[i].details)
            .bind(2, ByteView(records[i].prev_hash))
            .bind(3, ByteView(records[i].hash))
            .bind(4, records[i].seq);
        st.run();
    }
    const AuditVerification v = f.log->verify();
    EXPECT_FALSE(v.ok);
    EXPECT_EQ(v.problem, AuditProblem::NvMismatch) << v.message;
    EXPECT_EQ(v.count, 5);
    EXPECT_NE(hex(v.expected_nv), hex(v.actual_nv));
}

// ---- Recovery ------------------------------------------------------------------------------

TEST(AuditRecovery, RecordsCommittedButNotExtendedAreExtendedInOrderAtStart) {
    Fixture f;
    f.change(AuditType::Install, "1", {});
    // Two changes commit, then the process dies before anchor().
    for (int i = 0; i < 2; ++i) {
        Transaction tx(f.db);
        f.log->append(AuditType::LifecycleChange, "1", {{"step", i}});
        tx.commit();
    }
    EXPECT_EQ(f.anchor->extends, 1);
    const AuditVerification before = f.log->verify();
    EXPECT_EQ(before.problem, AuditProblem::Unanchored);
    EXPECT_EQ(before.seq, 2);

    f.open(); // the restart
    EXPECT_EQ(f.anchor->extends, 3);
    const AuditVerification v = f.log->verify();
    EXPECT_TRUE(v.ok) << v.message;
    EXPECT_EQ(v.count, 3);
    EXPECT_EQ(f.log->status().anchored, 3);
}

TEST(AuditRecovery, AnExtendWhoseMarkWasLostIsNotRepeated) {
    Fixture f;
    f.change(AuditType::Install, "1", {});
    AuditRecord r;
    {
        Transaction tx(f.db);
        r = f.log->append(AuditType::Deletion, "1", {});
        tx.commit();
    }
    // The extend reached the TPM, the process died before marking it.
    MemoryAnchor(f.anchor).extend(r.hash);
    EXPECT_EQ(f.log->status().anchored, 1);
    f.open();
    EXPECT_EQ(f.anchor->extends, 2) << "record 2 must not be extended twice";
    EXPECT_EQ(f.log->status().anchored, 2);
    EXPECT_TRUE(f.log->verify().ok);
}

TEST(AuditRecovery, AnNvIndexThatWentBackIsReportedAndNothingIsExtended) {
    Fixture f;
    f.five_records();
    f.anchor->value = Sha256Digest{}; // the index was deleted and defined again
    f.open();
    EXPECT_EQ(f.anchor->extends, 5);
    const AuditStatus s = f.log->status();
    EXPECT_FALSE(s.consistent);
    EXPECT_FALSE(s.problem.empty());
    const AuditVerification v = f.log->verify();
    EXPECT_EQ(v.problem, AuditProblem::NvMismatch) << v.message;
    EXPECT_EQ(v.seq, 1);
    // New records are kept in the database but not extended onto a foreign value.
    f.change(AuditType::RollbackDetected, std::nullopt, {{"what", "audit index reset"}});
    EXPECT_EQ(f.anchor->extends, 5);
}

TEST(AuditRecovery, AnOlderCopyOfTheDatabaseFailsNamingTheFirstMissingRecord) {
    Fixture f;
    f.five_records();
    // What an older copy looks like: records 4 and 5 and their marks gone.
    f.sql("DELETE FROM audit_record WHERE seq > 3");
    const AuditVerification v = f.log->verify();
    EXPECT_FALSE(v.ok);
    EXPECT_EQ(v.problem, AuditProblem::NvMismatch);
    EXPECT_EQ(v.seq, 4) << v.message;
}

TEST(AuditRecovery, TheChainStartsFromAnIndexThatAlreadyHeldAValue) {
    Fixture f;
    f.log.reset();
    Db db2(":memory:");
    f.anchor->value[0] = 0x42; // an earlier installation's chain
    const Sha256Digest base = f.anchor->value;
    AuditLog log(db2, std::make_unique<MemoryAnchor>(f.anchor));
    Transaction tx(db2);
    log.append(AuditType::Install, "1", {});
    tx.commit();
    log.anchor();
    EXPECT_TRUE(log.verify().ok);
    EXPECT_EQ(hex(log.status().base), hex(base));
    EXPECT_EQ(log.export_json()["anchor"]["base"], hex(base));
}

// ---- Export ------------------------------------------------------------------------------------

TEST(AuditExport, GivesEveryRecordWithItsFieldsAndHexHashes) {
    Fixture f;
    f.five_records();
    const json doc = f.log->export_json();
    EXPECT_EQ(doc["format"], "tresim-audit-1");
    EXPECT_EQ(doc["anchor"]["kind"], "software");
    EXPECT_EQ(doc["anchor"]["nv_value"], hex(f.anchor->value));
    EXPECT_EQ(doc["anchor"]["base"], std::string(64, '0'));
    const json& records = doc["records"];
    ASSERT_TRUE(records.is_array());
    ASSERT_EQ(records.size(), 5u);
    const json& r0 = records[0];
    EXPECT_EQ(r0["seq"], 1);
    EXPECT_EQ(r0["time"], 1700000000);
    EXPECT_EQ(r0["time_utc"], "2023-11-14T22:13:20Z");
    EXPECT_EQ(r0["type"], "install");
    EXPECT_EQ(r0["mid"], "89882806660000000017");
    EXPECT_EQ(r0["details"], json({{"slot", 0}}));
    EXPECT_EQ(r0["prev_hash"], std::string(64, '0'));
    EXPECT_EQ(records[1]["prev_hash"], r0["hash"]);
    EXPECT_TRUE(records[3]["mid"].is_null());
    EXPECT_EQ(records[4]["details"]["pcrs"], json({0, 7}));
    for (const json& r : records) {
        EXPECT_EQ(r.size(), 8u);
        EXPECT_EQ(r["hash"].get<std::string>().size(), 64u);
        // An outside verifier can recompute the hash from the export alone.
        AuditRecord back;
        back.seq = r["seq"];
        back.time = r["time"];
        back.type = r["type"];
        if (!r["mid"].is_null()) {
            back.mid = r["mid"].get<std::string>();
        }
        back.details = canonical_details(r["details"]);
        back.prev_hash = hex_decode_array<32>(r["prev_hash"].get<std::string>(), "prev_hash");
        EXPECT_EQ(hex(record_hash(back)), r["hash"]);
    }
}

// ---- Use counters
// ---------------------------------------------------------------------------------

TEST(AuditUseCounters, CountPerMidInsideTheCallersTransactionWithoutRecords) {
    Fixture f;
    EXPECT_THROW(count_use(f.db, "1", UseKind::Authentication, 10), std::logic_error);
    {
        Transaction tx(f.db);
        count_use(f.db, "1", UseKind::Authentication, 10);
        count_use(f.db, "1", UseKind::Authentication, 11);
        count_use(f.db, "1", UseKind::Gsm, 12);
        count_use(f.db, "2", UseKind::Suci, 13);
        tx.commit();
    }
    {
        Transaction tx(f.db);
        count_use(f.db, "1", UseKind::Authentication, 14);
        // rolled back with the change it belonged to
    }
    const UseCounters one = use_counters(f.db, "1");
    EXPECT_EQ(one.authentications, 2);
    EXPECT_EQ(one.gsm, 1);
    EXPECT_EQ(one.suci, 0);
    EXPECT_EQ(one.last_time, 12);
    const UseCounters none = use_counters(f.db, "3");
    EXPECT_EQ(none.authentications, 0);
    EXPECT_FALSE(none.last_time.has_value());
    const std::vector<UseCounters> all = all_use_counters(f.db);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[1].mid, "2");
    EXPECT_EQ(all[1].suci, 1);
    EXPECT_EQ(f.anchor->extends, 0);
    EXPECT_TRUE(load_records(f.db).empty());
}

} // namespace
