// SPDX-License-Identifier: MIT
#include "transport/ws/frame_codec.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace claudemesh::transport::ws {
namespace {

constexpr std::uint8_t kFinBit = 0x80;
constexpr std::uint8_t kReservedBits = 0x70;
constexpr std::uint8_t kOpcodeBits = 0x0F;
constexpr std::uint8_t kMaskBit = 0x80;
constexpr std::uint8_t kLengthBits = 0x7F;
constexpr std::uint8_t kLength16 = 126;  // 7-bit length values that announce an extended length
constexpr std::uint8_t kLength64 = 127;
constexpr std::size_t kMaxCloseReason = max_control_payload - 2;

bool is_known_opcode(std::uint8_t value) noexcept {
  switch (static_cast<Opcode>(value)) {
    case Opcode::continuation:
    case Opcode::text:
    case Opcode::binary:
    case Opcode::close:
    case Opcode::ping:
    case Opcode::pong: return true;
  }
  return false;
}

std::span<std::uint8_t> tail_bytes(std::string& s, std::size_t from) noexcept {
  return {reinterpret_cast<std::uint8_t*>(s.data()) + from, s.size() - from};
}

}  // namespace

bool close_code::is_sendable(std::uint16_t code) noexcept {
  // 1004–1006 and 1015 are reserved for local use: a peer that puts them on the wire is broken.
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

// ---- decoder ----

FrameDecoder::FrameDecoder(Role role, DecoderLimits limits) : role_(role), limits_(limits) {}

std::size_t FrameDecoder::buffered_bytes() const noexcept {
  return header_have_ + message_.size() + control_.size();
}

void FrameDecoder::feed(std::span<const std::uint8_t> data, std::vector<Event>& out) {
  std::size_t used = 0;
  // Every pass consumes at least one byte: a header stops at each checkpoint only after filling it, and a
  // frame whose payload is complete is finished at once (zero-length payloads included).
  while (!failed_ && !closed_ && used < data.size()) {
    const auto rest = data.subspan(used);
    used += in_payload_ ? consume_payload(rest, out) : consume_header(rest, out);
  }
}

std::size_t FrameDecoder::consume_header(std::span<const std::uint8_t> data, std::vector<Event>& out) {
  std::size_t used = 0;
  // Checkpoints: the first two bytes (flags, opcode, mask bit, 7-bit length), the end of the extended
  // length, and the end of the masking key. Each is checked as soon as it is in, so a bad frame fails
  // before the rest of its header arrives and an oversized one before any payload is buffered.
  while (true) {
    const std::size_t target = header_have_ < 2 ? 2 : header_have_ < length_end_ ? length_end_ : header_size_;
    const std::size_t take = std::min(target - header_have_, data.size() - used);
    std::memcpy(header_.data() + header_have_, data.data() + used, take);
    header_have_ += take;
    used += take;
    if (header_have_ < target) return used;
    if (header_have_ == 2 && !check_first_bytes(out)) return used;
    if (header_have_ == length_end_ && !check_length(out)) return used;
    if (header_have_ == header_size_) break;
  }

  if (frame_.masked) std::copy_n(header_.begin() + static_cast<std::ptrdiff_t>(length_end_), 4, frame_.mask.begin());
  header_have_ = 0;
  length_end_ = 2;
  header_size_ = 2;
  in_payload_ = true;
  frame_.received = 0;
  if (frame_.opcode == Opcode::text || frame_.opcode == Opcode::binary) {
    message_opcode_ = frame_.opcode;
    utf8_.reset();
  }
  if (frame_.length == 0) finish_frame(out);
  return used;
}

bool FrameDecoder::check_first_bytes(std::vector<Event>& out) {
  const std::uint8_t opcode = header_[0] & kOpcodeBits;
  frame_.fin = (header_[0] & kFinBit) != 0;
  frame_.masked = (header_[1] & kMaskBit) != 0;
  const std::uint8_t length7 = header_[1] & kLengthBits;

  if ((header_[0] & kReservedBits) != 0) {
    fail(out, close_code::protocol_error, "RSV bits set, but no extension was negotiated");
    return false;
  }
  if (!is_known_opcode(opcode)) {
    fail(out, close_code::protocol_error, "reserved opcode " + std::to_string(opcode));
    return false;
  }
  frame_.opcode = static_cast<Opcode>(opcode);
  // RFC 6455 §5.1: masking is what keeps a client's frames from poisoning intermediaries, so it is
  // mandatory one way and forbidden the other.
  if (role_ == Role::server && !frame_.masked) {
    fail(out, close_code::protocol_error, "client frame is not masked");
    return false;
  }
  if (role_ == Role::client && frame_.masked) {
    fail(out, close_code::protocol_error, "server frame is masked");
    return false;
  }
  if (is_control(frame_.opcode)) {
    if (!frame_.fin) {
      fail(out, close_code::protocol_error, "control frame is fragmented");
      return false;
    }
    if (length7 > max_control_payload) {
      fail(out, close_code::protocol_error, "control frame payload is over 125 bytes");
      return false;
    }
  } else if (frame_.opcode == Opcode::continuation && !message_opcode_) {
    fail(out, close_code::protocol_error, "continuation frame without a message in progress");
    return false;
  } else if (frame_.opcode != Opcode::continuation && message_opcode_) {
    fail(out, close_code::protocol_error, "new data frame while a fragmented message is in progress");
    return false;
  }

  length_end_ = 2 + (length7 == kLength16 ? 2 : length7 == kLength64 ? 8 : 0);
  header_size_ = length_end_ + (frame_.masked ? 4 : 0);
  return true;
}

bool FrameDecoder::check_length(std::vector<Event>& out) {
  const std::uint8_t length7 = header_[1] & kLengthBits;
  std::uint64_t length = length7;
  if (length7 == kLength16 || length7 == kLength64) {
    const std::size_t count = length7 == kLength16 ? 2 : 8;
    length = 0;
    for (std::size_t i = 0; i < count; ++i) length = (length << 8) | header_[2 + i];
  }
  if (length >> 63 != 0) {
    fail(out, close_code::protocol_error, "64-bit payload length has its most significant bit set");
    return false;
  }
  // message_ never exceeds the limit, so the subtraction cannot wrap.
  if (!is_control(frame_.opcode) && length > limits_.max_message_bytes - message_.size()) {
    fail(out, close_code::message_too_big,
         "message exceeds the limit of " + std::to_string(limits_.max_message_bytes) + " bytes");
    return false;
  }
  frame_.length = length;
  return true;
}

std::size_t FrameDecoder::consume_payload(std::span<const std::uint8_t> data, std::vector<Event>& out) {
  const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(frame_.length - frame_.received, data.size()));
  // Payload goes straight into its final buffer and is unmasked there: no per-frame copy, and the
  // message grows geometrically however it is fragmented.
  std::string& sink = is_control(frame_.opcode) ? control_ : message_;
  const std::size_t start = sink.size();
  sink.append(reinterpret_cast<const char*>(data.data()), take);
  const auto chunk = tail_bytes(sink, start);
  if (frame_.masked) apply_mask(chunk, frame_.mask, static_cast<std::size_t>(frame_.received));
  frame_.received += take;

  if (!is_control(frame_.opcode) && message_opcode_ == Opcode::text && !utf8_.feed(chunk)) {
    fail(out, close_code::invalid_payload, "text message is not valid UTF-8");
    return take;
  }
  if (frame_.received == frame_.length) finish_frame(out);
  return take;
}

