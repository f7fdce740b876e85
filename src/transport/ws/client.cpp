// SPDX-License-Identifier: MIT
#include "transport/ws/client.hpp"

#include "transport/deadline.hpp"
#include "transport/http/response_parser.hpp"
#include "transport/http/serializer.hpp"
#include "transport/url.hpp"
#include "transport/ws/handshake.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/this_coro.hpp>

#include <array>

namespace claudemesh::transport::ws {

asio::awaitable<Result<std::shared_ptr<WebSocket>>> connect_websocket(std::string url_text, ClientOptions options) {
  auto url = parse_url(url_text);
  if (!url) co_return fail(url.error());
  if (url->scheme != "ws" && url->scheme != "wss") {
    co_return fail(Errc::invalid_value, "a WebSocket URL starts with ws:// or wss://");
  }
  auto tls = options.tls;
  if (url->tls() && !tls) {
    auto context = make_client_tls_context({});
    if (!context) co_return fail(context.error());
    tls = *context;
  }
  if (!url->tls()) tls = nullptr;
  const auto started = std::chrono::steady_clock::now();
  auto connected = co_await connect_tcp(url->host, url->port, tls, options.connect_timeout);
  if (!connected) co_return fail(connected.error());
  std::unique_ptr<Stream> stream = std::move(*connected);

  // The upgrade exchange gets what is left of the connect timeout.
  auto executor = co_await asio::this_coro::executor;
  Deadline deadline(executor);
  deadline.arm(options.connect_timeout - (std::chrono::steady_clock::now() - started));
  Stream* raw = stream.get();
  // ~Deadline stops the watchdog on every exit path.
  asio::co_spawn(executor, deadline.watch([raw] { raw->close(); }), asio::detached);

  const std::string key = make_client_key();
  http::HttpRequest request = make_upgrade_request(url->host_header(), url->target, key);
  for (const auto& [name, value] : options.extra_headers.fields()) request.headers.add(name, value);
  const std::string bytes = http::serialize(request);
  if (auto ec = co_await stream->write(asio::buffer(bytes)); ec) {
    co_return fail(deadline.expired() ? Errc::timed_out : Errc::io_error, "sending the upgrade request: " + ec.message());
  }
  http::ResponseParser parser;
  parser.expect_response_to("GET");
  std::array<char, 4096> buffer{};
  std::string leftover;
  while (parser.state() == http::ResponseParser::State::need_more) {
    auto [ec, n] = co_await stream->read_some(asio::buffer(buffer));
    if (ec) {
      co_return fail(deadline.expired() ? Errc::timed_out : Errc::io_error,
                     "waiting for the upgrade response: " + ec.message());
    }
    const std::size_t used = parser.feed(std::span<const char>(buffer.data(), n));
    if (parser.state() != http::ResponseParser::State::need_more) leftover.assign(buffer.data() + used, n - used);
  }
  if (parser.state() == http::ResponseParser::State::error) {
    co_return fail(Errc::malformed, "bad upgrade response: " + parser.error().message);
  }
  if (auto valid = validate_upgrade_response(parser.response(), key); !valid) co_return fail(valid.error());
  auto socket = std::make_shared<WebSocket>(std::move(stream), Role::client, std::move(options.config),
                                            std::move(leftover));
  socket->start();
  co_return socket;
}

asio::awaitable<Result<std::shared_ptr<WebSocket>>> accept_websocket(http::HttpRequest request,
                                                                     std::unique_ptr<Stream> stream,
                                                                     std::string leftover, WebSocketConfig config) {
  auto key = validate_upgrade_request(request);
  if (!key) {
    http::HttpResponse response = make_upgrade_error_response(key.error());
    response.keep_alive = false;
    const std::string bytes = http::serialize(response);
    co_await stream->write(asio::buffer(bytes));
    co_await stream->graceful_close();
    co_return fail(Errc::malformed, "websocket upgrade refused: " + key.error().message);
  }
  const std::string bytes = http::serialize(make_upgrade_response(*key));
  if (auto ec = co_await stream->write(asio::buffer(bytes)); ec) {
    co_return fail(Errc::io_error, "sending the upgrade response: " + ec.message());
  }
  auto socket = std::make_shared<WebSocket>(std::move(stream), Role::server, std::move(config), std::move(leftover));
  socket->start();
  co_return socket;
}

}  // namespace claudemesh::transport::ws
