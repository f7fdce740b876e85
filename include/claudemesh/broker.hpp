// SPDX-License-Identifier: MIT
/// @file broker.hpp
/// The claudemesh broker, embeddable: meshes and members (HTTP API), authenticated presence and durable
/// at-least-once delivery of ciphertext it cannot read (WebSocket at `/ws`). docs/protocol.md §7–§8 is the
/// protocol it speaks; `claudemesh-broker` is a thin main around it.
///
/// @par Threading
/// The broker runs on the executor it is given, which must not run its handlers concurrently (an
/// `io_context` run by one thread, or a strand). Storage runs on one worker thread the broker owns, so the
/// network loop never waits on disk. All member functions must be called on the broker's executor.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

struct BrokerConfig {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 7900;  ///< 0 picks a free port (see Broker::port())
  std::filesystem::path data_dir;    ///< SQLite database directory (created 0700); empty: in memory (tests)
  std::filesystem::path tls_cert;    ///< PEM chain; with `tls_key`, serve HTTPS/WSS
  std::filesystem::path tls_key;
  /// argon2id hashes (libsodium encoded form). Non-empty: creating a mesh needs one of these tokens.
  std::vector<std::string> admin_token_hashes;
  std::string public_url;  ///< base of invite URLs ("https://broker.example"); empty: from the listen address

  std::size_t max_connections_per_mesh = 1000;
  std::size_t max_connections = 20'000;
  std::size_t max_frame_bytes = std::size_t{256} * 1024;   ///< larger WebSocket messages: close 1009
  std::size_t max_payload_bytes = std::size_t{64} * 1024;  ///< each ciphertext; larger: payload_too_large
  double rate_burst = 10;                     ///< per-member token bucket
  double rate_per_minute = 60;

  std::chrono::milliseconds lease{30'000};              ///< a pushed copy is re-pushed if not acked by then
  std::chrono::milliseconds grace{90'000};              ///< presence kept after a close, for a silent reattach
  std::chrono::milliseconds redeliver_interval{5'000};  ///< sweep for expired leases
  std::chrono::milliseconds max_hold{600'000};          ///< next/low copies never wait longer than this
  std::chrono::milliseconds message_ttl{7LL * 24 * 3600 * 1000};  ///< default and maximum copy lifetime
  std::chrono::milliseconds ping_interval{30'000};
  std::chrono::milliseconds stale_after{75'000};
  bool full_sync = true;  ///< fsync every commit (group-committed)

  /// One JSON object per line (without the newline); optional.
  std::function<void(std::string_view)> log;
};

/// Counters for metrics and tests (a snapshot).
struct BrokerStats {
  std::uint64_t connections_open = 0;
  std::uint64_t presences = 0;  ///< online and in grace
  std::uint64_t messages_accepted = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t pushes = 0;
  std::uint64_t redeliveries = 0;  ///< pushes with attempt > 1
  std::uint64_t acks = 0;
  std::uint64_t rate_limited = 0;
  std::uint64_t hello_refused = 0;
};

class CLAUDEMESH_API Broker {
 public:
  /// Opens storage and prepares the routes; nothing listens until start().
  static Result<std::unique_ptr<Broker>> open(asio::any_io_executor executor, BrokerConfig config);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  /// Listen and serve. @returns `io_error` if the address cannot be bound.
  Result<void> start();
  /// Graceful stop: stop accepting, close every WebSocket with 1001, let storage finish, then `done` runs
  /// (on the broker's executor). Idempotent.
  void stop(std::function<void()> done = {});

  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] BrokerStats stats() const;
  /// Prometheus text exposition of the broker's metrics.
  [[nodiscard]] std::string metrics_text() const;

  class Impl;

 private:
  explicit Broker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace claudemesh
