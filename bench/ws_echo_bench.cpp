// SPDX-License-Identifier: MIT
// WebSocket echo load generator (issue 3): opens N connections with our client (connect_websocket), then
// every connection runs its own coroutine doing send -> await echo round trips, back to back, for a fixed
// time. One io_context, one thread. Each round trip is timed with steady_clock; the first 0.5 s is
// warm-up and not counted.
//
// Prints a human-readable line and one machine line for bench/run_transport_bench.sh:
//   RESULT ws_echo label=ours connections=1000 size=64 msgs_per_s=... p50_us=... p99_us=... round_trips=... errors=0
// "msgs_per_s" counts echoed messages: one message sent and its echo received is one round trip.
//
// Usage: ws_echo_bench --url ws://127.0.0.1:PORT/ws [--connections N] [--size BYTES] [--seconds S] [--label NAME]
#include "transport/ws/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace claudemesh::transport;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string url;
  std::size_t connections = 1;
  std::size_t size = 64;
  double seconds = 4.0;
  std::string label = "ours";
};

/// Counts finished coroutines; wait() resumes once the count reaches zero. Single-threaded.
class Latch {
 public:
  Latch(asio::any_io_executor executor, std::size_t count) : timer_(std::move(executor)), count_(count) {
    timer_.expires_at(Clock::time_point::max());
  }
  void count_down() {
    if (--count_ == 0) timer_.cancel();
  }
  asio::awaitable<void> wait() {
    while (count_ > 0) co_await timer_.async_wait(use_tuple);
  }

 private:
  asio::steady_timer timer_;
  std::size_t count_;
};

struct Run {
  Options options;
  std::vector<std::shared_ptr<ws::WebSocket>> sockets;
  std::vector<double> latencies_us;  // measured round trips, all connections
  std::size_t errors = 0;
  std::string first_error;
  Clock::time_point measure_from, measure_until;
};

void note_error(Run& run, std::string what) {
  if (run.errors++ == 0) run.first_error = std::move(what);
}

// `workers` of these share the connection list; each connects the next index until all are done.
asio::awaitable<void> connect_worker(Run& run, std::size_t& next, Latch& done) {
  while (next < run.sockets.size()) {
    const std::size_t index = next++;
    ws::ClientOptions options;  // named, not braced in the co_await: see docs/transport.md (g++ 12)
    options.connect_timeout = std::chrono::seconds(30);
    auto socket = co_await ws::connect_websocket(run.options.url, std::move(options));
    if (socket) {
      run.sockets[index] = *socket;
    } else {
      note_error(run, "connect: " + socket.error().describe());
    }
  }
  done.count_down();
}

asio::awaitable<void> echo_loop(Run& run, std::shared_ptr<ws::WebSocket> socket, Latch& done) {
  const std::string payload(run.options.size, 'x');
  while (Clock::now() < run.measure_until) {
    const auto sent_at = Clock::now();
    if (!socket->send_binary(payload)) {
      note_error(run, "send refused: the connection is closing");
      break;
    }
    auto echo = co_await socket->read();
    const auto received_at = Clock::now();
    if (!echo) {
      note_error(run, "read: " + echo.error().describe());
      break;
    }
    if (echo->payload.size() != payload.size() || std::memcmp(echo->payload.data(), payload.data(), payload.size())) {
      note_error(run, "the echo differs from the message sent");
      break;
    }
    if (sent_at >= run.measure_from) {
      run.latencies_us.push_back(std::chrono::duration<double, std::micro>(received_at - sent_at).count());
    }
  }
  socket->close();
  while (true) {  // drain until the close handshake completes
    auto rest = co_await socket->read();
    if (!rest) break;
  }
  done.count_down();
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const auto rank = static_cast<std::size_t>(p * static_cast<double>(sorted.size()) + 0.999999);  // nearest rank
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

asio::awaitable<void> run_bench(Run& run) {
  auto executor = co_await asio::this_coro::executor;
  run.sockets.resize(run.options.connections);
  const auto connect_started = Clock::now();
  {
    // At most 64 handshakes in flight, so a small listen backlog (asyncio's default is 100) never overflows.
    const std::size_t workers = std::min<std::size_t>(64, run.options.connections);
    std::size_t next = 0;
    Latch connected(executor, workers);
    for (std::size_t i = 0; i < workers; ++i) asio::co_spawn(executor, connect_worker(run, next, connected), asio::detached);
    co_await connected.wait();
  }
  const double connect_seconds = std::chrono::duration<double>(Clock::now() - connect_started).count();
  std::erase(run.sockets, nullptr);
  std::printf("  %s: %zu/%zu connections open in %.2f s\n", run.options.label.c_str(), run.sockets.size(),
              run.options.connections, connect_seconds);

  run.latencies_us.reserve(static_cast<std::size_t>(run.options.seconds * 200'000));
  run.measure_from = Clock::now() + std::chrono::milliseconds(500);
  run.measure_until = run.measure_from + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(run.options.seconds));
  Latch finished(executor, run.sockets.size());
  for (auto& socket : run.sockets) asio::co_spawn(executor, echo_loop(run, socket, finished), asio::detached);
  if (!run.sockets.empty()) co_await finished.wait();
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
    else if (flag == "--connections") options.connections = std::stoul(value);
    else if (flag == "--size") options.size = std::stoul(value);
    else if (flag == "--seconds") options.seconds = std::stod(value);
    else if (flag == "--label") options.label = value;
  }
  if (options.url.empty() || options.connections == 0) {
    std::fprintf(stderr, "usage: ws_echo_bench --url ws://HOST:PORT/ws [--connections N] [--size BYTES] "
                         "[--seconds S] [--label NAME]\n");
    return 2;
  }
  bool done = false;
  asio::co_spawn(io, run_bench(run), [&](std::exception_ptr) {
    done = true;
    io.stop();
  });
  io.run_for(std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(options.seconds + 120)));  // a hung peer must not hang the script
  if (!done) note_error(run, "timed out");

  auto& latencies = run.latencies_us;
  std::sort(latencies.begin(), latencies.end());
  const double rate = static_cast<double>(latencies.size()) / options.seconds;
  const double p50 = percentile(latencies, 0.50), p99 = percentile(latencies, 0.99);
  std::printf("  %s: %zu connection(s), %zu B messages: %.0f msg/s, round trip p50 %.1f us, p99 %.1f us "
              "(%zu round trips in %.1f s, %zu errors)\n",
              options.label.c_str(), options.connections, options.size, rate, p50, p99, latencies.size(),
              options.seconds, run.errors);
  if (run.errors > 0) std::printf("  %s: first error: %s\n", options.label.c_str(), run.first_error.c_str());
  std::printf("RESULT ws_echo label=%s connections=%zu size=%zu msgs_per_s=%.0f p50_us=%.1f p99_us=%.1f "
              "round_trips=%zu errors=%zu\n",
              options.label.c_str(), options.connections, options.size, rate, p50, p99, latencies.size(),
              run.errors);
  std::fflush(stdout);
  return run.errors == 0 && !latencies.empty() ? 0 : 1;
}
