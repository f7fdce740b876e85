// SPDX-License-Identifier: MIT
// The broker client's protocol state machine, step by step and without sockets: the hello it sends, what
// hello_ack and refusals do, how replies find their requests, timeouts, backoff, and which closes end the
// client for good.
#include "transport/broker_session.hpp"

#include <claudemesh/signatures.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>

using namespace claudemesh;
using namespace claudemesh::transport;

namespace {

constexpr std::int64_t t0 = 1'800'000'000'000;

BrokerClientConfig config_for(std::string mesh = "mesh-1") {
  BrokerClientConfig config;
  config.url = "ws://127.0.0.1:1/ws";
  config.mesh_id = std::move(mesh);
  config.member_id = "member-1";
  config.display_name = "alice";
  config.session_id = "daemon-42";
  config.rng = [](std::span<std::uint8_t> out) {  // 0x8000...: exactly the middle, no jitter
    std::ranges::fill(out, std::uint8_t{0});
    out.front() = 0x80;
  };
  return config;
}

Json parse(const std::string& text) { return Json::parse(text); }

// Connects and answers hello_ack, leaving the session open.
void open(BrokerSession& session, std::int64_t now = t0) {
  Actions a;
  session.connecting(a);
  session.connected(now, a);
  Actions b;
  session.frame(R"({"type":"hello_ack","presenceId":"p1","memberId":"member-1","peerRole":"control-plane"})", now, b);
  REQUIRE(session.state() == TransportState::open);
}

}  // namespace

TEST_CASE("a member connection says a signed hello that the broker's verifier accepts") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  Actions a;
  session.connecting(a);
  CHECK(a.state == TransportState::connecting);
  session.connected(t0, a);
  REQUIRE(a.frames.size() == 1);
  const Json hello = parse(a.frames[0]);
  CHECK(hello["type"] == "hello");
  CHECK(hello["meshId"] == "mesh-1");
  CHECK(hello["memberId"] == "member-1");
  CHECK(hello["pubkey"] == member.public_key().hex());
  CHECK(hello["sessionId"] == "daemon-42");
  CHECK(hello["channel"] == "claudemesh-daemon");
  CHECK(hello["displayName"] == "alice");
  const MemberHelloProof proof{hello["meshId"], hello["memberId"], hello["pubkey"], hello["timestamp"],
                               hello["signature"]};
  CHECK(verify_member_hello(proof, t0).has_value());
  CHECK(session.next_deadline() == t0 + 5'000);
}

TEST_CASE("a session connection carries its attestation and a hello signed by the session key") {
  const auto member = Identity::generate(IdentityKind::member);
  const auto session_key = Identity::generate(IdentityKind::session);
  auto attestation = attest_session(member, session_key.public_key(), t0 + 3'600'000 * 12);
  REQUIRE(attestation);
  BrokerSession session(session_key, *attestation, {}, config_for());
  Actions a;
  session.connected(t0, a);
  REQUIRE(a.frames.size() == 1);
  const Json hello = parse(a.frames[0]);
  CHECK(hello["type"] == "session_hello");
  CHECK(hello["channel"] == "claudemesh-session");
  CHECK(hello["parentMemberId"] == "member-1");
  const SessionHelloProof proof{hello["meshId"], hello["parentMemberPubkey"], hello["sessionPubkey"],
                                hello["timestamp"], hello["signature"]};
  SessionAttestation carried{hello["parentAttestation"]["parentMemberPubkey"],
                             hello["parentAttestation"]["sessionPubkey"], hello["parentAttestation"]["expiresAt"],
                             hello["parentAttestation"]["signature"], std::nullopt};
  CHECK(verify_session_credentials(proof, carried, t0).has_value());
}

