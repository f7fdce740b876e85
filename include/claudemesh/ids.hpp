// SPDX-License-Identifier: MIT
/// @file ids.hpp
/// Message and request ids: ULIDs (https://github.com/ulid/spec).
///
/// An id is 128 bits — a 48-bit big-endian Unix timestamp in milliseconds followed by 80 random bits —
/// written as 26 characters of Crockford base32 (`0123456789ABCDEFGHJKMNPQRSTVWXYZ`). Ids sort
/// lexicographically by time, e.g. `01ARZ3NDEKTSV4RRFFQ69G5FAV`.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/system.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace claudemesh {

/// Largest timestamp a ULID can carry: 2^48 - 1 ms after the Unix epoch (year 10889).
inline constexpr std::int64_t max_id_timestamp_ms = (std::int64_t{1} << 48) - 1;

/// Makes ULIDs that are strictly increasing (as strings) for the life of the generator.
///
/// `next()` follows the spec's monotonic mode: when the clock reads a later millisecond than the last
/// id, the id gets that timestamp and 80 fresh random bits; when it reads the same or an **earlier**
/// millisecond (several ids per ms, or the clock stepped back), the id keeps the last timestamp and adds
/// one to the last random part. If that addition overflows 80 bits, the timestamp advances by 1 ms and
/// the random part is drawn afresh. Clock readings outside [0, `max_id_timestamp_ms`] are clamped into it;
/// ordering is guaranteed while timestamps stay below `max_id_timestamp_ms`.
///
/// Ids are unique, not secret: within one millisecond the next id is the last one plus one, so never
/// use an id as a token or a nonce. Not copyable: two copies would continue the same sequence and could
/// issue the same id.
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe.
///
/// @par Example
/// @code
/// claudemesh::IdGenerator ids;           // system clock and CSPRNG
/// std::string a = ids.next(), b = ids.next();
/// // a < b, both 26 characters
/// @endcode
class CLAUDEMESH_API IdGenerator {
 public:
  /// @param clock milliseconds since the Unix epoch; empty means the system clock
  /// @param rng random bytes; empty means the system CSPRNG
  explicit IdGenerator(Clock clock = {}, RandomSource rng = {});

  IdGenerator(const IdGenerator&) = delete;
  IdGenerator& operator=(const IdGenerator&) = delete;
  IdGenerator(IdGenerator&&) = default;
  IdGenerator& operator=(IdGenerator&&) = default;
  ~IdGenerator() = default;

  /// The next id: 26 characters, greater than every id this generator returned before.
  /// @returns the id; cannot fail.
  std::string next();

 private:
  Clock clock_;
  RandomSource rng_;
  std::int64_t last_ms_ = -1;  ///< timestamp of the last id; -1 before the first
  std::array<std::uint8_t, 10> last_random_{};
};

/// True if `id` has the form of an id: 26 characters of the Crockford alphabet, uppercase only, with a
/// first character of at most '7' (a larger one would overflow 128 bits). `I`, `L`, `O`, `U` and all
/// lowercase letters are rejected, since ids are always produced in canonical form.
/// Pure: thread-safe.
CLAUDEMESH_API bool is_valid_id(std::string_view id) noexcept;

/// The timestamp (ms since the Unix epoch) an id carries, or `std::nullopt` if `!is_valid_id(id)`.
/// Pure: thread-safe.
CLAUDEMESH_API std::optional<std::int64_t> id_timestamp_ms(std::string_view id) noexcept;

}  // namespace claudemesh
