#pragma once
// The TE's secure audit record (DESIGN.md §4, docs/audit.md).
//
// Every security-relevant transaction appends one record to the state
// database, inside the caller's Transaction, so that the record commits
// atomically with the change it records. Each record carries the previous
// record's hash and its own hash (SHA-256 over a canonical encoding of all its
// fields). After the commit, the record's hash is extended into a TPM NV
// extend index (the "anchor"): exactly one TPM2_NV_Extend per record, so the
// NV value is the chain of every record hash, and a database that was altered,
// truncated or restored to an older copy no longer matches it.
//
// Usage in the TE core:
//
//     Transaction tx(db);
//     ... the change ...
//     audit.append(AuditType::Install, iccid, {{"slot", 0}});
//     tx.commit();
//     audit.anchor(); // extends what was committed
//
// A crash between the commit and the extend leaves committed records that are
// not in the NV index yet; the AuditLog constructor (at start) finds them and
// extends them in order. docs/audit.md gives the argument why this neither
// skips nor repeats an extend.
//
// Authentications are not logged one by one: count_use() keeps per-MID
// counters in the database (no NV write), updated in the caller's transaction.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <tss2/tss2_esys.h>

#include "db.hpp"
#include "tpm/context.hpp"
#include "tpm/keys.hpp"
#include "tpm/nv.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::te {

using tpm::Sha256Digest;

// ---- Records ------------------------------------------------------------------

// The fixed list of record types. The string names are part of the record
// format (they are hashed and exported): never rename one, only add.
enum class AuditType {
    Install,            // "install": a MID was installed (local import or PS)
    LifecycleChange,    // "lifecycle-change": activate, deactivate, suspend, block, ...
    PolicyUpdate,       // "policy-update": a MID's or the TE's policy changed
    PinFailure,         // "pin-failure": a PIN or PUK did not verify
    PlatformValidation, // "platform-validation": the result of a platform validation
    RollbackDetected,   // "rollback-detected": the state was older than the TPM says
    InstructionRefused, // "instruction-refused": a PS instruction was refused
    Deletion,           // "deletion": the tombstone of a deleted MID
};

const char* to_string(AuditType t) noexcept;
std::optional<AuditType> parse_audit_type(std::string_view text) noexcept;

struct AuditRecord {
    std::int64_t seq = 0;  // 1, 2, 3, ... without gaps
    std::int64_t time = 0; // Unix time in seconds (informative; seq orders)
    // The type as stored. Records are hashed over this text, so a record of a
    // type this version does not know still verifies.
    std::string type;
    std::optional<std::string> mid; // ICCID or MID index, when the record is about one
    std::string details;            // canonical JSON text of an object (canonical_details)
    Sha256Digest prev_hash{};       // the previous record's hash; zero for seq 1
    Sha256Digest hash{};            // record_hash() of the fields above
    // Set by load_records when the stored row cannot be a record (a hash that
    // is not 32 bytes, a NULL where a value belongs); verify reports it.
    std::string malformed;
};

// The details object in canonical form: keys sorted, no whitespace, non-ASCII
// escaped as \uXXXX (what Python's json.dumps(d, sort_keys=True,
// separators=(',', ':'), ensure_ascii=True) gives). Allowed values: objects,
// arrays, strings, integers, booleans, null. Floating-point numbers (no
// canonical form) and keys that name a secret ("k", "op", "opc", "top",
// "topc", "pin", "puk", "auth", "secret", "key") are refused with
// InvalidArgument("details"). A null value (no details) counts as {}.
std::string canonical_details(const nlohmann::json& details);

// The bytes a record's hash covers (all big-endian):
//   "tresim-audit-v1" || 0x00
//   seq (8 bytes) || time (8 bytes, two's complement)
//   len(type) (4) || type
//   0x00, or 0x01 || len(mid) (4) || mid
//   len(details) (4) || details
//   prev_hash (32)
Bytes canonical_encoding(const AuditRecord& r);

// SHA-256 of canonical_encoding(r).
Sha256Digest record_hash(const AuditRecord& r);

// ---- Database -------------------------------------------------------------------

// Creates the audit tables when absent (idempotent): audit_record,
// audit_anchor, audit_use_counter.
void ensure_audit_schema(Db& db);

// True while a transaction is open on db.
bool in_transaction(Db& db) noexcept;

// Appends a record with the next seq and the last record's hash as prev_hash.
// Needs an open transaction (std::logic_error otherwise); does not touch the
// TPM. `mid`, when given, must not be empty. Throws InvalidArgument("details")
// for details canonical_details refuses.
AuditRecord append_record(Db& db, AuditType type, const std::optional<std::string>& mid,
                          const nlohmann::json& details, std::int64_t time);

// Every record in seq order, as stored (nothing checked).
std::vector<AuditRecord> load_records(Db& db, std::int64_t after_seq = 0);

