// SPDX-License-Identifier: MIT
#include <claudemesh/envelope.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <tuple>
#include <vector>

using namespace claudemesh;
using Json = nlohmann::json;

namespace {

std::string recipient() { return std::string(64, 'a'); }
std::string sender() { return std::string(64, 'b'); }
std::string fingerprint() { return std::string(64, 'c'); }
std::string nonce() { return "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"; }  // 24 bytes
std::string ciphertext() { return "aGVsbG8gd29ybGQ="; }

// The smallest valid envelope: a DM with only the required fields.
Json minimal_dm() {
  return Json{{"v", 1},
              {"channel", "dm"},
              {"target", recipient()},
              {"body", {{"nonce", nonce()}, {"ciphertext", ciphertext()}}},
              {"meta", {{"clientMessageId", "msg-1"}}}};
}

Envelope envelope_for(ChannelKind channel, std::string target) {
  Envelope e;
  e.channel = channel;
  e.target = std::move(target);
  e.body = {nonce(), ciphertext(), 1};
  e.meta.client_message_id = "msg-" + std::string(to_string(channel));
  if (channel == ChannelKind::stream) e.meta.stream_id = "stream-1";
  if (channel == ChannelKind::rpc) e.meta.rpc_correlation_id = "call-1";
  return e;
}

Envelope every_field() {
  Envelope e = envelope_for(ChannelKind::stream, recipient());
  e.from = sender();
  e.body.body_version = 2;
  e.meta.priority = Priority::now;
  e.meta.reply_to_id = "msg-0";
  e.meta.mentions = {"alice", "@ops/eu", sender()};
  e.meta.expires_at_ms = 1735689600000;
  e.meta.timeout_ms = 30000;
  e.meta.stream_chunk_id = 7;
  e.meta.stream_terminator = true;
  e.meta.rpc_correlation_id = "call-9";
  e.meta.rpc_response = false;
  e.meta.request_fingerprint = fingerprint();
  return e;
}

struct EditCase {
  const char* name;
  std::function<void(Json&)> edit;
  Errc code;
  const char* message;  // a substring the error message must contain
};

void check_rejected(const std::string& text, Errc code, const std::string& message, const EnvelopeLimits& limits = {}) {
  const auto result = decode_envelope(text, limits);
  REQUIRE_FALSE(result.has_value());
  CHECK(wire_name(result.error().errc()) == wire_name(code));
  CHECK_MESSAGE(result.error().message.find(message) != std::string::npos, result.error().message);
}

std::string nested_unknown_field(int depth) {  // the envelope is depth 1, "x" adds depth - 1 more levels
  Json inner = 1;
  for (int i = 1; i < depth; ++i) inner = Json::array({inner});
  Json doc = minimal_dm();
  doc["x"] = inner;
  return doc.dump();
}

}  // namespace

TEST_CASE("a minimal DM decodes with the documented defaults") {
  const auto e = decode_envelope(minimal_dm().dump());
  REQUIRE(e.has_value());
  CHECK(e->version == 1);
  CHECK(e->channel == ChannelKind::dm);
  CHECK(e->target == recipient());
  CHECK_FALSE(e->from.has_value());
  CHECK(e->body.body_version == 1);
  CHECK(e->meta.priority == Priority::next);
  CHECK(e->meta.mentions.empty());
  CHECK(e->meta == EnvelopeMeta{.client_message_id = "msg-1"});
}