TEST_CASE("an attestation close to expiry is renewed before the hello, and an expired one stops the client") {
  const auto member = Identity::generate(IdentityKind::member);
  const auto session_key = Identity::generate(IdentityKind::session);
  auto soon = attest_session(member, session_key.public_key(), t0 + 60'000);  // inside the 1 h renewal window
  REQUIRE(soon);
  int renewals = 0;
  AttestationSource renew = [&](std::int64_t now) {
    ++renewals;
    return attest_session(member, session_key.public_key(), now + 3'600'000 * 12);
  };
  {
    BrokerSession session(session_key, *soon, renew, config_for());
    Actions a;
    session.connected(t0, a);
    CHECK(renewals == 1);
    REQUIRE(a.frames.size() == 1);
    CHECK(parse(a.frames[0])["parentAttestation"]["expiresAt"] == t0 + 3'600'000 * 12);
  }
  {
    BrokerSession session(session_key, *soon, {}, config_for());  // no way to renew
    Actions a;
    session.connected(t0 + 61'000, a);
    CHECK(a.frames.empty());
    CHECK(session.stopped());
    REQUIRE(session.last_error());
    CHECK(*session.last_error() == Errc::expired);
  }
}

TEST_CASE("hello_ack opens the connection and resets the backoff") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  for (int i = 0; i < 3; ++i) {  // three failed attempts
    Actions a;
    session.connecting(a);
    session.disconnected(1006, "connection refused", t0, a);
  }
  CHECK(session.reconnect_delay().count() == 4'000);
  open(session);
  CHECK(session.stats().connects == 1);
  CHECK(session.stats().connect_failures == 3);
  Actions a;
  session.disconnected(1006, "", t0, a);
  CHECK(a.state == TransportState::reconnecting);
  CHECK(session.reconnect_delay().count() == 1'000);
}

TEST_CASE("the reconnect backoff doubles from 1 s to a 30 s cap, with jitter inside ±25 %") {
  const auto member = Identity::generate(IdentityKind::member);
  auto config = config_for();
  std::uint8_t fill = 0;
  config.rng = [&](std::span<std::uint8_t> out) { std::ranges::fill(out, fill); };
  BrokerSession session(member, std::nullopt, {}, config);
  const std::int64_t expected[] = {1'000, 2'000, 4'000, 8'000, 16'000, 30'000, 30'000, 30'000};
  for (const auto base : expected) {
    Actions a;
    session.disconnected(1006, "", t0, a);
    fill = 0x00;
    CHECK(session.reconnect_delay().count() == base * 3 / 4);
    fill = 0xff;
    CHECK(session.reconnect_delay().count() == base * 5 / 4);
  }
}

TEST_CASE("requests fail fast while not connected instead of parking until a reconnect") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  Actions a;
  auto id = session.request(RequestKind::send, Json{{"type", "send"}}, t0, a);
  REQUIRE(!id);
  CHECK(id.error() == Errc::unavailable);
  CHECK(a.frames.empty());
}

TEST_CASE("a send's ack completes that send, matched by id, whatever order acks come in") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  open(session);
  Actions a;
  auto first = session.request(RequestKind::send, Json{{"type", "send"}}, t0, a);
  auto second = session.request(RequestKind::send, Json{{"type", "send"}}, t0, a);
  REQUIRE(first);
  REQUIRE(second);
  REQUIRE(a.frames.size() == 2);
  const Json sent = parse(a.frames[1]);
  CHECK(sent["id"] == sent["_reqId"]);
  Actions b;
  Json ack{{"type", "ack"}, {"id", sent["id"]}, {"messageId", "m2"}, {"queued", true}, {"recipients", 1}};
  session.frame(ack.dump(), t0, b);
  REQUIRE(b.completions.size() == 1);
  CHECK(b.completions[0].request == *second);
  REQUIRE(b.completions[0].reply);
  auto receipt = parse_send_ack(*b.completions[0].reply);
  REQUIRE(receipt);
  CHECK(receipt->message_id == "m2");
  CHECK(session.pending_requests() == 1);
}

TEST_CASE("a refused send carries the broker's code, and the code decides whether to retry") {
  Json refused{{"type", "ack"}, {"id", "r1"}, {"messageId", ""}, {"queued", false},
               {"code", "payload_too_large"}, {"error", "ciphertext over 64 KiB"}};
  auto receipt = parse_send_ack(refused);
  REQUIRE(!receipt);
  CHECK(receipt.error() == Errc::payload_too_large);
  CHECK(is_permanent_send_error(receipt.error()));
  refused["code"] = "rate_limited";
  auto limited = parse_send_ack(refused);
  REQUIRE(!limited);
  CHECK(limited.error() == Errc::rate_limited);
  CHECK_FALSE(is_permanent_send_error(limited.error()));
  CHECK_FALSE(is_permanent_send_error(Error(Errc::timed_out, "")));
  CHECK_FALSE(is_permanent_send_error(Error(Errc::connection_closed, "")));
  CHECK_FALSE(is_permanent_send_error(Error(Errc::unavailable, "")));
  refused["code"] = "something_new";
  auto unknown = parse_send_ack(refused);
  REQUIRE(!unknown);
  CHECK(unknown.error().message.find("something_new") != std::string::npos);
}

TEST_CASE("an error frame with a request id fails that request with the broker's code") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  open(session);
  Actions a;
  auto id = session.request(RequestKind::list_peers, Json{{"type", "list_peers"}}, t0, a);
  REQUIRE(id);
  Actions b;
  session.frame(R"({"type":"error","code":"rate_limited","message":"slow down","_reqId":"r)" + std::to_string(*id) + "\"}",
                t0, b);
  REQUIRE(b.completions.size() == 1);
  REQUIRE(!b.completions[0].reply);
  CHECK(b.completions[0].reply.error() == Errc::rate_limited);
}

