#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Broker load benchmarks, in the shape of the reference's load test (docs/LOAD-TEST-v0.1.0.md of the original
# claudemesh): N peers join one mesh and each sends M end-to-end encrypted DMs to random other peers, all at
# once (a burst). broker_load spawns claudemesh-broker itself (temp data dir, generous rate limits), drives it
# over the real HTTP API and WebSocket protocol, and prints delivered %, send→ack and send→push p50/p99,
# drain time, broker RSS and CPU. Runs:
#   1. 10 × 100, 100 × 100 and 100 × 1000 with fsync on (the default, the real configuration)
#   2. 100 × 1000 with --no-fsync, and 100 × 1000 with at most 32 sends in flight per peer (a flow-controlled
#      client), for comparison
#   3. 100 × 100 open loop at RATE msgs/s (latency below saturation)
#   4. 10,000 idle peers in 100 meshes of 100: broker memory per connection (IDLE_ONE_MESH=1 adds 10,000 peers
#      in one mesh, which takes ~20 minutes on 2 cores: each hello is announced to every peer already there)
# and ends with a summary table next to the reference's published figures (it does not run here: Bun +
# PostgreSQL, macOS laptop).
#
# Environment knobs:
#   BROKER_BENCH_BUILD_DIR  configure and build this directory with the bench preset's cache variables instead
#                           of `cmake --preset bench` (build/bench), e.g. to stay out of someone else's build
#   BROKER_BENCH_BIN_DIR    run prebuilt binaries instead (broker_load here, claudemesh-broker from BROKER)
#   BROKER                  the claudemesh-broker binary to measure (default: the one just built)
#   WINDOW=0                sends in flight per peer; 0 = burst (everything at once, like the reference)
#   RATE=500                total msgs/s of the open-loop run
#   IDLE_PEERS=10000        peers of the idle-memory run (0 skips it)
#   IDLE_MESHES=100         meshes they are spread over
#   IDLE_ONE_MESH=0         1: also run IDLE_PEERS peers in a single mesh (the join storm: n(n-1)/2 peer_joined)
#   DRAIN_TIMEOUT=300       seconds to wait, after the last ack, for every push
#   SETTLE_TIMEOUT=300      then seconds to wait for the broker's undelivered count to reach 0 (every push acked)
#   RUN_TIMEOUT=1800        hard bound on each run, in seconds
#   ONLY="10x100 100x100"   run only these labels (10x100 100x100 100x1000 100x1000-nofsync 100x1000-window32
#                           open-loop idle idle-one-mesh)
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOW=${WINDOW:-0}
RATE=${RATE:-500}
IDLE_PEERS=${IDLE_PEERS:-10000}
IDLE_MESHES=${IDLE_MESHES:-100}
IDLE_ONE_MESH=${IDLE_ONE_MESH:-0}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-300}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
ONLY=${ONLY:-}
PYTHON=/usr/bin/python3

if [[ -n ${BROKER_BENCH_BIN_DIR:-} ]]; then
  LOAD=$BROKER_BENCH_BIN_DIR/broker_load
  BROKER=${BROKER:?set BROKER to the claudemesh-broker binary when using BROKER_BENCH_BIN_DIR}
else
  if [[ -n ${BROKER_BENCH_BUILD_DIR:-} ]]; then
    BUILD=$BROKER_BENCH_BUILD_DIR
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Release \
      -DCLAUDEMESH_BUILD_BENCH=ON -DCLAUDEMESH_BUILD_TESTS=OFF -DCLAUDEMESH_INSTALL=OFF >/dev/null
  else
    BUILD=build/bench
    cmake --preset bench >/dev/null
  fi
  cmake --build "$BUILD" --target broker_load claudemesh-broker
  LOAD=$BUILD/bench/broker_load
  BROKER=${BROKER:-$BUILD/frontends/broker/claudemesh-broker}
fi

# Every peer is a descriptor in the load generator and in the broker (which inherits the limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d)
RESULTS=$WORK/results
: >"$RESULTS"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

wanted() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }

# run LABEL ARGS...: one broker_load run (it starts and stops its own broker); keeps its RESULT line.
run() {
  local label=$1 output status=0
  shift
  wanted "$label" || return 0
  echo
  echo "-- $label: broker_load $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  output=$(timeout --signal=TERM "$RUN_TIMEOUT" "$LOAD" --broker "$BROKER" --label "$label" "$@" 2>&1) || status=$?
  grep -v '^RESULT ' <<<"$output" || true
  grep '^RESULT ' <<<"$output" >>"$RESULTS" || true
  if ((status == 124)); then echo "  !! $label: stopped after RUN_TIMEOUT=${RUN_TIMEOUT}s" | tee -a "$WORK/problems"; fi
  if ((status != 0 && status != 124)); then
    echo "  !! $label: broker_load exited with status $status (not everything delivered, or the broker failed)" |
      tee -a "$WORK/problems"
  fi
}

