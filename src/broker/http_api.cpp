// SPDX-License-Identifier: MIT
// The broker's HTTP API: meshes, members, invites, moderation, health and metrics (docs/protocol.md §7).
// Every mutating or member-only route is a signed request (`claudemesh-request-v1`), checked for skew and
// replay before anything else.
#include "broker/broker_impl.hpp"
#include "transport/http/status.hpp"

#include <claudemesh/password.hpp>
#include <claudemesh/signatures.hpp>
#include <claudemesh/target.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace claudemesh {

using broker::MeshState;
using broker::wire::Json;
namespace wire = broker::wire;
namespace http = transport::http;

namespace {

constexpr std::size_t kMaxInviteUses = 1000;
constexpr std::int64_t kReplayWindowMs = 2 * max_clock_skew_ms + 1000;

http::HttpResponse json_response(int status, const Json& body) {
  http::HttpResponse response;
  response.status = status;
  response.headers.set("Content-Type", "application/json");
  response.body = wire::dump(body);
  return response;
}

http::HttpResponse error_response(const Error& error) {
  return json_response(http::status_for(error.errc()),
                       Json{{"error", {{"code", wire_name(error.errc())}, {"message", error.message}}}});
}

Json mesh_json(const store::MeshRecord& mesh) {
  return Json{{"id", mesh.id},
              {"name", mesh.name},
              {"ownerPubkey", mesh.owner_pubkey},
              {"createdAt", wire::iso_time(mesh.created_at_ms)}};
}

Json invite_json(const store::InviteRecord& invite) {
  return Json{{"inviteId", invite.id},          {"meshId", invite.mesh_id},
              {"role", invite.role},            {"inviterPubkey", invite.inviter_pubkey},
              {"expiresAt", invite.expires_at_s}, {"signature", invite.signature},
              {"maxUses", invite.max_uses},     {"uses", invite.uses},
              {"revoked", invite.revoked_at_ms.has_value()}};
}

bool is_admin(const store::MemberRecord& member) { return member.role == "owner" || member.role == "admin"; }

Result<Json> body_object(const http::Request& request) {
  if (request.message.body.empty()) return Json::object();
  return wire::parse_object(request.message.body);
}

Result<std::string> display_name_from(const Json& body) {
  auto name = wire::required_string(body, "displayName", max_target_name_length);
  if (!name) return fail(name.error());
  auto parsed = parse_target(*name);
  if (!parsed || parsed->kind != TargetKind::name) {
    return fail(Errc::invalid_value, "displayName must be 1-64 printable characters and not look like a key");
  }
  return name;
}

}  // namespace

