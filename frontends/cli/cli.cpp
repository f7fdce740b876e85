// SPDX-License-Identifier: MIT
#include "cli.hpp"

#include <cstdlib>
#include <iostream>

namespace claudemesh::cli {

// getenv is not thread-safe against setenv; the CLI is single-threaded and never calls setenv.
// NOLINTBEGIN(concurrency-mt-unsafe)
std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}
// NOLINTEND(concurrency-mt-unsafe)

bool env_flag(const char* name) {
  const std::string value = env(name);
  return value == "1" || value == "true" || value == "TRUE" || value == "yes" || value == "on";
}

std::string_view help_footer() {
  return "Environment:\n"
         "  CLAUDEMESH_HOME          state directory (default ~/.claudemesh)\n"
         "  CLAUDEMESH_DAEMON_DIR    daemon directory (default <home>/daemon)\n"
         "  CLAUDEMESH_STRICT_DAEMON=1  like --strict;  CLAUDEMESH_NO_DAEMON=1  like --no-daemon (flags win)\n"
         "  CLAUDEMESH_NO_AUTOSTART=1   never start the daemon on demand\n"
         "  CLAUDEMESH_DAEMON_BIN    the claudemeshd to start (default: next to claudemesh, else PATH)\n"
         "  CLAUDEMESH_IPC_TOKEN_FILE   a launched session's IPC token (whoami, peer list mark it)\n"
         "Exit codes:\n"
         "  0 success\n"
         "  1 the command failed (message on stderr, or {\"ok\":false,\"error\":...} on stdout with --json)\n"
         "  2 usage error (bad flags or arguments)\n"
         "  3 not found (unknown mesh, target or message)\n"
         "  4 conflict (already exists, idempotency conflict)\n"
         "  5 the daemon is not running (daemon verbs, inbox, --strict)\n"
         "  6 refused by the broker (unauthorized, forbidden, revoked)";
}

std::filesystem::path GlobalOptions::home_dir() const {
  if (!home.empty()) return home;
  if (const auto from_env = env("CLAUDEMESH_HOME"); !from_env.empty()) return from_env;
  if (const auto user_home = env("HOME"); !user_home.empty()) return std::filesystem::path(user_home) / ".claudemesh";
  return ".claudemesh";
}

std::filesystem::path GlobalOptions::daemon_dir_path() const {
  if (!daemon_dir.empty()) return daemon_dir;
  if (const auto from_env = env("CLAUDEMESH_DAEMON_DIR"); !from_env.empty()) return from_env;
  return home_dir() / "daemon";
}

DaemonPolicy GlobalOptions::policy() const {
  if (no_daemon) return DaemonPolicy::off;
  if (strict) return DaemonPolicy::strict;
  if (env_flag("CLAUDEMESH_NO_DAEMON")) return DaemonPolicy::off;
  if (env_flag("CLAUDEMESH_STRICT_DAEMON")) return DaemonPolicy::strict;
  return DaemonPolicy::prefer;
}

int exit_code_for(const Error& error) {
  switch (error.errc()) {
    case Errc::not_found:
    case Errc::unknown_target:
      return exit_not_found;
    case Errc::already_exists:
    case Errc::idempotency_key_reused:
      return exit_conflict;
    case Errc::unauthorized:
    case Errc::forbidden:
    case Errc::not_a_member:
    case Errc::revoked:
      return exit_refused;
    case Errc::invalid_target:
      return exit_usage;
    default:
      return exit_failure;
  }
}

Failure failure_from(const Error& error) {
  return Failure{.code = std::string(error.wire_code()), .message = error.message.empty() ? error.describe() : error.message,
                 .exit_code = exit_code_for(error)};
}

Failure failure_from_reply(const DaemonReply& reply, std::string_view context) {
  Failure failure{.code = reply.error_code(), .message = std::string(context) + " (daemon): " + reply.error_message()};
  if (reply.status == 404) {
    failure.exit_code = exit_not_found;
  } else if (reply.status == 409) {
    failure.exit_code = exit_conflict;
  } else if (reply.status == 401 || reply.status == 403) {
    failure.exit_code = exit_refused;
  } else if (reply.status == 400 && (failure.code == "mesh_required" || failure.code == "invalid_target")) {
    failure.exit_code = exit_usage;
  }
  return failure;
}

int report(const GlobalOptions& options, const Failure& failure) { return report(options, failure, nlohmann::json::object()); }

int report(const GlobalOptions& options, const Failure& failure, const nlohmann::json& extra) {
  if (options.json) {
    nlohmann::json doc{{"ok", false}};
    if (extra.is_object()) doc.update(extra);
    doc["error"] = {{"code", failure.code}, {"message", failure.message}};
    print_json(doc);
  } else {
    std::string line = failure.message;
    for (auto& c : line) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    std::cerr << "claudemesh: " << line << "\n";
  }
  return failure.exit_code;
}

int report_error(const GlobalOptions& options, const Error& error) { return report(options, failure_from(error)); }

void print_json(const nlohmann::json& doc) {
  std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

int print_ok(const nlohmann::json& fields) {
  nlohmann::json doc{{"ok", true}};
  doc.update(fields);
  print_json(doc);
  return exit_ok;
}

std::optional<nlohmann::json> parse_reply(const DaemonReply& reply, Failure& failure) {
  auto doc = nlohmann::json::parse(reply.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    failure = Failure{.code = "malformed", .message = "the daemon's answer is not a JSON object"};
    return std::nullopt;
  }
  return doc;
}

std::string url_encode(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z') || (byte >= '0' && byte <= '9') || byte == '-' ||
        byte == '_' || byte == '.' || byte == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[byte >> 4];
      out += hex[byte & 0x0F];
    }
  }
  return out;
}

Result<std::vector<JoinedMesh>> joined_meshes(const GlobalOptions& options) {
  return load_joined_meshes(options.home_dir());
}

void add_mesh_option(CLI::App& verb, GlobalOptions& options) {
  verb.add_option("--mesh", options.mesh, "Mesh slug (default: the only joined mesh)");
}

std::string text_of(const nlohmann::json& object, const char* field) {
  const auto it = object.find(field);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace claudemesh::cli
