// SPDX-License-Identifier: MIT
/// @file bytes.hpp
/// Byte types and the text encodings used on the wire: lowercase hex and standard base64.
///
/// Keys and signatures cross the API as fixed-size byte arrays; secrets as `Secret<N>`, which cannot be
/// copied implicitly and wipes its memory when destroyed.
///
/// @par Thread safety
/// All functions are pure and thread-safe. Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

/// A growable byte buffer.
using Bytes = std::vector<std::uint8_t>;

/// A fixed-size byte array.
template <std::size_t N>
using ByteArray = std::array<std::uint8_t, N>;

/// View a string's characters as bytes (no copy).
inline std::span<const std::uint8_t> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

/// Lowercase hex of `data` ("00ff...").
CLAUDEMESH_API std::string to_hex(std::span<const std::uint8_t> data);

/// Decode hex (either case) into bytes.
/// @returns `Errc::malformed` for an odd length or a non-hex character.
CLAUDEMESH_API Result<Bytes> from_hex(std::string_view hex);

/// Decode exactly `N` bytes of hex. Requires **lowercase** hex of length 2N, as the wire does.
/// @returns `Errc::malformed` for the wrong length, uppercase or non-hex characters.
template <std::size_t N>
Result<ByteArray<N>> from_hex_exact(std::string_view hex);

/// True if `s` is exactly `n` lowercase hex characters.
CLAUDEMESH_API bool is_lower_hex(std::string_view s, std::size_t n) noexcept;

/// Standard base64 (RFC 4648 §4 alphabet, with `=` padding), as libsodium's `ORIGINAL` variant.
CLAUDEMESH_API std::string to_base64(std::span<const std::uint8_t> data);

/// Decode standard base64 with padding. @returns `Errc::malformed` for anything else.
CLAUDEMESH_API Result<Bytes> from_base64(std::string_view b64);

/// URL-safe base64 without padding (RFC 4648 §5), used for invite codes and root keys.
CLAUDEMESH_API std::string to_base64url(std::span<const std::uint8_t> data);

/// Decode URL-safe base64 without padding. @returns `Errc::malformed` for anything else.
CLAUDEMESH_API Result<Bytes> from_base64url(std::string_view b64);

/// Overwrite memory with zeros in a way the compiler cannot elide (`sodium_memzero`).
CLAUDEMESH_API void secure_wipe(void* data, std::size_t size) noexcept;

/// Compare two equal-length buffers in constant time (`sodium_memcmp`). Unequal lengths compare false.
CLAUDEMESH_API bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;

/// Fixed-size secret bytes: move-only, wiped on destruction and after being moved from.
///
/// There is no conversion to `std::string` and no stream operator, so a secret cannot end up in a log
/// by accident. Use `clone()` when a second copy is really needed.
/// @tparam N size in bytes
/// @tparam Tag distinguishes secret kinds (an ed25519 secret is not a topic key)
template <std::size_t N, class Tag>
class Secret {
 public:
  static constexpr std::size_t size = N;

  Secret() noexcept { bytes_.fill(0); }
  explicit Secret(std::span<const std::uint8_t, N> bytes) noexcept {
    std::copy(bytes.begin(), bytes.end(), bytes_.begin());
  }
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&& other) noexcept : bytes_(other.bytes_) { other.wipe(); }
  Secret& operator=(Secret&& other) noexcept {
    if (this != &other) {
      bytes_ = other.bytes_;
      other.wipe();
    }
    return *this;
  }
  ~Secret() { wipe(); }

  /// An explicit copy.
  [[nodiscard]] Secret clone() const noexcept { return Secret(std::span<const std::uint8_t, N>(bytes_)); }

  /// Read-only access to the secret bytes.
  [[nodiscard]] std::span<const std::uint8_t, N> bytes() const noexcept { return bytes_; }
  /// Writable access, for filling the secret in place (e.g. from libsodium).
  [[nodiscard]] std::span<std::uint8_t, N> mutable_bytes() noexcept { return bytes_; }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return bytes_.data(); }
  [[nodiscard]] std::uint8_t* data() noexcept { return bytes_.data(); }

  /// Constant-time equality.
  friend bool operator==(const Secret& a, const Secret& b) noexcept {
    return constant_time_equal(a.bytes_, b.bytes_);
  }

 private:
  void wipe() noexcept { secure_wipe(bytes_.data(), bytes_.size()); }
  ByteArray<N> bytes_;
};

// ---- implementation of the template above ----
CLAUDEMESH_API Result<void> detail_from_hex_exact(std::string_view hex, std::span<std::uint8_t> out);

template <std::size_t N>
Result<ByteArray<N>> from_hex_exact(std::string_view hex) {
  ByteArray<N> out{};
  if (auto r = detail_from_hex_exact(hex, out); !r) return fail(r.error());
  return out;
}

}  // namespace claudemesh
