// SPDX-License-Identifier: MIT
/// @file envelope.hpp
/// The message envelope: what one peer sends another, as it travels between daemon, broker and peer.
///
/// The envelope carries an already-encrypted body plus the routing and delivery metadata the broker and
/// the receiving daemon act on. On the wire it is one compact JSON object with camelCase names:
///
/// @code{.json}
/// {"v":1,"channel":"dm","target":"<64 hex>","from":"<64 hex>",
///  "body":{"nonce":"<base64>","ciphertext":"<base64>","bodyVersion":1},
///  "meta":{"clientMessageId":"01J...","priority":"next","replyToId":"...","mentions":["alice"],
///          "expiresAt":1735689600000,"timeoutMs":30000,"streamId":"...","streamChunkId":0,
///          "streamTerminator":false,"rpcCorrelationId":"...","rpcResponse":false,
///          "requestFingerprint":"<64 hex>"}}
/// @endcode
///
/// Optional fields are omitted when absent; `priority` and `bodyVersion` are always written and default
/// to `next` and 1 when a decoded envelope lacks them. **Members this version does not know are ignored
/// when decoding** (so a newer peer can add fields without breaking older ones) and are not kept:
/// re-encoding a decoded envelope drops them. Member names must still be unique and nesting bounded.
///
/// @par Rules (applied by both `decode_envelope()` and `validate_envelope()`)
/// * `v` is 1.
/// * `target` is in wire form — a 64-hex lowercase pubkey, `*`, `@group` or `#topic` as `parse_target()`
///   writes it (`Target::spec()`); display names and prefixes must be resolved first. It must suit the
///   channel: `dm`, `rpc`, `stream` need a pubkey; `group` a `@group`; `topic` a `#topic`; `broadcast`
///   `*`; `system` any of these.
/// * `from` and `meta.requestFingerprint`, when present, are 64 lowercase hex characters.
/// * `body.nonce` and `body.ciphertext` are standard base64 with padding (possibly empty);
///   `body.bodyVersion` is at least 1.
/// * `meta.clientMessageId`, `meta.replyToId`, `meta.streamId` and `meta.rpcCorrelationId` are ids:
///   1–128 printable ASCII characters without spaces.
/// * `meta.mentions`: at most `EnvelopeLimits::max_mentions` entries, each 1–64 bytes and a valid target
///   text for `parse_target()` (a display name, pubkey or `@group`).
/// * `meta.expiresAt` (ms since the Unix epoch) and `meta.streamChunkId` are ≥ 0; `meta.timeoutMs` is > 0;
///   integer fields must be JSON integers (`1.0` and `1e3` are rejected).
/// * channel `stream` requires `meta.streamId`; channel `rpc` requires `meta.rpcCorrelationId`.
///
/// @par Thread safety
/// All functions are pure and thread-safe. Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

/// The kind of conversation a message belongs to; decides routing and which crypto protects the body.
enum class ChannelKind {
  dm,         ///< one peer to one peer (target: pubkey)
  group,      ///< to every member of a group and its subgroups (target: `@group`)
  topic,      ///< pub/sub with history and a per-topic key (target: `#topic`)
  broadcast,  ///< to every peer of the mesh (target: `*`)
  rpc,        ///< request/response correlated by `meta.rpcCorrelationId` (target: pubkey)
  stream,     ///< ordered chunks of `meta.streamId` (target: pubkey)
  system,     ///< events originated by the broker
};

/// When the receiver should surface a message.
enum class Priority {
  now,   ///< interrupt: pushed into a running session mid-turn
  next,  ///< at the next natural pause (the default)
  low,   ///< whenever the receiver looks at its inbox
};

/// The wire name of a channel kind ("dm", "group", "topic", "broadcast", "rpc", "stream", "system"),
/// or an empty view for a value outside the enumeration.
CLAUDEMESH_API std::string_view to_string(ChannelKind kind) noexcept;

/// The channel kind with the given wire name (exact, lowercase), or `std::nullopt`.
CLAUDEMESH_API std::optional<ChannelKind> parse_channel_kind(std::string_view name) noexcept;

/// The wire name of a priority ("now", "next", "low"), or an empty view for a value outside the enumeration.
CLAUDEMESH_API std::string_view to_string(Priority priority) noexcept;

/// The priority with the given wire name (exact, lowercase), or `std::nullopt`.
CLAUDEMESH_API std::optional<Priority> parse_priority(std::string_view name) noexcept;

