// SPDX-License-Identifier: MIT
#include <claudemesh/keys.hpp>

#include "test_support.hpp"

#include <doctest/doctest.h>

using namespace claudemesh;

TEST_SUITE("keys") {
  TEST_CASE("keys are 64 hex, secret keys 128 hex in libsodium's layout") {
    auto pair = SigningKeyPair::generate();
    CHECK(pair.public_key.hex().size() == 64);
    const auto secret_hex = to_hex(pair.secret_key.bytes());
    CHECK(secret_hex.size() == 128);
    CHECK(secret_hex.substr(64) == pair.public_key.hex());  // seed ‖ public key
    auto back = SigningKeyPair::from_secret_hex(secret_hex);
    REQUIRE(back);
    CHECK(back->public_key == pair.public_key);
  }

  TEST_CASE("a secret key whose halves disagree is invalid_key") {
    auto a = SigningKeyPair::generate();
    auto b = SigningKeyPair::generate();
    auto spliced = to_hex(a.secret_key.bytes()).substr(0, 64) + b.public_key.hex();
    CHECK(SigningKeyPair::from_secret_hex(spliced).error() == Errc::invalid_key);
    CHECK(SigningKeyPair::from_secret_hex("00").error() == Errc::malformed);
  }

  TEST_CASE("the injected RNG makes generation deterministic") {
    auto a = SigningKeyPair::generate(claudemesh::test::counting_random(5));
    auto b = SigningKeyPair::generate(claudemesh::test::counting_random(5));
    auto c = SigningKeyPair::generate(claudemesh::test::counting_random(6));
    CHECK(a.public_key == b.public_key);
    CHECK(a.public_key != c.public_key);
  }

  TEST_CASE("sign and verify - any change to message, key or signature fails") {
    auto pair = SigningKeyPair::generate();
    auto other = SigningKeyPair::generate();
    auto sig = sign(pair.secret_key, as_bytes("message"));
    CHECK(verify(pair.public_key, as_bytes("message"), sig));
    CHECK_FALSE(verify(pair.public_key, as_bytes("messagE"), sig));
    CHECK_FALSE(verify(other.public_key, as_bytes("message"), sig));
    sig.bytes[0] ^= 1;
    CHECK_FALSE(verify(pair.public_key, as_bytes("message"), sig));
  }

  TEST_CASE("public key and signature hex parsing") {
    CHECK(PublicKey::from_hex(std::string(64, 'a')));
    CHECK(PublicKey::from_hex(std::string(63, 'a')).error() == Errc::malformed);
    CHECK(PublicKey::from_hex(std::string(64, 'A')).error() == Errc::malformed);
    CHECK(Signature::from_hex(std::string(128, '0')));
    CHECK(Signature::from_hex(std::string(126, '0')).error() == Errc::malformed);
  }

  TEST_CASE("x25519 conversion rejects a key that is not a curve point") {
    // y = 2 has no x on the curve; libsodium refuses to convert it.
    PublicKey bad{};
    bad.bytes[0] = 2;
    CHECK(to_x25519(bad).error() == Errc::invalid_key);
  }

  TEST_CASE("fingerprints are short, stable and differ between keys") {
    auto a = SigningKeyPair::generate(claudemesh::test::counting_random(1));
    auto b = SigningKeyPair::generate(claudemesh::test::counting_random(2));
    CHECK(a.public_key.fingerprint().size() == 19);
    CHECK(a.public_key.fingerprint()[4] == '-');
    CHECK(a.public_key.fingerprint() == a.public_key.fingerprint());
    CHECK(a.public_key.fingerprint() != b.public_key.fingerprint());
  }
}
