// SPDX-License-Identifier: MIT
// BrokerClient against a real broker on loopback: hello, a sealed DM both ways with client_ack, the peer
// list, a session connection vouched for by its member, failing fast while disconnected, and reconnecting
// (with a new hello) after the broker restarts on the same port and store.
#include <claudemesh/broker_client.hpp>
#include <claudemesh/crypto.hpp>
#include <claudemesh/fingerprint.hpp>
#include <claudemesh/ids.hpp>

#include "integration/local_mesh.hpp"

#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::testing;
using namespace std::chrono_literals;

namespace {

BrokerClientConfig client_config(const Membership& m, std::string name) {
  BrokerClientConfig config;
  config.url = m.ws_url;
  config.mesh_id = m.mesh_id;
  config.member_id = m.member_id;
  config.display_name = std::move(name);
  config.backoff_initial = 50ms;
  config.backoff_max = 200ms;
  return config;
}

// A DM from `from` to `to`, sealed and fingerprinted as a daemon would.
OutgoingMessage sealed_dm(const Identity& from, const PublicKey& to, const std::string& text) {
  auto sealed = seal_dm(from, to, as_bytes(text));
  REQUIRE(sealed);
  const std::string target = to.hex();
  auto fingerprint =
      request_fingerprint({.destination_kind = "dm", .destination_ref = target, .priority = "next", .body = as_bytes(text)});
  REQUIRE(fingerprint);
  OutgoingMessage message;
  message.target_spec = target;
  message.client_message_id = IdGenerator().next();
  message.request_fingerprint = *fingerprint;
  message.sealed = nlohmann::json{{"nonce", sealed->nonce}, {"ciphertext", sealed->ciphertext}}.dump();
  return message;
}

std::string open_text(const Identity& me, const IncomingMessage& m) {
  auto sender = PublicKey::from_hex(m.sender_pubkey);
  REQUIRE(sender);
  auto plain = open_dm(me, *sender, SealedMessage{m.nonce, m.ciphertext});
  REQUIRE(plain);
  return {plain->begin(), plain->end()};
}

}  // namespace

