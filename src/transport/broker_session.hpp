// SPDX-License-Identifier: MIT
// The broker client's protocol, sans-io: what to say on connect, what each incoming frame means, which
// request a reply completes, when a request or the hello times out, how long to wait before reconnecting,
// and which refusals end the client for good. It consumes events (connected, a frame, closed, the time)
// and fills an `Actions` with what the I/O shell must do. Clock and randomness are injected; there are no
// sockets and no timers here, so every rule is unit-tested step by step (tests/unit/transport/).
#pragma once

#include <claudemesh/broker_client.hpp>
#include <claudemesh/ids.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh::transport {

using Json = nlohmann::json;

/// What a request expects back.
enum class RequestKind {
  send,            ///< `ack` with a messageId (or a refusal)
  list_peers,      ///< `peers_list`
  message_status,  ///< `message_status_result`
  simple,          ///< a plain `ack`
};

/// One reply to a request: the reply frame, or why there is none.
struct Completion {
  std::uint64_t request = 0;
  Result<Json> reply;
};

/// What the shell must do after an event, in this order: write `frames`, deliver `messages`, complete
/// `completions`, report `state`, and finally close the connection when `close` is set.
struct Actions {
  std::vector<std::string> frames;
  std::vector<IncomingMessage> messages;
  std::vector<Completion> completions;
  std::optional<TransportState> state;
  bool close = false;
  std::uint16_t close_code = 1000;
  std::string close_reason;
};

class BrokerSession {
 public:
  /// A member connection when `attestation` is empty, else a session connection.
  BrokerSession(const Identity& self, std::optional<SessionAttestation> attestation, AttestationSource renew,
                const BrokerClientConfig& config);

  // ---- connection lifecycle ----
  /// A connection attempt begins.
  void connecting(Actions& out);
  /// The WebSocket is up: send the hello (renewing the attestation first if it is due).
  void connected(std::int64_t now_ms, Actions& out);
  /// A text frame arrived.
  void frame(std::string_view text, std::int64_t now_ms, Actions& out);
  /// The connection ended (or an attempt failed before hello_ack: code 1006 and the error).
  void disconnected(std::uint16_t code, std::string_view reason, std::int64_t now_ms, Actions& out);
  /// Time passed: expire the hello and requests whose deadline is at or before `now_ms`.
  void tick(std::int64_t now_ms, Actions& out);
  /// The owner stops the client.
  void stop(Actions& out);

  // ---- requests ----
  /// Start a request: stamps `_reqId` (and `id` for sends) on `frame` and queues it.
  /// @returns its id, or `Errc::unavailable` when the connection is not open.
  Result<std::uint64_t> request(RequestKind kind, Json frame, std::int64_t now_ms, Actions& out);
  /// Count a send's outcome in `stats()`.
  void count_send(bool ok) noexcept {
    ++stats_.sends;
    if (!ok) ++stats_.send_failures;
  }
  /// Forget a request whose caller went away.
  void cancel(std::uint64_t request) noexcept;
  /// The `client_ack` frame for a received message, or nothing when the connection is not open.
  [[nodiscard]] std::optional<std::string> ack_frame(const IncomingMessage& message) const;

  // ---- what the shell asks ----
  [[nodiscard]] TransportState state() const noexcept { return state_; }
  [[nodiscard]] bool stopped() const noexcept { return state_ == TransportState::stopped; }
  /// The earliest hello or request deadline, if any.
  [[nodiscard]] std::optional<std::int64_t> next_deadline() const;
  /// How long to wait before the next connection attempt (grows with consecutive failures, jittered).
  [[nodiscard]] std::chrono::milliseconds reconnect_delay() const;
  [[nodiscard]] const std::optional<Error>& last_error() const noexcept { return last_error_; }
  [[nodiscard]] const BrokerClientStats& stats() const noexcept { return stats_; }
  [[nodiscard]] const std::string& session_id() const noexcept { return session_id_; }
  [[nodiscard]] std::size_t pending_requests() const noexcept { return pending_.size(); }

  /// Whether a refusal with this wire code means "do not reconnect".
  static bool is_final_refusal(std::string_view code, bool session) noexcept;

 private:
  struct Pending {
    RequestKind kind;
    std::int64_t deadline_ms;
  };
  void set_state(TransportState state, Actions& out);
  void fail_all(const Error& error, Actions& out);
  void give_up(Error error, Actions& out);
  Json hello_frame(std::int64_t now_ms);
  void on_hello_reply(const Json& frame, Actions& out);
  void on_reply(const Json& frame, std::uint64_t request, Actions& out);
  void on_push(const Json& frame, Actions& out);
  void log(std::string_view event, Json fields) const;

  const Identity& self_;
  std::optional<SessionAttestation> attestation_;
  AttestationSource renew_;
  BrokerClientConfig config_;
  std::string session_id_;
  TransportState state_ = TransportState::idle;
  bool awaiting_hello_ = false;
  std::int64_t hello_deadline_ms_ = 0;
  std::uint64_t next_request_ = 1;
  std::map<std::uint64_t, Pending> pending_;
  int failures_ = 0;  // consecutive attempts that did not reach hello_ack
  std::optional<Error> last_error_;
  BrokerClientStats stats_;
};

/// Reads a `push` frame. @returns `Errc::wrong_type`/`missing_field` for a frame that is not one.
Result<IncomingMessage> parse_push(const Json& frame);
/// Reads one entry of `peers_list.peers`.
Result<PeerInfo> parse_peer(const Json& peer);
/// Reads a `message_status_result`.
Result<MessageStatus> parse_message_status(const Json& frame);
/// Reads a send `ack`: a receipt, or the broker's refusal as an error with its code.
Result<SendReceipt> parse_send_ack(const Json& frame);

}  // namespace claudemesh::transport
