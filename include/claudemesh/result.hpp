// SPDX-License-Identifier: MIT
/// @file result.hpp
/// `Result<T>`: the return type of everything in libclaudemesh that can fail.
///
/// It is `std::expected<T, Error>` (C++23). This is the one alias header: a toolchain without
/// `<expected>` could map it to `tl::expected` here and nowhere else. No exception crosses the public
/// API; "nothing yet" is an empty `std::optional`, not an error.
///
/// @par Example
/// @code
/// auto id = claudemesh::Identity::load(path);
/// if (!id) return std::unexpected(id.error());
/// @endcode
#pragma once

#include <claudemesh/error.hpp>

#include <string>
#include <string_view>
#include <version>  // defines __cpp_lib_expected; without it the check below silently fails

#if defined(__cpp_lib_expected)
#include <expected>
#else
#error "libclaudemesh needs std::expected: use g++ >= 12 (or clang >= 16) with -std=c++23"
#endif

namespace claudemesh {

/// A value of type `T`, or the `Error` that prevented it.
template <class T>
using Result = std::expected<T, Error>;

/// Shorthand for returning a failure: `return fail(Errc::malformed, "missing signature");`.
inline std::unexpected<Error> fail(Errc code, std::string message) {
  return std::unexpected<Error>(std::in_place, code, std::move(message));
}

/// Pass an existing error up unchanged: `if (!r) return fail(r.error());`.
inline std::unexpected<Error> fail(Error error) { return std::unexpected<Error>(std::move(error)); }

/// Pass an error up with context prepended to its message, keeping its code:
/// `return fail(r.error(), "identity file");` gives "identity file: <original message>".
inline std::unexpected<Error> fail(const Error& error, std::string_view context) {
  std::string message(context);
  if (!error.message.empty()) {
    message += ": ";
    message += error.message;
  }
  return std::unexpected<Error>(std::in_place, error.code, std::move(message));
}

}  // namespace claudemesh
