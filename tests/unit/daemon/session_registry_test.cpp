// SPDX-License-Identifier: MIT
// Launched sessions: registered under a secret token, replaced when they register again, forgotten after
// 24 h or as soon as their process is gone — including when its pid now belongs to someone else.
#include "daemon/session_registry.hpp"

#include <doctest/doctest.h>

#include "support/files.hpp"

#include <claudemesh/error.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

using namespace claudemesh;
using namespace claudemesh::daemon;
using claudemesh::testing::TempDir;
using claudemesh::testing::write_all;

namespace {

constexpr std::int64_t t0 = 1'700'000'000'000;
constexpr std::int64_t hour_ms = 3'600'000;

SessionInfo session(std::string session_id, char token_digit, std::int64_t pid = 100) {
  SessionInfo info;
  info.token = std::string(64, token_digit);
  info.session_id = std::move(session_id);
  info.mesh = "m1";
  info.display_name = "worker";
  info.pid = pid;
  info.start_time = 5000 + static_cast<std::uint64_t>(pid);
  info.registered_at_ms = t0;
  return info;
}

// Processes that exist only in the test: pid -> start time.
class FakeProbe final : public ProcessProbe {
 public:
  std::map<std::int64_t, std::uint64_t> processes;
  [[nodiscard]] std::optional<std::uint64_t> start_time(std::int64_t pid) const override {
    const auto found = processes.find(pid);
    if (found == processes.end()) return std::nullopt;
    return found->second;
  }
};

std::vector<std::string> ids_of(const std::vector<SessionInfo>& sessions) {
  std::vector<std::string> ids;
  ids.reserve(sessions.size());
  for (const auto& info : sessions) ids.push_back(info.session_id);
  return ids;
}

// A /proc/<pid>/stat line with the given command name, state and start time (field 22).
std::string stat_line(std::int64_t pid, const std::string& comm, char state, const std::string& start_time) {
  std::string line = std::to_string(pid) + " (" + comm + ") " + state;
  for (int field = 4; field <= 21; ++field) line += " " + std::to_string(field);
  line += " " + start_time;
  for (int field = 23; field <= 52; ++field) line += " 0";
  return line + "\n";
}

}  // namespace

TEST_CASE("sessions: a registered session is found by its token, in any case, and by its session key") {
  SessionRegistry registry;
  auto info = session("s1", 'A');
  info.session_pubkey = std::string(64, 'E');
  auto added = registry.add(info);
  REQUIRE(added);
  CHECK(added->empty());
  CHECK(registry.size() == 1);

  const SessionInfo* found = registry.find_by_token(std::string(64, 'a'), t0);
  REQUIRE(found != nullptr);
  CHECK(found->session_id == "s1");
  CHECK(found->token == std::string(64, 'a'));            // stored lower case
  CHECK(found->session_pubkey == std::string(64, 'e'));   // stored lower case
  CHECK(registry.find_by_token(std::string(64, 'A'), t0) == found);
  CHECK(registry.find_by_session_pubkey(std::string(64, 'E')) == found);
  CHECK(registry.find_by_session_pubkey(std::string(64, 'e')) == found);

  CHECK(registry.find_by_token(std::string(64, 'b'), t0) == nullptr);
  CHECK(registry.find_by_token("", t0) == nullptr);
  CHECK(registry.find_by_token(std::string(63, 'a'), t0) == nullptr);
  CHECK(registry.find_by_session_pubkey("") == nullptr);  // sessions without presence have no key
  CHECK(registry.find_by_session_pubkey(std::string(64, 'f')) == nullptr);
}

TEST_CASE("sessions: registering the same session id again replaces the earlier entry and returns it") {
  SessionRegistry registry;
  REQUIRE(registry.add(session("s1", 'a')));
  REQUIRE(registry.add(session("s2", 'b')));
  auto again = session("s1", 'c');  // relaunched: a new token
  auto replaced = registry.add(again);
  REQUIRE(replaced);
  REQUIRE(replaced->size() == 1);
  CHECK(replaced->front().token == std::string(64, 'a'));
  CHECK(registry.size() == 2);
  CHECK(registry.find_by_token(std::string(64, 'a'), t0) == nullptr);  // the old token no longer works
  REQUIRE(registry.find_by_token(std::string(64, 'c'), t0) != nullptr);
  CHECK(ids_of(registry.list()) == std::vector<std::string>{"s1", "s2"});
}

