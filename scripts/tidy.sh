#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run clang-tidy-19 over the library and frontends, using the debug preset's compile_commands.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset debug >/dev/null
cmake --build --preset debug >/dev/null   # generated headers (version.hpp) must exist
mapfile -t files < <(git ls-files 'src/*.cpp' 'frontends/*.cpp')
jobs=$(nproc)
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -n 4 clang-tidy-19 -p build/debug --quiet 2>/dev/null
echo "clang-tidy: ${#files[@]} files clean"