/// The encrypted body, exactly as on the wire. How to decrypt it depends on the channel and `body_version`.
struct EnvelopeBody {
  std::string nonce;       ///< standard base64 (`body.nonce`)
  std::string ciphertext;  ///< standard base64 (`body.ciphertext`)
  int body_version = 1;    ///< `body.bodyVersion`: the body format (2 = per-topic secretbox); ≥ 1

  bool operator==(const EnvelopeBody&) const = default;
};

/// Delivery metadata the broker and the receiving daemon act on (`meta` on the wire).
struct EnvelopeMeta {
  std::string client_message_id;                   ///< `clientMessageId`: required; the idempotency id
  Priority priority = Priority::next;              ///< `priority`
  std::optional<std::string> reply_to_id;          ///< `replyToId`: the message this one answers
  std::vector<std::string> mentions;               ///< `mentions`: names, pubkeys or `@groups` called out
  std::optional<std::int64_t> expires_at_ms;       ///< `expiresAt`: drop undelivered after this (ms since epoch)
  std::optional<std::int64_t> timeout_ms;          ///< `timeoutMs`: how long an rpc caller waits; > 0
  std::optional<std::string> stream_id;            ///< `streamId`: required when the channel is `stream`
  std::optional<std::int64_t> stream_chunk_id;     ///< `streamChunkId`: position in the stream; ≥ 0
  std::optional<bool> stream_terminator;           ///< `streamTerminator`: true on the last chunk
  std::optional<std::string> rpc_correlation_id;   ///< `rpcCorrelationId`: required when the channel is `rpc`
  std::optional<bool> rpc_response;                ///< `rpcResponse`: true on the answer, false/absent on the call
  std::optional<std::string> request_fingerprint;  ///< `requestFingerprint`: 64 lowercase hex

  bool operator==(const EnvelopeMeta&) const = default;
};

/// One message on the wire.
struct Envelope {
  int version = 1;                        ///< `v`: only 1 is accepted
  ChannelKind channel = ChannelKind::dm;  ///< `channel`
  std::string target;                     ///< `target`: wire target spec (pubkey, `*`, `@group`, `#topic`)
  std::optional<std::string> from;        ///< `from`: sender pubkey, 64 lowercase hex
  EnvelopeBody body;                      ///< `body`
  EnvelopeMeta meta;                      ///< `meta`

  bool operator==(const Envelope&) const = default;
};

/// Bounds on hostile input. The defaults match the broker's message size limit.
struct EnvelopeLimits {
  std::size_t max_encoded_bytes = 65536;  ///< largest encoded envelope, in bytes
  std::size_t max_mentions = 16;          ///< most entries in `meta.mentions`
  std::size_t max_depth = 16;             ///< deepest JSON nesting (the envelope itself is depth 1)
};

/// Encode an envelope as compact JSON, members in the order shown in this file's overview.
///
/// Does not validate: call `validate_envelope()` first for an envelope built from untrusted parts.
/// Never fails; a string that is not valid UTF-8 (which `validate_envelope()` rejects wherever it can occur)
/// has its bad bytes replaced by U+FFFD.
/// @returns the JSON text. For a valid envelope, `decode_envelope(encode_envelope(e)) == e`.
CLAUDEMESH_API std::string encode_envelope(const Envelope& envelope);

/// Decode and validate an envelope received from the network or a client.
///
/// @returns the envelope, or an error whose message names the offending field path
///   (e.g. "meta.clientMessageId is missing"):
///   * `Errc::payload_too_large`: `json` is longer than `limits.max_encoded_bytes` (checked before parsing);
///   * `Errc::malformed`: not JSON, not valid UTF-8, not an object, or nested deeper than `limits.max_depth`;
///   * `Errc::duplicate_key`: some object, at any depth, repeats a member name;
///   * `Errc::wrong_type`: a known field has the wrong JSON type (including `null`);
///   * `Errc::missing_field`: `v`, `channel`, `target`, `body`, `body.nonce`, `body.ciphertext`, `meta` or
///     `meta.clientMessageId` is absent;
///   * `Errc::unknown_channel`: `channel` is not a known kind;
///   * `Errc::invalid_value`: any other rule in this file's overview is broken.
CLAUDEMESH_API Result<Envelope> decode_envelope(std::string_view json, const EnvelopeLimits& limits = {});

/// Check an envelope against the rules `decode_envelope()` applies, and that its encoding fits
/// `limits.max_encoded_bytes`.
/// @returns nothing on success; otherwise `Errc::unknown_channel` for a channel outside the enumeration,
///   `Errc::payload_too_large` when the encoding is too long, and `Errc::invalid_value` for any other rule.
CLAUDEMESH_API Result<void> validate_envelope(const Envelope& envelope, const EnvelopeLimits& limits = {});

}  // namespace claudemesh
