// SPDX-License-Identifier: MIT
#include <claudemesh/keys.hpp>

#include "core/sodium.hpp"

#include <sodium.h>

namespace claudemesh {

Result<PublicKey> PublicKey::from_hex(std::string_view hex) {
  auto bytes = from_hex_exact<32>(hex);
  if (!bytes) return fail(Errc::malformed, "public key: " + bytes.error().message);
  return PublicKey{*bytes};
}

std::string PublicKey::hex() const { return to_hex(bytes); }

std::string PublicKey::fingerprint() const {
  core::ensure_sodium();
  ByteArray<crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), bytes.data(), bytes.size());
  const std::string hex16 = to_hex(std::span(digest).first(8));
  return hex16.substr(0, 4) + "-" + hex16.substr(4, 4) + "-" + hex16.substr(8, 4) + "-" + hex16.substr(12, 4);
}

Result<Signature> Signature::from_hex(std::string_view hex) {
  auto bytes = from_hex_exact<64>(hex);
  if (!bytes) return fail(Errc::malformed, "signature: " + bytes.error().message);
  return Signature{*bytes};
}

std::string Signature::hex() const { return to_hex(bytes); }

SigningKeyPair SigningKeyPair::generate(const RandomSource& rng) {
  ByteArray<crypto_sign_SEEDBYTES> seed{};
  fill_random(rng, seed);
  auto pair = from_seed(seed);
  secure_wipe(seed.data(), seed.size());
  return pair;
}

SigningKeyPair SigningKeyPair::from_seed(std::span<const std::uint8_t, 32> seed) {
  core::ensure_sodium();
  SigningKeyPair pair;
  crypto_sign_seed_keypair(pair.public_key.bytes.data(), pair.secret_key.data(), seed.data());
  return pair;
}

Result<SigningKeyPair> SigningKeyPair::from_secret_hex(std::string_view hex) {
  core::ensure_sodium();
  auto bytes = from_hex_exact<64>(hex);
  if (!bytes) return fail(Errc::malformed, "secret key: " + bytes.error().message);
  auto pair = from_seed(std::span(*bytes).first<32>());
  const bool consistent = constant_time_equal(pair.secret_key.bytes(), *bytes);
  secure_wipe(bytes->data(), bytes->size());
  if (!consistent) return fail(Errc::invalid_key, "secret key: embedded public key does not match its seed");
  return pair;
}

Signature sign(const Ed25519SecretKey& secret, std::span<const std::uint8_t> message) {
  core::ensure_sodium();
  Signature sig;
  crypto_sign_detached(sig.bytes.data(), nullptr, message.data(), message.size(), secret.data());
  return sig;
}

bool verify(const PublicKey& key, std::span<const std::uint8_t> message, const Signature& signature) noexcept {
  core::ensure_sodium();
  return crypto_sign_verify_detached(signature.bytes.data(), message.data(), message.size(), key.bytes.data()) == 0;
}

Result<X25519PublicKey> to_x25519(const PublicKey& key) {
  core::ensure_sodium();
  X25519PublicKey out;
  if (crypto_sign_ed25519_pk_to_curve25519(out.bytes.data(), key.bytes.data()) != 0) {
    return fail(Errc::invalid_key, "public key is not a valid ed25519 point");
  }
  return out;
}

X25519SecretKey to_x25519(const Ed25519SecretKey& secret) {
  core::ensure_sodium();
  X25519SecretKey out;
  crypto_sign_ed25519_sk_to_curve25519(out.data(), secret.data());
  return out;
}

SymmetricKey generate_symmetric_key(const RandomSource& rng) {
  SymmetricKey key;
  fill_random(rng, key.mutable_bytes());
  return key;
}

}  // namespace claudemesh
