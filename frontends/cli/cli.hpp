// SPDX-License-Identifier: MIT
// Shared pieces of the claudemesh CLI: global options, exit codes, output helpers. Each verb group
// registers its subcommands from its own file (identity_commands.cpp, mesh_commands.cpp, ...).
#pragma once

#include <claudemesh/daemon_client.hpp>
#include <claudemesh/mesh_config.hpp>
#include <claudemesh/result.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh::cli {

/// Exit codes, documented in `claudemesh --help` (the one place they are defined).
enum ExitCode : int {
  exit_ok = 0,                  ///< success
  exit_failure = 1,             ///< the command ran and failed (the message says why)
  exit_usage = 2,               ///< bad flags or arguments
  exit_not_found = 3,           ///< unknown mesh, target or message
  exit_conflict = 4,            ///< already exists, or an idempotency conflict
  exit_daemon_unavailable = 5,  ///< the daemon is needed (daemon verbs, inbox, --strict) and not running
  exit_refused = 6,             ///< the broker refused: unauthorized, forbidden, revoked, not a member
};

/// The footer of `claudemesh --help` that documents the exit codes and the environment.
std::string_view help_footer();

/// How a verb that can use the daemon does (--strict, --no-daemon and their environment variables).
enum class DaemonPolicy {
  prefer,  ///< the daemon when it answers (starting it when needed), else the direct (cold) path
  strict,  ///< the daemon or nothing: no cold path (exit 5)
  off,     ///< never the daemon
};

/// Options every verb sees.
struct GlobalOptions {
  bool json = false;       ///< machine-readable output on stdout
  std::string home;        ///< --home, else $CLAUDEMESH_HOME, else ~/.claudemesh
  std::string daemon_dir;  ///< --daemon-dir, else $CLAUDEMESH_DAEMON_DIR, else <home>/daemon
  bool strict = false;     ///< --strict
  bool no_daemon = false;  ///< --no-daemon
  std::string mesh;        ///< --mesh, for the verbs that take it

  [[nodiscard]] std::filesystem::path home_dir() const;
  [[nodiscard]] std::filesystem::path daemon_dir_path() const;
  [[nodiscard]] std::filesystem::path default_identity_path() const { return home_dir() / "identity.json"; }
  /// Flags beat the environment; --no-daemon beats --strict (and CLAUDEMESH_NO_DAEMON beats
  /// CLAUDEMESH_STRICT_DAEMON).
  [[nodiscard]] DaemonPolicy policy() const;
};

/// A failure as the CLI reports it: a code (an `Errc` wire name or the daemon's code), one line for people,
/// and the exit status.
struct Failure {
  std::string code;
  std::string message;
  int exit_code = exit_failure;
};

/// The exit status for a library error (see ExitCode).
int exit_code_for(const Error& error);
/// A library error as a Failure, with its exit status.
Failure failure_from(const Error& error);
/// The daemon's refusal (an HTTP error status) as a Failure; `context` ("send") prefixes the message.
Failure failure_from_reply(const DaemonReply& reply, std::string_view context);

/// Print a failure: one line `claudemesh: <message>` on stderr, or with --json
/// `{"ok":false,"error":{"code":...,"message":...}}` on stdout. @returns its exit status.
int report(const GlobalOptions& options, const Failure& failure);
/// `report()`, with `extra` members added to the JSON document (ignored for people).
int report(const GlobalOptions& options, const Failure& failure, const nlohmann::json& extra);
/// `report(failure_from(error))`.
int report_error(const GlobalOptions& options, const Error& error);

/// Print a JSON document on stdout.
void print_json(const nlohmann::json& doc);
/// Print `{"ok":true, ...fields}` on stdout. @returns exit_ok.
int print_ok(const nlohmann::json& fields);

/// The string member `field` of a JSON object, or "" when it is absent or not a string.
std::string text_of(const nlohmann::json& object, const char* field);

/// Parse a daemon answer's JSON body; an unparsable body is a Failure.
std::optional<nlohmann::json> parse_reply(const DaemonReply& reply, Failure& failure);

/// Percent-encode a query value.
std::string url_encode(std::string_view text);

/// `getenv` as a string (empty when unset). The CLI is single-threaded and never calls setenv.
std::string env(const char* name);
/// Whether an environment variable is set to a true value ("1", "true", "yes", "on").
bool env_flag(const char* name);

/// The joined meshes of this home, or the failure to read them.
Result<std::vector<JoinedMesh>> joined_meshes(const GlobalOptions& options);

/// Add `--mesh <slug>` to a verb.
void add_mesh_option(CLI::App& verb, GlobalOptions& options);

void register_identity_commands(CLI::App& app, GlobalOptions& options, int& exit_code);
void register_mesh_commands(CLI::App& app, GlobalOptions& options, int& exit_code);
void register_peer_commands(CLI::App& app, GlobalOptions& options, int& exit_code);
void register_message_commands(CLI::App& app, GlobalOptions& options, int& exit_code);
void register_inbox_commands(CLI::App& app, GlobalOptions& options, int& exit_code);
void register_daemon_commands(CLI::App& app, GlobalOptions& options, int& exit_code);

}  // namespace claudemesh::cli
