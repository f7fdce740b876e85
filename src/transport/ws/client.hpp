// SPDX-License-Identifier: MIT
// Opening WebSocket connections: connect_websocket() for clients (ws:// and wss://, certificate
// verification on by default) and accept_websocket() for a server route that received an upgrade.
#pragma once

#include "transport/http/message.hpp"
#include "transport/ws/websocket.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace claudemesh::transport::ws {

struct ClientOptions {
  std::shared_ptr<asio::ssl::context> tls;              ///< wss:// only; null: system trust store, verification on
  std::chrono::milliseconds connect_timeout{10'000};    ///< TCP + TLS + upgrade
  WebSocketConfig config{};
  http::Headers extra_headers;                          ///< e.g. Origin, Authorization
};

/// Connect, upgrade and start a client WebSocket.
/// @returns `Errc::invalid_value` (bad URL), `Errc::io_error` (connect/TLS), `Errc::timed_out`,
/// `Errc::malformed` (the server's answer is not a valid upgrade).
asio::awaitable<Result<std::shared_ptr<WebSocket>>> connect_websocket(std::string url, ClientOptions options = {});

/// Complete a server-side upgrade: validate the request, answer 101 (or the error status, then close), and
/// start the connection.
asio::awaitable<Result<std::shared_ptr<WebSocket>>> accept_websocket(http::HttpRequest request,
                                                                     std::unique_ptr<Stream> stream,
                                                                     std::string leftover, WebSocketConfig config);

}  // namespace claudemesh::transport::ws
