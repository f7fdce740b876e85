// SPDX-License-Identifier: MIT
// Hostile cases for every signed statement. Each check in src/core/signatures.cpp has a case here that
// fails if the check is removed.
#include <claudemesh/signatures.hpp>

#include "test_support.hpp"

#include <doctest/doctest.h>

using namespace claudemesh;

namespace {

constexpr std::int64_t kNow = 1'767'225'600'000;

Identity make(std::uint8_t start, IdentityKind kind = IdentityKind::member) {
  return Identity::generate(kind, claudemesh::test::counting_random(start));
}

std::string flip_hex_char(std::string hex, std::size_t index = 0) {
  hex[index] = hex[index] == '0' ? '1' : '0';
  return hex;
}

Errc code_of(const Result<void>& r) { return r ? Errc::ok : r.error().errc(); }

}  // namespace

TEST_SUITE("member hello") {
  const auto member = make(1);
  const auto other = make(77);

  TEST_CASE("a fresh hello verifies, at both edges of the ±60 s window") {
    auto proof = sign_member_hello(member, "mesh-a", "m1", kNow);
    CHECK(verify_member_hello(proof, kNow));
    CHECK(verify_member_hello(proof, kNow + max_clock_skew_ms));
    CHECK(verify_member_hello(proof, kNow - max_clock_skew_ms));
  }

  TEST_CASE("a hello outside the skew window is timestamp_skew, in both directions") {
    auto proof = sign_member_hello(member, "mesh-a", "m1", kNow);
    CHECK(code_of(verify_member_hello(proof, kNow + max_clock_skew_ms + 1)) == Errc::timestamp_skew);
    CHECK(code_of(verify_member_hello(proof, kNow - max_clock_skew_ms - 1)) == Errc::timestamp_skew);
  }

  TEST_CASE("a replayed old hello is rejected even though its signature is valid") {
    auto proof = sign_member_hello(member, "mesh-a", "m1", kNow);
    CHECK(code_of(verify_member_hello(proof, kNow + 10 * 60'000)) == Errc::timestamp_skew);
  }

  TEST_CASE("timestamps near the int64 limits do not overflow the skew check") {
    auto proof = sign_member_hello(member, "mesh-a", "m1", INT64_MAX);
    CHECK(code_of(verify_member_hello(proof, kNow)) == Errc::timestamp_skew);
    proof = sign_member_hello(member, "mesh-a", "m1", INT64_MIN);
    CHECK(code_of(verify_member_hello(proof, kNow)) == Errc::timestamp_skew);
  }

  TEST_CASE("every tampered field breaks the signature") {
    const auto good = sign_member_hello(member, "mesh-a", "m1", kNow);
    auto p = good;
    p.mesh_id = "mesh-b";  // replay into another mesh
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::bad_signature);
    p = good;
    p.member_id = "m2";
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::bad_signature);
    p = good;
    p.timestamp_ms += 1;
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::bad_signature);
    p = good;
    p.signature = flip_hex_char(p.signature, 10);
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("a hello signed by the wrong key is bad_signature") {
    auto p = sign_member_hello(other, "mesh-a", "m1", kNow);
    p.pubkey = member.public_key().hex();  // claims to be member
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("malformed keys and signatures are malformed, not bad_signature") {
    const auto good = sign_member_hello(member, "mesh-a", "m1", kNow);
    auto p = good;
    p.pubkey = p.pubkey.substr(2);
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::malformed);
    p = good;
    for (auto& c : p.pubkey) c = static_cast<char>(std::toupper(c));  // wire hex is lowercase
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::malformed);
    p = good;
    p.signature = p.signature.substr(0, 127);
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::malformed);
    p = good;
    p.signature[0] = 'z';
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::malformed);
  }

  TEST_CASE("a '|' inside an id is malformed, so two statements cannot share a canonical string") {
    // "a|b" + "c" and "a" + "b|c" would both sign "a|b|c|...".
    CHECK(member_hello_string("a|b", "c", "k", 1) == member_hello_string("a", "b|c", "k", 1));
    auto p = sign_member_hello(member, "a|b", "c", kNow);
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::malformed);
    p = sign_member_hello(member, "a", "b|c", kNow);
    CHECK(code_of(verify_member_hello(p, kNow)) == Errc::malformed);
  }
}

