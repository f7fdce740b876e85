// SPDX-License-Identifier: MIT
/// @file canonical_json.hpp
/// Canonical JSON per RFC 8785, the JSON Canonicalization Scheme (JCS).
///
/// Two JSON texts that mean the same thing canonicalize to the same bytes, so their hashes and
/// signatures agree across languages. Request fingerprints and audit-chain hashes hash this form.
///
/// @par Thread safety
/// Pure function: thread-safe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace claudemesh {

/// Default nesting limit of `canonical_json()`: objects and arrays nested deeper than this are rejected.
inline constexpr std::size_t canonical_json_max_depth = 64;

/// Parse `json_text` (RFC 8259, UTF-8) and return its RFC 8785 canonical form.
///
/// The output has no whitespace; object members are sorted by name, comparing names as arrays of
/// UTF-16 code units (so U+1F600 sorts before U+E000); strings use only the escapes `\"`, `\\`, `\b`,
/// `\f`, `\n`, `\r`, `\t` and `\u00xx` (lowercase hex) for other control characters, and carry every
/// other character, including `/`, DEL and U+2028, literally as UTF-8; every number, integer or not,
/// is read as an IEEE-754 double and written as ECMAScript's `Number.prototype.toString` writes it
/// (`1.0` -> `1`, `1e21` -> `1e+21`, `1e-7` -> `1e-7`, `-0` -> `0`, `9007199254740993` ->
/// `9007199254740992`). A top-level scalar is allowed (`"a"` -> `"a"`).
///
/// Inputs JCS cannot represent, or that would be ambiguous, are rejected rather than repaired:
/// - `Errc::duplicate_key`: an object repeats a member name (compared after unescaping, so
///   `{"a":1,"\u0061":2}` is a duplicate).
/// - `Errc::malformed`: not JSON (truncated, trailing data, comments, a leading byte order mark, a raw
///   NUL byte anywhere, `NaN`/`Infinity`); invalid UTF-8 (overlong forms, encoded surrogates, stray continuation bytes,
///   code points above U+10FFFF); a `\u` escape of a lone surrogate such as `"\ud800"` (RFC 8785 §3.2.2.2
///   requires rejecting those); a number whose magnitude is too large for a double (`1e400`);
///   objects/arrays nested more than `max_depth` deep.
/// A number too small for a double (`1e-400`) becomes 0, as it does in ECMAScript.
///
/// Parsing does not recurse, so hostile nesting (`[[[[...`) cannot exhaust the stack. Memory use is a
/// small multiple of the input size; time grows with the input size times the nesting depth, which
/// `max_depth` bounds.
///
/// @param json_text a complete JSON text
/// @param max_depth the deepest allowed nesting of objects and arrays: `[]` has depth 1, `[[]]` depth 2;
///        0 allows only a top-level scalar
/// @returns the canonical UTF-8 text, or the error above
///
/// @par Example
/// @code
/// auto c = claudemesh::canonical_json(R"({ "b": [1.0, true], "a": "\u00e9" })");
/// // *c == R"({"a":"é","b":[1,true]})"
/// @endcode
CLAUDEMESH_API Result<std::string> canonical_json(std::string_view json_text,
                                                  std::size_t max_depth = canonical_json_max_depth);

}  // namespace claudemesh
