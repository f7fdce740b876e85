// SPDX-License-Identifier: MIT
// The BrokerStore conformance suite: what src/store/broker_store.hpp promises, checked against a real store.
// Every implementation runs the same cases. A backend provides a fixture type, default-constructible, whose
// `store` member is a fresh, empty store, and instantiates the suite once, in one test file:
//
//   struct SqliteMemory { std::unique_ptr<store::BrokerStore> store = ...; };
//   TYPE_TO_STRING(SqliteMemory);
//   CLAUDEMESH_BROKER_STORE_CONFORMANCE(SqliteMemory, SqliteFile);
//
// Test names start with "broker store" (so `ctest -R store` selects them) and contain no commas (doctest
// filters split on them). Only what the interface promises is checked: not the order of results it leaves
// unordered (recipients_with_work, message_status), nor error messages.
#pragma once

#include "broker_store_conformance_support.hpp"

namespace claudemesh::store::conformance {

// ---- meshes and members ----

TEST_CASE_TEMPLATE_DEFINE("broker store: meshes", Fixture, broker_store_meshes) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  const MeshRecord mesh{.id = "mesh-a", .name = "Team A", .owner_pubkey = key(1), .created_at_ms = t0};
  MemberRecord owner = make_member("mesh-a", "owner-a", key(1), t0, "owner");
  owner.grants = {"invite", "ban"};
  owner.groups = {"ops", "ops/oncall"};
  owner.last_seen_at_ms = t0 + 5;
  REQUIRE(store.create_mesh(mesh, owner));

  SUBCASE("a created mesh is found with its fields and its owner is a member") {
    auto lookup = store.find_mesh("mesh-a");
    REQUIRE(lookup);
    REQUIRE(lookup->has_value());
    CHECK((*lookup)->id == mesh.id);
    CHECK((*lookup)->name == mesh.name);
    CHECK((*lookup)->owner_pubkey == mesh.owner_pubkey);
    CHECK((*lookup)->created_at_ms == mesh.created_at_ms);
    auto member = store.find_member("mesh-a", key(1));
    REQUIRE(member);
    REQUIRE(member->has_value());
    check_same_member(**member, owner);
  }
  SUBCASE("a second mesh with the same id is refused with already_exists and changes nothing") {
    const MeshRecord again{.id = "mesh-a", .name = "Other", .owner_pubkey = key(2), .created_at_ms = t0 + 1};
    auto created = store.create_mesh(again, make_member("mesh-a", "owner-b", key(2), t0, "owner"));
    REQUIRE_FALSE(created);
    CHECK(created.error() == Errc::already_exists);
    CHECK(found(store.find_mesh("mesh-a")).name == "Team A");
    CHECK(value_of(store.list_members("mesh-a")).size() == 1);
    CHECK_FALSE(exists(store.find_member("mesh-a", key(2))));
  }
  SUBCASE("an unknown mesh is not found and has no members") {
    auto lookup = store.find_mesh("mesh-z");
    REQUIRE(lookup);
    CHECK_FALSE(lookup->has_value());
    auto members = store.list_members("mesh-z");
    REQUIRE(members);
    CHECK(members->empty());
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: members", Fixture, broker_store_members) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");
  const MemberRecord bob = add_member(store, "mesh-a", "bob", key(2), t0 + 30);

  SUBCASE("a member is found by key and by id") {
    auto by_key = store.find_member("mesh-a", key(2));
    REQUIRE(by_key);
    REQUIRE(by_key->has_value());
    check_same_member(**by_key, bob);
    auto by_id = store.find_member_by_id("mesh-a", "bob");
    REQUIRE(by_id);
    REQUIRE(by_id->has_value());
    check_same_member(**by_id, bob);
  }
  SUBCASE("lookups are scoped to the mesh and unknown members are not found") {
    CHECK_FALSE(exists(store.find_member("mesh-b", key(2))));
    CHECK_FALSE(exists(store.find_member_by_id("mesh-b", "bob")));
    CHECK_FALSE(exists(store.find_member("mesh-a", key(99))));
    CHECK_FALSE(exists(store.find_member_by_id("mesh-a", "nobody")));
  }
  SUBCASE("list_members gives everyone in join order with revoked and banned members included") {
    add_member(store, "mesh-a", "carol", key(3), t0 + 10);
    add_member(store, "mesh-a", "dave", key(4), t0 + 20);
    MemberRecord carol = found(store.find_member_by_id("mesh-a", "carol"));
    carol.revoked_at_ms = t0 + 100;
    REQUIRE(store.update_member(carol));
    MemberRecord dave = found(store.find_member_by_id("mesh-a", "dave"));
    dave.banned_at_ms = t0 + 100;
    dave.ban_reason = "spam";
    REQUIRE(store.update_member(dave));
    auto members = store.list_members("mesh-a");
    REQUIRE(members);
    std::vector<std::string> order;
    for (const auto& m : *members) order.push_back(m.id);
    CHECK(order == ids({"mesh-a-owner", "carol", "dave", "bob"}));
    CHECK(value_of(store.list_members("mesh-b")).size() == 1);
  }
  SUBCASE("update_member replaces the mutable fields and keeps the rest") {
    MemberRecord changed = bob;
    changed.display_name = "Robert";
    changed.role = "admin";
    changed.grants = {"invite"};
    changed.groups = {"dev", "dev/backend"};
    changed.last_seen_at_ms = t0 + 40;
    changed.revoked_at_ms = t0 + 50;
    changed.banned_at_ms = t0 + 60;
    changed.ban_reason = "flooding";
    REQUIRE(store.update_member(changed));
    check_same_member(found(store.find_member("mesh-a", key(2))), changed);

    changed.revoked_at_ms.reset();  // unrevoke and unban
    changed.banned_at_ms.reset();
    changed.ban_reason.clear();
    changed.grants.clear();
    REQUIRE(store.update_member(changed));
    check_same_member(found(store.find_member_by_id("mesh-a", "bob")), changed);
  }
  SUBCASE("update_member does not change the key or the join time") {
    MemberRecord changed = bob;
    changed.pubkey = key(9);
    changed.joined_at_ms = t0 + 999;
    REQUIRE(store.update_member(changed));
    auto stored = found(store.find_member_by_id("mesh-a", "bob"));
    CHECK(stored.pubkey == key(2));
    CHECK(stored.joined_at_ms == t0 + 30);
    CHECK_FALSE(exists(store.find_member("mesh-a", key(9))));
  }
  SUBCASE("update_member of an unknown id is not_found") {
    auto updated = store.update_member(make_member("mesh-a", "nobody", key(7)));
    REQUIRE_FALSE(updated);
    CHECK(updated.error() == Errc::not_found);
  }
}

