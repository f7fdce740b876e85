// SPDX-License-Identifier: MIT
// The daemon's state, shared by its lifecycle (daemon.cpp) and its IPC routes (ipc_api.cpp).
//
//   IPC request ──> IpcApi route ──> MeshLink (one per joined mesh) ──> Outbox ──drain──> broker
//   broker push ──> MeshLink::receive ──> Inbox ──> EventBus ──> /v1/events streams (filtered per session)
//
// Everything runs on one executor; SQLite calls are short and local, and nothing waits on the network
// while holding a store.
#pragma once

#include <claudemesh/daemon.hpp>

#include "daemon/event_bus.hpp"
#include "daemon/local_state.hpp"
#include "daemon/session_registry.hpp"
#include "peer/mesh_link.hpp"
#include "transport/http/server.hpp"

#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace claudemesh::daemon {

using Json = nlohmann::json;

/// One joined mesh: its link and what the daemon remembers about it.
struct MeshState {
  std::string slug;
  std::string mesh_id;
  std::string member_pubkey;
  std::shared_ptr<peer::MeshLink> link;
  TransportState state = TransportState::idle;
  std::optional<std::string> wanted_status;   // re-applied after every reconnect
  std::optional<std::string> wanted_summary;
  std::optional<bool> wanted_visible;
};

/// A launched session's own broker connection (registered with `presence`).
struct SessionLinkState {
  std::string token;       // the registry entry it belongs to
  std::string mesh_slug;
  std::shared_ptr<peer::MeshLink> link;
};

/// A session key the daemon can still open copies with: kept after the session is gone (the broker falls
/// back to the member for a gone session) until its attestation expires.
struct SessionKey {
  Identity key;
  std::int64_t expires_at_ms = 0;
};

/// Counters for /v1/metrics.
struct DaemonCounters {
  std::uint64_t ipc_requests = 0;
  std::uint64_t ipc_refused = 0;          // 401/403 by the access rules
  std::uint64_t sends_accepted = 0;       // new outbox rows
  std::uint64_t sends_duplicate = 0;
  std::uint64_t sends_conflict = 0;
  std::uint64_t messages_received = 0;    // new inbox rows
  std::uint64_t events_published = 0;
  std::uint64_t sessions_reaped = 0;
  std::uint64_t session_links_started = 0;
};

}  // namespace claudemesh::daemon

namespace claudemesh {

struct Daemon::Impl : std::enable_shared_from_this<Daemon::Impl> {
  Impl(asio::any_io_executor executor, DaemonConfig config, daemon::SingletonLock lock, std::string token,
       Outbox outbox, Inbox inbox);

  asio::any_io_executor executor;
  DaemonConfig config;
  DaemonFiles files;
  daemon::SingletonLock lock;
  std::string token;
  Outbox outbox;
  Inbox inbox;
  std::vector<daemon::MeshState> meshes;
  daemon::EventBus bus;
  daemon::SessionRegistry sessions;
  std::map<std::string, daemon::SessionLinkState, std::less<>> session_links;  // by session pubkey
  std::map<std::string, daemon::SessionKey, std::less<>> session_keys;         // by session pubkey
  daemon::DaemonCounters counters;
  std::optional<transport::http::Router> router;  // built by open(), handed to the server by run()
  std::unique_ptr<transport::http::Server> server;
  std::optional<Result<void>> started;
  std::uint16_t bound_tcp_port = 0;
  std::int64_t started_at_ms = 0;
  bool stopping = false;
  asio::steady_timer stopped;  // run() waits on it; stop() cancels it
  asio::steady_timer reap_timer;
  asio::steady_timer prune_timer;

  /// The mesh with this slug or mesh id, or nullptr.
  daemon::MeshState* find_mesh(std::string_view slug_or_id);
  /// The slug of `mesh_id` (the id itself when unknown).
  [[nodiscard]] std::string slug_of(std::string_view mesh_id) const;
  void log(std::string_view event, daemon::Json fields) const;
  void publish(std::string kind, std::string mesh, daemon::Json data, std::string recipient_pubkey = {},
               std::string recipient_kind = {});
  void attach_handlers(daemon::MeshState& mesh);
  /// Start the broker connection of a registered session (`info.session_pubkey` set) in `mesh`.
  Result<void> start_session_link(daemon::MeshState& mesh, const daemon::SessionInfo& info, Identity session,
                                  SessionAttestation attestation);
  /// Close the session's connection, if it has one (its key stays in `session_keys`).
  void stop_session_link(std::string_view session_pubkey);
  /// The session's own link, or nullptr when it registered without presence or is gone.
  [[nodiscard]] std::shared_ptr<peer::MeshLink> session_link(std::string_view session_pubkey) const;
  void apply_profile(daemon::MeshState& mesh);
  asio::awaitable<void> reap_loop();
  asio::awaitable<void> prune_loop();
};

}  // namespace claudemesh

namespace claudemesh::daemon {

/// The IPC's routes, over `impl` (which outlives the router).
transport::http::Router make_ipc_router(Daemon::Impl& impl);

/// JSON shapes shared by routes and events.
Json message_json(const InboxMessage& message, const std::string& mesh_slug);
Json outbox_row_json(const OutboxRow& row, const std::string& mesh_slug);

}  // namespace claudemesh::daemon
