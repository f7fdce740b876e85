// SPDX-License-Identifier: MIT
// libFuzzer target for decode_envelope(). Invariants checked on every input:
// * decoding never crashes and never reports Errc::internal;
// * every error message is valid UTF-8 (it may be put into a JSON error frame);
// * a decoded envelope passes validate_envelope(), and encode -> decode gives an equal envelope whose
//   encoding is byte-identical to the first.
#include <claudemesh/envelope.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

void require_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();  // the default error handler throws on invalid UTF-8
  } catch (const nlohmann::json::exception&) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto decoded = claudemesh::decode_envelope(input);
  if (!decoded) {
    require(decoded.error().errc() != claudemesh::Errc::internal);
    require(!decoded.error().message.empty());
    require_utf8(decoded.error().message);
    return 0;
  }
  require(claudemesh::validate_envelope(*decoded).has_value());
  const std::string encoded = claudemesh::encode_envelope(*decoded);
  const auto again = claudemesh::decode_envelope(encoded);
  require(again.has_value());
  require(*again == *decoded);
  require(claudemesh::encode_envelope(*again) == encoded);
  return 0;
}
