// SPDX-License-Identifier: MIT
// The durable outbox on SQLite (SQLiteCpp). See include/claudemesh/outbox.hpp for the contract and
// reference §3 for where it comes from.
//
// One connection per Outbox; every statement is prepared once. Each write runs in its own BEGIN IMMEDIATE
// transaction (in_immediate_transaction), so a decision and the write it leads to (accept's lookup and
// insert, claim's expiry and lease, requeue's abort and insert) happen under one write lock, also against
// other processes holding the same file. SQLite, JSON and allocation exceptions are caught at the public
// functions and returned as `Errc::io_error`; none escapes.
//
// Schema (migration 1; see `migrations` below), one table `outbox`, one row per accepted message:
//   outbox_queue      (mesh, sender_session_pubkey, enqueued_at_ms, id, next_attempt_at_ms) WHERE pending or
//                     inflight: claim walks one lane's unsent rows (a mesh, and the member's connection or one
//                     session's) in accept order and stops at its limit, skipping rows still backing off on the
//                     index alone (a claim costs its limit, not the backlog, when a backlog is due all at once, as
//                     after an outage). Per lane, so a backlog in one mesh or session costs another nothing.
//   outbox_due        (mesh, sender_session_pubkey, next_attempt_at_ms) WHERE pending or inflight: next_due_ms()
//                     is one index seek.
//   outbox_by_status  (status, enqueued_at_ms, id): list() of one status, open()'s inflight recovery.
//   outbox_by_time    (enqueued_at_ms, id): list() of every status.
//   client_message_id has its own UNIQUE index: accept()'s lookup, and the guarantee that an id names at
//   most one row, ever.
#include "core/backoff.hpp"
#include "store/outbox_rules.hpp"
#include "store/sqlite_database.hpp"

#include <claudemesh/ids.hpp>
#include <claudemesh/outbox.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include <algorithm>
#include <array>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace claudemesh {
namespace {

// PRAGMA application_id of an outbox ("cmob"), so another program's database is refused, not migrated.
constexpr std::int64_t outbox_application_id = 0x636d6f62;
// list() returns at least one and at most this many rows.
constexpr std::size_t max_list_rows = 500;

// The schema, as an ordered list of migrations: version N is the state after the first N entries have run
// (PRAGMA user_version holds N). Append-only: an entry that has shipped is never edited; a change is a new
// entry. Absent optional text (reply_to_id, broker_message_id, ...) is NULL, read back as "".
constexpr std::array<std::string_view, 1> migrations = {
    R"sql(
CREATE TABLE outbox (
  id                    TEXT PRIMARY KEY NOT NULL,
  client_message_id     TEXT NOT NULL UNIQUE,
  request_fingerprint   TEXT NOT NULL CHECK (length(request_fingerprint) = 64),
  mesh                  TEXT NOT NULL,
  target_spec           TEXT NOT NULL,
  priority              TEXT NOT NULL CHECK (priority IN ('now', 'next', 'low')),
  reply_to_id           TEXT,
  sender_session_pubkey TEXT,
  sealed                TEXT NOT NULL,
  payload_bytes         INTEGER NOT NULL CHECK (payload_bytes >= 0),
  status                TEXT NOT NULL CHECK (status IN ('pending', 'inflight', 'done', 'dead', 'aborted')),
  attempts              INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  enqueued_at_ms        INTEGER NOT NULL,
  next_attempt_at_ms    INTEGER NOT NULL,
  delivered_at_ms       INTEGER,
  broker_message_id     TEXT,
  last_error            TEXT,
  aborted_at_ms         INTEGER,
  aborted_by            TEXT,
  superseded_by         TEXT
) STRICT;
CREATE INDEX outbox_queue ON outbox (mesh, sender_session_pubkey, enqueued_at_ms, id, next_attempt_at_ms)
  WHERE status IN ('pending', 'inflight');
CREATE INDEX outbox_due ON outbox (mesh, sender_session_pubkey, next_attempt_at_ms)
  WHERE status IN ('pending', 'inflight');
CREATE INDEX outbox_by_status ON outbox (status, enqueued_at_ms, id);
CREATE INDEX outbox_by_time ON outbox (enqueued_at_ms, id);
)sql",
};

