// SPDX-License-Identifier: MIT
// Broker load generator, in the shape of the reference's load test: N peers join one mesh, each sends M direct
// messages to random other peers, and we measure what the broker delivers and how fast.
//
// Everything goes through the real protocol, as a real peer would do it (docs/protocol.md §7–§8):
//   * spawns `claudemesh-broker --listen 127.0.0.1:0 --data-dir <temp dir>` (generous rate limits and
//     connection caps), reads its JSON "listening" line for the port;
//   * an owner creates a mesh and ceil(N/1000) invites over the signed HTTP API; N peers, each with its own
//     ed25519 identity, claim them (signed requests, a few HTTP clients in parallel);
//   * N WebSockets say `hello` (member hello signature) and wait for `hello_ack`;
//   * every peer sends M `send` frames (priority now, client_message_id, request_fingerprint, targetSpec = a
//     random other peer's member key) whose body is really sealed with crypto_box (BoxKeyCache); the plaintext
//     carries the message index and the send time;
//   * every receiver opens each push (the same cache), checks who it is from and for, `client_ack`s it and
//     records send→push latency; the sender records send→ack latency per send.
// Sending is window-limited (at most --window sends in flight per peer; default 32), a burst (--window 0: every
// peer sends all M at once, like the reference's load test), or open loop at --rate messages/s in all.
//
// At the end: delivered % (unique messages pushed / messages acked), duplicates, send→ack and send→push
// p50/p99/max, throughput, time to drain after the last send, broker peak RSS (VmHWM) and RSS growth
// (VmRSS after the hellos vs at the end), broker CPU seconds (utime+stime) per thread with the time each
// waited for a CPU (schedstat: other load on the machine), the load generator's own CPU, whether the broker's
// undelivered count falls to 0 once every push was client_acked (and how fast), and a few /metrics counters.
// A table for people and one `RESULT {json}` line for scripts (bench/run_broker_bench.sh).
//
// `--idle N` instead connects N peers, sends nothing, and reports the broker's RSS delta per connection
// (WebSocket + presence + member state), plus what the join storm costs: every hello is announced to every
// peer of the mesh already there (peer_joined), so n peers in one mesh make n(n-1)/2 events. `--meshes K`
// spreads the idle peers over K meshes (peer i in mesh i % K).
//
// One io_context, one thread. The broker runs as its own process, so its RSS and CPU are its own. Exit
// status 0 when everything was acked, delivered and decrypted and the broker stopped cleanly.
//
// Usage: broker_load --broker PATH [--peers N] [--messages M] [--window W | --rate MSGS_PER_S] [--size BYTES]
//                    [--no-fsync] [--drain-timeout S] [--send-timeout S] [--linger-ms MS]
//                    [--settle-timeout S] [--label NAME] [--idle N [--meshes K]] [--settle-ms MS] [--data-parent DIR]
//                    [--keep-data] [--seed N] [--http-clients N] [--connect-workers N] [--broker-arg ARG]...
#include "transport/http/client.hpp"
#include "transport/ws/client.hpp"

#include <claudemesh/crypto.hpp>
#include <claudemesh/fingerprint.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/ids.hpp>
#include <claudemesh/signatures.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::transport;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------- options

struct Options {
  std::string broker;
  std::size_t peers = 10;
  std::size_t messages = 100;
  std::size_t window = 32;        // sends in flight per peer (window mode); 0: no limit (burst)
  double rate = 0;                // total messages/s (open loop); 0: window mode
  std::size_t size = 256;         // plaintext bytes per DM
  bool no_fsync = false;
  double drain_timeout_s = 60;    // after the last ack, wait this long for every push
  double send_timeout_s = 900;    // the whole send phase
  long linger_ms = 1000;          // after the drain, keep reading to catch late duplicates
  double settle_timeout_s = 60;   // then wait this long for the broker's undelivered count to reach 0
  std::size_t idle = 0;           // --idle N: connect N peers, no messages
  std::size_t meshes = 1;         // idle: spread the peers over this many meshes (peer i in mesh i % meshes)
  long settle_ms = 2000;          // idle: wait after the last system event before measuring
  std::string label;
  std::string data_parent;        // where the temp data dir goes (default $TMPDIR or /tmp)
  bool keep_data = false;
  std::uint64_t seed = 1;
  std::size_t http_clients = 8;   // parallel claim requests
  std::size_t connect_workers = 64;
  std::vector<std::string> broker_args;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: broker_load --broker PATH [--peers N] [--messages M] [--window W (0: burst) | --rate MSGS_PER_S]\n"
               "                   [--size BYTES] [--no-fsync] [--drain-timeout S] [--send-timeout S]\n"
               "                   [--linger-ms MS] [--settle-timeout S] [--label NAME] [--idle N [--meshes K]]\n"
               "                   [--settle-ms MS]\n"
               "                   [--data-parent DIR] [--keep-data] [--seed N] [--http-clients N]\n"
               "                   [--connect-workers N] [--broker-arg ARG]...\n");
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (flag == "--broker") o.broker = value();
    else if (flag == "--peers") o.peers = std::stoul(value());
    else if (flag == "--messages") o.messages = std::stoul(value());
    else if (flag == "--window") o.window = std::stoul(value());
    else if (flag == "--rate") o.rate = std::stod(value());
    else if (flag == "--size") o.size = std::stoul(value());
    else if (flag == "--no-fsync") o.no_fsync = true;
    else if (flag == "--drain-timeout") o.drain_timeout_s = std::stod(value());
    else if (flag == "--send-timeout") o.send_timeout_s = std::stod(value());
    else if (flag == "--linger-ms") o.linger_ms = std::stol(value());
    else if (flag == "--settle-timeout") o.settle_timeout_s = std::stod(value());
    else if (flag == "--label") o.label = value();
    else if (flag == "--idle") o.idle = std::stoul(value());
    else if (flag == "--meshes") o.meshes = std::max<std::size_t>(1, std::stoul(value()));
    else if (flag == "--settle-ms") o.settle_ms = std::stol(value());
    else if (flag == "--data-parent") o.data_parent = value();
    else if (flag == "--keep-data") o.keep_data = true;
    else if (flag == "--seed") o.seed = std::stoull(value());
    else if (flag == "--http-clients") o.http_clients = std::max<std::size_t>(1, std::stoul(value()));
    else if (flag == "--connect-workers") o.connect_workers = std::max<std::size_t>(1, std::stoul(value()));
    else if (flag == "--broker-arg") o.broker_args.push_back(value());
    else usage();
  }
  if (o.broker.empty()) usage();
  if (o.idle > 0) o.peers = o.idle;
  if (o.idle == 0) o.meshes = 1;  // DMs go to any other peer: one mesh
  o.meshes = std::min(o.meshes, std::max<std::size_t>(1, o.peers));
  if (o.peers < 2 && o.idle == 0) {
    std::fprintf(stderr, "broker_load: --peers must be at least 2 (DMs go to another peer)\n");
    std::exit(2);
  }
  if (o.size < 24) o.size = 24;  // index, send time and a magic word
  if (o.label.empty()) {
    o.label = o.idle > 0 ? "idle" + std::to_string(o.idle) + (o.meshes > 1 ? "-in-" + std::to_string(o.meshes) : "")
                         : std::to_string(o.peers) + "x" + std::to_string(o.messages) + (o.no_fsync ? "-nofsync" : "");
  }
  return o;
}

// ---------------------------------------------------------------- the broker process

struct ProcMemory {
  long rss_kib = -1;
  long hwm_kib = -1;
};

