// SPDX-License-Identifier: MIT
// BrokerStore on SQLite (SQLiteCpp): the embedded default, so `claudemesh-broker` runs with zero setup.
//
// One connection, used from one thread (the broker's store worker); WAL journaling, so readers in other
// connections never block it. Every statement is prepared once and reused. Every operation runs inside its
// own SAVEPOINT: standalone that is a transaction of its own, inside begin_batch()/commit_batch() it is a
// nested one, so a failing operation undoes only its own writes. SQLite and std exceptions are caught here
// and returned as `Result` errors; none escapes: constraint failures map to already_exists (unique keys),
// not_found (a mesh that does not exist) and invalid_value (a role or priority the schema refuses); anything
// else is io_error with SQLite's message.
//
// Schema (migration 1; see `migrations` below):
//   deliveries  one row per recipient copy, holding what changes (lease, attempts, delivered). `seq` (the
//               rowid) is the creation order. The message's mesh, priority ("now" → urgent), created and
//               expiry times are copied in so a claim filters rows without visiting their message; the lease
//               is (lease_owner, lease_until_ms). Rows are narrow (~150 bytes), so leasing and acknowledging
//               a run of rows dirties a few pages, not one page per 1–2 KB ciphertext.
//     deliveries_claim       (mesh_id, recipient_key, seq) WHERE undelivered: claims walk one recipient's
//                            undelivered rows in creation order and stop at the limit; also serves the
//                            re-drain's distinct recipients.
//     deliveries_by_message  (message_seq, recipient_key): mark_delivered, message_status, the foreign key.
//     deliveries_leased      (lease_owner) WHERE undelivered and leased: release_claims, the leased count.
//                            Rows enter it when claimed, not when inserted.
//     deliveries_expiry      (expires_at_ms) WHERE undelivered: purge of expired rows, the undelivered count.
//     deliveries_delivered   (delivered_at_ms) WHERE delivered: purge by retention.
//   delivery_bodies  what never changes (recipient member, nonce, ciphertext), keyed by the same seq and
//               deleted with its row (ON DELETE CASCADE).
//   dedupe      (mesh_id, client_message_id) primary key; written in the same savepoint as the message, so an
//               entry exists exactly when its accept committed. dedupe_age serves the purge.
//   messages (unique id), meshes, members (unique (mesh_id, pubkey)), invites, sessions ((mesh_id,
//   session_pubkey) key). Foreign keys tie members, invites, sessions and messages to their mesh, delivery
//   rows to their message and bodies to their row.
#include "store/broker_store.hpp"
#include "store/sqlite_database.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace claudemesh::store {
namespace {

// Page cache per connection. SQLite's default (2 MiB) is outgrown by a queue of a few thousand messages, after
// which the index pages every accept and claim touches are read back from disk.
constexpr int page_cache_kib = 16 * 1024;
// Rows one purge statement deletes at once (see purge()).
constexpr std::size_t purge_chunk_rows = 2'000;
// PRAGMA application_id of a broker store ("cmbr"), so another program's database is refused, not migrated.
constexpr std::int64_t broker_store_application_id = 0x636d6272;

// The schema, as an ordered list of migrations: version N is the state after the first N entries have run
// (PRAGMA user_version holds N). Migrations are append-only: an entry that has shipped is never edited, and a
// change is a new entry. They change the schema only; existing rows are never rewritten by a migration.
constexpr std::array<std::string_view, 1> migrations = {
    R"sql(
CREATE TABLE meshes (
  id            TEXT PRIMARY KEY NOT NULL,
  name          TEXT NOT NULL,
  owner_pubkey  TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE members (
  id              TEXT PRIMARY KEY NOT NULL,
  mesh_id         TEXT NOT NULL REFERENCES meshes (id),
  pubkey          TEXT NOT NULL,
  display_name    TEXT NOT NULL,
  role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  grants_json     TEXT NOT NULL,
  groups_json     TEXT NOT NULL,
  joined_at_ms    INTEGER NOT NULL,
  last_seen_at_ms INTEGER,
  revoked_at_ms   INTEGER,
  banned_at_ms    INTEGER,
  ban_reason      TEXT NOT NULL,
  UNIQUE (mesh_id, pubkey)
) STRICT;

CREATE TABLE invites (
  id             TEXT PRIMARY KEY NOT NULL,
  mesh_id        TEXT NOT NULL REFERENCES meshes (id),
  role           TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  inviter_pubkey TEXT NOT NULL,
  expires_at_s   INTEGER NOT NULL,
  signature      TEXT NOT NULL,
  max_uses       INTEGER NOT NULL CHECK (max_uses >= 0),
  uses           INTEGER NOT NULL CHECK (uses >= 0),
  created_at_ms  INTEGER NOT NULL,
  revoked_at_ms  INTEGER
) STRICT;

CREATE TABLE sessions (
  mesh_id         TEXT NOT NULL REFERENCES meshes (id),
  session_pubkey  TEXT NOT NULL,
  member_id       TEXT NOT NULL,
  last_seen_at_ms INTEGER NOT NULL,
  PRIMARY KEY (mesh_id, session_pubkey)
) STRICT, WITHOUT ROWID;

CREATE TABLE messages (
  seq                  INTEGER PRIMARY KEY,
  id                   TEXT NOT NULL UNIQUE,
  mesh_id              TEXT NOT NULL REFERENCES meshes (id),
  sender_member_id     TEXT NOT NULL,
  sender_pubkey        TEXT NOT NULL,
  sender_member_pubkey TEXT NOT NULL,
  target_spec          TEXT NOT NULL,
  priority             TEXT NOT NULL CHECK (priority IN ('now', 'next', 'low')),
  client_message_id    TEXT,
  request_fingerprint  TEXT,
  reply_to_id          TEXT,
  created_at_ms        INTEGER NOT NULL,
  expires_at_ms        INTEGER NOT NULL
) STRICT;

CREATE TABLE deliveries (
  seq             INTEGER PRIMARY KEY,
  message_seq     INTEGER NOT NULL REFERENCES messages (seq),
  mesh_id         TEXT NOT NULL,
  recipient_key   TEXT NOT NULL,
  urgent          INTEGER NOT NULL,
  created_at_ms   INTEGER NOT NULL,
  expires_at_ms   INTEGER NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  lease_owner     TEXT,
  lease_until_ms  INTEGER,
  delivered_at_ms INTEGER
) STRICT;
CREATE TABLE delivery_bodies (
  seq                 INTEGER PRIMARY KEY REFERENCES deliveries (seq) ON DELETE CASCADE,
  recipient_member_id TEXT NOT NULL,
  nonce               TEXT NOT NULL,
  ciphertext          TEXT NOT NULL
) STRICT;
CREATE INDEX deliveries_claim ON deliveries (mesh_id, recipient_key, seq) WHERE delivered_at_ms IS NULL;
CREATE INDEX deliveries_by_message ON deliveries (message_seq, recipient_key);
CREATE INDEX deliveries_leased ON deliveries (lease_owner)
  WHERE delivered_at_ms IS NULL AND lease_owner IS NOT NULL;
CREATE INDEX deliveries_expiry ON deliveries (expires_at_ms) WHERE delivered_at_ms IS NULL;
CREATE INDEX deliveries_delivered ON deliveries (delivered_at_ms) WHERE delivered_at_ms IS NOT NULL;

CREATE TABLE dedupe (
  mesh_id             TEXT NOT NULL,
  client_message_id   TEXT NOT NULL,
  message_id          TEXT NOT NULL,
  request_fingerprint TEXT,
  first_seen_at_ms    INTEGER NOT NULL,
  PRIMARY KEY (mesh_id, client_message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX dedupe_age ON dedupe (first_seen_at_ms);
)sql",
};

// The message columns, in the order read_message() expects them at its `first` index.
#define CLAUDEMESH_MESSAGE_COLUMNS                                                                        \
  "m.id, m.mesh_id, m.sender_member_id, m.sender_pubkey, m.sender_member_pubkey, m.target_spec, m.priority, " \
  "m.client_message_id, m.request_fingerprint, m.reply_to_id, m.created_at_ms, m.expires_at_ms"
#define CLAUDEMESH_MEMBER_COLUMNS                                                                               \
  "id, mesh_id, pubkey, display_name, role, grants_json, groups_json, joined_at_ms, last_seen_at_ms, "       \
  "revoked_at_ms, banned_at_ms, ban_reason"
#define CLAUDEMESH_INVITE_COLUMNS                                                                         \
  "id, mesh_id, role, inviter_pubkey, expires_at_s, signature, max_uses, uses, created_at_ms, revoked_at_ms"

// Every statement the store runs, prepared once when the store opens.
struct Statements {
  explicit Statements(SQLite::Database& database) : db(database) {}
  SQLite::Database& db;

  SQLite::Statement begin{db, "BEGIN IMMEDIATE"};
  SQLite::Statement commit{db, "COMMIT"};
  SQLite::Statement rollback{db, "ROLLBACK"};
  SQLite::Statement savepoint{db, "SAVEPOINT op"};
  SQLite::Statement release{db, "RELEASE op"};
  SQLite::Statement rollback_to{db, "ROLLBACK TO op"};

  SQLite::Statement insert_mesh{db, "INSERT INTO meshes (id, name, owner_pubkey, created_at_ms) VALUES (?, ?, ?, ?)"};
  SQLite::Statement find_mesh{db, "SELECT id, name, owner_pubkey, created_at_ms FROM meshes WHERE id = ?"};
  SQLite::Statement insert_member{db, "INSERT INTO members (" CLAUDEMESH_MEMBER_COLUMNS
                                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"};
  SQLite::Statement list_members{db, "SELECT " CLAUDEMESH_MEMBER_COLUMNS
                                     " FROM members WHERE mesh_id = ? ORDER BY joined_at_ms, rowid"};
  SQLite::Statement find_member{db, "SELECT " CLAUDEMESH_MEMBER_COLUMNS " FROM members WHERE mesh_id = ? AND pubkey = ?"};
  SQLite::Statement find_member_by_id{db,
                                      "SELECT " CLAUDEMESH_MEMBER_COLUMNS " FROM members WHERE mesh_id = ? AND id = ?"};
  SQLite::Statement update_member{db,
                                  "UPDATE members SET display_name = ?, role = ?, grants_json = ?, groups_json = ?, "
                                  "last_seen_at_ms = ?, revoked_at_ms = ?, banned_at_ms = ?, ban_reason = ? "
                                  "WHERE id = ?"};

  SQLite::Statement insert_invite{db, "INSERT INTO invites (" CLAUDEMESH_INVITE_COLUMNS
                                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"};
  SQLite::Statement find_invite{db, "SELECT " CLAUDEMESH_INVITE_COLUMNS " FROM invites WHERE id = ?"};
  SQLite::Statement use_invite{db, "UPDATE invites SET uses = uses + 1 WHERE id = ?"};
  SQLite::Statement revoke_invite{db, "UPDATE invites SET revoked_at_ms = COALESCE(revoked_at_ms, ?) WHERE id = ?"};

  SQLite::Statement upsert_session{db,
                                   "INSERT INTO sessions (mesh_id, session_pubkey, member_id, last_seen_at_ms) "
                                   "VALUES (?, ?, ?, ?) ON CONFLICT (mesh_id, session_pubkey) DO UPDATE SET "
                                   "member_id = excluded.member_id, last_seen_at_ms = excluded.last_seen_at_ms"};
  SQLite::Statement find_session{db,
                                 "SELECT mesh_id, session_pubkey, member_id, last_seen_at_ms FROM sessions "
                                 "WHERE mesh_id = ? AND session_pubkey = ?"};

  SQLite::Statement find_dedupe{db,
                                "SELECT message_id, request_fingerprint, first_seen_at_ms FROM dedupe "
                                "WHERE mesh_id = ? AND client_message_id = ?"};
  SQLite::Statement insert_dedupe{db,
                                  "INSERT INTO dedupe (mesh_id, client_message_id, message_id, request_fingerprint, "
                                  "first_seen_at_ms) VALUES (?, ?, ?, ?, ?)"};
  SQLite::Statement insert_message{db,
                                   "INSERT INTO messages (id, mesh_id, sender_member_id, sender_pubkey, "
                                   "sender_member_pubkey, target_spec, priority, client_message_id, "
                                   "request_fingerprint, reply_to_id, created_at_ms, expires_at_ms) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"};
  SQLite::Statement insert_delivery{db,
                                    "INSERT INTO deliveries (message_seq, mesh_id, recipient_key, urgent, "
                                    "created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)"};
  SQLite::Statement insert_body{db,
                                "INSERT INTO delivery_bodies (seq, recipient_member_id, nonce, ciphertext) "
                                "VALUES (?, ?, ?, ?)"};
  // ?1 mesh, ?2 key, ?3 now, ?4 all priorities, ?5 hold cutoff, ?6 limit. CROSS JOIN keeps deliveries outside,
  // walking deliveries_claim in seq order, so the scan stops at the limit.
  SQLite::Statement claim_candidates{
      db,
      "SELECT d.seq, d.recipient_key, b.recipient_member_id, b.nonce, b.ciphertext, d.attempts, "
      CLAUDEMESH_MESSAGE_COLUMNS
      " FROM deliveries AS d CROSS JOIN delivery_bodies AS b ON b.seq = d.seq "
      "CROSS JOIN messages AS m ON m.seq = d.message_seq "
      "WHERE d.mesh_id = ?1 AND d.recipient_key = ?2 AND d.delivered_at_ms IS NULL AND d.expires_at_ms > ?3 "
      "AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= ?3) AND (?4 OR d.urgent OR d.created_at_ms <= ?5) "
      "ORDER BY d.seq LIMIT ?6"};
  SQLite::Statement lease{db, "UPDATE deliveries SET lease_owner = ?, lease_until_ms = ?, attempts = attempts + 1 "
                              "WHERE seq = ?"};
  SQLite::Statement find_message_seq{db, "SELECT seq FROM messages WHERE id = ? AND mesh_id = ?"};
  SQLite::Statement mark_delivered{db,
                                   "UPDATE deliveries SET delivered_at_ms = ? WHERE message_seq = ? "
                                   "AND recipient_key = ? AND delivered_at_ms IS NULL"};
  SQLite::Statement release_claims{db,
                                   "UPDATE deliveries SET lease_owner = NULL, lease_until_ms = NULL "
                                   "WHERE lease_owner = ? AND delivered_at_ms IS NULL"};
  SQLite::Statement readdress{db,
                              "UPDATE deliveries SET recipient_key = ?3, lease_owner = NULL, lease_until_ms = NULL "
                              "WHERE mesh_id = ?1 AND recipient_key = ?2 AND delivered_at_ms IS NULL"};
  SQLite::Statement recipients_with_work{
      db,
      "SELECT DISTINCT mesh_id, recipient_key FROM deliveries INDEXED BY deliveries_claim "
      "WHERE delivered_at_ms IS NULL AND expires_at_ms > ?1 "
      "AND (lease_until_ms IS NULL OR lease_until_ms <= ?1) LIMIT ?2"};
  // Purge deletes in chunks; the last parameter of each is the chunk size.
  SQLite::Statement purge_expired{db,
                                  "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries "
                                  "WHERE delivered_at_ms IS NULL AND expires_at_ms <= ?1 LIMIT ?2)"};
  SQLite::Statement purge_delivered{db,
                                    "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries "
                                    "WHERE delivered_at_ms < ?1 LIMIT ?2)"};
  // Only messages that expired or aged past the retention: every message whose rows were purged is one of
  // them, and a message accepted with no bodies is not dropped the moment it is stored.
  SQLite::Statement purge_messages{db,
                                   "DELETE FROM messages WHERE seq IN (SELECT m.seq FROM messages AS m "
                                   "WHERE (m.expires_at_ms <= ?1 OR m.created_at_ms < ?2) AND NOT EXISTS "
                                   "(SELECT 1 FROM deliveries AS d WHERE d.message_seq = m.seq) LIMIT ?3)"};
  SQLite::Statement purge_dedupe{db,
                                 "DELETE FROM dedupe WHERE (mesh_id, client_message_id) IN (SELECT mesh_id, "
                                 "client_message_id FROM dedupe WHERE first_seen_at_ms < ?1 LIMIT ?2)"};
  SQLite::Statement queue_stats{
      db,
      "SELECT (SELECT COUNT(*) FROM deliveries WHERE delivered_at_ms IS NULL), "
      "(SELECT COUNT(*) FROM deliveries WHERE delivered_at_ms IS NULL AND lease_owner IS NOT NULL "
      "AND lease_until_ms > ?1), (SELECT COUNT(*) FROM messages)"};
  SQLite::Statement find_message{db, "SELECT m.seq, " CLAUDEMESH_MESSAGE_COLUMNS
                                     " FROM messages AS m WHERE m.id = ? AND m.mesh_id = ?"};
  SQLite::Statement recipient_states{db,
                                     "SELECT recipient_key, delivered_at_ms, attempts FROM deliveries "
                                     "WHERE message_seq = ? ORDER BY seq"};
};

#undef CLAUDEMESH_MESSAGE_COLUMNS
#undef CLAUDEMESH_MEMBER_COLUMNS
#undef CLAUDEMESH_INVITE_COLUMNS


// Runs a statement that returns no rows.
int execute(SQLite::Statement& statement) {
  const Use use(statement);
  return statement.exec();
}

bool try_execute(SQLite::Statement& statement) noexcept {
  const int rc = statement.tryExecuteStep();
  statement.tryReset();
  return rc == SQLITE_DONE;
}

// ---- binding and reading ----

std::int64_t to_int64(std::size_t n) {
  return n > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()) ? std::numeric_limits<std::int64_t>::max()
                                                                                 : static_cast<std::int64_t>(n);
}

TimeMs saturating_add(TimeMs a, TimeMs b) {
  TimeMs out = 0;
  if (!__builtin_add_overflow(a, b, &out)) return out;
  return b > 0 ? std::numeric_limits<TimeMs>::max() : std::numeric_limits<TimeMs>::min();
}

TimeMs saturating_sub(TimeMs a, TimeMs b) {
  TimeMs out = 0;
  if (!__builtin_sub_overflow(a, b, &out)) return out;
  return b > 0 ? std::numeric_limits<TimeMs>::min() : std::numeric_limits<TimeMs>::max();
}

TimeMs seconds_to_ms(std::int64_t seconds) {
  TimeMs out = 0;
  if (!__builtin_mul_overflow(seconds, TimeMs{1000}, &out)) return out;
  return seconds > 0 ? std::numeric_limits<TimeMs>::max() : std::numeric_limits<TimeMs>::min();
}

void bind_view(SQLite::Statement& statement, int index, std::string_view value) {
  statement.bind(index, std::string(value));
}

void bind_optional(SQLite::Statement& statement, int index, const std::optional<std::string>& value) {
  if (value) {
    statement.bindNoCopy(index, *value);
  } else {
    statement.bind(index);
  }
}

void bind_optional(SQLite::Statement& statement, int index, std::optional<TimeMs> value) {
  if (value) {
    statement.bind(index, *value);
  } else {
    statement.bind(index);
  }
}

std::optional<std::string> optional_text(const SQLite::Column& column) {
  if (column.isNull()) return std::nullopt;
  return column.getString();
}

std::optional<TimeMs> optional_time(const SQLite::Column& column) {
  if (column.isNull()) return std::nullopt;
  return column.getInt64();
}

std::uint32_t to_count(const SQLite::Column& column) {
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(column.getInt64(), 0, std::numeric_limits<std::uint32_t>::max()));
}

std::string encode_list(const std::vector<std::string>& items) { return nlohmann::json(items).dump(); }

std::vector<std::string> decode_list(const SQLite::Column& column) {
  return nlohmann::json::parse(column.getString()).get<std::vector<std::string>>();
}

MemberRecord read_member(const SQLite::Statement& row) {
  MemberRecord member;
  member.id = row.getColumn(0).getString();
  member.mesh_id = row.getColumn(1).getString();
  member.pubkey = row.getColumn(2).getString();
  member.display_name = row.getColumn(3).getString();
  member.role = row.getColumn(4).getString();
  member.grants = decode_list(row.getColumn(5));
  member.groups = decode_list(row.getColumn(6));
  member.joined_at_ms = row.getColumn(7).getInt64();
  member.last_seen_at_ms = optional_time(row.getColumn(8));
  member.revoked_at_ms = optional_time(row.getColumn(9));
  member.banned_at_ms = optional_time(row.getColumn(10));
  member.ban_reason = row.getColumn(11).getString();
  return member;
}

InviteRecord read_invite(const SQLite::Statement& row) {
  InviteRecord invite;
  invite.id = row.getColumn(0).getString();
  invite.mesh_id = row.getColumn(1).getString();
  invite.role = row.getColumn(2).getString();
  invite.inviter_pubkey = row.getColumn(3).getString();
  invite.expires_at_s = row.getColumn(4).getInt64();
  invite.signature = row.getColumn(5).getString();
  invite.max_uses = to_count(row.getColumn(6));
  invite.uses = to_count(row.getColumn(7));
  invite.created_at_ms = row.getColumn(8).getInt64();
  invite.revoked_at_ms = optional_time(row.getColumn(9));
  return invite;
}

MessageRecord read_message(const SQLite::Statement& row, int first) {
  MessageRecord message;
  message.id = row.getColumn(first).getString();
  message.mesh_id = row.getColumn(first + 1).getString();
  message.sender_member_id = row.getColumn(first + 2).getString();
  message.sender_pubkey = row.getColumn(first + 3).getString();
  message.sender_member_pubkey = row.getColumn(first + 4).getString();
  message.target_spec = row.getColumn(first + 5).getString();
  message.priority = row.getColumn(first + 6).getString();
  message.client_message_id = optional_text(row.getColumn(first + 7));
  message.request_fingerprint = optional_text(row.getColumn(first + 8));
  message.reply_to_id = optional_text(row.getColumn(first + 9));
  message.created_at_ms = row.getColumn(first + 10).getInt64();
  message.expires_at_ms = row.getColumn(first + 11).getInt64();
  return message;
}

void bind_member(SQLite::Statement& statement, const MemberRecord& member) {
  statement.bindNoCopy(1, member.id);
  statement.bindNoCopy(2, member.mesh_id);
  statement.bindNoCopy(3, member.pubkey);
  statement.bindNoCopy(4, member.display_name);
  statement.bindNoCopy(5, member.role);
  statement.bind(6, encode_list(member.grants));
  statement.bind(7, encode_list(member.groups));
  statement.bind(8, member.joined_at_ms);
  bind_optional(statement, 9, member.last_seen_at_ms);
  bind_optional(statement, 10, member.revoked_at_ms);
  bind_optional(statement, 11, member.banned_at_ms);
  statement.bindNoCopy(12, member.ban_reason);
}

// ---- errors ----

Error sqlite_error(std::string_view operation, const SQLite::Exception& e) {
  std::string message = std::string(operation) + ": " + e.what();
  if (e.getErrorCode() == SQLITE_CONSTRAINT) {
    switch (e.getExtendedErrorCode()) {
      case SQLITE_CONSTRAINT_PRIMARYKEY:
      case SQLITE_CONSTRAINT_UNIQUE:
        return {Errc::already_exists, std::move(message)};
      case SQLITE_CONSTRAINT_FOREIGNKEY:  // every foreign key but the internal delivery → message one names a mesh
        return {Errc::not_found, std::string(operation) + ": no such mesh"};
      default:  // CHECK, NOT NULL: a value the schema refuses (an unknown role or priority)
        return {Errc::invalid_value, std::move(message)};
    }
  }
  return {Errc::io_error, std::move(message)};
}

// ---- the file ----

// ---- the store ----

class SqliteBrokerStore final : public BrokerStore {
 public:
  explicit SqliteBrokerStore(SQLite::Database db) : db_(std::move(db)), statements_(db_) {}
  SqliteBrokerStore(const SqliteBrokerStore&) = delete;
  SqliteBrokerStore& operator=(const SqliteBrokerStore&) = delete;
  ~SqliteBrokerStore() override { rollback_batch(); }

  Result<void> begin_batch() override {
    if (in_batch_) return fail(Errc::internal, "begin_batch: a batch is already open");
    return guarded("begin_batch", [&]() -> Result<void> {
      execute(statements_.begin);
      in_batch_ = true;
      batch_lost_.reset();
      return {};
    });
  }

  Result<void> commit_batch() override {
    if (!in_batch_) return fail(Errc::internal, "commit_batch: no batch is open");
    in_batch_ = false;
    if (batch_lost_) {
      abandon_transaction();
      return fail(*std::exchange(batch_lost_, std::nullopt));
    }
    auto committed = guarded("commit_batch", [&]() -> Result<void> {
      execute(statements_.commit);
      return {};
    });
    if (!committed) abandon_transaction();
    return committed;
  }

  void rollback_batch() noexcept override {
    if (!in_batch_) return;
    in_batch_ = false;
    batch_lost_.reset();
    abandon_transaction();
  }

  Result<void> create_mesh(const MeshRecord& mesh, const MemberRecord& owner) override {
    return operation("create_mesh", [&]() -> Result<void> {
      auto& insert = statements_.insert_mesh;
      const Use use(insert);
      insert.bindNoCopy(1, mesh.id);
      insert.bindNoCopy(2, mesh.name);
      insert.bindNoCopy(3, mesh.owner_pubkey);
      insert.bind(4, mesh.created_at_ms);
      insert.exec();
      MemberRecord member = owner;
      member.mesh_id = mesh.id;
      return insert_member(member);
    });
  }

  Result<std::optional<MeshRecord>> find_mesh(std::string_view mesh_id) override {
    return operation("find_mesh", [&]() -> Result<std::optional<MeshRecord>> {
      auto& query = statements_.find_mesh;
      const Use use(query);
      bind_view(query, 1, mesh_id);
      if (!query.executeStep()) return std::nullopt;
      return MeshRecord{.id = query.getColumn(0).getString(),
                        .name = query.getColumn(1).getString(),
                        .owner_pubkey = query.getColumn(2).getString(),
                        .created_at_ms = query.getColumn(3).getInt64()};
    });
  }

  Result<std::vector<MemberRecord>> list_members(std::string_view mesh_id) override {
    return operation("list_members", [&]() -> Result<std::vector<MemberRecord>> {
      auto& query = statements_.list_members;
      const Use use(query);
      bind_view(query, 1, mesh_id);
      std::vector<MemberRecord> members;
      while (query.executeStep()) members.push_back(read_member(query));
      return members;
    });
  }

  Result<std::optional<MemberRecord>> find_member(std::string_view mesh_id, std::string_view pubkey) override {
    return operation("find_member", [&] { return find_member_row(statements_.find_member, mesh_id, pubkey); });
  }

  Result<std::optional<MemberRecord>> find_member_by_id(std::string_view mesh_id,
                                                        std::string_view member_id) override {
    return operation("find_member_by_id",
                     [&] { return find_member_row(statements_.find_member_by_id, mesh_id, member_id); });
  }

  Result<void> update_member(const MemberRecord& member) override {
    return operation("update_member", [&]() -> Result<void> {
      auto& update = statements_.update_member;
      const Use use(update);
      update.bindNoCopy(1, member.display_name);
      update.bindNoCopy(2, member.role);
      update.bind(3, encode_list(member.grants));
      update.bind(4, encode_list(member.groups));
      bind_optional(update, 5, member.last_seen_at_ms);
      bind_optional(update, 6, member.revoked_at_ms);
      bind_optional(update, 7, member.banned_at_ms);
      update.bindNoCopy(8, member.ban_reason);
      update.bindNoCopy(9, member.id);
      if (update.exec() == 0) return fail(Errc::not_found, "update_member: no member " + member.id);
      return {};
    });
  }

  Result<void> create_invite(const InviteRecord& invite) override {
    return operation("create_invite", [&]() -> Result<void> {
      auto& insert = statements_.insert_invite;
      const Use use(insert);
      insert.bindNoCopy(1, invite.id);
      insert.bindNoCopy(2, invite.mesh_id);
      insert.bindNoCopy(3, invite.role);
      insert.bindNoCopy(4, invite.inviter_pubkey);
      insert.bind(5, invite.expires_at_s);
      insert.bindNoCopy(6, invite.signature);
      insert.bind(7, invite.max_uses);
      insert.bind(8, invite.uses);
      insert.bind(9, invite.created_at_ms);
      bind_optional(insert, 10, invite.revoked_at_ms);
      insert.exec();
      return {};
    });
  }

  Result<std::optional<InviteRecord>> find_invite(std::string_view invite_id) override {
    return operation("find_invite", [&] { return find_invite_row(invite_id); });
  }

  Result<MemberRecord> claim_invite(std::string_view invite_id, MemberRecord member, TimeMs now_ms) override {
    return operation("claim_invite", [&]() -> Result<MemberRecord> {
      auto found = find_invite_row(invite_id);
      if (!found) return fail(found.error());
      if (!*found) return fail(Errc::not_found, "no invite " + std::string(invite_id));
      const InviteRecord& invite = **found;
      if (invite.revoked_at_ms) return fail(Errc::revoked, "invite " + invite.id + " was revoked");
      const TimeMs expires_at_ms = seconds_to_ms(invite.expires_at_s);
      if (now_ms >= expires_at_ms) return fail(Errc::expired, "invite " + invite.id + " has expired");
      if (invite.uses >= invite.max_uses) return fail(Errc::exhausted, "invite " + invite.id + " has no uses left");
      auto existing = find_member_row(statements_.find_member, invite.mesh_id, member.pubkey);
      if (!existing) return fail(existing.error());
      if (*existing) return fail(Errc::already_exists, "the key is already a member of mesh " + invite.mesh_id);
      auto& use_invite = statements_.use_invite;
      {
        const Use use(use_invite);
        use_invite.bindNoCopy(1, invite.id);
        use_invite.exec();
      }
      member.mesh_id = invite.mesh_id;
      member.role = invite.role;
      if (auto inserted = insert_member(member); !inserted) return fail(inserted.error());
      return std::move(member);
    });
  }

  Result<void> revoke_invite(std::string_view invite_id, TimeMs now_ms) override {
    return operation("revoke_invite", [&]() -> Result<void> {
      auto& update = statements_.revoke_invite;
      const Use use(update);
      update.bind(1, now_ms);
      bind_view(update, 2, invite_id);
      if (update.exec() == 0) return fail(Errc::not_found, "no invite " + std::string(invite_id));
      return {};
    });
  }

  Result<void> record_session(const SessionRecord& session) override {
    return operation("record_session", [&]() -> Result<void> {
      auto& upsert = statements_.upsert_session;
      const Use use(upsert);
      upsert.bindNoCopy(1, session.mesh_id);
      upsert.bindNoCopy(2, session.session_pubkey);
      upsert.bindNoCopy(3, session.member_id);
      upsert.bind(4, session.last_seen_at_ms);
      upsert.exec();
      return {};
    });
  }

  Result<std::optional<SessionRecord>> find_session(std::string_view mesh_id,
                                                    std::string_view session_pubkey) override {
    return operation("find_session", [&]() -> Result<std::optional<SessionRecord>> {
      auto& query = statements_.find_session;
      const Use use(query);
      bind_view(query, 1, mesh_id);
      bind_view(query, 2, session_pubkey);
      if (!query.executeStep()) return std::nullopt;
      return SessionRecord{.mesh_id = query.getColumn(0).getString(),
                           .session_pubkey = query.getColumn(1).getString(),
                           .member_id = query.getColumn(2).getString(),
                           .last_seen_at_ms = query.getColumn(3).getInt64()};
    });
  }

  Result<std::optional<DedupeRecord>> find_dedupe(std::string_view mesh_id,
                                                  std::string_view client_message_id) override {
    return operation("find_dedupe", [&] { return find_dedupe_row(mesh_id, client_message_id); });
  }

  Result<AcceptResult> accept_message(const MessageRecord& message, std::span<const DeliveryBody> bodies) override {
    return operation("accept_message", [&]() -> Result<AcceptResult> {
      if (message.client_message_id) {
        auto seen = find_dedupe_row(message.mesh_id, *message.client_message_id);
        if (!seen) return fail(seen.error());
        if (*seen) {
          if ((*seen)->request_fingerprint != message.request_fingerprint) {
            return fail(Errc::idempotency_key_reused,
                        "client message id " + *message.client_message_id + " was used for a different request");
          }
          return AcceptResult{.message_id = (*seen)->message_id, .duplicate = true, .rows = 0};
        }
      }
      const std::int64_t message_seq = insert_message(message);
      if (message.client_message_id) {
        auto& insert = statements_.insert_dedupe;
        const Use use(insert);
        insert.bindNoCopy(1, message.mesh_id);
        insert.bindNoCopy(2, *message.client_message_id);
        insert.bindNoCopy(3, message.id);
        bind_optional(insert, 4, message.request_fingerprint);
        insert.bind(5, message.created_at_ms);
        insert.exec();
      }
      auto& insert_row = statements_.insert_delivery;
      auto& insert_body = statements_.insert_body;
      const Use use_row(insert_row);
      const Use use_body(insert_body);
      insert_row.bind(1, message_seq);
      insert_row.bindNoCopy(2, message.mesh_id);
      insert_row.bind(4, message.priority == "now" ? 1 : 0);
      insert_row.bind(5, message.created_at_ms);
      insert_row.bind(6, message.expires_at_ms);
      for (const auto& body : bodies) {
        insert_row.bindNoCopy(3, body.recipient_key);
        insert_row.exec();
        insert_row.reset();
        insert_body.bind(1, db_.getLastInsertRowid());
        insert_body.bindNoCopy(2, body.recipient_member_id);
        insert_body.bindNoCopy(3, body.nonce);
        insert_body.bindNoCopy(4, body.ciphertext);
        insert_body.exec();
        insert_body.reset();
      }
      return AcceptResult{.message_id = message.id, .duplicate = false, .rows = bodies.size()};
    });
  }

  Result<std::vector<DeliveryRecord>> claim_deliveries(const ClaimRequest& request) override {
    if (request.limit == 0 || request.recipient_keys.empty()) return std::vector<DeliveryRecord>{};
    return operation("claim_deliveries", [&]() -> Result<std::vector<DeliveryRecord>> {
      // Each key's rows come in seq order from the index; merging them and keeping the first `limit` gives
      // the request's rows in creation order without sorting anyone's whole backlog.
      std::vector<std::string_view> keys(request.recipient_keys.begin(), request.recipient_keys.end());
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      std::vector<DeliveryRecord> rows;
      for (const auto key : keys) collect_claimable(request, key, rows);
      if (keys.size() > 1) {
        std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
        if (rows.size() > request.limit) rows.resize(request.limit);
      }
      const TimeMs lease_until = saturating_add(request.now_ms, request.lease_ms);
      auto& lease = statements_.lease;
      const Use use(lease);
      lease.bindNoCopy(1, request.claimer);
      lease.bind(2, lease_until);
      for (auto& row : rows) {
        lease.bind(3, row.seq);
        lease.exec();
        lease.reset();
        row.attempts += 1;
        row.lease_until_ms = lease_until;
      }
      return rows;
    });
  }

  Result<std::size_t> mark_delivered(std::string_view mesh_id, std::string_view message_id,
                                     std::span<const std::string> recipient_keys, TimeMs now_ms) override {
    return operation("mark_delivered", [&]() -> Result<std::size_t> {
      std::int64_t message_seq = 0;
      {
        auto& query = statements_.find_message_seq;
        const Use use(query);
        bind_view(query, 1, message_id);
        bind_view(query, 2, mesh_id);
        if (!query.executeStep()) return std::size_t{0};
        message_seq = query.getColumn(0).getInt64();
      }
      auto& update = statements_.mark_delivered;
      const Use use(update);
      update.bind(1, now_ms);
      update.bind(2, message_seq);
      std::size_t marked = 0;
      for (const auto& key : recipient_keys) {
        update.bindNoCopy(3, key);
        marked += static_cast<std::size_t>(update.exec());
        update.reset();
      }
      return marked;
    });
  }

  Result<std::size_t> release_claims(std::string_view claimer) override {
    return operation("release_claims", [&]() -> Result<std::size_t> {
      auto& update = statements_.release_claims;
      const Use use(update);
      bind_view(update, 1, claimer);
      return static_cast<std::size_t>(update.exec());
    });
  }

  Result<std::size_t> readdress_undelivered(std::string_view mesh_id, std::string_view from_key,
                                            std::string_view to_key) override {
    return operation("readdress_undelivered", [&]() -> Result<std::size_t> {
      auto& update = statements_.readdress;
      const Use use(update);
      bind_view(update, 1, mesh_id);
      bind_view(update, 2, from_key);
      bind_view(update, 3, to_key);
      return static_cast<std::size_t>(update.exec());
    });
  }

  Result<std::vector<RecipientRef>> recipients_with_work(TimeMs now_ms, std::size_t limit) override {
    return operation("recipients_with_work", [&]() -> Result<std::vector<RecipientRef>> {
      auto& query = statements_.recipients_with_work;
      const Use use(query);
      query.bind(1, now_ms);
      query.bind(2, to_int64(limit));
      std::vector<RecipientRef> refs;
      while (query.executeStep()) {
        refs.push_back({.mesh_id = query.getColumn(0).getString(), .recipient_key = query.getColumn(1).getString()});
      }
      return refs;
    });
  }

  // Purge may delete millions of rows. Savepoint journals are kept in memory (temp_store), so it deletes in
  // chunks, each an operation of its own, and memory holds one chunk's page images at most. It stays atomic:
  // standalone it runs as a batch of its own; inside a batch, a chunk failing after others wrote loses the
  // batch (commit_batch() then fails), so no purge is ever half applied.
  Result<PurgeResult> purge(TimeMs now_ms, TimeMs retention_ms) override {
    if (in_batch_) return purge_chunks(now_ms, retention_ms);
    if (auto begun = begin_batch(); !begun) return fail(begun.error());
    auto purged = purge_chunks(now_ms, retention_ms);
    if (!purged) {
      rollback_batch();
      return purged;
    }
    if (auto committed = commit_batch(); !committed) return fail(committed.error());
    return purged;
  }

  Result<QueueStats> queue_stats(TimeMs now_ms) override {
    return operation("queue_stats", [&]() -> Result<QueueStats> {
      auto& query = statements_.queue_stats;
      const Use use(query);
      query.bind(1, now_ms);
      query.executeStep();
      return QueueStats{.undelivered = static_cast<std::uint64_t>(query.getColumn(0).getInt64()),
                        .leased = static_cast<std::uint64_t>(query.getColumn(1).getInt64()),
                        .messages = static_cast<std::uint64_t>(query.getColumn(2).getInt64())};
    });
  }

  Result<std::optional<std::pair<MessageRecord, std::vector<RecipientStatus>>>> message_status(
      std::string_view mesh_id, std::string_view message_id) override {
    using Status = std::optional<std::pair<MessageRecord, std::vector<RecipientStatus>>>;
    return operation("message_status", [&]() -> Result<Status> {
      std::pair<MessageRecord, std::vector<RecipientStatus>> status;
      std::int64_t message_seq = 0;
      {
        auto& query = statements_.find_message;
        const Use use(query);
        bind_view(query, 1, message_id);
        bind_view(query, 2, mesh_id);
        if (!query.executeStep()) return Status{};
        message_seq = query.getColumn(0).getInt64();
        status.first = read_message(query, 1);
      }
      auto& query = statements_.recipient_states;
      const Use use(query);
      query.bind(1, message_seq);
      while (query.executeStep()) {
        auto delivered_at = optional_time(query.getColumn(1));
        status.second.push_back({.recipient_key = query.getColumn(0).getString(),
                                 .delivered = delivered_at.has_value(),
                                 .delivered_at_ms = delivered_at,
                                 .attempts = to_count(query.getColumn(2))});
      }
      return status;
    });
  }

 private:
  // Runs `body` with every exception turned into an error. SQLite reports failures as exceptions; so may
  // the JSON decoder (a damaged row) and the allocator.
  template <class Body>
  auto guarded(std::string_view name, Body&& body) noexcept -> std::invoke_result_t<Body&> {
    try {
      return body();
    } catch (const SQLite::Exception& e) {
      return fail(sqlite_error(name, e));
    } catch (const std::exception& e) {
      return fail(Errc::io_error, std::string(name) + ": " + e.what());
    } catch (...) {
      return fail(Errc::internal, std::string(name) + ": unknown exception");
    }
  }

  // One store operation: all of its writes or none. Within a batch a failed operation rolls back to its own
  // savepoint; standalone, the savepoint is the whole transaction and RELEASE commits it.
  template <class Body>
  auto operation(std::string_view name, Body&& body) noexcept -> std::invoke_result_t<Body&> {
    if (batch_lost_) return fail(*batch_lost_, std::string(name) + ": the batch was rolled back");
    auto result = guarded(name, [&]() -> std::invoke_result_t<Body&> {
      execute(statements_.savepoint);
      auto inner = body();
      if (inner) execute(statements_.release);  // standalone: the commit (and its fsync)
      return inner;
    });
    if (!result) undo_operation(result.error());
    return result;
  }

  void undo_operation(const Error& error) noexcept {
    if (sqlite3_get_autocommit(db_.getHandle()) != 0) {
      // No transaction is open: either the operation failed before its savepoint, or SQLite rolled back
      // everything itself (it does on some I/O, full-disk and memory errors). Inside a batch that loses the
      // batch: say so to every later operation and to commit_batch().
      if (in_batch_) batch_lost_ = error;
      return;
    }
    const bool undone = try_execute(statements_.rollback_to) && try_execute(statements_.release);
    if (in_batch_) {
      if (!undone) batch_lost_ = error;  // the batch is in an unknown state: it must not commit
      return;
    }
    abandon_transaction();  // standalone: a failed commit may leave the transaction open
  }

  void abandon_transaction() noexcept {
    if (sqlite3_get_autocommit(db_.getHandle()) == 0) try_execute(statements_.rollback);
  }

  Result<PurgeResult> purge_chunks(TimeMs now_ms, TimeMs retention_ms) {
    const TimeMs cutoff = saturating_sub(now_ms, std::max<TimeMs>(retention_ms, 0));
    PurgeResult result;
    std::size_t deleted_total = 0;
    std::optional<Error> failure;
    // Runs a chunked DELETE (parameters: `times`, then the chunk size) until a chunk deletes fewer rows.
    const auto delete_all = [&](SQLite::Statement& statement, std::initializer_list<TimeMs> times, std::size_t& count) {
      while (!failure) {
        auto deleted = operation("purge", [&]() -> Result<std::size_t> {
          int index = 1;
          for (const TimeMs time : times) statement.bind(index++, time);
          statement.bind(index, to_int64(purge_chunk_rows));
          return static_cast<std::size_t>(execute(statement));
        });
        if (!deleted) {
          failure = deleted.error();
          return;
        }
        count += *deleted;
        deleted_total += *deleted;
        if (*deleted < purge_chunk_rows) return;
      }
    };
    delete_all(statements_.purge_expired, {now_ms}, result.expired_deliveries);
    delete_all(statements_.purge_delivered, {cutoff}, result.delivered_pruned);
    delete_all(statements_.purge_messages, {now_ms, cutoff}, result.messages_pruned);
    delete_all(statements_.purge_dedupe, {cutoff}, result.dedupe_pruned);
    if (!failure) return result;
    // Earlier chunks are in the open transaction: it must not commit without the rest of the purge.
    if (deleted_total > 0) batch_lost_ = failure;
    return fail(std::move(*failure));
  }

  Result<void> insert_member(const MemberRecord& member) {
    auto& insert = statements_.insert_member;
    const Use use(insert);
    bind_member(insert, member);
    insert.exec();
    return {};
  }

  std::int64_t insert_message(const MessageRecord& message) {
    auto& insert = statements_.insert_message;
    const Use use(insert);
    insert.bindNoCopy(1, message.id);
    insert.bindNoCopy(2, message.mesh_id);
    insert.bindNoCopy(3, message.sender_member_id);
    insert.bindNoCopy(4, message.sender_pubkey);
    insert.bindNoCopy(5, message.sender_member_pubkey);
    insert.bindNoCopy(6, message.target_spec);
    insert.bindNoCopy(7, message.priority);
    bind_optional(insert, 8, message.client_message_id);
    bind_optional(insert, 9, message.request_fingerprint);
    bind_optional(insert, 10, message.reply_to_id);
    insert.bind(11, message.created_at_ms);
    insert.bind(12, message.expires_at_ms);
    insert.exec();
    return db_.getLastInsertRowid();
  }

  Result<std::optional<MemberRecord>> find_member_row(SQLite::Statement& query, std::string_view mesh_id,
                                                      std::string_view key) {
    const Use use(query);
    bind_view(query, 1, mesh_id);
    bind_view(query, 2, key);
    if (!query.executeStep()) return std::nullopt;
    return read_member(query);
  }

  Result<std::optional<InviteRecord>> find_invite_row(std::string_view invite_id) {
    auto& query = statements_.find_invite;
    const Use use(query);
    bind_view(query, 1, invite_id);
    if (!query.executeStep()) return std::nullopt;
    return read_invite(query);
  }

  Result<std::optional<DedupeRecord>> find_dedupe_row(std::string_view mesh_id, std::string_view client_message_id) {
    auto& query = statements_.find_dedupe;
    const Use use(query);
    bind_view(query, 1, mesh_id);
    bind_view(query, 2, client_message_id);
    if (!query.executeStep()) return std::nullopt;
    return DedupeRecord{.message_id = query.getColumn(0).getString(),
                        .request_fingerprint = optional_text(query.getColumn(1)),
                        .first_seen_at_ms = query.getColumn(2).getInt64()};
  }

  // Appends up to `request.limit` claimable rows addressed to `key`, in seq order.
  void collect_claimable(const ClaimRequest& request, std::string_view key, std::vector<DeliveryRecord>& rows) {
    auto& query = statements_.claim_candidates;
    const Use use(query);
    query.bindNoCopy(1, request.mesh_id);
    bind_view(query, 2, key);
    query.bind(3, request.now_ms);
    query.bind(4, request.all_priorities ? 1 : 0);
    query.bind(5, saturating_sub(request.now_ms, request.max_hold_ms));
    query.bind(6, to_int64(request.limit));
    while (query.executeStep()) {
      DeliveryRecord row;
      row.seq = query.getColumn(0).getInt64();
      row.body.recipient_key = query.getColumn(1).getString();
      row.body.recipient_member_id = query.getColumn(2).getString();
      row.body.nonce = query.getColumn(3).getString();
      row.body.ciphertext = query.getColumn(4).getString();
      row.attempts = to_count(query.getColumn(5));
      row.message = read_message(query, 6);
      rows.push_back(std::move(row));
    }
  }

  SQLite::Database db_;      // declared first: destroyed after the statements prepared on it
  Statements statements_;
  bool in_batch_ = false;
  std::optional<Error> batch_lost_;  // set when SQLite rolled back the open batch by itself
};

Result<std::unique_ptr<BrokerStore>> open_store(const std::string& path, SqliteOptions options) {
  auto db = open_database(path, {.kind = "broker store",
                                 .application_id = broker_store_application_id,
                                 .migrations = migrations,
                                 .full_sync = options.full_sync,
                                 .cache_kib = page_cache_kib});
  if (!db) return fail(db.error());
  return std::make_unique<SqliteBrokerStore>(std::move(*db));
}

}  // namespace

Result<std::unique_ptr<BrokerStore>> open_sqlite_broker_store(const std::string& path, SqliteOptions options) {
  try {
    return open_store(path, options);
  } catch (const SQLite::Exception& e) {
    return fail(Errc::io_error, "cannot open broker store " + path + ": " + e.what());
  } catch (const std::exception& e) {
    return fail(Errc::io_error, "cannot open broker store " + path + ": " + e.what());
  }
}

}  // namespace claudemesh::store
