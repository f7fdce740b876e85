// SPDX-License-Identifier: MIT
// The broker's store hot paths on SQLite (src/store/sqlite_broker_store.cpp), on a file in the temp
// directory ($TMPDIR): accept_message with 1 and 10 bodies in group-commit batches of 64, and claim +
// mark_delivered in batches of 64 rows. The anchor is bare SQLite: the same rows inserted with one prepared
// statement into tables without indexes, in the same batches and with the same synchronous setting, which is
// the floor our schema, indexes, dedupe and savepoints add to.
#include "store/broker_store.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::store;

namespace {

constexpr int batch_size = 64;
constexpr TimeMs t0 = 1'700'000'000'000;

// A scratch directory for one benchmark run, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "claudemesh-store-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] std::filesystem::path file(const char* name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

std::string key(unsigned n) {
  char tail[17];
  std::snprintf(tail, sizeof tail, "%016x", n);
  return std::string(48, 'b') + tail;
}

// A 26-character id, like the ULIDs the broker mints.
std::string id(const char* prefix, std::uint64_t n) {
  char text[32];
  std::snprintf(text, sizeof text, "%s%020llu", prefix, static_cast<unsigned long long>(n));
  return text;
}

// A 1 KiB plaintext sealed and base64-encoded is about 1.4 KB.
std::vector<DeliveryBody> make_bodies(int count) {
  std::vector<DeliveryBody> bodies;
  bodies.reserve(static_cast<std::size_t>(count));
  for (int n = 0; n < count; ++n) {
    bodies.push_back({.recipient_key = key(static_cast<unsigned>(n + 1)),
                      .recipient_member_id = id("member", static_cast<std::uint64_t>(n)),
                      .nonce = std::string(32, 'n'),
                      .ciphertext = std::string(1400, 'c')});
  }
  return bodies;
}

MessageRecord make_message(std::uint64_t n) {
  return {.id = id("msg-", n), .mesh_id = "mesh-bench", .sender_member_id = "mesh-bench-owner",
          .sender_pubkey = key(0), .sender_member_pubkey = key(0), .target_spec = "*", .priority = "next",
          .client_message_id = id("cli-", n), .request_fingerprint = std::string(64, 'f'),
          .created_at_ms = t0 + static_cast<TimeMs>(n), .expires_at_ms = t0 + TimeMs{7} * 86'400'000};
}

std::unique_ptr<BrokerStore> open_bench_store(const std::filesystem::path& path, bool full_sync) {
  auto opened = open_sqlite_broker_store(path.string(), {.full_sync = full_sync});
  if (!opened) {
    std::fprintf(stderr, "%s\n", opened.error().describe().c_str());
    std::abort();
  }
  const MeshRecord mesh{.id = "mesh-bench", .name = "bench", .owner_pubkey = key(0), .created_at_ms = t0};
  const MemberRecord owner{.id = "mesh-bench-owner", .mesh_id = "mesh-bench", .pubkey = key(0), .role = "owner"};
  if (!(*opened)->create_mesh(mesh, owner)) std::abort();
  return std::move(*opened);
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "store_bench: %s failed\n", what);
    std::abort();
  }
}

// accept_message: one batch of 64 messages per iteration. Args: bodies per message, synchronous FULL (1) or NORMAL (0).
void BM_accept_batch64(benchmark::State& state) {
  const auto bodies = make_bodies(static_cast<int>(state.range(0)));
  const ScratchDir dir;
  auto store = open_bench_store(dir.file("broker.db"), state.range(1) != 0);
  std::uint64_t next = 0;
  for (auto _ : state) {
    check(static_cast<bool>(store->begin_batch()), "begin_batch");
    for (int i = 0; i < batch_size; ++i) {
      check(static_cast<bool>(store->accept_message(make_message(next++), bodies)), "accept_message");
    }
    check(static_cast<bool>(store->commit_batch()), "commit_batch");
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch_size) *
                                                    static_cast<double>(bodies.size()),
                                                benchmark::Counter::kIsRate);
}

