// SPDX-License-Identifier: MIT
// <home>/config.json: the meshes a user joined. What `join` writes the daemon reads back; a broken or newer
// file is refused with a message that names it; slugs are valid and unique; keys are private.
#include <claudemesh/mesh_config.hpp>

#include <doctest/doctest.h>

#include "support/files.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

using namespace claudemesh;
using claudemesh::testing::mode_of;
using claudemesh::testing::read_all;
using claudemesh::testing::TempDir;
using claudemesh::testing::write_all;

namespace {

Membership membership(std::string mesh_id, std::string mesh_name) {
  return Membership{.mesh_id = std::move(mesh_id),
                    .mesh_name = std::move(mesh_name),
                    .member_id = "member-1",
                    .member_pubkey = "",
                    .display_name = "alice",
                    .role = "owner",
                    .http_base = "http://127.0.0.1:7900",
                    .ws_url = "ws://127.0.0.1:7900/ws"};
}

std::string valid_entry(const std::string& slug, const std::string& mesh_id) {
  return R"({"slug":")" + slug + R"(","mesh_id":")" + mesh_id +
         R"(","mesh_name":"n","member_id":"m","display_name":"d","role":"member","http_base":"http://h",)"
         R"("broker_url":"ws://h/ws","identity_file":"meshes/)" + slug + R"(/identity.json"})";
}

}  // namespace

TEST_CASE("mesh config: a home without config.json has no meshes") {
  TempDir home;
  auto meshes = load_joined_meshes(home.path());
  REQUIRE(meshes);
  CHECK(meshes->empty());
  auto missing_home = load_joined_meshes(home.path() / "does-not-exist");
  REQUIRE(missing_home);
  CHECK(missing_home->empty());
}

TEST_CASE("mesh config: what add_joined_mesh writes, load_joined_meshes reads back, with private modes") {
  TempDir tmp;
  const auto home = tmp.path() / "home";
  const auto member = Identity::generate(IdentityKind::member);
  auto added = add_joined_mesh(home, membership("mesh-A", "Team Builds"), member, "");
  REQUIRE(added);
  CHECK(added->slug == "team-builds");
  CHECK(added->identity_file == home / "meshes" / "team-builds" / "identity.json");

  CHECK(mode_of(home) == 0700);
  CHECK(mode_of(home / "config.json") == 0600);
  CHECK(mode_of(home / "meshes" / "team-builds") == 0700);
  CHECK(mode_of(added->identity_file) == 0600);

  // identity_file is stored relative to home
  const auto doc = nlohmann::json::parse(read_all(home / "config.json"));
  CHECK(doc["version"] == 1);
  CHECK(doc["meshes"][0]["identity_file"] == "meshes/team-builds/identity.json");
  CHECK(doc["meshes"][0]["broker_url"] == "ws://127.0.0.1:7900/ws");

  auto meshes = load_joined_meshes(home);
  REQUIRE(meshes);
  REQUIRE(meshes->size() == 1);
  const auto& mesh = meshes->front();
  CHECK(mesh.slug == "team-builds");
  CHECK(mesh.mesh_id == "mesh-A");
  CHECK(mesh.mesh_name == "Team Builds");
  CHECK(mesh.member_id == "member-1");
  CHECK(mesh.display_name == "alice");
  CHECK(mesh.role == "owner");
  CHECK(mesh.http_base == "http://127.0.0.1:7900");
  CHECK(mesh.identity_file == home / "meshes" / "team-builds" / "identity.json");
  auto key = load_member_identity(mesh);
  REQUIRE(key);
  CHECK(key->public_key().hex() == member.public_key().hex());
}

TEST_CASE("mesh config: joining the same mesh twice is already_exists and changes nothing") {
  TempDir home;
  const auto member = Identity::generate(IdentityKind::member);
  REQUIRE(add_joined_mesh(home.path(), membership("mesh-A", "a"), member, ""));
  const std::string before = read_all(home.path() / "config.json");
  auto again = add_joined_mesh(home.path(), membership("mesh-A", "other name"), Identity::generate(IdentityKind::member), "");
  REQUIRE_FALSE(again);
  CHECK(again.error() == Errc::already_exists);
  CHECK(read_all(home.path() / "config.json") == before);
}

