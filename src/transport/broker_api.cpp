// SPDX-License-Identifier: MIT
#include <claudemesh/broker_api.hpp>

#include "transport/http/client.hpp"

#include "transport/stream.hpp"
#include "transport/url.hpp"

#include <claudemesh/error.hpp>
#include <claudemesh/ids.hpp>
#include <claudemesh/signatures.hpp>
#include <claudemesh/system.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <utility>

namespace claudemesh {

using transport::parse_url;
namespace http = transport::http;
namespace {

using Json = nlohmann::json;

std::string str(const Json& object, std::string_view name) {
  const auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The broker's error body `{"error":{"code","message"}}` as an Error; anything else as io_error with the status.
Error http_error(int status, const std::string& body) {
  const Json doc = Json::parse(body, nullptr, false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
    const std::string code = str(doc["error"], "code");
    std::string message = str(doc["error"], "message");
    if (auto known = errc_from_wire_name(code)) return {*known, message.empty() ? code : message};
  }
  return {Errc::io_error, "the broker answered HTTP " + std::to_string(status)};
}

Result<Membership> membership_from(const Json& doc, const std::string& http_base) {
  if (!doc.is_object() || !doc.contains("mesh") || !doc.contains("member") || !doc["mesh"].is_object() ||
      !doc["member"].is_object()) {
    return fail(Errc::malformed, "the broker's answer lacks mesh or member");
  }
  Membership m;
  m.mesh_id = str(doc["mesh"], "id");
  m.mesh_name = str(doc["mesh"], "name");
  m.member_id = str(doc["member"], "id");
  m.member_pubkey = str(doc["member"], "pubkey");
  m.display_name = str(doc["member"], "displayName");
  m.role = str(doc["member"], "role");
  m.http_base = http_base;
  m.ws_url = ws_url_for(http_base);
  if (m.mesh_id.empty() || m.member_id.empty()) return fail(Errc::malformed, "the broker's answer lacks ids");
  return m;
}

}  // namespace

std::string ws_url_for(std::string_view http_base) {
  std::string base(http_base);
  while (base.ends_with('/')) base.pop_back();
  if (base.starts_with("https://")) return "wss://" + base.substr(8) + "/ws";
  if (base.starts_with("http://")) return "ws://" + base.substr(7) + "/ws";
  return base + "/ws";
}

Result<InviteRef> parse_invite_url(std::string_view url) {
  constexpr std::string_view marker = "/v1/invites/";
  const auto at = url.rfind(marker);
  const auto hint = std::string(" (expected <broker>/v1/invites/<id>, as `claudemesh invite` prints it)");
  if (at == std::string_view::npos) return fail(Errc::invalid_value, "not an invite URL" + hint);
  InviteRef ref{std::string(url.substr(0, at)), std::string(url.substr(at + marker.size()))};
  while (ref.invite_id.ends_with('/')) ref.invite_id.pop_back();
  auto parsed = parse_url(ref.http_base);
  if (!parsed || (parsed->scheme != "http" && parsed->scheme != "https") || parsed->target != "/") {
    return fail(Errc::invalid_value, "the invite URL's broker address is not http(s)://host[:port]" + hint);
  }
  if (!is_valid_id(ref.invite_id)) return fail(Errc::invalid_value, "the invite id is not a ULID" + hint);
  return ref;
}

struct BrokerApi::Impl {
  Impl(asio::any_io_executor executor, std::string base, const Identity& who, http::ClientEndpoint endpoint)
      : http_base(std::move(base)), signer(who), client(std::move(executor), std::move(endpoint)) {}
  std::string http_base;
  const Identity& signer;
  http::HttpClient client;
  std::int64_t last_timestamp_ms = 0;

