// SPDX-License-Identifier: MIT
// HTTP/1.1 client over TCP, TLS or a Unix socket (the CLI talks to the daemon's socket this way). One
// connection, reused while the server keeps it alive, re-opened when it does not; every request is
// bounded by a timeout. `stream()` reads a response body as it arrives (Server-Sent Events).
//
// Thread safety: distinct objects safe; shared objects unsafe. One request at a time per client.
#pragma once

#include "transport/http/message.hpp"
#include "transport/http/response_parser.hpp"
#include "transport/stream.hpp"

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace claudemesh::transport::http {

/// Where the server is.
struct ClientEndpoint {
  std::string host = "127.0.0.1";      ///< TCP host (also the Host header and TLS server name)
  std::uint16_t port = 80;
  std::filesystem::path unix_path;     ///< when set, connect here instead of TCP
  std::shared_ptr<asio::ssl::context> tls;  ///< when set, TLS over TCP
};

struct ClientConfig {
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds request_timeout{30'000};  ///< whole request/response exchange (not streams)
  ParserLimits limits{};
};

class HttpClient {
 public:
  HttpClient(asio::any_io_executor executor, ClientEndpoint endpoint, ClientConfig config = {});
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient();

  /// Send `request` (Host is filled in when absent) and read the whole response.
  /// Errors: `Errc::io_error` (connect, write, read, timeout), `Errc::malformed` (unparseable response).
  asio::awaitable<Result<HttpResponse>> request(HttpRequest request);

  /// Send `request` and hand each piece of the response body to `on_body` as it arrives, until the body
  /// ends, the connection drops, or `on_body` returns false. The connection is not reused afterwards.
  /// @returns the response head (status, headers).
  asio::awaitable<Result<HttpResponse>> stream(HttpRequest request, std::function<bool(std::string_view)> on_body);

  /// Drop the connection (an in-progress request fails with io_error).
  void close() noexcept;

 private:
  asio::awaitable<Result<void>> ensure_connected();
  asio::awaitable<Result<HttpResponse>> exchange(HttpRequest request, std::function<bool(std::string_view)>* on_body);

  asio::any_io_executor executor_;
  ClientEndpoint endpoint_;
  ClientConfig config_;
  std::unique_ptr<Stream> stream_;
};

}  // namespace claudemesh::transport::http
