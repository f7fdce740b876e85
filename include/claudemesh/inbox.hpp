// SPDX-License-Identifier: MIT
/// @file inbox.hpp
/// The durable inbox: every message a peer receives is a row here before it is acknowledged to the broker.
///
/// Rows are per recipient: a message pushed to a launched session is stored with that session's key as
/// `recipient_pubkey` (`recipient_kind` "session"); one pushed to the member's own connection with the
/// member key ("member"). Listing with a recipient scope shows a session only its own rows and its
/// member's — sessions on one host never see each other's messages.
///
/// Duplicates are normal (the broker delivers at least once): `store()` keeps the first copy of each
/// (mesh, client message id, recipient) and reports later ones as duplicates. The receive path acks the
/// broker after `store()` returns, for new rows and for duplicates alike.
///
/// Text search uses an SQLite FTS5 index over the sender name and body, kept in step by triggers.
///
/// @par Thread safety
/// One SQLite connection: distinct objects safe, shared objects unsafe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

struct InboxConfig {
  std::chrono::milliseconds retention{std::chrono::hours(24 * 30)};  ///< `prune()` removes older rows
  bool fsync = true;                                                ///< `synchronous=FULL` or `NORMAL`
  Clock clock;                                                      ///< empty: system clock
  RandomSource rng;                                                 ///< empty: system CSPRNG (row ids)
};

/// One received message, decrypted.
struct InboxMessage {
  std::string id;                    ///< row id (ULID), assigned by `store()`
  std::string client_message_id;     ///< the sender's idempotency id (or the broker id when absent)
  std::string broker_message_id;
  std::string mesh;
  std::string topic;                 ///< empty unless sent to a topic
  std::string target_spec;           ///< what the sender addressed (`*`, `@group`, a key)
  std::string sender_pubkey;         ///< the sending key (a session's or a member's)
  std::string sender_member_pubkey;  ///< the sending member
  std::string sender_name;
  std::string body;                  ///< plaintext (UTF-8 text as sent)
  std::string meta_json;             ///< JSON object text, or empty
  std::string priority = "next";
  std::string reply_to_id;
  std::int64_t created_at_ms = 0;    ///< when the broker accepted it
  std::int64_t received_at_ms = 0;   ///< when we stored it (set by `store()` when 0)
  std::optional<std::int64_t> seen_at_ms;
  std::string recipient_pubkey;      ///< the key it was delivered to
  std::string recipient_kind;        ///< "member" or "session"
};

/// Which rows to list or search. Empty fields do not filter.
struct InboxQuery {
  std::string mesh;
  std::string topic;
  std::string from_pubkey;             ///< sender key or sender member key
  std::optional<std::int64_t> since_ms;  ///< received at or after
  std::optional<std::int64_t> before_ms; ///< received strictly before (paging: pass the last row's time)
  std::string before_id;               ///< with `before_ms`: tie-break on row id for rows of equal time
  bool unread_only = false;            ///< `seen_at` is null
  /// Recipient scope: when non-empty, only rows whose `recipient_pubkey` is one of these (typically a
  /// session key and its member key). Empty: every row.
  std::vector<std::string> recipients;
  std::size_t limit = 100;             ///< clamped to 1..1000
};

/// What `store()` did.
struct InboxStore {
  bool inserted = false;  ///< false: a copy was already stored
  std::string id;         ///< the row id of the stored copy (new or existing)
};

class CLAUDEMESH_API Inbox {
 public:
  /// Open (creating if needed, mode 0600) and migrate the database at `path`. A database that fails
  /// `PRAGMA integrity_check` is renamed to `<path>.corrupt-<ms>` and a fresh one created (the inbox is a
  /// cache of what the broker already delivered); `recovered_from_corruption()` then says so.
  /// @returns `Errc::io_error` if no database can be opened or created, `Errc::malformed` for a newer schema.
  static Result<Inbox> open(const std::filesystem::path& path, InboxConfig config = {});

  Inbox(Inbox&&) noexcept;
  Inbox& operator=(Inbox&&) noexcept;
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;
  ~Inbox();

  /// Store a received message unless a copy with the same (mesh, client message id, recipient) exists.
  /// Durable when it returns. @returns `Errc::invalid_value` for an empty mesh, client message id or sender.
  Result<InboxStore> store(InboxMessage message);

  /// Store several messages in one transaction (one sync to disk for all: what a busy receiver does with
  /// the pushes that arrived together). Each message gets its own answer, as `store()` would give it; a
  /// failed transaction fails every message that was valid.
  std::vector<Result<InboxStore>> store_all(std::vector<InboxMessage> messages);

  /// Rows matching `query`, newest first (by received time, then row id).
  Result<std::vector<InboxMessage>> list(const InboxQuery& query);

  /// Full-text search (FTS5 syntax; a plain word list matches rows containing every word) within `query`'s
  /// filters, best matches first. @returns `Errc::invalid_value` for a query FTS5 cannot parse.
  Result<std::vector<InboxMessage>> search(std::string_view text, const InboxQuery& query);

  /// One row by row id, client message id or broker message id, or `std::nullopt`.
  Result<std::optional<InboxMessage>> get(std::string_view id);

  /// Stamp `seen_at = now` on those rows (by row id) that have none. @returns how many changed.
  Result<std::size_t> mark_seen(const std::vector<std::string>& ids);

  /// Delete one row by row id. @returns whether it existed.
  Result<bool> remove(std::string_view id);

  /// Delete rows of `mesh` (empty: every mesh) received before `before_ms` (empty: whenever).
  /// @returns how many were deleted.
  Result<std::size_t> flush(std::string_view mesh, std::optional<std::int64_t> before_ms);

  /// Delete rows older than the retention. @returns how many were deleted.
  Result<std::size_t> prune();

  /// Number of rows, and of unseen rows, within a recipient scope (empty: all).
  struct Counts {
    std::int64_t rows = 0;
    std::int64_t unread = 0;
  };
  Result<Counts> counts(const std::vector<std::string>& recipients = {});

  /// Whether `open()` replaced a corrupt database.
  [[nodiscard]] bool recovered_from_corruption() const noexcept;

 private:
  struct Impl;
  explicit Inbox(std::unique_ptr<Impl> impl);
  Result<InboxStore> insert_row(InboxMessage& message);
  std::unique_ptr<Impl> impl_;
};

}  // namespace claudemesh
