// SPDX-License-Identifier: MIT
// RFC 6455 framing, sans-io: the decoder turns received bytes into messages, close frames and protocol
// violations; the encoder turns messages into frame bytes. Neither touches a socket or a clock, so the
// driver that owns the connection decides when to read, write, time out and close.
// No extension is ever negotiated, so RSV bits are always an error and payloads are never compressed.
#pragma once

#include <claudemesh/bytes.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include "transport/ws/utf8.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace claudemesh::transport::ws {

/// Frame opcodes (RFC 6455 §5.2). Other values are reserved and rejected.
enum class Opcode : std::uint8_t { continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA };

/// Whose side we are: a server decodes masked client frames and sends unmasked ones; a client the reverse.
enum class Role { server, client };

/// True for close, ping and pong (RFC 6455 §5.5).
constexpr bool is_control(Opcode opcode) noexcept { return (static_cast<std::uint8_t>(opcode) & 0x8) != 0; }

/// The largest payload of a control frame (RFC 6455 §5.5).
inline constexpr std::size_t max_control_payload = 125;

/// Close status codes (RFC 6455 §7.4.1; 1012–1014 from the IANA registry).
namespace close_code {
inline constexpr std::uint16_t normal = 1000, going_away = 1001, protocol_error = 1002, unsupported_data = 1003,
                               no_status = 1005, abnormal = 1006, invalid_payload = 1007, policy_violation = 1008,
                               message_too_big = 1009, mandatory_extension = 1010, internal_error = 1011,
                               try_again_later = 1013;
/// True for codes a peer may send in a close frame: 1000–1003, 1007–1011, 1012–1014, 3000–4999.
bool is_sendable(std::uint16_t code) noexcept;
}  // namespace close_code

/// Decoder limits.
struct DecoderLimits {
  std::size_t max_message_bytes = 1 << 20;  ///< a data message (all fragments together) above this closes with 1009
};

/// A complete message. `opcode` is text, binary, ping or pong; fragments are already joined and unmasked.
struct Message {
  Opcode opcode;
  std::string payload;
};

/// A close frame from the peer. An empty close payload gives code 1005 and an empty reason.
struct CloseFrame {
  std::uint16_t code = close_code::no_status;
  std::string reason;
};

/// The peer broke the protocol: the close code we must send, and why (for logs, not for the peer).
struct ProtocolViolation {
  std::uint16_t code;
  std::string reason;
};

using Event = std::variant<Message, CloseFrame, ProtocolViolation>;

/// Incremental frame decoder for one direction of one connection.
///
/// Feed it bytes as they arrive, in pieces of any size; it emits events once they are complete. Limits
/// are checked against the declared frame length before any payload is buffered, so a hostile header
/// cannot make it allocate more than `max_message_bytes`. Text is validated as it arrives.
///
/// Distinct objects: safe. Shared objects: unsafe.
class FrameDecoder {
 public:
  explicit FrameDecoder(Role role, DecoderLimits limits = {});

  /// Consume all of `data` (partial frames are buffered internally) and append complete events to `out`.
  /// After a ProtocolViolation or a CloseFrame is emitted, the decoder ignores further input (returns immediately).
  void feed(std::span<const std::uint8_t> data, std::vector<Event>& out);
  [[nodiscard]] bool failed() const noexcept { return failed_; }
  /// A CloseFrame was emitted.
  [[nodiscard]] bool closed() const noexcept { return closed_; }
  /// Bytes currently buffered (partial frame + partial message), for memory accounting. At most
  /// `max_message_bytes` + 125 after `feed` returns: a control frame may arrive between the fragments
  /// of a message that is already at the limit.
  [[nodiscard]] std::size_t buffered_bytes() const noexcept;

 private:
  struct FrameState {
    bool fin = false;
    Opcode opcode = Opcode::continuation;
    bool masked = false;
    std::array<std::uint8_t, 4> mask{};
    std::uint64_t length = 0;    // declared payload length
    std::uint64_t received = 0;  // payload bytes consumed so far
  };

  std::size_t consume_header(std::span<const std::uint8_t> data, std::vector<Event>& out);
  std::size_t consume_payload(std::span<const std::uint8_t> data, std::vector<Event>& out);
  bool check_first_bytes(std::vector<Event>& out);
  bool check_length(std::vector<Event>& out);
  void finish_frame(std::vector<Event>& out);
  void finish_close(std::vector<Event>& out);
  void fail(std::vector<Event>& out, std::uint16_t code, std::string reason);

  Role role_;
  DecoderLimits limits_;
  std::array<std::uint8_t, 14> header_{};
  std::size_t header_have_ = 0;
  std::size_t length_end_ = 2;   // end of the extended length; known once the first two bytes are in
  std::size_t header_size_ = 2;  // end of the masking key, likewise
  bool in_payload_ = false;
  FrameState frame_;
  std::optional<Opcode> message_opcode_;  // set while a fragmented data message is in progress
  std::string message_;                   // data payload so far, unmasked
  std::string control_;                   // control payload so far (at most 125 bytes), unmasked
  Utf8Validator utf8_;
  bool failed_ = false;
  bool closed_ = false;
};

/// Up to 14 bytes of frame header.
struct FrameHeader {
  std::array<std::uint8_t, 14> bytes{};
  std::size_t size = 0;
  [[nodiscard]] std::span<const std::uint8_t> view() const noexcept { return {bytes.data(), size}; }
};

/// Encode a header. `mask` must be set for Role::client frames and empty for Role::server frames.
FrameHeader encode_header(Opcode opcode, std::uint64_t payload_size, bool fin,
                          std::optional<std::array<std::uint8_t, 4>> mask);

/// XOR `data` with the mask, as if it started at byte `offset` of the payload.
void apply_mask(std::span<std::uint8_t> data, std::array<std::uint8_t, 4> mask, std::size_t offset = 0) noexcept;

/// Whether a frame with these properties may be sent: a known opcode, and for control frames FIN set and
/// at most 125 bytes of payload. @returns `Errc::invalid_value` saying which rule is broken.
Result<void> check_frame(Opcode opcode, std::size_t payload_size, bool fin);

/// Builds complete frames for one side of a connection: masks with fresh random keys when the role is client.
///
/// Distinct objects: safe. Shared objects: unsafe.
class FrameEncoder {
 public:
  explicit FrameEncoder(Role role, RandomSource rng = {});

  /// One frame: header + payload, masked when we are the client.
  /// Precondition: `check_frame(opcode, payload.size(), fin)` succeeds. For input that breaks it the
  /// result is empty (never a valid frame), so an invalid control frame can never reach the wire.
  Bytes frame(Opcode opcode, std::span<const std::uint8_t> payload, bool fin = true);
  /// A close frame with `code` and `reason`, the reason cut to its longest valid UTF-8 prefix that fits
  /// the 125-byte control payload. `code` must satisfy `close_code::is_sendable`, except that 1005
  /// (no status) gives a close frame with an empty payload. Any other code gives an empty result.
  Bytes close(std::uint16_t code, std::string_view reason);
  /// A ping; empty result if `payload` is over 125 bytes.
  Bytes ping(std::span<const std::uint8_t> payload);
  /// A pong; empty result if `payload` is over 125 bytes.
  Bytes pong(std::span<const std::uint8_t> payload);

 private:
  Role role_;
  RandomSource rng_;
};

}  // namespace claudemesh::transport::ws
