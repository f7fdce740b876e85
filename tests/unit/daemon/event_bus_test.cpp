// SPDX-License-Identifier: MIT
// The /v1/events fan-out: every subscriber sees what its filter allows (and a launched session only its own
// messages), a reconnecting client resumes after its Last-Event-ID or is told what it missed, and a slow or
// surplus subscriber cannot make the daemon hold unbounded memory.
#include "daemon/event_bus.hpp"

#include <doctest/doctest.h>

#include <claudemesh/error.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::daemon;

namespace {

// Public keys: 64 hex, one digit repeated.
std::string key(char digit) { return std::string(64, digit); }

DaemonEvent message_to(std::string mesh, std::string recipient_kind, std::string recipient_pubkey) {
  DaemonEvent event;
  event.kind = "message";
  event.mesh = std::move(mesh);
  event.data_json = R"({"mesh":")" + event.mesh + R"("})";
  event.recipient_kind = std::move(recipient_kind);
  event.recipient_pubkey = std::move(recipient_pubkey);
  return event;
}

DaemonEvent event_of(std::string kind, std::string mesh) {
  DaemonEvent event;
  event.kind = std::move(kind);
  event.mesh = std::move(mesh);
  event.data_json = R"({"mesh":")" + event.mesh + R"("})";
  return event;
}

std::vector<std::uint64_t> ids_of(const std::vector<DaemonEvent>& events) {
  std::vector<std::uint64_t> ids;
  ids.reserve(events.size());
  for (const auto& event : events) ids.push_back(event.id);
  return ids;
}

std::unique_ptr<EventBus::Subscription> subscribe(EventBus& bus, EventFilter filter = {},
                                                  std::optional<std::uint64_t> last_event_id = std::nullopt) {
  auto subscription = bus.subscribe(std::move(filter), last_event_id);
  REQUIRE(subscription);
  return std::move(*subscription);
}

constexpr EventBus::Limits default_limits{};

}  // namespace

TEST_CASE("events: the per-session demux follows the seven rules of the reference") {
  struct Row {
    const char* rule;
    EventFilter filter;
    DaemonEvent event;
    bool delivered;
  };
  const std::vector<Row> rows{
      {"1. no filter: a message for another session is delivered", {}, message_to("m1", "session", key('b')), true},
      {"1. no filter: another mesh is delivered", {}, event_of("peer_join", "m2"), true},
      {"2. mesh filter: another mesh's peer_join is dropped", {.mesh = "m1"}, event_of("peer_join", "m2"), false},
      {"2. mesh filter: another mesh's message is dropped", {.mesh = "m1"}, message_to("m2", "", ""), false},
      {"2. mesh filter: an event without a mesh passes", {.mesh = "m1"}, event_of("system", ""), true},
      {"2. mesh filter: the same mesh passes", {.mesh = "m1"}, event_of("broker_status", "m1"), true},
      {"3. a non-message event passes a session filter", {.session_pubkey = key('a')}, event_of("peer_leave", "m1"),
       true},
      {"3. a non-message event ignores recipient tags", {.session_pubkey = key('a')},
       [] { auto e = event_of("system", "m1"); e.recipient_kind = "session"; e.recipient_pubkey = key('b'); return e; }(),
       true},
      {"4. a message without recipient tags passes", {.session_pubkey = key('a')}, message_to("m1", "", ""), true},
      {"4. a message with a kind but no pubkey passes", {.session_pubkey = key('a')}, message_to("m1", "session", ""),
       true},
      {"4. a message with a pubkey but no kind passes", {.session_pubkey = key('a')}, message_to("m1", "", key('b')),
       true},
      {"5. a message to this session is delivered", {.session_pubkey = key('a')},
       message_to("m1", "session", key('a')), true},
      {"5. session keys compare case-insensitively", {.session_pubkey = std::string(64, 'A')},
       message_to("m1", "session", key('a')), true},
      {"5. a message to another session is dropped", {.session_pubkey = key('a')},
       message_to("m1", "session", key('b')), false},
      {"5. a session message is dropped for a member-only subscriber", {.member_pubkey = key('c')},
       message_to("m1", "session", key('a')), false},
      {"6. a message to this member is delivered", {.session_pubkey = key('a'), .member_pubkey = key('c')},
       message_to("m1", "member", key('c')), true},
      {"6. member keys compare case-insensitively", {.member_pubkey = std::string(64, 'C')},
       message_to("m1", "member", key('c')), true},
      {"6. a message to another member is dropped", {.session_pubkey = key('a'), .member_pubkey = key('c')},
       message_to("m1", "member", key('d')), false},
      {"6. a member message is dropped for a session without a member key", {.session_pubkey = key('a')},
       message_to("m1", "member", key('c')), false},
      {"7. an unknown recipient kind is delivered", {.session_pubkey = key('a')},
       message_to("m1", "topic", key('b')), true},
  };
  for (const auto& row : rows) {
    CAPTURE(row.rule);
    CHECK(should_deliver(row.filter, row.event) == row.delivered);
  }
}

