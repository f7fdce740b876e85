// SPDX-License-Identifier: MIT
// The daemon's numbers, in one process: a broker (its own thread), two daemons "alice" and "bob" (a thread
// each) with their outboxes and inboxes on disk (synchronous=FULL unless --no-fsync), and a client thread
// that speaks the IPC over the Unix sockets like the CLI does.
//   1. accept: POST /v1/send to bob's key, one at a time: p50/p99 (target p50 <= 1 ms, p99 <= 5 ms)
//   2. end-to-end at idle: alice IPC send -> bob's /v1/events `message` event, one at a time: p50/p99 (<= 5 ms p99)
//   3. end-to-end under load: sends paced at --rate msg/s for --seconds over 8 connections: p50/p99, delivered
// Usage: daemon_bench [--accepts N] [--idle N] [--rate R] [--seconds S] [--no-fsync]
#include <claudemesh/broker.hpp>
#include <claudemesh/broker_api.hpp>
#include <claudemesh/daemon.hpp>

#include "transport/http/client.hpp"
#include "transport/sse/sse.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace claudemesh;
using namespace std::chrono_literals;
using Json = nlohmann::json;
namespace http = claudemesh::transport::http;
using SteadyClock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "daemon_bench: %s\n", what.c_str());
  std::exit(1);
}

double percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  return samples[static_cast<std::size_t>(p * static_cast<double>(samples.size() - 1))];
}

void report(const char* what, const std::vector<double>& ms) {
  std::printf("%-44s n=%-6zu p50 %7.3f  p90 %7.3f  p99 %7.3f  max %8.3f ms\n", what, ms.size(), percentile(ms, 0.5),
              percentile(ms, 0.9), percentile(ms, 0.99), percentile(ms, 1.0));
}

std::int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now().time_since_epoch()).count();
}

// Runs `make()` on `io` and waits for it (the io runs on another thread).
template <class T, class Make>
T on(asio::io_context& io, Make make) {
  std::promise<T> promise;
  auto future = promise.get_future();
  asio::co_spawn(io, make(), [&promise](const std::exception_ptr& error, T value) {
    if (error) {
      promise.set_exception(error);
    } else {
      promise.set_value(std::move(value));
    }
  });
  return future.get();
}

struct Thread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  ~Thread() {
    work.reset();
    io.stop();
    thread.join();
  }
};

// bob's event stream: the arrival time of every message body.
struct Arrivals {
  std::mutex mutex;
  std::map<std::string, std::int64_t> at_us;
  std::atomic<std::size_t> count{0};
};

asio::awaitable<void> read_events(std::filesystem::path socket, Arrivals& arrivals) {
  http::ClientEndpoint endpoint;
  endpoint.unix_path = std::move(socket);
  http::HttpClient client(co_await asio::this_coro::executor, endpoint);
  http::HttpRequest request;
  request.method = "GET";
  request.target = "/v1/events";
  transport::sse::SseParser parser;
  auto on_body = [&](std::string_view chunk) {
    const auto now = steady_us();
    std::vector<transport::sse::SseEvent> events;
    if (!parser.feed(chunk, events)) return false;
    for (const auto& e : events) {
      if (e.event != "message") continue;
      const Json data = Json::parse(e.data, nullptr, false);
      if (!data.is_object()) continue;
      const std::lock_guard lock(arrivals.mutex);
      arrivals.at_us[data.value("body", "")] = now;
      ++arrivals.count;
    }
    return true;
  };
  co_await client.stream(std::move(request), on_body);
}

asio::awaitable<int> post_send(http::HttpClient& client, const std::string& to, const std::string& body) {
  http::HttpRequest request;
  request.method = "POST";
  request.target = "/v1/send";
  request.headers.set("Content-Type", "application/json");
  request.body = Json{{"to", to}, {"message", body}, {"priority", "now"}}.dump();
  auto response = co_await client.request(std::move(request));
  co_return response ? response->status : 0;
}

// The load phase: `workers` connections share one paced schedule of `total` sends.
struct LoadPlan {
  std::filesystem::path socket;
  std::string to;
  int total = 0;
  int rate = 0;
  std::int64_t start_us = 0;
  std::vector<std::int64_t>& sent_at;
  int workers = 8;
  int next = 0;
  int running = 8;
  asio::steady_timer* all_done = nullptr;
};

