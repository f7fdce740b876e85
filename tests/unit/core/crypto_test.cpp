// SPDX-License-Identifier: MIT
#include <claudemesh/crypto.hpp>

#include "test_support.hpp"

#include <doctest/doctest.h>

using namespace claudemesh;

namespace {

std::string text_of(const Bytes& b) { return std::string(b.begin(), b.end()); }

// Re-encode a base64 field after flipping one bit of its decoded bytes.
std::string tamper(const std::string& b64, std::size_t index) {
  auto bytes = *from_base64(b64);
  bytes[index % bytes.size()] ^= 0x01;
  return to_base64(bytes);
}

}  // namespace

TEST_SUITE("dm crypto") {
  const auto alice = Identity::generate(IdentityKind::member);
  const auto bob = Identity::generate(IdentityKind::member);
  const auto eve = Identity::generate(IdentityKind::member);

  TEST_CASE("a DM sealed by Alice for Bob opens for Bob, both uncached and cached") {
    auto sealed = seal_dm(alice, bob.public_key(), as_bytes("hello bob"));
    REQUIRE(sealed);
    CHECK(from_base64(sealed->nonce)->size() == 24);
    CHECK(from_base64(sealed->ciphertext)->size() == 9 + 16);
    CHECK(text_of(*open_dm(bob, alice.public_key(), *sealed)) == "hello bob");
    BoxKeyCache cache;
    CHECK(text_of(*cache.open(bob, alice.public_key(), *sealed)) == "hello bob");
  }

  TEST_CASE("every message gets a fresh nonce") {
    auto a = seal_dm(alice, bob.public_key(), as_bytes("same"));
    auto b = seal_dm(alice, bob.public_key(), as_bytes("same"));
    CHECK(a->nonce != b->nonce);
    CHECK(a->ciphertext != b->ciphertext);
  }

  TEST_CASE("the wrong recipient, the wrong claimed sender, or tampering is decrypt_failed") {
    auto sealed = *seal_dm(alice, bob.public_key(), as_bytes("secret"));
    CHECK(open_dm(eve, alice.public_key(), sealed).error() == Errc::decrypt_failed);
    CHECK(open_dm(bob, eve.public_key(), sealed).error() == Errc::decrypt_failed);  // sender is authenticated
    for (std::size_t i : {0u, 5u, 16u, 20u}) {
      auto bad = sealed;
      bad.ciphertext = tamper(bad.ciphertext, i);
      CHECK(open_dm(bob, alice.public_key(), bad).error() == Errc::decrypt_failed);
    }
    auto bad_nonce = sealed;
    bad_nonce.nonce = tamper(bad_nonce.nonce, 3);
    CHECK(open_dm(bob, alice.public_key(), bad_nonce).error() == Errc::decrypt_failed);
  }

  TEST_CASE("malformed sealed messages are decrypt_failed, never a crash") {
    const auto good = *seal_dm(alice, bob.public_key(), as_bytes("x"));
    const SealedMessage cases[] = {
        {"not base64!", good.ciphertext},
        {to_base64(Bytes(23, 0)), good.ciphertext},  // short nonce
        {to_base64(Bytes(25, 0)), good.ciphertext},  // long nonce
        {good.nonce, "%%%"},
        {good.nonce, to_base64(Bytes(15, 0))},  // shorter than the MAC
        {good.nonce, ""},
        {"", ""},
    };
    for (const auto& c : cases) {
      CAPTURE(c.nonce);
      CHECK(open_dm(bob, alice.public_key(), c).error() == Errc::decrypt_failed);
    }
  }

  TEST_CASE("an empty body round-trips") {
    auto sealed = seal_dm(alice, bob.public_key(), {});
    CHECK(open_dm(bob, alice.public_key(), *sealed)->empty());
  }

  TEST_CASE("a recipient key that is not a curve point is invalid_key") {
    PublicKey bad{};
    bad.bytes[0] = 2;
    CHECK(seal_dm(alice, bad, as_bytes("x")).error() == Errc::invalid_key);
    BoxKeyCache cache;
    CHECK(cache.seal(alice, bad, as_bytes("x")).error() == Errc::invalid_key);
    CHECK(cache.size() == 0);  // failures are not cached
  }
}

