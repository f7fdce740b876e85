// SPDX-License-Identifier: MIT
// Server-Sent Events (WHATWG HTML §9.2, "text/event-stream"): a sans-io encoder and an incremental parser.
// The Asio server and client only move bytes; every framing rule lives here so it can be unit-tested and
// fuzzed without sockets. The parser follows the spec's "event stream interpretation" exactly, including
// its UTF-8 decoding (invalid bytes become U+FFFD), so what we accept is what a browser's EventSource accepts.
#pragma once

#include <claudemesh/result.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh::transport::sse {

/// One event, as the encoder writes it and as the parser dispatches it.
struct SseEvent {
  std::string event;                      ///< event type; the parser reports "message" when the stream set none
  std::string data;                       ///< lines joined with '\n' (no trailing newline)
  std::optional<std::string> id;          ///< the id field of this event, if one was set in its block
  std::optional<std::uint32_t> retry_ms;  ///< the valid retry field of this event's block, if any
  bool operator==(const SseEvent&) const = default;
};

/// Encode one event: optional "id:", "event:", "retry:" lines, then one "data:" line per line of `data`
/// (splitting on "\r\n", "\r" and "\n"), then a blank line. An empty `data` yields a single "data:" line, so
/// the event is still dispatched. `event` empty or "message" writes no "event:" line (both mean "message").
///
/// `data` should be UTF-8: a receiver replaces invalid bytes with U+FFFD.
/// @returns the bytes to write, or `Errc::invalid_value` if `id` or `event` contains CR, LF or NUL (CR and LF
/// would break the framing; a NUL id is ignored by receivers, a NUL type cannot be round-tripped safely).
Result<std::string> encode_event(const SseEvent& event);

/// A comment, e.g. a heartbeat: ": <text>\n\n". Text containing CR or LF becomes several comment lines.
/// The trailing blank line makes proxies that buffer per event flush it; it dispatches nothing.
std::string encode_comment(std::string_view text);

/// "retry: <ms>\n\n": tell the client its reconnection delay, outside any event.
std::string encode_retry(std::uint32_t ms);

/// Size limits of one parser. Both are in bytes; a value exactly at the limit is accepted.
struct ParserLimits {
  std::size_t max_event_bytes = 1 << 20;  ///< data of one event as dispatched (after U+FFFD replacement)
  std::size_t max_line_bytes = 1 << 20;   ///< one raw line, without its line ending
};

/// Incremental event-stream parser: feed it the response body as it arrives, in pieces of any size.
///
/// Lines end with CRLF, LF or CR (also when a CRLF pair is split between feeds); a UTF-8 BOM at the very
/// start of the stream is skipped; an event still unterminated when the stream ends is never dispatched.
///
/// Distinct objects: safe. Shared objects: unsafe.
///
/// @code
/// SseParser parser;
/// std::vector<SseEvent> events;
/// if (auto fed = parser.feed(chunk, events); !fed) return fail(fed.error());
/// // ... on reconnect: send parser.last_event_id() as Last-Event-ID, then parser.reset_stream()
/// @endcode
class SseParser {
 public:
  explicit SseParser(ParserLimits limits = {});

  /// Consume `bytes` (any split, including inside a CRLF pair or a UTF-8 sequence) and append each event
  /// dispatched by them to `out`. Events completed before a failure are still appended.
  /// @returns `Errc::payload_too_large` once a line or an event's data exceeds the limits. The parser is then
  /// failed: every later feed returns the same error until `reset_stream()` starts a new stream.
  Result<void> feed(std::string_view bytes, std::vector<SseEvent>& out);

  /// The spec's "last event ID string": the id in force at the last blank line (it persists across events).
  /// Send it as Last-Event-ID on reconnect. An id in an event that was cut off is not included, so that
  /// event is sent again.
  [[nodiscard]] const std::string& last_event_id() const noexcept;

  /// The most recent valid retry value seen (applied at once, as the spec does), if any.
  [[nodiscard]] std::optional<std::uint32_t> retry_ms() const noexcept;

  /// Start a new stream (the connection dropped and is being re-established): drop any partial line and
  /// event, clear a failure, and look for a BOM again. Keeps `last_event_id()` and `retry_ms()`.
  void reset_stream() noexcept;

 private:
  Result<void> consume(std::string_view bytes, std::vector<SseEvent>& out);
  Result<void> process_line(std::string_view line, std::vector<SseEvent>& out);
  Result<void> process_field(std::string_view name, std::string_view value);
  void dispatch(std::vector<SseEvent>& out);
  std::unexpected<Error> fail_stream(std::string message);

  ParserLimits limits_;
  std::string line_;                          // the current line, without its ending
  std::string data_;                          // the spec's data buffer: every value followed by '\n'
  std::string event_type_;                    // the spec's event type buffer
  std::string id_buffer_;                     // the spec's last event ID buffer
  std::string last_event_id_;                 // the spec's last event ID string: id_buffer_ at the last blank line
  std::optional<std::string> event_id_;       // an id set in the current block
  std::optional<std::uint32_t> event_retry_;  // a valid retry in the current block
  std::optional<std::uint32_t> retry_ms_;
  std::optional<Error> failure_;              // set once a limit was exceeded; repeated by later feeds
  std::size_t bom_matched_ = 0;               // leading bytes of the stream that match the BOM so far
  bool bom_checked_ = false;
  bool pending_cr_ = false;                   // the last line ended with CR: a following LF belongs to it
};

}  // namespace claudemesh::transport::sse
