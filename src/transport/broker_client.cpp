// SPDX-License-Identifier: MIT
// BrokerClient: the I/O shell around BrokerSession. One run() loop owns the connection (connect, hello,
// read until closed, back off, again); a deadline loop beside it wakes the session when the hello or a
// request times out; requests wait on a per-request timer that the reply cancels. Every coroutine holds a
// shared_ptr to the state, so one that resumes after the BrokerClient was destroyed finds it intact.
#include <claudemesh/broker_client.hpp>

#include "transport/broker_session.hpp"
#include "transport/stream.hpp"
#include "transport/ws/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <map>
#include <utility>

namespace claudemesh {

using transport::Actions;
using transport::BrokerSession;
using transport::Json;
using transport::RequestKind;

std::string_view to_string(TransportState state) noexcept {
  switch (state) {
    case TransportState::idle: return "idle";
    case TransportState::connecting: return "connecting";
    case TransportState::open: return "open";
    case TransportState::reconnecting: return "reconnecting";
    case TransportState::stopped: return "stopped";
  }
  return {};
}

bool is_permanent_send_error(const Error& error) noexcept {
  switch (error.errc()) {
    case Errc::malformed:
    case Errc::wrong_type:
    case Errc::missing_field:
    case Errc::invalid_value:
    case Errc::duplicate_key:
    case Errc::payload_too_large:
    case Errc::unknown_channel:
    case Errc::invalid_target:
    case Errc::ambiguous_target:
    case Errc::unknown_target:
    case Errc::idempotency_key_reused:
    case Errc::forbidden:
    case Errc::not_a_member:
    case Errc::revoked:
    case Errc::unauthorized:
    case Errc::bad_signature:
    case Errc::unknown_message_type:
    case Errc::decrypt_failed:
    case Errc::invalid_key:
      return true;
    default:
      return false;
  }
}

namespace {

// A request waiting for its reply: the reply (or failure) lands in `result` and cancels `timer`.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& executor) : timer(executor, asio::steady_timer::time_point::max()) {}
  asio::steady_timer timer;
  std::optional<Result<Json>> result;
};

}  // namespace

struct BrokerClient::Impl : std::enable_shared_from_this<BrokerClient::Impl> {
  Impl(asio::any_io_executor ex, Identity identity, std::optional<SessionAttestation> attestation,
       AttestationSource renew, BrokerClientConfig cfg)
      : executor(std::move(ex)),
        self(std::move(identity)),
        config(std::move(cfg)),
        session(self, std::move(attestation), std::move(renew), config),
        wake(executor),
        deadline(executor) {}

  asio::any_io_executor executor;
  Identity self;
  BrokerClientConfig config;
  BrokerSession session;
  std::shared_ptr<transport::ws::WebSocket> socket;
  asio::steady_timer wake;      // the run loop's backoff sleep; stop() cancels it
  asio::steady_timer deadline;  // the deadline loop's sleep
  std::map<std::uint64_t, std::shared_ptr<Waiter>> waiters;
  std::function<void(IncomingMessage)> message_handler;
  std::function<void(TransportState)> state_handler;
  bool running = false;

  [[nodiscard]] std::int64_t now() const { return now_ms(config.clock); }

  void apply(Actions& actions) {
    if (socket) {
      for (const auto& frame : actions.frames) socket->send_text(frame);
    }
    for (auto& message : actions.messages) {
      if (message_handler) message_handler(std::move(message));
    }
    for (auto& completion : actions.completions) {
      const auto it = waiters.find(completion.request);
      if (it == waiters.end()) continue;
      it->second->result = std::move(completion.reply);
      it->second->timer.cancel();
      waiters.erase(it);
    }
    if (actions.state && state_handler) state_handler(*actions.state);
    if (actions.close && socket) socket->close(actions.close_code, actions.close_reason);
    // A new hello or request deadline may be earlier than the one the deadline loop sleeps towards.
    deadline.cancel();
  }

