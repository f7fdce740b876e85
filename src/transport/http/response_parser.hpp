// SPDX-License-Identifier: MIT
// Incremental parsing of HTTP/1.1 responses for the client side, on the engine of request_parser.hpp (same
// limits, same feed/state protocol), and the body framing decoder both parsers share (responses use every kind).
//
// Thread safety: distinct objects: safe. Shared objects: unsafe.
#pragma once

#include "transport/http/request_parser.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh::transport::http {
namespace detail {

/// The body of one message after its head, decoded strictly (RFC 9112 §6.3, §7.1): a Content-Length, chunked
/// (extensions ignored but charged against the limit; trailer fields checked, bounded like the head, then
/// dropped, since merging them would let a body rewrite its headers), or everything until the connection
/// closes. Both parsers use it: llhttp's loose mode is never trusted with a body (it accepts any two bytes
/// in place of the CRLF that ends chunk data).
class BodyReader {
 public:
  enum class Framing { none, length, chunked, until_close };

  BodyReader() = default;
  BodyReader(Framing framing, std::uint64_t length, const ParserLimits& limits) noexcept;

  /// Decodes body bytes from `data` into `out` and returns how many bytes of `data` it used. Decoded bytes and
  /// chunk extensions together may not exceed `limit` (413). Stops at the end of the body or at an error.
  std::size_t read(std::string_view data, std::string& out, std::size_t limit);
  /// The connection closed: completes a body that runs until the close, fails any other unfinished body.
  void close();

  [[nodiscard]] Framing framing() const noexcept { return framing_; }
  /// Bytes a Content-Length body still expects.
  [[nodiscard]] std::uint64_t remaining() const noexcept { return remaining_; }
  [[nodiscard]] bool done() const noexcept { return done_; }
  [[nodiscard]] const std::optional<ParseError>& error() const noexcept { return error_; }

 private:
  enum class Step { size_line, size_lf, data, data_cr, data_lf, trailer };

  bool charge(std::uint64_t bytes, std::size_t limit);
  void fail(int status, std::string message);
  void framing_byte(char c, std::size_t limit);
  void size_line_byte(char c, std::size_t limit);
  void end_size_line(std::size_t limit);
  void trailer_byte(char c);
  void end_trailer_line();

  Framing framing_ = Framing::none;
  ParserLimits limits_;
  bool done_ = true;
  std::optional<ParseError> error_;
  std::uint64_t remaining_ = 0;  // of the Content-Length, or of the current chunk
  std::uint64_t charged_ = 0;    // decoded bytes + chunk extension bytes
  Step step_ = Step::size_line;
  std::uint64_t chunk_size_ = 0;
  std::size_t chunk_digits_ = 0;
  std::size_t chunk_line_bytes_ = 0;
  bool chunk_whitespace_ = false;
  bool chunk_extension_ = false;
  bool trailer_after_cr_ = false;
  std::string trailer_line_;
  std::size_t trailer_bytes_ = 0;
  std::size_t trailer_fields_ = 0;
};

}  // namespace detail

/// Parses the response to one request (call reset() before the next one on the same connection).
///
/// Body framing follows RFC 9112 §6.3: no body for HEAD responses and 1xx/204/304 (whatever the headers say),
/// else chunked, else Content-Length, else until the connection closes (finish()). Interim 1xx responses other
/// than 101 (100 Continue, 103 Early Hints) are skipped: the parser goes on to the final response. A 101
/// Switching Protocols completes at the end of its head, leaving the following bytes unconsumed.
///
/// @code
/// ResponseParser parser;
/// parser.expect_response_to("GET");
/// while (parser.state() == ResponseParser::State::need_more) { /* read; */ used = parser.feed(bytes); }
/// @endcode
class ResponseParser {
 public:
  using State = detail::ParseState;

  explicit ResponseParser(ParserLimits limits = {});

  /// Tell the parser which request this answers: a response to "HEAD" has no body.
  void expect_response_to(std::string_view method);
  /// Streaming mode: body bytes are not accumulated in response().body but in an internal buffer drained by
  /// take_body_chunk() (Server-Sent Events, large downloads); no body limit applies. Set it before the body
  /// starts (before feeding, or at headers_complete).
  void set_streaming(bool on);
  /// Same protocol as RequestParser::feed(). A Content-Length over ParserLimits::max_body_bytes fails (413)
  /// on the feed() after headers_complete unless streaming was switched on.
  std::size_t feed(std::span<const char> data) { return core_.feed(data); }
  /// The peer closed the connection: completes a body delimited by the close, or fails a truncated message
  /// (status 400). Does nothing once the message is complete or failed.
  void finish() { core_.finish(); }
  [[nodiscard]] State state() const noexcept { return core_.state(); }
  /// Status, reason and headers from headers_complete on (keep_alive included); the body at message_complete.
  [[nodiscard]] const HttpResponse& response() const noexcept { return core_.response(); }
  HttpResponse take_response() { return core_.take_response(); }
  /// Streaming mode: what arrived since the last call (empty if nothing did, or when not streaming).
  std::string take_body_chunk() { return core_.take_streamed(); }
  [[nodiscard]] const ParseError& error() const noexcept { return core_.error(); }
  /// Prepare for the next response; keeps the limits, forgets expect_response_to() and set_streaming().
  void reset() { core_.reset(); }

 private:
  detail::MessageParser core_;
};

}  // namespace claudemesh::transport::http
