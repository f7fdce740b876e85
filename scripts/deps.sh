#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install every build and test dependency from Debian 12's archive (nothing else is downloaded).
# Installs only what is missing; uses sudo when not root. Usage: scripts/deps.sh [--with-fuzz]
set -euo pipefail
packages=(
  g++ cmake ninja-build pkg-config git
  libasio-dev libsodium-dev libssl-dev libsqlitecpp-dev libsqlite3-dev libpq-dev
  nlohmann-json3-dev node-llhttp libcli11-dev doctest-dev libbenchmark-dev
  python3 python3-nacl python3-websockets curl openssl ca-certificates
)
# Node and npm, for the test against Node's `ws` package (tests/integration/transport_node_ws_test.mjs), only
# when npm is absent: a nodejs from another source (e.g. nodesource) bundles npm, and Debian's npm conflicts with it.
command -v npm >/dev/null || packages+=(nodejs npm)
if [ "${1:-}" = "--with-fuzz" ]; then
  packages+=(clang-19 libclang-rt-19-dev clang-tidy-19)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
