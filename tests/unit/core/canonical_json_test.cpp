// SPDX-License-Identifier: MIT
// RFC 8785 (JCS) canonicalization. Expected outputs of the tables were produced by an independent
// implementation, Node.js v20, with this reference (JSON.stringify agrees with JCS on numbers and on
// strings without lone surrogates; Array.prototype.sort orders by UTF-16 code units, as JCS does):
//   function jcs(v) { if (v === null || typeof v !== 'object') return JSON.stringify(v);
//     if (Array.isArray(v)) return '[' + v.map(jcs).join(',') + ']';
//     return '{' + Object.keys(v).sort().map(k => JSON.stringify(k) + ':' + jcs(v[k])).join(',') + '}'; }
//   console.log(jcs(JSON.parse(input)));
#include <claudemesh/canonical_json.hpp>

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>

namespace claudemesh {
namespace {

struct Case {
  std::string_view name;
  std::string_view input;
  std::string_view expected;
};

// The error code of a failed result, or nothing on success (so a regression fails the check instead of
// reading the error of a value).
template <class T>
std::optional<Errc> error_of(const Result<T>& r) {
  if (r) return std::nullopt;
  return r.error().errc();
}

std::string canon(std::string_view input) {
  auto r = canonical_json(input);
  REQUIRE_MESSAGE(r.has_value(), r.error().describe());
  return *r;
}

TEST_CASE("RFC 8785 §3.2.2: the example object canonicalizes as the RFC shows") {
  const std::string_view input = R"({
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
})";
  CHECK(canon(input) ==
        R"({"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],)"
        R"("string":"€$\u000f\nA'B\"\\\\\"/"})");
}

TEST_CASE("RFC 8785 §3.2.3: members are sorted by UTF-16 code units") {
  const std::string_view input = R"({
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
})";
  // "\302\200" is U+0080 and "\357\254\263" is U+FB33, written literally as UTF-8.
  CHECK(canon(input) ==
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\302\200\":\"Control\","
        "\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\","
        "\"😀\":\"Emoji: Grinning Face\",\"\357\254\263\":\"Hebrew Letter Dalet With Dagesh\"}");
}

