// SPDX-License-Identifier: MIT
// ULID ids. Expected strings were computed independently with /usr/bin/python3:
//
//   A = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
//   def ulid(ms, rnd):
//       n = ms << 80 | int.from_bytes(rnd, "big")
//       return "".join(A[(n >> (5 * (25 - i))) & 31] for i in range(26))
//   ulid(1469918176385, bytes(range(10)))           # 01ARYZ6S41000G40R40M30E209
//   ulid(1700000000000, bytes.fromhex("0123456789abcdef0123"))
//   ulid(5, b"\xff" * 10), ulid(2**48 - 1, b"\xff" * 10)
#include <claudemesh/ids.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace claudemesh {
namespace {

// A clock the test sets by hand.
struct ManualClock {
  std::shared_ptr<std::int64_t> ms = std::make_shared<std::int64_t>(0);
  Clock clock() const {
    return [ms = ms] { return *ms; };
  }
};

// Fills every request with the same bytes and counts the requests.
struct FixedRng {
  std::array<std::uint8_t, 10> bytes{};
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  RandomSource source() const {
    return [pattern = bytes, calls = calls](std::span<std::uint8_t> out) {
      ++*calls;
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = pattern[i % pattern.size()];
    };
  }
};

std::array<std::uint8_t, 10> counting_bytes() {
  std::array<std::uint8_t, 10> b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i);
  return b;
}

TEST_CASE("an id encodes the timestamp and randomness as the ULID spec says") {
  ManualClock clock;
  *clock.ms = 1469918176385;
  FixedRng rng{counting_bytes()};
  IdGenerator ids(clock.clock(), rng.source());
  CHECK(ids.next() == "01ARYZ6S41000G40R40M30E209");

  *clock.ms = 1700000000000;
  FixedRng rng2{{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23}};
  IdGenerator ids2(clock.clock(), rng2.source());
  CHECK(ids2.next() == "01HF7YAT0004HMASW9NF6YY093");
}

TEST_CASE("ids in the same millisecond increment the random part by one") {
  ManualClock clock;
  *clock.ms = 1469918176385;
  FixedRng rng{counting_bytes()};
  IdGenerator ids(clock.clock(), rng.source());
  CHECK(ids.next() == "01ARYZ6S41000G40R40M30E209");
  CHECK(ids.next() == "01ARYZ6S41000G40R40M30E20A");
  CHECK(ids.next() == "01ARYZ6S41000G40R40M30E20B");
  CHECK(*rng.calls == 1);
}

TEST_CASE("a later millisecond draws fresh randomness") {
  ManualClock clock;
  *clock.ms = 1000;
  FixedRng rng{counting_bytes()};
  IdGenerator ids(clock.clock(), rng.source());
  const std::string first = ids.next();
  *clock.ms = 1001;
  const std::string second = ids.next();
  CHECK(*rng.calls == 2);
  CHECK(second > first);
  CHECK(id_timestamp_ms(second) == 1001);
  CHECK(second.substr(10) == first.substr(10));  // same pattern from the fixed RNG: not incremented
}

TEST_CASE("a clock that steps back keeps the last timestamp and still increases") {
  ManualClock clock;
  *clock.ms = 1000;
  FixedRng rng{counting_bytes()};
  IdGenerator ids(clock.clock(), rng.source());
  const std::string first = ids.next();
  *clock.ms = 400;
  const std::string second = ids.next();
  CHECK(second > first);
  CHECK(id_timestamp_ms(second) == 1000);
  CHECK(*rng.calls == 1);
  *clock.ms = 1000;  // back to the last millisecond: still monotonic
  CHECK(ids.next() > second);
}

TEST_CASE("overflow of the random part advances the timestamp by one millisecond") {
  ManualClock clock;
  *clock.ms = 5;
  FixedRng rng;
  rng.bytes.fill(0xff);
  IdGenerator ids(clock.clock(), rng.source());
  const std::string first = ids.next();
  CHECK(first == "0000000005ZZZZZZZZZZZZZZZZ");
  const std::string second = ids.next();
  CHECK(second == "0000000006ZZZZZZZZZZZZZZZZ");
  CHECK(second > first);
  CHECK(*rng.calls == 2);
}

