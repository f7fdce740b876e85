// SPDX-License-Identifier: MIT
// libFuzzer target for ResponseParser. The first input byte chooses the mode (bit 0: the request was HEAD,
// bit 1: streaming, bit 2: the connection closes after the input, so finish() is called); the rest is the
// connection's byte stream, parsed twice — in one piece and in pseudo-random pieces — response after response.
// Invariants:
// * feed() never reports more bytes than it was given, and consumes nothing once a message is complete or failed;
// * after finish() the parser is complete or failed, never waiting;
// * a complete body never exceeds the body limit, except in streaming mode where it is handed out and
//   response().body stays empty;
// * an error carries one of the documented statuses and a message;
// * both ways of feeding give the same transcript of responses and errors.
#include "transport/http/response_parser.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

namespace {

using claudemesh::transport::http::ParserLimits;
using claudemesh::transport::http::ResponseParser;
using State = ResponseParser::State;

constexpr ParserLimits limits{.max_header_bytes = 512, .max_headers = 8, .max_body_bytes = 256, .max_target_bytes = 64,
                              .max_chunk_line_bytes = 64};

void require(bool condition) {
  if (!condition) std::abort();
}

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
  std::uint64_t state_ = 0x84222325cbf29ce4ULL;
};

bool documented(int status) {
  return status == 400 || status == 413 || status == 431 || status == 501 || status == 505;
}

struct Mode {
  bool head = false;
  bool streaming = false;
  bool closes = false;
};

void configure(ResponseParser& parser, Mode mode) {
  parser.expect_response_to(mode.head ? "HEAD" : "GET");
  parser.set_streaming(mode.streaming);
}

std::string transcript(std::string_view input, Mode mode, bool split) {
  ResponseParser parser(limits);
  configure(parser, mode);
  Pieces pieces(input);
  std::string log;
  std::string streamed;
  std::size_t offset = 0;
  bool finished = false;
  while (true) {
    const State before = parser.state();
    if (before == State::error) {
      require(documented(parser.error().status) && !parser.error().message.empty());
      require(parser.feed(input.substr(offset)) == 0 && parser.state() == State::error);
      log += "error " + std::to_string(parser.error().status) + "\n";
      break;
    }
    if (before == State::message_complete) {
      require(parser.feed(input.substr(offset)) == 0 && parser.state() == State::message_complete);
      streamed += parser.take_body_chunk();
      const auto response = parser.take_response();
      require(response.status >= 100 && response.status <= 599);
      require(response.headers.size() <= limits.max_headers);
      if (mode.streaming) require(response.body.empty());
      if (!mode.streaming) require(response.body.size() <= limits.max_body_bytes && streamed.empty());
      if (mode.head || response.status / 100 == 1 || response.status == 204 || response.status == 304) {
        require(response.body.empty() && streamed.empty());
      }
      log += std::to_string(response.status) + " " + std::to_string(response.body.size()) + " " +
             std::to_string(streamed.size()) + (response.keep_alive ? " keep\n" : " close\n");
      streamed.clear();
      if (finished) break;
      parser.reset();
      configure(parser, mode);
      continue;
    }
    if (before != State::headers_complete && offset == input.size()) {
      if (!mode.closes || finished) {
        log += "pending\n";
        break;
      }
      parser.finish();
      finished = true;
      require(parser.state() == State::message_complete || parser.state() == State::error);
      continue;
    }
    const std::size_t offered = split ? pieces.next(input.size() - offset) : input.size() - offset;
    const std::size_t used = parser.feed(std::span<const char>(input.data() + offset, offered));
    require(used <= offered);
    offset += used;
    if (parser.state() == State::need_more) require(used == offered);
    if (parser.state() == State::headers_complete) require(before == State::need_more);
    streamed += parser.take_body_chunk();
    if (!mode.streaming) require(streamed.empty());
  }
  return log;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Mode mode{.head = (data[0] & 1) != 0, .streaming = (data[0] & 2) != 0, .closes = (data[0] & 4) != 0};
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  require(transcript(input, mode, false) == transcript(input, mode, true));
  return 0;
}