// ---- invites ----

TEST_CASE_TEMPLATE_DEFINE("broker store: invites", Fixture, broker_store_invites) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  InviteRecord invite = make_invite("inv-1", "mesh-a", 5);
  invite.role = "admin";
  REQUIRE(store.create_invite(invite));

  SUBCASE("a created invite is found with its fields") {
    auto lookup = store.find_invite("inv-1");
    REQUIRE(lookup);
    REQUIRE(lookup->has_value());
    const InviteRecord& got = **lookup;
    CHECK(got.id == invite.id);
    CHECK(got.mesh_id == invite.mesh_id);
    CHECK(got.role == "admin");
    CHECK(got.inviter_pubkey == invite.inviter_pubkey);
    CHECK(got.expires_at_s == invite.expires_at_s);
    CHECK(got.signature == invite.signature);
    CHECK(got.max_uses == 5);
    CHECK(got.uses == 0);
    CHECK(got.created_at_ms == invite.created_at_ms);
    CHECK_FALSE(got.revoked_at_ms.has_value());
  }
  SUBCASE("revoke_invite records when") {
    REQUIRE(store.revoke_invite("inv-1", t0 + 7));
    CHECK(found(store.find_invite("inv-1")).revoked_at_ms == t0 + 7);
  }
  SUBCASE("an unknown invite is not found and cannot be revoked") {
    auto lookup = store.find_invite("inv-404");
    REQUIRE(lookup);
    CHECK_FALSE(lookup->has_value());
    auto revoked = store.revoke_invite("inv-404", t0);
    REQUIRE_FALSE(revoked);
    CHECK(revoked.error() == Errc::not_found);
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: claim_invite", Fixture, broker_store_claim_invite) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a", key(1));
  add_mesh(store, "mesh-b", key(2));
  const auto uses_of = [&](const std::string& id) { return found(store.find_invite(id)).uses; };
  const auto refusal = [&](const std::string& invite_id, const std::string& pubkey, TimeMs now_ms) {
    auto claimed = store.claim_invite(invite_id, make_member("", "joiner-" + pubkey.substr(56), pubkey), now_ms);
    REQUIRE_FALSE(claimed);
    return claimed.error().errc();
  };

  SUBCASE("a claim inserts the member with the invite's mesh and role and uses one use") {
    InviteRecord invite = make_invite("inv-1", "mesh-a", 2);
    invite.role = "admin";
    REQUIRE(store.create_invite(invite));
    MemberRecord joiner = make_member("mesh-elsewhere", "joiner", key(3), t0 + 1, "member");
    joiner.groups = {"ops"};
    auto claimed = store.claim_invite("inv-1", joiner, t0 + 1);
    REQUIRE(claimed);
    CHECK(claimed->mesh_id == "mesh-a");
    CHECK(claimed->role == "admin");
    CHECK(claimed->id == "joiner");
    CHECK(claimed->pubkey == key(3));
    CHECK(claimed->groups == joiner.groups);
    check_same_member(found(store.find_member("mesh-a", key(3))), *claimed);
    CHECK(uses_of("inv-1") == 1);
  }
  SUBCASE("an invite with N uses admits N members then is exhausted") {
    REQUIRE(store.create_invite(make_invite("inv-3", "mesh-a", 3)));
    for (unsigned n = 10; n < 13; ++n) {
      REQUIRE(store.claim_invite("inv-3", make_member("", "m" + std::to_string(n), key(n)), t0));
    }
    CHECK(refusal("inv-3", key(13), t0) == Errc::exhausted);
    CHECK(uses_of("inv-3") == 3);
    CHECK_FALSE(exists(store.find_member("mesh-a", key(13))));
    CHECK(value_of(store.list_members("mesh-a")).size() == 4);
  }
  SUBCASE("an invite is refused from its expiry on") {
    InviteRecord invite = make_invite("inv-1", "mesh-a", 5);
    invite.expires_at_s = t0 / 1000 + 60;
    REQUIRE(store.create_invite(invite));
    CHECK(refusal("inv-1", key(3), invite.expires_at_s * 1000) == Errc::expired);
    CHECK(refusal("inv-1", key(3), invite.expires_at_s * 1000 + day_ms) == Errc::expired);
    CHECK(uses_of("inv-1") == 0);
    REQUIRE(store.claim_invite("inv-1", make_member("", "joiner", key(3)), invite.expires_at_s * 1000 - 1));
  }
  SUBCASE("a revoked invite is refused and revoked wins over expired") {
    REQUIRE(store.create_invite(make_invite("inv-1", "mesh-a", 5)));
    REQUIRE(store.revoke_invite("inv-1", t0));
    CHECK(refusal("inv-1", key(3), t0 + 1) == Errc::revoked);
    CHECK(refusal("inv-1", key(3), t0 + 30 * day_ms) == Errc::revoked);
    CHECK(uses_of("inv-1") == 0);
  }
  SUBCASE("exhausted wins over already a member") {
    REQUIRE(store.create_invite(make_invite("inv-1", "mesh-a", 1)));
    REQUIRE(store.claim_invite("inv-1", make_member("", "joiner", key(3)), t0));
    CHECK(refusal("inv-1", key(3), t0) == Errc::exhausted);
  }
  SUBCASE("a key already in the mesh is refused with already_exists and uses nothing") {
    REQUIRE(store.create_invite(make_invite("inv-1", "mesh-a", 5)));
    CHECK(refusal("inv-1", key(1), t0) == Errc::already_exists);
    CHECK(uses_of("inv-1") == 0);
    CHECK(value_of(store.list_members("mesh-a")).size() == 1);
  }
  SUBCASE("a member of another mesh may join with the same key") {
    REQUIRE(store.create_invite(make_invite("inv-1", "mesh-a", 5)));
    auto claimed = store.claim_invite("inv-1", make_member("", "b-owner-in-a", key(2)), t0);
    REQUIRE(claimed);
    CHECK(claimed->mesh_id == "mesh-a");
  }
  SUBCASE("an unknown invite is not_found") {
    CHECK(refusal("inv-404", key(3), t0) == Errc::not_found);
  }
}

