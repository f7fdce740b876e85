#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build and run the core crypto micro-benchmarks (Release). Prints per-operation times in microseconds.
# Target (issue 2): seal and open of a 1 KiB DM with cached keys <= 5 us each.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset bench >/dev/null
cmake --build --preset bench --target core_bench
exec build/bench/bench/core_bench --benchmark_time_unit=us --benchmark_min_time=0.5 "$@"
