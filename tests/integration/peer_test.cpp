// SPDX-License-Identifier: MIT
// The embeddable Peer against a real broker on loopback: names resolved and bodies sealed at accept, the
// outbox drained to the broker, the inbox filled and acknowledged; offline recipients, a broker outage,
// broadcast and group fan-out, the idempotency table through send(), and a crash between accept and ack.
#include <claudemesh/peer.hpp>

#include "integration/local_mesh.hpp"

#include <asio/detached.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <future>
#include <map>
#include <thread>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::testing;
using namespace std::chrono_literals;

namespace {

PeerConfig peer_config(const std::filesystem::path& dir, const Membership& m, std::string name) {
  PeerConfig config;
  config.data_dir = dir;
  config.mesh_id = m.mesh_id;
  config.member_id = m.member_id;
  config.broker_url = m.ws_url;
  config.display_name = std::move(name);
  config.client.backoff_initial = 50ms;
  config.client.backoff_max = 200ms;
  config.outbox.fsync = false;
  config.inbox.fsync = false;
  config.outbox.backoff_base = 20ms;
  config.outbox.backoff_cap = 100ms;
  return config;
}

// Collects what a peer received.
struct Received {
  std::vector<InboxMessage> messages;
  void attach(Peer& peer) {
    peer.on_message([this](const InboxMessage& m) { messages.push_back(m); });
  }
  std::function<bool()> count_is(std::size_t n) {
    return [this, n] { return messages.size() >= n; };
  }
};

std::function<bool()> is_open(Peer& peer) {
  return [&peer] { return peer.client().state() == TransportState::open; };
}

std::function<bool()> row_is(Peer& peer, std::string id, OutboxStatus status) {
  return [&peer, id, status] {
    auto row = peer.outbox().find(id);
    return row && *row && (*row)->status == status;
  };
}

}  // namespace

