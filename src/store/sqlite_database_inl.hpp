// SPDX-License-Identifier: MIT
// Template part of sqlite_database.hpp.
#pragma once

#include <SQLiteCpp/Exception.h>

#include <exception>
#include <string>
#include <utility>

namespace claudemesh::store {

template <class F>
auto in_immediate_transaction(SQLite::Database& db, F&& body) -> decltype(body()) {
  try {
    db.exec("BEGIN IMMEDIATE");
  } catch (const SQLite::Exception& e) {
    return fail(Errc::io_error, std::string("cannot begin a transaction: ") + e.what());
  }
  try {
    auto result = body();
    if (!result) {
      db.tryExec("ROLLBACK");
      return result;
    }
    db.exec("COMMIT");
    return result;
  } catch (const std::exception& e) {
    db.tryExec("ROLLBACK");
    return fail(Errc::io_error, e.what());
  }
}

template <class F>
auto in_unsynced_transaction(SQLite::Database& db, bool full_sync, F&& body) -> decltype(body()) {
  if (full_sync) db.tryExec("PRAGMA synchronous = NORMAL");
  auto result = in_immediate_transaction(db, std::forward<F>(body));
  if (full_sync) db.tryExec("PRAGMA synchronous = FULL");
  return result;
}

}  // namespace claudemesh::store