ProcMemory read_memory(pid_t pid) {
  ProcMemory m;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss_kib = std::stol(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) m.hwm_kib = std::stol(line.substr(6));
  }
  return m;
}

double read_cpu_seconds_at(const std::string& path);

/// utime + stime of `pid` (all its threads) in seconds, or -1.
double read_cpu_seconds(pid_t pid) { return read_cpu_seconds_at("/proc/" + std::to_string(pid) + "/stat"); }

double read_cpu_seconds_at(const std::string& path) {
  std::ifstream stat(path);
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream rest(text.substr(paren + 2));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  if (fields.size() < 13) return -1;  // fields[0] is field 3 (state): utime is field 14, stime 15
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
}

/// Per thread of `pid`: CPU seconds and seconds spent runnable but waiting for a CPU (/proc/…/schedstat), by
/// name: "network" (the main thread, the broker's event loop), then "thread1", … (its store worker).
struct ThreadTimes {
  double cpu_s = 0;
  double runqueue_wait_s = 0;
};

std::map<std::string, ThreadTimes> read_thread_times(pid_t pid) {
  std::map<std::string, ThreadTimes> out;
  std::error_code ec;
  int others = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    const double cpu = read_cpu_seconds_at((entry.path() / "stat").string());
    if (cpu < 0) continue;
    std::ifstream schedstat(entry.path() / "schedstat");
    double on_cpu_ns = 0, wait_ns = 0;
    schedstat >> on_cpu_ns >> wait_ns;
    const bool main_thread = entry.path().filename().string() == std::to_string(pid);
    auto& times = out[main_thread ? "network" : "thread" + std::to_string(++others)];
    times.cpu_s += cpu;
    times.runqueue_wait_s += wait_ns / 1e9;
  }
  return out;
}

double self_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::string filesystem_type(const std::string& path) {
  struct statfs info {};
  if (::statfs(path.c_str(), &info) != 0) return "unknown";
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    default: {
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(info.f_type));
      return hex;
    }
  }
}

class BrokerProcess {
 public:
  BrokerProcess(const Options& options) {
    std::string parent = options.data_parent;
    if (parent.empty()) parent = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    std::filesystem::create_directories(parent);
    std::string pattern = parent + "/claudemesh-broker-load-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp in " + parent + ": " + std::strerror(errno));
    dir_ = pattern;
    keep_ = options.keep_data;
    fs_type_ = filesystem_type(dir_);
    log_path_ = dir_ + "/broker.log";

    const std::size_t peers = options.peers;
    std::vector<std::string> args = {options.broker,
                                     "--listen", "127.0.0.1:0",
                                     "--data-dir", dir_ + "/data",
                                     "--rate-burst", "1000000000",
                                     "--rate-per-minute", "1000000000",
                                     "--max-connections-per-mesh", std::to_string(peers + 100),
                                     "--max-connections", std::to_string(std::max<std::size_t>(20'000, peers + 1000))};
    if (options.no_fsync) args.emplace_back("--no-fsync");
    for (const auto& extra : options.broker_args) args.push_back(extra);
    command_ = args[0];
    for (std::size_t i = 1; i < args.size(); ++i) command_ += " " + args[i];

    const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) throw std::runtime_error("cannot open " + log_path_);
    const pid_t parent_pid = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the load generator
      if (::getppid() != parent_pid) ::_exit(127);
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    ::close(log_fd);
    // Wait for {"event":"listening","port":N}.
    const auto deadline = SteadyClock::now() + std::chrono::seconds(20);
    while (SteadyClock::now() < deadline) {
      std::ifstream log(log_path_);
      for (std::string line; std::getline(log, line);) {
        auto j = Json::parse(line, nullptr, false);
        if (j.is_object() && j.value("event", "") == "listening" && j.contains("port")) {
          port_ = j["port"].get<std::uint16_t>();
          return;
        }
      }
      if (!alive()) throw std::runtime_error("the broker exited at start (" + exit_text() + "): " + log_tail());
      ::usleep(20'000);
    }
    const std::string tail = log_tail();
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
    throw std::runtime_error("the broker did not say \"listening\" within 20 s: " + tail);
  }
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  ~BrokerProcess() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
    }
    if (!keep_) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  /// False once the process has exited (reaps it).
  bool alive() {
    if (exited_) return false;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    return !exited_;
  }

  /// SIGTERM (the broker drains and exits 0), wait up to `timeout`, then SIGKILL. @returns how long it took.
  double stop(std::chrono::seconds timeout) {
    const auto started = SteadyClock::now();
    if (!alive()) return 0;
    ::kill(pid_, SIGTERM);
    while (SteadyClock::now() - started < timeout) {
      if (!alive()) return std::chrono::duration<double>(SteadyClock::now() - started).count();
      ::usleep(10'000);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
    exited_ = true;
    killed_ = true;
    return std::chrono::duration<double>(SteadyClock::now() - started).count();
  }

  [[nodiscard]] std::string exit_text() const {
    if (!exited_) return "running";
    if (killed_) return "did not stop within the timeout: SIGKILL";
    if (WIFEXITED(status_)) return "exit " + std::to_string(WEXITSTATUS(status_));
    if (WIFSIGNALED(status_)) return std::string("killed by signal ") + ::strsignal(WTERMSIG(status_));
    return "unknown";
  }
  [[nodiscard]] bool clean_exit() const { return exited_ && !killed_ && WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }

  std::string log_tail(std::size_t lines = 5) const {
    std::ifstream log(log_path_);
    std::vector<std::string> all;
    for (std::string line; std::getline(log, line);) all.push_back(line);
    std::string out;
    for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += all[i] + "\n";
    return out;
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] const std::string& fs_type() const { return fs_type_; }
  [[nodiscard]] const std::string& command() const { return command_; }

 private:
  std::string dir_, log_path_, fs_type_, command_;
  bool keep_ = false;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  int status_ = 0;
  bool exited_ = false;
  bool killed_ = false;
};

// ---------------------------------------------------------------- statistics

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::nan("");
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

struct Summary {
  double p50 = std::nan(""), p99 = std::nan(""), max = std::nan(""), mean = std::nan("");
  std::size_t count = 0;
};

Summary summarize(std::vector<double> values) {
  Summary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.p50 = percentile(values, 0.50);
  s.p99 = percentile(values, 0.99);
  s.max = values.back();
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  return s;
}

Json num(double v) { return std::isfinite(v) ? Json(std::round(v * 1000.0) / 1000.0) : Json(nullptr); }

// ---------------------------------------------------------------- the run

struct MessageRecord {
  std::int64_t send_ns = -1;   // since the run's epoch (steady clock)
  std::int64_t ack_ns = -1;
  std::int64_t push_ns = -1;   // first push
  std::uint32_t pushes = 0;
  std::uint32_t recipient = 0;
  bool accepted = false;
  bool refused = false;
  std::string message_id;      // from the ack (or the first push, if it came first)
};

struct Peer {
  std::size_t index = 0;
  std::optional<Identity> identity;
  std::string pubkey;  // member key, hex
  std::string member_id;
  std::size_t mesh = 0;    // index into Run::mesh_ids
  std::string invite_id;   // the invite it claims
  std::shared_ptr<ws::WebSocket> socket;
  std::unique_ptr<asio::steady_timer> wake;  // the sender waits here for its window
  std::size_t in_flight = 0;
  bool hello_acked = false;
  bool closed = false;
};

constexpr std::uint32_t kMagic = 0x424c4431;  // "BLD1"

struct Run {
  Options options;
  SteadyClock::time_point epoch = SteadyClock::now();
  BrokerProcess* broker = nullptr;
  std::vector<std::string> mesh_ids;
  std::vector<Peer> peers;
  std::vector<MessageRecord> messages;
  std::vector<PublicKey> keys;  // parsed member keys, by peer
  BoxKeyCache box_cache{4096};
  IdGenerator ids;

  // counters
  std::size_t hello_acks = 0, hello_failures = 0;
  std::size_t acks = 0, accepted = 0, refused = 0, ack_duplicate_flag = 0;
  std::map<std::string, std::size_t> refusal_codes;
  std::size_t pushes = 0, duplicate_pushes = 0, unique_delivered = 0, system_events = 0;
  std::size_t decrypt_failures = 0, wrong_recipient = 0, wrong_sender = 0, id_mismatches = 0, bad_plaintext = 0;
  std::size_t error_frames = 0, unexpected_closes = 0, send_refused_locally = 0;
  std::string first_error;
  std::int64_t last_event_ns = 0;
  std::int64_t last_send_ns = 0, last_ack_ns = 0, last_push_ns = 0, first_send_ns = -1;
  std::vector<double> send_lag_ms;  // open loop: how late each send left against its schedule
  bool finishing = false;           // the run is over: closes are expected
  bool broker_dead = false;

  std::int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - epoch).count();
  }
  void note_error(std::string what) {
    if (first_error.empty()) first_error = std::move(what);
  }
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, duration);
  co_await timer.async_wait(use_tuple);
}

