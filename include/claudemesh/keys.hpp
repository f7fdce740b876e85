// SPDX-License-Identifier: MIT
/// @file keys.hpp
/// Key and signature types: ed25519 signing keys, the x25519 box keys derived from them, and
/// 32-byte symmetric keys.
///
/// On the wire, public keys are 64 lowercase hex characters and ed25519 secret keys are 128 lowercase hex
/// characters in libsodium's layout (32-byte seed followed by the 32-byte public key).
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: safe for const use.
#pragma once

#include <claudemesh/bytes.hpp>
#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh {

/// An ed25519 public key (32 bytes).
struct CLAUDEMESH_API PublicKey {
  ByteArray<32> bytes{};

  /// Parse 64 lowercase hex characters. @returns `Errc::malformed` otherwise.
  static Result<PublicKey> from_hex(std::string_view hex);
  /// 64 lowercase hex characters.
  [[nodiscard]] std::string hex() const;
  /// A short human fingerprint: the first 16 hex characters of SHA-256 over the key, grouped by 4
  /// ("3f2a-91c0-77d1-0b5e"). Stable, but not collision resistant enough to authenticate with.
  [[nodiscard]] std::string fingerprint() const;

  friend auto operator<=>(const PublicKey&, const PublicKey&) = default;
};

/// An ed25519 detached signature (64 bytes).
struct CLAUDEMESH_API Signature {
  ByteArray<64> bytes{};

  /// Parse 128 lowercase hex characters. @returns `Errc::malformed` otherwise.
  static Result<Signature> from_hex(std::string_view hex);
  /// 128 lowercase hex characters.
  [[nodiscard]] std::string hex() const;

  friend auto operator<=>(const Signature&, const Signature&) = default;
};

/// An x25519 public key (32 bytes), used by `crypto_box`. Derived from an ed25519 key, never published.
struct X25519PublicKey {
  ByteArray<32> bytes{};
  friend auto operator<=>(const X25519PublicKey&, const X25519PublicKey&) = default;
};

struct Ed25519SecretTag;
struct X25519SecretTag;
struct SymmetricKeyTag;

/// An ed25519 secret key in libsodium's 64-byte layout (seed ‖ public key). Move-only, wiped on destruction.
using Ed25519SecretKey = Secret<64, Ed25519SecretTag>;
/// An x25519 secret scalar (32 bytes). Move-only, wiped on destruction.
using X25519SecretKey = Secret<32, X25519SecretTag>;
/// A 32-byte XSalsa20-Poly1305 key (`crypto_secretbox`), e.g. a topic key. Move-only, wiped on destruction.
using SymmetricKey = Secret<32, SymmetricKeyTag>;

/// An ed25519 key pair.
struct CLAUDEMESH_API SigningKeyPair {
  PublicKey public_key;
  Ed25519SecretKey secret_key;

  /// A fresh key pair from `rng` (empty: the system CSPRNG).
  static SigningKeyPair generate(const RandomSource& rng = {});
  /// The key pair for a 32-byte seed (deterministic; used for known-answer tests).
  static SigningKeyPair from_seed(std::span<const std::uint8_t, 32> seed);
  /// Parse a 128-lowercase-hex libsodium secret key and check that its embedded public key matches the
  /// seed. @returns `Errc::malformed` for bad hex, `Errc::invalid_key` when the halves disagree.
  static Result<SigningKeyPair> from_secret_hex(std::string_view hex);
};

/// Sign `message` with an ed25519 secret key (deterministic).
CLAUDEMESH_API Signature sign(const Ed25519SecretKey& secret, std::span<const std::uint8_t> message);

/// Verify an ed25519 detached signature.
/// @returns true only if `signature` is valid for `message` under `key`.
CLAUDEMESH_API bool verify(const PublicKey& key, std::span<const std::uint8_t> message,
                           const Signature& signature) noexcept;

/// Convert an ed25519 public key to its x25519 form (`crypto_sign_ed25519_pk_to_curve25519`).
/// This costs tens of microseconds: cache the result (see `BoxKeyCache`), never convert per message.
/// @returns `Errc::invalid_key` if the key is not a valid ed25519 point.
CLAUDEMESH_API Result<X25519PublicKey> to_x25519(const PublicKey& key);

/// Convert an ed25519 secret key to its x25519 scalar (`crypto_sign_ed25519_sk_to_curve25519`).
CLAUDEMESH_API X25519SecretKey to_x25519(const Ed25519SecretKey& secret);

/// A fresh random symmetric key.
CLAUDEMESH_API SymmetricKey generate_symmetric_key(const RandomSource& rng = {});

}  // namespace claudemesh
