// SPDX-License-Identifier: MIT
// A BrokerStore decorator that makes batches fail on demand, for testing what sits above a store.
#pragma once

#include "store/broker_store.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace claudemesh::test {

/// A BrokerStore forwarding to a real one, whose n-th `begin_batch()` or `commit_batch()` (1-based) fails on
/// demand. A failing commit rolls the batch back first, as the interface requires of a commit that fails.
class FailingStore final : public store::BrokerStore {
 public:
  explicit FailingStore(std::unique_ptr<store::BrokerStore> inner) : inner_(std::move(inner)) {}

  std::atomic<int> failing_begin{0};   ///< which begin_batch() fails; 0: none
  std::atomic<int> failing_commit{0};  ///< which commit_batch() fails; 0: none

  Result<void> begin_batch() override {
    if (++begins_ == failing_begin.load()) return fail(Errc::io_error, "injected: cannot begin");
    return inner_->begin_batch();
  }
  Result<void> commit_batch() override {
    if (++commits_ == failing_commit.load()) {
      inner_->rollback_batch();
      return fail(Errc::io_error, "injected: disk full at commit");
    }
    return inner_->commit_batch();
  }
  void rollback_batch() noexcept override { inner_->rollback_batch(); }

  Result<void> create_mesh(const store::MeshRecord& mesh, const store::MemberRecord& owner) override {
    return inner_->create_mesh(mesh, owner);
  }
  Result<std::optional<store::MeshRecord>> find_mesh(std::string_view mesh_id) override {
    return inner_->find_mesh(mesh_id);
  }
  Result<std::vector<store::MemberRecord>> list_members(std::string_view mesh_id) override {
    return inner_->list_members(mesh_id);
  }
  Result<std::optional<store::MemberRecord>> find_member(std::string_view mesh_id, std::string_view pubkey) override {
    return inner_->find_member(mesh_id, pubkey);
  }
  Result<std::optional<store::MemberRecord>> find_member_by_id(std::string_view mesh_id,
                                                               std::string_view member_id) override {
    return inner_->find_member_by_id(mesh_id, member_id);
  }
  Result<void> update_member(const store::MemberRecord& member) override { return inner_->update_member(member); }
  Result<void> create_invite(const store::InviteRecord& invite) override { return inner_->create_invite(invite); }
  Result<std::optional<store::InviteRecord>> find_invite(std::string_view invite_id) override {
    return inner_->find_invite(invite_id);
  }
  Result<store::MemberRecord> claim_invite(std::string_view invite_id, store::MemberRecord member,
                                           store::TimeMs now_ms) override {
    return inner_->claim_invite(invite_id, std::move(member), now_ms);
  }
  Result<void> revoke_invite(std::string_view invite_id, store::TimeMs now_ms) override {
    return inner_->revoke_invite(invite_id, now_ms);
  }
  Result<void> record_session(const store::SessionRecord& session) override {
    return inner_->record_session(session);
  }
  Result<std::optional<store::SessionRecord>> find_session(std::string_view mesh_id,
                                                           std::string_view session_pubkey) override {
    return inner_->find_session(mesh_id, session_pubkey);
  }
  Result<std::optional<store::DedupeRecord>> find_dedupe(std::string_view mesh_id,
                                                         std::string_view client_message_id) override {
    return inner_->find_dedupe(mesh_id, client_message_id);
  }
  Result<store::AcceptResult> accept_message(const store::MessageRecord& message,
                                             std::span<const store::DeliveryBody> bodies) override {
    return inner_->accept_message(message, bodies);
  }
  Result<std::vector<store::DeliveryRecord>> claim_deliveries(const store::ClaimRequest& request) override {
    return inner_->claim_deliveries(request);
  }
  Result<std::size_t> mark_delivered(std::string_view mesh_id, std::string_view message_id,
                                     std::span<const std::string> recipient_keys, store::TimeMs now_ms) override {
    return inner_->mark_delivered(mesh_id, message_id, recipient_keys, now_ms);
  }
  Result<std::size_t> release_claims(std::string_view claimer) override { return inner_->release_claims(claimer); }
  Result<std::size_t> readdress_undelivered(std::string_view mesh_id, std::string_view from_key,
                                            std::string_view to_key) override {
    return inner_->readdress_undelivered(mesh_id, from_key, to_key);
  }
  Result<std::vector<store::RecipientRef>> recipients_with_work(store::TimeMs now_ms, std::size_t limit) override {
    return inner_->recipients_with_work(now_ms, limit);
  }
  Result<store::PurgeResult> purge(store::TimeMs now_ms, store::TimeMs retention_ms) override {
    return inner_->purge(now_ms, retention_ms);
  }
  Result<store::QueueStats> queue_stats(store::TimeMs now_ms) override { return inner_->queue_stats(now_ms); }
  Result<std::optional<std::pair<store::MessageRecord, std::vector<store::RecipientStatus>>>> message_status(
      std::string_view mesh_id, std::string_view message_id) override {
    return inner_->message_status(mesh_id, message_id);
  }

 private:
  std::unique_ptr<store::BrokerStore> inner_;
  int begins_ = 0;   // worker thread only
  int commits_ = 0;  // worker thread only
};

}  // namespace claudemesh::test
