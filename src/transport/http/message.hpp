// SPDX-License-Identifier: MIT
// HTTP/1.1 messages as the transport layer passes them around: the request parser (llhttp) produces
// HttpRequest, the response parser produces HttpResponse, and the serializers turn them back into bytes.
// Header names keep their original case; lookups are case-insensitive, as RFC 9110 requires.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace claudemesh::transport::http {

/// ASCII case-insensitive equality (header names, tokens such as "Upgrade: websocket").
bool iequals(std::string_view a, std::string_view b) noexcept;

/// An ordered list of header fields. Duplicates are kept in order of arrival.
class Headers {
 public:
  using Field = std::pair<std::string, std::string>;

  void add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }
  /// Replace every field named `name` with one field.
  void set(std::string_view name, std::string value);
  /// The first value of `name`, if any.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view name) const noexcept;
  /// Every value of `name`, in order.
  [[nodiscard]] std::vector<std::string_view> get_all(std::string_view name) const;
  [[nodiscard]] bool contains(std::string_view name) const noexcept { return get(name).has_value(); }
  /// True if some value of `name`, read as a comma-separated list, contains `token` (case-insensitive).
  /// E.g. `has_token("Connection", "upgrade")` for "Connection: keep-alive, Upgrade".
  [[nodiscard]] bool has_token(std::string_view name, std::string_view token) const noexcept;
  void remove(std::string_view name);
  [[nodiscard]] const std::vector<Field>& fields() const noexcept { return fields_; }
  [[nodiscard]] std::size_t size() const noexcept { return fields_.size(); }

 private:
  std::vector<Field> fields_;
};

/// A parsed request. `body` is already de-chunked.
struct HttpRequest {
  std::string method;          ///< "GET", "POST", ...
  std::string target;          ///< request-target as sent: "/v1/inbox?limit=10"
  std::string path;            ///< target without the query: "/v1/inbox"
  std::string query;           ///< after '?', without it; empty if none
  int version_major = 1;
  int version_minor = 1;
  Headers headers;
  std::string body;
  bool keep_alive = true;      ///< from the version and the Connection header
  bool upgrade = false;        ///< the request asks to switch protocols (e.g. WebSocket)
};

/// A response to serialize, or one parsed by the client.
struct HttpResponse {
  int status = 200;
  std::string reason;          ///< empty: the standard reason phrase for `status`
  Headers headers;
  std::string body;
  bool keep_alive = true;      ///< parsed responses: whether the connection may be reused
};

/// The standard reason phrase ("Not Found"), or "Unknown".
std::string_view reason_phrase(int status) noexcept;

}  // namespace claudemesh::transport::http
