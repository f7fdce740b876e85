// SPDX-License-Identifier: MIT
#include "transport/http/response_parser.hpp"

#include "transport/http/serializer.hpp"  // is_token, is_valid_field_value

#include <algorithm>
#include <limits>
#include <utility>

namespace claudemesh::transport::http {
namespace detail {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

BodyReader::BodyReader(Framing framing, std::uint64_t length, const ParserLimits& limits) noexcept
    : framing_(framing), limits_(limits), done_(framing == Framing::none), remaining_(length) {}

std::size_t BodyReader::read(std::string_view data, std::string& out, std::size_t limit) {
  std::size_t used = 0;
  while (used < data.size() && !done_ && !error_) {
    if (framing_ == Framing::chunked && step_ != Step::data) {
      framing_byte(data[used++], limit);
      continue;
    }
    const std::size_t available = data.size() - used;
    const auto n = framing_ == Framing::until_close
                       ? available
                       : static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, available));
    if (!charge(n, limit)) break;
    out.append(data.substr(used, n));
    used += n;
    if (framing_ == Framing::until_close) continue;
    remaining_ -= n;
    if (remaining_ > 0) continue;
    if (framing_ == Framing::length) {
      done_ = true;
    } else {
      step_ = Step::data_cr;
    }
  }
  return used;
}

void BodyReader::close() {
  if (done_ || error_) return;
  if (framing_ == Framing::until_close) {
    done_ = true;
  } else {
    fail(400, "connection closed before the body was complete");
  }
}

bool BodyReader::charge(std::uint64_t bytes, std::size_t limit) {
  if (bytes > limit - charged_) {  // charged_ <= limit always holds, so this cannot wrap
    fail(413, "body larger than " + std::to_string(limit) + " bytes");
    return false;
  }
  charged_ += bytes;
  return true;
}

void BodyReader::fail(int status, std::string message) { error_ = ParseError{status, std::move(message)}; }

// RFC 9112 §7.1, strictly: chunk-size [ BWS ";" ext ] CRLF data CRLF ... last-chunk trailer-section CRLF.
void BodyReader::framing_byte(char c, std::size_t limit) {
  switch (step_) {
    case Step::size_line: return size_line_byte(c, limit);
    case Step::size_lf: return c == '\n' ? end_size_line(limit) : fail(400, "chunk-size line not ended by CRLF");
    case Step::data_cr:
      if (c != '\r') return fail(400, "chunk data not followed by CRLF");
      step_ = Step::data_lf;
      return;
    case Step::data_lf:
      if (c != '\n') return fail(400, "chunk data not followed by CRLF");
      step_ = Step::size_line;
      chunk_size_ = chunk_digits_ = chunk_line_bytes_ = 0;
      chunk_whitespace_ = chunk_extension_ = false;
      return;
    case Step::trailer: return trailer_byte(c);
    case Step::data: return;  // read() copies data
  }
}

void BodyReader::size_line_byte(char c, std::size_t limit) {
  if (++chunk_line_bytes_ > limits_.max_chunk_line_bytes) return fail(400, "chunk-size line too long");
  const int digit = hex_value(c);
  if (digit >= 0 && !chunk_whitespace_ && !chunk_extension_) {
    if (chunk_size_ > (std::numeric_limits<std::uint64_t>::max() >> 4)) return fail(400, "chunk size overflows");
    chunk_size_ = chunk_size_ * 16 + static_cast<std::uint64_t>(digit);
    ++chunk_digits_;
    return;
  }
  if (chunk_digits_ == 0) return fail(400, "invalid chunk size");
  if (c == '\r') {
    if (chunk_whitespace_ && !chunk_extension_) return fail(400, "whitespace after the chunk size");
    step_ = Step::size_lf;
  } else if (chunk_extension_) {
    if (!is_valid_field_value(std::string_view(&c, 1))) return fail(400, "control character in a chunk extension");
    charge(1, limit);  // extensions are ignored (RFC 9112 §7.1.1), but they are not free
  } else if (c == ' ' || c == '\t') {
    chunk_whitespace_ = true;
  } else if (c == ';') {
    chunk_extension_ = true;
  } else {
    fail(400, "invalid chunk size");
  }
}

void BodyReader::end_size_line(std::size_t limit) {
  if (chunk_size_ == 0) {
    step_ = Step::trailer;
    return;
  }
  if (chunk_size_ > limit - charged_) return fail(413, "body larger than " + std::to_string(limit) + " bytes");
  remaining_ = chunk_size_;
  step_ = Step::data;
}

void BodyReader::trailer_byte(char c) {
  if (++trailer_bytes_ > limits_.max_header_bytes) {
    return fail(431, "trailer section larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
  }
  if (trailer_after_cr_) {
    if (c != '\n') return fail(400, "CR without LF in the trailer section");
    trailer_after_cr_ = false;
    return end_trailer_line();
  }
  if (c == '\r') {
    trailer_after_cr_ = true;
    return;
  }
  trailer_line_.push_back(c);  // a stray LF, NUL or leading whitespace fails the field check below
}

void BodyReader::end_trailer_line() {
  const std::string_view line = trailer_line_;
  if (line.empty()) {
    done_ = true;
    return;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || !is_token(line.substr(0, colon)) ||
      !is_valid_field_value(line.substr(colon + 1))) {
    return fail(400, "invalid trailer field");
  }
  if (++trailer_fields_ > limits_.max_headers) {
    return fail(431, "more than " + std::to_string(limits_.max_headers) + " trailer fields");
  }
  trailer_line_.clear();
}

}  // namespace detail

ResponseParser::ResponseParser(ParserLimits limits) : core_(detail::MessageKind::response, limits) {}

// Methods are case-sensitive (RFC 9110 §9.1): "head" is not HEAD.
void ResponseParser::expect_response_to(std::string_view method) { core_.set_skip_body(method == "HEAD"); }

void ResponseParser::set_streaming(bool on) { core_.set_streaming(on); }

}  // namespace claudemesh::transport::http
