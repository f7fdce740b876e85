// SPDX-License-Identifier: MIT
// libFuzzer target for RequestParser. The input is a connection's byte stream, parsed twice — in one piece and in
// pseudo-random pieces drawn from the input — with pipelined requests taken one after the other (reset()).
// Invariants:
// * feed() never reports more bytes than it was given, consumes everything it is given while a message is
//   incomplete, and nothing once the message is complete or failed;
// * states only move forward: need_more -> [headers_complete -> need_more] -> message_complete | error;
// * a head never exceeds the limits (bytes, fields, target) and a complete body never exceeds its body limit;
// * an error carries one of the documented statuses and a message;
// * both ways of feeding give the same transcript of requests and errors.
#include "transport/http/request_parser.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

namespace {

using claudemesh::transport::http::ParserLimits;
using claudemesh::transport::http::RequestParser;
using State = RequestParser::State;

constexpr ParserLimits limits{.max_header_bytes = 512, .max_headers = 8, .max_body_bytes = 256, .max_target_bytes = 64,
                              .max_chunk_line_bytes = 64};

void require(bool condition) {
  if (!condition) std::abort();
}

// The body limit a router would pick for the n-th request: the default, smaller, larger.
std::size_t body_limit_for(std::size_t n) {
  constexpr std::array<std::size_t, 3> choices{limits.max_body_bytes, 16, 1000};
  return choices[n % choices.size()];
}

// Piece sizes from 1 to 64 bytes, deterministic for a given input.
class Pieces {
 public:
  explicit Pieces(std::string_view input) {
    for (const char c : input.substr(0, 16)) state_ = (state_ ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  }
  std::size_t next(std::size_t remaining) {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return remaining == 0 ? 0 : 1 + static_cast<std::size_t>(state_ % std::min<std::size_t>(remaining, 64));
  }

 private:
  std::uint64_t state_ = 0xcbf29ce484222325ULL;
};

bool documented(int status) {
  return status == 400 || status == 413 || status == 414 || status == 431 || status == 501 || status == 505;
}

void check_head(const RequestParser& parser, std::size_t head_bytes) {
  const auto& request = parser.request();
  require(head_bytes <= limits.max_header_bytes);
  require(request.headers.size() <= limits.max_headers);
  require(request.target.size() <= limits.max_target_bytes);
  require(!request.method.empty() && !request.target.empty());
  require(request.version_major == 1 && (request.version_minor == 0 || request.version_minor == 1));
}

std::string transcript(std::string_view input, bool split) {
  RequestParser parser(limits);
  Pieces pieces(input);
  std::string log;
  std::size_t offset = 0;
  std::size_t message = 0;
  std::size_t message_bytes = 0;
  bool saw_headers = false;
  while (true) {
    const State before = parser.state();
    if (before == State::error) {
      require(documented(parser.error().status) && !parser.error().message.empty());
      require(!parser.in_progress());
      require(parser.feed(input.substr(offset)) == 0 && parser.state() == State::error);
      log += "error " + std::to_string(parser.error().status) + "\n";
      break;
    }
    if (before == State::message_complete) {
      const auto& request = parser.request();
      require(request.body.size() <= body_limit_for(message));
      require(!parser.in_progress());
      require(parser.feed(input.substr(offset)) == 0 && parser.state() == State::message_complete);
      log += request.method + " " + request.target + " " + std::to_string(request.body.size()) +
             (request.keep_alive ? " keep" : " close") + (request.upgrade ? " upgrade\n" : "\n");
      parser.reset();
      require(parser.state() == State::need_more && !parser.in_progress());
      ++message;
      message_bytes = 0;
      saw_headers = false;
      continue;
    }
    if (before == State::need_more && offset == input.size()) {
      log += parser.in_progress() ? "pending\n" : "idle\n";
      break;
    }
    const std::size_t offered = split ? pieces.next(input.size() - offset) : input.size() - offset;
    const std::size_t used = parser.feed(std::span<const char>(input.data() + offset, offered));
    const State after = parser.state();
    require(used <= offered);
    offset += used;
    message_bytes += used;
    if (after == State::need_more) require(used == offered);
    if (after == State::headers_complete) {
      require(before == State::need_more && !saw_headers && parser.in_progress());
      check_head(parser, message_bytes);
      saw_headers = true;
      parser.set_body_limit(body_limit_for(message));
    }
    if (after == State::message_complete && !saw_headers) check_head(parser, message_bytes);
    if (after == State::need_more && saw_headers) require(parser.in_progress());
  }
  return log;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  require(transcript(input, false) == transcript(input, true));
  return 0;
}
