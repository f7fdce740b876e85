// SPDX-License-Identifier: MIT
// The serializers produce RFC 9112 bytes exactly, own the body framing, and never let CR, LF or NUL from a
// field, reason, method or target split a message.
#include "transport/http/request_parser.hpp"
#include "transport/http/response_parser.hpp"
#include "transport/http/serializer.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace claudemesh::transport::http;

namespace {

HttpResponse response(int status, std::vector<Headers::Field> fields = {}, std::string body = {}) {
  HttpResponse r;
  r.status = status;
  for (auto& [name, value] : fields) r.headers.add(std::move(name), std::move(value));
  r.body = std::move(body);
  return r;
}

HttpRequest request(std::string method, std::string target, std::vector<Headers::Field> fields = {}, std::string body = {}) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  for (auto& [name, value] : fields) r.headers.add(std::move(name), std::move(value));
  r.body = std::move(body);
  return r;
}

// Our own strict parser must read back exactly one message, using every byte.
HttpResponse parse_back(const std::string& bytes) {
  ResponseParser parser;
  std::size_t used = parser.feed(bytes);
  if (parser.state() == ResponseParser::State::headers_complete) used += parser.feed(std::string_view(bytes).substr(used));
  CHECK(used == bytes.size());
  if (parser.state() == ResponseParser::State::need_more) parser.finish();
  REQUIRE_MESSAGE(parser.state() == ResponseParser::State::message_complete, parser.error().message);
  return parser.take_response();
}

}  // namespace

