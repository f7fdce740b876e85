// SPDX-License-Identifier: MIT
/// @file outbox.hpp
/// The durable outbox: every message a peer sends is a row here before anything touches the network.
///
/// A row moves through
///
/// @code
///   (none) --accept--> pending --claim--> inflight --mark_sent--> done
///                        ^                   |--mark_failed (transient, attempts < max)--> pending (+backoff)
///                        |                   '--mark_failed (permanent | attempts >= max | too old)--> dead
///   requeue: {pending, dead, inflight (forced)} --> aborted, plus a new pending row with a fresh id
/// @endcode
///
/// `done` and `aborted` are terminal. Re-using a `client_message_id` follows the idempotency table
/// (reference §4.5.1) exactly; see `Outbox::accept()`. A client message id is consumed by its row forever:
/// it is never released, even when the row is aborted.
///
/// The outbox stores the message already resolved and sealed (the body is ciphertext; see `OutboxSend`)
/// together with the request fingerprint computed from the plaintext at accept time. The fingerprint is
/// never recomputed. Opening the outbox moves every `inflight` row back to `pending` (a crash between
/// claim and broker ack must not strand it); the broker deduplicates the resend by `client_message_id`.
///
/// Storage: one SQLite database in WAL mode. With `OutboxConfig::fsync` (the default) every accepted row is
/// on disk when `accept()` returns (`synchronous=FULL`). Writes use `BEGIN IMMEDIATE`.
///
/// @par Thread safety
/// An `Outbox` is one SQLite connection: distinct objects safe, shared objects unsafe. Several `Outbox`
/// objects (in one or several processes) may open the same file; writes serialize on SQLite's lock.
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

/// Where a row is in its life.
enum class OutboxStatus { pending, inflight, done, dead, aborted };

/// "pending", "inflight", "done", "dead", "aborted"; empty for a value outside the enumeration.
CLAUDEMESH_API std::string_view to_string(OutboxStatus status) noexcept;
/// The status with that exact name, or `std::nullopt`.
CLAUDEMESH_API std::optional<OutboxStatus> parse_outbox_status(std::string_view name) noexcept;