// ---- Verification -----------------------------------------------------------------

enum class AuditProblem {
    None,
    MalformedRecord, // a stored field cannot be a record field (hash length, ...)
    MissingRecords,  // seq numbers have a gap: the record at `seq` is missing
    BrokenLink,      // prev_hash is not the previous record's hash
    HashMismatch,    // the stored hash is not the hash of the record's fields
    Unanchored,      // the chain is intact but records from `seq` on are not in the
                     // NV index yet (a crash before the extend; anchor() adds them)
    NvMismatch,      // the NV value is not the chain of the database's records
    NvUnavailable,   // no NV value to compare with
};
const char* to_string(AuditProblem p) noexcept;

struct AuditVerification {
    bool ok = false;
    std::int64_t count = 0; // records checked (all of them when ok)
    AuditProblem problem = AuditProblem::None;
    std::int64_t seq = 0;       // the first bad or missing record (when !ok)
    std::string message;        // names the record and what is wrong
    Sha256Digest expected_nv{}; // the chain of all records from the base
    Sha256Digest actual_nv{};   // what the anchor holds
};

// Checks the records (from load_records) in order: seq without gaps from 1,
// prev_hash links, each hash; then that `nv` is the chain
// extend(...extend(extend(base, h1), h2)..., hn). `anchored_seq` (what the
// database says is already extended) only tells a pending extend (Unanchored)
// from a foreign one (NvMismatch); it is not trusted for anything else.
// Pure: no database, no TPM.
AuditVerification verify_records(const std::vector<AuditRecord>& records, const Sha256Digest& base,
                                 const Sha256Digest& nv, std::int64_t anchored_seq);

// The records as a JSON array of objects {seq, time, time_utc, type, mid (null
// when none), details (the object), prev_hash, hash} with hex hashes.
nlohmann::json export_records(const std::vector<AuditRecord>& records);

// ---- The NV anchor ----------------------------------------------------------------

enum class AnchorKind {
    Platform, // platform-created extend index with TPMA_NV_POLICY_DELETE (tpm::NvExtendIndex)
    Owner,    // owner-created extend index without policy-delete (fallback)
    Software, // no TPM (tests, tools): a value in memory
};
const char* to_string(AnchorKind k) noexcept;
std::optional<AnchorKind> parse_anchor_kind(std::string_view text) noexcept;

// The fallback index: when the platform hierarchy is disabled (most PCs), the
// owner defines it instead. Another handle than tpm::kDefaultAuditIndex, so a
// hidden platform index there never collides with it.
inline constexpr TPM2_HANDLE kFallbackAuditIndex = 0x01500102;

// TPM2_NT_EXTEND, AUTHWRITE, AUTHREAD, NO_DA; SHA-256, 32 bytes, no policy.
// The owner hierarchy can delete it (TPM2_NV_UndefineSpace), which is why the
// platform index is preferred.
TPM2B_NV_PUBLIC owner_extend_index_template(TPM2_HANDLE index);

// What an anchor certified, for the Provisioning Server: check it with
// tpm::verify_nv_certification(certification, ak_public, nonce,
// tpm::nv_name(nv_public), nv_value) and check nv_public against
// tpm::extend_index_template() or owner_extend_index_template().
struct AuditCertification {
    tpm::NvCertification certification;
    TPMS_NV_PUBLIC nv_public{};
    Sha256Digest nv_value{};
    // How many of the database's records the value covers; nullopt when the
    // value is not on the database's chain.
    std::optional<std::int64_t> records;
    AnchorKind kind = AnchorKind::Platform;
};

// Where the chain of record hashes is kept.
class AuditAnchor {
public:
    virtual ~AuditAnchor() = default;
    virtual AnchorKind kind() const noexcept = 0;
    virtual TPM2_HANDLE index() const noexcept = 0;
    // The chain value (zero while never extended). No NV write.
    virtual Sha256Digest read() = 0;
    // One NV_Extend (one NV write).
    virtual void extend(const Sha256Digest& record_hash) = 0;
    // NV_Certify by `signer` with `nonce`; the public area as the TPM reports it.
    virtual tpm::NvCertification certify(ESYS_TR signer, ByteView nonce) = 0;
    virtual TPMS_NV_PUBLIC read_public() = 0;
};

struct AnchorOptions {
    TPM2_HANDLE platform_index = tpm::kDefaultAuditIndex;
    TPM2_HANDLE owner_index = kFallbackAuditIndex;
    // Use the owner index when the platform hierarchy is unavailable.
    bool allow_owner_fallback = true;
    // The kind the database recorded (AuditLog::recorded_anchor): no switch to
    // another kind. A recorded Platform anchor whose hierarchy is now disabled
    // is a TeError(TpmFailure), never a silent downgrade to Owner.
    std::optional<AnchorKind> require;
};

