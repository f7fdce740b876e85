// SPDX-License-Identifier: MIT
#include <claudemesh/target.hpp>

#include <doctest/doctest.h>

#include <string>
#include <tuple>
#include <vector>

using namespace claudemesh;

namespace {

std::string hex(std::size_t n, char digit = 'a') { return std::string(n, digit); }

// Distinct, recognisable 64-hex keys: "cafe01...", "cafe02...", "beef00...".
std::string key(std::string_view prefix) { return std::string(prefix) + hex(64 - prefix.size(), '0'); }

void check_invalid(std::string_view text, std::string_view why) {
  CAPTURE(text);
  const auto result = parse_target(text);
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error() == Errc::invalid_target);
  CHECK_MESSAGE(result.error().message.find(why) != std::string::npos, result.error().message);
}

}  // namespace

TEST_CASE("every target form parses to its kind and normalized value") {
  const std::string mixed = "ABCDEF" + hex(58, '9');
  const std::vector<std::tuple<std::string, TargetKind, std::string, std::string>> cases{
      // text, kind, value, spec
      {hex(64), TargetKind::pubkey, hex(64), hex(64)},
      {mixed, TargetKind::pubkey, "abcdef" + hex(58, '9'), "abcdef" + hex(58, '9')},
      {hex(63, 'F'), TargetKind::pubkey_prefix, hex(63, 'f'), hex(63, 'f')},
      {"CaFe", TargetKind::pubkey_prefix, "cafe", "cafe"},
      {"0123", TargetKind::pubkey_prefix, "0123", "0123"},
      {"abc", TargetKind::name, "abc", "abc"},  // 3 hex digits: too short for a prefix
      {"42", TargetKind::name, "42", "42"},
      {"*", TargetKind::broadcast, "*", "*"},
      {"@all", TargetKind::broadcast, "*", "*"},
      {"@ops", TargetKind::group, "ops", "@ops"},
      {"@All", TargetKind::group, "All", "@All"},  // the alias is lowercase only
      {"@ops/eu-west_1.a", TargetKind::group, "ops/eu-west_1.a", "@ops/eu-west_1.a"},
      {"@" + hex(64, 'g'), TargetKind::group, hex(64, 'g'), "@" + hex(64, 'g')},
      {"#deploys", TargetKind::topic, "deploys", "#deploys"},
      {"#" + hex(64, 't'), TargetKind::topic, hex(64, 't'), "#" + hex(64, 't')},
      {"alice", TargetKind::name, "alice", "alice"},
      {"Alice Smith", TargetKind::name, "Alice Smith", "Alice Smith"},
      {"Zoë 🚀", TargetKind::name, "Zoë 🚀", "Zoë 🚀"},
      {"bob@laptop", TargetKind::name, "bob@laptop", "bob@laptop"},
      {"a*", TargetKind::name, "a*", "a*"},
      {hex(64, 'n'), TargetKind::name, hex(64, 'n'), hex(64, 'n')},  // 64 bytes, not hex
  };
  for (const auto& [text, kind, value, spec] : cases) {
    CAPTURE(text);
    const auto target = parse_target(text);
    REQUIRE_MESSAGE(target.has_value(), target.error().describe());
    CHECK(to_string(target->kind) == to_string(kind));
    CHECK(target->value == value);
    CHECK(target->spec() == spec);
    CHECK(parse_target(target->spec()) == *target);
  }
}

TEST_CASE("a group path must be well-formed segments") {
  check_invalid("@", "group name after '@' is empty");
  check_invalid("@a//b", "empty segment");
  check_invalid("@a/", "empty segment");
  check_invalid("@/a", "empty segment");
  check_invalid("@ops team", "group path may contain only");
  check_invalid("@ops\\eu", "group path may contain only");
  check_invalid("@" + hex(65, 'g'), "segment is longer than 64");
  const std::string longest = hex(64, 'g') + "/" + hex(64, 'g') + "/" + hex(64, 'g') + "/" + hex(60, 'g');
  REQUIRE(longest.size() == 255);
  CHECK(parse_target("@" + longest).has_value());
  check_invalid("@" + longest + "g", "longer than 255");
}

