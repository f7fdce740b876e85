// SPDX-License-Identifier: MIT
// A per-connection deadline: one timer and one watchdog coroutine that closes the stream when the
// deadline passes. Re-arming costs a timer reset, so read loops can move the deadline on every request
// without racing each read against a timer.
//
// The timer and flags live in shared state that the watchdog coroutine co-owns: the watchdog's last
// (cancelled) wake-up may run after the Deadline object itself is gone, and must not touch freed memory.
#pragma once

#include "transport/stream.hpp"

#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace claudemesh::transport {

class Deadline {
 public:
  explicit Deadline(const asio::any_io_executor& executor) : state_(std::make_shared<State>(executor)) {}
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() { stop(); }

  /// Expire `after` from now.
  void arm(std::chrono::steady_clock::duration after) { state_->timer.expires_after(after); }
  /// Never expire (until re-armed).
  void disarm() { state_->timer.expires_at(std::chrono::steady_clock::time_point::max()); }
  /// Stop the watchdog for good; `on_expiry` will not be called after this.
  void stop() noexcept {
    state_->stopped = true;
    try {
      state_->timer.cancel();
    } catch (...) {  // NOLINT(bugprone-empty-catch): cancel() throws only on OS failure; the stopped flag suffices
    }
  }
  [[nodiscard]] bool expired() const noexcept { return state_->expired; }

  /// Runs until stop(); calls `on_expiry` (typically: close the stream) when the deadline passes.
  asio::awaitable<void> watch(std::function<void()> on_expiry) { return run(state_, std::move(on_expiry)); }

 private:
  struct State {
    explicit State(const asio::any_io_executor& executor) : timer(executor) {
      timer.expires_at(std::chrono::steady_clock::time_point::max());
    }
    asio::steady_timer timer;
    bool stopped = false;
    bool expired = false;
  };

  static asio::awaitable<void> run(std::shared_ptr<State> state, std::function<void()> on_expiry) {
    while (!state->stopped) {
      co_await state->timer.async_wait(use_tuple);  // operation_aborted on re-arm: loop and look again
      if (state->stopped) break;
      if (state->timer.expiry() <= std::chrono::steady_clock::now()) {
        state->expired = true;
        on_expiry();
        break;
      }
    }
  }

  std::shared_ptr<State> state_;
};

}  // namespace claudemesh::transport
