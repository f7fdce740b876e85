// SPDX-License-Identifier: MIT
// StoreWorker against a real in-memory SQLite store: operations from many coroutines run on the storage thread
// in batches committed once each (group commit); each caller gets its own result, on its own executor, only
// after its batch committed; one operation failing spoils nothing else in its batch; a failed commit fails and
// undoes the whole batch; after stop() calls are refused, never left hanging.
//
// Batching is made deterministic with a gate: one operation holds the worker thread inside a batch of its own
// until the callers under test are all queued, so the worker then takes them together.
//
// g++ 12: lambdas with captures and braced temporaries are never written inside a `co_await` expression or
// passed as a coroutine argument; they are named first (see store_worker.hpp).
#include "broker/store_worker.hpp"

#include "../store/broker_store_conformance_support.hpp"
#include "failing_store.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace claudemesh;
using namespace std::chrono_literals;
using claudemesh::broker::StoreWorker;
using claudemesh::store::BrokerStore;
using claudemesh::store::conformance::key;
using claudemesh::store::conformance::make_member;
using claudemesh::store::conformance::t0;
using claudemesh::test::FailingStore;

namespace {

std::unique_ptr<BrokerStore> memory_store() {
  auto opened = store::open_sqlite_broker_store(":memory:");
  if (!opened) FAIL("cannot open an in-memory store: " << opened.error().describe());
  return std::move(*opened);
}

/// Runs `coroutine` on `io` for at most 10 s; rethrows what it threw (a failed REQUIRE) and requires it finished.
void run_bounded(asio::io_context& io, asio::awaitable<void> coroutine) {
  bool finished = false;
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(coroutine), [&](std::exception_ptr e) {
    finished = true;
    failure = e;
    io.stop();
  });
  io.run_for(std::chrono::seconds(10));
  if (failure) std::rethrow_exception(failure);
  REQUIRE(finished);
}

/// Waits, without blocking the io thread, until `condition` holds; fails after 5 s.
asio::awaitable<void> wait_until(const std::function<bool()>& condition) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!condition()) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    timer.expires_after(1ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

/// Coroutines started beside a test's own, counted so it can wait for all of them; the first exception one
/// of them threw (a failed REQUIRE) is rethrown by `join()`.
class Spawned {
 public:
  void spawn(const asio::any_io_executor& executor, asio::awaitable<void> coroutine) {
    ++started_;
    asio::co_spawn(executor, std::move(coroutine), [this](std::exception_ptr e) {
      if (e && !failure_) failure_ = e;
      ++finished_;
    });
  }
  asio::awaitable<void> join() {
    const std::function<bool()> all_finished = [this] { return finished_ == started_; };
    co_await wait_until(all_finished);
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  std::size_t started_ = 0;
  std::size_t finished_ = 0;
  std::exception_ptr failure_;
};

asio::awaitable<void> gate_call(StoreWorker& worker, std::function<bool()> release,
                                std::shared_ptr<std::atomic<bool>> holding) {
  auto hold_op = [release = std::move(release), holding](BrokerStore&) -> Result<void> {
    holding->store(true);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!release()) {
      if (std::chrono::steady_clock::now() > deadline) return fail(Errc::timed_out, "the gate was never released");
      std::this_thread::sleep_for(1ms);
    }
    return {};
  };
  auto held = co_await worker.call<void>(std::move(hold_op));
  if (!held) FAIL("gate: " << held.error().describe());
}

/// Occupies the worker with one operation, alone in its batch, that returns once `release` (called on the
/// worker thread) holds. Returns once the worker is held; the gate's own call joins `spawned`.
asio::awaitable<void> hold_worker_until(StoreWorker& worker, const std::function<bool()>& release,
                                        Spawned& spawned) {
  auto holding = std::make_shared<std::atomic<bool>>(false);
  auto executor = co_await asio::this_coro::executor;
  spawned.spawn(executor, gate_call(worker, release, holding));
  const std::function<bool()> held = [holding] { return holding->load(); };
  co_await wait_until(held);
}

/// The gate most tests use: released once `behind` more operations are queued, so those are taken together.
asio::awaitable<void> hold_worker_until_queued(StoreWorker& worker, std::size_t behind, Spawned& spawned) {
  const std::function<bool()> all_queued = [&worker, behind] {
    return worker.stats().queue_depth.load() >= behind;
  };
  co_await hold_worker_until(worker, all_queued, spawned);
}

std::string mesh_id(std::size_t i) { return "mesh-" + std::to_string(i); }
std::string mesh_name(std::size_t i) { return "mesh number " + std::to_string(i); }

store::MeshRecord mesh_record(const std::string& id, const std::string& name) {
  return {.id = id, .name = name, .owner_pubkey = key(0), .created_at_ms = t0};
}

/// Creates mesh `id` (with its owner) and reads its name back, inside the batch, before the commit.
Result<std::string> create_and_read_back(BrokerStore& s, const std::string& id, const std::string& name) {
  auto created = s.create_mesh(mesh_record(id, name), make_member(id, id + "-owner", key(0), t0, "owner"));
  if (!created) return fail(created.error());
  auto found = s.find_mesh(id);
  if (!found) return fail(found.error());
  if (!*found) return fail(Errc::not_found, "the mesh just created is not visible");
  return (*found)->name;
}

/// What one caller saw.
struct Call {
  std::optional<Result<std::string>> result;
  std::thread::id ran_on;      ///< where the operation ran
  std::thread::id resumed_on;  ///< where the caller continued
};

asio::awaitable<void> create_mesh_call(StoreWorker& worker, std::string id, std::string name, Call& call) {
  auto op = [&call, id, name](BrokerStore& s) {
    call.ran_on = std::this_thread::get_id();
    return create_and_read_back(s, id, name);
  };
  auto result = co_await worker.call<std::string>(std::move(op));
  call.resumed_on = std::this_thread::get_id();
  call.result = std::move(result);
}

/// Whether mesh `id` is stored (asked directly of the store, with the worker stopped).
bool stored(BrokerStore& s, const std::string& id) {
  auto found = s.find_mesh(id);
  REQUIRE(found);
  return found->has_value();
}

}  // namespace

