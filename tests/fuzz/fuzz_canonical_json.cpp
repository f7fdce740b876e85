// SPDX-License-Identifier: MIT
// libFuzzer target for canonical_json(). Besides "never crashes", it checks the properties every caller
// relies on, and aborts (a finding) if one breaks:
//   1. failures are only Errc::malformed or Errc::duplicate_key, each with a message;
//   2. success implies the input is JSON nlohmann itself accepts;
//   3. the output is canonical: canonicalizing it again returns identical bytes;
//   4. the output contains no whitespace outside strings and no raw control characters;
//   5. the depth limit only ever turns a success into Errc::malformed, never changes an output.
#include <claudemesh/canonical_json.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "canonical_json invariant violated: %s\n", what);
    std::abort();
  }
}

// Outside strings, canonical output is only structure, literals and numbers; inside, no raw byte < 0x20.
bool is_compact(std::string_view text) {
  bool in_string = false;
  bool escaped = false;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20) return false;
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == ' ') {
      return false;
    }
  }
  return !in_string;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto result = claudemesh::canonical_json(input);
  if (!result) {
    const auto code = result.error().errc();
    check(code == claudemesh::Errc::malformed || code == claudemesh::Errc::duplicate_key,
          "unexpected error code");
    check(!result.error().message.empty(), "error without a message");
    return 0;
  }
  const std::string& canonical = *result;

  check(nlohmann::json::accept(input), "accepted input that nlohmann rejects");
  check(is_compact(canonical), "output has whitespace or raw control characters");

  const auto again = claudemesh::canonical_json(canonical);
  check(again.has_value(), "output does not canonicalize again");
  check(*again == canonical, "canonicalization is not idempotent");

  const auto deeper = claudemesh::canonical_json(input, 4 * claudemesh::canonical_json_max_depth);
  check(deeper.has_value() && *deeper == canonical, "a larger depth limit changed the result");

  const auto shallow = claudemesh::canonical_json(input, 2);
  check(shallow ? *shallow == canonical : shallow.error() == claudemesh::Errc::malformed,
        "a smaller depth limit changed the output or the error");
  return 0;
}