TEST_CASE("sessions: registering the same token again replaces the earlier entry and returns it") {
  SessionRegistry registry;
  REQUIRE(registry.add(session("s1", 'a')));
  REQUIRE(registry.add(session("s2", 'b')));
  auto replaced = registry.add(session("s3", 'A'));  // same token, upper case
  REQUIRE(replaced);
  CHECK(ids_of(*replaced) == std::vector<std::string>{"s1"});
  CHECK(ids_of(registry.list()) == std::vector<std::string>{"s2", "s3"});

  // One registration can collide with two entries: one by id, one by token.
  replaced = registry.add(session("s2", 'a'));
  REQUIRE(replaced);
  CHECK(replaced->size() == 2);
  CHECK(ids_of(registry.list()) == std::vector<std::string>{"s2"});
}

TEST_CASE("sessions: registration refuses a bad token, an empty session id, a bad pid or a bad session key") {
  struct Row {
    const char* why;
    void (*spoil)(SessionInfo&);
  };
  const std::vector<Row> rows{
      {"empty token", [](SessionInfo& s) { s.token.clear(); }},
      {"63 hex", [](SessionInfo& s) { s.token.pop_back(); }},
      {"65 hex", [](SessionInfo& s) { s.token += 'a'; }},
      {"not hex", [](SessionInfo& s) { s.token.back() = 'g'; }},
      {"base64url", [](SessionInfo& s) { s.token = std::string(43, '_'); }},
      {"spaces", [](SessionInfo& s) { s.token = " " + s.token.substr(1); }},
      {"empty session id", [](SessionInfo& s) { s.session_id.clear(); }},
      {"pid 0", [](SessionInfo& s) { s.pid = 0; }},
      {"negative pid", [](SessionInfo& s) { s.pid = -1; }},
      {"short session key", [](SessionInfo& s) { s.session_pubkey = "abcd"; }},
      {"non-hex session key", [](SessionInfo& s) { s.session_pubkey = std::string(64, 'z'); }},
  };
  for (const auto& row : rows) {
    CAPTURE(row.why);
    SessionRegistry registry;
    auto info = session("s1", 'a');
    row.spoil(info);
    const std::string token = info.token;
    auto added = registry.add(info);
    REQUIRE_FALSE(added);
    CHECK(added.error() == Errc::invalid_value);
    if (!token.empty()) CHECK(added.error().message.find(token) == std::string::npos);  // the secret is not echoed
    CHECK(registry.size() == 0);
  }
}

