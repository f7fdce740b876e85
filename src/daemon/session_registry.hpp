// SPDX-License-Identifier: MIT
// The sessions `claudemesh launch` registered with the daemon (seed-daemon-cli.md §1.13), and the reaper that
// forgets them once their process is gone.
//
// * Each launched session holds a secret per-session token (64 hex). The registry is keyed by sha256 of the
//   token, so a lookup compares digests, not the secret itself: timing reveals nothing about the token.
// * A session lives at most `ttl` (24 h, as the reference), and only while its process does. A pid alone is
//   not enough — pids are recycled — so registration records the process start time (field 22 of
//   /proc/<pid>/stat) and the sweep drops an entry whose pid now belongs to a younger process
//   (reference 1.31.0). Reading /proc is one small file per session: no `ps` child processes, nothing that
//   blocks the daemon's loop (reference 1.31.1).
// * In memory only: a daemon restart forgets every session until it registers again.
#pragma once

#include <claudemesh/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh::daemon {

/// One registered session.
struct SessionInfo {
  std::string token;  ///< 64 lowercase hex; secret: never logged, never returned by /v1/sessions/me
  std::string session_id;
  std::string mesh;
  std::string display_name;
  std::string cwd;
  std::string role;
  std::vector<std::string> groups;          ///< "@name:role" strings as registered
  std::int64_t pid = 0;
  std::optional<std::uint64_t> start_time;  ///< /proc/<pid>/stat field 22 at registration (clock ticks since boot)
  std::string session_pubkey;               ///< 64 lowercase hex; empty when registered without presence
  std::int64_t registered_at_ms = 0;
};

/// Whether a process exists, and when it started. Injected so tests need no real processes.
///
/// Thread safety: distinct objects safe; shared objects unsafe.
class ProcessProbe {
 public:
  virtual ~ProcessProbe() = default;
  /// The start time of process `pid` (clock ticks since boot, field 22 of /proc/<pid>/stat), or
  /// `std::nullopt` when there is no such live process (it does not exist, is a zombie, or cannot be read).
  [[nodiscard]] virtual std::optional<std::uint64_t> start_time(std::int64_t pid) const = 0;
};

/// `ProcessProbe` over Linux procfs.
///
/// Thread safety: distinct objects safe; shared objects unsafe.
class LinuxProcessProbe final : public ProcessProbe {
 public:
  /// `proc_root` is where procfs is mounted; tests point it at a directory of fake `<pid>/stat` files.
  explicit LinuxProcessProbe(std::filesystem::path proc_root = "/proc");
  [[nodiscard]] std::optional<std::uint64_t> start_time(std::int64_t pid) const override;

 private:
  std::filesystem::path proc_root_;
};

/// The start time (field 22) in the text of a /proc/<pid>/stat file, or `std::nullopt` if the text is not
/// such a line or the process is a zombie (state Z or X: it has exited, only its parent has not reaped it).
/// Fields are counted after the last ')', because the command name (field 2) may hold spaces and parentheses.
std::optional<std::uint64_t> parse_proc_stat_start_time(std::string_view stat);

/// The registered sessions.
///
/// Thread safety: distinct objects safe; shared objects unsafe.
class SessionRegistry {
 public:
  explicit SessionRegistry(std::chrono::milliseconds ttl = std::chrono::hours(24));

  /// Register `info`. The token must be 64 hex digits (upper case is accepted and stored lower case),
  /// `session_id` non-empty, `pid` > 0, and `session_pubkey` empty or 64 hex digits (stored lower case).
  /// An earlier entry with the same `session_id` or the same token is replaced.
  /// @returns the replaced entries (the daemon closes their broker connections), or `Errc::invalid_value`.
  Result<std::vector<SessionInfo>> add(SessionInfo info);

  /// The session holding `token` (any case), or nullptr if there is none or it is older than the ttl
  /// (`now_ms >= registered_at_ms + ttl`). The pointer is valid until the registry next changes.
  [[nodiscard]] const SessionInfo* find_by_token(std::string_view token, std::int64_t now_ms) const;

  /// The session whose presence key is `pubkey` (any case), or nullptr. Empty never matches.
  [[nodiscard]] const SessionInfo* find_by_session_pubkey(std::string_view pubkey) const;

  /// Remove the session holding `token`. @returns it, or `std::nullopt` if there was none.
  std::optional<SessionInfo> remove_by_token(std::string_view token);

  /// The reaper: drop entries past the ttl, whose process is gone, or whose pid now belongs to another
  /// process (its start time differs from the recorded one). An entry registered without a start time is
  /// checked for liveness only. @returns the removed entries.
  std::vector<SessionInfo> sweep(std::int64_t now_ms, const ProcessProbe& probe);

  /// Every registered session, ordered by session id.
  [[nodiscard]] std::vector<SessionInfo> list() const;
  [[nodiscard]] std::size_t size() const;

 private:
  [[nodiscard]] bool expired(const SessionInfo& info, std::int64_t now_ms) const;

  std::chrono::milliseconds ttl_;
  std::map<std::string, SessionInfo, std::less<>> by_token_digest_;  // sha256_hex(lowercase token) -> entry
};

}  // namespace claudemesh::daemon
