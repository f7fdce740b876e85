// SPDX-License-Identifier: MIT
#include "transport/sse/sse.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

using namespace std::string_literals;

namespace claudemesh::transport::sse {

// So doctest shows events when a comparison fails.
std::ostream& operator<<(std::ostream& os, const SseEvent& e) {
  os << "{event=\"" << e.event << "\" data=\"" << e.data << '"';
  if (e.id) os << " id=\"" << *e.id << '"';
  if (e.retry_ms) os << " retry=" << *e.retry_ms;
  return os << '}';
}

std::ostream& operator<<(std::ostream& os, const std::vector<SseEvent>& events) {
  for (const auto& e : events) os << e;
  return os;
}

}  // namespace claudemesh::transport::sse

using namespace claudemesh;
using namespace claudemesh::transport::sse;

namespace {

SseEvent message(std::string data, std::optional<std::string> id = {}, std::optional<std::uint32_t> retry = {}) {
  return {.event = "message", .data = std::move(data), .id = std::move(id), .retry_ms = retry};
}

// Feeds each chunk in turn; every feed must succeed.
std::vector<SseEvent> parse_chunks(const std::vector<std::string>& chunks, SseParser& parser) {
  std::vector<SseEvent> events;
  for (const auto& chunk : chunks) REQUIRE(parser.feed(chunk, events));
  return events;
}

std::string repeat(std::string_view text, std::size_t times) {
  std::string out;
  while (times-- > 0) out += text;
  return out;
}

std::vector<SseEvent> parse(const std::string& stream) {
  SseParser parser;
  return parse_chunks({stream}, parser);
}

struct StreamCase {
  std::string stream;
  std::vector<SseEvent> expected;
};

void check_streams(std::initializer_list<StreamCase> cases) {
  for (const auto& c : cases) {
    CAPTURE(c.stream);
    CHECK(parse(c.stream) == c.expected);
  }
}

}  // namespace

