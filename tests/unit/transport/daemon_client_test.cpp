// SPDX-License-Identifier: MIT
// DaemonClient against an in-process HTTP server standing in for the daemon (on a Unix socket in a temporary
// directory, and on loopback TCP): the session and bearer headers, answers of every status, timeouts, an
// absent daemon, and event streams that stop on the caller's word, at the limit, or are refused.
#include <claudemesh/daemon_client.hpp>

#include "transport/http/server.hpp"
#include "transport/sse/sse.hpp"

#include "support/files.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::transport;
using claudemesh::testing::TempDir;
using namespace std::chrono_literals;

namespace {

http::HttpResponse json(int status, std::string body) {
  http::HttpResponse response;
  response.status = status;
  response.headers.set("Content-Type", "application/json");
  response.body = std::move(body);
  return response;
}

std::string header_or(const http::Request& request, std::string_view name) {
  auto value = request.message.headers.get(name);
  return value ? std::string(*value) : std::string("-");
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(use_tuple);
}

// Three events after Last-Event-ID (ids 1, 2, 3 ...), then silence for a long while.
asio::awaitable<void> three_events_then_wait(http::Request request, http::ResponseStream& out) {
  long first = 1;
  if (auto last = request.message.headers.get("Last-Event-ID")) first = std::stol(std::string(*last)) + 1;
  http::HttpResponse head;
  head.headers.set("Content-Type", "text/event-stream");
  co_await out.start(std::move(head));
  const std::string hello = sse::encode_comment("connected");
  co_await out.write(hello);
  for (long id = first; id < first + 3; ++id) {
    sse::SseEvent event;
    event.event = "message";
    event.data = R"({"n":)" + std::to_string(id) + "}";
    event.id = std::to_string(id);
    const std::string bytes = *sse::encode_event(event);
    co_await out.write(bytes);
  }
  co_await sleep_for(10s);
}

http::Router daemon_router() {
  http::Router router;
  router.add("GET", "/v1/version", [](http::Request& request) -> asio::awaitable<http::HttpResponse> {
    co_return json(200, R"({"daemon_version":"test","ipc_api":1,"authorization":")" + header_or(request, "Authorization") +
                            R"(","session":")" + header_or(request, "ClaudeMesh-Session") + R"(","host":")" +
                            header_or(request, "Host") + "\"}");
  });
  router.add("POST", "/v1/echo", [](http::Request& request) -> asio::awaitable<http::HttpResponse> {
    auto response = json(202, request.message.body);
    response.headers.set("X-Content-Type-Seen", header_or(request, "Content-Type"));
    response.headers.set("X-Idempotency-Key-Seen", header_or(request, "Idempotency-Key"));
    co_return response;
  });
  router.add("GET", "/v1/refused", [](http::Request&) -> asio::awaitable<http::HttpResponse> {
    co_return json(404, R"({"error":{"code":"unknown_mesh","message":"no mesh \"x\"; joined: a, b"}})");
  });
  router.add("GET", "/v1/plain-failure", [](http::Request&) -> asio::awaitable<http::HttpResponse> {
    http::HttpResponse response;
    response.status = 500;
    response.body = "boom\nsecond line";
    co_return response;
  });
  router.add("GET", "/v1/slow", [](http::Request&) -> asio::awaitable<http::HttpResponse> {
    co_await sleep_for(3s);
    co_return json(200, "{}");
  });
  router.add_stream("GET", "/v1/events", [](http::Request& request, http::ResponseStream& out) {
    return three_events_then_wait(std::move(request), out);
  });
  router.add("GET", "/v1/events-busy", [](http::Request&) -> asio::awaitable<http::HttpResponse> {
    co_return json(429, R"({"error":{"code":"too_many_streams","message":"too many event streams are open"}})");
  });
  return router;
}

// The stand-in daemon, on a thread of its own (the client under test blocks the test's thread).
class FakeDaemon {
 public:
  explicit FakeDaemon(const std::filesystem::path& socket) : server_(io_.get_executor(), daemon_router()) {
    auto unix_listener = Listener::listen_unix(io_.get_executor(), socket);
    REQUIRE(unix_listener);
    server_.serve(std::move(*unix_listener));
    auto tcp_listener = Listener::listen_tcp(io_.get_executor(), "127.0.0.1", 0);
    REQUIRE(tcp_listener);
    tcp_port_ = tcp_listener->port();
    server_.serve(std::move(*tcp_listener));
    thread_ = std::thread([this] { io_.run(); });
  }
  FakeDaemon(const FakeDaemon&) = delete;
  FakeDaemon& operator=(const FakeDaemon&) = delete;
  ~FakeDaemon() {
    asio::post(io_, [this] {
      server_.stop();
      io_.stop();
    });
    thread_.join();
  }
  [[nodiscard]] std::uint16_t tcp_port() const noexcept { return tcp_port_; }

 private:
  asio::io_context io_;
  http::Server server_;
  std::uint16_t tcp_port_ = 0;
  std::thread thread_;
};

}  // namespace