// ---- sessions ----

TEST_CASE_TEMPLATE_DEFINE("broker store: sessions", Fixture, broker_store_sessions) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");
  REQUIRE(store.record_session({.mesh_id = "mesh-a", .session_pubkey = key(5), .member_id = "m1", .last_seen_at_ms = t0}));

  SUBCASE("a recorded session is found") {
    auto lookup = store.find_session("mesh-a", key(5));
    REQUIRE(lookup);
    REQUIRE(lookup->has_value());
    CHECK((*lookup)->mesh_id == "mesh-a");
    CHECK((*lookup)->session_pubkey == key(5));
    CHECK((*lookup)->member_id == "m1");
    CHECK((*lookup)->last_seen_at_ms == t0);
  }
  SUBCASE("recording it again refreshes its last seen time and member") {
    REQUIRE(store.record_session(
        {.mesh_id = "mesh-a", .session_pubkey = key(5), .member_id = "m2", .last_seen_at_ms = t0 + 9}));
    auto session = found(store.find_session("mesh-a", key(5)));
    CHECK(session.member_id == "m2");
    CHECK(session.last_seen_at_ms == t0 + 9);
  }
  SUBCASE("sessions are scoped to their mesh and unknown ones are not found") {
    CHECK_FALSE(exists(store.find_session("mesh-b", key(5))));
    CHECK_FALSE(exists(store.find_session("mesh-a", key(6))));
  }
}

// ---- accepting messages ----

