// SPDX-License-Identifier: MIT
// claudemesh: the command-line interface. Flags, environment and output live here; the work is in
// libclaudemesh.
#include "cli.hpp"

#include <claudemesh/version.hpp>

#include <iostream>

namespace {

int run(int argc, char** argv) {
  using namespace claudemesh::cli;
  CLI::App app{"claudemesh: an end-to-end encrypted peer mesh for AI agents", "claudemesh"};
  app.set_version_flag("-V,--version", std::string("claudemesh ") + claudemesh::version_string);
  app.require_subcommand(1);
  app.footer(
      "Environment:\n"
      "  CLAUDEMESH_HOME   state directory (default ~/.claudemesh)\n"
      "Exit codes:\n"
      "  0 success, 1 the command failed (message on stderr, or {\"error\":...} with --json), 2 usage error");

  GlobalOptions options;
  app.add_flag("--json", options.json, "Print machine-readable JSON on stdout");
  app.add_option("--home", options.home, "State directory (overrides CLAUDEMESH_HOME)");

  int exit_code = exit_ok;
  register_identity_commands(app, options, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
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