TEST_CASE("events: 1.34.10: session A never sees a message delivered to session B") {
  EventBus bus(1, default_limits);
  auto a = subscribe(bus, {.mesh = "m1", .session_pubkey = key('a'), .member_pubkey = key('c')});
  auto b = subscribe(bus, {.mesh = "m1", .session_pubkey = key('b'), .member_pubkey = key('c')});
  const auto to_b = bus.publish(message_to("m1", "session", key('b')));
  const auto to_a = bus.publish(message_to("m1", "session", key('a')));
  const auto to_member = bus.publish(message_to("m1", "member", key('c')));
  CHECK(ids_of(a->take()) == std::vector{to_a, to_member});
  CHECK(ids_of(b->take()) == std::vector{to_b, to_member});
}

TEST_CASE("events: a stream without a filter sees every event of every mesh") {
  EventBus bus(1, default_limits);
  auto all = subscribe(bus);
  std::vector<std::uint64_t> published{bus.publish(message_to("m1", "session", key('a'))),
                                       bus.publish(message_to("m2", "member", key('d'))),
                                       bus.publish(event_of("peer_join", "m2")), bus.publish(event_of("system", ""))};
  CHECK(ids_of(all->take()) == published);
  CHECK(all->take().empty());
}

TEST_CASE("events: a stream bound to a mesh does not see other meshes") {
  EventBus bus(1, default_limits);
  auto m1 = subscribe(bus, {.mesh = "m1"});
  const auto join = bus.publish(event_of("peer_join", "m1"));
  bus.publish(event_of("peer_join", "m2"));
  const auto daemon_wide = bus.publish(event_of("system", ""));
  CHECK(ids_of(m1->take()) == std::vector{join, daemon_wide});
}

TEST_CASE("events: ids are assigned from first_id, strictly increasing, and events are SSE-framed with them") {
  EventBus bus(5000, default_limits);
  CHECK(bus.last_id() == 4999);
  auto sub = subscribe(bus);
  CHECK(bus.publish(event_of("peer_join", "m1")) == 5000);
  CHECK(bus.publish(event_of("peer_leave", "m1")) == 5001);
  CHECK(bus.last_id() == 5001);
  const auto events = sub->take();
  REQUIRE(events.size() == 2);
  CHECK(encode_sse(events[0]) == "id: 5000\nevent: peer_join\ndata: {\"mesh\":\"m1\"}\n\n");
  // "message" is the SSE default type: the encoder leaves the event line out, which every client reads alike.
  DaemonEvent message = message_to("m1", "", "");
  message.id = 7;
  CHECK(encode_sse(message) == "id: 7\ndata: {\"mesh\":\"m1\"}\n\n");
  DaemonEvent broken = event_of("peer\njoin", "m1");
  broken.id = 8;
  CHECK(encode_sse(broken) == "id: 8\nevent: system\ndata: {\"mesh\":\"m1\"}\n\n");
}

