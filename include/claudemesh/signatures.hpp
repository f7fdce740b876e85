// SPDX-License-Identifier: MIT
/// @file signatures.hpp
/// The signed statements of the claudemesh protocol, with the reference system's exact canonical
/// strings (UTF-8, fields joined by `|`, ed25519 detached signatures as 128 lowercase hex):
///
/// | statement | canonical string | signed by |
/// |---|---|---|
/// | member hello | `meshId|memberId|pubkey|timestampMs` | member key |
/// | session attestation v1 | `claudemesh-session-attest|parent|session|expiresAtMs` | parent member key |
/// | session attestation v2 | `claudemesh-session-attest-v2|parent|session|expiresAtMs|caps` | parent member key |
/// | session hello | `claudemesh-session-hello|meshId|parent|session|timestampMs` | session key |
/// | invite v2 | `v=2|meshId|inviteId|expiresAtSeconds|role|ownerPubkey` | mesh owner key |
///
/// Keys are 64 lowercase hex. v2 capabilities are lowercased, sorted by byte value and comma-joined.
/// Text fields may not contain `|` (nor `,` for capabilities): that would let two different statements
/// share one canonical string, so such input is `Errc::malformed`.
///
/// Verification returns a specific code for each failure: `timestamp_skew` (more than ±60 s from `now`),
/// `expired`, `ttl_too_long` (attestation more than 24 h ahead), `bad_signature`, `malformed`, and
/// `attestation_mismatch` (session hello keys differ from its attestation). Time is always passed in
/// (`now_ms`), so verification is deterministic.
///
/// @par Thread safety
/// All functions are thread-safe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/keys.hpp>
#include <claudemesh/result.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

/// The largest accepted difference between a signed timestamp and our clock (±60 s).
inline constexpr std::int64_t max_clock_skew_ms = 60'000;
/// The furthest ahead a session attestation may expire (24 h).
inline constexpr std::int64_t max_attestation_ttl_ms = std::int64_t{24} * 60 * 60 * 1000;
/// The lifetime we give the attestations we mint (12 h); they are renewed well before expiry.
inline constexpr std::int64_t default_attestation_ttl_ms = std::int64_t{12} * 60 * 60 * 1000;

// ---- canonical strings ----

/// `meshId|memberId|pubkey|timestampMs`, the member hello statement (no domain prefix, as the reference).
CLAUDEMESH_API std::string member_hello_string(std::string_view mesh_id, std::string_view member_id,
                                               std::string_view pubkey_hex, std::int64_t timestamp_ms);
/// `claudemesh-session-attest|parent|session|expiresAtMs`.
CLAUDEMESH_API std::string session_attestation_string(std::string_view parent_pubkey_hex,
                                                      std::string_view session_pubkey_hex,
                                                      std::int64_t expires_at_ms);
/// `claudemesh-session-attest-v2|parent|session|expiresAtMs|caps`, caps lowercased, sorted, comma-joined.
CLAUDEMESH_API std::string session_attestation_v2_string(std::string_view parent_pubkey_hex,
                                                         std::string_view session_pubkey_hex,
                                                         std::int64_t expires_at_ms,
                                                         std::span<const std::string> capabilities);
/// `claudemesh-session-hello|meshId|parent|session|timestampMs`.
CLAUDEMESH_API std::string session_hello_string(std::string_view mesh_id, std::string_view parent_pubkey_hex,
                                                std::string_view session_pubkey_hex, std::int64_t timestamp_ms);
/// `v=2|meshId|inviteId|expiresAtSeconds|role|ownerPubkey`. Note: seconds, not milliseconds.
CLAUDEMESH_API std::string invite_v2_string(std::string_view mesh_id, std::string_view invite_id,
                                            std::int64_t expires_at_s, std::string_view role,
                                            std::string_view owner_pubkey_hex);

// ---- member hello ----

/// The signed part of a `hello` frame.
struct MemberHelloProof {
  std::string mesh_id;
  std::string member_id;
  std::string pubkey;  ///< member ed25519 key, 64 lowercase hex
  std::int64_t timestamp_ms = 0;
  std::string signature;  ///< 128 lowercase hex
};

/// Sign a member hello with the member identity.
CLAUDEMESH_API MemberHelloProof sign_member_hello(const Identity& member, std::string_view mesh_id,
                                                  std::string_view member_id, std::int64_t timestamp_ms);
/// Check shape, then clock skew, then signature.
/// @returns `malformed`, `timestamp_skew` or `bad_signature`.
CLAUDEMESH_API Result<void> verify_member_hello(const MemberHelloProof& proof, std::int64_t now_ms);

// ---- session attestation ----

