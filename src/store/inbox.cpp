// SPDX-License-Identifier: MIT
// Inbox on SQLite (SQLiteCpp): one connection, every fixed statement prepared once; list, search and counts
// build their SQL per call (the recipient scope binds one `?` per key). SQLite and std exceptions are caught
// here and returned as `Result` errors; none escapes.
//
// Schema (migration 1; see `migrations` below):
//   inbox   one row per (message, recipient). `seq` is an INTEGER PRIMARY KEY (the rowid) because the FTS index
//           refers to rows by rowid and VACUUM may renumber the implicit rowid of a table without one; the
//           public row id (`id`, a ULID) is UNIQUE beside it. Optional text is '' rather than NULL, so the
//           dedupe key (client_message_id, mesh, recipient_pubkey) is never escaped by a NULL. The key leads
//           with client_message_id so that get() by client id uses it too.
//     inbox_received         (received_at_ms, id): unscoped listing, newest first, and prune/flush by age.
//     inbox_recipient        (recipient_pubkey, received_at_ms, id): scoped listing.
//     inbox_mesh             (mesh, received_at_ms, id): listing and flushing one mesh.
//     inbox_broker_message   (broker_message_id): get() by broker id.
//     inbox_unread           (recipient_pubkey, received_at_ms) WHERE unseen: unread listings and counts.
//   inbox_fts  FTS5 over (sender_name, body) with `inbox` as its external content, kept in step by triggers.
//              Updates that touch neither column (mark_seen) do not fire the update trigger.
//
// Opening: a file that is not SQLite at all, or that SQLite reports as corrupt, or that fails the integrity
// check, is set aside as `<path>.corrupt-<ms>` (with its -wal/-shm/-journal) and a fresh inbox created. A file
// marked with another application's id, or with a schema newer than this build, is refused and left untouched:
// its header is read before SQLite opens the file, since open_database() would switch it to WAL first.
#include <claudemesh/inbox.hpp>
#include <claudemesh/ids.hpp>