TEST_CASE("events: a client reconnecting with Last-Event-ID gets the retained events after it, filtered") {
  EventBus bus(100, default_limits);
  const auto first = bus.publish(event_of("peer_join", "m1"));
  const auto second = bus.publish(event_of("peer_join", "m2"));
  const auto third = bus.publish(message_to("m1", "session", key('b')));
  const auto fourth = bus.publish(event_of("peer_leave", "m1"));
  CHECK(first == 100);

  auto everything = subscribe(bus, {}, first);
  CHECK(ids_of(everything->take()) == std::vector{second, third, fourth});
  auto session = subscribe(bus, {.mesh = "m1", .session_pubkey = key('a')}, first);
  CHECK(ids_of(session->take()) == std::vector{fourth});  // m2 and B's message are not its business
  auto caught_up = subscribe(bus, {}, fourth);
  CHECK(caught_up->take().empty());
  auto fresh = subscribe(bus);  // no Last-Event-ID: live events only
  CHECK(fresh->take().empty());

  const auto fifth = bus.publish(event_of("peer_join", "m1"));
  CHECK(ids_of(caught_up->take()) == std::vector{fifth});
}

TEST_CASE("events: a client whose Last-Event-ID was trimmed from the history is told events_missed first") {
  EventBus bus(1, {.history = 3, .max_subscribers = 32, .max_queue = 4096});
  for (int i = 0; i < 5; ++i) bus.publish(event_of("peer_join", "m1"));  // ids 1..5; 3, 4, 5 retained
  auto late = subscribe(bus, {}, 1);
  const auto events = late->take();
  REQUIRE(events.size() == 4);
  CHECK(events[0].kind == "system");
  CHECK(events[0].data_json == R"({"event":"events_missed","since":1})");
  CHECK(events[0].id == 2);  // just before the first event it gets: resuming from it reports no gap again
  CHECK(ids_of({events.begin() + 1, events.end()}) == std::vector<std::uint64_t>{3, 4, 5});

  auto resumed = subscribe(bus, {}, events[0].id);
  CHECK(ids_of(resumed->take()) == std::vector<std::uint64_t>{3, 4, 5});
  auto just_in_time = subscribe(bus, {}, 2);  // 3 is still retained: no gap
  CHECK(just_in_time->take().front().kind == "peer_join");
}

TEST_CASE("events: a Last-Event-ID from a previous daemon life gets events_missed, then this life's events") {
  const std::uint64_t first_id = 1'700'000'000'000ULL * 1000;
  EventBus bus(first_id, default_limits);
  SUBCASE("from before first_id, nothing published yet") {
    auto sub = subscribe(bus, {}, first_id - 5000);
    const auto events = sub->take();
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == "system");
    CHECK(events[0].data_json == R"({"event":"events_missed","since":)" + std::to_string(first_id - 5000) + "}");
    CHECK(events[0].id == first_id - 1);
    const auto next = bus.publish(event_of("peer_join", "m1"));
    CHECK(ids_of(sub->take()) == std::vector{next});
    auto resumed = subscribe(bus, {}, events[0].id);  // the synthetic id resumes cleanly
    CHECK(ids_of(resumed->take()) == std::vector{next});
  }
  SUBCASE("from before first_id, with events published since") {
    const auto first = bus.publish(event_of("peer_join", "m1"));
    auto sub = subscribe(bus, {}, 42);
    const auto events = sub->take();
    REQUIRE(events.size() == 2);
    CHECK(events[0].data_json == R"({"event":"events_missed","since":42})");
    CHECK(events[1].id == first);
  }
  SUBCASE("newer than any id issued (the earlier life's clock ran ahead)") {
    const auto first = bus.publish(event_of("peer_join", "m1"));
    auto sub = subscribe(bus, {}, first_id + 1'000'000);
    const auto events = sub->take();
    REQUIRE(events.size() == 2);
    CHECK(events[0].kind == "system");
    CHECK(events[0].id == first - 1);
    CHECK(events[1].id == first);
  }
}

TEST_CASE("events: the 33rd stream is refused with capacity, and a closed stream frees its place") {
  EventBus bus(1, default_limits);
  std::vector<std::unique_ptr<EventBus::Subscription>> streams;
  streams.reserve(32);
  for (int i = 0; i < 32; ++i) streams.push_back(subscribe(bus));
  CHECK(bus.subscribers() == 32);
  auto refused = bus.subscribe({}, std::nullopt);
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == Errc::capacity);
  streams.pop_back();
  CHECK(bus.subscribers() == 31);
  CHECK(bus.subscribe({}, std::nullopt));
}

