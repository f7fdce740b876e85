// SPDX-License-Identifier: MIT
// The daemon against a real broker on loopback, through its IPC (Unix socket and loopback TCP): round trips
// for DMs, broadcasts and groups; an offline recipient; the idempotency table over /v1/send; requeue; two
// meshes with one broker down; the event stream and its per-session filter; the IPC's access rules and
// limits; the singleton lock and the clone policy.
#include <claudemesh/daemon.hpp>

#include "integration/local_mesh.hpp"
#include "transport/http/client.hpp"
#include "transport/sse/sse.hpp"

#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <nlohmann/json.hpp>

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::testing;
using namespace std::chrono_literals;
using Json = nlohmann::json;
namespace http = claudemesh::transport::http;

namespace {

DaemonMesh daemon_mesh(std::string slug, const Membership& m, const Identity& id, std::string name) {
  return DaemonMesh{.slug = std::move(slug),
                    .mesh_id = m.mesh_id,
                    .member_id = m.member_id,
                    .display_name = std::move(name),
                    .broker_url = m.ws_url,
                    .ca_file = {},
                    .member = id.clone()};
}

DaemonConfig daemon_config(const std::filesystem::path& dir, std::vector<DaemonMesh> meshes) {
  DaemonConfig config;
  config.dir = dir;
  config.meshes = std::move(meshes);
  config.tcp_port = 0;
  config.clone_policy = ClonePolicy::allow;
  config.client.backoff_initial = 50ms;
  config.client.backoff_max = 200ms;
  config.outbox.fsync = false;
  config.inbox.fsync = false;
  config.outbox.backoff_base = 20ms;
  config.outbox.backoff_cap = 100ms;
  return config;
}

std::unique_ptr<Daemon> start_daemon(const asio::any_io_executor& executor, DaemonConfig config) {
  auto daemon = Daemon::open(executor, std::move(config));
  REQUIRE_MESSAGE(daemon, (daemon ? "" : daemon.error().describe()));
  asio::co_spawn(executor, (*daemon)->run(), asio::detached);
  return std::move(*daemon);
}

// One IPC request over the daemon's Unix socket (or TCP when `port` is set).
struct Ipc {
  std::filesystem::path socket;
  std::uint16_t port = 0;
  std::vector<std::pair<std::string, std::string>> headers;

