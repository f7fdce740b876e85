// SPDX-License-Identifier: MIT
#include "daemon/event_bus.hpp"

#include "transport/sse/sse.hpp"

#include <algorithm>
#include <cctype>
#include <deque>
#include <string_view>
#include <utility>

namespace claudemesh::daemon {
namespace {

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](unsigned char x, unsigned char y) { return std::tolower(x) == std::tolower(y); });
}

// The one event the bus makes up itself: it tells a resuming client that some events are gone for good, so
// it should re-read what it needs (the inbox) instead of trusting the stream to be complete.
DaemonEvent events_missed(std::uint64_t id, std::uint64_t since) {
  DaemonEvent event;
  event.id = id;
  event.kind = "system";
  event.data_json = R"({"event":"events_missed","since":)" + std::to_string(since) + "}";
  return event;
}

}  // namespace

struct EventBus::Subscriber {
  EventFilter filter;
  std::size_t max_queue = 0;
  std::deque<DaemonEvent> queue;
  std::function<void()> wake;
  bool overflowed = false;
  bool closed = false;

  // Queue `event`; @returns whether the subscriber should be woken. Once the queue is full the subscriber
  // stops taking events for good: what it holds stays a gap-free prefix, so resuming after its last id
  // loses nothing that the history still has.
  bool offer(const DaemonEvent& event) {
    if (overflowed || closed) return false;
    if (queue.size() >= max_queue) {
      overflowed = true;
      return true;  // wake it so the stream notices and ends
    }
    queue.push_back(event);
    return true;
  }
};

struct EventBus::State {
  Limits limits;
  std::uint64_t first_id = 1;
  std::uint64_t next_id = 1;
  std::deque<DaemonEvent> history;
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  bool closed = false;
};

namespace {

// Call each callback through a copy: a callback may replace or clear its own std::function (or destroy its
// subscription), and a std::function must not be destroyed while it runs.
template <class Subscribers>
void wake_all(const Subscribers& subscribers) {
  for (const auto& subscriber : subscribers) {
    const std::function<void()> wake = subscriber->wake;
    if (wake) wake();
  }
}

}  // namespace

bool should_deliver(const EventFilter& filter, const DaemonEvent& event) {
  // 1. No filter: the diagnostic view (`claudemesh daemon events`) sees everything.
  if (filter.mesh.empty() && filter.session_pubkey.empty() && filter.member_pubkey.empty()) return true;
  // 2. A subscriber bound to a mesh does not see other meshes; daemon-wide events (no mesh) still pass.
  if (!filter.mesh.empty() && !event.mesh.empty() && event.mesh != filter.mesh) return false;
  // 3. peer_join, broker_status, ... are informational, not addressed.
  if (event.kind != "message") return true;
  // 4. A message published without recipient context goes to everyone.
  if (event.recipient_kind.empty() || event.recipient_pubkey.empty()) return true;
  // 5. Delivered to one session: only that session sees it (reference bug 9).
  if (event.recipient_kind == "session") {
    return !filter.session_pubkey.empty() && equal_ignoring_case(filter.session_pubkey, event.recipient_pubkey);
  }
  // 6. Delivered to a member: every session of that member, no other member.
  if (event.recipient_kind == "member") {
    return !filter.member_pubkey.empty() && equal_ignoring_case(filter.member_pubkey, event.recipient_pubkey);
  }
  // 7. A recipient kind we do not know: err on the side of showing it.
  return true;
}

std::string encode_sse(const DaemonEvent& event) {
  transport::sse::SseEvent sse{.event = event.kind, .data = event.data_json, .id = std::to_string(event.id), .retry_ms = {}};
  if (auto encoded = transport::sse::encode_event(sse)) return std::move(*encoded);
  sse.event = "system";  // only the kind can be unframeable: the id is digits and data lines are split
  return transport::sse::encode_event(sse).value_or(std::string());
}

// ---- EventBus ----

EventBus::EventBus(std::uint64_t first_id, Limits limits) : state_(std::make_shared<State>()) {
  state_->limits = limits;
  state_->first_id = std::max<std::uint64_t>(first_id, 1);
  state_->next_id = state_->first_id;
}

