// SPDX-License-Identifier: MIT
#include "cli.hpp"

#include <cstdlib>
#include <iostream>

namespace claudemesh::cli {

// getenv is not thread-safe against setenv; the CLI is single-threaded and never calls setenv.
// NOLINTBEGIN(concurrency-mt-unsafe)
std::filesystem::path GlobalOptions::home_dir() const {
  if (!home.empty()) return home;
  if (const char* env = std::getenv("CLAUDEMESH_HOME"); env && *env) return env;
  if (const char* user_home = std::getenv("HOME"); user_home && *user_home) {
    return std::filesystem::path(user_home) / ".claudemesh";
  }
  return ".claudemesh";
}
// NOLINTEND(concurrency-mt-unsafe)

int report_error(const GlobalOptions& options, const Error& error) {
  if (options.json) {
    print_json({{"error", {{"code", std::string(error.wire_code())}, {"message", error.message}}}});
  } else {
    std::cerr << "claudemesh: " << error.describe() << "\n";
  }
  return exit_failure;
}

void print_json(const nlohmann::json& doc) { std::cout << doc.dump(2) << "\n"; }

}  // namespace claudemesh::cli
