// SPDX-License-Identifier: MIT
// The daemon's IPC: the routes of docs/ipc-api.json over the Unix socket and loopback TCP.
//
// Access rules, checked before any route runs:
//   Unix socket  no credential (the socket is 0600 in a 0700 directory); `Authorization: ClaudeMesh-Session
//                <token>` scopes the request to a registered session.
//   TCP          `Authorization: Bearer <local token>` (constant-time compare); `Host` must name loopback
//                (DNS rebinding); a request with an `Origin` is refused unless allowlisted (a browser page
//                must not reach the daemon); CORS preflight is refused; a token in the query is refused
//                and logged. A session is named by the `ClaudeMesh-Session` header.
#include "daemon/daemon_impl.hpp"

#include <claudemesh/version.hpp>

#include "transport/http/status.hpp"
#include "transport/sse/sse.hpp"

#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <type_traits>
#include <variant>
#include <utility>

namespace claudemesh::daemon {

namespace {

namespace http = transport::http;
using Response = http::HttpResponse;

std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

Response json_response(int status, const Json& body) {
  Response response;
  response.status = status;
  response.headers.set("Content-Type", "application/json");
  response.headers.set("Cache-Control", "no-store");
  response.body = dump(body);
  return response;
}

Response error_response(int status, std::string_view code, std::string_view message, Json extra = Json::object()) {
  Json body = extra.is_object() ? std::move(extra) : Json::object();
  body["error"] = Json{{"code", code}, {"message", message}};
  return json_response(status, body);
}

Response error_from(const Error& error) {
  return error_response(http::status_for(error.errc()), error.wire_code(), error.message);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

using Query = std::map<std::string, std::string, std::less<>>;

Query parse_query(std::string_view query) {
  Query out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq));
    auto value = eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    out.emplace(std::move(key), std::move(value));
  }
  return out;
}

std::string query_value(const Query& query, std::string_view key) {
  const auto it = query.find(key);
  return it == query.end() ? std::string() : it->second;
}

bool query_flag(const Query& query, std::string_view key) {
  const auto it = query.find(key);
  return it != query.end() && (it->second.empty() || it->second == "true" || it->second == "1");
}

Result<std::optional<std::int64_t>> query_int(const Query& query, std::string_view key) {
  const auto it = query.find(key);
  if (it == query.end() || it->second.empty()) return std::optional<std::int64_t>{};
  std::int64_t value = 0;
  const auto* end = it->second.data() + it->second.size();
  auto [ptr, ec] = std::from_chars(it->second.data(), end, value);
  if (ec != std::errc{} || ptr != end) {
    return fail(Errc::invalid_value, std::string(key) + " must be an integer, not \"" + it->second + "\"");
  }
  return std::optional<std::int64_t>{value};
}

// "localhost", "127.0.0.1", "[::1]", each with an optional ":port"; or no Host at all (HTTP/1.0 tools).
bool is_loopback_host(std::string_view host) {
  if (host.empty()) return true;
  std::string_view name = host;
  if (name.starts_with('[')) {
    const auto close = name.find(']');
    if (close == std::string_view::npos) return false;
    const auto rest = name.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return false;
    name = name.substr(0, close + 1);
  } else if (const auto colon = name.rfind(':'); colon != std::string_view::npos) {
    name = name.substr(0, colon);
  }
  return name == "localhost" || name == "127.0.0.1" || name == "[::1]";
}

Result<Json> body_object(const http::Request& request) {
  if (request.message.body.empty()) return Json::object();
  Json body = Json::parse(request.message.body, nullptr, false);
  if (body.is_discarded()) return fail(Errc::malformed, "the request body is not JSON");
  if (!body.is_object()) return fail(Errc::wrong_type, "the request body must be a JSON object");
  return body;
}

// A string member: absent or null gives nullopt; any other type is an error.
Result<std::optional<std::string>> string_field(const Json& body, std::string_view key) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return fail(Errc::wrong_type, std::string(key) + " must be a string");
  return std::optional<std::string>{it->get<std::string>()};
}

// A whole response on a stream route (a refusal before the stream begins).
asio::awaitable<void> send_whole(http::ResponseStream& stream, Response response) {
  std::string body = std::move(response.body);
  response.body.clear();
  if (co_await stream.start(std::move(response))) co_return;
  co_await stream.write(body);
}

Json optional_ms(const std::optional<std::int64_t>& value) { return value ? Json(*value) : Json(nullptr); }

}  // namespace

Json message_json(const InboxMessage& m, const std::string& mesh_slug) {
  Json meta = m.meta_json.empty() ? Json(nullptr) : Json::parse(m.meta_json, nullptr, false);
  if (meta.is_discarded()) meta = nullptr;
  return Json{{"id", m.id},
              {"client_message_id", m.client_message_id},
              {"broker_message_id", m.broker_message_id},
              {"mesh", mesh_slug},
              {"topic", m.topic},
              {"target_spec", m.target_spec},
              {"sender_pubkey", m.sender_pubkey},
              {"sender_member_pubkey", m.sender_member_pubkey},
              {"sender_name", m.sender_name},
              {"body", m.body},
              {"meta", meta},
              {"priority", m.priority},
              {"reply_to_id", m.reply_to_id},
              {"created_at", m.created_at_ms},
              {"received_at", m.received_at_ms},
              {"seen_at", optional_ms(m.seen_at_ms)},
              {"recipient_pubkey", m.recipient_pubkey},
              {"recipient_kind", m.recipient_kind}};
}

Json outbox_row_json(const OutboxRow& r, const std::string& mesh_slug) {
  return Json{{"id", r.id},
              {"client_message_id", r.client_message_id},
              {"mesh", mesh_slug},
              {"target_spec", r.target_spec},
              {"priority", r.priority},
              {"status", std::string(to_string(r.status))},
              {"attempts", r.attempts},
              {"enqueued_at", r.enqueued_at_ms},
              {"next_attempt_at", r.next_attempt_at_ms},
              {"delivered_at", optional_ms(r.delivered_at_ms)},
              {"broker_message_id", r.broker_message_id},
              {"last_error", r.last_error},
              {"aborted_at", optional_ms(r.aborted_at_ms)},
              {"aborted_by", r.aborted_by},
              {"superseded_by", r.superseded_by},
              {"payload_bytes", r.payload_bytes}};
}

