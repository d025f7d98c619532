#include "audit.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <tss2/tss2_mu.h>

#include "errors.hpp"
#include "tpm/error.hpp"

namespace tresim::te {

namespace {

using nlohmann::json;

constexpr std::string_view kDomain = "tresim-audit-v1";

std::string hex_handle(TPM2_HANDLE h) {
    char text[16];
    std::snprintf(text, sizeof(text), "0x%08x", h);
    return text;
}

Sha256Digest sha256(ByteView data) {
    Sha256Digest out{};
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
        len != out.size()) {
        throw std::runtime_error("SHA-256 failed in OpenSSL");
    }
    return out;
}

void put_be(Bytes& out, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) {
        out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
}

// resize + memcpy: GCC 12 warns falsely (stringop-overflow) on vector::insert here.
void put_raw(Bytes& out, const void* data, std::size_t size) {
    const std::size_t at = out.size();
    out.resize(at + size);
    if (size != 0) {
        std::memcpy(out.data() + at, data, size);
    }
}

void put_text(Bytes& out, std::string_view text) {
    put_be(out, text.size(), 4);
    put_raw(out, text.data(), text.size());
}

Sha256Digest to_digest(const Bytes& b) {
    Sha256Digest d{};
    std::memcpy(d.data(), b.data(), std::min(b.size(), d.size()));
    return d;
}

bool same(const Sha256Digest& a, const Sha256Digest& b) {
    return equal_ct(a, b);
}

std::string hex(const Sha256Digest& d) {
    return hex_encode(d);
}

void require_transaction(Db& db, const char* what) {
    if (!in_transaction(db)) {
        throw std::logic_error(std::string(what) + " needs the caller's open Transaction");
    }
}

void require_no_transaction(Db& db, const char* what) {
    if (in_transaction(db)) {
        throw std::logic_error(std::string(what) + " runs after the commit, not inside a "
                                                   "transaction");
    }
}

// Keys that name a secret: a details object must never carry one.
bool secret_key(const std::string& key) {
    static const char* const names[] = {"k",   "op",  "opc",  "top",    "topc",
                                        "pin", "puk", "auth", "secret", "key"};
    for (const char* n : names) {
        if (key == n) {
            return true;
        }
    }
    return false;
}

void check_details_value(const json& v, const std::string& path) {
    switch (v.type()) {
    case json::value_t::object:
        for (const auto& [key, value] : v.items()) {
            if (secret_key(key)) {
                throw InvalidArgument("details", "the key \"" + path + key +
                                                     "\" names a secret; audit records never "
                                                     "carry secrets");
            }
            check_details_value(value, path + key + ".");
        }
        break;
    case json::value_t::array:
        for (const json& item : v) {
            check_details_value(item, path);
        }
        break;
    case json::value_t::number_float:
        throw InvalidArgument("details", "floating-point numbers have no canonical form; use an "
                                         "integer or a string");
    case json::value_t::binary:
    case json::value_t::discarded:
        throw InvalidArgument("details", "only JSON values are allowed");
    default:
        break;
    }
}

std::string time_utc(std::int64_t t) {
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    if (gmtime_r(&tt, &tm) == nullptr) {
        return {};
    }
    char text[32];
    if (std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        return {};
    }
    return text;
}

std::int64_t system_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::int64_t max_seq(Db& db) {
    Statement st = db.prepare("SELECT COALESCE(MAX(seq), 0) FROM audit_record");
    st.step();
    return st.column_int(0);
}

// The hash of record `seq` (zero for seq 0), as stored.
Sha256Digest stored_hash(Db& db, std::int64_t seq) {
    if (seq == 0) {
        return {};
    }
    Statement st = db.prepare("SELECT hash FROM audit_record WHERE seq = ?");
    st.bind(1, seq);
    if (!st.step()) {
        return {};
    }
    return to_digest(st.column_blob(0));
}

// ---- TPM anchors --------------------------------------------------------------

class PlatformAnchor final : public AuditAnchor {
public:
    explicit PlatformAnchor(tpm::NvExtendIndex index) : index_(std::move(index)) {}
    AnchorKind kind() const noexcept override { return AnchorKind::Platform; }
    TPM2_HANDLE index() const noexcept override { return index_.index(); }
    Sha256Digest read() override { return index_.read(); }
    void extend(const Sha256Digest& h) override { index_.extend(h); }
    tpm::NvCertification certify(ESYS_TR signer, ByteView nonce) override {
        return index_.certify(signer, nonce);
    }
    TPMS_NV_PUBLIC read_public() override { return index_.read_public(); }

private:
    tpm::NvExtendIndex index_;
};

// The owner-defined fallback. tpm::NvExtendIndex only defines the
// policy-delete template, so the few ESAPI calls are made here. As there, the
// ESYS_TR is shared per context and never closed.
class OwnerAnchor final : public AuditAnchor {
public:
    static std::unique_ptr<OwnerAnchor> open(tpm::Context& ctx, const SecretBytes& auth,
                                             TPM2_HANDLE index) {
        if (auth.size() > 32) {
            throw InvalidArgument("auth", "an NV index auth value is at most 32 bytes");
        }
        auto a = std::unique_ptr<OwnerAnchor>(new OwnerAnchor(ctx, index));
        const TPM2B_NV_PUBLIC want = owner_extend_index_template(index);
        ESYS_TR tr = ESYS_TR_NONE;
        const TSS2_RC rc =
            Esys_TR_FromTPMPublic(ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
        TPM2B_AUTH value{};
        value.size = static_cast<UINT16>(auth.size());
        std::memcpy(value.buffer, auth.data(), auth.size());
        if (rc == TSS2_RC_SUCCESS) {
            a->tr_ = tr;
            const TPMS_NV_PUBLIC have = a->read_public();
            if (!tpm::matches_template(have, want.nvPublic)) {
                wipe(&value, sizeof(value));
                throw tpm::NvMismatch("the NV index at " + hex_handle(index) +
                                      " is not the owner audit index tresim defines (type, "
                                      "attributes, name algorithm, policy or size differ); "
                                      "refusing to use it");
            }
        } else {
            const tpm::TpmError e("open NV index " + hex_handle(index), rc);
            if (!e.is(TPM2_RC_HANDLE)) {
                wipe(&value, sizeof(value));
                throw e;
            }
            const TSS2_RC drc = Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                                    ESYS_TR_NONE, ESYS_TR_NONE, &value, &want, &tr);
            if (drc != TSS2_RC_SUCCESS) {
                wipe(&value, sizeof(value));
                tpm::check(drc, "TPM2_NV_DefineSpace(audit index, owner)");
            }
            a->tr_ = tr;
        }
        const TSS2_RC src = Esys_TR_SetAuth(ctx, a->tr_, &value);
        wipe(&value, sizeof(value));
        tpm::check(src, "Esys_TR_SetAuth(audit index)");
        return a;
    }