TEST_CASE("daemon client: a call over the Unix socket carries the session token, JSON bodies and extra headers") {
  TempDir dir;
  const auto socket = dir.path() / "daemon.sock";
  FakeDaemon daemon(socket);

  DaemonClient plain({.socket = socket});
  auto version = plain.call("GET", "/v1/version");
  REQUIRE(version);
  CHECK(version->status == 200);
  CHECK(version->ok());
  CHECK(version->content_type == "application/json");
  CHECK(version->body.find(R"("authorization":"-")") != std::string::npos);  // no token, no header
  CHECK(version->body.find(R"("host":"localhost")") != std::string::npos);

  const std::string token(64, 'a');
  DaemonClient session({.socket = socket, .session_token = token});
  auto scoped = session.call("GET", "/v1/version");
  REQUIRE(scoped);
  CHECK(scoped->body.find(R"("authorization":"ClaudeMesh-Session )" + token + "\"") != std::string::npos);
  CHECK(scoped->body.find(R"("session":"-")") != std::string::npos);

  // The same object again: the kept-alive connection is reused, and a body goes out as JSON.
  auto echoed = session.call("POST", "/v1/echo", R"({"to":"bob","message":"hi"})", {{"Idempotency-Key", "cm-1"}});
  REQUIRE(echoed);
  CHECK(echoed->status == 202);
  CHECK(echoed->body == R"({"to":"bob","message":"hi"})");
}

TEST_CASE("daemon client: over TCP the bearer token is the Authorization and the session rides in its own header") {
  TempDir dir;
  FakeDaemon daemon(dir.path() / "daemon.sock");
  DaemonClient client({.tcp_port = daemon.tcp_port(), .bearer_token = "local-token-value", .session_token = "abcd"});
  auto version = client.call("GET", "/v1/version");
  REQUIRE(version);
  CHECK(version->body.find(R"("authorization":"Bearer local-token-value")") != std::string::npos);
  CHECK(version->body.find(R"("session":"abcd")") != std::string::npos);
  CHECK(version->body.find(R"("host":"localhost:)" + std::to_string(daemon.tcp_port()) + "\"") != std::string::npos);
}

TEST_CASE("daemon client: an error status is an answer whose code and message come from the body") {
  TempDir dir;
  const auto socket = dir.path() / "daemon.sock";
  FakeDaemon daemon(socket);
  DaemonClient client({.socket = socket});

  auto refused = client.call("GET", "/v1/refused");
  REQUIRE(refused);
  CHECK_FALSE(refused->ok());
  CHECK(refused->status == 404);
  CHECK(refused->error_code() == "unknown_mesh");
  CHECK(refused->error_message() == R"(no mesh "x"; joined: a, b)");

  auto plain = client.call("GET", "/v1/plain-failure");
  REQUIRE(plain);
  CHECK(plain->status == 500);
  CHECK(plain->error_code() == "http_500");
  CHECK(plain->error_message() == "the daemon answered 500: boom second line");

  auto missing = client.call("GET", "/v1/no-such-route");
  REQUIRE(missing);
  CHECK(missing->status == 404);
}

TEST_CASE("daemon client: no daemon, or a daemon that does not answer in time, is an io_error") {
  TempDir dir;
  DaemonClient absent({.socket = dir.path() / "daemon.sock"}, 500ms);
  auto nothing = absent.call("GET", "/v1/version");
  REQUIRE_FALSE(nothing);
  CHECK(nothing.error() == Errc::io_error);
  CHECK(nothing.error().message.find((dir.path() / "daemon.sock").string()) != std::string::npos);

  const auto socket = dir.path() / "slow.sock";
  FakeDaemon daemon(socket);
  DaemonClient impatient({.socket = socket}, 200ms);
  const auto start = std::chrono::steady_clock::now();
  auto late = impatient.call("GET", "/v1/slow");
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  REQUIRE_FALSE(late);
  CHECK(late.error() == Errc::io_error);
  // The object stays usable after a timeout.
  auto version = impatient.call("GET", "/v1/version");
  REQUIRE(version);
  CHECK(version->status == 200);
}

TEST_CASE("daemon client: events are delivered in order until the caller says stop, resuming after Last-Event-ID") {
  TempDir dir;
  const auto socket = dir.path() / "daemon.sock";
  FakeDaemon daemon(socket);
  DaemonClient client({.socket = socket});

  std::vector<std::string> ids;
  std::vector<std::string> data;
  auto stopped = client.events("/v1/events", "", [&](std::string_view event, std::string_view body, std::string_view id) {
    CHECK(event == "message");
    ids.emplace_back(id);
    data.emplace_back(body);
    return ids.size() < 2;
  }, 5s);
  REQUIRE(stopped);
  const std::vector<std::string> first_two{"1", "2"};
  CHECK(ids == first_two);
  CHECK(data.front() == R"({"n":1})");

  ids.clear();
  auto resumed = client.events("/v1/events", "7", [&](std::string_view, std::string_view, std::string_view id) {
    ids.emplace_back(id);
    return true;
  }, 300ms);
  REQUIRE(resumed);  // the limit passing is success
  const std::vector<std::string> after_seven{"8", "9", "10"};
  CHECK(ids == after_seven);

  // And ordinary calls still work on the same object afterwards.
  auto version = client.call("GET", "/v1/version");
  REQUIRE(version);
  CHECK(version->status == 200);
}

TEST_CASE("daemon client: a refused event stream is invalid_value with the daemon's code and message") {
  TempDir dir;
  const auto socket = dir.path() / "daemon.sock";
  FakeDaemon daemon(socket);
  DaemonClient client({.socket = socket});
  bool called = false;
  auto refused = client.events("/v1/events-busy", "", [&](std::string_view, std::string_view, std::string_view) {
    called = true;
    return true;
  }, 2s);
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == Errc::invalid_value);
  CHECK(refused.error().message.find("too_many_streams") != std::string::npos);
  CHECK(refused.error().message.find("429") != std::string::npos);
  CHECK_FALSE(called);

  DaemonClient absent({.socket = dir.path() / "nobody.sock"});
  auto nothing = absent.events("/v1/events", "", [](std::string_view, std::string_view, std::string_view) { return true; }, 1s);
  REQUIRE_FALSE(nothing);
  CHECK(nothing.error() == Errc::io_error);
}