namespace {

Json peer_json(const PeerInfo& p, const MeshState& mesh, const SessionInfo* session) {
  Json groups = Json::array();
  for (const auto& g : p.groups) groups.push_back(Json{{"name", g.name}, {"role", g.role}});
  const bool is_self = p.member_pubkey == mesh.member_pubkey || p.pubkey == mesh.member_pubkey;
  const bool this_session = session != nullptr && !session->session_pubkey.empty() && p.pubkey == session->session_pubkey;
  return Json{{"mesh", mesh.slug},
              {"pubkey", p.pubkey},
              {"member_pubkey", p.member_pubkey},
              {"member_id", p.member_id},
              {"display_name", p.display_name},
              {"peer_role", p.peer_role},
              {"status", p.status},
              {"summary", p.summary},
              {"groups", groups},
              {"session_id", p.session_id},
              {"cwd", p.cwd},
              {"hostname", p.hostname},
              {"pid", p.pid},
              {"channel", p.channel},
              {"role", p.role},
              {"online", p.online},
              {"visible", p.visible},
              {"is_self", is_self},
              {"is_this_session", this_session}};
}

// The routes. One object, shared by every handler the router holds.
class IpcApi {
 public:
  explicit IpcApi(Daemon::Impl& daemon) : d_(daemon) {}

  // Access rules (file comment). @returns the refusal, or nothing when the request may proceed.
  std::optional<Response> refuse(const http::Request& request) {
    ++d_.counters.ipc_requests;
    const auto& headers = request.message.headers;
    const Query query = parse_query(request.message.query);
    if (query.contains("token") || query.contains("access_token")) {
      d_.log("ipc_token_in_query_refused", Json{{"level", "warn"}, {"peer", request.peer}, {"path", request.message.path}});
      ++d_.counters.ipc_refused;
      return error_response(400, "malformed", "credentials are accepted only in the Authorization header");
    }
    if (request.over_unix) return std::nullopt;
    if (!is_loopback_host(headers.get("Host").value_or(""))) {
      ++d_.counters.ipc_refused;
      return error_response(403, "forbidden", "the Host header must name this machine's loopback address");
    }
    if (const auto origin = headers.get("Origin")) {
      const auto& allowed = d_.config.allowed_origins;
      if (std::find(allowed.begin(), allowed.end(), *origin) == allowed.end()) {
        ++d_.counters.ipc_refused;
        return error_response(403, "forbidden", "requests from web pages (an Origin header) are refused");
      }
    }
    if (request.message.method == "OPTIONS") {
      ++d_.counters.ipc_refused;
      return error_response(403, "forbidden", "cross-origin requests are refused");
    }
    if (d_.config.public_health && request.message.method == "GET" && request.message.path == "/v1/health") {
      return std::nullopt;
    }
    const auto authorization = headers.get("Authorization").value_or("");
    constexpr std::string_view bearer = "Bearer ";
    if (!authorization.starts_with(bearer) || !token_matches(d_.token, authorization.substr(bearer.size()))) {
      ++d_.counters.ipc_refused;
      auto refused = error_response(401, "unauthorized",
                                    authorization.empty() ? "this endpoint needs Authorization: Bearer <local token>"
                                                          : "wrong local token");
      refused.headers.set("WWW-Authenticate", "Bearer");
      return refused;
    }
    return std::nullopt;
  }

  // The registered session this request speaks for, if any.
  const SessionInfo* session_of(const http::Request& request) const {
    const auto& headers = request.message.headers;
    std::string_view token;
    if (request.over_unix) {
      constexpr std::string_view scheme = "ClaudeMesh-Session ";
      const auto authorization = headers.get("Authorization").value_or("");
      if (authorization.starts_with(scheme)) token = authorization.substr(scheme.size());
    } else {
      token = headers.get("ClaudeMesh-Session").value_or("");
    }
    if (token.empty()) return nullptr;
    return d_.sessions.find_by_token(token, now_ms());
  }

  // The mesh a write goes to: the one named, else the session's, else the only one.
  Result<MeshState*> mesh_for_write(const std::optional<std::string>& named, const SessionInfo* session) {
    if (named && !named->empty()) {
      if (auto* mesh = d_.find_mesh(*named)) return mesh;
      return fail(Errc::not_found, "unknown mesh \"" + *named + "\"; attached: " + mesh_list());
    }
    if (session != nullptr) {
      if (auto* mesh = d_.find_mesh(session->mesh)) return mesh;
    }
    if (d_.meshes.size() == 1) return &d_.meshes.front();
    return fail(Errc::invalid_value, "several meshes are attached (" + mesh_list() + "); name one with \"mesh\"");
  }

  std::string mesh_list() const {
    std::string out;
    for (const auto& mesh : d_.meshes) out += (out.empty() ? "" : ", ") + mesh.slug;
    return out;
  }

  Response mesh_error(const Error& error) {
    Json meshes = Json::array();
    for (const auto& mesh : d_.meshes) meshes.push_back(mesh.slug);
    if (error.errc() == Errc::not_found) return error_response(404, "unknown_mesh", error.message, Json{{"meshes", meshes}});
    return error_response(400, "mesh_required", error.message, Json{{"meshes", meshes}});
  }

  // A read's mesh filter: the named mesh, else the session's, else all (empty). nullopt+error when unknown.
  Result<std::string> mesh_filter(const Query& query, const SessionInfo* session) {
    const auto named = query_value(query, "mesh");
    if (!named.empty()) {
      if (auto* mesh = d_.find_mesh(named)) return mesh->mesh_id;
      return fail(Errc::not_found, "unknown mesh \"" + named + "\"; attached: " + mesh_list());
    }
    if (session != nullptr) {
      if (auto* mesh = d_.find_mesh(session->mesh)) return mesh->mesh_id;
    }
    return std::string();
  }

