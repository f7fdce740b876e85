// SPDX-License-Identifier: MIT
#include "daemon/session_registry.hpp"

#include <claudemesh/bytes.hpp>
#include <claudemesh/fingerprint.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <fstream>
#include <utility>

namespace claudemesh::daemon {
namespace {

constexpr std::size_t token_hex_chars = 64;
constexpr std::size_t pubkey_hex_chars = 64;
// A stat line is a few hundred bytes: 52 numeric fields and a short command name.
constexpr std::size_t max_stat_bytes = 4096;
// Field 22 (starttime) counted from field 3 (state), the first field after the command name.
constexpr std::size_t start_time_index = 22 - 3;

std::string lower(std::string_view text) {
  std::string out(text);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_hex(std::string_view text, std::size_t length) {
  return text.size() == length && std::ranges::all_of(text, [](unsigned char c) { return std::isxdigit(c) != 0; });
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](unsigned char x, unsigned char y) { return std::tolower(x) == std::tolower(y); });
}

// Entries are found by a digest of the token, so the map's comparisons never touch the secret.
std::string digest_of(std::string_view token) { return sha256_hex(as_bytes(lower(token))); }

}  // namespace

// ---- process probe ----

std::optional<std::uint64_t> parse_proc_stat_start_time(std::string_view stat) {
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = stat.substr(close + 1);
  std::array<std::string_view, start_time_index + 1> fields{};
  std::size_t count = 0;
  while (count < fields.size()) {
    const auto begin = rest.find_first_not_of(" \n");
    if (begin == std::string_view::npos) break;
    rest.remove_prefix(begin);
    const auto end = std::min(rest.find_first_of(" \n"), rest.size());
    fields.at(count++) = rest.substr(0, end);
    rest.remove_prefix(end);
  }
  if (count < fields.size()) return std::nullopt;
  // A zombie (Z) or dying (X) process has exited; only its parent has not collected it yet.
  if (fields[0] == "Z" || fields[0] == "X") return std::nullopt;
  const std::string_view field = fields[start_time_index];
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (ec != std::errc{} || ptr != field.data() + field.size()) return std::nullopt;
  return value;
}

LinuxProcessProbe::LinuxProcessProbe(std::filesystem::path proc_root) : proc_root_(std::move(proc_root)) {}

std::optional<std::uint64_t> LinuxProcessProbe::start_time(std::int64_t pid) const {
  if (pid <= 0) return std::nullopt;
  std::ifstream in(proc_root_ / std::to_string(pid) / "stat", std::ios::binary);
  if (!in) return std::nullopt;
  std::string text(max_stat_bytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return parse_proc_stat_start_time(text);
}

// ---- registry ----

SessionRegistry::SessionRegistry(std::chrono::milliseconds ttl) : ttl_(ttl) {}

bool SessionRegistry::expired(const SessionInfo& info, std::int64_t now_ms) const {
  return now_ms - info.registered_at_ms >= ttl_.count();
}

Result<std::vector<SessionInfo>> SessionRegistry::add(SessionInfo info) {
  // Messages never quote the token: it is a secret.
  if (!is_hex(info.token, token_hex_chars)) return fail(Errc::invalid_value, "\"token\" must be 64 hex characters");
  if (info.session_id.empty()) return fail(Errc::invalid_value, "\"session_id\" must not be empty");
  if (info.pid <= 0) return fail(Errc::invalid_value, "\"pid\" must be a positive process id");
  if (!info.session_pubkey.empty() && !is_hex(info.session_pubkey, pubkey_hex_chars)) {
    return fail(Errc::invalid_value, "\"session_pubkey\" must be 64 hex characters");
  }
  info.token = lower(info.token);
  info.session_pubkey = lower(info.session_pubkey);
  const std::string digest = digest_of(info.token);

  std::vector<SessionInfo> replaced;
  for (auto it = by_token_digest_.begin(); it != by_token_digest_.end();) {
    if (it->first == digest || it->second.session_id == info.session_id) {
      replaced.push_back(std::move(it->second));
      it = by_token_digest_.erase(it);
    } else {
      ++it;
    }
  }
  by_token_digest_.emplace(digest, std::move(info));
  return replaced;
}

const SessionInfo* SessionRegistry::find_by_token(std::string_view token, std::int64_t now_ms) const {
  if (token.size() != token_hex_chars) return nullptr;  // the length is not secret
  const auto found = by_token_digest_.find(digest_of(token));
  if (found == by_token_digest_.end() || expired(found->second, now_ms)) return nullptr;
  return &found->second;
}

const SessionInfo* SessionRegistry::find_by_session_pubkey(std::string_view pubkey) const {
  if (pubkey.empty()) return nullptr;
  for (const auto& [digest, info] : by_token_digest_) {
    if (equal_ignoring_case(info.session_pubkey, pubkey)) return &info;
  }
  return nullptr;
}

std::optional<SessionInfo> SessionRegistry::remove_by_token(std::string_view token) {
  if (token.size() != token_hex_chars) return std::nullopt;
  auto node = by_token_digest_.extract(digest_of(token));
  if (node.empty()) return std::nullopt;
  return std::move(node.mapped());
}

std::vector<SessionInfo> SessionRegistry::sweep(std::int64_t now_ms, const ProcessProbe& probe) {
  std::vector<SessionInfo> removed;
  for (auto it = by_token_digest_.begin(); it != by_token_digest_.end();) {
    const SessionInfo& info = it->second;
    bool gone = expired(info, now_ms);
    if (!gone) {
      const auto started = probe.start_time(info.pid);
      // Another start time means the pid was recycled: the session's own process is dead.
      gone = !started || (info.start_time && *info.start_time != *started);
    }
    if (gone) {
      removed.push_back(std::move(it->second));
      it = by_token_digest_.erase(it);
    } else {
      ++it;
    }
  }
  return removed;
}

std::vector<SessionInfo> SessionRegistry::list() const {
  std::vector<SessionInfo> out;
  out.reserve(by_token_digest_.size());
  for (const auto& [digest, info] : by_token_digest_) out.push_back(info);
  std::ranges::sort(out, {}, &SessionInfo::session_id);
  return out;
}

std::size_t SessionRegistry::size() const { return by_token_digest_.size(); }

}  // namespace claudemesh::daemon
