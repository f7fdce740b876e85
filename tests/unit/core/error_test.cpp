// SPDX-License-Identifier: MIT
#include <claudemesh/result.hpp>

#include <doctest/doctest.h>

using namespace claudemesh;

TEST_SUITE("errors") {
  TEST_CASE("every code has a distinct wire name that maps back to it") {
    for (int i = 0; i <= 199; ++i) {
      const auto e = static_cast<Errc>(i);
      const auto name = wire_name(e);
      if (name == "internal" && e != Errc::internal) continue;  // gap in the numbering
      CHECK(errc_from_wire_name(name) == e);
    }
    CHECK(wire_name(Errc::timestamp_skew) == "timestamp_skew");
    CHECK(wire_name(Errc::decrypt_failed) == "decrypt_failed");
    CHECK_FALSE(errc_from_wire_name("no_such_code"));
  }

  TEST_CASE("codes live in the claudemesh category and compare with Errc") {
    std::error_code ec = Errc::bad_signature;
    CHECK(ec.category().name() == std::string("claudemesh"));
    CHECK(ec.message() == "signature does not verify");
    Error err(Errc::expired, "invite has expired");
    CHECK(err == Errc::expired);
    CHECK(err.errc() == Errc::expired);
    CHECK(err.describe() == "expired: invite has expired");
  }

  TEST_CASE("a foreign error code reports internal") {
    Error err(std::make_error_code(std::errc::permission_denied), "x");
    CHECK(err.errc() == Errc::internal);
  }

  TEST_CASE("fail() with context keeps the code and prefixes the message") {
    Result<int> inner = fail(Errc::malformed, "bad hex");
    Result<int> outer = fail(inner.error(), "identity: publicKey");
    CHECK(outer.error() == Errc::malformed);
    CHECK(outer.error().message == "identity: publicKey: bad hex");
  }
}