  asio::awaitable<void> deadline_loop() {
    auto keep = shared_from_this();
    while (running) {
      const auto due = session.next_deadline();
      const auto wait = due ? std::chrono::milliseconds(std::max<std::int64_t>(0, *due - now()))
                            : std::chrono::milliseconds(std::chrono::hours(1));
      deadline.expires_after(wait);
      std::error_code ec;
      co_await deadline.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!running) break;
      if (!ec || (due && *due <= now())) {
        Actions actions;
        session.tick(now(), actions);
        apply(actions);
      }
    }
  }

  asio::awaitable<std::shared_ptr<transport::ws::WebSocket>> open_socket() {
    transport::ws::ClientOptions options;
    options.connect_timeout = config.connect_timeout;
    options.config.ping_interval = config.ping_interval;
    options.config.stale_after = config.stale_after;
    options.config.limits.max_message_bytes = std::size_t{1} << 20;
    if (config.url.starts_with("wss://") && !config.ca_file.empty()) {
      transport::TlsClientConfig tls_config;
      tls_config.ca_file = config.ca_file;
      auto tls = transport::make_client_tls_context(tls_config);
      if (!tls) {
        Actions actions;
        session.disconnected(1006, tls.error().message, now(), actions);
        apply(actions);
        co_return nullptr;
      }
      options.tls = *tls;
    }
    const std::string url = config.url;
    auto connected = co_await transport::ws::connect_websocket(url, std::move(options));
    if (!connected) {
      if (config.log) {
        Json line{{"event", "ws_connect_failed"}, {"mesh", config.mesh_id}, {"message", connected.error().message}};
        config.log(line.dump(-1, ' ', false, Json::error_handler_t::replace));
      }
      Actions actions;
      session.disconnected(transport::ws::close_code::abnormal, connected.error().message, now(), actions);
      apply(actions);
      co_return nullptr;
    }
    co_return std::move(*connected);
  }

  asio::awaitable<void> read_until_closed() {
    while (true) {
      auto message = co_await socket->read();
      if (!message) break;
      if (message->opcode != transport::ws::Opcode::text) continue;
      Actions actions;
      session.frame(message->payload, now(), actions);
      apply(actions);
    }
    const auto info = socket->close_info();
    Actions actions;
    session.disconnected(info.code, info.reason, now(), actions);
    socket.reset();
    apply(actions);
  }

  asio::awaitable<void> run() {
    auto keep = shared_from_this();
    if (running) co_return;
    running = true;
    asio::co_spawn(executor, deadline_loop(), asio::detached);
    while (!session.stopped()) {
      {
        Actions actions;
        session.connecting(actions);
        apply(actions);
      }
      socket = co_await open_socket();
      if (socket && !session.stopped()) {
        Actions actions;
        session.connected(now(), actions);
        apply(actions);
        co_await read_until_closed();
      } else if (socket) {
        socket->close();
        socket.reset();
      }
      if (session.stopped()) break;
      wake.expires_after(session.reconnect_delay());
      std::error_code ec;
      co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    running = false;
    deadline.cancel();
  }

  void stop() {
    Actions actions;
    session.stop(actions);
    apply(actions);
    wake.cancel();
  }

  asio::awaitable<Result<Json>> call(RequestKind kind, Json frame) {
    auto keep = shared_from_this();
    Actions actions;
    auto id = session.request(kind, std::move(frame), now(), actions);
    if (!id) co_return fail(id.error());
    auto waiter = std::make_shared<Waiter>(executor);
    waiters.emplace(*id, waiter);
    apply(actions);
    std::error_code ec;
    co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!waiter->result) {
      waiters.erase(*id);
      session.cancel(*id);
      co_return fail(Errc::connection_closed, "the request was abandoned");
    }
    co_return std::move(*waiter->result);
  }

  asio::awaitable<Result<void>> simple(Json frame) {
    auto reply = co_await call(RequestKind::simple, std::move(frame));
    if (!reply) co_return fail(reply.error());
    co_return Result<void>{};
  }
};

BrokerClient::BrokerClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

BrokerClient::~BrokerClient() {
  try {
    if (impl_) impl_->stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a throwing log or state callback must not escape
  }
}

std::unique_ptr<BrokerClient> BrokerClient::for_member(asio::any_io_executor executor, Identity member,
                                                       BrokerClientConfig config) {
  auto impl = std::make_shared<Impl>(std::move(executor), std::move(member), std::nullopt, AttestationSource{},
                                     std::move(config));
  return std::unique_ptr<BrokerClient>(new BrokerClient(std::move(impl)));
}

