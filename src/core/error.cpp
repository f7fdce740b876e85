// SPDX-License-Identifier: MIT
#include <claudemesh/error.hpp>

#include <array>

namespace claudemesh {
namespace {

struct CodeInfo {
  Errc code;
  std::string_view wire;
  std::string_view description;
};

// The one table of codes: wire names are the protocol's error codes (docs/protocol.md).
constexpr std::array kCodes{
    CodeInfo{Errc::ok, "ok", "success"},
    CodeInfo{Errc::malformed, "malformed", "input is malformed"},
    CodeInfo{Errc::wrong_type, "wrong_type", "a field has the wrong type"},
    CodeInfo{Errc::missing_field, "missing_field", "a required field is missing"},
    CodeInfo{Errc::invalid_value, "invalid_value", "a field has an invalid value"},
    CodeInfo{Errc::duplicate_key, "duplicate_key", "a JSON object repeats a member name"},
    CodeInfo{Errc::payload_too_large, "payload_too_large", "payload exceeds the size limit"},
    CodeInfo{Errc::unknown_channel, "unknown_channel", "unknown channel kind"},
    CodeInfo{Errc::timestamp_skew, "timestamp_skew", "timestamp is outside the allowed clock skew"},
    CodeInfo{Errc::expired, "expired", "expired"},
    CodeInfo{Errc::ttl_too_long, "ttl_too_long", "expiry is further ahead than allowed"},
    CodeInfo{Errc::bad_signature, "bad_signature", "signature does not verify"},
    CodeInfo{Errc::attestation_mismatch, "attestation_mismatch", "session keys differ from the attestation"},
    CodeInfo{Errc::decrypt_failed, "decrypt_failed", "decryption failed"},
    CodeInfo{Errc::invalid_key, "invalid_key", "invalid key"},
    CodeInfo{Errc::crypto_failure, "crypto_failure", "cryptographic operation failed"},
    CodeInfo{Errc::invalid_target, "invalid_target", "invalid target"},
    CodeInfo{Errc::ambiguous_target, "ambiguous_target", "target matches more than one peer"},
    CodeInfo{Errc::unknown_target, "unknown_target", "target matches no peer"},
    CodeInfo{Errc::timed_out, "timed_out", "timed out"},
    CodeInfo{Errc::connection_closed, "connection_closed", "connection closed"},
    CodeInfo{Errc::io_error, "io_error", "I/O error"},
    CodeInfo{Errc::not_found, "not_found", "not found"},
    CodeInfo{Errc::insecure_permissions, "insecure_permissions", "file permissions are too open"},
    CodeInfo{Errc::internal, "internal", "internal error"},
    CodeInfo{Errc::unauthorized, "unauthorized", "not authenticated"},
    CodeInfo{Errc::forbidden, "forbidden", "not allowed"},
    CodeInfo{Errc::not_a_member, "not_a_member", "not a member of this mesh"},
    CodeInfo{Errc::revoked, "revoked", "membership revoked or banned"},
    CodeInfo{Errc::replayed, "replayed", "signed request replayed"},
    CodeInfo{Errc::no_hello, "no_hello", "must send hello first"},
    CodeInfo{Errc::unknown_message_type, "unknown_message_type", "unknown message type"},
    CodeInfo{Errc::bad_session_pubkey, "bad_session_pubkey", "session key is not 64 lowercase hex"},
    CodeInfo{Errc::bad_parent_pubkey, "bad_parent_pubkey", "parent member key is not 64 lowercase hex"},
    CodeInfo{Errc::parent_member_id_mismatch, "parent_member_id_mismatch", "parent member id does not match its key"},
    CodeInfo{Errc::rate_limited, "rate_limited", "rate limited"},
    CodeInfo{Errc::capacity, "capacity", "capacity reached"},
    CodeInfo{Errc::idempotency_key_reused, "idempotency_key_reused", "client message id reused for a different request"},
    CodeInfo{Errc::already_exists, "already_exists", "already exists"},
    CodeInfo{Errc::exhausted, "exhausted", "no uses left"},
    CodeInfo{Errc::unavailable, "unavailable", "temporarily unavailable"},
};

const CodeInfo* find(Errc e) noexcept {
  for (const auto& info : kCodes) {
    if (info.code == e) return &info;
  }
  return nullptr;
}

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "claudemesh"; }
  std::string message(int value) const override {
    const auto* info = find(static_cast<Errc>(value));
    return info ? std::string(info->description) : "unknown claudemesh error " + std::to_string(value);
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), error_category()}; }

std::string_view wire_name(Errc e) noexcept {
  const auto* info = find(e);
  return info ? info->wire : std::string_view("internal");
}

std::optional<Errc> errc_from_wire_name(std::string_view name) noexcept {
  for (const auto& info : kCodes) {
    if (info.wire == name) return info.code;
  }
  return std::nullopt;
}

Errc Error::errc() const noexcept {
  if (code.category() != error_category()) return Errc::internal;
  return static_cast<Errc>(code.value());
}

std::string Error::describe() const {
  std::string out(wire_code());
  if (!message.empty()) {
    out += ": ";
    out += message;
  }
  return out;
}

}  // namespace claudemesh
