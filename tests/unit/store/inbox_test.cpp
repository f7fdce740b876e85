// SPDX-License-Identifier: MIT
// The durable inbox: dedupe per recipient, scoped listing, paging, seen state, deletion and retention, full-text
// search, and what happens to files that are damaged or belong to someone else.
#include <claudemesh/inbox.hpp>

#include "../core/test_support.hpp"

#include <SQLiteCpp/Database.h>
#include <doctest/doctest.h>

#include "support/files.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <sys/stat.h>

using namespace claudemesh;
using claudemesh::testing::mode_of;
using claudemesh::testing::read_all;
using claudemesh::testing::write_all;
using claudemesh::test::TempDir;

namespace {

constexpr std::int64_t t0 = 1'700'000'000'000;
constexpr std::int64_t day_ms = 24LL * 60 * 60 * 1000;

constexpr const char* session_a = "session-a-key";
constexpr const char* session_b = "session-b-key";
constexpr const char* member_m = "member-m-key";

// A clock the test moves by hand.
struct ManualClock {
  std::shared_ptr<std::int64_t> now = std::make_shared<std::int64_t>(t0);
  [[nodiscard]] Clock clock() const {
    return [now = now] { return *now; };
  }
  void set(std::int64_t ms) const { *now = ms; }
};

InboxConfig config_with(const ManualClock& clock) {
  InboxConfig config;
  config.clock = clock.clock();
  config.rng = test::counting_random();
  return config;
}

Inbox open_or_fail(const std::filesystem::path& path, InboxConfig config = {}) {
  auto opened = Inbox::open(path, std::move(config));
  if (!opened) FAIL("cannot open " << path.string() << ": " << opened.error().describe());
  return std::move(*opened);
}

InboxMessage message(std::string client_id, std::string recipient = session_a, std::string body = "hello",
                     std::int64_t received_at = 0) {
  InboxMessage m;
  m.client_message_id = std::move(client_id);
  m.broker_message_id = "broker-" + m.client_message_id;
  m.mesh = "mesh-a";
  m.target_spec = "*";
  m.sender_pubkey = "sender-session-key";
  m.sender_member_pubkey = "sender-member-key";
  m.sender_name = "alice";
  m.body = std::move(body);
  m.created_at_ms = t0 - 5;
  m.received_at_ms = received_at;
  m.recipient_kind = recipient == member_m ? "member" : "session";
  m.recipient_pubkey = std::move(recipient);
  return m;
}

std::string stored(Inbox& inbox, InboxMessage m) {
  auto result = inbox.store(std::move(m));
  REQUIRE(result);
  CHECK(result->inserted);
  return result->id;
}

std::vector<InboxMessage> listed(Inbox& inbox, const InboxQuery& query = {}) {
  auto rows = inbox.list(query);
  if (!rows) FAIL("list: " << rows.error().describe());
  return std::move(*rows);
}

std::vector<InboxMessage> found(Inbox& inbox, std::string_view text, const InboxQuery& query = {}) {
  auto rows = inbox.search(text, query);
  if (!rows) FAIL("search " << std::string(text) << ": " << rows.error().describe());
  return std::move(*rows);
}

std::vector<std::string> client_ids(const std::vector<InboxMessage>& rows) {
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(row.client_message_id);
  return out;
}

std::set<std::string> client_id_set(const std::vector<InboxMessage>& rows) {
  auto ids = client_ids(rows);
  return {ids.begin(), ids.end()};
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  ::chmod(path.c_str(), 0600);
}

// The names in `dir` that start with `prefix`.
std::vector<std::string> files_starting(const std::filesystem::path& dir, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with(prefix)) names.push_back(name);
  }
  std::ranges::sort(names);
  return names;
}

struct Fixture {
  TempDir dir;
  ManualClock clock;
  Inbox inbox = open_or_fail(dir.path() / "inbox.db", config_with(clock));
};

}  // namespace