TEST_SUITE("session attestation") {
  const auto parent = make(1);
  const auto session = make(50, IdentityKind::session);
  const auto stranger = make(90);

  TEST_CASE("a 12 h attestation verifies until it expires") {
    auto att = attest_session(parent, session.public_key(), kNow + default_attestation_ttl_ms);
    REQUIRE(att);
    CHECK(verify_session_attestation(*att, kNow));
    CHECK(verify_session_attestation(*att, kNow + default_attestation_ttl_ms - 1));
  }

  TEST_CASE("at or after its expiry it is expired") {
    auto att = attest_session(parent, session.public_key(), kNow + 1000);
    CHECK(code_of(verify_session_attestation(*att, kNow + 1000)) == Errc::expired);
    CHECK(code_of(verify_session_attestation(*att, kNow + 5000)) == Errc::expired);
  }

  TEST_CASE("more than 24 h ahead is ttl_too_long - exactly 24 h is fine") {
    auto att = attest_session(parent, session.public_key(), kNow + max_attestation_ttl_ms);
    CHECK(verify_session_attestation(*att, kNow));
    att = attest_session(parent, session.public_key(), kNow + max_attestation_ttl_ms + 1);
    CHECK(code_of(verify_session_attestation(*att, kNow)) == Errc::ttl_too_long);
  }

  TEST_CASE("an attestation by someone other than the claimed parent is bad_signature") {
    auto att = attest_session(stranger, session.public_key(), kNow + 60'000);
    att->parent_pubkey = parent.public_key().hex();
    CHECK(code_of(verify_session_attestation(*att, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("moving the attestation to another session key or expiry breaks it") {
    auto att = attest_session(parent, session.public_key(), kNow + 60'000);
    auto moved = *att;
    moved.session_pubkey = stranger.public_key().hex();
    CHECK(code_of(verify_session_attestation(moved, kNow)) == Errc::bad_signature);
    moved = *att;
    moved.expires_at_ms += 1;
    CHECK(code_of(verify_session_attestation(moved, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("v1 and v2 cannot be confused: adding or dropping caps breaks the signature") {
    auto v1 = attest_session(parent, session.public_key(), kNow + 60'000);
    auto as_v2 = *v1;
    as_v2.allowed_caps = std::vector<std::string>{};
    CHECK(code_of(verify_session_attestation(as_v2, kNow)) == Errc::bad_signature);
    auto v2 = attest_session(parent, session.public_key(), kNow + 60'000, std::vector<std::string>{"dm"});
    auto as_v1 = *v2;
    as_v1.allowed_caps.reset();
    CHECK(code_of(verify_session_attestation(as_v1, kNow)) == Errc::bad_signature);
    auto widened = *v2;
    widened.allowed_caps->push_back("broadcast");
    CHECK(code_of(verify_session_attestation(widened, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("v2 caps are order- and case-insensitive - an empty list is distinct from no list") {
    const std::vector<std::string> a{"dm", "Broadcast"}, b{"broadcast", "DM"};
    CHECK(session_attestation_v2_string("p", "s", 1, a) == session_attestation_v2_string("p", "s", 1, b));
    CHECK(session_attestation_v2_string("p", "s", 1, a) == "claudemesh-session-attest-v2|p|s|1|broadcast,dm");
    CHECK(session_attestation_v2_string("p", "s", 1, {}) == "claudemesh-session-attest-v2|p|s|1|");
    auto att = attest_session(parent, session.public_key(), kNow + 60'000, b);
    att->allowed_caps = a;
    CHECK(verify_session_attestation(*att, kNow));
  }

  TEST_CASE("caps containing ',' or '|' or empty caps are malformed") {
    for (std::string bad : {"d,m", "d|m", ""}) {
      auto att = attest_session(parent, session.public_key(), kNow + 60'000, std::vector<std::string>{bad});
      CHECK_FALSE(att);
      CHECK(att.error() == Errc::malformed);
      SessionAttestation forged{parent.public_key().hex(), session.public_key().hex(), kNow + 60'000,
                                std::string(128, 'a'), std::vector<std::string>{bad}};
      CHECK(code_of(verify_session_attestation(forged, kNow)) == Errc::malformed);
    }
  }

  TEST_CASE("malformed keys in an attestation are malformed") {
    auto att = *attest_session(parent, session.public_key(), kNow + 60'000);
    auto bad = att;
    bad.parent_pubkey = "xyz";
    CHECK(code_of(verify_session_attestation(bad, kNow)) == Errc::malformed);
    bad = att;
    bad.session_pubkey = att.session_pubkey + "00";
    CHECK(code_of(verify_session_attestation(bad, kNow)) == Errc::malformed);
    bad = att;
    bad.signature = "";
    CHECK(code_of(verify_session_attestation(bad, kNow)) == Errc::malformed);
  }
}

TEST_SUITE("session hello") {
  const auto parent = make(1);
  const auto session = make(50, IdentityKind::session);
  const auto thief = make(120, IdentityKind::session);

  TEST_CASE("a session hello with a valid attestation verifies") {
    auto att = *attest_session(parent, session.public_key(), kNow + default_attestation_ttl_ms);
    auto hello = sign_session_hello(session, "mesh-a", parent.public_key(), kNow);
    CHECK(verify_session_hello(hello, kNow));
    CHECK(verify_session_credentials(hello, att, kNow));
  }

  TEST_CASE("holding the attestation without the session secret is not enough") {
    auto att = *attest_session(parent, session.public_key(), kNow + default_attestation_ttl_ms);
    auto forged = sign_session_hello(thief, "mesh-a", parent.public_key(), kNow);
    forged.session_pubkey = session.public_key().hex();  // claim the attested key
    CHECK(code_of(verify_session_credentials(forged, att, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("a thief presenting its own key with someone else's attestation is attestation_mismatch") {
    auto att = *attest_session(parent, session.public_key(), kNow + default_attestation_ttl_ms);
    auto hello = sign_session_hello(thief, "mesh-a", parent.public_key(), kNow);
    CHECK(code_of(verify_session_credentials(hello, att, kNow)) == Errc::attestation_mismatch);
    auto other_parent = make(200);
    hello = sign_session_hello(session, "mesh-a", other_parent.public_key(), kNow);
    CHECK(code_of(verify_session_credentials(hello, att, kNow)) == Errc::attestation_mismatch);
  }

  TEST_CASE("replay into another mesh fails: the mesh id is signed") {
    auto hello = sign_session_hello(session, "mesh-a", parent.public_key(), kNow);
    hello.mesh_id = "mesh-b";
    CHECK(code_of(verify_session_hello(hello, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("an expired attestation stops the session even with a fresh hello") {
    auto att = *attest_session(parent, session.public_key(), kNow + 1000);
    auto hello = sign_session_hello(session, "mesh-a", parent.public_key(), kNow + 2000);
    CHECK(code_of(verify_session_credentials(hello, att, kNow + 2000)) == Errc::expired);
  }

  TEST_CASE("skew, malformed fields and ids with '|'") {
    auto hello = sign_session_hello(session, "mesh-a", parent.public_key(), kNow);
    CHECK(code_of(verify_session_hello(hello, kNow + 61'000)) == Errc::timestamp_skew);
    auto bad = hello;
    bad.parent_pubkey = "00";
    CHECK(code_of(verify_session_hello(bad, kNow)) == Errc::malformed);
    bad = hello;
    bad.session_pubkey = "";
    CHECK(code_of(verify_session_hello(bad, kNow)) == Errc::malformed);
    bad = hello;
    bad.signature = std::string(128, 'G');
    CHECK(code_of(verify_session_hello(bad, kNow)) == Errc::malformed);
    bad = sign_session_hello(session, "mesh|a", parent.public_key(), kNow);
    CHECK(code_of(verify_session_hello(bad, kNow)) == Errc::malformed);
  }
}

TEST_SUITE("invite v2") {
  const auto owner = make(1);
  const auto impostor = make(66);
  const std::int64_t expires_s = kNow / 1000 + 3600;

  TEST_CASE("an invite verifies until its expiry (in seconds)") {
    auto invite = sign_invite_v2(owner, "mesh-a", "inv1", expires_s, "member");
    CHECK(verify_invite_v2(invite, kNow));
    CHECK(verify_invite_v2(invite, expires_s * 1000 - 1001));
    CHECK(code_of(verify_invite_v2(invite, expires_s * 1000)) == Errc::expired);
  }

  TEST_CASE("raising the role, changing the mesh or invite id, or another signer breaks it") {
    const auto good = sign_invite_v2(owner, "mesh-a", "inv1", expires_s, "member");
    auto bad = good;
    bad.role = "admin";
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::bad_signature);
    bad = good;
    bad.mesh_id = "mesh-b";
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::bad_signature);
    bad = good;
    bad.invite_id = "inv2";
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::bad_signature);
    bad = good;
    bad.expires_at_s += 86400;
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::bad_signature);
    bad = sign_invite_v2(impostor, "mesh-a", "inv1", expires_s, "member");
    bad.owner_pubkey = owner.public_key().hex();
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("malformed invites") {
    auto bad = sign_invite_v2(owner, "mesh-a", "inv1", expires_s, "mem|ber");
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::malformed);
    bad = sign_invite_v2(owner, "mesh-a", "inv|1", expires_s, "member");
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::malformed);
    bad = sign_invite_v2(owner, "mesh|a", "inv1", expires_s, "member");
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::malformed);
    bad = sign_invite_v2(owner, "mesh-a", "inv1", expires_s, "member");
    bad.owner_pubkey.pop_back();
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::malformed);
    bad = sign_invite_v2(owner, "mesh-a", "inv1", expires_s, "member");
    bad.signature += "00";
    CHECK(code_of(verify_invite_v2(bad, kNow)) == Errc::malformed);
  }
}

TEST_SUITE("signed requests") {
  const auto caller = make(40);
  const auto other = make(41);
  const std::string body = R"({"name":"ops"})";

  TEST_CASE("a signed request verifies - its canonical string has the domain prefix and the body digest") {
    const auto proof = sign_request(caller, "POST", "/v1/meshes", kNow, body);
    CHECK(proof.pubkey == caller.public_key().hex());
    CHECK(code_of(verify_request(proof, "POST", "/v1/meshes", body, kNow + 59'000)) == Errc::ok);
    const auto canonical = request_signature_string("GET", "/x?y=1", 5, "");
    // sha256 of the empty string
    CHECK(canonical == "claudemesh-request-v1|GET|/x?y=1|5|"
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }

  TEST_CASE("every tampered part breaks it: method, target, body, timestamp, key") {
    const auto proof = sign_request(caller, "POST", "/v1/meshes/a/invites", kNow, body);
    CHECK(code_of(verify_request(proof, "PUT", "/v1/meshes/a/invites", body, kNow)) == Errc::bad_signature);
    CHECK(code_of(verify_request(proof, "POST", "/v1/meshes/b/invites", body, kNow)) == Errc::bad_signature);
    CHECK(code_of(verify_request(proof, "POST", "/v1/meshes/a/invites", body + " ", kNow)) == Errc::bad_signature);
    auto shifted = proof;
    shifted.timestamp_ms += 1;
    CHECK(code_of(verify_request(shifted, "POST", "/v1/meshes/a/invites", body, kNow)) == Errc::bad_signature);
    auto rekeyed = proof;
    rekeyed.pubkey = other.public_key().hex();
    CHECK(code_of(verify_request(rekeyed, "POST", "/v1/meshes/a/invites", body, kNow)) == Errc::bad_signature);
  }

  TEST_CASE("stale, future, malformed and pipe-smuggling requests are refused with their codes") {
    const auto proof = sign_request(caller, "GET", "/v1/meshes/a", kNow, "");
    CHECK(code_of(verify_request(proof, "GET", "/v1/meshes/a", "", kNow + 60'001)) == Errc::timestamp_skew);
    CHECK(code_of(verify_request(proof, "GET", "/v1/meshes/a", "", kNow - 60'001)) == Errc::timestamp_skew);
    auto bad_key = proof;
    bad_key.pubkey = "zz";
    CHECK(code_of(verify_request(bad_key, "GET", "/v1/meshes/a", "", kNow)) == Errc::malformed);
    auto bad_sig = proof;
    bad_sig.signature.pop_back();
    CHECK(code_of(verify_request(bad_sig, "GET", "/v1/meshes/a", "", kNow)) == Errc::malformed);
    CHECK(code_of(verify_request(proof, "GET", "/v1/meshes/a|x", "", kNow)) == Errc::malformed);
    CHECK(code_of(verify_request(proof, "GET|", "/v1/meshes/a", "", kNow)) == Errc::malformed);
  }
}
