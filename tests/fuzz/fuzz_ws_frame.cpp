// SPDX-License-Identifier: MIT
// libFuzzer target for the RFC 6455 frame decoder. The first input byte chooses the role (bit 0), the
// message limit (bits 1-2: 0, 125, 4096 or 1 MiB) and how the rest is cut into chunks (bits 3-7 seed the
// chunk sizes), so one input exercises many split points. Invariants:
// * at most one terminal event (ProtocolViolation or CloseFrame), and it is the last event;
// * once failed() or closed(), more input produces nothing;
// * data messages fit the limit, control payloads fit 125 bytes, every text message is valid UTF-8;
// * violations carry a code we may send; close frames carry a sendable code (or 1005 with no reason)
//   and a valid UTF-8 reason;
// * buffered_bytes() never exceeds limit + 125 (a control frame between fragments of a full message);
// * a client-role decoder accepts what a server-role encoder writes for each decoded message.
#include "transport/ws/frame_codec.hpp"
#include "transport/ws/utf8.hpp"

#include <claudemesh/bytes.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace {

using namespace claudemesh::transport::ws;

void require(bool condition) {
  if (!condition) std::abort();
}

constexpr std::size_t kLimits[] = {0, 125, 4096, 1 << 20};

void check_event(const Event& event, std::size_t limit) {
  if (const auto* message = std::get_if<Message>(&event)) {
    if (is_control(message->opcode)) {
      require(message->opcode == Opcode::ping || message->opcode == Opcode::pong);
      require(message->payload.size() <= max_control_payload);
    } else {
      require(message->opcode == Opcode::text || message->opcode == Opcode::binary);
      require(message->payload.size() <= limit);
    }
    if (message->opcode == Opcode::text) require(is_valid_utf8(message->payload));
  } else if (const auto* close = std::get_if<CloseFrame>(&event)) {
    require(close_code::is_sendable(close->code) || (close->code == close_code::no_status && close->reason.empty()));
    require(close->reason.size() <= max_control_payload - 2 && is_valid_utf8(close->reason));
  } else {
    const auto code = std::get<ProtocolViolation>(event).code;
    require(code == close_code::protocol_error || code == close_code::invalid_payload ||
            code == close_code::message_too_big);
  }
}

// Re-encode a decoded message and decode it again on the other side: the codec must agree with itself.
void check_round_trip(const Message& message) {
  FrameEncoder encoder(Role::server);
  FrameDecoder decoder(Role::client, {.max_message_bytes = message.payload.size()});
  std::vector<Event> events;
  decoder.feed(encoder.frame(message.opcode, claudemesh::as_bytes(message.payload)), events);
  require(events.size() == 1);
  const auto* again = std::get_if<Message>(&events[0]);
  require(again != nullptr && again->opcode == message.opcode && again->payload == message.payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const Role role = (control & 1) != 0 ? Role::client : Role::server;
  const std::size_t limit = kLimits[(control >> 1) & 3];
  std::uint32_t split_state = control >> 3;
  const std::span<const std::uint8_t> input(data + 1, size - 1);

  FrameDecoder decoder(role, {.max_message_bytes = limit});
  std::vector<Event> events;
  std::size_t at = 0;
  bool terminal = false;
  while (at < input.size()) {
    // A small linear congruential sequence: chunks from 1 to 64 bytes, or the whole rest when the seed is 0.
    split_state = split_state * 1103515245u + 12345u;
    const std::size_t chunk = (control >> 3) == 0 ? input.size() : 1 + ((split_state >> 16) % 64);
    const auto piece = input.subspan(at, std::min(chunk, input.size() - at));
    at += piece.size();

    const std::size_t before = events.size();
    decoder.feed(piece, events);
    if (terminal) require(events.size() == before);
    for (std::size_t i = before; i < events.size(); ++i) {
      require(!terminal);  // nothing may follow a violation or a close
      check_event(events[i], limit);
      terminal = !std::holds_alternative<Message>(events[i]);
    }
    require(decoder.failed() == (!events.empty() && std::holds_alternative<ProtocolViolation>(events.back())));
    require(decoder.closed() == (!events.empty() && std::holds_alternative<CloseFrame>(events.back())));
    require(decoder.buffered_bytes() <= limit + max_control_payload);
  }
  for (const auto& event : events) {
    if (const auto* message = std::get_if<Message>(&event)) check_round_trip(*message);
  }
  return 0;
}
