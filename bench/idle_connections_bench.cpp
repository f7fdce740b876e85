// SPDX-License-Identifier: MIT
// Memory per idle WebSocket connection (issue 3, target <= 16 KiB on our server): reads the server's VmRSS
// from /proc/<pid>/status, opens N WebSocket connections to it with our client (each with a read loop on a
// shared scratch buffer, so pings are answered and drops are noticed), waits for the server to settle,
// reads VmRSS again and prints (delta / connections). Stops at the first connection that cannot be opened
// (e.g. EMFILE) and reports how far it got and why.
//
// Prints a human-readable block and one machine line for bench/run_transport_bench.sh:
//   RESULT idle label=ours connections=10000 open=10000 rss_before_kib=... rss_after_kib=... kib_per_conn=...
//
// Usage: idle_connections_bench --url ws://127.0.0.1:PORT/ws --server-pid PID [--connections N]
//                               [--settle-ms MS] [--label NAME]
#include "transport/ws/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace claudemesh::transport;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string url;
  long server_pid = 0;
  std::size_t connections = 10'000;
  long settle_ms = 3'000;
  std::string label = "ours";
};

/// VmRSS of `pid` in KiB, or -1.
long rss_kib(long pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Asio's range connect reports a socket that cannot be opened (EMFILE) as "Operation aborted", so say
// what opening a socket right now gives.
std::string probe_socket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd >= 0) {
    ::close(fd);
    return "";
  }
  return std::string(" (opening a socket now fails: ") + std::strerror(errno) + ")";
}

struct Run {
  Options options;
  ws::ClientOptions client;
  std::vector<std::shared_ptr<ws::WebSocket>> sockets;
  std::size_t next = 0;
  std::size_t open = 0;     // connections currently open
  std::size_t dropped = 0;  // connections that ended while they should have been idle
  bool stop_connecting = false;
  std::string first_error;
  std::size_t workers_left = 0;
  std::unique_ptr<asio::steady_timer> workers_done;
};

asio::awaitable<void> read_loop(Run& run, std::shared_ptr<ws::WebSocket> socket) {
  while (true) {  // the echo server sends nothing unprompted; pings are answered inside read()
    auto message = co_await socket->read();
    if (!message) break;
  }
  --run.open;
  ++run.dropped;
}

asio::awaitable<void> connect_worker(Run& run) {
  auto executor = co_await asio::this_coro::executor;
  while (!run.stop_connecting && run.next < run.options.connections) {
    ++run.next;
    auto socket = co_await ws::connect_websocket(run.options.url, run.client);
    if (!socket) {
      if (!run.stop_connecting) run.first_error = socket.error().describe() + probe_socket();
      run.stop_connecting = true;
      break;
    }
    ++run.open;
    run.sockets.push_back(*socket);
    asio::co_spawn(executor, read_loop(run, *socket), asio::detached);
  }
  if (--run.workers_left == 0) run.workers_done->cancel();
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(use_tuple);
}

asio::awaitable<void> run_bench(Run& run) {
  auto executor = co_await asio::this_coro::executor;
  const long server_pid = run.options.server_pid;
  const long server_before = rss_kib(server_pid), client_before = rss_kib(::getpid());
  // Descriptors held back, so /proc can still be read when the connections used up the open-file limit.
  std::vector<int> reserve;
  for (int i = 0; i < 4; ++i) reserve.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));

  const auto started = Clock::now();
  run.sockets.reserve(run.options.connections);
  run.workers_left = 64;  // handshakes in flight at once
  run.workers_done = std::make_unique<asio::steady_timer>(executor, Clock::time_point::max());
  for (std::size_t i = 0; i < run.workers_left; ++i) asio::co_spawn(executor, connect_worker(run), asio::detached);
  while (run.workers_left > 0) co_await run.workers_done->async_wait(use_tuple);
  const double connect_seconds = std::chrono::duration<double>(Clock::now() - started).count();

  co_await sleep_for(std::chrono::milliseconds(run.options.settle_ms));
  for (const int fd : reserve) ::close(fd);
  const long server_after = rss_kib(server_pid), client_after = rss_kib(::getpid());
  const std::size_t open = run.open;

  const double per_connection = open > 0 ? static_cast<double>(server_after - server_before) / static_cast<double>(open) : 0;
  const double client_per_connection =
      open > 0 ? static_cast<double>(client_after - client_before) / static_cast<double>(open) : 0;
  const char* label = run.options.label.c_str();
  std::printf("  %s: opened %zu of %zu idle connections in %.1f s; %zu still open after %ld ms\n", label,
              run.sockets.size(), run.options.connections, connect_seconds, open, run.options.settle_ms);
  if (!run.first_error.empty()) std::printf("  %s: stopped at the first failure: %s\n", label, run.first_error.c_str());
  std::printf("  %s: server VmRSS %ld KiB -> %ld KiB: %.2f KiB per idle connection\n", label, server_before,
              server_after, per_connection);
  std::printf("  %s: (load generator VmRSS %ld KiB -> %ld KiB: %.2f KiB per client connection)\n", label,
              client_before, client_after, client_per_connection);
  std::printf("RESULT idle label=%s connections=%zu open=%zu rss_before_kib=%ld rss_after_kib=%ld kib_per_conn=%.2f "
              "client_kib_per_conn=%.2f\n",
              label, run.options.connections, open, server_before, server_after, per_connection, client_per_connection);
  std::fflush(stdout);

  for (auto& socket : run.sockets) socket->terminate();
  run.sockets.clear();
}

}  // namespace

int main(int argc, char** argv) {
  asio::io_context io(1);  // first: what Run holds (sockets, timers) must go before the io_context
  Run run;
  auto& options = run.options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--url") options.url = value;
    else if (flag == "--server-pid") options.server_pid = std::stol(value);
    else if (flag == "--connections") options.connections = std::stoul(value);
    else if (flag == "--settle-ms") options.settle_ms = std::stol(value);
    else if (flag == "--label") options.label = value;
  }
  if (options.url.empty() || options.server_pid <= 0 || rss_kib(options.server_pid) < 0) {
    std::fprintf(stderr, "usage: idle_connections_bench --url ws://HOST:PORT/ws --server-pid PID "
                         "[--connections N] [--settle-ms MS] [--label NAME]\n");
    return 2;
  }
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  std::printf("  %s: open-file limit of the load generator: %llu\n", options.label.c_str(),
              static_cast<unsigned long long>(limit.rlim_cur));

  run.client.connect_timeout = std::chrono::seconds(30);
  run.client.config.scratch = std::make_shared<ws::ScratchBuffer>();
  bool done = false;
  asio::co_spawn(io, run_bench(run), [&](std::exception_ptr) {
    done = true;
    io.stop();
  });
  io.run_for(std::chrono::minutes(5));
  return done ? 0 : 1;
}