    AnchorKind kind() const noexcept override { return AnchorKind::Owner; }
    TPM2_HANDLE index() const noexcept override { return index_; }

    Sha256Digest read() override {
        TPM2B_MAX_NV_BUFFER* data = nullptr;
        const TSS2_RC rc = Esys_NV_Read(*ctx_, tr_, tr_, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                        ESYS_TR_NONE, 32, 0, &data);
        Sha256Digest out{};
        if (rc != TSS2_RC_SUCCESS) {
            const tpm::TpmError e("TPM2_NV_Read(audit index, owner)", rc);
            if (e.is(TPM2_RC_NV_UNINITIALIZED)) {
                return out;
            }
            throw e;
        }
        const tpm::EsysPtr<TPM2B_MAX_NV_BUFFER> owner(data);
        if (data->size != out.size()) {
            throw std::runtime_error("TPM2_NV_Read(audit index, owner) returned " +
                                     std::to_string(data->size) + " bytes instead of 32");
        }
        std::memcpy(out.data(), data->buffer, out.size());
        return out;
    }

    void extend(const Sha256Digest& h) override {
        TPM2B_MAX_NV_BUFFER buf{};
        buf.size = static_cast<UINT16>(h.size());
        std::memcpy(buf.buffer, h.data(), h.size());
        tpm::check(
            Esys_NV_Extend(*ctx_, tr_, tr_, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buf),
            "TPM2_NV_Extend(audit index, owner)");
    }

