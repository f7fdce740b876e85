// SPDX-License-Identifier: MIT
#include "transport/ws/handshake.hpp"

#include <claudemesh/bytes.hpp>

#include <openssl/evp.h>

#include <array>
#include <cstdlib>
#include <utility>

namespace claudemesh::transport::ws {
namespace {

constexpr std::size_t kClientKeyBytes = 16;

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::unexpected<UpgradeError> reject(int status, std::string message) {
  return std::unexpected<UpgradeError>(std::in_place, status, std::move(message));
}

}  // namespace

std::string accept_key(std::string_view client_key) {
  std::string input;
  input.reserve(client_key.size() + websocket_guid.size());
  input.append(client_key).append(websocket_guid);
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  // SHA-1 cannot fail on in-memory input short of a broken OpenSSL; a wrong accept key would silently
  // break every handshake, so treat that as fatal rather than return something.
  if (EVP_Digest(input.data(), input.size(), digest.data(), &size, EVP_sha1(), nullptr) != 1) std::abort();
  return to_base64(std::span(digest.data(), size));
}

std::expected<std::string, UpgradeError> validate_upgrade_request(const http::HttpRequest& request) {
  if (request.method != "GET") return reject(405, "a WebSocket upgrade must use GET");
  if (request.version_major < 1 || (request.version_major == 1 && request.version_minor < 1)) {
    return reject(400, "a WebSocket upgrade needs HTTP/1.1 or later");
  }
  const auto& headers = request.headers;
  if (!headers.has_token("Upgrade", "websocket")) return reject(426, "Upgrade: websocket is required");
  if (!headers.has_token("Connection", "upgrade")) return reject(426, "Connection: Upgrade is required");

  const auto versions = headers.get_all("Sec-WebSocket-Version");
  if (versions.size() != 1 || trim(versions.front()) != websocket_version) {
    return reject(426, "Sec-WebSocket-Version must be 13");
  }

  const auto keys = headers.get_all("Sec-WebSocket-Key");
  if (keys.empty()) return reject(400, "Sec-WebSocket-Key is missing");
  if (keys.size() > 1) return reject(400, "Sec-WebSocket-Key appears more than once");
  const std::string_view key = trim(keys.front());
  const auto decoded = from_base64(key);
  if (!decoded || decoded->size() != kClientKeyBytes) {
    return reject(400, "Sec-WebSocket-Key must be base64 of 16 bytes");
  }

  if (!headers.contains("Host")) return reject(400, "Host is missing");
  return std::string(key);
}

http::HttpResponse make_upgrade_response(std::string_view client_key, std::optional<std::string> subprotocol) {
  http::HttpResponse response;
  response.status = 101;
  response.headers.add("Upgrade", "websocket");
  response.headers.add("Connection", "Upgrade");
  response.headers.add("Sec-WebSocket-Accept", accept_key(client_key));
  if (subprotocol) response.headers.add("Sec-WebSocket-Protocol", std::move(*subprotocol));
  return response;
}

http::HttpResponse make_upgrade_error_response(const UpgradeError& error) {
  http::HttpResponse response;
  response.status = error.status;
  response.headers.add("Content-Type", "text/plain; charset=utf-8");
  if (error.status == 426) {
    // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to; RFC 6455 §4.4: and the versions we speak.
    response.headers.add("Upgrade", "websocket");
    response.headers.add("Sec-WebSocket-Version", std::string(websocket_version));
  }
  if (error.status == 405) response.headers.add("Allow", "GET");
  response.body = error.message;
  // The client expected to leave HTTP; whatever it sends next is not a request we want to parse.
  response.keep_alive = false;
  return response;
}

std::string make_client_key(const RandomSource& rng) {
  std::array<std::uint8_t, kClientKeyBytes> nonce{};
  fill_random(rng, nonce);
  return to_base64(nonce);
}

http::HttpRequest make_upgrade_request(std::string_view host, std::string_view target, std::string_view client_key) {
  http::HttpRequest request;
  request.method = "GET";
  request.target = std::string(target);
  const auto question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
  request.headers.add("Host", std::string(host));
  request.headers.add("Upgrade", "websocket");
  request.headers.add("Connection", "Upgrade");
  request.headers.add("Sec-WebSocket-Key", std::string(client_key));
  request.headers.add("Sec-WebSocket-Version", std::string(websocket_version));
  request.upgrade = true;
  return request;
}

Result<void> validate_upgrade_response(const http::HttpResponse& response, std::string_view client_key) {
  if (response.status != 101) {
    return fail(Errc::malformed, "WebSocket upgrade refused: expected status 101, got " + std::to_string(response.status));
  }
  const auto& headers = response.headers;
  if (!headers.has_token("Upgrade", "websocket")) return fail(Errc::malformed, "upgrade response lacks Upgrade: websocket");
  if (!headers.has_token("Connection", "upgrade")) return fail(Errc::malformed, "upgrade response lacks Connection: Upgrade");
  const auto accepts = headers.get_all("Sec-WebSocket-Accept");
  if (accepts.size() != 1) return fail(Errc::malformed, "upgrade response needs exactly one Sec-WebSocket-Accept");
  if (trim(accepts.front()) != accept_key(client_key)) {
    return fail(Errc::malformed, "Sec-WebSocket-Accept does not match our Sec-WebSocket-Key");
  }
  // RFC 6455 §4.1: an extension we did not offer must fail the connection; its frames would set RSV bits.
  if (headers.contains("Sec-WebSocket-Extensions")) {
    return fail(Errc::malformed, "upgrade response enables an extension we did not offer");
  }
  return {};
}

}  // namespace claudemesh::transport::ws