#include "store/sqlite_database.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace claudemesh {
namespace {

// PRAGMA application_id of an inbox ("cmib").
constexpr std::int64_t inbox_application_id = 0x636d6962;
// InboxQuery::limit is clamped to this range.
constexpr std::size_t min_limit = 1;
constexpr std::size_t max_limit = 1'000;
// More recipient keys than this in one scope are refused (each is one bound parameter; SQLite allows 32766).
constexpr std::size_t max_recipients = 10'000;

// The schema, as an ordered list of migrations: version N is the state after the first N entries have run.
// Append-only: an entry that has shipped is never edited; a change is a new entry.
constexpr std::array<std::string_view, 1> migrations = {
    R"sql(
CREATE TABLE inbox (
  seq                  INTEGER PRIMARY KEY,
  id                   TEXT NOT NULL UNIQUE,
  client_message_id    TEXT NOT NULL,
  broker_message_id    TEXT NOT NULL,
  mesh                 TEXT NOT NULL,
  topic                TEXT NOT NULL,
  target_spec          TEXT NOT NULL,
  sender_pubkey        TEXT NOT NULL,
  sender_member_pubkey TEXT NOT NULL,
  sender_name          TEXT NOT NULL,
  body                 TEXT NOT NULL,
  meta_json            TEXT NOT NULL,
  priority             TEXT NOT NULL,
  reply_to_id          TEXT NOT NULL,
  created_at_ms        INTEGER NOT NULL,
  received_at_ms       INTEGER NOT NULL,
  seen_at_ms           INTEGER,
  recipient_pubkey     TEXT NOT NULL,
  recipient_kind       TEXT NOT NULL CHECK (recipient_kind IN ('', 'member', 'session')),
  UNIQUE (client_message_id, mesh, recipient_pubkey)
) STRICT;
CREATE INDEX inbox_received ON inbox (received_at_ms, id);
CREATE INDEX inbox_recipient ON inbox (recipient_pubkey, received_at_ms, id);
CREATE INDEX inbox_mesh ON inbox (mesh, received_at_ms, id);
CREATE INDEX inbox_broker_message ON inbox (broker_message_id);
CREATE INDEX inbox_unread ON inbox (recipient_pubkey, received_at_ms) WHERE seen_at_ms IS NULL;

CREATE VIRTUAL TABLE inbox_fts USING fts5 (
  sender_name, body, content = 'inbox', content_rowid = 'seq', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER inbox_fts_insert AFTER INSERT ON inbox BEGIN
  INSERT INTO inbox_fts (rowid, sender_name, body) VALUES (new.seq, new.sender_name, new.body);
END;
CREATE TRIGGER inbox_fts_delete AFTER DELETE ON inbox BEGIN
  INSERT INTO inbox_fts (inbox_fts, rowid, sender_name, body) VALUES ('delete', old.seq, old.sender_name, old.body);
END;
CREATE TRIGGER inbox_fts_update AFTER UPDATE OF seq, sender_name, body ON inbox BEGIN
  INSERT INTO inbox_fts (inbox_fts, rowid, sender_name, body) VALUES ('delete', old.seq, old.sender_name, old.body);
  INSERT INTO inbox_fts (rowid, sender_name, body) VALUES (new.seq, new.sender_name, new.body);
END;
)sql",
};

// The InboxMessage fields in the order read_message() expects them.
constexpr std::array<std::string_view, 18> message_columns = {
    "id",          "client_message_id", "broker_message_id",    "mesh",           "topic",
    "target_spec", "sender_pubkey",     "sender_member_pubkey", "sender_name",    "body",
    "meta_json",   "priority",          "reply_to_id",          "created_at_ms",  "received_at_ms",
    "seen_at_ms",  "recipient_pubkey",  "recipient_kind",
};

std::string column_list(std::string_view prefix) {
  std::string out;
  for (const auto column : message_columns) {
    if (!out.empty()) out += ", ";
    out += prefix;
    out += column;
  }
  return out;
}

std::string select_from_inbox(std::string_view where) {
  return "SELECT " + column_list("") + " FROM inbox WHERE " + std::string(where);
}

InboxMessage read_message(const SQLite::Statement& row) {
  InboxMessage message;
  int column = 0;
  const auto text = [&] { return row.getColumn(column++).getString(); };
  message.id = text();
  message.client_message_id = text();
  message.broker_message_id = text();
  message.mesh = text();
  message.topic = text();
  message.target_spec = text();
  message.sender_pubkey = text();
  message.sender_member_pubkey = text();
  message.sender_name = text();
  message.body = text();
  message.meta_json = text();
  message.priority = text();
  message.reply_to_id = text();
  message.created_at_ms = row.getColumn(column++).getInt64();
  message.received_at_ms = row.getColumn(column++).getInt64();
  if (const auto seen = row.getColumn(column++); !seen.isNull()) message.seen_at_ms = seen.getInt64();
  message.recipient_pubkey = text();
  message.recipient_kind = text();
  return message;
}

// Every fixed statement, prepared when the inbox opens.
struct Statements {
  explicit Statements(SQLite::Database& database) : db(database) {}
  SQLite::Database& db;

  SQLite::Statement insert{db,
                           "INSERT INTO inbox (" + column_list("") +
                               ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                               "ON CONFLICT (client_message_id, mesh, recipient_pubkey) DO NOTHING"};
  SQLite::Statement find_copy{db,
                              "SELECT id FROM inbox WHERE client_message_id = ? AND mesh = ? AND recipient_pubkey = ?"};
  SQLite::Statement by_id{db, select_from_inbox("id = ?")};
  // Several recipients' copies share a client id, and several messages could share a broker id: the first stored.
  SQLite::Statement by_client_id{db, select_from_inbox("client_message_id = ? ORDER BY seq LIMIT 1")};
  SQLite::Statement by_broker_id{db, select_from_inbox("broker_message_id = ? ORDER BY seq LIMIT 1")};
  SQLite::Statement mark_seen{db, "UPDATE inbox SET seen_at_ms = ? WHERE id = ? AND seen_at_ms IS NULL"};
  SQLite::Statement remove{db, "DELETE FROM inbox WHERE id = ?"};
  SQLite::Statement flush{db,
                          "DELETE FROM inbox WHERE (?1 = '' OR mesh = ?1) AND (?2 IS NULL OR received_at_ms < ?2)"};
  SQLite::Statement prune{db, "DELETE FROM inbox WHERE received_at_ms < ?"};
};

using store::Use;

// ---- query filters ----

// A value bound to one `?` of a built statement. Strings point into the caller's query, alive for the call.
using Value = std::variant<const std::string*, std::int64_t>;

struct Filter {
  std::string sql;  ///< " AND ..." terms
  std::vector<Value> values;
};

std::int64_t to_int64(std::size_t n) {
  return n > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()) ? std::numeric_limits<std::int64_t>::max()
                                                                                 : static_cast<std::int64_t>(n);
}

