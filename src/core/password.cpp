// SPDX-License-Identifier: MIT
#include <claudemesh/password.hpp>

#include "core/sodium.hpp"

#include <sodium.h>

#include <array>
#include <cstring>

namespace claudemesh {
namespace {

// libsodium needs the encoded hash NUL-terminated inside a crypto_pwhash_STRBYTES buffer.
bool copy_hash(std::string_view encoded, std::array<char, crypto_pwhash_STRBYTES>& out) noexcept {
  if (encoded.size() >= out.size() || encoded.find('\0') != std::string_view::npos) return false;
  out.fill('\0');
  std::memcpy(out.data(), encoded.data(), encoded.size());
  return true;
}

bool cost_is_valid(PasswordHashCost cost) noexcept {
  return cost.passes >= crypto_pwhash_OPSLIMIT_MIN && cost.passes <= crypto_pwhash_OPSLIMIT_MAX &&
         cost.memory_bytes >= crypto_pwhash_MEMLIMIT_MIN && cost.memory_bytes <= crypto_pwhash_MEMLIMIT_MAX;
}

}  // namespace

Result<std::string> hash_secret(std::string_view secret, PasswordHashCost cost) {
  core::ensure_sodium();
  if (!cost_is_valid(cost)) return fail(Errc::invalid_value, "argon2id cost is outside libsodium's limits");
  std::array<char, crypto_pwhash_STRBYTES> out{};
  if (crypto_pwhash_str_alg(out.data(), secret.data(), secret.size(), cost.passes, cost.memory_bytes,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return fail(Errc::crypto_failure, "argon2id hashing failed (out of memory?)");
  }
  return std::string(out.data());
}

bool verify_secret(std::string_view encoded_hash, std::string_view candidate) noexcept {
  core::ensure_sodium();
  std::array<char, crypto_pwhash_STRBYTES> hash{};
  if (!copy_hash(encoded_hash, hash)) return false;
  // crypto_pwhash_str_verify recomputes the hash and compares it in constant time.
  return crypto_pwhash_str_verify(hash.data(), candidate.data(), candidate.size()) == 0;
}

bool needs_rehash(std::string_view encoded_hash, PasswordHashCost cost) noexcept {
  core::ensure_sodium();
  std::array<char, crypto_pwhash_STRBYTES> hash{};
  if (!copy_hash(encoded_hash, hash)) return true;
  return crypto_pwhash_str_needs_rehash(hash.data(), cost.passes, cost.memory_bytes) != 0;
}

}  // namespace claudemesh
