// SPDX-License-Identifier: MIT
// BrokerStore: everything the broker keeps durably — meshes, members, invites, sessions, messages and
// their per-recipient delivery rows, and the dedupe index.
//
// The broker calls a store from one worker thread only (see broker/store_worker.hpp), never from the network
// loop. Implementations need not be thread-safe; they must make every operation atomic (all of its writes
// or none) and durable once `commit_batch()` returns (or, outside a batch, once the operation returns).
//
// Group commit: the worker runs many operations between `begin_batch()` and `commit_batch()`. An operation
// that fails inside a batch undoes only its own writes (a savepoint) and the batch goes on. If the commit
// itself fails, every operation of the batch is lost and the worker reports each as failed.
//
// Times are Unix milliseconds passed in by the caller (`now_ms`), so implementations never read a clock
// and tests are deterministic. Keys are 64 lowercase hex. Ids are ULIDs minted by the caller.
//
// Every implementation must pass tests/unit/store/broker_store_conformance.hpp. SQLite is the embedded
// default; a PostgreSQL implementation shared by several broker processes is meant to follow, so nothing
// here assumes the store is private to one process: claims are leases with owners, not in-memory state.
#pragma once

#include <claudemesh/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh::store {

using TimeMs = std::int64_t;

struct MeshRecord {
  std::string id;            ///< ULID
  std::string name;          ///< human label, 1–64 chars (not unique)
  std::string owner_pubkey;  ///< the creator's member key
  TimeMs created_at_ms = 0;
};

/// Member roles: "owner" (one per mesh), "admin", "member".
struct MemberRecord {
  std::string id;  ///< ULID
  std::string mesh_id;
  std::string pubkey;  ///< ed25519 member key; unique within a mesh
  std::string display_name;
  std::string role = "member";
  std::vector<std::string> grants;  ///< extra capabilities, e.g. "invite"
  std::vector<std::string> groups;  ///< group paths without '@', as last announced (for offline group delivery)
  TimeMs joined_at_ms = 0;
  std::optional<TimeMs> last_seen_at_ms;  ///< last hello; absent until the first one
  std::optional<TimeMs> revoked_at_ms;    ///< permanent removal
  std::optional<TimeMs> banned_at_ms;     ///< refused until unbanned
  std::string ban_reason;
};

struct InviteRecord {
  std::string id;  ///< ULID; part of the signed invite
  std::string mesh_id;
  std::string role = "member";
  std::string inviter_pubkey;  ///< signs the v2 invite string
  std::int64_t expires_at_s = 0;  ///< Unix seconds, as signed
  std::string signature;
  std::uint32_t max_uses = 1;
  std::uint32_t uses = 0;
  TimeMs created_at_ms = 0;
  std::optional<TimeMs> revoked_at_ms;
};

/// A session key seen at a `session_hello`, remembered so DMs to it can fall back to its member.
struct SessionRecord {
  std::string mesh_id;
  std::string session_pubkey;
  std::string member_id;
  TimeMs last_seen_at_ms = 0;
};

struct MessageRecord {
  std::string id;  ///< ULID: the broker message id
  std::string mesh_id;
  std::string sender_member_id;
  std::string sender_pubkey;         ///< session key if sent by a session, else the member key
  std::string sender_member_pubkey;  ///< always the member key
  std::string target_spec;           ///< as sent
  std::string priority = "next";     ///< "now" | "next" | "low"
  std::optional<std::string> client_message_id;
  std::optional<std::string> request_fingerprint;  ///< 64 hex
  std::optional<std::string> reply_to_id;
  TimeMs created_at_ms = 0;
  TimeMs expires_at_ms = 0;
};

/// One recipient's copy of a message, as accepted.
struct DeliveryBody {
  std::string recipient_key;        ///< member or session key the row is addressed to
  std::string recipient_member_id;  ///< the member owning that key
  std::string nonce;                ///< base64, opaque to the broker
  std::string ciphertext;           ///< base64, opaque to the broker
};

struct AcceptResult {
  std::string message_id;  ///< the new id, or the original one for a duplicate
  bool duplicate = false;  ///< same client_message_id and same fingerprint: nothing was written
  std::size_t rows = 0;    ///< delivery rows written (0 for a duplicate)
};

