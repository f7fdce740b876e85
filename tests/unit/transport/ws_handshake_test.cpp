// SPDX-License-Identifier: MIT
#include "transport/ws/handshake.hpp"

#include <claudemesh/bytes.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <string>

using namespace claudemesh;
using namespace claudemesh::transport;
using namespace claudemesh::transport::ws;

namespace {

constexpr std::string_view kRfcKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 §1.3

// The request of RFC 6455 §1.2, as the HTTP parser would hand it over.
http::HttpRequest valid_request() {
  http::HttpRequest request;
  request.method = "GET";
  request.target = request.path = "/chat";
  request.headers.add("Host", "server.example.com");
  request.headers.add("Upgrade", "websocket");
  request.headers.add("Connection", "Upgrade");
  request.headers.add("Sec-WebSocket-Key", std::string(kRfcKey));
  request.headers.add("Origin", "http://example.com");
  request.headers.add("Sec-WebSocket-Version", "13");
  request.upgrade = true;
  return request;
}

http::HttpResponse valid_response() { return make_upgrade_response(kRfcKey); }

}  // namespace

TEST_SUITE("ws handshake") {
  TEST_CASE("the accept key is the RFC 6455 §1.3 example") {
    CHECK(accept_key(kRfcKey) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  }

  TEST_CASE("a valid upgrade request yields its client key") {
    const auto key = validate_upgrade_request(valid_request());
    REQUIRE(key);
    CHECK(*key == kRfcKey);
  }

  TEST_CASE("header names and tokens are matched case-insensitively, in comma lists, with whitespace") {
    http::HttpRequest request = valid_request();
    request.headers = {};
    request.headers.add("host", "server.example.com");
    request.headers.add("UPGRADE", "WebSocket");
    request.headers.add("connection", "keep-alive, UPGRADE");
    request.headers.add("sec-websocket-key", " " + std::string(kRfcKey) + " ");
    request.headers.add("SEC-WEBSOCKET-VERSION", " 13");
    const auto key = validate_upgrade_request(request);
    REQUIRE(key);
    CHECK(*key == kRfcKey);
    request.version_minor = 2;  // a later HTTP/1.x is fine too
    CHECK(validate_upgrade_request(request));
  }

  TEST_CASE("every rejected upgrade request gets its status and says why") {
    struct Case {
      std::string name;
      std::function<void(http::HttpRequest&)> change;
      int status;
      std::string reason;  // part of the message, to prove which check fired
    };
    const Case cases[] = {
        {"POST", [](auto& r) { r.method = "POST"; }, 405, "GET"},
        {"lowercase get", [](auto& r) { r.method = "get"; }, 405, "GET"},
        {"HTTP/1.0", [](auto& r) { r.version_minor = 0; }, 400, "HTTP/1.1"},
        {"HTTP/0.9", [](auto& r) { r.version_major = 0; r.version_minor = 9; }, 400, "HTTP/1.1"},
        {"no Upgrade", [](auto& r) { r.headers.remove("Upgrade"); }, 426, "Upgrade: websocket"},
        {"Upgrade: h2c", [](auto& r) { r.headers.set("Upgrade", "h2c"); }, 426, "Upgrade: websocket"},
        {"no Connection", [](auto& r) { r.headers.remove("Connection"); }, 426, "Connection"},
        {"Connection: keep-alive", [](auto& r) { r.headers.set("Connection", "keep-alive"); }, 426, "Connection"},
        {"version 8", [](auto& r) { r.headers.set("Sec-WebSocket-Version", "8"); }, 426, "Version"},
        {"version list", [](auto& r) { r.headers.set("Sec-WebSocket-Version", "13, 8"); }, 426, "Version"},
        {"version twice", [](auto& r) { r.headers.add("Sec-WebSocket-Version", "13"); }, 426, "Version"},
        {"no version", [](auto& r) { r.headers.remove("Sec-WebSocket-Version"); }, 426, "Version"},
        {"no key", [](auto& r) { r.headers.remove("Sec-WebSocket-Key"); }, 400, "missing"},
        {"key twice", [](auto& r) { r.headers.add("Sec-WebSocket-Key", std::string(kRfcKey)); }, 400, "more than once"},
        {"key not base64", [](auto& r) { r.headers.set("Sec-WebSocket-Key", "not base64 at all!!!!!!!"); }, 400, "16 bytes"},
        {"key of 15 bytes", [](auto& r) { r.headers.set("Sec-WebSocket-Key", to_base64(Bytes(15, 1))); }, 400, "16 bytes"},
        {"key of 17 bytes", [](auto& r) { r.headers.set("Sec-WebSocket-Key", to_base64(Bytes(17, 1))); }, 400, "16 bytes"},
        {"empty key", [](auto& r) { r.headers.set("Sec-WebSocket-Key", ""); }, 400, "16 bytes"},
        {"no Host", [](auto& r) { r.headers.remove("Host"); }, 400, "Host"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      http::HttpRequest request = valid_request();
      c.change(request);
      const auto result = validate_upgrade_request(request);
      REQUIRE_FALSE(result);
      CHECK(result.error().status == c.status);
      CHECK(result.error().message.find(c.reason) != std::string::npos);
    }
  }

  TEST_CASE("the 101 response carries the accept key and echoes a chosen subprotocol") {
    const auto plain = make_upgrade_response(kRfcKey);
    CHECK(plain.status == 101);
    CHECK(plain.headers.get("Upgrade") == "websocket");
    CHECK(plain.headers.get("Connection") == "Upgrade");
    CHECK(plain.headers.get("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK_FALSE(plain.headers.contains("Sec-WebSocket-Protocol"));
    const auto chat = make_upgrade_response(kRfcKey, "chat");
    CHECK(chat.headers.get("Sec-WebSocket-Protocol") == "chat");
  }

  TEST_CASE("error responses carry the status, the message, and what the client should do instead") {
    const auto version = make_upgrade_error_response({426, "Sec-WebSocket-Version must be 13"});
    CHECK(version.status == 426);
    CHECK(version.body == "Sec-WebSocket-Version must be 13");
    CHECK(version.headers.get("Sec-WebSocket-Version") == "13");
    CHECK(version.headers.get("Upgrade") == "websocket");
    CHECK_FALSE(version.keep_alive);
    const auto method = make_upgrade_error_response({405, "use GET"});
    CHECK(method.headers.get("Allow") == "GET");
    CHECK_FALSE(method.headers.contains("Sec-WebSocket-Version"));
    const auto bad = make_upgrade_error_response({400, "Host is missing"});
    CHECK(bad.status == 400);
    CHECK(bad.body == "Host is missing");
    CHECK_FALSE(bad.headers.contains("Sec-WebSocket-Version"));
    CHECK_FALSE(bad.headers.contains("Allow"));
  }

  TEST_CASE("client keys are base64 of 16 fresh random bytes") {
    const auto key = make_client_key();
    const auto decoded = from_base64(key);
    REQUIRE(decoded);
    CHECK(decoded->size() == 16);
    CHECK(make_client_key() != key);
    const RandomSource zeros = [](std::span<std::uint8_t> out) { std::fill(out.begin(), out.end(), 0); };
    CHECK(make_client_key(zeros) == "AAAAAAAAAAAAAAAAAAAAAA==");
  }

  TEST_CASE("the client request is a GET upgrade for the host and target") {
    const auto request = make_upgrade_request("mesh.example:8443", "/ws?v=1", kRfcKey);
    CHECK(request.method == "GET");
    CHECK(request.target == "/ws?v=1");
    CHECK(request.path == "/ws");
    CHECK(request.query == "v=1");
    CHECK(request.version_major == 1);
    CHECK(request.version_minor == 1);
    CHECK(request.headers.get("Host") == "mesh.example:8443");
    CHECK(request.headers.get("Sec-WebSocket-Key") == kRfcKey);
    CHECK(request.headers.get("Sec-WebSocket-Version") == "13");
    CHECK(request.upgrade);
  }

  TEST_CASE("a full handshake round-trips between client and server") {
    std::uint8_t next = 0;
    const auto key = make_client_key([&](std::span<std::uint8_t> out) {
      for (auto& b : out) b = next++;
    });
    const auto request = make_upgrade_request("localhost:7900", "/ws", key);
    const auto accepted = validate_upgrade_request(request);
    REQUIRE(accepted);
    CHECK(*accepted == key);
    const auto response = make_upgrade_response(*accepted, "claudemesh.v1");
    CHECK(validate_upgrade_response(response, key));
    // Another client's key does not match this response.
    CHECK(validate_upgrade_response(response, make_client_key()).error() == Errc::malformed);
  }

  TEST_CASE("the client accepts a 101 with case-insensitive tokens") {
    http::HttpResponse response;
    response.status = 101;
    response.headers.add("upgrade", "WebSocket");
    response.headers.add("CONNECTION", "upgrade");
    response.headers.add("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(validate_upgrade_response(response, kRfcKey));
  }

  TEST_CASE("every bad upgrade response is malformed and says why") {
    struct Case {
      std::string name;
      std::function<void(http::HttpResponse&)> change;
      std::string reason;
    };
    const Case cases[] = {
        {"status 200", [](auto& r) { r.status = 200; }, "got 200"},
        {"status 426", [](auto& r) { r.status = 426; }, "got 426"},
        {"no Upgrade", [](auto& r) { r.headers.remove("Upgrade"); }, "Upgrade"},
        {"Upgrade: h2c", [](auto& r) { r.headers.set("Upgrade", "h2c"); }, "Upgrade"},
        {"no Connection", [](auto& r) { r.headers.remove("Connection"); }, "Connection"},
        {"no accept", [](auto& r) { r.headers.remove("Sec-WebSocket-Accept"); }, "exactly one"},
        {"accept twice", [](auto& r) { r.headers.add("Sec-WebSocket-Accept", accept_key(kRfcKey)); }, "exactly one"},
        {"wrong accept", [](auto& r) { r.headers.set("Sec-WebSocket-Accept", accept_key("AAAAAAAAAAAAAAAAAAAAAA==")); },
         "does not match"},
        {"extension", [](auto& r) { r.headers.add("Sec-WebSocket-Extensions", "permessage-deflate"); }, "extension"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      http::HttpResponse response = valid_response();
      c.change(response);
      const auto result = validate_upgrade_response(response, kRfcKey);
      REQUIRE_FALSE(result);
      CHECK(result.error() == Errc::malformed);
      CHECK(result.error().message.find(c.reason) != std::string::npos);
    }
  }
}