TEST_SUITE("sse") {
  TEST_CASE("lines may end with LF, CRLF or CR") {
    check_streams({
        {"data: a\n\n", {message("a")}}, {"data: a\r\n\r\n", {message("a")}}, {"data: a\r\r", {message("a")}},
        {"data: a\rdata: b\r\ndata: c\n\r\n", {message("a\nb\nc")}},
        {"data: a\n\rdata: b\r\n\n", {message("a"), message("b")}},
        {"data: a\r\n\r\rdata: b\n\n", {message("a"), message("b")}},  // CR CR after the CRLF: two blank lines
    });
  }

  TEST_CASE("a CR at the end of one feed and an LF at the start of the next are one line ending") {
    SseParser parser;
    CHECK(parse_chunks({"data: a\r", "\ndata: b\r", "\n\r", "\n"}, parser) == std::vector{message("a\nb")});
    SseParser other;  // while a CR followed by CR is two line endings, hence a dispatch
    CHECK(parse_chunks({"data: a\r", "\r"}, other) == std::vector{message("a")});
    SseParser empty_feed;  // an empty feed between CR and LF changes nothing
    CHECK(parse_chunks({"data: a\r", "", "\ndata: b\n\n"}, empty_feed) == std::vector{message("a\nb")});
  }

  TEST_CASE("a UTF-8 BOM is skipped once, only at the very start of the stream") {
    const std::string bom = "\xEF\xBB\xBF";
    const struct {
      std::vector<std::string> chunks;
      std::vector<SseEvent> expected;
    } cases[] = {
        {{bom + "data: a\n\n"}, {message("a")}},
        {{"\xEF", "\xBB", "\xBF" "data: a\n\n"}, {message("a")}},
        {{"\xEF", "", "\xBB\xBF", "data: a\n\n"}, {message("a")}},
        {{bom + bom + "data: a\n\n"}, {}},  // the second BOM makes the field name unknown
        {{"data: a\n\n" + bom + "data: b\n\n"}, {message("a")}},
        {{"\xEF\xBB", "data: a\n\n"}, {}},  // a partial BOM is content, not dropped
        {{"\xEF", "data: a\n\n"}, {}},
        {{"data: " + bom + "x\n\n"}, {message(bom + "x")}},  // inside a line it is an ordinary character
    };
    for (const auto& c : cases) {
      CAPTURE(c.chunks.front());
      SseParser parser;
      CHECK(parse_chunks(c.chunks, parser) == c.expected);
    }
  }

  TEST_CASE("a field line is name:value with one optional space removed") {
    const struct {
      std::string line;
      std::optional<std::string> data;  // the dispatched data, or no event
    } cases[] = {
        {"data:x", "x"}, {"data: x", "x"}, {"data:  x", " x"},
        {"data:\tx", "\tx"}, {"data: x ", "x "}, {"data: a:b", "a:b"},
        {"data", ""},  // no colon: the whole line is the name, the value is empty
        {"data:", ""}, {"data: ", ""}, {"data :x", std::nullopt},
        {" data:x", std::nullopt}, {"DATA:x", std::nullopt},
        {":data: x", std::nullopt},  // a comment
        {":", std::nullopt}, {"foo: x", std::nullopt},
    };
    for (const auto& c : cases) {
      CAPTURE(c.line);
      const auto events = parse(c.line + "\n\n");
      if (c.data) {
        CHECK(events == std::vector{message(*c.data)});
      } else {
        CHECK(events.empty());
      }
    }
  }

  TEST_CASE("event, data, id and retry fields build the event - others are ignored") {
    const SseEvent add{.event = "add", .data = "1"};
    check_streams({
        {"event: add\ndata: 1\n\n", {add}},
        {"event: remove\nevent: add\ndata: 1\n\n", {add}},
        {"data: 1\nevent: add\n\n", {add}},
        {"event:\ndata: 1\n\n", {message("1")}},
        {"event: add\n\ndata: 1\n\n", {message("1")}},  // a blank line without data resets the type
        {"data: a\ndata: b\ndata: c\n\n", {message("a\nb\nc")}},
        {"data\ndata\n\n", {message("\n")}},  // only one trailing newline is stripped
        {"data: 1\n\n\n\ndata: 2\n\n", {message("1"), message("2")}},
        {"id: 7\ndata: x\n\n", {message("x", "7")}},
        {"id\ndata: x\n\n", {message("x", "")}},
        {"id: 1\nid: 2\ndata: x\n\n", {message("x", "2")}},
        {"id: a\0b\ndata: x\n\n"s, {message("x")}},  // an id with NUL is ignored
        {"id: 1\n\ndata: x\n\n", {message("x")}},     // the id belonged to the block before
        {"retry: 3000\ndata: x\n\n", {message("x", {}, 3000)}},
        {"retry: 3s\ndata: x\n\n", {message("x")}},
        {"foo: bar\nDATA: y\ndata: x\n\n", {message("x")}},
        {": hello\ndata: x\n: bye\n\n", {message("x")}},
        {"data: x\n", {}},  // an unterminated final event is not dispatched
        {"data: x", {}},
        {"data: 1\n\ndata: 2\n", {message("1")}},
    });
  }

  TEST_CASE("retry is taken only when all ASCII digits and within uint32") {
    const struct {
      std::string value;
      std::optional<std::uint32_t> expected;
    } cases[] = {
        {"0", 0u}, {"1000", 1000u}, {"007", 7u},
        {"4294967295", std::numeric_limits<std::uint32_t>::max()},
        {"0000000000004294967295", std::numeric_limits<std::uint32_t>::max()},
        {"4294967296", std::nullopt}, {"99999999999999999999999", std::nullopt}, {"", std::nullopt},
        {" 5", std::nullopt},  // "retry:  5": one space is removed, the second remains
        {"5 ", std::nullopt}, {"-5", std::nullopt}, {"+5", std::nullopt}, {"1.5", std::nullopt},
        {"1e3", std::nullopt}, {"0x10", std::nullopt},
        {"\xD9\xA3", std::nullopt},  // ARABIC-INDIC DIGIT THREE is a digit, but not an ASCII one
    };
    for (const auto& c : cases) {
      CAPTURE(c.value);
      SseParser parser;
      const auto events = parse_chunks({"retry: " + c.value + "\ndata: x\n\n"}, parser);
      REQUIRE(events.size() == 1);
      CHECK(events[0].retry_ms == c.expected);
      CHECK(parser.retry_ms() == c.expected);
    }
  }

  TEST_CASE("the parser keeps the most recent valid retry, also from blocks that dispatch nothing") {
    SseParser parser;
    CHECK(parse_chunks({"retry: 100\n\n"}, parser).empty());
    CHECK(parser.retry_ms() == 100u);
    CHECK(parse_chunks({"retry: x\ndata: a\n\n"}, parser) == std::vector{message("a")});
    CHECK(parser.retry_ms() == 100u);
    CHECK(parse_chunks({"retry: 5"}, parser).empty());
    CHECK(parser.retry_ms() == 100u);  // the line is not complete yet
    CHECK(parse_chunks({"0\n"}, parser).empty());
    CHECK(parser.retry_ms() == 50u);  // applied at once, before the event is dispatched
  }

  TEST_CASE("the last event ID persists across events and commits at each blank line") {
    SseParser parser;
    CHECK(parser.last_event_id().empty());
    CHECK(parse_chunks({"id: 1\ndata: a\n\ndata: b\n\n"}, parser) == std::vector{message("a", "1"), message("b")});
    CHECK(parser.last_event_id() == "1");
    CHECK(parse_chunks({"id: 2\n\n"}, parser).empty());  // no data: nothing dispatched, but the ID commits
    CHECK(parser.last_event_id() == "2");
    CHECK(parse_chunks({"id: 3\0\n\n"s}, parser).empty());
    CHECK(parser.last_event_id() == "2");
    CHECK(parse_chunks({"id: 4\ndata: c\n"}, parser).empty());
    CHECK(parser.last_event_id() == "2");  // event 4 was not received yet: a reconnect must ask for it again
    CHECK(parse_chunks({"\n"}, parser) == std::vector{message("c", "4")});
    CHECK(parser.last_event_id() == "4");
    CHECK(parse_chunks({"id\n\n"}, parser).empty());  // an empty id resets it
    CHECK(parser.last_event_id().empty());
  }

  TEST_CASE("reset_stream drops the partial event and line but keeps the last event ID and retry") {
    SseParser parser;
    CHECK(parse_chunks({"id: 1\nretry: 9\ndata: a\n\nid: 2\nevent: e\ndata: lost\ndata: par"}, parser).size() == 1);
    parser.reset_stream();
    CHECK(parser.last_event_id() == "1");
    CHECK(parser.retry_ms() == 9u);
    // A new response body: the BOM is skipped again, and nothing of the cut-off event survives.
    CHECK(parse_chunks({"\xEF\xBB\xBF" "data: b\n\n"}, parser) == std::vector{message("b")});
    CHECK(parser.last_event_id() == "1");
  }

  TEST_CASE("invalid UTF-8 decodes to U+FFFD as the WHATWG decoder does") {
    const std::string r = "\xEF\xBF\xBD";
    const struct {
      std::string value;
      std::string decoded;
    } cases[] = {
        {"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80", "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"},
        {"\x80", r}, {"\xFF", r}, {"a\xC3", "a" + r},
        {"\xC0\x80", r + r},               // overlong: C0 is never a lead byte
        {"\xE0\x80\x80", r + r + r},       // overlong three-byte form
        {"\xED\xA0\x80", r + r + r},       // a surrogate
        {"\xF4\x90\x80\x80", r + r + r + r},  // above U+10FFFF
        {"\xE2\x82" "x", r + "x"},         // a truncated sequence is one U+FFFD
        {"\xE2\x82", r},                   // ... also at the end of the line
        {"\xF0\x9F\x98" "A", r + "A"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.value);
      CHECK(parse("data: " + c.value + "\n\n") == std::vector{message(c.decoded)});
      CHECK(parse("event: " + c.value + "\ndata\n\n").at(0).event == c.decoded);
      CHECK(parse("id: " + c.value + "\ndata\n\n").at(0).id == c.decoded);
    }
  }

  TEST_CASE("every split of a stream into three feeds gives the same events") {
    const std::string stream =
        "\xEF\xBB\xBF: heartbeat\r\nretry: 2500\nid: 1\nevent: add\ndata: {\"k\":1}\ndata: second line\r\n\r\n"
        "data: caf\xC3\xA9 \xF0\x9F\x98\x80\r\rid: 2\rdata\r\n\nevent: ignored\n\n"
        "id: 3\ndata: last\ndata:  indented\n\ndata: cut off";
    const std::vector<SseEvent> expected{
        {.event = "add", .data = "{\"k\":1}\nsecond line", .id = "1", .retry_ms = 2500},
        message("caf\xC3\xA9 \xF0\x9F\x98\x80"),
        message("", "2"),
        message("last\n indented", "3"),
    };
    SseParser whole;
    REQUIRE(parse_chunks({stream}, whole) == expected);
    for (std::size_t i = 0; i <= stream.size(); ++i) {
      for (std::size_t j = i; j <= stream.size(); ++j) {
        SseParser parser;
        const auto events = parse_chunks({stream.substr(0, i), stream.substr(i, j - i), stream.substr(j)}, parser);
        if (events != expected || parser.last_event_id() != "3" || parser.retry_ms() != 2500u) {
          FAIL("split at " << i << " and " << j << " gave " << events);
        }
      }
    }
    SseParser bytewise;
    std::vector<SseEvent> events;
    for (const char byte : stream) REQUIRE(bytewise.feed(std::string_view(&byte, 1), events));
    CHECK(events == expected);
  }

  TEST_CASE("encode_event writes the wire format") {
    const struct {
      SseEvent event;
      std::string wire;
    } cases[] = {
        {{.data = "hi"}, "data: hi\n\n"}, {message("hi"), "data: hi\n\n"},
        {{.data = ""}, "data:\n\n"}, {{.data = "a\n"}, "data: a\ndata:\n\n"},
        {{.data = "a\r\nb\rc\nd"}, "data: a\ndata: b\ndata: c\ndata: d\n\n"},
        {{.data = "\r\n"}, "data:\ndata:\n\n"},
        {{.event = "add", .data = "x", .id = "7", .retry_ms = 10}, "id: 7\nevent: add\nretry: 10\ndata: x\n\n"},
        {{.data = "x", .id = ""}, "id:\ndata: x\n\n"},
        {{.event = " sp", .data = " x"}, "event:  sp\ndata:  x\n\n"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.wire);
      CHECK(encode_event(c.event) == c.wire);
    }
  }

  TEST_CASE("encode_event refuses an id or event type that would break the framing") {
    for (const auto& bad : {"a\rb"s, "a\nb"s, "a\0b"s, "\n"s}) {
      CAPTURE(bad);
      CHECK(encode_event({.data = "x", .id = bad}).error() == Errc::invalid_value);
      CHECK(encode_event({.event = bad, .data = "x"}).error() == Errc::invalid_value);
    }
    CHECK(encode_event({.data = "nul\0and\rcr"s}));  // data may hold anything: CR splits lines, NUL is text
  }

  TEST_CASE("encode_comment and encode_retry") {
    CHECK(encode_comment("ping") == ": ping\n\n");
    CHECK(encode_comment("") == ":\n\n");
    CHECK(encode_comment("a\r\nb\rc\nd") == ": a\n: b\n: c\n: d\n\n");
    CHECK(encode_retry(0) == "retry: 0\n\n");
    CHECK(encode_retry(4294967295u) == "retry: 4294967295\n\n");
    SseParser parser;
    CHECK(parse_chunks({encode_comment("x\ndata: not data"), encode_retry(1500)}, parser).empty());
    CHECK(parser.retry_ms() == 1500u);
  }

  TEST_CASE("parsing an encoded event gives the event back") {
    const std::vector<SseEvent> events{
        message("hello"), message("line1\nline2\n\nline4"), message(""), message("\n"), message("trailing\n"),
        {.event = "update", .data = "{\"k\":1}", .id = "42", .retry_ms = 1500},
        {.event = "\xE6\x9B\xB4\xE6\x96\xB0", .data = "h\xC3\xA9llo \xF0\x9F\x98\x80", .id = "\xC3\xBC-1"},
        {.event = " spaced", .data = " leading space", .id = " id"},
        message("data: looks like a field\n: looks like a comment\nid: 9"),
        message("x", ""), message("nul\0inside"s), message("x", {}, 0),
    };
    std::string stream;
    for (const auto& e : events) {
      CAPTURE(e);
      const auto wire = encode_event(e);
      REQUIRE(wire);
      CHECK(parse(*wire) == std::vector{e});
      stream += *wire;
    }
    CHECK(parse(stream) == events);
  }

  TEST_CASE("a line exactly at max_line_bytes is accepted - one byte more is payload_too_large") {
    const ParserLimits limits{.max_line_bytes = 16};
    const std::string at_limit = "data: 0123456789";  // 16 bytes; the line ending does not count
    const struct {
      std::vector<std::string> chunks;
      bool ok;
    } cases[] = {
        {{at_limit + "\r\n\r\n"}, true}, {{"data: 0123", "456789", "\n\n"}, true},
        {{std::string(16, ':') + "\n"}, true},
        {{"\xEF\xBB\xBF" + at_limit + "\n\n"}, true},  // the BOM is not part of the line
        {{at_limit + "X\n\n"}, false}, {{at_limit + "X"}, false},  // fails before the line ends
        {{"data: 0123", "456789", "X"}, false},
        {{std::string(17, ':') + "\n"}, false},  // comments count too
        {{"\xEF\xBB", std::string(15, 'x')}, false},  // a false BOM start is content and counts
    };
    for (const auto& c : cases) {
      CAPTURE(c.chunks.front());
      SseParser parser(limits);
      std::vector<SseEvent> events;
      bool ok = true;
      for (const auto& chunk : c.chunks) {
        const auto fed = parser.feed(chunk, events);
        if (!fed) {
          CHECK(fed.error() == Errc::payload_too_large);
          ok = false;
        }
      }
      CHECK(ok == c.ok);
    }
  }

  TEST_CASE("event data exactly at max_event_bytes is accepted - one byte more is payload_too_large") {
    const ParserLimits limits{.max_event_bytes = 8};
    const struct {
      std::string stream;
      bool ok;
    } cases[] = {
        {"data: 12345678\n\n", true},
        {"data: 123\ndata: 1234\n\n", true},  // "123\n1234": the joining newline counts
        {"data: 12345678\n\ndata: 12345678\n\n", true},
        {repeat("data\n", 9) + "\n", true},      // nine empty values: eight newlines
        {"data: \xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\n\n", true},
        {"data: 123456789\n", false},             // fails at the line, before any blank line
        {"data: 123\ndata: 12345\n", false},
        {repeat("data\n", 10), false},
        {"data: \xFF\xFF\xFF\n", false},           // three U+FFFD are 9 bytes
    };
    for (const auto& c : cases) {
      CAPTURE(c.stream);
      SseParser parser(limits);
      std::vector<SseEvent> events;
      const auto fed = parser.feed(c.stream, events);
      CHECK(fed.has_value() == c.ok);
      if (!fed) CHECK(fed.error() == Errc::payload_too_large);
      for (const auto& e : events) CHECK(e.data.size() <= limits.max_event_bytes);
    }
  }

  TEST_CASE("a 10 MB line arriving in small pieces fails as soon as it passes the limit") {
    SseParser parser;  // default limit: 1 MiB
    const std::string piece(1000, 'a');
    std::vector<SseEvent> events;
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < 10'000; ++i) {
      if (!parser.feed(piece, events)) break;
      accepted += piece.size();
    }
    CHECK(accepted == 1'048'000);  // the next piece would make the line 1'049'000 > 1'048'576 bytes
    CHECK(parser.feed(piece, events).error() == Errc::payload_too_large);
  }

  TEST_CASE("after payload_too_large every feed fails, until reset_stream starts a new stream") {
    SseParser parser(ParserLimits{.max_line_bytes = 16});
    std::vector<SseEvent> events;
    const auto fed = parser.feed("id: 1\ndata: ok\n\n" + std::string(17, 'x') + "\ndata: after\n\n", events);
    REQUIRE_FALSE(fed);
    CHECK(fed.error() == Errc::payload_too_large);
    CHECK(events == std::vector{message("ok", "1")});  // what came before the failure is delivered
    for (const auto* later : {"data: fine\n\n", "", "\n"}) {
      CAPTURE(later);
      const auto again = parser.feed(later, events);
      REQUIRE_FALSE(again);
      CHECK(again.error() == Errc::payload_too_large);
    }
    CHECK(events.size() == 1);
    parser.reset_stream();
    CHECK(parse_chunks({"data: fine\n\n"}, parser) == std::vector{message("fine")});
    CHECK(parser.last_event_id() == "1");
  }
}