void add_recipient_scope(Filter& filter, const std::vector<std::string>& recipients, std::string_view prefix) {
  if (recipients.empty()) return;
  filter.sql += " AND ";
  filter.sql += prefix;
  filter.sql += "recipient_pubkey IN (";
  for (std::size_t n = 0; n < recipients.size(); ++n) {
    filter.sql += n == 0 ? "?" : ", ?";
    filter.values.emplace_back(&recipients[n]);
  }
  filter.sql += ")";
}

// The WHERE terms for `query`'s filters on columns of `prefix` ("" or "i.").
Filter filter_for(const InboxQuery& query, std::string_view prefix) {
  Filter filter;
  const std::string p(prefix);
  if (!query.mesh.empty()) {
    filter.sql += " AND " + p + "mesh = ?";
    filter.values.emplace_back(&query.mesh);
  }
  if (!query.topic.empty()) {
    filter.sql += " AND " + p + "topic = ?";
    filter.values.emplace_back(&query.topic);
  }
  if (!query.from_pubkey.empty()) {
    filter.sql += " AND (" + p + "sender_pubkey = ? OR " + p + "sender_member_pubkey = ?)";
    filter.values.emplace_back(&query.from_pubkey);
    filter.values.emplace_back(&query.from_pubkey);
  }
  if (query.since_ms) {
    filter.sql += " AND " + p + "received_at_ms >= ?";
    filter.values.emplace_back(*query.since_ms);
  }
  if (query.before_ms && !query.before_id.empty()) {
    filter.sql += " AND (" + p + "received_at_ms, " + p + "id) < (?, ?)";
    filter.values.emplace_back(*query.before_ms);
    filter.values.emplace_back(&query.before_id);
  } else if (query.before_ms) {
    filter.sql += " AND " + p + "received_at_ms < ?";
    filter.values.emplace_back(*query.before_ms);
  }
  if (query.unread_only) filter.sql += " AND " + p + "seen_at_ms IS NULL";
  add_recipient_scope(filter, query.recipients, prefix);
  return filter;
}

// Binds `values` to the parameters from `first` on; returns the next free parameter index.
int bind_values(SQLite::Statement& statement, const std::vector<Value>& values, int first) {
  int index = first;
  for (const auto& value : values) {
    if (const auto* const* text = std::get_if<const std::string*>(&value)) {
      statement.bindNoCopy(index++, **text);
    } else {
      statement.bind(index++, std::get<std::int64_t>(value));
    }
  }
  return index;
}

std::int64_t clamped_limit(std::size_t limit) { return to_int64(std::clamp(limit, min_limit, max_limit)); }

Result<void> check_scope(const std::vector<std::string>& recipients, std::string_view operation) {
  if (recipients.size() > max_recipients) {
    return fail(Errc::invalid_value, std::string(operation) + ": more than " + std::to_string(max_recipients) +
                                         " recipient keys in one scope");
  }
  return {};
}

std::vector<InboxMessage> read_all(SQLite::Statement& statement) {
  std::vector<InboxMessage> rows;
  while (statement.executeStep()) rows.push_back(read_message(statement));
  return rows;
}

std::int64_t saturating_sub(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (!__builtin_sub_overflow(a, b, &out)) return out;
  return b > 0 ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max();
}

// ---- errors ----

Error sqlite_error(std::string_view operation, const SQLite::Exception& e) {
  const Errc code = e.getErrorCode() == SQLITE_CONSTRAINT ? Errc::invalid_value : Errc::io_error;
  return {code, "inbox " + std::string(operation) + ": " + e.what()};
}

// Runs `body`, turning any exception into an error value.
template <class F>
auto guarded(std::string_view operation, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const SQLite::Exception& e) {
    return fail(sqlite_error(operation, e));
  } catch (const std::exception& e) {
    return fail(Errc::io_error, "inbox " + std::string(operation) + ": " + e.what());
  }
}

