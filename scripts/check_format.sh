#!/usr/bin/env bash
# Fails when a C++ source under include/, tests/, examples/ or bench/ is not formatted as
# .clang-format says. clang-format 14 is the one these machines have; another version may
# format differently. To fix: scripts/check_format.sh --fix
set -euo pipefail
cd "$(dirname "$0")/.."
format=$(command -v clang-format-14 || command -v clang-format)
mapfile -t files < <(git ls-files -- include tests examples bench | grep -E '\.(hpp|cpp)$')
if [ "${1:-}" = "--fix" ]; then
  exec "$format" -i "${files[@]}"
fi
if ! "$format" --dry-run -Werror "${files[@]}"; then
  echo "coray: sources are not formatted; run scripts/check_format.sh --fix" >&2
  exit 1
fi