/// A stored (mesh, client_message_id) → message mapping.
struct DedupeRecord {
  std::string message_id;
  std::optional<std::string> request_fingerprint;
  TimeMs first_seen_at_ms = 0;
};

/// A delivery row handed to a connection under a lease.
struct DeliveryRecord {
  std::int64_t seq = 0;  ///< creation order (per store, hence per recipient)
  MessageRecord message;
  DeliveryBody body;
  std::uint32_t attempts = 0;  ///< pushes so far, this one included
  TimeMs lease_until_ms = 0;
};

struct ClaimRequest {
  std::string mesh_id;
  std::vector<std::string> recipient_keys;  ///< keys the claiming connection receives for
  std::string claimer;                      ///< presence id; owner of the lease
  TimeMs now_ms = 0;
  TimeMs lease_ms = 30'000;
  bool all_priorities = true;  ///< false: only "now" rows, plus rows held longer than `max_hold_ms`
  TimeMs max_hold_ms = 600'000;
  std::size_t limit = 256;
};

/// A recipient key that has work: undelivered rows whose lease expired (or that were never claimed).
struct RecipientRef {
  std::string mesh_id;
  std::string recipient_key;
  bool operator==(const RecipientRef&) const = default;
};

struct PurgeResult {
  std::size_t expired_deliveries = 0;  ///< undelivered rows past their message's expiry, deleted
  std::size_t delivered_pruned = 0;    ///< delivered rows older than the retention, deleted
  std::size_t messages_pruned = 0;     ///< messages with no rows left, deleted
  std::size_t dedupe_pruned = 0;       ///< dedupe entries older than the retention, deleted
};

struct QueueStats {
  std::uint64_t undelivered = 0;  ///< rows not yet acknowledged
  std::uint64_t leased = 0;       ///< of those, currently under a lease
  std::uint64_t messages = 0;
};

/// One recipient's state for `message_status`.
struct RecipientStatus {
  std::string recipient_key;
  bool delivered = false;
  std::optional<TimeMs> delivered_at_ms;
  std::uint32_t attempts = 0;
};

class BrokerStore {
 public:
  virtual ~BrokerStore() = default;

  // ---- batches (group commit) ----
  virtual Result<void> begin_batch() = 0;
  /// Makes every operation since `begin_batch()` durable. On failure the whole batch is rolled back.
  virtual Result<void> commit_batch() = 0;
  virtual void rollback_batch() noexcept = 0;

  // ---- meshes and members ----
  /// Creates the mesh and its owner member. `already_exists` if the mesh id exists.
  virtual Result<void> create_mesh(const MeshRecord& mesh, const MemberRecord& owner) = 0;
  virtual Result<std::optional<MeshRecord>> find_mesh(std::string_view mesh_id) = 0;
  /// Every member, revoked and banned ones included, in join order.
  virtual Result<std::vector<MemberRecord>> list_members(std::string_view mesh_id) = 0;
  virtual Result<std::optional<MemberRecord>> find_member(std::string_view mesh_id, std::string_view pubkey) = 0;
  virtual Result<std::optional<MemberRecord>> find_member_by_id(std::string_view mesh_id,
                                                                std::string_view member_id) = 0;
  /// Replaces the mutable fields (display name, role, grants, groups, last seen, revoked, banned, reason)
  /// of the member with this id. `not_found` if there is none.
  virtual Result<void> update_member(const MemberRecord& member) = 0;

  // ---- invites ----
  virtual Result<void> create_invite(const InviteRecord& invite) = 0;
  virtual Result<std::optional<InviteRecord>> find_invite(std::string_view invite_id) = 0;
  /// Atomically: the invite exists (`not_found`), is not revoked (`revoked`), not expired at `now_ms`
  /// (`expired`), has uses left (`exhausted`), and `member.pubkey` is not yet in the mesh (`already_exists`);
  /// then consumes one use and inserts `member` (its mesh id and role are taken from the invite).
  /// @returns the inserted member.
  virtual Result<MemberRecord> claim_invite(std::string_view invite_id, MemberRecord member, TimeMs now_ms) = 0;
  /// `not_found` if there is no such invite.
  virtual Result<void> revoke_invite(std::string_view invite_id, TimeMs now_ms) = 0;

