// SPDX-License-Identifier: MIT
#include "peer/mesh_link.hpp"

#include <claudemesh/fingerprint.hpp>
#include <claudemesh/target.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <utility>

namespace claudemesh::peer {
namespace {

using Json = nlohmann::json;

// "ws://h:p/ws" → "http://h:p"; "wss://h/ws" → "https://h".
std::string http_base_for(std::string_view ws_url) {
  std::string url(ws_url);
  if (url.ends_with("/ws")) url.resize(url.size() - 3);
  if (url.starts_with("wss://")) return "https://" + url.substr(6);
  if (url.starts_with("ws://")) return "http://" + url.substr(5);
  return url;
}

std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

MeshLink::MeshLink(asio::any_io_executor executor, Identity member, LinkConfig config, Outbox& outbox, Inbox& inbox)
    : executor_(std::move(executor)),
      member_(std::move(member)),
      config_(std::move(config)),
      outbox_(outbox),
      inbox_(inbox),
      wake_(executor_) {}

namespace {

BrokerClientConfig client_config(const LinkConfig& link) {
  BrokerClientConfig client = link.client;
  client.url = link.broker_url;
  client.mesh_id = link.mesh_id;
  client.member_id = link.member_id;
  client.display_name = link.display_name;
  client.ca_file = link.ca_file;
  if (!client.log) client.log = link.log;
  return client;
}

Result<void> check_config(const LinkConfig& config) {
  if (config.mesh_id.empty() || config.member_id.empty() || config.broker_url.empty()) {
    return fail(Errc::invalid_value, "a mesh link needs a mesh id, a member id and a broker URL");
  }
  return {};
}

}  // namespace

Result<std::shared_ptr<MeshLink>> MeshLink::create(const asio::any_io_executor& executor, Identity member, LinkConfig config,
                                                   Outbox& outbox, Inbox& inbox) {
  if (auto ok = check_config(config); !ok) return fail(ok.error());
  auto link = std::make_shared<MeshLink>(executor, std::move(member), std::move(config), outbox, inbox);
  auto client = BrokerClient::for_member(executor, link->member_.clone(), client_config(link->config_));
  return assemble(std::move(link), std::move(client));
}

Result<std::shared_ptr<MeshLink>> MeshLink::create_session(const asio::any_io_executor& executor, Identity member,
                                                           Identity session, SessionAttestation attestation,
                                                           AttestationSource renew, LinkConfig config, Outbox& outbox,
                                                           Inbox& inbox) {
  if (auto ok = check_config(config); !ok) return fail(ok.error());
  auto link = std::make_shared<MeshLink>(executor, std::move(member), std::move(config), outbox, inbox);
  link->session_ = std::move(session);
  auto client = BrokerClient::for_session(executor, link->session_->clone(), std::move(attestation), std::move(renew),
                                          client_config(link->config_));
  return assemble(std::move(link), std::move(client));
}

Result<std::shared_ptr<MeshLink>> MeshLink::assemble(std::shared_ptr<MeshLink> link,
                                                     std::unique_ptr<BrokerClient> client) {
  link->client_ = std::move(client);
  auto api = BrokerApi::connect(link->executor_, http_base_for(link->config_.broker_url), link->member_,
                                link->config_.ca_file);
  if (!api) return fail(api.error());
  link->api_ = std::move(*api);
  std::weak_ptr<MeshLink> weak = link;
  link->client_->on_message([weak](IncomingMessage message) {
    if (auto self = weak.lock()) self->receive(std::move(message));
  });
  link->client_->on_state([weak](TransportState state) {
    auto self = weak.lock();
    if (!self) return;
    self->wake();
    if (self->state_handler_) self->state_handler_(state);
  });
  return link;
}

void MeshLink::log(std::string_view event, nlohmann::json fields) const {
  if (!config_.log) return;
  Json line = fields.is_object() ? std::move(fields) : Json::object();
  line["event"] = event;
  line["mesh"] = config_.mesh_id;
  config_.log(dump(line));
}

asio::awaitable<void> MeshLink::run() {
  auto keep = shared_from_this();
  asio::co_spawn(executor_, client_->run(), asio::detached);
  co_await drain();
}

void MeshLink::stop() {
  stopping_ = true;
  client_->stop();
  wake_.cancel();
}

// ---- send side ----

asio::awaitable<Result<std::vector<MemberEntry>>> MeshLink::members() {
  const auto now = std::chrono::steady_clock::now();
  if (!member_cache_.empty() && now - member_cache_at_ < config_.member_cache) co_return member_cache_;
  auto fetched = co_await api_->members(config_.mesh_id);
  if (!fetched) {
    // The broker is unreachable: the last list we had is better than refusing to queue.
    if (!member_cache_.empty()) co_return member_cache_;
    co_return fail(Errc::unavailable, "cannot list the mesh's members: " + fetched.error().message);
  }
  member_cache_ = *fetched;
  member_cache_at_ = now;
  co_return std::move(*fetched);
}

// Online peers first (a session's own key wins over its member's); then the mesh's members, so a member
// who is offline — or every member, while the broker is unreachable — can still be addressed by name and
// the message waits in the outbox or at the broker.
asio::awaitable<Result<std::string>> MeshLink::resolve(Target target) {
  std::optional<Error> online_miss;
  auto listed = co_await client_->peers();
  if (listed) {
    std::vector<PeerRef> refs;
    refs.reserve(listed->size());
    for (const auto& p : *listed) refs.push_back({p.pubkey, p.display_name});
    auto found = resolve_target(target, refs);
    if (found || found.error() != Errc::unknown_target) co_return found;
    online_miss = found.error();
  }
  auto everyone = co_await members();
  if (!everyone) co_return fail(listed ? *online_miss : listed.error());
  std::vector<PeerRef> refs;
  for (const auto& m : *everyone) {
    if (m.active) refs.push_back({m.pubkey, m.display_name});
  }
  co_return resolve_target(target, refs);
}

asio::awaitable<Result<MeshLink::Sealed>> MeshLink::seal(std::string target_text, const std::string& body) {
  auto target = parse_target(target_text);
  if (!target) co_return fail(target.error());
  const auto plaintext = as_bytes(body);
  if (target->kind == TargetKind::topic) {
    co_return fail(Errc::invalid_target, "topics are not served by this broker version; send to a key, a name, "
                                         "@group or *");
  }
  if (target->kind == TargetKind::pubkey_prefix || target->kind == TargetKind::name) {
    auto resolved = co_await resolve(*target);
    if (!resolved) co_return fail(resolved.error(), "resolving \"" + target_text + "\"");
    target = Target{TargetKind::pubkey, *resolved};
  }
  if (target->kind == TargetKind::pubkey) {
    auto recipient = PublicKey::from_hex(target->value);
    if (!recipient) co_return fail(recipient.error());
    auto sealed = keys_.seal(own(), *recipient, plaintext);
    if (!sealed) co_return fail(sealed.error());
    co_return Sealed{"dm", target->value, dump(Json{{"nonce", sealed->nonce}, {"ciphertext", sealed->ciphertext}}), 1};
  }
  // Everyone, or a group: one body per member the target reaches, each sealed to that member's key, so the
  // broker never holds a key that opens them. Members offline now get theirs when they come back.
  auto everyone = co_await members();
  if (!everyone) co_return fail(everyone.error());
  const std::string self = member_.public_key().hex();
  Json bodies = Json::array();
  for (const auto& m : *everyone) {
    if (!m.active || m.pubkey == self) continue;
    if (target->kind == TargetKind::group) {
      const bool reached = std::ranges::any_of(m.groups, [&](const std::string& g) {
        return group_reaches(target->value, g);
      });
      if (!reached) continue;
    }
    auto key = PublicKey::from_hex(m.pubkey);
    if (!key) continue;
    auto sealed = keys_.seal(own(), *key, plaintext);
    if (!sealed) co_return fail(sealed.error());
    bodies.push_back(Json{{"to", m.pubkey}, {"nonce", sealed->nonce}, {"ciphertext", sealed->ciphertext}});
  }
  if (bodies.empty()) {
    co_return fail(Errc::unknown_target, "nobody else in the mesh is reached by " + target->spec());
  }
  const std::size_t count = bodies.size();
  co_return Sealed{target->kind == TargetKind::group ? "group" : "broadcast", target->spec(),
                   dump(Json{{"bodies", std::move(bodies)}}), count};
}

asio::awaitable<Result<SendResult>> MeshLink::send(std::string target, std::string body, SendOptions options) {
  auto keep = shared_from_this();
  if (options.priority != "now" && options.priority != "next" && options.priority != "low") {
    co_return fail(Errc::invalid_value, "priority must be now, next or low");
  }
  auto sealed = co_await seal(std::move(target), body);
  if (!sealed) co_return fail(sealed.error());
  auto fingerprint = request_fingerprint({.destination_kind = sealed->channel,
                                          .destination_ref = sealed->target_spec,
                                          .reply_to_id = options.reply_to_id,
                                          .priority = options.priority,
                                          .body = as_bytes(body)});
  if (!fingerprint) co_return fail(fingerprint.error());
  OutboxSend row;
  row.client_message_id = options.client_message_id;
  row.request_fingerprint = *fingerprint;
  row.mesh = config_.mesh_id;
  row.target_spec = sealed->target_spec;
  row.priority = options.priority;
  row.reply_to_id = options.reply_to_id;
  row.sender_session_pubkey = lane();
  row.sealed = sealed->sealed_json;
  row.payload_bytes = static_cast<std::int64_t>(body.size());
  auto accepted = co_await accept(std::move(row));
  if (!accepted) co_return fail(accepted.error());
  if (accepted->inserted) wake();
  co_return SendResult{std::move(*accepted), sealed->target_spec, sealed->recipients};
}

// Sends accepted in the same turn of the event loop share one outbox transaction (one sync to disk).
asio::awaitable<Result<OutboxAccept>> MeshLink::accept(OutboxSend row) {
  auto waiting = std::make_shared<PendingAccept>(std::move(row), executor_);
  accepts_.push_back(waiting);
  if (!accept_posted_) {
    accept_posted_ = true;
    asio::post(executor_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->accept_queued();
    });
  }
  if (!waiting->answer) {
    std::error_code ec;
    co_await waiting->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!waiting->answer) co_return fail(Errc::connection_closed, "the link stopped before the outbox answered");
  co_return std::move(*waiting->answer);
}

void MeshLink::accept_queued() {
  accept_posted_ = false;
  auto batch = std::move(accepts_);
  accepts_.clear();
  std::vector<OutboxSend> sends;
  sends.reserve(batch.size());
  for (const auto& waiting : batch) sends.push_back(waiting->send);
  auto answers = outbox_.accept_all(sends);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    batch[i]->answer = std::move(answers[i]);
    batch[i]->done.cancel();
  }
}

