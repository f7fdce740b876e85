#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Transport benchmarks (issue 3), each side by side with its anchor where one runs on this machine:
#   1. WebSocket echo on loopback, 1 and 1,000 connections, 64 B and 1 KiB messages: messages/s and p50/p99
#      round trip, against our server and against python3-websockets' echo server, with the ratio ours/python.
#   2. Memory per idle WebSocket connection (10,000 of them) on our server (target <= 16 KiB), and on
#      python3-websockets for comparison.
#   3. HTTP GET /health over the Unix socket with keep-alive, 1 and 16 concurrent clients (and curl as an
#      independent client for reference).
# Builds the bench preset, starts every server itself, stops them all on exit, and ends with a summary table.
# Throughput runs are repeated (ours and python interleaved, so passing load hits both alike); the summary
# shows the run with the median rate, and the spread.
#
# Environment knobs:
#   RUN_SECONDS=3            measured seconds per throughput run (after 0.5 s of warm-up)
#   REPEATS=3                runs per throughput configuration
#   IDLE_CONNECTIONS=10000   idle connections for the memory measurement
#   TRANSPORT_BENCH_BIN_DIR  run prebuilt binaries from this directory instead of building the bench preset
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS=${RUN_SECONDS:-3}
REPEATS=${REPEATS:-3}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
PYTHON=/usr/bin/python3  # the Debian interpreter has python3-websockets; the first python3 on PATH may not

if [[ -n ${TRANSPORT_BENCH_BIN_DIR:-} ]]; then
  BIN=$TRANSPORT_BENCH_BIN_DIR
else
  cmake --preset bench >/dev/null
  cmake --build --preset bench
  BIN=build/bench/bench
fi

# Every connection is a file descriptor on each side; 10,000 idle connections need more than the default 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d)
RESULTS=$WORK/results
: >"$RESULTS"
STARTED_PIDS=()
cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME COMMAND...: start a server in the background, wait for its JSON "ready" line and set
# SERVER_PID and SERVER_PORT.
start_server() {
  local name=$1
  shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SERVER_PID=$!
  STARTED_PIDS+=("$SERVER_PID")
  local tries
  for tries in $(seq 100); do
    if grep -q '"port"' "$WORK/$name.out" 2>/dev/null; then
      SERVER_PORT=$(grep -o '"port": *[0-9]*' "$WORK/$name.out" | grep -o '[0-9]*$')
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "error: $name did not start:" >&2
  cat "$WORK/$name.err" >&2
  exit 1
}

stop_server() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# check_alive NAME PID: report (and record) a server that died during a run.
check_alive() {
  if ! kill -0 "$2" 2>/dev/null; then
    local status=0
    wait "$2" 2>/dev/null || status=$?
    echo "  !! $1 server (pid $2) died during the run above: exit status $status" \
      "($( ((status > 128)) && kill -l $((status - 128)) || echo exited))" | tee -a "$WORK/crashes"
    tail -5 "$WORK/$1.err" 2>/dev/null | sed 's/^/     /' || true
    return 1
  fi
}

# run_client COMMAND...: run a load generator, keep its RESULT line, show everything else.
run_client() {
  local output status=0
  output=$("$@" 2>&1) || status=$?
  grep -v '^RESULT ' <<<"$output" || true
  grep '^RESULT ' <<<"$output" >>"$RESULTS" || true
  if ((status != 0)); then echo "  (load generator exited with status $status)"; fi
}

echo "== transport benchmarks: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -n)"
echo "   python3-websockets $($PYTHON -c 'import websockets; print(websockets.__version__)' 2>/dev/null || echo 'missing')"

SOCKET=$WORK/bench.sock
start_server ours "$BIN/transport_bench_server" --unix "$SOCKET"
OURS_PID=$SERVER_PID OURS_PORT=$SERVER_PORT
HAVE_PYTHON=0
if $PYTHON -c 'import websockets' 2>/dev/null; then
  start_server python "$PYTHON" bench/python_ws_echo_server.py
  PYTHON_PID=$SERVER_PID PYTHON_PORT=$SERVER_PORT HAVE_PYTHON=1
fi

restart_ours_if_dead() {
  if ! check_alive ours "$OURS_PID"; then
    start_server ours "$BIN/transport_bench_server" --unix "$SOCKET"
    OURS_PID=$SERVER_PID OURS_PORT=$SERVER_PORT
  fi
}

