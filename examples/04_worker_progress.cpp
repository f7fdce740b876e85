// SPDX-License-Identifier: MIT
// A worker embeds a Peer (no daemon): it reports progress to its lead over an encrypted mesh and stops
// when the lead replies "stop". Self-contained: it starts a broker on 127.0.0.1 in a temporary directory,
// creates the mesh as the lead, and joins the worker with an invite — what `claudemesh mesh create`,
// `invite` and `join` do.
#include <claudemesh/broker.hpp>
#include <claudemesh/broker_api.hpp>
#include <claudemesh/peer.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace cm = claudemesh;
using namespace std::chrono_literals;

asio::awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

asio::awaitable<void> reply_stop(cm::Peer& lead) { co_await lead.send("worker", "stop"); }

asio::awaitable<int> demo(cm::Broker& broker, const std::filesystem::path& dir) {
  auto ex = co_await asio::this_coro::executor;
  const std::string base = "http://127.0.0.1:" + std::to_string(broker.port());
  auto lead_id = cm::Identity::generate(cm::IdentityKind::member);
  auto worker_id = cm::Identity::generate(cm::IdentityKind::member);
  auto lead_api = cm::BrokerApi::connect(ex, base, lead_id);
  auto mesh = co_await (*lead_api)->create_mesh("builds", "lead", std::string());
  if (!mesh) co_return std::cerr << mesh.error().describe() << "\n", 1;
  auto invite = co_await (*lead_api)->create_invite(mesh->mesh_id, "member", 600, 1);
  if (!invite) co_return std::cerr << invite.error().describe() << "\n", 1;
  auto ref = cm::parse_invite_url(invite->url);
  auto worker_api = cm::BrokerApi::connect(ex, ref->http_base, worker_id);
  auto joined = co_await (*worker_api)->join(ref->invite_id, "worker");
  if (!joined) co_return std::cerr << joined.error().describe() << "\n", 1;

  auto open_peer = [&](cm::Identity id, const cm::Membership& m, const char* name) {
    return cm::Peer::open(ex, std::move(id), {.data_dir = dir / name, .mesh_id = m.mesh_id,
                                              .member_id = m.member_id, .broker_url = m.ws_url,
                                              .display_name = name});
  };
  auto lead = open_peer(std::move(lead_id), *mesh, "lead");
  auto worker = open_peer(std::move(worker_id), *joined, "worker");
  bool stop_requested = false;
  (*lead)->on_message([&](const cm::InboxMessage& m) {
    std::cout << "lead   <- " << m.sender_name << ": " << m.body << "\n";
    if (m.body == "progress 30%") asio::co_spawn(ex, reply_stop(**lead), asio::detached);  // seen enough
  });
  (*worker)->on_message([&](const cm::InboxMessage& m) {
    std::cout << "worker <- " << m.sender_name << ": " << m.body << "\n";
    stop_requested = m.body == "stop";
  });
  asio::co_spawn(ex, (*lead)->run(), asio::detached);
  asio::co_spawn(ex, (*worker)->run(), asio::detached);
  while ((*worker)->client().state() != cm::TransportState::open) co_await pause(10ms);

  int percent = 0;
  while (!stop_requested && percent < 100) {
    percent += 10;
    auto sent = co_await (*worker)->send("lead", "progress " + std::to_string(percent) + "%");
    if (!sent) co_return std::cerr << sent.error().describe() << "\n", 1;
    co_await pause(200ms);  // the work itself
  }
  std::cout << (stop_requested ? "worker stopped at " : "worker finished at ") << percent << "%\n";
  (*lead)->stop();
  (*worker)->stop();
  co_return stop_requested ? 0 : 1;
}

int main() {
  std::string pattern = (std::filesystem::temp_directory_path() / "claudemesh-example-XXXXXX").string();
  const std::filesystem::path dir = ::mkdtemp(pattern.data());
  asio::io_context io;
  auto broker = cm::Broker::open(io.get_executor(), {.listen_port = 0, .data_dir = dir / "broker"});
  if (!broker || !(*broker)->start()) return std::cerr << "cannot start the broker\n", 1;
  int status = 1;
  asio::co_spawn(io, demo(**broker, dir), [&](std::exception_ptr, int s) { status = s; io.stop(); });
  io.run_for(30s);
  (*broker)->stop();
  std::filesystem::remove_all(dir);
  return status;
}
