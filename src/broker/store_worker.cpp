// SPDX-License-Identifier: MIT
#include "broker/store_worker.hpp"

#include <chrono>
#include <vector>

namespace claudemesh::broker {

StoreWorker::StoreWorker(std::unique_ptr<store::BrokerStore> store, std::size_t max_batch)
    : store_(std::move(store)), max_batch_(max_batch), thread_([this] { loop(); }) {}

StoreWorker::~StoreWorker() { stop(); }

void StoreWorker::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void StoreWorker::enqueue(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(job));
      stats_.queue_depth.store(queue_.size(), std::memory_order_relaxed);
      wake_.notify_one();
      return;
    }
  }
  job.finish(false);  // after stop(): refused, still answered
}

void StoreWorker::loop() {
  std::vector<Job> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued has run
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queue_depth.store(queue_.size(), std::memory_order_relaxed);
    }
    const auto started = std::chrono::steady_clock::now();
    bool committed = static_cast<bool>(store_->begin_batch());
    if (committed) {
      for (auto& job : batch) job.run(*store_);
      committed = static_cast<bool>(store_->commit_batch());
      if (!committed) {
        store_->rollback_batch();
        stats_.commit_failures.fetch_add(1, std::memory_order_relaxed);
      }
    }
    const auto micros = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
    stats_.batches.fetch_add(1, std::memory_order_relaxed);
    stats_.operations.fetch_add(batch.size(), std::memory_order_relaxed);
    stats_.batch_micros_total.fetch_add(micros, std::memory_order_relaxed);
    if (micros > stats_.batch_micros_max.load(std::memory_order_relaxed)) {
      stats_.batch_micros_max.store(micros, std::memory_order_relaxed);
    }
    for (auto& job : batch) job.finish(committed);
    batch.clear();
  }
}

}  // namespace claudemesh::broker
