// SPDX-License-Identifier: MIT
// Known answers generated independently with PyNaCl (tests/vectors/generate_vectors.py), checked in both
// directions: what we produce equals the vector, and what the vector holds verifies/decrypts with us.
#include <claudemesh/crypto.hpp>
#include <claudemesh/signatures.hpp>

#include "test_support.hpp"

#include <doctest/doctest.h>

using namespace claudemesh;
using claudemesh::test::core_vectors;
using claudemesh::test::vector_identity;

namespace {
std::string str(const nlohmann::json& j) { return j.get<std::string>(); }
}  // namespace

TEST_SUITE("known-answer vectors") {
  TEST_CASE("key derivation matches libsodium's ed25519 and x25519 conversions") {
    for (const auto* name : {"member", "session", "owner"}) {
      const auto& v = core_vectors()["identities"][name];
      auto seed = from_hex_exact<32>(str(v["seed"]));
      REQUIRE(seed);
      auto pair = SigningKeyPair::from_seed(*seed);
      CHECK(pair.public_key.hex() == str(v["publicKey"]));
      CHECK(to_hex(pair.secret_key.bytes()) == str(v["secretKey"]));
      auto id = Identity::from_key_pair(IdentityKind::member, std::move(pair));
      REQUIRE(id);
      CHECK(to_hex(id->box_public_key().bytes) == str(v["x25519PublicKey"]));
      CHECK(to_hex(id->box_secret_key().bytes()) == str(v["x25519SecretKey"]));
    }
  }

  TEST_CASE("member hello: canonical string, signature, verification") {
    const auto& v = core_vectors()["memberHello"];
    const auto member = vector_identity("member");
    const std::int64_t ts = v["timestamp"];
    CHECK(member_hello_string(str(v["meshId"]), str(v["memberId"]), str(v["pubkey"]), ts) == str(v["canonical"]));
    auto proof = sign_member_hello(member, str(v["meshId"]), str(v["memberId"]), ts);
    CHECK(proof.signature == str(v["signature"]));
    MemberHelloProof theirs{str(v["meshId"]), str(v["memberId"]), str(v["pubkey"]), ts, str(v["signature"])};
    CHECK(verify_member_hello(theirs, ts + 1000));
  }

  TEST_CASE("session attestation v1 and v2: canonical strings, signatures, verification") {
    const auto member = vector_identity("member");
    const auto session_key = *PublicKey::from_hex(str(core_vectors()["identities"]["session"]["publicKey"]));
    {
      const auto& v = core_vectors()["sessionAttestation"];
      const std::int64_t exp = v["expiresAt"];
      CHECK(session_attestation_string(str(v["parent"]), str(v["session"]), exp) == str(v["canonical"]));
      auto att = attest_session(member, session_key, exp);
      REQUIRE(att);
      CHECK(att->signature == str(v["signature"]));
      SessionAttestation theirs{str(v["parent"]), str(v["session"]), exp, str(v["signature"]), std::nullopt};
      CHECK(verify_session_attestation(theirs, exp - 3600'000));
    }
    {
      const auto& v = core_vectors()["sessionAttestationV2"];
      const std::int64_t exp = v["expiresAt"];
      auto caps = v["capabilities"].get<std::vector<std::string>>();
      CHECK(session_attestation_v2_string(str(v["parent"]), str(v["session"]), exp, caps) == str(v["canonical"]));
      auto att = attest_session(member, session_key, exp, caps);
      REQUIRE(att);
      CHECK(att->signature == str(v["signature"]));
      SessionAttestation theirs{str(v["parent"]), str(v["session"]), exp, str(v["signature"]), caps};
      CHECK(verify_session_attestation(theirs, exp - 3600'000));
    }
  }

  TEST_CASE("session hello: canonical string, signature, verification") {
    const auto& v = core_vectors()["sessionHello"];
    const auto session = vector_identity("session", IdentityKind::session);
    const std::int64_t ts = v["timestamp"];
    CHECK(session_hello_string(str(v["meshId"]), str(v["parent"]), str(v["session"]), ts) == str(v["canonical"]));
    auto proof = sign_session_hello(session, str(v["meshId"]), *PublicKey::from_hex(str(v["parent"])), ts);
    CHECK(proof.signature == str(v["signature"]));
    SessionHelloProof theirs{str(v["meshId"]), str(v["parent"]), str(v["session"]), ts, str(v["signature"])};
    CHECK(verify_session_hello(theirs, ts));
  }

  TEST_CASE("invite v2: canonical string, signature, verification") {
    const auto& v = core_vectors()["inviteV2"];
    const auto owner = vector_identity("owner");
    const std::int64_t exp = v["expiresAt"];
    CHECK(invite_v2_string(str(v["meshId"]), str(v["inviteId"]), exp, str(v["role"]), str(v["owner"])) ==
          str(v["canonical"]));
    auto invite = sign_invite_v2(owner, str(v["meshId"]), str(v["inviteId"]), exp, str(v["role"]));
    CHECK(invite.signature == str(v["signature"]));
    InviteV2 theirs{str(v["meshId"]), str(v["inviteId"]), exp, str(v["role"]), str(v["owner"]), str(v["signature"])};
    CHECK(verify_invite_v2(theirs, (exp - 60) * 1000));
  }

  TEST_CASE("crypto_box DM: our seal equals PyNaCl's box, and we open PyNaCl's box") {
    const auto& v = core_vectors()["dmBox"];
    const auto sender = vector_identity("member");
    const auto recipient = vector_identity("session", IdentityKind::session);
    auto plaintext = *from_base64(str(v["plaintextBase64"]));
    auto nonce = *from_hex(str(v["nonceHex"]));
    auto sealed = seal_dm(sender, recipient.public_key(), plaintext, claudemesh::test::fixed_random(nonce));
    REQUIRE(sealed);
    CHECK(sealed->nonce == str(v["nonce"]));
    CHECK(sealed->ciphertext == str(v["ciphertext"]));

    SealedMessage theirs{str(v["nonce"]), str(v["ciphertext"])};
    auto opened = open_dm(recipient, sender.public_key(), theirs);
    REQUIRE(opened);
    CHECK(*opened == plaintext);
    BoxKeyCache cache;
    auto cached = cache.open(recipient, sender.public_key(), theirs);
    REQUIRE(cached);
    CHECK(*cached == plaintext);
  }

  TEST_CASE("crypto_secretbox topic body: our seal equals PyNaCl's, and we open PyNaCl's") {
    const auto& v = core_vectors()["secretBox"];
    auto key_bytes = *from_hex_exact<32>(str(v["keyHex"]));
    SymmetricKey key{key_bytes};
    auto plaintext = *from_base64(str(v["plaintextBase64"]));
    auto nonce = *from_base64(str(v["nonce"]));
    auto sealed = seal_with_key(key, plaintext, claudemesh::test::fixed_random(nonce));
    CHECK(sealed.ciphertext == str(v["ciphertext"]));
    auto opened = open_with_key(key, SealedMessage{str(v["nonce"]), str(v["ciphertext"])});
    REQUIRE(opened);
    CHECK(*opened == plaintext);
  }
}
