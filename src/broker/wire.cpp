// SPDX-License-Identifier: MIT
#include "broker/wire.hpp"

#include <algorithm>
#include <ctime>

namespace claudemesh::broker::wire {
namespace {

const Json* find(const Json& object, std::string_view name) {
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

Error wrong_type(std::string_view name, std::string_view expected) {
  return {Errc::wrong_type, "field " + std::string(name) + " must be " + std::string(expected)};
}

}  // namespace

// Deepest nesting of arrays and objects accepted in a frame. Copying and serializing a JSON value recurse once
// per level, so a frame of 100k nested brackets would exhaust the stack; real frames nest a few levels.
constexpr int kMaxDepth = 64;

// The nesting depth of `text`, counting brackets outside strings (the text need not be valid JSON).
int max_depth(std::string_view text) noexcept {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

Result<Json> parse_object(std::string_view text) {
  // A raw NUL is never JSON, and nlohmann's lexer would stop at it and ignore the rest.
  if (text.find('\0') != std::string_view::npos) return fail(Errc::malformed, "not valid JSON (NUL byte)");
  if (max_depth(text) > kMaxDepth) {
    return fail(Errc::malformed, "JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  auto parsed = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return fail(Errc::malformed, "not valid JSON");
  if (!parsed.is_object()) return fail(Errc::malformed, "expected a JSON object");
  return parsed;
}

Result<std::optional<std::string>> optional_string(const Json& object, std::string_view name, std::size_t max_len) {
  const Json* value = find(object, name);
  if (!value) return std::optional<std::string>{};
  if (!value->is_string()) return fail(wrong_type(name, "a string"));
  const auto& text = value->get_ref<const std::string&>();
  if (text.size() > max_len) {
    return fail(Errc::invalid_value, "field " + std::string(name) + " is longer than " + std::to_string(max_len));
  }
  return std::optional<std::string>(text);
}

Result<std::string> required_string(const Json& object, std::string_view name, std::size_t max_len) {
  auto value = optional_string(object, name, max_len);
  if (!value) return fail(value.error());
  if (!*value) return fail(Errc::missing_field, "field " + std::string(name) + " is missing");
  return std::move(**value);
}

Result<std::optional<std::int64_t>> optional_int(const Json& object, std::string_view name) {
  const Json* value = find(object, name);
  if (!value) return std::optional<std::int64_t>{};
  // Unsigned first: nlohmann counts unsigned numbers as integers too, and get<int64_t> would wrap them.
  if (value->is_number_unsigned()) {
    const auto unsigned_value = value->get<std::uint64_t>();
    if (unsigned_value > static_cast<std::uint64_t>(INT64_MAX)) {
      return fail(Errc::invalid_value, "field " + std::string(name) + " is out of range");
    }
    return std::optional<std::int64_t>(static_cast<std::int64_t>(unsigned_value));
  }
  if (value->is_number_integer()) return std::optional<std::int64_t>(value->get<std::int64_t>());
  if (value->is_number_float()) {
    const double d = value->get<double>();
    // JavaScript clients send integral doubles; accept those exactly, refuse fractions.
    if (d >= -9.0e15 && d <= 9.0e15 && static_cast<double>(static_cast<std::int64_t>(d)) == d) {
      return std::optional<std::int64_t>(static_cast<std::int64_t>(d));
    }
    return fail(Errc::invalid_value, "field " + std::string(name) + " must be an integer");
  }
  return fail(wrong_type(name, "an integer"));
}

Result<std::int64_t> required_int(const Json& object, std::string_view name) {
  auto value = optional_int(object, name);
  if (!value) return fail(value.error());
  if (!*value) return fail(Errc::missing_field, "field " + std::string(name) + " is missing");
  return **value;
}

Result<std::optional<bool>> optional_bool(const Json& object, std::string_view name) {
  const Json* value = find(object, name);
  if (!value) return std::optional<bool>{};
  if (!value->is_boolean()) return fail(wrong_type(name, "a boolean"));
  return std::optional<bool>(value->get<bool>());
}

bool is_key_hex(std::string_view text) noexcept {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string iso_time(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buffer[40];
  const auto written = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &utc);
  char out[48];
  std::snprintf(out, sizeof out, "%.*s.%03dZ", static_cast<int>(written), buffer, static_cast<int>(unix_ms % 1000));
  return out;
}

void copy_request_id(const Json& request, Json& reply) {
  if (!request.is_object()) return;
  auto it = request.find("_reqId");
  if (it != request.end() && (it->is_string() || it->is_number())) reply["_reqId"] = *it;
}

std::string error_frame(const Error& error, const Json* request) {
  Json frame{{"type", "error"}, {"code", std::string(wire_name(error.errc()))}, {"message", error.message}};
  if (request) copy_request_id(*request, frame);
  return dump(frame);
}

std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace claudemesh::broker::wire
