#!/usr/bin/env bash
# The long chaos run: SIGKILLs workers and actors at random instants (default 1000 kills)
# with both start methods, and fails on any hang, corrupted value or leaked byte.
# Usage: scripts/chaos.sh [kills]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
kills=${1:-1000}
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target chaos
for method in fork spawn; do
  echo "== chaos, start method ${method}, ${kills} kills"
  CORAY_START_METHOD=${method} ./build/release/tests/chaos --kills "${kills}" --seconds 600
done
