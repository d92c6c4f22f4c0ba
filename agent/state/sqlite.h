// A thin RAII layer over the SQLite C API for the state store: one connection (Db), prepared
// statements (Statement) and every failure turned into an ecs::Error carrying SQLite's own message.
// Not thread-safe by itself: the StateStore serialises use of its connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "agent/common/result.h"

namespace ecs::state::sqlite {

// The ErrorCode for an SQLite result code (primary or extended).
inline ErrorCode errorCode(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return ErrorCode::kDataLoss;
    case SQLITE_CONSTRAINT:
      return ErrorCode::kFailedPrecondition;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return ErrorCode::kFailedPrecondition;
    default:
      return ErrorCode::kInternal;
  }
}

// An SQLite failure: the primary code is kept so callers can tell an unusable file from an
// environmental failure (full disk, permissions, a lock held elsewhere).
struct Failure {
  int rc = SQLITE_OK;
  Error error;
};

class Db {
 public:
  Db() = default;
  Db(Db&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Db& operator=(Db&& other) noexcept {
    if (this != &other) {
      close();
      db_ = std::exchange(other.db_, nullptr);
    }
    return *this;
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() { close(); }

  // Opens `path` read-write, creating it if `create`. On failure the primary code is in `rc`.
  static Db open(const std::string& path, bool create, int* rc, std::string* message) {
    Db db;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (create) flags |= SQLITE_OPEN_CREATE;
    *rc = sqlite3_open_v2(path.c_str(), &db.db_, flags, nullptr);
    if (*rc != SQLITE_OK) {
      *message = db.db_ ? sqlite3_errmsg(db.db_) : sqlite3_errstr(*rc);
      db.close();
      return db;
    }
    sqlite3_extended_result_codes(db.db_, 1);
    return db;
  }

  explicit operator bool() const { return db_ != nullptr; }
  sqlite3* handle() const { return db_; }

  // The failure of the last call on this connection, with `what` as context.
  Error error(int rc, std::string_view what) const {
    const char* message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    return Error{errorCode(rc), fmt::format("{}: {} (sqlite code {})", what, message, rc)};
  }

  // Runs one or more statements that return no rows worth reading (schema, PRAGMAs, BEGIN).
  Result<void> exec(const std::string& sql, int* rc_out = nullptr) {
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc_out) *rc_out = rc;
    if (rc != SQLITE_OK) return fail(error(rc, sql.substr(0, sql.find('\n'))));
    return {};
  }

  int64_t changes() const { return sqlite3_changes64(db_); }
  int64_t lastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

  void close() {
    if (db_) sqlite3_close_v2(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
};

// One prepared statement. Binding errors are kept and reported by the first step().
class Statement {
 public:
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), bind_rc_(other.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  static Result<Statement> prepare(const Db& db, std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc =
        sqlite3_prepare_v2(db.handle(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) return fail(db.error(rc, fmt::format("prepare \"{}\"", sql)));
    return Statement(&db, stmt);
  }

  // Parameters are numbered from 1, as in SQL's ?1, ?2 ...
  // Text, never NULL: an empty string_view may have no data pointer, which SQLite binds as NULL.
  Statement& bind(int index, std::string_view text) {
    const char* data = text.data() ? text.data() : "";
    keep(sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Statement& bind(int index, int64_t number) {
    keep(sqlite3_bind_int64(stmt_, index, number));
    return *this;
  }

  // Advances: true with a row to read, false when done.
  Result<bool> step() {
    if (bind_rc_ != SQLITE_OK) return fail(db_->error(bind_rc_, "bind"));
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return fail(db_->error(rc, sqlite3_sql(stmt_)));
  }
  // Runs a statement that returns no rows.
  Result<void> run() {
    auto row = step();
    if (!row) return fail(row.error());
    return {};
  }

  std::string text(int column) const {
    const auto* data = sqlite3_column_text(stmt_, column);
    if (!data) return {};
    return std::string(reinterpret_cast<const char*>(data),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }

 private:
  Statement(const Db* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  void keep(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  const Db* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

}  // namespace ecs::state::sqlite
