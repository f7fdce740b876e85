// SPDX-License-Identifier: MIT
// Public API only (no src/ includes): what an embedding program sees. In the release preset this links
// the shared library, so it also proves that everything used here is exported.
#include <claudemesh/crypto.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/password.hpp>
#include <claudemesh/signatures.hpp>
#include <claudemesh/version.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

using namespace claudemesh;

namespace {

std::filesystem::path scratch_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "claudemesh-api-XXXXXX").string();
  return ::mkdtemp(tmpl.data());
}

}  // namespace

TEST_SUITE("api: identity") {
  TEST_CASE("the version string matches the version macros") {
    CHECK(std::string(version_string) == std::to_string(CLAUDEMESH_VERSION_MAJOR) + "." +
                                             std::to_string(CLAUDEMESH_VERSION_MINOR) + "." +
                                             std::to_string(CLAUDEMESH_VERSION_PATCH));
  }

  TEST_CASE("an embedding program creates, saves, reloads and uses an identity") {
    const auto dir = scratch_dir();
    auto me = Identity::generate(IdentityKind::member);
    REQUIRE(me.save(dir / "me.json"));
    auto again = Identity::load(dir / "me.json");
    std::filesystem::remove_all(dir);
    REQUIRE(again);
    CHECK(again->public_key() == me.public_key());
    auto hello = sign_member_hello(*again, "mesh", "member", now_ms());
    CHECK(verify_member_hello(hello, now_ms()));
  }

  TEST_CASE("errors are values with codes programs can compare") {
    auto missing = Identity::load("/nonexistent/claudemesh/identity.json");
    REQUIRE_FALSE(missing);
    CHECK(missing.error() == Errc::not_found);
    CHECK(missing.error().wire_code() == "not_found");
    CHECK(missing.error().code.category().name() == std::string("claudemesh"));
  }

  TEST_CASE("a DM through the exported cache, and a topic key sealed to a member") {
    auto alice = Identity::generate(IdentityKind::member);
    auto bob = Identity::generate(IdentityKind::session);
    BoxKeyCache cache(8);
    auto sealed = cache.seal(alice, bob.public_key(), as_bytes("ping"));
    REQUIRE(sealed);
    auto opened = cache.open(bob, alice.public_key(), *sealed);
    REQUIRE(opened);
    CHECK(std::string(opened->begin(), opened->end()) == "ping");

    auto topic_key = generate_symmetric_key();
    auto for_bob = seal_key_for(bob.public_key(), topic_key);
    REQUIRE(for_bob);
    auto bobs_copy = open_sealed_key(bob, *for_bob);
    REQUIRE(bobs_copy);
    auto post = seal_with_key(topic_key, as_bytes("to all"));
    CHECK(open_with_key(*bobs_copy, post));
  }

  TEST_CASE("API keys are stored as argon2id hashes") {
    auto hash = hash_secret("cm_example", minimum_password_hash_cost);
    REQUIRE(hash);
    CHECK(verify_secret(*hash, "cm_example"));
    CHECK_FALSE(verify_secret(*hash, "cm_wrong"));
  }
}
