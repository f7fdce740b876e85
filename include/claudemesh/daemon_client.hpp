// SPDX-License-Identifier: MIT
/// @file daemon_client.hpp
/// `DaemonClient`: a blocking client of the local daemon's IPC (HTTP/1.1 + JSON on `<daemon_dir>/daemon.sock`,
/// or on loopback TCP with the bearer token), for the CLI and for any program that prefers to let the daemon
/// hold the broker connection, the outbox and the inbox. The routes are documented in docs/ipc-api.json.
///
/// Each object owns a private `io_context` and one kept-alive connection; every call runs it until the
/// answer arrives or the timeout passes. An HTTP error status is an answer (`DaemonReply::status`), not an
/// error: `Result` errors mean the daemon could not be reached or spoke no HTTP.
///
/// @code
/// claudemesh::DaemonClient daemon({.socket = home / "daemon" / "daemon.sock"});
/// auto reply = daemon.call("POST", "/v1/send", R"({"to":"bob","message":"build 42 is green"})");
/// if (!reply) { /* not running: reply.error().message */ }
/// else if (!reply->ok()) { /* refused: reply->error_code(), reply->error_message() */ }
/// @endcode
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe (one call at a time).
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace claudemesh {

/// Where the daemon listens and how to authenticate.
struct DaemonEndpoint {
  /// The Unix socket (`<daemon_dir>/daemon.sock`); when set, TCP is not used. No bearer token is needed on it.
  std::filesystem::path socket;
  std::string tcp_host = "127.0.0.1";  ///< TCP, when `socket` is empty
  std::uint16_t tcp_port = 0;          ///< TCP port (`<daemon_dir>/tcp-port`)
  std::string bearer_token;            ///< TCP: the contents of `<daemon_dir>/local-token`
  /// A launched session's IPC token (64 hex): scopes requests to that session. Sent as
  /// `Authorization: ClaudeMesh-Session <t>` on the socket, and as the `ClaudeMesh-Session` header on TCP
  /// (where Authorization carries the bearer token).
  std::string session_token;
};

/// One answer of the daemon.
struct CLAUDEMESH_API DaemonReply {
  int status = 0;            ///< HTTP status
  std::string content_type;  ///< e.g. "application/json"
  std::string body;          ///< the raw body

  /// Whether `status` is 2xx.
  [[nodiscard]] bool ok() const noexcept { return status >= 200 && status < 300; }
  /// The daemon's error code (`{"error":{"code":...}}`, e.g. "unknown_mesh", "idempotency_conflict"); when
  /// the body has none: "http_<status>".
  [[nodiscard]] std::string error_code() const;
  /// The daemon's one-line message for people; when the body has none: the status and the start of the body.
  [[nodiscard]] std::string error_message() const;
};

class CLAUDEMESH_API DaemonClient {
 public:
  /// Nothing connects until the first call. `timeout` bounds each `call()` (connect + exchange).
  explicit DaemonClient(DaemonEndpoint endpoint, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  DaemonClient(const DaemonClient&) = delete;
  DaemonClient& operator=(const DaemonClient&) = delete;
  DaemonClient(DaemonClient&&) noexcept;
  DaemonClient& operator=(DaemonClient&&) noexcept;
  ~DaemonClient();

  /// One request. `json_body` (when not empty) is sent as `application/json`; `headers` are added as given
  /// (e.g. `Idempotency-Key`). `target` is the path and query, e.g. "/v1/peers?mesh=ops".
  /// @returns the answer, whatever its status; `Errc::io_error` when the daemon cannot be reached (no socket,
  ///   connection refused, timed out), `Errc::malformed` when the answer is not HTTP.
  Result<DaemonReply> call(std::string_view method, std::string_view target, std::string_view json_body = {},
                           const std::vector<std::pair<std::string, std::string>>& headers = {});

  /// `GET target` as Server-Sent Events (e.g. "/v1/events?mesh=ops"). `on_event(event, data, id)` is called
  /// for each event until it returns false, the daemon ends the stream, or `limit` has passed — each of which
  /// is success. `last_event_id` (may be empty) is sent as `Last-Event-ID` to resume after that event.
  /// @returns `Errc::io_error` when the daemon cannot be reached; `Errc::invalid_value` (with the status and
  ///   the daemon's message) for an answer that is not `200 text/event-stream`; `Errc::payload_too_large`
  ///   for an event over 1 MiB.
  Result<void> events(std::string_view target, std::string_view last_event_id,
                      const std::function<bool(std::string_view event, std::string_view data, std::string_view id)>& on_event,
                      std::chrono::milliseconds limit);

  [[nodiscard]] const DaemonEndpoint& endpoint() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace claudemesh
