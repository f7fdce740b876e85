// SPDX-License-Identifier: MIT
/// @file crypto.hpp
/// Message encryption. Nothing leaves a peer in plaintext:
///
/// * **Direct messages**: `crypto_box` (X25519 + XSalsa20-Poly1305) between the sender's and the
///   recipient's x25519 keys, both derived from their ed25519 identities. A fresh random 24-byte nonce
///   per message. Both nonce and ciphertext travel as standard base64 (the reference wire format: no
///   header, no version byte; ciphertext = 16-byte MAC ‖ body).
/// * **Topics and groups**: `crypto_secretbox` under a 32-byte `SymmetricKey`, which is itself sealed to
///   each member with `crypto_box_seal` (anonymous sender, recipient = the member's derived x25519 key).
///
/// Deriving x25519 keys and the shared secret costs tens of microseconds. `BoxKeyCache` keeps the
/// precomputed shared key (`crypto_box_beforenm`) per (our key, peer key), so a steady conversation
/// costs microseconds per message. `seal_dm`/`open_dm` are the uncached one-shot forms.
///
/// @par Thread safety
/// Free functions: thread-safe. `BoxKeyCache`: distinct objects safe, shared objects unsafe.
#pragma once

#include <claudemesh/bytes.hpp>
#include <claudemesh/export.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/keys.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh {

/// An encrypted body as it travels on the wire: both fields are standard base64 with padding.
struct SealedMessage {
  std::string nonce;       ///< 24 bytes, base64 (32 characters)
  std::string ciphertext;  ///< MAC ‖ encrypted body, base64
  bool operator==(const SealedMessage&) const = default;
};

/// Encrypt `plaintext` from `sender` to `recipient` with `crypto_box`, converting keys on every call.
/// Prefer `BoxKeyCache::seal` for anything but one-off messages.
/// @returns `Errc::invalid_key` if `recipient` is not a valid ed25519 point.
CLAUDEMESH_API Result<SealedMessage> seal_dm(const Identity& sender, const PublicKey& recipient,
                                             std::span<const std::uint8_t> plaintext, const RandomSource& rng = {});

/// Decrypt a direct message `sealed` that `sender` sent to `recipient`.
/// @returns the plaintext, or `Errc::decrypt_failed` for any failure: bad base64, a nonce that is not
/// 24 bytes, a truncated ciphertext, a wrong key or tampered bytes. `Errc::invalid_key` if `sender` is not
/// a valid ed25519 point.
CLAUDEMESH_API Result<Bytes> open_dm(const Identity& recipient, const PublicKey& sender, const SealedMessage& sealed);

/// A bounded least-recently-used cache of precomputed `crypto_box` shared keys, keyed by
/// (our public key, peer public key). Entries are wiped when evicted or when the cache is destroyed.
///
/// @par Example
/// @code
/// claudemesh::BoxKeyCache keys;
/// auto sealed = keys.seal(me, bob, claudemesh::as_bytes("hi"));
/// auto plain = keys.open(bob_identity, me.public_key(), *sealed);   // on Bob's side
/// @endcode
class CLAUDEMESH_API BoxKeyCache {
 public:
  /// Hit/miss counters, for metrics and benchmarks.
  struct Stats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t evictions = 0;
  };

  /// @param capacity the most shared keys kept (at least 1).
  explicit BoxKeyCache(std::size_t capacity = 4096);
  BoxKeyCache(BoxKeyCache&&) noexcept;
  BoxKeyCache& operator=(BoxKeyCache&&) noexcept;
  BoxKeyCache(const BoxKeyCache&) = delete;
  BoxKeyCache& operator=(const BoxKeyCache&) = delete;
  ~BoxKeyCache();

  /// Like `seal_dm`, with the shared key taken from (or added to) the cache.
  Result<SealedMessage> seal(const Identity& self, const PublicKey& peer, std::span<const std::uint8_t> plaintext,
                             const RandomSource& rng = {});
  /// Like `open_dm`, with the shared key taken from (or added to) the cache.
  Result<Bytes> open(const Identity& self, const PublicKey& peer, const SealedMessage& sealed);

  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] std::size_t capacity() const noexcept;
  [[nodiscard]] Stats stats() const noexcept;
  /// Drop (and wipe) every entry.
  void clear() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Encrypt with a symmetric key (`crypto_secretbox`, fresh random 24-byte nonce). Used for topic bodies.
CLAUDEMESH_API SealedMessage seal_with_key(const SymmetricKey& key, std::span<const std::uint8_t> plaintext,
                                           const RandomSource& rng = {});

/// Decrypt with a symmetric key. @returns `Errc::decrypt_failed` for any failure.
CLAUDEMESH_API Result<Bytes> open_with_key(const SymmetricKey& key, const SealedMessage& sealed);

/// Seal a symmetric key (a topic or mesh key) to a member: `crypto_box_seal` to the member's derived
/// x25519 key. Only the holder of the member's secret can open it; the sender stays anonymous.
/// @returns standard base64 of the sealed box (80 bytes), or `Errc::invalid_key` for a bad member key.
CLAUDEMESH_API Result<std::string> seal_key_for(const PublicKey& member, const SymmetricKey& key);

/// Open a symmetric key sealed to `recipient` by `seal_key_for`.
/// @returns `Errc::decrypt_failed` for bad base64, a wrong length, a wrong recipient or tampered bytes.
CLAUDEMESH_API Result<SymmetricKey> open_sealed_key(const Identity& recipient, std::string_view sealed);

}  // namespace claudemesh
