// SPDX-License-Identifier: MIT
#include <claudemesh/ids.hpp>

#include <algorithm>
#include <span>
#include <utility>

namespace claudemesh {
namespace {

constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::size_t kIdLength = 26;
constexpr std::size_t kTimestampChars = 10;  // 50 bits, the top 2 always zero

// Value of a canonical (uppercase) Crockford character, or -1.
constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> table{};
  table.fill(-1);
  for (std::size_t i = 0; i < kCrockford.size(); ++i) {
    table[static_cast<unsigned char>(kCrockford[i])] = static_cast<std::int8_t>(i);
  }
  return table;
}
constexpr auto kDecode = make_decode_table();

int decode_char(char c) noexcept { return kDecode[static_cast<unsigned char>(c)]; }

// Append `chars` base32 characters holding the low 5*chars bits of `value`, most significant first.
void append_base32(std::string& out, std::uint64_t value, int chars) {
  for (int i = chars - 1; i >= 0; --i) out += kCrockford[(value >> (5 * i)) & 0x1F];
}

// The 80-bit random part as two 40-bit halves, so each fits a uint64 and encodes to 8 characters.
std::uint64_t load_40_bits(std::span<const std::uint8_t, 5> bytes) {
  std::uint64_t v = 0;
  for (const std::uint8_t b : bytes) v = v << 8 | b;
  return v;
}

// Add one to a big-endian number. @returns false if it wrapped around to zero.
bool increment(std::span<std::uint8_t> number) {
  for (auto it = number.rbegin(); it != number.rend(); ++it) {
    if (++*it != 0) return true;
  }
  return false;
}

}  // namespace

IdGenerator::IdGenerator(Clock clock, RandomSource rng) : clock_(std::move(clock)), rng_(std::move(rng)) {}

std::string IdGenerator::next() {
  const std::int64_t now = std::clamp(now_ms(clock_), std::int64_t{0}, max_id_timestamp_ms);
  if (now > last_ms_) {
    last_ms_ = now;
    fill_random(rng_, last_random_);
  } else if (!increment(last_random_)) {
    // 2^80 ids in one millisecond: borrow the next millisecond rather than repeat or go backwards.
    last_ms_ = std::min(last_ms_ + 1, max_id_timestamp_ms);
    fill_random(rng_, last_random_);
  }

  std::string id;
  id.reserve(kIdLength);
  append_base32(id, static_cast<std::uint64_t>(last_ms_), static_cast<int>(kTimestampChars));
  const std::span<const std::uint8_t, 10> random(last_random_);
  append_base32(id, load_40_bits(random.first<5>()), 8);
  append_base32(id, load_40_bits(random.last<5>()), 8);
  return id;
}

bool is_valid_id(std::string_view id) noexcept {
  if (id.size() != kIdLength || id[0] > '7') return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return decode_char(c) >= 0; });
}

std::optional<std::int64_t> id_timestamp_ms(std::string_view id) noexcept {
  if (!is_valid_id(id)) return std::nullopt;
  std::int64_t ms = 0;
  for (const char c : id.substr(0, kTimestampChars)) ms = ms << 5 | decode_char(c);
  return ms;
}

}  // namespace claudemesh
