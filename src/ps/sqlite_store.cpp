#include "sqlite_store.hpp"

namespace tresim::ps {
namespace {

constexpr const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, class TEXT NOT NULL, ek_public BLOB NOT NULL, ak_public BLOB NOT NULL,
    srk_public BLOB NOT NULL, mode TEXT NOT NULL, counter INTEGER NOT NULL,
    last_validation INTEGER NOT NULL, last_result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, class TEXT NOT NULL, iccid TEXT NOT NULL, algorithm TEXT NOT NULL,
    profile_public TEXT NOT NULL, secrets BLOB NOT NULL, bind TEXT NOT NULL, device TEXT NOT NULL,
    slot INTEGER, state TEXT NOT NULL, created INTEGER NOT NULL, history TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS activation_codes (
    hash TEXT PRIMARY KEY, subscription TEXT NOT NULL, confirmation_hash TEXT NOT NULL,
    wrong INTEGER NOT NULL, state TEXT NOT NULL, used_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, ek_public BLOB NOT NULL, ak_public BLOB NOT NULL,
    srk_public BLOB NOT NULL, credential_hash BLOB NOT NULL, nonce BLOB NOT NULL,
    pcr_selection TEXT NOT NULL, class TEXT NOT NULL, mode TEXT NOT NULL, code_hash TEXT NOT NULL,
    expires INTEGER NOT NULL, state TEXT NOT NULL, validation TEXT NOT NULL,
    reference TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, subscription TEXT NOT NULL, op TEXT NOT NULL,
    body TEXT NOT NULL, counter INTEGER, state TEXT NOT NULL, result TEXT NOT NULL,
    created INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS orders_device ON orders (device);
CREATE TABLE IF NOT EXISTS refs (
    id TEXT PRIMARY KEY, class TEXT NOT NULL, pcrs TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ak_clocks (
    ak_name TEXT PRIMARY KEY, clock INTEGER NOT NULL, reset_count INTEGER NOT NULL,
    restart_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, device TEXT NOT NULL,
    event TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);
)";

std::int64_t i64(std::uint64_t v) {
    return static_cast<std::int64_t>(v);
}

DeviceRecord read_device(const te::Statement& s) {
    DeviceRecord r;
    r.id = s.column_text(0);
    r.device_class = s.column_text(1);
    r.ek_public = s.column_blob(2);
    r.ak_public = s.column_blob(3);
    r.srk_public = s.column_blob(4);
    r.mode = s.column_text(5);
    r.counter = static_cast<std::uint64_t>(s.column_int(6));
    r.last_validation = s.column_int(7);
    r.last_result = s.column_text(8);
    return r;
}

SubscriptionRecord read_subscription(const te::Statement& s) {
    SubscriptionRecord r;
    r.id = s.column_text(0);
    r.device_class = s.column_text(1);
    r.iccid = s.column_text(2);
    r.algorithm = s.column_text(3);
    r.profile_public = s.column_text(4);
    r.secrets = s.column_blob(5);
    r.bind = s.column_text(6);
    r.device = s.column_text(7);
    if (!s.column_is_null(8)) {
        r.slot = static_cast<int>(s.column_int(8));
    }
    r.state = s.column_text(9);
    r.created = s.column_int(10);
    r.history = s.column_text(11);
    return r;
}

OrderRecord read_order(const te::Statement& s) {
    OrderRecord r;
    r.id = s.column_text(0);
    r.device = s.column_text(1);
    r.subscription = s.column_text(2);
    r.op = s.column_text(3);
    r.body = s.column_text(4);
    if (!s.column_is_null(5)) {
        r.counter = static_cast<std::uint64_t>(s.column_int(5));
    }
    r.state = s.column_text(6);
    r.result = s.column_text(7);
    r.created = s.column_int(8);
    return r;
}

constexpr const char* kSubscriptionColumns =
    "id, class, iccid, algorithm, profile_public, secrets, bind, device, slot, state, created, "
    "history";
constexpr const char* kOrderColumns =
    "id, device, subscription, op, body, counter, state, result, created";

} // namespace

SqliteStore::SqliteStore(const std::string& path) : db_(path) {
    db_.exec(kSchema);
}

void SqliteStore::transaction(const std::function<void()>& fn) {
    if (depth_ > 0) {
        fn();
        return;
    }
    te::Transaction t(db_);
    ++depth_;
    try {
        fn();
    } catch (...) {
        --depth_;
        throw;
    }
    --depth_;
    t.commit();
}

void SqliteStore::put_device(const DeviceRecord& r) {
    db_.prepare("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(1, r.id)
        .bind(2, r.device_class)
        .bind(3, r.ek_public)
        .bind(4, r.ak_public)
        .bind(5, r.srk_public)
        .bind(6, r.mode)
        .bind(7, i64(r.counter))
        .bind(8, r.last_validation)
        .bind(9, r.last_result)
        .run();
}

std::optional<DeviceRecord> SqliteStore::device(const std::string& id) {
    te::Statement s = db_.prepare("SELECT * FROM devices WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) {
        return std::nullopt;
    }
    return read_device(s);
}

std::vector<DeviceRecord> SqliteStore::devices() {
    te::Statement s = db_.prepare("SELECT * FROM devices ORDER BY id");
    std::vector<DeviceRecord> out;
    while (s.step()) {
        out.push_back(read_device(s));
    }
    return out;
}

void SqliteStore::put_subscription(const SubscriptionRecord& r) {
    te::Statement s =
        db_.prepare(std::string("INSERT OR REPLACE INTO subscriptions (") + kSubscriptionColumns +
                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind(1, r.id)
        .bind(2, r.device_class)
        .bind(3, r.iccid)
        .bind(4, r.algorithm)
        .bind(5, r.profile_public)
        .bind(6, r.secrets)
        .bind(7, r.bind)
        .bind(8, r.device);
    if (r.slot) {
        s.bind(9, std::int64_t{*r.slot});
    } else {
        s.bind_null(9);
    }
    s.bind(10, r.state).bind(11, r.created).bind(12, r.history).run();
}

std::optional<SubscriptionRecord> SqliteStore::subscription(const std::string& id) {
    te::Statement s = db_.prepare(std::string("SELECT ") + kSubscriptionColumns +
                                  " FROM subscriptions WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) {
        return std::nullopt;
    }
    return read_subscription(s);
}

std::vector<SubscriptionRecord> SqliteStore::subscriptions() {
    te::Statement s = db_.prepare(std::string("SELECT ") + kSubscriptionColumns +
                                  " FROM subscriptions ORDER BY created, id");
    std::vector<SubscriptionRecord> out;
    while (s.step()) {
        out.push_back(read_subscription(s));
    }
    return out;
}

void SqliteStore::put_code(const ActivationCodeRecord& r) {
    db_.prepare("INSERT OR REPLACE INTO activation_codes VALUES (?, ?, ?, ?, ?, ?)")
        .bind(1, r.hash)
        .bind(2, r.subscription)
        .bind(3, r.confirmation_hash)
        .bind(4, std::int64_t{r.wrong_confirmations})
        .bind(5, r.state)
        .bind(6, r.used_by)
        .run();
}

std::optional<ActivationCodeRecord> SqliteStore::code(const std::string& hash) {
    te::Statement s = db_.prepare("SELECT * FROM activation_codes WHERE hash = ?");
    s.bind(1, hash);
    if (!s.step()) {
        return std::nullopt;
    }
    ActivationCodeRecord r;
    r.hash = s.column_text(0);
    r.subscription = s.column_text(1);
    r.confirmation_hash = s.column_text(2);
    r.wrong_confirmations = static_cast<int>(s.column_int(3));
    r.state = s.column_text(4);
    r.used_by = s.column_text(5);
    return r;
}

void SqliteStore::put_session(const SessionRecord& r) {
    db_.prepare("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)")
        .bind(1, r.id)
        .bind(2, r.device)
        .bind(3, r.ek_public)
        .bind(4, r.ak_public)
        .bind(5, r.srk_public)
        .bind(6, r.credential_hash)
        .bind(7, r.nonce)
        .bind(8, r.pcr_selection)
        .bind(9, r.device_class)
        .bind(10, r.mode)
        .bind(11, r.code_hash)
        .bind(12, r.expires)
        .bind(13, r.state)
        .bind(14, r.validation)
        .bind(15, r.reference)
        .run();
}

std::optional<SessionRecord> SqliteStore::session(const std::string& id) {
    te::Statement s = db_.prepare("SELECT * FROM sessions WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) {
        return std::nullopt;
    }
    SessionRecord r;
    r.id = s.column_text(0);
    r.device = s.column_text(1);
    r.ek_public = s.column_blob(2);
    r.ak_public = s.column_blob(3);
    r.srk_public = s.column_blob(4);
    r.credential_hash = s.column_blob(5);
    r.nonce = s.column_blob(6);
    r.pcr_selection = s.column_text(7);
    r.device_class = s.column_text(8);
    r.mode = s.column_text(9);
    r.code_hash = s.column_text(10);
    r.expires = s.column_int(11);
    r.state = s.column_text(12);
    r.validation = s.column_text(13);
    r.reference = s.column_text(14);
    return r;
}

void SqliteStore::put_order(const OrderRecord& r) {
    te::Statement s = db_.prepare(std::string("INSERT OR REPLACE INTO orders (") + kOrderColumns +
                                  ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind(1, r.id).bind(2, r.device).bind(3, r.subscription).bind(4, r.op).bind(5, r.body);
    if (r.counter) {
        s.bind(6, i64(*r.counter));
    } else {
        s.bind_null(6);
    }
    s.bind(7, r.state).bind(8, r.result).bind(9, r.created).run();
}

std::optional<OrderRecord> SqliteStore::order(const std::string& id) {
    te::Statement s =
        db_.prepare(std::string("SELECT ") + kOrderColumns + " FROM orders WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) {
        return std::nullopt;
    }
    return read_order(s);
}

std::vector<OrderRecord> SqliteStore::orders_of(const std::string& device) {
    te::Statement s = db_.prepare(std::string("SELECT ") + kOrderColumns +
                                  " FROM orders WHERE device = ? ORDER BY counter IS NULL, "
                                  "counter, created, rowid");
    s.bind(1, device);
    std::vector<OrderRecord> out;
    while (s.step()) {
        out.push_back(read_order(s));
    }
    return out;
}

void SqliteStore::put_reference(const ReferenceRecord& r) {
    db_.prepare("INSERT OR REPLACE INTO refs VALUES (?, ?, ?, ?)")
        .bind(1, r.id)
        .bind(2, r.device_class)
        .bind(3, r.pcrs)
        .bind(4, r.created)
        .run();
}

std::vector<ReferenceRecord> SqliteStore::references(const std::string& device_class) {
    te::Statement s =
        db_.prepare("SELECT * FROM refs WHERE class = ? ORDER BY created DESC, rowid DESC");
    s.bind(1, device_class);
    std::vector<ReferenceRecord> out;
    while (s.step()) {
        out.push_back({s.column_text(0), s.column_text(1), s.column_text(2), s.column_int(3)});
    }
    return out;
}

void SqliteStore::put_ak_clock(const AkClockRecord& r) {
    db_.prepare("INSERT OR REPLACE INTO ak_clocks VALUES (?, ?, ?, ?)")
        .bind(1, r.ak_name)
        .bind(2, i64(r.clock))
        .bind(3, std::int64_t{r.reset_count})
        .bind(4, std::int64_t{r.restart_count})
        .run();
}

std::optional<AkClockRecord> SqliteStore::ak_clock(const std::string& ak_name) {
    te::Statement s = db_.prepare("SELECT * FROM ak_clocks WHERE ak_name = ?");
    s.bind(1, ak_name);
    if (!s.step()) {
        return std::nullopt;
    }
    return AkClockRecord{s.column_text(0), static_cast<std::uint64_t>(s.column_int(1)),
                         static_cast<std::uint32_t>(s.column_int(2)),
                         static_cast<std::uint32_t>(s.column_int(3))};
}

void SqliteStore::append_audit(const AuditRecord& r) {
    db_.prepare("INSERT INTO audit (time, device, event, outcome, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(1, r.time)
        .bind(2, r.device)
        .bind(3, r.event)
        .bind(4, r.outcome)
        .bind(5, r.detail)
        .run();
}

std::vector<AuditRecord> SqliteStore::audit(std::int64_t after_seq, std::size_t limit) {
    te::Statement s = db_.prepare("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?");
    s.bind(1, after_seq).bind(2, static_cast<std::int64_t>(limit));
    std::vector<AuditRecord> out;
    while (s.step()) {
        out.push_back({s.column_int(0), s.column_int(1), s.column_text(2), s.column_text(3),
                       s.column_text(4), s.column_text(5)});
    }
    return out;
}

} // namespace tresim::ps
