// SPDX-License-Identifier: MIT
#include <claudemesh/signatures.hpp>

#include <claudemesh/fingerprint.hpp>

#include <algorithm>
#include <cstdlib>

namespace claudemesh {
namespace {

constexpr std::string_view kAttestPrefix = "claudemesh-session-attest";
constexpr std::string_view kAttestV2Prefix = "claudemesh-session-attest-v2";
constexpr std::string_view kSessionHelloPrefix = "claudemesh-session-hello";
constexpr std::string_view kInviteV2Prefix = "v=2";

std::string join(std::initializer_list<std::string_view> parts) {
  std::string out;
  bool first = true;
  for (auto part : parts) {
    if (!first) out += '|';
    out += part;
    first = false;
  }
  return out;
}

std::string normalized_caps(std::span<const std::string> capabilities) {
  std::vector<std::string> caps(capabilities.begin(), capabilities.end());
  for (auto& cap : caps) {
    std::transform(cap.begin(), cap.end(), cap.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
  }
  std::sort(caps.begin(), caps.end());
  std::string out;
  for (const auto& cap : caps) {
    if (!out.empty()) out += ',';
    out += cap;
  }
  return out;
}

// ---- shape checks (each returns malformed with the field's name) ----

Result<void> check_text(std::string_view value, std::string_view name) {
  if (value.find('|') != std::string_view::npos) {
    return fail(Errc::malformed, std::string(name) + " must not contain '|'");
  }
  return {};
}

Result<PublicKey> check_key(std::string_view hex, std::string_view name) {
  auto key = PublicKey::from_hex(hex);
  if (!key) return fail(Errc::malformed, std::string(name) + " must be 64 lowercase hex characters");
  return key;
}

Result<Signature> check_signature(std::string_view hex) {
  auto sig = Signature::from_hex(hex);
  if (!sig) return fail(Errc::malformed, "signature must be 128 lowercase hex characters");
  return sig;
}

Result<void> check_caps(std::span<const std::string> caps) {
  for (const auto& cap : caps) {
    if (cap.empty() || cap.find_first_of(",|") != std::string::npos) {
      return fail(Errc::malformed, "capability must be non-empty and contain neither ',' nor '|'");
    }
  }
  return {};
}

Result<void> check_skew(std::int64_t timestamp_ms, std::int64_t now_ms) {
  // Written without subtraction overflow for hostile timestamps near the int64 limits.
  const bool too_old = timestamp_ms < now_ms - max_clock_skew_ms;
  const bool too_new = timestamp_ms > now_ms + max_clock_skew_ms;
  if (too_old || too_new) {
    return fail(Errc::timestamp_skew, "timestamp is more than 60 s from the server clock");
  }
  return {};
}

Result<void> check_signature_over(const PublicKey& key, const std::string& canonical, const Signature& sig,
                                  std::string_view what) {
  if (!verify(key, as_bytes(canonical), sig)) {
    return fail(Errc::bad_signature, std::string(what) + " signature does not verify");
  }
  return {};
}

}  // namespace

std::string member_hello_string(std::string_view mesh_id, std::string_view member_id, std::string_view pubkey_hex,
                                std::int64_t timestamp_ms) {
  return join({mesh_id, member_id, pubkey_hex, std::to_string(timestamp_ms)});
}

std::string session_attestation_string(std::string_view parent_pubkey_hex, std::string_view session_pubkey_hex,
                                       std::int64_t expires_at_ms) {
  return join({kAttestPrefix, parent_pubkey_hex, session_pubkey_hex, std::to_string(expires_at_ms)});
}

std::string session_attestation_v2_string(std::string_view parent_pubkey_hex, std::string_view session_pubkey_hex,
                                          std::int64_t expires_at_ms, std::span<const std::string> capabilities) {
  return join({kAttestV2Prefix, parent_pubkey_hex, session_pubkey_hex, std::to_string(expires_at_ms),
               normalized_caps(capabilities)});
}

std::string session_hello_string(std::string_view mesh_id, std::string_view parent_pubkey_hex,
                                 std::string_view session_pubkey_hex, std::int64_t timestamp_ms) {
  return join({kSessionHelloPrefix, mesh_id, parent_pubkey_hex, session_pubkey_hex, std::to_string(timestamp_ms)});
}

std::string invite_v2_string(std::string_view mesh_id, std::string_view invite_id, std::int64_t expires_at_s,
                             std::string_view role, std::string_view owner_pubkey_hex) {
  return join({kInviteV2Prefix, mesh_id, invite_id, std::to_string(expires_at_s), role, owner_pubkey_hex});
}

// ---- member hello ----

MemberHelloProof sign_member_hello(const Identity& member, std::string_view mesh_id, std::string_view member_id,
                                   std::int64_t timestamp_ms) {
  MemberHelloProof proof{std::string(mesh_id), std::string(member_id), member.public_key().hex(), timestamp_ms, {}};
  proof.signature = member.sign(member_hello_string(mesh_id, member_id, proof.pubkey, timestamp_ms)).hex();
  return proof;
}

Result<void> verify_member_hello(const MemberHelloProof& proof, std::int64_t now_ms) {
  if (auto r = check_text(proof.mesh_id, "meshId"); !r) return r;
  if (auto r = check_text(proof.member_id, "memberId"); !r) return r;
  auto key = check_key(proof.pubkey, "pubkey");
  if (!key) return fail(key.error());
  auto sig = check_signature(proof.signature);
  if (!sig) return fail(sig.error());
  if (auto r = check_skew(proof.timestamp_ms, now_ms); !r) return r;
  return check_signature_over(
      *key, member_hello_string(proof.mesh_id, proof.member_id, proof.pubkey, proof.timestamp_ms), *sig, "hello");
}

// ---- session attestation ----

Result<SessionAttestation> attest_session(const Identity& parent, const PublicKey& session, std::int64_t expires_at_ms,
                                          std::optional<std::vector<std::string>> allowed_caps) {
  SessionAttestation att{parent.public_key().hex(), session.hex(), expires_at_ms, {}, std::move(allowed_caps)};
  std::string canonical;
  if (att.allowed_caps) {
    if (auto r = check_caps(*att.allowed_caps); !r) return fail(r.error());
    canonical = session_attestation_v2_string(att.parent_pubkey, att.session_pubkey, expires_at_ms, *att.allowed_caps);
  } else {
    canonical = session_attestation_string(att.parent_pubkey, att.session_pubkey, expires_at_ms);
  }
  att.signature = parent.sign(canonical).hex();
  return att;
}

Result<void> verify_session_attestation(const SessionAttestation& att, std::int64_t now_ms) {
  if (att.expires_at_ms <= now_ms) return fail(Errc::expired, "session attestation has expired");
  if (att.expires_at_ms - now_ms > max_attestation_ttl_ms) {
    return fail(Errc::ttl_too_long, "session attestation expires more than 24 h ahead");
  }
  auto parent = check_key(att.parent_pubkey, "parentMemberPubkey");
  if (!parent) return fail(parent.error());
  if (auto session = check_key(att.session_pubkey, "sessionPubkey"); !session) return fail(session.error());
  auto sig = check_signature(att.signature);
  if (!sig) return fail(sig.error());
  std::string canonical;
  if (att.allowed_caps) {
    if (auto r = check_caps(*att.allowed_caps); !r) return r;
    canonical = session_attestation_v2_string(att.parent_pubkey, att.session_pubkey, att.expires_at_ms,
                                              *att.allowed_caps);
  } else {
    canonical = session_attestation_string(att.parent_pubkey, att.session_pubkey, att.expires_at_ms);
  }
  return check_signature_over(*parent, canonical, *sig, "session attestation");
}

// ---- session hello ----

SessionHelloProof sign_session_hello(const Identity& session, std::string_view mesh_id, const PublicKey& parent,
                                     std::int64_t timestamp_ms) {
  SessionHelloProof proof{std::string(mesh_id), parent.hex(), session.public_key().hex(), timestamp_ms, {}};
  proof.signature =
      session.sign(session_hello_string(mesh_id, proof.parent_pubkey, proof.session_pubkey, timestamp_ms)).hex();
  return proof;
}

Result<void> verify_session_hello(const SessionHelloProof& proof, std::int64_t now_ms) {
  if (auto r = check_text(proof.mesh_id, "meshId"); !r) return r;
  if (auto parent = check_key(proof.parent_pubkey, "parentMemberPubkey"); !parent) return fail(parent.error());
  auto session = check_key(proof.session_pubkey, "sessionPubkey");
  if (!session) return fail(session.error());
  auto sig = check_signature(proof.signature);
  if (!sig) return fail(sig.error());
  if (auto r = check_skew(proof.timestamp_ms, now_ms); !r) return r;
  return check_signature_over(
      *session, session_hello_string(proof.mesh_id, proof.parent_pubkey, proof.session_pubkey, proof.timestamp_ms),
      *sig, "session hello");
}

Result<void> verify_session_credentials(const SessionHelloProof& hello, const SessionAttestation& attestation,
                                        std::int64_t now_ms) {
  if (hello.session_pubkey != attestation.session_pubkey || hello.parent_pubkey != attestation.parent_pubkey) {
    return fail(Errc::attestation_mismatch, "session hello keys differ from its parent attestation");
  }
  if (auto r = verify_session_attestation(attestation, now_ms); !r) return r;
  return verify_session_hello(hello, now_ms);
}

// ---- invites ----

InviteV2 sign_invite_v2(const Identity& owner, std::string_view mesh_id, std::string_view invite_id,
                        std::int64_t expires_at_s, std::string_view role) {
  InviteV2 invite{std::string(mesh_id), std::string(invite_id), expires_at_s, std::string(role),
                  owner.public_key().hex(), {}};
  invite.signature =
      owner.sign(invite_v2_string(mesh_id, invite_id, expires_at_s, role, invite.owner_pubkey)).hex();
  return invite;
}

Result<void> verify_invite_v2(const InviteV2& invite, std::int64_t now_ms) {
  if (auto r = check_text(invite.mesh_id, "meshId"); !r) return r;
  if (auto r = check_text(invite.invite_id, "inviteId"); !r) return r;
  if (auto r = check_text(invite.role, "role"); !r) return r;
  auto owner = check_key(invite.owner_pubkey, "ownerPubkey");
  if (!owner) return fail(owner.error());
  auto sig = check_signature(invite.signature);
  if (!sig) return fail(sig.error());
  // Compare in seconds so a hostile expiry near the int64 limit cannot overflow a multiplication.
  if (invite.expires_at_s <= now_ms / 1000) return fail(Errc::expired, "invite has expired");
  return check_signature_over(
      *owner, invite_v2_string(invite.mesh_id, invite.invite_id, invite.expires_at_s, invite.role, invite.owner_pubkey),
      *sig, "invite");
}

// ---- signed HTTP requests ----

namespace {
constexpr std::string_view kRequestPrefix = "claudemesh-request-v1";
}  // namespace

std::string request_signature_string(std::string_view method, std::string_view target, std::int64_t timestamp_ms,
                                     std::string_view body) {
  return join({kRequestPrefix, method, target, std::to_string(timestamp_ms), sha256_hex(as_bytes(body))});
}

RequestProof sign_request(const Identity& signer, std::string_view method, std::string_view target,
                          std::int64_t timestamp_ms, std::string_view body) {
  RequestProof proof{signer.public_key().hex(), timestamp_ms, {}};
  proof.signature = signer.sign(request_signature_string(method, target, timestamp_ms, body)).hex();
  return proof;
}

Result<void> verify_request(const RequestProof& proof, std::string_view method, std::string_view target,
                            std::string_view body, std::int64_t now_ms) {
  if (auto r = check_text(method, "method"); !r) return r;
  if (auto r = check_text(target, "request target"); !r) return r;
  auto key = check_key(proof.pubkey, "X-Claudemesh-Pubkey");
  if (!key) return fail(key.error());
  auto sig = check_signature(proof.signature);
  if (!sig) return fail(sig.error());
  if (auto r = check_skew(proof.timestamp_ms, now_ms); !r) return r;
  return check_signature_over(*key, request_signature_string(method, target, proof.timestamp_ms, body), *sig,
                              "request");
}

}  // namespace claudemesh