// The row columns, in the order read_row() expects them.
#define CLAUDEMESH_OUTBOX_COLUMNS                                                                            \
  "id, client_message_id, request_fingerprint, mesh, target_spec, priority, reply_to_id, "                  \
  "sender_session_pubkey, sealed, payload_bytes, status, attempts, enqueued_at_ms, next_attempt_at_ms, "    \
  "delivered_at_ms, broker_message_id, last_error, aborted_at_ms, aborted_by, superseded_by"
// The condition of a row that is still to be sent; written exactly like the partial indexes' WHERE, which
// SQLite requires before it uses them.
#define CLAUDEMESH_OUTBOX_ACTIVE "status IN ('pending', 'inflight')"

// Every statement the outbox runs, prepared once when it opens.
struct Statements {
  explicit Statements(SQLite::Database& database) : db(database) {}
  SQLite::Database& db;

  SQLite::Statement find_by_id{db, "SELECT " CLAUDEMESH_OUTBOX_COLUMNS " FROM outbox WHERE id = ?1"};
  SQLite::Statement find_by_client{db,
                                   "SELECT " CLAUDEMESH_OUTBOX_COLUMNS " FROM outbox WHERE client_message_id = ?1"};
  SQLite::Statement insert{db,
                           "INSERT INTO outbox (id, client_message_id, request_fingerprint, mesh, target_spec, "
                           "priority, reply_to_id, sender_session_pubkey, sealed, payload_bytes, status, attempts, "
                           "enqueued_at_ms, next_attempt_at_ms) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', 0, ?11, ?11)"};
  SQLite::Statement recover{db, "UPDATE outbox SET status = 'pending', next_attempt_at_ms = ?1 "
                                "WHERE status = 'inflight'"};
  SQLite::Statement expire{db, "UPDATE outbox SET status = 'dead', last_error = ?1 WHERE mesh = ?2 AND "
                               CLAUDEMESH_OUTBOX_ACTIVE " AND enqueued_at_ms <= ?3"};
  // Pinned to outbox_queue: without statistics SQLite prefers outbox_due and sorts every due row by age.
  SQLite::Statement due{db, "SELECT " CLAUDEMESH_OUTBOX_COLUMNS " FROM outbox INDEXED BY outbox_queue "
                            "WHERE mesh = ?1 AND sender_session_pubkey IS ?4 AND " CLAUDEMESH_OUTBOX_ACTIVE
                            " AND next_attempt_at_ms <= ?2 ORDER BY enqueued_at_ms, id LIMIT ?3"};
  SQLite::Statement lease{db, "UPDATE outbox SET status = 'inflight', attempts = attempts + 1, "
                              "next_attempt_at_ms = ?1 WHERE id = ?2"};
  SQLite::Statement mark_sent{db,
                              "UPDATE outbox SET status = 'done', delivered_at_ms = ?1, broker_message_id = ?2, "
                              "last_error = NULL WHERE id = ?3 AND status = 'inflight'"};
  SQLite::Statement inflight_attempts{db, "SELECT attempts FROM outbox WHERE id = ?1 AND status = 'inflight'"};
  // ?3 NULL keeps next_attempt_at_ms (a dead row is never due again).
  SQLite::Statement record_failure{db,
                         "UPDATE outbox SET status = ?1, last_error = ?2, "
                         "next_attempt_at_ms = COALESCE(?3, next_attempt_at_ms) WHERE id = ?4 AND status = 'inflight'"};
  SQLite::Statement abort_row{db,
                          "UPDATE outbox SET status = 'aborted', aborted_at_ms = ?1, aborted_by = ?2, "
                          "superseded_by = ?3 WHERE id = ?4 AND status IN ('pending', 'inflight', 'dead')"};
  SQLite::Statement list_all{db, "SELECT " CLAUDEMESH_OUTBOX_COLUMNS
                                 " FROM outbox ORDER BY enqueued_at_ms DESC, id DESC LIMIT ?1"};
  SQLite::Statement list_status{db, "SELECT " CLAUDEMESH_OUTBOX_COLUMNS
                                    " FROM outbox WHERE status = ?1 ORDER BY enqueued_at_ms DESC, id DESC LIMIT ?2"};
  SQLite::Statement depths{db,
                           "SELECT mesh, status, COUNT(*), MIN(enqueued_at_ms) FROM outbox "
                           "GROUP BY mesh, status ORDER BY mesh, status"};
  SQLite::Statement next_due{db, "SELECT MIN(next_attempt_at_ms) FROM outbox WHERE mesh = ?1 AND "
                                 "sender_session_pubkey IS ?2 AND " CLAUDEMESH_OUTBOX_ACTIVE};
};