  asio::awaitable<http::HttpResponse> call(std::string method, std::string target, std::string body) const {
    http::ClientEndpoint endpoint;
    if (port != 0) {
      endpoint.host = "127.0.0.1";
      endpoint.port = port;
    } else {
      endpoint.unix_path = socket;
    }
    http::HttpClient client(co_await asio::this_coro::executor, endpoint);
    http::HttpRequest request;
    request.method = std::move(method);
    request.target = std::move(target);
    request.body = std::move(body);
    if (!request.body.empty()) request.headers.set("Content-Type", "application/json");
    for (const auto& [name, value] : headers) request.headers.set(name, value);
    auto response = co_await client.request(std::move(request));
    REQUIRE_MESSAGE(response, (response ? "" : response.error().describe()));
    co_return std::move(*response);
  }
  asio::awaitable<Json> get(std::string target) const {
    auto response = co_await call("GET", std::move(target), "");
    INFO(response.body);
    REQUIRE(response.status == 200);
    co_return Json::parse(response.body);
  }
  asio::awaitable<http::HttpResponse> post(std::string target, Json body) const {
    co_return co_await call("POST", std::move(target), body.dump());
  }
};

Ipc ipc_of(const Daemon& daemon) { return Ipc{daemon.files().socket(), 0, {}}; }

// Polls /v1/health until every mesh's broker connection is open.
asio::awaitable<bool> all_open(const Ipc& ipc, std::chrono::milliseconds limit = 5s) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const Json health = co_await ipc.get("/v1/health");
    bool open = true;
    for (const auto& mesh : health["meshes"]) open = open && mesh["broker"] == "open";
    if (open) co_return true;
    timer.expires_after(20ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return false;
}

// Polls the inbox until it holds `count` messages.
asio::awaitable<Json> inbox_with(const Ipc& ipc, std::size_t count, std::string query = {}) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  Json inbox;
  while (std::chrono::steady_clock::now() < deadline) {
    inbox = co_await ipc.get("/v1/inbox" + query);
    if (inbox["messages"].size() >= count) co_return inbox;
    timer.expires_after(20ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return inbox;
}

// Polls /v1/peers until a peer with `pubkey` is listed online (`want`) or is not (`!want`).
asio::awaitable<bool> peer_online(const Ipc& ipc, std::string pubkey, bool want, std::chrono::milliseconds limit = 5s) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const Json listed = co_await ipc.get("/v1/peers");
    bool online = false;
    for (const auto& p : listed["peers"]) online = online || (p["pubkey"] == pubkey && p["online"] == true);
    if (online == want) co_return true;
    timer.expires_after(20ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return false;
}

// A /v1/events reader: collects events until `stop` says so or the stream ends.
struct EventReader {
  std::vector<transport::sse::SseEvent> events;
  bool ended = false;
  int status = 0;

  asio::awaitable<void> read(Ipc ipc, std::string target, std::string last_event_id) {
    http::ClientEndpoint endpoint;
    endpoint.unix_path = ipc.socket;
    http::HttpClient client(co_await asio::this_coro::executor, endpoint);
    http::HttpRequest request;
    request.method = "GET";
    request.target = std::move(target);
    for (const auto& [name, value] : ipc.headers) request.headers.set(name, value);
    if (!last_event_id.empty()) request.headers.set("Last-Event-ID", last_event_id);
    transport::sse::SseParser parser;
    auto on_body = [this, &parser](std::string_view chunk) {
      std::vector<transport::sse::SseEvent> batch;
      if (!parser.feed(chunk, batch)) return false;
      for (auto& e : batch) events.push_back(std::move(e));
      return !ended;
    };
    auto head = co_await client.stream(std::move(request), on_body);
    if (head) status = head->status;
    ended = true;
  }
  std::vector<const transport::sse::SseEvent*> of_kind(std::string_view kind) const {
    std::vector<const transport::sse::SseEvent*> out;
    for (const auto& e : events) {
      if (e.event == kind) out.push_back(&e);
    }
    return out;
  }
};

struct TwoDaemons {
  Identity alice_id = Identity::generate(IdentityKind::member);
  Identity bob_id = Identity::generate(IdentityKind::member);
  TwoMembers mesh;
  std::unique_ptr<Daemon> alice;
  std::unique_ptr<Daemon> bob;
  std::chrono::milliseconds reaper_interval{5'000};
};

asio::awaitable<void> start_two(TwoDaemons& t, const std::string& base, const std::filesystem::path& root) {
  t.mesh = co_await create_two_member_mesh(base, t.alice_id, t.bob_id);
  auto executor = co_await asio::this_coro::executor;
  std::vector<DaemonMesh> a;
  a.push_back(daemon_mesh("team", t.mesh.owner, t.alice_id, "alice"));
  std::vector<DaemonMesh> b;
  b.push_back(daemon_mesh("team", t.mesh.member, t.bob_id, "bob"));
  auto alice_config = daemon_config(root / "alice", std::move(a));
  auto bob_config = daemon_config(root / "bob", std::move(b));
  alice_config.reaper_interval = bob_config.reaper_interval = t.reaper_interval;
  t.alice = start_daemon(executor, std::move(alice_config));
  t.bob = start_daemon(executor, std::move(bob_config));
  REQUIRE(co_await all_open(ipc_of(*t.alice)));
  REQUIRE(co_await all_open(ipc_of(*t.bob)));
}

}  // namespace

TEST_CASE("daemon: a DM goes daemon -> broker -> daemon, lands in the inbox and on the event stream") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  TwoDaemons t;
  auto scenario = [&]() -> asio::awaitable<void> {
    co_await start_two(t, http_base(*broker), dir.path());
    const Ipc alice = ipc_of(*t.alice);
    const Ipc bob = ipc_of(*t.bob);
    EventReader events;
    auto executor = co_await asio::this_coro::executor;
    asio::co_spawn(executor, events.read(bob, "/v1/events", ""), asio::detached);

    const Json version = co_await alice.get("/v1/version");
    CHECK(version["daemon_version"] == std::string(daemon_version()));
    CHECK(version["pid"] == ::getpid());

    const Json body1 = Json{{"to", "bob"}, {"message", "hello bob"}, {"priority", "now"}};
    auto sent = co_await alice.post("/v1/send", body1);
    INFO(sent.body);
    REQUIRE(sent.status == 202);
    const Json accepted = Json::parse(sent.body);
    CHECK(accepted["mesh"] == "team");
    CHECK(accepted["target_spec"] == t.bob_id.public_key().hex());
    CHECK(accepted["duplicate"] == false);

    const Json inbox = co_await inbox_with(bob, 1);
    REQUIRE(inbox["messages"].size() == 1);
    const auto& m = inbox["messages"][0];
    CHECK(m["body"] == "hello bob");
    CHECK(m["sender_pubkey"] == t.alice_id.public_key().hex());
    CHECK(m["mesh"] == "team");
    CHECK(m["client_message_id"] == accepted["client_message_id"]);
    CHECK(m["recipient_kind"] == "member");
    CHECK(m["seen_at"].is_null());

    // Reply, and msg-status of the first message shows the broker's delivery record.
    const Json body2 = Json{{"to", t.alice_id.public_key().hex().substr(0, 12)}, {"message", "hi alice"}};
    auto reply = co_await bob.post("/v1/send", body2);
    REQUIRE(reply.status == 202);
    REQUIRE((co_await inbox_with(alice, 1))["messages"].size() == 1);
    const auto cmid = accepted["client_message_id"].get<std::string>();
    auto condition1 = [&] {
      auto row = t.alice->outbox().find(cmid);
      return row && *row && (*row)->status == OutboxStatus::done;
    };
    REQUIRE(co_await wait_until(condition1));
    const Json status = co_await alice.get("/v1/outbox/" + cmid);
    CHECK(status["item"]["status"] == "done");
    CHECK(status["item"]["attempts"] == 1);
    REQUIRE(status.contains("delivery"));
    REQUIRE(status["delivery"]["recipients"].size() == 1);
    CHECK(status["delivery"]["recipients"][0]["delivered"] == true);

    // mark_seen, unread filter, delete.
    const Json seen = co_await bob.get("/v1/inbox?mark_seen=true");
    CHECK(seen["messages"].size() == 1);
    CHECK((co_await bob.get("/v1/inbox?unread_only=true"))["messages"].empty());
    const auto id = m["id"].get<std::string>();
    CHECK((co_await bob.get("/v1/inbox/" + id))["message"]["body"] == "hello bob");
    CHECK((co_await bob.get("/v1/inbox/search?q=hello"))["messages"].size() == 1);
    CHECK((co_await bob.call("DELETE", "/v1/inbox/" + id, "")).status == 200);
    CHECK((co_await bob.call("DELETE", "/v1/inbox/" + id, "")).status == 404);

    auto condition2 = [&] { return !events.of_kind("message").empty(); };
    REQUIRE(co_await wait_until(condition2));
    const Json event = Json::parse(events.of_kind("message")[0]->data);
    CHECK(event["body"] == "hello bob");
    CHECK(event.contains("ts"));
    CHECK(events.of_kind("message")[0]->id.has_value());

    // Peers: both daemons, each marked from its own point of view.
    const Json peers = co_await alice.get("/v1/peers?mesh=team");
    bool saw_self = false;
    bool saw_bob = false;
    for (const auto& p : peers["peers"]) {
      if (p["member_pubkey"] == t.alice_id.public_key().hex()) saw_self = p["is_self"] == true;
      if (p["display_name"] == "bob") saw_bob = p["is_self"] == false && p["peer_role"] == "control-plane";
    }
    CHECK(saw_self);
    CHECK(saw_bob);
    events.ended = true;
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
}

TEST_CASE("daemon: broadcast and @group reach exactly the right members") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  TwoDaemons t;
  auto scenario = [&]() -> asio::awaitable<void> {
    co_await start_two(t, http_base(*broker), dir.path());
    const Ipc alice = ipc_of(*t.alice);
    const Ipc bob = ipc_of(*t.bob);
    const Json body3 = Json{{"to", "*"}, {"message", "standup in 5"}};
    auto everyone = co_await alice.post("/v1/send", body3);
    INFO(everyone.body);
    REQUIRE(everyone.status == 202);
    CHECK(Json::parse(everyone.body)["recipients"] == 1);  // everyone but the sender
    const Json inbox = co_await inbox_with(bob, 1);
    REQUIRE(inbox["messages"].size() == 1);
    CHECK(inbox["messages"][0]["body"] == "standup in 5");
    CHECK(inbox["messages"][0]["target_spec"] == "*");
    // A group nobody is in reaches no one: refused with a reason (404 unknown_target), not queued forever.
    const Json body4 = Json{{"to", "@nobody-here"}, {"message", "x"}};
    auto nobody = co_await alice.post("/v1/send", body4);
    CHECK(nobody.status == 404);
    CHECK(Json::parse(nobody.body).contains("error"));
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
}

TEST_CASE("daemon: the idempotency table over /v1/send (Idempotency-Key and client_message_id)") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  TwoDaemons t;
  auto scenario = [&]() -> asio::awaitable<void> {
    co_await start_two(t, http_base(*broker), dir.path());
    Ipc alice = ipc_of(*t.alice);
    const Ipc bob = ipc_of(*t.bob);
    const std::string bob_key = t.bob_id.public_key().hex();
    // done + same fingerprint -> 200 duplicate with the broker's id.
    const Json body5 = Json{{"to", bob_key}, {"message", "one"}, {"client_message_id", "cm-1"}};
    auto first = co_await alice.post("/v1/send", body5);
    REQUIRE(first.status == 202);
    auto condition3 = [&] {
      auto row = t.alice->outbox().find("cm-1");
      return row && *row && (*row)->status == OutboxStatus::done;
    };
    REQUIRE(co_await wait_until(condition3));
    const Json body6 = Json{{"to", bob_key}, {"message", "one"}, {"client_message_id", "cm-1"}};
    auto again = co_await alice.post("/v1/send", body6);
    INFO(again.body);
    CHECK(again.status == 200);
    const Json dup = Json::parse(again.body);
    CHECK(dup["duplicate"] == true);
    CHECK(dup["broker_message_id"] == (*t.alice->outbox().find("cm-1"))->broker_message_id);
    // done + different fingerprint -> 409 with the conflict string.
    const Json body7 = Json{{"to", bob_key}, {"message", "two"}, {"client_message_id", "cm-1"}};
    auto changed = co_await alice.post("/v1/send", body7);
    CHECK(changed.status == 409);
    const Json conflict = Json::parse(changed.body);
    CHECK(conflict["conflict"] == "outbox_done_fingerprint_mismatch");
    CHECK(conflict["error"]["code"] == "idempotency_conflict");
    CHECK(conflict["daemon_fingerprint_prefix"].get<std::string>().size() == 16);
    // The header carries the key too; header and body disagreeing is refused.
    alice.headers = {{"Idempotency-Key", "cm-2"}};
    const Json body8 = Json{{"to", bob_key}, {"message", "three"}};
    auto keyed = co_await alice.post("/v1/send", body8);
    CHECK(keyed.status == 202);
    CHECK(Json::parse(keyed.body)["client_message_id"] == "cm-2");
    const Json body9 = Json{{"to", bob_key}, {"message", "three"}, {"client_message_id", "cm-3"}};
    auto disagree = co_await alice.post("/v1/send", body9);
    CHECK(disagree.status == 400);
    alice.headers.clear();
    // The recipient stores each message once.
    const Json inbox = co_await inbox_with(bob, 2);
    CHECK(inbox["messages"].size() == 2);
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
}

TEST_CASE("daemon: a message to an offline member is delivered when its daemon comes back, and requeue keeps the route") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  TwoDaemons t;
  auto scenario = [&]() -> asio::awaitable<void> {
    co_await start_two(t, http_base(*broker), dir.path());
    const Ipc alice = ipc_of(*t.alice);
    const std::string bob_key = t.bob_id.public_key().hex();
    t.bob->stop();
    t.bob.reset();
    const Json body10 = Json{{"to", bob_key}, {"message", "while you were out"}};
    auto sent = co_await alice.post("/v1/send", body10);
    REQUIRE(sent.status == 202);
    // By name too: an offline member is found in the mesh's member list.
    const Json by_name = Json{{"to", "bob"}, {"message", "by name, while you were out"}};
    auto named = co_await alice.post("/v1/send", by_name);
    INFO(named.body);
    REQUIRE(named.status == 202);
    CHECK(Json::parse(named.body)["target_spec"] == bob_key);
    const Json nobody = Json{{"to", "carol"}, {"message", "no such member"}};
    CHECK((co_await alice.post("/v1/send", nobody)).status == 404);
    // Requeue a dead-lettered copy: a fresh id, the same route (reference latent bug (b) broadcast it).
    const Json body11 = Json{{"to", bob_key}, {"message", "requeued"}, {"client_message_id", "rq-1"}};
    auto queued = co_await alice.post("/v1/send", body11);
    REQUIRE(queued.status == 202);
    auto condition4 = [&] {
      auto done = t.alice->outbox().list(OutboxStatus::done, 10);
      return done && done->size() == 3;
    };
    REQUIRE(co_await wait_until(condition4));
    const Json body12 = Json{{"id", "rq-1"}};
    auto refused = co_await alice.post("/v1/outbox/requeue", body12);
    CHECK(refused.status == 403);  // done rows are not requeued
    const Json listed = co_await alice.get("/v1/outbox?status=done");
    CHECK(listed["items"].size() == 3);
    CHECK(listed["items"][0]["target_spec"] == bob_key);

    std::vector<DaemonMesh> b;
    b.push_back(daemon_mesh("team", t.mesh.member, t.bob_id, "bob"));
    t.bob = start_daemon(co_await asio::this_coro::executor, daemon_config(dir.path() / "bob", std::move(b)));
    const Ipc bob = ipc_of(*t.bob);
    const Json inbox = co_await inbox_with(bob, 3);
    REQUIRE(inbox["messages"].size() == 3);
    std::vector<std::string> bodies;
    for (const auto& m : inbox["messages"]) bodies.push_back(m["body"]);
    CHECK(std::find(bodies.begin(), bodies.end(), "while you were out") != bodies.end());
    CHECK(std::find(bodies.begin(), bodies.end(), "by name, while you were out") != bodies.end());
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
}

TEST_CASE("daemon: §8(c) a daemon started while its broker is down accepts sends and delivers them when it comes up") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const std::uint16_t port = broker->port();
  TwoDaemons t;
  auto scenario = [&]() -> asio::awaitable<void> {
    t.mesh = co_await create_two_member_mesh(http_base(*broker), t.alice_id, t.bob_id);
    broker->stop();
    auto executor = co_await asio::this_coro::executor;
    std::vector<DaemonMesh> a;
    a.push_back(daemon_mesh("team", t.mesh.owner, t.alice_id, "alice"));
    t.alice = start_daemon(executor, daemon_config(dir.path() / "alice", std::move(a)));
    const Ipc alice = ipc_of(*t.alice);
    const Json health = co_await alice.get("/v1/health");
    CHECK(health["meshes"][0]["broker"] != "open");
    const Json body = Json{{"to", t.bob_id.public_key().hex()}, {"message", "queued before the first connect"}};
    auto sent = co_await alice.post("/v1/send", body);
    REQUIRE(sent.status == 202);
    CHECK(Json::parse(sent.body)["status"] == "pending");

    broker = start_broker(io, dir.path() / "broker", port);
    std::vector<DaemonMesh> b;
    b.push_back(daemon_mesh("team", t.mesh.member, t.bob_id, "bob"));
    t.bob = start_daemon(executor, daemon_config(dir.path() / "bob", std::move(b)));
    const Json inbox = co_await inbox_with(ipc_of(*t.bob), 1);
    REQUIRE(inbox["messages"].size() == 1);
    CHECK(inbox["messages"][0]["body"] == "queued before the first connect");
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
}

TEST_CASE("daemon: two meshes, one broker down: the other mesh keeps flowing") {
  asio::io_context io;
  TempDir dir;
  auto broker_one = start_broker(io, dir.path() / "broker-one");
  auto broker_two = start_broker(io, dir.path() / "broker-two");
  const auto alice_one = Identity::generate(IdentityKind::member);
  const auto bob_one = Identity::generate(IdentityKind::member);
  const auto alice_two = Identity::generate(IdentityKind::member);
  const auto bob_two = Identity::generate(IdentityKind::member);
  std::unique_ptr<Daemon> alice;
  std::unique_ptr<Daemon> bob;
  auto scenario = [&]() -> asio::awaitable<void> {
    auto one = co_await create_two_member_mesh(http_base(*broker_one), alice_one, bob_one);
    auto two = co_await create_two_member_mesh(http_base(*broker_two), alice_two, bob_two);
    auto executor = co_await asio::this_coro::executor;
    std::vector<DaemonMesh> a;
    a.push_back(daemon_mesh("one", one.owner, alice_one, "alice"));
    a.push_back(daemon_mesh("two", two.owner, alice_two, "alice"));
    std::vector<DaemonMesh> b;
    b.push_back(daemon_mesh("one", one.member, bob_one, "bob"));
    b.push_back(daemon_mesh("two", two.member, bob_two, "bob"));
    alice = start_daemon(executor, daemon_config(dir.path() / "alice", std::move(a)));
    bob = start_daemon(executor, daemon_config(dir.path() / "bob", std::move(b)));
    const Ipc a_ipc = ipc_of(*alice);
    const Ipc b_ipc = ipc_of(*bob);
    REQUIRE(co_await all_open(a_ipc));
    REQUIRE(co_await all_open(b_ipc));
    // Several meshes and none named: the daemon says which exist.
    const Json body13 = Json{{"to", bob_one.public_key().hex()}, {"message", "?"}};
    auto ambiguous = co_await a_ipc.post("/v1/send", body13);
    CHECK(ambiguous.status == 400);
    CHECK(Json::parse(ambiguous.body)["meshes"] == Json::array({"one", "two"}));
    const Json body14 = Json{{"to", "*"}, {"message", "?"}, {"mesh", "three"}};
    auto unknown = co_await a_ipc.post("/v1/send", body14);
    CHECK(unknown.status == 404);

    broker_one->stop();
    const Json body15 = Json{{"to", bob_one.public_key().hex()}, {"message", "via one"}, {"mesh", "one"}};
    auto stuck = co_await a_ipc.post("/v1/send", body15);
    CHECK(stuck.status == 202);  // accepted: it waits in the outbox
    const Json body16 = Json{{"to", bob_two.public_key().hex()}, {"message", "via two"}, {"mesh", "two"}};
    auto flows = co_await a_ipc.post("/v1/send", body16);
    CHECK(flows.status == 202);
    const Json inbox = co_await inbox_with(b_ipc, 1, "?mesh=two");
    REQUIRE(inbox["messages"].size() == 1);
    CHECK(inbox["messages"][0]["body"] == "via two");
    const Json health = co_await a_ipc.get("/v1/health");
    CHECK(health["brokers"]["two"] == "open");
    CHECK(health["brokers"]["one"] != "open");
    alice->stop();
    bob->stop();
  };
  run_bounded(io, scenario());
}

TEST_CASE("daemon: IPC access rules on loopback TCP and limits on both transports") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  TwoDaemons t;
  auto scenario = [&]() -> asio::awaitable<void> {
    co_await start_two(t, http_base(*broker), dir.path());
    const std::uint16_t port = t.alice->tcp_port();
    REQUIRE(port != 0);
    std::ifstream token_file(t.alice->files().token());
    std::string token;
    std::getline(token_file, token);
    REQUIRE(token.size() == 43);
    CHECK(mode_of(t.alice->files().token()) == 0600);
    CHECK(mode_of(t.alice->files().socket()) == 0600);
    CHECK(mode_of(t.alice->files().root) == 0700);

    Ipc tcp{{}, port, {}};
    CHECK((co_await tcp.call("GET", "/v1/version", "")).status == 401);
    tcp.headers = {{"Authorization", "Bearer wrong"}};
    CHECK((co_await tcp.call("GET", "/v1/version", "")).status == 401);
    tcp.headers = {{"Authorization", "Bearer " + token}};
    CHECK((co_await tcp.call("GET", "/v1/version", "")).status == 200);
    tcp.headers = {{"Authorization", "Bearer " + token}, {"Host", "evil.example:47823"}};
    CHECK((co_await tcp.call("GET", "/v1/version", "")).status == 403);
    tcp.headers = {{"Authorization", "Bearer " + token}, {"Host", "localhost:47823"}};
    CHECK((co_await tcp.call("GET", "/v1/version", "")).status == 200);
    tcp.headers = {{"Authorization", "Bearer " + token}, {"Origin", "https://evil.example"}};
    CHECK((co_await tcp.call("GET", "/v1/version", "")).status == 403);
    tcp.headers = {{"Authorization", "Bearer " + token}};
    CHECK((co_await tcp.call("OPTIONS", "/v1/send", "")).status == 403);
    CHECK((co_await tcp.call("GET", "/v1/version?token=" + token, "")).status == 400);
    // A body over 1 MiB is refused before any route runs.
    const std::string big(static_cast<std::size_t>(1 << 20) + 10, 'x');
    const Json oversized{{"to", "*"}, {"message", big}};
    CHECK((co_await tcp.call("POST", "/v1/send", oversized.dump())).status == 413);
    const Ipc unix_ipc = ipc_of(*t.alice);
    CHECK((co_await unix_ipc.call("POST", "/v1/send", oversized.dump())).status == 413);
    // Malformed bodies get a code, not a crash.
    CHECK((co_await unix_ipc.call("POST", "/v1/send", "{not json")).status == 400);
    CHECK((co_await unix_ipc.call("POST", "/v1/send", "[1,2]")).status == 400);
    const Json body17 = Json{{"to", 5}, {"message", "x"}};
    CHECK((co_await unix_ipc.post("/v1/send", body17)).status == 400);
    const Json body18 = Json{{"message", "x"}};
    CHECK((co_await unix_ipc.post("/v1/send", body18)).status == 400);
    const Json body19 = Json{{"to", "*"}, {"message", "x"}, {"priority", "urgent"}};
    CHECK((co_await unix_ipc.post("/v1/send", body19)).status == 400);
    CHECK((co_await unix_ipc.call("GET", "/v1/inbox?limit=ten", "")).status == 400);
    CHECK((co_await unix_ipc.call("GET", "/v1/nope", "")).status == 404);

    // 32 event streams at most; the 33rd is told so.
    std::vector<std::unique_ptr<EventReader>> readers;
    auto executor = co_await asio::this_coro::executor;
    for (int i = 0; i < 33; ++i) {
      readers.push_back(std::make_unique<EventReader>());
      asio::co_spawn(executor, readers.back()->read(unix_ipc, "/v1/events", ""), asio::detached);
    }
    auto condition5 = [&] {
      int refused = 0;
      for (const auto& r : readers) refused += r->status == 429 ? 1 : 0;
      return refused == 1;
    };
    REQUIRE(co_await wait_until(condition5));
    const Json metrics_health = co_await unix_ipc.get("/v1/health");
    CHECK(metrics_health["event_streams"] == 32);
    const auto metrics = co_await unix_ipc.call("GET", "/v1/metrics", "");
    CHECK(metrics.status == 200);
    CHECK(metrics.body.find("claudemesh_daemon_event_streams 32") != std::string::npos);
    CHECK(metrics.body.find("claudemesh_daemon_ipc_refused_total") != std::string::npos);
    for (auto& r : readers) r->ended = true;
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
}

// The `presence` object a launched session registers with: its key, and its member's attestation.
Json session_presence(const Identity& member, const Identity& session) {
  auto attestation = attest_session(member, session.public_key(), now_ms() + 3'600'000);
  REQUIRE(attestation);
  return Json{{"session_pubkey", session.public_key().hex()},
              {"session_secret_key", to_hex(session.secret_key().bytes())},
              {"parent_attestation", Json{{"session_pubkey", attestation->session_pubkey},
                                          {"parent_member_pubkey", attestation->parent_pubkey},
                                          {"expires_at", attestation->expires_at_ms},
                                          {"signature", attestation->signature}}}};
}

TEST_CASE("daemon: sessions are scoped: 1.34.11 inbox rows, 1.34.10/1.34.13 events, /v1/sessions/me") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  TwoDaemons t;
  auto scenario = [&]() -> asio::awaitable<void> {
    co_await start_two(t, http_base(*broker), dir.path());
    const Ipc bob = ipc_of(*t.bob);
    const std::string token_a(64, 'a');
    const std::string token_b(64, 'b');
    const auto session_a = Identity::generate(IdentityKind::session);
    const auto session_b = Identity::generate(IdentityKind::session);
    const std::string key_a = session_a.public_key().hex();
    const std::string key_b = session_b.public_key().hex();
    std::vector<std::tuple<std::string, const Identity*, std::string>> sessions;
    sessions.emplace_back(token_a, &session_a, "sess-a");
    sessions.emplace_back(token_b, &session_b, "sess-b");
    for (const auto& [token, key, id] : sessions) {
      Json registration{{"token", token}, {"session_id", id}, {"mesh", "team"}, {"display_name", id}, {"pid", ::getpid()}};
      registration["presence"] = session_presence(t.bob_id, *key);
      auto registered = co_await bob.post("/v1/sessions/register", registration);
      INFO(registered.body);
      REQUIRE(registered.status == 200);
      CHECK(Json::parse(registered.body)["presence"] == true);
    }
    Ipc as_a = bob;
    as_a.headers = {{"Authorization", "ClaudeMesh-Session " + token_a}};
    const Json me = co_await as_a.get("/v1/sessions/me");
    CHECK(me["session_id"] == "sess-a");
    CHECK(me["session_pubkey"] == key_a);
    CHECK_FALSE(me.contains("token"));
    Ipc stranger = bob;
    stranger.headers = {{"Authorization", "ClaudeMesh-Session " + std::string(64, 'c')}};
    CHECK((co_await stranger.call("GET", "/v1/sessions/me", "")).status == 404);

    // Rows addressed to session B are not session A's; rows to the member are everyone's.
    InboxMessage to_b;
    to_b.client_message_id = "for-b";
    to_b.mesh = t.mesh.member.mesh_id;
    to_b.sender_pubkey = t.alice_id.public_key().hex();
    to_b.body = "only for b";
    to_b.recipient_pubkey = key_b;
    to_b.recipient_kind = "session";
    REQUIRE(t.bob->inbox().store(to_b));
    EventReader a_events;
    EventReader b_events;
    EventReader all_events;
    Ipc as_b = bob;
    as_b.headers = {{"Authorization", "ClaudeMesh-Session " + token_b}};
    auto executor = co_await asio::this_coro::executor;
    asio::co_spawn(executor, a_events.read(as_a, "/v1/events", ""), asio::detached);
    asio::co_spawn(executor, b_events.read(as_b, "/v1/events", ""), asio::detached);
    asio::co_spawn(executor, all_events.read(bob, "/v1/events", ""), asio::detached);
    CHECK((co_await as_a.get("/v1/inbox"))["messages"].empty());
    CHECK((co_await as_b.get("/v1/inbox"))["messages"].size() == 1);
    CHECK((co_await bob.get("/v1/inbox"))["messages"].size() == 1);
    const Json b_rows = co_await as_b.get("/v1/inbox");
    CHECK((co_await as_a.call("GET", "/v1/inbox/" + b_rows["messages"][0]["id"].get<std::string>(), "")).status == 404);

    // A DM to the member reaches every session's stream (and the unfiltered one).
    const Json body20 = Json{{"to", "bob"}, {"message", "to the member"}};
    auto sent = co_await ipc_of(*t.alice).post("/v1/send", body20);
    REQUIRE(sent.status == 202);
    auto condition6 = [&] {
      return !a_events.of_kind("message").empty() && !b_events.of_kind("message").empty() &&
             !all_events.of_kind("message").empty();
    };
    REQUIRE(co_await wait_until(condition6));
    CHECK((co_await as_a.get("/v1/inbox"))["messages"].size() == 1);
    a_events.ended = b_events.ended = all_events.ended = true;
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
}

TEST_CASE("daemon: a session registered with presence is its own peer: listed, reached by its key, sends as itself, "
          "reaped with its process (bugs 10, 11, 17, 1.31.0 reaper)") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  TwoDaemons t;
  t.reaper_interval = 100ms;
  // The launched session's process: reaped when it dies.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  auto scenario = [&]() -> asio::awaitable<void> {
    co_await start_two(t, http_base(*broker), dir.path());
    const Ipc alice = ipc_of(*t.alice);
    const Ipc bob = ipc_of(*t.bob);
    const auto session = Identity::generate(IdentityKind::session);
    const std::string key = session.public_key().hex();
    const std::string token(64, 'd');
    Json registration{{"token", token}, {"session_id", "sess-live"}, {"mesh", "team"},
                      {"display_name", "bob-session"}, {"pid", child}, {"cwd", "/tmp"}, {"role", "reviewer"}};
    registration["groups"].push_back("@ops:lead");

    // Presence the daemon cannot vouch for is refused now, with the reason.
    registration["presence"] = session_presence(t.alice_id, session);  // attested by another member
    auto refused = co_await bob.post("/v1/sessions/register", registration);
    CHECK(refused.status == 400);
    CHECK(refused.body.find("attestation_mismatch") != std::string::npos);
    registration["presence"] = session_presence(t.bob_id, session);
    registration["presence"]["session_secret_key"] = std::string(128, '0');
    refused = co_await bob.post("/v1/sessions/register", registration);
    CHECK(refused.status == 400);

    EventReader alice_events;
    EventReader bob_events;
    auto executor = co_await asio::this_coro::executor;
    asio::co_spawn(executor, alice_events.read(alice, "/v1/events", ""), asio::detached);
    asio::co_spawn(executor, bob_events.read(bob, "/v1/events", ""), asio::detached);
    registration["presence"] = session_presence(t.bob_id, session);
    auto registered = co_await bob.post("/v1/sessions/register", registration);
    INFO(registered.body);
    REQUIRE(registered.status == 200);
    REQUIRE(co_await peer_online(alice, key, true));
    // Bug 10 (1.34.9): the other member hears the session join; its own member's streams do not.
    auto joined = [&key](const EventReader& reader) {
      for (const auto* e : reader.of_kind("peer_join")) {
        if (Json::parse(e->data, nullptr, false).value("pubkey", "") == key) return true;
      }
      return false;
    };
    auto alice_heard = [&] { return joined(alice_events); };
    REQUIRE(co_await wait_until(alice_heard));
    CHECK_FALSE(joined(bob_events));
    const Json listed = co_await alice.get("/v1/peers");
    for (const auto& p : listed["peers"]) {
      if (p["pubkey"] != key) continue;
      CHECK(p["peer_role"] == "session");
      CHECK(p["member_pubkey"] == t.bob_id.public_key().hex());
      CHECK(p["display_name"] == "bob-session");
      CHECK(p["session_id"] == "sess-live");
      CHECK(p["role"] == "reviewer");  // bug 20 (1.31.5): the session's role reaches other members' peer lists
    }

    // A DM to the session's key lands in the session's inbox, not in another session's.
    const Json other{{"token", std::string(64, 'e')}, {"session_id", "sess-other"}, {"mesh", "team"},
                     {"display_name", "other"}, {"pid", ::getpid()}};
    REQUIRE((co_await bob.post("/v1/sessions/register", other)).status == 200);
    Ipc as_session = bob;
    as_session.headers = {{"Authorization", "ClaudeMesh-Session " + token}};
    Ipc as_other = bob;
    as_other.headers = {{"Authorization", "ClaudeMesh-Session " + std::string(64, 'e')}};
    const Json to_session{{"to", key}, {"message", "for the session"}};
    auto sent = co_await alice.post("/v1/send", to_session);
    REQUIRE(sent.status == 202);
    const Json got = co_await inbox_with(as_session, 1);
    REQUIRE(got["messages"].size() == 1);
    CHECK(got["messages"][0]["body"] == "for the session");
    CHECK(got["messages"][0]["recipient_kind"] == "session");
    CHECK(got["messages"][0]["recipient_pubkey"] == key);
    CHECK((co_await as_other.get("/v1/inbox"))["messages"].empty());

    // The session's sends leave on its own connection, attributed to its key.
    const Json from_session{{"to", "alice"}, {"message", "from the session"}};
    auto reply = co_await as_session.post("/v1/send", from_session);
    INFO(reply.body);
    REQUIRE(reply.status == 202);
    const Json at_alice = co_await inbox_with(alice, 1);
    REQUIRE(at_alice["messages"].size() == 1);
    CHECK(at_alice["messages"][0]["body"] == "from the session");
    CHECK(at_alice["messages"][0]["sender_pubkey"] == key);
    CHECK(at_alice["messages"][0]["sender_member_pubkey"] == t.bob_id.public_key().hex());
    // Bug 11 (1.34.8): a session never finds its own send in its inbox.
    CHECK((co_await as_session.get("/v1/inbox"))["messages"].size() == 1);

    // Its process dies: the reaper drops the entry and closes its connection, so it leaves the mesh.
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    CHECK(co_await peer_online(alice, key, false));
    CHECK((co_await as_session.call("GET", "/v1/sessions/me", "")).status == 404);
    alice_events.ended = bob_events.ended = true;
    t.alice->stop();
    t.bob->stop();
  };
  run_bounded(io, scenario());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, WNOHANG);
}