EventBus::~EventBus() {
  for (const auto& subscriber : state_->subscribers) subscriber->closed = true;
}

Result<std::unique_ptr<EventBus::Subscription>> EventBus::subscribe(EventFilter filter,
                                                                      std::optional<std::uint64_t> last_event_id) {
  State& state = *state_;
  if (state.closed) return fail(Errc::unavailable, "the daemon is shutting down");
  if (state.subscribers.size() >= state.limits.max_subscribers) {
    return fail(Errc::capacity,
                "too many event streams are open (limit " + std::to_string(state.limits.max_subscribers) + ")");
  }
  auto subscriber = std::make_shared<Subscriber>();
  subscriber->filter = std::move(filter);
  subscriber->max_queue = state.limits.max_queue;

  if (last_event_id) {
    const std::uint64_t since = *last_event_id;
    // The first id this subscriber can still receive. Ids are consecutive, so anything between `since` and
    // it is gone: trimmed from the history, or published by an earlier daemon life (oldest >= first_id, so
    // an id from before first_id lands here too). An id we have not issued yet is from an earlier life whose
    // clock ran ahead. `oldest - 1` itself is no gap, which is why the synthetic event carries it.
    const std::uint64_t oldest = state.history.empty() ? state.next_id : state.history.front().id;
    std::uint64_t replay_after = since;
    if (since < oldest - 1 || since >= state.next_id) {
      subscriber->offer(events_missed(oldest - 1, since));
      replay_after = 0;  // every retained event is one the client has not seen
    }
    for (const auto& event : state.history) {
      if (event.id > replay_after && should_deliver(subscriber->filter, event)) subscriber->offer(event);
    }
  }
  state.subscribers.push_back(subscriber);
  return std::unique_ptr<Subscription>(new Subscription(state_, std::move(subscriber)));
}

std::uint64_t EventBus::publish(DaemonEvent event) {
  const auto state = state_;  // a wake callback may destroy the bus; the state lives until we return
  event.id = state->next_id++;
  if (state->limits.history > 0) {
    state->history.push_back(event);
    while (state->history.size() > state->limits.history) state->history.pop_front();
  }
  // A snapshot: callbacks may subscribe or unsubscribe while we iterate.
  std::vector<std::shared_ptr<Subscriber>> to_wake;
  for (const auto& subscriber : std::vector(state->subscribers)) {
    if (should_deliver(subscriber->filter, event) && subscriber->offer(event)) to_wake.push_back(subscriber);
  }
  wake_all(to_wake);
  return event.id;
}

void EventBus::close() {
  const auto state = state_;
  if (state->closed) return;
  state->closed = true;
  const auto closing = std::exchange(state->subscribers, {});
  for (const auto& subscriber : closing) subscriber->closed = true;
  wake_all(closing);
}

std::size_t EventBus::subscribers() const { return state_->subscribers.size(); }

std::uint64_t EventBus::last_id() const { return state_->next_id - 1; }

// ---- Subscription ----

EventBus::Subscription::Subscription(std::weak_ptr<State> bus, std::shared_ptr<Subscriber> subscriber)
    : bus_(std::move(bus)), subscriber_(std::move(subscriber)) {}

EventBus::Subscription::~Subscription() {
  // A publish in progress may still hold the subscriber: make sure it no longer calls into our owner.
  subscriber_->wake = nullptr;
  subscriber_->closed = true;
  if (const auto state = bus_.lock()) std::erase(state->subscribers, subscriber_);
}

std::vector<DaemonEvent> EventBus::Subscription::take() {
  std::vector<DaemonEvent> out(std::make_move_iterator(subscriber_->queue.begin()),
                               std::make_move_iterator(subscriber_->queue.end()));
  subscriber_->queue.clear();
  return out;
}

void EventBus::Subscription::on_wake(std::function<void()> wake) { subscriber_->wake = std::move(wake); }

bool EventBus::Subscription::overflowed() const { return subscriber_->overflowed; }

bool EventBus::Subscription::closed() const { return subscriber_->closed; }

}  // namespace claudemesh::daemon
