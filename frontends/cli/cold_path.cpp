// SPDX-License-Identifier: MIT
#include "cold_path.hpp"

#include "blocking.hpp"

#include <claudemesh/ids.hpp>

#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <unistd.h>

namespace claudemesh::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto stop_grace = 2s;  // after stop(): let the connection close cleanly

// Until the connection is open (or has stopped for good).
asio::awaitable<Result<void>> wait_open(BrokerClient& client) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    const auto state = client.state();
    if (state == TransportState::open) co_return Result<void>{};
    if (state == TransportState::stopped) {
      const auto why = client.last_error();
      co_return fail(why ? why->errc() : Errc::unavailable, why ? why->describe() : std::string("the connection stopped"));
    }
    timer.expires_after(20ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

Error unreachable(const JoinedMesh& mesh, const Error& why, const BrokerClient& client) {
  // A refusal of our key keeps its code (exit 6); anything else is "cannot reach".
  switch (why.errc()) {
    case Errc::unauthorized:
    case Errc::forbidden:
    case Errc::not_a_member:
    case Errc::revoked:
      return Error(why.code, "the broker refused mesh \"" + mesh.slug + "\": " + why.message);
    default:
      break;
  }
  const auto last = client.last_error();
  return Error(Errc::unavailable, "cannot reach the broker of mesh \"" + mesh.slug + "\" (" + mesh.broker_url +
                                      "): " + (last ? last->describe() : why.message));
}

BrokerClientConfig client_config(const JoinedMesh& mesh) {
  BrokerClientConfig config;
  config.url = mesh.broker_url;
  config.mesh_id = mesh.mesh_id;
  config.member_id = mesh.member_id;
  config.display_name = mesh.display_name;
  config.channel = "claudemesh-cli";
  config.session_id = "cli-" + IdGenerator().next();
  config.pid = ::getpid();
  config.connect_timeout = cold_connect_timeout;
  return config;
}

// One member connection for the length of a command.
class ShortConnection {
 public:
  ShortConnection(const JoinedMesh& mesh, Identity member)
      : mesh_(mesh), config_(client_config(mesh)), client_(BrokerClient::for_member(io_.get_executor(), std::move(member), config_)) {
    asio::co_spawn(io_, client_->run(), asio::detached);
  }
  ShortConnection(const ShortConnection&) = delete;
  ShortConnection& operator=(const ShortConnection&) = delete;
  ~ShortConnection() {
    try {
      client_->stop();
      run_for(io_, stop_grace);
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; the process is about to exit
    }
  }

  Result<void> open() {
    auto opened = run_blocking(io_, wait_open(*client_), cold_connect_timeout, "connecting to the broker");
    if (!opened) return fail(unreachable(mesh_, opened.error(), *client_));
    return {};
  }
  asio::io_context& io() noexcept { return io_; }
  BrokerClient& client() noexcept { return *client_; }
  [[nodiscard]] const std::string& session_id() const noexcept { return config_.session_id; }

 private:
  const JoinedMesh& mesh_;
  asio::io_context io_;
  BrokerClientConfig config_;
  std::unique_ptr<BrokerClient> client_;
};

// Stops a peer and lets its connection close when the command is done with it.
class PeerStopper {
 public:
  PeerStopper(asio::io_context& io, Peer& peer) : io_(io), peer_(peer) {}
  PeerStopper(const PeerStopper&) = delete;
  PeerStopper& operator=(const PeerStopper&) = delete;
  ~PeerStopper() {
    try {
      peer_.stop();
      run_for(io_, stop_grace);
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; the process is about to exit
    }
  }

 private:
  asio::io_context& io_;
  Peer& peer_;
};

bool settled(OutboxStatus status) { return status == OutboxStatus::done || status == OutboxStatus::dead || status == OutboxStatus::aborted; }

}  // namespace

fs::path cold_dir(const fs::path& home, const JoinedMesh& mesh) { return home / "cold" / mesh.slug; }

Result<std::vector<PeerInfo>> cold_peers(const JoinedMesh& mesh, Identity member) {
  ShortConnection connection(mesh, std::move(member));
  if (auto opened = connection.open(); !opened) return fail(opened.error());
  auto listed = run_blocking(connection.io(), connection.client().peers(), 10s, "listing peers");
  if (!listed) return fail(listed.error());
  std::vector<PeerInfo> peers;
  for (auto& peer : *listed) {
    if (peer.session_id == connection.session_id()) continue;  // our own connection of this moment
    peers.push_back(std::move(peer));
  }
  return peers;
}

