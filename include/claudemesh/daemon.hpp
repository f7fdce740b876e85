// SPDX-License-Identifier: MIT
/// @file daemon.hpp
/// `Daemon`: the per-user host process (`claudemeshd`) as an embeddable component. One daemon serves every
/// mesh its user has joined: one broker connection per mesh (a `MeshLink`, the same core `Peer` uses) over a
/// shared durable outbox and inbox, and a local HTTP API (the IPC) on a Unix socket and, optionally, on
/// loopback TCP with a bearer token. `docs/ipc-api.json` documents every route.
///
/// `open()` takes the singleton lock, checks the host fingerprint against the clone policy, creates the local
/// token and opens the stores; nothing listens or connects until `run()`.
///
/// @code
/// asio::io_context io;
/// auto daemon = claudemesh::Daemon::open(io.get_executor(), {.dir = dir, .meshes = std::move(meshes)});
/// if (!daemon) { std::cerr << daemon.error().describe() << "\n"; return 1; }
/// asio::co_spawn(io, (*daemon)->run(), asio::detached);
/// io.run();   // until (*daemon)->stop()
/// @endcode
///
/// @par Thread safety
/// Everything on the executor given to `open()`. Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/broker_client.hpp>
#include <claudemesh/export.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/inbox.hpp>
#include <claudemesh/outbox.hpp>
#include <claudemesh/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

/// The daemon's files in its directory (default `~/.claudemesh/daemon`, one per user and machine).
struct DaemonFiles {
  std::filesystem::path root;
  [[nodiscard]] std::filesystem::path lock() const { return root / "daemon.lock"; }   ///< flock; holds the pid
  [[nodiscard]] std::filesystem::path socket() const { return root / "daemon.sock"; } ///< the IPC, mode 0600
  [[nodiscard]] std::filesystem::path token() const { return root / "local-token"; }  ///< TCP bearer token, 0600
  [[nodiscard]] std::filesystem::path tcp_port() const { return root / "tcp-port"; }  ///< the TCP port, as text
  [[nodiscard]] std::filesystem::path outbox() const { return root / "outbox.db"; }
  [[nodiscard]] std::filesystem::path inbox() const { return root / "inbox.db"; }
  [[nodiscard]] std::filesystem::path log() const { return root / "daemon.log"; }
  [[nodiscard]] std::filesystem::path host_fingerprint() const { return root / "host_fingerprint.json"; }
};

/// The default TCP port of the IPC (the reference's).
inline constexpr std::uint16_t default_daemon_tcp_port = 47823;

/// What a daemon does when its directory was made on another machine (a cloned VM or home directory).
enum class ClonePolicy {
  refuse,  ///< `open()` fails with `Errc::forbidden`; `claudemesh daemon accept-host` adopts the directory
  warn,    ///< log a warning and continue
  allow,   ///< continue silently
};

/// "refuse", "warn", "allow". @returns nothing for anything else.
CLAUDEMESH_API std::optional<ClonePolicy> parse_clone_policy(std::string_view text) noexcept;

/// One joined mesh the daemon attaches to.
struct DaemonMesh {
  std::string slug;          ///< the local name (`--mesh`), unique among the user's meshes
  std::string mesh_id;
  std::string member_id;
  std::string display_name;
  std::string broker_url;    ///< `ws://…/ws` or `wss://…/ws`
  std::string ca_file;       ///< `wss://` to a self-hosted broker: trust this CA file
  Identity member;           ///< the member key for this mesh
};

