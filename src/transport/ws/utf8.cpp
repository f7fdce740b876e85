// SPDX-License-Identifier: MIT
#include "transport/ws/utf8.hpp"

#include <claudemesh/bytes.hpp>

#include <cstring>

namespace claudemesh::transport::ws {
namespace {

// True when none of the 8 bytes at `p` has its high bit set. Text is mostly ASCII, so skipping it a
// word at a time keeps validation off the profile for large messages.
bool ascii_word(const std::uint8_t* p) noexcept {
  std::uint64_t word = 0;
  std::memcpy(&word, p, sizeof word);
  return (word & 0x8080808080808080ULL) == 0;
}

}  // namespace

bool Utf8Validator::feed(std::span<const std::uint8_t> data) noexcept {
  if (failed_) return false;
  const std::uint8_t* p = data.data();
  const std::uint8_t* const end = p + data.size();
  while (p != end) {
    if (pending_ == 0) {
      while (end - p >= 8 && ascii_word(p)) p += 8;
      if (p == end) break;
      const std::uint8_t lead = *p++;
      if (lead < 0x80) continue;
      // Lead bytes per RFC 3629 §4 (Unicode Table 3-7). C0, C1 and F5..FF never appear; 80..BF are
      // continuation bytes without a lead.
      next_low_ = 0x80;
      next_high_ = 0xBF;
      if (lead >= 0xC2 && lead <= 0xDF) {
        pending_ = 1;
      } else if (lead >= 0xE0 && lead <= 0xEF) {
        pending_ = 2;
        if (lead == 0xE0) next_low_ = 0xA0;   // below: overlong 3-byte forms
        if (lead == 0xED) next_high_ = 0x9F;  // above: UTF-16 surrogates D800..DFFF
      } else if (lead >= 0xF0 && lead <= 0xF4) {
        pending_ = 3;
        if (lead == 0xF0) next_low_ = 0x90;   // below: overlong 4-byte forms
        if (lead == 0xF4) next_high_ = 0x8F;  // above: beyond U+10FFFF
      } else {
        failed_ = true;
        return false;
      }
      continue;
    }
    const std::uint8_t byte = *p++;
    if (byte < next_low_ || byte > next_high_) {
      failed_ = true;
      return false;
    }
    next_low_ = 0x80;
    next_high_ = 0xBF;
    --pending_;
  }
  return true;
}

bool is_valid_utf8(std::string_view s) noexcept {
  Utf8Validator validator;
  return validator.feed(as_bytes(s)) && validator.complete();
}

std::size_t valid_utf8_prefix(std::string_view s, std::size_t max_bytes) noexcept {
  const auto bytes = as_bytes(s.substr(0, max_bytes));
  Utf8Validator validator;
  std::size_t boundary = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (!validator.feed(bytes.subspan(i, 1))) break;
    if (validator.complete()) boundary = i + 1;
  }
  return boundary;
}

}  // namespace claudemesh::transport::ws