TEST_CASE_TEMPLATE_DEFINE("broker store: accept_message and dedupe", Fixture, broker_store_accept) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");
  MessageRecord first = make_message("msg-1", "mesh-a");
  first.client_message_id = "client-1";
  first.request_fingerprint = std::string(64, 'f');
  const auto accepted = accept(store, first, {body_for(key(1)), body_for(key(2))});

  SUBCASE("a new message is accepted with one row per body and a dedupe entry") {
    CHECK(accepted.message_id == "msg-1");
    CHECK_FALSE(accepted.duplicate);
    CHECK(accepted.rows == 2);
    auto dedupe = store.find_dedupe("mesh-a", "client-1");
    REQUIRE(dedupe);
    REQUIRE(dedupe->has_value());
    CHECK((*dedupe)->message_id == "msg-1");
    CHECK((*dedupe)->request_fingerprint == first.request_fingerprint);
    CHECK((*dedupe)->first_seen_at_ms == t0);
    CHECK(stats(store, t0).undelivered == 2);
  }
  SUBCASE("the same client message id and fingerprint is a duplicate that writes nothing") {
    MessageRecord again = first;
    again.id = "msg-2";
    again.created_at_ms = t0 + 5;
    auto duplicate = accept(store, again, {body_for(key(3))});
    CHECK(duplicate.duplicate);
    CHECK(duplicate.message_id == "msg-1");
    CHECK(duplicate.rows == 0);
    CHECK(stats(store, t0).messages == 1);
    CHECK(stats(store, t0).undelivered == 2);
    CHECK_FALSE(exists(store.message_status("mesh-a", "msg-2")));
    CHECK(found(store.find_dedupe("mesh-a", "client-1")).first_seen_at_ms == t0);
  }
  SUBCASE("two absent fingerprints count as the same") {
    MessageRecord plain = make_message("msg-2", "mesh-a");
    plain.client_message_id = "client-2";
    accept(store, plain, {body_for(key(1))});
    plain.id = "msg-3";
    auto duplicate = accept(store, plain, {body_for(key(1))});
    CHECK(duplicate.duplicate);
    CHECK(duplicate.message_id == "msg-2");
    CHECK_FALSE(found(store.find_dedupe("mesh-a", "client-2")).request_fingerprint.has_value());
  }
  SUBCASE("a different fingerprint is idempotency_key_reused and writes nothing") {
    MessageRecord other = first;
    other.id = "msg-2";
    other.request_fingerprint = std::string(64, 'e');
    auto reused = store.accept_message(other, std::vector<DeliveryBody>{body_for(key(3))});
    REQUIRE_FALSE(reused);
    CHECK(reused.error() == Errc::idempotency_key_reused);
    other.request_fingerprint.reset();
    reused = store.accept_message(other, std::vector<DeliveryBody>{body_for(key(3))});
    REQUIRE_FALSE(reused);
    CHECK(reused.error() == Errc::idempotency_key_reused);
    CHECK(stats(store, t0).messages == 1);
    CHECK(found(store.find_dedupe("mesh-a", "client-1")).message_id == "msg-1");
  }
  SUBCASE("a fingerprint where the first had none is idempotency_key_reused") {
    MessageRecord plain = make_message("msg-2", "mesh-a");
    plain.client_message_id = "client-2";
    accept(store, plain, {});
    plain.id = "msg-3";
    plain.request_fingerprint = std::string(64, 'f');
    auto reused = store.accept_message(plain, {});
    REQUIRE_FALSE(reused);
    CHECK(reused.error() == Errc::idempotency_key_reused);
  }
  SUBCASE("messages without a client message id are never deduplicated") {
    MessageRecord plain = make_message("msg-2", "mesh-a");
    CHECK_FALSE(accept(store, plain, {body_for(key(1))}).duplicate);
    plain.id = "msg-3";
    CHECK_FALSE(accept(store, plain, {body_for(key(1))}).duplicate);
    CHECK(stats(store, t0).messages == 3);
  }
  SUBCASE("client message ids are scoped to the mesh") {
    MessageRecord elsewhere = first;
    elsewhere.id = "msg-b1";
    elsewhere.mesh_id = "mesh-b";
    auto result = accept(store, elsewhere, {body_for(key(1))});
    CHECK_FALSE(result.duplicate);
    CHECK(result.message_id == "msg-b1");
    CHECK(found(store.find_dedupe("mesh-b", "client-1")).message_id == "msg-b1");
    CHECK_FALSE(exists(store.find_dedupe("mesh-b", "client-2")));
  }
  SUBCASE("a failed accept leaves no dedupe entry and no rows") {
    MessageRecord clash = make_message("msg-1", "mesh-a");  // the id of a stored message
    clash.client_message_id = "client-9";
    auto failed = store.accept_message(clash, std::vector<DeliveryBody>{body_for(key(3))});
    CHECK_FALSE(failed);
    CHECK_FALSE(exists(store.find_dedupe("mesh-a", "client-9")));
    CHECK(stats(store, t0).undelivered == 2);
    CHECK(claim(store, claim_request("mesh-a", {key(3)}, t0)).empty());
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: accept_message bodies", Fixture, broker_store_accept_bodies) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");

  SUBCASE("a message with no bodies is stored with no rows") {
    auto accepted = accept(store, make_message("msg-0", "mesh-a"), {});
    CHECK(accepted.rows == 0);
    CHECK_FALSE(accepted.duplicate);
    auto status = store.message_status("mesh-a", "msg-0");
    REQUIRE(status);
    REQUIRE(status->has_value());
    CHECK((*status)->second.empty());
    CHECK(stats(store, t0).messages == 1);
    CHECK(stats(store, t0).undelivered == 0);
  }
  SUBCASE("a message with a hundred bodies gives each recipient its own copy") {
    std::vector<DeliveryBody> bodies;
    for (unsigned n = 0; n < 100; ++n) bodies.push_back(body_for(key(100 + n), "member-" + std::to_string(n)));
    CHECK(accept(store, make_message("msg-100", "mesh-a"), bodies).rows == 100);
    CHECK(stats(store, t0).undelivered == 100);
    for (unsigned n : {0U, 42U, 99U}) {
      auto rows = claim(store, claim_request("mesh-a", {key(100 + n)}, t0));
      REQUIRE(rows.size() == 1);
      CHECK(rows[0].body.recipient_key == key(100 + n));
      CHECK(rows[0].body.recipient_member_id == "member-" + std::to_string(n));
      CHECK(rows[0].body.nonce == bodies[n].nonce);
      CHECK(rows[0].body.ciphertext == bodies[n].ciphertext);
    }
  }
  SUBCASE("every message field comes back with the claimed row") {
    MessageRecord full = make_message("msg-full", "mesh-a", t0, "low", day_ms);
    full.sender_member_id = "sender-member";
    full.sender_pubkey = key(40);
    full.sender_member_pubkey = key(41);
    full.target_spec = "@ops/oncall";
    full.client_message_id = "client-full";
    full.request_fingerprint = std::string(64, 'c');
    full.reply_to_id = "msg-earlier";
    accept(store, full, {body_for(key(1))});
    auto rows = claim(store, claim_request("mesh-a", {key(1)}, t0 + 1));
    REQUIRE(rows.size() == 1);
    check_same_message(rows[0].message, full);
    MessageRecord bare = make_message("msg-bare", "mesh-a", t0 + 2);
    accept(store, bare, {body_for(key(2))});
    rows = claim(store, claim_request("mesh-a", {key(2)}, t0 + 3));
    REQUIRE(rows.size() == 1);
    check_same_message(rows[0].message, bare);
  }
}

// ---- claiming ----

