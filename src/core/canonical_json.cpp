// SPDX-License-Identifier: MIT
// RFC 8785 (JCS) canonicalization on top of nlohmann/json's SAX parser.
//
// nlohmann's parser keeps its own explicit stack (no recursion), validates UTF-8 inside strings, rejects
// lone-surrogate escapes and reports number overflow; this file adds what JCS needs beyond that: a depth
// limit, duplicate-name detection, UTF-16 member ordering, and ECMAScript number and string output.
// Each finished value is serialized immediately and handed to its parent as text, so the only tree kept
// is one frame per open container.
#include <claudemesh/canonical_json.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

namespace claudemesh {
namespace {

using Json = nlohmann::json;

constexpr char kLowerHex[] = "0123456789abcdef";
constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";
constexpr std::size_t kMaxNameInMessage = 64;
constexpr std::size_t kMaxParserMessage = 200;

// JCS §3.2.2.2: the JSON.stringify escapes, and nothing else.
void append_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kLowerHex[c >> 4];
          out += kLowerHex[c & 0x0f];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// ECMAScript Number::toString (ES2023 §6.1.6.1.20) for a finite double. std::to_chars in shortest
// round-trip scientific form yields exactly the digits s (k of them) and the exponent n-1 the algorithm
// asks for; the rest is layout.
void append_number(std::string& out, double value) {
  if (value == 0) {  // +0 and -0 both print as "0"
    out += '0';
    return;
  }
  if (value < 0) {
    out += '-';
    value = -value;
  }
  char buf[40];
  const auto converted = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<std::size_t>(converted.ptr - buf));  // "d.ddde+XX"
  const std::size_t e_pos = sci.find('e');
  std::string digits(1, sci[0]);
  if (e_pos > 2) digits.append(sci.substr(2, e_pos - 2));
  const bool negative_exponent = sci[e_pos + 1] == '-';
  int magnitude = 0;
  std::from_chars(sci.data() + e_pos + 2, sci.data() + sci.size(), magnitude);
  const int k = static_cast<int>(digits.size());
  const int n = (negative_exponent ? -magnitude : magnitude) + 1;