  // Inbox rows a session may see: its own, and those addressed to its member. No session: everything.
  std::vector<std::string> recipients_for(const SessionInfo* session) {
    if (session == nullptr) return {};
    std::vector<std::string> out;
    if (!session->session_pubkey.empty()) out.push_back(session->session_pubkey);
    if (auto* mesh = d_.find_mesh(session->mesh)) out.push_back(mesh->member_pubkey);
    if (out.empty()) out.emplace_back("-");  // a session of an unknown mesh sees nothing
    return out;
  }

  bool visible_to(const InboxMessage& message, const SessionInfo* session) {
    const auto allowed = recipients_for(session);
    return allowed.empty() || std::find(allowed.begin(), allowed.end(), message.recipient_pubkey) != allowed.end();
  }

  // ---- routes ----

  Response version(http::Request&) {
    return json_response(200, Json{{"daemon_version", version_string}, {"ipc_api", 1}, {"pid", ::getpid()}});
  }

  Response health(http::Request&) {
    std::map<std::string, std::map<std::string, std::int64_t>> depth;
    if (auto depths = d_.outbox.depths(); depths) {
      for (const auto& row : *depths) depth[row.mesh][std::string(to_string(row.status))] = row.rows;
    }
    Json meshes = Json::array();
    Json brokers = Json::object();
    for (const auto& mesh : d_.meshes) {
      Json entry{{"slug", mesh.slug},
                 {"mesh_id", mesh.mesh_id},
                 {"broker", std::string(to_string(mesh.state))},
                 {"outbox", Json{{"pending", depth[mesh.mesh_id]["pending"]}, {"inflight", depth[mesh.mesh_id]["inflight"]}}}};
      if (auto last = mesh.link->client().last_error()) {
        entry["last_error"] = Json{{"code", last->wire_code()}, {"message", last->message}};
      }
      brokers[mesh.slug] = std::string(to_string(mesh.state));
      meshes.push_back(std::move(entry));
    }
    Json inbox = Json::object();
    if (auto counts = d_.inbox.counts(); counts) inbox = Json{{"total", counts->rows}, {"unread", counts->unread}};
    return json_response(200, Json{{"ok", true},
                                      {"version", version_string},
                                      {"pid", ::getpid()},
                                      {"started_at", d_.started_at_ms},
                                      {"meshes", meshes},
                                      {"brokers", brokers},
                                      {"inbox", inbox},
                                      {"sessions", d_.sessions.size()},
                                      {"event_streams", d_.bus.subscribers()}});
  }

  // The send route in three steps, so that everything but the wait for the outbox is ordinary code (g++ 12
  // mishandles some temporaries inside coroutine bodies).
  struct SendPlan {
    std::shared_ptr<peer::MeshLink> link;
    std::string slug, to, message;
    SendOptions options;
  };

  std::variant<SendPlan, Response> plan_send(http::Request& request) {
    auto body = body_object(request);
    if (!body) return error_from(body.error());
    auto to = string_field(*body, "to");
    auto message = string_field(*body, "message");
    auto mesh_name = string_field(*body, "mesh");
    auto priority = string_field(*body, "priority");
    auto reply_to = string_field(*body, "reply_to_id");
    auto client_id = string_field(*body, "client_message_id");
    for (const auto* field : {&to, &message, &mesh_name, &priority, &reply_to, &client_id}) {
      if (!*field) return error_from(field->error());
    }
    if (!*to || (*to)->empty()) return error_response(400, "missing_field", "\"to\" is required");
    if (!*message) return error_response(400, "missing_field", "\"message\" is required");
    SendOptions options;
    if (*priority) {
      if (**priority != "now" && **priority != "next" && **priority != "low") {
        return error_response(400, "invalid_value", "priority must be now, next or low");
      }
      options.priority = **priority;
    }
    if (*reply_to) options.reply_to_id = **reply_to;
    const auto header_key = request.message.headers.get("Idempotency-Key");
    if (*client_id) options.client_message_id = **client_id;
    if (header_key) {
      if (!options.client_message_id.empty() && options.client_message_id != *header_key) {
        return error_response(400, "invalid_value", "Idempotency-Key and client_message_id differ");
      }
      options.client_message_id = std::string(*header_key);
    }
    const SessionInfo* session = session_of(request);
    auto mesh = mesh_for_write(*mesh_name, session);
    if (!mesh) return mesh_error(mesh.error());
    const std::string slug = (*mesh)->slug;
    // A session with its own presence sends on its own connection (the broker attributes the message to
    // the session key); otherwise the member's connection sends.
    auto link = (*mesh)->link;  // keeps the link while we wait
    if (session != nullptr && session->mesh == slug) {
      if (auto own = d_.session_link(session->session_pubkey)) link = std::move(own);
    }
    return SendPlan{link, slug, std::move(**to), std::move(**message), std::move(options)};
  }

  Response send_answer(const Result<SendResult>& sent, const std::string& slug) {
    if (!sent) return error_from(sent.error());
    const auto& accepted = sent->accepted;
    const auto& row = accepted.row;
    switch (accepted.outcome) {
      case OutboxAccept::Outcome::conflict:
        ++d_.counters.sends_conflict;
        return error_response(409, "idempotency_conflict",
                                 "client_message_id " + row.client_message_id + " was already used (" + accepted.conflict + ")",
                                 Json{{"conflict", accepted.conflict},
                                      {"client_message_id", row.client_message_id},
                                      {"daemon_fingerprint_prefix", row.fingerprint_prefix()}});
      case OutboxAccept::Outcome::duplicate:
        ++d_.counters.sends_duplicate;
        return json_response(200, Json{{"client_message_id", row.client_message_id},
                                          {"status", "done"},
                                          {"duplicate", true},
                                          {"broker_message_id", row.broker_message_id},
                                          {"mesh", slug},
                                          {"target_spec", row.target_spec}});
      case OutboxAccept::Outcome::queued:
      case OutboxAccept::Outcome::inflight:
        break;
    }
    if (accepted.inserted) ++d_.counters.sends_accepted;
    return json_response(accepted.http_status, Json{{"client_message_id", row.client_message_id},
                                                       {"id", row.id},
                                                       {"status", std::string(to_string(row.status))},
                                                       {"duplicate", !accepted.inserted},
                                                       {"mesh", slug},
                                                       {"target_spec", sent->target_spec},
                                                       {"recipients", sent->sealed_for}});
  }