#undef CLAUDEMESH_OUTBOX_COLUMNS
#undef CLAUDEMESH_OUTBOX_ACTIVE

using store::Use;

// ---- values ----

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (!__builtin_add_overflow(a, b, &out)) return out;
  return b > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
}

std::int64_t saturating_sub(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (!__builtin_sub_overflow(a, b, &out)) return out;
  return b > 0 ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max();
}

std::int64_t to_int64(std::size_t n) {
  return static_cast<std::int64_t>(std::min<std::size_t>(n, std::numeric_limits<std::int64_t>::max()));
}

// ---- binding and reading ----

void bind_text(SQLite::Statement& statement, int index, std::string_view value) {
  statement.bind(index, std::string(value));
}

void bind_text_or_null(SQLite::Statement& statement, int index, std::string_view value) {
  if (value.empty()) {
    statement.bind(index);
  } else {
    statement.bind(index, std::string(value));
  }
}

std::string text_or_empty(const SQLite::Column& column) { return column.isNull() ? std::string() : column.getString(); }

std::optional<std::int64_t> optional_int(const SQLite::Column& column) {
  if (column.isNull()) return std::nullopt;
  return column.getInt64();
}

OutboxStatus read_status(const SQLite::Column& column) {
  auto status = parse_outbox_status(column.getString());
  if (!status) throw std::runtime_error("outbox row has an unknown status '" + column.getString() + "'");
  return *status;
}

OutboxRow read_row(const SQLite::Statement& query) {
  OutboxRow row;
  row.id = query.getColumn(0).getString();
  row.client_message_id = query.getColumn(1).getString();
  row.request_fingerprint = query.getColumn(2).getString();
  row.mesh = query.getColumn(3).getString();
  row.target_spec = query.getColumn(4).getString();
  row.priority = query.getColumn(5).getString();
  row.reply_to_id = text_or_empty(query.getColumn(6));
  row.sender_session_pubkey = text_or_empty(query.getColumn(7));
  row.sealed = query.getColumn(8).getString();
  row.payload_bytes = query.getColumn(9).getInt64();
  row.status = read_status(query.getColumn(10));
  row.attempts = query.getColumn(11).getInt();
  row.enqueued_at_ms = query.getColumn(12).getInt64();
  row.next_attempt_at_ms = query.getColumn(13).getInt64();
  row.delivered_at_ms = optional_int(query.getColumn(14));
  row.broker_message_id = text_or_empty(query.getColumn(15));
  row.last_error = text_or_empty(query.getColumn(16));
  row.aborted_at_ms = optional_int(query.getColumn(17));
  row.aborted_by = text_or_empty(query.getColumn(18));
  row.superseded_by = text_or_empty(query.getColumn(19));
  return row;
}

std::optional<OutboxRow> query_row(SQLite::Statement& query, std::string_view key) {
  const Use use(query);
  bind_text(query, 1, key);
  if (!query.executeStep()) return std::nullopt;
  return read_row(query);
}

std::vector<OutboxRow> query_rows(SQLite::Statement& query) {
  std::vector<OutboxRow> rows;
  while (query.executeStep()) rows.push_back(read_row(query));
  return rows;
}

