// SPDX-License-Identifier: MIT
// Opening one of our SQLite databases the same way everywhere (broker store, outbox, inbox): the file is
// created 0600 (parent directories 0700) before SQLite touches it, WAL journaling, a busy timeout, and a
// schema brought up to date from an append-only migration list inside one BEGIN IMMEDIATE transaction.
//
// A database is marked with its PRAGMA application_id; a file holding another application's id, or tables
// without our id, is refused rather than migrated, and so is a schema newer than the caller knows.
#pragma once

#include <claudemesh/result.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh::store {

struct DatabaseSpec {
  std::string_view kind;                       ///< for messages: "broker store", "outbox", "inbox"
  std::int64_t application_id = 0;             ///< PRAGMA application_id marking our files
  std::span<const std::string_view> migrations;  ///< schema version N = the first N entries applied
  bool full_sync = true;                       ///< synchronous=FULL (true) or NORMAL
  int cache_kib = 2 * 1024;                    ///< page cache per connection
};

/// Creates the missing directories of `dir` with mode 0700; existing ones are left as they are.
Result<void> create_private_directories(const std::filesystem::path& dir);

/// Opens (creating if needed) and migrates the database at `path` (":memory:" for a private in-memory one).
/// @returns `Errc::io_error` when it cannot be opened, `Errc::io_error` too when it is not this kind of
///   database or its schema is newer than `spec.migrations`. Never throws.
Result<SQLite::Database> open_database(const std::string& path, const DatabaseSpec& spec);

/// `PRAGMA quick_check` passes (a cheap structural check). @returns the first problem SQLite reports.
Result<void> check_integrity(SQLite::Database& db);

/// Resets a cached statement however the code using it ends, so it is ready for its next use and holds no
/// read transaction open.
class Use {
 public:
  explicit Use(SQLite::Statement& statement) noexcept : statement_(statement) {}
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  ~Use() { statement_.tryReset(); }
  SQLite::Statement* operator->() const noexcept { return &statement_; }

 private:
  SQLite::Statement& statement_;
};

/// Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back if it throws or returns an error.
/// SQLite exceptions become `Errc::io_error` with SQLite's message.
template <class F>
auto in_immediate_transaction(SQLite::Database& db, F&& body) -> decltype(body());

/// `in_immediate_transaction`, but committed without waiting for the disk when the database is
/// `synchronous=FULL` (`full_sync`): for writes a crash may lose because recovery redoes them — an outbox
/// claim (inflight rows go back to pending on open) or a mark_sent (the broker deduplicates the resend).
/// Under WAL the next FULL commit syncs these frames too, in order, so nothing after them is durable
/// without them.
template <class F>
auto in_unsynced_transaction(SQLite::Database& db, bool full_sync, F&& body) -> decltype(body());

}  // namespace claudemesh::store

#include "store/sqlite_database_inl.hpp"