TEST_CASE("events: a subscriber that does not drain its queue overflows, keeps a gap-free prefix and can resume") {
  EventBus bus(1, {.history = 1024, .max_subscribers = 32, .max_queue = 3});
  auto slow = subscribe(bus);
  int wakes = 0;
  slow->on_wake([&] { ++wakes; });
  for (int i = 0; i < 3; ++i) bus.publish(event_of("peer_join", "m1"));
  CHECK_FALSE(slow->overflowed());
  bus.publish(event_of("peer_join", "m1"));
  CHECK(slow->overflowed());
  CHECK(wakes == 4);  // the overflow wakes it too, so the stream can end
  bus.publish(event_of("peer_join", "m1"));
  CHECK(wakes == 4);  // an overflowed subscriber takes nothing more
  const auto kept = slow->take();
  CHECK(ids_of(kept) == std::vector<std::uint64_t>{1, 2, 3});
  auto resumed = subscribe(bus, {}, kept.back().id);
  CHECK(ids_of(resumed->take()) == std::vector<std::uint64_t>{4, 5});
}

TEST_CASE("events: wake callbacks run inside publish, only for subscribers that got the event") {
  EventBus bus(1, default_limits);
  auto a = subscribe(bus, {.session_pubkey = key('a')});
  auto b = subscribe(bus, {.session_pubkey = key('b')});
  int woke_a = 0;
  int woke_b = 0;
  a->on_wake([&] { ++woke_a; });
  b->on_wake([&] { ++woke_b; });
  bus.publish(message_to("m1", "session", key('a')));
  CHECK(woke_a == 1);
  CHECK(woke_b == 0);
  a->on_wake({});
  bus.publish(message_to("m1", "session", key('a')));
  CHECK(woke_a == 1);
}

TEST_CASE("events: a wake callback may end its own stream and another's while publish runs") {
  EventBus bus(1, default_limits);
  auto first = subscribe(bus);
  auto second = subscribe(bus);
  int second_woken = 0;
  first->on_wake([&] {
    first.reset();
    second.reset();
  });
  second->on_wake([&] { ++second_woken; });
  bus.publish(event_of("peer_join", "m1"));
  CHECK(bus.subscribers() == 0);
  CHECK(second_woken == 0);  // destroyed before its turn: its callback is not called
}

TEST_CASE("events: destroying a subscription unsubscribes it") {
  EventBus bus(1, default_limits);
  auto sub = subscribe(bus);
  CHECK(bus.subscribers() == 1);
  sub.reset();
  CHECK(bus.subscribers() == 0);
  bus.publish(event_of("peer_join", "m1"));  // nothing left to deliver to
}

TEST_CASE("events: closing the bus ends every stream and refuses new ones") {
  EventBus bus(1, default_limits);
  auto sub = subscribe(bus);
  bool woken = false;
  sub->on_wake([&] { woken = true; });
  bus.close();
  CHECK(woken);
  CHECK(sub->closed());
  CHECK(bus.subscribers() == 0);
  auto refused = bus.subscribe({}, std::nullopt);
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == Errc::unavailable);
  bus.publish(event_of("peer_join", "m1"));
  CHECK(sub->take().empty());
  bus.close();  // idempotent
}

TEST_CASE("events: a subscription that outlives its bus is closed and still safe to use") {
  auto bus = std::make_unique<EventBus>(1, default_limits);
  auto sub = subscribe(*bus);
  bool woken = false;
  sub->on_wake([&] { woken = true; });
  const auto id = bus->publish(event_of("peer_join", "m1"));
  CHECK(woken);
  woken = false;
  bus.reset();
  CHECK_FALSE(woken);  // destruction does not call back: the callback's owner may be going away too
  CHECK(sub->closed());
  CHECK(ids_of(sub->take()) == std::vector{id});
  sub->on_wake({});
  sub.reset();  // unsubscribing from a bus that is gone does nothing
}
