// SPDX-License-Identifier: MIT
/// @file system.hpp
/// The seams through which libclaudemesh reads the clock and draws randomness.
///
/// Core functions that need time take it as a parameter (`now_ms`); those that need randomness take a
/// `RandomSource`. An empty `RandomSource` (the default everywhere) means the operating system's CSPRNG
/// (libsodium `randombytes_buf`); tests inject a deterministic one to get known answers.
#pragma once

#include <claudemesh/export.hpp>

#include <cstdint>
#include <functional>
#include <span>

namespace claudemesh {

/// Fills the given span with random bytes. Empty means the system CSPRNG.
using RandomSource = std::function<void(std::span<std::uint8_t>)>;

/// Returns the current time in milliseconds since the Unix epoch. Empty means the system clock.
using Clock = std::function<std::int64_t()>;

/// Fill `out` from `rng`, or from the system CSPRNG when `rng` is empty.
CLAUDEMESH_API void fill_random(const RandomSource& rng, std::span<std::uint8_t> out);

/// Milliseconds since the Unix epoch from `clock`, or from the system clock when `clock` is empty.
CLAUDEMESH_API std::int64_t now_ms(const Clock& clock = {});

}  // namespace claudemesh