/// Counts finished coroutines; wait() resumes once the count reaches zero. Single-threaded.
class Latch {
 public:
  Latch(asio::any_io_executor executor, std::size_t count) : timer_(std::move(executor)), count_(count) {
    timer_.expires_at(SteadyClock::time_point::max());
  }
  void count_down() {
    if (--count_ == 0) timer_.cancel();
  }
  asio::awaitable<void> wait() {
    while (count_ > 0) co_await timer_.async_wait(use_tuple);
  }

 private:
  asio::steady_timer timer_;
  std::size_t count_;
};

// ---- HTTP API (signed requests, protocol §7.1) ----

std::string request_line(const char* method, const std::string& target) { return std::string(method) + " " + target; }

// `method` is a string literal (it outlives the coroutine); the rest are named values, never braced temporaries
// (g++ 12, docs/transport.md).
asio::awaitable<Json> api_call(http::HttpClient& client, const Identity& signer, const char* method,
                               std::string target, Json body, int expect_status) {
  http::HttpRequest request;
  request.method = method;
  request.target = target;
  request.body = body.is_null() ? std::string() : body.dump();
  const RequestProof proof = sign_request(signer, method, target, now_ms(), request.body);
  request.headers.set("Content-Type", "application/json");
  request.headers.set("X-Claudemesh-Pubkey", proof.pubkey);
  request.headers.set("X-Claudemesh-Timestamp", std::to_string(proof.timestamp_ms));
  request.headers.set("X-Claudemesh-Signature", proof.signature);
  auto response = co_await client.request(std::move(request));
  if (!response) throw std::runtime_error(request_line(method, target) + ": " + response.error().describe());
  if (response->status != expect_status) {
    throw std::runtime_error(request_line(method, target) + ": HTTP " + std::to_string(response->status) + " " +
                             response->body);
  }
  co_return Json::parse(response->body);
}

asio::awaitable<std::string> api_get_text(http::HttpClient& client, std::string target) {
  http::HttpRequest request;
  request.method = "GET";
  request.target = target;
  auto response = co_await client.request(std::move(request));
  if (!response) co_return std::string();
  co_return response->body;
}

std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    try {
      out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    } catch (...) {
    }
  }
  return out;
}

asio::awaitable<void> claim_worker(Run& run, std::size_t& next) {
  auto executor = co_await asio::this_coro::executor;
  http::ClientEndpoint endpoint;
  endpoint.port = run.broker->port();
  http::ClientConfig config;
  config.request_timeout = std::chrono::seconds(120);
  http::HttpClient client(executor, endpoint, config);
  while (next < run.peers.size()) {
    Peer& peer = run.peers[next++];
    char name[32];
    std::snprintf(name, sizeof name, "peer-%05zu", peer.index);
    Json body{{"displayName", name}};
    const std::string target = "/v1/invites/" + peer.invite_id + "/claim";
    Json answer = co_await api_call(client, *peer.identity, "POST", target, std::move(body), 201);
    peer.member_id = answer.at("member").at("id").get<std::string>();
  }
}

// ---- WebSocket peers ----

void on_ack(Run& run, Peer& peer, const Json& frame) {
  const auto it = frame.find("id");
  if (it == frame.end() || !it->is_number_unsigned()) {
    run.note_error("ack without our numeric id: " + frame.dump());
    return;
  }
  const auto index = it->get<std::size_t>();
  if (index >= run.messages.size()) return;
  MessageRecord& m = run.messages[index];
  if (m.ack_ns >= 0) return;  // a second ack for one send: not expected
  m.ack_ns = run.now_ns();
  run.last_ack_ns = m.ack_ns;
  ++run.acks;
  if (frame.value("queued", false)) {
    m.accepted = true;
    ++run.accepted;
    if (frame.value("duplicate", false)) ++run.ack_duplicate_flag;
    const std::string id = frame.value("messageId", "");
    if (!m.message_id.empty() && m.message_id != id) ++run.id_mismatches;
    m.message_id = id;
    if (m.pushes > 0) ++run.unique_delivered;  // the push overtook the ack
  } else {
    m.refused = true;
    ++run.refused;
    ++run.refusal_codes[frame.value("code", "?")];
  }
  if (peer.in_flight > 0) --peer.in_flight;
  peer.wake->cancel();
}

void on_push(Run& run, Peer& peer, const Json& frame) {
  const std::int64_t now = run.now_ns();
  ++run.pushes;
  const std::string message_id = frame.value("messageId", "");
  const std::string sender_hex = frame.value("senderPubkey", "");
  // Acknowledge first, whatever we make of the body: the broker's copy is delivered to us.
  Json ack{{"type", "client_ack"}, {"brokerMessageId", message_id}};
  if (auto c = frame.find("client_message_id"); c != frame.end() && c->is_string()) ack["clientMessageId"] = *c;
  peer.socket->send_text(ack.dump());

  if (frame.value("recipientPubkey", "") != peer.pubkey) ++run.wrong_recipient;
  auto sender = PublicKey::from_hex(sender_hex);
  if (!sender) {
    ++run.decrypt_failures;
    return;
  }
  SealedMessage sealed{frame.value("nonce", ""), frame.value("ciphertext", "")};
  auto plain = run.box_cache.open(*peer.identity, *sender, sealed);
  if (!plain) {
    ++run.decrypt_failures;
    return;
  }
  if (plain->size() < 20) {
    ++run.bad_plaintext;
    return;
  }
  std::uint64_t index = 0;
  std::int64_t sent_ns = 0;
  std::uint32_t magic = 0;
  std::memcpy(&index, plain->data(), 8);
  std::memcpy(&sent_ns, plain->data() + 8, 8);
  std::memcpy(&magic, plain->data() + 16, 4);
  if (magic != kMagic || index >= run.messages.size()) {
    ++run.bad_plaintext;
    return;
  }
  MessageRecord& m = run.messages[index];
  const std::size_t sender_index = index / run.options.messages;
  if (run.peers[sender_index].pubkey != sender_hex) ++run.wrong_sender;
  if (m.recipient != peer.index) ++run.wrong_recipient;
  if (m.pushes++ > 0) {
    ++run.duplicate_pushes;
    return;
  }
  m.push_ns = now;
  if (sent_ns != m.send_ns) ++run.bad_plaintext;  // the send time travelled inside the ciphertext intact
  run.last_push_ns = std::max(run.last_push_ns, now);
  if (m.message_id.empty()) {
    m.message_id = message_id;
  } else if (m.message_id != message_id) {
    ++run.id_mismatches;
  }
  if (m.accepted) ++run.unique_delivered;
}

