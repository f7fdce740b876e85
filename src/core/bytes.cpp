// SPDX-License-Identifier: MIT
#include <claudemesh/bytes.hpp>

#include "core/sodium.hpp"

#include <sodium.h>

namespace claudemesh {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<Bytes> decode_base64(std::string_view b64, int variant) {
  core::ensure_sodium();
  Bytes out(b64.size() / 4 * 3 + 3);
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), b64.data(), b64.size(), nullptr, &len, &end, variant) != 0 ||
      end != b64.data() + b64.size()) {
    return fail(Errc::malformed, "invalid base64");
  }
  out.resize(len);
  return out;
}

std::string encode_base64(std::span<const std::uint8_t> data, int variant) {
  core::ensure_sodium();
  std::string out(sodium_base64_encoded_len(data.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), data.data(), data.size(), variant);
  out.resize(out.size() - 1);  // drop the terminating NUL libsodium counts in the length
  return out;
}

}  // namespace

std::string to_hex(std::span<const std::uint8_t> data) {
  std::string out;
  out.resize(data.size() * 2);
  for (std::size_t i = 0; i < data.size(); ++i) {
    out[2 * i] = kHexDigits[data[i] >> 4];
    out[2 * i + 1] = kHexDigits[data[i] & 0x0f];
  }
  return out;
}

Result<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return fail(Errc::malformed, "hex has an odd number of digits");
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail(Errc::malformed, "not a hex digit");
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return out;
}

bool is_lower_hex(std::string_view s, std::size_t n) noexcept {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<void> detail_from_hex_exact(std::string_view hex, std::span<std::uint8_t> out) {
  if (!is_lower_hex(hex, out.size() * 2)) {
    return fail(Errc::malformed, "expected " + std::to_string(out.size() * 2) + " lowercase hex characters");
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
  }
  return {};
}

std::string to_base64(std::span<const std::uint8_t> data) {
  return encode_base64(data, sodium_base64_VARIANT_ORIGINAL);
}

Result<Bytes> from_base64(std::string_view b64) { return decode_base64(b64, sodium_base64_VARIANT_ORIGINAL); }

std::string to_base64url(std::span<const std::uint8_t> data) {
  return encode_base64(data, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

Result<Bytes> from_base64url(std::string_view b64) {
  return decode_base64(b64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void secure_wipe(void* data, std::size_t size) noexcept { sodium_memzero(data, size); }

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace claudemesh
