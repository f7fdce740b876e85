// SPDX-License-Identifier: MIT
// libFuzzer target for the SSE parser and encoder. The first input byte picks the feed size (1..64) and
// whether small limits are used; the rest is the stream. Invariants:
// * the events, last_event_id() and retry_ms() equal those of a plain whole-stream reference written as the
//   spec reads (decode all of it as UTF-8 first, then split lines), or a prefix of them after a failure;
// * the events, the failure, last_event_id() and retry_ms() do not depend on how the stream is split;
// * no dispatched event's data exceeds max_event_bytes; event types are never empty; no value holds CR or LF;
// * a failure is always payload_too_large, and after it every later feed fails the same way;
// * re-encoding a parsed event whose id and type are encodable, then parsing it, gives the same event.
#include "transport/sse/sse.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
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

void append_code_point(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The Encoding Standard's UTF-8 decoder step by step, code points and all (the parser works on bytes).
std::string reference_decode(std::string_view in) {
  std::string out;
  std::uint32_t cp = 0;
  unsigned needed = 0, seen = 0, lower = 0x80, upper = 0xBF;
  for (std::size_t i = 0; i < in.size();) {
    const unsigned b = static_cast<unsigned char>(in[i]);
    if (needed == 0) {
      if (b <= 0x7F) {
        append_code_point(out, b);
      } else if (b >= 0xC2 && b <= 0xDF) {
        needed = 1, cp = b & 0x1F;
      } else if (b >= 0xE0 && b <= 0xEF) {
        lower = b == 0xE0 ? 0xA0 : 0x80, upper = b == 0xED ? 0x9F : 0xBF, needed = 2, cp = b & 0xF;
      } else if (b >= 0xF0 && b <= 0xF4) {
        lower = b == 0xF0 ? 0x90 : 0x80, upper = b == 0xF4 ? 0x8F : 0xBF, needed = 3, cp = b & 0x7;
      } else {
        append_code_point(out, 0xFFFD);
      }
      ++i;
      continue;
    }
    if (b < lower || b > upper) {  // error; the byte is processed again as a lead byte
      cp = 0, needed = 0, seen = 0, lower = 0x80, upper = 0xBF;
      append_code_point(out, 0xFFFD);
      continue;
    }
    lower = 0x80, upper = 0xBF, cp = (cp << 6) | (b & 0x3F), ++seen, ++i;
    if (seen == needed) {
      append_code_point(out, cp);
      cp = 0, needed = 0, seen = 0;
    }
  }
  if (needed != 0) append_code_point(out, 0xFFFD);
  return out;
}

struct Reference {
  std::vector<SseEvent> events;
  std::string last_event_id;
  std::optional<std::uint32_t> retry_ms;
};

// The spec's event stream interpretation over a whole stream, without limits, as plainly as possible.
Reference reference_parse(std::string_view bytes) {
  if (bytes.starts_with("\xEF\xBB\xBF")) bytes.remove_prefix(3);
  const std::string text = reference_decode(bytes);
  Reference ref;
  std::string data, type, id_buffer = ref.last_event_id;
  std::optional<std::string> id;
  std::optional<std::uint32_t> retry;
  std::size_t pos = 0;
  for (auto end = text.find_first_of("\r\n"); end != std::string::npos; end = text.find_first_of("\r\n", pos)) {
    const std::string line = text.substr(pos, end - pos);
    pos = end + (text.compare(end, 2, "\r\n") == 0 ? 2 : 1);
    if (line.empty()) {
      ref.last_event_id = id_buffer;
      if (!data.empty()) {
        data.pop_back();
        ref.events.push_back({type.empty() ? "message" : type, data, id, retry});
      }
      data.clear(), type.clear(), id.reset(), retry.reset();
      continue;
    }
    if (line[0] == ':') continue;
    const auto colon = line.find(':');
    const std::string name = line.substr(0, colon);
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    if (value.starts_with(' ')) value.erase(0, 1);
    if (name == "event") type = value;
    if (name == "data") data += value + "\n";
    if (name == "id" && value.find('\0') == std::string::npos) id_buffer = value, id = value;
    if (name == "retry" && !value.empty() && value.find_first_not_of("0123456789") == std::string::npos) {
      std::uint64_t ms = 0;
      for (const char digit : value) ms = std::min<std::uint64_t>(ms * 10 + static_cast<unsigned>(digit - '0'), 1ULL << 33);
      if (ms <= 0xFFFFFFFFULL) retry = static_cast<std::uint32_t>(ms), ref.retry_ms = retry;
    }
  }
  return ref;
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

  const auto ref = reference_parse(stream);
  if (!outcome.failed) {
    require(outcome.events == ref.events);
    require(chunked.last_event_id() == ref.last_event_id && chunked.retry_ms() == ref.retry_ms);
  } else {
    require(outcome.events.size() <= ref.events.size());
    require(std::equal(outcome.events.begin(), outcome.events.end(), ref.events.begin()));
  }

  // After reset_stream the parser accepts a fresh stream and keeps the last event ID.
  chunked.reset_stream();
  const auto id_before = chunked.last_event_id();
  std::vector<SseEvent> fresh;
  require(chunked.feed("data: y\n\n", fresh).has_value());
  require(fresh.size() == 1 && fresh.front().data == "y" && chunked.last_event_id() == id_before);
  return 0;
}