/// Tuning. The defaults are the reference daemon's constants.
struct OutboxConfig {
  int max_attempts = 25;                                  ///< the attempt that reaches this goes `dead`
  std::chrono::milliseconds backoff_base{500};            ///< first retry delay; doubles per attempt
  std::chrono::milliseconds backoff_cap{30'000};          ///< longest retry delay
  double backoff_jitter = 0.25;                           ///< each delay is scaled by 1 ± this, at random
  std::chrono::milliseconds claim_lease{30'000};          ///< an `inflight` row older than this is claimable again
  std::chrono::milliseconds max_age{std::chrono::hours(168)};  ///< a row not sent by then goes `dead`
  bool fsync = true;                                      ///< `synchronous=FULL` (true) or `NORMAL`
  Clock clock;                                            ///< empty: system clock
  RandomSource rng;                                       ///< empty: system CSPRNG (ids, jitter)
};

/// A message to accept: already resolved to a wire target and sealed for its recipients.
struct OutboxSend {
  std::string client_message_id;      ///< the idempotency key; empty: the outbox mints a ULID
  std::string request_fingerprint;    ///< 64 lowercase hex, from `request_fingerprint()` over the plaintext
  std::string mesh;                   ///< which mesh (and so which broker connection) sends it
  std::string target_spec;            ///< wire target: 64-hex key, `*`, `@group`, `#topic`
  std::string priority = "next";      ///< "now", "next" or "low"
  std::string reply_to_id;            ///< empty when absent
  std::string sender_session_pubkey;  ///< set: must leave on that session's connection (sealed with its key)
  std::string sealed;                 ///< the send frame's body members as a JSON object text, e.g.
                                      ///< `{"nonce":..,"ciphertext":..}` or `{"bodies":[..]}`; opaque here
  std::int64_t payload_bytes = 0;     ///< plaintext size, for listings
};

/// One row, as stored.
struct OutboxRow {
  std::string id;                     ///< row id (ULID)
  std::string client_message_id;
  std::string request_fingerprint;    ///< 64 lowercase hex
  std::string mesh;
  std::string target_spec;
  std::string priority;
  std::string reply_to_id;
  std::string sender_session_pubkey;
  std::string sealed;
  std::int64_t payload_bytes = 0;
  OutboxStatus status = OutboxStatus::pending;
  int attempts = 0;                   ///< claims so far
  std::int64_t enqueued_at_ms = 0;
  std::int64_t next_attempt_at_ms = 0;  ///< pending: not before; inflight: lease end
  std::optional<std::int64_t> delivered_at_ms;  ///< done: when the broker acknowledged
  std::string broker_message_id;      ///< done: the broker's id
  std::string last_error;             ///< wire code of the last failure, then ": " and its message
  std::optional<std::int64_t> aborted_at_ms;
  std::string aborted_by;             ///< who requeued it ("operator", ...)
  std::string superseded_by;          ///< the row id that replaced it

  /// The first 8 bytes of the fingerprint as 16 hex characters (reported with conflicts).
  [[nodiscard]] std::string fingerprint_prefix() const { return request_fingerprint.substr(0, 16); }
};

/// What `accept()` decided. The HTTP status and conflict strings are the reference's §4.5.1 table:
///
/// | existing row | fingerprint | outcome | http | conflict |
/// |---|---|---|---|---|
/// | none | — | queued (inserted) | 202 | |
/// | pending | same | queued | 202 | |
/// | pending | different | conflict | 409 | `outbox_pending_fingerprint_mismatch` |
/// | inflight | same | inflight | 202 | |
/// | inflight | different | conflict | 409 | `outbox_inflight_fingerprint_mismatch` |
/// | done | same | duplicate | 200 | |
/// | done | different | conflict | 409 | `outbox_done_fingerprint_mismatch` |
/// | dead | same | conflict | 409 | `outbox_dead_fingerprint_match` |
/// | dead | different | conflict | 409 | `outbox_dead_fingerprint_mismatch` |
/// | aborted | same | conflict | 409 | `outbox_aborted_fingerprint_match` |
/// | aborted | different | conflict | 409 | `outbox_aborted_fingerprint_mismatch` |
///
/// Fingerprints are compared in constant time. Nothing is written except the insert in the first row.
struct OutboxAccept {
  enum class Outcome { queued, inflight, duplicate, conflict };
  Outcome outcome = Outcome::queued;
  int http_status = 202;
  bool inserted = false;   ///< a new row was written
  std::string conflict;    ///< the conflict string for 409, else empty
  OutboxRow row;           ///< the new row, or the existing one the decision was made on
};

/// What `requeue()` did.
struct OutboxRequeue {
  std::string aborted_row_id;
  std::string new_row_id;
  std::string new_client_message_id;
};

/// Row counts per mesh and status (for health and metrics).
struct OutboxDepth {
  std::string mesh;
  OutboxStatus status = OutboxStatus::pending;
  std::int64_t rows = 0;
  std::int64_t oldest_enqueued_at_ms = 0;
};

class CLAUDEMESH_API Outbox {
 public:
  /// Open (creating if needed, mode 0600) and migrate the database at `path`, then check its integrity and
  /// move `inflight` rows back to `pending` (see `recovered_on_open()`). Opening is for the one process that
  /// drains the outbox: rows another live `Outbox` has in flight are reset too (the broker's dedupe absorbs
  /// the resend), so other programs should go through that process (the daemon's IPC) instead.
  /// @returns `Errc::io_error` if the file cannot be opened or created, is not an outbox database (another
  ///   application's, or SQLite at all) or has a newer schema than this library knows; `Errc::malformed` if
  ///   it fails the integrity check (the file is left as it is).
  static Result<Outbox> open(const std::filesystem::path& path, OutboxConfig config = {});

  Outbox(Outbox&&) noexcept;
  Outbox& operator=(Outbox&&) noexcept;
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;
  ~Outbox();

  /// Accept a message under the idempotency table above, in one `BEGIN IMMEDIATE` transaction.
  /// @returns the decision (a 409 conflict is a successful decision, not an error), or
  ///   `Errc::invalid_value` (fingerprint not 64 hex, bad client message id, empty mesh or target, bad
  ///   priority, `sealed` not a JSON object) without consuming the id, or `Errc::io_error`.
  Result<OutboxAccept> accept(const OutboxSend& send);

  /// Accept several messages in one transaction (one sync to disk for all: what a busy daemon does with the
  /// sends that arrived together). Each is decided in order exactly as `accept()` would decide it — a later
  /// one sees the rows the earlier ones inserted; a failed transaction fails every valid one and writes
  /// nothing.
  std::vector<Result<OutboxAccept>> accept_all(const std::vector<OutboxSend>& sends);

  /// Claim up to `limit` rows of `mesh` that are due (pending with `next_attempt_at <= now`, or inflight
  /// with an expired lease), oldest first: each becomes `inflight`, `attempts + 1`, leased for
  /// `claim_lease`. Rows older than `max_age` are marked `dead` (`expired`) instead of claimed.
  /// Each sending connection has its own lane: `sender_session` empty claims the rows the member's own
  /// connection sends; a session key claims only the rows that must leave on that session's connection.
  Result<std::vector<OutboxRow>> claim(std::string_view mesh, std::size_t limit = 32,
                                       std::string_view sender_session = {});

  /// The broker accepted row `id` as `broker_message_id`: `inflight` → `done`.
  /// @returns `Errc::not_found` if there is no inflight row with that id (e.g. it was requeued meanwhile).
  Result<void> mark_sent(std::string_view id, std::string_view broker_message_id);

  /// Sending row `id` failed with `error`. A permanent failure, or the `max_attempts`-th attempt, makes it
  /// `dead`; otherwise it goes back to `pending` with a jittered exponential backoff.
  /// @returns the row's new status, or `Errc::not_found` if no inflight row has that id.
  Result<OutboxStatus> mark_failed(std::string_view id, const Error& error, bool permanent);

  /// Abort row `id_or_client_message_id` (pending or dead; inflight only with `force`) and insert a new
  /// pending row with the same fingerprint, routing and sealed body under `new_client_message_id` (empty:
  /// a fresh ULID). `by` is recorded as `aborted_by`.
  /// @returns `Errc::not_found`, `Errc::forbidden` (done or aborted; inflight without force),
  ///   `Errc::idempotency_key_reused` (the new id already has a row), `Errc::invalid_value`.
  Result<OutboxRequeue> requeue(std::string_view id_or_client_message_id, std::string_view new_client_message_id,
                                std::string_view by = "operator", bool force = false);

  /// The row with this row id or client message id, or `std::nullopt`.
  Result<std::optional<OutboxRow>> find(std::string_view id_or_client_message_id);

  /// Rows, newest first, optionally of one status; `limit` is clamped to 1..500.
  Result<std::vector<OutboxRow>> list(std::optional<OutboxStatus> status, std::size_t limit = 50);

  /// Row counts grouped by mesh and status.
  Result<std::vector<OutboxDepth>> depths();

  /// When `mesh` next has a due row (ms since epoch), or `std::nullopt` if it has none pending or inflight.
  Result<std::optional<std::int64_t>> next_due_ms(std::string_view mesh, std::string_view sender_session = {});

  /// How many `inflight` rows `open()` moved back to `pending`.
  [[nodiscard]] std::size_t recovered_on_open() const noexcept;

 private:
  struct Impl;
  explicit Outbox(std::unique_ptr<Impl> impl);
  OutboxAccept decide(const OutboxSend& send);
  std::unique_ptr<Impl> impl_;
};

}  // namespace claudemesh
