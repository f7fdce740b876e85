// SPDX-License-Identifier: MIT
// Running the library's coroutines from the CLI's straight-line code: spawn one on an io_context and run
// that io_context (with whatever else runs on it, e.g. a peer's connection) until the one finishes or a
// time limit passes.
#pragma once

#include <claudemesh/result.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>

namespace claudemesh::cli {

/// Run `work` on `io` until it completes, at most `limit`. @returns its result, or `Errc::timed_out`
/// (`what` says what did not finish). The work may still be pending on a time-out: the result slot is
/// shared with it, so it may finish later without harm; stop or destroy `io` to abandon it.
template <class T>
Result<T> run_blocking(asio::io_context& io, asio::awaitable<Result<T>> work, std::chrono::milliseconds limit,
                       const std::string& what) {
  auto slot = std::make_shared<std::optional<Result<T>>>();
  asio::co_spawn(io, std::move(work), [slot](const std::exception_ptr& error, Result<T> value) {
    if (error) {
      *slot = Result<T>(fail(Errc::internal, "unexpected failure"));
    } else {
      *slot = std::move(value);
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!*slot) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return fail(Errc::timed_out, what + " did not finish within " + std::to_string(limit.count() / 1000) + "." +
                                       std::to_string((limit.count() % 1000) / 100) + " s");
    }
    if (io.stopped()) io.restart();
    io.run_one_for(deadline - now);
  }
  return std::move(**slot);
}

/// Run `io` for `duration` (letting background work proceed), returning early if it runs out of work.
inline void run_for(asio::io_context& io, std::chrono::milliseconds duration) {
  if (io.stopped()) io.restart();
  io.run_for(duration);
}

}  // namespace claudemesh::cli
