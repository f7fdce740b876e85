// SPDX-License-Identifier: MIT
// Test support: a real broker (the embeddable `Broker`) on 127.0.0.1 in a temporary directory, and meshes
// created and joined through its signed HTTP API, for in-process tests of clients, peers and the daemon.
#pragma once

#include <claudemesh/broker.hpp>
#include <claudemesh/identity.hpp>

#include <claudemesh/broker_api.hpp>

#include "support/files.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace claudemesh::testing {

/// A broker listening on 127.0.0.1 with its SQLite store in `data_dir`. `port` 0 picks one; pass the old
/// port to restart "the same" broker.
inline std::unique_ptr<Broker> start_broker(asio::io_context& io, const std::filesystem::path& data_dir,
                                            std::uint16_t port = 0, BrokerConfig config = {}) {
  config.listen_host = "127.0.0.1";
  config.listen_port = port;
  config.data_dir = data_dir;
  config.full_sync = false;
  config.rate_burst = 10'000;
  config.rate_per_minute = 600'000;
  auto broker = Broker::open(io.get_executor(), std::move(config));
  REQUIRE_MESSAGE(broker, (broker ? "" : broker.error().describe()));
  auto started = (*broker)->start();
  REQUIRE_MESSAGE(started, (started ? "" : started.error().describe()));
  return std::move(*broker);
}

inline std::string http_base(const Broker& broker) { return "http://127.0.0.1:" + std::to_string(broker.port()); }

/// Runs `coroutine` on `io` until it finishes (at most `limit`), rethrowing a failure from inside it.
template <class Coroutine>
void run_bounded(asio::io_context& io, Coroutine coroutine, std::chrono::seconds limit = std::chrono::seconds(20)) {
  bool finished = false;
  std::exception_ptr failure;
  io.restart();
  asio::co_spawn(io, std::move(coroutine), [&](std::exception_ptr e) {
    finished = true;
    failure = std::move(e);
    io.stop();
  });
  io.run_for(limit);
  if (failure) std::rethrow_exception(failure);
  REQUIRE_MESSAGE(finished, "the test coroutine did not finish in time");
}

/// Polls `condition` every 5 ms until it holds or `limit` passes. @returns whether it held.
inline asio::awaitable<bool> wait_until(std::function<bool()> condition,
                                        std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    timer.expires_after(std::chrono::milliseconds(5));
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return true;
}

/// A mesh with an owner and one more member, created through the broker's HTTP API.
struct TwoMembers {
  Membership owner;
  Membership member;
};

/// Invites `joiner` into the owner's mesh and joins it.
inline asio::awaitable<Membership> invite_and_join(std::string base, const Identity& owner,
                                                              std::string mesh_id, const Identity& joiner,
                                                              std::string name) {
  auto executor = co_await asio::this_coro::executor;
  auto owner_api = BrokerApi::connect(executor, base, owner);
  REQUIRE(owner_api);
  const std::string role = "member";
  auto invite = co_await (*owner_api)->create_invite(std::move(mesh_id), role, 3600, 1);
  REQUIRE_MESSAGE(invite, (invite ? "" : invite.error().describe()));
  auto ref = parse_invite_url(invite->url);
  REQUIRE(ref);
  auto joiner_api = BrokerApi::connect(executor, ref->http_base, joiner);
  REQUIRE(joiner_api);
  auto joined = co_await (*joiner_api)->join(ref->invite_id, std::move(name));
  REQUIRE_MESSAGE(joined, (joined ? "" : joined.error().describe()));
  co_return *joined;
}

inline asio::awaitable<TwoMembers> create_two_member_mesh(std::string base, const Identity& owner,
                                                          const Identity& member) {
  auto executor = co_await asio::this_coro::executor;
  auto owner_api = BrokerApi::connect(executor, base, owner);
  REQUIRE(owner_api);
  const std::string mesh_name = "test-mesh";
  const std::string owner_name = "alice";
  const std::string no_token;
  auto mesh = co_await (*owner_api)->create_mesh(mesh_name, owner_name, no_token);
  REQUIRE_MESSAGE(mesh, (mesh ? "" : mesh.error().describe()));
  const std::string role = "member";
  auto invite = co_await (*owner_api)->create_invite(mesh->mesh_id, role, 3600, 5);
  REQUIRE_MESSAGE(invite, (invite ? "" : invite.error().describe()));
  auto ref = parse_invite_url(invite->url);
  REQUIRE(ref);
  auto member_api = BrokerApi::connect(executor, ref->http_base, member);
  REQUIRE(member_api);
  const std::string member_name = "bob";
  auto joined = co_await (*member_api)->join(ref->invite_id, member_name);
  REQUIRE_MESSAGE(joined, (joined ? "" : joined.error().describe()));
  co_return TwoMembers{*mesh, *joined};
}

}  // namespace claudemesh::testing