// Runs `body` in a BEGIN IMMEDIATE transaction (committed with the configured sync), errors named by `operation`.
template <class F>
auto in_transaction(SQLite::Database& db, std::string_view operation, F&& body) -> decltype(body()) {
  auto result = store::in_immediate_transaction(db, std::forward<F>(body));
  if (!result) return fail(result.error(), "inbox " + std::string(operation));
  return result;
}

// ---- the file ----

bool is_memory(const std::filesystem::path& path) { return path == ":memory:"; }

// What the first 100 bytes of an existing file say, before SQLite is allowed to touch it.
enum class FileHeader {
  unknown,     ///< missing, empty, unreadable, not a regular file: open_database() decides
  ours,        ///< SQLite, marked as an inbox of a schema we know, or not marked yet
  not_sqlite,  ///< bytes that are not an SQLite database
  foreign,     ///< SQLite marked with another application's id
  newer,       ///< an inbox of a newer schema
};

std::int64_t big_endian_int32(const unsigned char* bytes) {
  const std::uint32_t value = (std::uint32_t{bytes[0]} << 24U) | (std::uint32_t{bytes[1]} << 16U) |
                              (std::uint32_t{bytes[2]} << 8U) | std::uint32_t{bytes[3]};
  return static_cast<std::int32_t>(value);
}

FileHeader read_file_header(const std::filesystem::path& path) {
  constexpr std::size_t header_size = 100;
  constexpr std::string_view magic{"SQLite format 3\0", 16};
  constexpr std::size_t user_version_offset = 60;
  constexpr std::size_t application_id_offset = 68;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return FileHeader::unknown;
  struct stat st {};
  std::array<unsigned char, header_size> header{};
  std::size_t got = 0;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    while (got < header.size()) {
      const ssize_t n = ::read(fd, header.data() + got, header.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
  }
  ::close(fd);
  if (!S_ISREG(st.st_mode) || st.st_size == 0) return FileHeader::unknown;
  if (got < header.size() || std::memcmp(header.data(), magic.data(), magic.size()) != 0) {
    return FileHeader::not_sqlite;
  }
  const auto application_id = big_endian_int32(header.data() + application_id_offset);
  if (application_id != 0 && application_id != inbox_application_id) return FileHeader::foreign;
  const auto version = big_endian_int32(header.data() + user_version_offset);
  if (application_id == inbox_application_id && version > to_int64(migrations.size())) return FileHeader::newer;
  return FileHeader::ours;
}

// Why open_database() failed, asked again on a read-only connection: SQLite calls the file damaged, or it is an
// inbox of a newer schema (its header said otherwise: the newer version was still in the WAL), or something else
// (busy, unwritable, another application's tables).
enum class OpenFailure { damaged, newer, other };

OpenFailure diagnose_open_failure(const std::filesystem::path& path) {
  try {
    SQLite::Database probe(path.string(), SQLite::OPEN_READONLY | SQLite::OPEN_NOFOLLOW);
    const auto application_id = probe.execAndGet("PRAGMA application_id").getInt64();
    const auto version = probe.execAndGet("PRAGMA user_version").getInt64();
    probe.execAndGet("SELECT COUNT(*) FROM sqlite_schema");
    const bool newer = application_id == inbox_application_id && version > to_int64(migrations.size());
    return newer ? OpenFailure::newer : OpenFailure::other;
  } catch (const SQLite::Exception& e) {
    const bool damaged = e.getErrorCode() == SQLITE_CORRUPT || e.getErrorCode() == SQLITE_NOTADB;
    return damaged ? OpenFailure::damaged : OpenFailure::other;
  } catch (const std::exception&) {
    return OpenFailure::other;
  }
}

bool path_exists(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::symlink_status(path, ec).type() != std::filesystem::file_type::not_found;
}

constexpr std::array<std::string_view, 3> side_suffixes = {"-wal", "-shm", "-journal"};

// Moves the database and its side files to `<path>.corrupt-<ms>` (with a counter if that is taken). The side
// files go first: a stale WAL left beside a fresh database would be replayed into it.
Result<void> set_aside(const std::filesystem::path& path, std::int64_t now) {
  const std::string base = path.string() + ".corrupt-" + std::to_string(now);
  std::string target = base;
  for (int n = 1; path_exists(target) || std::ranges::any_of(side_suffixes, [&](std::string_view suffix) {
                    return path_exists(target + std::string(suffix));
                  });
       ++n) {
    target = base + "." + std::to_string(n);
  }
  const auto move = [](const std::string& from, const std::string& to) -> Result<void> {
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      const int err = errno;
      return fail(Errc::io_error, "cannot move the corrupt inbox " + from + " to " + to + ": " +
                                      std::generic_category().message(err));
    }
    return {};
  };
  for (const auto suffix : side_suffixes) {
    if (auto moved = move(path.string() + std::string(suffix), target + std::string(suffix)); !moved) {
      return fail(moved.error());
    }
  }
  return move(path.string(), target);
}

}  // namespace