TEST_CASE("daemon: one daemon per directory (flock), and a cloned directory is refused until accepted") {
  asio::io_context io;
  TempDir dir;
  const auto id = Identity::generate(IdentityKind::member);
  Membership fake;
  fake.mesh_id = "m";
  fake.member_id = "x";
  fake.ws_url = "ws://127.0.0.1:9/ws";
  std::vector<DaemonMesh> meshes;
  meshes.push_back(daemon_mesh("team", fake, id, "me"));
  auto first = Daemon::open(io.get_executor(), daemon_config(dir.path() / "d", std::move(meshes)));
  REQUIRE(first);
  CHECK(running_daemon_pid(dir.path() / "d") == static_cast<long>(::getpid()));
  std::vector<DaemonMesh> again;
  again.push_back(daemon_mesh("team", fake, id, "me"));
  auto second = Daemon::open(io.get_executor(), daemon_config(dir.path() / "d", std::move(again)));
  REQUIRE_FALSE(second);
  CHECK(second.error() == Errc::already_exists);
  first->reset();

  // Pretend the directory came from another machine.
  const auto fingerprint_file = dir.path() / "d" / "host_fingerprint.json";
  Json record = Json::parse(std::ifstream(fingerprint_file));
  record["fingerprint"] = std::string(64, '0');
  record["host_id"] = "linux:someone-else";
  std::ofstream(fingerprint_file) << record.dump();
  std::vector<DaemonMesh> cloned;
  cloned.push_back(daemon_mesh("team", fake, id, "me"));
  auto config = daemon_config(dir.path() / "d", std::move(cloned));
  config.clone_policy = ClonePolicy::refuse;
  auto refused = Daemon::open(io.get_executor(), std::move(config));
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == Errc::forbidden);
  CHECK(refused.error().message.find("accept-host") != std::string::npos);
  auto accepted = daemon_accept_host(dir.path() / "d");
  REQUIRE(accepted);
  CHECK(accepted->size() == 16);
  std::vector<DaemonMesh> adopted;
  adopted.push_back(daemon_mesh("team", fake, id, "me"));
  auto after = daemon_config(dir.path() / "d", std::move(adopted));
  after.clone_policy = ClonePolicy::refuse;
  CHECK(Daemon::open(io.get_executor(), std::move(after)));
}