TEST_CASE_TEMPLATE_DEFINE("broker store: claim_deliveries leases", Fixture, broker_store_claim_leases) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  send(store, make_message("msg-1", "mesh-a"), {key(1)});
  const auto first = claim(store, claim_request("mesh-a", {key(1)}, t0 + 1, "conn-1"));
  REQUIRE(first.size() == 1);

  SUBCASE("a claim leases the row and counts an attempt") {
    CHECK(first[0].attempts == 1);
    CHECK(first[0].lease_until_ms == t0 + 1 + lease_ms);
    CHECK(first[0].seq > 0);
  }
  SUBCASE("a leased row is not claimed again while the lease runs") {
    CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0 + 1, "conn-1")).empty());
    CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0 + lease_ms, "conn-2")).empty());
  }
  SUBCASE("a row is claimed again once its lease is over with one more attempt") {
    auto again = claim(store, claim_request("mesh-a", {key(1)}, t0 + 1 + lease_ms, "conn-2"));
    REQUIRE(again.size() == 1);
    CHECK(again[0].seq == first[0].seq);
    CHECK(again[0].attempts == 2);
    CHECK(again[0].lease_until_ms == t0 + 1 + 2 * lease_ms);
    CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0 + 2 + lease_ms, "conn-1")).empty());
  }
  SUBCASE("the lease length is the request's") {
    send(store, make_message("msg-2", "mesh-a", t0 + 1), {key(2)});
    ClaimRequest request = claim_request("mesh-a", {key(2)}, t0 + 2);
    request.lease_ms = 5;
    REQUIRE(claim(store, request).size() == 1);
    CHECK(claim(store, claim_request("mesh-a", {key(2)}, t0 + 6)).empty());
    CHECK(claim(store, claim_request("mesh-a", {key(2)}, t0 + 7)).size() == 1);
  }
  SUBCASE("a delivered row is never claimed again") {
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 2) == 1);
    CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0 + 10 * lease_ms)).empty());
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: claim_deliveries selection", Fixture, broker_store_claim_selection) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");

  SUBCASE("rows come in creation order across the claimer's keys") {
    send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1)});
    send(store, make_message("msg-2", "mesh-a", t0 + 2), {key(2)});
    send(store, make_message("msg-3", "mesh-a", t0 + 3), {key(1), key(2)});
    send(store, make_message("msg-4", "mesh-a", t0 + 4), {key(2)});
    send(store, make_message("msg-5", "mesh-a", t0 + 5), {key(1)});
    auto rows = claim(store, claim_request("mesh-a", {key(2), key(1)}, t0 + 10));
    CHECK(message_ids(rows) == ids({"msg-1", "msg-2", "msg-3", "msg-3", "msg-4", "msg-5"}));
    CHECK(std::is_sorted(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; }));
  }
  SUBCASE("limit caps a claim and the next claim takes the following rows") {
    for (int n = 1; n <= 5; ++n) {
      send(store, make_message("msg-" + std::to_string(n), "mesh-a", t0 + n), {n % 2 == 0 ? key(1) : key(2)});
    }
    ClaimRequest request = claim_request("mesh-a", {key(1), key(2)}, t0 + 10);
    request.limit = 2;
    CHECK(message_ids(claim(store, request)) == ids({"msg-1", "msg-2"}));
    CHECK(message_ids(claim(store, request)) == ids({"msg-3", "msg-4"}));
    CHECK(message_ids(claim(store, request)) == ids({"msg-5"}));
    CHECK(claim(store, request).empty());
  }
  SUBCASE("a claimer gets only rows addressed to its own keys") {
    send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1), key(3)});
    send(store, make_message("msg-2", "mesh-a", t0 + 2), {key(3)});
    auto rows = claim(store, claim_request("mesh-a", {key(1)}, t0 + 10));
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].body.recipient_key == key(1));
    CHECK(message_ids(claim(store, claim_request("mesh-a", {key(3)}, t0 + 10))) == ids({"msg-1", "msg-2"}));
  }
  SUBCASE("rows of another mesh are not claimed") {
    send(store, make_message("msg-b", "mesh-b", t0 + 1), {key(1)});
    send(store, make_message("msg-a", "mesh-a", t0 + 2), {key(1)});
    CHECK(message_ids(claim(store, claim_request("mesh-a", {key(1)}, t0 + 10))) == ids({"msg-a"}));
    CHECK(message_ids(claim(store, claim_request("mesh-b", {key(1)}, t0 + 10))) == ids({"msg-b"}));
  }
  SUBCASE("rows of an expired message are never claimed") {
    send(store, make_message("msg-short", "mesh-a", t0, "now", 100), {key(1)});
    send(store, make_message("msg-long", "mesh-a", t0, "now", 101), {key(1)});
    CHECK(message_ids(claim(store, claim_request("mesh-a", {key(1)}, t0 + 100))) == ids({"msg-long"}));
  }
  SUBCASE("an expired lease on an expired message does not bring it back") {
    send(store, make_message("msg-1", "mesh-a", t0, "now", lease_ms), {key(1)});
    REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0)).size() == 1);
    CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0 + lease_ms)).empty());
  }
  SUBCASE("no keys or a zero limit claim nothing") {
    send(store, make_message("msg-1", "mesh-a"), {key(1)});
    CHECK(claim(store, claim_request("mesh-a", {}, t0)).empty());
    ClaimRequest request = claim_request("mesh-a", {key(1)}, t0);
    request.limit = 0;
    CHECK(claim(store, request).empty());
    CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0)).size() == 1);
  }
  SUBCASE("a key named twice in a request gives each row once") {
    send(store, make_message("msg-1", "mesh-a"), {key(1)});
    auto rows = claim(store, claim_request("mesh-a", {key(1), key(1)}, t0));
    CHECK(rows.size() == 1);
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: claim_deliveries priority gating", Fixture, broker_store_claim_priority) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  send(store, make_message("msg-next", "mesh-a", t0 + 1, "next"), {key(1)});
  send(store, make_message("msg-now", "mesh-a", t0 + 2, "now"), {key(1)});
  send(store, make_message("msg-low", "mesh-a", t0 + 3, "low"), {key(1)});
  ClaimRequest gated = claim_request("mesh-a", {key(1)}, t0 + 10);
  gated.all_priorities = false;
  gated.max_hold_ms = 60'000;

  SUBCASE("without all priorities only \"now\" rows are claimed") {
    CHECK(message_ids(claim(store, gated)) == ids({"msg-now"}));
    CHECK(message_ids(claim(store, claim_request("mesh-a", {key(1)}, t0 + 10))) == ids({"msg-next", "msg-low"}));
  }
  SUBCASE("rows held for max_hold_ms are claimed whatever their priority") {
    gated.now_ms = t0 + 1 + 60'000;  // msg-next has waited exactly max_hold_ms; msg-low not yet
    CHECK(message_ids(claim(store, gated)) == ids({"msg-next", "msg-now"}));
    gated.now_ms = t0 + 3 + 60'000;
    CHECK(message_ids(claim(store, gated)) == ids({"msg-low"}));
  }
}

// ---- acknowledging and releasing ----

