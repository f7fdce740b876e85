// SPDX-License-Identifier: MIT
// `claudemesh peer list` (also `peers`), `status set`, `summary set`: who is online, and what we tell them.
#include "cli.hpp"
#include "cold_path.hpp"
#include "daemon_access.hpp"

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <set>

namespace claudemesh::cli {
namespace {

using Json = nlohmann::json;

bool bool_of(const Json& object, const char* field, bool fallback) {
  const auto it = object.find(field);
  return it != object.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// A peer from the direct path, in the daemon's /v1/peers shape.
Json peer_json(const PeerInfo& p, const std::string& slug) {
  Json groups = Json::array();
  for (const auto& g : p.groups) groups.push_back({{"name", g.name}, {"role", g.role}});
  return {{"mesh", slug},         {"pubkey", p.pubkey},       {"member_pubkey", p.member_pubkey},
          {"member_id", p.member_id}, {"display_name", p.display_name}, {"peer_role", p.peer_role},
          {"status", p.status},   {"summary", p.summary},     {"groups", groups},
          {"session_id", p.session_id}, {"cwd", p.cwd},       {"hostname", p.hostname},
          {"pid", p.pid},         {"channel", p.channel},     {"role", p.role},   {"online", p.online},
          {"visible", p.visible}};
}

struct SelfKeys {
  std::string member_pubkey;   // ours in this mesh
  std::string session_pubkey;  // the launched session's, when this process runs in one
};

// Mark self and this session, name the kind, and rank for sorting: this session, our other rows, everyone.
void annotate(Json& peer, const SelfKeys& self) {
  const std::string pubkey = text_of(peer, "pubkey");
  const std::string member = text_of(peer, "member_pubkey");
  const bool is_self = !self.member_pubkey.empty() && (member == self.member_pubkey || pubkey == self.member_pubkey);
  const bool this_session = !self.session_pubkey.empty() && pubkey == self.session_pubkey;
  std::string role = text_of(peer, "peer_role");
  if (role.empty()) role = "session";
  peer["peer_role"] = role;
  peer["kind"] = role == "control-plane" ? "daemon" : "session";
  peer["is_self"] = is_self;
  peer["is_this_session"] = this_session;
  if (!peer.contains("role")) peer["role"] = "";
}

int rank(const Json& peer) {
  if (bool_of(peer, "is_this_session", false)) return 0;
  if (bool_of(peer, "is_self", false)) return 1;
  return 2;
}

// The default view hides the control-plane (daemon) row of a member who has a session online, and the
// short-lived connections of `claudemesh` commands run without a daemon (they linger in the broker's grace).
std::size_t hide_control_plane(Json& peers) {
  std::set<std::string> with_session;
  for (const auto& p : peers) {
    if (p["kind"] == "session" && bool_of(p, "online", true)) with_session.insert(text_of(p, "member_pubkey"));
  }
  Json kept = Json::array();
  std::size_t hidden = 0;
  for (auto& p : peers) {
    const bool cli_connection = text_of(p, "channel") == "claudemesh-cli";
    if (cli_connection || (p["kind"] == "daemon" && with_session.contains(text_of(p, "member_pubkey")))) {
      ++hidden;
    } else {
      kept.push_back(std::move(p));
    }
  }
  peers = std::move(kept);
  return hidden;
}

void sort_peers(Json& peers) {
  std::stable_sort(peers.begin(), peers.end(), [](const Json& a, const Json& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    return text_of(a, "display_name") < text_of(b, "display_name");
  });
}

std::string group_tags(const Json& peer) {
  std::string out;
  const auto groups = peer.find("groups");
  if (groups == peer.end() || !groups->is_array()) return out;
  for (const auto& g : *groups) {
    const std::string name = g.is_object() ? text_of(g, "name") : (g.is_string() ? g.get<std::string>() : std::string());
    const std::string role = g.is_object() ? text_of(g, "role") : std::string();
    if (name.empty()) continue;
    if (!out.empty()) out += ", ";
    out += "@" + name + (role.empty() ? "" : ":" + role);
  }
  return out;
}

void print_peer(const Json& p) {
  const bool online = bool_of(p, "online", true);
  std::string status = text_of(p, "status");
  if (status.empty()) status = "idle";
  std::string line = std::string(online ? "● " : "○ ") + status;
  line.resize(std::max<std::size_t>(line.size(), 11), ' ');
  line += " " + text_of(p, "display_name");
  if (bool_of(p, "is_this_session", false)) {
    line += " (this session)";
  } else if (bool_of(p, "is_self", false)) {
    line += p["kind"] == "daemon" ? " (you)" : " (your other session)";
  }
  if (p["kind"] == "daemon") line += " [daemon]";
  const std::string groups = group_tags(p);
  const std::string role = text_of(p, "role");
  if (!role.empty() || !groups.empty()) {
    line += " [" + (role.empty() ? std::string() : "role:" + role + (groups.empty() ? "" : ", ")) + groups + "]";
  }
  line += " · " + text_of(p, "pubkey").substr(0, 16);
  if (const auto sid = text_of(p, "session_id"); !sid.empty()) line += " · sid:" + sid.substr(0, 8);
  if (const auto summary = text_of(p, "summary"); !summary.empty()) line += " · " + summary;
  std::cout << line << "\n";
  if (const auto cwd = text_of(p, "cwd"); !cwd.empty()) std::cout << "           cwd: " << cwd << "\n";
  std::cout << "           role: " << (role.empty() ? "(none)" : role) << "  groups: " << (groups.empty() ? "(none)" : groups)
            << "\n";
}

struct ListArgs {
  bool all = false;
};

// The session this process runs in (daemon route only), for "(this session)" and the default mesh.
Json this_session(std::optional<DaemonClient>& daemon) {
  if (!daemon || session_token().empty()) return nullptr;
  auto reply = daemon->call("GET", "/v1/sessions/me");
  if (!reply || reply->status != 200) return nullptr;
  auto doc = Json::parse(reply->body, nullptr, false);
  return doc.is_discarded() ? Json(nullptr) : doc;
}

// One mesh's peers through the daemon (the slug forwarded: reference bug 4) or directly.
std::variant<Json, Failure> list_mesh(const GlobalOptions& options, std::optional<DaemonClient>& daemon,
                                      const JoinedMesh& mesh) {
  if (daemon) {
    auto reply = daemon->call("GET", "/v1/peers?mesh=" + url_encode(mesh.slug));
    if (!reply) return failure_from(reply.error());
    if (!reply->ok()) return failure_from_reply(*reply, "peer list");
    Failure failure;
    auto doc = parse_reply(*reply, failure);
    if (!doc) return failure;
    const auto peers = doc->find("peers");
    if (peers == doc->end() || !peers->is_array()) return Failure{.code = "malformed", .message = "the daemon's peer list has no \"peers\""};
    return *peers;
  }
  auto member = load_member_identity(mesh);
  if (!member) return failure_from(member.error());
  auto listed = cold_peers(mesh, std::move(*member));
  if (!listed) return failure_from(listed.error());
  Json peers = Json::array();
  for (const auto& p : *listed) peers.push_back(peer_json(p, mesh.slug));
  (void)options;
  return peers;
}

int run_list(const GlobalOptions& options, const ListArgs& args) {
  auto meshes = joined_meshes(options);
  if (!meshes) return report_error(options, meshes.error());
  if (meshes->empty()) return report_error(options, Error(Errc::not_found, "no mesh joined; run `claudemesh join <invite-url>` first"));
  auto choice = choose_daemon(options);
  if (choice.failure) return report(options, *choice.failure);
  const Json session = this_session(choice.client);
  const std::string session_pubkey = session.is_object() ? text_of(session, "session_pubkey") : std::string();

  // Which meshes: --mesh, else the session's mesh, else every joined mesh.
  std::vector<JoinedMesh> targets;
  std::string wanted = options.mesh;
  if (wanted.empty() && session.is_object()) wanted = text_of(session, "mesh");
  if (!wanted.empty()) {
    auto mesh = select_mesh(*meshes, wanted);
    if (!mesh) return report_error(options, mesh.error());
    targets.push_back(*mesh);
  } else {
    targets = *meshes;
  }

  const char* via = choice.client ? "daemon" : "direct";
  Json all_peers = Json::array();
  Json per_mesh = Json::array();
  for (const auto& mesh : targets) {
    auto listed = list_mesh(options, choice.client, mesh);
    if (auto* failure = std::get_if<Failure>(&listed)) {
      Failure named = *failure;
      named.message = "mesh " + mesh.slug + ": " + named.message;
      return report(options, named);
    }
    Json peers = std::get<Json>(std::move(listed));
    std::string own_key;
    if (auto member = load_member_identity(mesh)) own_key = member->public_key().hex();
    const SelfKeys self{.member_pubkey = own_key, .session_pubkey = session_pubkey};
    for (auto& p : peers) {
      if (!p.is_object()) continue;
      if (!p.contains("mesh")) p["mesh"] = mesh.slug;
      annotate(p, self);
    }
    const std::size_t hidden = args.all ? 0 : hide_control_plane(peers);
    sort_peers(peers);
    per_mesh.push_back({{"mesh", mesh.slug}, {"count", peers.size()}, {"hidden_control_plane", hidden}});
    if (!options.json) {
      std::cout << "peers on " << mesh.slug << " (" << peers.size();
      if (hidden > 0) std::cout << ", " << hidden << " control-plane hidden — use --all";
      std::cout << ")" << (choice.client ? "" : " [direct]") << "\n";
      if (peers.empty()) std::cout << "  (nobody online)\n";
      for (const auto& p : peers) print_peer(p);
    }
    for (auto& p : peers) all_peers.push_back(std::move(p));
  }
  if (options.json) return print_ok({{"via", via}, {"meshes", per_mesh}, {"peers", all_peers}});
  return exit_ok;
}

// ---- status set / summary set ----

int run_profile(const GlobalOptions& options, const std::optional<std::string>& status, const std::optional<std::string>& summary) {
  auto meshes = joined_meshes(options);
  if (!meshes) return report_error(options, meshes.error());
  if (meshes->empty()) return report_error(options, Error(Errc::not_found, "no mesh joined; run `claudemesh join <invite-url>` first"));
  if (!options.mesh.empty()) {
    if (auto mesh = select_mesh(*meshes, options.mesh); !mesh) return report_error(options, mesh.error());
  }
  const std::string what = status ? "status set to " + *status : "summary set";
  auto choice = choose_daemon(options);
  if (choice.failure) return report(options, *choice.failure);
  if (choice.client) {
    Json body = Json::object();
    if (!options.mesh.empty()) body["mesh"] = options.mesh;
    if (status) body["status"] = *status;
    if (summary) body["summary"] = *summary;
    auto reply = choice.client->call("POST", "/v1/profile", body.dump());
    if (!reply) return report_error(options, reply.error());
    if (!reply->ok()) return report(options, failure_from_reply(*reply, what));
    Failure failure;
    auto doc = parse_reply(*reply, failure);
    if (!doc) return report(options, failure);
    const Json applied = doc->value("meshes", Json::array());
    if (options.json) return print_ok({{"via", "daemon"}, {"meshes", applied}, {"pending", doc->value("pending", Json::array())}});
    std::string list;
    for (const auto& m : applied) list += (list.empty() ? "" : ", ") + (m.is_string() ? m.get<std::string>() : m.dump());
    std::cout << what << " on " << list << "\n";
    return exit_ok;
  }
  std::vector<JoinedMesh> targets;
  if (!options.mesh.empty()) {
    targets.push_back(*select_mesh(*meshes, options.mesh));
  } else {
    targets = *meshes;
  }
  Json done = Json::array();
  for (const auto& mesh : targets) {
    auto member = load_member_identity(mesh);
    if (!member) return report_error(options, member.error());
    if (auto set = cold_profile(mesh, std::move(*member), status, summary); !set) {
      return report_error(options, Error(set.error().code, "mesh " + mesh.slug + ": " + set.error().message));
    }
    done.push_back(mesh.slug);
  }
  if (options.json) return print_ok({{"via", "direct"}, {"meshes", done}, {"pending", Json::array()}});
  std::string list;
  for (const auto& m : done) list += (list.empty() ? "" : ", ") + m.get<std::string>();
  std::cout << what << " on " << list
            << " (direct: it lasted as long as this command's connection; run the daemon to keep it: claudemesh daemon up)\n";
  return exit_ok;
}

}  // namespace

void register_peer_commands(CLI::App& app, GlobalOptions& options, int& exit_code) {
  auto list_args = std::make_shared<ListArgs>();
  auto add_list = [&](CLI::App& verb) {
    add_mesh_option(verb, options);
    verb.add_flag("--all", list_args->all, "Also show the control-plane (daemon) rows of members with a session online");
    verb.callback([&options, &exit_code, list_args] { exit_code = run_list(options, *list_args); });
  };
  auto* peer = app.add_subcommand("peer", "Peers in your meshes");
  peer->require_subcommand(1);
  add_list(*peer->add_subcommand("list", "List the peers online (you are marked; this session too)"));
  add_list(*app.add_subcommand("peers", "Same as `peer list`"));

  auto* status = app.add_subcommand("status", "Your presence status");
  status->require_subcommand(1);
  auto status_value = std::make_shared<std::string>();
  auto* status_set = status->add_subcommand("set", "Set your status: idle, working or dnd");
  status_set->add_option("status", *status_value, "idle, working or dnd")->required()->check(CLI::IsMember({"idle", "working", "dnd"}));
  add_mesh_option(*status_set, options);
  status_set->callback([&options, &exit_code, status_value] { exit_code = run_profile(options, *status_value, std::nullopt); });

  auto* summary = app.add_subcommand("summary", "Your one-line summary (what you are doing)");
  summary->require_subcommand(1);
  auto summary_words = std::make_shared<std::vector<std::string>>();
  auto* summary_set = summary->add_subcommand("set", "Set your summary (at most 1 KiB)");
  summary_set->add_option("text", *summary_words, "The summary")->required();
  add_mesh_option(*summary_set, options);
  summary_set->callback([&options, &exit_code, summary_words] {
    std::string text;
    for (const auto& word : *summary_words) text += (text.empty() ? "" : " ") + word;
    exit_code = run_profile(options, std::nullopt, text);
  });
}

}  // namespace claudemesh::cli
