// SPDX-License-Identifier: MIT
// Shared pieces of the claudemesh CLI: global options, exit codes, output helpers. Each verb group
// registers its subcommands from its own file (identity_commands.cpp, ...).
#pragma once

#include <claudemesh/result.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace claudemesh::cli {

/// Exit codes, documented in `claudemesh --help`.
enum ExitCode : int {
  exit_ok = 0,       ///< success
  exit_failure = 1,  ///< the command ran and failed (the message says why)
  exit_usage = 2,    ///< bad flags or arguments
};

/// Options every verb sees.
struct GlobalOptions {
  bool json = false;          ///< machine-readable output on stdout
  std::string home;           ///< --home, else $CLAUDEMESH_HOME, else ~/.claudemesh
  [[nodiscard]] std::filesystem::path home_dir() const;
  [[nodiscard]] std::filesystem::path default_identity_path() const { return home_dir() / "identity.json"; }
};

/// Print an error for people (stderr) or as `{"error":{"code":...,"message":...}}` (stdout, with --json).
int report_error(const GlobalOptions& options, const Error& error);

/// Print a JSON document on stdout.
void print_json(const nlohmann::json& doc);

void register_identity_commands(CLI::App& app, GlobalOptions& options, int& exit_code);

}  // namespace claudemesh::cli
