// SPDX-License-Identifier: MIT
#include "transport/ws/frame_codec.hpp"

#include <claudemesh/bytes.hpp>

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::transport::ws;

namespace {

constexpr std::array<std::uint8_t, 4> kRfcMask{0x37, 0xfa, 0x21, 0x3d};

Bytes hex(std::string_view text) { return from_hex(text).value(); }

std::string as_text(std::span<const std::uint8_t> b) { return {b.begin(), b.end()}; }

// A RandomSource that always yields the same bytes, to reproduce the RFC's masked examples.
RandomSource fixed_random(std::array<std::uint8_t, 4> key) {
  return [key](std::span<std::uint8_t> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = key[i % key.size()];
  };
}

// A frame with any first byte (flags and opcode, legal or not), masked with a fixed key when `masked`.
Bytes raw_frame(std::uint8_t first, std::string_view payload, bool masked) {
  const std::optional<std::array<std::uint8_t, 4>> mask =
      masked ? std::optional(std::array<std::uint8_t, 4>{1, 2, 3, 4}) : std::nullopt;
  FrameHeader header = encode_header(Opcode::continuation, payload.size(), false, mask);
  header.bytes[0] = first;
  Bytes out(header.view().begin(), header.view().end());
  const std::size_t start = out.size();
  out.insert(out.end(), payload.begin(), payload.end());
  if (mask) apply_mask(std::span(out).subspan(start), *mask);
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// One line per event, so sequences compare and print readably.
std::string describe(const Event& event) {
  if (const auto* m = std::get_if<Message>(&event)) {
    const char* kind = m->opcode == Opcode::text ? "text" : m->opcode == Opcode::binary ? "binary"
                       : m->opcode == Opcode::ping ? "ping" : m->opcode == Opcode::pong ? "pong" : "?";
    return std::string(kind) + ":" + m->payload;
  }
  if (const auto* c = std::get_if<CloseFrame>(&event)) return "close:" + std::to_string(c->code) + ":" + c->reason;
  return "violation:" + std::to_string(std::get<ProtocolViolation>(event).code);
}

std::string describe(const std::vector<Event>& events) {
  std::string lines;
  for (const auto& e : events) lines += (lines.empty() ? "" : "|") + describe(e);
  return lines;
}

std::string decode(Role role, std::span<const std::uint8_t> data, DecoderLimits limits = {}) {
  FrameDecoder decoder(role, limits);
  std::vector<Event> events;
  decoder.feed(data, events);
  return describe(events);
}

std::string decode_in_pieces(Role role, std::span<const std::uint8_t> data, std::mt19937& rng,
                                          std::size_t max_piece) {
  FrameDecoder decoder(role);
  std::vector<Event> events;
  std::size_t at = 0;
  while (at < data.size()) {
    const std::size_t piece = std::min(data.size() - at, std::uniform_int_distribution<std::size_t>(1, max_piece)(rng));
    decoder.feed(data.subspan(at, piece), events);
    at += piece;
  }
  return describe(events);
}

// A client's stream exercising every event kind: a fragmented text message split inside a UTF-8
// sequence with a ping between its fragments, a binary message, a pong and a close.
Bytes client_stream() {
  return concat({raw_frame(0x01, "Hel\xE2\x82", true), raw_frame(0x89, "are you there", true),
                 raw_frame(0x00, "\xAClo", true), raw_frame(0x80, "", true), raw_frame(0x82, std::string_view("\x00\x01\xFF", 3), true),
                 raw_frame(0x8A, "", true), raw_frame(0x88, "\x03\xE8" "bye", true)});
}

const std::string kClientStreamEvents =
    "ping:are you there|text:Hel\xE2\x82\xAClo|" + std::string("binary:\x00\x01\xFF", 10) + "|pong:|close:1000:bye";

}  // namespace

TEST_SUITE("ws frame codec") {
  TEST_CASE("RFC 6455 §5.7 examples decode byte-for-byte") {
    CHECK(decode(Role::client, hex("810548656c6c6f")) == "text:Hello");
    CHECK(decode(Role::server, hex("818537fa213d7f9f4d5158")) == "text:Hello");
    CHECK(decode(Role::client, hex("010348656c80026c6f")) == "text:Hello");
    CHECK(decode(Role::client, hex("890548656c6c6f")) == "ping:Hello");
    CHECK(decode(Role::server, hex("8a8537fa213d7f9f4d5158")) == "pong:Hello");
    for (const std::size_t size : {std::size_t{256}, std::size_t{65536}}) {
      const Bytes header = size == 256 ? hex("827e0100") : hex("827f0000000000010000");
      const Bytes frame = concat({header, Bytes(size, 0x5a)});
      CHECK(decode(Role::client, frame) == "binary:" + std::string(size, 'Z'));
    }
  }

  TEST_CASE("RFC 6455 §5.7 examples encode byte-for-byte") {
    FrameEncoder server(Role::server);
    FrameEncoder client(Role::client, fixed_random(kRfcMask));
    CHECK(server.frame(Opcode::text, as_bytes("Hello")) == hex("810548656c6c6f"));
    CHECK(client.frame(Opcode::text, as_bytes("Hello")) == hex("818537fa213d7f9f4d5158"));
    CHECK(concat({server.frame(Opcode::text, as_bytes("Hel"), false), server.frame(Opcode::continuation, as_bytes("lo"))}) ==
          hex("010348656c80026c6f"));
    CHECK(server.ping(as_bytes("Hello")) == hex("890548656c6c6f"));
    CHECK(client.pong(as_bytes("Hello")) == hex("8a8537fa213d7f9f4d5158"));
    CHECK(server.frame(Opcode::binary, Bytes(256, 0x5a)) == concat({hex("827e0100"), Bytes(256, 0x5a)}));
    CHECK(server.frame(Opcode::binary, Bytes(65536, 0x5a)) == concat({hex("827f0000000000010000"), Bytes(65536, 0x5a)}));
  }

  TEST_CASE("headers use the shortest length form and place the mask after the length") {
    CHECK(to_hex(encode_header(Opcode::binary, 125, true, std::nullopt).view()) == "827d");
    CHECK(to_hex(encode_header(Opcode::binary, 126, true, std::nullopt).view()) == "827e007e");
    CHECK(to_hex(encode_header(Opcode::binary, 65535, true, std::nullopt).view()) == "827effff");
    CHECK(to_hex(encode_header(Opcode::binary, 65536, false, kRfcMask).view()) == "02ff000000000001000037fa213d");
  }

  TEST_CASE("messages round-trip through encoder and decoder at every length boundary, in both roles") {
    for (const Role sender : {Role::client, Role::server}) {
      const Role receiver = sender == Role::client ? Role::server : Role::client;
      FrameEncoder encoder(sender);
      for (const std::size_t size : {0, 1, 125, 126, 127, 65535, 65536, 1 << 20}) {
        CAPTURE(size);
        Bytes payload(size);
        for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<std::uint8_t>(i * 7 + size);
        FrameDecoder decoder(receiver);
        std::vector<Event> events;
        decoder.feed(encoder.frame(Opcode::binary, payload), events);
        REQUIRE(events.size() == 1);
        const auto& message = std::get<Message>(events[0]);
        CHECK(message.opcode == Opcode::binary);
        CHECK(message.payload == as_text(payload));
        CHECK(decoder.buffered_bytes() == 0);
      }
    }
  }

  TEST_CASE("a client encoder masks every frame with a fresh key and a server encoder never masks") {
    std::uint8_t counter = 0;
    FrameEncoder client(Role::client, [&](std::span<std::uint8_t> out) {
      for (auto& b : out) b = ++counter;
    });
    const Bytes first = client.frame(Opcode::text, as_bytes("same"));
    const Bytes second = client.frame(Opcode::text, as_bytes("same"));
    CHECK((first[1] & 0x80) != 0);
    CHECK(first != second);
    CHECK((FrameEncoder(Role::server).frame(Opcode::text, as_bytes("same"))[1] & 0x80) == 0);
  }

  TEST_CASE("masking in pieces at any offset equals masking in one go") {
    Bytes whole(23);
    for (std::size_t i = 0; i < whole.size(); ++i) whole[i] = static_cast<std::uint8_t>(i);
    Bytes expected = whole;
    apply_mask(expected, kRfcMask);
    for (std::size_t split = 0; split <= whole.size(); ++split) {
      Bytes pieces = whole;
      apply_mask(std::span(pieces).first(split), kRfcMask, 0);
      apply_mask(std::span(pieces).subspan(split), kRfcMask, split);
      CHECK(pieces == expected);
    }
  }

  TEST_CASE("invalid frames are refused by check_frame and never encoded") {
    FrameEncoder encoder(Role::server);
    const Bytes payload126(126, 0);
    CHECK(check_frame(Opcode::ping, 126, true).error() == Errc::invalid_value);
    CHECK(check_frame(Opcode::close, 0, false).error() == Errc::invalid_value);
    CHECK(check_frame(static_cast<Opcode>(3), 0, true).error() == Errc::invalid_value);
    CHECK(check_frame(Opcode::ping, 125, true));
    CHECK(check_frame(Opcode::binary, 1 << 20, false));
    CHECK(encoder.ping(payload126).empty());
    CHECK(encoder.pong(payload126).empty());
    CHECK(encoder.frame(Opcode::ping, {}, false).empty());
    CHECK(encoder.frame(static_cast<Opcode>(0xB), {}).empty());
    CHECK(encoder.ping(Bytes(125, 0)).size() == 127);
  }

  TEST_CASE("close frames carry a sendable code and a reason cut at a UTF-8 boundary to fit 125 bytes") {
    FrameEncoder encoder(Role::server);
    CHECK(encoder.close(close_code::normal, "bye") == hex("880503e8627965"));
    CHECK(encoder.close(close_code::no_status, "ignored") == hex("8800"));
    for (const int code : {0, 999, 1004, 1006, 1015, 2999, 5000}) {
      CHECK(encoder.close(static_cast<std::uint16_t>(code), "").empty());
    }

    std::string euros;
    for (int i = 0; i < 60; ++i) euros += "\xE2\x82\xAC";  // 180 bytes of three-byte characters
    const Bytes frame = encoder.close(close_code::going_away, euros);
    REQUIRE(frame.size() == 2 + 2 + 123);
    CHECK(decode(Role::client, frame) == "close:1001:" + euros.substr(0, 123));

    const Bytes cut = encoder.close(close_code::going_away, std::string(122, 'a') + "\xE2\x82\xAC");
    CHECK(decode(Role::client, cut) == "close:1001:" + std::string(122, 'a'));
  }

  TEST_CASE("is_sendable accepts exactly the codes a peer may put on the wire") {
    for (int code = 0; code <= 0xFFFF; ++code) {
      const bool expected = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                            (code >= 3000 && code <= 4999);
      if (close_code::is_sendable(static_cast<std::uint16_t>(code)) != expected) FAIL("code " << code);
    }
  }

  TEST_CASE("close frames decode: empty payload is 1005, otherwise code and reason") {
    CHECK(decode(Role::server, raw_frame(0x88, "", true)) == "close:1005:");
    CHECK(decode(Role::server, raw_frame(0x88, "\x0F\xA0" "app", true)) == "close:4000:app");
    CHECK(decode(Role::server, raw_frame(0x88, "\x03\xF4", true)) == "close:1012:");
  }

  TEST_CASE("every protocol violation closes with its RFC 6455 code") {
    struct Case {
      std::string name;
      Role role;
      Bytes input;
      std::uint16_t code;
      const char* reason;  // part of the violation's reason, to prove which check fired
    };
    const Case cases[] = {
        {"RSV1 set", Role::server, raw_frame(0xC1, "Hi", true), 1002, "RSV"},
        {"RSV2 set", Role::server, raw_frame(0xA1, "Hi", true), 1002, "RSV"},
        {"RSV3 set", Role::server, raw_frame(0x91, "Hi", true), 1002, "RSV"},
        {"opcode 3", Role::server, raw_frame(0x83, "", true), 1002, "opcode 3"},
        {"opcode 7", Role::server, raw_frame(0x87, "", true), 1002, "opcode 7"},
        {"opcode 0xB", Role::server, raw_frame(0x8B, "", true), 1002, "opcode 11"},
        {"opcode 0xF", Role::client, raw_frame(0x8F, "", false), 1002, "opcode 15"},
        {"unmasked client frame", Role::server, raw_frame(0x81, "Hi", false), 1002, "not masked"},
        {"masked server frame", Role::client, raw_frame(0x81, "Hi", true), 1002, "is masked"},
        {"ping over 125 bytes", Role::server, raw_frame(0x89, std::string(126, 'p'), true), 1002, "over 125"},
        {"pong with 7-bit length 126", Role::client, hex("8a7e007d") , 1002, "over 125"},
        {"fragmented ping", Role::server, raw_frame(0x09, "", true), 1002, "fragmented"},
        {"fragmented close", Role::server, raw_frame(0x08, "", true), 1002, "fragmented"},
        {"continuation first", Role::server, raw_frame(0x80, "x", true), 1002, "without a message"},
        {"text inside a fragmented message", Role::server,
         concat({raw_frame(0x01, "a", true), raw_frame(0x81, "b", true)}), 1002, "in progress"},
        {"binary inside a fragmented message", Role::client,
         concat({raw_frame(0x02, "a", false), raw_frame(0x02, "b", false)}), 1002, "in progress"},
        {"64-bit length with the top bit set", Role::server, hex("82ff800000000000000001020304"), 1002,
         "most significant"},
        {"close with a 1-byte payload", Role::server, raw_frame(0x88, "\x03", true), 1002, "1 byte"},
        {"invalid UTF-8 text", Role::server, raw_frame(0x81, "\xC0\xAF", true), 1007, "UTF-8"},
        {"text ending mid-sequence", Role::client, raw_frame(0x81, "ok\xE2\x82", false), 1007, "ends inside"},
        {"close reason not UTF-8", Role::server, raw_frame(0x88, "\x03\xE8\xED\xA0\x80", true), 1007, "reason"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.name);
      FrameDecoder decoder(c.role);
      std::vector<Event> events;
      decoder.feed(c.input, events);
      REQUIRE(events.size() == 1);
      const auto* violation = std::get_if<ProtocolViolation>(&events[0]);
      REQUIRE(violation != nullptr);
      CHECK(violation->code == c.code);
      CHECK(violation->reason.find(c.reason) != std::string::npos);
      CHECK(decoder.failed());
      CHECK(decoder.buffered_bytes() == 0);
    }
    for (const int code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
      CAPTURE(code);
      const std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
      CHECK(decode(Role::server, raw_frame(0x88, payload, true)) == "violation:1002");
    }
  }

  TEST_CASE("a message over the limit closes with 1009 at exactly limit + 1, and the limit itself passes") {
    const DecoderLimits limits{.max_message_bytes = 16};
    CHECK(decode(Role::server, raw_frame(0x82, std::string(16, 'a'), true), limits) ==
          "binary:" + std::string(16, 'a'));
    CHECK(decode(Role::server, raw_frame(0x82, std::string(17, 'a'), true), limits) ==
          "violation:1009");
    const Bytes at_limit = concat({raw_frame(0x01, std::string(10, 'a'), true), raw_frame(0x80, std::string(6, 'b'), true)});
    CHECK(decode(Role::server, at_limit, limits) ==
          "text:" + std::string(10, 'a') + std::string(6, 'b'));
    const Bytes over = concat({raw_frame(0x01, std::string(10, 'a'), true), raw_frame(0x80, std::string(7, 'b'), true)});
    CHECK(decode(Role::server, over, limits) == "violation:1009");
    // Control frames are bounded by 125 bytes, not by the message limit.
    CHECK(decode(Role::server, raw_frame(0x89, std::string(100, 'p'), true), limits) == "ping:" + std::string(100, 'p'));
  }

  TEST_CASE("a header declaring 2^62 bytes fails with 1009 before any payload arrives") {
    FrameDecoder decoder(Role::server);
    std::vector<Event> events;
    decoder.feed(hex("82ff4000000000000000"), events);  // no masking key yet: the length alone decides
    REQUIRE(events.size() == 1);
    CHECK(std::get<ProtocolViolation>(events[0]).code == close_code::message_too_big);
    CHECK(decoder.buffered_bytes() == 0);
  }

  TEST_CASE("invalid UTF-8 in the first fragment fails at once, without waiting for the rest") {
    FrameDecoder decoder(Role::server);
    std::vector<Event> events;
    decoder.feed(raw_frame(0x01, "ok\xED\xA0", true), events);  // FIN=0: more fragments would follow
    REQUIRE(events.size() == 1);
    CHECK(std::get<ProtocolViolation>(events[0]).code == close_code::invalid_payload);
  }

  TEST_CASE("a UTF-8 sequence split across fragments is valid - a broken one is 1007") {
    const Bytes split = concat({raw_frame(0x01, "price \xE2", true), raw_frame(0x00, "\x82", true),
                                raw_frame(0x80, "\xAC!", true)});
    CHECK(decode(Role::server, split) == "text:price \xE2\x82\xAC!");
    const Bytes broken = concat({raw_frame(0x01, "price \xE2", true), raw_frame(0x80, "A", true)});
    CHECK(decode(Role::server, broken) == "violation:1007");
    // Binary messages are not text: the same bytes pass.
    const Bytes binary = concat({raw_frame(0x02, "\xE2", true), raw_frame(0x80, "A", true)});
    CHECK(decode(Role::server, binary) == "binary:\xE2" "A");
  }

  TEST_CASE("control frames between fragments are emitted at once, before the message") {
    FrameDecoder decoder(Role::server);
    std::vector<Event> events;
    decoder.feed(concat({raw_frame(0x01, "Hel", true), raw_frame(0x89, "x", true)}), events);
    REQUIRE(events.size() == 1);
    CHECK(describe(events[0]) == "ping:x");
    CHECK(decoder.buffered_bytes() == 3);
    decoder.feed(raw_frame(0x80, "lo", true), events);
    REQUIRE(events.size() == 2);
    CHECK(describe(events[1]) == "text:Hello");
  }

  TEST_CASE("feeding one byte at a time gives the same events as feeding everything at once") {
    const Bytes stream = client_stream();
    CHECK(decode(Role::server, stream) == kClientStreamEvents);
    FrameDecoder decoder(Role::server);
    std::vector<Event> events;
    for (const std::uint8_t byte : stream) decoder.feed(std::span(&byte, 1), events);
    CHECK(describe(events) == kClientStreamEvents);
  }

  TEST_CASE("feeding in random splits gives the same events") {
    std::mt19937 rng(6455);
    const Bytes stream = client_stream();
    for (int round = 0; round < 300; ++round) {
      CHECK(decode_in_pieces(Role::server, stream, rng, round % 2 == 0 ? 5 : 40) == kClientStreamEvents);
    }
    FrameEncoder encoder(Role::server);
    Bytes payload(70000, 0xAB);
    const Bytes big = encoder.frame(Opcode::binary, payload);
    CHECK(decode_in_pieces(Role::client, big, rng, 4096) == "binary:" + as_text(payload));
  }

  TEST_CASE("input after a close frame or a violation is ignored") {
    FrameDecoder closed(Role::server);
    std::vector<Event> events;
    closed.feed(concat({raw_frame(0x88, "", true), raw_frame(0x81, "late", true)}), events);
    CHECK(events.size() == 1);
    CHECK(closed.closed());
    closed.feed(raw_frame(0x81, "later", true), events);
    CHECK(events.size() == 1);

    FrameDecoder failed(Role::server);
    events.clear();
    failed.feed(concat({raw_frame(0x81, "unmasked", false), raw_frame(0x81, "ok", true)}), events);
    CHECK(events.size() == 1);
    failed.feed(raw_frame(0x81, "ok", true), events);
    CHECK(events.size() == 1);
    CHECK(failed.failed());
    CHECK_FALSE(failed.closed());
  }

  TEST_CASE("buffered_bytes counts a partial header and a partial message, and drops to zero after") {
    FrameDecoder decoder(Role::server);
    std::vector<Event> events;
    const Bytes frame = raw_frame(0x82, std::string(300, 'x'), true);  // 2 + 2 + 4 header bytes
    decoder.feed(std::span(frame).first(3), events);
    CHECK(decoder.buffered_bytes() == 3);
    decoder.feed(std::span(frame).subspan(3, 105), events);  // header done, 100 payload bytes
    CHECK(decoder.buffered_bytes() == 100);
    decoder.feed(std::span(frame).subspan(108), events);
    CHECK(events.size() == 1);
    CHECK(decoder.buffered_bytes() == 0);
  }
}
