// SPDX-License-Identifier: MIT
// Incremental HTTP/1.1 parsing (RFC 9112) for the server: RequestParser. The engine underneath,
// detail::MessageParser, also drives the client's ResponseParser (response_parser.hpp), so the limits, the
// error vocabulary and the feed/state protocol are defined once, here.
//
// The protocol, for both parsers:
//   * feed() consumes bytes and returns how many it used. It stops early at two points: when the head is
//     complete and a body follows (State::headers_complete — route, pick a body limit, then feed again), and
//     when the message is complete (State::message_complete). Bytes after a complete message are not consumed:
//     they belong to the next pipelined message, or to the new protocol after an upgrade.
//   * A message without a body (a GET, "Content-Length: 0", an upgrade request, a HEAD/1xx/204/304 response)
//     goes straight to message_complete in the call that completes its head: there is no body to gate, and
//     a caller never has to feed an empty buffer to make progress. Whoever routes at headers_complete must
//     therefore also route at message_complete when it did not see headers_complete.
//   * The head (start line + header lines + the empty line) is limited while it streams in: a 1 MB header
//     line sent a byte at a time fails once it passes ParserLimits::max_header_bytes, not after buffering it.
//   * Errors are terminal until reset(); error().status is the status to answer with.
//
// Thread safety: distinct objects: safe. Shared objects: unsafe.
#pragma once

#include "transport/http/message.hpp"

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh::transport::http {

/// Why a message was rejected. For the server, `status` is the response to send before closing:
/// 400 (malformed, including request smuggling attempts), 413 (body too large), 414 (request-target too long),
/// 431 (header section or trailer section too large, too many fields), 501 (a Transfer-Encoding other than
/// exactly "chunked", or CONNECT), 505 (an HTTP version other than 1.0/1.1). The response parser uses the same
/// codes as categories (and 400 for a truncated response).
struct ParseError {
  int status = 0;
  std::string message;
};

/// Size limits. Designated initializers: `RequestParser parser({.max_body_bytes = 64 * 1024});`.
struct ParserLimits {
  /// The head: request/status line + header lines + the empty line -> 431.
  std::size_t max_header_bytes = std::size_t{16} * 1024;
  /// Header fields (and, counted separately, trailer fields) -> 431.
  std::size_t max_headers = 100;
  /// Default body limit -> 413 (RequestParser::set_body_limit overrides it per request).
  std::size_t max_body_bytes = std::size_t{1} << 20;
  /// Request-target -> 414.
  std::size_t max_target_bytes = std::size_t{8} * 1024;
  /// One chunk-size line including its extensions -> 400 (extension bytes also count against the body limit).
  std::size_t max_chunk_line_bytes = std::size_t{4} * 1024;
};

namespace detail {

enum class ParseState { need_more, headers_complete, message_complete, error };
enum class MessageKind { request, response };

/// The engine shared by RequestParser and ResponseParser; see the protocol at the top of this file.
/// llhttp (kept out of this header) reads the head; the body framing is decoded by the engine itself.
class MessageParser {
 public:
  MessageParser(MessageKind kind, ParserLimits limits);
  ~MessageParser();
  MessageParser(MessageParser&&) noexcept;
  MessageParser& operator=(MessageParser&&) noexcept;

  std::size_t feed(std::span<const char> data);
  void finish();
  [[nodiscard]] ParseState state() const noexcept;
  [[nodiscard]] const ParseError& error() const noexcept;
  [[nodiscard]] const HttpRequest& request() const noexcept;
  [[nodiscard]] const HttpResponse& response() const noexcept;
  HttpRequest take_request();
  HttpResponse take_response();
  void set_body_limit(std::size_t bytes) noexcept;
  void set_skip_body(bool skip) noexcept;
  void set_streaming(bool on) noexcept;
  std::string take_streamed();
  void reset();
  [[nodiscard]] bool in_progress() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace detail

/// Parses requests arriving on one server connection, one at a time (call reset() between them).
///
/// @code
/// RequestParser parser;
/// pending.remove_prefix(parser.feed(pending));
/// if (parser.state() == RequestParser::State::headers_complete) parser.set_body_limit(route_limit);
/// @endcode
///
/// Decisions worth knowing: a request line without a version ("GET /", HTTP/0.9 style) is 400, while a
/// well-formed but unsupported version ("HTTP/2.0", "HTTP/0.9", "HTTP/1.2", the HTTP/2 preface) is 505. An HTTP/1.1
/// request without exactly one Host field is 400 (RFC 9112 §3.2). A method llhttp does not know is 400, since it
/// cannot tell an unknown token from garbage. Trailer fields are checked and bounded, then discarded.
class RequestParser {
 public:
  using State = detail::ParseState;

  explicit RequestParser(ParserLimits limits = {});

  /// Parse from `data`; returns how many bytes were consumed. See the protocol at the top of this file.
  /// A request whose Content-Length exceeds the body limit fails with 413 before any body byte is read: in
  /// set_body_limit(), or on the next feed() after headers_complete. A chunked body fails as soon as a chunk
  /// would take it past the limit (chunk extension bytes count too).
  std::size_t feed(std::span<const char> data) { return core_.feed(data); }
  [[nodiscard]] State state() const noexcept { return core_.state(); }
  /// Valid from headers_complete on; the body is complete at message_complete.
  [[nodiscard]] const HttpRequest& request() const noexcept { return core_.request(); }
  /// Move the request out (at message_complete).
  HttpRequest take_request() { return core_.take_request(); }
  /// Valid in State::error.
  [[nodiscard]] const ParseError& error() const noexcept { return core_.error(); }
  /// The body limit for this request (call in headers_complete); fails the request with 413 right away when
  /// its Content-Length is larger. reset() restores ParserLimits::max_body_bytes.
  void set_body_limit(std::size_t bytes) noexcept { core_.set_body_limit(bytes); }
  /// Prepare for the next request on a keep-alive connection (keeps the limits).
  void reset() { core_.reset(); }
  /// True if some bytes of a request have arrived but it is not complete: tells a half-sent request (slow
  /// loris) from an idle keep-alive connection.
  [[nodiscard]] bool in_progress() const noexcept { return core_.in_progress(); }

 private:
  detail::MessageParser core_;
};

}  // namespace claudemesh::transport::http