  if (k <= n && n <= 21) {  // integer: digits then zeros
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {  // decimal point inside the digits
    out.append(digits, 0, static_cast<std::size_t>(n));
    out += '.';
    out.append(digits, static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {  // 0.000ddd
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {  // exponential: d[.ddd]e±x
    out += digits[0];
    if (k > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += n - 1 < 0 ? "e-" : "e+";
    out += std::to_string(std::abs(n - 1));
  }
}

// Member names sort as arrays of UTF-16 code units (JCS §3.2.3). The input is valid UTF-8 (nlohmann has
// checked it), so the decoder need not re-validate.
std::u16string utf16_sort_key(std::string_view utf8) {
  std::u16string out;
  out.reserve(utf8.size());
  std::size_t i = 0;
  while (i < utf8.size()) {
    const auto lead = static_cast<unsigned char>(utf8[i]);
    std::size_t len = 1;
    char32_t cp = lead;
    if (lead >= 0xF0) {
      len = 4;
      cp = lead & 0x07u;
    } else if (lead >= 0xE0) {
      len = 3;
      cp = lead & 0x0Fu;
    } else if (lead >= 0xC0) {
      len = 2;
      cp = lead & 0x1Fu;
    }
    for (std::size_t j = 1; j < len && i + j < utf8.size(); ++j) {
      cp = (cp << 6) | (static_cast<unsigned char>(utf8[i + j]) & 0x3Fu);
    }
    i += len;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += static_cast<char16_t>(0xD800 + (cp >> 10));
      out += static_cast<char16_t>(0xDC00 + (cp & 0x3FF));
    } else {
      out += static_cast<char16_t>(cp);
    }
  }
  return out;
}

struct Member {
  std::u16string sort_key;
  std::string name;
  std::string value;  // already canonical
};

// One open container. Arrays stream their canonical text; objects collect members until they close,
// because the members must be sorted first.
struct Frame {
  bool is_object = false;
  std::string array_text;
  std::vector<Member> members;
  std::string pending_name;
};

class CanonicalHandler {
 public:
  explicit CanonicalHandler(std::size_t max_depth) : max_depth_(max_depth) {}

  // ---- nlohmann SAX interface ----
  bool null() { return emit("null"); }
  bool boolean(bool value) { return emit(value ? "true" : "false"); }
  bool number_integer(Json::number_integer_t value) { return emit_number(static_cast<double>(value)); }
  bool number_unsigned(Json::number_unsigned_t value) { return emit_number(static_cast<double>(value)); }
  // nlohmann has already converted the literal with strtod (correctly rounded; underflow gives ±0, as
  // in ECMAScript) and rejected non-finite results. Its raw text is not used: the lexer stores it with
  // the C locale's decimal point, which need not be '.'.
  bool number_float(Json::number_float_t value, const Json::string_t& /*raw*/) { return emit_number(value); }
  bool string(Json::string_t& value) {
    std::string text;
    text.reserve(value.size() + 2);
    append_string(text, value);
    return emit(std::move(text));
  }
  bool binary(Json::binary_t& /*value*/) { return fail_with(Errc::internal, "unexpected binary value in JSON"); }
  bool start_object(std::size_t /*elements*/) { return open(true); }
  bool key(Json::string_t& name) {
    stack_.back().pending_name = std::move(name);
    return true;
  }
  bool end_object() {
    Frame frame = std::move(stack_.back());
    stack_.pop_back();
    auto& members = frame.members;
    std::sort(members.begin(), members.end(),
              [](const Member& a, const Member& b) { return a.sort_key < b.sort_key; });
    const auto duplicate = std::adjacent_find(
        members.begin(), members.end(), [](const Member& a, const Member& b) { return a.sort_key == b.sort_key; });
    if (duplicate != members.end()) {
      std::string message = "JSON object repeats the member name ";
      if (duplicate->name.size() <= kMaxNameInMessage) {
        append_string(message, duplicate->name);
      } else {
        message += "(a long name)";
      }
      return fail_with(Errc::duplicate_key, std::move(message));
    }
    std::string text = "{";
    for (const auto& member : members) {
      if (text.size() > 1) text += ',';
      append_string(text, member.name);
      text += ':';
      text += member.value;
    }
    text += '}';
    return emit(std::move(text));
  }
  bool start_array(std::size_t /*elements*/) { return open(false); }
  bool end_array() {
    std::string text = std::move(stack_.back().array_text);
    stack_.pop_back();
    text += ']';
    return emit(std::move(text));
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/, const Json::exception& ex) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ..."; keep the prose.
    std::string_view reason = ex.what();
    if (const auto close = reason.find("] "); close != std::string_view::npos) reason.remove_prefix(close + 2);
    if (reason.size() > kMaxParserMessage) reason = reason.substr(0, kMaxParserMessage);
    return fail_with(Errc::malformed,
                     "invalid JSON at byte " + std::to_string(position) + ": " + std::string(reason));
  }

  // ---- results ----
  [[nodiscard]] const std::optional<Error>& error() const noexcept { return error_; }
  [[nodiscard]] std::string take_result() { return std::move(result_); }

 private:
  bool open(bool is_object) {
    if (stack_.size() >= max_depth_) {
      return fail_with(Errc::malformed,
                       "JSON nests objects/arrays deeper than the limit of " + std::to_string(max_depth_));
    }
    Frame& frame = stack_.emplace_back();
    frame.is_object = is_object;
    if (!is_object) frame.array_text = "[";
    return true;
  }

  bool emit_number(double value) {
    std::string text;
    append_number(text, value);
    return emit(std::move(text));
  }

  // A value is complete: give it to the enclosing container, or make it the result.
  bool emit(std::string text) {
    if (stack_.empty()) {
      result_ = std::move(text);
      return true;
    }
    Frame& parent = stack_.back();
    if (parent.is_object) {
      parent.members.push_back(
          Member{utf16_sort_key(parent.pending_name), std::move(parent.pending_name), std::move(text)});
    } else {
      if (parent.array_text.size() > 1) parent.array_text += ',';
      parent.array_text += text;
    }
    return true;
  }

  bool fail_with(Errc code, std::string message) {
    if (!error_) error_.emplace(code, std::move(message));
    return false;
  }

  std::size_t max_depth_;
  std::vector<Frame> stack_;
  std::string result_;
  std::optional<Error> error_;
};

}  // namespace

Result<std::string> canonical_json(std::string_view json_text, std::size_t max_depth) {
  // nlohmann silently skips a UTF-8 byte order mark; RFC 8259 §8.1 forbids sending one, and accepting it
  // would give two different texts the same canonical form without the caller noticing.
  if (json_text.starts_with(kUtf8Bom)) return fail(Errc::malformed, "JSON text starts with a byte order mark");
  // A raw NUL is never valid JSON (inside strings it must be escaped), but nlohmann's lexer takes it for
  // the end of input, so "{}\0anything" would be accepted as "{}".
  if (json_text.find('\0') != std::string_view::npos) {
    return fail(Errc::malformed, "JSON text contains a NUL byte");
  }

  CanonicalHandler handler(max_depth);
  const bool parsed = Json::sax_parse(json_text.begin(), json_text.end(), &handler, Json::input_format_t::json,
                                      /*strict=*/true, /*ignore_comments=*/false);
  if (handler.error()) return fail(*handler.error());
  if (!parsed) return fail(Errc::internal, "JSON parser stopped without reporting an error");
  return handler.take_result();
}

}  // namespace claudemesh
