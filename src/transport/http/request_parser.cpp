// SPDX-License-Identifier: MIT
// The HTTP/1.1 parsing engine behind RequestParser and ResponseParser.
//
// llhttp reads the head (start line, header fields, Content-Length and Transfer-Encoding bookkeeping). Debian
// compiles llhttp.c without LLHTTP_STRICT_MODE, and that loose mode accepts what RFC 9112 says to reject:
// bare-LF line ends, obs-fold, "Name : value", and — a request smuggling vector — any two bytes in place of
// the CRLF after chunk data. So the head is also checked byte by byte here (HeadScanner), field names are
// checked as tokens, and llhttp is paused at the end of the head and never resumed for the body: BodyReader
// (response_parser.hpp) decodes the body framing strictly.
#include "transport/http/request_parser.hpp"

#include "transport/http/response_parser.hpp"  // BodyReader
#include "transport/http/serializer.hpp"       // is_token, is_valid_field_value: one grammar for both directions

#include <llhttp.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

namespace claudemesh::transport::http::detail {
namespace {

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the Transfer-Encoding fields say exactly "chunked": the only coding we implement.
bool is_exactly_chunked(const std::vector<std::string_view>& values) {
  std::size_t tokens = 0;
  bool chunked = false;
  for (std::string_view rest : values) {
    while (true) {
      const auto comma = rest.find(',');
      const auto token = trim_ows(rest.substr(0, comma));
      ++tokens;
      chunked = iequals(token, "chunked");
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return tokens == 1 && chunked;
}

// path and query from a request-target: origin-form "/p?q", absolute-form "http://h/p?q", asterisk-form "*".
void split_target(HttpRequest& request) {
  std::string_view rest = request.target;
  bool absolute = false;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (rest.size() >= scheme.size() && iequals(rest.substr(0, scheme.size()), scheme)) {
      const auto path_start = rest.find_first_of("/?#", scheme.size());
      rest = path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
      absolute = true;
    }
  }
  rest = rest.substr(0, rest.find('#'));  // a fragment is never part of the request; drop it if sent
  const auto question = rest.find('?');
  request.path = rest.substr(0, question);
  request.query = question == std::string_view::npos ? std::string_view() : rest.substr(question + 1);
  if (absolute && request.path.empty()) request.path = "/";
}

// Line structure of the head, which loose llhttp does not enforce: CRLF line ends only (it takes "\rX" as a line
// end and bare LF too), no line starting with whitespace after the start line (obs-fold), and a request line of
// exactly three words. NUL needs no check here: llhttp rejects it everywhere but in a reason phrase, and
// finish_response_head() checks that. The request-target limit is checked here too, by byte position, so the
// verdict does not depend on how the input was split (llhttp reports partial spans only at the end of a call).
class HeadScanner {
 public:
  struct Problem {
    int status = 0;
    const char* message = nullptr;
    explicit operator bool() const noexcept { return status != 0; }
  };

  HeadScanner(bool request, std::size_t max_target) : request_(request), max_target_(max_target) {}

  // The first violation in the next bytes of the head, if any.
  Problem scan(std::string_view bytes) noexcept {
    for (const char c : bytes) {
      if (after_cr_) {
        if (c != '\n') return {400, "CR without LF in the header section"};
        after_cr_ = false;
        at_line_start_ = true;
        if (in_start_line_) {
          in_start_line_ = false;
          if (request_ && start_line_spaces_ != 2) return {400, "malformed request line"};
        }
        continue;
      }
      if (c == '\r') {
        after_cr_ = true;
        continue;
      }
      if (c == '\n') return {400, "LF without CR in the header section"};
      if (at_line_start_) {
        at_line_start_ = false;
        if (started_ && (c == ' ' || c == '\t')) {
          return {400, "obsolete line folding (a header line starts with whitespace)"};
        }
        in_start_line_ = !started_;
        started_ = true;
      }
      if (in_start_line_ && c == ' ') {
        ++start_line_spaces_;
      } else if (request_ && in_start_line_ && start_line_spaces_ == 1 && ++target_bytes_ > max_target_) {
        return {414, "request-target too long"};
      }
    }
    return {};
  }

 private:
  bool request_;
  std::size_t max_target_;
  std::size_t target_bytes_ = 0;
  bool after_cr_ = false;
  bool at_line_start_ = true;
  bool started_ = false;  // empty lines before the start line are skipped (RFC 9112 §2.2)
  bool in_start_line_ = false;
  int start_line_spaces_ = 0;
};

using Framing = BodyReader::Framing;

}  // namespace

struct MessageParser::Impl {
  // Everything about the message being parsed; replaced wholesale between messages.
  struct Message {
    Message(MessageKind kind, std::size_t max_target) : scanner(kind == MessageKind::request, max_target) {}
    ParseState state = ParseState::need_more;
    bool in_body = false;
    bool interim = false;  // a 1xx response other than 101: skipped, the final response follows
    Framing framing = Framing::none;
    std::size_t body_limit = 0;
    std::size_t received = 0;
    std::size_t head_bytes = 0;
    std::size_t field_count = 0;
    HeadScanner scanner;
    std::string field;
    std::string value;
    std::string version_text;
    std::optional<ParseError> callback_error;
    HttpRequest request;
    HttpResponse response;
    BodyReader body;
    ParseError error;
  };