// ---- the inbox ----

struct Inbox::Impl {
  Impl(SQLite::Database database, InboxConfig config)
      : db(std::move(database)),
        statements(db),
        ids(config.clock, std::move(config.rng)),
        clock(std::move(config.clock)),
        retention_ms(config.retention.count()) {}

  SQLite::Database db;  // declared before the statements: they are finalized first
  Statements statements;
  IdGenerator ids;
  Clock clock;
  std::int64_t retention_ms;
  bool recovered = false;
};

Inbox::Inbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Inbox::Inbox(Inbox&&) noexcept = default;
Inbox& Inbox::operator=(Inbox&&) noexcept = default;
Inbox::~Inbox() = default;

namespace {

Result<SQLite::Database> open_checked(const std::filesystem::path& path, const store::DatabaseSpec& spec,
                                      bool& damaged) {
  damaged = false;
  const bool memory = is_memory(path);
  if (!memory) {
    switch (read_file_header(path)) {
      case FileHeader::foreign:
        return fail(Errc::io_error, path.string() + " is not a claudemesh inbox (another application's database)");
      case FileHeader::newer:
        return fail(Errc::malformed, path.string() + " has an inbox schema newer than this build knows (" +
                                         std::to_string(migrations.size()) + ")");
      case FileHeader::not_sqlite:
        damaged = true;
        return fail(Errc::malformed, path.string() + " is not an SQLite database");
      case FileHeader::unknown:
      case FileHeader::ours:
        break;
    }
  }
  auto db = store::open_database(path.string(), spec);
  if (!db && !memory) {
    switch (diagnose_open_failure(path)) {
      case OpenFailure::damaged:
        damaged = true;
        break;
      case OpenFailure::newer:
        return fail(Errc::malformed, db.error().message);
      case OpenFailure::other:
        break;
    }
  }
  if (!db) return db;
  if (auto intact = store::check_integrity(*db); !intact) {
    damaged = !memory;
    return fail(intact.error(), path.string());
  }
  return db;
}

}  // namespace

Result<Inbox> Inbox::open(const std::filesystem::path& path, InboxConfig config) {
  const store::DatabaseSpec spec{
      .kind = "inbox", .application_id = inbox_application_id, .migrations = migrations, .full_sync = config.fsync};
  try {
    bool damaged = false;
    auto db = open_checked(path, spec, damaged);
    bool recovered = false;
    if (!db && damaged) {
      if (auto moved = set_aside(path, now_ms(config.clock)); !moved) return fail(moved.error());
      recovered = true;
      db = open_checked(path, spec, damaged);
    }
    if (!db) return fail(db.error());
    auto impl = std::make_unique<Impl>(std::move(*db), std::move(config));
    impl->recovered = recovered;
    return Inbox(std::move(impl));
  } catch (const std::exception& e) {
    return fail(Errc::io_error, "cannot open inbox " + path.string() + ": " + e.what());
  }
}

namespace {

Result<void> check_storable(const InboxMessage& message) {
  if (message.mesh.empty()) return fail(Errc::invalid_value, "inbox store: empty mesh");
  if (message.client_message_id.empty()) return fail(Errc::invalid_value, "inbox store: empty client message id");
  if (message.sender_pubkey.empty()) return fail(Errc::invalid_value, "inbox store: empty sender key");
  if (!message.recipient_kind.empty() && message.recipient_kind != "member" && message.recipient_kind != "session") {
    return fail(Errc::invalid_value, "inbox store: recipient kind \"" + message.recipient_kind +
                                         "\" is neither \"member\" nor \"session\"");
  }
  return {};
}

}  // namespace

Result<InboxStore> Inbox::store(InboxMessage message) {
  if (auto ok = check_storable(message); !ok) return fail(ok.error());
  return guarded("store", [&]() -> Result<InboxStore> {
    return in_transaction(impl_->db, "store", [&]() -> Result<InboxStore> { return insert_row(message); });
  });
}

