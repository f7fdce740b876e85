// SPDX-License-Identifier: MIT
// crypto_box with a precomputed shared key: the one implementation behind seal_dm/open_dm and
// BoxKeyCache, so the cached and uncached paths cannot drift apart.
#pragma once

#include <claudemesh/crypto.hpp>

namespace claudemesh::core {

struct SharedKeyTag;
/// The output of crypto_box_beforenm (32 bytes).
using SharedKey = Secret<32, SharedKeyTag>;

/// Precompute the shared key between our x25519 secret and a peer's ed25519 public key.
Result<SharedKey> precompute_shared_key(const X25519SecretKey& ours, const PublicKey& peer);

SealedMessage seal_with_shared_key(const SharedKey& key, std::span<const std::uint8_t> plaintext,
                                   const RandomSource& rng);
Result<Bytes> open_with_shared_key(const SharedKey& key, const SealedMessage& sealed);

}  // namespace claudemesh::core