  asio::awaitable<Result<std::string>> call(std::string method, std::string target, std::string body,
                                            std::string bearer);
};

BrokerApi::BrokerApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BrokerApi::~BrokerApi() = default;

Result<std::unique_ptr<BrokerApi>> BrokerApi::connect(asio::any_io_executor executor, std::string_view http_base,
                                                      const Identity& signer, const std::string& ca_file) {
  std::string base(http_base);
  while (base.ends_with('/')) base.pop_back();
  auto url = parse_url(base);
  if (!url) return fail(url.error(), "broker address");
  if (url->scheme != "http" && url->scheme != "https") {
    return fail(Errc::invalid_value, "broker address must be http:// or https://, not " + url->scheme + "://");
  }
  http::ClientEndpoint endpoint;
  endpoint.host = url->host;
  endpoint.port = url->port;
  if (url->tls()) {
    transport::TlsClientConfig tls;
    tls.ca_file = ca_file;
    auto context = transport::make_client_tls_context(tls);
    if (!context) return fail(context.error());
    endpoint.tls = *context;
  }
  auto impl = std::make_unique<Impl>(std::move(executor), std::move(base), signer, std::move(endpoint));
  return std::unique_ptr<BrokerApi>(new BrokerApi(std::move(impl)));
}

asio::awaitable<Result<std::string>> BrokerApi::Impl::call(std::string method, std::string target, std::string body,
                                                     std::string bearer) {
  // The broker refuses a second use of a signature; two identical requests in one millisecond would collide.
  std::int64_t timestamp = now_ms();
  if (timestamp <= last_timestamp_ms) timestamp = last_timestamp_ms + 1;
  last_timestamp_ms = timestamp;
  const auto proof = sign_request(signer, method, target, timestamp, body);
  http::HttpRequest request;
  request.method = method;
  request.target = target;
  request.body = std::move(body);
  request.headers.set("Content-Type", "application/json");
  request.headers.set("X-Claudemesh-Pubkey", proof.pubkey);
  request.headers.set("X-Claudemesh-Timestamp", std::to_string(proof.timestamp_ms));
  request.headers.set("X-Claudemesh-Signature", proof.signature);
  if (!bearer.empty()) request.headers.set("Authorization", "Bearer " + bearer);
  auto response = co_await client.request(std::move(request));
  if (!response) co_return fail(response.error(), "broker " + http_base);
  if (response->status < 200 || response->status > 299) co_return fail(http_error(response->status, response->body));
  co_return std::move(response->body);
}

asio::awaitable<Result<Membership>> BrokerApi::create_mesh(std::string name, std::string display_name,
                                                           std::string admin_token) {
  const Json body{{"name", std::move(name)}, {"displayName", std::move(display_name)}};
  auto answer = co_await impl_->call("POST", "/v1/meshes", body.dump(), std::move(admin_token));
  if (!answer) co_return fail(answer.error());
  co_return membership_from(Json::parse(*answer, nullptr, false), impl_->http_base);
}

asio::awaitable<Result<InviteCreated>> BrokerApi::create_invite(std::string mesh_id, std::string role,
                                                                std::int64_t ttl_seconds, std::int64_t max_uses) {
  const std::string invite_id = IdGenerator().next();
  const std::int64_t expires = now_ms() / 1000 + ttl_seconds;
  const auto statement = sign_invite_v2(impl_->signer, mesh_id, invite_id, expires, role);
  const Json body{{"inviteId", invite_id},
                  {"expiresAt", expires},
                  {"role", std::move(role)},
                  {"signature", statement.signature},
                  {"maxUses", max_uses}};
  auto answer = co_await impl_->call("POST", "/v1/meshes/" + mesh_id + "/invites", body.dump(), std::string());
  if (!answer) co_return fail(answer.error());
  const Json doc = Json::parse(*answer, nullptr, false);
  if (!doc.is_object() || str(doc, "url").empty()) co_return fail(Errc::malformed, "the broker's answer lacks url");
  co_return InviteCreated{invite_id, str(doc, "url"), expires};
}

asio::awaitable<Result<std::vector<MemberEntry>>> BrokerApi::members(std::string mesh_id) {
  auto answer = co_await impl_->call("GET", "/v1/meshes/" + mesh_id + "/members", std::string(), std::string());
  if (!answer) co_return fail(answer.error());
  const Json doc = Json::parse(*answer, nullptr, false);
  if (!doc.is_object() || !doc.contains("members") || !doc["members"].is_array()) {
    co_return fail(Errc::malformed, "the broker's answer lacks members");
  }
  std::vector<MemberEntry> members;
  for (const auto& m : doc["members"]) {
    if (!m.is_object()) continue;
    MemberEntry entry{str(m, "pubkey"), str(m, "displayName"), str(m, "role"), {}, true};
    if (auto groups = m.find("groups"); groups != m.end() && groups->is_array()) {
      for (const auto& g : *groups) {
        if (g.is_string()) entry.groups.push_back(g.get<std::string>());
      }
    }
    entry.active = !(m.value("revoked", false) || m.value("banned", false));
    if (!entry.pubkey.empty()) members.push_back(std::move(entry));
  }
  co_return members;
}

asio::awaitable<Result<Membership>> BrokerApi::join(std::string invite_id, std::string display_name) {
  const Json body{{"displayName", std::move(display_name)}};
  auto answer = co_await impl_->call("POST", "/v1/invites/" + invite_id + "/claim", body.dump(), std::string());
  if (!answer) co_return fail(answer.error());
  co_return membership_from(Json::parse(*answer, nullptr, false), impl_->http_base);
}

}  // namespace claudemesh
