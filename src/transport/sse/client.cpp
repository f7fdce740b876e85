// SPDX-License-Identifier: MIT
#include "transport/sse/client.hpp"

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

namespace claudemesh::transport::sse {

asio::awaitable<Result<std::string>> subscribe(http::HttpClient& client, SubscribeOptions options,
                                               std::function<bool(const SseEvent&)> on_event) {
  SseParser parser(options.limits);
  std::string last_id = options.last_event_id;
  std::uint32_t failures = 0;
  Error last_error(Errc::io_error, "no connection attempt made");
  asio::steady_timer pause(co_await asio::this_coro::executor);

  while (failures <= options.max_reconnects) {
    http::HttpRequest request;
    request.method = "GET";
    request.target = options.target;
    request.headers = options.headers;
    request.headers.set("Accept", "text/event-stream");
    request.headers.set("Cache-Control", "no-cache");
    if (!last_id.empty()) request.headers.set("Last-Event-ID", last_id);

    parser.reset_stream();
    bool stop = false;
    bool received = false;
    std::vector<SseEvent> events;
    Result<void> stream_error;
    auto on_body = [&](std::string_view bytes) {
      events.clear();
      if (auto fed = parser.feed(bytes, events); !fed) {
        stream_error = fail(fed.error());
        return false;
      }
      for (const auto& event : events) {
        received = true;
        if (!on_event(event)) {
          // Not the parser's id: later events of this batch may already be committed there.
          if (event.id) last_id = *event.id;
          stop = true;
          return false;
        }
      }
      // The parser's committed id covers what the events alone do not: an id: line in a block without
      // data, and an empty id: that resets it.
      last_id = parser.last_event_id();
      return true;
    };
    auto head = co_await client.stream(std::move(request), on_body);
    if (stop) co_return last_id;
    if (!stream_error) co_return fail(stream_error.error());
    if (head) {
      if (head->status != 200) {
        co_return fail(Errc::invalid_value, "event stream answered " + std::to_string(head->status));
      }
      last_error = Error(Errc::connection_closed, "event stream ended");
    } else {
      last_error = head.error();
    }
    // A stream that delivered events was healthy: start counting failures afresh.
    failures = received ? 0 : failures + 1;
    const auto delay = parser.retry_ms() ? std::chrono::milliseconds(*parser.retry_ms()) : options.reconnect_delay;
    pause.expires_after(delay);
    co_await pause.async_wait(use_tuple);
  }
  co_return fail(last_error);
}

}  // namespace claudemesh::transport::sse