/// A parent member's statement that a session key may act for it until `expires_at_ms`.
/// `allowed_caps` absent means v1 (all of the member's capabilities); present (even empty) means v2.
struct SessionAttestation {
  std::string parent_pubkey;   ///< 64 lowercase hex
  std::string session_pubkey;  ///< 64 lowercase hex
  std::int64_t expires_at_ms = 0;
  std::string signature;  ///< 128 lowercase hex
  std::optional<std::vector<std::string>> allowed_caps;
};

/// Attest `session` with the parent member identity.
/// @returns `Errc::malformed` if a capability is empty or contains `,` or `|`.
CLAUDEMESH_API Result<SessionAttestation> attest_session(
    const Identity& parent, const PublicKey& session, std::int64_t expires_at_ms,
    std::optional<std::vector<std::string>> allowed_caps = std::nullopt);
/// Check, in the reference's order: `expired` (expiry <= now), `ttl_too_long` (expiry > now + 24 h),
/// `malformed` (key/signature/capability shape), `bad_signature`.
CLAUDEMESH_API Result<void> verify_session_attestation(const SessionAttestation& attestation, std::int64_t now_ms);

// ---- session hello ----

/// The signed part of a `session_hello` frame.
struct SessionHelloProof {
  std::string mesh_id;
  std::string parent_pubkey;   ///< 64 lowercase hex
  std::string session_pubkey;  ///< 64 lowercase hex
  std::int64_t timestamp_ms = 0;
  std::string signature;  ///< by the session key, 128 lowercase hex
};

/// Sign a session hello with the session identity.
CLAUDEMESH_API SessionHelloProof sign_session_hello(const Identity& session, std::string_view mesh_id,
                                                    const PublicKey& parent, std::int64_t timestamp_ms);
/// Check shape, then clock skew, then the session key's signature.
/// @returns `malformed`, `timestamp_skew` or `bad_signature`.
CLAUDEMESH_API Result<void> verify_session_hello(const SessionHelloProof& proof, std::int64_t now_ms);

/// Everything a broker checks cryptographically for a `session_hello`, in the broker's order: the hello's
/// keys equal the attestation's (`attestation_mismatch`), the attestation verifies, then the hello
/// signature verifies. Holding an attestation without the session secret is therefore not enough.
CLAUDEMESH_API Result<void> verify_session_credentials(const SessionHelloProof& hello,
                                                       const SessionAttestation& attestation, std::int64_t now_ms);

// ---- invites ----

/// A v2 invite: who may join which mesh, in what role, until when. The mesh root key is not part of it.
struct InviteV2 {
  std::string mesh_id;
  std::string invite_id;
  std::int64_t expires_at_s = 0;  ///< Unix seconds
  std::string role;               ///< e.g. "member" or "admin"
  std::string owner_pubkey;       ///< 64 lowercase hex
  std::string signature;          ///< by the owner key, 128 lowercase hex
};

/// Sign an invite with the mesh owner's identity.
CLAUDEMESH_API InviteV2 sign_invite_v2(const Identity& owner, std::string_view mesh_id, std::string_view invite_id,
                                       std::int64_t expires_at_s, std::string_view role);
/// @returns `malformed`, `expired` (expiry <= now) or `bad_signature`.
CLAUDEMESH_API Result<void> verify_invite_v2(const InviteV2& invite, std::int64_t now_ms);

// ---- signed HTTP requests (broker API) ----

/// `claudemesh-request-v1|METHOD|target|timestampMs|sha256hex(body)`: what a signed HTTP request's signature
/// covers. `target` is the request-target as sent (path and query).
CLAUDEMESH_API std::string request_signature_string(std::string_view method, std::string_view target,
                                                    std::int64_t timestamp_ms, std::string_view body);

/// The three headers of a signed request: `X-Claudemesh-Pubkey`, `X-Claudemesh-Timestamp`,
/// `X-Claudemesh-Signature`.
struct RequestProof {
  std::string pubkey;  ///< 64 lowercase hex
  std::int64_t timestamp_ms = 0;
  std::string signature;  ///< 128 lowercase hex
};

/// Sign a request with `signer`.
CLAUDEMESH_API RequestProof sign_request(const Identity& signer, std::string_view method, std::string_view target,
                                         std::int64_t timestamp_ms, std::string_view body);
/// Check shape (`malformed`; `method`/`target` must not contain `|`), skew (`timestamp_skew`), then the
/// signature (`bad_signature`). Replay protection is the verifier's job (remember signatures for the window).
CLAUDEMESH_API Result<void> verify_request(const RequestProof& proof, std::string_view method, std::string_view target,
                                           std::string_view body, std::int64_t now_ms);

}  // namespace claudemesh
