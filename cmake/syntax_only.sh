#!/bin/sh
# The compiler launcher of the objects coray compiles and never links nor runs
# (tests/header_check, the README's snippets, the clang preset's benchmarks): runs the
# compile command it is given with -fsyntax-only, which parses and checks everything,
# template instantiations included, and emits no code, and writes an empty object where the
# build tool expects one.
out=
prev=
for arg in "$@"; do
  [ "$prev" = "-o" ] && out=$arg
  prev=$arg
done
"$@" -fsyntax-only || exit
[ -z "$out" ] || : >"$out"