TEST_CASE("two hundred calls issued at once are committed together, each caller getting its own result") {
  asio::io_context io;
  auto owned = memory_store();
  BrokerStore& store = *owned;
  StoreWorker worker(std::move(owned));
  constexpr std::size_t callers = 200;
  std::vector<Call> calls(callers);
  const auto io_thread = std::this_thread::get_id();

  run_bounded(io, [&]() -> asio::awaitable<void> {
    Spawned spawned;
    co_await hold_worker_until_queued(worker, callers, spawned);
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < callers; ++i) {
      spawned.spawn(executor, create_mesh_call(worker, mesh_id(i), mesh_name(i), calls[i]));
    }
    co_await spawned.join();
  }());

  CHECK(worker.stats().operations == callers + 1);
  CHECK(worker.stats().batches == 2);  // the gate's own, then all the callers at once
  CHECK(worker.stats().batches < worker.stats().operations);
  CHECK(worker.stats().commit_failures == 0);
  for (std::size_t i = 0; i < callers; ++i) {
    CAPTURE(i);
    REQUIRE(calls[i].result.has_value());
    REQUIRE(*calls[i].result);
    CHECK(**calls[i].result == mesh_name(i));
    CHECK(calls[i].ran_on != io_thread);      // on the storage thread
    CHECK(calls[i].resumed_on == io_thread);  // back on the caller's executor
  }
  worker.stop();
  for (std::size_t i = 0; i < callers; ++i) CHECK(stored(store, mesh_id(i)));
}

TEST_CASE("a batch takes at most max_batch operations") {
  asio::io_context io;
  StoreWorker worker(memory_store(), /*max_batch=*/16);
  constexpr std::size_t callers = 200;
  std::vector<Call> calls(callers);

  run_bounded(io, [&]() -> asio::awaitable<void> {
    Spawned spawned;
    co_await hold_worker_until_queued(worker, callers, spawned);
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < callers; ++i) {
      spawned.spawn(executor, create_mesh_call(worker, mesh_id(i), mesh_name(i), calls[i]));
    }
    co_await spawned.join();
  }());

  CHECK(worker.stats().operations == callers + 1);
  CHECK(worker.stats().batches == 1 + (callers + 15) / 16);  // the gate, then 12 full batches and one of 8
  for (std::size_t i = 0; i < callers; ++i) {
    CAPTURE(i);
    REQUIRE(calls[i].result.has_value());
    REQUIRE(*calls[i].result);
    CHECK(**calls[i].result == mesh_name(i));
  }
}

