// SPDX-License-Identifier: MIT
// The WebSocket opening handshake (RFC 6455 §4) over our HTTP message types, both sides, sans-io:
// the server validates an upgrade request and builds the 101 (or the error) response; the client builds
// the request and checks the 101 it gets back.
#pragma once

#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include "transport/http/message.hpp"

#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace claudemesh::transport::ws {

/// The GUID that RFC 6455 §1.3 appends to the client key before hashing.
inline constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version we speak (RFC 6455 §4.1).
inline constexpr std::string_view websocket_version = "13";

/// base64(SHA-1(client_key + GUID)): the Sec-WebSocket-Accept value for `client_key`.
std::string accept_key(std::string_view client_key);

/// Why an upgrade request was refused: the HTTP status to answer with (400, 405, 426) and a message
/// for the response body.
struct UpgradeError {
  int status;
  std::string message;
};

/// Check a server-side upgrade request (RFC 6455 §4.2.1), in this order:
/// * method GET, else 405;
/// * HTTP/1.1 or later, else 400;
/// * Upgrade contains the token "websocket" and Connection the token "upgrade" (case-insensitive, comma
///   lists), else 426 — a plain GET to a WebSocket endpoint is told an upgrade is required;
/// * Sec-WebSocket-Version is exactly "13", else 426 (the response then advertises version 13);
/// * Sec-WebSocket-Key present once and base64 of exactly 16 bytes, else 400;
/// * Host present, else 400.
/// @returns the client key, for `make_upgrade_response`.
std::expected<std::string, UpgradeError> validate_upgrade_request(const http::HttpRequest& request);

/// The 101 response for a valid request. `subprotocol` is echoed in Sec-WebSocket-Protocol when set.
http::HttpResponse make_upgrade_response(std::string_view client_key, std::optional<std::string> subprotocol = {});

/// The error response for a rejected upgrade: its status, a plain-text body with the message, and the
/// connection closed afterwards. A 426 carries "Upgrade: websocket" and "Sec-WebSocket-Version: 13";
/// a 405 carries "Allow: GET".
http::HttpResponse make_upgrade_error_response(const UpgradeError& error);

/// A fresh Sec-WebSocket-Key: base64 of 16 random bytes.
std::string make_client_key(const RandomSource& rng = {});

/// The client's GET upgrade request for `host` (Host header value, with port when non-default) and
/// `target` ("/ws").
http::HttpRequest make_upgrade_request(std::string_view host, std::string_view target, std::string_view client_key);

/// Client side: status must be 101, Upgrade websocket, Connection upgrade, a single Sec-WebSocket-Accept
/// equal to accept_key(client_key), and no Sec-WebSocket-Extensions (we never offer any).
/// @returns `Errc::malformed` with a message naming the failed check.
Result<void> validate_upgrade_response(const http::HttpResponse& response, std::string_view client_key);

}  // namespace claudemesh::transport::ws