  asio::awaitable<Response> send(http::Request& request) {
    auto planned = plan_send(request);
    if (auto* refused = std::get_if<Response>(&planned)) co_return std::move(*refused);
    auto& plan = std::get<SendPlan>(planned);
    auto link = plan.link;
    auto sent = co_await link->send(std::move(plan.to), std::move(plan.message), std::move(plan.options));
    co_return send_answer(sent, plan.slug);
  }

  Response inbox_list(http::Request& request) {
    const Query query = parse_query(request.message.query);
    const SessionInfo* session = session_of(request);
    auto mesh = mesh_filter(query, session);
    if (!mesh) return mesh_error(mesh.error());
    InboxQuery q;
    q.mesh = *mesh;
    q.topic = query_value(query, "topic");
    q.from_pubkey = query_value(query, "from");
    q.unread_only = query_flag(query, "unread_only") || query_flag(query, "unread");
    q.recipients = recipients_for(session);
    auto limit = query_int(query, "limit");
    auto since = query_int(query, "since");
    auto before = query_int(query, "before");
    for (const auto* value : {&limit, &since, &before}) {
      if (!*value) return error_from(value->error());
    }
    if (*limit) q.limit = static_cast<std::size_t>(std::clamp<std::int64_t>(**limit, 1, 1000));
    q.since_ms = *since;
    q.before_ms = *before;
    q.before_id = query_value(query, "before_id");
    auto rows = d_.inbox.list(q);
    if (!rows) return error_from(rows.error());
    if (query_flag(query, "mark_seen") && !rows->empty()) {
      std::vector<std::string> ids;
      for (const auto& row : *rows) ids.push_back(row.id);
      if (auto marked = d_.inbox.mark_seen(ids); !marked) return error_from(marked.error());
    }
    Json messages = Json::array();
    for (const auto& row : *rows) messages.push_back(message_json(row, d_.slug_of(row.mesh)));
    Json answer{{"messages", messages}};
    if (!rows->empty() && rows->size() == q.limit) {
      answer["next"] = Json{{"before", rows->back().received_at_ms}, {"before_id", rows->back().id}};
    }
    return json_response(200, answer);
  }

  Response inbox_get(http::Request& request) {
    auto row = d_.inbox.get(request.param("id"));
    if (!row) return error_from(row.error());
    if (!*row || !visible_to(**row, session_of(request))) {
      return error_response(404, "not_found", "no inbox message " + std::string(request.param("id")));
    }
    return json_response(200, Json{{"message", message_json(**row, d_.slug_of((*row)->mesh))}});
  }

  Response inbox_delete(http::Request& request) {
    auto row = d_.inbox.get(request.param("id"));
    if (!row) return error_from(row.error());
    if (!*row || !visible_to(**row, session_of(request))) {
      return error_response(404, "not_found", "no inbox message " + std::string(request.param("id")));
    }
    auto removed = d_.inbox.remove((*row)->id);
    if (!removed) return error_from(removed.error());
    return json_response(200, Json{{"removed", *removed}});
  }

  Response inbox_seen(http::Request& request) {
    auto body = body_object(request);
    if (!body) return error_from(body.error());
    const auto ids = body->find("ids");
    if (ids == body->end() || !ids->is_array()) return error_response(400, "missing_field", "\"ids\" must be an array");
    const SessionInfo* session = session_of(request);
    std::vector<std::string> wanted;
    for (const auto& id : *ids) {
      if (!id.is_string()) return error_response(400, "wrong_type", "\"ids\" must hold strings");
      auto row = d_.inbox.get(id.get<std::string>());
      if (!row) return error_from(row.error());
      if (*row && visible_to(**row, session)) wanted.push_back((*row)->id);
    }
    auto marked = d_.inbox.mark_seen(wanted);
    if (!marked) return error_from(marked.error());
    return json_response(200, Json{{"marked", *marked}});
  }

  Response inbox_flush(http::Request& request) {
    auto body = body_object(request);
    if (!body) return error_from(body.error());
    auto mesh_name = string_field(*body, "mesh");
    if (!mesh_name) return error_from(mesh_name.error());
    const bool all = body->value("all", false);
    std::string mesh_id;
    if (*mesh_name && !(*mesh_name)->empty()) {
      auto* mesh = d_.find_mesh(**mesh_name);
      if (mesh == nullptr) return mesh_error(Error(Errc::not_found, "unknown mesh \"" + **mesh_name + "\""));
      mesh_id = mesh->mesh_id;
    } else if (!all) {
      return error_response(400, "missing_field", "name a mesh, or pass \"all\": true to flush every mesh");
    }
    std::optional<std::int64_t> before;
    if (const auto it = body->find("before"); it != body->end() && !it->is_null()) {
      if (!it->is_number_integer()) return error_response(400, "wrong_type", "\"before\" must be unix milliseconds");
      before = it->get<std::int64_t>();
    }
    auto removed = d_.inbox.flush(mesh_id, before);
    if (!removed) return error_from(removed.error());
    return json_response(200, Json{{"removed", *removed}});
  }

  Response inbox_search(http::Request& request) {
    const Query query = parse_query(request.message.query);
    const auto text = query_value(query, "q");
    if (text.empty()) return error_response(400, "missing_field", "search needs q=<text>");
    const SessionInfo* session = session_of(request);
    auto mesh = mesh_filter(query, session);
    if (!mesh) return mesh_error(mesh.error());
    InboxQuery q;
    q.mesh = *mesh;
    q.recipients = recipients_for(session);
    auto limit = query_int(query, "limit");
    if (!limit) return error_from(limit.error());
    if (*limit) q.limit = static_cast<std::size_t>(std::clamp<std::int64_t>(**limit, 1, 1000));
    auto rows = d_.inbox.search(text, q);
    if (!rows) return error_from(rows.error());
    Json messages = Json::array();
    for (const auto& row : *rows) messages.push_back(message_json(row, d_.slug_of(row.mesh)));
    return json_response(200, Json{{"messages", messages}});
  }

