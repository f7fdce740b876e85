// SPDX-License-Identifier: MIT
// Template part of sqlite_database.hpp.
#pragma once

#include <SQLiteCpp/Exception.h>

#include <exception>
#include <string>

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

}  // namespace claudemesh::store