TEST_CASE("clock readings outside the ULID range are clamped into it") {
  ManualClock clock;
  FixedRng rng;
  *clock.ms = -1;
  IdGenerator before_epoch(clock.clock(), rng.source());
  CHECK(id_timestamp_ms(before_epoch.next()) == 0);

  *clock.ms = std::numeric_limits<std::int64_t>::max();
  rng.bytes.fill(0xff);
  IdGenerator far_future(clock.clock(), rng.source());
  const std::string last = far_future.next();
  CHECK(last == "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
  // Overflowing at the largest timestamp cannot advance further, but never yields an invalid id.
  const std::string after = far_future.next();
  CHECK(is_valid_id(after));
  CHECK(id_timestamp_ms(after) == max_id_timestamp_ms);
}

TEST_CASE("the system clock and CSPRNG give valid, strictly increasing ids") {
  IdGenerator ids;
  const std::int64_t start = now_ms();
  std::string previous = ids.next();
  for (int i = 0; i < 10000; ++i) {
    std::string id = ids.next();
    REQUIRE(id > previous);
    previous = std::move(id);
  }
  CHECK(is_valid_id(previous));
  const auto stamp = id_timestamp_ms(previous);
  REQUIRE(stamp.has_value());
  CHECK(*stamp >= start);
  CHECK(*stamp <= now_ms() + 1);
}

TEST_CASE("a moved generator continues the sequence") {
  ManualClock clock;
  *clock.ms = 1469918176385;
  FixedRng rng{counting_bytes()};
  IdGenerator ids(clock.clock(), rng.source());
  CHECK(ids.next() == "01ARYZ6S41000G40R40M30E209");
  IdGenerator moved = std::move(ids);
  CHECK(moved.next() == "01ARYZ6S41000G40R40M30E20A");
}

TEST_CASE("is_valid_id accepts canonical ids and rejects everything else") {
  CHECK(is_valid_id("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
  CHECK(is_valid_id("00000000000000000000000000"));
  CHECK(is_valid_id("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"));

  using namespace std::string_view_literals;
  const std::string_view invalid[] = {
      ""sv,
      "01ARZ3NDEKTSV4RRFFQ69G5FA"sv,    // 25 characters
      "01ARZ3NDEKTSV4RRFFQ69G5FAVV"sv,  // 27 characters
      "01arz3ndektsv4rrffq69g5fav"sv,   // lowercase
      "01ARZ3NDEKTSV4RRFFQ69G5FAv"sv,   // one lowercase character
      "01ARZ3NDEKTSV4RRFFQ69G5FAI"sv,   // I is not in the alphabet
      "01ARZ3NDEKTSV4RRFFQ69G5FAL"sv,   // L
      "01ARZ3NDEKTSV4RRFFQ69G5FAO"sv,   // O
      "01ARZ3NDEKTSV4RRFFQ69G5FAU"sv,   // U
      "80000000000000000000000000"sv,   // first character '8': more than 128 bits
      "Z0000000000000000000000000"sv,   // first character 'Z'
      "01ARZ3NDEKTSV4RRFFQ69G5FA-"sv,   // punctuation
      "01ARZ3NDEKTSV4RRFFQ69G5FA "sv,   // space
      "01ARZ3NDEKTSV4RRFFQ69G5F\0A"sv,  // NUL inside
      "01ARZ3NDEKTSV4RRFFQ69G5F\xc3\x89"sv,  // non-ASCII (É), 26 bytes
      "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"sv,
  };
  for (const auto id : invalid) {
    CAPTURE(id);
    CHECK_FALSE(is_valid_id(id));
    CHECK_FALSE(id_timestamp_ms(id).has_value());
  }
}

TEST_CASE("id_timestamp_ms reads the timestamp back") {
  CHECK(id_timestamp_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV") == 1469922850259);
  CHECK(id_timestamp_ms("00000000000000000000000000") == 0);
  CHECK(id_timestamp_ms("7ZZZZZZZZZZZZZZZZZZZZZZZZZ") == max_id_timestamp_ms);
  ManualClock clock;
  *clock.ms = 1234567890123;
  IdGenerator ids(clock.clock(), FixedRng{}.source());
  CHECK(id_timestamp_ms(ids.next()) == 1234567890123);
}

}  // namespace
}  // namespace claudemesh