echo "== broker load benchmarks: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -n)"
echo "   broker: $BROKER"
echo "   data dirs under ${TMPDIR:-/tmp} ($(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}'))"

common=(--window "$WINDOW" --drain-timeout "$DRAIN_TIMEOUT" --settle-timeout "$SETTLE_TIMEOUT")
run 10x100 --peers 10 --messages 100 "${common[@]}"
run 100x100 --peers 100 --messages 100 "${common[@]}"
run 100x1000 --peers 100 --messages 1000 "${common[@]}"
run 100x1000-nofsync --peers 100 --messages 1000 --no-fsync "${common[@]}"
run 100x1000-window32 --peers 100 --messages 1000 --window 32 --drain-timeout "$DRAIN_TIMEOUT" \
  --settle-timeout "$SETTLE_TIMEOUT"
run open-loop --peers 100 --messages 100 --rate "$RATE" --drain-timeout "$DRAIN_TIMEOUT" --settle-timeout "$SETTLE_TIMEOUT"
if ((IDLE_PEERS > 0)); then
  run idle --idle "$IDLE_PEERS" --meshes "$IDLE_MESHES"
  if ((IDLE_ONE_MESH)); then
    run idle-one-mesh --idle "$IDLE_PEERS" --meshes 1
  fi
fi

echo
echo "== summary (load average at the end $(cut -d' ' -f1-3 /proc/loadavg))"
$PYTHON - "$RESULTS" <<'EOF'
import json, sys

rows = [json.loads(line.split(" ", 1)[1]) for line in open(sys.argv[1]) if line.startswith("RESULT ")]

def f(v, spec="{:.0f}"):
    return "-" if v is None else spec.format(v)

def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.0f}"

print(f"{'run':<18} {'msgs':>6} {'deliv %':>7} {'dups':>6} {'ack p50/p99 ms':>15} {'push p50/p99 ms':>15} "
      f"{'msg/s':>5} {'drain s':>7} {'settle s':>8} {'RSS +MiB':>8} {'peak MiB':>8} {'CPU s':>5} {'CPU wait s':>10}")
for r in rows:
    if "error" in r:
        print(f"{r['label']:<18} FAILED: {r['error']}")
        continue
    if r.get("mode") == "idle":
        continue
    a, p = r["send_ack_ms"], r["send_push_ms"]
    wait = sum(t["runqueue_wait_s"] or 0 for t in r.get("broker_threads_send", {}).values())
    settle = r.get("acks_settled_s")
    settled = f(settle, "{:.1f}") if r.get("undelivered_after_acks") == 0 else f">{settle:.0f}" if settle else "-"
    print(f"{r['label']:<18} {r['messages']:>6} {f(r['delivered_pct'], '{:.2f}'):>7} {r.get('duplicates_pushed_end', r['duplicates_pushed']):>6} "
          f"{f(a['p50']) + '/' + f(a['p99']):>15} {f(p['p50']) + '/' + f(p['p99']):>15} "
          f"{f(r['throughput_per_s']):>5} {f(r['drain_after_last_send_s'], '{:.2f}'):>7} {settled:>8} "
          f"{mib(r['broker_rss_growth_kib']):>8} {mib(r['broker_peak_rss_kib']):>8} "
          f"{f(r['broker_cpu_send_s'], '{:.1f}'):>5} {wait:>10.1f}")
for r in rows:
    if r.get("mode") == "idle" and "error" not in r:
        print(f"{r['label']}: {r['open']} of {r['peers']} peers in {r['meshes']} mesh(es) connected and said hello "
              f"in {r['connect_s']:.1f} s; "
              f"broker RSS {mib(r['broker_rss_before_kib'])} -> {mib(r['broker_rss_after_kib'])} MiB = "
              f"{f(r['kib_per_connection'], '{:.1f}')} KiB per idle peer (peak {mib(r['broker_peak_rss_kib'])} MiB); "
              f"join storm: {r['join_events']} peer_joined events in {r['join_storm_s']:.1f} s")
print()
print("reference (published, docs/LOAD-TEST-v0.1.0.md, macOS laptop, Bun + PostgreSQL; not run here):")
print("  10x100: 100% delivered, e2e p50 780 ms / p99 1.16 s, send->ack p50 274 ms")
print("  100x1000: 88.78% delivered within the 900 s drain cap, e2e p50 12.9 s / p99 23.0 s, "
      "send->ack p50 11.9 s, peak RSS 1156 MB")
print("targets (anchors.md T3): 100% delivered, p99 send->push <= 250 ms, drained <= 10 s, RSS growth <= 100 MB")
print("columns: dups = pushes of an already delivered message, by the end of the run; drain = last send -> last first-push; settle = until")
print("the broker's undelivered count reached 0 after the drain ('>N': not within SETTLE_TIMEOUT); CPU = broker")
print("utime+stime during send+drain; CPU wait = time its threads were runnable but waited for a CPU (machine load)")
EOF
if [[ -s $WORK/problems ]]; then
  echo
  echo "problems:"
  cat "$WORK/problems"
  exit 1
fi