// Opens (defining when absent) the platform index, else the owner fallback.
// `auth` (at most 32 bytes) is the index's auth value. Errors: TeError
// (TpmFailure) when the platform hierarchy is unavailable and no fallback is
// allowed; tpm::NvMismatch when an index exists with other properties;
// tpm::TpmError for other TPM failures.
std::unique_ptr<AuditAnchor> open_tpm_anchor(tpm::Context& ctx, const SecretBytes& auth,
                                             const AnchorOptions& options = {});

// ---- The log ------------------------------------------------------------------------

struct AuditStatus {
    AnchorKind kind = AnchorKind::Platform;
    TPM2_HANDLE index = 0;
    bool policy_delete = false; // the index cannot be deleted by the owner
    std::string note;           // a sentence on the anchor's strength
    std::int64_t records = 0;
    std::int64_t anchored = 0; // records known to be in the NV index
    bool consistent = false;   // the NV value is on this database's chain
    std::string problem;       // why not, when !consistent
    Sha256Digest base{};       // the NV value the chain started from
};

struct AnchorResult {
    std::int64_t extended = 0; // NV_Extends done now
    std::int64_t anchored = 0; // the last anchored seq afterwards
    bool consistent = false;
    std::string problem;
};

struct AnchorIdentity {
    AnchorKind kind;
    TPM2_HANDLE index;
};

class AuditLog {
public:
    // Creates the tables when absent; on first use records the anchor's kind
    // and index and its current value as the chain's base; afterwards refuses
    // an anchor of another kind or index (TeError StateCorrupt). Then runs
    // anchor() (the start-up recovery). No transaction may be open.
    AuditLog(Db& db, std::unique_ptr<AuditAnchor> chain_anchor);

    // open_tpm_anchor with the kind the database recorded, then the above.
    static AuditLog open_tpm(Db& db, tpm::Context& ctx, const SecretBytes& auth,
                             AnchorOptions options = {});

    // The anchor the database recorded, if any (no TPM access).
    static std::optional<AnchorIdentity> recorded_anchor(Db& db);

    // Appends a record inside the caller's open transaction (std::logic_error
    // when none is open). Nothing reaches the TPM until anchor().
    AuditRecord append(AuditType type, const std::optional<std::string>& mid,
                       const nlohmann::json& details = nlohmann::json::object());

    // After the commit: reads the NV value (one NV_Read), finds where it is on
    // the database's chain (at or after the last anchored record), and extends
    // the records after it in seq order (one NV_Extend each). When the NV value
    // is not on the chain, extends nothing and reports the problem. No
    // transaction may be open (std::logic_error).
    AnchorResult anchor();

    // A record in its own transaction, then anchor(): for events that change
    // nothing else (a refused instruction, a PIN failure).
    AuditRecord record(AuditType type, const std::optional<std::string>& mid,
                       const nlohmann::json& details = nlohmann::json::object());

    // Replays the whole chain from the database against the NV value.
    AuditVerification verify();

    // {"format": "tresim-audit-1", "anchor": {kind, index, policy_delete,
    // base, nv_value}, "records": export_records(...)}.
    nlohmann::json export_json();

    // NV_Certify of the anchor by the AK with the verifier's nonce (at most 64
    // bytes). No NV write.
    AuditCertification certify(const tpm::Ak& ak, ByteView nonce);

    AuditStatus status();

    // Seconds since the Unix epoch; the system clock unless replaced (tests).
    void set_clock(std::function<std::int64_t()> clock) { clock_ = std::move(clock); }

    AuditAnchor& anchor_object() noexcept { return *anchor_; }

private:
    struct State {
        Sha256Digest base{};
        std::int64_t anchored_seq = 0;
        Sha256Digest anchored_value{};
    };
    State load_state();

    Db* db_;
    std::unique_ptr<AuditAnchor> anchor_;
    std::function<std::int64_t()> clock_;
    std::string problem_; // from the last anchor(); empty when consistent
};

// ---- Per-MID use counters ----------------------------------------------------------

enum class UseKind {
    Authentication, // 3G/4G/5G AKA
    Gsm,            // GSM context (SRES/Kc)
    Suci,           // SUCI concealment
};

struct UseCounters {
    std::string mid;
    std::int64_t authentications = 0;
    std::int64_t gsm = 0;
    std::int64_t suci = 0;
    std::optional<std::int64_t> last_time; // Unix seconds of the last use
};

// Adds one use of `mid` inside the caller's open transaction (std::logic_error
// otherwise). Database only: no NV write, no record.
void count_use(Db& db, const std::string& mid, UseKind kind, std::int64_t time);

// The counters of one MID (all zero when it was never used) and of all MIDs.
UseCounters use_counters(Db& db, const std::string& mid);
std::vector<UseCounters> all_use_counters(Db& db);

} // namespace tresim::te
