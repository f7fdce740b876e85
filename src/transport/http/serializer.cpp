// SPDX-License-Identifier: MIT
#include "transport/http/serializer.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace claudemesh::transport::http {
namespace {

bool is_tchar(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_ctl(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7f;
}

bool is_digits(std::string_view s) noexcept {
  return !s.empty() && s.size() <= 19 && std::ranges::all_of(s, [](char c) { return c >= '0' && c <= '9'; });
}

bool has_body(int status) noexcept { return status / 100 != 1 && status != 204 && status != 304; }

int wire_status(int status) noexcept { return status >= 100 && status <= 599 ? status : 500; }

void append_percent_encoded(std::string& out, char c) {
  constexpr std::string_view hex = "0123456789ABCDEF";
  const auto u = static_cast<unsigned char>(c);
  out += '%';
  out += hex[u >> 4];
  out += hex[u & 0x0f];
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  for (const char c : value) out += is_ctl(c) ? ' ' : c;  // no CR/LF/NUL can leave: no response splitting
  out += "\r\n";
}

// The caller's fields, minus those the serializer owns (framing) and those it cannot write (bad names).
void append_fields(std::string& out, const Headers& headers) {
  for (const auto& [name, value] : headers.fields()) {
    if (!is_token(name) || iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding")) continue;
    append_field(out, name, value);
  }
}

void append_close(std::string& out, bool keep_alive, const Headers& headers) {
  if (!keep_alive && !headers.has_token("Connection", "close")) out += "Connection: close\r\n";
}

void append_content_length(std::string& out, std::string_view length) {
  out += "Content-Length: ";
  out += length;
  out += "\r\n";
}

void append_head(std::string& out, const HttpResponse& response) {
  const int status = wire_status(response.status);
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  const bool own_reason =
      !response.reason.empty() && status == response.status && is_valid_field_value(response.reason);
  out += own_reason ? std::string_view(response.reason) : reason_phrase(status);
  out += "\r\n";
  append_fields(out, response.headers);
  append_close(out, response.keep_alive, response.headers);
}

std::string request_target(const HttpRequest& request) {
  std::string raw = request.target;
  if (raw.empty()) {
    raw = request.path.empty() ? "/" : request.path;
    if (!request.query.empty()) raw += "?" + request.query;
  }
  std::string out;
  out.reserve(raw.size());
  for (const char c : raw) {
    if (is_ctl(c) || c == ' ' || c == '\t' || static_cast<unsigned char>(c) >= 0x80) {
      append_percent_encoded(out, c);
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

bool is_token(std::string_view text) noexcept { return !text.empty() && std::ranges::all_of(text, is_tchar); }

bool is_valid_field_value(std::string_view value) noexcept { return std::ranges::none_of(value, is_ctl); }

bool validate_headers(const Headers& headers) noexcept {
  return std::ranges::all_of(headers.fields(), [](const Headers::Field& field) {
    return is_token(field.first) && is_valid_field_value(field.second);
  });
}

std::string serialize(const HttpResponse& response) {
  std::string out;
  out.reserve(128 + 32 * response.headers.size() + response.body.size());
  append_head(out, response);
  const int status = wire_status(response.status);
  const auto declared = response.headers.get("Content-Length");
  const bool keep_declared = declared && is_digits(*declared) && response.body.empty();
  if (has_body(status)) {
    append_content_length(out, keep_declared ? *declared : std::to_string(response.body.size()));
  } else if (status == 304 && declared && is_digits(*declared)) {
    append_content_length(out, *declared);
  }
  out += "\r\n";
  if (has_body(status)) out += response.body;
  return out;
}

std::string serialize_head_chunked(const HttpResponse& response) {
  std::string out;
  append_head(out, response);
  const bool body_allowed = has_body(wire_status(response.status));
  if (body_allowed) out += "Transfer-Encoding: chunked\r\n";
  out += "\r\n";
  if (body_allowed) out += encode_chunk(response.body);
  return out;
}

std::string encode_chunk(std::string_view data) {
  if (data.empty()) return {};
  std::array<char, 16> size{};
  const auto [end, ec] = std::to_chars(size.data(), size.data() + size.size(), data.size(), 16);
  (void)ec;  // 16 hex digits hold any size_t
  std::string out(size.data(), end);
  out.reserve(out.size() + data.size() + 4);
  out += "\r\n";
  out += data;
  out += "\r\n";
  return out;
}

std::string_view last_chunk() noexcept { return "0\r\n\r\n"; }

std::string serialize(const HttpRequest& request) {
  std::string out;
  out.reserve(128 + 32 * request.headers.size() + request.body.size());
  if (request.method.empty()) out += "GET";
  for (const char c : request.method) {
    if (is_tchar(c)) {
      out += c;
    } else {
      append_percent_encoded(out, c);  // '%' is a tchar: the result is a token, just not a known method
    }
  }
  out += ' ';
  out += request_target(request);
  const bool http10 = request.version_major == 1 && request.version_minor == 0;
  out += http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
  append_fields(out, request.headers);
  if (http10 && request.keep_alive && !request.headers.has_token("Connection", "keep-alive")) {
    out += "Connection: keep-alive\r\n";
  } else if (!http10) {
    append_close(out, request.keep_alive, request.headers);
  }
  const bool expects_body = request.method == "POST" || request.method == "PUT" || request.method == "PATCH";
  if (!request.body.empty() || expects_body) append_content_length(out, std::to_string(request.body.size()));
  out += "\r\n";
  out += request.body;
  return out;
}

}  // namespace claudemesh::transport::http
