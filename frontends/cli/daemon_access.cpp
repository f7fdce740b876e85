// SPDX-License-Identifier: MIT
#include "daemon_access.hpp"

#include <claudemesh/daemon.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX declares it nowhere in C++ headers

namespace claudemesh::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto version_probe_timeout = 2500ms;  // 800 ms proved too short while a service restarts it
constexpr auto service_wait = 8s;               // a systemd unit exists: wait for it, never race it
constexpr auto spawn_wait = 3s;                 // an ad-hoc start must answer within this
constexpr auto failed_marker_ttl = 30s;         // no second attempt this soon after a failed start
constexpr auto spawn_lock_wait = 5s;            // another CLI is starting it: wait this long for its lock

bool is_executable(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) {
    text.pop_back();
  }
  std::size_t start = 0;
  while (start < text.size() && (text[start] == ' ' || text[start] == '\t')) ++start;
  return text.substr(start);
}

// The last non-empty line of the daemon's log, for a failed start's message.
std::string last_log_line(const fs::path& log) {
  std::ifstream in(log, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(in.tellg());
  const std::streamoff tail = std::min<std::streamoff>(size, 4096);
  in.seekg(size - tail);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text = trim(std::move(text));
  const auto newline = text.find_last_of('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

bool ensure_private_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return true;
  fs::create_directories(dir, ec);
  if (ec) return false;
  ::chmod(dir.c_str(), S_IRWXU);
  return true;
}

std::vector<std::string> daemon_argv(const fs::path& binary, const GlobalOptions& options, const SpawnOptions& spawn) {
  std::vector<std::string> args{binary.string(), "--home", options.home_dir().string(), "--daemon-dir",
                                options.daemon_dir_path().string(), "--foreground"};
  if (spawn.no_tcp) args.emplace_back("--no-tcp");
  if (spawn.tcp_port) {
    args.emplace_back("--tcp-port");
    args.push_back(std::to_string(*spawn.tcp_port));
  }
  return args;
}

// argv/envp arrays for execve, built before fork (the child calls only async-signal-safe functions).
struct ExecArgs {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::vector<char*> argv;
  std::vector<char*> envp;

  ExecArgs(std::vector<std::string> arguments, const std::string& extra_env) : args(std::move(arguments)) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      if (std::string_view(*e).starts_with("CLAUDEMESH_DAEMON_CHILD=")) continue;
      env.emplace_back(*e);
    }
    env.push_back(extra_env);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

bool daemon_answers(const GlobalOptions& options, std::chrono::milliseconds timeout) {
  return probe_daemon(options, timeout).has_value();
}

fs::path systemd_unit_path() {
  const std::string home = env("HOME");
  if (home.empty()) return {};
  return fs::path(home) / ".config" / "systemd" / "user" / "claudemesh-daemon.service";
}

bool recently_failed(const fs::path& marker) {
  std::error_code ec;
  const auto written = fs::last_write_time(marker, ec);
  if (ec) return false;
  return fs::file_time_type::clock::now() - written < failed_marker_ttl;
}

// Held while this CLI starts the daemon, so concurrent CLIs make one attempt between them.
class SpawnLock {
 public:
  explicit SpawnLock(const fs::path& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ < 0) return;
    const auto deadline = std::chrono::steady_clock::now() + spawn_lock_wait;
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) return;
      if (std::chrono::steady_clock::now() >= deadline) return;
      std::this_thread::sleep_for(50ms);
    }
    held_ = true;
  }
  SpawnLock(const SpawnLock&) = delete;
  SpawnLock& operator=(const SpawnLock&) = delete;
  ~SpawnLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] bool held() const noexcept { return held_; }

 private:
  int fd_;
  bool held_ = false;
};

}  // namespace

std::string session_token() {
  const std::string file = env("CLAUDEMESH_IPC_TOKEN_FILE");
  if (file.empty()) return {};
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  std::string token;
  std::getline(in, token);
  return trim(std::move(token));
}

