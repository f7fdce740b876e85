// SPDX-License-Identifier: MIT
/// @file peer.hpp
/// `Peer`: a whole mesh participant in one object — what a worker program embeds instead of talking to a
/// daemon. It composes the public pieces: an `Outbox` and an `Inbox` (SQLite files in `data_dir`), a
/// `BrokerClient` as the transport, and the member `Identity` that seals and opens bodies.
///
/// * `send()` resolves the target (a key, a key prefix or a display name against the peer list; `*` or
///   `@group` for everyone or a group), seals the body for each recipient, computes the request
///   fingerprint, and returns once the outbox holds the message durably. A drain loop then hands it to
///   the broker, retrying with backoff until the broker acknowledges it; a crash in between re-sends it
///   on the next start and the broker deduplicates it.
/// * Received messages are opened, stored in the inbox, then acknowledged to the broker (duplicates too),
///   and handed to `on_message` once — only when newly stored.
///
/// @code
/// asio::io_context io;
/// auto peer = claudemesh::Peer::open(io.get_executor(), std::move(identity),
///                                    {.data_dir = dir, .mesh_id = mesh, .member_id = member, .broker_url = url});
/// (*peer)->on_message([](const claudemesh::InboxMessage& m) { std::cout << m.sender_name << ": " << m.body; });
/// asio::co_spawn(io, (*peer)->run(), asio::detached);
/// // later, in a coroutine:
/// auto sent = co_await (*peer)->send("bob", "build 42 is green");
/// @endcode
///
/// Hosts without an event loop can use `PeerRunner`, which runs a `Peer` on a background thread it owns.
///
/// @par Thread safety
/// `Peer`: everything on the executor given to `open()`. `PeerRunner`: every member function may be called
/// from any thread. Distinct objects: safe. Shared objects: unsafe (Peer), safe (PeerRunner).
#pragma once

#include <claudemesh/broker_client.hpp>
#include <claudemesh/export.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/inbox.hpp>
#include <claudemesh/outbox.hpp>
#include <claudemesh/peer_transport.hpp>
#include <claudemesh/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

struct PeerConfig {
  std::filesystem::path data_dir;  ///< holds outbox.db and inbox.db (created 0700)
  std::string mesh_id;
  std::string member_id;
  std::string broker_url;          ///< `ws://…/ws` or `wss://…/ws`
  std::string display_name;
  std::string ca_file;             ///< `wss://` to a self-hosted broker: trust this CA file
  OutboxConfig outbox{};
  InboxConfig inbox{};
  BrokerClientConfig client{};     ///< timeouts and backoff; url, mesh, member and name come from above
  std::chrono::milliseconds member_cache{30'000};  ///< how long the mesh's member list is reused for `*`/`@group`
  std::function<void(std::string_view)> log;       ///< JSON lines; empty: silent
};

/// How to send.
struct SendOptions {
  std::string priority = "next";   ///< "now", "next" or "low"
  std::string reply_to_id;         ///< the message this one answers
  std::string client_message_id;   ///< idempotency key; empty: a fresh ULID
};

/// What `send()` did: the outbox's decision (see `OutboxAccept`) and the resolved target.
struct SendResult {
  OutboxAccept accepted;
  std::string target_spec;   ///< the wire target the text resolved to
  std::size_t sealed_for = 0;  ///< recipients the body was sealed for
};

class CLAUDEMESH_API Peer {
 public:
  /// Open the stores under `config.data_dir` and prepare the broker connection (nothing connects until
  /// `run()`). @returns the stores' errors, or `Errc::invalid_value` for a missing mesh, member or URL.
  static Result<std::unique_ptr<Peer>> open(const asio::any_io_executor& executor, Identity member, PeerConfig config);

  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer();

  /// Connect, drain the outbox, receive — until `stop()`. Spawn it once.
  asio::awaitable<void> run();
  /// Stop the connection and the drain; `run()` returns soon after.
  void stop();

  /// Resolve, seal and durably queue a message (see the file comment).
  /// @returns the result — a 409 idempotency conflict is a result, not an error — or `Errc::invalid_target`,
  ///   `Errc::unknown_target`/`ambiguous_target` (names and prefixes need the broker to be reachable),
  ///   `Errc::invalid_value`, `Errc::unavailable` (the member list for `*`/`@group` could not be fetched).
  asio::awaitable<Result<SendResult>> send(std::string target, std::string body, SendOptions options);
  /// `send()` with the default options.
  asio::awaitable<Result<SendResult>> send(std::string target, std::string body);

  /// Called once per newly stored message, after it is durable and before it is acknowledged.
  void on_message(std::function<void(const InboxMessage&)> handler);
  /// Called for system events (`peer_joined`, `peer_left`, ...): the event name and its data as JSON text.
  void on_event(std::function<void(std::string_view event, std::string_view data_json)> handler);

  /// The peers online in the mesh. @returns `Errc::unavailable` while disconnected.
  asio::awaitable<Result<std::vector<PeerInfo>>> peers();

  [[nodiscard]] Outbox& outbox() noexcept;
  [[nodiscard]] Inbox& inbox() noexcept;
  [[nodiscard]] BrokerClient& client() noexcept;
  [[nodiscard]] const Identity& identity() const noexcept;

  struct Impl;

 private:
  explicit Peer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

/// A `Peer` on a background thread, for programs without an event loop (a cron job, a plain worker). The
/// runner owns the thread and its `io_context`; blocking calls wait for the peer's answer.
class CLAUDEMESH_API PeerRunner {
 public:
  /// Open the peer and start its thread. @returns `Peer::open()`'s errors.
  static Result<std::unique_ptr<PeerRunner>> start(Identity member, PeerConfig config);

  PeerRunner(const PeerRunner&) = delete;
  PeerRunner& operator=(const PeerRunner&) = delete;
  /// Stops the peer and joins the thread.
  ~PeerRunner();

  /// `Peer::send()`, waiting for the outbox's answer.
  Result<SendResult> send(std::string target, std::string body, SendOptions options = {});
  /// `Peer::peers()`, waiting for the answer.
  Result<std::vector<PeerInfo>> peers();
  /// Wait until the broker connection is open, at most `timeout`. @returns whether it is.
  bool wait_connected(std::chrono::milliseconds timeout);
  /// Set the handlers; they run on the runner's thread.
  void on_message(std::function<void(const InboxMessage&)> handler);
  void on_event(std::function<void(std::string_view event, std::string_view data_json)> handler);

  struct Impl;

 private:
  explicit PeerRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace claudemesh
