#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Daemon benchmarks. Builds the bench preset (Release) and runs:
#   1. daemon_bench: the daemon end to end in one process (a broker and two daemons on threads, an IPC client over
#      the Unix sockets): accept latency of POST /v1/send, IPC send -> SSE `message` event at idle and under load;
#      once with the outbox/inbox on synchronous=FULL (the default) and once with --no-fsync, for comparison
#   2. daemon_process_bench.py: the same daemon as a user meets it, one process per command on 127.0.0.1: a broker,
#      `claudemesh daemon up` for two users; `claudemesh send` spawn to exit (target p50 <= 10 ms), `peer list`
#      spawn to exit, the daemon's idle RSS (target <= 32 MiB), and recovery after kill -9 of a daemon until it is
#      connected and visible to the other peer again (target <= 5 s)
# Both clean up after themselves (temporary directories, only the processes they started).
#
# Environment knobs:
#   DAEMON_BENCH_BUILD_DIR  configure and build this directory with the bench preset's cache variables instead of
#                           `cmake --preset bench` (build/bench), e.g. to stay out of someone else's build
#   DAEMON_BENCH_BIN_DIR    skip building; run from this build tree root (bench/daemon_bench and
#                           frontends/{cli,daemon,broker}/... inside it), e.g. a sanitizer or debug build
#   DAEMON_BENCH_ARGS       extra arguments for both daemon_bench runs (--accepts N --idle N --rate R --seconds S)
#   SENDS=200               `claudemesh send` runs in daemon_process_bench.py
#   IDLE_SECONDS=10         how long the daemon idles before its RSS is read
#   ONLY="fsync no-fsync process"  run only these parts
set -euo pipefail
cd "$(dirname "$0")/.."

SENDS=${SENDS:-200}
IDLE_SECONDS=${IDLE_SECONDS:-10}
DAEMON_BENCH_ARGS=${DAEMON_BENCH_ARGS:-}
ONLY=${ONLY:-}
PYTHON=/usr/bin/python3

if [[ -n ${DAEMON_BENCH_BIN_DIR:-} ]]; then
  BUILD=$DAEMON_BENCH_BIN_DIR
else
  # The CLI's target is claudemesh-cli (its binary is named claudemesh; the target `claudemesh` is the library).
  targets=(daemon_bench claudemesh-cli claudemeshd claudemesh-broker)
  if [[ -n ${DAEMON_BENCH_BUILD_DIR:-} ]]; then
    BUILD=$DAEMON_BENCH_BUILD_DIR
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Release \
      -DCLAUDEMESH_BUILD_BENCH=ON -DCLAUDEMESH_BUILD_TESTS=OFF -DCLAUDEMESH_INSTALL=OFF >/dev/null
    cmake --build "$BUILD" --target "${targets[@]}"
  else
    BUILD=build/bench
    cmake --preset bench >/dev/null
    cmake --build --preset bench --target "${targets[@]}"
  fi
fi

wanted() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }
BENCH=$BUILD/bench/daemon_bench
needed=()
if wanted fsync || wanted no-fsync; then needed+=("$BENCH"); fi
if wanted process; then
  needed+=("$BUILD/frontends/cli/claudemesh" "$BUILD/frontends/daemon/claudemeshd"
    "$BUILD/frontends/broker/claudemesh-broker")
fi
for binary in "${needed[@]}"; do
  [[ -x $binary ]] || { echo "run_daemon_bench: $binary is missing" >&2; exit 1; }
done

trap 'exit 130' INT TERM
problems=()
# DAEMON_BENCH_ARGS is split on whitespace on purpose.
read -r -a extra <<<"$DAEMON_BENCH_ARGS"

echo "== daemon benchmarks: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), build $BUILD"
echo "   temporary directories under ${TMPDIR:-/tmp} ($(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}'); a tmpfs makes every fsync free)"

if wanted fsync; then
  echo
  echo "-- daemon_bench ${extra[*]} (synchronous=FULL)"
  "$BENCH" "${extra[@]}" || problems+=("daemon_bench exited with status $?")
fi
if wanted no-fsync; then
  echo
  echo "-- daemon_bench --no-fsync ${extra[*]}"
  "$BENCH" --no-fsync "${extra[@]}" || problems+=("daemon_bench --no-fsync exited with status $?")
fi
if wanted process; then
  echo
  echo "-- daemon_process_bench.py --sends $SENDS --idle-seconds $IDLE_SECONDS"
  "$PYTHON" bench/daemon_process_bench.py "$BUILD" --sends "$SENDS" --idle-seconds "$IDLE_SECONDS" ||
    problems+=("daemon_process_bench.py exited with status $?")
fi

echo
echo "== done (load average at the end $(cut -d' ' -f1-3 /proc/loadavg))"
if ((${#problems[@]})); then
  echo "problems:"
  printf '  %s\n' "${problems[@]}"
  exit 1
fi