// The anchor: the same rows written by bare SQLite (one prepared INSERT per row, no indexes, no dedupe).
void BM_bare_sqlite_insert_batch64(benchmark::State& state) {
  const auto bodies = make_bodies(static_cast<int>(state.range(0)));
  const ScratchDir dir;
  SQLite::Database db(dir.file("bare.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(state.range(1) != 0 ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  db.exec("CREATE TABLE messages (seq INTEGER PRIMARY KEY, id TEXT, mesh_id TEXT, sender TEXT, target TEXT, "
          "priority TEXT, client_id TEXT, fingerprint TEXT, created INTEGER, expires INTEGER)");
  db.exec("CREATE TABLE rows (seq INTEGER PRIMARY KEY, message_seq INTEGER, recipient TEXT, member TEXT, "
          "nonce TEXT, ciphertext TEXT)");
  SQLite::Statement insert_message(db, "INSERT INTO messages VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  SQLite::Statement insert_row(db, "INSERT INTO rows VALUES (NULL, ?, ?, ?, ?, ?)");
  std::uint64_t next = 0;
  for (auto _ : state) {
    db.exec("BEGIN");
    for (int i = 0; i < batch_size; ++i) {
      const auto message = make_message(next++);
      insert_message.bind(1, message.id);
      insert_message.bind(2, message.mesh_id);
      insert_message.bind(3, message.sender_pubkey);
      insert_message.bind(4, message.target_spec);
      insert_message.bind(5, message.priority);
      insert_message.bind(6, *message.client_message_id);
      insert_message.bind(7, *message.request_fingerprint);
      insert_message.bind(8, message.created_at_ms);
      insert_message.bind(9, message.expires_at_ms);
      insert_message.exec();
      insert_message.reset();
      const auto message_seq = db.getLastInsertRowid();
      for (const auto& body : bodies) {
        insert_row.bind(1, message_seq);
        insert_row.bindNoCopy(2, body.recipient_key);
        insert_row.bindNoCopy(3, body.recipient_member_id);
        insert_row.bindNoCopy(4, body.nonce);
        insert_row.bindNoCopy(5, body.ciphertext);
        insert_row.exec();
        insert_row.reset();
      }
    }
    db.exec("COMMIT");
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
}

// claim_deliveries + mark_delivered: 64 rows delivered per iteration (one batch), claimed 64 at a time or one
// at a time (Arg), from a backlog that is refilled outside the timing.
void BM_claim_and_mark_delivered_batch64(benchmark::State& state) {
  const auto rows_per_claim = static_cast<std::size_t>(state.range(0));
  const ScratchDir dir;
  auto store = open_bench_store(dir.file("broker.db"), true);
  const auto bodies = make_bodies(1);
  const std::vector<std::string> keys{bodies[0].recipient_key};
  std::uint64_t accepted = 0;
  std::uint64_t delivered = 0;
  TimeMs now = t0;
  const auto refill = [&] {
    check(static_cast<bool>(store->begin_batch()), "begin_batch");
    for (int i = 0; i < 100 * batch_size; ++i) {
      check(static_cast<bool>(store->accept_message(make_message(accepted++), bodies)), "accept_message");
    }
    check(static_cast<bool>(store->commit_batch()), "commit_batch");
  };
  refill();
  for (auto _ : state) {
    if (accepted - delivered < batch_size) {
      state.PauseTiming();
      refill();
      state.ResumeTiming();
    }
    ++now;
    check(static_cast<bool>(store->begin_batch()), "begin_batch");
    std::size_t taken = 0;
    while (taken < batch_size) {
      auto rows = store->claim_deliveries({.mesh_id = "mesh-bench", .recipient_keys = keys, .claimer = "conn-1",
                                           .now_ms = now, .limit = rows_per_claim});
      check(rows && !rows->empty(), "claim_deliveries");
      for (const auto& row : *rows) {
        auto marked = store->mark_delivered("mesh-bench", row.message.id, keys, now);
        check(marked && *marked == 1, "mark_delivered");
      }
      taken += rows->size();
    }
    check(static_cast<bool>(store->commit_batch()), "commit_batch");
    delivered += taken;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(delivered));
}

}  // namespace

BENCHMARK(BM_accept_batch64)
    ->ArgNames({"bodies", "full_sync"})
    ->Args({1, 1})
    ->Args({10, 1})
    ->Args({1, 0})
    ->Args({10, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_bare_sqlite_insert_batch64)
    ->ArgNames({"bodies", "full_sync"})
    ->Args({1, 1})
    ->Args({10, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_claim_and_mark_delivered_batch64)
    ->ArgName("rows_per_claim")
    ->Arg(64)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
