// SPDX-License-Identifier: MIT
// Reading fields out of JSON frames and bodies with specific errors (missing_field, wrong_type,
// invalid_value), and the small encoders shared by the WebSocket and HTTP sides of the broker.
#pragma once

#include <claudemesh/result.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace claudemesh::broker::wire {

using Json = nlohmann::json;

/// Parses text that must be a JSON object, nested at most 64 levels, without NUL bytes. `malformed` otherwise.
Result<Json> parse_object(std::string_view text);

/// A required string field, at most `max_len` bytes.
Result<std::string> required_string(const Json& object, std::string_view name, std::size_t max_len = 1024);
/// An optional string field: absent or null gives nullopt; another type is `wrong_type`.
Result<std::optional<std::string>> optional_string(const Json& object, std::string_view name,
                                                   std::size_t max_len = 1024);
/// A required integer (JSON number without fraction).
Result<std::int64_t> required_int(const Json& object, std::string_view name);
Result<std::optional<std::int64_t>> optional_int(const Json& object, std::string_view name);
Result<std::optional<bool>> optional_bool(const Json& object, std::string_view name);

/// True for 64 lowercase hex characters.
bool is_key_hex(std::string_view text) noexcept;

/// ISO 8601 UTC with milliseconds: "2026-11-23T07:32:21.123Z".
std::string iso_time(std::int64_t unix_ms);

/// Serializes without throwing: invalid UTF-8 inside strings is replaced by U+FFFD.
std::string dump(const Json& value);

/// Copies the request's `_reqId` into `reply` when it is a string or a number (anything else is ignored).
void copy_request_id(const Json& request, Json& reply);

/// `{"type":"error","code":…,"message":…}` plus `_reqId` when the request had one.
std::string error_frame(const Error& error, const Json* request = nullptr);

}  // namespace claudemesh::broker::wire
