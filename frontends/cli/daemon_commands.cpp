// SPDX-License-Identifier: MIT
// `claudemesh daemon ...`: start, stop and inspect the per-user daemon (claudemeshd), its outbox and logs.
#include "cli.hpp"
#include "daemon_access.hpp"

#include <claudemesh/daemon.hpp>
#include <claudemesh/version.hpp>

#include <csignal>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <thread>

namespace claudemesh::cli {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto up_wait = 5s;    // `daemon up`: how long the new daemon has to answer
constexpr auto down_wait = 5s;  // `daemon down`: how long it has to exit after SIGTERM

// ---- up / down ----

struct UpArgs {
  bool foreground = false;
  bool no_tcp = false;
  int tcp_port = -1;
};

int run_up(const GlobalOptions& options, const UpArgs& args) {
  const DaemonFiles files{options.daemon_dir_path()};
  if (auto version = probe_daemon(options, 2500ms)) {
    const long pid = version->value("pid", 0L);
    if (options.json) return print_ok({{"already_running", true}, {"pid", pid}, {"socket", files.socket().string()}});
    std::cout << "daemon already running (pid " << pid << ")\n";
    return exit_ok;
  }
  auto meshes = joined_meshes(options);
  if (!meshes) return report_error(options, meshes.error());
  if (meshes->empty()) {
    return report(options, Failure{.code = "not_found",
                                   .message = "no mesh joined, so the daemon has nothing to do; run `claudemesh join <invite-url>` first",
                                   .exit_code = exit_not_found});
  }
  SpawnOptions spawn;
  spawn.no_tcp = args.no_tcp;
  if (args.tcp_port >= 0) spawn.tcp_port = args.tcp_port;
  if (args.foreground) return report_error(options, exec_daemon(options, spawn));
  auto started = spawn_daemon(options, spawn, up_wait);
  if (!started) {
    return report(options, Failure{.code = "daemon_start_failed", .message = started.error().message},
                  Json{{"reason", "did_not_start"}, {"log", files.log().string()}});
  }
  if (options.json) {
    return print_ok({{"detached", true}, {"pid", started->pid}, {"log", started->log.string()}, {"socket", files.socket().string()}});
  }
  std::cout << "daemon started (pid " << started->pid << ")\n"
            << "log:  " << started->log.string() << "\n"
            << "stop: claudemesh daemon down\n";
  return exit_ok;
}

// Whether `pid` has exited (gone, or a zombie its parent has not reaped yet).
bool process_gone(long pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (stat) {
    const std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    return close != std::string::npos && close + 2 < text.size() && text[close + 2] == 'Z';
  }
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

int run_down(const GlobalOptions& options) {
  const auto dir = options.daemon_dir_path();
  const auto pid = running_daemon_pid(dir);
  if (!pid) {
    if (options.json) return print_ok({{"stopped", false}, {"pid", nullptr}, {"reason", "not_running"}});
    std::cout << "daemon: not running\n";
    return exit_ok;
  }
  if (::kill(static_cast<pid_t>(*pid), SIGTERM) != 0 && errno != ESRCH) {
    return report(options, Failure{.code = "forbidden",
                                   .message = "cannot signal the daemon (pid " + std::to_string(*pid) +
                                              "): " + std::generic_category().message(errno)},
                  Json{{"stopped", false}, {"pid", *pid}, {"reason", "signal_failed"}});
  }
  const auto deadline = std::chrono::steady_clock::now() + down_wait;
  while (std::chrono::steady_clock::now() < deadline) {
    // The lock is released a moment before the process ends: "stopped" means both.
    if (running_daemon_pid(dir) != pid && process_gone(*pid)) {
      if (options.json) return print_ok({{"stopped", true}, {"pid", *pid}});
      std::cout << "daemon stopped (pid " << *pid << ")\n";
      return exit_ok;
    }
    std::this_thread::sleep_for(50ms);
  }
  return report(options,
                Failure{.code = "timed_out",
                        .message = "the daemon (pid " + std::to_string(*pid) + ") did not stop within 5 s; see " +
                                   DaemonFiles{dir}.log().string()},
                Json{{"stopped", false}, {"pid", *pid}, {"reason", "shutdown_timeout"}});
}

// ---- status ----

int run_status(const GlobalOptions& options) {
  const DaemonFiles files{options.daemon_dir_path()};
  DaemonClient client(daemon_endpoint(options), 2500ms);
  auto reply = client.call("GET", "/v1/health");
  if (!reply || !reply->ok()) {
    const auto pid = running_daemon_pid(files.root);
    std::string message = pid ? "the daemon (pid " + std::to_string(*pid) + ") holds its lock but does not answer on " +
                                    files.socket().string() + (reply ? " (" + reply->error_message() + ")" : std::string())
                              : "daemon: not running (start it: claudemesh daemon up)";
    return report(options, Failure{.code = "daemon_unavailable", .message = message, .exit_code = exit_daemon_unavailable},
                  Json{{"running", pid.has_value()}, {"pid", pid ? Json(*pid) : Json(nullptr)}});
  }
  Failure failure;
  auto health = parse_reply(*reply, failure);
  if (!health) return report(options, failure);
  // A daemon left running across an upgrade keeps the old code: say so (the reference's stale-daemon warning).
  const std::string daemon_version = text_of(*health, "version");
  const bool stale = !daemon_version.empty() && daemon_version != version_string;
  if (options.json) {
    return print_ok({{"running", true},
                     {"pid", health->value("pid", 0L)},
                     {"socket", files.socket().string()},
                     {"version", daemon_version},
                     {"cli_version", std::string(version_string)},
                     {"version_mismatch", stale},
                     {"health", *health}});
  }
  std::cout << "daemon running (pid " << health->value("pid", 0L) << ", version " << daemon_version << ")\n";
  if (stale) {
    std::cout << "  note: this claudemesh is " << version_string
              << "; restart the daemon to run the same version (claudemesh daemon down && claudemesh daemon up)\n";
  }
  std::cout << "  socket   " << files.socket().string() << "\n"
            << "  log      " << files.log().string() << "\n";
  for (const auto& mesh : health->value("meshes", Json::array())) {
    const Json outbox = mesh.value("outbox", Json::object());
    std::cout << "  mesh " << text_of(mesh, "slug") << "  broker " << text_of(mesh, "broker") << "  outbox pending "
              << outbox.value("pending", 0) << ", inflight " << outbox.value("inflight", 0);
    if (const auto last = mesh.find("last_error"); last != mesh.end() && last->is_object()) {
      std::cout << "  (last error: " << text_of(*last, "code") << ": " << text_of(*last, "message") << ")";
    }
    std::cout << "\n";
  }
  const Json inbox = health->value("inbox", Json::object());
  std::cout << "  inbox    " << inbox.value("total", 0) << " messages, " << inbox.value("unread", 0) << " unread\n"
            << "  sessions " << health->value("sessions", 0) << "\n";
  return exit_ok;
}

// ---- logs ----

int run_logs(const GlobalOptions& options, int lines) {
  const auto log = DaemonFiles{options.daemon_dir_path()}.log();
  std::ifstream in(log, std::ios::binary);
  if (!in) {
    return report(options, Failure{.code = "not_found", .message = "no daemon log at " + log.string(), .exit_code = exit_not_found});
  }
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(std::move(line));
    if (tail.size() > static_cast<std::size_t>(lines)) tail.pop_front();
  }
  if (options.json) return print_ok({{"log", log.string()}, {"lines", Json(std::vector<std::string>(tail.begin(), tail.end()))}});
  for (const auto& line : tail) std::cout << line << "\n";
  return exit_ok;
}

// ---- outbox ----

struct OutboxListArgs {
  std::string status;
  int limit = 50;
};

std::variant<Json, int> daemon_call(const GlobalOptions& options, std::string_view method, const std::string& target,
                                    const std::string& body, std::string_view what) {
  auto daemon = require_daemon(options, false);
  if (auto* failure = std::get_if<Failure>(&daemon)) return report(options, *failure);
  auto reply = std::get<DaemonClient>(daemon).call(method, target, body);
  if (!reply) return report_error(options, reply.error());
  if (!reply->ok()) return report(options, failure_from_reply(*reply, what));
  Failure failure;
  auto doc = parse_reply(*reply, failure);
  if (!doc) return report(options, failure);
  return std::move(*doc);
}

int run_outbox_list(const GlobalOptions& options, const OutboxListArgs& args) {
  std::string target = "/v1/outbox?limit=" + std::to_string(args.limit);
  if (!args.status.empty()) target += "&status=" + url_encode(args.status == "failed" ? "dead" : args.status);
  auto answer = daemon_call(options, "GET", target, {}, "outbox list");
  if (auto* code = std::get_if<int>(&answer)) return *code;
  const Json items = std::get<Json>(answer).value("items", Json::array());
  if (options.json) return print_ok({{"items", items}});
  if (items.empty()) std::cout << "(empty)\n";
  for (const auto& row : items) {
    std::string status = text_of(row, "status");
    status.resize(std::max<std::size_t>(status.size(), 8), ' ');
    std::cout << status << " " << text_of(row, "id") << " cid=" << text_of(row, "client_message_id")
              << " attempts=" << row.value("attempts", 0);
    if (const auto id = text_of(row, "broker_message_id"); !id.empty()) std::cout << " → " << id;
    if (const auto error = text_of(row, "last_error"); !error.empty()) std::cout << " last_error=\"" << error.substr(0, 60) << "\"";
    std::cout << "\n";
  }
  return exit_ok;
}

struct RequeueArgs {
  std::string id;
  std::string new_client_id;
};

int run_requeue(const GlobalOptions& options, const RequeueArgs& args) {
  Json body{{"id", args.id}};
  if (!args.new_client_id.empty()) body["new_client_message_id"] = args.new_client_id;
  auto answer = daemon_call(options, "POST", "/v1/outbox/requeue", body.dump(), "requeue " + args.id);
  if (auto* code = std::get_if<int>(&answer)) return *code;
  const Json& doc = std::get<Json>(answer);
  if (options.json) return print_ok(doc);
  std::cout << "requeued " << args.id << " as " << text_of(doc, "new_client_message_id") << " (row " << text_of(doc, "new_row_id")
            << "; the old row " << text_of(doc, "aborted_row_id") << " is aborted)\n";
  return exit_ok;
}

// ---- accept-host, services ----

int run_accept_host(const GlobalOptions& options) {
  const auto dir = options.daemon_dir_path();
  auto prefix = daemon_accept_host(dir);
  if (!prefix) return report_error(options, prefix.error());
  if (options.json) return print_ok({{"fingerprint_prefix", *prefix}, {"daemon_dir", dir.string()}});
  std::cout << "this machine now owns " << dir.string() << " (host fingerprint " << *prefix << ")\n";
  return exit_ok;
}

// One shell word: single-quoted, with each ' written as '\''.
std::string shell_quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

struct ServiceArgs {
  bool dry_run = false;
  bool allow_ci = false;
};

// The unit for the daemon this CLI would start, with this CLI's home and daemon directory spelled out, so
// the service uses the same state as the command that installed it.
Result<DaemonServiceUnit> daemon_unit(const GlobalOptions& options) {
  auto binary = find_daemon_binary();
  if (!binary) return fail(binary.error());
  const char* home = std::getenv("HOME");  // NOLINT(concurrency-mt-unsafe): the CLI is single-threaded here
  if (home == nullptr || *home == '\0') return fail(Errc::invalid_value, "HOME is not set; the unit goes under it");
  const auto absolute = [](const std::filesystem::path& p) {
    std::error_code ec;
    auto made = std::filesystem::absolute(p, ec);
    return ec ? p : made.lexically_normal();
  };
  const DaemonFiles files{absolute(options.daemon_dir_path())};
  const std::vector<std::string> args{"--home", absolute(options.home_dir()).string(), "--daemon-dir",
                                      files.root.string()};
  return render_daemon_service(*binary, args, home, files.log());
}

int run_install_service(const GlobalOptions& options, const ServiceArgs& args) {
  auto unit = daemon_unit(options);
  if (!unit) return report_error(options, unit.error());
  if (args.dry_run) {
    if (options.json) {
      return print_ok({{"path", unit->path.string()}, {"contents", unit->contents}, {"start", unit->start_command},
                       {"installed", false}});
    }
    std::cout << "# " << unit->path.string() << "\n" << unit->contents;
    return exit_ok;
  }
  if (running_in_ci_environment() && !args.allow_ci) {
    return report(options, Failure{.code = "forbidden",
                                   .message = "CI detected: a persistent service here is almost always a mistake; "
                                              "use --allow-ci to install anyway, or --dry-run to see the unit",
                                   .exit_code = exit_failure});
  }
  if (auto written = write_daemon_service(*unit); !written) return report_error(options, written.error());
  // Reference bug 26 (1.30.1): a daemon started by hand still holds the lock, so the service's daemon
  // would exit at once and be restarted forever. Say so, and put the stop in the start command.
  const auto running = running_daemon_pid(options.daemon_dir_path());
  std::string start = unit->start_command;
  if (running) {
    start = "claudemesh --home " + shell_quote(options.home_dir().string()) + " --daemon-dir " +
            shell_quote(options.daemon_dir_path().string()) + " daemon down && " + start;
  }
  if (options.json) {
    return print_ok({{"path", unit->path.string()}, {"start", start}, {"installed", true},
                     {"running_pid", running ? Json(*running) : Json(nullptr)}});
  }
  std::cout << "installed " << unit->path.string() << "\n";
  if (running) {
    std::cout << "a daemon started outside the service manager is running (pid " << *running
              << "); it must stop first, or the service's daemon cannot take the lock\n";
  }
  std::cout << "start it now and at every login with:\n  " << start << "\n";
  return exit_ok;
}

int run_uninstall_service(const GlobalOptions& options) {
  auto unit = daemon_unit(options);
  if (!unit) return report_error(options, unit.error());
  std::error_code ec;
  const bool removed = std::filesystem::remove(unit->path, ec);
  if (ec) {
    return report(options, Failure{.code = "io_error",
                                   .message = "cannot remove " + unit->path.string() + ": " + ec.message()});
  }
  if (options.json) return print_ok({{"path", unit->path.string()}, {"removed", removed}, {"stop", unit->stop_command}});
  if (removed) {
    std::cout << "removed " << unit->path.string() << "\nif it was running, stop it with:\n  " << unit->stop_command
              << "\n";
  } else {
    std::cout << "no service unit at " << unit->path.string() << "; nothing to remove\n";
  }
  return exit_ok;
}

}  // namespace

