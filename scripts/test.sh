#!/usr/bin/env bash
# Builds coray's tests and examples and runs the whole suite, with both start methods (fork
# and spawn), for each preset: g++ (release), clang, and g++ under AddressSanitizer +
# UndefinedBehaviorSanitizer (asan).
# Usage: scripts/test.sh [preset...]   (default: release clang asan)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(release clang asan)
jobs=$(nproc)
for preset in "${presets[@]}"; do
  echo "== coray: preset ${preset}"
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j "${jobs}"
  ctest --preset "${preset}" -j "${jobs}"
done