std::string expiry_error(std::chrono::milliseconds max_age) {
  return std::string(wire_name(Errc::expired)) + ": not sent within max_age (" + std::to_string(max_age.count()) +
         " ms after it was accepted)";
}

// Runs `body` with every exception turned into an error: SQLite reports failures as exceptions, and so may
// the allocator.
template <class Body>
auto guarded(std::string_view operation, Body&& body) noexcept -> std::invoke_result_t<Body&> {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(Errc::io_error, "outbox " + std::string(operation) + ": " + e.what());
  } catch (...) {
    return fail(Errc::internal, "outbox " + std::string(operation) + ": unknown exception");
  }
}

// What every operation on a moved-from Outbox returns.
std::unexpected<Error> moved_from(std::string_view operation) {
  return fail(Errc::internal, "outbox " + std::string(operation) + ": the Outbox was moved from");
}

}  // namespace

struct Outbox::Impl {
  Impl(SQLite::Database database, OutboxConfig configuration)
      : config(std::move(configuration)), db(std::move(database)), statements(db), ids(config.clock, config.rng) {}

  [[nodiscard]] std::int64_t now() const { return now_ms(config.clock); }

  // A row by row id, else by client message id (a row id is tried first: it is what listings show).
  std::optional<OutboxRow> find_row(std::string_view key) {
    if (auto row = query_row(statements.find_by_id, key)) return row;
    return query_row(statements.find_by_client, key);
  }

  OutboxRow insert_row(OutboxRow row) {
    auto& insert = statements.insert;
    const Use use(insert);
    insert.bind(1, row.id);
    insert.bind(2, row.client_message_id);
    insert.bind(3, row.request_fingerprint);
    insert.bind(4, row.mesh);
    insert.bind(5, row.target_spec);
    insert.bind(6, row.priority);
    bind_text_or_null(insert, 7, row.reply_to_id);
    bind_text_or_null(insert, 8, row.sender_session_pubkey);
    insert.bind(9, row.sealed);
    insert.bind(10, row.payload_bytes);
    insert.bind(11, row.enqueued_at_ms);
    insert.exec();
    return row;
  }

  // A fresh pending row for `send` under `client_message_id`.
  OutboxRow new_row(const OutboxSend& send, std::string client_message_id, std::int64_t now_ms) {
    OutboxRow row;
    row.id = ids.next();
    row.client_message_id = std::move(client_message_id);
    row.request_fingerprint = send.request_fingerprint;
    row.mesh = send.mesh;
    row.target_spec = send.target_spec;
    row.priority = send.priority;
    row.reply_to_id = send.reply_to_id;
    row.sender_session_pubkey = send.sender_session_pubkey;
    row.sealed = send.sealed;
    row.payload_bytes = send.payload_bytes;
    row.enqueued_at_ms = now_ms;
    row.next_attempt_at_ms = now_ms;
    return row;
  }

  void set_failed(std::string_view id, OutboxStatus status, const std::string& last_error,
                  std::optional<std::int64_t> next_attempt_at_ms) {
    auto& update = statements.record_failure;
    const Use use(update);
    bind_text(update, 1, to_string(status));
    update.bind(2, last_error);
    if (next_attempt_at_ms) {
      update.bind(3, *next_attempt_at_ms);
    } else {
      update.bind(3);
    }
    bind_text(update, 4, id);
    update.exec();
  }

  OutboxConfig config;
  SQLite::Database db;  // before the statements prepared on it, so it is destroyed after them
  Statements statements;
  IdGenerator ids;
  std::size_t recovered = 0;
};

