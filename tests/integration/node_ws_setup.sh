#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs Node's `ws` package (npm, major version 8) into DIR once, for transport_node_ws_test.mjs.
# Usage: node_ws_setup.sh DIR [-- COMMAND ARGS...]
#   Without a command: exit 0 once DIR/node_modules/ws is there, 77 if it cannot be installed.
#   With a command: install (or reuse) ws, then exec the command; 77 (CTest's SKIP_RETURN_CODE) with a
#   message if ws cannot be installed, so a machine without the npm registry skips instead of failing.
# The install goes to a temporary sibling first and is moved into place whole, so an interrupted or
# concurrent run never leaves a half-installed DIR behind.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [-- COMMAND ARGS...]" >&2; exit 2; }
dir=$1
shift
if [ $# -gt 0 ]; then
  [ "$1" = "--" ] || { echo "usage: $0 DIR [-- COMMAND ARGS...]" >&2; exit 2; }
  shift
fi
skip=77

if [ ! -f "$dir/node_modules/ws/package.json" ]; then
  npm=${NPM:-npm}  # CTest passes the npm found at configure time
  if ! command -v "$npm" >/dev/null; then
    echo "SKIP: npm is not installed, so Node's ws package cannot be installed" >&2
    exit $skip
  fi
  mkdir -p "$(dirname "$dir")"
  tmp=$(mktemp -d "$dir.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "node_ws_setup: npm install ws@8 into $dir" >&2
  if ! timeout 180 "$npm" install --no-audit --no-fund --no-package-lock --loglevel=error \
         --fetch-retries=1 --fetch-timeout=30000 --prefix "$tmp" ws@8 >&2; then
    echo "SKIP: 'npm install ws@8' failed (is the npm registry reachable?)" >&2
    exit $skip
  fi
  if [ ! -f "$tmp/node_modules/ws/package.json" ]; then
    echo "SKIP: 'npm install ws@8' finished but installed no ws package" >&2
    exit $skip
  fi
  # A concurrent run may have won the race; then its copy is kept and ours is dropped by the trap.
  mv -T "$tmp" "$dir" 2>/dev/null || true
fi
[ -f "$dir/node_modules/ws/package.json" ] || { echo "SKIP: ws is not in $dir" >&2; exit $skip; }
if [ $# -gt 0 ]; then
  exec "$@"
fi