TEST_CASE("channel and priority names round-trip and unknown names are rejected") {
  for (auto kind : {ChannelKind::dm, ChannelKind::group, ChannelKind::topic, ChannelKind::broadcast, ChannelKind::rpc,
                    ChannelKind::stream, ChannelKind::system}) {
    CHECK(parse_channel_kind(to_string(kind)) == kind);
  }
  for (auto p : {Priority::now, Priority::next, Priority::low}) CHECK(parse_priority(to_string(p)) == p);
  CHECK(to_string(ChannelKind::broadcast) == "broadcast");
  CHECK(to_string(Priority::low) == "low");
  CHECK_FALSE(parse_channel_kind("DM").has_value());
  CHECK_FALSE(parse_channel_kind("").has_value());
  CHECK_FALSE(parse_priority("urgent").has_value());
  CHECK(to_string(static_cast<ChannelKind>(42)).empty());
  CHECK(to_string(static_cast<Priority>(42)).empty());
}

TEST_CASE("the encoding is compact JSON with camelCase members in a fixed order") {
  Envelope e = envelope_for(ChannelKind::dm, recipient());
  e.from = sender();
  e.meta.mentions = {"alice"};
  e.meta.expires_at_ms = 5;
  CHECK(encode_envelope(e) == R"({"v":1,"channel":"dm","target":")" + recipient() + R"(","from":")" + sender() +
                                   R"(","body":{"nonce":")" + nonce() + R"(","ciphertext":")" + ciphertext() +
                                   R"(","bodyVersion":1},"meta":{"clientMessageId":"msg-dm","priority":"next",)" +
                                   R"("mentions":["alice"],"expiresAt":5}})");
  CHECK(encode_envelope(envelope_for(ChannelKind::broadcast, "*")) ==
        R"({"v":1,"channel":"broadcast","target":"*","body":{"nonce":")" + nonce() + R"(","ciphertext":")" +
            ciphertext() + R"(","bodyVersion":1},"meta":{"clientMessageId":"msg-broadcast","priority":"next"}})");
  const std::string all = encode_envelope(every_field());
  for (const char* name : {"replyToId", "timeoutMs", "streamId", "streamChunkId", "streamTerminator",
                           "rpcCorrelationId", "rpcResponse", "requestFingerprint"}) {
    CHECK_MESSAGE(all.find(std::string("\"") + name + "\":") != std::string::npos, name);
  }
}

TEST_CASE("every channel round-trips through encode and decode") {
  const std::vector<Envelope> envelopes{
      envelope_for(ChannelKind::dm, recipient()),        envelope_for(ChannelKind::group, "@ops/eu"),
      envelope_for(ChannelKind::topic, "#deploys"),     envelope_for(ChannelKind::broadcast, "*"),
      envelope_for(ChannelKind::rpc, recipient()),       envelope_for(ChannelKind::stream, recipient()),
      envelope_for(ChannelKind::system, recipient()),    envelope_for(ChannelKind::system, "*"),
      envelope_for(ChannelKind::system, "@ops"),        envelope_for(ChannelKind::system, "#deploys"),
  };
  for (const auto& e : envelopes) {
    CAPTURE(e.target);
    REQUIRE(validate_envelope(e).has_value());
    const auto decoded = decode_envelope(encode_envelope(e));
    REQUIRE(decoded.has_value());
    CHECK(*decoded == e);
  }
}

TEST_CASE("every optional field round-trips, alone and all together") {
  const Envelope full = every_field();
  std::vector<std::function<void(Envelope&)>> single{
      [&](Envelope& e) { e.from = full.from; },
      [&](Envelope& e) { e.body.body_version = full.body.body_version; },
      [&](Envelope& e) { e.meta.priority = Priority::low; },
      [&](Envelope& e) { e.meta.reply_to_id = full.meta.reply_to_id; },
      [&](Envelope& e) { e.meta.mentions = full.meta.mentions; },
      [&](Envelope& e) { e.meta.expires_at_ms = full.meta.expires_at_ms; },
      [&](Envelope& e) { e.meta.timeout_ms = full.meta.timeout_ms; },
      [&](Envelope& e) { e.meta.stream_id = full.meta.stream_id; },
      [&](Envelope& e) { e.meta.stream_chunk_id = full.meta.stream_chunk_id; },
      [&](Envelope& e) { e.meta.stream_terminator = full.meta.stream_terminator; },
      [&](Envelope& e) { e.meta.rpc_correlation_id = full.meta.rpc_correlation_id; },
      [&](Envelope& e) { e.meta.rpc_response = true; },
      [&](Envelope& e) { e.meta.request_fingerprint = full.meta.request_fingerprint; },
      [&](Envelope& e) { e = full; },
  };
  for (std::size_t i = 0; i < single.size(); ++i) {
    CAPTURE(i);
    Envelope e = envelope_for(ChannelKind::dm, recipient());
    single[i](e);
    const auto decoded = decode_envelope(encode_envelope(e));
    REQUIRE_MESSAGE(decoded.has_value(), decoded.error().describe());
    CHECK(*decoded == e);
  }
}