void Broker::Impl::add_http_routes(http::Router& router) {
  // ---- signed-request check: headers → signature → replay ----
  auto authenticate = [this](const http::Request& request) -> Result<std::string> {
    const auto& headers = request.message.headers;
    auto pubkey = headers.get("X-Claudemesh-Pubkey");
    auto timestamp = headers.get("X-Claudemesh-Timestamp");
    auto signature = headers.get("X-Claudemesh-Signature");
    if (!pubkey || !timestamp || !signature) {
      return fail(Errc::unauthorized,
                  "sign the request: X-Claudemesh-Pubkey, X-Claudemesh-Timestamp, X-Claudemesh-Signature");
    }
    std::int64_t ts = 0;
    const std::string ts_text(*timestamp);
    char* end = nullptr;
    errno = 0;
    ts = std::strtoll(ts_text.c_str(), &end, 10);
    if (ts_text.empty() || *end != '\0' || errno != 0) {
      return fail(Errc::malformed, "X-Claudemesh-Timestamp must be Unix milliseconds");
    }
    RequestProof proof{std::string(*pubkey), ts, std::string(*signature)};
    const auto now = now_ms();
    if (auto ok = verify_request(proof, request.message.method, request.message.target, request.message.body, now);
        !ok) {
      return fail(ok.error());
    }
    while (!seen_signatures_.empty() && seen_signatures_.front().first < now) {
      seen_signature_set_.erase(seen_signatures_.front().second);
      seen_signatures_.pop_front();
    }
    if (!seen_signature_set_.insert(proof.signature).second) {
      return fail(Errc::replayed, "this signed request was already used");
    }
    seen_signatures_.emplace_back(now + kReplayWindowMs, proof.signature);
    return proof.pubkey;
  };

  // The caller must be an active member of the mesh in the path.
  struct Caller {
    MeshState* mesh = nullptr;
    store::MemberRecord* member = nullptr;
  };
  auto member_of = [this](std::string mesh_id, std::string pubkey) -> asio::awaitable<Result<Caller>> {
    auto mesh = co_await load_mesh(std::move(mesh_id));
    if (!mesh) {
      co_return fail(mesh.error().errc() == Errc::not_found ? Error{Errc::not_a_member, "not a member of this mesh"}
                                                           : mesh.error());
    }
    auto it = (*mesh)->members.find(pubkey);
    if (it == (*mesh)->members.end()) co_return fail(Errc::not_a_member, "not a member of this mesh");
    if (it->second.revoked_at_ms || it->second.banned_at_ms) co_return fail(Errc::revoked, "membership revoked");
    co_return Caller{*mesh, &it->second};
  };

  router.add("GET", "/healthz", [this](http::Request&) -> asio::awaitable<http::HttpResponse> {
    if (stopping_) co_return json_response(503, Json{{"status", "draining"}});
    auto probe_op = [now = now_ms()](store::BrokerStore& s) {
      return s.queue_stats(now);
    };
    auto probe = co_await worker_->call<store::QueueStats>(std::move(probe_op));
    if (!probe) {
      co_return json_response(503, Json{{"status", "storage_failing"},
                                        {"message", probe ? std::string() : probe.error().describe()}});
    }
    co_return json_response(200, Json{{"status", "ok"},
                                      {"undelivered", probe->undelivered},
                                      {"leased", probe->leased},
                                      {"connections", sockets_.size()}});
  });

  router.add("GET", "/metrics", [this](http::Request&) -> asio::awaitable<http::HttpResponse> {
    auto probe_op = [now = now_ms()](store::BrokerStore& s) {
      return s.queue_stats(now);
    };
    auto probe = co_await worker_->call<store::QueueStats>(std::move(probe_op));
    http::HttpResponse response;
    response.headers.set("Content-Type", "text/plain; version=0.0.4");
    response.body = metrics_text();
    if (probe) {
      response.body += "# HELP claudemesh_broker_queue_undelivered Copies not yet acknowledged.\n"
                       "# TYPE claudemesh_broker_queue_undelivered gauge\nclaudemesh_broker_queue_undelivered " +
                       std::to_string(probe->undelivered) +
                       "\n# HELP claudemesh_broker_queue_leased Copies pushed and waiting for client_ack.\n"
                       "# TYPE claudemesh_broker_queue_leased gauge\nclaudemesh_broker_queue_leased " +
                       std::to_string(probe->leased) + "\n";
    }
    co_return response;
  });

  // ---- meshes ----
  router.add("POST", "/v1/meshes", [this, authenticate](http::Request& request) -> asio::awaitable<http::HttpResponse> {
    if (!config_.admin_token_hashes.empty()) {
      auto header = request.message.headers.get("Authorization");
      const std::string_view prefix = "Bearer ";
      bool allowed = false;
      if (header && header->starts_with(prefix)) {
        const std::string token(header->substr(prefix.size()));
        for (const auto& hash : config_.admin_token_hashes) allowed = allowed || verify_secret(hash, token);
      }
      if (!allowed) {
        co_return error_response({Errc::unauthorized, "creating a mesh needs an admin token (Authorization: Bearer)"});
      }
    }
    auto caller = authenticate(request);
    if (!caller) co_return error_response(caller.error());
    auto body = body_object(request);
    if (!body) co_return error_response(body.error());
    auto name = wire::required_string(*body, "name", 64);
    if (!name) co_return error_response(name.error());
    if (name->empty()) co_return error_response({Errc::invalid_value, "name must not be empty"});
    auto display = display_name_from(*body);
    if (!display) co_return error_response(display.error());
    const auto now = now_ms();
    // Fields one by one: g++ 12 destroys temporaries inside a braced initializer in a coroutine twice.
    store::MeshRecord mesh;
    mesh.id = ids_.next();
    mesh.name = *name;
    mesh.owner_pubkey = *caller;
    mesh.created_at_ms = now;
    store::MemberRecord owner;
    owner.id = ids_.next();
    owner.mesh_id = mesh.id;
    owner.pubkey = *caller;
    owner.display_name = *display;
    owner.role = "owner";
    owner.joined_at_ms = now;
    auto created_op = [mesh, owner](store::BrokerStore& s) {
      return s.create_mesh(mesh, owner);
    };
    auto created = co_await worker_->call<void>(std::move(created_op));
    if (!created) co_return error_response(created.error());
    log("mesh_created", {{"mesh", mesh.id}, {"owner", *caller}});
    auto state = std::make_unique<MeshState>();
    state->mesh = mesh;
    state->members.emplace(owner.pubkey, owner);
    Json answer{{"mesh", mesh_json(mesh)}, {"member", member_json(*state, owner)}};
    meshes_.emplace(mesh.id, std::move(state));
    co_return json_response(201, answer);
  });

  router.add("GET", "/v1/meshes/:mesh",
             [authenticate, member_of](http::Request& request) -> asio::awaitable<http::HttpResponse> {
               auto caller = authenticate(request);
               if (!caller) co_return error_response(caller.error());
               std::string mesh_id(request.param("mesh"));
               auto who = co_await member_of(std::move(mesh_id), *caller);
               if (!who) co_return error_response(who.error());
               co_return json_response(200, Json{{"mesh", mesh_json(who->mesh->mesh)}});
             });

  router.add("GET", "/v1/meshes/:mesh/members",
             [this, authenticate, member_of](http::Request& request) -> asio::awaitable<http::HttpResponse> {
               auto caller = authenticate(request);
               if (!caller) co_return error_response(caller.error());
               std::string mesh_id(request.param("mesh"));
               auto who = co_await member_of(std::move(mesh_id), *caller);
               if (!who) co_return error_response(who.error());
               std::vector<const store::MemberRecord*> members;
               for (const auto& [key, member] : who->mesh->members) members.push_back(&member);
               std::sort(members.begin(), members.end(), [](auto* a, auto* b) { return a->id < b->id; });
               Json list = Json::array();
               for (const auto* member : members) list.push_back(member_json(*who->mesh, *member));
               co_return json_response(200, Json{{"members", std::move(list)}});
             });

  router.add("PATCH", "/v1/meshes/:mesh/members/:pubkey",
             [this, authenticate, member_of](http::Request& request) -> asio::awaitable<http::HttpResponse> {
               auto caller = authenticate(request);
               if (!caller) co_return error_response(caller.error());
               std::string mesh_id(request.param("mesh"));
               auto who = co_await member_of(std::move(mesh_id), *caller);
               if (!who) co_return error_response(who.error());
               if (who->member->role != "owner") {
                 co_return error_response({Errc::forbidden, "only the owner changes roles and grants"});
               }
               auto body = body_object(request);
               if (!body) co_return error_response(body.error());
               auto target = who->mesh->members.find(std::string(request.param("pubkey")));
               if (target == who->mesh->members.end()) co_return error_response({Errc::not_found, "no such member"});
               store::MemberRecord updated = target->second;
               auto role = wire::optional_string(*body, "role", 16);
               if (!role) co_return error_response(role.error());
               if (*role) {
                 if (**role != "admin" && **role != "member") {
                   co_return error_response({Errc::invalid_value, "role must be admin or member"});
                 }
                 if (updated.role == "owner") co_return error_response({Errc::forbidden, "the owner stays owner"});
                 updated.role = **role;
               }
               if (auto grants = body->find("grants"); grants != body->end() && !grants->is_null()) {
                 if (!grants->is_array()) co_return error_response({Errc::wrong_type, "grants must be an array"});
                 updated.grants.clear();
                 for (const auto& grant : *grants) {
                   if (!grant.is_string() || grant.get<std::string>() != "invite") {
                     co_return error_response({Errc::invalid_value, "known grants: invite"});
                   }
                   updated.grants.push_back(grant.get<std::string>());
                 }
               }
               auto saved_op = [updated](store::BrokerStore& s) {
                 return s.update_member(updated);
               };
               auto saved = co_await worker_->call<void>(std::move(saved_op));
               if (!saved) co_return error_response(saved.error());
               auto again = who->mesh->members.find(updated.pubkey);
               if (again != who->mesh->members.end()) again->second = updated;
               co_return json_response(200, Json{{"member", member_json(*who->mesh, updated)}});
             });

  // ---- invites ----
  router.add("POST", "/v1/meshes/:mesh/invites",
             [this, authenticate, member_of](http::Request& request) -> asio::awaitable<http::HttpResponse> {
               auto caller = authenticate(request);
               if (!caller) co_return error_response(caller.error());
               std::string mesh_id(request.param("mesh"));
               auto who = co_await member_of(std::move(mesh_id), *caller);
               if (!who) co_return error_response(who.error());
               const auto& inviter = *who->member;
               const bool may_invite = is_admin(inviter) || std::ranges::find(inviter.grants, "invite") !=
                                                                 inviter.grants.end();
               if (!may_invite) co_return error_response({Errc::forbidden, "inviting needs the invite grant"});
               auto body = body_object(request);
               if (!body) co_return error_response(body.error());
               auto invite_id = wire::required_string(*body, "inviteId", 64);
               auto expires = wire::required_int(*body, "expiresAt");
               auto role = wire::required_string(*body, "role", 16);
               auto signature = wire::required_string(*body, "signature", 128);
               auto max_uses = wire::optional_int(*body, "maxUses");
               for (const Error* e : {invite_id ? nullptr : &invite_id.error(), expires ? nullptr : &expires.error(),
                                      role ? nullptr : &role.error(), signature ? nullptr : &signature.error(),
                                      max_uses ? nullptr : &max_uses.error()}) {
                 if (e) co_return error_response(*e);
               }
               if (!is_valid_id(*invite_id)) co_return error_response({Errc::invalid_value, "inviteId must be a ULID"});
               if (*role != "member" && *role != "admin") {
                 co_return error_response({Errc::invalid_value, "role must be member or admin"});
               }
               if (*role == "admin" && inviter.role != "owner") {
                 co_return error_response({Errc::forbidden, "only the owner invites admins"});
               }
               const std::int64_t uses = max_uses->value_or(1);
               if (uses < 1 || uses > static_cast<std::int64_t>(kMaxInviteUses)) {
                 co_return error_response({Errc::invalid_value, "maxUses must be 1-1000"});
               }
               InviteV2 statement{who->mesh->mesh.id, *invite_id, *expires, *role, inviter.pubkey, *signature};
               if (auto ok = verify_invite_v2(statement, now_ms()); !ok) co_return error_response(ok.error());
               store::InviteRecord invite;
               invite.id = *invite_id;
               invite.mesh_id = who->mesh->mesh.id;
               invite.role = *role;
               invite.inviter_pubkey = inviter.pubkey;
               invite.expires_at_s = *expires;
               invite.signature = *signature;
               invite.max_uses = static_cast<std::uint32_t>(uses);
               invite.created_at_ms = now_ms();
               auto created_op = [invite](store::BrokerStore& s) {
                 return s.create_invite(invite);
               };
               auto created = co_await worker_->call<void>(std::move(created_op));
               if (!created) co_return error_response(created.error());
               co_return json_response(201, Json{{"invite", invite_json(invite)},
                                                 {"url", public_base_url() + "/v1/invites/" + invite.id}});
             });

  router.add("DELETE", "/v1/meshes/:mesh/invites/:invite",
             [this, authenticate, member_of](http::Request& request) -> asio::awaitable<http::HttpResponse> {
               auto caller = authenticate(request);
               if (!caller) co_return error_response(caller.error());
               std::string mesh_id(request.param("mesh"));
               auto who = co_await member_of(std::move(mesh_id), *caller);
               if (!who) co_return error_response(who.error());
               if (!is_admin(*who->member)) co_return error_response({Errc::forbidden, "owner or admin only"});
               const std::string id(request.param("invite"));
               auto found_op = [id](store::BrokerStore& s) { return s.find_invite(id); };
               auto found = co_await worker_->call<std::optional<store::InviteRecord>>(std::move(found_op));
               if (!found) co_return error_response(found.error());
               if (!*found || (*found)->mesh_id != who->mesh->mesh.id) {
                 co_return error_response({Errc::not_found, "no such invite in this mesh"});
               }
               auto revoked_op = [id, now = now_ms()](store::BrokerStore& s) {
                 return s.revoke_invite(id, now);
               };
               auto revoked = co_await worker_->call<void>(std::move(revoked_op));
               if (!revoked) co_return error_response(revoked.error());
               (*found)->revoked_at_ms = now_ms();
               co_return json_response(200, Json{{"invite", invite_json(**found)}});
             });

  router.add("GET", "/v1/invites/:invite", [this](http::Request& request) -> asio::awaitable<http::HttpResponse> {
    const std::string id(request.param("invite"));
    auto found_op = [id](store::BrokerStore& s) { return s.find_invite(id); };
    auto found = co_await worker_->call<std::optional<store::InviteRecord>>(std::move(found_op));
    if (!found) co_return error_response(found.error());
    if (!*found) co_return error_response({Errc::not_found, "no such invite"});
    std::string mesh_id = (*found)->mesh_id;
    auto mesh = co_await load_mesh(std::move(mesh_id));
    if (!mesh) co_return error_response(mesh.error());
    std::string ws_url = public_base_url();
    ws_url.replace(0, ws_url.find(':'), ws_url.starts_with("https") ? "wss" : "ws");
    co_return json_response(200, Json{{"invite", invite_json(**found)},
                                      {"mesh", {{"id", (*mesh)->mesh.id}, {"name", (*mesh)->mesh.name}}},
                                      {"brokerUrl", ws_url + "/ws"}});
  });

  router.add("POST", "/v1/invites/:invite/claim",
             [this, authenticate](http::Request& request) -> asio::awaitable<http::HttpResponse> {
               auto caller = authenticate(request);
               if (!caller) co_return error_response(caller.error());
               auto body = body_object(request);
               if (!body) co_return error_response(body.error());
               auto display = display_name_from(*body);
               if (!display) co_return error_response(display.error());
               const std::string id(request.param("invite"));
               store::MemberRecord member;
               member.id = ids_.next();
               member.pubkey = *caller;
               member.display_name = *display;
               member.joined_at_ms = now_ms();
               auto claimed_op = [id, member, now = now_ms()](store::BrokerStore& s) {
                     return s.claim_invite(id, member, now);
                   };
               auto claimed = co_await worker_->call<store::MemberRecord>(std::move(claimed_op));
               if (!claimed) co_return error_response(claimed.error());
               std::string mesh_id = claimed->mesh_id;
               auto mesh = co_await load_mesh(std::move(mesh_id));
               if (!mesh) co_return error_response(mesh.error());
               (*mesh)->members.insert_or_assign(claimed->pubkey, *claimed);
               log("member_joined", {{"mesh", claimed->mesh_id}, {"member", claimed->id}});
               co_return json_response(201, Json{{"mesh", mesh_json((*mesh)->mesh)},
                                                 {"member", member_json(**mesh, *claimed)}});
             });

  // ---- moderation ----
  for (std::string action : {"revoke", "ban", "unban", "kick"}) {
    router.add("POST", "/v1/meshes/:mesh/members/:pubkey/" + action,
               [this, authenticate, member_of, action](http::Request& request) -> asio::awaitable<http::HttpResponse> {
                 auto caller = authenticate(request);
                 if (!caller) co_return error_response(caller.error());
                 std::string mesh_id(request.param("mesh"));
                 auto who = co_await member_of(std::move(mesh_id), *caller);
                 if (!who) co_return error_response(who.error());
                 if (!is_admin(*who->member)) co_return error_response({Errc::forbidden, "owner or admin only"});
                 auto body = body_object(request);
                 if (!body) co_return error_response(body.error());
                 auto reason = wire::optional_string(*body, "reason", 256);
                 if (!reason) co_return error_response(reason.error());
                 const std::string pubkey(request.param("pubkey"));
                 MeshState& mesh = *who->mesh;
                 auto target = mesh.members.find(pubkey);
                 if (target == mesh.members.end()) co_return error_response({Errc::not_found, "no such member"});
                 if (pubkey == *caller) co_return error_response({Errc::forbidden, "not on yourself"});
                 if (target->second.role == "owner") co_return error_response({Errc::forbidden, "not on the owner"});
                 if (action == "kick") {
                   Json kicked = Json::array(), skipped = Json::array();
                   disconnect_member(mesh, pubkey, 4001, "kicked", /*sessions_only=*/true, &kicked, &skipped);
                   Json answer{{"kicked", kicked}, {"skippedControlPlane", skipped}};
                   if (!skipped.empty()) {
                     answer["hint"] = "daemon (control-plane) connections are not kicked: they reconnect at once. "
                                      "Use ban to remove the member.";
                   }
                   log("kick", {{"mesh", mesh.mesh.id}, {"member", target->second.id}});
                   co_return json_response(200, answer);
                 }
                 store::MemberRecord updated = target->second;
                 const auto now = now_ms();
                 if (action == "revoke") updated.revoked_at_ms = now;
                 if (action == "ban") updated.banned_at_ms = now;
                 if (action == "unban") updated.banned_at_ms.reset();
                 if (action != "unban") updated.ban_reason = reason->value_or("");
                 auto saved_op = [updated](store::BrokerStore& s) {
                   return s.update_member(updated);
                 };
                 auto saved = co_await worker_->call<void>(std::move(saved_op));
                 if (!saved) co_return error_response(saved.error());
                 auto again = mesh.members.find(pubkey);
                 if (again != mesh.members.end()) again->second = updated;
                 Json closed = Json::array();
                 if (action != "unban") {
                   disconnect_member(mesh, pubkey, 4002, "banned", /*sessions_only=*/false, &closed, nullptr);
                 }
                 log(action, {{"mesh", mesh.mesh.id}, {"member", updated.id}});
                 co_return json_response(200, Json{{"member", member_json(mesh, updated)}, {"closed", closed}});
               });
  }
}

}  // namespace claudemesh