    tpm::NvCertification certify(ESYS_TR signer, ByteView nonce) override {
        TPM2B_DATA q{};
        if (nonce.size() > sizeof(q.buffer)) {
            throw InvalidArgument("nonce", "qualifying data is at most 64 bytes");
        }
        q.size = static_cast<UINT16>(nonce.size());
        std::memcpy(q.buffer, nonce.data(), nonce.size());
        TPMT_SIG_SCHEME scheme{};
        scheme.scheme = TPM2_ALG_ECDSA;
        scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
        TPM2B_ATTEST* info = nullptr;
        TPMT_SIGNATURE* sig = nullptr;
        tpm::check(Esys_NV_Certify(*ctx_, signer, tr_, tr_, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD,
                                   ESYS_TR_NONE, &q, &scheme, 32, 0, &info, &sig),
                   "TPM2_NV_Certify(audit index, owner)");
        const tpm::EsysPtr<TPM2B_ATTEST> info_owner(info);
        const tpm::EsysPtr<TPMT_SIGNATURE> sig_owner(sig);
        tpm::NvCertification c;
        c.attest.assign(info->attestationData, info->attestationData + info->size);
        c.signature.resize(sizeof(TPMT_SIGNATURE));
        std::size_t len = 0;
        tpm::check(
            Tss2_MU_TPMT_SIGNATURE_Marshal(sig, c.signature.data(), c.signature.size(), &len),
            "Tss2_MU_TPMT_SIGNATURE_Marshal");
        c.signature.resize(len);
        return c;
    }

    TPMS_NV_PUBLIC read_public() override {
        TPM2B_NV_PUBLIC* pub = nullptr;
        TPM2B_NAME* name = nullptr;
        tpm::check(
            Esys_NV_ReadPublic(*ctx_, tr_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name),
            "TPM2_NV_ReadPublic(audit index, owner)");
        const tpm::EsysPtr<TPM2B_NV_PUBLIC> pub_owner(pub);
        const tpm::EsysPtr<TPM2B_NAME> name_owner(name);
        return pub->nvPublic;
    }

private:
    OwnerAnchor(tpm::Context& ctx, TPM2_HANDLE index) : ctx_(&ctx), index_(index) {}
    tpm::Context* ctx_;
    TPM2_HANDLE index_;
    ESYS_TR tr_ = ESYS_TR_NONE;
};

const char* anchor_note(AnchorKind k) {
    switch (k) {
    case AnchorKind::Platform:
        return "platform-created NV extend index with policy-delete: only the platform "
               "hierarchy, with TPM2_NV_UndefineSpaceSpecial, can delete it";
    case AnchorKind::Owner:
        return "owner-created NV extend index without policy-delete (the platform hierarchy "
               "was unavailable): whoever holds owner authorization could delete and recreate "
               "it; verify would then report an NV mismatch, but nothing prevents it";
    case AnchorKind::Software:
        return "no TPM: the chain value is kept in memory only and proves nothing";
    }
    return "";
}

} // namespace

// ---- Names ----------------------------------------------------------------------

const char* to_string(AuditType t) noexcept {
    switch (t) {
    case AuditType::Install:
        return "install";
    case AuditType::LifecycleChange:
        return "lifecycle-change";
    case AuditType::PolicyUpdate:
        return "policy-update";
    case AuditType::PinFailure:
        return "pin-failure";
    case AuditType::PlatformValidation:
        return "platform-validation";
    case AuditType::RollbackDetected:
        return "rollback-detected";
    case AuditType::InstructionRefused:
        return "instruction-refused";
    case AuditType::Deletion:
        return "deletion";
    }
    return "unknown";
}

std::optional<AuditType> parse_audit_type(std::string_view text) noexcept {
    for (const AuditType t :
         {AuditType::Install, AuditType::LifecycleChange, AuditType::PolicyUpdate,
          AuditType::PinFailure, AuditType::PlatformValidation, AuditType::RollbackDetected,
          AuditType::InstructionRefused, AuditType::Deletion}) {
        if (text == to_string(t)) {
            return t;
        }
    }
    return std::nullopt;
}

const char* to_string(AuditProblem p) noexcept {
    switch (p) {
    case AuditProblem::None:
        return "none";
    case AuditProblem::MalformedRecord:
        return "malformed-record";
    case AuditProblem::MissingRecords:
        return "missing-records";
    case AuditProblem::BrokenLink:
        return "broken-link";
    case AuditProblem::HashMismatch:
        return "hash-mismatch";
    case AuditProblem::Unanchored:
        return "unanchored";
    case AuditProblem::NvMismatch:
        return "nv-mismatch";
    case AuditProblem::NvUnavailable:
        return "nv-unavailable";
    }
    return "unknown";
}

const char* to_string(AnchorKind k) noexcept {
    switch (k) {
    case AnchorKind::Platform:
        return "platform";
    case AnchorKind::Owner:
        return "owner";
    case AnchorKind::Software:
        return "software";
    }
    return "unknown";
}

