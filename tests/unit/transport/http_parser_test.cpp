// SPDX-License-Identifier: MIT
// RequestParser and ResponseParser against RFC 9112: every case runs whole, byte by byte and at every two-piece
// split, and must give the same result each way.
#include "transport/http/request_parser.hpp"
#include "transport/http/response_parser.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace claudemesh::transport::http;

namespace {

// "|" stands for CRLF, so tables stay readable; bare "\n" and "\r" are written as such.
std::string wire(std::string_view text) {
  std::string out;
  for (const char c : text) out += c == '|' ? std::string("\r\n") : std::string(1, c);
  return out;
}

struct Outcome {
  detail::ParseState state = detail::ParseState::need_more;
  int status = 0;            // error().status in State::error
  std::size_t consumed = 0;  // bytes of the input used when parsing stopped
  HttpRequest request;
  HttpResponse response;
  std::string streamed;
};

// Feeds `input` in pieces: the first `split` bytes, then `step` bytes at a time. Stops at message_complete or
// error; calls finish() at the end of the input when `finish` (response parser).
template <class Parser>
Outcome run(Parser& parser, std::string_view input, std::size_t split, std::size_t step, bool finish = false) {
  using State = detail::ParseState;
  Outcome out;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    const auto state = parser.state();
    if (state == State::message_complete || state == State::error) break;
    if (state == State::need_more && out.consumed == input.size()) {
      if constexpr (requires { parser.finish(); }) {
        if (finish) parser.finish();
      }
      break;
    }
    const std::size_t limit = out.consumed < split ? split - out.consumed : step;
    const std::size_t n = std::min(limit, input.size() - out.consumed);
    out.consumed += parser.feed(std::span<const char>(input.data() + out.consumed, n));
    if constexpr (requires { parser.take_body_chunk(); }) out.streamed += parser.take_body_chunk();
  }
  out.state = parser.state();
  if (out.state == State::error) out.status = parser.error().status;
  if constexpr (requires { parser.request(); }) out.request = parser.request();
  if constexpr (requires { parser.response(); }) out.response = parser.response();
  return out;
}

void check_same(const Outcome& a, const Outcome& b) {
  CHECK(a.state == b.state);
  CHECK(a.status == b.status);
  if (a.state == detail::ParseState::error) return;  // where an error stops may depend on the split
  CHECK(a.consumed == b.consumed);
  CHECK(a.request.method == b.request.method);
  CHECK(a.request.target == b.request.target);
  CHECK(a.request.headers.fields() == b.request.headers.fields());
  CHECK(a.request.body == b.request.body);
  CHECK(a.request.keep_alive == b.request.keep_alive);
  CHECK(a.response.status == b.response.status);
  CHECK(a.response.reason == b.response.reason);
  CHECK(a.response.headers.fields() == b.response.headers.fields());
  CHECK(a.response.body == b.response.body);
  CHECK(a.streamed == b.streamed);
}

// Parses whole, then checks that byte-by-byte and every two-piece split agree with it.
Outcome parse_request(std::string_view input, ParserLimits limits = {}) {
  RequestParser whole(limits);
  const Outcome expected = run(whole, input, input.size(), input.size());
  for (std::size_t split = 0; split <= input.size(); ++split) {
    RequestParser parser(limits);
    CAPTURE(split);
    check_same(run(parser, input, split, split == 0 ? 1 : input.size()), expected);
  }
  return expected;
}

Outcome parse_response(std::string_view input, std::string_view method = "GET", bool finish = false,
                       bool streaming = false, ParserLimits limits = {}) {
  const auto make = [&] {
    ResponseParser parser(limits);
    parser.expect_response_to(method);
    parser.set_streaming(streaming);
    return parser;
  };
  ResponseParser whole = make();
  const Outcome expected = run(whole, input, input.size(), input.size(), finish);
  for (std::size_t split = 0; split <= input.size(); ++split) {
    ResponseParser parser = make();
    CAPTURE(split);
    check_same(run(parser, input, split, split == 0 ? 1 : input.size(), finish), expected);
  }
  return expected;
}

