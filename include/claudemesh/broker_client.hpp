// SPDX-License-Identifier: MIT
/// @file broker_client.hpp
/// A peer's connection to the broker: the first `PeerTransport`.
///
/// One long-running `run()` connects (`ws://` or `wss://`), says `hello` (a member's control-plane
/// connection) or `session_hello` (a launched session vouched for by its member), keeps the connection
/// alive (ping every 30 s; a connection silent for 75 s is dropped), and reconnects with capped exponential
/// backoff and jitter, saying hello again each time. Requests — `send`, `peers`, status updates — are issued
/// beside it and fail fast with `Errc::unavailable` while it is not connected; a reconnect fails the
/// requests in flight with `Errc::connection_closed`. A session's attestation is renewed (through the
/// `renew` callback) before it expires. Closes that say "do not come back" (4001 kicked, 4002 banned, a
/// hello refused as `revoked` or `not_a_member`, `unknown_message_type` from a broker without sessions) stop
/// the client: `state()` becomes `stopped` and `last_error()` says why.
///
/// The protocol logic is a sans-io state machine (src/transport/broker_session.hpp), unit-tested without
/// sockets; this class only drives it with a WebSocket and timers.
///
/// @code
/// auto client = BrokerClient::for_member(io.get_executor(), std::move(member),
///                                        {.url = "wss://mesh.example/ws", .mesh_id = mesh, .member_id = id});
/// client->on_message([&](IncomingMessage m) { ... store, then client->acknowledge(m); });
/// asio::co_spawn(io, client->run(), asio::detached);
/// auto receipt = co_await client->send(std::move(message));
/// @endcode
///
/// @par Thread safety
/// Everything runs on the executor given at construction; call every member function from it.
/// Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/peer_transport.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/signatures.hpp>
#include <claudemesh/system.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

struct BrokerClientConfig {
  std::string url;                 ///< `ws://host:port/ws` or `wss://host/ws`
  std::string mesh_id;
  std::string member_id;           ///< the member's id in the mesh (a session: its parent's)
  std::string display_name;
  std::string session_id;          ///< identifies this connection across reconnects; empty: a fresh ULID
  std::string peer_type = "ai";
  std::string channel;             ///< empty: "claudemesh-daemon" for members, "claudemesh-session" for sessions
  std::string cwd;
  std::string hostname;
  std::int64_t pid = 0;
  std::vector<PeerInfo::Group> groups;
  std::string role;                ///< sessions only
  std::string ca_file;             ///< `wss://`: trust this CA file (self-hosted broker); empty: the system store
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds hello_ack_timeout{5'000};
  std::chrono::milliseconds send_timeout{15'000};     ///< for the broker's `ack`
  std::chrono::milliseconds request_timeout{5'000};   ///< other requests
  std::chrono::milliseconds ping_interval{30'000};
  std::chrono::milliseconds stale_after{75'000};
  std::chrono::milliseconds backoff_initial{1'000};   ///< 1, 2, 4, 8, 16, 30, 30 ... s
  std::chrono::milliseconds backoff_max{30'000};
  double backoff_jitter = 0.25;                        ///< each delay scaled by 1 ± this
  std::chrono::milliseconds attestation_renew_before{std::chrono::hours(1)};
  std::function<void(std::string_view)> log;           ///< one JSON object per call; empty: silent
  Clock clock;
  RandomSource rng;
};

/// Mints a fresh attestation for a session key (signed by its parent member) at `now_ms`.
using AttestationSource = std::function<Result<SessionAttestation>(std::int64_t now_ms)>;

/// Delivery state of one message the caller sent (`message_status()`).
struct MessageStatus {
  struct Recipient {
    std::string pubkey;
    bool delivered = false;
    std::string delivered_at;  ///< ISO 8601, when delivered
    std::int64_t attempts = 0;
  };
  std::string message_id;
  std::string target_spec;
  std::string created_at;
  std::vector<Recipient> recipients;
};

/// Counters since construction.
struct BrokerClientStats {
  std::uint64_t connects = 0;         ///< hello_acks received
  std::uint64_t connect_failures = 0; ///< attempts that did not reach hello_ack
  std::uint64_t messages_in = 0;
  std::uint64_t sends = 0;
  std::uint64_t send_failures = 0;
};

class CLAUDEMESH_API BrokerClient final : public PeerTransport {
 public:
  /// A member's control-plane connection (`hello`), e.g. a daemon's.
  static std::unique_ptr<BrokerClient> for_member(asio::any_io_executor executor, Identity member,
                                                  BrokerClientConfig config);

  /// A session's connection (`session_hello`). `attestation` vouches for `session`; `renew` mints a new one
  /// when the current one is within `attestation_renew_before` of its expiry (empty: no renewal, and a
  /// reconnect after expiry stops the client with `expired`).
  static std::unique_ptr<BrokerClient> for_session(asio::any_io_executor executor, Identity session,
                                                   SessionAttestation attestation, AttestationSource renew,
                                                   BrokerClientConfig config);

  BrokerClient(const BrokerClient&) = delete;
  BrokerClient& operator=(const BrokerClient&) = delete;
  ~BrokerClient() override;

  /// Connect, keep connected, reconnect. Returns after `stop()` or a permanent refusal. Spawn it once.
  asio::awaitable<void> run();

  /// Close the connection (1000) and make `run()` return. Pending requests fail with `connection_closed`.
  void stop();

  // PeerTransport
  asio::awaitable<Result<SendReceipt>> send(OutgoingMessage message) override;
  void acknowledge(const IncomingMessage& message) override;
  asio::awaitable<Result<std::vector<PeerInfo>>> peers() override;
  void on_message(std::function<void(IncomingMessage)> handler) override;
  void on_state(std::function<void(TransportState)> handler) override;
  [[nodiscard]] TransportState state() const noexcept override;

  /// `set_status`: "idle", "working" or "dnd".
  asio::awaitable<Result<void>> set_status(std::string status);
  /// `set_summary`: at most 1 KiB.
  asio::awaitable<Result<void>> set_summary(std::string summary);
  /// `set_visible`.
  asio::awaitable<Result<void>> set_visible(bool visible);
  /// `message_status` of a message this member sent.
  asio::awaitable<Result<MessageStatus>> message_status(std::string message_id);

  /// The key this connection speaks for (the session key for a session).
  [[nodiscard]] const PublicKey& public_key() const noexcept;
  /// Why the client stopped or last failed to connect; empty while healthy.
  [[nodiscard]] std::optional<Error> last_error() const;
  [[nodiscard]] BrokerClientStats stats() const noexcept;

  struct Impl;

 private:
  explicit BrokerClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // shared with the coroutines in flight
};

}  // namespace claudemesh
