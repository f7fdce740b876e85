// SPDX-License-Identifier: MIT
// A WebSocket client assembled from src/transport, driven by transport_peers_test.py against an
// independent server (python3-websockets). For each size it sends a binary and a text message, expects
// the same bytes back, then closes with 1000. Prints one JSON line per check; exits 0 when all pass.
// Usage: transport_test_client [--ca FILE] [--expect-fail] <ws-url> <size>...
//   --ca FILE      trust this CA for wss:// (verification stays on)
//   --expect-fail  succeed only if the connection is refused (e.g. an untrusted certificate)
#include "transport/ws/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <cstdio>
#include <string>
#include <vector>

using namespace claudemesh::transport;

namespace {

asio::awaitable<int> run(std::string url, std::vector<std::size_t> sizes, std::string ca_file, bool expect_fail) {
  ws::ClientOptions options;
  if (!ca_file.empty()) {
    auto context = make_client_tls_context({.verify_peer = true, .ca_file = ca_file});
    if (!context) co_return 1;
    options.tls = *context;
  }
  auto connected = co_await ws::connect_websocket(url, options);
  if (expect_fail) {
    std::printf("{\"check\":\"refused\",\"ok\":%s}\n", connected ? "false" : "true");
    co_return connected ? 1 : 0;
  }
  if (!connected) {
    std::printf("{\"check\":\"connect\",\"ok\":false,\"error\":\"%s\"}\n", connected.error().describe().c_str());
    co_return 1;
  }
  auto socket = *connected;
  int failures = 0;
  for (std::size_t size : sizes) {
    for (auto opcode : {ws::Opcode::binary, ws::Opcode::text}) {
      std::string payload(size, '\0');
      for (std::size_t i = 0; i < size; ++i) {
        payload[i] = opcode == ws::Opcode::text ? static_cast<char>('a' + i % 26) : static_cast<char>(i * 31 % 256);
      }
      socket->send(opcode, payload);
      auto echo = co_await socket->read();
      const bool ok = echo && echo->opcode == opcode && echo->payload == payload;
      failures += ok ? 0 : 1;
      std::printf("{\"check\":\"echo\",\"size\":%zu,\"text\":%s,\"ok\":%s}\n", size,
                  opcode == ws::Opcode::text ? "true" : "false", ok ? "true" : "false");
    }
  }
  socket->close(ws::close_code::normal, "bye");
  auto end = co_await socket->read();  // completes the close handshake
  const bool clean = !end && socket->close_info().code == ws::close_code::normal;
  std::printf("{\"check\":\"close\",\"code\":%u,\"ok\":%s}\n", socket->close_info().code, clean ? "true" : "false");
  co_return failures + (clean ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: transport_test_client <ws-url> <size>...\n");
    return 2;
  }
  std::string ca_file, url;
  bool expect_fail = false;
  std::vector<std::size_t> sizes;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--ca" && i + 1 < argc) ca_file = argv[++i];
    else if (arg == "--expect-fail") expect_fail = true;
    else if (url.empty()) url = arg;
    else sizes.push_back(std::stoul(arg));
  }
  asio::io_context io;
  int status = 1;
  asio::co_spawn(io, run(url, sizes, ca_file, expect_fail),
                 [&](std::exception_ptr e, int result) { status = e ? 1 : result; });
  io.run();
  std::fflush(stdout);
  return status;
}