DaemonEndpoint daemon_endpoint(const GlobalOptions& options) {
  return DaemonEndpoint{.socket = DaemonFiles{options.daemon_dir_path()}.socket(), .session_token = session_token()};
}

std::optional<nlohmann::json> probe_daemon(const GlobalOptions& options, std::chrono::milliseconds timeout) {
  DaemonEndpoint endpoint = daemon_endpoint(options);
  endpoint.session_token.clear();
  DaemonClient client(endpoint, timeout);
  auto reply = client.call("GET", "/v1/version");
  if (!reply || reply->status != 200) return std::nullopt;
  auto doc = nlohmann::json::parse(reply->body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return nlohmann::json::object();
  return doc;
}

std::string daemon_not_running_message() { return "the daemon is not running: claudemesh daemon up"; }

Result<fs::path> find_daemon_binary() {
  if (const std::string configured = env("CLAUDEMESH_DAEMON_BIN"); !configured.empty()) {
    if (is_executable(configured)) return fs::path(configured);
    return fail(Errc::not_found, "CLAUDEMESH_DAEMON_BIN=" + configured + " is not an executable file");
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const auto& candidate : {self.parent_path() / "claudemeshd", self.parent_path().parent_path() / "daemon" / "claudemeshd"}) {
      if (is_executable(candidate)) return candidate;
    }
  }
  const std::string path = env("PATH");
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto end = path.find(':', start);
    const std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!dir.empty() && is_executable(fs::path(dir) / "claudemeshd")) return fs::path(dir) / "claudemeshd";
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return fail(Errc::not_found, "claudemeshd not found next to " + (ec ? std::string("claudemesh") : self.string()) +
                                   " nor on PATH; set CLAUDEMESH_DAEMON_BIN");
}