TEST_CASE_TEMPLATE_DEFINE("broker store: mark_delivered", Fixture, broker_store_mark_delivered) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");
  send(store, make_message("msg-1", "mesh-a"), {key(1), key(2), key(3)});
  REQUIRE(claim(store, claim_request("mesh-a", {key(1), key(2)}, t0)).size() == 2);

  SUBCASE("only the rows of the given keys are marked") {
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 5) == 1);
    auto status = found(store.message_status("mesh-a", "msg-1"));
    for (const auto& recipient : status.second) {
      const bool is_first = recipient.recipient_key == key(1);
      CHECK(recipient.delivered == is_first);
      CHECK(recipient.delivered_at_ms == (is_first ? std::optional<TimeMs>(t0 + 5) : std::nullopt));
    }
    CHECK(message_ids(claim(store, claim_request("mesh-a", {key(1), key(2)}, t0 + lease_ms))) == ids({"msg-1"}));
  }
  SUBCASE("it is idempotent") {
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 5) == 1);
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 6) == 0);
    for (const auto& recipient : found(store.message_status("mesh-a", "msg-1")).second) {
      if (recipient.recipient_key == key(1)) CHECK(recipient.delivered_at_ms == t0 + 5);
    }
  }
  SUBCASE("it counts every row newly marked") {
    CHECK(mark(store, "mesh-a", "msg-1", {key(1), key(2), key(3)}, t0 + 5) == 3);
    CHECK(mark(store, "mesh-a", "msg-1", {key(1), key(2), key(3)}, t0 + 5) == 0);
    CHECK(stats(store, t0 + 5).undelivered == 0);
  }
  SUBCASE("another mesh or an unknown message marks nothing") {
    CHECK(mark(store, "mesh-b", "msg-1", {key(1)}, t0 + 5) == 0);
    CHECK(mark(store, "mesh-a", "msg-404", {key(1)}, t0 + 5) == 0);
    CHECK(mark(store, "mesh-a", "msg-1", {key(9)}, t0 + 5) == 0);
    CHECK(mark(store, "mesh-a", "msg-1", {}, t0 + 5) == 0);
    CHECK(stats(store, t0 + 5).undelivered == 3);
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: release_claims", Fixture, broker_store_release) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1), key(2)});
  send(store, make_message("msg-2", "mesh-a", t0 + 2), {key(1)});
  REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0 + 10, "conn-1")).size() == 2);
  REQUIRE(claim(store, claim_request("mesh-a", {key(2)}, t0 + 10, "conn-2")).size() == 1);

  SUBCASE("the claimer's leases end so its rows can be claimed at once") {
    auto released = store.release_claims("conn-1");
    REQUIRE(released);
    CHECK(*released == 2);
    auto again = claim(store, claim_request("mesh-a", {key(1), key(2)}, t0 + 11, "conn-3"));
    CHECK(message_ids(again) == ids({"msg-1", "msg-2"}));
    for (const auto& row : again) {
      CHECK(row.body.recipient_key == key(1));
      CHECK(row.attempts == 2);
    }
  }
  SUBCASE("delivered rows are not released") {
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 11) == 1);
    CHECK(value_of(store.release_claims("conn-1")) == 1);
  }
  SUBCASE("an unknown claimer releases nothing") {
    CHECK(value_of(store.release_claims("conn-404")) == 0);
    CHECK(stats(store, t0 + 11).leased == 3);
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: readdress_undelivered", Fixture, broker_store_readdress) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");
  send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1)});
  send(store, make_message("msg-2", "mesh-a", t0 + 2), {key(1), key(2)});
  send(store, make_message("msg-3", "mesh-a", t0 + 3), {key(1)});
  send(store, make_message("msg-4", "mesh-b", t0 + 4), {key(1)});
  REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0 + 10, "conn-1")).size() == 3);
  CHECK(mark(store, "mesh-a", "msg-3", {key(1)}, t0 + 11) == 1);

  auto moved = store.readdress_undelivered("mesh-a", key(1), key(3));
  REQUIRE(moved);
  CHECK(*moved == 2);  // msg-1 and msg-2; msg-3 was delivered, msg-4 is another mesh
  // The leases ended with the move: the new key claims them at once, in creation order.
  auto rows = claim(store, claim_request("mesh-a", {key(3)}, t0 + 12, "conn-2"));
  CHECK(message_ids(rows) == ids({"msg-1", "msg-2"}));
  for (const auto& row : rows) CHECK(row.body.recipient_key == key(3));
  CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0 + 100'000, "conn-3")).empty());
  CHECK(claim(store, claim_request("mesh-b", {key(1)}, t0 + 12, "conn-4")).size() == 1);
  CHECK(value_of(store.readdress_undelivered("mesh-a", key(9), key(3))) == 0);
}

TEST_CASE_TEMPLATE_DEFINE("broker store: recipients_with_work", Fixture, broker_store_work) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");
  using Refs = std::set<std::pair<std::string, std::string>>;
  const auto work = [&](TimeMs now_ms, std::size_t limit = 100) {
    auto refs = store.recipients_with_work(now_ms, limit);
    REQUIRE(refs);
    return *refs;
  };

  SUBCASE("each key with never-claimed rows is listed once with its mesh") {
    send(store, make_message("msg-1", "mesh-a", t0), {key(1), key(2)});
    send(store, make_message("msg-2", "mesh-a", t0 + 1), {key(1)});
    send(store, make_message("msg-3", "mesh-b", t0 + 2), {key(1)});
    auto refs = work(t0 + 5);
    CHECK(refs.size() == 3);
    CHECK(as_set(refs) == Refs{{"mesh-a", key(1)}, {"mesh-a", key(2)}, {"mesh-b", key(1)}});
  }
  SUBCASE("a key under lease has work again when the lease is over") {
    send(store, make_message("msg-1", "mesh-a", t0), {key(1)});
    REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0)).size() == 1);
    CHECK(work(t0 + lease_ms - 1).empty());
    CHECK(as_set(work(t0 + lease_ms)) == Refs{{"mesh-a", key(1)}});
  }
  SUBCASE("delivered and expired rows are not work") {
    send(store, make_message("msg-1", "mesh-a", t0), {key(1)});
    send(store, make_message("msg-2", "mesh-a", t0, "next", 50), {key(2)});
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 1) == 1);
    CHECK(as_set(work(t0 + 49)) == Refs{{"mesh-a", key(2)}});
    CHECK(work(t0 + 50).empty());
  }
  SUBCASE("at most limit keys are listed") {
    send(store, make_message("msg-1", "mesh-a", t0), {key(1), key(2), key(3)});
    CHECK(work(t0 + 1, 2).size() == 2);
    CHECK(work(t0 + 1, 0).empty());
  }
}

// ---- housekeeping and reporting ----

