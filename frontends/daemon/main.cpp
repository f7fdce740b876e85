// SPDX-License-Identifier: MIT
// claudemeshd: flags and environment → DaemonConfig (the joined meshes come from <home>/config.json), JSON-lines
// logs on stdout, SIGTERM/SIGINT stop. Runs in the foreground (systemd Type=simple); `--detach` forks into
// the background with its output appended to daemon.log. The work is in libclaudemesh (claudemesh/daemon.hpp).
#include <claudemesh/daemon.hpp>
#include <claudemesh/mesh_config.hpp>
#include <claudemesh/version.hpp>

#include <CLI/CLI.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

namespace {

// Exit codes, as `claudemeshd --help` documents them.
constexpr int exit_ok = 0;
constexpr int exit_failure = 1;  // already running, cannot listen, storage failure
constexpr int exit_config = 2;   // bad flags, no mesh joined, unreadable config
constexpr int exit_clone = 4;    // the directory belongs to another machine (clone policy refuse)

void log_line(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string json_escape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

int fatal(int code, const std::string& message) {
  log_line(R"({"event":"fatal","message":")" + json_escape(message) + "\"}");
  std::cerr << "claudemeshd: " << message << "\n";
  return code;
}

// getenv: the daemon reads its environment once, before any thread exists.
// NOLINTBEGIN(concurrency-mt-unsafe)
std::string env_or(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : std::move(fallback);
}

std::filesystem::path default_home() {
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / ".claudemesh";
  }
  return ".claudemesh";
}
// NOLINTEND(concurrency-mt-unsafe)

