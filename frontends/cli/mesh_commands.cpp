// SPDX-License-Identifier: MIT
// `claudemesh mesh create`, `invite`, `join` and `whoami`: memberships and who we are in each mesh.
#include "blocking.hpp"
#include "cli.hpp"
#include "daemon_access.hpp"

#include <claudemesh/broker_api.hpp>
#include <claudemesh/identity.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>

namespace claudemesh::cli {
namespace {

using namespace std::chrono_literals;
constexpr auto broker_call_limit = 30s;

std::string default_display_name() {
  if (auto user = env("USER"); !user.empty()) return user;
  return "me";
}

// A --slug given on the command line: checked before the broker is asked (a refused slug after a successful
// join would leave a membership without its key on disk).
std::optional<Failure> check_slug_free(const GlobalOptions& options, std::string slug) {
  if (slug.empty()) return std::nullopt;
  std::transform(slug.begin(), slug.end(), slug.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
  if (!is_valid_mesh_slug(slug)) {
    return Failure{.code = "invalid_value",
                   .message = "--slug " + slug + " is not valid: use 2 to 32 characters of a-z, 0-9 and '-'",
                   .exit_code = exit_usage};
  }
  auto meshes = joined_meshes(options);
  if (!meshes) return failure_from(meshes.error());
  for (const auto& mesh : *meshes) {
    if (mesh.slug == slug) {
      return Failure{.code = "already_exists", .message = "slug \"" + slug + "\" is already used by mesh " + mesh.mesh_id,
                     .exit_code = exit_conflict};
    }
  }
  return std::nullopt;
}

nlohmann::json mesh_json(const JoinedMesh& mesh, const std::string& pubkey) {
  return {{"slug", mesh.slug},
          {"mesh_id", mesh.mesh_id},
          {"mesh_name", mesh.mesh_name},
          {"member_id", mesh.member_id},
          {"member_pubkey", pubkey},
          {"display_name", mesh.display_name},
          {"role", mesh.role},
          {"broker", mesh.broker_url},
          {"http_base", mesh.http_base}};
}

// ---- mesh create ----

struct CreateArgs {
  std::string name;
  std::string display_name;
  std::string broker = "http://127.0.0.1:7900";
  std::string admin_token_file;
  std::string slug;
};

Result<std::string> read_admin_token(const std::string& file) {
  if (file.empty()) return std::string();
  std::ifstream in(file, std::ios::binary);
  if (!in) return fail(Errc::not_found, "cannot read the admin token file " + file);
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) return fail(Errc::invalid_value, "the admin token file " + file + " is empty");
  return token;
}

int run_create(const GlobalOptions& options, const CreateArgs& args) {
  if (auto taken = check_slug_free(options, args.slug)) return report(options, *taken);
  auto token = read_admin_token(args.admin_token_file);
  if (!token) return report(options, Failure{.code = std::string(token.error().wire_code()), .message = token.error().message});
  const std::string display = args.display_name.empty() ? default_display_name() : args.display_name;

  asio::io_context io;
  const auto member = Identity::generate(IdentityKind::member);
  auto api = BrokerApi::connect(io.get_executor(), args.broker, member);
  if (!api) {
    return report(options, Failure{.code = std::string(api.error().wire_code()),
                                   .message = "--broker " + args.broker + ": " + api.error().message,
                                   .exit_code = exit_usage});
  }
  std::string name = args.name;
  std::string display_copy = display;
  std::string admin_token = *token;
  auto created = run_blocking(io, (*api)->create_mesh(std::move(name), std::move(display_copy), std::move(admin_token)),
                              broker_call_limit, "creating the mesh");
  if (!created) return report_error(options, Error(created.error().code, "creating the mesh at " + args.broker + ": " + created.error().message));
  auto joined = add_joined_mesh(options.home_dir(), *created, member, args.slug);
  if (!joined) return report_error(options, joined.error());
  if (options.json) {
    return print_ok(mesh_json(*joined, member.public_key().hex()));
  }
  std::cout << "created mesh \"" << joined->mesh_name << "\" (" << joined->mesh_id << ") as " << joined->slug << "\n"
            << "you are " << joined->display_name << " (" << joined->role << "), key "
            << member.public_key().hex().substr(0, 16) << "\n"
            << "invite others: claudemesh invite --mesh " << joined->slug << "\n";
  return exit_ok;
}

// ---- invite ----

struct InviteArgs {
  std::string role = "member";
  std::string ttl = "24h";
  std::int64_t uses = 1;
};

// "90", "90s", "30m", "24h", "7d" -> seconds.
std::optional<std::int64_t> parse_ttl(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::int64_t unit = 1;
  std::string digits = text;
  switch (text.back()) {
    case 's': unit = 1; digits.pop_back(); break;
    case 'm': unit = 60; digits.pop_back(); break;
    case 'h': unit = 3600; digits.pop_back(); break;
    case 'd': unit = 86400; digits.pop_back(); break;
    default: break;
  }
  if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const std::int64_t value = std::stoll(digits) * unit;
  return value > 0 ? std::optional<std::int64_t>(value) : std::nullopt;
}

int run_invite(const GlobalOptions& options, const InviteArgs& args) {
  const auto ttl = parse_ttl(args.ttl);
  if (!ttl) {
    return report(options, Failure{.code = "invalid_value", .message = "--ttl " + args.ttl + ": use seconds or 30m, 24h, 7d",
                                   .exit_code = exit_usage});
  }
  auto meshes = joined_meshes(options);
  if (!meshes) return report_error(options, meshes.error());
  auto mesh = select_mesh(*meshes, options.mesh);
  if (!mesh) return report_error(options, mesh.error());
  auto member = load_member_identity(*mesh);
  if (!member) return report_error(options, member.error());
  if (mesh->http_base.empty()) {
    return report(options, Failure{.code = "invalid_value", .message = "mesh \"" + mesh->slug + "\" has no broker HTTP address in config.json"});
  }
  asio::io_context io;
  auto api = BrokerApi::connect(io.get_executor(), mesh->http_base, *member);
  if (!api) return report_error(options, api.error());
  std::string mesh_id = mesh->mesh_id;
  std::string role = args.role;
  auto invite = run_blocking(io, (*api)->create_invite(std::move(mesh_id), std::move(role), *ttl, args.uses),
                             broker_call_limit, "creating the invite");
  if (!invite) return report_error(options, Error(invite.error().code, "creating an invite: " + invite.error().message));
  if (options.json) {
    return print_ok({{"url", invite->url},
                     {"invite_id", invite->invite_id},
                     {"expires_at", invite->expires_at_s},
                     {"mesh", mesh->slug},
                     {"role", args.role},
                     {"uses", args.uses}});
  }
  std::cout << invite->url << "\n";
  std::cerr << "(" << args.role << " invite to " << mesh->slug << ", " << args.uses << (args.uses == 1 ? " use" : " uses")
            << ", expires in " << args.ttl << "; join with: claudemesh join <url>)\n";
  return exit_ok;
}

// ---- join ----

struct JoinArgs {
  std::string url;
  std::string display_name;
  std::string slug;
};

int run_join(const GlobalOptions& options, const JoinArgs& args) {
  auto ref = parse_invite_url(args.url);
  if (!ref) return report(options, Failure{.code = std::string(ref.error().wire_code()), .message = ref.error().message, .exit_code = exit_usage});
  if (auto taken = check_slug_free(options, args.slug)) return report(options, *taken);
  const std::string display = args.display_name.empty() ? default_display_name() : args.display_name;
  asio::io_context io;
  const auto member = Identity::generate(IdentityKind::member);
  auto api = BrokerApi::connect(io.get_executor(), ref->http_base, member);
  if (!api) return report_error(options, api.error());
  std::string invite_id = ref->invite_id;
  std::string display_copy = display;
  auto joined = run_blocking(io, (*api)->join(std::move(invite_id), std::move(display_copy)), broker_call_limit, "joining");
  if (!joined) return report_error(options, Error(joined.error().code, "joining: " + joined.error().message));
  auto added = add_joined_mesh(options.home_dir(), *joined, member, args.slug);
  if (!added) return report_error(options, added.error());
  if (options.json) return print_ok(mesh_json(*added, member.public_key().hex()));
  std::cout << "joined mesh \"" << added->mesh_name << "\" as " << added->display_name << " (" << added->role
            << "); its slug here is " << added->slug << "\n";
  return exit_ok;
}

// ---- whoami ----

int run_whoami(const GlobalOptions& options) {
  auto meshes = joined_meshes(options);
  if (!meshes) return report_error(options, meshes.error());
  nlohmann::json list = nlohmann::json::array();
  for (const auto& mesh : *meshes) {
    auto member = load_member_identity(mesh);
    auto entry = mesh_json(mesh, member ? member->public_key().hex() : std::string());
    if (!member) entry["key_error"] = member.error().describe();
    list.push_back(std::move(entry));
  }
  // The launched session, when this process runs inside one and the daemon knows it.
  nlohmann::json session = nullptr;
  if (const auto token = session_token(); !token.empty()) {
    DaemonClient daemon(daemon_endpoint(options), 2500ms);
    if (auto reply = daemon.call("GET", "/v1/sessions/me"); reply && reply->status == 200) {
      auto doc = nlohmann::json::parse(reply->body, nullptr, false);
      if (!doc.is_discarded()) session = std::move(doc);
    }
  }
  if (options.json) {
    return print_ok({{"schema_version", "1.0"}, {"home", options.home_dir().string()}, {"meshes", list}, {"session", session}});
  }
  std::cout << "home " << options.home_dir().string() << "\n";
  if (list.empty()) std::cout << "no mesh joined; run `claudemesh join <invite-url>` or `claudemesh mesh create <name>`\n";
  for (const auto& mesh : list) {
    std::cout << "\nmesh " << mesh["slug"].get<std::string>() << " (" << mesh["mesh_name"].get<std::string>() << ")\n"
              << "  mesh id     " << mesh["mesh_id"].get<std::string>() << "\n"
              << "  member id   " << mesh["member_id"].get<std::string>() << "\n"
              << "  public key  " << mesh["member_pubkey"].get<std::string>() << "\n"
              << "  name        " << mesh["display_name"].get<std::string>() << " (" << mesh["role"].get<std::string>() << ")\n"
              << "  broker      " << mesh["broker"].get<std::string>() << "\n";
    if (mesh.contains("key_error")) std::cout << "  key         " << mesh["key_error"].get<std::string>() << "\n";
  }
  if (session.is_object()) {
    auto text = [&session](const char* field) {
      const auto it = session.find(field);
      return it != session.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::cout << "\nsession " << text("session_id") << " (this process)\n"
              << "  mesh        " << text("mesh") << "\n"
              << "  name        " << text("display_name") << "\n"
              << "  session key " << text("session_pubkey") << "\n";
    if (!text("role").empty()) std::cout << "  role        " << text("role") << "\n";
  }
  return exit_ok;
}

}  // namespace

void register_mesh_commands(CLI::App& app, GlobalOptions& options, int& exit_code) {
  auto* mesh = app.add_subcommand("mesh", "Create meshes");
  mesh->require_subcommand(1);
  auto create_args = std::make_shared<CreateArgs>();
  auto* create = mesh->add_subcommand("create", "Create a mesh at a broker and join it as its owner (a new key)");
  create->add_option("name", create_args->name, "The mesh's name")->required();
  create->add_option("--name", create_args->display_name, "Your display name in it (default: $USER)");
  create->add_option("--broker", create_args->broker, "The broker's HTTP address")->capture_default_str();
  create->add_option("--admin-token-file", create_args->admin_token_file, "File holding an admin token, for brokers that restrict creation");
  create->add_option("--slug", create_args->slug, "Local name for the mesh (default: from its name)");
  create->callback([&options, &exit_code, create_args] { exit_code = run_create(options, *create_args); });

  auto invite_args = std::make_shared<InviteArgs>();
  auto* invite = app.add_subcommand("invite", "Create an invite URL for a mesh you administer");
  add_mesh_option(*invite, options);
  invite->add_option("--role", invite_args->role, "Role of whoever joins with it")
      ->check(CLI::IsMember({"member", "admin"}))
      ->capture_default_str();
  invite->add_option("--ttl", invite_args->ttl, "How long it is valid: seconds, or 30m, 24h, 7d")->capture_default_str();
  invite->add_option("--uses", invite_args->uses, "How many joins it allows")->check(CLI::Range(1, 1000))->capture_default_str();
  invite->callback([&options, &exit_code, invite_args] { exit_code = run_invite(options, *invite_args); });

  auto join_args = std::make_shared<JoinArgs>();
  auto* join = app.add_subcommand("join", "Join a mesh with an invite URL (a new key for that mesh)");
  join->add_option("url", join_args->url, "The invite URL (<broker>/v1/invites/<id>)")->required();
  join->add_option("--name", join_args->display_name, "Your display name in the mesh (default: $USER)");
  join->add_option("--slug", join_args->slug, "Local name for the mesh (default: from its name)");
  join->callback([&options, &exit_code, join_args] { exit_code = run_join(options, *join_args); });

  auto* whoami = app.add_subcommand("whoami", "Show the meshes you joined, your key in each, and your launched session");
  whoami->callback([&options, &exit_code] { exit_code = run_whoami(options); });
}

}  // namespace claudemesh::cli
