// SPDX-License-Identifier: MIT
#include "core/backoff.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace claudemesh::core {

std::int64_t backoff_ms(std::chrono::milliseconds base_ms, std::chrono::milliseconds cap_ms, double jitter,
                        int attempt, double unit) noexcept {
  const double spread_width = std::isnan(jitter) ? 0.0 : std::clamp(jitter, 0.0, 1.0);
  const double spread = std::isnan(unit) ? 0.5 : std::clamp(unit, 0.0, 1.0);
  const auto base = static_cast<double>(std::max<std::int64_t>(base_ms.count(), 0));
  const auto cap = static_cast<double>(std::max<std::int64_t>(cap_ms.count(), 0));
  // 2^62 ms is far past any cap, and keeps ldexp's result finite.
  const double nominal = std::min(cap, std::ldexp(base, std::clamp(attempt - 1, 0, 62)));
  const double delay =
      std::min(nominal * (1.0 - spread_width + 2.0 * spread_width * spread), cap * (1.0 + spread_width));
  return std::llround(delay);
}

double random_unit(const RandomSource& rng) {
  std::array<std::uint8_t, 8> bytes{};
  fill_random(rng, bytes);
  std::uint64_t draw = 0;
  for (const auto byte : bytes) draw = (draw << 8U) | byte;
  return std::ldexp(static_cast<double>(draw >> 11U), -53);
}

}  // namespace claudemesh::core
