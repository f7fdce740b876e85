// SPDX-License-Identifier: MIT
// The broker's wire helpers: what a frame or body must look like before any handler sees it, each bad shape
// answered with its own code, and the encoders that must never throw on what a client sent.
#include "broker/wire.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::broker;
using wire::Json;
using namespace std::string_literals;

namespace {

struct ParseCase {
  const char* name;
  std::string text;
};

/// Text that is not one JSON object: each must be refused as `malformed`.
std::vector<ParseCase> not_an_object() {
  return {
      {"empty", ""},
      {"whitespace only", "  \n\t"},
      {"truncated object", "{\"type\":\"hello\""},
      {"unterminated string", "{\"type\":\"hel"},
      {"missing value", "{\"type\":}"},
      {"trailing comma", "{\"type\":\"x\",}"},
      {"single quotes", "{'type':'x'}"},
      {"bare word", "hello"},
      {"comment", "/* c */ {}"},
      {"NaN literal", "{\"n\":NaN}"},
      {"two objects", "{}{}"},
      {"trailing garbage", "{} x"},
      {"invalid UTF-8 in a string", "{\"type\":\"\xff\xfe\"}"},
      {"unpaired surrogate escape", "{\"s\":\"\\ud800\"}"},
      {"array", "[]"},
      {"array of objects", "[{\"type\":\"hello\"}]"},
      {"number", "42"},
      {"string", "\"{}\""},
      {"true", "true"},
      {"null", "null"},
  };
}

Json object_with(const char* name, Json value) {
  Json object = Json::object();
  object[name] = std::move(value);
  return object;
}

/// `{"v": <text>}` parsed, so numbers keep the type nlohmann gives them from text (integer, unsigned, float).
Json object_from(const std::string& value_text) {
  auto parsed = wire::parse_object("{\"v\":" + value_text + "}");
  REQUIRE(parsed);
  return std::move(*parsed);
}

/// Runs `body` in a child process: true when it returned normally. A stack overflow (or any crash) fails the
/// check without taking the test binary down with it.
template <class Body>
bool survives_in_child(Body body) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The test framework's crash handlers would report (and print) in the child too: let a crash just be one.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE}) std::signal(sig, SIG_DFL);
    body();
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

// ---- parse_object ----

TEST_CASE("parse_object refuses anything that is not exactly one JSON object as malformed") {
  for (const auto& c : not_an_object()) {
    INFO(std::string(c.name));
    auto parsed = wire::parse_object(c.text);
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error() == Errc::malformed);
  }
}

TEST_CASE("parse_object refuses a NUL byte and whatever follows it") {
  // A JSON text has no NUL outside strings (RFC 8259 §2); what follows one must not be silently dropped.
  const std::vector<ParseCase> cases = {
      {"trailing NUL", "{}\0"s},
      {"NUL then a second object", "{\"type\":\"ping\"}\0{\"type\":\"send\"}"s},
      {"NUL inside the object", "{\"type\":\0\"x\"}"s},
  };
  for (const auto& c : cases) {
    INFO(std::string(c.name));
    auto parsed = wire::parse_object(c.text);
    CHECK_FALSE(parsed);
    if (!parsed) CHECK(parsed.error() == Errc::malformed);
  }
}

TEST_CASE("parse_object accepts an object, with surrounding whitespace and nested values") {
  auto empty = wire::parse_object("{}");
  REQUIRE(empty);
  CHECK(empty->is_object());
  CHECK(empty->empty());

  auto frame = wire::parse_object(" \n{\"type\":\"send\",\"_reqId\":7,\"meta\":{\"a\":[1,2,{\"b\":null}]}}\t ");
  REQUIRE(frame);
  CHECK((*frame)["type"] == "send");
  CHECK((*frame)["_reqId"] == 7);
  CHECK((*frame)["meta"]["a"][2]["b"].is_null());

  auto unicode = wire::parse_object("{\"name\":\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00\"}");
  REQUIRE(unicode);
  CHECK((*unicode)["name"] == "caf\xc3\xa9 \xc3\xa9 \xf0\x9f\x98\x80");
}

TEST_CASE("parse_object refuses frames nested deeper than 64 levels, before parsing them") {
  // A hostile client's largest frame could hold ~128k nested arrays; copying or serializing such a value
  // recurses once per level. Refused as malformed, so it never becomes a Json value at all.
  const std::size_t depth = 120'000;
  const std::string text = "{\"type\":\"x\",\"v\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
  auto parsed = wire::parse_object(text);
  REQUIRE_FALSE(parsed);
  CHECK(parsed.error() == Errc::malformed);
  // 64 levels (the object itself counts as one) are fine; 65 are not; brackets inside strings do not count.
  const std::string ok = "{\"v\":" + std::string(63, '[') + std::string(63, ']') + "}";
  CHECK(wire::parse_object(ok));
  const std::string deep = "{\"v\":" + std::string(64, '[') + std::string(64, ']') + "}";
  CHECK_FALSE(wire::parse_object(deep));
  const std::string quoted = "{\"v\":\"" + std::string(1000, '[') + "\\\"\"}";
  CHECK(wire::parse_object(quoted));
}

