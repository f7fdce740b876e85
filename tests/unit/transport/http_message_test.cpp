// SPDX-License-Identifier: MIT
// Headers: an ordered multimap with case-insensitive lookups (RFC 9110 §5.1) and comma-list tokens (§5.6.1).
#include "transport/http/message.hpp"

#include <doctest/doctest.h>

#include <string>
#include <tuple>
#include <vector>

using namespace claudemesh::transport::http;

namespace {

Headers make(std::vector<Headers::Field> fields) {
  Headers headers;
  for (auto& [name, value] : fields) headers.add(std::move(name), std::move(value));
  return headers;
}

}  // namespace

TEST_SUITE("http message") {

TEST_CASE("iequals folds ASCII case only") {
  const std::vector<std::tuple<std::string, std::string, bool>> cases{
      {"", "", true},
      {"Content-Length", "content-length", true},
      {"UPGRADE", "upgrade", true},
      {"a", "", false},
      {"abc", "abd", false},
      {"abc", "ab", false},
      {"@[`{", "@[`{", true},
      {"@", "`", false},  // 0x40 and 0x60 differ by the case bit but are not letters
      {"[", "{", false},
      {"\xc3\x89", "\xc3\xa9", false},  // É and é: no Unicode folding
  };
  for (const auto& [a, b, equal] : cases) {
    CAPTURE(a);
    CAPTURE(b);
    CHECK(iequals(a, b) == equal);
    CHECK(iequals(b, a) == equal);
  }
}

TEST_CASE("get finds the first field by case-insensitive name - get_all finds every one in order") {
  const auto headers = make({{"Accept", "a"}, {"X-Dup", "1"}, {"x-dup", "2"}, {"Empty", ""}, {"X-DUP", "3"}});
  CHECK(headers.get("accept") == "a");
  CHECK(headers.get("X-Dup") == "1");
  CHECK(headers.get("empty") == "");
  CHECK_FALSE(headers.get("Missing").has_value());
  CHECK_FALSE(headers.get("X-Du").has_value());
  CHECK(headers.get_all("X-DUP") == std::vector<std::string_view>{"1", "2", "3"});
  CHECK(headers.get_all("Missing").empty());
  CHECK(headers.contains("EMPTY"));
  CHECK_FALSE(headers.contains("X"));
  CHECK(headers.size() == 5);
  CHECK(headers.fields().front() == Headers::Field{"Accept", "a"});  // names keep their case
}

TEST_CASE("set replaces every field of that name with one, remove deletes them all") {
  auto headers = make({{"A", "1"}, {"B", "2"}, {"a", "3"}, {"C", "4"}});
  headers.set("A", "new");
  CHECK(headers.fields() == std::vector<Headers::Field>{{"B", "2"}, {"C", "4"}, {"A", "new"}});
  headers.set("d", "x");
  CHECK(headers.get("D") == "x");
  headers.remove("b");
  headers.remove("missing");
  CHECK(headers.fields() == std::vector<Headers::Field>{{"C", "4"}, {"A", "new"}, {"d", "x"}});
  headers.remove("A");
  headers.remove("C");
  headers.remove("D");
  CHECK(headers.size() == 0);
}

TEST_CASE("has_token reads comma-separated lists across fields, ignoring case and whitespace") {
  const auto headers = make({{"Connection", "keep-alive, Upgrade"},
                             {"Accept-Encoding", " gzip ,\tdeflate\t"},
                             {"TE", "trailers"},
                             {"te", "x-a,,x-b"},
                             {"Upgrade", "websocket"}});
  const std::vector<std::tuple<std::string, std::string, bool>> cases{
      {"Connection", "upgrade", true},
      {"connection", "KEEP-ALIVE", true},
      {"Connection", "close", false},
      {"Connection", "keep", false},  // whole tokens only
      {"Connection", "alive", false},
      {"Connection", "keep-alive, Upgrade", false},
      {"Accept-Encoding", "gzip", true},
      {"Accept-Encoding", "deflate", true},
      {"TE", "trailers", true},  // first field of the name
      {"TE", "x-b", true},       // a later field of the same name
      {"TE", "x-a", true},
      {"Upgrade", "websocket", true},
      {"Upgrade", "connection", false},
      {"Missing", "x", false},
  };
  for (const auto& [name, token, expected] : cases) {
    CAPTURE(name);
    CAPTURE(token);
    CHECK(headers.has_token(name, token) == expected);
  }
}

TEST_CASE("reason_phrase gives the RFC 9110 phrase, or Unknown") {
  const std::vector<std::pair<int, std::string_view>> cases{
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {201, "Created"},
      {204, "No Content"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {404, "Not Found"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {412, "Precondition Failed"},
      {422, "Unprocessable Content"},
      {431, "Request Header Fields Too Large"},
      {501, "Not Implemented"},
      {505, "HTTP Version Not Supported"},
      {299, "Unknown"},
      {0, "Unknown"},
      {-1, "Unknown"},
      {1000, "Unknown"},
  };
  for (const auto& [status, phrase] : cases) {
    CAPTURE(status);
    CHECK(reason_phrase(status) == phrase);
  }
}

TEST_CASE("message structs default to HTTP/1.1, keep-alive, 200") {
  const HttpRequest request;
  CHECK(request.version_major == 1);
  CHECK(request.version_minor == 1);
  CHECK(request.keep_alive);
  CHECK_FALSE(request.upgrade);
  const HttpResponse response;
  CHECK(response.status == 200);
  CHECK(response.reason.empty());
  CHECK(response.keep_alive);
}

}  // TEST_SUITE
