// SPDX-License-Identifier: MIT
/// @file peer_transport.hpp
/// The interface through which sealed messages leave a peer and arrive at it.
///
/// A transport moves envelopes whose bodies are already encrypted; it never sees plaintext. Its first
/// implementation is `BrokerClient` (a WebSocket to the broker, which stores and forwards); a direct
/// peer-to-peer transport can implement the same interface. Delivery into a peer is at-least-once: a
/// received message must be stored durably, then `acknowledge()`d; an unacknowledged message comes again.
///
/// @par Thread safety
/// Implementations run on one executor; call them from it. Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

/// One message to send, already resolved to a wire target and sealed.
struct OutgoingMessage {
  std::string target_spec;           ///< 64-hex key, `*`, `@group` or `#topic`
  std::string priority = "next";     ///< "now", "next" or "low"
  std::string client_message_id;     ///< the idempotency key (required)
  std::string request_fingerprint;   ///< 64 lowercase hex
  std::string reply_to_id;           ///< empty when absent
  std::string sealed;                ///< JSON object text: `{"nonce","ciphertext"}` or `{"bodies":[...]}`
  std::optional<std::int64_t> ttl_ms;  ///< how long undelivered copies are kept; empty: the broker's default
};

/// The transport took responsibility for a message.
struct SendReceipt {
  std::string message_id;                       ///< the broker's (or transport's) id
  bool duplicate = false;                       ///< the id was already accepted with this fingerprint
  std::int64_t recipients = 0;                  ///< copies queued
  std::vector<std::string> missing_recipients;  ///< reached keys the body did not cover
};

/// A message (or a system event) that arrived.
struct IncomingMessage {
  std::string message_id;            ///< the broker's id
  std::string mesh_id;
  std::string sender_pubkey;         ///< the sending key (a session's or a member's); "system" for events
  std::string sender_member_pubkey;
  std::string sender_name;
  std::string target_spec;           ///< as the sender addressed it
  std::string recipient_pubkey;      ///< the key this copy was delivered for
  std::string priority = "next";
  std::string nonce;                 ///< base64
  std::string ciphertext;            ///< base64
  std::int64_t created_at_ms = 0;
  std::int64_t attempt = 0;          ///< how many times this copy was pushed
  std::string client_message_id;
  std::string request_fingerprint;
  std::string reply_to_id;
  std::string event;                 ///< system events only: "peer_joined", "peer_left", ...
  std::string event_data_json;       ///< system events only: the event's data as JSON object text

  [[nodiscard]] bool is_system() const noexcept { return !event.empty(); }
};

/// A peer as the mesh lists it.
struct PeerInfo {
  struct Group {
    std::string name;
    std::string role;
  };
  std::string presence_id;
  std::string pubkey;         ///< the session key for a session, else the member key
  std::string member_pubkey;
  std::string member_id;
  std::string display_name;
  std::string peer_role;      ///< "session" or "control-plane"
  std::string status;         ///< "idle", "working", "dnd"
  std::string summary;
  std::vector<Group> groups;
  bool visible = true;
  bool online = true;         ///< false while in its reconnect grace
  std::string session_id;
  std::string connected_at;   ///< ISO 8601
  std::string cwd, hostname, peer_type, channel, model;
  std::string role;           ///< what a launched session said it does (e.g. "reviewer"); empty when unset
  std::int64_t pid = 0;
};

/// Connection state, as reported to `on_state`.
enum class TransportState { idle, connecting, open, reconnecting, stopped };

/// "idle", "connecting", "open", "reconnecting", "stopped".
CLAUDEMESH_API std::string_view to_string(TransportState state) noexcept;

/// Whether a send that failed with `error` will fail again however often it is retried (the outbox then
/// gives up on the message): refusals of the message itself (`malformed`, `invalid_value`,
/// `payload_too_large`, `unknown_target`, `invalid_target`, `idempotency_key_reused`, ...) and of the
/// sender (`forbidden`, `not_a_member`, `revoked`, `unauthorized`). Timeouts, closed connections, rate
/// limits, capacity, `unavailable` and I/O errors are transient.
CLAUDEMESH_API bool is_permanent_send_error(const Error& error) noexcept;

class CLAUDEMESH_API PeerTransport {
 public:
  virtual ~PeerTransport() = default;

  /// Hand one message to the transport. Completes when the transport has it durably (the broker's ack).
  /// @returns the receipt, or the refusal (`is_permanent_send_error()` tells whether to retry);
  ///   `Errc::unavailable` at once when not connected (never parks until a reconnect).
  virtual asio::awaitable<Result<SendReceipt>> send(OutgoingMessage message) = 0;

  /// Tell the sender side a received message is stored (at-least-once delivery ends here). Best effort:
  /// if the connection is down the message is simply delivered again later.
  virtual void acknowledge(const IncomingMessage& message) = 0;

  /// The peers currently in the mesh. @returns `Errc::unavailable` when not connected, `Errc::timed_out`.
  virtual asio::awaitable<Result<std::vector<PeerInfo>>> peers() = 0;

  /// Called for every received message and system event, on the transport's executor.
  virtual void on_message(std::function<void(IncomingMessage)> handler) = 0;

  /// Called whenever the connection state changes.
  virtual void on_state(std::function<void(TransportState)> handler) = 0;

  [[nodiscard]] virtual TransportState state() const noexcept = 0;
};

}  // namespace claudemesh