TEST_CASE_TEMPLATE_DEFINE("broker store: purge", Fixture, broker_store_purge) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  const TimeMs retention = day_ms;
  const auto purge = [&](TimeMs now_ms) {
    auto purged = store.purge(now_ms, retention);
    REQUIRE(purged);
    return *purged;
  };

  SUBCASE("undelivered rows of expired messages go and so do their messages") {
    send(store, make_message("msg-short", "mesh-a", t0, "next", 1'000), {key(1), key(2)});
    send(store, make_message("msg-long", "mesh-a", t0, "next", 10'000), {key(1)});
    CHECK(purge(t0 + 999).expired_deliveries == 0);
    auto purged = purge(t0 + 1'000);
    CHECK(purged.expired_deliveries == 2);
    CHECK(purged.messages_pruned == 1);
    CHECK(purged.delivered_pruned == 0);
    CHECK_FALSE(exists(store.message_status("mesh-a", "msg-short")));
    CHECK(exists(store.message_status("mesh-a", "msg-long")));
    CHECK(stats(store, t0 + 1'000).undelivered == 1);
  }
  SUBCASE("delivered rows older than the retention go and so does their message") {
    send(store, make_message("msg-1", "mesh-a", t0), {key(1)});
    send(store, make_message("msg-2", "mesh-a", t0), {key(1)});
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 10) == 1);
    CHECK(mark(store, "mesh-a", "msg-2", {key(1)}, t0 + 20) == 1);
    CHECK(purge(t0 + 10 + retention).delivered_pruned == 0);  // not older than the retention yet
    auto purged = purge(t0 + 11 + retention);
    CHECK(purged.delivered_pruned == 1);
    CHECK(purged.messages_pruned == 1);
    CHECK(purged.expired_deliveries == 0);
    CHECK_FALSE(exists(store.message_status("mesh-a", "msg-1")));
    CHECK(found(store.message_status("mesh-a", "msg-2")).second.size() == 1);
  }
  SUBCASE("a message stays while any of its rows does") {
    send(store, make_message("msg-1", "mesh-a", t0, "next", 30 * day_ms), {key(1), key(2)});
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 1) == 1);
    auto purged = purge(t0 + 2 * retention);
    CHECK(purged.delivered_pruned == 1);
    CHECK(purged.messages_pruned == 0);
    auto status = found(store.message_status("mesh-a", "msg-1"));
    REQUIRE(status.second.size() == 1);
    CHECK(status.second[0].recipient_key == key(2));
  }
  SUBCASE("a message accepted with no bodies is not dropped at once") {
    accept(store, make_message("msg-0", "mesh-a", t0), {});
    CHECK(purge(t0 + 1).messages_pruned == 0);
    CHECK(exists(store.message_status("mesh-a", "msg-0")));
    CHECK(purge(t0 + 7 * day_ms).messages_pruned == 1);  // once it expires
  }
  SUBCASE("dedupe entries older than the retention go and their id may be used again") {
    MessageRecord old_message = make_message("msg-1", "mesh-a", t0);
    old_message.client_message_id = "client-1";
    accept(store, old_message, {body_for(key(1))});
    MessageRecord young = make_message("msg-2", "mesh-a", t0 + 100);
    young.client_message_id = "client-2";
    accept(store, young, {body_for(key(1))});
    auto purged = purge(t0 + 1 + retention);
    CHECK(purged.dedupe_pruned == 1);
    CHECK_FALSE(exists(store.find_dedupe("mesh-a", "client-1")));
    CHECK(exists(store.find_dedupe("mesh-a", "client-2")));
    MessageRecord reuse = make_message("msg-3", "mesh-a", t0 + 1 + retention);
    reuse.client_message_id = "client-1";
    CHECK_FALSE(accept(store, reuse, {body_for(key(1))}).duplicate);
  }
  SUBCASE("nothing young is touched") {
    send(store, make_message("msg-1", "mesh-a", t0), {key(1), key(2)});
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + 1) == 1);
    auto purged = purge(t0 + 2);
    CHECK(purged.expired_deliveries == 0);
    CHECK(purged.delivered_pruned == 0);
    CHECK(purged.messages_pruned == 0);
    CHECK(purged.dedupe_pruned == 0);
    CHECK(found(store.message_status("mesh-a", "msg-1")).second.size() == 2);
  }
}

TEST_CASE_TEMPLATE_DEFINE("broker store: queue_stats", Fixture, broker_store_stats) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  CHECK(stats(store, t0).undelivered == 0);
  CHECK(stats(store, t0).leased == 0);
  CHECK(stats(store, t0).messages == 0);
  send(store, make_message("msg-1", "mesh-a", t0), {key(1), key(2)});
  send(store, make_message("msg-2", "mesh-a", t0), {key(1)});
  accept(store, make_message("msg-3", "mesh-a", t0), {});
  REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0)).size() == 2);
  CHECK(mark(store, "mesh-a", "msg-2", {key(1)}, t0 + 1) == 1);

  auto now = stats(store, t0 + 1);
  CHECK(now.undelivered == 2);
  CHECK(now.leased == 1);  // msg-1 for key(1); msg-2's row is delivered
  CHECK(now.messages == 3);
  CHECK(stats(store, t0 + lease_ms).leased == 0);  // the lease is over
  CHECK(stats(store, t0 + lease_ms).undelivered == 2);
}

TEST_CASE_TEMPLATE_DEFINE("broker store: message_status", Fixture, broker_store_message_status) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  add_mesh(store, "mesh-b");
  MessageRecord message = make_message("msg-1", "mesh-a", t0, "now");
  message.client_message_id = "client-1";
  send(store, message, {key(1), key(2)});

  SUBCASE("the message and each recipient's state") {
    REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0)).size() == 1);
    REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0 + lease_ms)).size() == 1);
    CHECK(mark(store, "mesh-a", "msg-1", {key(1)}, t0 + lease_ms + 3) == 1);
    auto status = store.message_status("mesh-a", "msg-1");
    REQUIRE(status);
    REQUIRE(status->has_value());
    check_same_message((*status)->first, message);
    auto recipients = (*status)->second;
    REQUIRE(recipients.size() == 2);
    std::sort(recipients.begin(), recipients.end(),
              [](const auto& a, const auto& b) { return a.recipient_key < b.recipient_key; });
    CHECK(recipients[0].recipient_key == key(1));
    CHECK(recipients[0].delivered);
    CHECK(recipients[0].delivered_at_ms == t0 + lease_ms + 3);
    CHECK(recipients[0].attempts == 2);
    CHECK(recipients[1].recipient_key == key(2));
    CHECK_FALSE(recipients[1].delivered);
    CHECK_FALSE(recipients[1].delivered_at_ms.has_value());
    CHECK(recipients[1].attempts == 0);
  }
  SUBCASE("an unknown message or one of another mesh is empty") {
    auto unknown = store.message_status("mesh-a", "msg-404");
    REQUIRE(unknown);
    CHECK_FALSE(unknown->has_value());
    auto elsewhere = store.message_status("mesh-b", "msg-1");
    REQUIRE(elsewhere);
    CHECK_FALSE(elsewhere->has_value());
  }
}