TEST_CASE("two members exchange sealed DMs through a real broker and acknowledge them") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path());
  const auto alice = Identity::generate(IdentityKind::member);
  const auto bob = Identity::generate(IdentityKind::member);

  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice, bob);
    auto executor = co_await asio::this_coro::executor;
    auto a = BrokerClient::for_member(executor, alice.clone(), client_config(mesh.owner, "alice"));
    auto b = BrokerClient::for_member(executor, bob.clone(), client_config(mesh.member, "bob"));
    std::vector<IncomingMessage> to_bob;
    std::vector<IncomingMessage> to_alice;
    std::vector<TransportState> a_states;
    b->on_message([&](IncomingMessage m) {
      if (!m.is_system()) {
        b->acknowledge(m);
        to_bob.push_back(std::move(m));
      }
    });
    a->on_message([&](IncomingMessage m) {
      if (!m.is_system()) {
        a->acknowledge(m);
        to_alice.push_back(std::move(m));
      }
    });
    a->on_state([&](TransportState s) { a_states.push_back(s); });
    asio::co_spawn(executor, a->run(), asio::detached);
    asio::co_spawn(executor, b->run(), asio::detached);
    std::function<bool()> both_open = [&] {
      return a->state() == TransportState::open && b->state() == TransportState::open;
    };
    REQUIRE(co_await wait_until(both_open));
    CHECK(a_states == std::vector<TransportState>{TransportState::connecting, TransportState::open});

    auto hello = sealed_dm(alice, bob.public_key(), "hello bob");
    const std::string hello_id = hello.client_message_id;
    auto receipt = co_await a->send(std::move(hello));
    REQUIRE_MESSAGE(receipt, (receipt ? "" : receipt.error().describe()));
    CHECK_FALSE(receipt->message_id.empty());
    CHECK(receipt->recipients == 1);
    std::function<bool()> bob_got = [&] { return !to_bob.empty(); };
    REQUIRE(co_await wait_until(bob_got));
    CHECK(open_text(bob, to_bob[0]) == "hello bob");
    CHECK(to_bob[0].message_id == receipt->message_id);
    CHECK(to_bob[0].client_message_id == hello_id);
    CHECK(to_bob[0].sender_name == "alice");

    auto reply = sealed_dm(bob, alice.public_key(), "hi alice");
    reply.reply_to_id = receipt->message_id;
    auto reply_receipt = co_await b->send(std::move(reply));
    REQUIRE(reply_receipt);
    std::function<bool()> alice_got = [&] { return !to_alice.empty(); };
    REQUIRE(co_await wait_until(alice_got));
    CHECK(open_text(alice, to_alice[0]) == "hi alice");
    CHECK(to_alice[0].reply_to_id == receipt->message_id);

    // The same client message id and fingerprint again: the broker answers with the original id.
    auto again = sealed_dm(alice, bob.public_key(), "hello bob");
    again.client_message_id = hello_id;
    again.request_fingerprint = to_bob[0].request_fingerprint;
    auto duplicate = co_await a->send(std::move(again));
    REQUIRE(duplicate);
    CHECK(duplicate->duplicate);
    CHECK(duplicate->message_id == receipt->message_id);

    // Acknowledged: the broker reports the copy delivered.
    std::function<bool()> never = [] { return false; };
    co_await wait_until(never, 100ms);
    auto status = co_await a->message_status(receipt->message_id);
    REQUIRE_MESSAGE(status, (status ? "" : status.error().describe()));
    REQUIRE(status->recipients.size() == 1);
    CHECK(status->recipients[0].delivered);

    auto peers = co_await a->peers();
    REQUIRE(peers);
    CHECK(peers->size() == 2);

    CHECK((co_await a->set_status("working")).has_value());
    CHECK((co_await a->set_summary("testing the client")).has_value());
    auto bad_status = co_await a->set_status("sleeping");
    REQUIRE(!bad_status);
    CHECK(bad_status.error() == Errc::invalid_value);

    a->stop();
    b->stop();
    std::function<bool()> stopped = [&] { return a->state() == TransportState::stopped; };
    CHECK(co_await wait_until(stopped));
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("a refused send reports the broker's code, and sends fail fast while disconnected") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path());
  const auto alice = Identity::generate(IdentityKind::member);
  const auto bob = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice, bob);
    auto executor = co_await asio::this_coro::executor;
    auto a = BrokerClient::for_member(executor, alice.clone(), client_config(mesh.owner, "alice"));
    auto early = co_await a->send(sealed_dm(alice, bob.public_key(), "too early"));
    REQUIRE(!early);
    CHECK(early.error() == Errc::unavailable);
    CHECK_FALSE(is_permanent_send_error(early.error()));
    asio::co_spawn(executor, a->run(), asio::detached);
    std::function<bool()> open = [&] { return a->state() == TransportState::open; };
    REQUIRE(co_await wait_until(open));
    auto stranger = Identity::generate(IdentityKind::member);
    auto unknown = co_await a->send(sealed_dm(alice, stranger.public_key(), "who?"));
    REQUIRE(!unknown);
    CHECK(unknown.error() == Errc::unknown_target);
    CHECK(is_permanent_send_error(unknown.error()));
    a->stop();
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("a session connection is vouched for by its member and listed as a session") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path());
  const auto alice = Identity::generate(IdentityKind::member);
  const auto bob = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice, bob);
    auto executor = co_await asio::this_coro::executor;
    auto session_key = Identity::generate(IdentityKind::session);
    auto attestation = attest_session(alice, session_key.public_key(), now_ms() + 12 * 3600 * 1000);
    REQUIRE(attestation);
    const PublicKey session_public = session_key.public_key();
    AttestationSource renew = [&alice, session_public](std::int64_t now) {
      return attest_session(alice, session_public, now + 12 * 3600 * 1000);
    };
    auto config = client_config(mesh.owner, "alice-session");
    auto s = BrokerClient::for_session(executor, std::move(session_key), *attestation, renew, config);
    auto b = BrokerClient::for_member(executor, bob.clone(), client_config(mesh.member, "bob"));
    asio::co_spawn(executor, s->run(), asio::detached);
    asio::co_spawn(executor, b->run(), asio::detached);
    std::function<bool()> open = [&] {
      return s->state() == TransportState::open && b->state() == TransportState::open;
    };
    REQUIRE(co_await wait_until(open));
    auto peers = co_await b->peers();
    REQUIRE(peers);
    bool found = false;
    for (const auto& p : *peers) {
      if (p.pubkey == s->public_key().hex()) {
        found = true;
        CHECK(p.peer_role == "session");
        CHECK(p.member_pubkey == alice.public_key().hex());
        CHECK(p.display_name == "alice-session");
      }
    }
    CHECK(found);
    s->stop();
    b->stop();
  };
  run_bounded(io, scenario());
  broker->stop();
}

TEST_CASE("after the broker restarts, the client reconnects, says hello again and sends") {
  asio::io_context io;
  TempDir dir;
  auto broker = start_broker(io, dir.path());
  const std::uint16_t port = broker->port();
  const auto alice = Identity::generate(IdentityKind::member);
  const auto bob = Identity::generate(IdentityKind::member);
  auto scenario = [&]() -> asio::awaitable<void> {
    auto mesh = co_await create_two_member_mesh(http_base(*broker), alice, bob);
    auto executor = co_await asio::this_coro::executor;
    auto a = BrokerClient::for_member(executor, alice.clone(), client_config(mesh.owner, "alice"));
    std::vector<TransportState> states;
    a->on_state([&](TransportState s) { states.push_back(s); });
    asio::co_spawn(executor, a->run(), asio::detached);
    std::function<bool()> open = [&] { return a->state() == TransportState::open; };
    REQUIRE(co_await wait_until(open));

    broker->stop();
    std::function<bool()> lost = [&] { return a->state() == TransportState::reconnecting; };
    REQUIRE(co_await wait_until(lost));
    auto while_down = co_await a->send(sealed_dm(alice, bob.public_key(), "while down"));
    REQUIRE(!while_down);
    CHECK(while_down.error() == Errc::unavailable);

    broker = start_broker(io, dir.path(), port);
    REQUIRE(co_await wait_until(open, 10s));
    CHECK(a->stats().connects == 2);
    auto receipt = co_await a->send(sealed_dm(alice, bob.public_key(), "after restart"));
    REQUIRE_MESSAGE(receipt, (receipt ? "" : receipt.error().describe()));
    CHECK(states.front() == TransportState::connecting);
    CHECK(std::count(states.begin(), states.end(), TransportState::open) == 2);
    a->stop();
  };
  run_bounded(io, scenario(), std::chrono::seconds(30));
  broker->stop();
}
