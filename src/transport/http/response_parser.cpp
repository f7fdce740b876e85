// SPDX-License-Identifier: MIT
#include "transport/http/response_parser.hpp"

namespace claudemesh::transport::http {

ResponseParser::ResponseParser(ParserLimits limits) : core_(detail::MessageKind::response, limits) {}

// Methods are case-sensitive (RFC 9110 §9.1): "head" is not HEAD.
void ResponseParser::expect_response_to(std::string_view method) { core_.set_skip_body(method == "HEAD"); }

void ResponseParser::set_streaming(bool on) { core_.set_streaming(on); }

}  // namespace claudemesh::transport::http
