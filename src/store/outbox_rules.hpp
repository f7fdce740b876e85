// SPDX-License-Identifier: MIT
// The outbox's rules that need no database: what a valid send is, the §4.5.1 idempotency decision for an
// existing row, and the retry backoff. Pure functions (the randomness is a parameter), unit-tested on their
// own; store/outbox.cpp applies them inside its transactions.
#pragma once

#include <claudemesh/outbox.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include <cstdint>
#include <string_view>

namespace claudemesh::store {

/// 1–128 printable ASCII characters (0x21–0x7e): no spaces, no control characters, no NUL.
bool is_client_message_id(std::string_view id) noexcept;

/// Checks everything `Outbox::accept()` requires of `send` (an empty `client_message_id` is allowed: the
/// outbox mints one). @returns `Errc::invalid_value` naming the first problem.
Result<void> validate_send(const OutboxSend& send);

/// Constant-time equality of two fingerprints (unequal lengths compare false).
bool same_fingerprint(std::string_view a, std::string_view b) noexcept;

/// The idempotency table's decision for a send whose client message id already names `existing`.
OutboxAccept decide_existing(OutboxRow existing, bool same_fingerprint);

/// The retry delay after attempt number `attempts` (1 for the first): `core::backoff_ms()` with the
/// config's base, cap and jitter.
std::int64_t backoff_delay_ms(const OutboxConfig& config, int attempts, double unit) noexcept;


}  // namespace claudemesh::store