// Fork into the background: the child continues with its output appended to `log`, in a session of its
// own; the parent waits until the socket answers (or the child dies) and reports.
int detach(const claudemesh::DaemonFiles& files) {
  std::error_code ignored;
  std::filesystem::create_directories(files.root, ignored);
  ::chmod(files.root.c_str(), S_IRWXU);
  const pid_t child = ::fork();
  if (child < 0) return fatal(exit_failure, "fork failed");
  if (child == 0) {
    ::setsid();
    const int null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int out = ::open(files.log().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, S_IRUSR | S_IWUSR);
    if (null_in >= 0) ::dup2(null_in, STDIN_FILENO);
    if (out >= 0) {
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
    }
    return -1;  // the child goes on to run the daemon
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : exit_failure;
      std::cerr << "claudemeshd: the daemon exited during start-up (code " << code << "); see " << files.log().string()
                << "\n";
      return code == 0 ? exit_failure : code;
    }
    if (claudemesh::running_daemon_pid(files.root) == child && std::filesystem::exists(files.socket())) {
      std::cout << "claudemeshd started (pid " << child << "), log: " << files.log().string() << "\n";
      return exit_ok;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cerr << "claudemeshd: the daemon did not come up within 5 s; see " << files.log().string() << "\n";
  return exit_failure;
}

int run(int argc, char** argv) {
  CLI::App app{"claudemeshd: the claudemesh daemon — one per user, attached to every mesh the user joined", "claudemeshd"};
  app.set_version_flag("-V,--version", std::string("claudemeshd ") + claudemesh::version_string);
  app.footer(
      "Files: <daemon-dir>/{daemon.lock, daemon.sock, local-token, tcp-port, outbox.db, inbox.db, daemon.log,\n"
      "host_fingerprint.json}, directory 0700, files 0600. Meshes: <home>/config.json (claudemesh join).\n"
      "Environment: CLAUDEMESH_HOME, CLAUDEMESH_DAEMON_DIR, CLAUDEMESH_DAEMON_TCP_PORT, CLAUDEMESH_CLONE_POLICY;\n"
      "a flag wins over the environment.\n"
      "Logs are JSON lines on stdout. SIGTERM or SIGINT stops the daemon (queued messages stay in the outbox).\n"
      "Exit codes: 0 clean stop, 1 already running or cannot listen or open storage, 2 bad configuration or no\n"
      "mesh joined, 4 the directory was created on another machine (run: claudemesh daemon accept-host).");

  std::string home;
  std::string dir;
  int tcp_port = -1;
  bool no_tcp = false;
  bool public_health = false;
  bool detach_flag = false;
  std::string clone_policy;
  app.add_option("--home", home, "State directory with config.json (default $CLAUDEMESH_HOME or ~/.claudemesh)");
  app.add_option("--daemon-dir", dir, "Daemon directory (default $CLAUDEMESH_DAEMON_DIR or <home>/daemon)");
  app.add_option("--tcp-port", tcp_port, "Loopback TCP port of the IPC; 0 picks a free one (default 47823)")
      ->check(CLI::Range(0, 65535));
  app.add_flag("--no-tcp", no_tcp, "Serve the IPC on the Unix socket only");
  app.add_flag("--public-health", public_health, "Serve /v1/health on TCP without the token");
  app.add_option("--clone-policy", clone_policy, "refuse, warn or allow: when the directory comes from another machine")
      ->check(CLI::IsMember({"refuse", "warn", "allow"}));
  app.add_flag("--detach", detach_flag, "Fork into the background (output appended to daemon.log)");
  bool foreground = false;  // the default; accepted so service units can say so
  app.add_flag("--foreground", foreground, "Run in the foreground (the default; accepted for service units)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_config;
  }

  const std::filesystem::path home_dir = home.empty() ? std::filesystem::path(env_or("CLAUDEMESH_HOME", default_home().string()))
                                                      : std::filesystem::path(home);
  const std::filesystem::path daemon_dir =
      !dir.empty() ? std::filesystem::path(dir) : std::filesystem::path(env_or("CLAUDEMESH_DAEMON_DIR", (home_dir / "daemon").string()));

  claudemesh::DaemonConfig config;
  config.dir = daemon_dir;
  if (no_tcp) {
    config.tcp_port.reset();
  } else if (tcp_port >= 0) {
    config.tcp_port = static_cast<std::uint16_t>(tcp_port);
  } else if (const auto env_port = env_or("CLAUDEMESH_DAEMON_TCP_PORT", ""); !env_port.empty()) {
    if (env_port == "off") {
      config.tcp_port.reset();
    } else {
      try {
        const unsigned long value = std::stoul(env_port);
        if (value > 65535) throw std::out_of_range("port");
        config.tcp_port = static_cast<std::uint16_t>(value);
      } catch (...) {
        return fatal(exit_config, "CLAUDEMESH_DAEMON_TCP_PORT must be a port number or \"off\", not \"" + env_port + "\"");
      }
    }
  }
  config.public_health = public_health;
  if (clone_policy.empty()) clone_policy = env_or("CLAUDEMESH_CLONE_POLICY", "refuse");
  const auto policy = claudemesh::parse_clone_policy(clone_policy);
  if (!policy) return fatal(exit_config, "CLAUDEMESH_CLONE_POLICY must be refuse, warn or allow, not \"" + clone_policy + "\"");
  config.clone_policy = *policy;

  auto joined = claudemesh::load_joined_meshes(home_dir);
  if (!joined) return fatal(exit_config, joined.error().describe());
  if (joined->empty()) return fatal(exit_config, "no mesh joined; run `claudemesh join <invite-url>` first");
  for (const auto& mesh : *joined) {
    auto member = claudemesh::load_member_identity(mesh);
    if (!member) return fatal(exit_config, "mesh " + mesh.slug + ": " + member.error().describe());
    config.meshes.push_back(claudemesh::DaemonMesh{.slug = mesh.slug,
                                                   .mesh_id = mesh.mesh_id,
                                                   .member_id = mesh.member_id,
                                                   .display_name = mesh.display_name,
                                                   .broker_url = mesh.broker_url,
                                                   .ca_file = {},
                                                   .member = std::move(*member)});
  }

  const claudemesh::DaemonFiles files{daemon_dir};
  if (detach_flag && !foreground) {
    if (const int parent = detach(files); parent >= 0) return parent;
  }

  config.log = log_line;
  asio::io_context io;
  auto daemon = claudemesh::Daemon::open(io.get_executor(), std::move(config));
  if (!daemon) {
    const auto& error = daemon.error();
    if (error == claudemesh::Errc::forbidden) return fatal(exit_clone, error.message);
    if (error == claudemesh::Errc::invalid_value) return fatal(exit_config, error.message);
    return fatal(exit_failure, error.describe());
  }
  auto& d = **daemon;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&d](const std::error_code& ec, int) {
    if (!ec) d.stop();
  });
  ::signal(SIGPIPE, SIG_IGN);  // NOLINT(cert-err33-c): a closed IPC peer is an error code, not a signal
  bool finished = false;
  asio::co_spawn(io, d.run(), [&](const std::exception_ptr&) {
    finished = true;
    signals.cancel();
  });
  io.run();
  if (auto started = d.started(); started && !*started) return fatal(exit_failure, started->error().describe());
  return finished ? exit_ok : exit_failure;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    return fatal(exit_failure, std::string("internal error: ") + e.what());
  } catch (...) {
    return fatal(exit_failure, "internal error");
  }
}