TEST_CASE("two peers exchange DMs by display name through their outboxes and inboxes") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice_id, bob_id);
    auto executor = co_await asio::this_coro::executor;
    auto alice = Peer::open(executor, alice_id.clone(), peer_config(dir.path() / "alice", mesh.owner, "alice"));
    auto bob = Peer::open(executor, bob_id.clone(), peer_config(dir.path() / "bob", mesh.member, "bob"));
    REQUIRE(alice);
    REQUIRE(bob);
    Received at_alice;
    Received at_bob;
    at_alice.attach(**alice);
    at_bob.attach(**bob);
    asio::co_spawn(executor, (*alice)->run(), asio::detached);
    asio::co_spawn(executor, (*bob)->run(), asio::detached);
    REQUIRE(co_await wait_until(is_open(**alice)));
    REQUIRE(co_await wait_until(is_open(**bob)));

    auto sent = co_await (*alice)->send("bob", "the build is green");
    REQUIRE_MESSAGE(sent, (sent ? "" : sent.error().describe()));
    CHECK(sent->accepted.http_status == 202);
    CHECK(sent->accepted.inserted);
    CHECK(sent->target_spec == bob_id.public_key().hex());
    REQUIRE(co_await wait_until(at_bob.count_is(1)));
    const auto& got = at_bob.messages[0];
    CHECK(got.body == "the build is green");
    CHECK(got.sender_name == "alice");
    CHECK(got.sender_pubkey == alice_id.public_key().hex());
    CHECK(got.client_message_id == sent->accepted.row.client_message_id);
    REQUIRE(co_await wait_until(row_is(**alice, sent->accepted.row.id, OutboxStatus::done)));
    auto row = (*alice)->outbox().find(sent->accepted.row.id);
    CHECK((*row)->broker_message_id == got.broker_message_id);

    SendOptions reply_options;
    reply_options.reply_to_id = got.broker_message_id;
    reply_options.priority = "now";
    auto reply = co_await (*bob)->send(alice_id.public_key().hex().substr(0, 12), "thanks", reply_options);
    REQUIRE(reply);
    REQUIRE(co_await wait_until(at_alice.count_is(1)));
    CHECK(at_alice.messages[0].body == "thanks");
    CHECK(at_alice.messages[0].reply_to_id == got.broker_message_id);
    CHECK(at_alice.messages[0].priority == "now");

    // Stored in the inbox, scoped to the recipient.
    InboxQuery query;
    query.recipients = {bob_id.public_key().hex()};
    auto listed = (*bob)->inbox().list(query);
    REQUIRE(listed);
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().body == "the build is green");

    auto unknown = co_await (*alice)->send("carol", "anyone?");
    REQUIRE(!unknown);
    CHECK(unknown.error() == Errc::unknown_target);
    (*alice)->stop();
    (*bob)->stop();
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("a DM to an offline member is delivered when it comes online, once") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice_id, bob_id);
    auto executor = co_await asio::this_coro::executor;
    auto alice = Peer::open(executor, alice_id.clone(), peer_config(dir.path() / "alice", mesh.owner, "alice"));
    REQUIRE(alice);
    asio::co_spawn(executor, (*alice)->run(), asio::detached);
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i) {
      auto sent = co_await (*alice)->send(bob_id.public_key().hex(), "queued " + std::to_string(i));
      REQUIRE(sent);
      ids.push_back(sent->accepted.row.id);
    }
    for (const auto& id : ids) REQUIRE(co_await wait_until(row_is(**alice, id, OutboxStatus::done)));

    auto bob = Peer::open(executor, bob_id.clone(), peer_config(dir.path() / "bob", mesh.member, "bob"));
    REQUIRE(bob);
    Received at_bob;
    at_bob.attach(**bob);
    asio::co_spawn(executor, (*bob)->run(), asio::detached);
    REQUIRE(co_await wait_until(at_bob.count_is(5)));
    for (int i = 0; i < 5; ++i) CHECK(at_bob.messages[static_cast<std::size_t>(i)].body == "queued " + std::to_string(i));
    std::function<bool()> never = [] { return false; };
    co_await wait_until(never, 300ms);
    CHECK(at_bob.messages.size() == 5);
    (*alice)->stop();
    (*bob)->stop();
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("a message accepted while the broker is down is sent when it returns") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const std::uint16_t port = broker->port();
  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice_id, bob_id);
    auto executor = co_await asio::this_coro::executor;
    auto alice = Peer::open(executor, alice_id.clone(), peer_config(dir.path() / "alice", mesh.owner, "alice"));
    auto bob = Peer::open(executor, bob_id.clone(), peer_config(dir.path() / "bob", mesh.member, "bob"));
    REQUIRE(alice);
    REQUIRE(bob);
    Received at_bob;
    at_bob.attach(**bob);
    asio::co_spawn(executor, (*alice)->run(), asio::detached);
    asio::co_spawn(executor, (*bob)->run(), asio::detached);
    REQUIRE(co_await wait_until(is_open(**alice)));

    broker->stop();
    std::function<bool()> down = [&] { return (*alice)->client().state() != TransportState::open; };
    REQUIRE(co_await wait_until(down));
    auto sent = co_await (*alice)->send(bob_id.public_key().hex(), "sent during the outage");
    REQUIRE(sent);
    CHECK(sent->accepted.http_status == 202);
    auto row = (*alice)->outbox().find(sent->accepted.row.id);
    CHECK((*row)->status == OutboxStatus::pending);

    broker = start_broker(io, dir.path() / "broker", port);
    REQUIRE(co_await wait_until(at_bob.count_is(1), 10s));
    CHECK(at_bob.messages[0].body == "sent during the outage");
    REQUIRE(co_await wait_until(row_is(**alice, sent->accepted.row.id, OutboxStatus::done)));
    (*alice)->stop();
    (*bob)->stop();
  };
  run_bounded(io, scenario(), 30s);
  broker->stop();
}