TEST_CASE("an envelope produced by encode_envelope re-encodes byte for byte") {
  for (const Envelope& e : {every_field(), envelope_for(ChannelKind::group, "@a/b"),
                            envelope_for(ChannelKind::topic, "#t.x-1")}) {
    const std::string first = encode_envelope(e);
    const auto decoded = decode_envelope(first);
    REQUIRE(decoded.has_value());
    CHECK(encode_envelope(*decoded) == first);
  }
}

TEST_CASE("decoding accepts what the rules allow") {
  const std::vector<std::pair<const char*, std::function<void(Json&)>>> cases{
      {"unknown members at every level are ignored",
       [](Json& j) {
         j["future"] = {{"a", 1}};
         j["body"]["x"] = 1;
         j["meta"]["y"] = "z";
       }},
      {"the same name in different objects is not a duplicate", [](Json& j) { j["meta"]["v"] = 1; }},
      {"empty nonce and ciphertext (zero bytes) are valid base64",
       [](Json& j) { j["body"] = {{"nonce", ""}, {"ciphertext", ""}}; }},
      {"exactly 16 mentions", [](Json& j) { j["meta"]["mentions"] = std::vector<std::string>(16, "bob"); }},
      {"an id of exactly 128 characters", [](Json& j) { j["meta"]["clientMessageId"] = std::string(128, '~'); }},
      {"zero chunk id and expiry", [](Json& j) {
         j["meta"]["streamChunkId"] = 0;
         j["meta"]["expiresAt"] = 0;
       }},
      {"a group mention of exactly 64 bytes", [](Json& j) { j["meta"]["mentions"] = {"@" + std::string(63, 'g')}; }},
  };
  for (const auto& [name, edit] : cases) {
    CAPTURE(name);
    Json doc = minimal_dm();
    edit(doc);
    const auto result = decode_envelope(doc.dump());
    CHECK_MESSAGE(result.has_value(), (result.has_value() ? std::string() : result.error().describe()));
  }
  CHECK(decode_envelope(nested_unknown_field(16)).has_value());
}

TEST_CASE("decoding rejects malformed, oversized and hostile text") {
  const std::string valid = minimal_dm().dump();
  const std::vector<std::tuple<const char*, std::string, Errc, const char*>> cases{
      {"empty input", "", Errc::malformed, "not valid JSON"},
      {"not JSON", "hello", Errc::malformed, "not valid JSON"},
      {"truncated", valid.substr(0, valid.size() - 1), Errc::malformed, "not valid JSON"},
      {"trailing garbage", valid + "x", Errc::malformed, "not valid JSON"},
      {"an array", "[" + valid + "]", Errc::malformed, "must be a JSON object"},
      {"a string", "\"envelope\"", Errc::malformed, "must be a JSON object"},
      {"invalid UTF-8 in a string", R"({"v":1,"x":")" + std::string("\xc3\x28") + R"("})", Errc::malformed,
       "not valid UTF-8"},
      {"an overlong UTF-8 encoding", R"({"x":")" + std::string("\xc0\xaf") + R"("})", Errc::malformed,
       "not valid UTF-8"},
      {"a number too large for a double", R"({"v":1e999})", Errc::malformed, "not valid JSON"},
      {"nesting one level too deep", nested_unknown_field(17), Errc::malformed, "nested deeper than 16"},
      {"duplicate top-level member", R"({"v":1,"v":1})", Errc::duplicate_key, "member v appears more than once"},
      {"duplicate member in meta", R"({"meta":{"priority":"now","priority":"low"}})", Errc::duplicate_key,
       "member meta.priority"},
      {"duplicate member in an unknown nested object", R"({"x":[{"a":1,"a":1}]})", Errc::duplicate_key,
       "member x[].a"},
  };
  for (const auto& [name, text, code, message] : cases) {
    CAPTURE(name);
    check_rejected(text, code, message);
  }
}

