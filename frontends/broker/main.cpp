// SPDX-License-Identifier: MIT
// claudemesh-broker: flags and environment → BrokerConfig, JSON-lines logs on stdout, SIGTERM/SIGINT drain.
// Runs in the foreground (systemd Type=simple). The work is in libclaudemesh (claudemesh/broker.hpp).
#include <claudemesh/broker.hpp>
#include <claudemesh/password.hpp>
#include <claudemesh/version.hpp>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

void log_line(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void fatal(const std::string& message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) escaped += c;
  }
  log_line(R"({"event":"fatal","message":")" + escaped + "\"}");
  std::cerr << "claudemesh-broker: " << message << "\n";
}

bool split_listen(const std::string& text, std::string& host, std::uint16_t& port) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    const unsigned long value = std::stoul(text.substr(colon + 1));
    if (value > 65535 || host.empty()) return false;
    port = static_cast<std::uint16_t>(value);
  } catch (...) {
    return false;
  }
  return true;
}

int hash_token() {
  std::string token;
  std::getline(std::cin, token);
  if (token.size() < 16) {
    std::cerr << "claudemesh-broker: an admin token must be at least 16 characters (read from stdin)\n";
    return exit_usage;
  }
  auto hash = claudemesh::hash_secret(token);
  if (!hash) {
    std::cerr << "claudemesh-broker: " << hash.error().describe() << "\n";
    return exit_failure;
  }
  std::cout << *hash << "\n";
  return exit_ok;
}