TEST_SUITE("http serializer") {

TEST_CASE("responses are written byte for byte as RFC 9112 says") {
  struct Case {
    std::string name;
    HttpResponse response;
    std::string bytes;
  };
  auto closing = response(503, {}, "busy");
  closing.keep_alive = false;
  auto closing_already = response(200, {{"Connection", "Close"}});
  closing_already.keep_alive = false;
  auto own_reason = response(200, {}, "");
  own_reason.reason = "Fine";
  auto odd_status = response(2000);
  odd_status.reason = "Custom";  // belongs to a status we do not send
  auto bad_reason = response(404);
  bad_reason.reason = "Gone\r\nX-Injected: 1";
  const std::vector<Case> cases{
      {"JSON body", response(200, {{"Content-Type", "application/json"}}, R"({"ok":true})"),
       "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"},
      {"empty body", response(200), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {"not keep-alive", closing, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy"},
      {"Connection: close not repeated", closing_already, "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"},
      {"own reason phrase", own_reason, "HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n"},
      {"reason with CRLF replaced", bad_reason, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"},
      {"unknown status", response(299), "HTTP/1.1 299 Unknown\r\nContent-Length: 0\r\n\r\n"},
      {"status out of range", response(2000), "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"},
      {"status below 100", response(99), "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"},
      {"reason of a replaced status", odd_status, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"},
      {"wrong Content-Length corrected", response(200, {{"Content-Length", "99"}, {"X", "1"}}, "abc"),
       "HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: 3\r\n\r\nabc"},
      {"Transfer-Encoding dropped", response(200, {{"Transfer-Encoding", "chunked"}}, "abc"),
       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"},
      {"HEAD response keeps a declared length", response(200, {{"Content-Length", "42"}}),
       "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"},
      {"non-numeric declared length ignored", response(200, {{"Content-Length", "4x"}}),
       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {"overflowing declared length ignored", response(200, {{"Content-Length", "99999999999999999999"}}),
       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
      {"204 has no body and no framing", response(204, {{"Content-Length", "3"}}, "abc"), "HTTP/1.1 204 No Content\r\n\r\n"},
      {"304 keeps a declared length, no body", response(304, {{"Content-Length", "3"}}, "abc"),
       "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"},
      {"304 without a declared length", response(304, {{"Content-Length", "x"}}), "HTTP/1.1 304 Not Modified\r\n\r\n"},
      {"101", response(101, {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}),
       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(serialize(c.response) == c.bytes);
  }
}

TEST_CASE("CR, LF, NUL and other controls never leave in a field: values are repaired, bad names dropped") {
  struct Case {
    std::string name;
    Headers::Field field;
    std::vector<Headers::Field> expected;  // what a parser reads back
  };
  const std::vector<Case> cases{
      {"CRLF in a value", {"Location", "/a\r\nSet-Cookie: evil=1"}, {{"Location", "/a  Set-Cookie: evil=1"}}},
      {"LF in a value", {"X", "a\nSet-Cookie: evil=1"}, {{"X", "a Set-Cookie: evil=1"}}},
      {"CR in a value", {"X", "a\rb"}, {{"X", "a b"}}},
      {"NUL in a value", {"X", std::string("a\0b", 3)}, {{"X", "a b"}}},
      {"DEL and other controls", {"X", "a\x7f\x01" "b"}, {{"X", "a  b"}}},
      {"HTAB is allowed", {"X", "a\tb"}, {{"X", "a\tb"}}},
      {"obs-text is allowed", {"X", "caf\xc3\xa9"}, {{"X", "caf\xc3\xa9"}}},
      {"CRLF in a name", {"X\r\nSet-Cookie", "evil=1"}, {}},
      {"colon in a name", {"Set-Cookie: evil", "1"}, {}},
      {"space in a name", {"X Y", "1"}, {}},
      {"empty name", {"", "1"}, {}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const auto r = response(200, {c.field}, "ok");
    CHECK(validate_headers(r.headers) == (c.expected.size() == 1 && c.expected[0] == c.field));
    const auto back = parse_back(serialize(r));
    std::vector<Headers::Field> expected = c.expected;
    expected.emplace_back("Content-Length", "2");
    CHECK(back.headers.fields() == expected);
    CHECK(back.body == "ok");
    const auto head = serialize_head_chunked(r);
    CHECK(head.find("\r\nSet-Cookie") == std::string::npos);
    auto req = request("GET", "/", {{"Host", "a"}, c.field});
    const auto wire = serialize(req);
    CHECK(wire.find("\r\nSet-Cookie") == std::string::npos);
    CHECK(std::string_view(wire).substr(0, wire.size() - 2).find("\r\n\r\n") == std::string::npos);
  }
}

TEST_CASE("field grammar helpers") {
  CHECK(is_token("Content-Type"));
  CHECK(is_token("!#$%&'*+-.^_`|~09azAZ"));
  CHECK_FALSE(is_token(""));
  CHECK_FALSE(is_token("a b"));
  CHECK_FALSE(is_token("a:b"));
  CHECK_FALSE(is_token("caf\xc3\xa9"));
  CHECK(is_valid_field_value(""));
  CHECK(is_valid_field_value("a\tb c\x80"));
  CHECK_FALSE(is_valid_field_value("a\rb"));
  CHECK_FALSE(is_valid_field_value("a\nb"));
  CHECK_FALSE(is_valid_field_value(std::string_view("a\0b", 3)));
  CHECK_FALSE(is_valid_field_value("\x7f"));
}

TEST_CASE("chunked responses: head, chunks and the last chunk") {
  auto head = response(200, {{"Content-Type", "text/event-stream"}, {"Content-Length", "5"}, {"Transfer-Encoding", "gzip"}});
  CHECK(serialize_head_chunked(head) ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
  head.body = "first";
  head.keep_alive = false;
  CHECK(serialize_head_chunked(head) ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nfirst\r\n");
  CHECK(serialize_head_chunked(response(204)) == "HTTP/1.1 204 No Content\r\n\r\n");
  CHECK(encode_chunk("hello") == "5\r\nhello\r\n");
  CHECK(encode_chunk(std::string(255, 'x')) == "ff\r\n" + std::string(255, 'x') + "\r\n");
  CHECK(encode_chunk(std::string(4096, 'x')).starts_with("1000\r\n"));
  CHECK(encode_chunk("").empty());
  CHECK(last_chunk() == "0\r\n\r\n");

  const std::string stream = serialize_head_chunked(head) + encode_chunk("data: a\n\n") + std::string(last_chunk());
  const auto back = parse_back(stream);
  CHECK(back.body == "firstdata: a\n\n");
  CHECK(back.headers.get("Transfer-Encoding") == "chunked");
}

TEST_CASE("requests are written byte for byte as RFC 9112 says") {
  struct Case {
    std::string name;
    HttpRequest request;
    std::string bytes;
  };
  auto from_path = request("GET", "", {{"Host", "a"}});
  from_path.path = "/v1/inbox";
  from_path.query = "limit=10";
  auto closing = request("GET", "/", {{"Host", "a"}});
  closing.keep_alive = false;
  auto http10 = request("GET", "/", {});
  http10.version_minor = 0;
  auto http10_close = http10;
  http10_close.keep_alive = false;
  auto http10_said = request("GET", "/", {{"Connection", "Keep-Alive"}});
  http10_said.version_minor = 0;
  auto http20 = request("GET", "/", {});
  http20.version_major = 2;
  http20.version_minor = 0;
  const std::vector<Case> cases{
      {"GET", request("GET", "/v1/inbox?limit=10", {{"Host", "a"}}), "GET /v1/inbox?limit=10 HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"target from path and query", from_path, "GET /v1/inbox?limit=10 HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"empty target and path", request("GET", "", {{"Host", "a"}}), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"empty method", request("", "/", {{"Host", "a"}}), "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"POST with a body", request("POST", "/m", {{"Host", "a"}, {"Content-Length", "1"}}, "hello"),
       "POST /m HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
      {"empty POST", request("POST", "/m", {{"Host", "a"}}), "POST /m HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"},
      {"empty PUT", request("PUT", "/m", {}), "PUT /m HTTP/1.1\r\nContent-Length: 0\r\n\r\n"},
      {"empty PATCH", request("PATCH", "/m", {}), "PATCH /m HTTP/1.1\r\nContent-Length: 0\r\n\r\n"},
      {"empty DELETE", request("DELETE", "/m", {}), "DELETE /m HTTP/1.1\r\n\r\n"},
      {"DELETE with a body", request("DELETE", "/m", {{"Transfer-Encoding", "chunked"}}, "x"),
       "DELETE /m HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"},
      {"not keep-alive", closing, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"},
      {"HTTP/1.0 keep-alive", http10, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
      {"HTTP/1.0 close", http10_close, "GET / HTTP/1.0\r\n\r\n"},
      {"HTTP/1.0 keep-alive not repeated", http10_said, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"},
      {"other versions are written as HTTP/1.1", http20, "GET / HTTP/1.1\r\n\r\n"},
      {"CRLF and space in the target", request("GET", "/a b\r\nX: 1", {}), "GET /a%20b%0D%0AX:%201 HTTP/1.1\r\n\r\n"},
      {"non-ASCII target", request("GET", "/caf\xc3\xa9", {}), "GET /caf%C3%A9 HTTP/1.1\r\n\r\n"},
      {"method with CRLF", request("GET / HTTP/1.1\r\nX:", "/", {}), "GET%20%2F%20HTTP%2F1.1%0D%0AX%3A / HTTP/1.1\r\n\r\n"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(serialize(c.request) == c.bytes);
  }
}

TEST_CASE("serialized requests and responses parse back to what was serialized") {
  auto req = request("PUT", "/v1/state/k?x=1", {{"Host", "mesh.example"}, {"Content-Type", "application/json"}}, "{\"v\":1}");
  const std::string bytes = serialize(req);
  RequestParser parser;
  CHECK(parser.feed(bytes) == bytes.size() - req.body.size());
  parser.feed(std::string_view(bytes).substr(bytes.size() - req.body.size()));
  REQUIRE(parser.state() == RequestParser::State::message_complete);
  const auto parsed = parser.take_request();
  CHECK(parsed.method == "PUT");
  CHECK(parsed.path == "/v1/state/k");
  CHECK(parsed.query == "x=1");
  CHECK(parsed.body == req.body);
  CHECK(parsed.headers.get("Content-Type") == "application/json");

  auto res = response(201, {{"Location", "/v1/state/k"}}, "created");
  res.keep_alive = false;
  const auto back = parse_back(serialize(res));
  CHECK(back.status == 201);
  CHECK(back.reason == "Created");
  CHECK(back.body == "created");
  CHECK_FALSE(back.keep_alive);
}

}  // TEST_SUITE
