// SPDX-License-Identifier: MIT
// The SQLite BrokerStore: the conformance suite in memory and on a file, then what only a file can show
// (durability, migrations, modes, damaged files) and SQLite's own refusals.
#include "store/broker_store.hpp"

#include "../core/test_support.hpp"
#include "broker_store_conformance.hpp"

#include <SQLiteCpp/Database.h>
#include <doctest/doctest.h>

#include "support/files.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>

using namespace claudemesh;
using claudemesh::testing::mode_of;
using claudemesh::testing::read_all;
using claudemesh::testing::write_all;
using namespace claudemesh::store;
using namespace claudemesh::store::conformance;
using claudemesh::test::TempDir;

namespace {

std::unique_ptr<BrokerStore> open_or_fail(const std::filesystem::path& path, SqliteOptions options = {}) {
  auto opened = open_sqlite_broker_store(path.string(), options);
  if (!opened) FAIL("cannot open " << path.string() << ": " << opened.error().describe());
  return std::move(*opened);
}

struct SqliteMemory {
  std::unique_ptr<BrokerStore> store = open_or_fail(":memory:");
};

struct SqliteFile {
  TempDir dir;
  std::unique_ptr<BrokerStore> store = open_or_fail(dir.path() / "broker.db");
};

std::int64_t pragma(const std::filesystem::path& path, const char* sql) {
  SQLite::Database raw(path.string(), SQLite::OPEN_READONLY);
  return raw.execAndGet(sql).getInt64();
}

Error open_error(const std::filesystem::path& path) {
  auto opened = open_sqlite_broker_store(path.string());
  REQUIRE_FALSE(opened);
  return opened.error();
}

}  // namespace

TYPE_TO_STRING(SqliteMemory);
TYPE_TO_STRING(SqliteFile);
CLAUDEMESH_BROKER_STORE_CONFORMANCE(SqliteMemory, SqliteFile);

