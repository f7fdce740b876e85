// SPDX-License-Identifier: MIT
// The whole send path through the public API only: resolve a target typed by a human, encrypt, wrap in
// an envelope with a fingerprint, put it on the wire, and take it apart again on the receiving side.
#include <claudemesh/canonical_json.hpp>
#include <claudemesh/crypto.hpp>
#include <claudemesh/envelope.hpp>
#include <claudemesh/fingerprint.hpp>
#include <claudemesh/ids.hpp>
#include <claudemesh/target.hpp>

#include <doctest/doctest.h>

#include <vector>

using namespace claudemesh;

TEST_SUITE("api: messaging") {
  TEST_CASE("a DM typed as a display name arrives intact and authenticated") {
    auto alice = Identity::generate(IdentityKind::member);
    auto bob = Identity::generate(IdentityKind::member);
    auto carol = Identity::generate(IdentityKind::member);
    const std::vector<PeerRef> peers{{bob.public_key().hex(), "bob"}, {carol.public_key().hex(), "carol"}};

    // Sender: resolve, encrypt, envelope, fingerprint.
    auto target = parse_target("bob");
    REQUIRE(target);
    auto recipient_hex = resolve_target(*target, peers);
    REQUIRE(recipient_hex);
    auto recipient = PublicKey::from_hex(*recipient_hex);
    REQUIRE(recipient);
    CHECK(*recipient == bob.public_key());

    const std::string body = "deploy finished: 42 tests green";
    BoxKeyCache keys;
    auto sealed = keys.seal(alice, *recipient, as_bytes(body));
    REQUIRE(sealed);

    IdGenerator ids;
    Envelope envelope;
    envelope.channel = ChannelKind::dm;
    envelope.target = *recipient_hex;
    envelope.from = alice.public_key().hex();
    envelope.body = {sealed->nonce, sealed->ciphertext, 1};
    envelope.meta.client_message_id = ids.next();
    envelope.meta.priority = Priority::now;
    auto fingerprint = request_fingerprint({.destination_kind = "dm", .destination_ref = envelope.target,
                                            .priority = "now", .body = as_bytes(body)});
    REQUIRE(fingerprint);
    envelope.meta.request_fingerprint = *fingerprint;
    const std::string wire = encode_envelope(envelope);
    CHECK(wire.find(body) == std::string::npos);  // no plaintext on the wire

    // Receiver: decode, authenticate the sender, decrypt.
    auto received = decode_envelope(wire);
    REQUIRE(received);
    CHECK(*received == envelope);
    CHECK(is_valid_id(received->meta.client_message_id));
    auto sender = PublicKey::from_hex(*received->from);
    REQUIRE(sender);
    BoxKeyCache bob_keys;
    auto plain = bob_keys.open(bob, *sender, {received->body.nonce, received->body.ciphertext});
    REQUIRE(plain);
    CHECK(std::string(plain->begin(), plain->end()) == body);
    // Carol cannot read it.
    CHECK(bob_keys.open(carol, *sender, {received->body.nonce, received->body.ciphertext}).error() ==
          Errc::decrypt_failed);
  }

  TEST_CASE("hostile envelopes are refused with specific codes") {
    CHECK(decode_envelope("{").error() == Errc::malformed);
    Envelope valid;
    valid.channel = ChannelKind::broadcast;
    valid.target = "*";
    valid.body = {to_base64(Bytes(24, 1)), to_base64(Bytes(20, 2)), 1};
    valid.meta.client_message_id = IdGenerator().next();
    std::string wire = encode_envelope(valid);
    REQUIRE(decode_envelope(wire));
    wire.replace(wire.find("\"broadcast\""), 11, "\"telepathy\"");
    CHECK(decode_envelope(wire).error() == Errc::unknown_channel);
    CHECK(decode_envelope(std::string(70000, ' ')).error() == Errc::payload_too_large);
  }

  TEST_CASE("an ambiguous prefix names its candidates instead of guessing") {
    const std::vector<PeerRef> peers{{"abcd" + std::string(60, '0'), "one"}, {"abcd" + std::string(60, '1'), "two"}};
    auto resolved = resolve_target(*parse_target("abcd"), peers);
    REQUIRE_FALSE(resolved);
    CHECK(resolved.error() == Errc::ambiguous_target);
  }

  TEST_CASE("canonical JSON makes the fingerprint independent of key order and spacing") {
    CHECK(*canonical_json(R"({ "b": [1.0, 2e0], "a": "x" })") == R"({"a":"x","b":[1,2]})");
    const std::string body = "same";
    auto one = request_fingerprint({.destination_kind = "topic", .destination_ref = "#ops", .priority = "next",
                                    .meta_json = R"({"a":1,"b":2})", .body = as_bytes(body)});
    auto two = request_fingerprint({.destination_kind = "topic", .destination_ref = "#ops", .priority = "next",
                                    .meta_json = R"({"b":2, "a":1})", .body = as_bytes(body)});
    CHECK(*one == *two);
  }
}
