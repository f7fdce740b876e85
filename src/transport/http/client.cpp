// SPDX-License-Identifier: MIT
#include "transport/http/client.hpp"

#include "transport/deadline.hpp"
#include "transport/http/serializer.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <array>

namespace claudemesh::transport::http {

HttpClient::HttpClient(asio::any_io_executor executor, ClientEndpoint endpoint, ClientConfig config)
    : executor_(std::move(executor)), endpoint_(std::move(endpoint)), config_(config) {}

HttpClient::~HttpClient() { close(); }

void HttpClient::close() noexcept {
  if (stream_) stream_->close();
  stream_.reset();
}

asio::awaitable<Result<void>> HttpClient::ensure_connected() {
  if (stream_ && stream_->is_open()) co_return Result<void>{};
  // Plain if/else, not a conditional expression: g++ 12 miscompiles co_await inside ?: operands.
  if (endpoint_.unix_path.empty()) {
    auto connected = co_await connect_tcp(endpoint_.host, endpoint_.port, endpoint_.tls, config_.connect_timeout);
    if (!connected) co_return fail(connected.error());
    stream_ = std::move(*connected);
  } else {
    auto connected = co_await connect_unix(endpoint_.unix_path, config_.connect_timeout);
    if (!connected) co_return fail(connected.error());
    stream_ = std::move(*connected);
  }
  co_return Result<void>{};
}

asio::awaitable<Result<HttpResponse>> HttpClient::request(HttpRequest request) {
  // A kept-alive connection may have been closed by the server meanwhile; a request that fails before
  // any response byte arrived on a reused connection is retried once on a fresh one. Only idempotent
  // methods are retried, since the server may have acted on the first attempt.
  const bool reused = stream_ && stream_->is_open();
  const bool idempotent = request.method == "GET" || request.method == "HEAD" || request.method == "OPTIONS";
  auto first = co_await exchange(request, nullptr);
  if (first || !reused || !idempotent || first.error().errc() != Errc::io_error) co_return first;
  close();
  co_return co_await exchange(std::move(request), nullptr);
}

asio::awaitable<Result<HttpResponse>> HttpClient::stream(HttpRequest request,
                                                         std::function<bool(std::string_view)> on_body) {
  auto result = co_await exchange(std::move(request), &on_body);
  close();
  co_return result;
}

asio::awaitable<Result<HttpResponse>> HttpClient::exchange(HttpRequest request,
                                                           std::function<bool(std::string_view)>* on_body) {
  if (auto connected = co_await ensure_connected(); !connected) co_return fail(connected.error());
  if (!request.headers.contains("Host")) {
    request.headers.set("Host", endpoint_.unix_path.empty() ? endpoint_.host + ":" + std::to_string(endpoint_.port)
                                                            : std::string("localhost"));
  }
  Deadline deadline(executor_);
  deadline.arm(config_.request_timeout);
  Stream* stream = stream_.get();
  // ~Deadline stops the watchdog on every exit path.
  asio::co_spawn(executor_, deadline.watch([stream] { stream->close(); }), asio::detached);

  const std::string bytes = serialize(request);
  if (auto ec = co_await stream_->write(asio::buffer(bytes)); ec) {
    close();
    co_return fail(Errc::io_error, "sending request: " + ec.message());
  }
  ResponseParser parser(config_.limits);
  parser.expect_response_to(request.method);
  if (on_body) {
    parser.set_streaming(true);
    deadline.disarm();  // a stream lasts as long as it lasts; the server sends heartbeats
  }
  std::array<char, 8192> buffer{};
  bool head_delivered = false;
  while (true) {
    auto [ec, n] = co_await stream_->read_some(asio::buffer(buffer));
    if (ec == asio::error::eof) {
      parser.finish();
    } else if (ec) {
      close();
      co_return fail(Errc::io_error, deadline.expired() ? "request timed out" : "reading response: " + ec.message());
    } else {
      std::span<const char> pending(buffer.data(), n);
      while (!pending.empty() && parser.state() != ResponseParser::State::error &&
             parser.state() != ResponseParser::State::message_complete) {
        pending = pending.subspan(parser.feed(pending));
        // The head may complete in the middle of a read, with body bytes behind it in the same read: note
        // it here, or a stream whose first bytes arrived with the head would never be handed out.
        if (parser.state() == ResponseParser::State::headers_complete) head_delivered = true;
        if (parser.state() == ResponseParser::State::headers_complete && pending.empty()) break;
      }
    }
    if (parser.state() == ResponseParser::State::error) {
      close();
      co_return fail(Errc::malformed, "bad response: " + parser.error().message);
    }
    if (on_body) {
      if (parser.state() != ResponseParser::State::need_more) head_delivered = true;
      if (head_delivered) {
        const std::string chunk = parser.take_body_chunk();
        if (!chunk.empty() && !(*on_body)(chunk)) co_return parser.response();
      }
    }
    if (parser.state() == ResponseParser::State::message_complete) {
      HttpResponse response = parser.take_response();
      if (!response.keep_alive) close();
      co_return response;
    }
    if (ec == asio::error::eof) {
      close();
      co_return fail(Errc::io_error, "connection closed before the response was complete");
    }
  }
}

}  // namespace claudemesh::transport::http
