// SPDX-License-Identifier: MIT
#include "transport/ws/utf8.hpp"

#include <claudemesh/bytes.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace claudemesh;
using claudemesh::transport::ws::is_valid_utf8;
using claudemesh::transport::ws::Utf8Validator;
using claudemesh::transport::ws::valid_utf8_prefix;

namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

struct Utf8Case {
  const char* name;
  std::string input;
  bool valid;
};

// Markus Kuhn's UTF-8 decoder stress test and the Autobahn testsuite §6 cases, plus the edges of every
// range in RFC 3629 §4.
std::vector<Utf8Case> utf8_cases() {
  return {
      {"empty", "", true},
      {"ASCII", "Hello, world", true},
      {"kosme (Greek)", bytes({0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5}), true},
      {"U+0000", std::string(1, '\0'), true},
      {"U+007F", bytes({0x7F}), true},
      {"U+0080", bytes({0xC2, 0x80}), true},
      {"U+07FF", bytes({0xDF, 0xBF}), true},
      {"U+0800", bytes({0xE0, 0xA0, 0x80}), true},
      {"U+D7FF (last before surrogates)", bytes({0xED, 0x9F, 0xBF}), true},
      {"U+E000 (first after surrogates)", bytes({0xEE, 0x80, 0x80}), true},
      {"U+FFFD", bytes({0xEF, 0xBF, 0xBD}), true},
      {"U+FFFF (noncharacter, still valid)", bytes({0xEF, 0xBF, 0xBF}), true},
      {"U+10000", bytes({0xF0, 0x90, 0x80, 0x80}), true},
      {"U+10FFFF", bytes({0xF4, 0x8F, 0xBF, 0xBF}), true},
      {"emoji after ASCII", "abc" + bytes({0xF0, 0x9F, 0x98, 0x80}) + "def", true},
      {"overlong '/' C0 AF", bytes({0xC0, 0xAF}), false},
      {"overlong '/' E0 80 AF", bytes({0xE0, 0x80, 0xAF}), false},
      {"overlong '/' F0 80 80 AF", bytes({0xF0, 0x80, 0x80, 0xAF}), false},
      {"overlong U+007F C1 BF", bytes({0xC1, 0xBF}), false},
      {"overlong U+07FF E0 9F BF", bytes({0xE0, 0x9F, 0xBF}), false},
      {"overlong U+FFFF F0 8F BF BF", bytes({0xF0, 0x8F, 0xBF, 0xBF}), false},
      {"surrogate U+D800 ED A0 80", bytes({0xED, 0xA0, 0x80}), false},
      {"surrogate U+DFFF ED BF BF", bytes({0xED, 0xBF, 0xBF}), false},
      {"surrogate pair ED A0 80 ED B0 80", bytes({0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80}), false},
      {"U+110000 F4 90 80 80", bytes({0xF4, 0x90, 0x80, 0x80}), false},
      {"lead byte F5", bytes({0xF5, 0x80, 0x80, 0x80}), false},
      {"5-byte sequence F8 88 80 80 80", bytes({0xF8, 0x88, 0x80, 0x80, 0x80}), false},
      {"6-byte sequence FC 84 80 80 80 80", bytes({0xFC, 0x84, 0x80, 0x80, 0x80, 0x80}), false},
      {"FE", bytes({0xFE}), false},
      {"FF", bytes({0xFF}), false},
      {"stray continuation 80", bytes({0x80}), false},
      {"stray continuation BF after ASCII", "a" + bytes({0xBF}), false},
      {"lead followed by ASCII", bytes({0xC2, 0x41}), false},
      {"3-byte lead cut by ASCII", bytes({0xE2, 0x82, 0x41}), false},
      {"truncated 2-byte at end", "ok" + bytes({0xC2}), false},
      {"truncated 3-byte at end", "ok" + bytes({0xE2, 0x82}), false},
      {"truncated 4-byte at end", "ok" + bytes({0xF0, 0x9F, 0x98}), false},
      {"invalid byte after 8 ASCII bytes", "abcdefgh" + bytes({0xFF}), false},
  };
}

}  // namespace

