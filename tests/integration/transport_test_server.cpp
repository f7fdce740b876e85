// SPDX-License-Identifier: MIT
// A server assembled from src/transport for the independent-peer tests (transport_peers_test.py):
// HTTP routes, a WebSocket echo endpoint and an SSE stream, on loopback TCP and a Unix socket.
// Prints one JSON line {"port":N,"unix":"..."} when ready; exits on SIGTERM/SIGINT or when stdin closes.
#include "transport/http/server.hpp"
#include "transport/sse/sse.hpp"
#include "transport/ws/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <string>

using namespace claudemesh::transport;
using namespace claudemesh;

namespace {

struct Options {
  std::string unix_path;
  std::string tls_cert, tls_key;
  std::size_t max_connections = 1024;
  std::size_t max_message_bytes = 1 << 20;
  std::size_t max_queued_bytes = 4u * 1024 * 1024;
  long request_timeout_ms = 10'000;
  long idle_timeout_ms = 60'000;
};

long number(const char* text) {
  long value = 0;
  std::from_chars(text, text + std::strlen(text), value);
  return value;
}

asio::awaitable<void> websocket_echo(http::Request request, std::unique_ptr<Stream> stream, std::string leftover,
                                     ws::WebSocketConfig config) {
  auto socket = co_await ws::accept_websocket(std::move(request.message), std::move(stream), std::move(leftover),
                                              std::move(config));
  if (!socket) co_return;
  auto ws = *socket;
  while (true) {
    auto message = co_await ws->read();
    if (!message) break;
    std::string_view text = message->payload;
    if (message->opcode == ws::Opcode::text && text.starts_with("close:")) {
      ws->close(static_cast<std::uint16_t>(number(std::string(text.substr(6)).c_str())), "requested");
      continue;
    }
    if (message->opcode == ws::Opcode::text && text.starts_with("flood:")) {  // for the slow-consumer test
      const long count = number(std::string(text.substr(6)).c_str());
      const std::string chunk(64 * 1024, 'x');
      for (long i = 0; i < count && ws->send_text(chunk); ++i) {
      }
      continue;
    }
    ws->send(message->opcode, message->payload);
  }
}

asio::awaitable<void> sse_events(http::Request request, http::ResponseStream& out) {
  long count = 5;
  if (auto at = request.message.query.find("count="); at != std::string::npos) {
    count = number(request.message.query.c_str() + at + 6);
  }
  long first = 1;
  if (auto last = request.message.headers.get("Last-Event-ID")) first = number(std::string(*last).c_str()) + 1;
  http::HttpResponse head;
  head.headers.set("Content-Type", "text/event-stream");
  head.headers.set("Cache-Control", "no-cache");
  if (co_await out.start(std::move(head))) co_return;
  // Results are named before co_await: g++ 12 can destroy temporaries of a co_await full-expression twice.
  const std::string hello = sse::encode_comment("stream start");
  if (co_await out.write(hello)) co_return;
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (long id = first; id < first + count; ++id) {
    sse::SseEvent event{"tick", "event " + std::to_string(id) + "\nsecond line", std::to_string(id), std::nullopt};
    const std::string bytes = *sse::encode_event(event);
    if (co_await out.write(bytes)) co_return;
    pause.expires_after(std::chrono::milliseconds(5));
    co_await pause.async_wait(use_tuple);
  }
}

asio::awaitable<void> watch_stdin(asio::io_context& io) {
  asio::posix::stream_descriptor input(io, ::dup(0));
  char byte;
  while (true) {
    auto [ec, n] = co_await input.async_read_some(asio::buffer(&byte, 1), use_tuple);
    if (ec) break;
  }
  io.stop();
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--unix") options.unix_path = argv[i + 1];
    else if (flag == "--max-connections") options.max_connections = static_cast<std::size_t>(number(argv[i + 1]));
    else if (flag == "--max-message-bytes") options.max_message_bytes = static_cast<std::size_t>(number(argv[i + 1]));
    else if (flag == "--max-queued-bytes") options.max_queued_bytes = static_cast<std::size_t>(number(argv[i + 1]));
    else if (flag == "--request-timeout-ms") options.request_timeout_ms = number(argv[i + 1]);
    else if (flag == "--idle-timeout-ms") options.idle_timeout_ms = number(argv[i + 1]);
    else if (flag == "--tls-cert") options.tls_cert = argv[i + 1];
    else if (flag == "--tls-key") options.tls_key = argv[i + 1];
  }
  asio::io_context io;
  ws::WebSocketConfig ws_config;
  ws_config.limits.max_message_bytes = options.max_message_bytes;
  ws_config.max_queued_bytes = options.max_queued_bytes;
  ws_config.scratch = std::make_shared<ws::ScratchBuffer>();

  http::Router router;
  router.add("GET", "/health", [](http::Request&) -> asio::awaitable<http::HttpResponse> {
    http::HttpResponse response;
    response.body = "ok";
    co_return response;
  });
  router.add("POST", "/echo", [](http::Request& request) -> asio::awaitable<http::HttpResponse> {
    http::HttpResponse response;
    response.headers.set("Content-Type", "application/octet-stream");
    response.body = std::move(request.message.body);
    co_return response;
  });
  router.add("POST", "/small", [](http::Request&) -> asio::awaitable<http::HttpResponse> { co_return http::HttpResponse{}; },
             {.max_body_bytes = 16});
  router.add("GET", "/items/:id", [](http::Request& request) -> asio::awaitable<http::HttpResponse> {
    http::HttpResponse response;
    response.body = std::string(request.param("id"));
    co_return response;
  });
  router.add_stream("GET", "/events", [](http::Request& request, http::ResponseStream& out) {
    return sse_events(std::move(request), out);
  });
  router.add_upgrade("/ws", [ws_config](http::Request request, std::unique_ptr<Stream> stream, std::string leftover) {
    return websocket_echo(std::move(request), std::move(stream), std::move(leftover), ws_config);
  });

  http::ServerConfig config;
  config.max_connections = options.max_connections;
  config.request_timeout = std::chrono::milliseconds(options.request_timeout_ms);
  config.idle_timeout = std::chrono::milliseconds(options.idle_timeout_ms);
  http::Server server(io.get_executor(), std::move(router), config);

  auto tcp = Listener::listen_tcp(io.get_executor(), "127.0.0.1", 0);
  if (!tcp) {
    std::cerr << tcp.error().describe() << "\n";
    return 1;
  }
  const auto port = tcp->port();
  server.serve(std::move(*tcp));
  if (!options.unix_path.empty()) {
    auto unix_listener = Listener::listen_unix(io.get_executor(), options.unix_path);
    if (!unix_listener) {
      std::cerr << unix_listener.error().describe() << "\n";
      return 1;
    }
    server.serve(std::move(*unix_listener));
  }
  std::uint16_t tls_port = 0;
  if (!options.tls_cert.empty()) {
    auto context = make_server_tls_context({options.tls_cert, options.tls_key});
    if (!context) {
      std::cerr << context.error().describe() << "\n";
      return 1;
    }
    auto tls = Listener::listen_tcp(io.get_executor(), "127.0.0.1", 0, *context);
    if (!tls) {
      std::cerr << tls.error().describe() << "\n";
      return 1;
    }
    tls_port = tls->port();
    server.serve(std::move(*tls));
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int) { io.stop(); });
  asio::co_spawn(io, watch_stdin(io), asio::detached);
  std::printf("{\"port\":%u,\"tls_port\":%u,\"unix\":\"%s\"}\n", port, tls_port, options.unix_path.c_str());
  std::fflush(stdout);
  io.run();
  server.stop();
  return 0;
}