TEST_SUITE("inbox") {
  TEST_CASE("inbox: a duplicate of (mesh, client id, recipient) is not stored again and names the first copy") {
    Fixture f;
    auto first = f.inbox.store(message("c-1", session_a, "first copy", t0));
    REQUIRE(first);
    CHECK(first->inserted);
    CHECK(first->id.size() == 26);

    InboxMessage again = message("c-1", session_a, "second copy", t0 + 10);
    again.sender_name = "mallory";
    auto second = f.inbox.store(again);
    REQUIRE(second);
    CHECK_FALSE(second->inserted);
    CHECK(second->id == first->id);

    const auto rows = listed(f.inbox);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].id == first->id);
    CHECK(rows[0].body == "first copy");
    CHECK(rows[0].sender_name == "alice");
    CHECK(rows[0].received_at_ms == t0);

    // The same client id in another mesh is another message.
    InboxMessage other_mesh = message("c-1", session_a);
    other_mesh.mesh = "mesh-b";
    CHECK(f.inbox.store(other_mesh)->inserted);
  }

  TEST_CASE("inbox: store_all answers each message as store() would, in one transaction") {
    Fixture f;
    REQUIRE(f.inbox.store(message("already", session_a, "stored before")));
    std::vector<InboxMessage> batch;
    batch.push_back(message("b-1", session_a, "one"));
    batch.push_back(message("already", session_a, "a redelivery"));
    InboxMessage broken = message("b-bad", session_a);
    broken.mesh.clear();
    batch.push_back(broken);
    batch.push_back(message("b-2", session_a, "two"));
    batch.push_back(message("b-1", session_a, "the same push twice in one batch"));
    const auto answers = f.inbox.store_all(std::move(batch));
    REQUIRE(answers.size() == 5);
    REQUIRE(answers[0]);
    CHECK(answers[0]->inserted);
    REQUIRE(answers[1]);
    CHECK_FALSE(answers[1]->inserted);
    REQUIRE_FALSE(answers[2]);
    CHECK(answers[2].error() == Errc::invalid_value);
    REQUIRE(answers[3]);
    CHECK(answers[3]->inserted);
    REQUIRE(answers[4]);
    CHECK_FALSE(answers[4]->inserted);
    CHECK(answers[4]->id == answers[0]->id);
    const auto rows = listed(f.inbox);
    CHECK(rows.size() == 3);
    CHECK(f.inbox.store_all({}).empty());
  }

  TEST_CASE("inbox: one client id delivered to two sessions is two rows") {
    Fixture f;
    const auto a = stored(f.inbox, message("c-1", session_a));
    const auto b = stored(f.inbox, message("c-1", session_b));
    CHECK(a != b);
    CHECK(listed(f.inbox).size() == 2);
    CHECK(listed(f.inbox, {.recipients = {session_a}}).at(0).id == a);
    CHECK(listed(f.inbox, {.recipients = {session_b}}).at(0).id == b);
  }

  TEST_CASE("inbox: sessions on one host never see each other's messages") {
    Fixture f;
    stored(f.inbox, message("for-a", session_a, "to a", t0 + 1));
    stored(f.inbox, message("for-b", session_b, "to b", t0 + 2));
    stored(f.inbox, message("for-m", member_m, "to m", t0 + 3));
    stored(f.inbox, message("for-nobody", "", "unaddressed", t0 + 4));

    const auto seen_by_a = listed(f.inbox, {.recipients = {session_a, member_m}});
    CHECK(client_ids(seen_by_a) == std::vector<std::string>{"for-m", "for-a"});
    const auto seen_by_b = listed(f.inbox, {.recipients = {session_b, member_m}});
    CHECK(client_ids(seen_by_b) == std::vector<std::string>{"for-m", "for-b"});
    CHECK(client_ids(listed(f.inbox, {.recipients = {member_m}})) == std::vector<std::string>{"for-m"});
    CHECK(listed(f.inbox, {.recipients = {"someone-else"}}).empty());
    CHECK(listed(f.inbox).size() == 4);  // no scope: every row

    CHECK(client_id_set(found(f.inbox, "to", {.recipients = {session_a, member_m}})) ==
          std::set<std::string>{"for-a", "for-m"});
    auto counted = f.inbox.counts({session_a, member_m});
    REQUIRE(counted);
    CHECK(counted->rows == 2);
  }

  TEST_CASE("inbox: a scope of many recipient keys binds each of them") {
    Fixture f;
    std::vector<std::string> scope;
    scope.reserve(2'000);
    for (int n = 0; n < 2'000; ++n) scope.push_back("key-" + std::to_string(n));
    stored(f.inbox, message("c-1", "key-1999"));
    stored(f.inbox, message("c-2", "key-2000"));
    CHECK(client_ids(listed(f.inbox, {.recipients = scope})) == std::vector<std::string>{"c-1"});
    CHECK(f.inbox.counts(scope)->rows == 1);

    std::vector<std::string> too_many(10'001, "key");
    CHECK(f.inbox.list({.recipients = too_many}).error() == Errc::invalid_value);
    CHECK(f.inbox.search("hello", {.recipients = too_many}).error() == Errc::invalid_value);
    CHECK(f.inbox.counts(too_many).error() == Errc::invalid_value);
  }

  TEST_CASE("inbox: list filters by mesh, topic, sender, time and unread") {
    Fixture f;
    InboxMessage in_b = message("mesh-b-row", session_a, "x", t0 + 1);
    in_b.mesh = "mesh-b";
    stored(f.inbox, in_b);
    InboxMessage topical = message("topic-row", session_a, "x", t0 + 2);
    topical.topic = "deploys";
    stored(f.inbox, topical);
    InboxMessage from_bob = message("bob-row", session_a, "x", t0 + 3);
    from_bob.sender_pubkey = "bob-session";
    from_bob.sender_member_pubkey = "bob-member";
    stored(f.inbox, from_bob);
    const auto old_id = stored(f.inbox, message("old-row", session_a, "x", t0 - day_ms));

    CHECK(client_ids(listed(f.inbox, {.mesh = "mesh-b"})) == std::vector<std::string>{"mesh-b-row"});
    CHECK(client_ids(listed(f.inbox, {.mesh = "mesh-a"})) ==
          std::vector<std::string>{"bob-row", "topic-row", "old-row"});
    CHECK(client_ids(listed(f.inbox, {.topic = "deploys"})) == std::vector<std::string>{"topic-row"});
    CHECK(client_ids(listed(f.inbox, {.from_pubkey = "bob-session"})) == std::vector<std::string>{"bob-row"});
    CHECK(client_ids(listed(f.inbox, {.from_pubkey = "bob-member"})) == std::vector<std::string>{"bob-row"});
    CHECK(listed(f.inbox, {.from_pubkey = "sender-member-key"}).size() == 3);
    CHECK(client_ids(listed(f.inbox, {.since_ms = t0 + 2})) == std::vector<std::string>{"bob-row", "topic-row"});
    CHECK(client_ids(listed(f.inbox, {.before_ms = t0 + 1})) == std::vector<std::string>{"old-row"});
    CHECK(client_ids(listed(f.inbox, {.mesh = "mesh-a", .since_ms = t0})) ==
          std::vector<std::string>{"bob-row", "topic-row"});

    REQUIRE(f.inbox.mark_seen({old_id}));
    CHECK(client_ids(listed(f.inbox, {.unread_only = true})) ==
          std::vector<std::string>{"bob-row", "topic-row", "mesh-b-row"});
  }

  TEST_CASE("inbox: list is newest first, and keyset paging over equal times returns every row once") {
    Fixture f;
    std::set<std::string> all;
    for (int n = 0; n < 25; ++n) {
      const auto time = t0 + (n < 20 ? 0 : n);  // 20 rows share one received time
      const auto id = stored(f.inbox, message("c-" + std::to_string(n), session_a, "x", time));
      all.insert(id);
    }
    const auto everything = listed(f.inbox);
    REQUIRE(everything.size() == 25);
    for (std::size_t n = 1; n < everything.size(); ++n) {
      const auto& newer = everything[n - 1];
      const auto& older = everything[n];
      CHECK((newer.received_at_ms > older.received_at_ms ||
             (newer.received_at_ms == older.received_at_ms && newer.id > older.id)));
    }
    CHECK(everything.front().client_message_id == "c-24");

    std::vector<std::string> paged;
    InboxQuery page{.limit = 7};
    for (int guard = 0; guard < 10; ++guard) {
      const auto rows = listed(f.inbox, page);
      if (rows.empty()) break;
      for (const auto& row : rows) paged.push_back(row.id);
      page.before_ms = rows.back().received_at_ms;
      page.before_id = rows.back().id;
    }
    CHECK(paged.size() == 25);
    CHECK(std::set<std::string>(paged.begin(), paged.end()) == all);
    std::vector<std::string> expected;
    expected.reserve(everything.size());
    for (const auto& row : everything) expected.push_back(row.id);
    CHECK(paged == expected);
  }

  TEST_CASE("inbox: the list limit is clamped to 1..1000") {
    Fixture f;
    for (int n = 0; n < 1'005; ++n) {
      InboxMessage m = message("c-" + std::to_string(n), session_a, "x", t0 + n);
      REQUIRE(f.inbox.store(m));
    }
    CHECK(listed(f.inbox, {.limit = 0}).size() == 1);
    CHECK(listed(f.inbox, {.limit = 5'000}).size() == 1'000);
    CHECK(listed(f.inbox).size() == 100);
    CHECK(listed(f.inbox, {.limit = 1'000}).size() == 1'000);
    CHECK(found(f.inbox, "x", {.limit = 0}).size() == 1);
    CHECK(found(f.inbox, "x", {.limit = 5'000}).size() == 1'000);
  }

  TEST_CASE("inbox: mark_seen stamps only unseen rows and returns how many changed") {
    Fixture f;
    const auto a = stored(f.inbox, message("c-1"));
    const auto b = stored(f.inbox, message("c-2"));
    const auto c = stored(f.inbox, message("c-3"));
    f.clock.set(t0 + 100);
    CHECK(f.inbox.mark_seen({a, b, "no-such-row"}).value() == 2);
    f.clock.set(t0 + 200);
    CHECK(f.inbox.mark_seen({a, b, c, c}).value() == 1);
    CHECK(f.inbox.mark_seen({}).value() == 0);
    CHECK(f.inbox.get(a).value()->seen_at_ms == t0 + 100);
    CHECK(f.inbox.get(c).value()->seen_at_ms == t0 + 200);
    auto counted = f.inbox.counts();
    REQUIRE(counted);
    CHECK(counted->rows == 3);
    CHECK(counted->unread == 0);
  }

  TEST_CASE("inbox: remove deletes one row and says whether it existed") {
    Fixture f;
    const auto a = stored(f.inbox, message("c-1"));
    const auto b = stored(f.inbox, message("c-2"));
    CHECK(f.inbox.remove(a).value());
    CHECK_FALSE(f.inbox.remove(a).value());
    CHECK_FALSE(f.inbox.remove("").value());
    CHECK_FALSE(f.inbox.get(a).value());
    CHECK(f.inbox.get(b).value());
    // Once removed, a redelivery of the same message is stored afresh.
    CHECK(f.inbox.store(message("c-1"))->inserted);
  }

  TEST_CASE("inbox: flush by mesh, by time, by both and by neither") {
    Fixture f;
    const auto fill = [&] {
      for (const char* mesh : {"mesh-a", "mesh-b"}) {
        for (int n = 0; n < 3; ++n) {
          InboxMessage m = message(std::string(mesh) + "-" + std::to_string(n), session_a, "x", t0 + n);
          m.mesh = mesh;
          REQUIRE(f.inbox.store(m));
        }
      }
    };
    fill();
    CHECK(f.inbox.flush("mesh-a", std::nullopt).value() == 3);
    CHECK(client_id_set(listed(f.inbox)) == std::set<std::string>{"mesh-b-0", "mesh-b-1", "mesh-b-2"});
    CHECK(f.inbox.flush("", t0 + 2).value() == 2);  // strictly before
    CHECK(client_ids(listed(f.inbox)) == std::vector<std::string>{"mesh-b-2"});
    CHECK(f.inbox.flush("", std::nullopt).value() == 1);
    CHECK(listed(f.inbox).empty());

    fill();
    CHECK(f.inbox.flush("mesh-b", t0 + 1).value() == 1);
    CHECK(client_id_set(listed(f.inbox)) ==
          std::set<std::string>{"mesh-a-0", "mesh-a-1", "mesh-a-2", "mesh-b-1", "mesh-b-2"});
    CHECK(f.inbox.flush("no-such-mesh", std::nullopt).value() == 0);
    CHECK(f.inbox.flush("", std::nullopt).value() == 5);
  }

  TEST_CASE("inbox: prune removes rows older than the retention, by the injected clock") {
    TempDir dir;
    ManualClock clock;
    InboxConfig config = config_with(clock);
    config.retention = std::chrono::days(30);
    Inbox inbox = open_or_fail(dir.path() / "inbox.db", config);
    stored(inbox, message("ancient", session_a, "x", t0 - 31 * day_ms));
    stored(inbox, message("edge", session_a, "x", t0 - 30 * day_ms));
    stored(inbox, message("recent", session_a, "x", t0 - day_ms));
    stored(inbox, message("now"));  // received now (t0)

    CHECK(inbox.prune().value() == 1);
    CHECK(client_ids(listed(inbox)) == std::vector<std::string>{"now", "recent", "edge"});
    CHECK(inbox.prune().value() == 0);
    clock.set(t0 + 1);
    CHECK(inbox.prune().value() == 1);  // "edge" is now a millisecond past the retention
    clock.set(t0 + 31 * day_ms);
    CHECK(inbox.prune().value() == 2);
    CHECK(listed(inbox).empty());
  }

  TEST_CASE("inbox: a retention longer than the clock reaches back prunes nothing") {
    TempDir dir;
    ManualClock clock;
    InboxConfig config = config_with(clock);
    config.retention = std::chrono::milliseconds::max();
    Inbox inbox = open_or_fail(dir.path() / "inbox.db", config);
    stored(inbox, message("c-1", session_a, "x", -t0));
    CHECK(inbox.prune().value() == 0);
  }

  TEST_CASE("inbox: counts rows and unseen rows within a recipient scope") {
    Fixture f;
    const auto a1 = stored(f.inbox, message("a-1", session_a));
    stored(f.inbox, message("a-2", session_a));
    stored(f.inbox, message("b-1", session_b));
    const auto m1 = stored(f.inbox, message("m-1", member_m));
    REQUIRE(f.inbox.mark_seen({a1, m1}));

    auto all = f.inbox.counts();
    REQUIRE(all);
    CHECK(all->rows == 4);
    CHECK(all->unread == 2);
    auto scoped = f.inbox.counts({session_a, member_m});
    REQUIRE(scoped);
    CHECK(scoped->rows == 3);
    CHECK(scoped->unread == 1);
    auto nobody = f.inbox.counts({"nobody"});
    REQUIRE(nobody);
    CHECK(nobody->rows == 0);
    CHECK(nobody->unread == 0);
  }

  TEST_CASE("inbox: get finds a row by row id, client message id or broker message id") {
    Fixture f;
    const auto id = stored(f.inbox, message("c-1"));
    stored(f.inbox, message("c-1", session_b));  // a second recipient's copy
    CHECK(f.inbox.get(id).value()->client_message_id == "c-1");
    const auto by_client = f.inbox.get("c-1").value();
    REQUIRE(by_client);
    CHECK(by_client->id == id);  // the first stored copy
    const auto by_broker = f.inbox.get("broker-c-1").value();
    REQUIRE(by_broker);
    CHECK(by_broker->id == id);
    CHECK_FALSE(f.inbox.get("nothing").value());
    CHECK_FALSE(f.inbox.get("").value());
  }

  TEST_CASE("inbox: every field round-trips and store fills in the row id and received time") {
    Fixture f;
    InboxMessage m = message("c-1");
    m.id = "ignored";
    m.topic = "deploys";
    m.meta_json = R"({"created_at":1})";
    m.priority = "now";
    m.reply_to_id = "parent-id";
    m.target_spec = "@ops";
    m.created_at_ms = t0 - 42;
    f.clock.set(t0 + 7);
    const auto id = stored(f.inbox, m);
    CHECK(id != "ignored");
    const auto row = f.inbox.get(id).value();
    REQUIRE(row);
    CHECK(row->id == id);
    CHECK(row->client_message_id == m.client_message_id);
    CHECK(row->broker_message_id == m.broker_message_id);
    CHECK(row->mesh == m.mesh);
    CHECK(row->topic == m.topic);
    CHECK(row->target_spec == m.target_spec);
    CHECK(row->sender_pubkey == m.sender_pubkey);
    CHECK(row->sender_member_pubkey == m.sender_member_pubkey);
    CHECK(row->sender_name == m.sender_name);
    CHECK(row->body == m.body);
    CHECK(row->meta_json == m.meta_json);
    CHECK(row->priority == "now");
    CHECK(row->reply_to_id == "parent-id");
    CHECK(row->created_at_ms == t0 - 42);
    CHECK(row->received_at_ms == t0 + 7);
    CHECK_FALSE(row->seen_at_ms);
    CHECK(row->recipient_pubkey == session_a);
    CHECK(row->recipient_kind == "session");

    // Row ids come from the injected clock and grow with it.
    f.clock.set(t0 + 8);
    const auto later = stored(f.inbox, message("c-2"));
    CHECK(later > id);
  }

  TEST_CASE("inbox: search finds rows by a body word and by the sender name, best match first") {
    Fixture f;
    stored(f.inbox, message("deploy", session_a, "the deploy failed with OOM at 3am", t0 + 1));
    stored(f.inbox, message("lunch", session_a, "lunch at noon?", t0 + 2));
    InboxMessage from_bob = message("bob", session_a, "OOM again, OOM everywhere, OOM OOM", t0 + 3);
    from_bob.sender_name = "Bob Builder";
    stored(f.inbox, from_bob);
    InboxMessage accented = message("cafe", session_a, "meet at the Café Überall", t0 + 4);
    stored(f.inbox, accented);

    CHECK(client_ids(found(f.inbox, "OOM")) == std::vector<std::string>{"bob", "deploy"});  // bm25: denser first
    CHECK(client_ids(found(f.inbox, "oom deploy")) == std::vector<std::string>{"deploy"});  // every word
    CHECK(client_ids(found(f.inbox, "builder")) == std::vector<std::string>{"bob"});
    CHECK(client_ids(found(f.inbox, "sender_name: bob")) == std::vector<std::string>{"bob"});
    CHECK(client_ids(found(f.inbox, "lunch OR deploy")).size() == 2);
    CHECK(client_ids(found(f.inbox, "depl*")) == std::vector<std::string>{"deploy"});
    CHECK(client_ids(found(f.inbox, "cafe uberall")) == std::vector<std::string>{"cafe"});
    CHECK(found(f.inbox, "nothinglikethis").empty());
  }

  TEST_CASE("inbox: search keeps to the recipient scope and the query's filters") {
    Fixture f;
    stored(f.inbox, message("a", session_a, "release notes", t0 + 1));
    stored(f.inbox, message("b", session_b, "release notes", t0 + 2));
    stored(f.inbox, message("m", member_m, "release notes", t0 + 3));
    InboxMessage other_mesh = message("other", session_a, "release notes", t0 + 4);
    other_mesh.mesh = "mesh-b";
    stored(f.inbox, other_mesh);

    CHECK(client_id_set(found(f.inbox, "release", {.recipients = {session_a, member_m}})) ==
          std::set<std::string>{"a", "m", "other"});
    CHECK(client_id_set(found(f.inbox, "release", {.mesh = "mesh-a", .recipients = {session_a, member_m}})) ==
          std::set<std::string>{"a", "m"});
    CHECK(client_id_set(found(f.inbox, "release", {.mesh = "mesh-b"})) == std::set<std::string>{"other"});
    CHECK(client_id_set(found(f.inbox, "release", {.since_ms = t0 + 3})) == std::set<std::string>{"m", "other"});
    // Equal scores: newest first.
    CHECK(client_ids(found(f.inbox, "release")) == std::vector<std::string>{"other", "m", "b", "a"});
  }

  TEST_CASE("inbox: a search FTS5 cannot parse is invalid_value, not io_error") {
    Fixture f;
    stored(f.inbox, message("c-1"));
    for (const char* bad : {"\"unbalanced", "hello OR", "NEAR(", "*", "", "   ", "no_such_column: x"}) {
      CAPTURE(bad);
      auto result = f.inbox.search(bad, {});
      REQUIRE_FALSE(result);
      CHECK(result.error() == Errc::invalid_value);
      CHECK_FALSE(result.error().message.empty());
    }
    CHECK(found(f.inbox, "hello").size() == 1);  // the inbox is fine afterwards
  }

  TEST_CASE("inbox: removed, flushed and pruned rows vanish from search") {
    TempDir dir;
    ManualClock clock;
    Inbox inbox = open_or_fail(dir.path() / "inbox.db", config_with(clock));
    const auto removed = stored(inbox, message("removed", session_a, "needle one", t0));
    InboxMessage flushed = message("flushed", session_a, "needle two", t0);
    flushed.mesh = "mesh-b";
    stored(inbox, flushed);
    stored(inbox, message("pruned", session_a, "needle three", t0 - 40 * day_ms));
    stored(inbox, message("kept", session_a, "needle four", t0));
    REQUIRE(found(inbox, "needle").size() == 4);

    REQUIRE(inbox.remove(removed).value());
    REQUIRE(inbox.flush("mesh-b", std::nullopt).value() == 1);
    REQUIRE(inbox.prune().value() == 1);
    CHECK(client_ids(found(inbox, "needle")) == std::vector<std::string>{"kept"});
    CHECK(found(inbox, "one OR two OR three").empty());
  }

  TEST_CASE("inbox: an edit to a row's text made by hand is followed by the search index") {
    TempDir dir;
    const auto path = dir.path() / "inbox.db";
    {
      Inbox inbox = open_or_fail(path);
      stored(inbox, message("c-1", session_a, "before edit"));
    }
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE);
      raw.exec("UPDATE inbox SET body = 'after change'");
    }
    Inbox inbox = open_or_fail(path);
    CHECK(found(inbox, "before").empty());
    CHECK(found(inbox, "change").size() == 1);
  }

  TEST_CASE("inbox: bodies in every kind of UTF-8, and of 1 MiB, round-trip") {
    Fixture f;
    const std::vector<std::string> bodies = {
        "plain ascii",
        "latin-1 supplement: café naïve ß ÿ",
        "greek αβγ, cyrillic жизнь, armenian Աբ",
        "cjk 漢字かなカナ한국어",
        "right to left: שלום مرحبا",
        "astral plane: 😀 🧑‍🚀 𝄞 𐍈",
        "combining: e\u0301 a\u0308 and ZWJ family 👨‍👩‍👧",
        "controls \t\r\n and U+FEFF \ufeff and U+FFFD \ufffd",
        std::string("embedded NUL: a\0b", 17),
        "",
    };
    std::vector<std::string> ids;
    ids.reserve(bodies.size());
    for (std::size_t n = 0; n < bodies.size(); ++n) {
      ids.push_back(stored(f.inbox, message("c-" + std::to_string(n), session_a, bodies[n])));
    }
    for (std::size_t n = 0; n < bodies.size(); ++n) {
      const auto row = f.inbox.get(ids[n]).value();
      REQUIRE(row);
      CHECK(row->body == bodies[n]);
    }
    CHECK(found(f.inbox, "漢字かなカナ한국어").size() == 1);
    CHECK(found(f.inbox, "жизнь").size() == 1);

    std::string big;
    big.reserve(1 << 20);
    while (big.size() + 13 <= (1U << 20)) big += "bigword 😀 ";
    big.resize(1 << 20, 'x');
    const auto big_id = stored(f.inbox, message("big", session_a, big));
    const auto row = f.inbox.get(big_id).value();
    REQUIRE(row);
    CHECK(row->body.size() == big.size());
    CHECK(row->body == big);
    CHECK(client_ids(found(f.inbox, "bigword")) == std::vector<std::string>{"big"});
    CHECK(f.inbox.remove(big_id).value());
    CHECK(found(f.inbox, "bigword").empty());
  }

  TEST_CASE("inbox: hostile store inputs are refused with invalid_value and store nothing") {
    Fixture f;
    struct Case {
      const char* name;
      void (*spoil)(InboxMessage&);
    };
    const Case cases[] = {
        {"empty mesh", [](InboxMessage& m) { m.mesh.clear(); }},
        {"empty client message id", [](InboxMessage& m) { m.client_message_id.clear(); }},
        {"empty sender key", [](InboxMessage& m) { m.sender_pubkey.clear(); }},
        {"recipient kind admin", [](InboxMessage& m) { m.recipient_kind = "admin"; }},
        {"recipient kind Session", [](InboxMessage& m) { m.recipient_kind = "Session"; }},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      InboxMessage m = message("c-1");
      c.spoil(m);
      auto result = f.inbox.store(m);
      REQUIRE_FALSE(result);
      CHECK(result.error() == Errc::invalid_value);
    }
    CHECK(listed(f.inbox).empty());
    InboxMessage no_kind = message("c-1");
    no_kind.recipient_kind.clear();
    CHECK(f.inbox.store(no_kind)->inserted);  // an empty kind is allowed
    // SQL in values is only data.
    InboxMessage sql = message("x'); DROP TABLE inbox; --", session_a, "'; DELETE FROM inbox; --");
    CHECK(f.inbox.store(sql)->inserted);
    CHECK(listed(f.inbox, {.recipients = {"' OR 1=1 --"}}).empty());
    CHECK(listed(f.inbox).size() == 2);
  }

  TEST_CASE("inbox: files are 0600 in a created 0700 directory") {
    TempDir dir;
    const auto path = dir.path() / "state" / "daemon" / "inbox.db";
    Inbox inbox = open_or_fail(path);
    stored(inbox, message("c-1"));  // the WAL and its index now exist
    CHECK(mode_of(path) == 0600);
    CHECK(mode_of(path.string() + "-wal") == 0600);
    CHECK(mode_of(path.string() + "-shm") == 0600);
    CHECK(mode_of(path.parent_path()) == 0700);
    CHECK(mode_of(path.parent_path().parent_path()) == 0700);
    CHECK_FALSE(inbox.recovered_from_corruption());
  }

  TEST_CASE("inbox: rows survive close and reopen, and reopening migrates nothing twice") {
    TempDir dir;
    const auto path = dir.path() / "inbox.db";
    std::string id;
    {
      Inbox inbox = open_or_fail(path, {.fsync = false});
      id = stored(inbox, message("c-1", session_a, "durable"));
    }
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READONLY);
      CHECK(raw.execAndGet("PRAGMA application_id").getInt64() == 0x636d6962);
      CHECK(raw.execAndGet("PRAGMA user_version").getInt64() == 1);
    }
    Inbox inbox = open_or_fail(path);
    CHECK(inbox.get(id).value()->body == "durable");
    CHECK_FALSE(inbox.store(message("c-1"))->inserted);
    CHECK(found(inbox, "durable").size() == 1);
  }

  TEST_CASE("inbox: an in-memory inbox works") {
    Inbox inbox = open_or_fail(":memory:");
    stored(inbox, message("c-1", session_a, "ephemeral"));
    CHECK(found(inbox, "ephemeral").size() == 1);
  }

  TEST_CASE("inbox: a file of garbage is set aside as .corrupt-<ms> and a fresh inbox is created") {
    TempDir dir;
    ManualClock clock;
    const auto path = dir.path() / "inbox.db";
    std::string garbage;
    for (int n = 0; n < 300; ++n) garbage += "this is not a database\n";
    write_bytes(path, garbage);
    write_bytes(path.string() + "-wal", "stale wal");

    Inbox inbox = open_or_fail(path, config_with(clock));
    CHECK(inbox.recovered_from_corruption());
    const std::string aside = "inbox.db.corrupt-" + std::to_string(t0);
    CHECK(read_bytes(dir.path() / aside) == garbage);
    CHECK(read_bytes(dir.path() / (aside + "-wal")) == "stale wal");
    stored(inbox, message("c-1"));
    CHECK(listed(inbox).size() == 1);

    // A second recovery in the same millisecond does not overwrite the first one's copy.
    inbox = open_or_fail(dir.path() / "other.db");
    write_bytes(path, "tiny");
    Inbox again = open_or_fail(path, config_with(clock));
    CHECK(again.recovered_from_corruption());
    CHECK(read_bytes(dir.path() / aside) == garbage);
    CHECK(read_bytes(dir.path() / (aside + ".1")) == "tiny");
    CHECK(listed(again).empty());

    // A healthy reopen is not a recovery.
    again = open_or_fail(dir.path() / "other.db");
    CHECK_FALSE(open_or_fail(path, config_with(clock)).recovered_from_corruption());
  }

  TEST_CASE("inbox: a damaged SQLite inbox is set aside and a fresh one created") {
    TempDir dir;
    ManualClock clock;
    const auto path = dir.path() / "inbox.db";
    {
      Inbox inbox = open_or_fail(path, config_with(clock));
      for (int n = 0; n < 200; ++n) stored(inbox, message("c-" + std::to_string(n), session_a, "some text"));
    }
    std::string bytes = read_bytes(path);
    REQUIRE(bytes.size() > 8192);
    for (std::size_t i = 100; i < bytes.size(); i += 7) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    write_bytes(path, bytes);

    Inbox inbox = open_or_fail(path, config_with(clock));
    CHECK(inbox.recovered_from_corruption());
    // The damaged file and whatever side files SQLite made while finding out, set aside together.
    const std::string aside = "inbox.db.corrupt-" + std::to_string(t0);
    for (const auto& name : files_starting(dir.path(), "inbox.db.corrupt-")) {
      CHECK((name == aside || name == aside + "-wal" || name == aside + "-shm"));
    }
    CHECK(read_bytes(dir.path() / aside) == bytes);
    CHECK(listed(inbox).empty());
    stored(inbox, message("c-1"));
  }

  TEST_CASE("inbox: an inbox that opens but fails the integrity check is set aside") {
    TempDir dir;
    ManualClock clock;
    const auto path = dir.path() / "inbox.db";
    {
      Inbox inbox = open_or_fail(path, config_with(clock));
      for (int n = 0; n < 300; ++n) stored(inbox, message("c-" + std::to_string(n), session_a, "some text"));
    }
    // Scramble the last page only (rows of the inbox table): the schema on page 1 still reads.
    std::string bytes = read_bytes(path);
    constexpr std::size_t page = 4096;
    REQUIRE(bytes.size() > 4 * page);
    for (std::size_t i = bytes.size() - page + 8; i < bytes.size(); i += 5) {
      bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    }
    write_bytes(path, bytes);
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READONLY);
      REQUIRE(raw.execAndGet("SELECT COUNT(*) FROM sqlite_schema").getInt64() > 0);
      REQUIRE(raw.execAndGet("PRAGMA quick_check").getString() != "ok");
    }

    Inbox inbox = open_or_fail(path, config_with(clock));
    CHECK(inbox.recovered_from_corruption());
    CHECK(read_bytes(dir.path() / ("inbox.db.corrupt-" + std::to_string(t0))) == bytes);
    CHECK(listed(inbox).empty());
  }

  TEST_CASE("inbox: another application's database is refused and left unchanged") {
    TempDir dir;
    const auto path = dir.path() / "inbox.db";
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      raw.exec("PRAGMA application_id = 42");
      raw.exec("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine')");
    }
    ::chmod(path.c_str(), 0644);
    const std::string before = read_bytes(path);
    auto opened = Inbox::open(path);
    REQUIRE_FALSE(opened);
    CHECK(opened.error() == Errc::io_error);
    CHECK(opened.error().message.find("not a claudemesh inbox") != std::string::npos);
    CHECK(read_bytes(path) == before);
    CHECK(mode_of(path) == 0644);
    CHECK(files_starting(dir.path(), "inbox.db") == std::vector<std::string>{"inbox.db"});
  }

  TEST_CASE("inbox: an unmarked database holding other tables is refused and not set aside") {
    TempDir dir;
    const auto path = dir.path() / "inbox.db";
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      raw.exec("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine')");
    }
    auto opened = Inbox::open(path);
    REQUIRE_FALSE(opened);
    CHECK(opened.error() == Errc::io_error);
    CHECK(files_starting(dir.path(), "inbox.db.corrupt").empty());
    SQLite::Database raw(path.string(), SQLite::OPEN_READONLY);
    CHECK(raw.execAndGet("SELECT body FROM notes").getString() == "mine");
  }

  TEST_CASE("inbox: an inbox from a newer build is refused with malformed and left unchanged") {
    TempDir dir;
    const auto path = dir.path() / "inbox.db";
    open_or_fail(path);
    {
      SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE);
      raw.exec("PRAGMA user_version = 999");
    }
    const std::string before = read_bytes(path);
    auto opened = Inbox::open(path);
    REQUIRE_FALSE(opened);
    CHECK(opened.error() == Errc::malformed);
    CHECK(opened.error().message.find("newer") != std::string::npos);
    CHECK(read_bytes(path) == before);
    CHECK(files_starting(dir.path(), "inbox.db.corrupt").empty());
  }

  TEST_CASE("inbox: an inbox whose newer schema is still only in the WAL is refused with malformed") {
    TempDir dir;
    const auto path = dir.path() / "inbox.db";
    open_or_fail(path);
    SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE);
    raw.exec("PRAGMA wal_autocheckpoint = 0");
    raw.exec("PRAGMA user_version = 999");  // stays in the WAL while `raw` is open
    auto opened = Inbox::open(path);
    REQUIRE_FALSE(opened);
    CHECK(opened.error() == Errc::malformed);
    CHECK(opened.error().message.find("newer") != std::string::npos);
    CHECK(files_starting(dir.path(), "inbox.db.corrupt").empty());
    CHECK(raw.execAndGet("PRAGMA user_version").getInt64() == 999);
  }

  TEST_CASE("inbox: paths that cannot hold an inbox are io_error") {
    TempDir dir;
    write_bytes(dir.path() / "file", "x");
    CHECK(Inbox::open(dir.path() / "file" / "inbox.db").error() == Errc::io_error);
    std::filesystem::create_directory(dir.path() / "directory");
    CHECK(Inbox::open(dir.path() / "directory").error() == Errc::io_error);
    std::filesystem::create_symlink(dir.path() / "elsewhere.db", dir.path() / "link.db");
    CHECK(Inbox::open(dir.path() / "link.db").error() == Errc::io_error);
    CHECK(files_starting(dir.path(), "directory.corrupt").empty());
    CHECK(Inbox::open("").error() == Errc::invalid_value);
  }
}