# A fresh server's first seconds are slower (python3-websockets' first run after start was 5-8x below its
# later ones here): one uncounted warm-up run against each server first.
"$BIN/ws_echo_bench" --url "ws://127.0.0.1:$OURS_PORT/ws" --seconds 1 --label warm-up >/dev/null 2>&1 || true
if ((HAVE_PYTHON)); then
  "$BIN/ws_echo_bench" --url "ws://127.0.0.1:$PYTHON_PORT/ws" --seconds 1 --label warm-up >/dev/null 2>&1 || true
fi

echo
echo "== 1. WebSocket echo on loopback (${RUN_SECONDS} s per run, ${REPEATS} runs each, one client thread)"
for connections in 1 1000; do
  for size in 64 1024; do
    for _ in $(seq "$REPEATS"); do
      run_client "$BIN/ws_echo_bench" --url "ws://127.0.0.1:$OURS_PORT/ws" --connections "$connections" \
        --size "$size" --seconds "$RUN_SECONDS" --label ours
      restart_ours_if_dead
      if ((HAVE_PYTHON)); then
        run_client "$BIN/ws_echo_bench" --url "ws://127.0.0.1:$PYTHON_PORT/ws" --connections "$connections" \
          --size "$size" --seconds "$RUN_SECONDS" --label python
        check_alive python "$PYTHON_PID" || true
      fi
    done
  done
done

echo
echo "== 3. HTTP GET /health over the Unix socket, keep-alive (${RUN_SECONDS} s per run, ${REPEATS} runs each)"
for clients in 1 16; do
  for _ in $(seq "$REPEATS"); do
    run_client "$BIN/http_unix_bench" --unix "$SOCKET" --clients "$clients" --seconds "$RUN_SECONDS"
    restart_ours_if_dead
  done
done
# An independent client for reference: one curl process, one kept-alive connection, sequential requests
# (curl gives no per-request latency here, only the mean rate).
CURL_REQUESTS=20000
if command -v curl >/dev/null; then
  curl_started=$(date +%s.%N)
  curl_connects=$(curl -s --unix-socket "$SOCKET" -o /dev/null -w '%{num_connects}\n' \
    "http://localhost/health?[1-$CURL_REQUESTS]" | awk '{ n += $1 } END { print n + 0 }') || curl_connects=failed
  curl_rate=$(awk -v s="$curl_started" -v e="$(date +%s.%N)" -v n="$CURL_REQUESTS" 'BEGIN { printf "%.0f", n / (e - s) }')
  echo "  curl, 1 connection, $CURL_REQUESTS sequential GET /health: $curl_rate req/s ($curl_connects connection(s) opened)"
  echo "RESULT http_unix_curl req_per_s=$curl_rate connects=$curl_connects" >>"$RESULTS"
fi
stop_server "$OURS_PID"
if ((HAVE_PYTHON)); then stop_server "$PYTHON_PID"; fi

echo
echo "== 2. Memory per idle WebSocket connection (${IDLE_CONNECTIONS} connections, fresh server each)"
start_server ours-idle "$BIN/transport_bench_server"
run_client "$BIN/idle_connections_bench" --url "ws://127.0.0.1:$SERVER_PORT/ws" --server-pid "$SERVER_PID" \
  --connections "$IDLE_CONNECTIONS" --label ours
check_alive ours-idle "$SERVER_PID" || true
stop_server "$SERVER_PID"
if ((HAVE_PYTHON)); then
  start_server python-idle "$PYTHON" bench/python_ws_echo_server.py
  run_client "$BIN/idle_connections_bench" --url "ws://127.0.0.1:$SERVER_PORT/ws" --server-pid "$SERVER_PID" \
    --connections "$IDLE_CONNECTIONS" --label python
  check_alive python-idle "$SERVER_PID" || true
  stop_server "$SERVER_PID"
fi