// ---- batches ----

TEST_CASE_TEMPLATE_DEFINE("broker store: batches", Fixture, broker_store_batches) {
  Fixture fixture;
  BrokerStore& store = *fixture.store;
  add_mesh(store, "mesh-a");
  MessageRecord keyed = make_message("msg-keyed", "mesh-a");
  keyed.client_message_id = "client-1";
  keyed.request_fingerprint = std::string(64, 'a');
  send(store, keyed, {key(1)});
  REQUIRE(store.create_invite(make_invite("inv-1", "mesh-a", 1)));
  REQUIRE(store.claim_invite("inv-1", make_member("", "joiner", key(2)), t0));

  SUBCASE("every operation of a committed batch is kept") {
    REQUIRE(store.begin_batch());
    send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1)});
    send(store, make_message("msg-2", "mesh-a", t0 + 2), {key(1)});
    REQUIRE(store.record_session({.mesh_id = "mesh-a", .session_pubkey = key(5), .member_id = "joiner",
                                  .last_seen_at_ms = t0}));
    REQUIRE(store.commit_batch());
    CHECK(stats(store, t0).messages == 3);
    CHECK(exists(store.find_session("mesh-a", key(5))));
  }
  SUBCASE("operations inside a batch see the batch's earlier writes") {
    REQUIRE(store.begin_batch());
    send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(3)});
    CHECK(message_ids(claim(store, claim_request("mesh-a", {key(3)}, t0 + 1))) == ids({"msg-1"}));
    REQUIRE(store.commit_batch());
    CHECK(stats(store, t0 + 1).leased == 1);
  }
  SUBCASE("rollback_batch discards every operation of the batch") {
    REQUIRE(store.begin_batch());
    send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1)});
    add_mesh(store, "mesh-b");
    REQUIRE(claim(store, claim_request("mesh-a", {key(1)}, t0 + 1)).size() == 2);
    store.rollback_batch();
    CHECK(stats(store, t0 + 1).messages == 1);
    CHECK(stats(store, t0 + 1).leased == 0);
    CHECK_FALSE(exists(store.find_mesh("mesh-b")));
    CHECK(claim(store, claim_request("mesh-a", {key(1)}, t0 + 1)).size() == 1);  // usable afterwards
  }
  SUBCASE("a failing operation inside a batch undoes only itself") {
    REQUIRE(store.begin_batch());
    send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1)});
    MessageRecord reused = keyed;
    reused.id = "msg-reused";
    reused.request_fingerprint = std::string(64, 'b');
    CHECK_FALSE(store.accept_message(reused, std::vector<DeliveryBody>{body_for(key(1))}));
    CHECK_FALSE(store.claim_invite("inv-1", make_member("", "late", key(3)), t0));  // exhausted
    CHECK_FALSE(store.create_mesh(MeshRecord{.id = "mesh-a", .name = "again", .owner_pubkey = key(4)},
                                  make_member("mesh-a", "other-owner", key(4))));
    CHECK_FALSE(store.update_member(make_member("mesh-a", "nobody", key(5))));
    send(store, make_message("msg-2", "mesh-a", t0 + 2), {key(1)});
    REQUIRE(store.commit_batch());
    CHECK(message_ids(claim(store, claim_request("mesh-a", {key(1)}, t0 + 3))) ==
          ids({"msg-keyed", "msg-1", "msg-2"}));
    CHECK(found(store.find_invite("inv-1")).uses == 1);
    CHECK_FALSE(exists(store.find_member("mesh-a", key(3))));
    CHECK(found(store.find_mesh("mesh-a")).name == "mesh mesh-a");
  }
  SUBCASE("operations outside a batch each stand alone") {
    CHECK_FALSE(store.claim_invite("inv-1", make_member("", "late", key(3)), t0));
    send(store, make_message("msg-1", "mesh-a", t0 + 1), {key(1)});
    CHECK(stats(store, t0).messages == 2);
  }
}

}  // namespace claudemesh::store::conformance

/// Runs every conformance case for each fixture type named. Use at namespace scope, once per test program.
#define CLAUDEMESH_BROKER_STORE_CONFORMANCE(...)                                                      \
  namespace claudemesh::store::conformance {                                                          \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_meshes, __VA_ARGS__);                                        \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_readdress, __VA_ARGS__);                                     \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_members, __VA_ARGS__);                                       \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_invites, __VA_ARGS__);                                       \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_claim_invite, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_sessions, __VA_ARGS__);                                      \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_accept, __VA_ARGS__);                                        \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_accept_bodies, __VA_ARGS__);                                 \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_claim_leases, __VA_ARGS__);                                  \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_claim_selection, __VA_ARGS__);                               \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_claim_priority, __VA_ARGS__);                                \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_mark_delivered, __VA_ARGS__);                                \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_release, __VA_ARGS__);                                       \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_work, __VA_ARGS__);                                          \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_purge, __VA_ARGS__);                                         \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_stats, __VA_ARGS__);                                         \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_message_status, __VA_ARGS__);                                \
  TEST_CASE_TEMPLATE_INVOKE(broker_store_batches, __VA_ARGS__);                                       \
  }                                                                                                   \
  static_assert(true)