TEST_SUITE("sqlite broker store") {
  TEST_CASE("sqlite broker store: what was committed is there after close and reopen") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    {
      auto store = open_or_fail(path);
      add_mesh(*store, "mesh-a");
      MessageRecord message = make_message("msg-1", "mesh-a");
      message.client_message_id = "client-1";
      send(*store, message, {key(1), key(2)});
      REQUIRE(claim(*store, claim_request("mesh-a", {key(1), key(2)}, t0)).size() == 2);
      CHECK(mark(*store, "mesh-a", "msg-1", {key(1)}, t0 + 1) == 1);
    }
    auto store = open_or_fail(path);
    CHECK(exists(store->find_mesh("mesh-a")));
    CHECK(exists(store->find_member("mesh-a", key(0))));
    CHECK(found(store->find_dedupe("mesh-a", "client-1")).message_id == "msg-1");
    CHECK(claim(*store, claim_request("mesh-a", {key(2)}, t0 + 2)).empty());  // the lease survived too
    auto status = found(store->message_status("mesh-a", "msg-1"));
    CHECK(status.second.size() == 2);
    CHECK(stats(*store, t0 + 2).undelivered == 1);
    CHECK(stats(*store, t0 + 2).leased == 1);
  }

  TEST_CASE("sqlite broker store: reopening migrates nothing twice") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    open_or_fail(path).reset();
    const auto version = pragma(path, "PRAGMA user_version");
    const auto objects = pragma(path, "SELECT COUNT(*) FROM sqlite_schema");
    CHECK(version >= 1);
    CHECK(pragma(path, "PRAGMA application_id") == 0x636d6272);
    for (int n = 0; n < 3; ++n) {
      auto store = open_or_fail(path);
      if (n == 0) add_mesh(*store, "mesh-a");
      CHECK(exists(store->find_mesh("mesh-a")));
    }
    CHECK(pragma(path, "PRAGMA user_version") == version);
    CHECK(pragma(path, "SELECT COUNT(*) FROM sqlite_schema") == objects);
  }

  TEST_CASE("sqlite broker store: files are 0600 in a created 0700 directory") {
    TempDir dir;
    const auto path = dir.path() / "state" / "broker" / "broker.db";
    auto store = open_or_fail(path);
    add_mesh(*store, "mesh-a");  // the WAL and its index now exist
    CHECK(mode_of(path) == 0600);
    CHECK(mode_of(path.string() + "-wal") == 0600);
    CHECK(mode_of(path.string() + "-shm") == 0600);
    CHECK(mode_of(path.parent_path()) == 0700);
    CHECK(mode_of(path.parent_path().parent_path()) == 0700);
  }

  TEST_CASE("sqlite broker store: an existing store readable by others is narrowed to 0600") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    open_or_fail(path).reset();
    ::chmod(path.c_str(), 0644);
    auto store = open_or_fail(path);
    CHECK(mode_of(path) == 0600);
  }

  TEST_CASE("sqlite broker store: a failing operation in a batch is undone alone and the rest is durable") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    const std::string poison = key(666);
    {
      auto store = open_or_fail(path);
      add_mesh(*store, "mesh-a");
    }
    {
      // A trigger that fails the insert of one delivery row: the accept fails after writing its message,
      // its dedupe entry and its first body.
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE);
      raw.exec("CREATE TRIGGER poison BEFORE INSERT ON deliveries WHEN NEW.recipient_key = '" + poison +
               "' BEGIN SELECT RAISE(ABORT, 'poisoned body'); END");
    }
    {
      auto store = open_or_fail(path);
      REQUIRE(store->begin_batch());
      send(*store, make_message("msg-1", "mesh-a", t0 + 1), {key(1)});
      MessageRecord poisoned = make_message("msg-poisoned", "mesh-a", t0 + 2);
      poisoned.client_message_id = "client-poisoned";
      auto failed = store->accept_message(poisoned, std::vector<DeliveryBody>{body_for(key(1)), body_for(poison)});
      REQUIRE_FALSE(failed);
      CHECK(failed.error().message.find("poisoned body") != std::string::npos);
      send(*store, make_message("msg-3", "mesh-a", t0 + 3), {key(1)});
      REQUIRE(store->commit_batch());
    }
    auto store = open_or_fail(path);
    CHECK(message_ids(claim(*store, claim_request("mesh-a", {key(1)}, t0 + 4))) == ids({"msg-1", "msg-3"}));
    CHECK_FALSE(exists(store->find_dedupe("mesh-a", "client-poisoned")));
    CHECK_FALSE(exists(store->message_status("mesh-a", "msg-poisoned")));
    CHECK(stats(*store, t0 + 4).messages == 2);
  }

  TEST_CASE("sqlite broker store: a rolled back batch leaves nothing on disk") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    {
      auto store = open_or_fail(path);
      add_mesh(*store, "mesh-a");
      REQUIRE(store->begin_batch());
      send(*store, make_message("msg-1", "mesh-a"), {key(1)});
      add_mesh(*store, "mesh-b");
      store->rollback_batch();
      store->rollback_batch();  // harmless when no batch is open
    }
    auto store = open_or_fail(path);
    CHECK(stats(*store, t0).messages == 0);
    CHECK_FALSE(exists(store->find_mesh("mesh-b")));
  }

  TEST_CASE("sqlite broker store: a batch left open when the store closes is rolled back") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    {
      auto store = open_or_fail(path);
      add_mesh(*store, "mesh-a");
      REQUIRE(store->begin_batch());
      send(*store, make_message("msg-1", "mesh-a"), {key(1)});
    }
    auto store = open_or_fail(path);
    CHECK(stats(*store, t0).messages == 0);
  }

  TEST_CASE("sqlite broker store: batch calls out of order are refused") {
    auto store = open_or_fail(":memory:");
    auto committed = store->commit_batch();
    REQUIRE_FALSE(committed);
    CHECK(committed.error() == Errc::internal);
    REQUIRE(store->begin_batch());
    auto nested = store->begin_batch();
    REQUIRE_FALSE(nested);
    CHECK(nested.error() == Errc::internal);
    add_mesh(*store, "mesh-a");
    REQUIRE(store->commit_batch());  // the open batch is unharmed
    CHECK(exists(store->find_mesh("mesh-a")));
  }

  TEST_CASE("sqlite broker store: two stores on one file see each other's leases") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    auto first = open_or_fail(path);
    auto second = open_or_fail(path);
    add_mesh(*first, "mesh-a");
    send(*first, make_message("msg-1", "mesh-a"), {key(1)});
    REQUIRE(claim(*first, claim_request("mesh-a", {key(1)}, t0, "broker-1")).size() == 1);
    CHECK(claim(*second, claim_request("mesh-a", {key(1)}, t0 + 1, "broker-2")).empty());
    CHECK(claim(*second, claim_request("mesh-a", {key(1)}, t0 + lease_ms, "broker-2")).size() == 1);
  }

  TEST_CASE("sqlite broker store: a file that is not SQLite gives a clear error and is left alone") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    std::string text;
    for (int n = 0; n < 200; ++n) text += "this is not a database\n";
    write_all(path, text);
    const Error error = open_error(path);
    CHECK(error == Errc::io_error);
    CHECK(error.message.find("not a database") != std::string::npos);
    CHECK(error.message.find(path.string()) != std::string::npos);
    CHECK(read_all(path) == text);
  }

  TEST_CASE("sqlite broker store: a damaged SQLite file gives an error not a crash") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    {
      auto store = open_or_fail(path);
      add_mesh(*store, "mesh-a");
    }
    std::string bytes = read_all(path);
    REQUIRE(bytes.size() > 4096);
    for (std::size_t i = 100; i < bytes.size(); i += 7) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    write_all(path, bytes);
    auto opened = open_sqlite_broker_store(path.string());
    if (!opened) {
      CHECK(opened.error() == Errc::io_error);
      return;
    }
    // SQLite may notice only when it reads a damaged page: every answer is then a value or an io_error.
    BrokerStore& store = **opened;
    if (auto found = store.find_mesh("mesh-a"); !found) CHECK(found.error() == Errc::io_error);
    if (auto counted = store.queue_stats(t0); !counted) CHECK(counted.error() == Errc::io_error);
    if (auto sent = store.accept_message(make_message("msg-1", "mesh-a"), {}); !sent) {
      CHECK(sent.error() != Errc::internal);
    }
  }

  TEST_CASE("sqlite broker store: another application's database is refused and not migrated") {
    TempDir dir;
    const auto path = dir.path() / "other.db";
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      raw.exec("CREATE TABLE notes (body TEXT)");
    }
    CHECK(open_error(path).message.find("not a claudemesh broker store") != std::string::npos);
    CHECK(pragma(path, "SELECT COUNT(*) FROM sqlite_schema") == 1);
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE);
      raw.exec("PRAGMA application_id = 42");
    }
    CHECK(open_error(path).message.find("not a claudemesh broker store") != std::string::npos);
  }

  TEST_CASE("sqlite broker store: a store from a newer build is refused") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    open_or_fail(path).reset();
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE);
      raw.exec("PRAGMA user_version = 999");
    }
    const Error error = open_error(path);
    CHECK(error == Errc::io_error);
    CHECK(error.message.find("newer") != std::string::npos);
  }

  TEST_CASE("sqlite broker store: paths that cannot hold a store are refused") {
    TempDir dir;
    CHECK(open_sqlite_broker_store("").error() == Errc::invalid_value);
    write_all(dir.path() / "file", "x");
    CHECK(open_error(dir.path() / "file" / "broker.db") == Errc::io_error);
    std::filesystem::create_directory(dir.path() / "directory");
    CHECK(open_error(dir.path() / "directory") == Errc::io_error);
    std::filesystem::create_symlink(dir.path() / "elsewhere.db", dir.path() / "link.db");
    CHECK(open_error(dir.path() / "link.db") == Errc::io_error);
  }

  TEST_CASE("sqlite broker store: rows naming no mesh are not_found and refused values are invalid_value") {
    auto store = open_or_fail(":memory:");
    add_mesh(*store, "mesh-a");
    auto no_mesh = store->accept_message(make_message("msg-1", "mesh-z"), std::vector<DeliveryBody>{body_for(key(1))});
    REQUIRE_FALSE(no_mesh);
    CHECK(no_mesh.error() == Errc::not_found);
    CHECK(store->create_invite(make_invite("inv-1", "mesh-z")).error() == Errc::not_found);
    CHECK(store->record_session({.mesh_id = "mesh-z", .session_pubkey = key(1), .member_id = "m"}).error() ==
          Errc::not_found);
    auto bad_priority = store->accept_message(make_message("msg-2", "mesh-a", t0, "urgent"), {});
    REQUIRE_FALSE(bad_priority);
    CHECK(bad_priority.error() == Errc::invalid_value);
    CHECK(store->create_invite(make_invite("inv-1", "mesh-a")));
    CHECK(store->create_invite(make_invite("inv-1", "mesh-a")).error() == Errc::already_exists);
    CHECK(stats(*store, t0).messages == 0);
  }

  TEST_CASE("sqlite broker store: a purge of many chunks deletes everything whether in a batch or not") {
    auto store = open_or_fail(":memory:");
    add_mesh(*store, "mesh-a");
    const auto fill = [&](const std::string& prefix, unsigned rows) {
      std::vector<DeliveryBody> bodies;
      for (unsigned n = 0; n < rows; ++n) bodies.push_back(body_for(key(n)));
      accept(*store, make_message(prefix + "-expiring", "mesh-a", t0, "next", 1'000), bodies);
      accept(*store, make_message(prefix + "-delivered", "mesh-a", t0), bodies);
      std::vector<std::string> keys;
      for (const auto& body : bodies) keys.push_back(body.recipient_key);
      CHECK(mark(*store, "mesh-a", prefix + "-delivered", keys, t0 + 1) == rows);
      for (unsigned n = 0; n < rows; ++n) {
        MessageRecord keyed = make_message(prefix + "-keyed-" + std::to_string(n), "mesh-a", t0);
        keyed.client_message_id = prefix + "-client-" + std::to_string(n);
        accept(*store, keyed, {});
      }
    };
    fill("alone", 4'500);
    auto purged = store->purge(t0 + 2 * day_ms, day_ms);
    REQUIRE(purged);
    CHECK(purged->expired_deliveries == 4'500);
    CHECK(purged->delivered_pruned == 4'500);
    CHECK(purged->dedupe_pruned == 4'500);
    CHECK(purged->messages_pruned == 4'502);
    CHECK(stats(*store, t0 + 2 * day_ms).messages == 0);

    fill("batched", 2'001);
    REQUIRE(store->begin_batch());
    purged = store->purge(t0 + 2 * day_ms, day_ms);
    REQUIRE(store->commit_batch());
    REQUIRE(purged);
    CHECK(purged->expired_deliveries == 2'001);
    CHECK(purged->delivered_pruned == 2'001);
    CHECK(purged->dedupe_pruned == 2'001);
    CHECK(purged->messages_pruned == 2'003);
    CHECK(stats(*store, t0 + 2 * day_ms).undelivered == 0);
  }

  TEST_CASE("sqlite broker store: synchronous NORMAL still journals to the WAL") {
    TempDir dir;
    const auto path = dir.path() / "broker.db";
    {
      auto store = open_or_fail(path, {.full_sync = false});
      add_mesh(*store, "mesh-a");
      send(*store, make_message("msg-1", "mesh-a"), {key(1)});
    }
    SQLite::Database raw(path.string(), SQLite::OPEN_READONLY);
    CHECK(raw.execAndGet("PRAGMA journal_mode").getString() == "wal");
    CHECK(exists(open_or_fail(path)->message_status("mesh-a", "msg-1")));
  }
}