void FrameDecoder::finish_frame(std::vector<Event>& out) {
  in_payload_ = false;
  switch (frame_.opcode) {
    case Opcode::close: finish_close(out); return;
    case Opcode::ping:
    case Opcode::pong:
      out.emplace_back(Message{frame_.opcode, std::move(control_)});
      control_.clear();
      return;
    case Opcode::continuation:
    case Opcode::text:
    case Opcode::binary: break;
  }
  if (!frame_.fin) return;
  if (message_opcode_ == Opcode::text && !utf8_.complete()) {
    fail(out, close_code::invalid_payload, "text message ends inside a UTF-8 sequence");
    return;
  }
  out.emplace_back(Message{*message_opcode_, std::move(message_)});
  message_.clear();
  message_opcode_.reset();
}

void FrameDecoder::finish_close(std::vector<Event>& out) {
  if (control_.empty()) {
    out.emplace_back(CloseFrame{close_code::no_status, {}});
  } else if (control_.size() == 1) {
    fail(out, close_code::protocol_error, "close frame payload of 1 byte cannot hold a status code");
    return;
  } else {
    const auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(control_[0]) << 8) |
                                                 static_cast<unsigned char>(control_[1]));
    if (!close_code::is_sendable(code)) {
      fail(out, close_code::protocol_error, "close code " + std::to_string(code) + " may not be sent by a peer");
      return;
    }
    std::string reason = control_.substr(2);
    if (!is_valid_utf8(reason)) {
      fail(out, close_code::invalid_payload, "close reason is not valid UTF-8");
      return;
    }
    out.emplace_back(CloseFrame{code, std::move(reason)});
  }
  closed_ = true;
  message_ = std::string{};  // nothing more will be read: give the memory back
  control_ = std::string{};
}

void FrameDecoder::fail(std::vector<Event>& out, std::uint16_t code, std::string reason) {
  out.emplace_back(ProtocolViolation{code, std::move(reason)});
  failed_ = true;
  header_have_ = 0;
  in_payload_ = false;
  message_ = std::string{};
  control_ = std::string{};
}