Result<Spawned> spawn_daemon(const GlobalOptions& options, const SpawnOptions& spawn, std::chrono::milliseconds wait) {
  auto binary = find_daemon_binary();
  if (!binary) return fail(binary.error());
  const DaemonFiles files{options.daemon_dir_path()};
  if (!ensure_private_dir(files.root)) return fail(Errc::io_error, "cannot create " + files.root.string());
  const int log_fd = ::open(files.log().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return fail(Errc::io_error, "cannot open " + files.log().string() + ": " + std::generic_category().message(errno));
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ExecArgs exec(daemon_argv(*binary, options, spawn), "CLAUDEMESH_DAEMON_CHILD=1");

  const pid_t child = ::fork();
  if (child == 0) {
    ::setsid();
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::close_range(3, ~0U, 0);  // nothing of ours (pipes to our caller, locks) leaks into the daemon
    ::execve(exec.argv[0], exec.argv.data(), exec.envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  if (child < 0) return fail(Errc::io_error, std::string("cannot fork: ") + std::generic_category().message(errno));

  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      const std::string last = last_log_line(files.log());
      return fail(Errc::unavailable, "claudemeshd exited during start-up (code " + std::to_string(code) + ")" +
                                         (last.empty() ? std::string() : ": " + last) + "; log: " + files.log().string());
    }
    if (daemon_answers(options, 250ms)) return Spawned{.pid = child, .log = files.log()};
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(50ms);
  }
  return fail(Errc::unavailable, "claudemeshd (pid " + std::to_string(child) + ") did not answer within " +
                                     std::to_string(wait.count()) + " ms; log: " + files.log().string());
}

Error exec_daemon(const GlobalOptions& options, const SpawnOptions& spawn) {
  auto binary = find_daemon_binary();
  if (!binary) return binary.error();
  ExecArgs exec(daemon_argv(*binary, options, spawn), "CLAUDEMESH_DAEMON_CHILD=1");
  ::execve(exec.argv[0], exec.argv.data(), exec.envp.data());
  return Error(Errc::io_error, "cannot run " + binary->string() + ": " + std::generic_category().message(errno));
}

std::optional<DaemonClient> connect_daemon(const GlobalOptions& options, bool autostart, std::string& why) {
  static bool attempted = false;  // one start attempt per process (a verb may ask for several meshes)
  const DaemonFiles files{options.daemon_dir_path()};
  if (daemon_answers(options, version_probe_timeout)) return DaemonClient(daemon_endpoint(options));
  why = "no daemon answers on " + files.socket().string();
  if (!autostart) return std::nullopt;
  if (!env("CLAUDEMESH_DAEMON_CHILD").empty()) return std::nullopt;  // a CLI run by the daemon never starts one
  if (env_flag("CLAUDEMESH_NO_AUTOSTART")) {
    why += " (auto-start is off: CLAUDEMESH_NO_AUTOSTART)";
    return std::nullopt;
  }
  auto meshes = joined_meshes(options);
  if (!meshes || meshes->empty()) return std::nullopt;  // a daemon without meshes exits at once
  if (attempted) return std::nullopt;
  attempted = true;

  if (const auto unit = systemd_unit_path(); !unit.empty() && fs::exists(unit)) {
    // A service manager owns the daemon: starting another would fight it for the lock.
    const auto deadline = std::chrono::steady_clock::now() + service_wait;
    while (std::chrono::steady_clock::now() < deadline) {
      if (daemon_answers(options, 500ms)) return DaemonClient(daemon_endpoint(options));
      std::this_thread::sleep_for(200ms);
    }
    why = "the service-managed daemon did not answer within 8 s (systemctl --user status claudemesh-daemon)";
    return std::nullopt;
  }
  if (!ensure_private_dir(files.root)) return std::nullopt;
  SpawnLock lock(files.root / "spawn.lock");
  if (daemon_answers(options, 500ms)) return DaemonClient(daemon_endpoint(options));  // another CLI started it
  if (!lock.held()) {
    why += " (another claudemesh is starting it)";
    return std::nullopt;
  }
  const fs::path marker = files.root / "spawn-failed";
  if (recently_failed(marker)) {
    why += " (a start failed less than 30 s ago; see " + files.log().string() + ")";
    return std::nullopt;
  }
  auto spawned = spawn_daemon(options, SpawnOptions{}, spawn_wait);
  if (!spawned) {
    std::ofstream(marker, std::ios::trunc) << spawned.error().message << "\n";
    why = "starting the daemon failed: " + spawned.error().message;
    return std::nullopt;
  }
  std::error_code ignored;
  fs::remove(marker, ignored);
  if (!options.json) {
    std::cerr << "claudemesh: started the daemon (pid " << spawned->pid << "), log: " << spawned->log.string() << "\n";
  }
  return DaemonClient(daemon_endpoint(options));
}

DaemonChoice choose_daemon(const GlobalOptions& options) {
  const DaemonPolicy policy = options.policy();
  if (policy == DaemonPolicy::off) return {};
  std::string why;
  auto client = connect_daemon(options, true, why);
  if (client) return DaemonChoice{.client = std::move(client), .failure = std::nullopt};
  if (policy == DaemonPolicy::strict) {
    return DaemonChoice{.client = std::nullopt,
                        .failure = Failure{.code = "daemon_unavailable",
                                           .message = "the daemon is not reachable and --strict refuses the direct path (" +
                                                      why + ")",
                                           .exit_code = exit_daemon_unavailable}};
  }
  return {};
}

std::variant<DaemonClient, Failure> require_daemon(const GlobalOptions& options, bool autostart) {
  if (options.policy() == DaemonPolicy::off) {
    return Failure{.code = "daemon_unavailable",
                   .message = "this needs the daemon, and --no-daemon (or CLAUDEMESH_NO_DAEMON) rules it out",
                   .exit_code = exit_daemon_unavailable};
  }
  std::string why;
  if (auto client = connect_daemon(options, autostart, why)) return std::move(*client);
  return Failure{.code = "daemon_unavailable",
                 .message = daemon_not_running_message() + (why.empty() ? std::string() : " (" + why + ")"),
                 .exit_code = exit_daemon_unavailable};
}

}  // namespace claudemesh::cli