std::vector<Result<InboxStore>> Inbox::store_all(std::vector<InboxMessage> messages) {
  std::vector<Result<InboxStore>> answers;
  answers.reserve(messages.size());
  bool any = false;
  for (const auto& message : messages) {
    auto ok = check_storable(message);
    any = any || ok.has_value();
    answers.push_back(ok ? Result<InboxStore>(InboxStore{}) : Result<InboxStore>(fail(ok.error())));
  }
  if (!any) return answers;
  auto batch = guarded("store", [&]() -> Result<void> {
    return in_transaction(impl_->db, "store", [&]() -> Result<void> {
      for (std::size_t i = 0; i < messages.size(); ++i) {
        if (!answers[i]) continue;
        auto stored = insert_row(messages[i]);
        if (!stored) return fail(stored.error());  // rolls the whole batch back
        answers[i] = std::move(*stored);
      }
      return {};
    });
  });
  if (!batch) {
    for (auto& answer : answers) {
      if (answer) answer = fail(batch.error());
    }
  }
  return answers;
}

// One row inside the caller's transaction: inserted, or the id of the copy already stored.
Result<InboxStore> Inbox::insert_row(InboxMessage& message) {
  message.id = impl_->ids.next();
  if (message.received_at_ms == 0) message.received_at_ms = now_ms(impl_->clock);
  auto& insert = impl_->statements.insert;
  const Use use_insert(insert);
  int index = 1;
  for (const std::string* text :
       {&message.id, &message.client_message_id, &message.broker_message_id, &message.mesh, &message.topic,
        &message.target_spec, &message.sender_pubkey, &message.sender_member_pubkey, &message.sender_name,
        &message.body, &message.meta_json, &message.priority, &message.reply_to_id}) {
    insert.bindNoCopy(index++, *text);
  }
  insert.bind(index++, message.created_at_ms);
  insert.bind(index++, message.received_at_ms);
  if (message.seen_at_ms) {
    insert.bind(index++, *message.seen_at_ms);
  } else {
    insert.bind(index++);  // NULL
  }
  insert.bindNoCopy(index++, message.recipient_pubkey);
  insert.bindNoCopy(index, message.recipient_kind);
  if (insert.exec() == 1) return InboxStore{.inserted = true, .id = message.id};

  auto& find = impl_->statements.find_copy;
  const Use use_find(find);
  find.bindNoCopy(1, message.client_message_id);
  find.bindNoCopy(2, message.mesh);
  find.bindNoCopy(3, message.recipient_pubkey);
  if (!find.executeStep()) return fail(Errc::internal, "a duplicate was reported but no copy is stored");
  return InboxStore{.inserted = false, .id = find.getColumn(0).getString()};
}

Result<std::vector<InboxMessage>> Inbox::list(const InboxQuery& query) {
  if (auto scope = check_scope(query.recipients, "inbox list"); !scope) return fail(scope.error());
  return guarded("list", [&]() -> Result<std::vector<InboxMessage>> {
    const Filter filter = filter_for(query, "");
    SQLite::Statement select(impl_->db, select_from_inbox("1" + filter.sql) +
                                            " ORDER BY received_at_ms DESC, id DESC LIMIT ?");
    const int next = bind_values(select, filter.values, 1);
    select.bind(next, clamped_limit(query.limit));
    return read_all(select);
  });
}

Result<std::vector<InboxMessage>> Inbox::search(std::string_view text, const InboxQuery& query) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return fail(Errc::invalid_value, "inbox search: the query is empty");
  }
  if (auto scope = check_scope(query.recipients, "inbox search"); !scope) return fail(scope.error());
  const std::string match(text);
  const Filter filter = filter_for(query, "i.");
  // CROSS JOIN keeps the FTS table outside, so the MATCH drives the scan and bm25() has its row context.
  auto prepared = guarded("search", [&]() -> Result<SQLite::Statement> {
    SQLite::Statement select(impl_->db,
                             "SELECT " + column_list("i.") +
                                 " FROM inbox_fts CROSS JOIN inbox AS i ON i.seq = inbox_fts.rowid"
                                 " WHERE inbox_fts MATCH ?" + filter.sql +
                                 " ORDER BY bm25(inbox_fts), i.received_at_ms DESC, i.id DESC LIMIT ?");
    select.bindNoCopy(1, match);
    const int next = bind_values(select, filter.values, 2);
    select.bind(next, clamped_limit(query.limit));
    return select;
  });
  if (!prepared) return fail(prepared.error());
  try {
    return read_all(*prepared);
  } catch (const SQLite::Exception& e) {
    // The statement compiled, so a plain SQL error while stepping is FTS5 refusing the query text.
    if (e.getErrorCode() == SQLITE_ERROR) {
      return fail(Errc::invalid_value, "inbox search: cannot parse \"" + match + "\": " + e.what());
    }
    return fail(sqlite_error("search", e));
  } catch (const std::exception& e) {
    return fail(Errc::io_error, std::string("inbox search: ") + e.what());
  }
}