  // Which meshes a peer listing covers, or the refusal.
  std::variant<std::vector<std::string>, Response> peer_targets(const Query& query) {
    const auto named = query_value(query, "mesh");
    std::vector<std::string> slugs;
    if (!named.empty()) {
      auto* mesh = d_.find_mesh(named);
      if (mesh == nullptr) return mesh_error(Error(Errc::not_found, "unknown mesh \"" + named + "\"; attached: " + mesh_list()));
      slugs.push_back(mesh->slug);
    } else {
      for (const auto& mesh : d_.meshes) slugs.push_back(mesh.slug);
    }
    return slugs;
  }

  void add_peers(Json& peers, Json& errors, const std::string& slug, const Result<std::vector<PeerInfo>>& listed,
                 const std::optional<SessionInfo>& caller) {
    auto* mesh = d_.find_mesh(slug);
    if (!listed || mesh == nullptr) {
      const Error error = listed ? Error(Errc::unavailable, "mesh detached") : listed.error();
      errors.push_back(Json{{"mesh", slug}, {"code", error.wire_code()}, {"message", error.message}});
      return;
    }
    for (const auto& p : *listed) peers.push_back(peer_json(p, *mesh, caller ? &*caller : nullptr));
  }

  static Response peers_answer(std::size_t asked, const Json& peers, const Json& errors) {
    // One mesh asked for and unreachable: that is the answer, not an empty list.
    if (asked == 1 && !errors.empty()) {
      return error_response(503, errors[0]["code"].get<std::string>(), errors[0]["message"].get<std::string>(),
                            Json{{"errors", errors}});
    }
    Json answer{{"peers", peers}};
    if (!errors.empty()) answer["errors"] = errors;
    return json_response(200, answer);
  }

