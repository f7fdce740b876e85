// SPDX-License-Identifier: MIT
#include "transport/ws/websocket.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

namespace claudemesh::transport::ws {
namespace {

using Clock = std::chrono::steady_clock;

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

WebSocket::WebSocket(std::unique_ptr<Stream> stream, Role role, WebSocketConfig config, std::string leftover)
    : stream_(std::move(stream)),
      config_(std::move(config)),
      decoder_(role, config_.limits),
      encoder_(role),
      leftover_(std::move(leftover)),
      wake_writer_(stream_->get_executor()),
      heartbeat_(stream_->get_executor()),
      last_activity_(Clock::now()) {
  wake_writer_.expires_at(Clock::time_point::max());
}

WebSocket::~WebSocket() = default;

void WebSocket::start() {
  if (started_) return;
  started_ = true;
  auto self = shared_from_this();
  asio::co_spawn(stream_->get_executor(), [self]() { return self->write_loop(); }, asio::detached);
  asio::co_spawn(stream_->get_executor(), [self]() { return self->heartbeat_loop(); }, asio::detached);
}

asio::awaitable<Result<Message>> WebSocket::read() {
  while (true) {
    while (next_event_ < events_.size()) {
      Event event = std::move(events_[next_event_++]);
      if (next_event_ == events_.size()) {
        events_.clear();
        next_event_ = 0;
      }
      if (auto* message = std::get_if<Message>(&event)) {
        if (message->opcode == Opcode::ping) {
          if (state_ == State::open) enqueue(encoder_.pong(bytes_of(message->payload)));
          continue;
        }
        if (message->opcode == Opcode::pong) continue;
        if (state_ != State::open) continue;  // closing: data after our close frame is discarded
        ++stats_.messages_in;
        co_return std::move(*message);
      }
      if (auto* close_frame = std::get_if<CloseFrame>(&event)) {
        on_close_frame(*close_frame);
      } else {
        on_violation(std::get<ProtocolViolation>(event));
      }
    }
    if (state_ == State::closed || !stream_->is_open()) {
      if (state_ != State::closed) finish(close_code::abnormal, "connection lost", false);
      co_return fail(Errc::connection_closed,
                     "websocket closed: " + std::to_string(close_info_.code) + " " + close_info_.reason);
    }
    if (auto ec = co_await fill(); ec) {
      if (state_ != State::closed) finish(close_code::abnormal, ec.message(), false);
    }
  }
}

asio::awaitable<std::error_code> WebSocket::fill() {
  if (!leftover_.empty()) {
    const std::string bytes = std::move(leftover_);
    leftover_.clear();
    decoder_.feed(bytes_of(bytes), events_);
    co_return std::error_code{};
  }
  if (config_.scratch && !stream_->is_tls()) {
    // Wait without a buffer, so an idle connection holds none; then read synchronously (the socket is
    // ready, the read does not block) into the shared buffer and feed the decoder, all without suspending,
    // so no other connection can write into the buffer in between.
    auto& buffer = config_.scratch->bytes;
    while (true) {
      if (auto ec = co_await stream_->wait_readable(); ec) co_return ec;
      auto [ec, n] = stream_->try_read(asio::buffer(buffer));
      if (ec == asio::error::would_block || ec == asio::error::try_again) continue;  // spurious wake-up
      if (ec) co_return ec;
      on_bytes({reinterpret_cast<const std::uint8_t*>(buffer.data()), n});
      co_return std::error_code{};
    }
  }
  // TLS (records are buffered inside OpenSSL) or no shared buffer: read into our own.
  if (own_buffer_.empty()) own_buffer_.resize(std::size_t{16} * 1024);
  auto [ec, n] = co_await stream_->read_some(asio::buffer(own_buffer_));
  if (ec) co_return ec;
  on_bytes({reinterpret_cast<const std::uint8_t*>(own_buffer_.data()), n});
  co_return std::error_code{};
}

void WebSocket::on_bytes(std::span<const std::uint8_t> bytes) {
  last_activity_ = Clock::now();
  stats_.bytes_in += bytes.size();
  decoder_.feed(bytes, events_);
}

bool WebSocket::send(Opcode opcode, std::string_view payload) {
  if (state_ != State::open) return false;
  Bytes frame = encoder_.frame(opcode, bytes_of(payload));
  if (queued_bytes_ + frame.size() > config_.max_queued_bytes) {
    // The peer is not reading. Drop what has not started to go out and tell it why; it has
    // close_timeout to read the close frame before the connection is dropped.
    stats_.slow_consumer = true;
    for (const auto& queued : queue_) queued_bytes_ -= queued.size();
    queue_.clear();
    close(config_.slow_consumer_close_code, "slow consumer");
    return false;
  }
  ++stats_.messages_out;
  enqueue(std::move(frame));
  return true;
}

void WebSocket::enqueue(Bytes frame) {
  queued_bytes_ += frame.size();
  queue_.push_back(std::move(frame));
  wake_writer_.cancel();
}

void WebSocket::close(std::uint16_t code, std::string_view reason) {
  if (state_ != State::open) return;
  if (!close_code::is_sendable(code)) code = close_code::normal;  // 1005/1006/1015 never go on the wire
  state_ = State::closing;
  close_info_ = {code, std::string(reason), false};
  close_sent_ = true;
  enqueue(encoder_.close(code, reason));
  heartbeat_.cancel();  // re-evaluate with the close timeout
}

void WebSocket::terminate() { finish(close_code::abnormal, "terminated", false); }

void WebSocket::on_close_frame(const CloseFrame& frame) {
  if (state_ == State::closed) return;
  if (!close_sent_) {
    // The peer started the handshake: echo its code, then the connection is done once that is written.
    close_info_ = {frame.code, frame.reason, true};
    close_sent_ = true;
    const auto echo = frame.code == close_code::no_status ? close_code::normal : frame.code;
    enqueue(encoder_.close(echo, {}));
    state_ = State::closing;
    close_after_flush_ = true;
    heartbeat_.cancel();  // re-evaluate with the close timeout, which bounds the lingering close
    return;
  }
  // Our close frame was answered.
  finish(close_info_.code, close_info_.reason, false);
}

void WebSocket::on_violation(const ProtocolViolation& violation) {
  if (state_ == State::closed) return;
  close_info_ = {violation.code, violation.reason, false};
  if (!close_sent_) {
    close_sent_ = true;
    queue_.clear();
    queued_bytes_ = in_flight_bytes_;
    enqueue(encoder_.close(violation.code, violation.reason));
  }
  state_ = State::closing;
  close_after_flush_ = true;
  heartbeat_.cancel();  // re-evaluate with the close timeout, which bounds the lingering close
}

void WebSocket::finish(std::uint16_t code, std::string reason, bool by_peer) {
  if (state_ == State::closed) return;
  if (close_info_.code == close_code::abnormal || !close_sent_) close_info_ = {code, std::move(reason), by_peer};
  state_ = State::closed;
  wake_writer_.cancel();
  heartbeat_.cancel();
  stream_->close();
}

asio::awaitable<void> WebSocket::write_loop() {
  auto self = shared_from_this();
  std::vector<Bytes> batch;
  std::vector<asio::const_buffer> buffers;
  while (state_ != State::closed) {
    if (queue_.empty()) {
      if (close_after_flush_ && state_ == State::closing) {
        // Our close frame is out. Closing the socket now, while the peer may still be sending (the rest
        // of the message we just refused with 1009, say), makes the kernel answer its bytes with RST: its
        // pending send fails and it can lose our close frame. So shut down our sending side only (the peer
        // reads EOF right after the close frame) and let read() drain and discard until the peer closes
        // too; the heartbeat bounds that with close_timeout. TLS keeps the immediate close.
        if (stream_->is_tls()) {
          finish(close_info_.code, close_info_.reason, close_info_.by_peer);
        } else {
          stream_->shutdown_send();
        }
        break;
      }
      wake_writer_.expires_at(Clock::time_point::max());
      co_await wake_writer_.async_wait(use_tuple);
      continue;
    }
    batch.swap(queue_);  // everything queued so far goes out in one gathered write
    buffers.clear();
    in_flight_bytes_ = 0;
    for (const auto& frame : batch) {
      buffers.emplace_back(asio::buffer(frame));
      in_flight_bytes_ += frame.size();
    }
    const auto ec = co_await stream_->write(buffers);
    queued_bytes_ -= in_flight_bytes_;
    stats_.bytes_out += in_flight_bytes_;
    in_flight_bytes_ = 0;
    batch.clear();
    if (ec) {
      finish(close_code::abnormal, "write failed: " + ec.message(), false);
      break;
    }
  }
}

asio::awaitable<void> WebSocket::heartbeat_loop() {
  auto self = shared_from_this();
  Clock::time_point close_deadline = Clock::time_point::max();
  while (state_ != State::closed) {
    const auto now = Clock::now();
    if (state_ == State::closing) {
      if (close_deadline == Clock::time_point::max()) close_deadline = now + config_.close_timeout;
      if (now >= close_deadline) {
        finish(close_info_.code, close_info_.reason, close_info_.by_peer);
        break;
      }
      heartbeat_.expires_at(close_deadline);
    } else if (config_.ping_interval.count() > 0) {
      heartbeat_.expires_after(config_.ping_interval);
    } else {
      heartbeat_.expires_at(Clock::time_point::max());
    }
    auto [ec] = co_await heartbeat_.async_wait(use_tuple);
    if (ec || state_ != State::open) continue;  // cancelled: closing or closed, look again
    if (Clock::now() - last_activity_ > config_.stale_after) {
      finish(close_code::abnormal, "no traffic from the peer", false);
      break;
    }
    enqueue(encoder_.ping({}));
  }
}

}  // namespace claudemesh::transport::ws
