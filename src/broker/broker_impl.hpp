// SPDX-License-Identifier: MIT
// The broker's insides, shared by broker.cpp (WebSocket protocol, presence, delivery) and http_api.cpp
// (meshes, members, invites). Everything here runs on the broker's executor, one handler at a time, so the
// in-memory state needs no locks; storage goes through the StoreWorker thread.
#pragma once

#include <claudemesh/broker.hpp>
#include <claudemesh/ids.hpp>

#include "broker/store_worker.hpp"
#include "broker/wire.hpp"
#include "transport/http/server.hpp"
#include "transport/ws/websocket.hpp"

#include <asio/steady_timer.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace claudemesh {

namespace broker {

enum class PeerRole { control_plane, session };
std::string_view to_string(PeerRole role) noexcept;

struct GroupEntry {
  std::string name;
  std::string role;  ///< may be empty
};

/// One peer's presence: a live connection, or one in its grace period after the connection closed.
struct Presence {
  std::string id;  ///< ULID, stable across silent reattaches
  std::string mesh_id;
  std::string member_id;
  std::string member_pubkey;
  std::string session_pubkey;  ///< empty for a control-plane hello without one
  std::string session_id;
  std::string display_name;
  PeerRole role = PeerRole::control_plane;
  std::string status = "idle";
  std::string summary;
  std::vector<GroupEntry> groups;
  bool visible = true;
  std::string cwd, hostname, peer_type, channel, model;
  std::string work_role;  // the hello's free-text "role" (e.g. "reviewer"), not the peerRole
  std::optional<std::int64_t> pid;
  std::int64_t connected_at_ms = 0;

  std::shared_ptr<transport::ws::WebSocket> socket;  ///< null while in grace
  bool evicted = false;
  std::unique_ptr<asio::steady_timer> grace_timer;

  std::size_t in_flight = 0;  ///< sends and client_acks of this connection waiting for the store

  // delivery pump
  bool draining = false;
  bool drain_again = false;
  bool drain_all_once = false;

  [[nodiscard]] bool online() const noexcept { return socket != nullptr; }
  /// The keys whose copies this connection receives: its session key and/or its member key.
  [[nodiscard]] std::vector<std::string> recipient_keys() const;
  /// The key peers address it by: the session key if any, else the member key.
  [[nodiscard]] const std::string& pubkey() const noexcept {
    return session_pubkey.empty() ? member_pubkey : session_pubkey;
  }
};

struct MeshState {
  store::MeshRecord mesh;
  std::unordered_map<std::string, store::MemberRecord> members;  ///< by pubkey
  std::set<std::shared_ptr<Presence>> presences;
  std::size_t open_connections = 0;
};

struct TokenBucket {
  double tokens = 0;
  std::int64_t updated_ms = 0;
};

}  // namespace broker

class Broker::Impl {
 public:
  Impl(asio::any_io_executor executor, BrokerConfig config, std::unique_ptr<store::BrokerStore> store);
  ~Impl();

  Result<void> start();
  void stop(std::function<void()> done);
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] BrokerStats stats() const;
  [[nodiscard]] std::string metrics_text() const;

  // ---- shared by the HTTP API ----
  using Json = broker::wire::Json;
  void log(std::string_view event, Json fields = Json::object()) const;
  [[nodiscard]] std::int64_t now_ms() const;
  asio::awaitable<Result<broker::MeshState*>> load_mesh(std::string mesh_id);
  /// Close the member's connections (code/reason), end their presences now and tell the others.
  void disconnect_member(broker::MeshState& mesh, const std::string& member_pubkey, std::uint16_t code,
                         std::string_view reason, bool sessions_only, Json* kicked, Json* skipped);
  [[nodiscard]] Json member_json(const broker::MeshState& mesh, const store::MemberRecord& member) const;
  broker::StoreWorker& worker() { return *worker_; }
  IdGenerator& ids() { return ids_; }
  const BrokerConfig& config() const { return config_; }
  void add_http_routes(transport::http::Router& router);  // http_api.cpp
  [[nodiscard]] std::string public_base_url() const;
  std::deque<std::pair<std::int64_t, std::string>> seen_signatures_;  // (expiry, signature), for replays
  std::set<std::string> seen_signature_set_;

 private:
  using WebSocketPtr = std::shared_ptr<transport::ws::WebSocket>;
  using PresencePtr = std::shared_ptr<broker::Presence>;

  asio::awaitable<void> serve_websocket(transport::http::Request request, std::unique_ptr<transport::Stream> stream,
                                        std::string leftover);
  asio::awaitable<PresencePtr> handle_hello(const WebSocketPtr& socket, const Json& frame, bool session);
  asio::awaitable<void> handle_frame(PresencePtr presence, Json frame);
  asio::awaitable<void> handle_send(PresencePtr presence, Json frame);
  void handle_close(const PresencePtr& presence, const WebSocketPtr& socket);
  void evict(const PresencePtr& presence, bool announce);
  void refuse_hello(const WebSocketPtr& socket, const Error& error, const Json& frame);

  void broadcast_event(const broker::MeshState& mesh, const broker::Presence& about, std::string_view event,
                       const Json& data, bool include_same_member);
  [[nodiscard]] Json peer_json(const broker::Presence& presence) const;

  void request_drain(const PresencePtr& presence, bool all_priorities = false);
  asio::awaitable<void> drain(PresencePtr presence);
  void wake_recipients(const std::string& mesh_id, const std::vector<std::string>& keys);
  asio::awaitable<void> sweep_loop();
  bool take_token(const std::string& member_id);

  asio::any_io_executor executor_;
  BrokerConfig config_;
  std::unique_ptr<broker::StoreWorker> worker_;
  std::unique_ptr<transport::http::Server> server_;
  std::shared_ptr<transport::ws::ScratchBuffer> scratch_;
  IdGenerator ids_;
  std::uint16_t port_ = 0;
  bool stopping_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::unique_ptr<asio::steady_timer> sweep_timer_;

  std::unordered_map<std::string, std::unique_ptr<broker::MeshState>> meshes_;
  std::unordered_map<std::string, PresencePtr> presences_;
  std::set<WebSocketPtr> sockets_;
  std::unordered_map<std::string, broker::TokenBucket> buckets_;

  struct Counters {
    std::uint64_t messages_accepted = 0, duplicates = 0, pushes = 0, redeliveries = 0, acks = 0, rate_limited = 0,
                  hello_refused = 0, dedupe_conflicts = 0, send_refused = 0, events = 0;
  } counters_;
};

}  // namespace claudemesh