asio::awaitable<void> read_loop(Run& run, Peer& peer, Latch& hellos) {
  auto socket = peer.socket;
  bool counted_hello = false;
  while (true) {
    auto message = co_await socket->read();
    if (!message) break;
    const std::string& text = message->payload;
    // System events (peer_joined …) are the bulk of the traffic while peers join: count them without parsing.
    if (text.find(R"("subtype":"system")") != std::string::npos) {
      ++run.system_events;
      run.last_event_ns = run.now_ns();
      continue;
    }
    auto frame = Json::parse(text, nullptr, false);
    if (!frame.is_object()) {
      run.note_error("unparseable frame: " + text.substr(0, 200));
      continue;
    }
    const std::string type = frame.value("type", "");
    if (type == "push") {
      on_push(run, peer, frame);
    } else if (type == "ack") {
      on_ack(run, peer, frame);
    } else if (type == "hello_ack") {
      peer.hello_acked = true;
      ++run.hello_acks;
      if (!counted_hello) {
        counted_hello = true;
        hellos.count_down();
      }
    } else if (type == "error") {
      ++run.error_frames;
      run.note_error("peer " + std::to_string(peer.index) + " got error frame: " + text.substr(0, 300));
    }
  }
  peer.closed = true;
  if (!run.finishing) {
    ++run.unexpected_closes;
    const auto& info = socket->close_info();
    run.note_error("peer " + std::to_string(peer.index) + " connection closed: " + std::to_string(info.code) + " " +
                   info.reason);
  }
  if (!counted_hello) {
    ++run.hello_failures;
    hellos.count_down();
  }
  if (peer.wake) peer.wake->cancel();
}

asio::awaitable<void> connect_worker(Run& run, std::size_t& next, Latch& workers, Latch& hellos) {
  auto executor = co_await asio::this_coro::executor;
  const std::string url = "ws://127.0.0.1:" + std::to_string(run.broker->port()) + "/ws";
  auto scratch = std::make_shared<ws::ScratchBuffer>();
  while (next < run.peers.size()) {
    Peer& peer = run.peers[next++];
    ws::ClientOptions options;  // named, not braced in the co_await (g++ 12, docs/transport.md)
    options.connect_timeout = std::chrono::seconds(30);
    options.config.scratch = scratch;
    options.config.max_queued_bytes = std::size_t{64} << 20;
    auto socket = co_await ws::connect_websocket(url, std::move(options));
    if (!socket) {
      ++run.hello_failures;
      run.note_error("connect peer " + std::to_string(peer.index) + ": " + socket.error().describe());
      hellos.count_down();
      continue;
    }
    peer.socket = *socket;
    peer.wake = std::make_unique<asio::steady_timer>(executor, SteadyClock::time_point::max());
    const MemberHelloProof proof = sign_member_hello(*peer.identity, run.mesh_ids[peer.mesh], peer.member_id, now_ms());
    Json hello{{"type", "hello"},
               {"meshId", proof.mesh_id},
               {"memberId", proof.member_id},
               {"pubkey", proof.pubkey},
               {"timestamp", proof.timestamp_ms},
               {"signature", proof.signature},
               {"sessionId", "bench-" + std::to_string(peer.index)},
               {"peerType", "bench"},
               {"pid", static_cast<std::int64_t>(::getpid())}};
    peer.socket->send_text(hello.dump());
    asio::co_spawn(executor, read_loop(run, peer, hellos), asio::detached);
  }
  workers.count_down();
}

asio::awaitable<void> sender(Run& run, Peer& peer, Latch& done) {
  auto executor = co_await asio::this_coro::executor;
  const Options& o = run.options;
  std::mt19937_64 rng(o.seed * 1'000'003 + peer.index);
  std::uniform_int_distribution<std::size_t> pick(0, o.peers - 2);
  std::string plaintext(o.size, 'x');
  for (std::size_t i = 24; i < plaintext.size(); ++i) plaintext[i] = static_cast<char>('a' + (i * 7 + peer.index) % 26);
  // Open loop: this peer's share of --rate, from a random phase so peers do not send in lockstep.
  const double interval_s = o.rate > 0 ? static_cast<double>(o.peers) / o.rate : 0;
  std::uniform_real_distribution<double> phase(0, interval_s > 0 ? interval_s : 1);
  const auto start = SteadyClock::now();
  const double offset = interval_s > 0 ? phase(rng) : 0;
  asio::steady_timer pacer(executor);

  for (std::size_t k = 0; k < o.messages; ++k) {
    if (peer.closed || run.broker_dead) break;
    if (interval_s > 0) {
      const auto due = start + std::chrono::duration_cast<SteadyClock::duration>(
                                   std::chrono::duration<double>(offset + static_cast<double>(k) * interval_s));
      if (SteadyClock::now() < due) {
        pacer.expires_at(due);
        co_await pacer.async_wait(use_tuple);
      }
      run.send_lag_ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - due).count());
    } else {
      while (o.window > 0 && peer.in_flight >= o.window && !peer.closed && !run.broker_dead) {
        co_await peer.wake->async_wait(use_tuple);
      }
      if (peer.closed || run.broker_dead) break;
    }
    std::size_t to = pick(rng);
    if (to >= peer.index) ++to;
    const std::size_t index = peer.index * o.messages + k;
    MessageRecord& m = run.messages[index];
    m.recipient = static_cast<std::uint32_t>(to);
    m.send_ns = run.now_ns();
    const std::uint64_t index64 = index;
    std::memcpy(plaintext.data(), &index64, 8);
    std::memcpy(plaintext.data() + 8, &m.send_ns, 8);
    std::memcpy(plaintext.data() + 16, &kMagic, 4);
    const auto body = std::span(reinterpret_cast<const std::uint8_t*>(plaintext.data()), plaintext.size());
    auto sealed = run.box_cache.seal(*peer.identity, run.keys[to], body);
    if (!sealed) throw std::runtime_error("seal: " + sealed.error().describe());
    const std::string& target = run.peers[to].pubkey;
    FingerprintInput input;
    input.destination_kind = "dm";
    input.destination_ref = target;
    input.priority = "now";
    input.body = body;
    auto fingerprint = request_fingerprint(input);
    if (!fingerprint) throw std::runtime_error("fingerprint: " + fingerprint.error().describe());
    Json frame{{"type", "send"},
               {"id", index},
               {"targetSpec", target},
               {"priority", "now"},
               {"nonce", sealed->nonce},
               {"ciphertext", sealed->ciphertext},
               {"client_message_id", run.ids.next()},
               {"request_fingerprint", *fingerprint}};
    if (!peer.socket->send_text(frame.dump())) {
      ++run.send_refused_locally;
      run.note_error("peer " + std::to_string(peer.index) + ": the WebSocket refused a send (closing or slow)");
      break;
    }
    if (run.first_send_ns < 0) run.first_send_ns = m.send_ns;
    run.last_send_ns = std::max(run.last_send_ns, m.send_ns);
    ++peer.in_flight;
  }
  done.count_down();
}