Result<void> cold_profile(const JoinedMesh& mesh, Identity member, const std::optional<std::string>& status,
                          const std::optional<std::string>& summary) {
  ShortConnection connection(mesh, std::move(member));
  if (auto opened = connection.open(); !opened) return fail(opened.error());
  if (status) {
    std::string value = *status;
    auto set = run_blocking(connection.io(), connection.client().set_status(std::move(value)), 10s, "setting the status");
    if (!set) return fail(set.error());
  }
  if (summary) {
    std::string value = *summary;
    auto set = run_blocking(connection.io(), connection.client().set_summary(std::move(value)), 10s, "setting the summary");
    if (!set) return fail(set.error());
  }
  return {};
}

Result<ColdSent> cold_send(const fs::path& home, const JoinedMesh& mesh, Identity member, std::string target,
                           std::string body, SendOptions options, std::chrono::milliseconds wait) {
  asio::io_context io;
  PeerConfig config;
  config.data_dir = cold_dir(home, mesh);
  config.mesh_id = mesh.mesh_id;
  config.member_id = mesh.member_id;
  config.broker_url = mesh.broker_url;
  config.display_name = mesh.display_name;
  config.client = client_config(mesh);
  auto opened_peer = Peer::open(io.get_executor(), std::move(member), std::move(config));
  if (!opened_peer) return fail(opened_peer.error(), "opening " + cold_dir(home, mesh).string());
  std::unique_ptr<Peer> peer = std::move(*opened_peer);
  asio::co_spawn(io, peer->run(), asio::detached);
  const PeerStopper stopper(io, *peer);

  if (auto opened = run_blocking(io, wait_open(peer->client()), cold_connect_timeout, "connecting to the broker"); !opened) {
    return fail(unreachable(mesh, opened.error(), peer->client()));
  }
  auto sent = run_blocking(io, peer->send(std::move(target), std::move(body), std::move(options)), 15s, "the send");
  if (!sent) return fail(sent.error());
  const auto& accepted = sent->accepted;
  if (accepted.outcome == OutboxAccept::Outcome::conflict) {
    return fail(Errc::idempotency_key_reused, "client message id " + accepted.row.client_message_id +
                                                  " was already used for another message (" + accepted.conflict + ")");
  }
  ColdSent out{.row = accepted.row,
               .target_spec = sent->target_spec,
               .recipients = sent->sealed_for,
               .duplicate = accepted.outcome == OutboxAccept::Outcome::duplicate,
               .handed_over = false};
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (!settled(out.row.status) && std::chrono::steady_clock::now() < deadline) {
    run_for(io, 50ms);
    auto row = peer->outbox().find(out.row.id);
    if (!row) return fail(row.error());
    if (*row) out.row = std::move(**row);
  }
  out.handed_over = out.row.status == OutboxStatus::done;
  return out;
}

Result<std::optional<ColdStatus>> cold_message_status(const fs::path& home, const std::vector<JoinedMesh>& meshes,
                                                      const std::string& id) {
  for (const auto& mesh : meshes) {
    const fs::path file = cold_dir(home, mesh) / "outbox.db";
    std::error_code ec;
    if (!fs::exists(file, ec)) continue;
    auto outbox = Outbox::open(file);
    if (!outbox) return fail(outbox.error(), file.string());
    auto row = outbox->find(id);
    if (!row) return fail(row.error());
    if (!*row) continue;
    ColdStatus status{.row = std::move(**row), .mesh_slug = mesh.slug, .delivery = std::nullopt, .delivery_error = {}};
    if (status.row.broker_message_id.empty()) return std::optional<ColdStatus>(std::move(status));
    auto member = load_member_identity(mesh);
    if (!member) {
      status.delivery_error = member.error().describe();
      return std::optional<ColdStatus>(std::move(status));
    }
    ShortConnection connection(mesh, std::move(*member));
    if (auto opened = connection.open(); !opened) {
      status.delivery_error = opened.error().message;
      return std::optional<ColdStatus>(std::move(status));
    }
    std::string broker_id = status.row.broker_message_id;
    auto delivery = run_blocking(connection.io(), connection.client().message_status(std::move(broker_id)), 10s,
                                 "asking the broker");
    if (delivery) {
      status.delivery = std::move(*delivery);
    } else {
      status.delivery_error = delivery.error().describe();
    }
    return std::optional<ColdStatus>(std::move(status));
  }
  return std::optional<ColdStatus>();
}

}  // namespace claudemesh::cli
