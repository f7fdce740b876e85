// SPDX-License-Identifier: MIT
#include "transport/http/server.hpp"

#include "transport/deadline.hpp"
#include "transport/http/serializer.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>

#include <array>

namespace claudemesh::transport::http {

// One accepted connection: reads requests, dispatches them, writes responses, enforces the limits.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, std::unique_ptr<Stream> stream)
      : server_(server), alive_(server.alive_), stream_(std::move(stream)), deadline_(stream_->get_executor()),
        parser_(server.config_.limits) {}

  void close() {
    deadline_.stop();
    if (stream_) stream_->close();
  }

  asio::awaitable<void> run(std::list<std::shared_ptr<Connection>>::iterator self) {
    auto keep = shared_from_this();
    asio::co_spawn(stream_->get_executor(), deadline_.watch([this] { if (stream_) stream_->close(); }),
                   asio::detached);
    co_await serve();
    deadline_.stop();
    if (*alive_) {
      if (deadline_.expired()) ++server_.stats_.timeouts;
      --server_.stats_.open_connections;
      server_.connections_.erase(self);
    }
  }

 private:
  const ServerConfig& config() const { return server_.config_; }

  asio::awaitable<void> serve() {
    if (stream_->is_tls()) {
      deadline_.arm(config().handshake_timeout);
      if (auto ec = co_await stream_->handshake(asio::ssl::stream_base::server); ec) co_return;
    }
    std::array<char, 4096> buffer{};
    std::string_view pending;  // read but not yet parsed
    deadline_.arm(config().idle_timeout);
    while (*alive_ && stream_ && stream_->is_open()) {
      if (pending.empty()) {
        auto [ec, n] = co_await stream_->read_some(asio::buffer(buffer));
        if (ec || !*alive_) co_return;
        pending = std::string_view(buffer.data(), n);
      }
      const bool was_idle = !parser_.in_progress();
      pending.remove_prefix(parser_.feed(std::span<const char>(pending.data(), pending.size())));
      if (was_idle && parser_.in_progress()) deadline_.arm(config().request_timeout);  // slow-loris bound

      if (parser_.state() == RequestParser::State::headers_complete && !routed_) {
        // Route now, then let the parser enter the body: a declared length over the route's limit is
        // refused (413) before a single body byte is read.
        on_headers();
        pending.remove_prefix(parser_.feed(std::span<const char>(pending.data(), pending.size())));
      }
      switch (parser_.state()) {
        case RequestParser::State::need_more:
        case RequestParser::State::headers_complete: continue;  // more bytes needed
        case RequestParser::State::error: {
          co_await reject(parser_.error().status, parser_.error().message);
          co_return;
        }
        case RequestParser::State::message_complete: {
          if (!routed_) on_headers();  // a request without a body completes in one step
          const bool keep_alive = co_await dispatch(std::string(pending));
          if (!keep_alive) co_return;
          if (!stream_) co_return;  // upgraded: the handler owns the stream (and the pending bytes)
          parser_.reset();
          route_ = {};
          routed_ = false;
          deadline_.arm(config().idle_timeout);
          continue;
        }
      }
    }
  }

  // Route as soon as the headers are in, so a body limit can be applied before the body is read.
  void on_headers() {
    routed_ = true;
    const auto& request = parser_.request();
    route_ = server_.router_.match(request.method, request.path);
    if (route_.route && route_.route->options.max_body_bytes) {
      parser_.set_body_limit(*route_.route->options.max_body_bytes);
    }
  }

  // Returns whether the connection continues with another request.
  asio::awaitable<bool> dispatch(std::string leftover) {
    ++server_.stats_.requests;
    Request request{parser_.take_request(), std::move(route_.params), stream_->peer_description(), stream_->is_unix()};
    const bool keep_alive = request.message.keep_alive;
    if (!route_.route) {
      if (!route_.allowed_methods.empty()) {
        HttpResponse response = error_response(405, "method not allowed");
        std::string allow;
        for (const auto& m : route_.allowed_methods) allow += (allow.empty() ? "" : ", ") + m;
        response.headers.set("Allow", allow);
        co_return co_await send(std::move(response), keep_alive);
      }
      HttpResponse not_found = error_response(404, "no route for " + request.message.path);
      co_return co_await send(std::move(not_found), keep_alive);
    }
    const Router::Route& route = *route_.route;
    if (route.upgrade_handler) {
      if (!request.message.upgrade) {
        HttpResponse upgrade_required = error_response(426, "upgrade required");
        co_return co_await send(std::move(upgrade_required), false);
      }
      deadline_.stop();
      auto executor = stream_->get_executor();  // before the stream is moved into the handler
      asio::co_spawn(executor, route.upgrade_handler(std::move(request), std::move(stream_), std::move(leftover)),
                     asio::detached);
      co_return false;
    }
    if (server_.stats_.in_flight >= config().max_in_flight) {
      ++server_.stats_.requests_rejected;
      HttpResponse busy = error_response(429, "too many requests in flight");
      busy.headers.set("Retry-After", "1");
      co_return co_await send(std::move(busy), keep_alive);
    }
    ++server_.stats_.in_flight;
    deadline_.disarm();  // the handler may take its time; the write has its own bound
    HttpResponse response;
    bool streamed = false;
    try {
      if (route.stream_handler) {
        ResponseStream out(*stream_);
        co_await route.stream_handler(request, out);
        streamed = out.started();
        if (streamed) co_await stream_->write(asio::buffer(last_chunk()));
        else response = error_response(500, "stream handler sent nothing");
      } else {
        response = co_await route.handler(request);
      }
    } catch (const std::exception& e) {
      server_.log(std::string("handler failed: ") + e.what());
      response = error_response(500, "internal error");
    }
    if (*alive_) --server_.stats_.in_flight;
    if (streamed) co_return false;
    const bool reuse = keep_alive && response.keep_alive;
    co_return co_await send(std::move(response), reuse);
  }