TEST_CASE("RFC 8785 Appendix B: IEEE-754 doubles are written as ECMAScript writes them") {
  // Input: the double (IEEE-754 bits in the comment) written with 17 significant digits, so the
  // literal differs from the expected shortest form.
  const Case cases[] = {
      {"0000000000000000", "0.00000000000000000e+00", "0"},
      {"8000000000000000", "-0.00000000000000000e+00", "0"},
      {"0000000000000001", "4.94065645841246544e-324", "5e-324"},
      {"8000000000000001", "-4.94065645841246544e-324", "-5e-324"},
      {"7fefffffffffffff", "1.79769313486231571e+308", "1.7976931348623157e+308"},
      {"ffefffffffffffff", "-1.79769313486231571e+308", "-1.7976931348623157e+308"},
      {"4340000000000000", "9.00719925474099200e+15", "9007199254740992"},
      {"c340000000000000", "-9.00719925474099200e+15", "-9007199254740992"},
      {"4430000000000000", "2.95147905179352826e+20", "295147905179352830000"},
      {"44b52d02c7e14af5", "9.99999999999999748e+22", "9.999999999999997e+22"},
      {"44b52d02c7e14af6", "9.99999999999999916e+22", "1e+23"},
      {"44b52d02c7e14af7", "1.00000000000000008e+23", "1.0000000000000001e+23"},
      {"444b1ae4d6e2ef4e", "9.99999999999999738e+20", "999999999999999700000"},
      {"444b1ae4d6e2ef4f", "9.99999999999999869e+20", "999999999999999900000"},
      {"444b1ae4d6e2ef50", "1.00000000000000000e+21", "1e+21"},
      {"3eb0c6f7a0b5ed8c", "9.99999999999999743e-07", "9.999999999999997e-7"},
      {"3eb0c6f7a0b5ed8d", "9.99999999999999955e-07", "0.000001"},
      {"41b3de4355555553", "3.33333333333333194e+08", "333333333.3333332"},
      {"41b3de4355555554", "3.33333333333333254e+08", "333333333.33333325"},
      {"41b3de4355555555", "3.33333333333333313e+08", "333333333.3333333"},
      {"41b3de4355555556", "3.33333333333333373e+08", "333333333.3333334"},
      {"41b3de4355555557", "3.33333333333333433e+08", "333333333.33333343"},
      {"becbf647612f3696", "-3.33333333333333332e-06", "-0.0000033333333333333333"},
      {"43143ff3c1cb0959", "1.42495392378120625e+15", "1424953923781206.2"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(canon(c.input) == c.expected);
  }
}

TEST_CASE("canonical form of literals, nesting, whitespace, strings and numbers") {
  const Case cases[] = {
      {"empty object", "{}", "{}"},
      {"empty array", "[]", "[]"},
      {"literals", "[true,false,null]", "[true,false,null]"},
      {"top-level true", "true", "true"},
      {"top-level null", " null ", "null"},
      {"top-level string", "\"x\"", "\"x\""},
      {"top-level number", " 1.0 ", "1"},
      {"whitespace everywhere", " \t\r\n{ \n\"b\" :\t[ 1 , 2 ] ,\r\n \"a\" : { } } \n", R"({"a":{},"b":[1,2]})"},
      {"nested objects and arrays keep array order", R"({"z":{"y":[{"b":1,"a":2},[]],"x":null},"a":[[[]]]})",
       R"({"a":[[[]]],"z":{"x":null,"y":[{"a":2,"b":1},[]]}})"},
      {"numeric-looking names sort as strings", R"({"10":1,"9":2,"a":3,"A":4,"":5})",
       R"({"":5,"10":1,"9":2,"A":4,"a":3})"},
      // Output: the short escapes, \u00xx for other controls, and '/', DEL (\177), U+2028, U+2029 and
      // U+0080 literally as UTF-8.
      {"short escapes, control escapes, literal slash/DEL/U+2028",
       R"("\u0000\u001F\b\t\n\f\r\"\\\/\u007f\u2028\u2029\u0080")",
       R"("\u0000\u001f\b\t\n\f\r\"\\/)" "\177\342\200\250\342\200\251\302\200\""},
      {"escaped and literal non-ASCII are the same", R"(["€ö😀","\u20AC\u00F6\ud83d\ude00"])",
       R"(["€ö😀","€ö😀"])"},
      // "\356\200\200" is U+E000: UTF-8 bytes EE.. sort after F0.., UTF-16 units E000 after D83D.
      {"U+1F600 sorts before U+E000 (UTF-16 order, not UTF-8)", "{\"\356\200\200\":1,\"😀\":2}",
       "{\"😀\":2,\"\356\200\200\":1}"},
      {"same string in member names and values", R"({"\u00e9":"\u00e9","e":"e"})", R"({"e":"e","é":"é"})"},
      {"1.0", "1.0", "1"},
      {"1e21", "1e21", "1e+21"},
      {"1e20", "1e20", "100000000000000000000"},
      {"1e-7", "1e-7", "1e-7"},
      {"0.000001", "0.000001", "0.000001"},
      {"-0", "-0", "0"},
      {"-0.0", "-0.0", "0"},
      {"0", "0", "0"},
      {"0.1", "0.1", "0.1"},
      {"100", "100", "100"},
      {"1E2", "1E2", "100"},
      {"123e-20", "123e-20", "1.23e-18"},
      {"4.50", "4.50", "4.5"},
      {"2e-3", "2e-3", "0.002"},
      {"1E30", "1E30", "1e+30"},
      {"-1.5e300", "-1.5e300", "-1.5e+300"},
      {"123456789012345678901", "123456789012345678901", "123456789012345680000"},
      {"9007199254740993", "9007199254740993", "9007199254740992"},
      {"uint64 max", "18446744073709551615", "18446744073709552000"},
      {"int64 min", "-9223372036854775808", "-9223372036854776000"},
      {"underflow", "1e-400", "0"},
      {"negative underflow", "-1e-400", "0"},
      {"int64 max", "9223372036854775807", "9223372036854776000"},
      {"0.1 + 0.2 literal", "0.30000000000000004", "0.30000000000000004"},
      {"max safe integer", "9007199254740991", "9007199254740991"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(canon(c.input) == c.expected);
  }
}

TEST_CASE("canonicalization is idempotent and ignores member order") {
  const std::string a = canon(R"({"b":{"y":[1,{"q":0.5,"p":-2e-9}],"x":"\u00e9"},"a":[true,null]})");
  CHECK(canon(a) == a);
  CHECK(canon(R"({ "a" : [true, null], "b" : {"x":"é", "y":[1.0, {"p":-0.000000002, "q":5e-1}]}})") == a);
}

TEST_CASE("member values are kept whole while names are sorted") {
  CHECK(canon(R"({"b":[3,2,1],"a":{"d":1,"c":2}})") == R"({"a":{"c":2,"d":1},"b":[3,2,1]})");
  // The same name in different objects is not a duplicate.
  CHECK(canon(R"([{"x":1},{"x":1},{"x":{"x":1}}])") == R"([{"x":1},{"x":1},{"x":{"x":1}}])");
}

TEST_CASE("nesting up to max_depth is accepted, one level more is malformed") {
  const auto nested = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(canonical_json(nested(canonical_json_max_depth)).has_value());
  auto too_deep = canonical_json(nested(canonical_json_max_depth + 1));
  REQUIRE_FALSE(too_deep.has_value());
  CHECK(too_deep.error() == Errc::malformed);

  CHECK(canonical_json(R"({"a":{"b":1}})", 2).has_value());
  CHECK(error_of(canonical_json(R"({"a":{"b":{}}})", 2)) == Errc::malformed);
  CHECK(error_of(canonical_json(R"([{"a":[]}])", 2)) == Errc::malformed);
  CHECK(canonical_json("7", 0).value() == "7");
  CHECK(error_of(canonical_json("[]", 0)) == Errc::malformed);
  CHECK(error_of(canonical_json("{}", 0)) == Errc::malformed);
}

TEST_CASE("hostile depth bombs are rejected without exhausting the stack") {
  const std::size_t n = 100000;
  CHECK(error_of(canonical_json(std::string(n, '['))) == Errc::malformed);
  CHECK(error_of(canonical_json(std::string(n, '[') + std::string(n, ']'))) == Errc::malformed);
  std::string objects;
  for (std::size_t i = 0; i < n; ++i) objects += R"({"a":)";
  CHECK(error_of(canonical_json(objects)) == Errc::malformed);
  // Neither nlohmann's parser nor our handler recurses, so a caller's own large limit is safe too.
  const std::size_t deep = 10000;
  CHECK(canonical_json(std::string(deep, '[') + std::string(deep, ']'), deep).has_value());
}

TEST_CASE("duplicate member names are rejected") {
  const Case cases[] = {
      {"adjacent", R"({"a":1,"a":2})", ""},
      {"same value", R"({"a":1,"a":1})", ""},
      {"not adjacent in the input", R"({"b":1,"a":2,"b":3})", ""},
      {"nested object", R"({"a":1,"b":{"c":1,"c":[]}})", ""},
      {"inside an array", R"([1,{"k":null,"k":null}])", ""},
      {"equal after unescaping", R"({"a":1,"\u0061":2})", ""},
      {"escaped surrogate pair equals literal UTF-8", "{\"😀\":1,\"\\ud83d\\ude00\":2}", ""},
      {"empty names", R"({"":1,"":2})", ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    auto r = canonical_json(c.input);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == Errc::duplicate_key);
  }
  auto named = canonical_json(R"({"dup":1,"dup":2})");
  REQUIRE_FALSE(named.has_value());
  CHECK(named.error().message.find(R"("dup")") != std::string::npos);  // the message names the member
  const std::string long_name(100, 'n');
  auto long_dup = canonical_json("{\"" + long_name + "\":1,\"" + long_name + "\":2}");
  REQUIRE_FALSE(long_dup.has_value());
  CHECK(long_dup.error() == Errc::duplicate_key);
  CHECK(long_dup.error().message.find(long_name) == std::string::npos);
}

TEST_CASE("malformed and hostile inputs are rejected as malformed") {
  using namespace std::string_view_literals;
  const Case cases[] = {
      {"empty", ""sv, ""},
      {"only whitespace", " \t\r\n"sv, ""},
      {"truncated object", "{"sv, ""},
      {"truncated after colon", R"({"a":)"sv, ""},
      {"truncated before close", R"({"a":1)"sv, ""},
      {"truncated array", "[1,2"sv, ""},
      {"unterminated string", R"("abc)"sv, ""},
      {"truncated literal", "tru"sv, ""},
      {"trailing garbage", R"({"a":1}x)"sv, ""},
      {"two documents", "{} {}"sv, ""},
      {"trailing comma in array", "[1,]"sv, ""},
      {"trailing comma in object", R"({"a":1,})"sv, ""},
      {"missing colon", R"({"a" 1})"sv, ""},
      {"single quotes", "{'a':1}"sv, ""},
      {"unquoted name", "{a:1}"sv, ""},
      {"non-string name", "{1:1}"sv, ""},
      {"NaN", "NaN"sv, ""},
      {"NaN in array", "[NaN]"sv, ""},
      {"Infinity", "Infinity"sv, ""},
      {"-Infinity", "-Infinity"sv, ""},
      {"leading zero", "01"sv, ""},
      {"bare decimal point", "1."sv, ""},
      {"leading decimal point", ".5"sv, ""},
      {"plus sign", "+1"sv, ""},
      {"hex number", "0x10"sv, ""},
      {"empty exponent", "1e"sv, ""},
      {"lone minus", "-"sv, ""},
      {"number too large for a double", "1e400"sv, ""},
      {"negative number too large", "-1e400"sv, ""},
      {"too large inside an array", "[1,1e309]"sv, ""},
      {"lone high surrogate escape", R"("\ud800")"sv, ""},
      {"lone low surrogate escape", R"("\udc00")"sv, ""},
      {"high surrogate followed by a non-surrogate", R"("\ud800\u0041")"sv, ""},
      {"surrogates in the wrong order", R"("\ude00\ud83d")"sv, ""},
      {"lone surrogate in a name", R"({"\ud800":1})"sv, ""},
      {"unknown escape", R"("\x41")"sv, ""},
      {"short \\u escape", R"("\u12")"sv, ""},
      {"non-hex \\u escape", R"("\u12G4")"sv, ""},
      {"raw control character in a string", "\"a\001b\""sv, ""},
      {"raw newline in a string", "\"a\nb\""sv, ""},
      {"raw NUL in a string", "\"a\0b\""sv, ""},
      {"NUL after the value", "{}\0"sv, ""},
      {"NUL hiding trailing garbage", "{}\0garbage"sv, ""},
      {"NUL inside an array", "[1,\0 2]"sv, ""},
      {"NUL alone", "\0"sv, ""},
      {"invalid UTF-8 byte", "\"\xff\""sv, ""},
      {"overlong UTF-8", "\"\xc0\xaf\""sv, ""},
      {"UTF-8-encoded surrogate", "\"\xed\xa0\x80\""sv, ""},
      {"code point above U+10FFFF", "\"\xf4\x90\x80\x80\""sv, ""},
      {"truncated UTF-8 sequence", "\"\xe2\x82\""sv, ""},
      {"stray continuation byte", "\"\x80\""sv, ""},
      {"five-byte sequence", "\"\xf8\x88\x80\x80\x80\""sv, ""},
      {"invalid UTF-8 in a name", "{\"\xff\":1}"sv, ""},
      {"non-ASCII outside a string", "\xc3\xa9"sv, ""},
      {"byte order mark", "\xEF\xBB\xBF{}"sv, ""},
      {"partial byte order mark", "\xEF\xBB{}"sv, ""},
      {"line comment", "{} // c"sv, ""},
      {"block comment", "/* c */ {}"sv, ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    auto r = canonical_json(c.input);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == Errc::malformed);
    CHECK_FALSE(r.error().message.empty());
  }
  CHECK(error_of(canonical_json("1" + std::string(400, '0'))) == Errc::malformed);   // integer literal > DBL_MAX
  CHECK(error_of(canonical_json("-1" + std::string(400, '0'))) == Errc::malformed);
}

TEST_CASE("a parse error message says where the input went wrong") {
  auto r = canonical_json(R"({"a":tru})");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.starts_with("invalid JSON at byte "));
  CHECK(r.error().message.find("json.exception") == std::string::npos);
}

}  // namespace
}  // namespace claudemesh
