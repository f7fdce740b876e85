// SPDX-License-Identifier: MIT
#include "store/outbox_rules.hpp"

#include "core/backoff.hpp"

#include <claudemesh/bytes.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>

namespace claudemesh {

std::string_view to_string(OutboxStatus status) noexcept {
  switch (status) {
    case OutboxStatus::pending: return "pending";
    case OutboxStatus::inflight: return "inflight";
    case OutboxStatus::done: return "done";
    case OutboxStatus::dead: return "dead";
    case OutboxStatus::aborted: return "aborted";
  }
  return {};
}

std::optional<OutboxStatus> parse_outbox_status(std::string_view name) noexcept {
  for (const auto status : {OutboxStatus::pending, OutboxStatus::inflight, OutboxStatus::done, OutboxStatus::dead,
                            OutboxStatus::aborted}) {
    if (to_string(status) == name) return status;
  }
  return std::nullopt;
}

namespace store {
namespace {

// Longest client message id accepted (reference §4.5.1).
constexpr std::size_t max_client_message_id = 128;
// A request fingerprint: sha256 as lowercase hex.
constexpr std::size_t fingerprint_hex_chars = 64;

bool is_priority(std::string_view priority) { return priority == "now" || priority == "next" || priority == "low"; }

// A JSON object text: valid JSON whose first token is `{`. nlohmann's accept() parses without building a
// value, so neither size nor nesting depth costs memory beyond the parser's stack of open brackets.
bool is_json_object(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && text[first] == '{' && nlohmann::json::accept(text);
}

}  // namespace

bool is_client_message_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= max_client_message_id &&
         std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < '\x7f'; });
}

Result<void> validate_send(const OutboxSend& send) {
  if (!is_lower_hex(send.request_fingerprint, fingerprint_hex_chars)) {
    return fail(Errc::invalid_value, "request_fingerprint must be 64 lowercase hex characters");
  }
  if (!send.client_message_id.empty() && !is_client_message_id(send.client_message_id)) {
    return fail(Errc::invalid_value, "client_message_id must be 1-128 printable ASCII characters without spaces");
  }
  if (send.mesh.empty()) return fail(Errc::invalid_value, "mesh is empty");
  if (send.target_spec.empty()) return fail(Errc::invalid_value, "target_spec is empty");
  if (!is_priority(send.priority)) return fail(Errc::invalid_value, "priority must be now, next or low");
  if (send.payload_bytes < 0) return fail(Errc::invalid_value, "payload_bytes is negative");
  if (!is_json_object(send.sealed)) return fail(Errc::invalid_value, "sealed is not a JSON object");
  return {};
}

bool same_fingerprint(std::string_view a, std::string_view b) noexcept {
  return constant_time_equal(as_bytes(a), as_bytes(b));
}

OutboxAccept decide_existing(OutboxRow existing, bool same_fingerprint) {
  using Outcome = OutboxAccept::Outcome;
  OutboxAccept decision;
  const auto accepted = [&](Outcome outcome, int http_status) {
    decision.outcome = outcome;
    decision.http_status = http_status;
  };
  const auto conflict = [&](std::string_view state) {
    decision.outcome = Outcome::conflict;
    decision.http_status = 409;
    decision.conflict = "outbox_" + std::string(state) +
                        (same_fingerprint ? "_fingerprint_match" : "_fingerprint_mismatch");
  };
  switch (existing.status) {
    case OutboxStatus::pending:
      same_fingerprint ? accepted(Outcome::queued, 202) : conflict("pending");
      break;
    case OutboxStatus::inflight:
      same_fingerprint ? accepted(Outcome::inflight, 202) : conflict("inflight");
      break;
    case OutboxStatus::done:
      same_fingerprint ? accepted(Outcome::duplicate, 200) : conflict("done");
      break;
    case OutboxStatus::dead: conflict("dead"); break;
    case OutboxStatus::aborted: conflict("aborted"); break;
  }
  decision.inserted = false;
  decision.row = std::move(existing);
  return decision;
}

std::int64_t backoff_delay_ms(const OutboxConfig& config, int attempts, double unit) noexcept {
  return core::backoff_ms(config.backoff_base, config.backoff_cap, config.backoff_jitter, attempts, unit);
}

}  // namespace store
}  // namespace claudemesh