Result<std::optional<InboxMessage>> Inbox::get(std::string_view id) {
  if (id.empty()) return std::optional<InboxMessage>{};
  const std::string key(id);
  return guarded("get", [&]() -> Result<std::optional<InboxMessage>> {
    auto& statements = impl_->statements;
    for (SQLite::Statement* lookup : {&statements.by_id, &statements.by_client_id, &statements.by_broker_id}) {
      const Use use(*lookup);
      lookup->bindNoCopy(1, key);
      if (lookup->executeStep()) return read_message(*lookup);
    }
    return std::optional<InboxMessage>{};
  });
}

Result<std::size_t> Inbox::mark_seen(const std::vector<std::string>& ids) {
  return guarded("mark_seen", [&]() -> Result<std::size_t> {
    const std::int64_t now = now_ms(impl_->clock);
    return in_transaction(impl_->db, "mark_seen", [&]() -> Result<std::size_t> {
      std::size_t changed = 0;
      auto& update = impl_->statements.mark_seen;
      for (const auto& id : ids) {
        const Use use(update);
        update.bind(1, now);
        update.bindNoCopy(2, id);
        changed += static_cast<std::size_t>(update.exec());
      }
      return changed;
    });
  });
}

Result<bool> Inbox::remove(std::string_view id) {
  const std::string key(id);
  return guarded("remove", [&]() -> Result<bool> {
    return in_transaction(impl_->db, "remove", [&]() -> Result<bool> {
      auto& remove = impl_->statements.remove;
      const Use use(remove);
      remove.bindNoCopy(1, key);
      return remove.exec() > 0;
    });
  });
}

Result<std::size_t> Inbox::flush(std::string_view mesh, std::optional<std::int64_t> before_ms) {
  const std::string mesh_id(mesh);
  return guarded("flush", [&]() -> Result<std::size_t> {
    return in_transaction(impl_->db, "flush", [&]() -> Result<std::size_t> {
      auto& flush = impl_->statements.flush;
      const Use use(flush);
      flush.bindNoCopy(1, mesh_id);
      if (before_ms) {
        flush.bind(2, *before_ms);
      } else {
        flush.bind(2);
      }
      return static_cast<std::size_t>(flush.exec());
    });
  });
}

Result<std::size_t> Inbox::prune() {
  return guarded("prune", [&]() -> Result<std::size_t> {
    const std::int64_t cutoff = saturating_sub(now_ms(impl_->clock), impl_->retention_ms);
    return in_transaction(impl_->db, "prune", [&]() -> Result<std::size_t> {
      auto& prune = impl_->statements.prune;
      const Use use(prune);
      prune.bind(1, cutoff);
      return static_cast<std::size_t>(prune.exec());
    });
  });
}

Result<Inbox::Counts> Inbox::counts(const std::vector<std::string>& recipients) {
  if (auto scope = check_scope(recipients, "inbox counts"); !scope) return fail(scope.error());
  return guarded("counts", [&]() -> Result<Counts> {
    Filter filter;
    add_recipient_scope(filter, recipients, "");
    SQLite::Statement select(impl_->db,
                             "SELECT COUNT(*), COUNT(*) FILTER (WHERE seen_at_ms IS NULL) FROM inbox WHERE 1" +
                                 filter.sql);
    bind_values(select, filter.values, 1);
    if (!select.executeStep()) return fail(Errc::internal, "inbox counts: no row");
    return Counts{.rows = select.getColumn(0).getInt64(), .unread = select.getColumn(1).getInt64()};
  });
}

bool Inbox::recovered_from_corruption() const noexcept { return impl_ && impl_->recovered; }

}  // namespace claudemesh
