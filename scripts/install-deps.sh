#!/usr/bin/env bash
# Installs what coray's build, tests and examples need on Debian 12 (bookworm), if missing.
# As root it runs apt-get; otherwise it prints the exact command to run and stops.
set -euo pipefail

# libcpp-httplib-dev and nlohmann-json3-dev: the dashboard (found through pkg-config).
# chromium, chromium-driver, python3-selenium and fonts-liberation (the fonts Chromium
# recommends): the dashboard's test in a real browser
# (tests/browser, run in the release preset).
# libopenmpi-dev and openmpi-bin: cluster mode's tests (tests/cluster, run in the release
# preset under mpiexec; iproute2 for the one whose nodes sit in a network namespace).
# Programs that do not use <coray/mpi.hpp> never need MPI.
packages=(cmake ninja-build g++ clang python3 libboost1.81-dev libfmt-dev libconcurrentqueue-dev doctest-dev libclang-rt-14-dev clang-format-14 pkg-config libcpp-httplib-dev nlohmann-json3-dev chromium chromium-driver python3-selenium fonts-liberation libopenmpi-dev openmpi-bin iproute2)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "coray: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "coray: missing packages. Run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