using State = RequestParser::State;

}  // namespace

TEST_SUITE("http parser") {

  TEST_CASE("requests are parsed into method, target, headers, body and connection flags") {
    struct Case {
      std::string name, input, method, path, query, body;
      bool keep_alive, upgrade;
      std::size_t unconsumed;
    };
    const std::string chunked = "POST /up HTTP/1.1|Host: a|Transfer-Encoding: chunked||";
    const std::vector<Case> cases{
        {"GET with query", "GET /v1/inbox?limit=10 HTTP/1.1|Host: a||", "GET", "/v1/inbox", "limit=10", "", true, false, 0},
        {"1.1 defaults to keep-alive", "GET / HTTP/1.1|Host: a|Connection: keep-alive||", "GET", "/", "", "", true, false, 0},
        {"1.1 with close", "GET / HTTP/1.1|Host: a|Connection: close||", "GET", "/", "", "", false, false, 0},
        {"close in a token list", "GET / HTTP/1.1|Host: a|Connection: foo, CLOSE||", "GET", "/", "", "", false, false, 0},
        {"1.0 defaults to close", "GET / HTTP/1.0||", "GET", "/", "", "", false, false, 0},
        {"1.0 with keep-alive", "GET / HTTP/1.0|Connection: Keep-Alive||", "GET", "/", "", "", true, false, 0},
        {"Content-Length body", "POST /m HTTP/1.1|Host: a|Content-Length: 5||helloGET", "POST", "/m", "", "hello", true, false, 3},
        {"Content-Length: 0", "POST /m HTTP/1.1|Host: a|Content-Length: 0||", "POST", "/m", "", "", true, false, 0},
        {"1.0 body", "PUT /m HTTP/1.0|Content-Length: 2||hi", "PUT", "/m", "", "hi", false, false, 0},
        {"chunked with extensions and trailers", chunked + "5;name=val;q=\"a b\"|hello|7 ; x|, world|0|X-Trailer: 1||rest",
         "POST", "/up", "", "hello, world", true, false, 4},
        {"chunk sizes in any case, leading zeros", chunked + "000A|0123456789|a|abcdefghij|00|||", "POST", "/up", "",
         "0123456789abcdefghij", true, false, 2},
        {"Transfer-Encoding is case-insensitive", "POST /up HTTP/1.1|Host: a|Transfer-Encoding: Chunked||1|x|0||", "POST",
         "/up", "", "x", true, false, 0},
        {"empty chunked body", chunked + "0||", "POST", "/up", "", "", true, false, 0},
        {"upgrade stops at the head", "GET /ws HTTP/1.1|Host: a|Connection: keep-alive, Upgrade|Upgrade: websocket||\x81\x05hello",
         "GET", "/ws", "", "", true, true, 7},
        {"Connection: upgrade without Upgrade", "GET /ws HTTP/1.1|Host: a|Connection: upgrade||", "GET", "/ws", "", "", true, false, 0},
        {"empty line before the request line", "|GET / HTTP/1.1|Host: a||", "GET", "/", "", "", true, false, 0},
        {"absolute-form target", "GET http://example.com:80/p/q?x=1#frag HTTP/1.1|Host: example.com||", "GET", "/p/q", "x=1", "",
         true, false, 0},
        {"absolute-form without a path", "GET http://example.com HTTP/1.1|Host: example.com||", "GET", "/", "", "", true, false, 0},
        {"asterisk-form", "OPTIONS * HTTP/1.1|Host: a||", "OPTIONS", "*", "", "", true, false, 0},
        {"query without value, fragment dropped", "DELETE /x?#y HTTP/1.1|Host: a||", "DELETE", "/x", "", "", true, false, 0},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      const std::string input = wire(c.input);
      const auto out = parse_request(input);
      REQUIRE_MESSAGE(out.state == State::message_complete, out.status);
      CHECK(out.request.method == c.method);
      CHECK(out.request.path == c.path);
      CHECK(out.request.query == c.query);
      CHECK(out.request.body == c.body);
      CHECK(out.request.keep_alive == c.keep_alive);
      CHECK(out.request.upgrade == c.upgrade);
      CHECK(input.size() - out.consumed == c.unconsumed);
      CHECK_FALSE(out.request.headers.contains("X-Trailer"));  // trailers are checked, then discarded
    }
  }

  TEST_CASE("header fields keep their order, case and duplicates - values lose surrounding whitespace") {
    const auto out = parse_request(wire("GET / HTTP/1.1|Host: a|X-Pad: \t a b \t|X-Empty:|x-dup: 1|X-Dup: 2|X-Utf8: caf\xc3\xa9||"));
    REQUIRE(out.state == State::message_complete);
    const std::vector<Headers::Field> expected{
        {"Host", "a"}, {"X-Pad", "a b"}, {"X-Empty", ""}, {"x-dup", "1"}, {"X-Dup", "2"}, {"X-Utf8", "caf\xc3\xa9"}};
    CHECK(out.request.headers.fields() == expected);
    CHECK(out.request.version_major == 1);
    CHECK(out.request.version_minor == 1);
    CHECK(out.request.target == "/");
  }

  TEST_CASE("malformed, hostile and unsupported requests are refused with the right status") {
    struct Case {
      std::string name, input;
      int status;
    };
    const std::string post = "POST / HTTP/1.1|Host: a|";
    const std::string chunked = post + "Transfer-Encoding: chunked||";
    const std::vector<Case> cases{
        // Request smuggling: ambiguous or non-standard framing.
        {"Content-Length and Transfer-Encoding", post + "Content-Length: 5|Transfer-Encoding: chunked||0||", 400},
        {"Transfer-Encoding and Content-Length", post + "Transfer-Encoding: chunked|Content-Length: 5||0||", 400},
        {"duplicate differing Content-Length", post + "Content-Length: 5|Content-Length: 6||hello!", 400},
        {"duplicate equal Content-Length", post + "Content-Length: 5|Content-Length: 5||hello", 400},
        {"Content-Length list", post + "Content-Length: 5, 5||hello", 400},
        {"negative Content-Length", post + "Content-Length: -1||", 400},
        {"Content-Length overflow", post + "Content-Length: 99999999999999999999999||", 400},
        {"Transfer-Encoding gzip", post + "Transfer-Encoding: gzip||", 501},
        {"Transfer-Encoding gzip, chunked", post + "Transfer-Encoding: gzip, chunked||0||", 501},
        {"Transfer-Encoding chunked, gzip", post + "Transfer-Encoding: chunked, gzip||0||", 501},
        {"Transfer-Encoding chunked twice", post + "Transfer-Encoding: chunked|Transfer-Encoding: chunked||0||", 501},
        {"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0|Transfer-Encoding: chunked||0||", 400},
        // Chunked framing.
        {"chunk size not hex", chunked + "z|hello|0||", 400},
        {"chunk size with 0x", chunked + "0x5|hello|0||", 400},
        {"chunk size missing", chunked + "|hello|0||", 400},
        {"chunk size missing on the last chunk", chunked + "||", 400},
        {"chunk size that wraps to a small one", chunked + "10000000000000005|hello|0||", 400},
        {"chunk size overflow", chunked + "10000000000000000|x|0||", 400},
        {"whitespace after chunk size", chunked + "5 |hello|0||", 400},
        {"chunk-size line ended by LF", chunked + "5\nhello|0||", 400},
        {"chunk-size line CR without LF", chunked + "5\rhello|0||", 400},
        {"chunk-size line CR and another byte", chunked + "5\rXhello|0||", 400},
        {"chunk data not followed by CRLF", chunked + "5|helloXX0||", 400},
        {"chunk data followed by LF only", chunked + "5|hello\n0||", 400},
        {"chunk data followed by CR only", chunked + "5|hello\rX0||", 400},
        {"chunk data followed by another byte and LF", chunked + "5|helloX\n0||", 400},
        {"control character in chunk extension", chunked + "5;a=\x01|hello|0||", 400},
        {"trailer ended by LF", chunked + "0|X: 1\n|", 400},
        {"trailer with CR without LF", chunked + "0|X: 1\rY||", 400},
        {"trailer obs-fold", chunked + "0|X: 1| folded||", 400},
        {"trailer without colon", chunked + "0|nonsense||", 400},
        {"trailer name with space", chunked + "0|X Y: 1||", 400},
        {"trailer with NUL", chunked + "0|X: a" + std::string(1, '\0') + "||", 400},
        {"trailer with a control character", chunked + "0|X: a\x01||", 400},
        // The head.
        {"obs-fold", "GET / HTTP/1.1|Host: a|X: 1|  folded||", 400},
        {"whitespace before the first field", "GET / HTTP/1.1| Host: a||", 400},
        {"bare LF after the request line", "GET / HTTP/1.1\nHost: a||", 400},
        {"bare LF ends a field", "GET / HTTP/1.1|Host: a\n|", 400},
        {"bare LF ends the head", "GET / HTTP/1.1|Host: a|\n", 400},
        {"bare CR in a field", "GET / HTTP/1.1|Host: a\rb||", 400},
        {"bare CR in the request line", "GET /\r HTTP/1.1|Host: a||", 400},
        {"CR and another byte end the head", "GET / HTTP/1.1|Host: a|\rX", 400},
        {"bare CR before a value", "GET / HTTP/1.1|Host:\ra||", 400},
        {"NUL in a value", "GET / HTTP/1.1|Host: a" + std::string(1, '\0') + "b||", 400},
        {"NUL in a name", "GET / HTTP/1.1|Ho" + std::string(1, '\0') + "st: a||", 400},
        {"control character in a value", "GET / HTTP/1.1|Host: a\x7f||", 400},
        {"space before the colon", "GET / HTTP/1.1|Host : a||", 400},
        {"space in a field name", "GET / HTTP/1.1|Host: a|X Y: 1||", 400},
        {"empty field name", "GET / HTTP/1.1|Host: a|: 1||", 400},
        {"invalid character in a field name", "GET / HTTP/1.1|Host: a|X@Y: 1||", 400},
        {"invalid method token", "G@T / HTTP/1.1|Host: a||", 400},
        {"lower-case method", "get / HTTP/1.1|Host: a||", 400},
        {"unknown method", "FROB / HTTP/1.1|Host: a||", 400},
        {"two spaces in the request line", "GET  / HTTP/1.1|Host: a||", 400},
        {"space in the target", "GET /a b HTTP/1.1|Host: a||", 400},
        {"control character in the target", "GET /a\x01 HTTP/1.1|Host: a||", 400},
        {"trailing space after the version", "GET / HTTP/1.1 |Host: a||", 400},
        {"HTTP/0.9 request line without version", "GET /||", 400},
        {"malformed version", "GET / HTTP/1.x|Host: a||", 400},
        {"not HTTP", "GET / XTTP/1.1|Host: a||", 400},
        {"HTTP/2.0", "GET / HTTP/2.0|Host: a||", 505},
        {"HTTP/0.9 spelled out", "GET / HTTP/0.9|Host: a||", 505},
        {"HTTP/1.2", "GET / HTTP/1.2|Host: a||", 505},
        {"HTTP/3.0", "GET / HTTP/3.0|Host: a||", 505},
        {"HTTP/2 connection preface", "PRI * HTTP/2.0||SM||", 505},
        {"missing Host in HTTP/1.1", "GET / HTTP/1.1|Accept: */*||", 400},
        {"two Host fields", "GET / HTTP/1.1|Host: a|Host: b||", 400},
        {"CONNECT", "CONNECT example.com:443 HTTP/1.1|Host: example.com:443||", 501},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      const auto out = parse_request(wire(c.input));
      CHECK(out.state == State::error);
      CHECK(out.status == c.status);
    }
  }

  TEST_CASE("the header section limit holds at exactly its size, and one byte more is 431") {
    const std::string head = wire("GET / HTTP/1.1|Host: a|X-Pad: ||");
    for (const std::size_t limit : {std::size_t{64}, std::size_t{100}, std::size_t{1000}}) {
      CAPTURE(limit);
      const std::string pad(limit - head.size(), 'p');
      const std::string exact = wire("GET / HTTP/1.1|Host: a|X-Pad: " + pad + "||");
      REQUIRE(exact.size() == limit);
      CHECK(parse_request(exact, {.max_header_bytes = limit}).state == State::message_complete);
      const auto over = parse_request(wire("GET / HTTP/1.1|Host: a|X-Pad: " + pad + "p||"), {.max_header_bytes = limit});
      CHECK(over.state == State::error);
      CHECK(over.status == 431);
    }
  }

  TEST_CASE("a huge header line arriving slowly fails once it passes the limit, without being buffered") {
    RequestParser parser;  // 16 KiB
    const std::string start = wire("GET / HTTP/1.1|Host: a|X-Big: ");
    std::size_t consumed = parser.feed(start);
    const std::string kilobyte(1024, 'x');
    std::size_t sent = start.size();
    while (parser.state() == State::need_more && sent < (1u << 20)) {
      consumed += parser.feed(kilobyte);
      sent += kilobyte.size();
    }
    CHECK(parser.state() == State::error);
    CHECK(parser.error().status == 431);
    CHECK(consumed <= 16 * 1024);
    CHECK(sent <= 17 * 1024 + start.size());

    RequestParser at_once;
    CHECK(at_once.feed(start + std::string(1 << 20, 'x')) <= 16 * 1024);
    CHECK(at_once.state() == State::error);
    CHECK(at_once.error().status == 431);
  }

  TEST_CASE("header field count and request-target length limits") {
    const ParserLimits limits{.max_headers = 3, .max_target_bytes = 10};
    CHECK(parse_request(wire("GET / HTTP/1.1|Host: a|B: 1|C: 1||"), limits).state == State::message_complete);
    const auto many = parse_request(wire("GET / HTTP/1.1|Host: a|B: 1|C: 1|D: 1||"), limits);
    CHECK(many.status == 431);
    CHECK(parse_request(wire("GET /123456789 HTTP/1.1|Host: a||"), limits).state == State::message_complete);
    CHECK(parse_request(wire("GET /1234567890 HTTP/1.1|Host: a||"), limits).status == 414);
    CHECK(parse_request(wire("GET /1234567890\x01 HTTP/1.1|Host: a||"), limits).status == 414);  // by position
  }

  TEST_CASE("trailer sections are bounded like the head") {
    const std::string chunked = "POST / HTTP/1.1|Host: a|Transfer-Encoding: chunked||0|";
    const ParserLimits limits{.max_header_bytes = 200, .max_headers = 3};
    CHECK(parse_request(wire(chunked + "A: 1|B: 2|C: 3||"), limits).state == State::message_complete);
    CHECK(parse_request(wire(chunked + "A: 1|B: 2|C: 3|D: 4||"), limits).status == 431);
    CHECK(parse_request(wire(chunked + "A: " + std::string(200, 'x') + "||"), limits).status == 431);
  }

  TEST_CASE("body limits: declared lengths fail before the body is read, chunked bodies when they pass the limit") {
    const ParserLimits limits{.max_body_bytes = 10, .max_chunk_line_bytes = 64};
    const std::string post = "POST / HTTP/1.1|Host: a|";
    CHECK(parse_request(wire(post + "Content-Length: 10||0123456789"), limits).state == State::message_complete);
    CHECK(parse_request(wire(post + "Content-Length: 11||0123456789a"), limits).status == 413);
    const std::string chunked = post + "Transfer-Encoding: chunked||";
    CHECK(parse_request(wire(chunked + "5|01234|5|56789|0||"), limits).state == State::message_complete);
    CHECK(parse_request(wire(chunked + "5|01234|6|56789a|0||"), limits).status == 413);
    CHECK(parse_request(wire(chunked + "1;" + std::string(10, 'e') + "|x|0||"), limits).status == 413);  // extensions count
    CHECK(parse_request(wire(chunked + "0;" + std::string(11, 'e') + "||"), limits).status == 413);
    CHECK(parse_request(wire(chunked + "1;" + std::string(70, 'e') + "|x|0||"), {.max_chunk_line_bytes = 64}).status == 400);
    CHECK(parse_request(wire(chunked + "1;ab|x|1;ab|x|1;ab|x|0||"), {.max_chunk_line_bytes = 8}).state ==
          State::message_complete);  // the chunk-size line limit is per line

    SUBCASE("413 comes before any body byte is consumed") {
      RequestParser parser(limits);
      const std::string head = wire(post + "Content-Length: 11||");
      const std::string input = head + "0123456789a";
      CHECK(parser.feed(input) == head.size());
      CHECK(parser.state() == State::headers_complete);
      CHECK(parser.feed(std::string_view(input).substr(head.size(), 5)) == 0);
      CHECK(parser.state() == State::error);
      CHECK(parser.error().status == 413);
    }
    SUBCASE("a chunk that would pass the limit fails at its size line, before its data") {
      RequestParser parser(limits);
      const std::string head = wire(chunked);
      CHECK(parser.feed(head) == head.size());
      CHECK(parser.state() == State::headers_complete);
      const std::string body = wire("5|01234|6|");
      CHECK(parser.feed(body) == body.size());
      CHECK(parser.state() == State::error);
      CHECK(parser.error().status == 413);
    }
    SUBCASE("set_body_limit fails a too-long declared length at once, raises the limit, and reset restores it") {
      RequestParser parser(limits);
      const std::string head = wire(post + "Content-Length: 11||");
      parser.feed(head);
      parser.set_body_limit(20);
      CHECK(parser.feed(std::string("0123456789a")) == 11);
      CHECK(parser.state() == State::message_complete);
      parser.reset();
      parser.feed(head);
      CHECK(parser.state() == State::headers_complete);
      parser.set_body_limit(5);
      CHECK(parser.state() == State::error);
      CHECK(parser.error().status == 413);
      parser.reset();
      parser.feed(head);
      CHECK(parser.feed(std::string("0123456789a")) == 0);
      CHECK(parser.error().status == 413);  // back to the default of 10
    }
  }

  TEST_CASE("pipelined requests in one buffer are parsed one after the other with reset()") {
    const std::string input = wire(
        "GET /1 HTTP/1.1|Host: a||"
        "POST /2 HTTP/1.1|Host: a|Content-Length: 3||abc"
        "POST /3 HTTP/1.1|Host: a|Transfer-Encoding: chunked||2|de|0||"
        "GET /4 HTTP/1.1|Host: a|Connection: close||");
    RequestParser parser;
    std::string_view pending = input;
    std::vector<std::string> seen;
    while (!pending.empty()) {
      pending.remove_prefix(parser.feed(pending));
      if (parser.state() == State::message_complete) {
        const auto request = parser.take_request();
        seen.push_back(request.path + ":" + request.body + (request.keep_alive ? "" : ":close"));
        CHECK(parser.request().path.empty());  // moved out
        CHECK(parser.feed(pending) == 0);      // nothing more until reset()
        parser.reset();
      }
      REQUIRE(parser.state() != State::error);
    }
    CHECK(seen == std::vector<std::string>{"/1:", "/2:abc", "/3:de", "/4::close"});
  }

  TEST_CASE("in_progress tells a half-sent request from an idle connection") {
    RequestParser parser;
    CHECK_FALSE(parser.in_progress());
    parser.feed(std::string("G"));
    CHECK(parser.in_progress());
    parser.feed(wire("ET / HTTP/1.1|Host: a|Content-Length: 2||"));
    CHECK(parser.state() == State::headers_complete);
    CHECK(parser.in_progress());
    parser.feed(std::string("hi"));
    CHECK(parser.state() == State::message_complete);
    CHECK_FALSE(parser.in_progress());
    parser.reset();
    CHECK_FALSE(parser.in_progress());
  }

  TEST_CASE("responses: status, reason, headers and every kind of body framing") {
    struct Case {
      std::string name, input, method;
      bool finish;
      int status;
      std::string reason, body;
      bool keep_alive;
      std::size_t unconsumed;
    };
    const std::vector<Case> cases{
        {"Content-Length", "HTTP/1.1 200 OK|Content-Length: 5||helloHTTP", "GET", false, 200, "OK", "hello", true, 4},
        {"chunked", "HTTP/1.1 201 Created|Transfer-Encoding: chunked||3;x=1|abc|0|T: 1||", "POST", false, 201, "Created", "abc", true, 0},
        {"until close", "HTTP/1.1 200 OK||hello", "GET", true, 200, "OK", "hello", false, 0},
        {"empty body until close", "HTTP/1.1 200 OK||", "GET", true, 200, "OK", "", false, 0},
        {"HTTP/1.0 defaults to close", "HTTP/1.0 200 OK|Content-Length: 2||hi", "GET", false, 200, "OK", "hi", false, 0},
        {"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK|Connection: keep-alive|Content-Length: 2||hi", "GET", false, 200, "OK", "hi", true, 0},
        {"Connection: close", "HTTP/1.1 200 OK|Connection: close|Content-Length: 2||hi", "GET", false, 200, "OK", "hi", false, 0},
        {"no reason phrase", "HTTP/1.1 404 |Content-Length: 0||", "GET", false, 404, "", "", true, 0},
        {"reason with spaces", "HTTP/1.1 503 Service Unavailable|Content-Length: 0||", "GET", false, 503, "Service Unavailable", "", true, 0},
        {"204 has no body", "HTTP/1.1 204 No Content|Content-Length: 5||hello", "DELETE", false, 204, "No Content", "", true, 5},
        {"304 has no body", "HTTP/1.1 304 Not Modified|Content-Length: 5||hello", "GET", false, 304, "Not Modified", "", true, 5},
        {"HEAD response has no body", "HTTP/1.1 200 OK|Content-Length: 5||hello", "HEAD", false, 200, "OK", "", true, 5},
        {"HEAD response, chunked", "HTTP/1.1 200 OK|Transfer-Encoding: chunked||", "HEAD", false, 200, "OK", "", true, 0},
        {"interim 100 and 103 are skipped", "HTTP/1.1 100 Continue||HTTP/1.1 103 Early Hints|Link: </a>||HTTP/1.1 200 OK|Content-Length: 1||x",
         "POST", false, 200, "OK", "x", true, 0},
        {"101 stops at the head", "HTTP/1.1 101 Switching Protocols|Upgrade: websocket|Connection: Upgrade||\x81\x01", "GET", false,
         101, "Switching Protocols", "", true, 2},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      const std::string input = wire(c.input);
      const auto out = parse_response(input, c.method, c.finish);
      REQUIRE_MESSAGE(out.state == State::message_complete, out.status);
      CHECK(out.response.status == c.status);
      CHECK(out.response.reason == c.reason);
      CHECK(out.response.body == c.body);
      CHECK(out.response.keep_alive == c.keep_alive);
      CHECK(input.size() - out.consumed == c.unconsumed);
    }
  }

  TEST_CASE("malformed and truncated responses fail") {
    struct Case {
      std::string name, input;
      bool finish;
      int status;
    };
    const std::vector<Case> cases{
        {"closed before anything", "", true, 400},
        {"truncated head", "HTTP/1.1 200 OK|Content-", true, 400},
        {"truncated Content-Length body", "HTTP/1.1 200 OK|Content-Length: 10||hello", true, 400},
        {"truncated chunked body", "HTTP/1.1 200 OK|Transfer-Encoding: chunked||5|hello|", true, 400},
        {"two-digit status", "HTTP/1.1 20 OK|Content-Length: 0||", false, 400},
        {"status 600", "HTTP/1.1 600 Odd|Content-Length: 0||", false, 400},
        {"status 099", "HTTP/1.1 099 Odd|Content-Length: 0||", false, 400},
        {"double space before the status", "HTTP/1.1  200 OK|Content-Length: 0||", false, 400},
        {"control character in the reason", "HTTP/1.1 200 O\x01K|Content-Length: 0||", false, 400},
        {"NUL in the reason", std::string("HTTP/1.1 200 O\0K|Content-Length: 0||", 36), false, 400},
        {"bare CR in the reason", "HTTP/1.1 200 O\rK|Content-Length: 0||", false, 400},
        {"HTTP/2.0", "HTTP/2.0 200 OK|Content-Length: 0||", false, 505},
        {"Content-Length and Transfer-Encoding", "HTTP/1.1 200 OK|Content-Length: 1|Transfer-Encoding: chunked||", false, 400},
        {"unsupported Transfer-Encoding", "HTTP/1.1 200 OK|Transfer-Encoding: gzip||", false, 501},
        {"chunk data not followed by CRLF", "HTTP/1.1 200 OK|Transfer-Encoding: chunked||1|xYZ0||", false, 400},
        {"obs-fold", "HTTP/1.1 200 OK|X: 1| 2|Content-Length: 0||", false, 400},
        {"body over the limit", "HTTP/1.1 200 OK|Content-Length: 2000000||", false, 413},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      const auto out = parse_response(wire(c.input), "GET", c.finish);
      CHECK(out.state == State::error);
      CHECK(out.status == c.status);
    }
    const auto long_body = parse_response(wire("HTTP/1.1 200 OK||0123456789a"), "GET", true, false, {.max_body_bytes = 10});
    CHECK(long_body.status == 413);
  }

  TEST_CASE("streaming mode hands the body out as it arrives, without a body limit") {
    const ParserLimits limits{.max_body_bytes = 4};
    const std::string events = "data: one\n\ndata: two\n\n";
    const std::string sse = wire("HTTP/1.1 200 OK|Content-Type: text/event-stream|Transfer-Encoding: chunked||b|") +
                            events.substr(0, 11) + wire("|b|") + events.substr(11) + wire("|0||");
    const auto out = parse_response(sse, "GET", false, true, limits);
    REQUIRE(out.state == State::message_complete);
    CHECK(out.streamed == events);
    CHECK(out.response.body.empty());

    const auto closed = parse_response(wire("HTTP/1.1 200 OK||") + events, "GET", true, true, limits);
    REQUIRE(closed.state == State::message_complete);
    CHECK(closed.streamed == events);

    ResponseParser parser(limits);
    parser.set_streaming(true);
    const std::string start = wire("HTTP/1.1 200 OK|Transfer-Encoding: chunked||5|hel");
    const std::size_t head = parser.feed(start);
    CHECK(parser.state() == State::headers_complete);
    CHECK(parser.feed(std::string_view(start).substr(head)) == 6);  // the body starts on the next feed()
    CHECK(parser.take_body_chunk() == "hel");
    CHECK(parser.feed(wire("lo|")) == 4);
    CHECK(parser.take_body_chunk() == "lo");
    CHECK(parser.take_body_chunk().empty());
  }

  TEST_CASE("reset() forgets the HEAD expectation and the streaming mode") {
    ResponseParser parser;
    parser.expect_response_to("HEAD");
    const std::string response = wire("HTTP/1.1 200 OK|Content-Length: 2||hi");
    CHECK(parser.feed(response) == response.size() - 2);
    CHECK(parser.state() == State::message_complete);
    CHECK(parser.take_response().body.empty());
    parser.reset();
    parser.feed(response);
    const auto remaining = response.substr(response.size() - 2);
    parser.feed(remaining);
    CHECK(parser.state() == State::message_complete);
    CHECK(parser.response().body == "hi");
  }

}  // TEST_SUITE