// Samples the broker's RSS and CPU and notices if it dies.
struct Monitor {
  long max_rss_kib = 0;
  bool active = true;
};

asio::awaitable<void> monitor_loop(Run& run, Monitor& monitor) {
  while (monitor.active) {
    if (!run.broker->alive()) {
      run.broker_dead = true;
      run.note_error("the broker died: " + run.broker->exit_text() + "; log tail: " + run.broker->log_tail());
      for (auto& peer : run.peers) {
        if (peer.wake) peer.wake->cancel();
      }
      co_return;
    }
    monitor.max_rss_kib = std::max(monitor.max_rss_kib, read_memory(run.broker->pid()).rss_kib);
    co_await sleep_for(std::chrono::milliseconds(100));
  }
}

// Waits until `done()` or the deadline (polling every 5 ms; the figures come from recorded timestamps).
template <class F>
asio::awaitable<bool> wait_until(Run& run, F done, std::chrono::duration<double> timeout) {
  const auto deadline = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(timeout);
  while (!done()) {
    if (run.broker_dead || SteadyClock::now() >= deadline) co_return done();
    co_await sleep_for(std::chrono::milliseconds(5));
  }
  co_return true;
}

double seconds_between(std::int64_t from_ns, std::int64_t to_ns) { return static_cast<double>(to_ns - from_ns) / 1e9; }

