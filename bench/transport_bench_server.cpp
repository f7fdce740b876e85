// SPDX-License-Identifier: MIT
// The server the transport benchmarks measure, built from src/transport exactly as a daemon or broker would
// use it: GET /health, and a WebSocket echo at /ws whose connections share one ScratchBuffer, on loopback
// TCP and (with --unix PATH) a Unix socket. One io_context, one thread.
//
// Prints one JSON line {"port":N,"unix":"...","pid":N} when ready; exits on SIGTERM/SIGINT.
// Usage: transport_bench_server [--unix PATH] [--own-buffers]
//   --own-buffers: no shared ScratchBuffer, each connection reads into its own 16 KiB buffer (to measure
//                  what the shared buffer saves in memory and costs in speed)
#include "transport/http/server.hpp"
#include "transport/ws/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

using namespace claudemesh::transport;

namespace {

asio::awaitable<void> websocket_echo(http::Request request, std::unique_ptr<Stream> stream, std::string leftover,
                                     ws::WebSocketConfig config) {
  auto socket = co_await ws::accept_websocket(std::move(request.message), std::move(stream), std::move(leftover),
                                              std::move(config));
  if (!socket) co_return;
  auto websocket = *socket;
  while (true) {
    auto message = co_await websocket->read();
    if (!message) break;
    websocket->send(message->opcode, message->payload);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string unix_path;
  bool own_buffers = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--unix" && i + 1 < argc) unix_path = argv[++i];
    else if (flag == "--own-buffers") own_buffers = true;
  }
  asio::io_context io(1);
  ws::WebSocketConfig ws_config;
  if (!own_buffers) ws_config.scratch = std::make_shared<ws::ScratchBuffer>();  // idle connections hold no read buffer

  http::Router router;
  router.add("GET", "/health", [](http::Request&) -> asio::awaitable<http::HttpResponse> {
    http::HttpResponse response;
    response.body = "ok";
    co_return response;
  });
  router.add_upgrade("/ws", [ws_config](http::Request request, std::unique_ptr<Stream> stream, std::string leftover) {
    return websocket_echo(std::move(request), std::move(stream), std::move(leftover), ws_config);
  });

  // Upgraded connections leave the HTTP server's count, but 10,000 clients may be mid-upgrade at once.
  http::Server server(io.get_executor(), std::move(router), {.max_connections = 65'536, .max_in_flight = 4096});
  auto tcp = Listener::listen_tcp(io.get_executor(), "127.0.0.1", 0);
  if (!tcp) {
    std::cerr << tcp.error().describe() << "\n";
    return 1;
  }
  const auto port = tcp->port();
  server.serve(std::move(*tcp));
  if (!unix_path.empty()) {
    auto unix_listener = Listener::listen_unix(io.get_executor(), unix_path);
    if (!unix_listener) {
      std::cerr << unix_listener.error().describe() << "\n";
      return 1;
    }
    server.serve(std::move(*unix_listener));
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int) { io.stop(); });
  std::printf("{\"port\":%u,\"unix\":\"%s\",\"pid\":%d}\n", port, unix_path.c_str(), static_cast<int>(::getpid()));
  std::fflush(stdout);
  io.run();
  server.stop();
  return 0;
}
