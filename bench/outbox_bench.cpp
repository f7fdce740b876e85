// SPDX-License-Identifier: MIT
// Outbox::accept latency, one accept at a time (as the daemon's send route does), on a file in $TMPDIR, with
// synchronous=FULL (every accept is on disk when it returns) and NORMAL; then the drain's per-row cost
// (claim 32 + mark_sent each). Prints p50/p90/p99/max in microseconds. Usage: outbox_bench [accepts]
#include <claudemesh/fingerprint.hpp>
#include <claudemesh/outbox.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using namespace claudemesh;
using SteadyClock = std::chrono::steady_clock;

namespace {

double percentile(std::vector<double>& samples, double p) {
  std::sort(samples.begin(), samples.end());
  const auto at = static_cast<std::size_t>(p * static_cast<double>(samples.size() - 1));
  return samples[at];
}

void report(const char* what, std::vector<double> us) {
  std::printf("%-34s n=%-6zu p50 %8.1f  p90 %8.1f  p99 %8.1f  max %8.1f us\n", what, us.size(),
              percentile(us, 0.50), percentile(us, 0.90), percentile(us, 0.99), percentile(us, 1.0));
}

OutboxSend sample(int i) {
  const std::string body = "progress " + std::to_string(i) + "% of the nightly build";
  const std::string target(64, 'a');
  OutboxSend send;
  send.request_fingerprint =
      *request_fingerprint({.destination_kind = "dm", .destination_ref = target, .priority = "next",
                            .body = std::span(reinterpret_cast<const std::uint8_t*>(body.data()), body.size())});
  send.mesh = "mesh-1";
  send.target_spec = target;
  send.sealed = R"({"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ciphertext":")" + std::string(96, 'Q') + "\"}";
  send.payload_bytes = static_cast<std::int64_t>(body.size());
  return send;
}

void run(const std::filesystem::path& dir, bool fsync, int count) {
  OutboxConfig config;
  config.fsync = fsync;
  auto outbox = Outbox::open(dir / (fsync ? "full.db" : "normal.db"), config);
  if (!outbox) {
    std::fprintf(stderr, "open: %s\n", outbox.error().describe().c_str());
    std::exit(1);
  }
  std::vector<double> accept_us;
  for (int i = 0; i < count; ++i) {
    const auto send = sample(i);
    const auto start = SteadyClock::now();
    auto accepted = outbox->accept(send);
    accept_us.push_back(std::chrono::duration<double, std::micro>(SteadyClock::now() - start).count());
    if (!accepted || !accepted->inserted) std::exit(1);
  }
  report(fsync ? "accept, synchronous=FULL" : "accept, synchronous=NORMAL", accept_us);
  std::vector<double> row_us;
  for (;;) {
    const auto start = SteadyClock::now();
    auto rows = outbox->claim("mesh-1", 32);
    if (!rows || rows->empty()) break;
    for (const auto& row : *rows) {
      if (!outbox->mark_sent(row.id, "broker-" + row.id)) std::exit(1);
    }
    const double per_row = std::chrono::duration<double, std::micro>(SteadyClock::now() - start).count() /
                           static_cast<double>(rows->size());
    row_us.push_back(per_row);
  }
  report(fsync ? "drain per row (claim 32 + mark_sent)" : "drain per row, NORMAL", row_us);
}

}  // namespace

int main(int argc, char** argv) {
  const int count = argc > 1 ? std::atoi(argv[1]) : 2000;
  std::string pattern = (std::filesystem::temp_directory_path() / "claudemesh-outbox-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) return 1;
  const std::filesystem::path dir = pattern;
  run(dir, true, count);
  run(dir, false, count);
  std::filesystem::remove_all(dir);
  return 0;
}
