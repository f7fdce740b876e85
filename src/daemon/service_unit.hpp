// SPDX-License-Identifier: MIT
// `claudemesh daemon install-service`: the systemd user unit or launchd agent that keeps claudemeshd running
// (seed-daemon-cli.md §1.9). Rendering is pure, so every byte of both files is unit-tested; writing is one
// atomic replace.
//
// Lessons from the reference:
// * The unit runs the exact binary that was installed, by absolute path, never something found on the
//   service's PATH (1.30.1: the shebang picked a system Node that could not run the daemon).
// * The unit never carries `--mesh`: one daemon serves every joined mesh (1.30.2, 1.34.10).
// * Restart on failure only, so `claudemesh daemon down` (a clean exit) is not undone by the service manager.
#pragma once

#include <claudemesh/result.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace claudemesh::daemon {

/// What the service runs.
struct ServiceSpec {
  std::filesystem::path executable;  ///< absolute path of the installed claudemeshd (the exact binary)
  std::vector<std::string> args;     ///< extra arguments, e.g. {"--daemon-dir", "/x"}; `--mesh` is dropped
  std::filesystem::path home;        ///< the user's HOME
  std::filesystem::path log_file;    ///< daemon.log: stdout and stderr are appended to it
};

enum class ServicePlatform { systemd, launchd };

/// A rendered unit and the commands that start and stop it.
struct ServiceUnit {
  std::filesystem::path path;  ///< where the unit file goes
  std::string contents;        ///< the file's text
  std::string start_command;   ///< shell command that loads and starts the service (paths shell-quoted)
  std::string stop_command;    ///< shell command that stops and unloads it
};

/// Render the unit for `platform`:
/// * systemd: `<home>/.config/systemd/user/claudemesh-daemon.service`, a `Type=simple` service (the daemon
///   stays in the foreground) restarted on failure after 3 s, output appended to the log, `NoNewPrivileges`.
///   ExecStart words are quoted as systemd.service(5) "Command lines" reads them: `%` becomes `%%`
///   (specifiers) and `$` becomes `$$` (variable expansion) everywhere; a word that is empty or holds
///   whitespace, a control character, a quote, a backslash or `;` — and an executable that starts with one
///   of systemd's prefix characters `@ - : + !` — is put in double quotes with `\` and `"` escaped (control
///   characters as C escapes).
/// * launchd: `<home>/Library/LaunchAgents/com.claudemesh.daemon.plist`, run at load and kept alive while
///   it exits unsuccessfully; every string is XML-escaped.
/// `spec.args` are copied except `--mesh <slug>` and `--mesh=<slug>`.
ServiceUnit render_service_unit(ServicePlatform platform, const ServiceSpec& spec);

/// Whether we run under CI (any of CI, GITHUB_ACTIONS, GITLAB_CI, BUILDKITE, CIRCLECI, JENKINS_URL is set and
/// non-empty), where installing a persistent service is refused unless the user insists. `getenv` is
/// injected so tests need not touch the environment.
bool running_in_ci(const std::function<const char*(const char*)>& getenv);

/// Write `unit.contents` to `unit.path`: create missing parent directories, write a temporary file in the
/// same directory with mode 0644, fsync it, and rename it over any existing unit, so a service manager never
/// reads half a file. @returns `Errc::io_error` with the path and the OS reason.
Result<void> write_service_unit(const ServiceUnit& unit);

}  // namespace claudemesh::daemon
