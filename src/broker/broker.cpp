// SPDX-License-Identifier: MIT
// The broker: WebSocket protocol (hello, send, client_ack, presence updates), presence with a grace period,
// and the delivery pump (claim with a lease → push → delivered on client_ack; a sweep re-drains expired
// leases). docs/protocol.md §8 is the contract; the HTTP API lives in http_api.cpp.
#include "broker/broker_impl.hpp"

#include <claudemesh/signatures.hpp>
#include <claudemesh/system.hpp>
#include <claudemesh/target.hpp>

#include "transport/ws/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <algorithm>
#include <cstdio>

namespace claudemesh {

using broker::MeshState;
using broker::PeerRole;
using broker::Presence;
using broker::wire::Json;
namespace wire = broker::wire;
namespace ws = transport::ws;
namespace http = transport::http;

namespace broker {

std::string_view to_string(PeerRole role) noexcept {
  return role == PeerRole::session ? "session" : "control-plane";
}

std::vector<std::string> Presence::recipient_keys() const {
  if (role == PeerRole::session) return {session_pubkey};
  if (!session_pubkey.empty()) return {session_pubkey, member_pubkey};
  return {member_pubkey};
}

}  // namespace broker

namespace {

constexpr std::size_t kClaimBatch = 64;
constexpr std::size_t kMaxInFlightPerConnection = 256;  // sends and acks awaiting the store, per connection
constexpr std::size_t kPushBackpressureBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxSummary = 1024;
constexpr std::size_t kMaxBodies = 10'000;

Result<std::vector<broker::GroupEntry>> parse_groups(const Json& frame) {
  std::vector<broker::GroupEntry> groups;
  auto it = frame.find("groups");
  if (it == frame.end() || it->is_null()) return groups;
  if (!it->is_array()) return fail(Errc::wrong_type, "field groups must be an array");
  if (it->size() > 64) return fail(Errc::invalid_value, "at most 64 groups");
  for (const auto& entry : *it) {
    broker::GroupEntry group;
    if (entry.is_string()) {
      group.name = entry.get<std::string>();
    } else if (entry.is_object()) {
      auto name = wire::required_string(entry, "name", max_group_path_length);
      if (!name) return fail(name.error());
      auto role = wire::optional_string(entry, "role", 64);
      if (!role) return fail(role.error());
      group.name = std::move(*name);
      group.role = role->value_or("");
    } else {
      return fail(Errc::wrong_type, "groups entries must be objects {name, role?}");
    }
    if (!group.name.empty() && group.name.front() == '@') group.name.erase(0, 1);
    auto parsed = parse_target("@" + group.name);
    if (!parsed || parsed->kind != TargetKind::group) {
      return fail(Errc::invalid_value, "invalid group name \"" + group.name + "\"");
    }
    groups.push_back(std::move(group));
  }
  return groups;
}

Json groups_json(const std::vector<broker::GroupEntry>& groups) {
  Json out = Json::array();
  for (const auto& group : groups) {
    Json entry{{"name", group.name}};
    if (!group.role.empty()) entry["role"] = group.role;
    out.push_back(std::move(entry));
  }
  return out;
}

bool member_active(const store::MemberRecord& member) { return !member.revoked_at_ms && !member.banned_at_ms; }

Json with_req_id(Json reply, const Json& request) {
  wire::copy_request_id(request, reply);
  return reply;
}

}  // namespace

// ---------------------------------------------------------------- lifecycle

Broker::Impl::Impl(asio::any_io_executor executor, BrokerConfig config, std::unique_ptr<store::BrokerStore> store)
    : executor_(std::move(executor)),
      config_(std::move(config)),
      worker_(std::make_unique<broker::StoreWorker>(std::move(store))),
      scratch_(std::make_shared<ws::ScratchBuffer>()) {}

Broker::Impl::~Impl() {
  *alive_ = false;
  try {
    for (auto& [id, presence] : presences_) {
      if (presence->grace_timer) presence->grace_timer->cancel();
    }
    if (server_) server_->stop();
    worker_->stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; nothing is left to save
  }
}

void Broker::Impl::log(std::string_view event, Json fields) const {
  if (!config_.log) return;
  Json line{{"ts", wire::iso_time(now_ms())}, {"event", event}};
  for (auto& [key, value] : fields.items()) line[key] = value;
  config_.log(wire::dump(line));
}

std::int64_t Broker::Impl::now_ms() const { return claudemesh::now_ms(); }

Result<void> Broker::Impl::start() {
  http::Router router;
  add_http_routes(router);
  router.add_upgrade("/ws", [this](http::Request request, std::unique_ptr<transport::Stream> stream,
                                   std::string leftover) {
    return serve_websocket(std::move(request), std::move(stream), std::move(leftover));
  });
  http::ServerConfig server_config;
  server_config.max_connections = config_.max_connections;
  server_config.log = [this](std::string_view message) { log("http", {{"message", message}}); };
  server_ = std::make_unique<http::Server>(executor_, std::move(router), server_config);

  std::shared_ptr<asio::ssl::context> tls;
  if (!config_.tls_cert.empty() || !config_.tls_key.empty()) {
    auto context = transport::make_server_tls_context({config_.tls_cert, config_.tls_key});
    if (!context) return fail(context.error());
    tls = *context;
  }
  auto listener = transport::Listener::listen_tcp(executor_, config_.listen_host, config_.listen_port, tls);
  if (!listener) return fail(listener.error());
  port_ = listener->port();
  server_->serve(std::move(*listener));
  sweep_timer_ = std::make_unique<asio::steady_timer>(executor_);
  asio::co_spawn(executor_, sweep_loop(), asio::detached);
  log("listening", {{"address", config_.listen_host}, {"port", port_}, {"tls", tls != nullptr}});
  return {};
}

void Broker::Impl::stop(std::function<void()> done) {
  if (stopping_) {
    if (done) asio::post(executor_, std::move(done));
    return;
  }
  stopping_ = true;
  log("draining", {{"connections", sockets_.size()}});
  if (sweep_timer_) sweep_timer_->cancel();
  if (server_) server_->stop();  // stops accepting and closes HTTP connections
  auto open = sockets_;
  for (const auto& socket : open) socket->close(1001, "shutting down");
  for (auto& [id, presence] : presences_) {
    if (presence->grace_timer) presence->grace_timer->cancel();
  }
  // Give close handshakes a moment, then let the store finish what is queued.
  auto timer = std::make_shared<asio::steady_timer>(executor_, std::chrono::milliseconds(open.empty() ? 0 : 300));
  timer->async_wait([this, timer, done = std::move(done)](std::error_code) {
    worker_->stop();
    log("stopped");
    if (done) done();
  });
}

BrokerStats Broker::Impl::stats() const {
  BrokerStats s;
  s.connections_open = sockets_.size();
  s.presences = presences_.size();
  s.messages_accepted = counters_.messages_accepted;
  s.duplicates = counters_.duplicates;
  s.pushes = counters_.pushes;
  s.redeliveries = counters_.redeliveries;
  s.acks = counters_.acks;
  s.rate_limited = counters_.rate_limited;
  s.hello_refused = counters_.hello_refused;
  return s;
}

std::string Broker::Impl::metrics_text() const {
  const auto& store = worker_->stats();
  std::string out;
  auto metric = [&out](std::string_view name, std::string_view type, std::string_view help, double value) {
    char line[64];
    std::snprintf(line, sizeof line, "%.17g", value);
    out += "# HELP " + std::string(name) + " " + std::string(help) + "\n# TYPE " + std::string(name) + " " +
           std::string(type) + "\n" + std::string(name) + " " + line + "\n";
  };
  metric("claudemesh_broker_connections", "gauge", "Open WebSocket connections.", static_cast<double>(sockets_.size()));
  metric("claudemesh_broker_presences", "gauge", "Presences, online or in grace.",
         static_cast<double>(presences_.size()));
  metric("claudemesh_broker_messages_accepted_total", "counter", "Messages accepted durably.",
         static_cast<double>(counters_.messages_accepted));
  metric("claudemesh_broker_dedupe_hits_total", "counter", "Sends answered as duplicates.",
         static_cast<double>(counters_.duplicates));
  metric("claudemesh_broker_dedupe_conflicts_total", "counter", "Sends refused as idempotency_key_reused.",
         static_cast<double>(counters_.dedupe_conflicts));
  metric("claudemesh_broker_deliveries_total", "counter", "Copies pushed to recipients.",
         static_cast<double>(counters_.pushes));
  metric("claudemesh_broker_redeliveries_total", "counter", "Copies pushed again after a lease ended.",
         static_cast<double>(counters_.redeliveries));
  metric("claudemesh_broker_client_acks_total", "counter", "client_ack frames received.",
         static_cast<double>(counters_.acks));
  metric("claudemesh_broker_rate_limited_total", "counter", "Sends refused by the rate limiter.",
         static_cast<double>(counters_.rate_limited));
  metric("claudemesh_broker_send_refused_total", "counter", "Sends refused for any reason.",
         static_cast<double>(counters_.send_refused));
  metric("claudemesh_broker_hello_refused_total", "counter", "Hellos refused.",
         static_cast<double>(counters_.hello_refused));
  metric("claudemesh_broker_store_queue_depth", "gauge", "Storage operations waiting for the worker.",
         static_cast<double>(store.queue_depth.load()));
  metric("claudemesh_broker_store_batches_total", "counter", "Storage batches committed (group commits).",
         static_cast<double>(store.batches.load()));
  metric("claudemesh_broker_store_operations_total", "counter", "Storage operations run.",
         static_cast<double>(store.operations.load()));
  metric("claudemesh_broker_store_commit_failures_total", "counter", "Storage batches that failed to commit.",
         static_cast<double>(store.commit_failures.load()));
  metric("claudemesh_broker_store_batch_seconds_total", "counter", "Time spent running and committing batches.",
         static_cast<double>(store.batch_micros_total.load()) / 1e6);
  metric("claudemesh_broker_store_batch_seconds_max", "gauge", "Longest batch so far.",
         static_cast<double>(store.batch_micros_max.load()) / 1e6);
  return out;
}

std::string Broker::Impl::public_base_url() const {
  if (!config_.public_url.empty()) return config_.public_url;
  const bool tls = !config_.tls_cert.empty();
  std::string host = config_.listen_host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return std::string(tls ? "https://" : "http://") + host + ":" + std::to_string(port_);
}

// ---------------------------------------------------------------- meshes

asio::awaitable<Result<MeshState*>> Broker::Impl::load_mesh(std::string mesh_id) {
  if (auto it = meshes_.find(mesh_id); it != meshes_.end()) co_return it->second.get();
  auto found_op = [mesh_id](store::BrokerStore& s) { return s.find_mesh(mesh_id); };
  auto found = co_await worker_->call<std::optional<store::MeshRecord>>(std::move(found_op));
  if (!found) co_return fail(found.error());
  if (!*found) co_return fail(Errc::not_found, "no mesh " + mesh_id);
  auto members_op = [mesh_id](store::BrokerStore& s) { return s.list_members(mesh_id); };
  auto members = co_await worker_->call<std::vector<store::MemberRecord>>(std::move(members_op));
  if (!members) co_return fail(members.error());
  if (auto it = meshes_.find(mesh_id); it != meshes_.end()) co_return it->second.get();  // loaded meanwhile
  auto state = std::make_unique<MeshState>();
  state->mesh = std::move(**found);
  for (auto& member : *members) state->members.emplace(member.pubkey, std::move(member));
  auto* raw = state.get();
  meshes_.emplace(mesh_id, std::move(state));
  co_return raw;
}

Json Broker::Impl::member_json(const MeshState& mesh, const store::MemberRecord& member) const {
  bool online = false;
  for (const auto& presence : mesh.presences) {
    if (presence->member_pubkey == member.pubkey && presence->online()) online = true;
  }
  Json out{{"id", member.id},
           {"meshId", member.mesh_id},
           {"pubkey", member.pubkey},
           {"displayName", member.display_name},
           {"role", member.role},
           {"grants", member.grants},
           {"groups", member.groups},
           {"joinedAt", wire::iso_time(member.joined_at_ms)},
           {"lastSeenAt", member.last_seen_at_ms ? Json(wire::iso_time(*member.last_seen_at_ms)) : Json(nullptr)},
           {"revoked", member.revoked_at_ms.has_value()},
           {"banned", member.banned_at_ms.has_value()},
           {"online", online}};
  return out;
}

// ---------------------------------------------------------------- WebSocket

asio::awaitable<void> Broker::Impl::serve_websocket(http::Request request, std::unique_ptr<transport::Stream> stream,
                                                    std::string leftover) {
  auto alive = alive_;
  ws::WebSocketConfig ws_config;
  ws_config.limits.max_message_bytes = config_.max_frame_bytes;
  ws_config.ping_interval = config_.ping_interval;
  ws_config.stale_after = config_.stale_after;
  ws_config.scratch = scratch_;
  auto accepted = co_await ws::accept_websocket(std::move(request.message), std::move(stream), std::move(leftover),
                                                std::move(ws_config));
  if (!accepted || !*alive) co_return;
  const WebSocketPtr& socket = *accepted;
  if (stopping_) {
    socket->close(1001, "shutting down");
    co_await socket->read();
    co_return;
  }
  sockets_.insert(socket);
  PresencePtr presence;
  while (true) {
    auto message = co_await socket->read();
    if (!*alive) co_return;
    if (!message) break;
    if (message->opcode != ws::Opcode::text) {
      socket->send_text(wire::error_frame({Errc::malformed, "frames are JSON text"}));
      continue;
    }
    auto frame = wire::parse_object(message->payload);
    if (!frame) {
      socket->send_text(wire::error_frame(frame.error()));
      continue;
    }
    auto type = frame->find("type");
    if (type == frame->end() || !type->is_string()) {
      socket->send_text(wire::error_frame({Errc::malformed, "frame has no string field type"}, &*frame));
      continue;
    }
    const std::string kind = type->get<std::string>();
    if (!presence) {
      if (kind == "hello" || kind == "session_hello") {
        presence = co_await handle_hello(socket, *frame, kind == "session_hello");
        if (!*alive) co_return;
        if (!presence && !socket->is_open()) {
          // refused: wait for the close handshake to finish
          continue;
        }
      } else {
        socket->send_text(wire::error_frame({Errc::no_hello, "must send hello first"}, &*frame));
      }
      continue;
    }
    if (presence->socket != socket) break;  // replaced by a newer connection
    if (kind == "send" || kind == "client_ack") {
      // Sends and acks run beside the reader, so one connection has many in flight and one store round trip
      // never holds up the next frame; the store worker keeps them in arrival order. Bounded per connection:
      // past the bound the reader waits, and TCP pushes back on the peer.
      while (presence->in_flight >= kMaxInFlightPerConnection && presence->socket == socket) {
        asio::steady_timer pause(executor_, std::chrono::milliseconds(1));
        co_await pause.async_wait(asio::use_awaitable);
        if (!*alive) co_return;
      }
      ++presence->in_flight;
      auto done = [presence](const std::exception_ptr&) { --presence->in_flight; };
      if (kind == "send") {
        asio::co_spawn(executor_, handle_send(presence, std::move(*frame)), done);
      } else {
        asio::co_spawn(executor_, handle_frame(presence, std::move(*frame)), done);
      }
    } else {
      co_await handle_frame(presence, std::move(*frame));
      if (!*alive) co_return;
    }
  }
  sockets_.erase(socket);
  if (presence) handle_close(presence, socket);
}

void Broker::Impl::refuse_hello(const WebSocketPtr& socket, const Error& error, const Json& frame) {
  ++counters_.hello_refused;
  socket->send_text(wire::error_frame(error, &frame));
  if (error.errc() == Errc::revoked) {
    socket->close(4002, "banned");
  } else {
    socket->close(1008, wire_name(error.errc()));
  }
  log("hello_refused", {{"code", wire_name(error.errc())}, {"message", error.message}});
}

asio::awaitable<Broker::Impl::PresencePtr> Broker::Impl::handle_hello(const WebSocketPtr& socket, const Json& frame,
                                                                      bool session) {
  auto alive = alive_;
  // ---- 1. shape ----
  auto mesh_id = wire::required_string(frame, "meshId", 64);
  auto session_id = wire::required_string(frame, "sessionId", 256);
  auto display_name = wire::optional_string(frame, "displayName", max_target_name_length);
  auto cwd = wire::optional_string(frame, "cwd", 4096);
  auto hostname = wire::optional_string(frame, "hostname", 255);
  auto peer_type = wire::optional_string(frame, "peerType", 32);
  auto channel = wire::optional_string(frame, "channel", 64);
  auto model = wire::optional_string(frame, "model", 128);
  auto work_role = wire::optional_string(frame, "role", 64);
  auto pid = wire::optional_int(frame, "pid");
  auto timestamp = wire::required_int(frame, "timestamp");
  auto signature = wire::required_string(frame, "signature", 128);
  auto groups = parse_groups(frame);
  for (const Error* error : {mesh_id ? nullptr : &mesh_id.error(), session_id ? nullptr : &session_id.error(),
                             display_name ? nullptr : &display_name.error(), cwd ? nullptr : &cwd.error(),
                             hostname ? nullptr : &hostname.error(), peer_type ? nullptr : &peer_type.error(),
                             channel ? nullptr : &channel.error(), model ? nullptr : &model.error(),
                             work_role ? nullptr : &work_role.error(),
                             pid ? nullptr : &pid.error(), timestamp ? nullptr : &timestamp.error(),
                             signature ? nullptr : &signature.error(), groups ? nullptr : &groups.error()}) {
    if (error) {
      refuse_hello(socket, *error, frame);
      co_return nullptr;
    }
  }

  std::string member_pubkey, member_id, session_pubkey;
  std::optional<SessionAttestation> attestation;
  if (!session) {
    auto pubkey = wire::required_string(frame, "pubkey", 64);
    auto id = wire::required_string(frame, "memberId", 64);
    auto session_key = wire::optional_string(frame, "sessionPubkey", 128);
    if (!pubkey || !id || !session_key) {
      refuse_hello(socket, !pubkey ? pubkey.error() : !id ? id.error() : session_key.error(), frame);
      co_return nullptr;
    }
    if (*session_key && !wire::is_key_hex(**session_key)) {
      refuse_hello(socket, {Errc::bad_session_pubkey, "sessionPubkey must be 64 lowercase hex"}, frame);
      co_return nullptr;
    }
    member_pubkey = *pubkey;
    member_id = *id;
    session_pubkey = session_key->value_or("");
  } else {
    auto session_key = wire::required_string(frame, "sessionPubkey", 128);
    auto parent_key = wire::required_string(frame, "parentMemberPubkey", 128);
    auto parent_id = wire::optional_string(frame, "parentMemberId", 64);
    if (!session_key || !parent_key || !parent_id) {
      refuse_hello(socket, !session_key ? session_key.error() : !parent_key ? parent_key.error() : parent_id.error(),
                   frame);
      co_return nullptr;
    }
    if (!wire::is_key_hex(*session_key)) {
      refuse_hello(socket, {Errc::bad_session_pubkey, "sessionPubkey must be 64 lowercase hex"}, frame);
      co_return nullptr;
    }
    if (!wire::is_key_hex(*parent_key)) {
      refuse_hello(socket, {Errc::bad_parent_pubkey, "parentMemberPubkey must be 64 lowercase hex"}, frame);
      co_return nullptr;
    }
    auto att = frame.find("parentAttestation");
    if (att == frame.end() || !att->is_object()) {
      refuse_hello(socket, {Errc::missing_field, "field parentAttestation (an object) is missing"}, frame);
      co_return nullptr;
    }
    auto att_session = wire::required_string(*att, "sessionPubkey", 128);
    auto att_parent = wire::required_string(*att, "parentMemberPubkey", 128);
    auto att_expires = wire::required_int(*att, "expiresAt");
    auto att_signature = wire::required_string(*att, "signature", 128);
    if (!att_session || !att_parent || !att_expires || !att_signature) {
      const Error& error = !att_session  ? att_session.error()
                           : !att_parent ? att_parent.error()
                           : !att_expires ? att_expires.error()
                                          : att_signature.error();
      refuse_hello(socket, {Errc::malformed, "parentAttestation: " + error.message}, frame);
      co_return nullptr;
    }
    if (*att_session != *session_key || *att_parent != *parent_key) {
      refuse_hello(socket, {Errc::attestation_mismatch, "attestation keys differ from the hello's"}, frame);
      co_return nullptr;
    }
    attestation = SessionAttestation{*att_parent, *att_session, *att_expires, *att_signature, std::nullopt};
    member_pubkey = *parent_key;
    member_id = parent_id->value_or("");
    session_pubkey = *session_key;
  }

  // ---- 2. capacity ----
  std::size_t in_mesh = 0;
  if (auto it = meshes_.find(*mesh_id); it != meshes_.end()) in_mesh = it->second->open_connections;
  if (in_mesh >= config_.max_connections_per_mesh) {
    refuse_hello(socket, {Errc::capacity, "the mesh has reached its connection limit"}, frame);
    co_return nullptr;
  }

  // ---- 3. crypto ----
  const auto now = now_ms();
  if (!session) {
    MemberHelloProof proof{*mesh_id, member_id, member_pubkey, *timestamp, *signature};
    if (auto ok = verify_member_hello(proof, now); !ok) {
      refuse_hello(socket, ok.error(), frame);
      co_return nullptr;
    }
  } else {
    if (auto ok = verify_session_attestation(*attestation, now); !ok) {
      refuse_hello(socket, ok.error(), frame);
      co_return nullptr;
    }
    SessionHelloProof proof{*mesh_id, member_pubkey, session_pubkey, *timestamp, *signature};
    if (auto ok = verify_session_hello(proof, now); !ok) {
      refuse_hello(socket, ok.error(), frame);
      co_return nullptr;
    }
  }

  // ---- 4. membership ----
  std::string mesh_to_load = *mesh_id;
  auto mesh = co_await load_mesh(std::move(mesh_to_load));
  if (!*alive) co_return nullptr;
  if (!mesh) {
    refuse_hello(socket,
                 mesh.error().errc() == Errc::not_found ? Error{Errc::not_a_member, "not a member of this mesh"}
                                                        : mesh.error(),
                 frame);
    co_return nullptr;
  }
  MeshState& state = **mesh;
  auto member_it = state.members.find(member_pubkey);
  if (member_it == state.members.end() || (!session && member_it->second.id != member_id)) {
    refuse_hello(socket, {Errc::not_a_member, "not a member of this mesh"}, frame);
    co_return nullptr;
  }
  store::MemberRecord& member = member_it->second;
  if (!member_active(member)) {
    refuse_hello(socket, {Errc::revoked, member.revoked_at_ms ? "membership revoked" : "member is banned"}, frame);
    co_return nullptr;
  }
  if (session && !member_id.empty() && member_id != member.id) {
    refuse_hello(socket, {Errc::parent_member_id_mismatch, "parentMemberId is not the member owning that key"},
                 frame);
    co_return nullptr;
  }
  if (state.open_connections >= config_.max_connections_per_mesh) {
    refuse_hello(socket, {Errc::capacity, "the mesh has reached its connection limit"}, frame);
    co_return nullptr;
  }

  // ---- 5. reattach (grace) or replace (same identity online) ----
  const std::string sid = *session_id;
  PresencePtr existing;
  for (const auto& candidate : state.presences) {
    if (candidate->evicted) continue;
    const bool same = !session_pubkey.empty()
                          ? candidate->session_pubkey == session_pubkey
                          : candidate->session_pubkey.empty() && candidate->role == PeerRole::control_plane &&
                                candidate->member_pubkey == member_pubkey && candidate->session_id == sid;
    if (same) {
      existing = candidate;
      break;
    }
  }
  const PeerRole role = session ? PeerRole::session : PeerRole::control_plane;
  if (existing && existing->role == role) {
    const bool was_online = existing->online();
    if (was_online) {
      auto old = existing->socket;
      existing->socket = nullptr;
      old->close(1000, "session_replaced");
      --state.open_connections;
    }
    if (existing->grace_timer) existing->grace_timer->cancel();
    existing->socket = socket;
    ++state.open_connections;
    if (display_name->has_value()) existing->display_name = **display_name;
    if (cwd->has_value()) existing->cwd = **cwd;
    if (pid->has_value()) existing->pid = *pid;
    Json ack{{"type", "hello_ack"},
             {"presenceId", existing->id},
             {"memberId", member.id},
             {"memberDisplayName", member.display_name},
             {"peerRole", to_string(role)},
             {"protocolVersion", 1},
             {"reattached", true}};
    socket->send_text(wire::dump(with_req_id(std::move(ack), frame)));
    log("reattach", {{"mesh", state.mesh.id}, {"presence", existing->id}, {"replaced", was_online}});
    request_drain(existing);
    co_return existing;
  }

  // ---- 6. a new presence ----
  auto presence = std::make_shared<Presence>();
  presence->id = ids_.next();
  presence->mesh_id = state.mesh.id;
  presence->member_id = member.id;
  presence->member_pubkey = member_pubkey;
  presence->session_pubkey = session_pubkey;
  presence->session_id = sid;
  presence->display_name = display_name->value_or(member.display_name);
  presence->role = role;
  presence->groups = std::move(*groups);
  presence->cwd = cwd->value_or("");
  presence->hostname = hostname->value_or("");
  presence->peer_type = peer_type->value_or("");
  presence->channel = channel->value_or("");
  presence->model = model->value_or("");
  presence->work_role = work_role->value_or("");
  presence->pid = *pid;
  presence->connected_at_ms = now;
  presence->socket = socket;
  presences_.emplace(presence->id, presence);
  state.presences.insert(presence);
  ++state.open_connections;

  const bool returning = !session && member.last_seen_at_ms.has_value();
  const auto last_seen = member.last_seen_at_ms;
  member.last_seen_at_ms = now;
  if (!session && !presence->groups.empty()) {
    member.groups.clear();
    for (const auto& group : presence->groups) member.groups.push_back(group.name);
  }
  {
    store::MemberRecord updated = member;
    asio::co_spawn(
        executor_,
        [this, updated = std::move(updated)]() -> asio::awaitable<void> {
          auto done_op = [updated](store::BrokerStore& s) {
            return s.update_member(updated);
          };
          auto done = co_await worker_->call<void>(std::move(done_op));
          if (!done) log("store_error", {{"op", "update_member"}, {"message", done.error().describe()}});
        },
        asio::detached);
  }
  if (session) {
    store::SessionRecord record{state.mesh.id, session_pubkey, member.id, now};
    asio::co_spawn(
        executor_,
        [this, record = std::move(record)]() -> asio::awaitable<void> {
          auto done_op = [record](store::BrokerStore& s) {
            return s.record_session(record);
          };
          auto done = co_await worker_->call<void>(std::move(done_op));
          if (!done) log("store_error", {{"op", "record_session"}, {"message", done.error().describe()}});
        },
        asio::detached);
  }

  Json ack{{"type", "hello_ack"},
           {"presenceId", presence->id},
           {"memberId", member.id},
           {"memberDisplayName", member.display_name},
           {"memberProfile", {{"groups", member.groups}, {"role", member.role}}},
           {"peerRole", to_string(role)},
           {"protocolVersion", 1}};
  if (returning) ack["restored"] = true;
  socket->send_text(wire::dump(with_req_id(std::move(ack), frame)));
  log("hello", {{"mesh", state.mesh.id}, {"presence", presence->id}, {"peerRole", to_string(role)}});

  Json data = peer_json(*presence);
  Json event_data{{"name", presence->display_name},
                  {"pubkey", presence->pubkey()},
                  {"memberPubkey", member_pubkey},
                  {"peerRole", to_string(role)},
                  {"groups", groups_json(presence->groups)}};
  if (returning) event_data["lastSeenAt"] = wire::iso_time(*last_seen);
  broadcast_event(state, *presence, returning ? "peer_returned" : "peer_joined", event_data,
                  /*include_same_member=*/session);
  request_drain(presence);
  co_return presence;
}

Json Broker::Impl::peer_json(const Presence& p) const {
  Json out{{"presenceId", p.id},
           {"pubkey", p.pubkey()},
           {"memberPubkey", p.member_pubkey},
           {"memberId", p.member_id},
           {"displayName", p.display_name},
           {"peerRole", to_string(p.role)},
           {"status", p.status},
           {"summary", p.summary.empty() ? Json(nullptr) : Json(p.summary)},
           {"groups", groups_json(p.groups)},
           {"visible", p.visible},
           {"sessionId", p.session_id},
           {"connectedAt", wire::iso_time(p.connected_at_ms)},
           {"online", p.online()}};
  if (!p.cwd.empty()) out["cwd"] = p.cwd;
  if (!p.hostname.empty()) out["hostname"] = p.hostname;
  if (p.pid) out["pid"] = *p.pid;
  if (!p.peer_type.empty()) out["peerType"] = p.peer_type;
  if (!p.channel.empty()) out["channel"] = p.channel;
  if (!p.model.empty()) out["model"] = p.model;
  if (!p.work_role.empty()) out["role"] = p.work_role;
  return out;
}

void Broker::Impl::broadcast_event(const MeshState& mesh, const Presence& about, std::string_view event,
                                   const Json& data, bool include_same_member) {
  Json frame{{"type", "push"},      {"subtype", "system"},          {"event", event},
             {"eventData", data},   {"senderPubkey", "system"},     {"priority", "low"},
             {"nonce", ""},         {"ciphertext", ""},             {"messageId", ids_.next()},
             {"meshId", mesh.mesh.id}, {"createdAt", wire::iso_time(now_ms())}};
  const std::string text = wire::dump(frame);
  for (const auto& other : mesh.presences) {
    if (other.get() == &about || !other->online() || other->evicted) continue;
    if (!include_same_member && other->member_pubkey == about.member_pubkey) continue;
    other->socket->send_text(text);
    ++counters_.events;
  }
}

void Broker::Impl::handle_close(const PresencePtr& presence, const WebSocketPtr& socket) {
  if (presence->socket != socket || presence->evicted) return;  // replaced, or already ended
  auto mesh_it = meshes_.find(presence->mesh_id);
  if (mesh_it != meshes_.end() && mesh_it->second->open_connections > 0) --mesh_it->second->open_connections;
  presence->socket = nullptr;
  // Copies pushed but not acknowledged go back to the queue at once (the next connection gets them now,
  // not after the lease).
  asio::co_spawn(
      executor_,
      [this, id = presence->id]() -> asio::awaitable<void> {
        auto released_op = [id](store::BrokerStore& s) {
          return s.release_claims(id);
        };
        auto released = co_await worker_->call<std::size_t>(std::move(released_op));
        if (!released) log("store_error", {{"op", "release_claims"}, {"message", released.error().describe()}});
      },
      asio::detached);
  if (stopping_) {
    evict(presence, /*announce=*/false);
    return;
  }
  presence->grace_timer = std::make_unique<asio::steady_timer>(executor_, config_.grace);
  std::weak_ptr<Presence> weak = presence;
  presence->grace_timer->async_wait([this, weak, alive = alive_](std::error_code ec) {
    if (ec || !*alive) return;
    auto p = weak.lock();
    if (!p || p->online() || p->evicted) return;
    evict(p, /*announce=*/true);
  });
  log("grace", {{"presence", presence->id}, {"ms", config_.grace.count()}});
}

void Broker::Impl::evict(const PresencePtr& presence, bool announce) {
  if (presence->evicted) return;
  presence->evicted = true;
  if (presence->grace_timer) presence->grace_timer->cancel();
  presences_.erase(presence->id);
  auto mesh_it = meshes_.find(presence->mesh_id);
  if (mesh_it == meshes_.end()) return;
  MeshState& mesh = *mesh_it->second;
  mesh.presences.erase(presence);
  if (presence->online()) {
    if (mesh.open_connections > 0) --mesh.open_connections;
    presence->socket = nullptr;
  }
  if (presence->role == PeerRole::session && !stopping_) {
    // The session is gone: copies still queued for it fall back to its member, whose daemon holds the
    // session's key (docs/protocol.md §8.3).
    auto member = mesh.members.find(presence->member_pubkey);
    if (member != mesh.members.end() && member_active(member->second)) {
      asio::co_spawn(
          executor_,
          [this, mesh_id = mesh.mesh.id, from = presence->session_pubkey,
           to = presence->member_pubkey]() -> asio::awaitable<void> {
            auto op = [mesh_id, from, to](store::BrokerStore& s) { return s.readdress_undelivered(mesh_id, from, to); };
            auto moved = co_await worker_->call<std::size_t>(std::move(op));
            if (!moved) {
              log("store_error", {{"op", "readdress_undelivered"}, {"message", moved.error().describe()}});
            } else if (*moved > 0) {
              std::vector<std::string> keys{to};
              wake_recipients(mesh_id, keys);
            }
          },
          asio::detached);
    }
  }
  if (announce) {
    Json data{{"name", presence->display_name},
              {"pubkey", presence->pubkey()},
              {"memberPubkey", presence->member_pubkey},
              {"peerRole", to_string(presence->role)}};
    broadcast_event(mesh, *presence, "peer_left", data, presence->role == PeerRole::session);
  }
  log("peer_left", {{"presence", presence->id}, {"announced", announce}});
}

void Broker::Impl::disconnect_member(MeshState& mesh, const std::string& member_pubkey, std::uint16_t code,
                                     std::string_view reason, bool sessions_only, Json* kicked, Json* skipped) {
  std::vector<PresencePtr> affected;
  for (const auto& presence : mesh.presences) {
    if (presence->member_pubkey != member_pubkey) continue;
    if (sessions_only && presence->role == PeerRole::control_plane) {
      if (skipped) skipped->push_back(presence->id);
      continue;
    }
    affected.push_back(presence);
  }
  for (const auto& presence : affected) {
    if (kicked) kicked->push_back(presence->id);
    auto socket = presence->socket;
    evict(presence, /*announce=*/true);
    if (socket) socket->close(code, reason);
  }
}

// ---------------------------------------------------------------- frames after hello

asio::awaitable<void> Broker::Impl::handle_frame(PresencePtr presence, Json frame) {
  auto alive = alive_;
  const std::string kind = frame["type"].get<std::string>();
  auto socket = presence->socket;
  auto reply = [&](Json body) { socket->send_text(wire::dump(with_req_id(std::move(body), frame))); };
  auto error = [&](const Error& e) { socket->send_text(wire::error_frame(e, &frame)); };
  auto ok = [&] { reply(Json{{"type", "ack"}, {"queued", true}, {"id", frame.value("id", Json(nullptr))}}); };
  auto mesh_it = meshes_.find(presence->mesh_id);
  if (mesh_it == meshes_.end()) co_return;
  MeshState& mesh = *mesh_it->second;

  if (kind == "client_ack") {
    auto broker_id = wire::optional_string(frame, "brokerMessageId", 64);
    if (!broker_id) {
      error(broker_id.error());
      co_return;
    }
    if (!*broker_id) co_return;  // nothing to acknowledge (the reference accepted this silently too)
    ++counters_.acks;
    auto keys = presence->recipient_keys();
    const auto now = now_ms();
    auto marked_op = [mesh_id = presence->mesh_id, id = **broker_id, keys, now](store::BrokerStore& s) {
          return s.mark_delivered(mesh_id, id, keys, now);
        };
    auto marked = co_await worker_->call<std::size_t>(std::move(marked_op));
    if (!marked) log("store_error", {{"op", "mark_delivered"}, {"message", marked.error().describe()}});
    co_return;
  }
  if (kind == "list_peers") {
    auto role_filter = wire::optional_string(frame, "peerRole", 32);
    if (!role_filter) {
      error(role_filter.error());
      co_return;
    }
    Json peers = Json::array();
    for (const auto& other : mesh.presences) {
      if (other->evicted) continue;
      if (!other->visible && other->member_pubkey != presence->member_pubkey) continue;
      if (*role_filter && **role_filter != to_string(other->role)) continue;
      peers.push_back(peer_json(*other));
    }
    reply(Json{{"type", "peers_list"}, {"peers", std::move(peers)}});
    co_return;
  }
  if (kind == "set_status") {
    auto status = wire::required_string(frame, "status", 16);
    if (!status) {
      error(status.error());
      co_return;
    }
    if (*status != "idle" && *status != "working" && *status != "dnd") {
      error({Errc::invalid_value, "status must be idle, working or dnd"});
      co_return;
    }
    presence->status = *status;
    ok();
    if (*status == "idle") request_drain(presence);
    co_return;
  }
  if (kind == "set_summary") {
    auto summary = wire::required_string(frame, "summary", kMaxSummary);
    if (!summary) {
      error(summary.error());
      co_return;
    }
    presence->summary = *summary;
    ok();
    co_return;
  }
  if (kind == "set_visible") {
    auto visible = wire::optional_bool(frame, "visible");
    if (!visible || !*visible) {
      error(!visible ? visible.error() : Error{Errc::missing_field, "field visible is missing"});
      co_return;
    }
    const bool changed = presence->visible != **visible;
    presence->visible = **visible;
    ok();
    if (changed) {
      Json data{{"name", presence->display_name}, {"pubkey", presence->pubkey()}};
      broadcast_event(mesh, *presence, presence->visible ? "peer_visible" : "peer_hidden", data, true);
    }
    co_return;
  }
  if (kind == "set_profile") {
    auto name = wire::optional_string(frame, "displayName", max_target_name_length);
    if (!name) {
      error(name.error());
      co_return;
    }
    if (*name) {
      if (auto parsed = parse_target(**name); !parsed || parsed->kind != TargetKind::name) {
        error({Errc::invalid_value, "displayName is not a valid display name"});
        co_return;
      }
      presence->display_name = **name;
    }
    ok();
    co_return;
  }
  if (kind == "join_group" || kind == "leave_group") {
    auto name = wire::required_string(frame, "name", max_group_path_length);
    auto role = wire::optional_string(frame, "role", 64);
    if (!name || !role) {
      error(!name ? name.error() : role.error());
      co_return;
    }
    std::string group = *name;
    if (!group.empty() && group.front() == '@') group.erase(0, 1);
    if (auto parsed = parse_target("@" + group); !parsed || parsed->kind != TargetKind::group) {
      error({Errc::invalid_value, "invalid group name"});
      co_return;
    }
    std::erase_if(presence->groups, [&](const broker::GroupEntry& g) { return g.name == group; });
    if (kind == "join_group") {
      broker::GroupEntry entry;
      entry.name = group;
      entry.role = role->value_or("");
      presence->groups.push_back(std::move(entry));
    }
    auto member_it = mesh.members.find(presence->member_pubkey);
    if (member_it != mesh.members.end() && presence->role == PeerRole::control_plane) {
      auto& stored = member_it->second.groups;
      std::erase(stored, group);
      if (kind == "join_group") stored.push_back(group);
      store::MemberRecord updated = member_it->second;
      auto done_op = [updated](store::BrokerStore& s) {
        return s.update_member(updated);
      };
      auto done = co_await worker_->call<void>(std::move(done_op));
      if (!*alive) co_return;
      if (!done) {
        error(done.error());
        co_return;
      }
    }
    ok();
    co_return;
  }
  if (kind == "fetch_queued") {
    ok();
    request_drain(presence, /*all_priorities=*/true);
    co_return;
  }
  if (kind == "message_status") {
    auto id = wire::required_string(frame, "messageId", 64);
    if (!id) {
      error(id.error());
      co_return;
    }
    auto status_op = [mesh_id = presence->mesh_id, id = *id](store::BrokerStore& s) {
          return s.message_status(mesh_id, id);
        };
    auto status = co_await worker_->call<std::optional<std::pair<store::MessageRecord, std::vector<store::RecipientStatus>>>>(std::move(status_op));
    if (!*alive) co_return;
    if (!status) {
      error(status.error());
      co_return;
    }
    if (!*status || (*status)->first.sender_member_id != presence->member_id) {
      error({Errc::not_found, "no message " + *id + " sent by you"});
      co_return;
    }
    Json recipients = Json::array();
    for (const auto& r : (*status)->second) {
      Json entry{{"pubkey", r.recipient_key}, {"delivered", r.delivered}, {"attempts", r.attempts}};
      if (r.delivered_at_ms) entry["deliveredAt"] = wire::iso_time(*r.delivered_at_ms);
      recipients.push_back(std::move(entry));
    }
    reply(Json{{"type", "message_status_result"},
               {"messageId", *id},
               {"targetSpec", (*status)->first.target_spec},
               {"createdAt", wire::iso_time((*status)->first.created_at_ms)},
               {"recipients", std::move(recipients)}});
    co_return;
  }
  if (kind == "hello" || kind == "session_hello") {
    error({Errc::malformed, "already said hello on this connection"});
    co_return;
  }
  error({Errc::unknown_message_type, "unknown message type \"" + kind + "\""});
}

// ---------------------------------------------------------------- send

bool Broker::Impl::take_token(const std::string& member_id) {
  const auto now = now_ms();
  auto [it, inserted] = buckets_.try_emplace(member_id);
  auto& bucket = it->second;
  if (inserted) {
    bucket.tokens = config_.rate_burst;
    bucket.updated_ms = now;
  }
  const double refill = static_cast<double>(now - bucket.updated_ms) * config_.rate_per_minute / 60'000.0;
  bucket.tokens = std::min(config_.rate_burst, bucket.tokens + refill);
  bucket.updated_ms = now;
  if (bucket.tokens < 1.0) return false;
  bucket.tokens -= 1.0;
  return true;
}

asio::awaitable<void> Broker::Impl::handle_send(PresencePtr presence, Json frame) {
  auto alive = alive_;
  auto socket = presence->socket;
  const Json correlation = frame.value("id", Json(nullptr));
  auto refuse = [&](const Error& e) {
    ++counters_.send_refused;
    if (e.errc() == Errc::rate_limited) ++counters_.rate_limited;
    if (e.errc() == Errc::idempotency_key_reused) ++counters_.dedupe_conflicts;
    Json ack{{"type", "ack"},
             {"id", correlation},
             {"messageId", ""},
             {"queued", false},
             {"code", wire_name(e.errc())},
             {"error", e.message}};
    socket->send_text(wire::dump(with_req_id(std::move(ack), frame)));
  };

  // ---- shape ----
  auto target_spec = wire::required_string(frame, "targetSpec", max_group_path_length + 1);
  auto priority = wire::optional_string(frame, "priority", 8);
  auto nonce = wire::optional_string(frame, "nonce", 64);
  auto ciphertext = wire::optional_string(frame, "ciphertext", config_.max_payload_bytes * 2);
  auto client_message_id = wire::optional_string(frame, "client_message_id", 128);
  auto fingerprint = wire::optional_string(frame, "request_fingerprint", 64);
  auto reply_to = wire::optional_string(frame, "replyToId", 128);
  auto ttl = wire::optional_int(frame, "ttlMs");
  for (const Error* e : {target_spec ? nullptr : &target_spec.error(), priority ? nullptr : &priority.error(),
                         nonce ? nullptr : &nonce.error(), client_message_id ? nullptr : &client_message_id.error(),
                         fingerprint ? nullptr : &fingerprint.error(), reply_to ? nullptr : &reply_to.error(),
                         ttl ? nullptr : &ttl.error()}) {
    if (e) {
      refuse(*e);
      co_return;
    }
  }
  if (!ciphertext) {
    refuse(ciphertext.error().errc() == Errc::invalid_value
               ? Error{Errc::payload_too_large, "ciphertext is larger than " +
                                                    std::to_string(config_.max_payload_bytes) + " bytes"}
               : ciphertext.error());
    co_return;
  }
  const std::string prio = priority->value_or("next");
  if (prio != "now" && prio != "next" && prio != "low") {
    refuse({Errc::invalid_value, "priority must be now, next or low"});
    co_return;
  }
  if (*fingerprint && !wire::is_key_hex(**fingerprint)) {
    refuse({Errc::invalid_value, "request_fingerprint must be 64 lowercase hex"});
    co_return;
  }
  if (*ttl && **ttl <= 0) {
    refuse({Errc::invalid_value, "ttlMs must be positive"});
    co_return;
  }
  auto parsed_target = parse_target(*target_spec);
  if (!parsed_target) {
    refuse(parsed_target.error());
    co_return;
  }
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> bodies;  // to → (nonce, ciphertext)
  if (auto it = frame.find("bodies"); it != frame.end() && !it->is_null()) {
    if (!it->is_array()) {
      refuse({Errc::wrong_type, "field bodies must be an array"});
      co_return;
    }
    if (it->size() > kMaxBodies) {
      refuse({Errc::payload_too_large, "too many bodies"});
      co_return;
    }
    for (const auto& body : *it) {
      if (!body.is_object()) {
        refuse({Errc::wrong_type, "bodies entries must be objects {to, nonce, ciphertext}"});
        co_return;
      }
      auto to = wire::required_string(body, "to", 64);
      auto body_nonce = wire::required_string(body, "nonce", 64);
      auto body_text = wire::required_string(body, "ciphertext", config_.max_payload_bytes);
      if (!to || !body_nonce || !body_text) {
        const Error& e = !to ? to.error() : !body_nonce ? body_nonce.error() : body_text.error();
        refuse(e.errc() == Errc::invalid_value && body_nonce && to
                   ? Error{Errc::payload_too_large, "a body is larger than " +
                                                        std::to_string(config_.max_payload_bytes) + " bytes"}
                   : Error{e.errc(), "bodies: " + e.message});
        co_return;
      }
      bodies.emplace_back(*to, std::make_pair(*body_nonce, *body_text));
    }
  }
  const bool shared_body = nonce->has_value() || ciphertext->has_value();
  if (shared_body && (!nonce->has_value() || !ciphertext->has_value())) {
    refuse({Errc::missing_field, "nonce and ciphertext go together"});
    co_return;
  }
  if (shared_body && !bodies.empty()) {
    refuse({Errc::invalid_value, "give either nonce+ciphertext or bodies, not both"});
    co_return;
  }
  if (!shared_body && bodies.empty()) {
    refuse({Errc::missing_field, "a send needs nonce+ciphertext or bodies"});
    co_return;
  }
  if (shared_body && (*ciphertext)->size() > config_.max_payload_bytes) {
    refuse({Errc::payload_too_large,
            "ciphertext is larger than " + std::to_string(config_.max_payload_bytes) + " bytes"});
    co_return;
  }

  // ---- dedupe lookup, before the rate limiter ----
  if (*client_message_id) {
    auto found_op = [mesh_id = presence->mesh_id, cmid = **client_message_id](store::BrokerStore& s) {
          return s.find_dedupe(mesh_id, cmid);
        };
    auto found = co_await worker_->call<std::optional<store::DedupeRecord>>(std::move(found_op));
    if (!*alive) co_return;
    if (!found) {
      refuse(found.error());
      co_return;
    }
    if (*found) {
      if ((*found)->request_fingerprint != *fingerprint) {
        refuse({Errc::idempotency_key_reused, "client_message_id " + **client_message_id +
                                                  " was used for a different request"});
        co_return;
      }
      ++counters_.duplicates;
      Json ack{{"type", "ack"},     {"id", correlation},         {"messageId", (*found)->message_id},
               {"queued", true},    {"duplicate", true}};
      socket->send_text(wire::dump(with_req_id(std::move(ack), frame)));
      co_return;
    }
  }

  // ---- rate limit ----
  if (!take_token(presence->member_id)) {
    refuse({Errc::rate_limited, "send budget spent (burst " + std::to_string(static_cast<int>(config_.rate_burst)) +
                                    ", " + std::to_string(static_cast<int>(config_.rate_per_minute)) +
                                    "/min); retry later"});
    co_return;
  }

  // ---- target → recipients ----
  auto mesh_it = meshes_.find(presence->mesh_id);
  if (mesh_it == meshes_.end()) co_return;
  MeshState& mesh = *mesh_it->second;
  std::vector<store::DeliveryBody> rows;
  Json missing = Json::array();
  const auto kind = parsed_target->kind;
  if (kind == TargetKind::pubkey) {
    if (!shared_body) {
      refuse({Errc::invalid_value, "a direct message has one body: nonce and ciphertext"});
      co_return;
    }
    const std::string& key = parsed_target->value;
    std::string recipient_key, recipient_member;
    if (auto m = mesh.members.find(key); m != mesh.members.end()) {
      if (!member_active(m->second)) {
        refuse({Errc::unknown_target, "recipient is no longer an active member"});
        co_return;
      }
      recipient_key = key;
      recipient_member = m->second.id;
    } else {
      for (const auto& p : mesh.presences) {
        if (p->session_pubkey == key && !p->evicted) {
          recipient_key = key;
          recipient_member = p->member_id;
          break;
        }
      }
      if (recipient_key.empty()) {
        auto session_op = [mesh_id = mesh.mesh.id, key](store::BrokerStore& s) { return s.find_session(mesh_id, key); };
        auto session = co_await worker_->call<std::optional<store::SessionRecord>>(std::move(session_op));
        if (!*alive) co_return;
        if (!session) {
          refuse(session.error());
          co_return;
        }
        if (!*session) {
          refuse({Errc::unknown_target, "no member or session " + key.substr(0, 16) + "… in this mesh"});
          co_return;
        }
        for (const auto& [pubkey, member] : mesh.members) {
          if (member.id == (*session)->member_id && member_active(member)) {
            recipient_key = pubkey;  // the session is gone: its member's daemon takes the copy
            recipient_member = member.id;
          }
        }
        if (recipient_key.empty()) {
          refuse({Errc::unknown_target, "the session's member is no longer active"});
          co_return;
        }
      }
    }
    rows.push_back({recipient_key, recipient_member, **nonce, **ciphertext});
  } else if (kind == TargetKind::broadcast || kind == TargetKind::group) {
    std::map<std::string, const store::MemberRecord*> reached;
    for (const auto& [pubkey, member] : mesh.members) {
      if (!member_active(member) || member.id == presence->member_id) continue;
      bool hit = kind == TargetKind::broadcast;
      if (!hit) {
        for (const auto& g : member.groups) hit = hit || group_reaches(parsed_target->value, g);
        for (const auto& p : mesh.presences) {
          if (p->member_id != member.id) continue;
          for (const auto& g : p->groups) hit = hit || group_reaches(parsed_target->value, g.name);
        }
      }
      if (hit) reached.emplace(pubkey, &member);
    }
    if (shared_body) {
      for (const auto& [pubkey, member] : reached) rows.push_back({pubkey, member->id, **nonce, **ciphertext});
    } else {
      std::set<std::string> covered;
      for (auto& [to, body] : bodies) {
        auto r = reached.find(to);
        if (r == reached.end()) {
          refuse({Errc::invalid_value, "a body is addressed to " + to.substr(0, 16) + "…, which " +
                                           *target_spec + " does not reach"});
          co_return;
        }
        if (!covered.insert(to).second) {
          refuse({Errc::invalid_value, "two bodies for " + to.substr(0, 16) + "…"});
          co_return;
        }
        rows.push_back({to, r->second->id, body.first, body.second});
      }
      for (const auto& [pubkey, member] : reached) {
        if (!covered.contains(pubkey)) missing.push_back(pubkey);
      }
    }
  } else if (kind == TargetKind::topic) {
    refuse({Errc::unknown_target, "topics are not served by this broker version"});
    co_return;
  } else {
    refuse({Errc::invalid_target, "resolve names and key prefixes to a full key before sending"});
    co_return;
  }

  // ---- durable accept ----
  const auto now = now_ms();
  store::MessageRecord message;
  message.id = ids_.next();
  message.mesh_id = mesh.mesh.id;
  message.sender_member_id = presence->member_id;
  message.sender_pubkey = presence->pubkey();
  message.sender_member_pubkey = presence->member_pubkey;
  message.target_spec = *target_spec;
  message.priority = prio;
  message.client_message_id = *client_message_id;
  message.request_fingerprint = *fingerprint;
  message.reply_to_id = *reply_to;
  message.created_at_ms = now;
  const auto max_ttl = static_cast<std::int64_t>(config_.message_ttl.count());
  message.expires_at_ms = now + std::min(ttl->value_or(max_ttl), max_ttl);
  std::vector<std::string> keys;
  keys.reserve(rows.size());
  for (const auto& row : rows) keys.push_back(row.recipient_key);
  auto accepted_op = [message, rows = std::move(rows)](store::BrokerStore& s) { return s.accept_message(message, rows); };
  auto accepted = co_await worker_->call<store::AcceptResult>(std::move(accepted_op));
  if (!*alive) co_return;
  if (!accepted) {
    refuse(accepted.error());
    co_return;
  }
  Json ack{{"type", "ack"},
           {"id", correlation},
           {"messageId", accepted->message_id},
           {"queued", true},
           {"duplicate", accepted->duplicate},
           {"recipients", accepted->rows}};
  if (!missing.empty()) ack["missingRecipients"] = std::move(missing);
  socket->send_text(wire::dump(with_req_id(std::move(ack), frame)));
  if (accepted->duplicate) {
    ++counters_.duplicates;
    co_return;
  }
  ++counters_.messages_accepted;
  wake_recipients(mesh.mesh.id, keys);
}

// ---------------------------------------------------------------- delivery pump

void Broker::Impl::wake_recipients(const std::string& mesh_id, const std::vector<std::string>& keys) {
  auto mesh_it = meshes_.find(mesh_id);
  if (mesh_it == meshes_.end()) return;
  std::set<std::string> wanted(keys.begin(), keys.end());
  for (const auto& presence : mesh_it->second->presences) {
    if (!presence->online()) continue;
    for (const auto& key : presence->recipient_keys()) {
      if (wanted.contains(key)) {
        request_drain(presence);
        break;
      }
    }
  }
}

void Broker::Impl::request_drain(const PresencePtr& presence, bool all_priorities) {
  if (all_priorities) presence->drain_all_once = true;
  if (presence->draining) {
    presence->drain_again = true;
    return;
  }
  presence->draining = true;
  asio::co_spawn(executor_, drain(presence), asio::detached);
}

asio::awaitable<void> Broker::Impl::drain(PresencePtr presence) {
  auto alive = alive_;
  do {
    presence->drain_again = false;
    if (!presence->online() || presence->evicted) break;
    auto socket = presence->socket;
    while (socket->queued_bytes() > kPushBackpressureBytes && socket->is_open()) {
      asio::steady_timer pause(executor_, std::chrono::milliseconds(10));
      co_await pause.async_wait(asio::use_awaitable);
      if (!*alive) co_return;
    }
    store::ClaimRequest request;
    request.mesh_id = presence->mesh_id;
    request.recipient_keys = presence->recipient_keys();
    request.claimer = presence->id;
    request.now_ms = now_ms();
    request.lease_ms = config_.lease.count();
    request.all_priorities = presence->status == "idle" || presence->drain_all_once;
    request.max_hold_ms = config_.max_hold.count();
    request.limit = kClaimBatch;
    presence->drain_all_once = false;
    auto claimed_op = [request](store::BrokerStore& s) { return s.claim_deliveries(request); };
    auto claimed = co_await worker_->call<std::vector<store::DeliveryRecord>>(std::move(claimed_op));
    if (!*alive) co_return;
    if (!claimed) {
      log("store_error", {{"op", "claim_deliveries"}, {"message", claimed.error().describe()}});
      break;
    }
    if (presence->socket != socket || !socket->is_open()) {
      // The connection went away while we claimed: hand the rows back at once.
      if (!claimed->empty()) {
        auto released_op = [id = presence->id](store::BrokerStore& s) {
          return s.release_claims(id);
        };
        auto released = co_await worker_->call<std::size_t>(std::move(released_op));
        (void)released;
      }
      break;
    }
    for (const auto& row : *claimed) {
      const auto& m = row.message;
      std::string sender_name;
      if (auto mesh_it = meshes_.find(m.mesh_id); mesh_it != meshes_.end()) {
        if (auto s = mesh_it->second->members.find(m.sender_member_pubkey); s != mesh_it->second->members.end()) {
          sender_name = s->second.display_name;
        }
      }
      Json push{{"type", "push"},
                {"messageId", m.id},
                {"meshId", m.mesh_id},
                {"senderPubkey", m.sender_pubkey},
                {"senderMemberPubkey", m.sender_member_pubkey},
                {"senderName", sender_name},
                {"targetSpec", m.target_spec},
                {"recipientPubkey", row.body.recipient_key},
                {"priority", m.priority},
                {"nonce", row.body.nonce},
                {"ciphertext", row.body.ciphertext},
                {"createdAt", wire::iso_time(m.created_at_ms)},
                {"attempt", row.attempts}};
      if (m.client_message_id) push["client_message_id"] = *m.client_message_id;
      if (m.request_fingerprint) push["request_fingerprint"] = *m.request_fingerprint;
      if (m.reply_to_id) push["replyToId"] = *m.reply_to_id;
      socket->send_text(wire::dump(push));
      ++counters_.pushes;
      if (row.attempts > 1) ++counters_.redeliveries;
    }
    if (claimed->size() >= kClaimBatch) presence->drain_again = true;
  } while (presence->drain_again);
  presence->draining = false;
}

asio::awaitable<void> Broker::Impl::sweep_loop() {
  auto alive = alive_;
  std::int64_t last_purge = 0;
  while (*alive && !stopping_) {
    sweep_timer_->expires_after(config_.redeliver_interval);
    co_await sweep_timer_->async_wait(transport::use_tuple);  // cancelled on stop: checked below
    if (!*alive || stopping_) co_return;
    const auto now = now_ms();
    auto work_op = [now](store::BrokerStore& s) { return s.recipients_with_work(now, 10'000); };
    auto work = co_await worker_->call<std::vector<store::RecipientRef>>(std::move(work_op));
    if (!*alive) co_return;
    if (work) {
      std::map<std::string, std::vector<std::string>> by_mesh;
      for (auto& ref : *work) by_mesh[ref.mesh_id].push_back(std::move(ref.recipient_key));
      for (const auto& [mesh_id, keys] : by_mesh) wake_recipients(mesh_id, keys);
    } else {
      log("store_error", {{"op", "recipients_with_work"}, {"message", work.error().describe()}});
    }
    if (now - last_purge >= 60'000) {
      last_purge = now;
      const auto retention = static_cast<std::int64_t>(config_.message_ttl.count());
      auto purged_op = [now, retention](store::BrokerStore& s) { return s.purge(now, retention); };
      auto purged = co_await worker_->call<store::PurgeResult>(std::move(purged_op));
      if (!*alive) co_return;
      if (purged && (purged->expired_deliveries || purged->delivered_pruned)) {
        log("purge", {{"expired", purged->expired_deliveries}, {"pruned", purged->delivered_pruned}});
      }
    }
  }
}

// ---------------------------------------------------------------- public facade

Result<std::unique_ptr<Broker>> Broker::open(asio::any_io_executor executor, BrokerConfig config) {
  std::string path = ":memory:";
  if (!config.data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config.data_dir, ec);
    if (ec) return fail(Errc::io_error, "cannot create " + config.data_dir.string() + ": " + ec.message());
    std::filesystem::permissions(config.data_dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
    path = (config.data_dir / "broker.db").string();
  }
  store::SqliteOptions options;
  options.full_sync = config.full_sync;
  auto opened = store::open_sqlite_broker_store(path, options);
  if (!opened) return fail(opened.error());
  auto impl = std::make_unique<Impl>(std::move(executor), std::move(config), std::move(*opened));
  return std::unique_ptr<Broker>(new Broker(std::move(impl)));
}

Broker::Broker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Broker::~Broker() = default;
Result<void> Broker::start() { return impl_->start(); }
void Broker::stop(std::function<void()> done) { impl_->stop(std::move(done)); }
std::uint16_t Broker::port() const noexcept { return impl_->port(); }
BrokerStats Broker::stats() const { return impl_->stats(); }
std::string Broker::metrics_text() const { return impl_->metrics_text(); }

}  // namespace claudemesh