std::optional<AnchorKind> parse_anchor_kind(std::string_view text) noexcept {
    for (const AnchorKind k : {AnchorKind::Platform, AnchorKind::Owner, AnchorKind::Software}) {
        if (text == to_string(k)) {
            return k;
        }
    }
    return std::nullopt;
}

// ---- Encoding -----------------------------------------------------------------------

std::string canonical_details(const json& details) {
    if (details.is_null()) {
        return "{}"; // no details
    }
    if (!details.is_object()) {
        throw InvalidArgument("details", "must be a JSON object");
    }
    check_details_value(details, "");
    try {
        // nlohmann::json keeps object keys in a std::map: sorted by their UTF-8
        // bytes, which is code point order.
        return details.dump(-1, ' ', true, json::error_handler_t::strict);
    } catch (const json::exception&) {
        throw InvalidArgument("details", "strings must be valid UTF-8");
    }
}

Bytes canonical_encoding(const AuditRecord& r) {
    Bytes out;
    out.reserve(kDomain.size() + 1 + 16 + 4 + r.type.size() + 5 + (r.mid ? r.mid->size() : 0) + 4 +
                r.details.size() + 32);
    put_raw(out, kDomain.data(), kDomain.size());
    out.push_back(0);
    put_be(out, static_cast<std::uint64_t>(r.seq), 8);
    put_be(out, static_cast<std::uint64_t>(r.time), 8);
    put_text(out, r.type);
    if (r.mid) {
        out.push_back(1);
        put_text(out, *r.mid);
    } else {
        out.push_back(0);
    }
    put_text(out, r.details);
    put_raw(out, r.prev_hash.data(), r.prev_hash.size());
    return out;
}

Sha256Digest record_hash(const AuditRecord& r) {
    return sha256(canonical_encoding(r));
}

// ---- Database ----------------------------------------------------------------------

void ensure_audit_schema(Db& db) {
    db.exec("CREATE TABLE IF NOT EXISTS audit_record ("
            " seq INTEGER PRIMARY KEY,"
            " time INTEGER NOT NULL,"
            " type TEXT NOT NULL,"
            " mid TEXT,"
            " details TEXT NOT NULL,"
            " prev_hash BLOB NOT NULL,"
            " hash BLOB NOT NULL)");
    db.exec("CREATE TABLE IF NOT EXISTS audit_anchor ("
            " id INTEGER PRIMARY KEY CHECK (id = 1),"
            " kind TEXT NOT NULL,"
            " nv_index INTEGER NOT NULL,"
            " base BLOB NOT NULL,"
            " anchored_seq INTEGER NOT NULL,"
            " anchored_value BLOB NOT NULL)");
    db.exec("CREATE TABLE IF NOT EXISTS audit_use_counter ("
            " mid TEXT PRIMARY KEY,"
            " authentications INTEGER NOT NULL DEFAULT 0,"
            " gsm INTEGER NOT NULL DEFAULT 0,"
            " suci INTEGER NOT NULL DEFAULT 0,"
            " last_time INTEGER)");
}

bool in_transaction(Db& db) noexcept {
    return sqlite3_get_autocommit(db.handle()) == 0;
}

AuditRecord append_record(Db& db, AuditType type, const std::optional<std::string>& mid,
                          const json& details, std::int64_t time) {
    require_transaction(db, "appending an audit record");
    if (mid && mid->empty()) {
        throw InvalidArgument("mid", "must not be empty when given");
    }
    AuditRecord r;
    r.details = canonical_details(details);
    r.type = to_string(type);
    r.mid = mid;
    r.time = time;
    {
        Statement st = db.prepare("SELECT seq, hash FROM audit_record ORDER BY seq DESC LIMIT 1");
        if (st.step()) {
            r.seq = st.column_int(0) + 1;
            r.prev_hash = to_digest(st.column_blob(1));
        } else {
            r.seq = 1;
        }
    }
    r.hash = record_hash(r);
    Statement ins = db.prepare("INSERT INTO audit_record (seq, time, type, mid, details, "
                               "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)");
    ins.bind(1, r.seq).bind(2, r.time).bind(3, r.type);
    if (r.mid) {
        ins.bind(4, *r.mid);
    } else {
        ins.bind_null(4);
    }
    ins.bind(5, r.details).bind(6, ByteView(r.prev_hash)).bind(7, ByteView(r.hash));
    ins.run();
    return r;
}