asio::awaitable<Json> run_bench(Run& run) {
  auto executor = co_await asio::this_coro::executor;
  const Options& o = run.options;
  const bool idle = o.idle > 0;
  BrokerProcess& broker = *run.broker;
  std::string loadavg;
  {
    std::ifstream in("/proc/loadavg");
    std::getline(in, loadavg);
  }
  Json result{{"label", o.label},
              {"loadavg_start", loadavg.substr(0, loadavg.find(' ', loadavg.find(' ', loadavg.find(' ') + 1) + 1))},
              {"cores", ::sysconf(_SC_NPROCESSORS_ONLN)},
              {"mode", idle ? "idle" : (o.rate > 0 ? "open_loop" : (o.window == 0 ? "burst" : "window"))},
              {"peers", o.peers},
              {"meshes", o.meshes},
              {"fsync", !o.no_fsync},
              {"data_fs", broker.fs_type()}};
  if (!idle) {
    result["messages_per_peer"] = o.messages;
    result["size_bytes"] = o.size;
    if (o.rate > 0) {
      result["rate_target"] = o.rate;
    } else {
      result["window"] = o.window;
    }
  }
  Monitor monitor;
  asio::co_spawn(executor, monitor_loop(run, monitor), asio::detached);

  // ---- identities, mesh, invites, claims ----
  const auto t_setup = SteadyClock::now();
  run.peers.resize(o.peers);
  run.keys.resize(o.peers);
  for (std::size_t i = 0; i < o.peers; ++i) {
    run.peers[i].index = i;
    run.peers[i].identity.emplace(Identity::generate(IdentityKind::member));
    run.peers[i].pubkey = run.peers[i].identity->public_key().hex();
    run.keys[i] = run.peers[i].identity->public_key();
  }
  if (!idle) {
    // Each peer seals to and opens from up to N-1 others: keep every shared key (2 entries per ordered pair).
    run.box_cache = BoxKeyCache(std::min<std::size_t>(o.peers * o.peers * 2, 1u << 20));
    run.messages.resize(o.peers * o.messages);
  }
  {
    http::ClientEndpoint endpoint;
    endpoint.port = broker.port();
    http::HttpClient client(executor, endpoint);
    // One owner per mesh; each mesh gets ceil(members/1000) invites (an invite has at most 1000 uses).
    const std::int64_t expires_s = now_ms() / 1000 + 3600;
    for (std::size_t k = 0; k < o.meshes; ++k) {
      Identity owner = Identity::generate(IdentityKind::member);
      Json mesh_body{{"name", "broker-load-" + std::to_string(k)}, {"displayName", "owner"}};
      const std::string meshes_target = "/v1/meshes";
      Json created = co_await api_call(client, owner, "POST", meshes_target, std::move(mesh_body), 201);
      const std::string mesh_id = created.at("mesh").at("id").get<std::string>();
      run.mesh_ids.push_back(mesh_id);
      std::vector<Peer*> members;
      for (std::size_t i = k; i < o.peers; i += o.meshes) members.push_back(&run.peers[i]);
      for (std::size_t first = 0; first < members.size(); first += 1000) {
        const std::string invite_id = run.ids.next();
        const InviteV2 invite = sign_invite_v2(owner, mesh_id, invite_id, expires_s, "member");
        Json body{{"inviteId", invite_id},
                  {"expiresAt", expires_s},
                  {"role", "member"},
                  {"signature", invite.signature},
                  {"maxUses", std::min<std::size_t>(1000, members.size() - first)}};
        const std::string invites_target = "/v1/meshes/" + mesh_id + "/invites";
        co_await api_call(client, owner, "POST", invites_target, std::move(body), 201);
        for (std::size_t j = first; j < std::min(members.size(), first + 1000); ++j) {
          members[j]->mesh = k;
          members[j]->invite_id = invite_id;
        }
      }
    }
    std::size_t next = 0;
    const std::size_t workers = std::min(o.http_clients, o.peers);
    Latch claimed(executor, workers);
    std::exception_ptr failure;
    for (std::size_t i = 0; i < workers; ++i) {
      asio::co_spawn(executor, claim_worker(run, next), [&](std::exception_ptr e) {
        if (e && !failure) failure = e;
        claimed.count_down();
      });
    }
    co_await claimed.wait();
    if (failure) std::rethrow_exception(failure);
  }
  const double setup_s = std::chrono::duration<double>(SteadyClock::now() - t_setup).count();
  result["setup_s"] = num(setup_s);

  // ---- connect and hello ----
  co_await sleep_for(std::chrono::milliseconds(500));  // let the claims' allocations settle
  const ProcMemory before_connect = read_memory(broker.pid());
  const double cpu_before_connect = read_cpu_seconds(broker.pid());
  const auto t_connect = SteadyClock::now();
  const std::int64_t connect_ns = run.now_ns();
  {
    std::size_t next = 0;
    const std::size_t workers = std::min(o.connect_workers, o.peers);
    Latch connecting(executor, workers);
    Latch hellos(executor, o.peers);
    for (std::size_t i = 0; i < workers; ++i) {
      asio::co_spawn(executor, connect_worker(run, next, connecting, hellos), asio::detached);
    }
    co_await connecting.wait();
    co_await hellos.wait();
  }
  const double hello_s = std::chrono::duration<double>(SteadyClock::now() - t_connect).count();
  result["connect_s"] = num(hello_s);
  result["hello_acks"] = run.hello_acks;
  result["hello_failures"] = run.hello_failures;
  // Every hello tells the peers of its mesh already there: n members make n(n-1)/2 peer_joined events.
  std::size_t expected_events = 0;
  for (std::size_t k = 0; k < o.meshes; ++k) {
    const std::size_t n = o.peers / o.meshes + (k < o.peers % o.meshes ? 1 : 0);
    expected_events += n * (n - 1) / 2;
  }
  // Wait for the join storm to end: every event in, or none for 3 s.
  {
    const auto deadline = SteadyClock::now() + std::chrono::seconds(idle ? 900 : 60);
    while (run.system_events < expected_events && !run.broker_dead && SteadyClock::now() < deadline) {
      if (run.now_ns() - std::max(run.last_event_ns, connect_ns) > 3'000'000'000LL &&
          run.hello_acks + run.hello_failures >= o.peers) {
        break;
      }
      co_await sleep_for(std::chrono::milliseconds(10));
    }
  }
  const double storm_s =
      seconds_between(connect_ns, std::max(run.last_event_ns, connect_ns + static_cast<std::int64_t>(hello_s * 1e9)));
  result["join_events"] = run.system_events;
  result["join_events_expected"] = expected_events;
  result["join_storm_s"] = num(storm_s);
  co_await sleep_for(std::chrono::milliseconds(idle ? o.settle_ms : 500));
  const ProcMemory after_hellos = read_memory(broker.pid());
  const double cpu_after_hellos = read_cpu_seconds(broker.pid());
  const auto threads_after_hellos = read_thread_times(broker.pid());
  result["broker_cpu_connect_s"] = num(cpu_after_hellos - cpu_before_connect);

  if (idle) {
    std::size_t open = 0;
    for (const auto& peer : run.peers) open += (peer.socket && !peer.closed && peer.hello_acked) ? 1 : 0;
    result["open"] = open;
    result["broker_rss_before_kib"] = before_connect.rss_kib;
    result["broker_rss_after_kib"] = after_hellos.rss_kib;
    result["broker_peak_rss_kib"] = after_hellos.hwm_kib;
    result["broker_peak_rss_during_connect_kib"] = monitor.max_rss_kib;
    result["kib_per_connection"] =
        num(open > 0 ? static_cast<double>(after_hellos.rss_kib - before_connect.rss_kib) / static_cast<double>(open)
                     : std::nan(""));
    result["client_rss_kib"] = read_memory(::getpid()).rss_kib;
  } else {
    // ---- send ----
    monitor.max_rss_kib = after_hellos.rss_kib;
    const double self_cpu_before = self_cpu_seconds();
    const auto t_send = SteadyClock::now();
    Latch senders(executor, o.peers);
    for (auto& peer : run.peers) asio::co_spawn(executor, sender(run, peer, senders), asio::detached);
    const std::size_t total = o.peers * o.messages;
    co_await wait_until(run, [&] { return run.acks >= total || run.broker_dead; },
                        std::chrono::duration<double>(o.send_timeout_s));
    const bool all_acked = run.acks >= total;
    // ---- drain: every accepted message pushed ----
    const bool drained = co_await wait_until(run, [&] { return run.unique_delivered >= run.accepted; },
                                             std::chrono::duration<double>(o.drain_timeout_s));
    const std::int64_t drained_ns = run.now_ns();
    {
      // At the drain: how many of our client_acks the broker has read so far, and its queue.
      http::ClientEndpoint endpoint;
      endpoint.port = broker.port();
      http::HttpClient client(executor, endpoint);
      const std::string metrics_target = "/metrics";
      const auto metrics = parse_metrics(co_await api_get_text(client, metrics_target));
      auto metric = [&](const char* name) -> Json {
        auto it = metrics.find(name);
        return it == metrics.end() ? Json(nullptr) : Json(it->second);
      };
      result["at_drain"] = {{"client_acks_sent", run.pushes},
                            {"client_acks_read_by_broker", metric("claudemesh_broker_client_acks_total")},
                            {"broker_pushes", metric("claudemesh_broker_deliveries_total")},
                            {"redeliveries", metric("claudemesh_broker_redeliveries_total")},
                            {"undelivered", metric("claudemesh_broker_queue_undelivered")},
                            {"store_queue_depth", metric("claudemesh_broker_store_queue_depth")}};
    }
    co_await sleep_for(std::chrono::milliseconds(o.linger_ms));  // late duplicates, client_acks committed
    const double self_cpu = self_cpu_seconds() - self_cpu_before;
    const ProcMemory at_end = read_memory(broker.pid());
    const double cpu_end = read_cpu_seconds(broker.pid());

    std::vector<double> ack_ms, push_ms;
    ack_ms.reserve(total);
    push_ms.reserve(total);
    std::size_t unacked = 0, pushed_unaccepted = 0;
    for (const auto& m : run.messages) {
      if (m.send_ns < 0) continue;
      if (m.ack_ns >= 0 && m.accepted) ack_ms.push_back(static_cast<double>(m.ack_ns - m.send_ns) / 1e6);
      if (m.ack_ns < 0) ++unacked;
      if (m.push_ns >= 0) {
        if (m.accepted) push_ms.push_back(static_cast<double>(m.push_ns - m.send_ns) / 1e6);
        else ++pushed_unaccepted;
      }
    }
    const Summary ack = summarize(ack_ms), push = summarize(push_ms);
    std::size_t sent = 0;
    for (const auto& m : run.messages) sent += m.send_ns >= 0 ? 1 : 0;
    const double send_phase_s = seconds_between(run.first_send_ns, run.last_ack_ns);
    const std::int64_t end_ns = std::max(run.last_push_ns, run.last_ack_ns);
    const double wall_s = std::chrono::duration<double>(SteadyClock::now() - t_send).count();
    const double active_s = seconds_between(run.first_send_ns, end_ns);
    result["messages"] = total;
    result["sent"] = sent;
    result["acked"] = run.acks;
    result["accepted"] = run.accepted;
    result["refused"] = run.refused;
    result["refusal_codes"] = run.refusal_codes;
    result["unacked"] = unacked;
    result["delivered"] = run.unique_delivered;
    result["delivered_pct"] = num(run.accepted > 0 ? 100.0 * static_cast<double>(run.unique_delivered) /
                                                         static_cast<double>(run.accepted)
                                                   : 0);
    result["duplicates_pushed"] = run.duplicate_pushes;
    result["pushes"] = run.pushes;
    result["pushed_but_not_accepted"] = pushed_unaccepted;
    result["ack_duplicate_flag"] = run.ack_duplicate_flag;
    result["checks"] = {{"decrypt_failures", run.decrypt_failures},
                        {"wrong_recipient", run.wrong_recipient},
                        {"wrong_sender", run.wrong_sender},
                        {"message_id_mismatch", run.id_mismatches},
                        {"bad_plaintext", run.bad_plaintext},
                        {"error_frames", run.error_frames},
                        {"unexpected_closes", run.unexpected_closes},
                        {"send_refused_locally", run.send_refused_locally}};
    result["all_acked"] = all_acked;
    result["drained"] = drained;
    result["send_ack_ms"] = {{"p50", num(ack.p50)}, {"p99", num(ack.p99)}, {"max", num(ack.max)}, {"mean", num(ack.mean)}};
    result["send_push_ms"] = {
        {"p50", num(push.p50)}, {"p99", num(push.p99)}, {"max", num(push.max)}, {"mean", num(push.mean)}};
    if (!run.send_lag_ms.empty()) {
      const Summary lag = summarize(run.send_lag_ms);
      result["send_lag_ms"] = {{"p50", num(lag.p50)}, {"p99", num(lag.p99)}, {"max", num(lag.max)}};
    }
    result["send_phase_s"] = num(send_phase_s);
    result["wall_s"] = num(active_s);
    result["ack_rate_per_s"] = num(send_phase_s > 0 ? static_cast<double>(run.accepted) / send_phase_s : 0);
    result["throughput_per_s"] =
        num(active_s > 0 ? static_cast<double>(run.unique_delivered) / active_s : 0);
    result["drain_after_last_send_s"] =
        num(drained ? seconds_between(run.last_send_ns, run.last_push_ns) : seconds_between(run.last_send_ns, drained_ns));
    const bool measured = at_end.rss_kib >= 0 && cpu_end >= 0;  // false once the broker is gone
    auto kib = [](long v) { return v >= 0 ? Json(v) : Json(nullptr); };
    result["broker_rss_after_hellos_kib"] = kib(after_hellos.rss_kib);
    result["broker_rss_end_kib"] = kib(at_end.rss_kib);
    result["broker_rss_growth_kib"] = measured ? Json(at_end.rss_kib - after_hellos.rss_kib) : Json(nullptr);
    result["broker_rss_max_sampled_kib"] = monitor.max_rss_kib;
    result["broker_peak_rss_kib"] = kib(at_end.hwm_kib);
    result["broker_cpu_send_s"] = measured ? num(cpu_end - cpu_after_hellos) : Json(nullptr);
    {
      // Per broker thread: CPU, and time it was runnable but waited for a CPU (other load on the machine).
      Json threads = Json::object();
      for (const auto& [name, times] : read_thread_times(broker.pid())) {
        const auto before = threads_after_hellos.find(name);
        const ThreadTimes zero{};
        const ThreadTimes& b = before == threads_after_hellos.end() ? zero : before->second;
        threads[name] = {{"cpu_s", num(times.cpu_s - b.cpu_s)},
                         {"runqueue_wait_s", num(times.runqueue_wait_s - b.runqueue_wait_s)}};
      }
      result["broker_threads_send"] = threads;
    }
    result["broker_cpu_util"] = measured && wall_s > 0 ? num((cpu_end - cpu_after_hellos) / wall_s) : Json(nullptr);
    result["client_cpu_send_s"] = num(self_cpu);
    result["client_cpu_util"] = num(wall_s > 0 ? self_cpu / wall_s : 0);
  }
  if (const double total = read_cpu_seconds(broker.pid()); total >= 0) result["broker_cpu_total_s"] = num(total);
  if (const long hwm = read_memory(broker.pid()).hwm_kib; hwm >= 0) result["broker_vmhwm_kib"] = hwm;

  // ---- the broker's own view ----
  {
    http::ClientEndpoint endpoint;
    endpoint.port = broker.port();
    http::HttpClient client(executor, endpoint);
    if (!idle) {
      // Every push was client_acked: the broker's undelivered count must fall to 0 (else it would push again).
      const std::string health_target = "/healthz";
      const auto started = SteadyClock::now();
      long undelivered = -1;
      Json trend = Json::array();  // (seconds, undelivered, leased) every 5 s while it has not settled
      auto next_sample = started;
      while (SteadyClock::now() - started < std::chrono::duration<double>(o.settle_timeout_s) && !run.broker_dead) {
        const std::string text = co_await api_get_text(client, health_target);
        auto health = Json::parse(text, nullptr, false);
        undelivered = health.is_object() ? health.value("undelivered", -1L) : -1L;
        if (undelivered == 0) break;
        if (SteadyClock::now() >= next_sample) {
          trend.push_back({num(std::chrono::duration<double>(SteadyClock::now() - started).count()), undelivered,
                           health.is_object() ? health.value("leased", -1L) : -1L});
          next_sample += std::chrono::seconds(5);
        }
        co_await sleep_for(std::chrono::milliseconds(50));
      }
      if (!trend.empty()) result["undelivered_trend"] = trend;
      // Redeliveries keep arriving while the broker catches up with the client_acks: count them too.
      result["duplicates_pushed_end"] = run.duplicate_pushes;
      result["pushes_end"] = run.pushes;
      result["undelivered_after_acks"] = undelivered;
      result["acks_settled_s"] = num(std::chrono::duration<double>(SteadyClock::now() - started).count() +
                                     static_cast<double>(o.linger_ms) / 1000.0);
    }
    const std::string metrics_target = "/metrics";
    const std::string metrics_text = co_await api_get_text(client, metrics_target);
    const auto metrics = parse_metrics(metrics_text);
    Json m = Json::object();
    for (const char* name : {"claudemesh_broker_connections", "claudemesh_broker_messages_accepted_total",
                             "claudemesh_broker_deliveries_total", "claudemesh_broker_redeliveries_total",
                             "claudemesh_broker_client_acks_total", "claudemesh_broker_send_refused_total",
                             "claudemesh_broker_store_batches_total", "claudemesh_broker_store_operations_total",
                             "claudemesh_broker_store_batch_seconds_total", "claudemesh_broker_store_batch_seconds_max",
                             "claudemesh_broker_store_queue_depth", "claudemesh_broker_queue_undelivered",
                             "claudemesh_broker_queue_leased"}) {
      if (auto it = metrics.find(name); it != metrics.end()) m[std::string(name).substr(18)] = it->second;
    }
    result["broker_metrics"] = m;
  }
  monitor.active = false;
  run.finishing = true;
  for (auto& peer : run.peers) {
    if (peer.socket) peer.socket->close(ws::close_code::normal, "bye");
  }
  co_await sleep_for(std::chrono::milliseconds(200));
  for (auto& peer : run.peers) {
    if (peer.socket) peer.socket->terminate();
  }
  co_return result;
}