TEST_SUITE("box key cache") {
  TEST_CASE("a steady conversation hits the cache after the first message") {
    auto alice = Identity::generate(IdentityKind::member);
    auto bob = Identity::generate(IdentityKind::member);
    BoxKeyCache cache;
    for (int i = 0; i < 10; ++i) REQUIRE(cache.seal(alice, bob.public_key(), as_bytes("m")));
    CHECK(cache.stats().misses == 1);
    CHECK(cache.stats().hits == 9);
    CHECK(cache.size() == 1);
  }

  TEST_CASE("the cache is bounded and evicts the least recently used pair") {
    auto me = Identity::generate(IdentityKind::member);
    std::vector<Identity> peers;
    for (int i = 0; i < 4; ++i) peers.push_back(Identity::generate(IdentityKind::member));
    BoxKeyCache cache(3);
    for (int i = 0; i < 3; ++i) REQUIRE(cache.seal(me, peers[static_cast<std::size_t>(i)].public_key(), as_bytes("m")));
    REQUIRE(cache.seal(me, peers[0].public_key(), as_bytes("m")));  // peer 0 is now most recent
    REQUIRE(cache.seal(me, peers[3].public_key(), as_bytes("m")));  // evicts peer 1
    CHECK(cache.size() == 3);
    CHECK(cache.stats().evictions == 1);
    const auto misses = cache.stats().misses;
    REQUIRE(cache.seal(me, peers[0].public_key(), as_bytes("m")));
    CHECK(cache.stats().misses == misses);  // still cached
    REQUIRE(cache.seal(me, peers[1].public_key(), as_bytes("m")));
    CHECK(cache.stats().misses == misses + 1);  // was evicted
  }

  TEST_CASE("entries are keyed by our key too: two local identities never share a shared key") {
    auto a = Identity::generate(IdentityKind::member);
    auto b = Identity::generate(IdentityKind::member);
    auto peer = Identity::generate(IdentityKind::member);
    BoxKeyCache cache;
    auto from_a = *cache.seal(a, peer.public_key(), as_bytes("from a"));
    auto from_b = *cache.seal(b, peer.public_key(), as_bytes("from b"));
    CHECK(cache.size() == 2);
    CHECK(text_of(*cache.open(peer, a.public_key(), from_a)) == "from a");
    CHECK(cache.open(peer, a.public_key(), from_b).error() == Errc::decrypt_failed);
    cache.clear();
    CHECK(cache.size() == 0);
  }
}

TEST_SUITE("topic crypto") {
  TEST_CASE("a topic body round-trips under its key and fails under another") {
    auto key = generate_symmetric_key();
    auto other = generate_symmetric_key();
    auto sealed = seal_with_key(key, as_bytes("to the topic"));
    CHECK(text_of(*open_with_key(key, sealed)) == "to the topic");
    CHECK(open_with_key(other, sealed).error() == Errc::decrypt_failed);
    auto tampered = sealed;
    tampered.ciphertext = tamper(tampered.ciphertext, 17);
    CHECK(open_with_key(key, tampered).error() == Errc::decrypt_failed);
    CHECK(open_with_key(key, {"", ""}).error() == Errc::decrypt_failed);
  }

  TEST_CASE("a topic key sealed to a member opens only for that member") {
    auto member = Identity::generate(IdentityKind::member);
    auto outsider = Identity::generate(IdentityKind::member);
    auto key = generate_symmetric_key();
    auto sealed = seal_key_for(member.public_key(), key);
    REQUIRE(sealed);
    CHECK(from_base64(*sealed)->size() == 80);
    auto opened = open_sealed_key(member, *sealed);
    REQUIRE(opened);
    CHECK(*opened == key);
    CHECK(open_sealed_key(outsider, *sealed).error() == Errc::decrypt_failed);
    CHECK(open_sealed_key(member, tamper(*sealed, 40)).error() == Errc::decrypt_failed);
    CHECK(open_sealed_key(member, to_base64(Bytes(79, 1))).error() == Errc::decrypt_failed);
    CHECK(open_sealed_key(member, "***").error() == Errc::decrypt_failed);
  }

  TEST_CASE("sealing to an invalid member key is invalid_key") {
    PublicKey bad{};
    bad.bytes[0] = 2;
    CHECK(seal_key_for(bad, generate_symmetric_key()).error() == Errc::invalid_key);
  }
}