std::vector<AuditRecord> load_records(Db& db, std::int64_t after_seq) {
    std::vector<AuditRecord> out;
    Statement st = db.prepare("SELECT seq, time, type, mid, details, prev_hash, hash, "
                              "typeof(time), typeof(type), typeof(details) "
                              "FROM audit_record WHERE seq > ? ORDER BY seq");
    st.bind(1, after_seq);
    while (st.step()) {
        AuditRecord r;
        r.seq = st.column_int(0);
        r.time = st.column_int(1);
        r.type = st.column_text(2);
        if (!st.column_is_null(3)) {
            r.mid = st.column_text(3);
        }
        r.details = st.column_text(4);
        const Bytes prev = st.column_blob(5);
        const Bytes hash = st.column_blob(6);
        r.prev_hash = to_digest(prev);
        r.hash = to_digest(hash);
        if (prev.size() != 32) {
            r.malformed = "prev_hash is " + std::to_string(prev.size()) + " bytes, not 32";
        } else if (hash.size() != 32) {
            r.malformed = "hash is " + std::to_string(hash.size()) + " bytes, not 32";
        } else if (st.column_text(7) != "integer") {
            r.malformed = "time is not an integer";
        } else if (st.column_text(8) != "text" || st.column_text(9) != "text") {
            r.malformed = "type or details is not text";
        }
        out.push_back(std::move(r));
    }
    return out;
}

// ---- Verification ---------------------------------------------------------------------

AuditVerification verify_records(const std::vector<AuditRecord>& records, const Sha256Digest& base,
                                 const Sha256Digest& nv, std::int64_t anchored_seq) {
    AuditVerification v;
    v.actual_nv = nv;
    const auto fail = [&](AuditProblem p, std::int64_t seq, std::string message) {
        v.ok = false;
        v.problem = p;
        v.seq = seq;
        v.message = std::move(message);
        return v;
    };
    Sha256Digest prev{};
    std::vector<Sha256Digest> chain{base}; // chain[j]: the NV value after records 1..j
    std::int64_t expected = 1;
    for (const AuditRecord& r : records) {
        const std::string name = "record " + std::to_string(expected);
        if (r.seq != expected) {
            if (r.seq > expected) {
                return fail(AuditProblem::MissingRecords, expected,
                            r.seq == expected + 1 ? name + " is missing"
                                                  : "records " + std::to_string(expected) + " to " +
                                                        std::to_string(r.seq - 1) + " are missing");
            }
            return fail(AuditProblem::MalformedRecord, expected,
                        "a record numbered " + std::to_string(r.seq) + " stands where " + name +
                            " belongs");
        }
        if (!r.malformed.empty()) {
            return fail(AuditProblem::MalformedRecord, expected, name + ": " + r.malformed);
        }
        if (!same(r.prev_hash, prev)) {
            return fail(AuditProblem::BrokenLink, expected,
                        name + ": its previous-record hash is not the hash of " +
                            (expected == 1 ? std::string("the start (zero)")
                                           : "record " + std::to_string(expected - 1)));
        }
        if (!same(record_hash(r), r.hash)) {
            return fail(AuditProblem::HashMismatch, expected,
                        name + ": its fields do not hash to its stored hash (altered)");
        }
        prev = r.hash;
        chain.push_back(tpm::extend_chain(chain.back(), r.hash));
        v.count = expected;
        ++expected;
    }
    const auto n = static_cast<std::int64_t>(records.size());
    v.expected_nv = chain.back();
    if (same(nv, chain.back())) {
        v.ok = true;
        v.message = std::to_string(n) + " records, chain intact and equal to the NV value";
        return v;
    }
    for (std::int64_t j = n - 1; j >= 0; --j) {
        if (!same(nv, chain[static_cast<std::size_t>(j)])) {
            continue;
        }
        const std::string range =
            j + 1 == n ? "record " + std::to_string(n)
                       : "records " + std::to_string(j + 1) + " to " + std::to_string(n);
        if (j >= anchored_seq) {
            return fail(AuditProblem::Unanchored, j + 1,
                        range + (j + 1 == n ? " is" : " are") +
                            " committed but not yet extended into the NV index (an interrupted "
                            "anchor; the next start extends them)");
        }
        return fail(AuditProblem::NvMismatch, j + 1,
                    "the NV value is the chain only up to record " + std::to_string(j) +
                        ", but the database says records up to " + std::to_string(anchored_seq) +
                        " were extended: the index was reset, or " + range +
                        " were added without the TE");
    }
    return fail(AuditProblem::NvMismatch, n + 1,
                "the NV value is not the chain of the " + std::to_string(n) +
                    " records in the database: records from record " + std::to_string(n + 1) +
                    " on are missing (an older copy of the database?), or the chain was rewritten");
}

