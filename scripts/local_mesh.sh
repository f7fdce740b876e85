#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job: a real local mesh on the embedded default. In a temporary directory it starts a broker
# (SQLite store) and two daemons with their own identities ("alice" and "bob"), creates a mesh, invites
# and joins, sends encrypted messages both ways, shows `peer list` and both inboxes, checks that the
# broker's files never held a plaintext body, and shuts everything down.
#
# Usage: scripts/local_mesh.sh [build-dir]   (default build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
cli="$build/frontends/cli/claudemesh"
daemon="$build/frontends/daemon/claudemeshd"
broker="$build/frontends/broker/claudemesh-broker"
for binary in "$cli" "$daemon" "$broker"; do
  [[ -x "$binary" ]] || { echo "local_mesh: $binary is missing; build first (cmake --build --preset release)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/claudemesh-mesh-XXXXXX)"
broker_pid=""
alice=("$cli" --home "$work/alice")
bob=("$cli" --home "$work/bob")
cleanup() {
  "${alice[@]}" daemon down >/dev/null 2>&1 || true
  "${bob[@]}" daemon down >/dev/null 2>&1 || true
  if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export CLAUDEMESH_DAEMON_BIN="$daemon"  # `daemon up` starts this build's daemon
unset CLAUDEMESH_HOME CLAUDEMESH_DAEMON_DIR

step() { echo; echo "== $*"; }
json_field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

step "start a broker on 127.0.0.1 (SQLite in $work/broker)"
"$broker" --listen 127.0.0.1:0 --data-dir "$work/broker" >"$work/broker.log" 2>&1 &
broker_pid=$!
port=""
for _ in $(seq 1 200); do
  port="$(sed -n 's/.*"event":"listening".*"port":\([0-9]*\).*/\1/p' "$work/broker.log" | head -n1)"
  [[ -n "$port" ]] && break
  sleep 0.05
done
[[ -n "$port" ]] || { echo "local_mesh: the broker did not start:" >&2; cat "$work/broker.log" >&2; exit 1; }
echo "broker listening on 127.0.0.1:$port (pid $broker_pid)"

step "alice creates the mesh \"demo\""
"${alice[@]}" mesh create demo --name alice --broker "http://127.0.0.1:$port"

step "alice invites, bob joins with a key of his own"
url="$("${alice[@]}" --json invite | json_field "['url']")"
echo "invite: $url"
"${bob[@]}" join "$url" --name bob

step "each starts a daemon (Unix socket only; logs in <home>/daemon/daemon.log)"
"${alice[@]}" daemon up --no-tcp
"${bob[@]}" daemon up --no-tcp
for who in alice bob; do
  home=("$cli" --home "$work/$who")
  for _ in $(seq 1 200); do
    "${home[@]}" --json daemon status 2>/dev/null | grep -q '"broker": *"open"' && break
    sleep 0.05
  done
done

step "alice -> bob, and bob -> alice (sealed with crypto_box before they leave the daemon)"
"${alice[@]}" send bob "hello bob, build 42 is green"
"${bob[@]}" send alice "thanks alice, deploying now"
for _ in $(seq 1 200); do
  a="$("${alice[@]}" --json inbox | grep -c '"body"' || true)"
  b="$("${bob[@]}" --json inbox | grep -c '"body"' || true)"
  [[ "$a" -ge 1 && "$b" -ge 1 ]] && break
  sleep 0.05
done

step "alice: peer list"
"${alice[@]}" peer list --all

step "bob: inbox"
"${bob[@]}" inbox

step "alice: inbox"
"${alice[@]}" inbox

step "the broker stored ciphertext only"
if grep -rq "build 42 is green" "$work/broker"; then
  echo "local_mesh: the plaintext body is in the broker's files" >&2
  exit 1
fi
echo "no plaintext body in $work/broker"

step "shut down"
"${alice[@]}" daemon down
"${bob[@]}" daemon down
kill -TERM "$broker_pid"
wait "$broker_pid" || true
broker_pid=""
echo "done: a broker, two daemons, a mesh, two encrypted messages."
