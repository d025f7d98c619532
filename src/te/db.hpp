#pragma once
// A thin RAII layer over SQLite for the TE's state database: one connection,
// WAL journal, synchronous=FULL, prepared statements that reset themselves,
// and transactions that roll back unless committed. Every state change of the
// TE is one Transaction (DESIGN.md §3).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "usim/bytes.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace tresim::te {

class DbError : public std::runtime_error {
public:
    DbError(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

class Db;

class Statement {
public:
    Statement(Db& db, std::string_view sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    Statement(Statement&& o) noexcept;

    // Parameters are 1-based, as in SQLite.
    Statement& bind(int index, std::int64_t value);
    Statement& bind(int index, std::string_view text);
    Statement& bind(int index, ByteView blob);
    Statement& bind_null(int index);

    // Steps once: true while a row is available.
    bool step();
    // Runs a statement that returns no rows.
    void run();

    std::int64_t column_int(int index) const;
    std::string column_text(int index) const;
    Bytes column_blob(int index) const;
    bool column_is_null(int index) const;

    // Clears bindings and rewinds, ready for another use.
    void reset() noexcept;

private:
    Db* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string sql_; // the key under which the Db keeps it when it is done
};

class Db {
public:
    // Opens (creating when absent) the database file. The folder must exist.
    explicit Db(const std::string& path);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    void exec(std::string_view sql);
    Statement prepare(std::string_view sql) { return Statement(*this, sql); }
    std::int64_t last_insert_id() const noexcept;
    int changes() const noexcept;
    sqlite3* handle() const noexcept { return db_; }
    const std::string& path() const noexcept { return path_; }

    // Throws DbError naming the operation with SQLite's message for rc.
    [[noreturn]] void fail(const std::string& operation, int rc) const;

private:
    friend class Statement;
    // Compiling the same SQL on every call was a fifth of the daemon's CPU per
    // D-Bus call (docs/performance.md): a finished Statement leaves its
    // compiled form here (reset, bindings cleared) for the next one with the
    // same SQL. One idle statement per SQL text; one in use is not here, so
    // the same SQL may run nested.
    sqlite3_stmt* take_idle(const std::string& sql);
    void give_back(std::string sql, sqlite3_stmt* stmt) noexcept;

    std::string path_;
    sqlite3* db_ = nullptr;
    std::mutex idle_mutex_;
    std::map<std::string, sqlite3_stmt*, std::less<>> idle_;
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless commit() ran.
class Transaction {
public:
    explicit Transaction(Db& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

private:
    Db& db_;
    bool done_ = false;
};

} // namespace tresim::te
