// SPDX-License-Identifier: MIT
/// @file password.hpp
/// Argon2id hashing for passwords and API keys (broker admin tokens, API keys), with timing-safe
/// verification. The stored form is libsodium's self-describing string
/// ("$argon2id$v=19$m=65536,t=2,p=1$<salt>$<hash>"), so the cost can be raised later without breaking
/// stored hashes (`needs_rehash`).
///
/// @par Thread safety
/// Thread-safe. Each hash uses `memory_bytes` of RAM while it runs.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace claudemesh {

/// How expensive a hash is. The default is libsodium's "interactive" level (2 passes, 64 MiB).
struct PasswordHashCost {
  std::uint64_t passes = 2;
  std::size_t memory_bytes = std::size_t{64} * 1024 * 1024;
};

/// The cheapest cost libsodium accepts; for tests only.
inline constexpr PasswordHashCost minimum_password_hash_cost{.passes = 1, .memory_bytes = 8192};

/// Hash `secret` with Argon2id and a fresh random salt.
/// @returns the encoded hash, `Errc::invalid_value` for a cost libsodium rejects, or `Errc::crypto_failure`
/// when memory cannot be allocated.
CLAUDEMESH_API Result<std::string> hash_secret(std::string_view secret, PasswordHashCost cost = {});

/// Check `candidate` against an encoded hash in constant time with respect to the candidate.
/// @returns false for a wrong candidate and for any malformed or unsupported hash string.
CLAUDEMESH_API bool verify_secret(std::string_view encoded_hash, std::string_view candidate) noexcept;

/// True if `encoded_hash` was made with a different cost (or algorithm) than `cost`, or is malformed.
CLAUDEMESH_API bool needs_rehash(std::string_view encoded_hash, PasswordHashCost cost = {}) noexcept;

}  // namespace claudemesh
