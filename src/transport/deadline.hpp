// SPDX-License-Identifier: MIT
// A per-connection deadline: one timer and one watchdog coroutine that closes the stream when the
// deadline passes. Re-arming costs a timer reset, so read loops can move the deadline on every request
// without racing each read against a timer.
#pragma once

#include "transport/stream.hpp"

#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace claudemesh::transport {

class Deadline {
 public:
  explicit Deadline(asio::any_io_executor executor) : timer_(std::move(executor)) {
    timer_.expires_at(std::chrono::steady_clock::time_point::max());
  }
  /// Expire `after` from now.
  void arm(std::chrono::steady_clock::duration after) { timer_.expires_after(after); }
  /// Never expire (until re-armed).
  void disarm() { timer_.expires_at(std::chrono::steady_clock::time_point::max()); }
  /// Stop the watchdog for good (the connection is ending).
  void stop() {
    stopped_ = true;
    timer_.cancel();
  }
  [[nodiscard]] bool expired() const noexcept { return expired_; }

  /// Runs until stop(); calls `on_expiry` (typically: close the stream) when the deadline passes.
  asio::awaitable<void> watch(std::function<void()> on_expiry) {
    while (!stopped_) {
      co_await timer_.async_wait(use_tuple);  // operation_aborted on re-arm: loop and look again
      if (stopped_) break;
      if (timer_.expiry() <= std::chrono::steady_clock::now()) {
        expired_ = true;
        on_expiry();
        break;
      }
    }
  }

 private:
  asio::steady_timer timer_;
  bool stopped_ = false;
  bool expired_ = false;
};

}  // namespace claudemesh::transport