  Impl(MessageKind kind_in, ParserLimits limits_in)
      : kind(kind_in), limits(limits_in), m(kind_in, limits_in.max_target_bytes) {
    llhttp_settings_init(&settings);
    settings.on_url = on_url;
    settings.on_status = on_status;
    settings.on_version = on_version;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    start_message();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void start_message() {
    m = Message(kind, limits.max_target_bytes);
    m.body_limit = limits.max_body_bytes;
    llhttp_init(&llhttp, kind == MessageKind::request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    llhttp.data = this;  // Impl lives on the heap: the pointer survives moves of the owning parser
  }

  void fail(int status, std::string message) {
    m.state = ParseState::error;
    m.error = ParseError{status, std::move(message)};
  }

  // --- llhttp callbacks (the head) -------------------------------------------------------------------

  static Impl& self(llhttp_t* parser) noexcept { return *static_cast<Impl*>(parser->data); }

  // Records why a callback rejected the head (the first reason wins); llhttp then stops with an error.
  int callback_fail(int status, std::string message) {
    reject(status, std::move(message));
    return -1;
  }
  bool reject(int status, std::string message) {
    if (!m.callback_error) m.callback_error = ParseError{status, std::move(message)};
    return false;
  }

  static int on_url(llhttp_t* parser, const char* at, std::size_t length) {
    self(parser).m.request.target.append(at, length);  // its length is checked by the HeadScanner
    return 0;
  }
  static int on_status(llhttp_t* parser, const char* at, std::size_t length) {
    self(parser).m.response.reason.append(at, length);
    return 0;
  }
  static int on_version(llhttp_t* parser, const char* at, std::size_t length) {
    self(parser).m.version_text.append(at, length);
    return 0;
  }
  static int on_header_field(llhttp_t* parser, const char* at, std::size_t length) {
    self(parser).m.field.append(at, length);
    return 0;
  }
  static int on_header_field_complete(llhttp_t* parser) {
    auto& s = self(parser);
    // Loose llhttp accepts "Name : value" and spaces inside names; RFC 9112 §5.1 requires a 400.
    if (!is_token(s.m.field)) return s.callback_fail(400, "invalid header field name");
    if (++s.m.field_count > s.limits.max_headers) {
      return s.callback_fail(431, "more than " + std::to_string(s.limits.max_headers) + " header fields");
    }
    return 0;
  }
  static int on_header_value(llhttp_t* parser, const char* at, std::size_t length) {
    self(parser).m.value.append(at, length);
    return 0;
  }
  static int on_header_value_complete(llhttp_t* parser) {
    auto& s = self(parser);
    auto& headers = s.kind == MessageKind::request ? s.m.request.headers : s.m.response.headers;
    headers.add(std::move(s.m.field), std::string(trim_ows(s.m.value)));
    s.m.field.clear();
    s.m.value.clear();
    return 0;
  }
  static int on_headers_complete(llhttp_t* parser) {
    auto& s = self(parser);
    if (!s.finish_head()) return -1;
    return HPE_PAUSED;  // llhttp is done with this message: the engine reads the body itself
  }

  // Validates the complete head and decides the body framing. False: callback_error is set.
  bool finish_head() {
    const int major = llhttp.http_major;
    const int minor = llhttp.http_minor;
    if (major != 1 || minor > 1) {
      return reject(505, "HTTP/" + std::to_string(major) + "." + std::to_string(minor) + " is not supported");
    }
    const bool request_kind = kind == MessageKind::request;
    const Headers& headers = request_kind ? m.request.headers : m.response.headers;
    const bool keep_alive = minor == 1 ? !headers.has_token("Connection", "close")
                                       : headers.has_token("Connection", "keep-alive");
    const auto transfer_encoding = headers.get_all("Transfer-Encoding");
    const bool has_length = (llhttp.flags & F_CONTENT_LENGTH) != 0;  // llhttp rejected duplicates and TE + CL
    if (!transfer_encoding.empty()) {
      // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the framing is faulty.
      if (minor == 0) return reject(400, "Transfer-Encoding in an HTTP/1.0 message");
      if (!is_exactly_chunked(transfer_encoding)) {
        return reject(501, "only Transfer-Encoding: chunked is supported");
      }
    }
    m.framing = !transfer_encoding.empty() ? Framing::chunked
                : has_length              ? (llhttp.content_length > 0 ? Framing::length : Framing::none)
                                          : Framing::none;
    return request_kind ? finish_request_head(headers, keep_alive) : finish_response_head(headers, keep_alive);
  }

  bool finish_request_head(const Headers& headers, bool keep_alive) {
    auto& request = m.request;
    request.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp.method));
    request.version_major = llhttp.http_major;
    request.version_minor = llhttp.http_minor;
    if (llhttp.method == HTTP_CONNECT) return reject(501, "CONNECT is not supported");
    const auto hosts = headers.get_all("Host").size();
    if (hosts > 1 || (hosts == 0 && request.version_minor == 1)) {
      return reject(400, "an HTTP/1.1 request needs exactly one Host field");
    }
    request.keep_alive = keep_alive;
    request.upgrade = headers.has_token("Connection", "upgrade") && headers.contains("Upgrade");
    split_target(request);
    return true;
  }