asio::awaitable<void> load_worker(LoadPlan& plan) {
  http::ClientEndpoint endpoint;
  endpoint.unix_path = plan.socket;
  http::HttpClient client(co_await asio::this_coro::executor, endpoint);
  asio::steady_timer pace(co_await asio::this_coro::executor);
  for (;;) {
    const int i = plan.next++;
    if (i >= plan.total) break;
    const auto due = plan.start_us + static_cast<std::int64_t>(i) * 1'000'000 / plan.rate;
    if (const auto wait = due - steady_us(); wait > 0) {
      pace.expires_after(std::chrono::microseconds(wait));
      co_await pace.async_wait(asio::use_awaitable);
    }
    plan.sent_at[static_cast<std::size_t>(i)] = steady_us();
    co_await post_send(client, plan.to, "load-" + std::to_string(i));
  }
  if (--plan.running == 0) plan.all_done->cancel();
}

}  // namespace

int main(int argc, char** argv) {
  int accepts = 1000;
  int idle = 200;
  int rate = 1000;
  int seconds = 5;
  bool fsync = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (arg == "--accepts") accepts = next();
    else if (arg == "--idle") idle = next();
    else if (arg == "--rate") rate = next();
    else if (arg == "--seconds") seconds = next();
    else if (arg == "--no-fsync") fsync = false;
    else die("unknown argument " + arg);
  }
  std::string pattern = (std::filesystem::temp_directory_path() / "claudemesh-daemon-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp");
  const std::filesystem::path root = pattern;

  Thread broker_thread;
  Thread alice_thread;  // each daemon on a thread of its own, as two processes would be
  Thread bob_thread;
  Thread client_thread;

  BrokerConfig broker_config;
  broker_config.listen_host = "127.0.0.1";
  broker_config.listen_port = 0;
  broker_config.data_dir = root / "broker";
  broker_config.rate_burst = 1'000'000;
  broker_config.rate_per_minute = 60'000'000;
  auto broker = Broker::open(broker_thread.io.get_executor(), broker_config);
  if (!broker) die(broker.error().describe());
  if (auto started = on<Result<void>>(broker_thread.io, [&]() -> asio::awaitable<Result<void>> { co_return (*broker)->start(); }); !started) {
    die(started.error().describe());
  }
  const std::string base = "http://127.0.0.1:" + std::to_string((*broker)->port());

  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  auto mesh = on<std::pair<Membership, Membership>>(client_thread.io, [&]() -> asio::awaitable<std::pair<Membership, Membership>> {
    auto executor = co_await asio::this_coro::executor;
    auto owner = BrokerApi::connect(executor, base, alice_id);
    if (!owner) die(owner.error().describe());
    auto created = co_await (*owner)->create_mesh("bench", "alice", "");
    if (!created) die(created.error().describe());
    auto invite = co_await (*owner)->create_invite(created->mesh_id, "member", 3600, 1);
    if (!invite) die(invite.error().describe());
    auto ref = parse_invite_url(invite->url);
    auto joiner = BrokerApi::connect(executor, ref->http_base, bob_id);
    auto joined = co_await (*joiner)->join(ref->invite_id, "bob");
    if (!joined) die(joined.error().describe());
    co_return std::pair{*created, *joined};
  });

  auto make_daemon = [&](asio::io_context& io, const std::string& name, const Membership& m, const Identity& id) {
    DaemonConfig config;
    config.dir = root / name;
    config.tcp_port.reset();
    config.clone_policy = ClonePolicy::allow;
    config.outbox.fsync = fsync;
    config.inbox.fsync = fsync;
    config.meshes.push_back(DaemonMesh{.slug = "bench", .mesh_id = m.mesh_id, .member_id = m.member_id,
                                       .display_name = name, .broker_url = m.ws_url, .ca_file = {}, .member = id.clone()});
    auto daemon = Daemon::open(io.get_executor(), std::move(config));
    if (!daemon) die(daemon.error().describe());
    asio::co_spawn(io, (*daemon)->run(), asio::detached);
    return std::move(*daemon);
  };
  auto alice = make_daemon(alice_thread.io, "alice", mesh.first, alice_id);
  auto bob = make_daemon(bob_thread.io, "bob", mesh.second, bob_id);
  const auto alice_socket = alice->files().socket();
  const std::string bob_key = bob_id.public_key().hex();
  std::this_thread::sleep_for(500ms);  // both broker connections open

  Arrivals arrivals;
  asio::co_spawn(client_thread.io, read_events(bob->files().socket(), arrivals), asio::detached);
  std::this_thread::sleep_for(100ms);

  std::printf("daemon_bench: outbox/inbox synchronous=%s, %d accepts, %d idle round trips, %d msg/s for %d s\n",
              fsync ? "FULL" : "NORMAL", accepts, idle, rate, seconds);

  // 1. accept latency.
  auto accept_ms = on<std::vector<double>>(client_thread.io, [&]() -> asio::awaitable<std::vector<double>> {
    http::ClientEndpoint endpoint;
    endpoint.unix_path = alice_socket;
    http::HttpClient client(co_await asio::this_coro::executor, endpoint);
    std::vector<double> out;
    for (int i = 0; i < accepts; ++i) {
      const auto start = SteadyClock::now();
      const int status = co_await post_send(client, bob_key, "accept-" + std::to_string(i));
      out.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count());
      if (status != 202) die("send answered " + std::to_string(status));
    }
    co_return out;
  });
  report("accept over the Unix socket (POST /v1/send)", accept_ms);
  while (arrivals.count < static_cast<std::size_t>(accepts)) std::this_thread::sleep_for(10ms);

  // 2. end-to-end at idle.
  auto idle_ms = on<std::vector<double>>(client_thread.io, [&]() -> asio::awaitable<std::vector<double>> {
    http::ClientEndpoint endpoint;
    endpoint.unix_path = alice_socket;
    http::HttpClient client(co_await asio::this_coro::executor, endpoint);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    std::vector<double> out;
    for (int i = 0; i < idle; ++i) {
      const std::string body = "idle-" + std::to_string(i);
      const auto start = steady_us();
      co_await post_send(client, bob_key, body);
      for (;;) {
        {
          const std::lock_guard lock(arrivals.mutex);
          if (auto it = arrivals.at_us.find(body); it != arrivals.at_us.end()) {
            out.push_back(static_cast<double>(it->second - start) / 1000.0);
            break;
          }
        }
        timer.expires_after(50us);
        co_await timer.async_wait(asio::use_awaitable);
      }
      timer.expires_after(5ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
    co_return out;
  });
  report("end to end at idle (IPC send -> SSE event)", idle_ms);

  // 3. end-to-end under load: a paced schedule over 8 connections.
  const int total = rate * seconds;
  std::vector<std::int64_t> sent_at(static_cast<std::size_t>(total), 0);
  const auto load_start = steady_us();
  LoadPlan plan{alice_socket, bob_key, total, rate, load_start, sent_at};
  on<int>(client_thread.io, [&plan]() -> asio::awaitable<int> {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer all_done(executor, asio::steady_timer::time_point::max());
    plan.all_done = &all_done;
    for (int c = 0; c < plan.workers; ++c) asio::co_spawn(executor, load_worker(plan), asio::detached);
    std::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_return 0;
  });
  const double send_seconds = static_cast<double>(steady_us() - load_start) / 1e6;
  const auto deadline = SteadyClock::now() + 30s;
  const auto expected = static_cast<std::size_t>(accepts + idle + total);
  while (arrivals.count < expected && SteadyClock::now() < deadline) std::this_thread::sleep_for(10ms);
  std::vector<double> load_ms;
  {
    const std::lock_guard lock(arrivals.mutex);
    for (int i = 0; i < total; ++i) {
      if (auto it = arrivals.at_us.find("load-" + std::to_string(i)); it != arrivals.at_us.end()) {
        load_ms.push_back(static_cast<double>(it->second - sent_at[static_cast<std::size_t>(i)]) / 1000.0);
      }
    }
  }
  char label[96];
  std::snprintf(label, sizeof label, "end to end at %.0f msg/s offered", static_cast<double>(total) / send_seconds);
  report(label, load_ms);
  std::printf("delivered %zu/%d of the load phase (%.1f%%)\n", load_ms.size(), total,
              100.0 * static_cast<double>(load_ms.size()) / total);

  asio::post(alice_thread.io, [&] { alice->stop(); });
  asio::post(bob_thread.io, [&] { bob->stop(); });
  std::this_thread::sleep_for(200ms);
  asio::post(broker_thread.io, [&] { (*broker)->stop(); });
  std::this_thread::sleep_for(200ms);
  std::error_code ignored;
  std::filesystem::remove_all(root, ignored);
  std::fflush(stdout);
  std::_Exit(0);  // the io threads hold coroutines mid-flight; the numbers are printed
}
