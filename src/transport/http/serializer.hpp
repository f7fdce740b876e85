// SPDX-License-Identifier: MIT
// HTTP/1.1 messages to bytes (RFC 9112), and the field grammar the parsers share.
//
// The serializers never emit a byte that could split a message (CR, LF, NUL or another control character in
// a field, the reason phrase, the method or the target), and they own the body framing. They cannot fail, so a
// server can always answer; instead they repair what they cannot write verbatim:
//   * a field whose name is not a token (RFC 9110 §5.1) is dropped;
//   * in a field value, each control character other than HTAB is replaced by a space, so
//     "x\r\nSet-Cookie: a=b" goes out as the single harmless value "x  Set-Cookie: a=b";
//   * a reason phrase with a control character is replaced by reason_phrase(status); a status outside
//     100..599 is sent as 500;
//   * in a request, bytes of the method that are not token characters and bytes of the target that are
//     controls, space or non-ASCII are percent-encoded ("%0D%0A").
// Callers that would rather reject such input check validate_headers() first.
//
// Thread safety: pure functions.
#pragma once

#include "transport/http/message.hpp"

#include <string>
#include <string_view>

namespace claudemesh::transport::http {

/// True for a token (RFC 9110 §5.6.2): one or more of ALPHA, DIGIT and !#$%&'*+-.^_`|~. Field names and methods.
bool is_token(std::string_view text) noexcept;
/// True if `value` has no control character other than HTAB: no CR, LF, NUL, DEL.
bool is_valid_field_value(std::string_view value) noexcept;
/// True if every field of `headers` can be written verbatim: token names, valid values.
bool validate_headers(const Headers& headers) noexcept;

/// Status line + headers + body.
///
/// The serializer owns the framing: caller Content-Length and Transfer-Encoding fields are not copied, and
/// "Content-Length: <body size>" is written — except when the body is empty and the caller gave a numeric
/// Content-Length, which is kept (a HEAD response announcing the size of the GET). 1xx and 204 responses get
/// neither field and no body; 304 gets no body and keeps a numeric caller Content-Length. "Connection: close"
/// is added when !keep_alive (unless a Connection field already says close). An empty reason uses
/// reason_phrase(). No Date or Server field is added.
std::string serialize(const HttpResponse& response);

/// Status line + headers for a streamed response: caller Content-Length and Transfer-Encoding are dropped and
/// "Transfer-Encoding: chunked" is added; a non-empty body goes out as the first chunk. Follow with
/// encode_chunk() per piece and last_chunk(). For 1xx/204/304 (which cannot have a body) only the head is written.
std::string serialize_head_chunked(const HttpResponse& response);

/// One chunk of a chunked body: "<hex size>\r\n<data>\r\n". Empty data gives an empty string (an empty chunk
/// would end the body: use last_chunk() for that).
std::string encode_chunk(std::string_view data);

/// The terminating chunk, with an empty trailer section: "0\r\n\r\n".
std::string_view last_chunk() noexcept;

/// Request line + headers + body. The target is `target`, or `path` + "?" + `query` when `target` is empty
/// ("/" when both are); an empty method is GET; the version is HTTP/1.0 when version_minor is 0, else HTTP/1.1.
/// Framing as for responses: "Content-Length: <size>" for a non-empty body, "Content-Length: 0" for an empty
/// POST/PUT/PATCH, and caller Content-Length/Transfer-Encoding fields are not copied. "Connection: close" is
/// added to an HTTP/1.1 request when !keep_alive, "Connection: keep-alive" to an HTTP/1.0 one when keep_alive.
/// Host is not added: the client knows it.
std::string serialize(const HttpRequest& request);

}  // namespace claudemesh::transport::http