  // ---- sessions ----
  /// Insert or refresh (last seen, member) a session key.
  virtual Result<void> record_session(const SessionRecord& session) = 0;
  virtual Result<std::optional<SessionRecord>> find_session(std::string_view mesh_id,
                                                            std::string_view session_pubkey) = 0;

  // ---- messages and delivery ----
  virtual Result<std::optional<DedupeRecord>> find_dedupe(std::string_view mesh_id,
                                                          std::string_view client_message_id) = 0;
  /// Accepts a message: when it has a client_message_id already stored for the mesh, writes nothing and
  /// returns the original id with `duplicate` (same fingerprint, both absent counting as the same) or fails
  /// with `idempotency_key_reused` (different fingerprint). Otherwise writes the dedupe entry, the message
  /// and one delivery row per body, all or nothing. `bodies` may be empty (a post nobody receives).
  virtual Result<AcceptResult> accept_message(const MessageRecord& message, std::span<const DeliveryBody> bodies) = 0;
  /// Leases up to `limit` undelivered, unexpired rows addressed to any of the keys, whose lease is absent or
  /// over, in creation order: sets the lease owner, `lease_until = now + lease_ms`, and counts an attempt.
  virtual Result<std::vector<DeliveryRecord>> claim_deliveries(const ClaimRequest& request) = 0;
  /// Marks delivered the rows of `message_id` addressed to any of `recipient_keys` (only those: a connection
  /// acknowledges its own copies). Idempotent. @returns rows newly marked.
  virtual Result<std::size_t> mark_delivered(std::string_view mesh_id, std::string_view message_id,
                                             std::span<const std::string> recipient_keys, TimeMs now_ms) = 0;
  /// Ends the leases held by `claimer` on undelivered rows (its connection closed), so they can be claimed
  /// again at once. @returns rows released.
  virtual Result<std::size_t> release_claims(std::string_view claimer) = 0;
  /// Re-addresses the undelivered rows of `mesh_id` addressed to `from_key` (a session that ended) to
  /// `to_key` (its member), ending their leases and keeping their order. @returns rows moved.
  virtual Result<std::size_t> readdress_undelivered(std::string_view mesh_id, std::string_view from_key,
                                                    std::string_view to_key) = 0;
  /// Recipient keys with claimable rows (never claimed, or lease over) among unexpired undelivered rows,
  /// at most `limit`, for the periodic re-drain.
  virtual Result<std::vector<RecipientRef>> recipients_with_work(TimeMs now_ms, std::size_t limit) = 0;
  /// Deletes undelivered rows whose message expired, delivered rows and dedupe entries older than
  /// `now_ms - retention_ms`, and messages left without rows once they have expired or are older than
  /// `now_ms - retention_ms` (every message whose rows were purged is; a message accepted with no bodies
  /// is thus kept until then, not dropped by the next purge).
  virtual Result<PurgeResult> purge(TimeMs now_ms, TimeMs retention_ms) = 0;
  virtual Result<QueueStats> queue_stats(TimeMs now_ms) = 0;
  /// The message and each recipient's state; empty if there is no such message in the mesh.
  virtual Result<std::optional<std::pair<MessageRecord, std::vector<RecipientStatus>>>> message_status(
      std::string_view mesh_id, std::string_view message_id) = 0;
};

struct SqliteOptions {
  /// `synchronous=FULL` (every commit reaches the disk) when true; NORMAL (WAL: a crash may lose the last
  /// commits, never corrupt) when false. The broker acks only what is durable, so the default is FULL.
  bool full_sync = true;
};

/// Opens (creating if needed, mode 0600, parent directory 0700) and migrates the SQLite store at `path`;
/// ":memory:" gives a private in-memory store for tests.
Result<std::unique_ptr<BrokerStore>> open_sqlite_broker_store(const std::string& path, SqliteOptions options = {});

}  // namespace claudemesh::store
