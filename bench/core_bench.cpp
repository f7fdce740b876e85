// SPDX-License-Identifier: MIT
// Core crypto costs: sealing and opening a 1 KiB DM with the precomputed-key cache against the uncached
// paths (our seal_dm/open_dm, and libsodium's crypto_box_easy with x25519 conversion per message, which
// is what the reference did), plus sign, verify and the request fingerprint.
#include <claudemesh/crypto.hpp>
#include <claudemesh/fingerprint.hpp>
#include <claudemesh/signatures.hpp>

#include <benchmark/benchmark.h>
#include <sodium.h>

#include <string>

using namespace claudemesh;

namespace {

const Bytes& body_1k() {
  static const Bytes body(1024, 'x');
  return body;
}

struct Pair {
  Identity alice = Identity::generate(IdentityKind::member);
  Identity bob = Identity::generate(IdentityKind::member);
};

Pair& pair() {
  static Pair p;
  return p;
}

void BM_seal_dm_1k_cached(benchmark::State& state) {
  BoxKeyCache cache;
  auto& [alice, bob] = pair();
  for (auto _ : state) benchmark::DoNotOptimize(cache.seal(alice, bob.public_key(), body_1k()));
}

void BM_open_dm_1k_cached(benchmark::State& state) {
  BoxKeyCache cache;
  auto& [alice, bob] = pair();
  const auto sealed = *seal_dm(alice, bob.public_key(), body_1k());
  for (auto _ : state) benchmark::DoNotOptimize(cache.open(bob, alice.public_key(), sealed));
}

void BM_seal_dm_1k_uncached(benchmark::State& state) {
  auto& [alice, bob] = pair();
  for (auto _ : state) benchmark::DoNotOptimize(seal_dm(alice, bob.public_key(), body_1k()));
}

void BM_open_dm_1k_uncached(benchmark::State& state) {
  auto& [alice, bob] = pair();
  const auto sealed = *seal_dm(alice, bob.public_key(), body_1k());
  for (auto _ : state) benchmark::DoNotOptimize(open_dm(bob, alice.public_key(), sealed));
}

// The reference's per-message path: convert both ed25519 keys, then crypto_box_easy (no base64).
void BM_libsodium_crypto_box_easy_1k_with_conversion(benchmark::State& state) {
  auto& [alice, bob] = pair();
  unsigned char nonce[crypto_box_NONCEBYTES];
  Bytes out(body_1k().size() + crypto_box_MACBYTES);
  for (auto _ : state) {
    unsigned char peer_x[32], our_x[32];
    crypto_sign_ed25519_pk_to_curve25519(peer_x, bob.public_key().bytes.data());
    crypto_sign_ed25519_sk_to_curve25519(our_x, alice.secret_key().data());
    randombytes_buf(nonce, sizeof nonce);
    crypto_box_easy(out.data(), body_1k().data(), body_1k().size(), nonce, peer_x, our_x);
    benchmark::DoNotOptimize(out.data());
    sodium_memzero(our_x, sizeof our_x);
  }
}

// crypto_box_easy with keys already converted: the cost of the scalar multiplication alone.
void BM_libsodium_crypto_box_easy_1k(benchmark::State& state) {
  auto& [alice, bob] = pair();
  auto peer_x = *to_x25519(bob.public_key());
  unsigned char nonce[crypto_box_NONCEBYTES];
  Bytes out(body_1k().size() + crypto_box_MACBYTES);
  for (auto _ : state) {
    randombytes_buf(nonce, sizeof nonce);
    crypto_box_easy(out.data(), body_1k().data(), body_1k().size(), nonce, peer_x.bytes.data(),
                    alice.box_secret_key().data());
    benchmark::DoNotOptimize(out.data());
  }
}

void BM_sign_member_hello(benchmark::State& state) {
  auto& alice = pair().alice;
  for (auto _ : state) benchmark::DoNotOptimize(sign_member_hello(alice, "mesh_01", "member_01", 1767225600123));
}

void BM_verify_member_hello(benchmark::State& state) {
  const auto proof = sign_member_hello(pair().alice, "mesh_01", "member_01", 1767225600123);
  for (auto _ : state) benchmark::DoNotOptimize(verify_member_hello(proof, 1767225600123));
}

void BM_request_fingerprint_1k(benchmark::State& state) {
  const std::string meta = R"({"clientMessageId":"01JD0000000000000000000000","priority":"next","mentions":["bob"]})";
  const std::string peer(64, 'a');
  for (auto _ : state) {
    benchmark::DoNotOptimize(request_fingerprint({.destination_kind = "dm", .destination_ref = peer,
                                                  .priority = "next", .meta_json = meta, .body = body_1k()}));
  }
}

}  // namespace

BENCHMARK(BM_seal_dm_1k_cached);
BENCHMARK(BM_open_dm_1k_cached);
BENCHMARK(BM_seal_dm_1k_uncached);
BENCHMARK(BM_open_dm_1k_uncached);
BENCHMARK(BM_libsodium_crypto_box_easy_1k_with_conversion);
BENCHMARK(BM_libsodium_crypto_box_easy_1k);
BENCHMARK(BM_sign_member_hello);
BENCHMARK(BM_verify_member_hello);
BENCHMARK(BM_request_fingerprint_1k);
BENCHMARK_MAIN();
