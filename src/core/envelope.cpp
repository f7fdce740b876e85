// SPDX-License-Identifier: MIT
#include <claudemesh/envelope.hpp>

#include <claudemesh/bytes.hpp>
#include <claudemesh/target.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <initializer_list>
#include <limits>
#include <set>
#include <utility>

namespace claudemesh {
namespace {

using Json = nlohmann::json;

// The wire names of every envelope field: the one place they are spelled.
namespace wire {
constexpr std::string_view version = "v";
constexpr std::string_view channel = "channel";
constexpr std::string_view target = "target";
constexpr std::string_view from = "from";
constexpr std::string_view body = "body";
constexpr std::string_view nonce = "nonce";
constexpr std::string_view ciphertext = "ciphertext";
constexpr std::string_view body_version = "bodyVersion";
constexpr std::string_view meta = "meta";
constexpr std::string_view client_message_id = "clientMessageId";
constexpr std::string_view priority = "priority";
constexpr std::string_view reply_to_id = "replyToId";
constexpr std::string_view mentions = "mentions";
constexpr std::string_view expires_at = "expiresAt";
constexpr std::string_view timeout_ms = "timeoutMs";
constexpr std::string_view stream_id = "streamId";
constexpr std::string_view stream_chunk_id = "streamChunkId";
constexpr std::string_view stream_terminator = "streamTerminator";
constexpr std::string_view rpc_correlation_id = "rpcCorrelationId";
constexpr std::string_view rpc_response = "rpcResponse";
constexpr std::string_view request_fingerprint = "requestFingerprint";
}  // namespace wire

constexpr int kEnvelopeVersion = 1;
constexpr std::size_t kMaxIdLength = 128;
constexpr std::size_t kMaxMentionLength = 64;
constexpr std::size_t kHexKeyLength = 64;

constexpr std::array<std::pair<ChannelKind, std::string_view>, 7> kChannelNames{{
    {ChannelKind::dm, "dm"}, {ChannelKind::group, "group"}, {ChannelKind::topic, "topic"},
    {ChannelKind::broadcast, "broadcast"}, {ChannelKind::rpc, "rpc"}, {ChannelKind::stream, "stream"},
    {ChannelKind::system, "system"}}};

constexpr std::array<std::pair<Priority, std::string_view>, 3> kPriorityNames{
    {{Priority::now, "now"}, {Priority::next, "next"}, {Priority::low, "low"}}};

std::string path_of(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key) : std::string(parent) + "." + std::string(key);
}

Result<void> first_error(std::initializer_list<Result<void>> results) {
  for (const auto& result : results) {
    if (!result) return result;
  }
  return {};
}

// ---- pass 1: structure (syntax, UTF-8, depth, duplicate member names) ----

// A SAX consumer that only checks structure, because nlohmann's DOM parser silently keeps the last of two
// equal member names and has no depth limit. Returning false stops the parse at the first problem.
class StructureCheck {
 public:
  explicit StructureCheck(std::size_t max_depth) : max_depth_(max_depth) {}

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const Json::string_t&) { return true; }
  bool string(Json::string_t&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool start_object(std::size_t) { return enter(true); }
  bool end_object() { return leave(); }
  bool start_array(std::size_t) { return enter(false); }
  bool end_array() { return leave(); }

  bool key(Json::string_t& name) {
    Frame& frame = frames_.back();
    if (!frame.keys.insert(name).second) {
      return stop(Errc::duplicate_key, "member " + member_path(name) + " appears more than once");
    }
    frame.current_key = name;
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const Json::exception& ex) {
    // Not ex.what(): it quotes the offending input, which may be invalid UTF-8.
    const bool utf8 = std::string_view(ex.what()).find("UTF-8") != std::string_view::npos;
    return stop(Errc::malformed, std::string(utf8 ? "envelope is not valid UTF-8" : "envelope is not valid JSON") +
                                     " (near byte " + std::to_string(position) + ")");
  }

  [[nodiscard]] Result<void> result() const {
    if (error_) return fail(*error_);
    return {};
  }

 private:
  struct Frame {
    bool is_object = false;
    std::set<std::string, std::less<>> keys;
    std::string current_key;
  };

  bool enter(bool is_object) {
    if (frames_.size() >= max_depth_) {
      return stop(Errc::malformed, "envelope is nested deeper than " + std::to_string(max_depth_) + " levels");
    }
    frames_.push_back(Frame{is_object, {}, {}});
    return true;
  }

  bool leave() {
    frames_.pop_back();
    return true;
  }

  bool stop(Errc code, std::string message) {
    error_ = Error(code, std::move(message));
    return false;
  }

  // "meta.mentions[].x": the enclosing members leading to `name` in the innermost object.
  [[nodiscard]] std::string member_path(std::string_view name) const {
    std::string out;
    for (std::size_t i = 0; i + 1 < frames_.size(); ++i) {
      if (frames_[i].is_object) {
        out = path_of(out, frames_[i].current_key);
      } else {
        out += "[]";
      }
    }
    return path_of(out, name);
  }

  std::size_t max_depth_;
  std::vector<Frame> frames_;
  std::optional<Error> error_;
};

// ---- pass 2: fields (presence, JSON types, enumerations) ----

// Reads the members of one JSON object, naming them by their path in errors.
class ObjectReader {
 public:
  ObjectReader(const Json& object, std::string path) : object_(object), path_(std::move(path)) {}