# ---- summary ----
field() { { grep -o " $1=[^ ]*" <<<"$2" || true; } | cut -d= -f2; }
# median_line PREFIX RATE_FIELD: of the RESULT lines starting with PREFIX, the one with the median rate.
median_line() {
  { grep "^$1" "$RESULTS" || true; } | awk -v f="$2" '{ for (i = 1; i <= NF; i++) if (index($i, f "=") == 1) print substr($i, length(f) + 2) "\t" $0 }' |
    sort -n | awk -F'\t' '{ line[NR] = $2 } END { if (NR) print line[int((NR + 1) / 2)] }'
}
# spread PREFIX RATE_FIELD: "min-max" of the rate over the runs.
spread() {
  { grep "^$1" "$RESULTS" || true; } | awk -v f="$2" '{ for (i = 1; i <= NF; i++) if (index($i, f "=") == 1) print substr($i, length(f) + 2) }' |
    sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%s-%s", v[1], v[NR]; else print "-" }'
}

echo
echo "================================ summary ================================"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (other load skews absolute numbers)"
echo
echo "WebSocket echo, loopback (msg/s = round trips/s; latency = one round trip; median of $REPEATS runs)"
printf '%-6s %-6s | %10s %9s %9s | %10s %9s %9s | %s\n' conns size "ours msg/s" "p50 us" "p99 us" \
  "py msg/s" "p50 us" "p99 us" "ours/python msg/s"
for connections in 1 1000; do
  for size in 64 1024; do
    ours=$(median_line "RESULT ws_echo label=ours connections=$connections size=$size " msgs_per_s)
    python=$(median_line "RESULT ws_echo label=python connections=$connections size=$size " msgs_per_s)
    ours_rate=$(field msgs_per_s "$ours") python_rate=$(field msgs_per_s "$python")
    ratio=$(awk -v a="${ours_rate:-0}" -v b="${python_rate:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "n/a" }')
    printf '%-6s %-6s | %10s %9s %9s | %10s %9s %9s | %s\n' "$connections" "${size}B" \
      "${ours_rate:-failed}" "$(field p50_us "$ours")" "$(field p99_us "$ours")" \
      "${python_rate:-n/a}" "$(field p50_us "$python")" "$(field p99_us "$python")" "$ratio"
  done
done
echo "spread of msg/s over the runs (min-max):"
for connections in 1 1000; do
  for size in 64 1024; do
    printf '  %-5s %-6s ours %-14s python %s\n' "$connections" "${size}B" \
      "$(spread "RESULT ws_echo label=ours connections=$connections size=$size " msgs_per_s)" \
      "$(spread "RESULT ws_echo label=python connections=$connections size=$size " msgs_per_s)"
  done
done
echo
echo "HTTP GET /health over the Unix socket (our server, our HttpClient, keep-alive; median of $REPEATS runs)"
printf '%-8s | %10s %9s %9s | %s\n' clients "req/s" "p50 us" "p99 us" "spread req/s"
for clients in 1 16; do
  line=$(median_line "RESULT http_unix clients=$clients " req_per_s)
  printf '%-8s | %10s %9s %9s | %s\n' "$clients" "$(field req_per_s "$line")" "$(field p50_us "$line")" \
    "$(field p99_us "$line")" "$(spread "RESULT http_unix clients=$clients " req_per_s)"
  [[ -n $line ]] || echo "         (no result: see the runs above)"
done
line=$(grep "^RESULT http_unix_curl " "$RESULTS" | head -1 || true)
[[ -z $line ]] || printf '%-8s | %10s %9s %9s | (curl as the client, one process, mean rate only)\n' "1 (curl)" \
  "$(field req_per_s "$line")" - -
echo
echo "Memory per idle WebSocket connection (server VmRSS delta / open connections; target <= 16 KiB for ours)"
printf '%-8s | %12s %10s %12s | %s\n' server "connections" "open" "KiB/conn" verdict
for label in ours python; do
  line=$(grep "^RESULT idle label=$label " "$RESULTS" | head -1 || true)
  [[ -n $line ]] || { printf '%-8s | %12s\n' "$label" "no result"; continue; }
  per=$(field kib_per_conn "$line")
  verdict=""
  if [[ $label == ours ]]; then
    verdict=$(awk -v k="$per" 'BEGIN { print (k <= 16 ? "PASS (<= 16 KiB)" : "FAIL (> 16 KiB)") }')
  fi
  printf '%-8s | %12s %10s %12s | %s\n' "$label" "$(field connections "$line")" "$(field open "$line")" "$per" \
    "$verdict"
done
if [[ -s $WORK/crashes ]]; then
  echo
  echo "Servers that died during the run:"
  cat "$WORK/crashes"
fi
echo "========================================================================="
