// SPDX-License-Identifier: MIT
#include <claudemesh/bytes.hpp>

#include <doctest/doctest.h>

using namespace claudemesh;

TEST_SUITE("bytes") {
  TEST_CASE("hex round-trips and is lowercase") {
    const Bytes data{0x00, 0x7f, 0x80, 0xff, 0xab};
    CHECK(to_hex(data) == "007f80ffab");
    CHECK(*from_hex("007F80FFab") == data);
    CHECK(to_hex({}).empty());
  }

  TEST_CASE("bad hex is malformed") {
    CHECK(from_hex("abc").error() == Errc::malformed);
    CHECK(from_hex("zz").error() == Errc::malformed);
    CHECK(from_hex("0g").error() == Errc::malformed);
  }

  TEST_CASE("exact hex demands lowercase and the exact length") {
    CHECK(from_hex_exact<2>("abcd"));
    CHECK(from_hex_exact<2>("ABCD").error() == Errc::malformed);
    CHECK(from_hex_exact<2>("abc").error() == Errc::malformed);
    CHECK(from_hex_exact<2>("abcdef").error() == Errc::malformed);
    CHECK(is_lower_hex("00ff", 4));
    CHECK_FALSE(is_lower_hex("00fF", 4));
    CHECK_FALSE(is_lower_hex("00ff", 6));
  }

  TEST_CASE("base64 uses the standard alphabet with padding (RFC 4648 test vectors)") {
    const std::pair<std::string, std::string> vectors[] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"}};
    for (const auto& [plain, encoded] : vectors) {
      CHECK(to_base64(as_bytes(plain)) == encoded);
      auto back = from_base64(encoded);
      REQUIRE(back);
      CHECK(std::string(back->begin(), back->end()) == plain);
    }
    const Bytes high{0xfb, 0xff};
    CHECK(to_base64(high) == "+/8=");
    CHECK(to_base64url(high) == "-_8");
    CHECK(*from_base64url("-_8") == high);
  }

  TEST_CASE("malformed base64 is rejected") {
    for (const char* bad : {"Zg", "Zg=", "Z===", "Zm9v!", "-_8=", "Zm9v Zg==", "Zg==Zm9v", "Zh==", "Zm9=", "====",
                             "Zm=v", "\xff\xff\xff\xff"}) {
      CAPTURE(bad);
      CHECK(from_base64(bad).error() == Errc::malformed);
    }
    CHECK(from_base64url("+/8").error() == Errc::malformed);
    CHECK(from_base64url("Zg==").error() == Errc::malformed);
  }

  TEST_CASE("base64 round-trips every length from 0 to 299 bytes") {
    Bytes data;
    for (int n = 0; n < 300; ++n) {
      auto encoded = to_base64(data);
      CHECK(encoded.size() == (data.size() + 2) / 3 * 4);
      auto back = from_base64(encoded);
      REQUIRE(back);
      CHECK(*back == data);
      data.push_back(static_cast<std::uint8_t>(n * 37 + 11));
    }
  }

  TEST_CASE("constant_time_equal compares content and length") {
    const Bytes a{1, 2, 3}, b{1, 2, 3}, c{1, 2, 4}, d{1, 2};
    CHECK(constant_time_equal(a, b));
    CHECK_FALSE(constant_time_equal(a, c));
    CHECK_FALSE(constant_time_equal(a, d));
  }

  TEST_CASE("a Secret is wiped when moved from and is not copyable") {
    struct Tag;
    using S = Secret<4, Tag>;
    static_assert(!std::is_copy_constructible_v<S>);
    static_assert(!std::is_copy_assignable_v<S>);
    static_assert(!std::is_convertible_v<S, std::string>);
    const ByteArray<4> raw{9, 8, 7, 6};
    S a{raw};
    S b = std::move(a);
    CHECK(b.bytes()[0] == 9);
    CHECK(a.bytes()[0] == 0);  // NOLINT(bugprone-use-after-move): the wipe is the point
    CHECK(a.bytes()[3] == 0);
    S c = b.clone();
    CHECK(c == b);
  }
}