// ---- strings ----

TEST_CASE("required_string returns the value, and names what is wrong otherwise") {
  const Json frame = {{"name", "alice"}, {"empty", ""}, {"nothing", nullptr}, {"number", 5},
                      {"flag", true},    {"list", Json::array({"a"})}, {"object", Json::object()}};
  auto name = wire::required_string(frame, "name");
  REQUIRE(name);
  CHECK(*name == "alice");
  auto empty = wire::required_string(frame, "empty");
  REQUIRE(empty);
  CHECK(empty->empty());

  struct Bad {
    const char* field;
    Errc code;
  };
  for (const auto& bad : {Bad{"absent", Errc::missing_field}, Bad{"nothing", Errc::missing_field},
                          Bad{"number", Errc::wrong_type}, Bad{"flag", Errc::wrong_type},
                          Bad{"list", Errc::wrong_type}, Bad{"object", Errc::wrong_type}}) {
    INFO(std::string(bad.field));
    auto value = wire::required_string(frame, bad.field);
    REQUIRE_FALSE(value);
    CHECK(value.error() == bad.code);
    CHECK(value.error().message.find(bad.field) != std::string::npos);  // the message names the field
  }
}

TEST_CASE("a string field longer than its limit is invalid_value - exactly the limit is accepted") {
  const Json frame = {{"s", std::string(16, 'x')}, {"multibyte", "\xc3\xa9\xc3\xa9"}};  // 2 chars, 4 bytes
  CHECK(wire::required_string(frame, "s", 16));
  CHECK(wire::optional_string(frame, "s", 16));
  auto too_long = wire::required_string(frame, "s", 15);
  REQUIRE_FALSE(too_long);
  CHECK(too_long.error() == Errc::invalid_value);
  auto optional_too_long = wire::optional_string(frame, "s", 15);
  REQUIRE_FALSE(optional_too_long);
  CHECK(optional_too_long.error() == Errc::invalid_value);
  // The limit is in bytes, not characters.
  CHECK(wire::required_string(frame, "multibyte", 4));
  auto bytes_over = wire::required_string(frame, "multibyte", 3);
  REQUIRE_FALSE(bytes_over);
  CHECK(bytes_over.error() == Errc::invalid_value);
  // The default limit is 1024 bytes.
  CHECK(wire::required_string(object_with("s", std::string(1024, 'x')), "s"));
  CHECK_FALSE(wire::required_string(object_with("s", std::string(1025, 'x')), "s"));
}

TEST_CASE("optional_string: absent and null are nullopt, another type is wrong_type") {
  const Json frame = {{"name", "bob"}, {"nothing", nullptr}, {"number", 1.5}, {"list", Json::array()}};
  auto name = wire::optional_string(frame, "name");
  REQUIRE(name);
  CHECK(*name == std::optional<std::string>("bob"));
  for (const char* field : {"absent", "nothing"}) {
    INFO(std::string(field));
    auto value = wire::optional_string(frame, field);
    REQUIRE(value);
    CHECK_FALSE(value->has_value());
  }
  for (const char* field : {"number", "list"}) {
    INFO(std::string(field));
    auto value = wire::optional_string(frame, field);
    REQUIRE_FALSE(value);
    CHECK(value.error() == Errc::wrong_type);
  }
}

// ---- integers ----