  // A link still making its first connection (a daemon just started, e.g. by the CLI's auto-start) is
  // given a moment, so the verb that started the daemon is not told "not connected". A link backing off
  // after a failure answers at once.
  static asio::awaitable<void> first_connect(std::shared_ptr<peer::MeshLink> link) {
    constexpr auto grace = std::chrono::seconds(3);
    constexpr auto poll = std::chrono::milliseconds(10);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while ((link->client().state() == TransportState::connecting || link->client().state() == TransportState::idle) &&
           std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(poll);
      std::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  asio::awaitable<Response> peers(http::Request& request) {
    const Query query = parse_query(request.message.query);
    auto targets = peer_targets(query);
    if (auto* refused = std::get_if<Response>(&targets)) co_return std::move(*refused);
    const auto slugs = std::get<std::vector<std::string>>(std::move(targets));
    // A copy: the session entry may be reaped while we wait.
    std::optional<SessionInfo> caller;
    if (const SessionInfo* session = session_of(request)) caller = *session;
    Json peers = Json::array();
    Json errors = Json::array();
    for (const auto& slug : slugs) {
      auto* mesh = d_.find_mesh(slug);
      if (mesh == nullptr) continue;
      auto link = mesh->link;
      co_await first_connect(link);
      auto listed = co_await link->peers();
      add_peers(peers, errors, slug, listed, caller);
    }
    co_return peers_answer(slugs.size(), peers, errors);
  }

  Response profile(http::Request& request) {
    auto body = body_object(request);
    if (!body) return error_from(body.error());
    auto mesh_name = string_field(*body, "mesh");
    auto status = string_field(*body, "status");
    auto summary = string_field(*body, "summary");
    for (const auto* field : {&mesh_name, &status, &summary}) {
      if (!*field) return error_from(field->error());
    }
    std::optional<bool> visible;
    if (const auto it = body->find("visible"); it != body->end() && !it->is_null()) {
      if (!it->is_boolean()) return error_response(400, "wrong_type", "\"visible\" must be true or false");
      visible = it->get<bool>();
    }
    if (*status && **status != "idle" && **status != "working" && **status != "dnd") {
      return error_response(400, "invalid_value", "status must be idle, working or dnd");
    }
    if (!*status && !*summary && !visible) {
      return error_response(400, "missing_field", "set at least one of status, summary, visible");
    }
    std::vector<MeshState*> targets;
    if (*mesh_name && !(*mesh_name)->empty()) {
      auto* mesh = d_.find_mesh(**mesh_name);
      if (mesh == nullptr) return mesh_error(Error(Errc::not_found, "unknown mesh \"" + **mesh_name + "\""));
      targets.push_back(mesh);
    } else {
      for (auto& mesh : d_.meshes) targets.push_back(&mesh);
    }
    // Remembered per mesh and applied now when connected, and again after every reconnect.
    Json applied = Json::array();
    Json pending = Json::array();
    for (auto* mesh : targets) {
      if (*status) mesh->wanted_status = **status;
      if (*summary) mesh->wanted_summary = **summary;
      if (visible) mesh->wanted_visible = visible;
      if (mesh->state == TransportState::open) {
        d_.apply_profile(*mesh);
        applied.push_back(mesh->slug);
      } else {
        pending.push_back(mesh->slug);
      }
    }
    Json meshes = applied;
    for (const auto& slug : pending) meshes.push_back(slug);
    return json_response(200, Json{{"ok", true}, {"meshes", meshes}, {"applied", applied}, {"pending", pending}});
  }

  Response outbox_list(http::Request& request) {
    const Query query = parse_query(request.message.query);
    std::optional<OutboxStatus> status;
    if (const auto name = query_value(query, "status"); !name.empty()) {
      status = parse_outbox_status(name == "failed" ? "dead" : name);
      if (!status) return error_response(400, "invalid_value", "status must be pending, inflight, done, dead or aborted");
    }
    auto limit = query_int(query, "limit");
    if (!limit) return error_from(limit.error());
    const auto count = static_cast<std::size_t>(std::clamp<std::int64_t>(limit->value_or(50), 1, 500));
    auto rows = d_.outbox.list(status, count);
    if (!rows) return error_from(rows.error());
    Json items = Json::array();
    for (const auto& row : *rows) items.push_back(outbox_row_json(row, d_.slug_of(row.mesh)));
    return json_response(200, Json{{"items", items}});
  }

  // msg-status: the row, and when the broker has it, who it reached.
  std::variant<OutboxRow, Response> outbox_row(http::Request& request) {
    auto row = d_.outbox.find(request.param("id"));
    if (!row) return error_from(row.error());
    if (!*row) return error_response(404, "not_found", "no outbox row or client message id " + std::string(request.param("id")));
    return **row;
  }

  Response outbox_answer(const OutboxRow& row, const std::optional<Result<MessageStatus>>& delivery) {
    Json answer{{"item", outbox_row_json(row, d_.slug_of(row.mesh))}};
    if (delivery && *delivery) {
      Json recipients = Json::array();
      for (const auto& r : (*delivery)->recipients) {
        recipients.push_back(Json{{"pubkey", r.pubkey}, {"delivered", r.delivered}, {"delivered_at", r.delivered_at},
                                  {"attempts", r.attempts}});
      }
      answer["delivery"] = Json{{"recipients", recipients}};
    } else if (delivery) {
      answer["delivery_error"] = Json{{"code", delivery->error().wire_code()}, {"message", delivery->error().message}};
    }
    return json_response(200, answer);
  }

  asio::awaitable<Response> outbox_get(http::Request& request) {
    auto found = outbox_row(request);
    if (auto* refused = std::get_if<Response>(&found)) co_return std::move(*refused);
    const OutboxRow row = std::get<OutboxRow>(std::move(found));
    std::optional<Result<MessageStatus>> delivery;
    auto* mesh = d_.find_mesh(row.mesh);
    if (row.status == OutboxStatus::done && !row.broker_message_id.empty() && mesh != nullptr &&
        mesh->state == TransportState::open) {
      auto link = mesh->link;
      delivery = co_await link->client().message_status(row.broker_message_id);
    }
    co_return outbox_answer(row, delivery);
  }

  Response outbox_requeue(http::Request& request) {
    auto body = body_object(request);
    if (!body) return error_from(body.error());
    auto id = string_field(*body, "id");
    auto new_id = string_field(*body, "new_client_message_id");
    for (const auto* field : {&id, &new_id}) {
      if (!*field) return error_from(field->error());
    }
    if (!*id || (*id)->empty()) return error_response(400, "missing_field", "\"id\" is required");
    const bool force = body->value("force", false);
    auto done = d_.outbox.requeue(**id, new_id->value_or(""), "operator", force);
    if (!done) return error_from(done.error());
    if (auto row = d_.outbox.find(done->new_row_id); row && *row) {
      if (auto* mesh = d_.find_mesh((*row)->mesh)) mesh->link->wake();
    }
    return json_response(200, Json{{"aborted_row_id", done->aborted_row_id},
                                      {"new_row_id", done->new_row_id},
                                      {"new_client_message_id", done->new_client_message_id}});
  }

  struct SessionPresence {
    Identity session;
    SessionAttestation attestation;
  };

  // `presence: {session_pubkey, session_secret_key, parent_attestation: {session_pubkey,
  // parent_member_pubkey, expires_at, signature}}`: the session key (its secret, so the daemon can open
  // what is sealed to it) and the member's attestation for it, checked here so that a bad one is a clear
  // 400 now rather than a refused hello later.
  static Result<SessionPresence> parse_presence(const Json& presence, const std::string& member_pubkey) {
    if (!presence.is_object()) return fail(Errc::wrong_type, "\"presence\" must be an object");
    const auto text = [&](const Json& object, const char* name) -> std::string {
      const auto found = object.find(name);
      return found != object.end() && found->is_string() ? found->get<std::string>() : std::string();
    };
    const std::string secret = text(presence, "session_secret_key");
    if (secret.empty()) return fail(Errc::missing_field, "presence needs \"session_secret_key\" (128 hex)");
    auto keys = SigningKeyPair::from_secret_hex(secret);
    if (!keys) return fail(keys.error(), "presence.session_secret_key");
    auto session = Identity::from_key_pair(IdentityKind::session, std::move(*keys));
    if (!session) return fail(session.error());
    const std::string pubkey = session->public_key().hex();
    if (const auto claimed = text(presence, "session_pubkey"); !claimed.empty() && claimed != pubkey) {
      return fail(Errc::invalid_value, "presence.session_pubkey is not the key of presence.session_secret_key");
    }
    const auto att = presence.find("parent_attestation");
    if (att == presence.end() || !att->is_object()) {
      return fail(Errc::missing_field, "presence needs \"parent_attestation\"");
    }
    SessionAttestation attestation;
    attestation.session_pubkey = text(*att, "session_pubkey");
    attestation.parent_pubkey = text(*att, "parent_member_pubkey");
    attestation.signature = text(*att, "signature");
    if (const auto expires = att->find("expires_at"); expires != att->end() && expires->is_number_integer()) {
      attestation.expires_at_ms = expires->get<std::int64_t>();
    }
    if (attestation.session_pubkey != pubkey) {
      return fail(Errc::attestation_mismatch, "the attestation is for another session key");
    }
    if (attestation.parent_pubkey != member_pubkey) {
      return fail(Errc::attestation_mismatch, "the attestation is not signed by this mesh's member key");
    }
    if (auto valid = verify_session_attestation(attestation, now_ms()); !valid) {
      return fail(valid.error(), "presence.parent_attestation");
    }
    return SessionPresence{std::move(*session), std::move(attestation)};
  }

  Response sessions_register(http::Request& request) {
    auto body = body_object(request);
    if (!body) return error_from(body.error());
    SessionInfo info;
    auto token = string_field(*body, "token");
    auto session_id = string_field(*body, "session_id");
    auto mesh_name = string_field(*body, "mesh");
    auto display = string_field(*body, "display_name");
    auto cwd = string_field(*body, "cwd");
    auto role = string_field(*body, "role");
    for (const auto* field : {&token, &session_id, &mesh_name, &display, &cwd, &role}) {
      if (!*field) return error_from(field->error());
    }
    const auto pid = body->find("pid");
    if (pid == body->end() || !pid->is_number_integer()) return error_response(400, "missing_field", "\"pid\" must be an integer");
    auto mesh = mesh_for_write(*mesh_name, nullptr);
    if (!mesh) return mesh_error(mesh.error());
    info.token = token->value_or("");
    info.session_id = session_id->value_or("");
    info.mesh = (*mesh)->slug;
    info.display_name = display->value_or("");
    info.cwd = cwd->value_or("");
    info.role = role->value_or("");
    info.pid = pid->get<std::int64_t>();
    if (const auto groups = body->find("groups"); groups != body->end() && groups->is_array()) {
      for (const auto& g : *groups) {
        if (g.is_string()) info.groups.push_back(g.get<std::string>());
      }
    }
    std::optional<SessionPresence> presence;
    if (const auto field = body->find("presence"); field != body->end() && !field->is_null()) {
      auto parsed = parse_presence(*field, (*mesh)->member_pubkey);
      if (!parsed) return error_from(parsed.error());
      info.session_pubkey = parsed->session.public_key().hex();
      presence = std::move(*parsed);
    }
    info.start_time = LinuxProcessProbe().start_time(info.pid);
    if (!info.start_time) return error_response(400, "invalid_value", "no process " + std::to_string(info.pid) + " is running");
    info.registered_at_ms = now_ms();
    auto added = d_.sessions.add(info);
    if (!added) return error_from(added.error());
    for (const auto& replaced : *added) d_.stop_session_link(replaced.session_pubkey);
    d_.log("session_registered", Json{{"session_id", info.session_id}, {"mesh", info.mesh}, {"pid", info.pid},
                                      {"presence", presence.has_value()}});
    if (presence) {
      if (auto started = d_.start_session_link(**mesh, info, std::move(presence->session),
                                               std::move(presence->attestation));
          !started) {
        d_.sessions.remove_by_token(info.token);
        return error_from(started.error());
      }
    }
    return json_response(200, Json{{"ok", true},
                                   {"session_id", info.session_id},
                                   {"mesh", info.mesh},
                                   {"presence", presence.has_value()},
                                   {"session_pubkey", info.session_pubkey}});
  }

  Response sessions_me(http::Request& request) {
    const SessionInfo* session = session_of(request);
    if (session == nullptr) return error_response(404, "not_found", "this request carries no registered session token");
    return json_response(200, Json{{"session_id", session->session_id},
                                      {"mesh", session->mesh},
                                      {"display_name", session->display_name},
                                      {"pid", session->pid},
                                      {"cwd", session->cwd},
                                      {"role", session->role},
                                      {"groups", session->groups},
                                      {"session_pubkey", session->session_pubkey},
                                      {"registered_at", session->registered_at_ms}});
  }

  Response metrics(http::Request&) {
    std::string out;
    auto counter = [&out](std::string_view name, std::string_view help, std::uint64_t value) {
      out += "# HELP " + std::string(name) + " " + std::string(help) + "\n# TYPE " + std::string(name) + " counter\n" +
             std::string(name) + " " + std::to_string(value) + "\n";
    };
    auto gauge_head = [&out](std::string_view name, std::string_view help) {
      out += "# HELP " + std::string(name) + " " + std::string(help) + "\n# TYPE " + std::string(name) + " gauge\n";
    };
    const auto& c = d_.counters;
    counter("claudemesh_daemon_ipc_requests_total", "IPC requests received.", c.ipc_requests);
    counter("claudemesh_daemon_ipc_refused_total", "IPC requests refused by the access rules.", c.ipc_refused);
    counter("claudemesh_daemon_sends_accepted_total", "Messages accepted into the outbox.", c.sends_accepted);
    counter("claudemesh_daemon_sends_duplicate_total", "Sends answered from an existing outbox row.", c.sends_duplicate);
    counter("claudemesh_daemon_sends_conflict_total", "Sends refused as idempotency conflicts.", c.sends_conflict);
    counter("claudemesh_daemon_messages_received_total", "Messages newly stored in the inbox.", c.messages_received);
    counter("claudemesh_daemon_events_published_total", "Events published to /v1/events.", c.events_published);
    counter("claudemesh_daemon_sessions_reaped_total", "Sessions removed because their process ended.", c.sessions_reaped);
    gauge_head("claudemesh_daemon_outbox_rows", "Outbox rows by mesh and status.");
    if (auto depths = d_.outbox.depths(); depths) {
      for (const auto& row : *depths) {
        out += "claudemesh_daemon_outbox_rows{mesh=\"" + d_.slug_of(row.mesh) + "\",status=\"" +
               std::string(to_string(row.status)) + "\"} " + std::to_string(row.rows) + "\n";
      }
    }
    gauge_head("claudemesh_daemon_broker_connected", "1 while the mesh's broker connection is open.");
    for (const auto& mesh : d_.meshes) {
      out += "claudemesh_daemon_broker_connected{mesh=\"" + mesh.slug + "\"} " +
             (mesh.state == TransportState::open ? "1" : "0") + "\n";
    }
    if (auto counts = d_.inbox.counts(); counts) {
      gauge_head("claudemesh_daemon_inbox_rows", "Inbox rows.");
      out += "claudemesh_daemon_inbox_rows " + std::to_string(counts->rows) + "\n";
      gauge_head("claudemesh_daemon_inbox_unread", "Inbox rows not yet seen.");
      out += "claudemesh_daemon_inbox_unread " + std::to_string(counts->unread) + "\n";
    }
    gauge_head("claudemesh_daemon_sessions", "Registered sessions.");
    out += "claudemesh_daemon_sessions " + std::to_string(d_.sessions.size()) + "\n";
    gauge_head("claudemesh_daemon_event_streams", "Open /v1/events streams.");
    out += "claudemesh_daemon_event_streams " + std::to_string(d_.bus.subscribers()) + "\n";
    Response response;
    response.headers.set("Content-Type", "text/plain; version=0.0.4");
    response.body = std::move(out);
    return response;
  }

  asio::awaitable<void> events(http::Request& request, http::ResponseStream& stream) {
    const Query query = parse_query(request.message.query);
    const SessionInfo* session = session_of(request);
    EventFilter filter;
    auto mesh = mesh_filter(query, session);
    if (!mesh) {
      co_await send_whole(stream, mesh_error(mesh.error()));
      co_return;
    }
    if (!mesh->empty()) filter.mesh = d_.slug_of(*mesh);
    if (session != nullptr) {
      filter.session_pubkey = session->session_pubkey;
      if (auto* m = d_.find_mesh(session->mesh)) filter.member_pubkey = m->member_pubkey;
    } else if (!filter.mesh.empty()) {
      // No session, one mesh: the member's view of that mesh (a filter with a mesh but no keys would drop
      // every addressed message).
      if (auto* m = d_.find_mesh(filter.mesh)) filter.member_pubkey = m->member_pubkey;
    }
    std::optional<std::uint64_t> last_id;
    if (const auto header = request.message.headers.get("Last-Event-ID"); header && !header->empty()) {
      const std::string text(*header);
      std::uint64_t value = 0;
      const char* end = text.c_str() + text.size();
      auto [ptr, ec] = std::from_chars(text.c_str(), end, value);
      if (ec == std::errc{} && ptr == end) last_id = value;
    }
    auto subscription = d_.bus.subscribe(filter, last_id);
    if (!subscription) {
      co_await send_whole(stream, error_response(429, "too_many_streams", "too many event streams are open"));
      co_return;
    }
    auto& sub = **subscription;
    http::HttpResponse head;
    head.headers.set("Content-Type", "text/event-stream");
    head.headers.set("Cache-Control", "no-cache, no-transform");
    head.headers.set("X-Accel-Buffering", "no");
    if (co_await stream.start(std::move(head))) co_return;
    if (co_await stream.write(transport::sse::encode_comment("connected"))) co_return;
    asio::steady_timer wake(d_.executor);
    auto waker = [&wake] { wake.cancel(); };
    sub.on_wake(waker);
    while (!d_.stopping && !sub.overflowed() && !sub.closed()) {
      std::string batch;
      for (const auto& event : sub.take()) batch += encode_sse(event);
      if (!batch.empty()) {
        if (co_await stream.write(batch)) break;
        continue;  // more may have arrived while writing
      }
      wake.expires_after(d_.config.keepalive);
      std::error_code ec;
      co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) {
        if (co_await stream.write(transport::sse::encode_comment("keepalive"))) break;
      }
    }
    std::function<void()> none;
    sub.on_wake(none);
  }

  Daemon::Impl& d_;
};

}  // namespace

http::Router make_ipc_router(Daemon::Impl& impl) {
  auto api = std::make_shared<IpcApi>(impl);
  http::Router router;
  using AsyncRoute = asio::awaitable<Response> (IpcApi::*)(http::Request&);
  using Route = Response (IpcApi::*)(http::Request&);
  std::set<std::string, std::less<>> patterns;
  // Most routes only touch local state and answer at once; the few that wait on a broker are coroutines.
  auto add = [&](std::string method, std::string_view pattern, auto route) {
    if constexpr (std::is_same_v<decltype(route), AsyncRoute>) {
      router.add(std::move(method), pattern, [api, route](http::Request& request) -> asio::awaitable<Response> {
        if (auto refused = api->refuse(request)) co_return std::move(*refused);
        co_return co_await (api.get()->*route)(request);
      });
    } else {
      static_assert(std::is_same_v<decltype(route), Route>);
      router.add(std::move(method), pattern, [api, route](http::Request& request) -> asio::awaitable<Response> {
        if (auto refused = api->refuse(request)) co_return std::move(*refused);
        co_return (api.get()->*route)(request);
      });
    }
    // A CORS preflight for any route is refused by the access rules (not answered 405).
    if (patterns.insert(std::string(pattern)).second) {
      router.add("OPTIONS", pattern, [api](http::Request& request) -> asio::awaitable<Response> {
        if (auto refused = api->refuse(request)) co_return std::move(*refused);
        co_return error_response(403, "forbidden", "cross-origin requests are refused");
      });
    }
  };
  add("GET", "/v1/version", &IpcApi::version);
  add("GET", "/v1/health", &IpcApi::health);
  add("POST", "/v1/send", &IpcApi::send);
  add("GET", "/v1/inbox", &IpcApi::inbox_list);
  add("GET", "/v1/inbox/search", &IpcApi::inbox_search);
  add("POST", "/v1/inbox/seen", &IpcApi::inbox_seen);
  add("POST", "/v1/inbox/flush", &IpcApi::inbox_flush);
  add("GET", "/v1/inbox/:id", &IpcApi::inbox_get);
  add("DELETE", "/v1/inbox/:id", &IpcApi::inbox_delete);
  add("GET", "/v1/peers", &IpcApi::peers);
  add("POST", "/v1/profile", &IpcApi::profile);
  add("GET", "/v1/outbox", &IpcApi::outbox_list);
  add("POST", "/v1/outbox/requeue", &IpcApi::outbox_requeue);
  add("GET", "/v1/outbox/:id", &IpcApi::outbox_get);
  add("POST", "/v1/sessions/register", &IpcApi::sessions_register);
  add("GET", "/v1/sessions/me", &IpcApi::sessions_me);
  add("GET", "/v1/metrics", &IpcApi::metrics);
  router.add_stream("GET", "/v1/events", [api](http::Request& request, http::ResponseStream& stream) -> asio::awaitable<void> {
    if (auto refused = api->refuse(request)) {
      co_await send_whole(stream, std::move(*refused));
      co_return;
    }
    co_await api->events(request, stream);
  });
  router.add("OPTIONS", "/v1/events", [api](http::Request& request) -> asio::awaitable<Response> {
    if (auto refused = api->refuse(request)) co_return std::move(*refused);
    co_return error_response(403, "forbidden", "cross-origin requests are refused");
  });
  return router;
}

}  // namespace claudemesh::daemon
