// SPDX-License-Identifier: MIT
// The client side of Server-Sent Events: read an event stream over an HttpClient, and when the connection
// drops, reconnect with Last-Event-ID so the server resumes after the last event we saw (no gaps, no
// repeats when the server honours the header). The daemon's /v1/events is read this way by the CLI and the
// MCP shim.
#pragma once

#include "transport/http/client.hpp"
#include "transport/sse/sse.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace claudemesh::transport::sse {

struct SubscribeOptions {
  std::string target = "/";                          ///< path and query of the event stream
  http::Headers headers;                             ///< e.g. Authorization
  std::string last_event_id;                         ///< resume point for the first connection
  std::chrono::milliseconds reconnect_delay{1'000};  ///< used until the server sends `retry:`
  std::uint32_t max_reconnects = 10;                 ///< consecutive failed attempts before giving up
  ParserLimits limits{};
};

/// Read events until `on_event` returns false (→ success) or the stream cannot be re-established
/// `max_reconnects` times in a row (→ the last error). A response other than 200 text/event-stream is an
/// error at once (`Errc::invalid_value`, with the status), since retrying would not change it.
/// @returns on success, the last event id seen (to resume later).
asio::awaitable<Result<std::string>> subscribe(http::HttpClient& client, SubscribeOptions options,
                                               std::function<bool(const SseEvent&)> on_event);

}  // namespace claudemesh::transport::sse
