// SPDX-License-Identifier: MIT
// libFuzzer target for the SSE parser and encoder. The first input byte picks the feed size (1..64) and
// whether small limits are used; the rest is the stream. Invariants:
// * the events, the failure, last_event_id() and retry_ms() do not depend on how the stream is split;
// * no dispatched event's data exceeds max_event_bytes; event types are never empty; no value holds CR or LF;
// * a failure is always payload_too_large, and after it every later feed fails the same way;
// * re-encoding a parsed event whose id and type are encodable, then parsing it, gives the same event.
#include "transport/sse/sse.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using claudemesh::Errc;
using claudemesh::transport::sse::encode_event;
using claudemesh::transport::sse::ParserLimits;
using claudemesh::transport::sse::SseEvent;
using claudemesh::transport::sse::SseParser;

void require(bool condition) {
  if (!condition) std::abort();
}

struct Outcome {
  std::vector<SseEvent> events;
  bool failed = false;
};

Outcome parse_in_chunks(std::string_view stream, std::size_t chunk, SseParser& parser) {
  Outcome outcome;
  while (!stream.empty()) {
    const auto piece = stream.substr(0, chunk);
    stream.remove_prefix(piece.size());
    const auto fed = parser.feed(piece, outcome.events);
    if (!fed) {
      require(fed.error() == Errc::payload_too_large);
      outcome.failed = true;
      break;
    }
  }
  if (outcome.failed) {
    // Dead: the rest of the stream, an empty feed and a valid event must all fail without output.
    const auto before = outcome.events.size();
    for (const std::string_view later : {stream, std::string_view{}, std::string_view("data: x\n\n")}) {
      const auto fed = parser.feed(later, outcome.events);
      require(!fed && fed.error() == Errc::payload_too_large);
    }
    require(outcome.events.size() == before);
  }
  return outcome;
}

bool encodable(const SseEvent& event) {
  const std::string_view framing("\r\n\0", 3);
  return event.event.find_first_of(framing) == std::string::npos &&
         (!event.id || event.id->find_first_of(framing) == std::string::npos);
}

void check_event(const SseEvent& event, const ParserLimits& limits) {
  require(event.data.size() <= limits.max_event_bytes);
  require(!event.event.empty());
  require(event.data.find('\r') == std::string::npos);
  require(event.event.find_first_of("\r\n") == std::string::npos);
  require(!event.id || event.id->find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);

  const auto wire = encode_event(event);
  if (!encodable(event)) {
    require(!wire && wire.error() == Errc::invalid_value);
    return;
  }
  require(wire.has_value());
  SseParser again;
  std::vector<SseEvent> reparsed;
  require(again.feed(*wire, reparsed).has_value());
  // Equality also proves the parser only emits valid UTF-8: invalid bytes would come back as U+FFFD.
  require(reparsed.size() == 1 && reparsed.front() == event);
  require(again.last_event_id() == event.id.value_or(""));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = (data[0] & 0x3F) + 1u;
  const bool small_limits = (data[0] & 0x40) != 0;
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  // Small limits make the failure paths reachable with short inputs.
  const ParserLimits limits = small_limits ? ParserLimits{.max_event_bytes = 48, .max_line_bytes = 32} : ParserLimits{};

  SseParser whole(limits);
  const auto reference = parse_in_chunks(stream, stream.size() + 1, whole);
  SseParser chunked(limits);
  const auto outcome = parse_in_chunks(stream, chunk, chunked);

  require(outcome.failed == reference.failed);
  require(outcome.events == reference.events);
  require(chunked.last_event_id() == whole.last_event_id());
  require(chunked.retry_ms() == whole.retry_ms());
  for (const auto& event : outcome.events) check_event(event, limits);

  // After reset_stream the parser accepts a fresh stream and keeps the last event ID.
  chunked.reset_stream();
  const auto id_before = chunked.last_event_id();
  std::vector<SseEvent> fresh;
  require(chunked.feed("data: y\n\n", fresh).has_value());
  require(fresh.size() == 1 && fresh.front().data == "y" && chunked.last_event_id() == id_before);
  return 0;
}
