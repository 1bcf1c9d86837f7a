#!/usr/bin/env python3
"""Writes single_include/coray.hpp: every header under include/coray/ in one file.

Starts from coray/coray.hpp and inlines each `#include <coray/...>` where it first appears,
so every header lands after the headers it includes; later includes of the same header are
dropped, as #pragma once would. Headers that coray.hpp does not reach are appended, so the
file holds all of include/ but the dashboard and cluster mode (APART). System and third-party includes are left as they are.
The output depends only on the headers: no dates, no paths.

Usage: scripts/amalgamate.py [--output PATH] [--check]
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
INCLUDE_DIR = ROOT / "include"
ENTRY = "coray/coray.hpp"
DEFAULT_OUTPUT = ROOT / "single_include" / "coray.hpp"

CORAY_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](coray/[^>"]+)[>"]')
PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\b")
CONDITIONAL_OPEN = re.compile(r"^\s*#\s*if")
CONDITIONAL_CLOSE = re.compile(r"^\s*#\s*endif\b")
COMPILED_MODE_OPEN = re.compile(r"^\s*#\s*ifndef\s+CORAY_COMPILED_LIB\b")


class AmalgamateError(Exception):
    pass


def version():
    text = (INCLUDE_DIR / "coray" / "version.hpp").read_text(encoding="utf-8")
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        match = re.search(rf"#define CORAY_VERSION_{part} (\d+)", text)
        if not match:
            raise AmalgamateError(f"include/coray/version.hpp: no CORAY_VERSION_{part}")
        parts.append(match.group(1))
    return ".".join(parts)


class Amalgamation:
    def __init__(self):
        self.seen = set()
        self.lines = []

    def inline(self, name):
        """Appends header `name` (e.g. "coray/task.hpp") once, its coray includes inlined."""
        if name in self.seen:
            return
        self.seen.add(name)
        path = INCLUDE_DIR / name
        if not path.is_file():
            raise AmalgamateError(f"no such header: include/{name}")
        self.lines.append(f"// begin <{name}>")
        depth = 0  # #if nesting: a header inlined under a condition would vanish with it
        compiled_block = False  # inside `#ifndef CORAY_COMPILED_LIB`
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PRAGMA_ONCE.match(line):
                continue
            if COMPILED_MODE_OPEN.match(line):
                # entry.hpp's definitions, left out in compiled mode: the single header is
                # header-only, so they are inlined here unconditionally.
                compiled_block = True
                continue
            if compiled_block and CONDITIONAL_CLOSE.match(line):
                compiled_block = False
                continue
            if CONDITIONAL_OPEN.match(line):
                depth += 1
            elif CONDITIONAL_CLOSE.match(line):
                depth -= 1
            match = CORAY_INCLUDE.match(line)
            if not match:
                self.lines.append(line)
                continue
            if depth > 0:
                raise AmalgamateError(
                    f"include/{name}:{number}: <{match.group(1)}> is included under #if; "
                    "the amalgamation inlines each header once, unconditionally")
            if match.group(1) in self.seen:
                self.lines.append(f"// #include <{match.group(1)}>: inlined above")
            else:
                self.inline(match.group(1))
        self.lines.append(f"// end <{name}>")


# The dashboard includes cpp-httplib and nlohmann::json, and cluster mode MPI: they stay out
# of the single header, whose users need none of them (they take <coray/dashboard.hpp> or
# <coray/mpi.hpp> from include/ to use them).
APART = ("coray/dashboard.hpp", "coray/detail/dashboard/", "coray/mpi.hpp", "coray/detail/cluster/")


def amalgamate():
    headers = sorted(p.relative_to(INCLUDE_DIR).as_posix()
                     for p in (INCLUDE_DIR / "coray").rglob("*.hpp"))
    headers = [name for name in headers if not name.startswith(APART)]
    out = Amalgamation()
    out.inline(ENTRY)
    for name in headers:
        out.inline(name)
    banner = [
        f"/// coray {version()}, single-header edition.",
        "/// generated — do not edit: made by scripts/amalgamate.py from include/coray/;",
        "/// change the headers there and run the script again.",
        "/// SPDX-License-Identifier: MIT",
        "#pragma once",
        "",
        "// Header-only: compiled mode (CORAY_COMPILED_LIB) builds from include/ and links",
        "// coray::coray_compiled.",
        "#ifdef CORAY_COMPILED_LIB",
        "#error \"single_include/coray.hpp is header-only: compiled mode uses include/ and coray::coray_compiled\"",
        "#endif",
        "",
    ]
    return "\n".join(banner + out.lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="where to write (default: single_include/coray.hpp)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail if the output file is not up to date")
    args = parser.parse_args()
    try:
        text = amalgamate()
    except AmalgamateError as e:
        print(f"amalgamate.py: {e}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
        if current != text:
            if args.output == DEFAULT_OUTPUT:
                print("single_include/coray.hpp is stale: run scripts/amalgamate.py", file=sys.stderr)
            else:
                print(f"{args.output} is stale: run scripts/amalgamate.py --output {args.output}",
                      file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