TEST_CASE("a topic must be 1-64 name characters") {
  check_invalid("#", "topic name after '#' is empty");
  check_invalid("# x", "topic name may contain only");
  check_invalid("#a/b", "topic name may contain only");
  check_invalid("#" + hex(65, 't'), "topic name is longer than 64");
}

TEST_CASE("hex that is too long for a pubkey is rejected") {
  check_invalid(hex(65), "has 65 hex characters; a pubkey has 64");
  check_invalid(hex(128, 'F'), "has 128 hex characters");
}

TEST_CASE("a display name must be short, printable, trimmed UTF-8") {
  check_invalid("", "target is empty");
  check_invalid(hex(65, 'n'), "display name is longer than 64 bytes");
  check_invalid("*alice", "must not start with '*'");
  check_invalid("**", "must not start with '*'");
  check_invalid(" alice", "leading or trailing whitespace");
  check_invalid("alice ", "leading or trailing whitespace");
  check_invalid("alice\xc2\xa0", "leading or trailing whitespace");  // no-break space
  check_invalid("\xe3\x80\x80" "alice", "leading or trailing whitespace");  // ideographic space
  check_invalid("al\tice", "control character");
  check_invalid("alice\n", "control character");
  check_invalid(std::string("al\0ice", 6), "control character");
  check_invalid("al\x7f" "ice", "control character");
  check_invalid("al\xc2\x85ice", "control character");  // C1 next-line
  check_invalid("\xe2\x80\xae" "ecila", "bidirectional control");  // right-to-left override
  check_invalid("al\xff", "not valid UTF-8");
  check_invalid("al\xc3", "not valid UTF-8");            // truncated sequence
  check_invalid("al\xc3\x28", "not valid UTF-8");        // bad continuation byte
  check_invalid("al\xc0\xaf", "not valid UTF-8");        // overlong '/'
  check_invalid("al\xed\xa0\x80", "not valid UTF-8");    // surrogate U+D800
  check_invalid("al\xf4\x90\x80\x80", "not valid UTF-8");  // above U+10FFFF
  check_invalid("al\xf8\x88\x80\x80\x80", "not valid UTF-8");  // five-byte form
}

TEST_CASE("error messages never echo raw control bytes or invalid UTF-8") {
  const auto result = parse_target("al\xff\x01\"x");
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().message.find("al\\xff\\x01\\x22x") != std::string::npos);
  const auto long_name = parse_target(hex(100, 'n'));
  REQUIRE_FALSE(long_name.has_value());
  CHECK(long_name.error().message.find(hex(72, 'n') + "...\"") != std::string::npos);
}

TEST_CASE("a group post reaches the group and its subgroups only") {
  const std::vector<std::tuple<const char*, const char*, bool>> cases{
      {"a/b", "a/b", true},    {"a/b", "a/b/c", true}, {"a", "a/b/c", true}, {"a/b", "a/bc", false},
      {"a/b", "a", false},     {"a/b", "b", false},    {"a/b", "", false},   {"", "a", false},
      {"", "", false},         {"ops", "Ops", false},
  };
  for (const auto& [target, member, reaches] : cases) {
    CAPTURE(target);
    CAPTURE(member);
    CHECK(group_reaches(target, member) == reaches);
  }
}

