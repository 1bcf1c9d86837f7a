#!/usr/bin/env bash
# Checks that single_include/coray.hpp is up to date, that the C++ sources are formatted as
# .clang-format says (scripts/check_format.sh), that the vcpkg port and the Conan
# recipe carry coray's version, and that README.md's Performance section is the newest full
# benchmark run's (bench/results/). Then, for each preset, builds coray's tests and examples and
# runs the whole suite with both start methods (fork and spawn): g++ (release), clang (with a
# short libFuzzer run of the codec), g++ under AddressSanitizer + UndefinedBehaviorSanitizer
# (asan), g++ under ThreadSanitizer (tsan), and g++ against single_include/coray.hpp
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
# A preset's tests run while the next preset builds, the build at a lower priority: the tests
# leave cores idle while they wait, and the build takes them (design.md, "Tests run while
# the next preset builds"). One preset's tests at a time; each one's output is printed whole
# when it ends, and the first failure ends the run.
logs=$(mktemp -d)
testing_pid=""
testing_preset=""
finish_tests() {
  [ -n "${testing_pid}" ] || return 0
  local rc=0
  wait "${testing_pid}" || rc=$?
  echo "== coray: tests of preset ${testing_preset}"
  cat "${logs}/${testing_preset}.log"
  testing_pid=""
  if [ "${rc}" -ne 0 ]; then
    echo "== coray: the tests of preset ${testing_preset} failed (${rc})"
    exit "${rc}"
  fi
}
stop_tests() {
  if [ -n "${testing_pid}" ]; then
    kill -- "-${testing_pid}" 2>/dev/null || kill "${testing_pid}" 2>/dev/null || true
    wait "${testing_pid}" 2>/dev/null || true
    echo "== coray: tests of preset ${testing_preset}, stopped"
    cat "${logs}/${testing_preset}.log"
  fi
  rm -rf "${logs}"
}
trap stop_tests EXIT
for preset in "${presets[@]}"; do
  echo "== coray: preset ${preset}"
  cmake --preset "${preset}" >/dev/null
  if [ -n "${testing_pid}" ]; then
    nice -n 10 cmake --build --preset "${preset}" -j "${jobs}"
  else
    cmake --build --preset "${preset}" -j "${jobs}"
  fi
  finish_tests
  # Tests mostly wait (on workers, a compiler, the scheduler): two per core (design.md).
  set -m
  ctest --preset "${preset}" -j "$((jobs * 2))" > "${logs}/${preset}.log" 2>&1 &
  testing_pid=$!
  set +m
  testing_preset=${preset}
done
finish_tests