TEST_SUITE("utf8") {
  TEST_CASE("the validator accepts exactly the RFC 3629 encodings (Kuhn and Autobahn cases)") {
    for (const auto& c : utf8_cases()) {
      CAPTURE(c.name);
      CHECK(is_valid_utf8(c.input) == c.valid);
    }
  }

  TEST_CASE("feeding one byte at a time gives the same verdict as feeding everything at once") {
    for (const auto& c : utf8_cases()) {
      CAPTURE(c.name);
      Utf8Validator validator;
      bool ok = true;
      for (char ch : c.input) ok = validator.feed(as_bytes(std::string_view(&ch, 1))) && ok;
      CHECK((ok && validator.complete()) == c.valid);
    }
  }

  TEST_CASE("invalid input fails at the first byte that cannot continue, even mid-sequence") {
    const std::pair<std::string, std::string> cases[] = {
        {"ok", bytes({0xF5})},               // lead byte that never starts a sequence
        {bytes({0xED}), bytes({0xA0})},      // second byte of a surrogate
        {bytes({0xE0}), bytes({0x80})},      // second byte of an overlong
        {bytes({0xF4}), bytes({0x90})},      // second byte above U+10FFFF
        {bytes({0xF0, 0x9F}), bytes({0x41})},  // ASCII where a continuation was due
    };
    for (const auto& [prefix, bad] : cases) {
      Utf8Validator validator;
      CHECK(validator.feed(as_bytes(prefix)));
      CHECK_FALSE(validator.feed(as_bytes(bad)));
      CHECK(validator.failed());
      CHECK_FALSE(validator.complete());
    }
  }

  TEST_CASE("a code point split across feeds is valid once complete, and pending until then") {
    const std::string euro = bytes({0xE2, 0x82, 0xAC});
    Utf8Validator validator;
    CHECK(validator.feed(as_bytes(euro.substr(0, 1))));
    CHECK_FALSE(validator.complete());
    CHECK(validator.feed(as_bytes(euro.substr(1, 1))));
    CHECK_FALSE(validator.complete());
    CHECK(validator.feed(as_bytes(euro.substr(2))));
    CHECK(validator.complete());
  }

  TEST_CASE("a failed validator stays failed until reset") {
    Utf8Validator validator;
    CHECK_FALSE(validator.feed(as_bytes(bytes({0xFF}))));
    CHECK_FALSE(validator.feed(as_bytes("plain ASCII")));
    CHECK_FALSE(validator.complete());
    validator.reset();
    CHECK(validator.feed(as_bytes("plain ASCII")));
    CHECK(validator.complete());
  }

  TEST_CASE("long ASCII runs with multi-byte characters at every alignment validate") {
    const std::string snowman = bytes({0xE2, 0x98, 0x83});
    for (std::size_t at = 0; at < 20; ++at) {
      std::string text(40, 'x');
      text.insert(at, snowman);
      CHECK(is_valid_utf8(text));
      text.insert(at + 1, "y");  // break the sequence
      CHECK_FALSE(is_valid_utf8(text));
    }
  }

  TEST_CASE("the valid prefix ends on a code point boundary within the byte budget") {
    const std::string text = "ab" + bytes({0xE2, 0x82, 0xAC}) + "c";  // "ab€c"
    CHECK(valid_utf8_prefix(text, 100) == text.size());
    CHECK(valid_utf8_prefix(text, 6) == 6);
    CHECK(valid_utf8_prefix(text, 5) == 5);
    CHECK(valid_utf8_prefix(text, 4) == 2);  // would split the euro sign
    CHECK(valid_utf8_prefix(text, 3) == 2);
    CHECK(valid_utf8_prefix(text, 0) == 0);
    CHECK(valid_utf8_prefix("ok" + bytes({0xFF}) + "more", 100) == 2);  // stops at invalid input
  }
}
