// SPDX-License-Identifier: MIT
#include <claudemesh/crypto.hpp>

#include "core/box.hpp"
#include "core/sodium.hpp"

#include <sodium.h>

namespace claudemesh {
namespace core {
namespace {

static_assert(crypto_box_NONCEBYTES == crypto_secretbox_NONCEBYTES);
constexpr std::size_t kNonceBytes = crypto_box_NONCEBYTES;
constexpr std::size_t kMacBytes = crypto_box_MACBYTES;
static_assert(kMacBytes == crypto_secretbox_MACBYTES);

struct DecodedBox {
  ByteArray<kNonceBytes> nonce{};
  Bytes ciphertext;
};

// Shared by the box and secretbox paths: the failure modes before decryption are identical.
Result<DecodedBox> decode_sealed(const SealedMessage& sealed) {
  auto nonce = from_base64(sealed.nonce);
  if (!nonce) return fail(Errc::decrypt_failed, "nonce is not valid base64");
  if (nonce->size() != kNonceBytes) return fail(Errc::decrypt_failed, "nonce is not 24 bytes");
  auto ciphertext = from_base64(sealed.ciphertext);
  if (!ciphertext) return fail(Errc::decrypt_failed, "ciphertext is not valid base64");
  if (ciphertext->size() < kMacBytes) return fail(Errc::decrypt_failed, "ciphertext is shorter than its MAC");
  DecodedBox out;
  std::copy(nonce->begin(), nonce->end(), out.nonce.begin());
  out.ciphertext = std::move(*ciphertext);
  return out;
}

template <class Encrypt>
SealedMessage seal_generic(std::span<const std::uint8_t> plaintext, const RandomSource& rng, Encrypt encrypt) {
  ByteArray<kNonceBytes> nonce{};
  fill_random(rng, nonce);
  Bytes ciphertext(plaintext.size() + kMacBytes);
  encrypt(ciphertext.data(), nonce.data());
  return SealedMessage{to_base64(nonce), to_base64(ciphertext)};
}

}  // namespace

Result<SharedKey> precompute_shared_key(const X25519SecretKey& ours, const PublicKey& peer) {
  ensure_sodium();
  auto peer_box = to_x25519(peer);
  if (!peer_box) return fail(peer_box.error());
  SharedKey key;
  if (crypto_box_beforenm(key.data(), peer_box->bytes.data(), ours.data()) != 0) {
    return fail(Errc::invalid_key, "peer key yields a weak shared secret");
  }
  return key;
}

SealedMessage seal_with_shared_key(const SharedKey& key, std::span<const std::uint8_t> plaintext,
                                   const RandomSource& rng) {
  ensure_sodium();
  return seal_generic(plaintext, rng, [&](std::uint8_t* out, const std::uint8_t* nonce) {
    crypto_box_easy_afternm(out, plaintext.data(), plaintext.size(), nonce, key.data());
  });
}

Result<Bytes> open_with_shared_key(const SharedKey& key, const SealedMessage& sealed) {
  ensure_sodium();
  auto box = decode_sealed(sealed);
  if (!box) return fail(box.error());
  Bytes plain(box->ciphertext.size() - kMacBytes);
  if (crypto_box_open_easy_afternm(plain.data(), box->ciphertext.data(), box->ciphertext.size(), box->nonce.data(),
                                   key.data()) != 0) {
    return fail(Errc::decrypt_failed, "message does not authenticate (wrong key or tampered)");
  }
  return plain;
}

}  // namespace core

Result<SealedMessage> seal_dm(const Identity& sender, const PublicKey& recipient,
                              std::span<const std::uint8_t> plaintext, const RandomSource& rng) {
  auto key = core::precompute_shared_key(sender.box_secret_key(), recipient);
  if (!key) return fail(key.error());
  return core::seal_with_shared_key(*key, plaintext, rng);
}

Result<Bytes> open_dm(const Identity& recipient, const PublicKey& sender, const SealedMessage& sealed) {
  auto key = core::precompute_shared_key(recipient.box_secret_key(), sender);
  if (!key) return fail(key.error());
  return core::open_with_shared_key(*key, sealed);
}

SealedMessage seal_with_key(const SymmetricKey& key, std::span<const std::uint8_t> plaintext,
                            const RandomSource& rng) {
  core::ensure_sodium();
  return core::seal_generic(plaintext, rng, [&](std::uint8_t* out, const std::uint8_t* nonce) {
    crypto_secretbox_easy(out, plaintext.data(), plaintext.size(), nonce, key.data());
  });
}

Result<Bytes> open_with_key(const SymmetricKey& key, const SealedMessage& sealed) {
  core::ensure_sodium();
  auto box = core::decode_sealed(sealed);
  if (!box) return fail(box.error());
  Bytes plain(box->ciphertext.size() - core::kMacBytes);
  if (crypto_secretbox_open_easy(plain.data(), box->ciphertext.data(), box->ciphertext.size(), box->nonce.data(),
                                 key.data()) != 0) {
    return fail(Errc::decrypt_failed, "message does not authenticate (wrong key or tampered)");
  }
  return plain;
}

Result<std::string> seal_key_for(const PublicKey& member, const SymmetricKey& key) {
  core::ensure_sodium();
  auto member_box = to_x25519(member);
  if (!member_box) return fail(member_box.error());
  ByteArray<crypto_box_SEALBYTES + SymmetricKey::size> sealed{};
  if (crypto_box_seal(sealed.data(), key.data(), SymmetricKey::size, member_box->bytes.data()) != 0) {
    return fail(Errc::crypto_failure, "crypto_box_seal failed");
  }
  return to_base64(sealed);
}

Result<SymmetricKey> open_sealed_key(const Identity& recipient, std::string_view sealed) {
  core::ensure_sodium();
  auto bytes = from_base64(sealed);
  if (!bytes) return fail(Errc::decrypt_failed, "sealed key is not valid base64");
  if (bytes->size() != crypto_box_SEALBYTES + SymmetricKey::size) {
    return fail(Errc::decrypt_failed, "sealed key has the wrong length");
  }
  SymmetricKey key;
  if (crypto_box_seal_open(key.data(), bytes->data(), bytes->size(), recipient.box_public_key().bytes.data(),
                           recipient.box_secret_key().data()) != 0) {
    return fail(Errc::decrypt_failed, "sealed key does not open with this identity");
  }
  return key;
}

}  // namespace claudemesh
