#!/usr/bin/env bash
# Builds and runs the examples: the seeds' programs written with coray.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release -DCORAY_BUILD_TESTS=OFF -DCORAY_BUILD_BENCH=OFF >/dev/null
cmake --build --preset release -j "$(nproc)" --target \
  example_hello example_put_once_read_many example_wait_loop example_nested_tasks example_quick_start
for ex in hello put_once_read_many wait_loop nested_tasks quick_start; do
  echo "== examples/${ex}.cpp"
  ./build/release/examples/"${ex}"
done
