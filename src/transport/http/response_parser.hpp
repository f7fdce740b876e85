// SPDX-License-Identifier: MIT
// Incremental parsing of HTTP/1.1 responses for the client side, on the engine of request_parser.hpp (same
// limits, same feed/state protocol, same strict body framing).
//
// Thread safety: distinct objects: safe. Shared objects: unsafe.
#pragma once

#include "transport/http/request_parser.hpp"

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh::transport::http {

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
