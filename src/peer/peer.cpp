// SPDX-License-Identifier: MIT
// Peer: a MeshLink with its own outbox and inbox. PeerRunner: a Peer on a thread of its own.
#include <claudemesh/peer.hpp>

#include "peer/mesh_link.hpp"
#include "store/sqlite_database.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <atomic>
#include <future>
#include <thread>
#include <utility>

namespace claudemesh {

struct Peer::Impl {
  Impl(Outbox out, Inbox in) : outbox(std::move(out)), inbox(std::move(in)) {}
  Outbox outbox;
  Inbox inbox;
  std::shared_ptr<peer::MeshLink> link;
};

Peer::Peer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Peer::~Peer() {
  try {
    if (impl_ && impl_->link) impl_->link->stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a throwing callback must not escape a destructor
  }
}

Result<std::unique_ptr<Peer>> Peer::open(const asio::any_io_executor& executor, Identity member, PeerConfig config) {
  if (config.data_dir.empty()) return fail(Errc::invalid_value, "a peer needs a data directory");
  if (auto made = store::create_private_directories(config.data_dir); !made) return fail(made.error());
  auto outbox = Outbox::open(config.data_dir / "outbox.db", config.outbox);
  if (!outbox) return fail(outbox.error());
  auto inbox = Inbox::open(config.data_dir / "inbox.db", config.inbox);
  if (!inbox) return fail(inbox.error());
  auto impl = std::make_shared<Impl>(std::move(*outbox), std::move(*inbox));
  peer::LinkConfig link_config;
  link_config.mesh_id = std::move(config.mesh_id);
  link_config.member_id = std::move(config.member_id);
  link_config.broker_url = std::move(config.broker_url);
  link_config.display_name = std::move(config.display_name);
  link_config.ca_file = std::move(config.ca_file);
  link_config.client = std::move(config.client);
  link_config.member_cache = config.member_cache;
  link_config.log = std::move(config.log);
  auto link = peer::MeshLink::create(executor, std::move(member), std::move(link_config), impl->outbox,
                                     impl->inbox);
  if (!link) return fail(link.error());
  impl->link = std::move(*link);
  return std::unique_ptr<Peer>(new Peer(std::move(impl)));
}

asio::awaitable<void> Peer::run() {
  auto impl = impl_;  // keeps the stores alive while the link runs
  co_await impl->link->run();
}

void Peer::stop() { impl_->link->stop(); }

asio::awaitable<Result<SendResult>> Peer::send(std::string target, std::string body, SendOptions options) {
  auto impl = impl_;
  co_return co_await impl->link->send(std::move(target), std::move(body), std::move(options));
}

asio::awaitable<Result<SendResult>> Peer::send(std::string target, std::string body) {
  // Not a coroutine, and no default argument: g++ 12 destroys a coroutine parameter initialized from a
  // default argument twice.
  SendOptions options;
  return send(std::move(target), std::move(body), std::move(options));
}

void Peer::on_message(std::function<void(const InboxMessage&)> handler) { impl_->link->on_message(std::move(handler)); }

void Peer::on_event(std::function<void(std::string_view, std::string_view)> handler) {
  impl_->link->on_event(std::move(handler));
}

asio::awaitable<Result<std::vector<PeerInfo>>> Peer::peers() {
  auto impl = impl_;
  co_return co_await impl->link->peers();
}

Outbox& Peer::outbox() noexcept { return impl_->outbox; }
Inbox& Peer::inbox() noexcept { return impl_->inbox; }
BrokerClient& Peer::client() noexcept { return impl_->link->client(); }
const Identity& Peer::identity() const noexcept { return impl_->link->identity(); }

// ---- PeerRunner ----

struct PeerRunner::Impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::unique_ptr<Peer> peer;
  std::thread thread;

  // Runs `make()` (returning an awaitable<T>) on the runner's thread and waits for its value.
  template <class T, class Make>
  T call(Make make) {
    std::promise<T> promise;
    auto future = promise.get_future();
    asio::co_spawn(io, make(), [&promise](const std::exception_ptr& error, T value) {
      if (error) {
        promise.set_exception(error);
      } else {
        promise.set_value(std::move(value));
      }
    });
    return future.get();
  }
};

PeerRunner::PeerRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<PeerRunner>> PeerRunner::start(Identity member, PeerConfig config) {
  auto impl = std::make_unique<Impl>();
  auto peer = Peer::open(impl->io.get_executor(), std::move(member), std::move(config));
  if (!peer) return fail(peer.error());
  impl->peer = std::move(*peer);
  asio::co_spawn(impl->io, impl->peer->run(), asio::detached);
  impl->thread = std::thread([raw = impl.get()] { raw->io.run(); });
  return std::unique_ptr<PeerRunner>(new PeerRunner(std::move(impl)));
}

PeerRunner::~PeerRunner() {
  try {
    asio::post(impl_->io, [raw = impl_.get()] {
      raw->peer->stop();
      raw->work.reset();
    });
    if (impl_->thread.joinable()) impl_->thread.join();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; nothing is left to save
  }
}

Result<SendResult> PeerRunner::send(std::string target, std::string body, SendOptions options) {
  Peer* peer = impl_->peer.get();
  return impl_->call<Result<SendResult>>([&] { return peer->send(std::move(target), std::move(body), std::move(options)); });
}

Result<std::vector<PeerInfo>> PeerRunner::peers() {
  Peer* peer = impl_->peer.get();
  return impl_->call<Result<std::vector<PeerInfo>>>([&] { return peer->peers(); });
}

bool PeerRunner::wait_connected(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::promise<bool> promise;
    auto future = promise.get_future();
    asio::post(impl_->io, [&] { promise.set_value(impl_->peer->client().state() == TransportState::open); });
    if (future.get()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void PeerRunner::on_message(std::function<void(const InboxMessage&)> handler) {
  std::promise<void> done;
  asio::post(impl_->io, [&] {
    impl_->peer->on_message(std::move(handler));
    done.set_value();
  });
  done.get_future().get();
}

void PeerRunner::on_event(std::function<void(std::string_view, std::string_view)> handler) {
  std::promise<void> done;
  asio::post(impl_->io, [&] {
    impl_->peer->on_event(std::move(handler));
    done.set_value();
  });
  done.get_future().get();
}

}  // namespace claudemesh
