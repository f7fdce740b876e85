#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build the libFuzzer targets with clang-19 (ASan + UBSan) and run each for a bounded time on a scratch
# copy of its committed seed corpus. Usage: scripts/fuzz.sh [seconds-per-target]   (default 45)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-45}"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for corpus in tests/fuzz/corpus/*/; do
  name="$(basename "$corpus")"
  binary="build/fuzz/tests/fuzz/fuzz_${name}"
  [ -x "$binary" ] || { echo "no fuzz target for corpus $name" >&2; status=1; continue; }
  mkdir -p "$work/$name"
  cp -r "$corpus". "$work/$name/"
  echo "== fuzz_${name}: ${seconds}s"
  if ! "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$work/${name}-" "$work/$name" 2>"$work/${name}.log"; then
    echo "fuzz_${name} FAILED:" >&2
    tail -50 "$work/${name}.log" >&2
    mkdir -p fuzz-artifacts && cp "$work/${name}-"* fuzz-artifacts/ 2>/dev/null || true
    status=1
  else
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$work/${name}.log" | tail -2
  fi
done
exit $status
