// SPDX-License-Identifier: MIT
#include "daemon/local_state.hpp"

#include "core/secure_file.hpp"
#include "store/sqlite_database.hpp"

#include <claudemesh/bytes.hpp>
#include <claudemesh/fingerprint.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <string>
#include <span>
#include <system_error>
#include <utility>
#include <vector>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace claudemesh::daemon {
namespace {

using Json = nlohmann::json;

constexpr std::size_t token_bytes = 32;
constexpr std::size_t max_record_bytes = 4096;

Error os_error(std::string_view what, const std::filesystem::path& path, int err) {
  return {Errc::io_error, std::string(what) + " " + path.string() + ": " + std::generic_category().message(err)};
}

std::string read_small_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text(256, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
  return text;
}

// Interfaces that are not the machine's own hardware, or that come and go.
bool is_virtual_interface(std::string_view name) {
  static constexpr std::array prefixes{"lo",   "docker", "br-", "veth",  "tap",     "tun",    "tailscale",
                                       "wg",   "utun",   "ppp", "vboxnet", "vmnet", "awdl", "llw",
                                       "virbr", "cni",    "flannel", "cali"};
  std::string lower(name);
  std::ranges::transform(lower, lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::ranges::any_of(prefixes, [&](std::string_view prefix) { return lower.starts_with(prefix); });
}

Json record_for(const HostIdentity& host, std::int64_t now_ms) {
  return Json{{"schema_version", 1},
              {"fingerprint", host.fingerprint()},
              {"host_id", host.host_id},
              {"stable_mac", host.stable_mac},
              {"written_at_ms", now_ms}};
}

}  // namespace

// ---- singleton lock ----

Result<SingletonLock> SingletonLock::acquire(const std::filesystem::path& path) {
  if (auto made = store::create_private_directories(path.parent_path()); !made) return fail(made.error());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(os_error("cannot open the daemon lock", path, errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      const auto pid = holder(path);
      return fail(Errc::already_exists,
                  "daemon already running" + (pid ? " (pid " + std::to_string(*pid) + ")" : std::string()));
    }
    return fail(os_error("cannot lock", path, err));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd);
    return fail(os_error("cannot write the pid into", path, err));
  }
  return SingletonLock(fd);
}

std::optional<long> SingletonLock::holder(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  // If we can take the lock, nobody holds it: whatever pid the file names is gone.
  const bool free = ::flock(fd, LOCK_SH | LOCK_NB) == 0;
  ::close(fd);
  if (free) return std::nullopt;
  const std::string text = read_small_file(path);
  try {
    const long pid = std::stol(text);
    return pid > 0 ? std::optional<long>(pid) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

SingletonLock::SingletonLock(SingletonLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

SingletonLock& SingletonLock::operator=(SingletonLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

SingletonLock::~SingletonLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

// ---- local token ----

Result<std::string> ensure_local_token(const std::filesystem::path& path, const RandomSource& rng) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    auto text = core::read_secret_file(path, 256);
    if (!text) return fail(text.error(), "daemon token");
    std::string token = *text;
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    auto decoded = from_base64url(token);
    if (!decoded || decoded->size() != token_bytes) {
      return fail(Errc::malformed, path.string() + " does not hold a daemon token; delete it to mint a new one");
    }
    return token;
  }
  std::array<std::uint8_t, token_bytes> raw{};
  fill_random(rng, raw);
  std::string token = to_base64url(raw);
  secure_wipe(raw.data(), raw.size());
  const std::string line = token + "\n";
  if (auto written = core::write_secret_file(path, line, false); !written) return fail(written.error(), "daemon token");
  return token;
}

bool token_matches(std::string_view expected, std::string_view presented) noexcept {
  if (expected.empty()) return false;
  const auto as_span = [](std::string_view s) {
    return std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  return constant_time_equal(as_span(expected), as_span(presented));
}

// ---- host fingerprint ----

std::string HostIdentity::fingerprint() const {
  std::string input = host_id;
  input.push_back('\0');
  input += stable_mac;
  return sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()));
}

HostIdentity read_host_identity(const std::vector<std::filesystem::path>& machine_id_files,
                                const std::filesystem::path& net_dir) {
  HostIdentity host;
  for (const auto& file : machine_id_files) {
    const std::string id = read_small_file(file);
    if (!id.empty()) {
      host.host_id = "linux:" + id;
      break;
    }
  }
  std::vector<std::string> candidates;  // "name::mac", sorted so the choice is stable
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(net_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (is_virtual_interface(name)) continue;
    const std::string mac = read_small_file(entry.path() / "address");
    if (mac.empty() || mac == "00:00:00:00:00:00") continue;
    std::string candidate = name;
    candidate.append("::").append(mac);
    candidates.push_back(std::move(candidate));
  }
  std::ranges::sort(candidates);
  if (!candidates.empty()) host.stable_mac = candidates.front().substr(candidates.front().find("::") + 2);
  return host;
}


Result<HostCheck> check_host(const std::filesystem::path& path, const HostIdentity& current, std::int64_t now_ms) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (auto written = accept_host(path, current, now_ms); !written) return fail(written.error());
    return HostCheck{HostCheck::Outcome::first_run, {}, {}};
  }
  auto text = core::read_secret_file(path, max_record_bytes);
  if (!text) return fail(text.error(), "host fingerprint");
  const Json record = Json::parse(*text, nullptr, false);
  if (!record.is_object() || !record.contains("fingerprint") || !record["fingerprint"].is_string()) {
    return HostCheck{HostCheck::Outcome::mismatch, {}, path.string() + " is unreadable"};
  }
  const std::string stored = record["fingerprint"].get<std::string>();
  const std::string stored_host = record.value("host_id", std::string());
  if (stored == current.fingerprint()) return HostCheck{HostCheck::Outcome::match, stored_host, {}};
  return HostCheck{HostCheck::Outcome::mismatch, stored_host,
                   "this directory was set up on another host (stored " + stored.substr(0, 16) + ", this host " +
                       current.fingerprint().substr(0, 16) + ")"};
}

Result<void> accept_host(const std::filesystem::path& path, const HostIdentity& current, std::int64_t now_ms) {
  const std::string text = record_for(current, now_ms).dump(2) + "\n";
  return core::write_secret_file(path, text, true);
}

}  // namespace claudemesh::daemon

namespace claudemesh {

std::optional<ClonePolicy> parse_clone_policy(std::string_view text) noexcept {
  if (text == "refuse") return ClonePolicy::refuse;
  if (text == "warn") return ClonePolicy::warn;
  if (text == "allow") return ClonePolicy::allow;
  return std::nullopt;
}

}  // namespace claudemesh