  bool finish_response_head(const Headers& headers, bool keep_alive) {
    auto& response = m.response;
    response.status = llhttp.status_code;
    if (response.status < 100 || response.status > 599) return reject(400, "invalid status code");
    if (!is_valid_field_value(response.reason)) return reject(400, "control character in reason phrase");
    const int status = response.status;
    if (skip_body || status / 100 == 1 || status == 204 || status == 304) {
      m.framing = Framing::none;  // RFC 9112 §6.3 rules 1 and 2: whatever the headers say
    } else if (m.framing == Framing::none && !headers.contains("Content-Length")) {
      m.framing = Framing::until_close;
    }
    response.keep_alive = keep_alive && m.framing != Framing::until_close;
    m.interim = status / 100 == 1 && status != 101;
    return true;
  }

  // --- feeding ---------------------------------------------------------------------------------------

  std::size_t feed(std::span<const char> data) {
    std::size_t used = 0;
    while (true) {
      if (m.state == ParseState::error || m.state == ParseState::message_complete) break;
      if (m.state == ParseState::headers_complete) enter_body();
      if (m.state == ParseState::error) break;
      if (m.in_body) {
        used += feed_body(std::string_view(data.data() + used, data.size() - used));
        break;
      }
      if (used == data.size()) break;
      used += feed_head(data.subspan(used));
      if (m.state == ParseState::headers_complete) break;
    }
    return used;
  }

  std::size_t feed_head(std::span<const char> data) {
    const std::size_t budget = limits.max_header_bytes - m.head_bytes;
    if (budget == 0) {
      fail_head_too_large();
      return 0;
    }
    // Never hand llhttp more than the budget: the limit holds however slowly the head arrives.
    const std::size_t offered = std::min(data.size(), budget);
    const llhttp_errno_t result = llhttp_execute(&llhttp, data.data(), offered);
    std::size_t used = offered;
    if (result != HPE_OK) {
      const char* position = llhttp_get_error_pos(&llhttp);
      if (position != nullptr && position >= data.data() && position <= data.data() + offered) {
        used = static_cast<std::size_t>(position - data.data());
      }
    }
    m.received += used;
    m.head_bytes += used;
    if (const auto problem = m.scanner.scan(std::string_view(data.data(), used))) {
      fail(problem.status, problem.message);
    } else if (m.callback_error) {
      fail(m.callback_error->status, std::move(m.callback_error->message));
    } else if (result == HPE_PAUSED) {
      head_complete();
    } else if (result != HPE_OK) {
      fail_from_llhttp(result);
    }  // HPE_OK with bytes left over: feed() calls again, and the spent budget fails with 431
    return used;
  }

  void fail_head_too_large() {
    fail(431, "header section larger than " + std::to_string(limits.max_header_bytes) + " bytes");
  }

