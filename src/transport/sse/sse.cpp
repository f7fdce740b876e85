// SPDX-License-Identifier: MIT
#include "transport/sse/sse.hpp"

#include <charconv>
#include <string>
#include <utility>

namespace claudemesh::transport::sse {
namespace {

constexpr std::string_view kLineBreaks = "\r\n";
constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD in UTF-8
constexpr std::string_view kDefaultEventType = "message";

unsigned char byte_at(std::string_view text, std::size_t i) { return static_cast<unsigned char>(text[i]); }

// Appends `bytes` decoded as the WHATWG Encoding Standard's UTF-8 decoder does, which is what the SSE spec
// mandates: valid sequences pass through, each maximal invalid subpart becomes one U+FFFD. A line is a
// complete decoder input because CR and LF never continue a sequence, so decoding per line gives the same
// text as decoding the whole stream, and feeds that split a code point cannot change the result.
void append_utf8_decoded(std::string& out, std::string_view bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char lead = byte_at(bytes, i);
    if (lead < 0x80) {
      std::size_t end = i + 1;
      while (end < bytes.size() && byte_at(bytes, end) < 0x80) ++end;
      out.append(bytes.substr(i, end - i));
      i = end;
      continue;
    }
    std::size_t needed = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    // The narrower range of the second byte is what excludes overlongs, surrogates and code points > U+10FFFF.
    if (lead >= 0xC2 && lead <= 0xDF) {
      needed = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      needed = 2;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      needed = 3;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    }
    std::size_t seen = 0;
    while (needed > 0 && seen < needed && i + 1 + seen < bytes.size()) {
      const unsigned char next = byte_at(bytes, i + 1 + seen);
      if (next < low || next > high) break;  // the decoder reprocesses this byte as a new lead
      low = 0x80;
      high = 0xBF;
      ++seen;
    }
    if (needed > 0 && seen == needed) {
      out.append(bytes.substr(i, needed + 1));
    } else {
      out.append(kReplacementCharacter);
    }
    i += 1 + seen;
  }
}

// std::from_chars for an unsigned type accepts exactly ASCII digits (no sign, space or prefix) and reports
// overflow, which is the spec's "only ASCII digits" plus our "must fit in uint32".
std::optional<std::uint32_t> parse_retry(std::string_view value) {
  std::uint32_t ms = 0;
  const char* begin = value.data();
  const char* end = begin + value.size();
  const auto [stop, error] = std::from_chars(begin, end, ms);
  if (error != std::errc{} || stop != end) return std::nullopt;
  return ms;
}

bool breaks_framing(std::string_view text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// Calls `on_line` for each line of `text`, split on CRLF, CR and LF. Always at least one line, and a text
// ending in a line break ends with an empty line, so the receiver rebuilds the same text.
template <class OnLine>
void for_each_line(std::string_view text, OnLine on_line) {
  for (;;) {
    const auto end = text.find_first_of(kLineBreaks);
    if (end == std::string_view::npos) {
      on_line(text);
      return;
    }
    on_line(text.substr(0, end));
    const bool crlf = text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n';
    text.remove_prefix(end + (crlf ? 2 : 1));
  }
}

// "name: value\n"; the space is only written before a value, and the parser removes exactly one space, so
// values that start with a space survive.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.push_back(':');
  if (!value.empty()) {
    out.push_back(' ');
    out.append(value);
  }
  out.push_back('\n');
}

}  // namespace

Result<std::string> encode_event(const SseEvent& event) {
  if (event.id && breaks_framing(*event.id)) {
    return fail(Errc::invalid_value, "sse event id must not contain CR, LF or NUL");
  }
  if (breaks_framing(event.event)) {
    return fail(Errc::invalid_value, "sse event type must not contain CR, LF or NUL");
  }
  std::string out;
  out.reserve(event.data.size() + 64);
  if (event.id) append_field(out, "id", *event.id);
  if (!event.event.empty() && event.event != kDefaultEventType) append_field(out, "event", event.event);
  if (event.retry_ms) append_field(out, "retry", std::to_string(*event.retry_ms));
  for_each_line(event.data, [&](std::string_view line) { append_field(out, "data", line); });
  out.push_back('\n');
  return out;
}

std::string encode_comment(std::string_view text) {
  std::string out;
  for_each_line(text, [&](std::string_view line) { append_field(out, "", line); });
  out.push_back('\n');
  return out;
}

std::string encode_retry(std::uint32_t ms) {
  std::string out;
  append_field(out, "retry", std::to_string(ms));
  out.push_back('\n');
  return out;
}

SseParser::SseParser(ParserLimits limits) : limits_(limits) {}

const std::string& SseParser::last_event_id() const noexcept { return last_event_id_; }

