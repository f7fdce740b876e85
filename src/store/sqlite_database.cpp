// SPDX-License-Identifier: MIT
#include "store/sqlite_database.hpp"

#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include <cerrno>
#include <optional>
#include <system_error>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace claudemesh::store {
namespace {

constexpr int busy_timeout_ms = 5'000;

Error os_error(std::string_view what, const std::filesystem::path& path, int err) {
  return {Errc::io_error, std::string(what) + " " + path.string() + ": " + std::generic_category().message(err)};
}

// Creates the database file with mode 0600 before SQLite opens it (SQLite would use 0644 & ~umask; its -wal
// and -shm files copy the database file's mode), and narrows an existing file or side file to 0600.
Result<void> prepare_database_file(const std::filesystem::path& path) {
  if (auto made = create_private_directories(path.parent_path()); !made) return made;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(os_error("cannot open", path, errno));
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  const int stat_errno = errno;
  const bool chmod_ok = !stat_ok || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0 || ::fchmod(fd, 0600) == 0;
  const int chmod_errno = errno;
  ::close(fd);
  if (!stat_ok) return fail(os_error("cannot stat", path, stat_errno));
  if (!S_ISREG(st.st_mode)) return fail(Errc::io_error, path.string() + " is not a regular file");
  if (!chmod_ok) return fail(os_error("cannot chmod", path, chmod_errno));
  for (const char* suffix : {"-wal", "-shm", "-journal"}) {
    const std::filesystem::path side = path.string() + suffix;
    struct stat side_st {};
    if (::lstat(side.c_str(), &side_st) == 0 && S_ISREG(side_st.st_mode) && (side_st.st_mode & 077) != 0 &&
        ::chmod(side.c_str(), 0600) != 0) {
      return fail(os_error("cannot chmod", side, errno));
    }
  }
  return {};
}

std::int64_t pragma_int(SQLite::Database& db, const char* pragma) { return db.execAndGet(pragma).getInt64(); }

// Brings the schema to the newest version, in one transaction, so concurrent openers cannot both migrate.
Result<void> migrate(SQLite::Database& db, const std::string& path, const DatabaseSpec& spec) {
  const std::string kind(spec.kind);
  return in_immediate_transaction(db, [&]() -> Result<void> {
    const auto version = pragma_int(db, "PRAGMA user_version");
    const auto application_id = pragma_int(db, "PRAGMA application_id");
    const auto known = static_cast<std::int64_t>(spec.migrations.size());
    if (application_id != 0 && application_id != spec.application_id) {
      return fail(Errc::io_error, path + " is not a claudemesh " + kind + " (another application's database)");
    }
    if (application_id == 0 && pragma_int(db, "SELECT COUNT(*) FROM sqlite_schema") != 0) {
      return fail(Errc::io_error, path + " is not a claudemesh " + kind + " (it holds other tables)");
    }
    if (version > known) {
      return fail(Errc::io_error, path + " has " + kind + " schema version " + std::to_string(version) +
                                      ", newer than this build knows (" + std::to_string(known) + ")");
    }
    if (application_id == 0) db.exec("PRAGMA application_id = " + std::to_string(spec.application_id));
    for (auto next = version; next < known; ++next) {
      db.exec(std::string(spec.migrations[static_cast<std::size_t>(next)]));
      db.exec("PRAGMA user_version = " + std::to_string(next + 1));
    }
    return {};
  });
}

Result<SQLite::Database> open_unchecked(const std::string& path, const DatabaseSpec& spec) {
  const bool in_memory = path == ":memory:";
  if (path.empty()) return fail(Errc::invalid_value, "open " + std::string(spec.kind) + ": empty path");
  if (!in_memory) {
    if (auto prepared = prepare_database_file(path); !prepared) return fail(prepared.error(), spec.kind);
  }
  SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX |
                                (in_memory ? 0 : SQLite::OPEN_NOFOLLOW),
                      busy_timeout_ms);
  db.exec("PRAGMA foreign_keys = ON");
  const std::string journal = db.execAndGet("PRAGMA journal_mode = WAL").getString();
  if (journal != "wal" && !(in_memory && journal == "memory")) {
    return fail(Errc::io_error, path + ": cannot use WAL journaling (journal_mode is " + journal + ")");
  }
  db.exec(spec.full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  db.exec("PRAGMA cache_size = -" + std::to_string(spec.cache_kib));
  // Savepoint journals in memory: by default SQLite moves one to a temporary file once it passes 64 KiB.
  db.exec("PRAGMA temp_store = MEMORY");
  if (auto migrated = migrate(db, path, spec); !migrated) return fail(migrated.error());
  return db;
}

}  // namespace

Result<void> create_private_directories(const std::filesystem::path& dir) {
  if (dir.empty()) return {};
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return {};
  if (auto parent = create_private_directories(dir.parent_path()); !parent) return parent;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return fail(os_error("cannot create directory", dir, errno));
  return {};
}

Result<SQLite::Database> open_database(const std::string& path, const DatabaseSpec& spec) {
  try {
    return open_unchecked(path, spec);
  } catch (const std::exception& e) {
    return fail(Errc::io_error, "cannot open " + std::string(spec.kind) + " " + path + ": " + e.what());
  }
}

Result<void> check_integrity(SQLite::Database& db) {
  try {
    SQLite::Statement check(db, "PRAGMA quick_check");
    if (!check.executeStep()) return fail(Errc::malformed, "integrity check returned nothing");
    std::string verdict = check.getColumn(0).getString();
    if (verdict != "ok") return fail(Errc::malformed, "integrity check failed: " + verdict);
    return {};
  } catch (const std::exception& e) {
    return fail(Errc::malformed, std::string("integrity check failed: ") + e.what());
  }
}

}  // namespace claudemesh::store