TEST_CASE("the size limit is checked before parsing") {
  const std::string valid = minimal_dm().dump();
  const EnvelopeLimits exact{.max_encoded_bytes = valid.size()};
  CHECK(decode_envelope(valid, exact).has_value());
  const EnvelopeLimits small{.max_encoded_bytes = valid.size() - 1};
  check_rejected(valid, Errc::payload_too_large, "bytes; the limit is", small);
  check_rejected(std::string(70000, '['), Errc::payload_too_large, "the limit is 65536");
}

TEST_CASE("decoding names the field that is missing, mistyped or invalid") {
  const std::string long_mention = "@" + std::string(64, 'g');
  const std::vector<EditCase> cases{
      // missing_field
      {"v", [](Json& j) { j.erase("v"); }, Errc::missing_field, "v is missing"},
      {"channel", [](Json& j) { j.erase("channel"); }, Errc::missing_field, "channel is missing"},
      {"target", [](Json& j) { j.erase("target"); }, Errc::missing_field, "target is missing"},
      {"body", [](Json& j) { j.erase("body"); }, Errc::missing_field, "body is missing"},
      {"body.nonce", [](Json& j) { j["body"].erase("nonce"); }, Errc::missing_field, "body.nonce is missing"},
      {"body.ciphertext", [](Json& j) { j["body"].erase("ciphertext"); }, Errc::missing_field,
       "body.ciphertext is missing"},
      {"meta", [](Json& j) { j.erase("meta"); }, Errc::missing_field, "meta is missing"},
      {"meta.clientMessageId", [](Json& j) { j["meta"].erase("clientMessageId"); }, Errc::missing_field,
       "meta.clientMessageId is missing"},
      // wrong_type
      {"v as string", [](Json& j) { j["v"] = "1"; }, Errc::wrong_type, "v must be an integer"},
      {"channel as number", [](Json& j) { j["channel"] = 1; }, Errc::wrong_type, "channel must be a string"},
      {"target null", [](Json& j) { j["target"] = nullptr; }, Errc::wrong_type, "target must be a string"},
      {"from as number", [](Json& j) { j["from"] = 5; }, Errc::wrong_type, "from must be a string"},
      {"body as string", [](Json& j) { j["body"] = "x"; }, Errc::wrong_type, "body must be an object"},
      {"body.nonce", [](Json& j) { j["body"]["nonce"] = 1; }, Errc::wrong_type, "body.nonce must be a string"},
      {"body.ciphertext", [](Json& j) { j["body"]["ciphertext"] = Json::array(); }, Errc::wrong_type,
       "body.ciphertext must be a string"},
      {"body.bodyVersion", [](Json& j) { j["body"]["bodyVersion"] = "1"; }, Errc::wrong_type,
       "body.bodyVersion must be an integer"},
      {"meta as array", [](Json& j) { j["meta"] = Json::array(); }, Errc::wrong_type, "meta must be an object"},
      {"clientMessageId", [](Json& j) { j["meta"]["clientMessageId"] = 7; }, Errc::wrong_type,
       "meta.clientMessageId must be a string"},
      {"priority", [](Json& j) { j["meta"]["priority"] = 1; }, Errc::wrong_type, "meta.priority must be a string"},
      {"replyToId null", [](Json& j) { j["meta"]["replyToId"] = nullptr; }, Errc::wrong_type, "meta.replyToId"},
      {"mentions as string", [](Json& j) { j["meta"]["mentions"] = "alice"; }, Errc::wrong_type,
       "meta.mentions must be an array"},
      {"mention as number", [](Json& j) { j["meta"]["mentions"] = {"a", 2}; }, Errc::wrong_type,
       "meta.mentions[1] must be a string"},
      {"expiresAt", [](Json& j) { j["meta"]["expiresAt"] = "1"; }, Errc::wrong_type, "meta.expiresAt"},
      {"timeoutMs", [](Json& j) { j["meta"]["timeoutMs"] = true; }, Errc::wrong_type, "meta.timeoutMs"},
      {"streamId", [](Json& j) { j["meta"]["streamId"] = 1; }, Errc::wrong_type, "meta.streamId"},
      {"streamChunkId", [](Json& j) { j["meta"]["streamChunkId"] = "0"; }, Errc::wrong_type, "meta.streamChunkId"},
      {"streamTerminator", [](Json& j) { j["meta"]["streamTerminator"] = "true"; }, Errc::wrong_type,
       "meta.streamTerminator must be a boolean"},
      {"rpcCorrelationId", [](Json& j) { j["meta"]["rpcCorrelationId"] = 1; }, Errc::wrong_type,
       "meta.rpcCorrelationId"},
      {"rpcResponse", [](Json& j) { j["meta"]["rpcResponse"] = 1; }, Errc::wrong_type, "meta.rpcResponse"},
      {"requestFingerprint", [](Json& j) { j["meta"]["requestFingerprint"] = 1; }, Errc::wrong_type,
       "meta.requestFingerprint"},
      // unknown_channel
      {"unknown channel", [](Json& j) { j["channel"] = "carrier-pigeon"; }, Errc::unknown_channel, "channel"},
      {"channel in capitals", [](Json& j) { j["channel"] = "DM"; }, Errc::unknown_channel, "channel"},
      // invalid_value: version and integers
      {"v is 2", [](Json& j) { j["v"] = 2; }, Errc::invalid_value, "v must be 1"},
      {"v is 1.0", [](Json& j) { j["v"] = 1.0; }, Errc::invalid_value, "v must be an integer"},
      {"v beyond int", [](Json& j) { j["v"] = 4294967297LL; }, Errc::invalid_value, "v is out of range"},
      {"expiresAt 1.5", [](Json& j) { j["meta"]["expiresAt"] = 1.5; }, Errc::invalid_value,
       "meta.expiresAt must be an integer"},
      {"expiresAt 1e3", [](Json& j) { j["meta"]["expiresAt"] = Json::parse("1e3"); }, Errc::invalid_value,
       "meta.expiresAt must be an integer"},
      {"expiresAt 2^63", [](Json& j) { j["meta"]["expiresAt"] = 9223372036854775808ULL; }, Errc::invalid_value,
       "meta.expiresAt is out of range"},
      {"expiresAt negative", [](Json& j) { j["meta"]["expiresAt"] = -1; }, Errc::invalid_value,
       "meta.expiresAt is negative"},
      {"timeoutMs zero", [](Json& j) { j["meta"]["timeoutMs"] = 0; }, Errc::invalid_value,
       "meta.timeoutMs must be positive"},
      {"streamChunkId negative", [](Json& j) { j["meta"]["streamChunkId"] = -1; }, Errc::invalid_value,
       "meta.streamChunkId is negative"},
      {"bodyVersion zero", [](Json& j) { j["body"]["bodyVersion"] = 0; }, Errc::invalid_value,
       "body.bodyVersion must be at least 1"},
      // invalid_value: enumerations, hex and base64
      {"unknown priority", [](Json& j) { j["meta"]["priority"] = "urgent"; }, Errc::invalid_value,
       "meta.priority must be one of"},
      {"from in capitals", [](Json& j) { j["from"] = std::string(64, 'B'); }, Errc::invalid_value,
       "from must be 64 lowercase hex"},
      {"from too short", [](Json& j) { j["from"] = std::string(63, 'b'); }, Errc::invalid_value, "from must be"},
      {"fingerprint not hex", [](Json& j) { j["meta"]["requestFingerprint"] = std::string(64, 'g'); },
       Errc::invalid_value, "meta.requestFingerprint must be 64 lowercase hex"},
      {"nonce unpadded", [](Json& j) { j["body"]["nonce"] = "aGk"; }, Errc::invalid_value,
       "body.nonce is not valid standard base64"},
      {"nonce url-safe", [](Json& j) { j["body"]["nonce"] = "-_-_"; }, Errc::invalid_value, "body.nonce"},
      {"ciphertext not base64", [](Json& j) { j["body"]["ciphertext"] = "!!!!"; }, Errc::invalid_value,
       "body.ciphertext is not valid standard base64"},
      // invalid_value: ids
      {"empty clientMessageId", [](Json& j) { j["meta"]["clientMessageId"] = ""; }, Errc::invalid_value,
       "meta.clientMessageId is empty"},
      {"clientMessageId with a space", [](Json& j) { j["meta"]["clientMessageId"] = "a b"; }, Errc::invalid_value,
       "meta.clientMessageId must be printable ASCII"},
      {"clientMessageId not ASCII", [](Json& j) { j["meta"]["clientMessageId"] = "caf\xc3\xa9"; },
       Errc::invalid_value, "meta.clientMessageId must be printable ASCII"},
      {"clientMessageId with DEL", [](Json& j) { j["meta"]["clientMessageId"] = "a\x7f"; }, Errc::invalid_value,
       "meta.clientMessageId must be printable ASCII"},
      {"clientMessageId of 129", [](Json& j) { j["meta"]["clientMessageId"] = std::string(129, 'x'); },
       Errc::invalid_value, "meta.clientMessageId is longer than 128"},
      {"empty replyToId", [](Json& j) { j["meta"]["replyToId"] = ""; }, Errc::invalid_value, "meta.replyToId is empty"},
      {"streamId with a tab", [](Json& j) { j["meta"]["streamId"] = "s\t1"; }, Errc::invalid_value, "meta.streamId"},
      {"rpcCorrelationId too long", [](Json& j) { j["meta"]["rpcCorrelationId"] = std::string(200, 'r'); },
       Errc::invalid_value, "meta.rpcCorrelationId is longer"},
      // invalid_value: mentions
      {"17 mentions", [](Json& j) { j["meta"]["mentions"] = std::vector<std::string>(17, "bob"); },
       Errc::invalid_value, "meta.mentions has 17 entries; at most 16"},
      {"empty mention", [](Json& j) { j["meta"]["mentions"] = {"alice", ""}; }, Errc::invalid_value,
       "meta.mentions[1] is empty"},
      {"mention of 65 bytes", [&](Json& j) { j["meta"]["mentions"] = {long_mention}; }, Errc::invalid_value,
       "meta.mentions[0] is longer than 64 bytes"},
      {"mention that is no target", [](Json& j) { j["meta"]["mentions"] = {" alice"}; }, Errc::invalid_value,
       "meta.mentions[0]: target"},
      // invalid_value: channel rules
      {"stream without streamId", [](Json& j) { j["channel"] = "stream"; }, Errc::invalid_value,
       "meta.streamId is required"},
      {"rpc without rpcCorrelationId", [](Json& j) { j["channel"] = "rpc"; }, Errc::invalid_value,
       "meta.rpcCorrelationId is required"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    Json doc = minimal_dm();
    c.edit(doc);
    check_rejected(doc.dump(), c.code, c.message);
  }
}

TEST_CASE("the target must be in wire form and suit the channel") {
  const std::vector<std::tuple<const char*, const char*, std::string, const char*>> cases{
      {"empty", "dm", "", "target is empty"},
      {"unparseable", "group", "@a//b", "empty segment"},
      {"a display name", "dm", "alice", "resolve names and prefixes first"},
      {"a pubkey prefix", "dm", "cafe", "resolve names and prefixes first"},
      {"a pubkey in capitals", "dm", std::string(64, 'A'), "not in wire form"},
      {"the @all alias", "broadcast", "@all", "not in wire form; expected *"},
      {"dm to everyone", "dm", "*", "target of a dm envelope must be a pubkey"},
      {"rpc to a group", "rpc", "@ops", "target of a rpc envelope must be a pubkey"},
      {"stream to a topic", "stream", "#t", "target of a stream envelope must be a pubkey"},
      {"group to a pubkey", "group", recipient(), "must be a group"},
      {"topic to a group", "topic", "@ops", "must be a topic"},
      {"broadcast to a topic", "broadcast", "#t", "must be a broadcast"},
  };
  for (const auto& [name, channel, target, message] : cases) {
    CAPTURE(name);
    Json doc = minimal_dm();
    doc["channel"] = channel;
    doc["target"] = target;
    doc["meta"]["streamId"] = "s";
    doc["meta"]["rpcCorrelationId"] = "r";
    check_rejected(doc.dump(), Errc::invalid_value, message);
  }
}

TEST_CASE("validate_envelope applies the decoder's rules to a constructed envelope") {
  const std::vector<std::tuple<const char*, std::function<void(Envelope&)>, Errc, const char*>> cases{
      {"version 2", [](Envelope& e) { e.version = 2; }, Errc::invalid_value, "v must be 1"},
      {"channel outside the enumeration", [](Envelope& e) { e.channel = static_cast<ChannelKind>(42); },
       Errc::unknown_channel, "channel"},
      {"priority outside the enumeration", [](Envelope& e) { e.meta.priority = static_cast<Priority>(42); },
       Errc::invalid_value, "meta.priority is not a known priority"},
      {"empty client message id", [](Envelope& e) { e.meta.client_message_id.clear(); }, Errc::invalid_value,
       "meta.clientMessageId is empty"},
      {"mention that is not UTF-8", [](Envelope& e) { e.meta.mentions = {"\xff"}; }, Errc::invalid_value,
       "not valid UTF-8"},
      {"nonce not base64", [](Envelope& e) { e.body.nonce = "%%%"; }, Errc::invalid_value, "body.nonce"},
      {"encoding larger than the limit",
       [](Envelope& e) { e.body.ciphertext = std::string(65536, 'A'); }, Errc::payload_too_large,
       "encoded envelope is"},
  };
  for (const auto& [name, edit, code, message] : cases) {
    CAPTURE(name);
    Envelope e = envelope_for(ChannelKind::dm, recipient());
    REQUIRE(validate_envelope(e).has_value());
    edit(e);
    const auto result = validate_envelope(e);
    REQUIRE_FALSE(result.has_value());
    CHECK(wire_name(result.error().errc()) == wire_name(code));
    CHECK_MESSAGE(result.error().message.find(message) != std::string::npos, result.error().message);
  }
  CHECK(validate_envelope(every_field()).has_value());
  const auto few = validate_envelope(every_field(), {.max_mentions = 2});
  REQUIRE_FALSE(few.has_value());
  CHECK(few.error() == Errc::invalid_value);
}

TEST_CASE("encoding never throws on strings that are not UTF-8") {
  Envelope e = envelope_for(ChannelKind::dm, recipient());
  e.meta.mentions = {"\xff\xfe"};
  std::string text;
  CHECK_NOTHROW(text = encode_envelope(e));
  CHECK(text.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
}
