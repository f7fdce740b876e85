// SPDX-License-Identifier: MIT
// One WebSocket connection (RFC 6455) on either side, driving the sans-io FrameDecoder/FrameEncoder over
// a Stream: a read side that answers pings and the close handshake itself, a write queue with one write in
// flight, a bounded queue with an explicit slow-consumer policy, and a heartbeat (ping every 30 s, the
// connection is dropped after 75 s without any traffic).
//
// Lifetime: create with make_shared and call start(); keep the shared_ptr while you use it.
// Thread safety: distinct objects safe; shared objects unsafe; everything on the stream's executor.
#pragma once

#include "transport/stream.hpp"
#include "transport/ws/frame_codec.hpp"

#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace claudemesh::transport::ws {

/// A read buffer several idle connections can share: a connection waits for readability without a
/// buffer, then reads into this one and hands the bytes to its decoder before it next suspends.
struct ScratchBuffer {
  std::vector<char> bytes = std::vector<char>(std::size_t{64} * 1024);
};

struct WebSocketConfig {
  DecoderLimits limits{};                              ///< largest message (default 1 MiB) -> 1009
  std::size_t max_queued_bytes = std::size_t{4} * 1024 * 1024;     ///< unsent bytes before the peer counts as slow
  std::uint16_t slow_consumer_close_code = close_code::try_again_later;  ///< 1013 (or 1008)
  std::chrono::milliseconds ping_interval{30'000};     ///< 0 disables the heartbeat
  std::chrono::milliseconds stale_after{75'000};       ///< no bytes from the peer for this long -> drop
  std::chrono::milliseconds close_timeout{5'000};      ///< wait for the peer's close reply, or (after we
                                                       ///< failed the connection or echoed its close) for
                                                       ///< it to close while we drain its input
  std::shared_ptr<ScratchBuffer> scratch;              ///< shared read buffer (plain streams); null: own one
};

/// How the connection ended.
struct CloseInfo {
  std::uint16_t code = close_code::abnormal;  ///< the peer's code, ours, or 1006 if none was exchanged
  std::string reason;
  bool by_peer = false;                       ///< the peer sent the first close frame
};

struct WebSocketStats {
  std::uint64_t messages_in = 0, messages_out = 0, bytes_in = 0, bytes_out = 0;
  bool slow_consumer = false;  ///< closed because the peer did not read fast enough
};

class WebSocket : public std::enable_shared_from_this<WebSocket> {
 public:
  /// `leftover`: bytes read past the handshake that already belong to the WebSocket stream.
  WebSocket(std::unique_ptr<Stream> stream, Role role, WebSocketConfig config, std::string leftover = {});
  WebSocket(const WebSocket&) = delete;
  WebSocket& operator=(const WebSocket&) = delete;
  ~WebSocket();

  /// Start the writer and the heartbeat. Call once, before read().
  void start();

  /// The next text or binary message. Pings are answered and the close handshake is completed inside.
  /// @returns `Errc::connection_closed` once the connection is over (see close_info()).
  asio::awaitable<Result<Message>> read();

  /// Queue a text or binary message. Returns false if the connection is closing or closed, or if this
  /// message overflows `max_queued_bytes` — the peer is then a slow consumer and the connection closes.
  bool send(Opcode opcode, std::string_view payload);
  bool send_text(std::string_view payload) { return send(Opcode::text, payload); }
  bool send_binary(std::string_view payload) { return send(Opcode::binary, payload); }

  /// Start the close handshake (idempotent). The peer has `close_timeout` to answer.
  void close(std::uint16_t code = close_code::normal, std::string_view reason = {});
  /// Drop the connection without a close handshake.
  void terminate();

  [[nodiscard]] bool is_open() const noexcept { return state_ == State::open; }
  [[nodiscard]] const CloseInfo& close_info() const noexcept { return close_info_; }
  [[nodiscard]] const WebSocketStats& stats() const noexcept { return stats_; }
  [[nodiscard]] std::size_t queued_bytes() const noexcept { return queued_bytes_; }
  [[nodiscard]] Stream& stream() noexcept { return *stream_; }

 private:
  enum class State { open, closing, closed };
  asio::awaitable<void> write_loop();
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<std::error_code> fill();  // read bytes into the decoder
  void on_bytes(std::span<const std::uint8_t> bytes);
  void enqueue(Bytes frame);
  void on_close_frame(const CloseFrame& frame);
  void on_violation(const ProtocolViolation& violation);
  void finish(std::uint16_t code, std::string reason, bool by_peer);

  std::unique_ptr<Stream> stream_;
  WebSocketConfig config_;
  FrameDecoder decoder_;
  FrameEncoder encoder_;
  std::string leftover_;
  std::vector<char> own_buffer_;     // used when there is no shared scratch buffer, or for TLS
  std::vector<Event> events_;        // decoded, not yet returned by read()
  std::size_t next_event_ = 0;
  std::vector<Bytes> queue_;         // encoded frames waiting for the writer
  std::size_t queued_bytes_ = 0;
  asio::steady_timer wake_writer_;
  asio::steady_timer heartbeat_;
  std::chrono::steady_clock::time_point last_activity_;
  State state_ = State::open;
  bool close_sent_ = false;
  bool close_after_flush_ = false;   // close the stream once the queue (ending in our close frame) is out
  std::size_t in_flight_bytes_ = 0;  // bytes of the batch being written
  bool started_ = false;
  CloseInfo close_info_;
  WebSocketStats stats_;
};

}  // namespace claudemesh::transport::ws
