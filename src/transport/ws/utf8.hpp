// SPDX-License-Identifier: MIT
// UTF-8 validation for WebSocket text messages and close reasons (RFC 6455 §5.6, §7.1.6).
// The validator is incremental because a text message arrives in fragments that may split a code point,
// and RFC 6455 §8.1 wants invalid text rejected as soon as it is seen, not after the whole message.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace claudemesh::transport::ws {

/// Incremental UTF-8 validator (RFC 3629: rejects overlongs, surrogates U+D800–DFFF, > U+10FFFF,
/// stray continuation bytes).
///
/// Distinct objects: safe. Shared objects: unsafe.
class Utf8Validator {
 public:
  /// Feed more bytes; false as soon as the input can no longer be valid UTF-8 (fail fast, even
  /// mid-sequence, e.g. 0xF5 or 0xED 0xA0). Once false, it stays false until `reset()`.
  bool feed(std::span<const std::uint8_t> data) noexcept;
  /// True if everything fed so far is complete valid UTF-8 (no partial sequence pending).
  [[nodiscard]] bool complete() const noexcept { return !failed_ && pending_ == 0; }
  /// True once the input has been found invalid.
  [[nodiscard]] bool failed() const noexcept { return failed_; }
  void reset() noexcept { *this = Utf8Validator{}; }

 private:
  std::uint8_t pending_ = 0;  // continuation bytes still expected for the current code point
  // Allowed range of the *next* continuation byte. Only the second byte of a sequence is ever narrower
  // than 80..BF; this is where overlongs, surrogates and code points above U+10FFFF are refused.
  std::uint8_t next_low_ = 0x80;
  std::uint8_t next_high_ = 0xBF;
  bool failed_ = false;
};

/// True if `s` is complete, valid UTF-8.
bool is_valid_utf8(std::string_view s) noexcept;

/// The length of the longest prefix of `s` that is valid UTF-8, ends on a code point boundary, and is
/// at most `max_bytes` long. Used to cut close reasons to fit a control frame.
std::size_t valid_utf8_prefix(std::string_view s, std::size_t max_bytes) noexcept;

}  // namespace claudemesh::transport::ws