struct DaemonConfig {
  std::filesystem::path dir;                        ///< see `DaemonFiles`; created 0700
  std::vector<DaemonMesh> meshes;                   ///< at least one
  std::optional<std::uint16_t> tcp_port = default_daemon_tcp_port;  ///< nullopt: Unix socket only; 0: any free port
  bool public_health = false;                       ///< serve `/v1/health` on TCP without the token
  std::vector<std::string> allowed_origins;         ///< `Origin` values accepted on TCP (default: none)
  ClonePolicy clone_policy = ClonePolicy::refuse;
  OutboxConfig outbox{};
  InboxConfig inbox{};
  BrokerClientConfig client{};                      ///< timeouts and backoff for every broker connection
  std::size_t max_body_bytes = 1 << 20;             ///< larger request bodies: 413
  std::size_t max_in_flight = 64;                   ///< more concurrent requests: 429 `daemon_busy`
  std::size_t max_event_streams = 32;               ///< more `/v1/events` streams: 429 `too_many_streams`
  std::chrono::milliseconds keepalive{15'000};      ///< SSE comment interval
  std::chrono::milliseconds reaper_interval{5'000}; ///< how often dead sessions are removed
  std::chrono::milliseconds prune_interval{std::chrono::hours(1)};  ///< inbox retention
  std::function<void(std::string_view)> log;        ///< one JSON object per call; empty: silent
};

class CLAUDEMESH_API Daemon {
 public:
  /// Lock the directory, check the host, create the token, open the stores, prepare one link per mesh.
  /// @returns `Errc::already_exists` ("daemon already running (pid N)"), `Errc::forbidden` (a cloned
  ///   directory under `ClonePolicy::refuse`; the message says how to adopt it), `Errc::invalid_value` (no
  ///   mesh, a duplicate slug), or the stores' errors.
  static Result<std::unique_ptr<Daemon>> open(const asio::any_io_executor& executor, DaemonConfig config);

  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  /// Releases the lock and removes the socket.
  ~Daemon();

  /// Listen on the socket (and TCP), connect every mesh, drain, receive, reap — until `stop()`.
  /// Listening failures are reported through `started()` before it returns.
  asio::awaitable<void> run();
  /// Close the listeners, the event streams and every broker connection; `run()` returns soon after.
  void stop();

  /// After `run()` began: whether the listeners are up (`Errc::io_error` when a socket could not be bound).
  [[nodiscard]] std::optional<Result<void>> started() const;
  /// The TCP port actually bound (0 when TCP is off or not yet listening).
  [[nodiscard]] std::uint16_t tcp_port() const noexcept;
  [[nodiscard]] const DaemonFiles& files() const noexcept;
  /// The IPC's routes as "METHOD /path" with OpenAPI-style parameters ("GET /v1/inbox/{id}"), CORS
  /// preflights left out — what `docs/ipc-api.json` documents.
  [[nodiscard]] std::vector<std::string> routes() const;
  [[nodiscard]] Outbox& outbox() noexcept;
  [[nodiscard]] Inbox& inbox() noexcept;

  struct Impl;

 private:
  explicit Daemon(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

/// The pid of the daemon that holds the lock in `dir`, if one is running.
CLAUDEMESH_API std::optional<long> running_daemon_pid(const std::filesystem::path& dir);

/// Adopt the daemon directory `dir` on this machine (`claudemesh daemon accept-host`): rewrite its host
/// fingerprint. @returns the first 16 hex digits of the new fingerprint.
CLAUDEMESH_API Result<std::string> daemon_accept_host(const std::filesystem::path& dir);

/// The version the daemon reports on `/v1/version` (the library's).
CLAUDEMESH_API std::string_view daemon_version() noexcept;

/// The service unit that keeps claudemeshd running: a systemd user unit
/// (`~/.config/systemd/user/claudemesh-daemon.service`, `Type=simple`, `Restart=on-failure`) or, on macOS, a
/// launchd agent (`~/Library/LaunchAgents/com.claudemesh.daemon.plist`).
struct DaemonServiceUnit {
  std::filesystem::path path;  ///< where the unit file goes
  std::string contents;        ///< its text
  std::string start_command;   ///< shell command that loads and starts it
  std::string stop_command;    ///< shell command that stops and unloads it
};

/// Render the unit for this platform. It runs `executable` (made absolute: the exact installed binary,
/// never one found on PATH) in the foreground with `args` (`--mesh` is dropped: one daemon serves every
/// mesh), with output appended to `log_file`. Pure: reads and writes nothing.
CLAUDEMESH_API DaemonServiceUnit render_daemon_service(const std::filesystem::path& executable,
                                                       const std::vector<std::string>& args,
                                                       const std::filesystem::path& home,
                                                       const std::filesystem::path& log_file);

/// Write the unit atomically (mode 0644, parents created). @returns `Errc::io_error` with the reason.
CLAUDEMESH_API Result<void> write_daemon_service(const DaemonServiceUnit& unit);

/// Whether a CI environment variable is set (CI, GITHUB_ACTIONS, GITLAB_CI, BUILDKITE, CIRCLECI, JENKINS_URL):
/// installing a persistent service there is almost always a mistake.
CLAUDEMESH_API bool running_in_ci_environment();

}  // namespace claudemesh
