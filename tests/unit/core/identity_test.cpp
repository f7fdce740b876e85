// SPDX-License-Identifier: MIT
#include <claudemesh/identity.hpp>

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sys/stat.h>

using namespace claudemesh;
using claudemesh::test::TempDir;

namespace {

void write_file(const std::filesystem::path& p, const std::string& text, mode_t mode = 0600) {
  std::ofstream(p) << text;
  ::chmod(p.c_str(), mode);
}

mode_t mode_of(const std::filesystem::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

std::string valid_json(const Identity& id) {
  TempDir dir;
  auto path = dir.path() / "id.json";
  REQUIRE(id.save(path));
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_SUITE("identity") {
  TEST_CASE("save then load gives the same identity, with mode 0600 in a 0700 directory") {
    TempDir dir;
    auto id = Identity::generate(IdentityKind::session);
    auto path = dir.path() / "nested" / "identity.json";
    REQUIRE(id.save(path));
    CHECK(mode_of(path) == 0600);
    CHECK(mode_of(path.parent_path()) == 0700);
    auto loaded = Identity::load(path);
    REQUIRE(loaded);
    CHECK(loaded->public_key() == id.public_key());
    CHECK(loaded->secret_key() == id.secret_key());
    CHECK(loaded->kind() == IdentityKind::session);
    CHECK(loaded->created_at_ms() == id.created_at_ms());
    CHECK(loaded->box_public_key() == id.box_public_key());
  }

  TEST_CASE("save refuses to replace an existing file unless asked, and leaves no temp files") {
    TempDir dir;
    auto path = dir.path() / "identity.json";
    auto first = Identity::generate(IdentityKind::member);
    auto second = Identity::generate(IdentityKind::member);
    REQUIRE(first.save(path));
    auto again = second.save(path);
    CHECK(again.error() == Errc::invalid_value);
    CHECK(Identity::load(path)->public_key() == first.public_key());  // untouched
    REQUIRE(second.save(path, /*overwrite=*/true));
    CHECK(Identity::load(path)->public_key() == second.public_key());
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 1);
  }

  TEST_CASE("load refuses files readable by group or others") {
    TempDir dir;
    auto path = dir.path() / "identity.json";
    REQUIRE(Identity::generate(IdentityKind::member).save(path));
    ::chmod(path.c_str(), 0644);
    CHECK(Identity::load(path).error() == Errc::insecure_permissions);
    ::chmod(path.c_str(), 0640);
    CHECK(Identity::load(path).error() == Errc::insecure_permissions);
  }

  TEST_CASE("load reports missing, oversized and non-regular files") {
    TempDir dir;
    CHECK(Identity::load(dir.path() / "absent.json").error() == Errc::not_found);
    write_file(dir.path() / "big.json", std::string(Identity::max_file_bytes + 1, ' '));
    CHECK(Identity::load(dir.path() / "big.json").error() == Errc::payload_too_large);
    std::filesystem::create_directory(dir.path() / "dir");
    ::chmod((dir.path() / "dir").c_str(), 0700);
    CHECK(Identity::load(dir.path() / "dir").error() == Errc::io_error);
  }

  TEST_CASE("hostile identity documents each get their specific error") {
    const auto good = valid_json(Identity::generate(IdentityKind::member));
    auto replace = [&](const std::string& from, const std::string& to) {
      auto text = good;
      auto at = text.find(from);
      REQUIRE(at != std::string::npos);
      return text.replace(at, from.size(), to);
    };
    const auto other = Identity::generate(IdentityKind::member);
    struct Case {
      std::string name, text;
      Errc expected;
    };
    const Case cases[] = {
        {"not json", "{", Errc::malformed},
        {"array", "[]", Errc::malformed},
        {"truncated", good.substr(0, good.size() / 2), Errc::malformed},
        {"missing version", replace("\"version\":1,", ""), Errc::missing_field},
        {"string version", replace("\"version\":1", "\"version\":\"1\""), Errc::wrong_type},
        {"future version", replace("\"version\":1", "\"version\":2"), Errc::invalid_value},
        {"unknown kind", replace("\"member\"", "\"admin\""), Errc::invalid_value},
        {"kind not a string", replace("\"member\"", "7"), Errc::wrong_type},
        {"missing secret", replace("\"secretKey\"", "\"secretKeyX\""), Errc::missing_field},
        {"short public key", replace("\"publicKey\":\"", "\"publicKey\":\"0"), Errc::malformed},
        {"someone else's public key",
         replace(good.substr(good.find("publicKey") + 12, 64), other.public_key().hex()), Errc::invalid_key},
        {"createdAt not a number", replace("\"createdAt\":", "\"createdAt\":\"x\",\"_\":"), Errc::wrong_type},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      auto parsed = Identity::parse(c.text);
      REQUIRE_FALSE(parsed);
      CHECK(parsed.error().errc() == c.expected);
      CHECK(parsed.error().message.find(to_hex(other.secret_key().bytes())) == std::string::npos);
    }
  }

  TEST_CASE("identity kinds have stable names") {
    CHECK(to_string(IdentityKind::service) == "service");
    CHECK(parse_identity_kind("session") == IdentityKind::session);
    CHECK_FALSE(parse_identity_kind("Member"));
  }

  TEST_CASE("clone duplicates the keys - sign uses them") {
    auto id = Identity::generate(IdentityKind::member);
    auto copy = id.clone();
    CHECK(copy.public_key() == id.public_key());
    CHECK(verify(id.public_key(), as_bytes("x"), copy.sign("x")));
  }
}