Result<Outbox> Outbox::open(const std::filesystem::path& path, OutboxConfig config) {
  return guarded("open", [&]() -> Result<Outbox> {
    auto db = store::open_database(path.string(), {.kind = "outbox",
                                                   .application_id = outbox_application_id,
                                                   .migrations = migrations,
                                                   .full_sync = config.fsync});
    if (!db) return fail(db.error());
    if (auto checked = store::check_integrity(*db); !checked) {
      return fail(Errc::malformed, "the outbox " + path.string() + " is damaged and was left as it is (" +
                                       checked.error().message + ")");
    }
    auto impl = std::make_unique<Impl>(std::move(*db), std::move(config));
    // A row left inflight was being sent when its last owner stopped: send it again (the broker
    // deduplicates by client_message_id).
    auto recovered = store::in_immediate_transaction(impl->db, [&]() -> Result<std::size_t> {
      auto& recover = impl->statements.recover;
      const Use use(recover);
      recover.bind(1, impl->now());
      return static_cast<std::size_t>(recover.exec());
    });
    if (!recovered) return fail(recovered.error(), "outbox " + path.string() + ": recovering inflight rows");
    impl->recovered = *recovered;
    return Outbox(std::move(impl));
  });
}

Outbox::Outbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Outbox::Outbox(Outbox&&) noexcept = default;
Outbox& Outbox::operator=(Outbox&&) noexcept = default;
Outbox::~Outbox() = default;

std::size_t Outbox::recovered_on_open() const noexcept { return impl_ ? impl_->recovered : 0; }

// One decision of the idempotency table, inside the caller's BEGIN IMMEDIATE transaction.
OutboxAccept Outbox::decide(const OutboxSend& send) {
  std::string client_message_id = send.client_message_id.empty() ? impl_->ids.next() : send.client_message_id;
  if (auto existing = query_row(impl_->statements.find_by_client, client_message_id)) {
    const bool same = store::same_fingerprint(existing->request_fingerprint, send.request_fingerprint);
    return store::decide_existing(std::move(*existing), same);
  }
  auto row = impl_->insert_row(impl_->new_row(send, std::move(client_message_id), impl_->now()));
  return OutboxAccept{.outcome = OutboxAccept::Outcome::queued, .http_status = 202, .inserted = true, .row = std::move(row)};
}

Result<OutboxAccept> Outbox::accept(const OutboxSend& send) {
  if (!impl_) return moved_from("accept");
  if (auto valid = store::validate_send(send); !valid) return fail(valid.error(), "outbox accept");
  return guarded("accept", [&]() -> Result<OutboxAccept> {
    return store::in_immediate_transaction(impl_->db, [&]() -> Result<OutboxAccept> { return decide(send); });
  });
}

