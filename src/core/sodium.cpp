// SPDX-License-Identifier: MIT
#include "core/sodium.hpp"

#include <claudemesh/system.hpp>

#include <sodium.h>

#include <chrono>
#include <cstdlib>

namespace claudemesh {
namespace core {

void ensure_sodium() noexcept {
  static const bool ready = [] { return sodium_init() >= 0; }();
  if (!ready) std::abort();
}

}  // namespace core

void fill_random(const RandomSource& rng, std::span<std::uint8_t> out) {
  if (rng) {
    rng(out);
    return;
  }
  core::ensure_sodium();
  randombytes_buf(out.data(), out.size());
}

std::int64_t now_ms(const Clock& clock) {
  if (clock) return clock();
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace claudemesh