std::optional<std::uint32_t> SseParser::retry_ms() const noexcept { return retry_ms_; }

void SseParser::reset_stream() noexcept {
  line_.clear();
  data_.clear();
  event_type_.clear();
  event_id_.reset();  // the spec's ID buffer falls back to the last committed ID
  event_retry_.reset();
  failure_.reset();
  bom_matched_ = 0;
  bom_checked_ = false;  // a new response body may start with its own BOM
  pending_cr_ = false;
}

Result<void> SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (failure_) return fail(*failure_);
  if (!bom_checked_) {
    while (bom_matched_ < kByteOrderMark.size() && !bytes.empty() && bytes.front() == kByteOrderMark[bom_matched_]) {
      ++bom_matched_;
      bytes.remove_prefix(1);
    }
    const bool whole_bom = bom_matched_ == kByteOrderMark.size();
    if (!whole_bom && bytes.empty()) return {};  // a BOM split between feeds: cannot tell yet
    bom_checked_ = true;
    if (!whole_bom) {
      // The held bytes only looked like the start of a BOM; they are content.
      if (auto held = consume(kByteOrderMark.substr(0, bom_matched_), out); !held) return held;
    }
  }
  return consume(bytes, out);
}

Result<void> SseParser::consume(std::string_view bytes, std::vector<SseEvent>& out) {
  while (!bytes.empty()) {
    if (pending_cr_) {
      pending_cr_ = false;
      if (bytes.front() == '\n') {
        bytes.remove_prefix(1);
        continue;
      }
    }
    const auto end = bytes.find_first_of(kLineBreaks);
    const auto piece = bytes.substr(0, end);
    // Checked before appending, so a huge line costs at most the limit in memory, whatever the feed sizes.
    if (piece.size() > limits_.max_line_bytes - line_.size()) {
      return fail_stream("sse line exceeds " + std::to_string(limits_.max_line_bytes) + " bytes");
    }
    line_.append(piece);
    if (end == std::string_view::npos) return {};
    // Process a CR-terminated line at once rather than waiting to see whether LF follows: a server that
    // ends lines with CR alone must not have its events delayed until more bytes arrive.
    pending_cr_ = bytes[end] == '\r';
    bytes.remove_prefix(end + 1);
    auto processed = process_line(line_, out);
    line_.clear();
    if (!processed) return processed;
  }
  return {};
}

Result<void> SseParser::process_line(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    dispatch(out);
    return {};
  }
  if (line.front() == ':') return {};  // a comment
  // Splitting the raw bytes is safe: ':' and ' ' are ASCII, and the UTF-8 decoder never merges an ASCII byte
  // into a sequence, so they sit at the same places in the decoded line.
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return process_field(line, {});
  auto value = line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return process_field(line.substr(0, colon), value);
}

Result<void> SseParser::process_field(std::string_view name, std::string_view value) {
  if (name == "event") {
    event_type_.clear();
    append_utf8_decoded(event_type_, value);
  } else if (name == "data") {
    append_utf8_decoded(data_, value);
    // data_ now holds the event's data as it would be dispatched (the '\n' follows below), so this is the
    // size the limit speaks of, U+FFFD replacements included.
    if (data_.size() > limits_.max_event_bytes) {
      return fail_stream("sse event data exceeds " + std::to_string(limits_.max_event_bytes) + " bytes");
    }
    data_.push_back('\n');
  } else if (name == "id") {
    if (value.find('\0') == std::string_view::npos) {
      event_id_.emplace();
      append_utf8_decoded(*event_id_, value);
    }
  } else if (name == "retry") {
    if (const auto ms = parse_retry(value)) {
      retry_ms_ = ms;
      event_retry_ = ms;
    }
  }
  return {};  // other field names are ignored, as the spec requires
}

void SseParser::dispatch(std::vector<SseEvent>& out) {
  // The spec commits the last event ID at every blank line, even one that dispatches nothing.
  if (event_id_) last_event_id_ = *event_id_;
  if (!data_.empty()) {
    data_.pop_back();  // every data value was followed by '\n'; the spec strips the last one
    out.push_back(SseEvent{
        .event = event_type_.empty() ? std::string(kDefaultEventType) : std::move(event_type_),
        .data = std::move(data_),
        .id = std::move(event_id_),
        .retry_ms = event_retry_,
    });
  }
  data_.clear();
  event_type_.clear();
  event_id_.reset();
  event_retry_.reset();
}

std::unexpected<Error> SseParser::fail_stream(std::string message) {
  // The stream is unusable now, so give back the memory it held.
  line_ = {};
  data_ = {};
  failure_.emplace(Errc::payload_too_large, std::move(message));
  return fail(*failure_);
}

}  // namespace claudemesh::transport::sse
