#!/usr/bin/env bash
# Checks that single_include/coray.hpp is up to date, that the C++ sources are formatted as
# .clang-format says (scripts/check_format.sh), that the vcpkg port and the Conan
# recipe carry coray's version, and that README.md's Performance section is the newest full
# benchmark run's (bench/results/). Then, for each preset, builds coray's tests and examples and
# runs the whole suite with both start methods (fork and spawn): g++ (release), clang (with a
# short libFuzzer run of the codec), clang under AddressSanitizer + UndefinedBehaviorSanitizer
# (asan), clang under ThreadSanitizer (tsan), and clang against single_include/coray.hpp
# (single-header).
# Usage: scripts/test.sh [preset...]   (default: release clang asan tsan single-header)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

python3 scripts/amalgamate.py --check
scripts/check_format.sh
python3 scripts/check_packaging.py
python3 scripts/bench.py --check-readme

presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(release clang asan tsan single-header)
jobs=$(nproc)
for preset in "${presets[@]}"; do
  echo "== coray: preset ${preset}"
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" -j "${jobs}"
  # Tests mostly wait (on workers, a compiler, the scheduler): two per core (design.md).
  ctest --preset "${preset}" -j "$((jobs * 2))"
done