void register_daemon_commands(CLI::App& app, GlobalOptions& options, int& exit_code) {
  auto* daemon = app.add_subcommand("daemon", "The per-user daemon: holds the broker connections, the outbox and the inbox");
  // `claudemesh daemon` alone prints this usage (reference bug 36: it used to start a foreground daemon).
  daemon->callback([daemon, &options, &exit_code] {
    if (!daemon->get_subcommands().empty()) return;
    if (options.json) {
      exit_code = print_ok({{"usage", daemon->help()}});
    } else {
      std::cout << daemon->help();
      exit_code = exit_ok;
    }
  });

  auto up_args = std::make_shared<UpArgs>();
  auto* up = daemon->add_subcommand("up", "Start the daemon in the background (log: <daemon-dir>/daemon.log)");
  up->alias("start");
  up->add_flag("--foreground", up_args->foreground, "Run it in this terminal instead (service units do)");
  up->add_flag("--no-tcp", up_args->no_tcp, "Serve the IPC on the Unix socket only");
  up->add_option("--tcp-port", up_args->tcp_port, "Loopback TCP port of the IPC (default 47823; 0: any free port)")
      ->check(CLI::Range(0, 65535));
  up->callback([&options, &exit_code, up_args] { exit_code = run_up(options, *up_args); });

  auto* down = daemon->add_subcommand("down", "Stop the daemon (SIGTERM; queued messages stay in its outbox)");
  down->alias("stop");
  down->callback([&options, &exit_code] { exit_code = run_down(options); });

  auto* status = daemon->add_subcommand("status", "Is it running; each mesh's broker connection and outbox; the inbox");
  status->callback([&options, &exit_code] { exit_code = run_status(options); });

  auto lines = std::make_shared<int>(50);
  auto* logs = daemon->add_subcommand("logs", "The end of the daemon's log");
  logs->add_option("-n,--lines", *lines, "How many lines")->check(CLI::Range(1, 100000))->capture_default_str();
  logs->callback([&options, &exit_code, lines] { exit_code = run_logs(options, *lines); });

  auto* outbox = daemon->add_subcommand("outbox", "The daemon's outbox");
  outbox->require_subcommand(1);
  auto list_args = std::make_shared<OutboxListArgs>();
  auto* list = outbox->add_subcommand("list", "Outbox rows, newest first");
  list->add_option("--status", list_args->status, "pending, inflight, done, dead (or failed), aborted")
      ->check(CLI::IsMember({"pending", "inflight", "done", "dead", "failed", "aborted"}));
  list->add_option("--limit", list_args->limit, "At most this many")->check(CLI::Range(1, 500))->capture_default_str();
  list->callback([&options, &exit_code, list_args] { exit_code = run_outbox_list(options, *list_args); });
  auto requeue_args = std::make_shared<RequeueArgs>();
  auto* requeue = outbox->add_subcommand("requeue", "Send a dead or stuck message again, under a new client id");
  requeue->add_option("id", requeue_args->id, "Row id or client message id")->required();
  requeue->add_option("--new-client-id", requeue_args->new_client_id, "The new client message id (default: a fresh one)");
  requeue->callback([&options, &exit_code, requeue_args] { exit_code = run_requeue(options, *requeue_args); });

  auto* accept = daemon->add_subcommand("accept-host", "Adopt a daemon directory copied from another machine");
  accept->callback([&options, &exit_code] { exit_code = run_accept_host(options); });

  auto* install = daemon->add_subcommand(
      "install-service",
      "Write a systemd user unit (a launchd agent on macOS) that runs this claudemeshd in the foreground with "
      "Restart=on-failure, and print the command that starts it");
  auto service_args = std::make_shared<ServiceArgs>();
  install->add_flag("--dry-run", service_args->dry_run, "Print the unit instead of installing it");
  install->add_flag("--allow-ci", service_args->allow_ci, "Install even when CI is detected");
  install->callback([&options, &exit_code, service_args] { exit_code = run_install_service(options, *service_args); });
  auto* uninstall = daemon->add_subcommand("uninstall-service", "Remove the daemon's service unit");
  uninstall->callback([&options, &exit_code] { exit_code = run_uninstall_service(options); });
}

}  // namespace claudemesh::cli