  void fail_from_llhttp(llhttp_errno_t code) {
    const std::string reason = llhttp_get_error_reason(&llhttp) ? llhttp_get_error_reason(&llhttp) : "";
    // "HTTP/1.2" is a version we do not speak (505); "HTTP/1.x" or "HTTP/1.1 " is a malformed line (400).
    const auto& v = m.version_text;
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    const bool version_shaped = v.size() == 3 && digit(v[0]) && v[1] == '.' && digit(v[2]) && v != "1.0" && v != "1.1";
    if (code == HPE_INVALID_VERSION && version_shaped) return fail(505, "HTTP/" + v + " is not supported");
    if (code == HPE_PAUSED_H2_UPGRADE) return fail(505, "HTTP/2 is not supported");
    if (code == HPE_INVALID_TRANSFER_ENCODING) return fail(501, "only Transfer-Encoding: chunked is supported");
    fail(400, "malformed message: " + reason);
  }

  void head_complete() {
    m.in_body = true;
    if (m.interim) {  // a 100 Continue or 103 Early Hints: the final response follows
      start_message();
      return;
    }
    m.body = BodyReader(m.framing, llhttp.content_length, limits);
    m.state = m.framing == Framing::none ? ParseState::message_complete : ParseState::headers_complete;
  }

  // The first feed() after headers_complete: refuse a declared length over the limit before reading it.
  void enter_body() {
    m.state = ParseState::need_more;
    fail_if_declared_too_long();
  }

  void fail_if_declared_too_long() {
    if (m.framing == Framing::length && !streaming && m.body.remaining() > m.body_limit) {
      fail(413, "body larger than " + std::to_string(m.body_limit) + " bytes");
    }
  }

  std::size_t feed_body(std::string_view data) {
    std::string& sink = streaming ? streamed : (kind == MessageKind::request ? m.request.body : m.response.body);
    const std::size_t limit = streaming ? std::numeric_limits<std::size_t>::max() : m.body_limit;
    const std::size_t used = m.body.read(data, sink, limit);
    settle_body();
    return used;
  }

  void settle_body() {
    if (const auto& problem = m.body.error()) {
      fail(problem->status, problem->message);
    } else if (m.body.done()) {
      m.state = ParseState::message_complete;
    }
  }

  // The peer closed the connection.
  void finish() {
    if (m.state == ParseState::error || m.state == ParseState::message_complete) return;
    if (!m.in_body) {
      return fail(400, m.received == 0 ? "connection closed before a message arrived"
                                       : "connection closed in the middle of the header section");
    }
    m.body.close();
    settle_body();
  }

  MessageKind kind;
  ParserLimits limits;
  llhttp_settings_t settings{};
  llhttp_t llhttp{};
  bool skip_body = false;  // the response answers HEAD
  bool streaming = false;  // body bytes go to `streamed`, unlimited
  std::string streamed;
  Message m;
};

MessageParser::MessageParser(MessageKind kind, ParserLimits limits) : impl_(std::make_unique<Impl>(kind, limits)) {}
MessageParser::~MessageParser() = default;
MessageParser::MessageParser(MessageParser&&) noexcept = default;
MessageParser& MessageParser::operator=(MessageParser&&) noexcept = default;

std::size_t MessageParser::feed(std::span<const char> data) { return impl_->feed(data); }
void MessageParser::finish() { impl_->finish(); }
ParseState MessageParser::state() const noexcept { return impl_->m.state; }
const ParseError& MessageParser::error() const noexcept { return impl_->m.error; }
const HttpRequest& MessageParser::request() const noexcept { return impl_->m.request; }
const HttpResponse& MessageParser::response() const noexcept { return impl_->m.response; }
HttpRequest MessageParser::take_request() { return std::exchange(impl_->m.request, HttpRequest{}); }
HttpResponse MessageParser::take_response() { return std::exchange(impl_->m.response, HttpResponse{}); }

void MessageParser::set_body_limit(std::size_t bytes) noexcept {
  impl_->m.body_limit = bytes;
  if (impl_->m.state == ParseState::headers_complete) impl_->fail_if_declared_too_long();
}

void MessageParser::set_skip_body(bool skip) noexcept { impl_->skip_body = skip; }
void MessageParser::set_streaming(bool on) noexcept { impl_->streaming = on; }
std::string MessageParser::take_streamed() { return std::exchange(impl_->streamed, std::string()); }

void MessageParser::reset() {
  impl_->skip_body = false;
  impl_->streaming = false;
  impl_->streamed.clear();
  impl_->start_message();
}

bool MessageParser::in_progress() const noexcept {
  const auto& m = impl_->m;
  return m.received > 0 && (m.state == ParseState::need_more || m.state == ParseState::headers_complete);
}

}  // namespace claudemesh::transport::http::detail

namespace claudemesh::transport::http {

RequestParser::RequestParser(ParserLimits limits) : core_(detail::MessageKind::request, limits) {}

}  // namespace claudemesh::transport::http
