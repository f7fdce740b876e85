#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The README's second command: configure, build and run the whole test suite (Release preset, shared
# library): unit, API, header self-containment, CLI and installed-package tests.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cmake >/dev/null || { echo "cmake is missing: run scripts/quickstart.sh (or scripts/deps.sh) first" >&2; exit 1; }
cmake --workflow --preset release
