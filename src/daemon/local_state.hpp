// SPDX-License-Identifier: MIT
// The daemon's files under its directory (default ~/.claudemesh/daemon; the frontend resolves flags and the
// environment): the singleton lock, the local bearer token, and the host fingerprint with its clone policy.
//
// * SingletonLock: an OS lock (flock) on `daemon.lock`, held for the process's life. A second daemon is
//   refused at once with the holder's pid; a crashed daemon's lock vanishes with its process, so there is
//   no stale-pid guessing (the reference's check-then-write pid file raced).
// * Local token: 32 random bytes, base64url without padding, in `local-token` (0600), created atomically
//   on first start and reused after. Compared in constant time.
// * Host fingerprint: sha256(host id ‖ 0x00 ‖ stable MAC), stored in `host_fingerprint.json` (0600) on the
//   first start. A copy of the directory on another machine (a cloned VM or home directory) no longer
//   matches: policy `refuse` stops the daemon, `warn` logs and continues, `allow` continues; `claudemesh
//   daemon accept-host` rewrites the file. A file that cannot be read counts as a mismatch (the reference
//   continued silently).
#pragma once

#include <claudemesh/daemon.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace claudemesh::daemon {

using claudemesh::DaemonFiles;

/// An exclusive flock on a lock file, released when the object (or the process) goes away.
class SingletonLock {
 public:
  /// Create the directory (0700) and the lock file (0600), take the lock and write our pid into it.
  /// @returns `Errc::already_exists` ("daemon already running (pid N)") when another process holds it,
  ///   `Errc::io_error` when the file cannot be created or locked.
  static Result<SingletonLock> acquire(const std::filesystem::path& path);
  /// The pid written by whoever holds the lock at `path`, if someone does (for `daemon status` / `down`).
  static std::optional<long> holder(const std::filesystem::path& path);

  SingletonLock(SingletonLock&& other) noexcept;
  SingletonLock& operator=(SingletonLock&& other) noexcept;
  SingletonLock(const SingletonLock&) = delete;
  SingletonLock& operator=(const SingletonLock&) = delete;
  ~SingletonLock();

 private:
  explicit SingletonLock(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

/// The local bearer token in `path`: read it if the file exists (it must be 0600 and well formed), else
/// create it. @returns the token, `Errc::insecure_permissions`, `Errc::malformed`, or `Errc::io_error`.
Result<std::string> ensure_local_token(const std::filesystem::path& path, const RandomSource& rng = {});

/// Whether `presented` equals `expected`, in time independent of where they differ.
bool token_matches(std::string_view expected, std::string_view presented) noexcept;

/// What identifies this machine.
struct HostIdentity {
  std::string host_id;     ///< "linux:<machine-id>", or empty when the OS gives none
  std::string stable_mac;  ///< the first non-zero MAC of a physical-looking interface, sorted by name; or empty
  [[nodiscard]] std::string fingerprint() const;  ///< 64 hex: sha256(host_id ‖ 0x00 ‖ stable_mac)
};

/// Read the host identity from `machine_id_files` (the first that exists and is non-empty) and the
/// interfaces under `net_dir` (`<net_dir>/<iface>/address`), skipping loopback and virtual ones (lo, docker,
/// br-, veth, tap, tun, tailscale, wg, ...). Missing sources give empty fields, never random ones.
HostIdentity read_host_identity(const std::vector<std::filesystem::path>& machine_id_files,
                                const std::filesystem::path& net_dir);

using claudemesh::ClonePolicy;
using claudemesh::parse_clone_policy;

/// The stored fingerprint compared with the current host.
struct HostCheck {
  enum class Outcome { first_run, match, mismatch };
  Outcome outcome = Outcome::first_run;
  std::string stored_host_id;  ///< mismatch: what the file says (empty if unreadable)
  std::string detail;          ///< mismatch: why, for the message
};

/// Compare `current` with the record at `path`; on the first run, write it (0600).
Result<HostCheck> check_host(const std::filesystem::path& path, const HostIdentity& current, std::int64_t now_ms);

/// Rewrite the record at `path` for `current` (`claudemesh daemon accept-host`).
Result<void> accept_host(const std::filesystem::path& path, const HostIdentity& current, std::int64_t now_ms);

}  // namespace claudemesh::daemon