  [[nodiscard]] std::string path(std::string_view key) const { return path_of(path_, key); }

  [[nodiscard]] const Json* find(std::string_view key) const {
    const auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  [[nodiscard]] Result<const Json*> require(std::string_view key) const {
    const Json* value = find(key);
    if (value == nullptr) return fail(Errc::missing_field, path(key) + " is missing");
    return value;
  }

  [[nodiscard]] Result<ObjectReader> object(std::string_view key) const {
    auto value = require(key);
    if (!value) return fail(value.error());
    if (!(*value)->is_object()) return wrong_type(key, "an object");
    return ObjectReader(**value, path(key));
  }

  Result<void> read(std::string_view key, std::string& out) const {
    auto value = require(key);
    if (!value) return fail(value.error());
    return as_string(key, **value, out);
  }

  Result<void> read(std::string_view key, std::optional<std::string>& out) const {
    const Json* value = find(key);
    if (value == nullptr) return {};
    return as_string(key, *value, out.emplace());
  }

  Result<void> read(std::string_view key, std::optional<bool>& out) const {
    const Json* value = find(key);
    if (value == nullptr) return {};
    if (!value->is_boolean()) return wrong_type(key, "a boolean");
    out = value->get<bool>();
    return {};
  }

  Result<void> read(std::string_view key, std::optional<std::int64_t>& out) const {
    const Json* value = find(key);
    if (value == nullptr) return {};
    if (!value->is_number()) return wrong_type(key, "an integer");
    if (value->is_number_float()) return fail(Errc::invalid_value, path(key) + " must be an integer");
    if (value->is_number_unsigned() &&
        value->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return fail(Errc::invalid_value, path(key) + " is out of range");
    }
    out = value->get<std::int64_t>();
    return {};
  }

  // An int field: required when `required`, otherwise left unchanged when absent.
  Result<void> read(std::string_view key, int& out, bool required) const {
    if (required && find(key) == nullptr) return fail(Errc::missing_field, path(key) + " is missing");
    std::optional<std::int64_t> wide;
    if (auto r = read(key, wide); !r) return r;
    if (!wide) return {};
    if (*wide < std::numeric_limits<int>::min() || *wide > std::numeric_limits<int>::max()) {
      return fail(Errc::invalid_value, path(key) + " is out of range");
    }
    out = static_cast<int>(*wide);
    return {};
  }

  Result<void> read(std::string_view key, std::vector<std::string>& out) const {
    const Json* value = find(key);
    if (value == nullptr) return {};
    if (!value->is_array()) return wrong_type(key, "an array of strings");
    for (std::size_t i = 0; i < value->size(); ++i) {
      const std::string element = std::string(key) + "[" + std::to_string(i) + "]";
      if (auto r = as_string(element, (*value)[i], out.emplace_back()); !r) return r;
    }
    return {};
  }

 private:
  [[nodiscard]] Result<void> as_string(std::string_view key, const Json& value, std::string& out) const {
    if (!value.is_string()) return wrong_type(key, "a string");
    out = value.get<std::string>();
    return {};
  }

  [[nodiscard]] std::unexpected<Error> wrong_type(std::string_view key, std::string_view expected) const {
    return fail(Errc::wrong_type, path(key) + " must be " + std::string(expected));
  }

  const Json& object_;
  std::string path_;
};

Result<void> read_body(const ObjectReader& body, EnvelopeBody& out) {
  return first_error({
      body.read(wire::nonce, out.nonce),
      body.read(wire::ciphertext, out.ciphertext),
      body.read(wire::body_version, out.body_version, false),
  });
}

Result<void> read_meta(const ObjectReader& meta, EnvelopeMeta& out) {
  std::optional<std::string> priority;
  auto fields = first_error({
      meta.read(wire::client_message_id, out.client_message_id),
      meta.read(wire::priority, priority),
      meta.read(wire::reply_to_id, out.reply_to_id),
      meta.read(wire::mentions, out.mentions),
      meta.read(wire::expires_at, out.expires_at_ms),
      meta.read(wire::timeout_ms, out.timeout_ms),
      meta.read(wire::stream_id, out.stream_id),
      meta.read(wire::stream_chunk_id, out.stream_chunk_id),
      meta.read(wire::stream_terminator, out.stream_terminator),
      meta.read(wire::rpc_correlation_id, out.rpc_correlation_id),
      meta.read(wire::rpc_response, out.rpc_response),
      meta.read(wire::request_fingerprint, out.request_fingerprint),
  });
  if (!fields) return fields;
  if (priority) {
    const auto parsed = parse_priority(*priority);
    if (!parsed) return fail(Errc::invalid_value, meta.path(wire::priority) + " must be one of now, next, low");
    out.priority = *parsed;
  }
  return {};
}

Result<Envelope> read_envelope(const Json& document) {
  if (!document.is_object()) return fail(Errc::malformed, "envelope must be a JSON object");
  const ObjectReader top(document, "");
  Envelope envelope;
  std::string channel;
  if (auto r = first_error({top.read(wire::version, envelope.version, true), top.read(wire::channel, channel),
                            top.read(wire::target, envelope.target), top.read(wire::from, envelope.from)});
      !r) {
    return fail(r.error());
  }
  const auto kind = parse_channel_kind(channel);
  if (!kind) return fail(Errc::unknown_channel, "channel is not a known channel kind");
  envelope.channel = *kind;

  auto body = top.object(wire::body);
  if (!body) return fail(body.error());
  if (auto r = read_body(*body, envelope.body); !r) return fail(r.error());
  auto meta = top.object(wire::meta);
  if (!meta) return fail(meta.error());
  if (auto r = read_meta(*meta, envelope.meta); !r) return fail(r.error());
  return envelope;
}

// ---- semantic rules, shared by decode_envelope() and validate_envelope() ----

std::unexpected<Error> invalid(std::string message) { return fail(Errc::invalid_value, std::move(message)); }

Result<void> check_id(std::string_view path, std::string_view id) {
  if (id.empty()) return invalid(std::string(path) + " is empty");
  if (id.size() > kMaxIdLength) return invalid(std::string(path) + " is longer than 128 characters");
  for (char c : id) {
    if (c <= ' ' || c > '~') return invalid(std::string(path) + " must be printable ASCII without spaces");
  }
  return {};
}

Result<void> check_optional_id(std::string_view path, const std::optional<std::string>& id) {
  return id ? check_id(path, *id) : Result<void>{};
}

Result<void> check_target(const Envelope& envelope) {
  const auto parsed = parse_target(envelope.target);
  if (!parsed) return invalid(parsed.error().message);
  if (parsed->kind == TargetKind::name || parsed->kind == TargetKind::pubkey_prefix) {
    return invalid("target must be a 64-hex pubkey, '*', '@group' or '#topic' (resolve names and prefixes first)");
  }
  if (parsed->spec() != envelope.target) return invalid("target is not in wire form; expected " + parsed->spec());

  std::optional<TargetKind> required;  // none: any wire form
  switch (envelope.channel) {
    case ChannelKind::dm:
    case ChannelKind::rpc:
    case ChannelKind::stream: required = TargetKind::pubkey; break;
    case ChannelKind::group: required = TargetKind::group; break;
    case ChannelKind::topic: required = TargetKind::topic; break;
    case ChannelKind::broadcast: required = TargetKind::broadcast; break;
    case ChannelKind::system: break;
  }
  if (required && parsed->kind != *required) {
    return invalid("target of a " + std::string(to_string(envelope.channel)) + " envelope must be a " +
                   std::string(to_string(*required)) + ", not a " + std::string(to_string(parsed->kind)));
  }
  return {};
}

Result<void> check_body(const EnvelopeBody& body) {
  const auto body_path = [](std::string_view key) { return path_of(wire::body, key); };
  if (!from_base64(body.nonce)) return invalid(body_path(wire::nonce) + " is not valid standard base64");
  if (!from_base64(body.ciphertext)) return invalid(body_path(wire::ciphertext) + " is not valid standard base64");
  if (body.body_version < 1) return invalid(body_path(wire::body_version) + " must be at least 1");
  return {};
}

Result<void> check_mentions(const std::vector<std::string>& mentions, const EnvelopeLimits& limits) {
  const std::string path = path_of(wire::meta, wire::mentions);
  if (mentions.size() > limits.max_mentions) {
    return invalid(path + " has " + std::to_string(mentions.size()) + " entries; at most " +
                   std::to_string(limits.max_mentions) + " are allowed");
  }
  for (std::size_t i = 0; i < mentions.size(); ++i) {
    const std::string element = path + "[" + std::to_string(i) + "]";
    if (mentions[i].empty()) return invalid(element + " is empty");
    if (mentions[i].size() > kMaxMentionLength) return invalid(element + " is longer than 64 bytes");
    if (auto parsed = parse_target(mentions[i]); !parsed) return invalid(element + ": " + parsed.error().message);
  }
  return {};
}

Result<void> check_meta(const Envelope& envelope, const EnvelopeLimits& limits) {
  const EnvelopeMeta& meta = envelope.meta;
  const auto meta_path = [](std::string_view key) { return path_of(wire::meta, key); };
  if (auto r = first_error({check_id(meta_path(wire::client_message_id), meta.client_message_id),
                            check_optional_id(meta_path(wire::reply_to_id), meta.reply_to_id),
                            check_optional_id(meta_path(wire::stream_id), meta.stream_id),
                            check_optional_id(meta_path(wire::rpc_correlation_id), meta.rpc_correlation_id),
                            check_mentions(meta.mentions, limits)});
      !r) {
    return r;
  }
  if (to_string(meta.priority).empty()) return invalid(meta_path(wire::priority) + " is not a known priority");
  if (meta.expires_at_ms && *meta.expires_at_ms < 0) return invalid(meta_path(wire::expires_at) + " is negative");
  if (meta.timeout_ms && *meta.timeout_ms <= 0) return invalid(meta_path(wire::timeout_ms) + " must be positive");
  if (meta.stream_chunk_id && *meta.stream_chunk_id < 0) {
    return invalid(meta_path(wire::stream_chunk_id) + " is negative");
  }
  if (envelope.channel == ChannelKind::stream && !meta.stream_id) {
    return invalid(meta_path(wire::stream_id) + " is required on a stream envelope");
  }
  if (envelope.channel == ChannelKind::rpc && !meta.rpc_correlation_id) {
    return invalid(meta_path(wire::rpc_correlation_id) + " is required on an rpc envelope");
  }
  if (meta.request_fingerprint && !is_lower_hex(*meta.request_fingerprint, kHexKeyLength)) {
    return invalid(meta_path(wire::request_fingerprint) + " must be 64 lowercase hex characters");
  }
  return {};
}

Result<void> check_semantics(const Envelope& envelope, const EnvelopeLimits& limits) {
  if (envelope.version != kEnvelopeVersion) return invalid("v must be 1, not " + std::to_string(envelope.version));
  if (to_string(envelope.channel).empty()) return fail(Errc::unknown_channel, "channel is not a known channel kind");
  if (envelope.from && !is_lower_hex(*envelope.from, kHexKeyLength)) {
    return invalid("from must be 64 lowercase hex characters");
  }
  return first_error({check_target(envelope), check_body(envelope.body), check_meta(envelope, limits)});
}

std::string wire_key(std::string_view name) { return std::string(name); }

}  // namespace

std::string_view to_string(ChannelKind kind) noexcept {
  for (const auto& [value, name] : kChannelNames) {
    if (value == kind) return name;
  }
  return {};
}

std::optional<ChannelKind> parse_channel_kind(std::string_view name) noexcept {
  for (const auto& [value, spelled] : kChannelNames) {
    if (spelled == name) return value;
  }
  return std::nullopt;
}

std::string_view to_string(Priority priority) noexcept {
  for (const auto& [value, name] : kPriorityNames) {
    if (value == priority) return name;
  }
  return {};
}

std::optional<Priority> parse_priority(std::string_view name) noexcept {
  for (const auto& [value, spelled] : kPriorityNames) {
    if (spelled == name) return value;
  }
  return std::nullopt;
}

std::string encode_envelope(const Envelope& envelope) {
  nlohmann::ordered_json out;
  out[wire_key(wire::version)] = envelope.version;
  out[wire_key(wire::channel)] = to_string(envelope.channel);
  out[wire_key(wire::target)] = envelope.target;
  if (envelope.from) out[wire_key(wire::from)] = *envelope.from;

  auto& body = out[wire_key(wire::body)];
  body[wire_key(wire::nonce)] = envelope.body.nonce;
  body[wire_key(wire::ciphertext)] = envelope.body.ciphertext;
  body[wire_key(wire::body_version)] = envelope.body.body_version;

  const EnvelopeMeta& meta = envelope.meta;
  auto& m = out[wire_key(wire::meta)];
  m[wire_key(wire::client_message_id)] = meta.client_message_id;
  m[wire_key(wire::priority)] = to_string(meta.priority);
  if (meta.reply_to_id) m[wire_key(wire::reply_to_id)] = *meta.reply_to_id;
  if (!meta.mentions.empty()) m[wire_key(wire::mentions)] = meta.mentions;
  if (meta.expires_at_ms) m[wire_key(wire::expires_at)] = *meta.expires_at_ms;
  if (meta.timeout_ms) m[wire_key(wire::timeout_ms)] = *meta.timeout_ms;
  if (meta.stream_id) m[wire_key(wire::stream_id)] = *meta.stream_id;
  if (meta.stream_chunk_id) m[wire_key(wire::stream_chunk_id)] = *meta.stream_chunk_id;
  if (meta.stream_terminator) m[wire_key(wire::stream_terminator)] = *meta.stream_terminator;
  if (meta.rpc_correlation_id) m[wire_key(wire::rpc_correlation_id)] = *meta.rpc_correlation_id;
  if (meta.rpc_response) m[wire_key(wire::rpc_response)] = *meta.rpc_response;
  if (meta.request_fingerprint) m[wire_key(wire::request_fingerprint)] = *meta.request_fingerprint;
  return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<Envelope> decode_envelope(std::string_view json, const EnvelopeLimits& limits) {
  if (json.size() > limits.max_encoded_bytes) {
    return fail(Errc::payload_too_large, "envelope is " + std::to_string(json.size()) + " bytes; the limit is " +
                                             std::to_string(limits.max_encoded_bytes));
  }
  try {
    StructureCheck structure(limits.max_depth);
    Json::sax_parse(json, &structure);
    if (auto r = structure.result(); !r) return fail(r.error());

    const Json document = Json::parse(json, nullptr, /*allow_exceptions=*/false);
    if (document.is_discarded()) return fail(Errc::malformed, "envelope is not valid JSON");
    auto envelope = read_envelope(document);
    if (!envelope) return envelope;
    if (auto r = check_semantics(*envelope, limits); !r) return fail(r.error());
    return envelope;
  } catch (const Json::exception& ex) {
    // Not expected (types are checked before every get<>), but no third-party exception may escape.
    return fail(Errc::internal, std::string("envelope decoder failed: ") + ex.what());
  }
}

Result<void> validate_envelope(const Envelope& envelope, const EnvelopeLimits& limits) {
  if (auto r = check_semantics(envelope, limits); !r) return r;
  const std::size_t size = encode_envelope(envelope).size();
  if (size > limits.max_encoded_bytes) {
    return fail(Errc::payload_too_large, "encoded envelope is " + std::to_string(size) + " bytes; the limit is " +
                                             std::to_string(limits.max_encoded_bytes));
  }
  return {};
}

}  // namespace claudemesh
