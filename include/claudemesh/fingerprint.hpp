// SPDX-License-Identifier: MIT
/// @file fingerprint.hpp
/// Request fingerprints: a hash of what a send asks for, used to tell an honest retry of a
/// `client_message_id` (same fingerprint) from a conflicting reuse of it (different fingerprint).
///
/// @par Thread safety
/// Pure functions: thread-safe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh {

/// The fields a request fingerprint covers. All views must stay valid for the call only.
struct FingerprintInput {
  std::string_view envelope_version = "1";  ///< decimal envelope version; "1" today
  std::string_view destination_kind{};      ///< channel kind: "dm", "group", "topic", "broadcast", ...
  std::string_view destination_ref{};       ///< target as routed: pubkey hex, "@group", "#topic", "*"
  std::string_view reply_to_id{};           ///< the message replied to; empty when absent
  std::string_view priority{};              ///< "now" | "next" | "low"
  std::string_view meta_json{};             ///< JSON text of the meta value, or empty when absent
  std::span<const std::uint8_t> body{};     ///< the plaintext body
};

/// The request fingerprint of a send, as 64 lowercase hex characters.
///
/// Value = hex(SHA-256(envelope_version ‖ 0x00 ‖ destination_kind ‖ 0x00 ‖ destination_ref ‖ 0x00 ‖
/// reply_to_id ‖ 0x00 ‖ priority ‖ 0x00 ‖ M ‖ 0x00 ‖ SHA-256(body))), where M is
/// `canonical_json(meta_json)` (RFC 8785), or nothing when `meta_json` is empty.
///
/// The body digest enters as its **raw 32 bytes**, not as hex. The reference specification said hex,
/// but the reference daemon that shipped hashes the raw digest; we match the shipped code so that
/// fingerprints compare equal across implementations. Meta is canonicalized here, so
/// `{"a":1,"b":2}` and `{ "b":2, "a":1 }` give the same fingerprint. The reference canonicalized meta
/// with key-sorted `JSON.stringify`, which agrees with RFC 8785 except on unusual strings and numbers.
///
/// @returns the fingerprint, or
/// - `Errc::invalid_value` if a string field contains a NUL byte (it would make the 0x00 framing ambiguous);
/// - the error of `canonical_json()` (`Errc::malformed`, `Errc::duplicate_key`) if `meta_json` is not
///   acceptable JSON.
///
/// @par Example
/// @code
/// const std::string body = "hello";
/// auto fp = claudemesh::request_fingerprint({.destination_kind = "dm", .destination_ref = peer_hex,
///                                            .priority = "next", .body = claudemesh::as_bytes(body)});
/// @endcode
CLAUDEMESH_API Result<std::string> request_fingerprint(const FingerprintInput& in);

/// SHA-256 of `data` as 64 lowercase hex characters.
/// @returns the digest; cannot fail.
CLAUDEMESH_API std::string sha256_hex(std::span<const std::uint8_t> data);

}  // namespace claudemesh
