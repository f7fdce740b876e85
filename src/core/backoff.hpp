// SPDX-License-Identifier: MIT
// Capped exponential backoff with jitter, shared by the outbox's retries and the broker client's reconnects.
#pragma once

#include <claudemesh/system.hpp>

#include <chrono>
#include <cstdint>

namespace claudemesh::core {

/// The delay after attempt number `attempt` (1 for the first): min(cap, base * 2^(attempt-1)), scaled by
/// 1 - jitter + 2 * jitter * `unit` and never above cap * (1 + jitter). `unit` is in [0, 1) (NaN counts as
/// the middle); the jitter is clamped to [0, 1]; a negative base or cap counts as 0.
std::int64_t backoff_ms(std::chrono::milliseconds base, std::chrono::milliseconds cap, double jitter, int attempt,
                        double unit) noexcept;

/// A number uniform in [0, 1) from 53 bits of `rng` (the system CSPRNG when empty).
double random_unit(const RandomSource& rng);

}  // namespace claudemesh::core