  static HttpResponse error_response(int status, const std::string& message) {
    HttpResponse response;
    response.status = status;
    response.headers.set("Content-Type", "application/json");
    std::string escaped;
    for (char c : message) {
      if (c == '"' || c == '\\') escaped += '\\';
      if (static_cast<unsigned char>(c) >= 0x20) escaped += c;
    }
    response.body = "{\"error\":{\"status\":" + std::to_string(status) + ",\"message\":\"" + escaped + "\"}}";
    return response;
  }

  asio::awaitable<void> reject(int status, std::string message) {
    ++server_.stats_.requests_rejected;
    HttpResponse response = error_response(status, message);  // named: see docs/transport.md on g++ 12
    co_await send(std::move(response), false);
  }

  asio::awaitable<bool> send(HttpResponse response, bool keep_alive) {
    response.keep_alive = keep_alive;
    const std::string bytes = serialize(response);
    deadline_.arm(config().write_timeout);
    auto ec = co_await stream_->write(asio::buffer(bytes));
    if (ec) co_return false;
    if (!keep_alive) co_await lingering_close();
    co_return keep_alive;
  }

  // Closing a socket whose receive buffer still holds unread request bytes makes the kernel send RST, and
  // the client may then lose the response we just wrote (a 413 while it is still uploading, say). So stop
  // sending, read and discard what the client still sends for a bounded time, then close.
  asio::awaitable<void> lingering_close() {
    deadline_.arm(std::chrono::seconds(2));  // also bounds a TLS close_notify the peer never answers
    if (stream_->is_tls()) {
      co_await stream_->graceful_close();
      co_return;
    }
    stream_->shutdown_send();
    std::array<char, 4096> sink{};
    std::size_t drained = 0;
    while (drained < std::size_t{8} * 1024 * 1024) {
      auto [ec, n] = co_await stream_->read_some(asio::buffer(sink));
      if (ec) break;
      drained += n;
    }
    stream_->close();
  }

  Server& server_;
  std::shared_ptr<bool> alive_;
  std::unique_ptr<Stream> stream_;
  Deadline deadline_;
  RequestParser parser_;
  Router::Match route_;
  bool routed_ = false;
};

Server::Server(asio::any_io_executor executor, Router router, ServerConfig config)
    : executor_(std::move(executor)), router_(std::move(router)), config_(std::move(config)) {}

Server::~Server() {
  *alive_ = false;
  try {
    stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): closing may throw on OS failure; a destructor must not
  }
}

void Server::log(std::string_view message) const {
  if (config_.log) config_.log(message);
}

void Server::serve(Listener listener) {
  auto& owned = listeners_.emplace_back(std::make_unique<Listener>(std::move(listener)));
  asio::co_spawn(executor_, accept_loop(owned.get()), asio::detached);
}

void Server::stop() {
  stopped_ = true;
  for (auto& listener : listeners_) listener->close();
  auto open = connections_;  // closing may erase from the list
  for (auto& connection : open) connection->close();
}

asio::awaitable<void> Server::accept_loop(Listener* listener) {
  auto alive = alive_;
  while (*alive && !stopped_) {
    auto [ec, stream] = co_await listener->accept();
    if (!*alive || stopped_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // EMFILE and friends: keep serving the connections we have, and give them time to close some
      // descriptors instead of spinning on a listener that stays readable.
      ++stats_.accept_errors;
      log("accept failed: " + ec.message());
      asio::steady_timer pause(executor_, accept_error_pause);
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (stats_.open_connections >= config_.max_connections) {
      ++stats_.connections_rejected;
      static constexpr std::string_view busy =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
      if (!stream->is_tls()) co_await stream->write(asio::buffer(busy));
      stream->close();
      continue;
    }
    ++stats_.connections_accepted;
    ++stats_.open_connections;
    auto connection = std::make_shared<Connection>(*this, std::move(stream));
    connections_.push_front(connection);
    asio::co_spawn(executor_, connection->run(connections_.begin()), asio::detached);
  }
}

}  // namespace claudemesh::transport::http
