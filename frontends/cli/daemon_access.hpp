// SPDX-License-Identifier: MIT
// Finding, probing and starting the local daemon (claudemeshd) for the CLI.
//
// Daemon-first verbs (send, peer list, status/summary set, msg-status, inbox ...) call connect_daemon():
// probe GET /v1/version (2.5 s); if nothing answers and auto-start is allowed, either wait for a service
// manager's daemon (a systemd user unit exists: up to 8 s) or start one ourselves — under a spawn lock shared
// by concurrent CLIs, not within 30 s of a failed start (a marker file), and only with a mesh joined.
#pragma once

#include "cli.hpp"

#include <claudemesh/daemon_client.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>

namespace claudemesh::cli {

/// The daemon's Unix socket, with the session token from $CLAUDEMESH_IPC_TOKEN_FILE when set.
DaemonEndpoint daemon_endpoint(const GlobalOptions& options);

/// The launched session's IPC token (the trimmed contents of $CLAUDEMESH_IPC_TOKEN_FILE), or empty.
std::string session_token();

/// GET /v1/version within `timeout`. @returns the answer's JSON when the daemon answers 200.
std::optional<nlohmann::json> probe_daemon(const GlobalOptions& options, std::chrono::milliseconds timeout);

/// How to start the daemon.
struct SpawnOptions {
  bool no_tcp = false;          ///< --no-tcp
  std::optional<int> tcp_port;  ///< --tcp-port N
};

/// A daemon this CLI started.
struct Spawned {
  long pid = 0;
  std::filesystem::path log;
};

/// The claudemeshd executable: $CLAUDEMESH_DAEMON_BIN, else next to this executable (or, in a build tree,
/// ../daemon/claudemeshd), else on PATH. @returns `Errc::not_found` saying where it looked.
Result<std::filesystem::path> find_daemon_binary();

/// Start claudemeshd detached (own session, stdin /dev/null, stdout and stderr appended to
/// <daemon_dir>/daemon.log) and wait up to `wait` for it to answer /v1/version.
/// @returns its pid and log; `Errc::unavailable` when it exited during start-up or did not answer in time
///   (the message quotes the last log line).
Result<Spawned> spawn_daemon(const GlobalOptions& options, const SpawnOptions& spawn, std::chrono::milliseconds wait);

/// Replace this process with claudemeshd in the foreground (`daemon up --foreground`). Returns only on failure.
Error exec_daemon(const GlobalOptions& options, const SpawnOptions& spawn);

/// A client of the running daemon, starting it first when `autostart` (see the file comment). Nothing when
/// no daemon answers; `why` then says what was tried.
std::optional<DaemonClient> connect_daemon(const GlobalOptions& options, bool autostart, std::string& why);

/// The message for verbs that need the daemon when it is not running.
std::string daemon_not_running_message();

/// What a daemon-first verb uses: the daemon (`client`), the direct path (neither set), or nothing
/// (`failure`: --strict and no daemon answers; exit 5).
struct DaemonChoice {
  std::optional<DaemonClient> client;
  std::optional<Failure> failure;
};

/// Apply the policy (--no-daemon, --strict, their environment variables) and connect_daemon() with auto-start.
DaemonChoice choose_daemon(const GlobalOptions& options);

/// For verbs that only work with the daemon (inbox, daemon outbox ...): the client, or the exit-5 failure.
/// `autostart`: start it when it is not running (daemon-first verbs do; `daemon ...` verbs do not).
std::variant<DaemonClient, Failure> require_daemon(const GlobalOptions& options, bool autostart);

}  // namespace claudemesh::cli
