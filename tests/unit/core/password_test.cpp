// SPDX-License-Identifier: MIT
#include <claudemesh/password.hpp>

#include <doctest/doctest.h>

using namespace claudemesh;

TEST_SUITE("argon2id") {
  const PasswordHashCost cheap = minimum_password_hash_cost;

  TEST_CASE("a hash verifies its secret and nothing else") {
    auto hash = hash_secret("cm_correct-horse", cheap);
    REQUIRE(hash);
    CHECK(hash->starts_with("$argon2id$"));
    CHECK(verify_secret(*hash, "cm_correct-horse"));
    CHECK_FALSE(verify_secret(*hash, "cm_correct-horsE"));
    CHECK_FALSE(verify_secret(*hash, ""));
  }

  TEST_CASE("two hashes of the same secret differ (random salt)") {
    CHECK(*hash_secret("s", cheap) != *hash_secret("s", cheap));
  }

  TEST_CASE("malformed or truncated hashes never verify") {
    auto hash = *hash_secret("s", cheap);
    CHECK_FALSE(verify_secret(hash.substr(0, hash.size() - 4), "s"));
    CHECK_FALSE(verify_secret("", "s"));
    CHECK_FALSE(verify_secret("$argon2id$garbage", "s"));
    CHECK_FALSE(verify_secret(std::string(1000, 'a'), "s"));
    CHECK_FALSE(verify_secret(std::string("$argon2id\0$", 11), "s"));
  }

  TEST_CASE("a cost outside libsodium's limits is invalid_value") {
    CHECK(hash_secret("s", {.passes = 0, .memory_bytes = 8192}).error() == Errc::invalid_value);
    CHECK(hash_secret("s", {.passes = 1, .memory_bytes = 1024}).error() == Errc::invalid_value);
  }

  TEST_CASE("needs_rehash notices a cost change") {
    auto hash = *hash_secret("s", cheap);
    CHECK_FALSE(needs_rehash(hash, cheap));
    CHECK(needs_rehash(hash, {.passes = 3, .memory_bytes = 8192}));
    CHECK(needs_rehash("nonsense", cheap));
  }
}