TEST_CASE("docs/ipc-api.json documents exactly the daemon's routes") {
  asio::io_context io;
  TempDir dir;
  const auto id = Identity::generate(IdentityKind::member);
  Membership fake;
  fake.mesh_id = "m";
  fake.member_id = "x";
  fake.ws_url = "ws://127.0.0.1:9/ws";
  std::vector<DaemonMesh> meshes;
  meshes.push_back(daemon_mesh("team", fake, id, "me"));
  auto daemon = Daemon::open(io.get_executor(), daemon_config(dir.path() / "d", std::move(meshes)));
  REQUIRE(daemon);
  std::set<std::string> served;
  for (const auto& route : (*daemon)->routes()) served.insert(route);
  const Json doc = Json::parse(std::ifstream(std::string(CLAUDEMESH_DOCS_DIR) + "/ipc-api.json"));
  CHECK(doc["openapi"].get<std::string>().starts_with("3."));
  std::set<std::string> documented;
  for (const auto& [path, operations] : doc["paths"].items()) {
    for (const auto& [method, operation] : operations.items()) {
      std::string upper = method;
      for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      documented.insert(upper + " " + path);
      CHECK_MESSAGE(operation.contains("responses"), std::string(upper + " " + path));
    }
  }
  for (const auto& route : served) CHECK_MESSAGE(documented.contains(route), std::string("undocumented route: " + route));
  for (const auto& route : documented) CHECK_MESSAGE(served.contains(route), std::string("documented but not served: " + route));
}
