// SPDX-License-Identifier: MIT
// StoreWorker: the one thread that talks to the BrokerStore, so the network loop never waits on disk.
//
// Coroutines on the network loop `co_await worker.call<T>(op)`: the operation is queued, the worker takes
// every queued operation at once, runs them inside one store batch and commits once (group commit: one fsync
// for many sends), then posts each result back to the caller's executor. A result is delivered only after the
// batch that ran it committed, so "ack after durable" holds for every caller. If the commit fails, every
// operation of the batch gets `unavailable`.
#pragma once

#include "store/broker_store.hpp"

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace claudemesh::broker {

struct StoreWorkerStats {
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> operations{0};
  std::atomic<std::uint64_t> commit_failures{0};
  std::atomic<std::uint64_t> batch_micros_total{0};  ///< time spent running and committing batches
  std::atomic<std::uint64_t> batch_micros_max{0};
  std::atomic<std::uint64_t> queue_depth{0};
};

class StoreWorker {
 public:
  explicit StoreWorker(std::unique_ptr<store::BrokerStore> store, std::size_t max_batch = 1024);
  StoreWorker(const StoreWorker&) = delete;
  StoreWorker& operator=(const StoreWorker&) = delete;
  ~StoreWorker();

  /// Runs what is queued, then stops the thread. Later calls fail with `unavailable`.
  void stop();

  /// Runs `op(BrokerStore&) -> Result<T>` on the worker thread within a batch; the returned awaitable
  /// resumes the caller on its executor once the batch is durable. Not a coroutine itself: asio's
  /// `async_initiate` owns `op` until the worker takes it (coroutine parameters of move-only callables
  /// trip g++ 12).
  template <class T, class F>
  asio::awaitable<Result<T>> call(F op) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(Result<T>)>(
        [this, op = std::move(op)](auto handler) mutable {
          auto executor = asio::get_associated_executor(handler);
          auto slot = std::make_shared<std::optional<Result<T>>>();
          Job job;
          job.run = [op = std::move(op), slot](store::BrokerStore& store) mutable { slot->emplace(op(store)); };
          job.finish = [handler = std::move(handler), slot, executor](bool committed) mutable {
            Result<T> result = committed && slot->has_value()
                                   ? std::move(**slot)
                                   : Result<T>(fail(Errc::unavailable, "storage did not commit"));
            asio::post(executor, [handler = std::move(handler), result = std::move(result)]() mutable {
              std::move(handler)(std::move(result));
            });
          };
          enqueue(std::move(job));
        },
        asio::use_awaitable);
  }

  [[nodiscard]] const StoreWorkerStats& stats() const noexcept { return stats_; }

 private:
  struct Job {
    std::move_only_function<void(store::BrokerStore&)> run;
    std::move_only_function<void(bool committed)> finish;
  };
  void enqueue(Job job);
  void loop();

  std::unique_ptr<store::BrokerStore> store_;
  std::size_t max_batch_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  StoreWorkerStats stats_;
  std::thread thread_;
};

}  // namespace claudemesh::broker