std::unique_ptr<BrokerClient> BrokerClient::for_session(asio::any_io_executor executor, Identity session,
                                                        SessionAttestation attestation, AttestationSource renew,
                                                        BrokerClientConfig config) {
  auto impl = std::make_shared<Impl>(std::move(executor), std::move(session), std::move(attestation),
                                     std::move(renew), std::move(config));
  return std::unique_ptr<BrokerClient>(new BrokerClient(std::move(impl)));
}

asio::awaitable<void> BrokerClient::run() { return impl_->run(); }

void BrokerClient::stop() { impl_->stop(); }

asio::awaitable<Result<SendReceipt>> BrokerClient::send(OutgoingMessage message) {
  auto impl = impl_;
  Json frame{{"type", "send"},
             {"targetSpec", message.target_spec},
             {"priority", message.priority},
             {"client_message_id", message.client_message_id},
             {"request_fingerprint", message.request_fingerprint}};
  if (!message.reply_to_id.empty()) frame["replyToId"] = message.reply_to_id;
  if (message.ttl_ms) frame["ttlMs"] = *message.ttl_ms;
  Json sealed = Json::parse(message.sealed, nullptr, false);
  if (sealed.is_discarded() || !sealed.is_object()) {
    co_return fail(Errc::invalid_value, "the sealed body is not a JSON object");
  }
  for (auto& [name, value] : sealed.items()) frame[name] = std::move(value);
  auto reply = co_await impl->call(RequestKind::send, std::move(frame));
  auto receipt = reply ? transport::parse_send_ack(*reply) : Result<SendReceipt>(fail(reply.error()));
  impl->session.count_send(receipt.has_value());
  co_return receipt;
}

void BrokerClient::acknowledge(const IncomingMessage& message) {
  if (auto frame = impl_->session.ack_frame(message); frame && impl_->socket) impl_->socket->send_text(*frame);
}

asio::awaitable<Result<std::vector<PeerInfo>>> BrokerClient::peers() {
  auto impl = impl_;
  Json frame{{"type", "list_peers"}};
  auto reply = co_await impl->call(RequestKind::list_peers, std::move(frame));
  if (!reply) co_return fail(reply.error());
  std::vector<PeerInfo> peers;
  if (auto list = reply->find("peers"); list != reply->end() && list->is_array()) {
    for (const auto& entry : *list) {
      if (auto peer = transport::parse_peer(entry)) peers.push_back(std::move(*peer));
    }
  }
  co_return peers;
}

void BrokerClient::on_message(std::function<void(IncomingMessage)> handler) {
  impl_->message_handler = std::move(handler);
}

void BrokerClient::on_state(std::function<void(TransportState)> handler) { impl_->state_handler = std::move(handler); }

TransportState BrokerClient::state() const noexcept { return impl_->session.state(); }

asio::awaitable<Result<void>> BrokerClient::set_status(std::string status) {
  auto impl = impl_;
  Json frame{{"type", "set_status"}, {"status", std::move(status)}};
  co_return co_await impl->simple(std::move(frame));
}

asio::awaitable<Result<void>> BrokerClient::set_summary(std::string summary) {
  auto impl = impl_;
  Json frame{{"type", "set_summary"}, {"summary", std::move(summary)}};
  co_return co_await impl->simple(std::move(frame));
}

asio::awaitable<Result<void>> BrokerClient::set_visible(bool visible) {
  auto impl = impl_;
  Json frame{{"type", "set_visible"}, {"visible", visible}};
  co_return co_await impl->simple(std::move(frame));
}

asio::awaitable<Result<MessageStatus>> BrokerClient::message_status(std::string message_id) {
  auto impl = impl_;
  Json frame{{"type", "message_status"}, {"messageId", std::move(message_id)}};
  auto reply = co_await impl->call(RequestKind::message_status, std::move(frame));
  if (!reply) co_return fail(reply.error());
  co_return transport::parse_message_status(*reply);
}

const PublicKey& BrokerClient::public_key() const noexcept { return impl_->self.public_key(); }

std::optional<Error> BrokerClient::last_error() const { return impl_->session.last_error(); }

BrokerClientStats BrokerClient::stats() const noexcept { return impl_->session.stats(); }

}  // namespace claudemesh