std::vector<Result<OutboxAccept>> Outbox::accept_all(const std::vector<OutboxSend>& sends) {
  std::vector<Result<OutboxAccept>> answers;
  answers.reserve(sends.size());
  bool any = false;
  for (const auto& send : sends) {
    if (!impl_) {
      answers.push_back(moved_from("accept"));
      continue;
    }
    auto valid = store::validate_send(send);
    any = any || valid.has_value();
    answers.push_back(valid ? Result<OutboxAccept>(OutboxAccept{}) : Result<OutboxAccept>(fail(valid.error(), "outbox accept")));
  }
  if (!any) return answers;
  auto batch = guarded("accept", [&]() -> Result<void> {
    return store::in_immediate_transaction(impl_->db, [&]() -> Result<void> {
      for (std::size_t i = 0; i < sends.size(); ++i) {
        if (answers[i]) answers[i] = decide(sends[i]);
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

Result<std::vector<OutboxRow>> Outbox::claim(std::string_view mesh, std::size_t limit, std::string_view sender_session) {
  if (!impl_) return moved_from("claim");
  if (limit == 0) return std::vector<OutboxRow>{};
  return guarded("claim", [&]() -> Result<std::vector<OutboxRow>> {
    // Not fsynced: recovery redoes it (see in_unsynced_transaction).
    return store::in_unsynced_transaction(impl_->db, impl_->config.fsync, [&]() -> Result<std::vector<OutboxRow>> {
      const std::int64_t now = impl_->now();
      auto& st = impl_->statements;
      {
        const Use use(st.expire);
        st.expire.bind(1, expiry_error(impl_->config.max_age));
        bind_text(st.expire, 2, mesh);
        st.expire.bind(3, saturating_sub(now, impl_->config.max_age.count()));
        st.expire.exec();
      }
      std::vector<OutboxRow> rows;
      {
        const Use use(st.due);
        bind_text(st.due, 1, mesh);
        st.due.bind(2, now);
        st.due.bind(3, to_int64(limit));
        bind_text_or_null(st.due, 4, sender_session);
        rows = query_rows(st.due);
      }
      const std::int64_t lease_end = saturating_add(now, impl_->config.claim_lease.count());
      const Use use(st.lease);
      st.lease.bind(1, lease_end);
      for (auto& row : rows) {
        st.lease.bind(2, row.id);
        st.lease.exec();
        st.lease.reset();
        row.status = OutboxStatus::inflight;
        row.attempts += 1;
        row.next_attempt_at_ms = lease_end;
      }
      return rows;
    });
  });
}

Result<void> Outbox::mark_sent(std::string_view id, std::string_view broker_message_id) {
  if (!impl_) return moved_from("mark_sent");
  return guarded("mark_sent", [&]() -> Result<void> {
    // Not fsynced: recovery redoes it (see in_unsynced_transaction).
    return store::in_unsynced_transaction(impl_->db, impl_->config.fsync, [&]() -> Result<void> {
      auto& update = impl_->statements.mark_sent;
      const Use use(update);
      update.bind(1, impl_->now());
      bind_text_or_null(update, 2, broker_message_id);
      bind_text(update, 3, id);
      if (update.exec() == 0) return fail(Errc::not_found, "outbox mark_sent: no inflight row " + std::string(id));
      return {};
    });
  });
}

Result<OutboxStatus> Outbox::mark_failed(std::string_view id, const Error& error, bool permanent) {
  if (!impl_) return moved_from("mark_failed");
  return guarded("mark_failed", [&]() -> Result<OutboxStatus> {
    // Not fsynced: recovery redoes it (see in_unsynced_transaction).
    return store::in_unsynced_transaction(impl_->db, impl_->config.fsync, [&]() -> Result<OutboxStatus> {
      int attempts = 0;
      {
        auto& query = impl_->statements.inflight_attempts;
        const Use use(query);
        bind_text(query, 1, id);
        if (!query.executeStep()) {
          return fail(Errc::not_found, "outbox mark_failed: no inflight row " + std::string(id));
        }
        attempts = query.getColumn(0).getInt();
      }
      const std::string last_error = std::string(error.wire_code()) + ": " + error.message;
      if (permanent) {
        impl_->set_failed(id, OutboxStatus::dead, last_error, std::nullopt);
        return OutboxStatus::dead;
      }
      if (attempts >= impl_->config.max_attempts) {
        impl_->set_failed(id, OutboxStatus::dead, "max_attempts: " + last_error, std::nullopt);
        return OutboxStatus::dead;
      }
      const double unit = core::random_unit(impl_->config.rng);
      const std::int64_t delay = store::backoff_delay_ms(impl_->config, attempts, unit);
      const std::int64_t retry_at = saturating_add(impl_->now(), delay);
      impl_->set_failed(id, OutboxStatus::pending, last_error, retry_at);
      return OutboxStatus::pending;
    });
  });
}

Result<OutboxRequeue> Outbox::requeue(std::string_view id_or_client_message_id,
                                      std::string_view new_client_message_id, std::string_view by, bool force) {
  if (!impl_) return moved_from("requeue");
  return guarded("requeue", [&]() -> Result<OutboxRequeue> {
    if (!new_client_message_id.empty() && !store::is_client_message_id(new_client_message_id)) {
      return fail(Errc::invalid_value,
                  "outbox requeue: the new client_message_id must be 1-128 printable ASCII characters without spaces");
    }
    if (by.empty()) return fail(Errc::invalid_value, "outbox requeue: `by` is empty");
    std::string new_client_id =
        new_client_message_id.empty() ? impl_->ids.next() : std::string(new_client_message_id);
    return store::in_immediate_transaction(impl_->db, [&]() -> Result<OutboxRequeue> {
      const std::string key(id_or_client_message_id);
      auto old = impl_->find_row(key);
      if (!old) return fail(Errc::not_found, "outbox requeue: no row " + key);
      if (old->status == OutboxStatus::done || old->status == OutboxStatus::aborted) {
        return fail(Errc::forbidden, "outbox requeue: row " + old->id + " is " + std::string(to_string(old->status)));
      }
      if (old->status == OutboxStatus::inflight && !force) {
        return fail(Errc::forbidden,
                    "outbox requeue: row " + old->id + " is inflight (it may be on the wire; force it)");
      }
      if (query_row(impl_->statements.find_by_client, new_client_id)) {
        return fail(Errc::idempotency_key_reused, "outbox requeue: client_message_id " + new_client_id +
                                                      " already has a row");
      }
      const std::int64_t now = impl_->now();
      // Every routing column is copied (reference §8 (b): dropping them re-sent DMs as broadcasts).
      const OutboxSend copy{.client_message_id = {},
                            .request_fingerprint = old->request_fingerprint,
                            .mesh = old->mesh,
                            .target_spec = old->target_spec,
                            .priority = old->priority,
                            .reply_to_id = old->reply_to_id,
                            .sender_session_pubkey = old->sender_session_pubkey,
                            .sealed = old->sealed,
                            .payload_bytes = old->payload_bytes};
      const auto added = impl_->insert_row(impl_->new_row(copy, new_client_id, now));
      auto& update = impl_->statements.abort_row;
      const Use use(update);
      update.bind(1, now);
      bind_text(update, 2, by);
      update.bind(3, added.id);
      update.bind(4, old->id);
      if (update.exec() != 1) return fail(Errc::internal, "outbox requeue: row " + old->id + " changed under its lock");
      return OutboxRequeue{.aborted_row_id = old->id,
                           .new_row_id = added.id,
                           .new_client_message_id = added.client_message_id};
    });
  });
}

Result<std::optional<OutboxRow>> Outbox::find(std::string_view id_or_client_message_id) {
  if (!impl_) return moved_from("find");
  return guarded("find", [&]() -> Result<std::optional<OutboxRow>> {
    return impl_->find_row(id_or_client_message_id);
  });
}

Result<std::vector<OutboxRow>> Outbox::list(std::optional<OutboxStatus> status, std::size_t limit) {
  if (!impl_) return moved_from("list");
  return guarded("list", [&]() -> Result<std::vector<OutboxRow>> {
    const auto rows = to_int64(std::clamp<std::size_t>(limit, 1, max_list_rows));
    auto& query = status ? impl_->statements.list_status : impl_->statements.list_all;
    const Use use(query);
    if (status) {
      bind_text(query, 1, to_string(*status));
      query.bind(2, rows);
    } else {
      query.bind(1, rows);
    }
    return query_rows(query);
  });
}

Result<std::vector<OutboxDepth>> Outbox::depths() {
  if (!impl_) return moved_from("depths");
  return guarded("depths", [&]() -> Result<std::vector<OutboxDepth>> {
    auto& query = impl_->statements.depths;
    const Use use(query);
    std::vector<OutboxDepth> depths;
    while (query.executeStep()) {
      depths.push_back({.mesh = query.getColumn(0).getString(),
                        .status = read_status(query.getColumn(1)),
                        .rows = query.getColumn(2).getInt64(),
                        .oldest_enqueued_at_ms = query.getColumn(3).getInt64()});
    }
    return depths;
  });
}

Result<std::optional<std::int64_t>> Outbox::next_due_ms(std::string_view mesh, std::string_view sender_session) {
  if (!impl_) return moved_from("next_due_ms");
  return guarded("next_due_ms", [&]() -> Result<std::optional<std::int64_t>> {
    auto& query = impl_->statements.next_due;
    const Use use(query);
    bind_text(query, 1, mesh);
    bind_text_or_null(query, 2, sender_session);
    if (!query.executeStep()) return std::nullopt;
    return optional_int(query.getColumn(0));
  });
}

}  // namespace claudemesh