TEST_CASE("resolving a target to one peer") {
  const std::vector<PeerRef> peers{
      {key("cafe01"), "alice"},
      {key("cafe02"), "bob"},
      {key("beef00"), "cafe"},    // a name that looks like a hex prefix
      {key("d00d00"), "twin"},
      {key("d00d01"), "twin"},    // two peers with one name
      {key("cafe01"), "alice"},   // the same peer listed again (another mesh)
      {key("abcd00"), "deed"},
  };
  const auto resolve = [&](std::string_view text) {
    auto target = parse_target(text);
    REQUIRE(target.has_value());
    return resolve_target(*target, peers);
  };

  SUBCASE("a full pubkey is returned as is, even for a peer we do not know") {
    CHECK(resolve(key("cafe01")) == key("cafe01"));
    CHECK(resolve(hex(64, 'E')) == hex(64, 'e'));
  }
  SUBCASE("a unique prefix resolves, in either case, even when the peer is listed twice") {
    CHECK(resolve("cafe01") == key("cafe01"));
    CHECK(resolve("CAFE02") == key("cafe02"));
  }
  SUBCASE("an ambiguous prefix lists the candidates' short keys and names") {
    const auto result = resolve("cafe");
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == Errc::ambiguous_target);
    CHECK(result.error().message.find("matches 2 peers") != std::string::npos);
    CHECK(result.error().message.find(key("cafe01").substr(0, 16) + " (\"alice\")") != std::string::npos);
    CHECK(result.error().message.find(key("cafe02").substr(0, 16) + " (\"bob\")") != std::string::npos);
    CHECK(result.error().message.find(key("cafe02").substr(0, 17)) == std::string::npos);
  }
  SUBCASE("a hex-looking text that matches no key falls back to a display name") {
    CHECK(resolve("deed") == key("abcd00"));
  }
  SUBCASE("a key match wins over a name that is the same text") {
    const std::vector<PeerRef> both{{key("beef01"), "x"}, {key("1234"), "beef"}};
    CHECK(resolve_target(*parse_target("beef"), both) == key("beef01"));
  }
  SUBCASE("a prefix that matches neither a key nor a name is unknown") {
    const auto result = resolve("f00d");
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == Errc::unknown_target);
    CHECK(result.error().message.find("no peer's pubkey starts with \"f00d\"") != std::string::npos);
  }
  SUBCASE("a hex-looking name shared by two peers is ambiguous") {
    const std::vector<PeerRef> twins{{key("1111"), "face"}, {key("2222"), "face"}};
    const auto result = resolve_target(*parse_target("face"), twins);
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == Errc::ambiguous_target);
  }
  SUBCASE("a unique display name resolves; the match is exact and case-sensitive") {
    CHECK(resolve("bob") == key("cafe02"));
    const auto other_case = resolve("Bob");
    REQUIRE_FALSE(other_case.has_value());
    CHECK(other_case.error() == Errc::unknown_target);
  }
  SUBCASE("a display name shared by two peers is ambiguous") {
    const auto result = resolve("twin");
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == Errc::ambiguous_target);
    CHECK(result.error().message.find(key("d00d00").substr(0, 16)) != std::string::npos);
    CHECK(result.error().message.find(key("d00d01").substr(0, 16)) != std::string::npos);
  }
  SUBCASE("an unknown display name is unknown") {
    const auto result = resolve("mallory");
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == Errc::unknown_target);
    CHECK(result.error().message.find("no peer is named \"mallory\"") != std::string::npos);
  }
  SUBCASE("many candidates are listed up to eight, then counted") {
    std::vector<PeerRef> crowd;
    crowd.reserve(10);
    for (int i = 0; i < 10; ++i) crowd.push_back({key("ab" + std::to_string(10 + i)), "crowd"});
    const auto result = resolve_target(*parse_target("crowd"), crowd);
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error().message.find("matches 10 peers") != std::string::npos);
    CHECK(result.error().message.find(", and 2 more") != std::string::npos);
    CHECK(result.error().message.find(key("ab18").substr(0, 16)) == std::string::npos);
  }
  SUBCASE("broadcast, group and topic do not name a single peer") {
    for (const char* text : {"*", "@ops", "#deploys"}) {
      CAPTURE(text);
      const auto result = resolve(text);
      REQUIRE_FALSE(result.has_value());
      CHECK(result.error() == Errc::invalid_target);
      CHECK(result.error().message.find("not a single peer") != std::string::npos);
    }
  }
  SUBCASE("no peers at all") {
    const auto result = resolve_target(*parse_target("alice"), {});
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == Errc::unknown_target);
  }
}

TEST_CASE("target kinds have stable names") {
  CHECK(to_string(TargetKind::pubkey) == "pubkey");
  CHECK(to_string(TargetKind::pubkey_prefix) == "pubkey_prefix");
  CHECK(to_string(TargetKind::name) == "name");
  CHECK(to_string(TargetKind::broadcast) == "broadcast");
  CHECK(to_string(TargetKind::group) == "group");
  CHECK(to_string(TargetKind::topic) == "topic");
  CHECK(to_string(static_cast<TargetKind>(42)).empty());
}
