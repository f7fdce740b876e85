// SPDX-License-Identifier: MIT
// The one place that initialises libsodium. Every translation unit that calls libsodium calls
// ensure_sodium() first; it is cheap after the first call and thread-safe (a function-local static).
#pragma once

namespace claudemesh::core {

/// Initialise libsodium once. Aborts the process if libsodium cannot initialise: without a working
/// CSPRNG no key or nonce this library makes would be safe.
void ensure_sodium() noexcept;

}  // namespace claudemesh::core
