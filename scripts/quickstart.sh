#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The README's first command: install what is missing, build (Release), and run the main job.
# The main job (scripts/local_mesh.sh) is a real local mesh: a broker and two daemons with their own
# identities in a temporary directory, exchanging encrypted messages both ways.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
scripts/local_mesh.sh build/release
echo
echo "Built. The CLI is build/release/frontends/cli/claudemesh; run it with --help to see what it can do."
