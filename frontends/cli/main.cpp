// SPDX-License-Identifier: MIT
// claudemesh: the command-line interface. Flags, environment and output live here; the work is in
// libclaudemesh.
#include "cli.hpp"

#include <claudemesh/version.hpp>

#include <csignal>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace {

// A usage error: one line on stderr, or the JSON error document when --json is among the arguments (the
// flag itself may not have been parsed yet).
int usage_error(const CLI::App& app, const CLI::ParseError& error, bool json) {
  using namespace claudemesh::cli;
  std::string message = error.what();
  for (auto& c : message) {
    if (c == '\n') c = ' ';
  }
  const CLI::App* verb = &app;
  while (!verb->get_subcommands().empty()) verb = verb->get_subcommands().front();
  const std::string help = verb == &app ? std::string("claudemesh --help") : "claudemesh " + verb->get_name() + " --help";
  GlobalOptions options;
  options.json = json;
  return report(options, Failure{.code = "usage", .message = message + " (see " + help + ")", .exit_code = exit_usage});
}

bool has_json_flag(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--json") return true;
  }
  return false;
}

// The first word that is not an option (nor the value of --home / --daemon-dir), when it names no verb.
std::optional<std::string> unknown_verb(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "--home" || arg == "--daemon-dir") {
      ++i;
      continue;
    }
    if (arg.starts_with("-")) continue;
    for (const auto* verb : app.get_subcommands([](const CLI::App*) { return true; })) {
      if (verb->check_name(std::string(arg))) return std::nullopt;
    }
    return std::string(arg);
  }
  return std::nullopt;
}

int run(int argc, char** argv) {
  using namespace claudemesh::cli;
  CLI::App app{"claudemesh: an end-to-end encrypted peer mesh for AI agents", "claudemesh"};
  app.set_version_flag("-V,--version", std::string("claudemesh ") + claudemesh::version_string);
  app.require_subcommand(1);
  // Options of the main command are accepted after the verb too (`claudemesh send --json bob hi`).
  app.fallthrough();

  GlobalOptions options;
  app.add_flag("--json", options.json, "Print machine-readable JSON on stdout (only JSON)");
  app.add_option("--home", options.home, "State directory (overrides CLAUDEMESH_HOME; default ~/.claudemesh)");
  app.add_option("--daemon-dir", options.daemon_dir, "Daemon directory (overrides CLAUDEMESH_DAEMON_DIR; default <home>/daemon)");
  app.add_flag("--strict", options.strict, "Never fall back to a direct broker connection when the daemon is not running");
  app.add_flag("--no-daemon", options.no_daemon, "Do not use the daemon: talk to the broker directly (beats --strict)");

  int exit_code = exit_ok;
  register_mesh_commands(app, options, exit_code);
  register_peer_commands(app, options, exit_code);
  register_message_commands(app, options, exit_code);
  register_inbox_commands(app, options, exit_code);
  register_daemon_commands(app, options, exit_code);
  register_identity_commands(app, options, exit_code);
  app.footer(std::string(help_footer()));  // after the verbs, which would inherit it

  if (auto unknown = unknown_verb(app, argc, argv)) {
    GlobalOptions early;
    early.json = has_json_flag(argc, argv);
    return report(early, Failure{.code = "usage",
                                 .message = "unknown verb \"" + *unknown + "\" (see claudemesh --help)",
                                 .exit_code = exit_usage});
  }

  const bool json = has_json_flag(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(app, e, json);
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);  // NOLINT(cert-err33-c): a closed socket or pipe is an error code, not a signal
  // The library reports failures as values; this only catches allocation failure and the like.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "claudemesh: internal error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "claudemesh: internal error\n";
  }
  return claudemesh::cli::exit_failure;
}