TEST_CASE("a broadcast and a group post are sealed to each member they reach") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  const auto carol_id = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice_id, bob_id);
    auto carol_membership =
        co_await invite_and_join(http_base(*broker), alice_id, mesh.owner.mesh_id, carol_id, "carol");
    auto executor = co_await asio::this_coro::executor;
    auto alice = Peer::open(executor, alice_id.clone(), peer_config(dir.path() / "alice", mesh.owner, "alice"));
    auto bob = Peer::open(executor, bob_id.clone(), peer_config(dir.path() / "bob", mesh.member, "bob"));
    auto carol_config = peer_config(dir.path() / "carol", carol_membership, "carol");
    carol_config.client.groups = {{"ops/eu", "lead"}};
    auto carol = Peer::open(executor, carol_id.clone(), carol_config);
    REQUIRE(alice);
    REQUIRE(bob);
    REQUIRE(carol);
    Received at_alice;
    Received at_bob;
    Received at_carol;
    at_alice.attach(**alice);
    at_bob.attach(**bob);
    at_carol.attach(**carol);
    for (auto* p : {alice->get(), bob->get(), carol->get()}) asio::co_spawn(executor, p->run(), asio::detached);
    for (auto* p : {alice->get(), bob->get(), carol->get()}) REQUIRE(co_await wait_until(is_open(*p)));

    auto everyone = co_await (*alice)->send("*", "all hands");
    REQUIRE_MESSAGE(everyone, (everyone ? "" : everyone.error().describe()));
    CHECK(everyone->target_spec == "*");
    CHECK(everyone->sealed_for == 2);
    REQUIRE(co_await wait_until(at_bob.count_is(1)));
    REQUIRE(co_await wait_until(at_carol.count_is(1)));
    CHECK(at_bob.messages[0].body == "all hands");
    CHECK(at_carol.messages[0].body == "all hands");

    // Carol announced @ops/eu in her hello; the broker stores it for the member list.
    auto group = co_await (*alice)->send("@ops", "ops only");
    REQUIRE_MESSAGE(group, (group ? "" : group.error().describe()));
    CHECK(group->sealed_for == 1);
    REQUIRE(co_await wait_until(at_carol.count_is(2)));
    CHECK(at_carol.messages[1].body == "ops only");
    std::function<bool()> never = [] { return false; };
    co_await wait_until(never, 200ms);
    CHECK(at_bob.messages.size() == 1);
    CHECK(at_alice.messages.empty());

    auto topic = co_await (*alice)->send("#deploys", "x");
    REQUIRE(!topic);
    CHECK(topic.error() == Errc::invalid_target);
    for (auto* p : {alice->get(), bob->get(), carol->get()}) p->stop();
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("send() follows the idempotency table for a reused client message id") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice_id, bob_id);
    auto executor = co_await asio::this_coro::executor;
    auto alice = Peer::open(executor, alice_id.clone(), peer_config(dir.path() / "alice", mesh.owner, "alice"));
    REQUIRE(alice);
    SendOptions options;
    options.client_message_id = "job-42-progress-1";
    const std::string bob_key = bob_id.public_key().hex();
    // Not running yet: the row stays pending.
    auto first = co_await (*alice)->send(bob_key, "50%", options);
    REQUIRE(first);
    CHECK(first->accepted.http_status == 202);
    auto retry = co_await (*alice)->send(bob_key, "50%", options);
    REQUIRE(retry);
    CHECK(retry->accepted.http_status == 202);
    CHECK_FALSE(retry->accepted.inserted);
    auto conflict = co_await (*alice)->send(bob_key, "60%", options);
    REQUIRE(conflict);
    CHECK(conflict->accepted.http_status == 409);
    CHECK(conflict->accepted.conflict == "outbox_pending_fingerprint_mismatch");

    asio::co_spawn(executor, (*alice)->run(), asio::detached);
    REQUIRE(co_await wait_until(row_is(**alice, first->accepted.row.id, OutboxStatus::done)));
    auto done = co_await (*alice)->send(bob_key, "50%", options);
    REQUIRE(done);
    CHECK(done->accepted.http_status == 200);
    CHECK(done->accepted.outcome == OutboxAccept::Outcome::duplicate);
    CHECK_FALSE(done->accepted.row.broker_message_id.empty());
    (*alice)->stop();
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("a crash between accept and the broker's ack: after restart the message is sent once and seen once") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice_id, bob_id);
    auto executor = co_await asio::this_coro::executor;
    const auto alice_dir = dir.path() / "alice";
    std::string row_id;
    std::string client_id;
    {
      // The first life: the message is accepted and claimed (inflight) and the broker has it, but the
      // process dies before recording the ack. We stand in for that by sending the claimed row ourselves
      // on a bare client and never marking it.
      auto alice = Peer::open(executor, alice_id.clone(), peer_config(alice_dir, mesh.owner, "alice"));
      REQUIRE(alice);
      auto sent = co_await (*alice)->send(bob_id.public_key().hex(), "exactly once");
      REQUIRE(sent);
      row_id = sent->accepted.row.id;
      client_id = sent->accepted.row.client_message_id;
      auto claimed = (*alice)->outbox().claim(mesh.owner.mesh_id);
      REQUIRE(claimed);
      REQUIRE(claimed->size() == 1);
      BrokerClientConfig bare;
      bare.url = mesh.owner.ws_url;
      bare.mesh_id = mesh.owner.mesh_id;
      bare.member_id = mesh.owner.member_id;
      auto client = BrokerClient::for_member(executor, alice_id.clone(), bare);
      asio::co_spawn(executor, client->run(), asio::detached);
      std::function<bool()> open = [&] { return client->state() == TransportState::open; };
      REQUIRE(co_await wait_until(open));
      const auto& row = claimed->front();
      OutgoingMessage message{row.target_spec, row.priority, row.client_message_id, row.request_fingerprint,
                              row.reply_to_id, row.sealed, std::nullopt};
      auto receipt = co_await client->send(std::move(message));
      REQUIRE(receipt);
      CHECK_FALSE(receipt->duplicate);
      client->stop();
    }
    // The second life: the inflight row is pending again and is re-sent; the broker answers duplicate.
    auto alice = Peer::open(executor, alice_id.clone(), peer_config(alice_dir, mesh.owner, "alice"));
    REQUIRE(alice);
    CHECK((*alice)->outbox().recovered_on_open() == 1);
    auto bob = Peer::open(executor, bob_id.clone(), peer_config(dir.path() / "bob", mesh.member, "bob"));
    REQUIRE(bob);
    Received at_bob;
    at_bob.attach(**bob);
    asio::co_spawn(executor, (*alice)->run(), asio::detached);
    asio::co_spawn(executor, (*bob)->run(), asio::detached);
    REQUIRE(co_await wait_until(row_is(**alice, row_id, OutboxStatus::done)));
    REQUIRE(co_await wait_until(at_bob.count_is(1)));
    std::function<bool()> never = [] { return false; };
    co_await wait_until(never, 300ms);
    CHECK(at_bob.messages.size() == 1);
    CHECK(at_bob.messages[0].client_message_id == client_id);
    (*alice)->stop();
    (*bob)->stop();
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("PeerRunner gives a program without an event loop blocking send and a message callback") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path() / "broker");
  const auto alice_id = Identity::generate(IdentityKind::member);
  const auto bob_id = Identity::generate(IdentityKind::member);
  TwoMembers mesh;
  auto setup = [&]() -> asio::awaitable<void> { mesh = co_await create_two_member_mesh(http_base(*broker), alice_id, bob_id); };
  run_bounded(io, setup());
  std::thread broker_thread([&] {
    io.restart();
    auto guard = asio::make_work_guard(io);
    io.run_for(15s);
  });
  {
    auto alice = PeerRunner::start(alice_id.clone(), peer_config(dir.path() / "alice", mesh.owner, "alice"));
    auto bob = PeerRunner::start(bob_id.clone(), peer_config(dir.path() / "bob", mesh.member, "bob"));
    REQUIRE(alice);
    REQUIRE(bob);
    std::promise<std::string> got;
    auto got_future = got.get_future();
    bool first = true;
    (*bob)->on_message([&](const InboxMessage& m) {
      if (first) got.set_value(m.body);
      first = false;
    });
    REQUIRE((*alice)->wait_connected(5s));
    REQUIRE((*bob)->wait_connected(5s));
    auto peers = (*alice)->peers();
    REQUIRE(peers);
    CHECK(peers->size() == 2);
    auto sent = (*alice)->send("bob", "progress: 10%");
    REQUIRE_MESSAGE(sent, (sent ? "" : sent.error().describe()));
    REQUIRE(got_future.wait_for(5s) == std::future_status::ready);
    CHECK(got_future.get() == "progress: 10%");
  }
  io.stop();
  broker_thread.join();
  broker->stop();
}