// ---- encoding ----

FrameHeader encode_header(Opcode opcode, std::uint64_t payload_size, bool fin,
                          std::optional<std::array<std::uint8_t, 4>> mask) {
  FrameHeader header;
  auto& b = header.bytes;
  b[0] = static_cast<std::uint8_t>((fin ? kFinBit : 0) | static_cast<std::uint8_t>(opcode));
  b[1] = mask ? kMaskBit : 0;
  std::size_t length_bytes = 0;
  if (payload_size < kLength16) {
    b[1] = static_cast<std::uint8_t>(b[1] | payload_size);
  } else if (payload_size <= 0xFFFF) {
    b[1] |= kLength16;
    length_bytes = 2;
  } else {
    b[1] |= kLength64;
    length_bytes = 8;
  }
  for (std::size_t i = 0; i < length_bytes; ++i) {
    b[2 + i] = static_cast<std::uint8_t>(payload_size >> (8 * (length_bytes - 1 - i)));
  }
  header.size = 2 + length_bytes;
  if (mask) {
    std::copy(mask->begin(), mask->end(), b.begin() + static_cast<std::ptrdiff_t>(header.size));
    header.size += 4;
  }
  return header;
}

void apply_mask(std::span<std::uint8_t> data, std::array<std::uint8_t, 4> mask, std::size_t offset) noexcept {
  // Rotate the key to this offset, then XOR eight bytes at a time: the key repeats every four bytes,
  // so two copies side by side in memory order are the right 64-bit pattern on any endianness.
  std::array<std::uint8_t, 8> key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = mask[(offset + i) & 3];
  std::uint64_t key64 = 0;
  std::memcpy(&key64, key.data(), sizeof key64);
  std::uint8_t* p = data.data();
  std::size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, p + i, sizeof word);
    word ^= key64;
    std::memcpy(p + i, &word, sizeof word);
  }
  for (; i < data.size(); ++i) p[i] ^= key[i & 3];
}

Result<void> check_frame(Opcode opcode, std::size_t payload_size, bool fin) {
  if (!is_known_opcode(static_cast<std::uint8_t>(opcode))) {
    return claudemesh::fail(Errc::invalid_value, "unknown opcode " + std::to_string(static_cast<int>(opcode)));
  }
  if (is_control(opcode) && !fin) return claudemesh::fail(Errc::invalid_value, "a control frame cannot be fragmented");
  if (is_control(opcode) && payload_size > max_control_payload) {
    return claudemesh::fail(Errc::invalid_value, "a control frame payload is at most 125 bytes, got " +
                                                     std::to_string(payload_size));
  }
  return {};
}

FrameEncoder::FrameEncoder(Role role, RandomSource rng) : role_(role), rng_(std::move(rng)) {}

Bytes FrameEncoder::frame(Opcode opcode, std::span<const std::uint8_t> payload, bool fin) {
  if (!check_frame(opcode, payload.size(), fin)) return {};
  std::optional<std::array<std::uint8_t, 4>> mask;
  if (role_ == Role::client) {
    // RFC 6455 §5.3: a fresh, unpredictable key per frame, so a script cannot choose the bytes on the wire.
    mask.emplace();
    fill_random(rng_, *mask);
  }
  const FrameHeader header = encode_header(opcode, payload.size(), fin, mask);
  Bytes out;
  out.reserve(header.size + payload.size());
  out.insert(out.end(), header.view().begin(), header.view().end());
  out.insert(out.end(), payload.begin(), payload.end());
  if (mask) apply_mask(std::span(out).subspan(header.size), *mask);
  return out;
}

Bytes FrameEncoder::close(std::uint16_t code, std::string_view reason) {
  if (code == close_code::no_status) return frame(Opcode::close, {});
  if (!close_code::is_sendable(code)) return {};
  const std::string_view kept = reason.substr(0, valid_utf8_prefix(reason, kMaxCloseReason));
  Bytes payload;
  payload.reserve(2 + kept.size());
  payload.push_back(static_cast<std::uint8_t>(code >> 8));
  payload.push_back(static_cast<std::uint8_t>(code & 0xFF));
  const auto reason_bytes = as_bytes(kept);
  payload.insert(payload.end(), reason_bytes.begin(), reason_bytes.end());
  return frame(Opcode::close, payload);
}

Bytes FrameEncoder::ping(std::span<const std::uint8_t> payload) { return frame(Opcode::ping, payload); }

Bytes FrameEncoder::pong(std::span<const std::uint8_t> payload) { return frame(Opcode::pong, payload); }

}  // namespace claudemesh::transport::ws
