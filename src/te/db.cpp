#include "db.hpp"

#include <sqlite3.h>

namespace tresim::te {

Db::Db(const std::string& path) : path_(path) {
    const int rc = sqlite3_open_v2(
        path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
        nullptr);
    if (rc != SQLITE_OK) {
        const std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw DbError("cannot open state database " + path + ": " + msg, rc);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
    // WAL with synchronous=FULL: a committed transaction survives a power cut.
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA foreign_keys=ON");
    // Deleted rows are overwritten with zeros, so a removed blob does not linger
    // in free pages.
    exec("PRAGMA secure_delete=ON");
}

Db::~Db() {
    for (const auto& [sql, stmt] : idle_) {
        sqlite3_finalize(stmt);
    }
    sqlite3_close_v2(db_);
}

sqlite3_stmt* Db::take_idle(const std::string& sql) {
    std::lock_guard lock(idle_mutex_);
    const auto it = idle_.find(sql);
    if (it == idle_.end()) {
        return nullptr;
    }
    sqlite3_stmt* stmt = it->second;
    idle_.erase(it);
    return stmt;
}

void Db::give_back(std::string sql, sqlite3_stmt* stmt) noexcept {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    try {
        std::lock_guard lock(idle_mutex_);
        if (idle_.emplace(std::move(sql), stmt).second) {
            return;
        }
    } catch (...) {
        // No memory for the entry: finalize instead.
    }
    sqlite3_finalize(stmt); // one of this SQL is idle already
}

void Db::fail(const std::string& operation, int rc) const {
    throw DbError(operation + ": " + (db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)),
                  rc);
}

void Db::exec(std::string_view sql) {
    const std::string text(sql);
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        const std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        throw DbError("SQL failed (" + text.substr(0, 60) + "): " + msg, rc);
    }
}

std::int64_t Db::last_insert_id() const noexcept {
    return sqlite3_last_insert_rowid(db_);
}

int Db::changes() const noexcept {
    return sqlite3_changes(db_);
}

Statement::Statement(Db& db, std::string_view sql) : db_(&db), sql_(sql) {
    stmt_ = db.take_idle(sql_);
    if (stmt_ != nullptr) {
        return;
    }
    const int rc = sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt_);
        stmt_ = nullptr;
        db.fail("prepare " + std::string(sql.substr(0, 60)), rc);
    }
}

Statement::Statement(Statement&& o) noexcept : db_(o.db_), stmt_(o.stmt_), sql_(std::move(o.sql_)) {
    o.stmt_ = nullptr;
}

Statement::~Statement() {
    if (stmt_ != nullptr) {
        db_->give_back(std::move(sql_), stmt_);
    }
}

Statement& Statement::bind(int index, std::int64_t value) {
    const int rc = sqlite3_bind_int64(stmt_, index, value);
    if (rc != SQLITE_OK) {
        db_->fail("bind", rc);
    }
    return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
    const int rc = sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                                     SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) {
        db_->fail("bind", rc);
    }
    return *this;
}

Statement& Statement::bind(int index, ByteView blob) {
    // A zero-length blob is still a blob, not NULL.
    static const std::uint8_t empty = 0;
    const int rc = sqlite3_bind_blob(stmt_, index, blob.empty() ? &empty : blob.data(),
                                     static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) {
        db_->fail("bind", rc);
    }
    return *this;
}

Statement& Statement::bind_null(int index) {
    const int rc = sqlite3_bind_null(stmt_, index);
    if (rc != SQLITE_OK) {
        db_->fail("bind", rc);
    }
    return *this;
}

bool Statement::step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
        return true;
    }
    if (rc == SQLITE_DONE) {
        return false;
    }
    const std::string sql = sqlite3_sql(stmt_) != nullptr ? sqlite3_sql(stmt_) : "";
    sqlite3_reset(stmt_);
    db_->fail("step " + sql.substr(0, 60), rc);
}

void Statement::run() {
    while (step()) {
    }
    reset();
}

std::int64_t Statement::column_int(int index) const {
    return sqlite3_column_int64(stmt_, index);
}

std::string Statement::column_text(int index) const {
    const auto* p = sqlite3_column_text(stmt_, index);
    return p != nullptr ? std::string(reinterpret_cast<const char*>(p),
                                      static_cast<std::size_t>(sqlite3_column_bytes(stmt_, index)))
                        : std::string();
}

Bytes Statement::column_blob(int index) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, index));
    const int n = sqlite3_column_bytes(stmt_, index);
    return p != nullptr ? Bytes(p, p + n) : Bytes();
}

bool Statement::column_is_null(int index) const {
    return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

void Statement::reset() noexcept {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

Transaction::Transaction(Db& db) : db_(db) {
    db_.exec("BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
    if (!done_) {
        try {
            db_.exec("ROLLBACK");
        } catch (...) {
            // Nothing sensible to do in a destructor; SQLite rolls back on close.
        }
    }
}

void Transaction::commit() {
    db_.exec("COMMIT");
    done_ = true;
}

} // namespace tresim::te
