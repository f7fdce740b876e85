// SPDX-License-Identifier: MIT
// The daemon's event fan-out behind `GET /v1/events`: one publisher (the daemon's mesh links), many SSE
// subscribers, each with its own filter and queue.
//
// * Ids are global to the bus and strictly increasing (the reference restarted its counter per subscriber,
//   so Last-Event-ID meant nothing). The daemon seeds the first id from the wall clock, so ids keep growing
//   across restarts and an id from an earlier daemon life is recognisable as older than `first_id`.
// * A bounded history ring lets a reconnecting client resume with Last-Event-ID. When the gap cannot be
//   filled (the history was trimmed, or the id is from another daemon life), the subscriber first gets one
//   `system` event `{"event":"events_missed","since":<last id>}` and should re-read its inbox.
// * Per-session demux (reference bug 9, 1.34.10): `should_deliver` applies the reference's seven rules, so a
//   launched session only sees messages delivered to itself or to its member.
// * The bus and its subscriptions share their state: either may outlive the other.
#pragma once

#include <claudemesh/result.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace claudemesh::daemon {

/// One event as published by the daemon and written to `/v1/events` streams.
struct DaemonEvent {
  std::uint64_t id = 0;          ///< assigned by `EventBus::publish()`; strictly increasing
  std::string kind;              ///< "message", "peer_join", "peer_leave", "broker_status", "system"
  std::string mesh;              ///< mesh slug; empty for daemon-wide events
  std::string data_json;         ///< the JSON object text sent as the SSE data (already holds mesh, ts, ...)
  std::string recipient_pubkey;  ///< message events: whom it was delivered to (lowercase hex), else empty
  std::string recipient_kind;    ///< "member" | "session" | empty
};

/// What one subscriber wants to see. Empty fields mean "no constraint"; all empty means "everything".
struct EventFilter {
  std::string mesh;            ///< drop events of other meshes (events with an empty mesh pass)
  std::string session_pubkey;  ///< the subscriber is this launched session
  std::string member_pubkey;   ///< the subscriber's member key on its mesh
};

/// The reference's per-session demux rules (seed-daemon-cli.md §2.4), in order:
/// 1. no filter at all: deliver; 2. `filter.mesh` set and the event has another non-empty mesh: drop;
/// 3. non-message events: deliver; 4. a message without recipient kind or pubkey: deliver;
/// 5. `recipient_kind == "session"`: deliver only to the subscriber whose session key equals the recipient;
/// 6. `recipient_kind == "member"`: deliver only to a subscriber whose member key equals the recipient;
/// 7. anything else: deliver. Keys compare case-insensitively.
bool should_deliver(const EventFilter& filter, const DaemonEvent& event);

/// "id: <id>\nevent: <kind>\ndata: <data_json>\n\n", framed by `transport::sse::encode_event`. That encoder
/// writes no "event:" line for kind "message" (an absent type means "message" to every SSE client) and
/// splits multi-line data into several "data:" lines. A kind that cannot be framed (CR, LF or NUL in it, a
/// bug in the caller) is sent as "system" rather than breaking the stream.
std::string encode_sse(const DaemonEvent& event);

/// The fan-out. Single-threaded: publish, subscribe and the subscriptions must run on one executor.
///
/// Thread safety: distinct objects safe; shared objects unsafe.
///
/// @code
/// EventBus bus(now_ms * 1000, {.history = 1024, .max_subscribers = 32, .max_queue = 4096});
/// auto sub = bus.subscribe({.session_pubkey = key}, last_event_id);  // Errc::capacity -> 429
/// (*sub)->on_wake([&] { timer.cancel(); });
/// for (const auto& event : (*sub)->take()) out += encode_sse(event);
/// @endcode
class EventBus {
 public:
  struct Limits {
    std::size_t history = 1024;         ///< events kept for Last-Event-ID replay
    std::size_t max_subscribers = 32;   ///< more: `Errc::capacity` (the route answers 429 too_many_streams)
    std::size_t max_queue = 4096;       ///< undelivered events per subscriber before it is marked overflowed
  };

