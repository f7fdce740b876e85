// SPDX-License-Identifier: MIT
/// @file error.hpp
/// The one error vocabulary of libclaudemesh.
///
/// Every failure the library reports is an `Error`: a `std::error_code` in the `claudemesh` category
/// (for programs: compare against `Errc`) plus a message for people. Each `Errc` has a stable
/// snake_case wire name (`wire_name()`), which is exactly the `code` string the broker and the daemon
/// put in error frames and JSON responses, so clients never pattern-match prose.
#pragma once

#include <claudemesh/export.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace claudemesh {

/// Error codes. The numeric values are stable within a minor version; the wire names are stable forever.
enum class Errc : int {
  ok = 0,                   ///< success (never carried by an `Error`)
  // Input shape
  malformed = 1,            ///< input is not parseable or not the expected shape
  wrong_type,               ///< a field has the wrong JSON type
  missing_field,            ///< a required field is absent
  invalid_value,            ///< a field has the right type but an unacceptable value
  duplicate_key,            ///< a JSON object repeats a member name
  payload_too_large,        ///< input exceeds a configured size limit
  unknown_channel,          ///< envelope channel kind is not one we know
  // Signatures and time
  timestamp_skew = 20,      ///< signed timestamp is more than ±60 s from our clock
  expired,                  ///< an expiry (attestation, invite) is in the past
  ttl_too_long,             ///< an attestation expires further ahead than the 24 h cap
  bad_signature,            ///< the signature does not verify for the claimed key
  attestation_mismatch,     ///< a session hello's keys differ from the attestation it carries
  // Crypto
  decrypt_failed = 40,      ///< ciphertext did not authenticate (wrong key, tampered, truncated)
  invalid_key,              ///< a key has the wrong length or is not a valid point
  crypto_failure,           ///< libsodium reported an internal failure
  // Targets
  invalid_target = 60,      ///< a target string is not any recognised form
  ambiguous_target,         ///< a name or hex prefix matches more than one peer
  unknown_target,           ///< a target matches no known peer
  // Connections
  timed_out = 70,           ///< an operation did not finish in time
  connection_closed,        ///< the connection is closed (see the close code for why)
  // Storage and files
  io_error = 80,            ///< a file or OS call failed
  not_found,                ///< the requested thing does not exist
  insecure_permissions,     ///< a secret file is readable by group or others
  internal = 99,            ///< a bug: an invariant did not hold
  // Authentication, membership, policy (broker)
  unauthorized = 100,       ///< no valid credentials (unknown key, missing signature)
  forbidden,                ///< authenticated, but not allowed to do this
  not_a_member,             ///< the key is not a member of that mesh
  revoked,                  ///< the member was revoked or banned
  replayed,                 ///< a signed request was already seen
  no_hello,                 ///< a frame arrived before `hello` / `session_hello`
  unknown_message_type,     ///< a frame type the broker does not know
  bad_session_pubkey,       ///< a session key is not 64 lowercase hex
  bad_parent_pubkey,        ///< a parent member key is not 64 lowercase hex
  parent_member_id_mismatch,  ///< `parentMemberId` is not the member that owns the parent key
  rate_limited,             ///< too many requests; retry later
  capacity,                 ///< a connection or size cap is reached
  idempotency_key_reused,   ///< a client message id was reused for a different request
  already_exists,           ///< the thing to create exists already
  exhausted,                ///< an invite has no uses left
  unavailable,              ///< the service cannot take this now (shutting down, storage failing)
};

/// The `claudemesh` error category. `name()` is "claudemesh"; `message(int)` gives the code's description.
CLAUDEMESH_API const std::error_category& error_category() noexcept;

/// Make a `std::error_code` in the `claudemesh` category (found by ADL, so `std::error_code ec = Errc::x;` works).
CLAUDEMESH_API std::error_code make_error_code(Errc e) noexcept;

/// The stable snake_case wire name of a code, e.g. `Errc::timestamp_skew` -> "timestamp_skew".
CLAUDEMESH_API std::string_view wire_name(Errc e) noexcept;

/// The code with the given wire name, or `std::nullopt` for an unknown name.
CLAUDEMESH_API std::optional<Errc> errc_from_wire_name(std::string_view name) noexcept;

/// A failure: a machine-readable code and a human-readable message.
///
/// `message` says what went wrong in the caller's terms ("field meta.clientMessageId is missing"); it never
/// contains secret material.
struct CLAUDEMESH_API Error {
  std::error_code code;  ///< usually in `error_category()`; third-party codes (e.g. `std::errc`) are possible
  std::string message;   ///< for people; may be empty

  Error() = default;
  Error(Errc e, std::string msg) : code(make_error_code(e)), message(std::move(msg)) {}
  Error(std::error_code ec, std::string msg) : code(ec), message(std::move(msg)) {}

  /// The `Errc`, or `Errc::internal` when `code` is from another category.
  [[nodiscard]] Errc errc() const noexcept;
  /// The wire name of `errc()`.
  [[nodiscard]] std::string_view wire_code() const noexcept { return wire_name(errc()); }
  /// "wire_code: message", for logs and CLI output.
  [[nodiscard]] std::string describe() const;

  friend bool operator==(const Error& e, Errc c) noexcept { return e.code == make_error_code(c); }
};

}  // namespace claudemesh

template <>
struct std::is_error_code_enum<claudemesh::Errc> : std::true_type {};