namespace {

/// One coroutine's sequence of calls of different result types; each must see the previous one's writes.
asio::awaitable<void> create_then_inspect(StoreWorker& worker, std::size_t i, std::vector<std::string>& problems) {
  const std::string id = mesh_id(i);
  auto create_op = [id, name = mesh_name(i)](BrokerStore& s) {
    return s.create_mesh(mesh_record(id, name), make_member(id, id + "-owner", key(0), t0, "owner"));
  };
  auto created = co_await worker.call<void>(std::move(create_op));
  if (!created) problems.push_back(id + " create: " + created.error().describe());

  auto find_op = [id](BrokerStore& s) { return s.find_mesh(id); };
  auto found = co_await worker.call<std::optional<store::MeshRecord>>(std::move(find_op));
  if (!found || !*found || (*found)->name != mesh_name(i)) problems.push_back(id + " find: wrong mesh");

  auto members_op = [id](BrokerStore& s) { return s.list_members(id); };
  auto members = co_await worker.call<std::vector<store::MemberRecord>>(std::move(members_op));
  if (!members || members->size() != 1 || (*members)[0].id != id + "-owner") {
    problems.push_back(id + " members: wrong list");
  }

  auto again_op = [id](BrokerStore& s) {
    return s.create_mesh(mesh_record(id, "again"), make_member(id, id + "-owner-2", key(1), t0, "owner"));
  };
  auto again = co_await worker.call<void>(std::move(again_op));
  if (again || again.error() != Errc::already_exists) problems.push_back(id + " again: not already_exists");

  auto count_op = [i](BrokerStore&) -> Result<std::size_t> { return i * 7; };
  auto count = co_await worker.call<std::size_t>(std::move(count_op));
  if (!count || *count != i * 7) problems.push_back(id + " value: wrong");
}

}  // namespace

TEST_CASE("concurrent coroutines each making a sequence of calls get their own results, in order") {
  asio::io_context io;
  StoreWorker worker(memory_store());
  constexpr std::size_t coroutines = 60;
  std::vector<std::string> problems;

  run_bounded(io, [&]() -> asio::awaitable<void> {
    Spawned spawned;
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < coroutines; ++i) spawned.spawn(executor, create_then_inspect(worker, i, problems));
    co_await spawned.join();
  }());

  std::string listed;
  for (const auto& problem : problems) listed += problem + "\n";
  CHECK_MESSAGE(problems.empty(), listed);
  CHECK(worker.stats().operations == coroutines * 5);
  CHECK(worker.stats().batches <= worker.stats().operations);
}

TEST_CASE("each caller is resumed on its own executor") {
  asio::io_context io_a;
  asio::io_context io_b;
  StoreWorker worker(memory_store());
  constexpr std::size_t callers = 20;
  std::vector<Call> calls_a(callers);
  std::vector<Call> calls_b(callers);
  std::thread::id thread_b;

  auto drive = [&](std::vector<Call>& calls, const char* prefix) -> asio::awaitable<void> {
    Spawned spawned;
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < callers; ++i) {
      spawned.spawn(executor, create_mesh_call(worker, prefix + mesh_id(i), mesh_name(i), calls[i]));
    }
    co_await spawned.join();
  };
  std::exception_ptr failure_b;
  bool finished_b = false;
  std::thread runner([&] {
    thread_b = std::this_thread::get_id();
    asio::co_spawn(io_b, drive(calls_b, "b-"), [&](std::exception_ptr e) {
      failure_b = e;
      finished_b = true;
    });
    io_b.run_for(std::chrono::seconds(10));
  });
  run_bounded(io_a, drive(calls_a, "a-"));
  runner.join();
  if (failure_b) std::rethrow_exception(failure_b);
  REQUIRE(finished_b);

  const auto thread_a = std::this_thread::get_id();
  for (std::size_t i = 0; i < callers; ++i) {
    CAPTURE(i);
    REQUIRE(calls_a[i].result.has_value());
    REQUIRE(calls_b[i].result.has_value());
    CHECK(*calls_a[i].result);
    CHECK(*calls_b[i].result);
    CHECK(calls_a[i].resumed_on == thread_a);
    CHECK(calls_b[i].resumed_on == thread_b);
  }
}

