// SPDX-License-Identifier: MIT
// HTTP request/response over a Unix socket with keep-alive (issue 3): N HttpClient instances, each on its
// own kept-alive connection, send GET /health back to back for a fixed time. One io_context, one thread.
// Each request is timed with steady_clock; the first 0.5 s is warm-up and not counted.
//
// Prints a human-readable line and one machine line for bench/run_transport_bench.sh:
//   RESULT http_unix clients=16 req_per_s=... p50_us=... p99_us=... requests=... errors=0
//
// Usage: http_unix_bench --unix PATH [--clients N] [--seconds S]
#include "transport/http/client.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

using namespace claudemesh::transport;
using Clock = std::chrono::steady_clock;

namespace {

struct Run {
  std::string unix_path;
  std::size_t clients = 1;
  double seconds = 4.0;
  std::vector<double> latencies_us;
  std::size_t errors = 0;
  std::string first_error;
  Clock::time_point measure_from, measure_until;
  std::size_t running = 0;
  std::unique_ptr<asio::steady_timer> all_done;
};

asio::awaitable<void> client_loop(Run& run) {
  auto executor = co_await asio::this_coro::executor;
  http::ClientEndpoint endpoint;
  endpoint.unix_path = run.unix_path;
  http::HttpClient client(executor, std::move(endpoint));
  while (Clock::now() < run.measure_until) {
    http::HttpRequest request;
    request.method = "GET";
    request.target = "/health";
    const auto sent_at = Clock::now();
    auto response = co_await client.request(std::move(request));
    const auto received_at = Clock::now();
    if (!response || response->status != 200 || response->body != "ok") {
      if (run.errors++ == 0) {
        run.first_error = response ? "status " + std::to_string(response->status) : response.error().describe();
      }
      continue;
    }
    if (sent_at >= run.measure_from) {
      run.latencies_us.push_back(std::chrono::duration<double, std::micro>(received_at - sent_at).count());
    }
  }
  if (--run.running == 0) run.all_done->cancel();
}

asio::awaitable<void> run_bench(Run& run) {
  auto executor = co_await asio::this_coro::executor;
  run.latencies_us.reserve(static_cast<std::size_t>(run.seconds * 200'000));
  run.measure_from = Clock::now() + std::chrono::milliseconds(500);
  run.measure_until =
      run.measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run.seconds));
  run.running = run.clients;
  run.all_done = std::make_unique<asio::steady_timer>(executor, Clock::time_point::max());
  for (std::size_t i = 0; i < run.clients; ++i) asio::co_spawn(executor, client_loop(run), asio::detached);
  while (run.running > 0) co_await run.all_done->async_wait(use_tuple);
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const auto rank = static_cast<std::size_t>(p * static_cast<double>(sorted.size()) + 0.999999);  // nearest rank
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  asio::io_context io(1);  // first: what Run holds (sockets, timers) must go before the io_context
  Run run;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--unix") run.unix_path = value;
    else if (flag == "--clients") run.clients = std::stoul(value);
    else if (flag == "--seconds") run.seconds = std::stod(value);
  }
  if (run.unix_path.empty() || run.clients == 0) {
    std::fprintf(stderr, "usage: http_unix_bench --unix PATH [--clients N] [--seconds S]\n");
    return 2;
  }
  bool done = false;
  asio::co_spawn(io, run_bench(run), [&](std::exception_ptr) {
    done = true;
    io.stop();
  });
  io.run_for(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(run.seconds + 60)));
  if (!done && run.errors++ == 0) run.first_error = "timed out";

  auto& latencies = run.latencies_us;
  std::sort(latencies.begin(), latencies.end());
  const double rate = static_cast<double>(latencies.size()) / run.seconds;
  const double p50 = percentile(latencies, 0.50), p99 = percentile(latencies, 0.99);
  std::printf("  %zu client(s), GET /health over the Unix socket: %.0f req/s, p50 %.1f us, p99 %.1f us "
              "(%zu requests in %.1f s, %zu errors)\n",
              run.clients, rate, p50, p99, latencies.size(), run.seconds, run.errors);
  if (run.errors > 0) std::printf("  first error: %s\n", run.first_error.c_str());
  std::printf("RESULT http_unix clients=%zu req_per_s=%.0f p50_us=%.1f p99_us=%.1f requests=%zu errors=%zu\n",
              run.clients, rate, p50, p99, latencies.size(), run.errors);
  std::fflush(stdout);
  return run.errors == 0 && !latencies.empty() ? 0 : 1;
}
