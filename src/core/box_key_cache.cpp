// SPDX-License-Identifier: MIT
#include <claudemesh/crypto.hpp>

#include "core/box.hpp"

#include <algorithm>
#include <cstring>
#include <list>
#include <unordered_map>

namespace claudemesh {
namespace {

// (our public key ‖ peer public key)
using CacheKey = ByteArray<64>;

struct CacheKeyHash {
  std::size_t operator()(const CacheKey& key) const noexcept {
    // FNV-1a over all 64 bytes: keys are attacker-chosen, so don't hash a prefix only.
    std::uint64_t h = 1469598103934665603ull;
    for (auto b : key) h = (h ^ b) * 1099511628211ull;
    return static_cast<std::size_t>(h);
  }
};

CacheKey make_key(const PublicKey& ours, const PublicKey& peer) {
  CacheKey key{};
  std::memcpy(key.data(), ours.bytes.data(), 32);
  std::memcpy(key.data() + 32, peer.bytes.data(), 32);
  return key;
}

}  // namespace

struct BoxKeyCache::Impl {
  struct Entry {
    CacheKey key;
    core::SharedKey shared;
  };
  std::size_t capacity;
  std::list<Entry> lru;  // most recently used first
  std::unordered_map<CacheKey, std::list<Entry>::iterator, CacheKeyHash> index;
  Stats stats;

  Result<const core::SharedKey*> lookup(const Identity& self, const PublicKey& peer) {
    const CacheKey key = make_key(self.public_key(), peer);
    if (auto it = index.find(key); it != index.end()) {
      ++stats.hits;
      lru.splice(lru.begin(), lru, it->second);
      return &it->second->shared;
    }
    ++stats.misses;
    auto shared = core::precompute_shared_key(self.box_secret_key(), peer);
    if (!shared) return fail(shared.error());
    if (lru.size() >= capacity) {
      index.erase(lru.back().key);
      lru.pop_back();  // the SharedKey destructor wipes it
      ++stats.evictions;
    }
    lru.push_front(Entry{key, std::move(*shared)});
    index.emplace(key, lru.begin());
    return &lru.front().shared;
  }
};

BoxKeyCache::BoxKeyCache(std::size_t capacity) : impl_(std::make_unique<Impl>()) {
  impl_->capacity = std::max<std::size_t>(capacity, 1);
}
BoxKeyCache::BoxKeyCache(BoxKeyCache&&) noexcept = default;
BoxKeyCache& BoxKeyCache::operator=(BoxKeyCache&&) noexcept = default;
BoxKeyCache::~BoxKeyCache() = default;

Result<SealedMessage> BoxKeyCache::seal(const Identity& self, const PublicKey& peer,
                                        std::span<const std::uint8_t> plaintext, const RandomSource& rng) {
  auto shared = impl_->lookup(self, peer);
  if (!shared) return fail(shared.error());
  return core::seal_with_shared_key(**shared, plaintext, rng);
}

Result<Bytes> BoxKeyCache::open(const Identity& self, const PublicKey& peer, const SealedMessage& sealed) {
  auto shared = impl_->lookup(self, peer);
  if (!shared) return fail(shared.error());
  return core::open_with_shared_key(**shared, sealed);
}

std::size_t BoxKeyCache::size() const noexcept { return impl_->lru.size(); }
std::size_t BoxKeyCache::capacity() const noexcept { return impl_->capacity; }
BoxKeyCache::Stats BoxKeyCache::stats() const noexcept { return impl_->stats; }
void BoxKeyCache::clear() noexcept {
  impl_->index.clear();
  impl_->lru.clear();
}

}  // namespace claudemesh