TEST_CASE("an operation failing inside a batch does not affect the others in it") {
  asio::io_context io;
  auto owned = memory_store();
  BrokerStore& store = *owned;
  StoreWorker worker(std::move(owned));
  // Queued together behind the gate: two create the same mesh id, so exactly one of them is already_exists.
  const std::vector<std::pair<std::string, std::string>> creates = {
      {"mesh-a", "a"}, {"twin", "first"}, {"twin", "second"}, {"mesh-c", "c"}};
  std::vector<Call> calls(creates.size());

  run_bounded(io, [&]() -> asio::awaitable<void> {
    Spawned spawned;
    co_await hold_worker_until_queued(worker, creates.size(), spawned);
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < creates.size(); ++i) {
      spawned.spawn(executor, create_mesh_call(worker, creates[i].first, creates[i].second, calls[i]));
    }
    co_await spawned.join();
  }());

  CHECK(worker.stats().batches == 2);  // all four ran in one batch
  for (std::size_t i : {0u, 3u}) {
    REQUIRE(calls[i].result.has_value());
    REQUIRE(*calls[i].result);
    CHECK(**calls[i].result == creates[i].second);
  }
  REQUIRE(calls[1].result.has_value());
  REQUIRE(calls[2].result.has_value());
  const bool first_won = calls[1].result->has_value();
  const Result<std::string>& loser = first_won ? *calls[2].result : *calls[1].result;
  const Result<std::string>& winner = first_won ? *calls[1].result : *calls[2].result;
  REQUIRE(winner);
  REQUIRE_FALSE(loser);
  CHECK(loser.error() == Errc::already_exists);

  worker.stop();
  CHECK(stored(store, "mesh-a"));
  CHECK(stored(store, "mesh-c"));
  auto twin = store.find_mesh("twin");
  REQUIRE(twin);
  REQUIRE(twin->has_value());
  CHECK((*twin)->name == *winner);  // the loser wrote nothing
  auto twin_members = store.list_members("twin");
  REQUIRE(twin_members);
  CHECK(twin_members->size() == 1);
}

TEST_CASE("when a batch's commit fails, every operation in it gets unavailable and none of its writes remain") {
  asio::io_context io;
  auto failing = std::make_unique<FailingStore>(memory_store());
  FailingStore& store = *failing;
  store.failing_commit = 2;  // the gate's batch commits; the callers' batch does not
  StoreWorker worker(std::move(failing));
  const std::vector<std::pair<std::string, std::string>> creates = {
      {"lost-0", "zero"}, {"lost-1", "one"}, {"lost-1", "one again"}};  // the last one fails on its own
  std::vector<Call> calls(creates.size());
  std::optional<Result<std::string>> after;
  std::optional<Result<std::optional<store::MeshRecord>>> lost_afterwards;

  run_bounded(io, [&]() -> asio::awaitable<void> {
    Spawned spawned;
    co_await hold_worker_until_queued(worker, creates.size(), spawned);
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < creates.size(); ++i) {
      spawned.spawn(executor, create_mesh_call(worker, creates[i].first, creates[i].second, calls[i]));
    }
    co_await spawned.join();
    // The next batch commits again, and does not see the lost one's writes.
    auto after_op = [](BrokerStore& s) { return create_and_read_back(s, "after", "after"); };
    after = co_await worker.call<std::string>(std::move(after_op));
    auto lost_op = [](BrokerStore& s) { return s.find_mesh("lost-0"); };
    lost_afterwards = co_await worker.call<std::optional<store::MeshRecord>>(std::move(lost_op));
  }());

  for (std::size_t i = 0; i < calls.size(); ++i) {
    CAPTURE(i);
    CHECK(calls[i].ran_on != std::thread::id{});  // the operation did run, inside the batch
    REQUIRE(calls[i].result.has_value());
    REQUIRE_FALSE(*calls[i].result);
    CHECK(calls[i].result->error() == Errc::unavailable);
  }
  CHECK(worker.stats().commit_failures == 1);
  REQUIRE(after.has_value());
  REQUIRE(*after);
  CHECK(**after == "after");
  REQUIRE(lost_afterwards.has_value());
  REQUIRE(*lost_afterwards);
  CHECK_FALSE((*lost_afterwards)->has_value());

  worker.stop();
  CHECK_FALSE(stored(store, "lost-0"));
  CHECK_FALSE(stored(store, "lost-1"));
  CHECK(stored(store, "after"));
}