TEST_CASE("requests time out on their own deadline and late replies are ignored") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  open(session);
  Actions a;
  auto send = session.request(RequestKind::send, Json{{"type", "send"}}, t0, a);           // 15 s
  auto peers = session.request(RequestKind::list_peers, Json{{"type", "list_peers"}}, t0, a);  // 5 s
  REQUIRE(send);
  REQUIRE(peers);
  CHECK(session.next_deadline() == t0 + 5'000);
  Actions b;
  session.tick(t0 + 5'000, b);
  REQUIRE(b.completions.size() == 1);
  CHECK(b.completions[0].request == *peers);
  CHECK(b.completions[0].reply.error() == Errc::timed_out);
  CHECK(session.next_deadline() == t0 + 15'000);
  Actions c;
  session.frame(R"({"type":"peers_list","peers":[],"_reqId":"r)" + std::to_string(*peers) + "\"}", t0 + 6'000, c);
  CHECK(c.completions.empty());
}

TEST_CASE("a lost connection fails every request in flight as connection_closed") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  open(session);
  Actions a;
  REQUIRE(session.request(RequestKind::send, Json{{"type", "send"}}, t0, a));
  REQUIRE(session.request(RequestKind::simple, Json{{"type", "set_status"}}, t0, a));
  Actions b;
  session.disconnected(1001, "shutting down", t0, b);
  REQUIRE(b.completions.size() == 2);
  for (const auto& completion : b.completions) CHECK(completion.reply.error() == Errc::connection_closed);
  CHECK(session.state() == TransportState::reconnecting);
  CHECK_FALSE(session.stopped());
}

TEST_CASE("no hello_ack within 5 s closes the attempt, which then backs off") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  Actions a;
  session.connecting(a);
  session.connected(t0, a);
  Actions b;
  session.tick(t0 + 4'999, b);
  CHECK_FALSE(b.close);
  session.tick(t0 + 5'000, b);
  CHECK(b.close);
  REQUIRE(session.last_error());
  CHECK(*session.last_error() == Errc::timed_out);
  Actions c;
  session.disconnected(1000, "", t0 + 5'000, c);
  CHECK(session.state() == TransportState::reconnecting);
}

TEST_CASE("kicked, banned and refusals a reconnect cannot cure stop the client - others retry") {
  const auto member = Identity::generate(IdentityKind::member);
  struct Case {
    std::uint16_t code;
    const char* reason;
    bool final;
    Errc errc;
  };
  const Case cases[] = {
      {4001, "kicked", true, Errc::forbidden},    {4002, "banned", true, Errc::revoked},
      {1008, "revoked", true, Errc::revoked},     {1008, "not_a_member", true, Errc::not_a_member},
      {1008, "timestamp_skew", false, Errc::ok},  {1008, "capacity", false, Errc::ok},
      {1001, "shutting down", false, Errc::ok},   {1006, "", false, Errc::ok},
      {1000, "session_replaced", false, Errc::ok},
  };
  for (const auto& c : cases) {
    CAPTURE(c.code);
    CAPTURE(std::string(c.reason));
    BrokerSession session(member, std::nullopt, {}, config_for());
    open(session);
    Actions a;
    session.disconnected(c.code, c.reason, t0, a);
    CHECK(session.stopped() == c.final);
    if (c.final) {
      REQUIRE(session.last_error());
      CHECK(*session.last_error() == c.errc);
    }
  }
}

TEST_CASE("a hello refused with an error frame records why - a final refusal stops, a transient one retries") {
  const auto member = Identity::generate(IdentityKind::member);
  {
    BrokerSession session(member, std::nullopt, {}, config_for());
    Actions a;
    session.connected(t0, a);
    Actions b;
    session.frame(R"({"type":"error","code":"not_a_member","message":"unknown member"})", t0, b);
    CHECK(b.close);
    CHECK(session.stopped());
    CHECK(*session.last_error() == Errc::not_a_member);
  }
  {
    BrokerSession session(member, std::nullopt, {}, config_for());
    Actions a;
    session.connected(t0, a);
    Actions b;
    session.frame(R"({"type":"error","code":"timestamp_skew","message":"clock"})", t0, b);
    CHECK(b.close);
    CHECK_FALSE(session.stopped());
    CHECK(*session.last_error() == Errc::timestamp_skew);
  }
}

TEST_CASE("a broker without sessions (unknown_message_type) stops a session client but not a member one") {
  CHECK(BrokerSession::is_final_refusal("unknown_message_type", true));
  CHECK_FALSE(BrokerSession::is_final_refusal("unknown_message_type", false));
}

TEST_CASE("pushes are delivered with every field, system events included, and malformed ones dropped") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  open(session);
  Actions a;
  session.frame(R"({"type":"push","messageId":"m1","meshId":"mesh-1","senderPubkey":"aa","senderMemberPubkey":"bb",
    "senderName":"bob","targetSpec":"*","recipientPubkey":"cc","priority":"now","nonce":"bg==","ciphertext":"Yw==",
    "createdAt":5,"attempt":2,"client_message_id":"c1","request_fingerprint":"ff","replyToId":"m0"})",
                t0, a);
  session.frame(R"({"type":"push","subtype":"system","event":"peer_joined","eventData":{"name":"carol"},
    "senderPubkey":"system","messageId":"s1"})",
                t0, a);
  session.frame(R"({"type":"push","senderPubkey":"aa"})", t0, a);  // no messageId: dropped
  session.frame("not json", t0, a);
  REQUIRE(a.messages.size() == 2);
  const auto& m = a.messages[0];
  CHECK(m.message_id == "m1");
  CHECK(m.sender_name == "bob");
  CHECK(m.priority == "now");
  CHECK(m.attempt == 2);
  CHECK(m.client_message_id == "c1");
  CHECK(m.reply_to_id == "m0");
  CHECK_FALSE(m.is_system());
  CHECK(a.messages[1].is_system());
  CHECK(a.messages[1].event == "peer_joined");
  CHECK(Json::parse(a.messages[1].event_data_json)["name"] == "carol");
  auto ack = session.ack_frame(m);
  REQUIRE(ack);
  CHECK(parse(*ack) == Json{{"type", "client_ack"}, {"brokerMessageId", "m1"}, {"clientMessageId", "c1"}});
  CHECK_FALSE(session.ack_frame(a.messages[1]));  // system events are not acknowledged
}

TEST_CASE("stop fails what is in flight, asks for a close and makes every later event a no-op") {
  const auto member = Identity::generate(IdentityKind::member);
  BrokerSession session(member, std::nullopt, {}, config_for());
  open(session);
  Actions a;
  REQUIRE(session.request(RequestKind::simple, Json{{"type", "set_status"}}, t0, a));
  Actions b;
  session.stop(b);
  CHECK(b.close);
  CHECK(b.state == TransportState::stopped);
  REQUIRE(b.completions.size() == 1);
  Actions c;
  session.disconnected(1000, "", t0, c);
  session.connecting(c);
  session.connected(t0, c);
  CHECK(c.frames.empty());
  CHECK(session.stopped());
  CHECK_FALSE(session.last_error());
}
