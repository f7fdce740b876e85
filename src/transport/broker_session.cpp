// SPDX-License-Identifier: MIT
#include "transport/broker_session.hpp"

#include "core/backoff.hpp"

#include <claudemesh/error.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

namespace claudemesh::transport {
namespace {

constexpr std::string_view request_id_prefix = "r";

std::string request_key(std::uint64_t id) { return std::string(request_id_prefix) + std::to_string(id); }

std::optional<std::uint64_t> parse_request_key(const Json& value) {
  if (!value.is_string()) return std::nullopt;
  const auto& text = value.get_ref<const std::string&>();
  if (!text.starts_with(request_id_prefix) || text.size() > 21) return std::nullopt;
  std::uint64_t id = 0;
  for (char c : text.substr(request_id_prefix.size())) {
    if (c < '0' || c > '9') return std::nullopt;
    id = id * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return id;
}

std::string str(const Json& object, std::string_view name) {
  const auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::int64_t integer(const Json& object, std::string_view name) {
  const auto it = object.find(name);
  if (it == object.end() || !it->is_number_integer()) return 0;
  return it->get<std::int64_t>();
}

bool boolean(const Json& object, std::string_view name, bool fallback) {
  const auto it = object.find(name);
  if (it == object.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

// A broker refusal as an Error: the wire code when we know it, else `internal` with the code in the text.
Error refusal(const Json& frame) {
  const std::string code = frame.contains("code") && frame["code"].is_string() ? frame["code"].get<std::string>()
                                                                                 : std::string("internal");
  std::string message = str(frame, "message");
  if (message.empty()) message = str(frame, "error");
  if (auto known = errc_from_wire_name(code)) return {*known, message.empty() ? code : message};
  return {Errc::internal, "broker refused with unknown code " + code + (message.empty() ? "" : ": " + message)};
}

std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

BrokerSession::BrokerSession(const Identity& self, std::optional<SessionAttestation> attestation,
                             AttestationSource renew, const BrokerClientConfig& config)
    : self_(self), attestation_(std::move(attestation)), renew_(std::move(renew)), config_(config) {
  session_id_ = config_.session_id;
  if (session_id_.empty()) session_id_ = IdGenerator(config_.clock, config_.rng).next();
  if (config_.channel.empty()) config_.channel = attestation_ ? "claudemesh-session" : "claudemesh-daemon";
}

void BrokerSession::log(std::string_view event, Json fields) const {
  if (!config_.log) return;
  fields["event"] = event;
  fields["mesh"] = config_.mesh_id;
  if (attestation_) fields["session"] = attestation_->session_pubkey.substr(0, 12);
  config_.log(dump(fields));
}

void BrokerSession::set_state(TransportState state, Actions& out) {
  if (state_ == state) return;
  state_ = state;
  out.state = state;
}

void BrokerSession::fail_all(const Error& error, Actions& out) {
  for (const auto& [id, pending] : pending_) out.completions.push_back({id, fail(error)});
  pending_.clear();
}

void BrokerSession::give_up(Error error, Actions& out) {
  log("broker_client_stopped", {{"code", error.wire_code()}, {"message", error.message}});
  last_error_ = std::move(error);
  fail_all(*last_error_, out);
  awaiting_hello_ = false;
  set_state(TransportState::stopped, out);
}

void BrokerSession::connecting(Actions& out) {
  if (stopped()) return;
  set_state(failures_ == 0 && stats_.connects == 0 ? TransportState::connecting : TransportState::reconnecting, out);
  log("ws_open_attempt", {{"attempt", failures_ + 1}});
}

Json BrokerSession::hello_frame(std::int64_t now_ms) {
  Json hello;
  if (!attestation_) {
    const auto proof = sign_member_hello(self_, config_.mesh_id, config_.member_id, now_ms);
    hello = {{"type", "hello"},         {"meshId", proof.mesh_id},     {"memberId", proof.member_id},
             {"pubkey", proof.pubkey},  {"timestamp", proof.timestamp_ms}, {"signature", proof.signature}};
  } else {
    const auto& att = *attestation_;
    auto parent = PublicKey::from_hex(att.parent_pubkey);
    const auto proof = sign_session_hello(self_, config_.mesh_id, parent ? *parent : PublicKey{}, now_ms);
    hello = {{"type", "session_hello"},
             {"meshId", proof.mesh_id},
             {"parentMemberPubkey", proof.parent_pubkey},
             {"sessionPubkey", proof.session_pubkey},
             {"parentAttestation",
              {{"sessionPubkey", att.session_pubkey},
               {"parentMemberPubkey", att.parent_pubkey},
               {"expiresAt", att.expires_at_ms},
               {"signature", att.signature}}},
             {"timestamp", proof.timestamp_ms},
             {"signature", proof.signature}};
    if (!config_.member_id.empty()) hello["parentMemberId"] = config_.member_id;
    if (!config_.role.empty()) hello["role"] = config_.role;
  }
  hello["sessionId"] = session_id_;
  hello["protocolVersion"] = 1;
  hello["peerType"] = config_.peer_type;
  hello["channel"] = config_.channel;
  if (!config_.display_name.empty()) hello["displayName"] = config_.display_name;
  if (!config_.cwd.empty()) hello["cwd"] = config_.cwd;
  if (!config_.hostname.empty()) hello["hostname"] = config_.hostname;
  if (config_.pid > 0) hello["pid"] = config_.pid;
  if (!config_.groups.empty()) {
    Json groups = Json::array();
    for (const auto& group : config_.groups) {
      Json entry{{"name", group.name}};
      if (!group.role.empty()) entry["role"] = group.role;
      groups.push_back(std::move(entry));
    }
    hello["groups"] = std::move(groups);
  }
  return hello;
}

void BrokerSession::connected(std::int64_t now_ms, Actions& out) {
  if (stopped()) return;
  if (attestation_) {
    const auto renew_at = attestation_->expires_at_ms - config_.attestation_renew_before.count();
    if (now_ms >= renew_at && renew_) {
      if (auto fresh = renew_(now_ms)) {
        attestation_ = std::move(*fresh);
        log("attestation_renewed", {{"expiresAt", attestation_->expires_at_ms}});
      } else {
        log("attestation_renew_failed", {{"code", fresh.error().wire_code()}, {"message", fresh.error().message}});
      }
    }
    if (attestation_->expires_at_ms <= now_ms) {
      give_up(Error(Errc::expired, "the session attestation expired and cannot be renewed"), out);
      out.close = true;
      return;
    }
  }
  out.frames.push_back(dump(hello_frame(now_ms)));
  awaiting_hello_ = true;
  hello_deadline_ms_ = now_ms + config_.hello_ack_timeout.count();
  log("ws_hello_sent", {});
}

bool BrokerSession::is_final_refusal(std::string_view code, bool session) noexcept {
  // Refusals that a reconnect cannot cure. A broker too old for sessions answers session_hello with
  // unknown_message_type; reconnecting would only repeat it.
  static constexpr std::array final_codes{std::string_view("revoked"), std::string_view("not_a_member"),
                                          std::string_view("banned"), std::string_view("kicked"),
                                          std::string_view("bad_signature"), std::string_view("parent_member_id_mismatch"),
                                          std::string_view("attestation_mismatch"), std::string_view("bad_session_pubkey"),
                                          std::string_view("bad_parent_pubkey"), std::string_view("ttl_too_long")};
  if (session && code == "unknown_message_type") return true;
  return std::ranges::find(final_codes, code) != final_codes.end();
}

void BrokerSession::on_hello_reply(const Json& frame, Actions& out) {
  const std::string type = str(frame, "type");
  if (type == "hello_ack") {
    awaiting_hello_ = false;
    failures_ = 0;
    last_error_.reset();
    ++stats_.connects;
    log("ws_hello_acked", {{"presenceId", str(frame, "presenceId")}, {"restored", boolean(frame, "restored", false)}});
    set_state(TransportState::open, out);
    return;
  }
  if (type == "error") {
    Error error = refusal(frame);
    const std::string code = str(frame, "code");
    log("hello_refused", {{"code", code}, {"message", error.message}});
    if (is_final_refusal(code, attestation_.has_value())) {
      give_up(std::move(error), out);
    } else {
      last_error_ = std::move(error);
      awaiting_hello_ = false;
    }
    out.close = true;
    out.close_code = 1000;
    return;
  }
  // Anything else before hello_ack (a push racing the ack cannot happen: the broker acks first) is ignored.
}

void BrokerSession::frame(std::string_view text, std::int64_t now_ms, Actions& out) {
  (void)now_ms;
  Json frame = Json::parse(text, nullptr, false);
  if (frame.is_discarded() || !frame.is_object()) {
    log("broker_frame_malformed", {{"bytes", text.size()}});
    return;
  }
  ++stats_.messages_in;
  if (awaiting_hello_) {
    on_hello_reply(frame, out);
    return;
  }
  if (state_ != TransportState::open) return;
  const std::string type = str(frame, "type");
  if (type == "push") {
    on_push(frame, out);
    return;
  }
  std::optional<std::uint64_t> request;
  if (auto it = frame.find("_reqId"); it != frame.end()) request = parse_request_key(*it);
  if (!request && type == "ack") {
    if (auto it = frame.find("id"); it != frame.end()) request = parse_request_key(*it);
  }
  if (request) {
    on_reply(frame, *request, out);
    return;
  }
  if (type == "error") log("broker_error", {{"code", str(frame, "code")}, {"message", str(frame, "message")}});
}

void BrokerSession::on_reply(const Json& frame, std::uint64_t request, Actions& out) {
  const auto it = pending_.find(request);
  if (it == pending_.end()) return;  // timed out or cancelled already
  const RequestKind kind = it->second.kind;
  pending_.erase(it);
  const std::string type = str(frame, "type");
  if (type == "error") {
    out.completions.push_back({request, fail(refusal(frame))});
    return;
  }
  const bool expected = (kind == RequestKind::send && type == "ack") ||
                        (kind == RequestKind::simple && type == "ack") ||
                        (kind == RequestKind::list_peers && type == "peers_list") ||
                        (kind == RequestKind::message_status && type == "message_status_result");
  if (!expected) {
    out.completions.push_back({request, fail(Errc::malformed, "unexpected reply type \"" + type + "\"")});
    return;
  }
  out.completions.push_back({request, frame});
}

void BrokerSession::on_push(const Json& frame, Actions& out) {
  auto message = parse_push(frame);
  if (!message) {
    log("push_malformed", {{"code", message.error().wire_code()}, {"message", message.error().message}});
    return;
  }
  out.messages.push_back(std::move(*message));
}

void BrokerSession::disconnected(std::uint16_t code, std::string_view reason, std::int64_t now_ms, Actions& out) {
  (void)now_ms;
  const bool was_open = state_ == TransportState::open;
  awaiting_hello_ = false;
  if (!was_open) ++stats_.connect_failures;
  log("ws_closed", {{"code", code}, {"reason", std::string(reason)}, {"wasOpen", was_open}});
  if (stopped()) {
    fail_all(last_error_ ? *last_error_ : Error(Errc::connection_closed, "the client stopped"), out);
    return;
  }
  if (code == 4001) {
    give_up(Error(Errc::forbidden, "kicked from the mesh (4001): not reconnecting"), out);
    return;
  }
  if (code == 4002) {
    give_up(Error(Errc::revoked, "banned or revoked (4002): not reconnecting"), out);
    return;
  }
  if (code == 1008 && is_final_refusal(reason, attestation_.has_value())) {
    auto known = errc_from_wire_name(reason);
    give_up(Error(known.value_or(Errc::forbidden), "hello refused: " + std::string(reason)), out);
    return;
  }
  fail_all(Error(Errc::connection_closed, "the broker connection closed (" + std::to_string(code) +
                                              (reason.empty() ? "" : " " + std::string(reason)) + ")"),
           out);
  ++failures_;
  if (was_open) failures_ = 1;
  set_state(TransportState::reconnecting, out);
  log("ws_reconnect_scheduled", {{"delayMs", reconnect_delay().count()}});
}

void BrokerSession::tick(std::int64_t now_ms, Actions& out) {
  if (awaiting_hello_ && now_ms >= hello_deadline_ms_) {
    awaiting_hello_ = false;
    last_error_ = Error(Errc::timed_out, "no hello_ack within " +
                                            std::to_string(config_.hello_ack_timeout.count()) + " ms");
    log("hello_ack_timeout", {});
    out.close = true;
    out.close_code = 1000;
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline_ms <= now_ms) {
      out.completions.push_back({it->first, fail(Errc::timed_out, "no reply from the broker in time")});
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void BrokerSession::stop(Actions& out) {
  if (stopped()) return;
  last_error_.reset();
  fail_all(Error(Errc::connection_closed, "the client stopped"), out);
  awaiting_hello_ = false;
  state_ = TransportState::stopped;
  out.state = TransportState::stopped;
  out.close = true;
  out.close_code = 1000;
}

Result<std::uint64_t> BrokerSession::request(RequestKind kind, Json frame, std::int64_t now_ms, Actions& out) {
  if (state_ != TransportState::open) {
    return fail(Errc::unavailable, std::string("not connected to the broker (") + std::string(to_string(state_)) + ")");
  }
  const std::uint64_t id = next_request_++;
  frame["_reqId"] = request_key(id);
  if (kind == RequestKind::send) frame["id"] = request_key(id);
  const auto timeout = kind == RequestKind::send ? config_.send_timeout : config_.request_timeout;
  pending_.emplace(id, Pending{kind, now_ms + timeout.count()});
  out.frames.push_back(dump(frame));
  return id;
}

void BrokerSession::cancel(std::uint64_t request) noexcept { pending_.erase(request); }

std::optional<std::string> BrokerSession::ack_frame(const IncomingMessage& message) const {
  if (state_ != TransportState::open || message.is_system() || message.message_id.empty()) return std::nullopt;
  Json ack{{"type", "client_ack"}, {"brokerMessageId", message.message_id}};
  if (!message.client_message_id.empty()) ack["clientMessageId"] = message.client_message_id;
  return dump(ack);
}

std::optional<std::int64_t> BrokerSession::next_deadline() const {
  std::optional<std::int64_t> earliest;
  if (awaiting_hello_) earliest = hello_deadline_ms_;
  for (const auto& [id, pending] : pending_) {
    if (!earliest || pending.deadline_ms < *earliest) earliest = pending.deadline_ms;
  }
  return earliest;
}

std::chrono::milliseconds BrokerSession::reconnect_delay() const {
  // 1, 2, 4, 8, 16, 30, 30 ... s by default, scaled by 1 ± jitter.
  return std::chrono::milliseconds(core::backoff_ms(config_.backoff_initial, config_.backoff_max,
                                                    config_.backoff_jitter, std::max(failures_, 1),
                                                    core::random_unit(config_.rng)));
}

// ---- frame readers ----

Result<IncomingMessage> parse_push(const Json& frame) {
  if (!frame.is_object() || str(frame, "type") != "push") return fail(Errc::wrong_type, "not a push frame");
  IncomingMessage m;
  m.message_id = str(frame, "messageId");
  m.mesh_id = str(frame, "meshId");
  m.sender_pubkey = str(frame, "senderPubkey");
  m.sender_member_pubkey = str(frame, "senderMemberPubkey");
  m.sender_name = str(frame, "senderName");
  m.target_spec = str(frame, "targetSpec");
  m.recipient_pubkey = str(frame, "recipientPubkey");
  m.priority = str(frame, "priority");
  if (m.priority.empty()) m.priority = "next";
  m.nonce = str(frame, "nonce");
  m.ciphertext = str(frame, "ciphertext");
  m.created_at_ms = integer(frame, "createdAt");
  m.attempt = integer(frame, "attempt");
  m.client_message_id = str(frame, "client_message_id");
  m.request_fingerprint = str(frame, "request_fingerprint");
  m.reply_to_id = str(frame, "replyToId");
  if (str(frame, "subtype") == "system") {
    m.event = str(frame, "event");
    if (m.event.empty()) return fail(Errc::missing_field, "system push without event");
    const auto data = frame.find("eventData");
    m.event_data_json = data != frame.end() && data->is_object() ? dump(*data) : "{}";
    return m;
  }
  if (m.message_id.empty()) return fail(Errc::missing_field, "push without messageId");
  if (m.sender_pubkey.empty()) return fail(Errc::missing_field, "push without senderPubkey");
  return m;
}

Result<PeerInfo> parse_peer(const Json& peer) {
  if (!peer.is_object()) return fail(Errc::wrong_type, "a peer is not an object");
  PeerInfo p;
  p.presence_id = str(peer, "presenceId");
  p.pubkey = str(peer, "pubkey");
  p.member_pubkey = str(peer, "memberPubkey");
  p.member_id = str(peer, "memberId");
  p.display_name = str(peer, "displayName");
  p.peer_role = str(peer, "peerRole");
  if (p.peer_role.empty()) p.peer_role = "session";
  p.status = str(peer, "status");
  p.summary = str(peer, "summary");
  p.visible = boolean(peer, "visible", true);
  p.online = boolean(peer, "online", true);
  p.session_id = str(peer, "sessionId");
  p.connected_at = str(peer, "connectedAt");
  p.cwd = str(peer, "cwd");
  p.hostname = str(peer, "hostname");
  p.peer_type = str(peer, "peerType");
  p.channel = str(peer, "channel");
  p.model = str(peer, "model");
  p.role = str(peer, "role");
  p.pid = integer(peer, "pid");
  if (auto groups = peer.find("groups"); groups != peer.end() && groups->is_array()) {
    for (const auto& g : *groups) {
      if (g.is_object()) p.groups.push_back({str(g, "name"), str(g, "role")});
    }
  }
  if (p.pubkey.empty()) return fail(Errc::missing_field, "peer without pubkey");
  return p;
}

Result<MessageStatus> parse_message_status(const Json& frame) {
  MessageStatus status;
  status.message_id = str(frame, "messageId");
  status.target_spec = str(frame, "targetSpec");
  status.created_at = str(frame, "createdAt");
  if (auto recipients = frame.find("recipients"); recipients != frame.end() && recipients->is_array()) {
    for (const auto& r : *recipients) {
      if (!r.is_object()) continue;
      status.recipients.push_back({str(r, "pubkey"), boolean(r, "delivered", false), str(r, "deliveredAt"),
                                   integer(r, "attempts")});
    }
  }
  return status;
}

Result<SendReceipt> parse_send_ack(const Json& frame) {
  if (!boolean(frame, "queued", false) || str(frame, "messageId").empty()) return fail(refusal(frame));
  SendReceipt receipt;
  receipt.message_id = str(frame, "messageId");
  receipt.duplicate = boolean(frame, "duplicate", false);
  receipt.recipients = integer(frame, "recipients");
  if (auto missing = frame.find("missingRecipients"); missing != frame.end() && missing->is_array()) {
    for (const auto& key : *missing) {
      if (key.is_string()) receipt.missing_recipients.push_back(key.get<std::string>());
    }
  }
  return receipt;
}

}  // namespace claudemesh::transport
