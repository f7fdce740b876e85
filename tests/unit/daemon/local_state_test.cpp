// SPDX-License-Identifier: MIT
// The daemon's files: a singleton that a second daemon cannot take and a crashed one cannot leave behind,
// a bearer token minted once and kept private, and a host fingerprint that notices a copied directory.
#include "daemon/local_state.hpp"

#include <doctest/doctest.h>

#include "support/files.hpp"

#include <claudemesh/error.hpp>

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

using namespace claudemesh;
using namespace claudemesh::daemon;
using claudemesh::testing::mode_of;
using claudemesh::testing::read_all;
using claudemesh::testing::TempDir;
using claudemesh::testing::write_all;

TEST_CASE("daemon: a second daemon cannot take the singleton lock and is told the holder's pid") {
  TempDir dir;
  const auto path = dir.path() / "state" / "daemon.lock";
  auto first = SingletonLock::acquire(path);
  REQUIRE(first);
  CHECK(mode_of(path) == 0600);
  CHECK(mode_of(path.parent_path()) == 0700);
  CHECK(SingletonLock::holder(path) == ::getpid());
  // Another process (flock locks belong to the open file, so a child with its own open sees the conflict).
  const pid_t child = ::fork();
  if (child == 0) {
    auto second = SingletonLock::acquire(path);
    const bool refused = !second && second.error() == Errc::already_exists &&
                         second.error().message.find("pid " + std::to_string(::getppid())) != std::string::npos;
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("daemon: a daemon killed with SIGKILL leaves no lock behind") {
  TempDir dir;
  const auto path = dir.path() / "daemon.lock";
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  if (child == 0) {
    auto lock = SingletonLock::acquire(path);
    const char byte = lock ? 'y' : 'n';
    (void)!::write(ready[1], &byte, 1);
    ::pause();
    ::_exit(0);
  }
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  REQUIRE(byte == 'y');
  CHECK(SingletonLock::holder(path) == child);
  CHECK_FALSE(SingletonLock::acquire(path));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  CHECK_FALSE(SingletonLock::holder(path).has_value());  // the pid file still names it, but nobody holds it
  auto taken = SingletonLock::acquire(path);
  CHECK(taken);
}

TEST_CASE("daemon: the local token is minted once, 0600, and reused") {
  TempDir dir;
  const auto path = dir.path() / "local-token";
  auto first = ensure_local_token(path);
  REQUIRE(first);
  CHECK(first->size() == 43);  // 32 bytes, base64url without padding
  CHECK(mode_of(path) == 0600);
  auto again = ensure_local_token(path);
  REQUIRE(again);
  CHECK(*again == *first);
  CHECK(token_matches(*first, *again));
  CHECK_FALSE(token_matches(*first, first->substr(0, 42)));
  CHECK_FALSE(token_matches(*first, std::string(43, 'A')));
  CHECK_FALSE(token_matches("", ""));
}

TEST_CASE("daemon: a token file others can read, or one that holds something else, is refused") {
  TempDir dir;
  const auto path = dir.path() / "local-token";
  REQUIRE(ensure_local_token(path));
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  auto exposed = ensure_local_token(path);
  REQUIRE(!exposed);
  CHECK(exposed.error() == Errc::insecure_permissions);
  REQUIRE(::chmod(path.c_str(), 0600) == 0);
  write_all(path, "not a token\n");
  auto garbage = ensure_local_token(path);
  REQUIRE(!garbage);
  CHECK(garbage.error() == Errc::malformed);
  CHECK(read_all(path) == "not a token\n");  // left for the operator
}

TEST_CASE("daemon: the host identity comes from machine-id and a physical MAC, never from randomness") {
  TempDir dir;
  const auto net = dir.path() / "net";
  for (const auto& [name, mac] : std::vector<std::pair<std::string, std::string>>{
           {"lo", "00:00:00:00:00:00"}, {"docker0", "02:42:ac:11:00:02"}, {"veth1234", "aa:bb:cc:dd:ee:01"},
           {"wlan0", "10:20:30:40:50:60"}, {"eth0", "de:ad:be:ef:00:01"}, {"eth1", "00:00:00:00:00:00"}}) {
    std::filesystem::create_directories(net / name);
    write_all(net / name / "address", mac + "\n");
  }
  write_all(dir.path() / "machine-id", "0123456789abcdef0123456789abcdef\n");
  const auto host = read_host_identity({dir.path() / "missing", dir.path() / "machine-id"}, net);
  CHECK(host.host_id == "linux:0123456789abcdef0123456789abcdef");
  CHECK(host.stable_mac == "de:ad:be:ef:00:01");  // eth0 sorts before wlan0; virtual and zero MACs skipped
  CHECK(host.fingerprint().size() == 64);
  CHECK(read_host_identity({dir.path() / "machine-id"}, net).fingerprint() == host.fingerprint());
  const auto bare = read_host_identity({dir.path() / "missing"}, dir.path() / "no-net");
  CHECK(bare.host_id.empty());
  CHECK(bare.stable_mac.empty());
  CHECK(bare.fingerprint() == read_host_identity({}, dir.path() / "no-net").fingerprint());  // stable
}

TEST_CASE("daemon: the host check writes the record on first run, matches after, and notices a clone") {
  TempDir dir;
  const auto path = dir.path() / "host_fingerprint.json";
  const HostIdentity here{"linux:aaaa", "de:ad:be:ef:00:01"};
  const HostIdentity elsewhere{"linux:bbbb", "de:ad:be:ef:00:02"};
  auto first = check_host(path, here, 1000);
  REQUIRE(first);
  CHECK(first->outcome == HostCheck::Outcome::first_run);
  CHECK(mode_of(path) == 0600);
  auto same = check_host(path, here, 2000);
  REQUIRE(same);
  CHECK(same->outcome == HostCheck::Outcome::match);
  auto cloned = check_host(path, elsewhere, 3000);
  REQUIRE(cloned);
  CHECK(cloned->outcome == HostCheck::Outcome::mismatch);
  CHECK(cloned->stored_host_id == "linux:aaaa");
  REQUIRE(accept_host(path, elsewhere, 4000));
  auto accepted = check_host(path, elsewhere, 5000);
  REQUIRE(accepted);
  CHECK(accepted->outcome == HostCheck::Outcome::match);
  // An unreadable record is a mismatch, not a silent pass (the reference continued).
  write_all(path, "{ not json");
  auto unreadable = check_host(path, elsewhere, 6000);
  REQUIRE(unreadable);
  CHECK(unreadable->outcome == HostCheck::Outcome::mismatch);
  CHECK(parse_clone_policy("refuse") == ClonePolicy::refuse);
  CHECK(parse_clone_policy("warn") == ClonePolicy::warn);
  CHECK(parse_clone_policy("allow") == ClonePolicy::allow);
  CHECK_FALSE(parse_clone_policy("Refuse").has_value());
}