json export_records(const std::vector<AuditRecord>& records) {
    json out = json::array();
    for (const AuditRecord& r : records) {
        json details;
        try {
            details = json::parse(r.details);
        } catch (const json::exception&) {
            details = r.details; // exported as stored; verify reports the record
        }
        out.push_back({
            {"seq", r.seq},
            {"time", r.time},
            {"time_utc", time_utc(r.time)},
            {"type", r.type},
            {"mid", r.mid ? json(*r.mid) : json(nullptr)},
            {"details", std::move(details)},
            {"prev_hash", hex(r.prev_hash)},
            {"hash", hex(r.hash)},
        });
    }
    return out;
}

// ---- Anchors ------------------------------------------------------------------------------

TPM2B_NV_PUBLIC owner_extend_index_template(TPM2_HANDLE index) {
    TPM2B_NV_PUBLIC t{};
    TPMS_NV_PUBLIC& p = t.nvPublic;
    p.nvIndex = index;
    p.nameAlg = TPM2_ALG_SHA256;
    p.attributes = (static_cast<TPMA_NV>(TPM2_NT_EXTEND) << TPMA_NV_TPM2_NT_SHIFT) |
                   TPMA_NV_AUTHWRITE | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA;
    p.dataSize = 32;
    return t;
}

std::unique_ptr<AuditAnchor> open_tpm_anchor(tpm::Context& ctx, const SecretBytes& auth,
                                             const AnchorOptions& options) {
    if (options.require == AnchorKind::Software) {
        throw TeError(ErrorCode::StateCorrupt,
                      "the audit chain in this database is anchored in software, not in a TPM");
    }
    if (options.require == AnchorKind::Owner) {
        return OwnerAnchor::open(ctx, auth, options.owner_index);
    }
    try {
        return std::make_unique<PlatformAnchor>(
            tpm::NvExtendIndex::open_or_define(ctx, auth, options.platform_index));
    } catch (const tpm::NvPlatformUnavailable& e) {
        if (options.require == AnchorKind::Platform) {
            throw TeError(ErrorCode::TpmFailure,
                          "the audit chain is anchored in the platform NV index " +
                              hex_handle(options.platform_index) +
                              ", which the TPM now hides or cannot define because the platform "
                              "hierarchy is disabled; refusing to fall back to a weaker index: " +
                              e.what());
        }
        if (!options.allow_owner_fallback) {
            throw TeError(ErrorCode::TpmFailure,
                          std::string("the audit NV index cannot be defined: ") + e.what());
        }
    }
    return OwnerAnchor::open(ctx, auth, options.owner_index);
}

// ---- AuditLog -----------------------------------------------------------------------------

AuditLog::AuditLog(Db& db, std::unique_ptr<AuditAnchor> chain_anchor)
    : db_(&db), anchor_(std::move(chain_anchor)), clock_(system_now) {
    if (!anchor_) {
        throw std::logic_error("AuditLog needs an anchor");
    }
    require_no_transaction(db, "opening the audit log");
    ensure_audit_schema(db);
    const std::optional<AnchorIdentity> rec = recorded_anchor(db);
    if (!rec) {
        // First use: the chain starts from whatever the index holds now (zero
        // when it was just defined; an earlier installation's value otherwise,
        // kept as the base so that history stays visible).
        const Sha256Digest base = anchor_->read();
        Transaction tx(db);
        Statement st = db.prepare("INSERT INTO audit_anchor (id, kind, nv_index, base, "
                                  "anchored_seq, anchored_value) VALUES (1, ?, ?, ?, 0, ?)");
        st.bind(1, std::string_view(to_string(anchor_->kind())))
            .bind(2, static_cast<std::int64_t>(anchor_->index()))
            .bind(3, ByteView(base))
            .bind(4, ByteView(base));
        st.run();
        tx.commit();
    } else if (rec->kind != anchor_->kind() || rec->index != anchor_->index()) {
        throw TeError(ErrorCode::StateCorrupt,
                      std::string("the audit chain is anchored in the ") + to_string(rec->kind) +
                          " NV index " + hex_handle(rec->index) + ", not the " +
                          to_string(anchor_->kind()) + " index " + hex_handle(anchor_->index()));
    }
    anchor();
}

