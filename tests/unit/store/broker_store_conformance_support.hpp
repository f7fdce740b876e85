// SPDX-License-Identifier: MIT
// Test data and small helpers for the BrokerStore conformance suite (broker_store_conformance.hpp).
#pragma once

#include "store/broker_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace claudemesh::store::conformance {

inline constexpr TimeMs t0 = 1'700'000'000'000;  // an arbitrary "now"
inline constexpr TimeMs day_ms = 86'400'000;
inline constexpr TimeMs lease_ms = 30'000;

/// A distinct 64-hex key for each `n`.
inline std::string key(unsigned n) {
  char tail[17];
  std::snprintf(tail, sizeof tail, "%016x", n);
  return std::string(48, 'a') + tail;
}

/// The value of an operation that must succeed.
template <class T>
T value_of(Result<T> result) {
  REQUIRE(result);
  return std::move(*result);
}

/// Whether a lookup that must succeed found something.
template <class T>
bool exists(const Result<std::optional<T>>& result) {
  REQUIRE(result);
  return result->has_value();
}

/// What a lookup that must succeed and find something found.
template <class T>
T found(Result<std::optional<T>> result) {
  REQUIRE(result);
  REQUIRE(result->has_value());
  return std::move(**result);
}

inline MemberRecord make_member(const std::string& mesh_id, const std::string& id, const std::string& pubkey,
                                TimeMs joined_at_ms = t0, std::string role = "member") {
  return {.id = id, .mesh_id = mesh_id, .pubkey = pubkey, .display_name = "peer " + id, .role = std::move(role),
          .joined_at_ms = joined_at_ms};
}

/// Creates mesh `mesh_id` with an owner member "<mesh_id>-owner" holding `owner_key`.
inline MeshRecord add_mesh(BrokerStore& store, const std::string& mesh_id, const std::string& owner_key = key(0)) {
  MeshRecord mesh{.id = mesh_id, .name = "mesh " + mesh_id, .owner_pubkey = owner_key, .created_at_ms = t0};
  REQUIRE(store.create_mesh(mesh, make_member(mesh_id, mesh_id + "-owner", owner_key, t0, "owner")));
  return mesh;
}

inline InviteRecord make_invite(const std::string& id, const std::string& mesh_id, std::uint32_t max_uses = 1) {
  return {.id = id, .mesh_id = mesh_id, .role = "member", .inviter_pubkey = key(0),
          .expires_at_s = (t0 + day_ms) / 1000, .signature = "sig-" + id, .max_uses = max_uses,
          .created_at_ms = t0};
}

/// Adds a member through a one-use invite.
inline MemberRecord add_member(BrokerStore& store, const std::string& mesh_id, const std::string& id,
                               const std::string& pubkey, TimeMs joined_at_ms = t0) {
  REQUIRE(store.create_invite(make_invite("invite-" + id, mesh_id)));
  auto member = store.claim_invite("invite-" + id, make_member(mesh_id, id, pubkey, joined_at_ms), t0);
  REQUIRE(member);
  return *member;
}

inline MessageRecord make_message(const std::string& id, const std::string& mesh_id, TimeMs created_at_ms = t0,
                                  std::string priority = "next", TimeMs ttl_ms = 7 * day_ms) {
  return {.id = id, .mesh_id = mesh_id, .sender_member_id = mesh_id + "-owner", .sender_pubkey = key(0),
          .sender_member_pubkey = key(0), .target_spec = "*", .priority = std::move(priority),
          .created_at_ms = created_at_ms, .expires_at_ms = created_at_ms + ttl_ms};
}

inline DeliveryBody body_for(const std::string& recipient_key, const std::string& member_id = "member-x") {
  return {.recipient_key = recipient_key, .recipient_member_id = member_id, .nonce = "nonce-" + recipient_key.substr(56),
          .ciphertext = "ciphertext for " + recipient_key};
}

inline AcceptResult accept(BrokerStore& store, const MessageRecord& message, const std::vector<DeliveryBody>& bodies) {
  auto accepted = store.accept_message(message, bodies);
  REQUIRE(accepted);
  return *accepted;
}

/// Accepts `message` with one body per key.
inline void send(BrokerStore& store, const MessageRecord& message, const std::vector<std::string>& keys) {
  std::vector<DeliveryBody> bodies;
  for (const auto& k : keys) bodies.push_back(body_for(k));
  accept(store, message, bodies);
}

inline ClaimRequest claim_request(const std::string& mesh_id, std::vector<std::string> keys, TimeMs now_ms,
                                  std::string claimer = "conn-1") {
  return {.mesh_id = mesh_id, .recipient_keys = std::move(keys), .claimer = std::move(claimer), .now_ms = now_ms,
          .lease_ms = lease_ms};
}

inline std::vector<DeliveryRecord> claim(BrokerStore& store, const ClaimRequest& request) {
  auto rows = store.claim_deliveries(request);
  REQUIRE(rows);
  return *rows;
}

/// The message id of each row, in order.
inline std::vector<std::string> message_ids(const std::vector<DeliveryRecord>& rows) {
  std::vector<std::string> ids;
  for (const auto& row : rows) ids.push_back(row.message.id);
  return ids;
}

inline std::vector<std::string> ids(std::initializer_list<const char*> names) { return {names.begin(), names.end()}; }

inline QueueStats stats(BrokerStore& store, TimeMs now_ms) {
  auto s = store.queue_stats(now_ms);
  REQUIRE(s);
  return *s;
}

inline std::size_t mark(BrokerStore& store, const std::string& mesh_id, const std::string& message_id,
                        std::vector<std::string> keys, TimeMs now_ms) {
  auto marked = store.mark_delivered(mesh_id, message_id, keys, now_ms);
  REQUIRE(marked);
  return *marked;
}

inline void check_same_message(const MessageRecord& got, const MessageRecord& want) {
  CHECK(got.id == want.id);
  CHECK(got.mesh_id == want.mesh_id);
  CHECK(got.sender_member_id == want.sender_member_id);
  CHECK(got.sender_pubkey == want.sender_pubkey);
  CHECK(got.sender_member_pubkey == want.sender_member_pubkey);
  CHECK(got.target_spec == want.target_spec);
  CHECK(got.priority == want.priority);
  CHECK(got.client_message_id == want.client_message_id);
  CHECK(got.request_fingerprint == want.request_fingerprint);
  CHECK(got.reply_to_id == want.reply_to_id);
  CHECK(got.created_at_ms == want.created_at_ms);
  CHECK(got.expires_at_ms == want.expires_at_ms);
}

inline void check_same_member(const MemberRecord& got, const MemberRecord& want) {
  CHECK(got.id == want.id);
  CHECK(got.mesh_id == want.mesh_id);
  CHECK(got.pubkey == want.pubkey);
  CHECK(got.display_name == want.display_name);
  CHECK(got.role == want.role);
  CHECK(got.grants == want.grants);
  CHECK(got.groups == want.groups);
  CHECK(got.joined_at_ms == want.joined_at_ms);
  CHECK(got.last_seen_at_ms == want.last_seen_at_ms);
  CHECK(got.revoked_at_ms == want.revoked_at_ms);
  CHECK(got.banned_at_ms == want.banned_at_ms);
  CHECK(got.ban_reason == want.ban_reason);
}

inline std::set<std::pair<std::string, std::string>> as_set(const std::vector<RecipientRef>& refs) {
  std::set<std::pair<std::string, std::string>> out;
  for (const auto& ref : refs) out.emplace(ref.mesh_id, ref.recipient_key);
  return out;
}

}  // namespace claudemesh::store::conformance
