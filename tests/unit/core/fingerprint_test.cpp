// SPDX-License-Identifier: MIT
// Request fingerprints. The known answers were computed independently with /usr/bin/python3:
//
//   import hashlib
//   def fingerprint(version, kind, ref, reply, priority, canonical_meta, body):
//       h = hashlib.sha256()
//       for field in (version, kind, ref, reply, priority, canonical_meta):
//           h.update(field.encode() + b"\0")
//       h.update(hashlib.sha256(body).digest())  # raw 32 bytes, not hex
//       return h.hexdigest()
//   PK = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
//   fingerprint("1", "dm", PK, "", "next", "", b"hello")
//   fingerprint("1", "topic", "#deploys", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "now", '{"a":"x","b":[1,2]}',
//               "ship it \U0001F680".encode())
//   fingerprint("1", "group", "@reviewers", "", "low", "{}", b"")
//   fingerprint("2", "broadcast", "*", "", "next", '{"n":1e+21,"s":"\u00e9"}', bytes(range(256)))
//
// The canonical meta strings above are what canonical_json() makes of the meta_json in each test.
#include <claudemesh/bytes.hpp>
#include <claudemesh/fingerprint.hpp>

#include <doctest/doctest.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace claudemesh {
namespace {

constexpr std::string_view kPeer = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

// The error code of a failed result, or nothing on success (so a regression fails the check instead of
// reading the error of a value).
template <class T>
std::optional<Errc> error_of(const Result<T>& r) {
  if (r) return std::nullopt;
  return r.error().errc();
}

std::string fingerprint_of(const FingerprintInput& in) {
  auto fp = request_fingerprint(in);
  REQUIRE_MESSAGE(fp.has_value(), fp.error().describe());
  return *fp;
}

FingerprintInput base_input() {
  static const std::string body = "hello";
  return {.destination_kind = "dm", .destination_ref = kPeer, .priority = "next", .body = as_bytes(body)};
}

TEST_CASE("sha256_hex matches the FIPS 180-2 examples") {
  CHECK(sha256_hex({}) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex(as_bytes("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("request fingerprints match independently computed vectors") {
  CHECK(fingerprint_of(base_input()) == "a21d38e3cc548250ae6605989f26cedcf969a9fdc3b62901b6e453b127618842");

  const std::string rocket = "ship it \xF0\x9F\x9A\x80";
  CHECK(fingerprint_of({.destination_kind = "topic",
                        .destination_ref = "#deploys",
                        .reply_to_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                        .priority = "now",
                        .meta_json = R"({ "b": [1.0, 2], "a": "x" })",
                        .body = as_bytes(rocket)}) ==
        "e7a2ed108aca0b535da6f3875d9be58d451c319cae2be653d23889451838b7ef");

  CHECK(fingerprint_of({.destination_kind = "group", .destination_ref = "@reviewers", .priority = "low",
                        .meta_json = " { } "}) ==
        "22a1ccd320e04fa23b2a54e290c998a42da3a301cf332848b28ecf3bce12e092");

  std::array<std::uint8_t, 256> all_bytes{};
  for (std::size_t i = 0; i < all_bytes.size(); ++i) all_bytes[i] = static_cast<std::uint8_t>(i);
  CHECK(fingerprint_of({.envelope_version = "2",
                        .destination_kind = "broadcast",
                        .destination_ref = "*",
                        .priority = "next",
                        .meta_json = R"({ "s": "\u00e9", "n": 1E21 })",
                        .body = all_bytes}) ==
        "3d6d29b8e10b912fc46be3efdad0de34c4b59781d551ad6ffc18317db8f68ef7");
}

TEST_CASE("the body digest enters as raw bytes, not as hex as the old spec text said") {
  // hex-digest variant of the first vector, computed with the same Python but
  // h.update(hashlib.sha256(body).hexdigest().encode()).
  CHECK(fingerprint_of(base_input()) != "e987856a6b80b55ecb1d2d894c42e71e8f0eb6c149ab03b7ecbf5a44f20db2d7");
}

TEST_CASE("every field changes the fingerprint") {
  const std::string reference = fingerprint_of(base_input());
  const std::string other_body = "hellp";
  std::vector<FingerprintInput> variants(8, base_input());
  variants[0].envelope_version = "2";
  variants[1].destination_kind = "group";
  variants[2].destination_ref = "@reviewers";
  variants[3].reply_to_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
  variants[4].priority = "now";
  variants[5].meta_json = "{}";
  variants[6].body = as_bytes(other_body);
  variants[7].body = {};
  for (std::size_t i = 0; i < variants.size(); ++i) {
    CAPTURE(i);
    CHECK(fingerprint_of(variants[i]) != reference);
  }
}

TEST_CASE("meta is canonicalized: member order and whitespace do not matter, values do") {
  auto with_meta = [](std::string_view meta) {
    FingerprintInput in = base_input();
    in.meta_json = meta;
    return fingerprint_of(in);
  };
  const std::string a = with_meta(R"({"subject":"hi","tags":["x","y"],"n":1})");
  CHECK(with_meta(R"({ "n": 1.0, "tags": [ "x", "y" ], "subject": "h\u0069" })") == a);
  CHECK(with_meta(R"({"subject":"hi","tags":["y","x"],"n":1})") != a);  // array order is meaningful
  CHECK(with_meta("null") != with_meta(""));                            // absent is not JSON null
}

TEST_CASE("field boundaries are unambiguous") {
  FingerprintInput ab_c = base_input();
  ab_c.destination_kind = "ab";
  ab_c.destination_ref = "c";
  FingerprintInput a_bc = base_input();
  a_bc.destination_kind = "a";
  a_bc.destination_ref = "bc";
  CHECK(fingerprint_of(ab_c) != fingerprint_of(a_bc));

  FingerprintInput priority_in_reply = base_input();
  priority_in_reply.reply_to_id = "next";
  priority_in_reply.priority = "";
  CHECK(fingerprint_of(priority_in_reply) != fingerprint_of(base_input()));
}

TEST_CASE("a NUL byte in any string field is invalid_value") {
  using namespace std::string_view_literals;
  const auto nul = "a\0b"sv;
  for (int field = 0; field < 6; ++field) {
    CAPTURE(field);
    FingerprintInput in = base_input();
    switch (field) {
      case 0: in.envelope_version = nul; break;
      case 1: in.destination_kind = nul; break;
      case 2: in.destination_ref = nul; break;
      case 3: in.reply_to_id = nul; break;
      case 4: in.priority = nul; break;
      default: in.meta_json = "{\"a\":\"\0\"}"sv; break;
    }
    auto fp = request_fingerprint(in);
    REQUIRE_FALSE(fp.has_value());
    CHECK(fp.error() == Errc::invalid_value);
  }
  // NUL bytes in the body are fine: it is hashed, not framed.
  const std::array<std::uint8_t, 3> body{0, 0, 0};
  FingerprintInput in = base_input();
  in.body = body;
  CHECK(request_fingerprint(in).has_value());
}

TEST_CASE("meta that is not acceptable JSON passes canonical_json's error through") {
  FingerprintInput in = base_input();
  in.meta_json = R"({"a":1,"a":2})";
  CHECK(error_of(request_fingerprint(in)) == Errc::duplicate_key);
  in.meta_json = R"({"a":)";
  CHECK(error_of(request_fingerprint(in)) == Errc::malformed);
  in.meta_json = " ";
  CHECK(error_of(request_fingerprint(in)) == Errc::malformed);
}

}  // namespace
}  // namespace claudemesh