int run(int argc, char** argv) {
  CLI::App app{"claudemesh-broker: routes and stores end-to-end encrypted messages between claudemesh peers",
               "claudemesh-broker"};
  app.set_version_flag("-V,--version", std::string("claudemesh-broker ") + claudemesh::version_string);
  app.footer(
      "Every option can also be set by environment (CLAUDEMESH_BROKER_<OPTION>, e.g.\n"
      "CLAUDEMESH_BROKER_LISTEN=0.0.0.0:7900); a flag wins over the environment.\n"
      "Logs are JSON lines on stdout. SIGTERM or SIGINT drains: no new connections, WebSockets closed with 1001,\n"
      "queued writes committed, exit 0.\n"
      "Exit codes: 0 clean stop, 1 runtime failure (e.g. cannot bind or open storage), 2 bad configuration.");

  claudemesh::BrokerConfig config;
  std::string listen = "127.0.0.1:7900", admin_token_file;
  std::int64_t lease_ms = config.lease.count(), grace_ms = config.grace.count(),
               redeliver_ms = config.redeliver_interval.count(), ttl_ms = config.message_ttl.count(),
               ping_ms = config.ping_interval.count(), stale_ms = config.stale_after.count(),
               hold_ms = config.max_hold.count();
  std::string data_dir, tls_cert, tls_key;
  bool no_fsync = false;

  app.add_option("--listen", listen, "Address and port to listen on")->envname("CLAUDEMESH_BROKER_LISTEN")
      ->capture_default_str();
  app.add_option("--data-dir", data_dir, "Directory for the SQLite database (created 0700); required")
      ->envname("CLAUDEMESH_BROKER_DATA_DIR");
  app.add_option("--tls-cert", tls_cert, "PEM certificate chain: serve HTTPS and wss://")
      ->envname("CLAUDEMESH_BROKER_TLS_CERT");
  app.add_option("--tls-key", tls_key, "PEM private key for --tls-cert")->envname("CLAUDEMESH_BROKER_TLS_KEY");
  app.add_option("--admin-token-file", admin_token_file,
                 "File of argon2id token hashes, one per line (see hash-token); when given, creating a mesh needs "
                 "one of the tokens")
      ->envname("CLAUDEMESH_BROKER_ADMIN_TOKEN_FILE");
  app.add_option("--public-url", config.public_url, "Base URL used in invite links (default: the listen address)")
      ->envname("CLAUDEMESH_BROKER_PUBLIC_URL");
  app.add_option("--max-connections-per-mesh", config.max_connections_per_mesh, "WebSocket connections per mesh")
      ->envname("CLAUDEMESH_BROKER_MAX_CONNECTIONS_PER_MESH")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-connections", config.max_connections, "Open connections in all")
      ->envname("CLAUDEMESH_BROKER_MAX_CONNECTIONS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-frame", config.max_frame_bytes, "Largest WebSocket message in bytes (larger: close 1009)")
      ->envname("CLAUDEMESH_BROKER_MAX_FRAME")->capture_default_str()->check(CLI::Range(1024, 16 << 20));
  app.add_option("--max-payload", config.max_payload_bytes, "Largest ciphertext in bytes (payload_too_large)")
      ->envname("CLAUDEMESH_BROKER_MAX_PAYLOAD")->capture_default_str()->check(CLI::Range(16, 16 << 20));
  app.add_option("--rate-burst", config.rate_burst, "Per-member send burst")
      ->envname("CLAUDEMESH_BROKER_RATE_BURST")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--rate-per-minute", config.rate_per_minute, "Per-member sends per minute")
      ->envname("CLAUDEMESH_BROKER_RATE_PER_MINUTE")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--lease-ms", lease_ms, "Lease on a pushed copy before it is pushed again")
      ->envname("CLAUDEMESH_BROKER_LEASE_MS")->capture_default_str()->check(CLI::Range(100, 3'600'000));
  app.add_option("--grace-ms", grace_ms, "Presence grace after a connection closes")
      ->envname("CLAUDEMESH_BROKER_GRACE_MS")->capture_default_str()->check(CLI::Range(0, 3'600'000));
  app.add_option("--redeliver-interval-ms", redeliver_ms, "Sweep for expired leases every this often")
      ->envname("CLAUDEMESH_BROKER_REDELIVER_INTERVAL_MS")->capture_default_str()->check(CLI::Range(50, 600'000));
  app.add_option("--max-hold-ms", hold_ms, "next/low copies are delivered after this long whatever the status")
      ->envname("CLAUDEMESH_BROKER_MAX_HOLD_MS")->capture_default_str()->check(CLI::Range(0, 86'400'000));
  app.add_option("--message-ttl-ms", ttl_ms, "Default and maximum lifetime of an undelivered copy")
      ->envname("CLAUDEMESH_BROKER_MESSAGE_TTL_MS")->capture_default_str()->check(CLI::Range(1000LL, 31'536'000'000LL));
  app.add_option("--ping-interval-ms", ping_ms, "WebSocket ping interval")
      ->envname("CLAUDEMESH_BROKER_PING_INTERVAL_MS")->capture_default_str()->check(CLI::Range(100, 600'000));
  app.add_option("--stale-ms", stale_ms, "Drop a connection silent for this long")
      ->envname("CLAUDEMESH_BROKER_STALE_MS")->capture_default_str()->check(CLI::Range(200, 3'600'000));
  app.add_flag("--no-fsync", no_fsync,
               "Do not fsync commits (WAL synchronous=NORMAL): faster, but a machine crash may lose acked messages")
      ->envname("CLAUDEMESH_BROKER_NO_FSYNC");
  auto* hash = app.add_subcommand("hash-token", "Read an admin token on stdin and print its argon2id hash");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }
  if (hash->parsed()) return hash_token();

  if (!split_listen(listen, config.listen_host, config.listen_port)) {
    fatal("--listen must be HOST:PORT, got \"" + listen + "\"");
    return exit_usage;
  }
  if (data_dir.empty()) {
    fatal("--data-dir is required (where the broker keeps its database)");
    return exit_usage;
  }
  if (tls_cert.empty() != tls_key.empty()) {
    fatal("--tls-cert and --tls-key go together");
    return exit_usage;
  }
  if (!admin_token_file.empty()) {
    std::ifstream in(admin_token_file);
    if (!in) {
      fatal("cannot read --admin-token-file " + admin_token_file);
      return exit_usage;
    }
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line.front() == '#') continue;
      if (!line.starts_with("$argon2id$")) {
        fatal("--admin-token-file holds argon2id hashes (claudemesh-broker hash-token), not tokens");
        return exit_usage;
      }
      config.admin_token_hashes.push_back(line);
    }
    if (config.admin_token_hashes.empty()) {
      fatal("--admin-token-file has no hashes");
      return exit_usage;
    }
  }
  config.data_dir = data_dir;
  config.tls_cert = tls_cert;
  config.tls_key = tls_key;
  config.lease = std::chrono::milliseconds(lease_ms);
  config.grace = std::chrono::milliseconds(grace_ms);
  config.redeliver_interval = std::chrono::milliseconds(redeliver_ms);
  config.max_hold = std::chrono::milliseconds(hold_ms);
  config.message_ttl = std::chrono::milliseconds(ttl_ms);
  config.ping_interval = std::chrono::milliseconds(ping_ms);
  config.stale_after = std::chrono::milliseconds(stale_ms);
  config.full_sync = !no_fsync;
  config.log = log_line;

  asio::io_context io(1);
  auto broker = claudemesh::Broker::open(io.get_executor(), config);
  if (!broker) {
    fatal(broker.error().describe());
    return exit_failure;
  }
  if (auto started = (*broker)->start(); !started) {
    fatal(started.error().describe());
    return exit_failure;
  }
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](std::error_code ec, int) {
    if (ec) return;
    (*broker)->stop([&io] { io.stop(); });
  });
  io.run();
  return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "claudemesh-broker: internal error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "claudemesh-broker: internal error\n";
  }
  return exit_failure;
}