  class Subscription;

  /// `first_id` is the id of the first published event (0 is treated as 1, so an id is never 0). The daemon
  /// passes `now_ms * 1000`, so ids keep growing across restarts.
  explicit EventBus(std::uint64_t first_id, Limits limits);
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;
  EventBus(EventBus&&) = delete;
  EventBus& operator=(EventBus&&) = delete;
  /// Closes every subscription (`closed()` becomes true) without calling wake callbacks: they may refer to
  /// objects that are being destroyed with the bus.
  ~EventBus();

  /// Add a subscriber.
  ///
  /// With `last_event_id`, the retained history events with a greater id that pass `filter` are queued at
  /// once. If events after `last_event_id` are no longer retained — it is older than the event before the
  /// oldest retained one, lies before `first_id - 1` (an earlier daemon life), or is newer than any id this
  /// bus has issued (an earlier life whose clock ran ahead) — a synthetic `system` event
  /// `{"event":"events_missed","since":<last_event_id>}` is queued first. Its id is the id just before the
  /// first event the subscriber will receive (the oldest retained event, or the next id to be published),
  /// so a client that reconnects with it as Last-Event-ID resumes exactly after the gap and is not told
  /// about the same gap again. It is not stored in the history and no other subscriber sees it.
  ///
  /// @returns the subscription; `Errc::capacity` when `max_subscribers` are subscribed; `Errc::unavailable`
  ///   after `close()`.
  Result<std::unique_ptr<Subscription>> subscribe(EventFilter filter, std::optional<std::uint64_t> last_event_id);

  /// Assign the next id, keep the event in the history ring, queue it to every subscriber whose filter
  /// accepts it, then call those subscribers' wake callbacks (synchronously; a callback may unsubscribe,
  /// subscribe or publish). @returns the id.
  std::uint64_t publish(DaemonEvent event);

  /// End every stream: each subscription becomes `closed()` and is woken once; later `subscribe()` calls
  /// fail with `Errc::unavailable`. Used when the daemon shuts down. Idempotent.
  void close();

  /// How many subscriptions are open.
  [[nodiscard]] std::size_t subscribers() const;
  /// The id of the last published event (`first_id - 1` before the first publish).
  [[nodiscard]] std::uint64_t last_id() const;

 private:
  struct State;       // shared with the subscriptions, so either side may outlive the other
  struct Subscriber;  // one subscription's filter, queue and flags

  std::shared_ptr<State> state_;
};

/// One subscriber's end of the bus. Destroying it unsubscribes.
///
/// Thread safety: distinct objects safe; shared objects unsafe.
class EventBus::Subscription {
 public:
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  Subscription(Subscription&&) = delete;
  Subscription& operator=(Subscription&&) = delete;
  ~Subscription();

  /// Remove and return the queued events, oldest first.
  std::vector<DaemonEvent> take();
  /// Call `wake` (synchronously, inside `publish()` or `close()`) whenever something is queued or the bus
  /// closes. An empty function removes the callback. Safe to call from inside the callback itself.
  void on_wake(std::function<void()> wake);
  /// More than `max_queue` events were waiting: later events were dropped (the queued ones are a gap-free
  /// prefix and can still be taken). The stream should end, so the client resumes with Last-Event-ID.
  [[nodiscard]] bool overflowed() const;
  /// The bus was closed or destroyed: nothing more will arrive.
  [[nodiscard]] bool closed() const;

 private:
  friend class EventBus;
  Subscription(std::weak_ptr<State> bus, std::shared_ptr<Subscriber> subscriber);

  std::weak_ptr<State> bus_;
  std::shared_ptr<Subscriber> subscriber_;
};

}  // namespace claudemesh::daemon
