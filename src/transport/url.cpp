// SPDX-License-Identifier: MIT
#include "transport/url.hpp"

#include <algorithm>
#include <charconv>

namespace claudemesh::transport {
namespace {

std::uint16_t default_port(std::string_view scheme) { return (scheme == "wss" || scheme == "https") ? 443 : 80; }

}  // namespace

std::string Url::host_header() const {
  std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != default_port(scheme)) out += ":" + std::to_string(port);
  return out;
}

Result<Url> parse_url(std::string_view text) {
  if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    return fail(Errc::invalid_value, "URL contains whitespace or control characters");
  }
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return fail(Errc::invalid_value, "URL has no scheme (ws://, wss://, ...)");
  Url url;
  for (char c : text.substr(0, scheme_end)) url.scheme += static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  if (url.scheme != "ws" && url.scheme != "wss" && url.scheme != "http" && url.scheme != "https") {
    return fail(Errc::invalid_value, "unsupported URL scheme '" + url.scheme + "'");
  }
  std::string_view rest = text.substr(scheme_end + 3);
  if (rest.find('#') != std::string_view::npos) return fail(Errc::invalid_value, "URL must not have a fragment");
  const auto target_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, target_start);
  url.target = target_start == std::string_view::npos ? "/" : std::string(rest.substr(target_start));
  if (url.target.front() == '?') url.target.insert(url.target.begin(), '/');
  if (authority.find('@') != std::string_view::npos) return fail(Errc::invalid_value, "URL must not carry user info");
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return fail(Errc::invalid_value, "unterminated IPv6 address in URL");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail(Errc::invalid_value, "unexpected text after IPv6 address");
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    if (url.host.find(':') != std::string::npos) return fail(Errc::invalid_value, "IPv6 hosts must be in brackets");
  }
  if (url.host.empty()) return fail(Errc::invalid_value, "URL has no host");
  url.port = default_port(url.scheme);
  if (!port_text.empty() || (!authority.empty() && authority.back() == ':')) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || value == 0 || value > 65535) {
      return fail(Errc::invalid_value, "bad port '" + std::string(port_text) + "'");
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

}  // namespace claudemesh::transport
