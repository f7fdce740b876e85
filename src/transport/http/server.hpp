// SPDX-License-Identifier: MIT
// HTTP/1.1 server over any Listener (TCP, TLS, Unix socket): keep-alive, pipelining, Content-Length and
// chunked request bodies, streaming responses and protocol upgrades, with limits that answer with a
// specific status instead of failing silently:
//   header section too large -> 431, body too large -> 413, malformed -> 400, too many connections -> 503,
//   too many requests in flight -> 429, a request that does not arrive in time (slow loris) -> closed,
//   an idle keep-alive connection -> closed.
//
// Thread safety: distinct objects safe; shared objects unsafe. Run everything on one executor (or strand).
#pragma once

#include "transport/http/request_parser.hpp"
#include "transport/http/router.hpp"
#include "transport/stream.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string_view>
#include <vector>

namespace claudemesh::transport::http {

/// How long the accept loop waits after a failed accept (descriptor or memory exhaustion) before retrying.
inline constexpr std::chrono::milliseconds accept_error_pause{50};

struct ServerConfig {
  ParserLimits limits{};                                        ///< header/body/target limits
  std::chrono::milliseconds request_timeout{10'000};            ///< first byte to complete request
  std::chrono::milliseconds idle_timeout{60'000};               ///< keep-alive connection with no request
  std::chrono::milliseconds handshake_timeout{10'000};          ///< TLS handshake
  std::chrono::milliseconds write_timeout{30'000};              ///< a response that cannot be written
  std::size_t max_connections = 1024;                           ///< more are answered 503 and closed
  std::size_t max_in_flight = 256;                              ///< more concurrent requests are answered 429
  std::function<void(std::string_view)> log;                    ///< optional diagnostics
};

/// Counters, for metrics and tests.
struct ServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_rejected = 0;  ///< over max_connections
  std::uint64_t accept_errors = 0;         ///< accept() failed (EMFILE, ENOBUFS...); each pauses accepting briefly
  std::uint64_t requests = 0;
  std::uint64_t requests_rejected = 0;     ///< 4xx/5xx produced by the server itself (limits, parse errors)
  std::uint64_t timeouts = 0;
  std::size_t open_connections = 0;
  std::size_t in_flight = 0;
};

class Connection;

class Server {
 public:
  Server(asio::any_io_executor executor, Router router, ServerConfig config = {});
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  /// Start accepting on `listener` (the server keeps it). May be called for several listeners.
  void serve(Listener listener);
  /// Close the listeners and every open connection. Upgraded connections belong to their handlers.
  void stop();

  [[nodiscard]] const ServerStats& stats() const noexcept { return stats_; }
  [[nodiscard]] const ServerConfig& config() const noexcept { return config_; }
  [[nodiscard]] const Router& router() const noexcept { return router_; }

 private:
  friend class Connection;
  asio::awaitable<void> accept_loop(Listener* listener);
  void log(std::string_view message) const;

  asio::any_io_executor executor_;
  Router router_;
  ServerConfig config_;
  ServerStats stats_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::list<std::shared_ptr<Connection>> connections_;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // coroutines check it after the server is gone
};

}  // namespace claudemesh::transport::http
