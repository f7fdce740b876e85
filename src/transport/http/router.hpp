// SPDX-License-Identifier: MIT
// Routing by method + path with `:name` path parameters ("/v1/inbox/:id"). Three kinds of route:
// ordinary handlers return a response; stream handlers write a chunked response as they go (SSE);
// upgrade handlers take over the connection (WebSocket).
#pragma once

#include "transport/http/message.hpp"
#include "transport/stream.hpp"

#include <asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh::transport::http {

/// What a handler sees.
struct Request {
  HttpRequest message;
  std::vector<std::pair<std::string, std::string>> params;  ///< path parameters, in pattern order
  std::string peer;                                         ///< "127.0.0.1:5555", "unix"
  bool over_unix = false;

  /// The path parameter `name`, or empty.
  [[nodiscard]] std::string_view param(std::string_view name) const noexcept;
};

/// A chunked response written piece by piece (Server-Sent Events and other long responses).
class ResponseStream {
 public:
  explicit ResponseStream(Stream& stream) : stream_(stream) {}
  /// Send the status line and headers (Transfer-Encoding: chunked is added).
  asio::awaitable<std::error_code> start(HttpResponse head);
  /// Send one chunk; empty data is ignored.
  asio::awaitable<std::error_code> write(std::string_view data);
  [[nodiscard]] bool started() const noexcept { return started_; }

 private:
  friend class Connection;
  Stream& stream_;
  bool started_ = false;
};

using Handler = std::function<asio::awaitable<HttpResponse>(Request&)>;
using StreamHandler = std::function<asio::awaitable<void>(Request&, ResponseStream&)>;
/// Takes over the connection: the stream and any bytes already read past the request. It runs as its own
/// coroutine after the HTTP connection has ended, so the HTTP layer holds no memory for upgraded sockets.
using UpgradeHandler = std::function<asio::awaitable<void>(Request, std::unique_ptr<Stream>, std::string leftover)>;

struct RouteOptions {
  std::optional<std::size_t> max_body_bytes;  ///< overrides the server's default body limit
};

class Router {
 public:
  struct Route {
    std::string method;
    std::vector<std::string> segments;  ///< ":name" segments capture
    RouteOptions options;
    Handler handler;
    StreamHandler stream_handler;
    UpgradeHandler upgrade_handler;
  };
  struct Match {
    const Route* route = nullptr;                               ///< null: not found or wrong method
    std::vector<std::pair<std::string, std::string>> params;
    std::vector<std::string> allowed_methods;                   ///< set when the path exists under other methods
  };

  void add(std::string method, std::string_view pattern, Handler handler, RouteOptions options = {});
  void add_stream(std::string method, std::string_view pattern, StreamHandler handler, RouteOptions options = {});
  void add_upgrade(std::string_view pattern, UpgradeHandler handler);

  [[nodiscard]] Match match(std::string_view method, std::string_view path) const;
  [[nodiscard]] const std::vector<Route>& routes() const noexcept { return routes_; }

 private:
  Route& add_route(std::string method, std::string_view pattern, RouteOptions options);
  std::vector<Route> routes_;
};

}  // namespace claudemesh::transport::http