TEST_CASE("mesh config: slugs come from the mesh name, are valid, and are made unique") {
  CHECK(slug_from_name("Team Builds") == "team-builds");
  CHECK(slug_from_name("  --Hello__World!!  ") == "hello-world");
  CHECK(slug_from_name("ÄÖÜ") == "mesh");
  CHECK(slug_from_name("x") == "mesh");
  CHECK(slug_from_name("") == "mesh");
  CHECK(slug_from_name(std::string(50, 'a')) == std::string(32, 'a'));
  CHECK(is_valid_mesh_slug(slug_from_name("a-b c_d.e/f")));

  CHECK(is_valid_mesh_slug("ab"));
  CHECK(is_valid_mesh_slug("0-team"));
  CHECK(is_valid_mesh_slug(std::string(32, 'z')));
  CHECK_FALSE(is_valid_mesh_slug("a"));
  CHECK_FALSE(is_valid_mesh_slug(std::string(33, 'z')));
  CHECK_FALSE(is_valid_mesh_slug("-ab"));
  CHECK_FALSE(is_valid_mesh_slug("Ab"));
  CHECK_FALSE(is_valid_mesh_slug("a_b"));
  CHECK_FALSE(is_valid_mesh_slug("a b"));
  CHECK_FALSE(is_valid_mesh_slug("../x"));

  TempDir home;
  std::vector<std::string> slugs;
  for (int i = 0; i < 3; ++i) {
    auto added = add_joined_mesh(home.path(), membership("mesh-" + std::to_string(i), "Builds"),
                                 Identity::generate(IdentityKind::member), "");
    REQUIRE(added);
    slugs.push_back(added->slug);
  }
  CHECK(slugs == std::vector<std::string>{"builds", "builds-2", "builds-3"});

  // A long name: the suffix still fits in 32 characters.
  const std::string long_name(40, 'q');
  REQUIRE(add_joined_mesh(home.path(), membership("long-1", long_name), Identity::generate(IdentityKind::member), ""));
  auto second = add_joined_mesh(home.path(), membership("long-2", long_name), Identity::generate(IdentityKind::member), "");
  REQUIRE(second);
  CHECK(second->slug == std::string(30, 'q') + "-2");

  // An explicit slug is checked, not rewritten.
  auto bad = add_joined_mesh(home.path(), membership("mesh-x", "x"), Identity::generate(IdentityKind::member), "no_good");
  REQUIRE_FALSE(bad);
  CHECK(bad.error() == Errc::invalid_value);
  auto taken = add_joined_mesh(home.path(), membership("mesh-y", "y"), Identity::generate(IdentityKind::member), "builds");
  REQUIRE_FALSE(taken);
  CHECK(taken.error() == Errc::already_exists);
  auto upper = add_joined_mesh(home.path(), membership("mesh-z", "z"), Identity::generate(IdentityKind::member), "Ops");
  REQUIRE(upper);
  CHECK(upper->slug == "ops");

  auto all = load_joined_meshes(home.path());
  REQUIRE(all);
  CHECK(all->size() == 6);
}

TEST_CASE("mesh config: a key left in meshes/<slug> is never overwritten - the slug moves on") {
  TempDir home;
  const auto stray = home.path() / "meshes" / "ops" / "identity.json";
  REQUIRE(Identity::generate(IdentityKind::member).save(stray));
  const std::string before = read_all(stray);
  auto added = add_joined_mesh(home.path(), membership("mesh-1", "ops"), Identity::generate(IdentityKind::member), "");
  REQUIRE(added);
  CHECK(added->slug == "ops-2");
  CHECK(read_all(stray) == before);
}