TEST_CASE("sessions: a token stops resolving once the session is 24 hours old") {
  SessionRegistry registry;
  REQUIRE(registry.add(session("s1", 'a')));
  const std::string token(64, 'a');
  CHECK(registry.find_by_token(token, t0 + 24 * hour_ms - 1) != nullptr);
  CHECK(registry.find_by_token(token, t0 + 24 * hour_ms) == nullptr);

  SessionRegistry short_lived(std::chrono::minutes(1));
  REQUIRE(short_lived.add(session("s1", 'a')));
  CHECK(short_lived.find_by_token(token, t0 + 59'999) != nullptr);
  CHECK(short_lived.find_by_token(token, t0 + 60'000) == nullptr);
}

TEST_CASE("sessions: remove_by_token removes that session only") {
  SessionRegistry registry;
  REQUIRE(registry.add(session("s1", 'a')));
  REQUIRE(registry.add(session("s2", 'b')));
  auto removed = registry.remove_by_token(std::string(64, 'A'));
  REQUIRE(removed);
  CHECK(removed->session_id == "s1");
  CHECK_FALSE(registry.remove_by_token(std::string(64, 'a')));
  CHECK_FALSE(registry.remove_by_token("short"));
  CHECK(ids_of(registry.list()) == std::vector<std::string>{"s2"});
}

TEST_CASE("sessions: the sweep drops sessions whose process is dead and keeps live ones") {
  SessionRegistry registry;
  REQUIRE(registry.add(session("alive", 'a', 100)));
  REQUIRE(registry.add(session("dead", 'b', 200)));
  FakeProbe probe;
  probe.processes = {{100, 5100}};
  CHECK(ids_of(registry.sweep(t0 + 5000, probe)) == std::vector<std::string>{"dead"});
  CHECK(ids_of(registry.list()) == std::vector<std::string>{"alive"});
  CHECK(registry.sweep(t0 + 10'000, probe).empty());
}

TEST_CASE("sessions: 1.31.0: a recycled pid does not keep a dead session alive") {
  SessionRegistry registry;
  REQUIRE(registry.add(session("recycled", 'a', 100)));  // registered with start time 5100
  FakeProbe probe;
  probe.processes = {{100, 9999}};  // pid 100 is alive, but it is a younger process
  CHECK(ids_of(registry.sweep(t0 + 5000, probe)) == std::vector<std::string>{"recycled"});
  CHECK(registry.size() == 0);
}

TEST_CASE("sessions: a session registered without a start time is checked for liveness only") {
  SessionRegistry registry;
  auto info = session("unknown-start", 'a', 100);
  info.start_time.reset();
  REQUIRE(registry.add(info));
  FakeProbe probe;
  probe.processes = {{100, 9999}};
  CHECK(registry.sweep(t0 + 5000, probe).empty());
  probe.processes.clear();
  CHECK(ids_of(registry.sweep(t0 + 10'000, probe)) == std::vector<std::string>{"unknown-start"});
}

TEST_CASE("sessions: the sweep drops sessions past the ttl even while their process lives") {
  SessionRegistry registry;
  REQUIRE(registry.add(session("old", 'a', 100)));
  auto young = session("young", 'b', 200);
  young.registered_at_ms = t0 + hour_ms;
  REQUIRE(registry.add(young));
  FakeProbe probe;
  probe.processes = {{100, 5100}, {200, 5200}};
  CHECK(ids_of(registry.sweep(t0 + 24 * hour_ms, probe)) == std::vector<std::string>{"old"});
  CHECK(ids_of(registry.list()) == std::vector<std::string>{"young"});
}

TEST_CASE("sessions: the Linux probe reads this process's start time, and it does not change") {
  const LinuxProcessProbe probe;
  const auto first = probe.start_time(::getpid());
  REQUIRE(first);
  CHECK(*first > 0);
  CHECK(probe.start_time(::getpid()) == first);
  CHECK_FALSE(probe.start_time(0));
  CHECK_FALSE(probe.start_time(-1));
}

TEST_CASE("sessions: the Linux probe reports a child that exited and was reaped as gone") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  const LinuxProcessProbe probe;
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK_FALSE(probe.start_time(child));
}

TEST_CASE("sessions: the Linux probe reports a zombie child (exited, not yet reaped) as gone") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  const LinuxProcessProbe probe;
  siginfo_t info{};
  // Wait for the exit without reaping it, so the child stays a zombie while we look.
  REQUIRE(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT) == 0);
  CHECK_FALSE(probe.start_time(child));
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
}

TEST_CASE("sessions: the start time is parsed after the last ')' of a command name with spaces and parentheses") {
  TempDir proc;
  const LinuxProcessProbe probe(proc.path());
  std::filesystem::create_directories(proc.path() / "4242");
  write_all(proc.path() / "4242" / "stat", stat_line(4242, "evil) (name x 1 2", 'S', "987654321"));
  CHECK(probe.start_time(4242) == 987654321ULL);

  std::filesystem::create_directories(proc.path() / "4243");
  write_all(proc.path() / "4243" / "stat", stat_line(4243, "zombie", 'Z', "5"));
  CHECK_FALSE(probe.start_time(4243));
  CHECK_FALSE(probe.start_time(4244));  // no such directory

  struct Row {
    const char* why;
    std::string text;
  };
  const std::vector<Row> malformed{
      {"empty", ""},
      {"no parenthesis", "4242 evil S 1 2 3"},
      {"truncated before field 22", "4242 (evil) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18"},
      {"non-numeric start time", stat_line(4242, "x", 'S', "12ab")},
      {"negative start time", stat_line(4242, "x", 'S', "-5")},
      {"dying (X)", stat_line(4242, "x", 'X', "5")},
  };
  for (const auto& row : malformed) {
    CAPTURE(row.why);
    CHECK_FALSE(parse_proc_stat_start_time(row.text));
  }
  CHECK(parse_proc_stat_start_time(stat_line(1, ") ) (", 'R', "77")) == 77ULL);
}
