// SPDX-License-Identifier: MIT
// URLs the transport understands: ws://, wss://, http://, https:// with an optional port and target.
#pragma once

#include <claudemesh/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace claudemesh::transport {

struct Url {
  std::string scheme;  ///< lowercase: "ws", "wss", "http", "https"
  std::string host;    ///< without IPv6 brackets
  std::uint16_t port = 0;
  std::string target;  ///< path and query, at least "/"
  [[nodiscard]] bool tls() const noexcept { return scheme == "wss" || scheme == "https"; }
  /// The Host header value: host, bracketed if IPv6, with ":port" unless it is the scheme's default.
  [[nodiscard]] std::string host_header() const;
};

/// Parse `text`. @returns `Errc::invalid_value` for an unknown scheme, a missing host, a bad port,
/// user info ("user@host"), a fragment, or whitespace/control characters.
Result<Url> parse_url(std::string_view text);

}  // namespace claudemesh::transport