TEST_CASE("mesh config: malformed files are refused with a message naming the file") {
  struct Case {
    const char* what;
    std::string text;
    Errc expected;
  };
  const std::vector<Case> cases = {
      {"empty file", "", Errc::malformed},
      {"not JSON", "{version: 1", Errc::malformed},
      {"truncated", R"({"version":1,"meshes":[)", Errc::malformed},
      {"an array", "[]", Errc::malformed},
      {"a string", R"("config")", Errc::malformed},
      {"no version", R"({"meshes":[]})", Errc::malformed},
      {"version as string", R"({"version":"1","meshes":[]})", Errc::malformed},
      {"version 0", R"({"version":0,"meshes":[]})", Errc::malformed},
      {"a newer version", R"({"version":2,"meshes":[]})", Errc::invalid_value},
      {"meshes not an array", R"({"version":1,"meshes":{}})", Errc::malformed},
      {"entry not an object", R"({"version":1,"meshes":[42]})", Errc::malformed},
      {"entry without slug", R"({"version":1,"meshes":[{"mesh_id":"a","member_id":"m","broker_url":"ws://h/ws","identity_file":"x"}]})",
       Errc::malformed},
      {"entry with empty mesh_id", R"({"version":1,"meshes":[{"slug":"ab","mesh_id":"","member_id":"m","broker_url":"ws://h/ws","identity_file":"x"}]})",
       Errc::malformed},
      {"entry without identity_file", R"({"version":1,"meshes":[{"slug":"ab","mesh_id":"a","member_id":"m","broker_url":"ws://h/ws"}]})",
       Errc::malformed},
      {"a number where a string belongs", R"({"version":1,"meshes":[{"slug":"ab","mesh_id":7,"member_id":"m","broker_url":"ws://h/ws","identity_file":"x"}]})",
       Errc::malformed},
      {"optional field of the wrong type", R"({"version":1,"meshes":[{"slug":"ab","mesh_id":"a","member_id":"m","broker_url":"ws://h/ws","identity_file":"x","role":null}]})",
       Errc::malformed},
      {"invalid slug", R"({"version":1,"meshes":[{"slug":"../etc","mesh_id":"a","member_id":"m","broker_url":"ws://h/ws","identity_file":"x"}]})",
       Errc::malformed},
      {"duplicate slug", R"({"version":1,"meshes":[)" + valid_entry("ab", "one") + "," + valid_entry("ab", "two") + "]}",
       Errc::malformed},
      {"duplicate mesh id", R"({"version":1,"meshes":[)" + valid_entry("ab", "one") + "," + valid_entry("cd", "one") + "]}",
       Errc::malformed},
      {"oversized", R"({"version":1,"pad":")" + std::string(mesh_config_max_bytes, 'x') + R"("})", Errc::payload_too_large},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    TempDir home;
    write_all(home.path() / "config.json", c.text);
    auto loaded = load_joined_meshes(home.path());
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error() == c.expected);
    CHECK(loaded.error().message.find((home.path() / "config.json").string()) != std::string::npos);
    // add_joined_mesh refuses to rewrite a file it cannot read, and leaves it as it was
    auto added = add_joined_mesh(home.path(), membership("mesh-new", "new"), Identity::generate(IdentityKind::member), "");
    REQUIRE_FALSE(added);
    CHECK(read_all(home.path() / "config.json") == c.text);
  }
}

TEST_CASE("mesh config: a valid hand-written file with extra members and no optional fields loads") {
  TempDir home;
  write_all(home.path() / "config.json",
            R"({"version":1,"future":true,"meshes":[{"slug":"ab","mesh_id":"a","member_id":"m","broker_url":"ws://h/ws",)"
            R"("identity_file":"/abs/key.json","extra":1}]})");
  auto loaded = load_joined_meshes(home.path());
  REQUIRE(loaded);
  REQUIRE(loaded->size() == 1);
  CHECK(loaded->front().identity_file == std::filesystem::path("/abs/key.json"));
  CHECK(loaded->front().role.empty());
}

TEST_CASE("mesh config: select_mesh picks the only mesh, or asks for --mesh, or names the joined slugs") {
  const JoinedMesh a{.slug = "alpha", .mesh_id = "1"};
  const JoinedMesh b{.slug = "beta", .mesh_id = "2"};

  auto none = select_mesh({}, "");
  REQUIRE_FALSE(none);
  CHECK(none.error() == Errc::not_found);
  CHECK(none.error().message == "no mesh joined; run `claudemesh join <invite-url>` first");

  auto only = select_mesh({a}, "");
  REQUIRE(only);
  CHECK(only->slug == "alpha");

  auto several = select_mesh({a, b}, "");
  REQUIRE_FALSE(several);
  CHECK(several.error() == Errc::invalid_value);
  CHECK(several.error().message.find("alpha, beta") != std::string::npos);
  CHECK(several.error().message.find("--mesh") != std::string::npos);

  auto named = select_mesh({a, b}, "beta");
  REQUIRE(named);
  CHECK(named->mesh_id == "2");

  auto unknown = select_mesh({a, b}, "gamma");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error() == Errc::not_found);
  CHECK(unknown.error().message.find("gamma") != std::string::npos);
  CHECK(unknown.error().message.find("alpha, beta") != std::string::npos);

  auto unknown_of_none = select_mesh({}, "gamma");
  REQUIRE_FALSE(unknown_of_none);
  CHECK(unknown_of_none.error() == Errc::not_found);
}