AuditLog AuditLog::open_tpm(Db& db, tpm::Context& ctx, const SecretBytes& auth,
                            AnchorOptions options) {
    if (const auto rec = recorded_anchor(db)) {
        options.require = rec->kind;
        if (rec->kind == AnchorKind::Platform) {
            options.platform_index = rec->index;
        } else {
            options.owner_index = rec->index;
        }
    }
    return AuditLog(db, open_tpm_anchor(ctx, auth, options));
}

std::optional<AnchorIdentity> AuditLog::recorded_anchor(Db& db) {
    {
        Statement t = db.prepare(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_anchor'");
        if (!t.step()) {
            return std::nullopt;
        }
    }
    Statement st = db.prepare("SELECT kind, nv_index FROM audit_anchor WHERE id = 1");
    if (!st.step()) {
        return std::nullopt;
    }
    const std::string kind = st.column_text(0);
    const auto k = parse_anchor_kind(kind);
    if (!k) {
        throw TeError(ErrorCode::StateCorrupt,
                      "the audit anchor kind \"" + kind + "\" in the database is unknown");
    }
    return AnchorIdentity{*k, static_cast<TPM2_HANDLE>(st.column_int(1))};
}

AuditLog::State AuditLog::load_state() {
    Statement st =
        db_->prepare("SELECT base, anchored_seq, anchored_value FROM audit_anchor WHERE id = 1");
    if (!st.step()) {
        throw TeError(ErrorCode::StateCorrupt, "the audit anchor row is missing");
    }
    State s;
    s.base = to_digest(st.column_blob(0));
    s.anchored_seq = st.column_int(1);
    s.anchored_value = to_digest(st.column_blob(2));
    return s;
}

AuditRecord AuditLog::append(AuditType type, const std::optional<std::string>& mid,
                             const json& details) {
    return append_record(*db_, type, mid, details, clock_());
}

AnchorResult AuditLog::anchor() {
    require_no_transaction(*db_, "anchoring audit records");
    const State s = load_state();
    AnchorResult result;
    result.anchored = s.anchored_seq;
    const auto refuse = [&](std::string problem) {
        problem_ = std::move(problem);
        result.consistent = false;
        result.problem = problem_;
        return result;
    };

    const std::vector<AuditRecord> pending = load_records(*db_, s.anchored_seq);
    const Sha256Digest nv = anchor_->read();

    // Find where the NV value is on the chain: at the last anchored record, or
    // (an extend whose mark did not reach the database) at a later one.
    Sha256Digest c = s.anchored_value;
    std::size_t k = 0;
    while (!same(c, nv) && k < pending.size()) {
        c = tpm::extend_chain(c, pending[k].hash);
        ++k;
    }
    if (!same(c, nv)) {
        return refuse("the NV value is not on the database's audit chain after record " +
                      std::to_string(s.anchored_seq) +
                      " (the database or the index was changed); nothing was extended");
    }
    // Before extending, the pending records must be well formed and linked:
    // never anchor a record that verify would reject.
    Sha256Digest prev = stored_hash(*db_, s.anchored_seq);
    std::int64_t expected = s.anchored_seq + 1;
    for (const AuditRecord& r : pending) {
        if (r.seq != expected || !r.malformed.empty() || !same(r.prev_hash, prev) ||
            !same(record_hash(r), r.hash)) {
            return refuse("audit record " + std::to_string(expected) +
                          " is missing or altered; nothing was extended (see verify)");
        }
        prev = r.hash;
        ++expected;
    }
    for (std::size_t i = k; i < pending.size(); ++i) {
        anchor_->extend(pending[i].hash);
        c = tpm::extend_chain(c, pending[i].hash);
        ++result.extended;
    }
    if (!pending.empty()) {
        Transaction tx(*db_);
        Statement st = db_->prepare(
            "UPDATE audit_anchor SET anchored_seq = ?, anchored_value = ? WHERE id = 1");
        st.bind(1, pending.back().seq).bind(2, ByteView(c));
        st.run();
        tx.commit();
        result.anchored = pending.back().seq;
    }
    problem_.clear();
    result.consistent = true;
    return result;
}

AuditRecord AuditLog::record(AuditType type, const std::optional<std::string>& mid,
                             const json& details) {
    AuditRecord r;
    {
        Transaction tx(*db_);
        r = append(type, mid, details);
        tx.commit();
    }
    anchor();
    return r;
}

AuditVerification AuditLog::verify() {
    const State s = load_state();
    const std::vector<AuditRecord> records = load_records(*db_);
    Sha256Digest nv{};
    try {
        nv = anchor_->read();
    } catch (const std::exception& e) {
        AuditVerification v;
        v.problem = AuditProblem::NvUnavailable;
        v.seq = 0;
        v.message = std::string("the NV value cannot be read: ") + e.what();
        return v;
    }
    return verify_records(records, s.base, nv, s.anchored_seq);
}

json AuditLog::export_json() {
    const State s = load_state();
    json nv = nullptr;
    try {
        nv = hex(anchor_->read());
    } catch (const std::exception&) {
        // exported without the value; verify says why
    }
    return {
        {"format", "tresim-audit-1"},
        {"anchor",
         {
             {"kind", to_string(anchor_->kind())},
             {"index", hex_handle(anchor_->index())},
             {"policy_delete", anchor_->kind() == AnchorKind::Platform},
             {"base", hex(s.base)},
             {"nv_value", nv},
         }},
        {"records", export_records(load_records(*db_))},
    };
}

AuditCertification AuditLog::certify(const tpm::Ak& ak, ByteView nonce) {
    AuditCertification out;
    out.kind = anchor_->kind();
    out.nv_public = anchor_->read_public();
    out.certification = anchor_->certify(ak.handle.get(), nonce);
    out.nv_value = anchor_->read();
    const State s = load_state();
    const std::vector<AuditRecord> records = load_records(*db_);
    Sha256Digest c = s.base;
    if (same(c, out.nv_value)) {
        out.records = 0;
    }
    for (const AuditRecord& r : records) {
        c = tpm::extend_chain(c, r.hash);
        if (same(c, out.nv_value)) {
            out.records = r.seq;
        }
    }
    return out;
}

AuditStatus AuditLog::status() {
    const State s = load_state();
    AuditStatus st;
    st.kind = anchor_->kind();
    st.index = anchor_->index();
    st.policy_delete = st.kind == AnchorKind::Platform;
    st.note = anchor_note(st.kind);
    st.records = max_seq(*db_);
    st.anchored = s.anchored_seq;
    st.consistent = problem_.empty();
    st.problem = problem_;
    st.base = s.base;
    return st;
}

// ---- Use counters -------------------------------------------------------------------------

void count_use(Db& db, const std::string& mid, UseKind kind, std::int64_t time) {
    require_transaction(db, "counting a MID use");
    if (mid.empty()) {
        throw InvalidArgument("mid", "must not be empty");
    }
    Statement st = db.prepare(
        "INSERT INTO audit_use_counter (mid, authentications, gsm, suci, last_time) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (mid) DO UPDATE SET "
        "authentications = authentications + excluded.authentications, "
        "gsm = gsm + excluded.gsm, suci = suci + excluded.suci, last_time = excluded.last_time");
    st.bind(1, mid)
        .bind(2, std::int64_t{kind == UseKind::Authentication ? 1 : 0})
        .bind(3, std::int64_t{kind == UseKind::Gsm ? 1 : 0})
        .bind(4, std::int64_t{kind == UseKind::Suci ? 1 : 0})
        .bind(5, time);
    st.run();
}

namespace {
UseCounters read_counters(const Statement& st) {
    UseCounters c;
    c.mid = st.column_text(0);
    c.authentications = st.column_int(1);
    c.gsm = st.column_int(2);
    c.suci = st.column_int(3);
    if (!st.column_is_null(4)) {
        c.last_time = st.column_int(4);
    }
    return c;
}
} // namespace

UseCounters use_counters(Db& db, const std::string& mid) {
    Statement st = db.prepare("SELECT mid, authentications, gsm, suci, last_time FROM "
                              "audit_use_counter WHERE mid = ?");
    st.bind(1, mid);
    if (!st.step()) {
        UseCounters c;
        c.mid = mid;
        return c;
    }
    return read_counters(st);
}

std::vector<UseCounters> all_use_counters(Db& db) {
    std::vector<UseCounters> out;
    Statement st = db.prepare(
        "SELECT mid, authentications, gsm, suci, last_time FROM audit_use_counter ORDER BY mid");
    while (st.step()) {
        out.push_back(read_counters(st));
    }
    return out;
}

} // namespace tresim::te