asio::awaitable<Result<std::vector<PeerInfo>>> MeshLink::peers() {
  auto keep = shared_from_this();
  co_return co_await client_->peers();
}

asio::awaitable<void> MeshLink::drain() {
  while (!stopping_) {
    std::vector<OutboxRow> rows;
    if (client_->state() == TransportState::open) {
      auto claimed = outbox_.claim(config_.mesh_id, config_.drain_window, lane());
      if (claimed) {
        rows = std::move(*claimed);
      } else {
        Json fields{{"message", claimed.error().message}};  // named: no braced temporaries in coroutines (g++ 12)
        log("drain_claim_failed", std::move(fields));
      }
    }
    if (!rows.empty()) {
      auto outstanding = std::make_shared<std::size_t>(rows.size());
      auto all_done = std::make_shared<asio::steady_timer>(executor_, asio::steady_timer::time_point::max());
      for (auto& row : rows) asio::co_spawn(executor_, send_row(std::move(row), outstanding, all_done), asio::detached);
      std::error_code ec;
      if (*outstanding > 0) co_await all_done->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    // Nothing due: sleep until the next row is due, a row is accepted, or the connection changes state.
    std::chrono::milliseconds wait = std::chrono::seconds(60);
    if (client_->state() == TransportState::open) {
      if (auto due = outbox_.next_due_ms(config_.mesh_id, lane()); due && *due) {
        wait = std::chrono::milliseconds(std::clamp<std::int64_t>(**due - now_ms(), 1, 60'000));
      }
    }
    wake_.expires_after(wait);
    std::error_code ec;
    co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> MeshLink::send_row(OutboxRow row, std::shared_ptr<std::size_t> outstanding,
                                         std::shared_ptr<asio::steady_timer> all_done) {
  auto keep = shared_from_this();
  OutgoingMessage message;
  message.target_spec = row.target_spec;
  message.priority = row.priority;
  message.client_message_id = row.client_message_id;
  message.request_fingerprint = row.request_fingerprint;
  message.reply_to_id = row.reply_to_id;
  message.sealed = row.sealed;
  auto receipt = co_await client_->send(std::move(message));
  if (receipt) {
    if (auto marked = outbox_.mark_sent(row.id, receipt->message_id); !marked) {
      Json fields{{"row", row.id}, {"message", marked.error().message}};
      log("drain_mark_failed", std::move(fields));
    }
  } else {
    const bool permanent = is_permanent_send_error(receipt.error());
    auto status = outbox_.mark_failed(row.id, receipt.error(), permanent);
    Json fields{{"row", row.id},
                {"code", receipt.error().wire_code()},
                {"message", receipt.error().message},
                {"status", status ? std::string(to_string(*status)) : std::string("unknown")}};
    log(permanent ? "drain_permanent_failure" : "drain_send_failed", std::move(fields));
  }
  if (--*outstanding == 0) all_done->cancel();
}

// ---- receive side ----

void MeshLink::receive(IncomingMessage message) {
  const std::string own_key = own().public_key().hex();
  if (session_ && (message.is_system() || message.sender_pubkey == own_key)) {
    // The member's link publishes system events; a session hears its own sends echoed.
    client_->acknowledge(message);
    return;
  }
  if (message.is_system()) {
    // Events about our own keys are noise (reference bug 10, 1.34.9): a member hearing its own connection,
    // or one of its own launched sessions, join.
    const Json data = Json::parse(message.event_data_json, nullptr, false);
    const std::string pubkey = data.is_object() ? data.value("pubkey", "") : std::string();
    if (pubkey == own_key || (key_for_ && !pubkey.empty() && key_for_(pubkey) != nullptr)) return;
    if (event_handler_) event_handler_(message.event, message.event_data_json);
    return;
  }
  InboxMessage row;
  row.client_message_id = message.client_message_id.empty() ? message.message_id : message.client_message_id;
  row.broker_message_id = message.message_id;
  row.mesh = config_.mesh_id;
  row.target_spec = message.target_spec;
  row.sender_pubkey = message.sender_pubkey;
  row.sender_member_pubkey = message.sender_member_pubkey;
  row.sender_name = message.sender_name.empty() ? message.sender_pubkey.substr(0, 8) : message.sender_name;
  row.priority = message.priority;
  row.reply_to_id = message.reply_to_id;
  row.created_at_ms = message.created_at_ms;
  row.recipient_pubkey = message.recipient_pubkey.empty() ? own_key : message.recipient_pubkey;
  // A member link may be handed a copy sealed to one of its sessions (the session had gone): open it with
  // that session's key when the daemon still knows it.
  const Identity* opener = &own();
  if (session_ || row.recipient_pubkey != own_key) {
    row.recipient_kind = "session";
    if (!session_ && key_for_) {
      if (const Identity* key = key_for_(row.recipient_pubkey)) opener = key;
    }
  } else {
    row.recipient_kind = "member";
  }
  row.received_at_ms = now_ms();
  auto sender = PublicKey::from_hex(message.sender_pubkey);
  Result<Bytes> opened = sender ? keys_.open(*opener, *sender, SealedMessage{message.nonce, message.ciphertext})
                                : Result<Bytes>(fail(sender.error()));
  if (opened) {
    row.body.assign(opened->begin(), opened->end());
  } else {
    // Kept (and acknowledged) so the user sees that something arrived, with the reason it cannot be read.
    row.meta_json = dump(Json{{"error", opened.error().wire_code()}, {"message", opened.error().message}});
    log("inbound_decrypt_failed", Json{{"messageId", message.message_id}, {"sender", message.sender_pubkey}});
  }
  // Stored with whatever else arrived in this turn of the event loop: one transaction, one sync to disk.
  received_.push_back(Received{std::move(row), std::move(message)});
  if (flush_posted_) return;
  flush_posted_ = true;
  asio::post(executor_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->store_received();
  });
}

void MeshLink::store_received() {
  flush_posted_ = false;
  std::vector<Received> batch = std::move(received_);
  received_.clear();
  std::vector<InboxMessage> rows;
  rows.reserve(batch.size());
  for (const auto& r : batch) rows.push_back(r.row);
  auto answers = inbox_.store_all(std::move(rows));
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& [row, message] = batch[i];
    const auto& stored = answers[i];
    if (!stored) {
      // Not durable: do not acknowledge, so the broker delivers it again.
      log("inbox_store_failed", Json{{"messageId", message.message_id}, {"message", stored.error().message}});
      continue;
    }
    client_->acknowledge(message);
    if (stored->inserted && message_handler_) {
      row.id = stored->id;
      message_handler_(row);
    }
  }
}

}  // namespace claudemesh::peer