TEST_CASE("optional_int accepts integers and integral doubles, refuses fractions and out-of-range values") {
  struct Case {
    const char* text;
    std::optional<std::int64_t> value;  // nullopt: must fail with `code`
    Errc code = Errc::ok;
  };
  const std::vector<Case> cases = {
      {"0", 0},
      {"5", 5},
      {"-5", -5},
      {"9223372036854775807", INT64_MAX},   // largest int64, parsed as unsigned
      {"-9223372036854775808", INT64_MIN},  // smallest int64
      {"3.0", 3},                           // what JavaScript sends for 3
      {"-0.0", 0},
      {"1e3", 1000},
      {"9e15", 9'000'000'000'000'000},
      {"1.5", std::nullopt, Errc::invalid_value},
      {"-0.5", std::nullopt, Errc::invalid_value},
      {"1e-7", std::nullopt, Errc::invalid_value},
      {"9223372036854775808", std::nullopt, Errc::invalid_value},   // 2^63
      {"18446744073709551615", std::nullopt, Errc::invalid_value},  // 2^64 - 1
      {"18446744073709551616", std::nullopt, Errc::invalid_value},  // 2^64: a double
      {"-9223372036854775809", std::nullopt, Errc::invalid_value},  // below int64: a double
      {"1e300", std::nullopt, Errc::invalid_value},
      {"\"5\"", std::nullopt, Errc::wrong_type},
      {"true", std::nullopt, Errc::wrong_type},
      {"[1]", std::nullopt, Errc::wrong_type},
      {"{\"n\":1}", std::nullopt, Errc::wrong_type},
  };
  for (const auto& c : cases) {
    INFO(std::string(c.text));
    const Json frame = object_from(c.text);
    auto optional = wire::optional_int(frame, "v");
    auto required = wire::required_int(frame, "v");
    if (c.value) {
      REQUIRE(optional);
      CHECK(*optional == c.value);
      REQUIRE(required);
      CHECK(*required == *c.value);
    } else {
      if (optional) {
        FAIL_CHECK("optional_int accepted it as " << optional->value_or(0));
      } else {
        CHECK(optional.error() == c.code);
      }
      if (required) {
        FAIL_CHECK("required_int accepted it as " << *required);
      } else {
        CHECK(required.error() == c.code);
      }
    }
  }
}

TEST_CASE("optional_int refuses NaN and infinities built in memory") {
  for (double d : {std::nan(""), std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
    CAPTURE(d);
    auto value = wire::optional_int(object_with("v", d), "v");
    REQUIRE_FALSE(value);
    CHECK(value.error() == Errc::invalid_value);
  }
}

TEST_CASE("an absent or null integer is nullopt when optional and missing_field when required") {
  const Json frame = {{"nothing", nullptr}};
  for (const char* field : {"absent", "nothing"}) {
    INFO(std::string(field));
    auto optional = wire::optional_int(frame, field);
    REQUIRE(optional);
    CHECK_FALSE(optional->has_value());
    auto required = wire::required_int(frame, field);
    REQUIRE_FALSE(required);
    CHECK(required.error() == Errc::missing_field);
  }
}

// ---- booleans ----

TEST_CASE("optional_bool accepts true and false only") {
  const Json frame = {{"yes", true},  {"no", false},  {"nothing", nullptr},
                      {"one", 1},     {"text", "true"}, {"list", Json::array({true})}};
  auto yes = wire::optional_bool(frame, "yes");
  REQUIRE(yes);
  CHECK(*yes == std::optional<bool>(true));
  auto no = wire::optional_bool(frame, "no");
  REQUIRE(no);
  CHECK(*no == std::optional<bool>(false));
  for (const char* field : {"absent", "nothing"}) {
    INFO(std::string(field));
    auto value = wire::optional_bool(frame, field);
    REQUIRE(value);
    CHECK_FALSE(value->has_value());
  }
  for (const char* field : {"one", "text", "list"}) {
    INFO(std::string(field));
    auto value = wire::optional_bool(frame, field);
    REQUIRE_FALSE(value);
    CHECK(value.error() == Errc::wrong_type);
  }
}

// ---- keys ----

TEST_CASE("is_key_hex accepts exactly 64 lowercase hex characters") {
  const std::string key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  REQUIRE(key.size() == 64);
  CHECK(wire::is_key_hex(key));
  CHECK(wire::is_key_hex(std::string(64, 'f')));

  auto with = [&](std::size_t at, char c) {
    std::string changed = key;
    changed[at] = c;
    return changed;
  };
  const std::vector<std::pair<const char*, std::string>> refused = {
      {"empty", ""},
      {"63 characters", key.substr(0, 63)},
      {"65 characters", key + "0"},
      {"128 characters", key + key},
      {"uppercase A", with(10, 'A')},
      {"uppercase F at the end", with(63, 'F')},
      {"g", with(0, 'g')},
      {"space", with(32, ' ')},
      {"NUL", with(5, '\0')},
      {"0x prefix", "0x" + key.substr(2)},
      {"non-ASCII byte", with(7, '\xe9')},
  };
  for (const auto& [name, text] : refused) {
    INFO(std::string(name));
    CHECK_FALSE(wire::is_key_hex(text));
  }
}

// ---- times ----

TEST_CASE("iso_time writes UTC with milliseconds") {
  const std::vector<std::pair<std::int64_t, const char*>> cases = {
      {0, "1970-01-01T00:00:00.000Z"},
      {1, "1970-01-01T00:00:00.001Z"},
      {999, "1970-01-01T00:00:00.999Z"},
      {1000, "1970-01-01T00:00:01.000Z"},
      {1'700'000'000'000, "2023-11-14T22:13:20.000Z"},
      {1'700'000'000'123, "2023-11-14T22:13:20.123Z"},
      {951'782'400'000, "2000-02-29T00:00:00.000Z"},  // leap day
      {1'795'419'141'123, "2026-11-23T07:32:21.123Z"},  // the header's example
      {253'402'300'799'999, "9999-12-31T23:59:59.999Z"},
  };
  for (const auto& [ms, expected] : cases) {
    CAPTURE(ms);
    CHECK(wire::iso_time(ms) == expected);
  }
}

// ---- encoders ----

TEST_CASE("error_frame carries the wire name of the code and the message") {
  auto frame = wire::parse_object(wire::error_frame({Errc::no_hello, "must send hello first"}));
  REQUIRE(frame);
  CHECK(*frame == Json{{"type", "error"}, {"code", "no_hello"}, {"message", "must send hello first"}});

  for (Errc code : {Errc::malformed, Errc::timestamp_skew, Errc::idempotency_key_reused, Errc::unavailable}) {
    auto encoded = wire::parse_object(wire::error_frame({code, "x"}));
    REQUIRE(encoded);
    CHECK((*encoded)["code"] == std::string(wire_name(code)));
  }
}

TEST_CASE("error_frame echoes the request's _reqId whatever its JSON type, and adds none otherwise") {
  // Echoed: strings and numbers, as docs/protocol.md §8 allows for `_reqId`.
  const std::vector<Json> ids = {"req-1", 42, -1, 1.5};
  for (const auto& id : ids) {
    CAPTURE(id.dump());
    const Json request = {{"type", "send"}, {"_reqId", id}};
    auto frame = wire::parse_object(wire::error_frame({Errc::malformed, "bad"}, &request));
    REQUIRE(frame);
    REQUIRE(frame->contains("_reqId"));
    CHECK((*frame)["_reqId"] == id);
    CHECK((*frame)["type"] == "error");  // a request cannot overwrite the frame's own fields
  }

  // Not echoed: any other JSON type (a nested value would be copied and serialized on the network thread).
  for (const Json& id : {Json(nullptr), Json(true), Json::array({1, "a"}), Json{{"k", "v"}}}) {
    const Json request = {{"type", "send"}, {"_reqId", id}};
    auto frame = wire::parse_object(wire::error_frame({Errc::malformed, "bad"}, &request));
    REQUIRE(frame);
    CHECK_FALSE(frame->contains("_reqId"));
  }

  const Json without = {{"type", "send"}};
  const Json not_an_object = Json::array({Json{{"_reqId", 1}}});
  for (const Json* request : {static_cast<const Json*>(nullptr), &without, &not_an_object}) {
    auto frame = wire::parse_object(wire::error_frame({Errc::malformed, "bad"}, request));
    REQUIRE(frame);
    CHECK_FALSE(frame->contains("_reqId"));
  }
}

TEST_CASE("a deeply nested _reqId from a client that has not said hello never reaches error_frame") {
  // The broker answers a pre-hello frame with error_frame(no_hello, &frame), echoing `_reqId`. A frame nesting
  // it ~120k deep is refused by parse_object first, and a nested (non-scalar) _reqId is never echoed.
  const std::size_t depth = 120'000;
  const std::string text = "{\"type\":\"x\",\"_reqId\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
  CHECK_FALSE(wire::parse_object(text));
  const std::string shallow = "{\"type\":\"x\",\"_reqId\":" + std::string(60, '[') + std::string(60, ']') + "}";
  auto request = wire::parse_object(shallow);
  REQUIRE(request);
  CHECK(wire::error_frame({Errc::no_hello, "must send hello first"}, &*request).find("_reqId") == std::string::npos);
}

TEST_CASE("dump replaces invalid UTF-8 instead of throwing") {
  struct Case {
    const char* name;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"lone continuation byte", "a\x80z"},
      {"0xFF", "\xff"},
      {"truncated 3-byte sequence at the end", "abc\xe2\x82"},
      {"overlong encoding of '/'", "\xc0\xaf"},
      {"UTF-16 surrogate encoded in UTF-8", "\xed\xa0\x80"},
  };
  for (const auto& c : cases) {
    INFO(std::string(c.name));
    std::string out;
    CHECK_NOTHROW(out = wire::dump(Json{{"text", c.bytes}}));
    auto reparsed = wire::parse_object(out);  // the output is valid JSON (hence valid UTF-8)
    REQUIRE(reparsed);
    CHECK((*reparsed)["text"].get<std::string>().find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD

    Json keyed = Json::object();
    keyed[c.bytes] = 1;
    CHECK_NOTHROW(out = wire::dump(keyed));  // object keys too
    CHECK(wire::parse_object(out));

    CHECK_NOTHROW(out = wire::error_frame({Errc::malformed, "bad field " + c.bytes}));
    CHECK(wire::parse_object(out));
  }
  CHECK(wire::dump(Json{{"text", "caf\xc3\xa9"}}) == "{\"text\":\"caf\xc3\xa9\"}");  // valid UTF-8 kept as is
}