TEST_CASE("when a batch cannot begin, its operations do not run and get unavailable - the next batch works") {
  asio::io_context io;
  auto failing = std::make_unique<FailingStore>(memory_store());
  FailingStore& store = *failing;
  store.failing_begin = 2;
  StoreWorker worker(std::move(failing));
  constexpr std::size_t callers = 3;
  std::vector<Call> calls(callers);
  std::optional<Result<std::string>> after;

  run_bounded(io, [&]() -> asio::awaitable<void> {
    Spawned spawned;
    co_await hold_worker_until_queued(worker, callers, spawned);
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < callers; ++i) {
      spawned.spawn(executor, create_mesh_call(worker, mesh_id(i), mesh_name(i), calls[i]));
    }
    co_await spawned.join();
    auto after_op = [](BrokerStore& s) { return create_and_read_back(s, "after", "after"); };
    after = co_await worker.call<std::string>(std::move(after_op));
  }());

  for (std::size_t i = 0; i < callers; ++i) {
    CAPTURE(i);
    CHECK(calls[i].ran_on == std::thread::id{});  // never run
    REQUIRE(calls[i].result.has_value());
    REQUIRE_FALSE(*calls[i].result);
    CHECK(calls[i].result->error() == Errc::unavailable);
  }
  REQUIRE(after.has_value());
  CHECK(*after);
  worker.stop();
  for (std::size_t i = 0; i < callers; ++i) CHECK_FALSE(stored(store, mesh_id(i)));
}

TEST_CASE("stop() runs what is queued - later calls complete with unavailable without running") {
  asio::io_context io;
  auto owned = memory_store();
  BrokerStore& store = *owned;
  StoreWorker worker(std::move(owned));
  constexpr std::size_t queued = 5;
  std::vector<Call> calls(queued);
  auto stop_requested = std::make_shared<std::atomic<bool>>(false);
  std::optional<Result<int>> refused;
  std::atomic<bool> refused_ran{false};
  std::thread::id refused_resumed_on;

  run_bounded(io, [&]() -> asio::awaitable<void> {
    Spawned spawned;
    // The gate lets the worker go only once stop() is about to be called, so the five are still queued then.
    const std::function<bool()> stopping = [stop_requested] { return stop_requested->load(); };
    co_await hold_worker_until(worker, stopping, spawned);
    auto executor = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < queued; ++i) {
      spawned.spawn(executor, create_mesh_call(worker, mesh_id(i), mesh_name(i), calls[i]));
    }
    const std::function<bool()> all_queued = [&] { return worker.stats().queue_depth.load() == queued; };
    co_await wait_until(all_queued);
    stop_requested->store(true);
    worker.stop();  // blocks this thread until the worker has run the queue; results are posted to us
    CHECK(worker.stats().operations == queued + 1);
    worker.stop();  // a second stop is harmless
    co_await spawned.join();

    auto late_op = [&refused_ran](BrokerStore&) -> Result<int> {
      refused_ran = true;
      return 1;
    };
    refused = co_await worker.call<int>(std::move(late_op));
    refused_resumed_on = std::this_thread::get_id();
  }());

  for (std::size_t i = 0; i < queued; ++i) {
    CAPTURE(i);
    REQUIRE(calls[i].result.has_value());
    REQUIRE(*calls[i].result);
    CHECK(stored(store, mesh_id(i)));
  }
  REQUIRE(refused.has_value());
  REQUIRE_FALSE(*refused);
  CHECK(refused->error() == Errc::unavailable);
  CHECK_FALSE(refused_ran.load());
  CHECK(refused_resumed_on == std::this_thread::get_id());
}