// ---------------------------------------------------------------- report

std::string fmt(const Json& v, const char* spec = "%.1f") {
  if (v.is_null()) return "-";
  if (v.is_number_integer() || v.is_number_unsigned()) return std::to_string(v.get<long long>());
  if (v.is_number()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, spec, v.get<double>());
    return buf;
  }
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.is_string() ? v.get<std::string>() : v.dump();
}

void print_table(const Json& r) {
  auto row = [](const std::string& what, const std::string& value) {
    std::printf("  %-36s %s\n", what.c_str(), value.c_str());
  };
  auto mib = [](const Json& kib) { return kib.is_number() ? fmt(Json(kib.get<double>() / 1024.0)) + " MiB" : "-"; };
  std::printf("== broker load: %s (%s, fsync %s, data on %s)\n", r["label"].get<std::string>().c_str(),
              r["mode"].get<std::string>().c_str(), r["fsync"].get<bool>() ? "on" : "off",
              r["data_fs"].get<std::string>().c_str());
  row("setup (mesh, invites, claims)", fmt(r["setup_s"], "%.2f") + " s");
  row("connect + hello", fmt(r["connect_s"], "%.2f") + " s, " + fmt(r["hello_acks"]) + " hello_acks, " +
                             fmt(r["hello_failures"]) + " failures");
  row("join events (peer_joined)", fmt(r["join_events"]) + " of " + fmt(r["join_events_expected"]) + " in " +
                                       fmt(r["join_storm_s"], "%.2f") + " s, broker CPU " +
                                       fmt(r["broker_cpu_connect_s"], "%.2f") + " s");
  if (r["mode"] == "idle") {
    row("open idle connections", fmt(r["open"]));
    row("broker RSS before → after", mib(r["broker_rss_before_kib"]) + " → " + mib(r["broker_rss_after_kib"]));
    row("broker RSS per idle connection", fmt(r["kib_per_connection"], "%.2f") + " KiB");
    row("broker peak RSS (VmHWM)", mib(r["broker_peak_rss_kib"]));
    row("load generator RSS", mib(r["client_rss_kib"]));
  } else {
    row("messages sent / acked / accepted", fmt(r["sent"]) + " / " + fmt(r["acked"]) + " / " + fmt(r["accepted"]) +
                                                (r["refused"].get<long long>() > 0 ? " (refused " + r["refusal_codes"].dump() + ")" : ""));
    row("delivered (unique pushed / accepted)", fmt(r["delivered"]) + " = " + fmt(r["delivered_pct"], "%.2f") + " %");
    row("duplicates pushed, by the drain", fmt(r["duplicates_pushed"]));
    if (r.contains("at_drain")) {
      const Json& d = r["at_drain"];
      row("at the drain", "client_acks sent " + fmt(d["client_acks_sent"]) + ", read by the broker " +
                              fmt(d["client_acks_read_by_broker"], "%.0f") + "; broker undelivered " +
                              fmt(d["undelivered"], "%.0f") + ", store queue " + fmt(d["store_queue_depth"], "%.0f"));
    }
    row("send→ack  p50 / p99 / max", fmt(r["send_ack_ms"]["p50"], "%.2f") + " / " +
                                         fmt(r["send_ack_ms"]["p99"], "%.2f") + " / " +
                                         fmt(r["send_ack_ms"]["max"], "%.2f") + " ms");
    row("send→push p50 / p99 / max", fmt(r["send_push_ms"]["p50"], "%.2f") + " / " +
                                         fmt(r["send_push_ms"]["p99"], "%.2f") + " / " +
                                         fmt(r["send_push_ms"]["max"], "%.2f") + " ms");
    if (r.contains("send_lag_ms")) {
      row("open-loop send lag p99 / max", fmt(r["send_lag_ms"]["p99"], "%.2f") + " / " +
                                               fmt(r["send_lag_ms"]["max"], "%.2f") + " ms");
    }
    row("wall (first send → last push)", fmt(r["wall_s"], "%.2f") + " s");
    row("throughput (delivered)", fmt(r["throughput_per_s"], "%.0f") + " msg/s (acks " +
                                      fmt(r["ack_rate_per_s"], "%.0f") + "/s)");
    row("drain after the last send", fmt(r["drain_after_last_send_s"], "%.3f") + " s" +
                                         (r["drained"].get<bool>() ? "" : " (NOT drained: timed out)"));
    row("broker RSS after hellos → end", mib(r["broker_rss_after_hellos_kib"]) + " → " + mib(r["broker_rss_end_kib"]) +
                                             " (growth " + mib(r["broker_rss_growth_kib"]) + ", sampled max " +
                                             mib(r["broker_rss_max_sampled_kib"]) + ")");
    row("broker peak RSS (VmHWM)", mib(r["broker_peak_rss_kib"]));
    std::string by_thread;
    for (auto& [name, t] : r["broker_threads_send"].items()) {
      by_thread += (by_thread.empty() ? "" : ", ") + name + " " + fmt(t["cpu_s"], "%.2f") + " (waited for a CPU " +
                   fmt(t["runqueue_wait_s"], "%.2f") + ")";
    }
    row("broker CPU during send+drain", fmt(r["broker_cpu_send_s"], "%.2f") + " s (" +
                                            fmt(r["broker_cpu_util"], "%.2f") + " cores; " + by_thread + ")");
    row("load generator CPU", fmt(r["client_cpu_send_s"], "%.2f") + " s (" + fmt(r["client_cpu_util"], "%.2f") +
                                  " cores)");
    std::string checks;
    for (auto& [k, v] : r["checks"].items()) {
      if (v.get<long long>() != 0) checks += k + "=" + v.dump() + " ";
    }
    row("checks", checks.empty() ? "all clean (decrypt, sender, recipient, ids)" : checks);
  }
  const Json& m = r["broker_metrics"];
  row("broker metrics", "pushes " + fmt(m.value("deliveries_total", Json())) + ", redeliveries " +
                            fmt(m.value("redeliveries_total", Json())) + ", store batches " +
                            fmt(m.value("store_batches_total", Json()), "%.0f") + " for " +
                            fmt(m.value("store_operations_total", Json()), "%.0f") + " ops, longest batch " +
                            fmt(Json(m.value("store_batch_seconds_max", 0.0) * 1000), "%.1f") + " ms, busy " +
                            fmt(m.value("store_batch_seconds_total", Json()), "%.2f") + " s, undelivered " +
                            fmt(m.value("queue_undelivered", Json()), "%.0f"));
  if (r.contains("duplicates_pushed_end")) {
    row("duplicates pushed, by the end", fmt(r["duplicates_pushed_end"]) + " (of " + fmt(r["pushes_end"]) + " pushes)");
  }
  if (r.contains("undelivered_after_acks")) {
    row("client_acks settled", r["undelivered_after_acks"] == 0
                                   ? "undelivered 0 after " + fmt(r["acks_settled_s"], "%.2f") + " s"
                                   : "undelivered still " + fmt(r["undelivered_after_acks"]) + " after " +
                                         fmt(r["acks_settled_s"], "%.2f") + " s");
  }
  row("broker stop (SIGTERM)", fmt(r["broker_stop"]));
  row("load average (1, 5, 15 min)", fmt(r["loadavg_start"]) + " at the start, " + fmt(r["cores"]) + " cores");
  if (r.contains("first_error")) row("first error", r["first_error"].get<std::string>());
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  // Every connection is a descriptor here and in the broker (which inherits the limit).
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < options.peers + 256) {
    std::fprintf(stderr, "broker_load: the open-file limit is %llu, too low for %zu peers (raise ulimit -n)\n",
                 static_cast<unsigned long long>(limit.rlim_cur), options.peers);
    return 2;
  }

  int status = 0;
  Json result;
  try {
    BrokerProcess broker(options);
    asio::io_context io(1);  // after the broker: destroyed first (sockets before the process is stopped)
    auto run = std::make_unique<Run>();
    run->options = options;
    run->broker = &broker;
    std::exception_ptr failure;
    bool finished = false;
    asio::co_spawn(io, run_bench(*run), [&](std::exception_ptr e, Json r) {
      failure = e;
      result = std::move(r);
      finished = true;
      io.stop();
    });
    const double bound_s = options.send_timeout_s + options.drain_timeout_s + 1200;
    io.run_for(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(bound_s)));
    if (!finished) throw std::runtime_error("the run did not finish in time");
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const std::exception& e) {
        std::string what = e.what();
        if (!run->first_error.empty()) what += " (first error seen: " + run->first_error + ")";
        throw std::runtime_error(what);
      }
    }
    if (!run->first_error.empty()) result["first_error"] = run->first_error;
    const bool broker_alive = broker.alive();
    const double stop_s = broker.stop(std::chrono::seconds(30));
    result["broker_stop"] = broker_alive ? broker.exit_text() + " after " + std::to_string(stop_s).substr(0, 5) + " s"
                                         : "DIED during the run: " + broker.exit_text();
    result["broker_clean_exit"] = broker_alive && broker.clean_exit();
    if (!broker_alive || !broker.clean_exit()) {
      result["broker_log_tail"] = broker.log_tail(10);
      status = 1;
    }
    run.reset();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "broker_load: %s\n", e.what());
    Json failed{{"label", options.label}, {"error", e.what()}};
    std::printf("RESULT %s\n", failed.dump().c_str());
    return 1;
  }
  print_table(result);
  std::printf("RESULT %s\n", result.dump().c_str());
  std::fflush(stdout);
  if (options.idle == 0) {
    const bool ok = result.value("drained", false) && result.value("all_acked", false) &&
                    result["checks"].value("decrypt_failures", 1) == 0;
    if (!ok) status = 1;
  }
  return status;
}
