#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The README's first command: install what is missing, build (Release), and run the main job.
# The main job today creates two identities in a scratch home and shows them; it grows into a local
# mesh (broker + peers exchanging encrypted messages) as the broker and daemon land.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
cli=build/release/frontends/cli/claudemesh
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
echo
echo "== claudemesh keygen (scratch home: $home)"
"$cli" --home "$home" keygen
echo
echo "== claudemesh identity show --json"
"$cli" --home "$home" --json identity show
echo
echo "Built. The CLI is $cli; run '$cli --help' to see what it can do."
