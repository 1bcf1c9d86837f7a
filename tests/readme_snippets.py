#!/usr/bin/env python3
"""Extracts README.md's ```cpp blocks into one source file each, so the build compiles them.

A block whose fence follows a `<!-- fragment -->` line is skipped: it is part of a program,
not one. The first block of the "Quick start" section is written as quick_start.cpp (the
tests run it); the others as block_<n>.cpp, numbered in order. Each file starts with a #line
directive, so the compiler's messages point into README.md. Files are rewritten only when
their text changes, and stale ones are removed, so unchanged blocks are not rebuilt.

Usage: tests/readme_snippets.py README.md OUTPUT_DIR
Prints the names of the files written, one a line.
"""

import pathlib
import re
import sys

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
FRAGMENT = "<!-- fragment -->"


def blocks(lines):
    """Yields (first line number, code, section) for each ```cpp block not marked fragment."""
    section = ""
    previous = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = FENCE.match(line)
        if not fence:
            previous = line
            i += 1
            continue
        marker, language = fence.group(2), fence.group(3)
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(marker):
            end += 1
        if language in ("cpp", "c++") and previous.strip() != FRAGMENT:
            yield i + 2, "\n".join(lines[i + 1:end]) + "\n", section
        previous = ""
        i = end + 1


def main():
    if len(sys.argv) != 3:
        print("usage: tests/readme_snippets.py README.md OUTPUT_DIR", file=sys.stderr)
        return 2
    readme = pathlib.Path(sys.argv[1]).resolve()
    out_dir = pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    quick_start_seen = False
    lines = readme.read_text(encoding="utf-8").splitlines()
    for number, code, section in blocks(lines):
        if section == "Quick start" and not quick_start_seen:
            name = "quick_start.cpp"
            quick_start_seen = True
        else:
            name = f"block_{len(written) + 1 - quick_start_seen}.cpp"
        text = f'#line {number} "{readme.as_posix()}"\n{code}'
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(name)
    for stale in out_dir.glob("*.cpp"):
        if stale.name not in written:
            stale.unlink()
    if not quick_start_seen:
        print(f"{readme}: no ```cpp block in the Quick start section", file=sys.stderr)
        return 1
    print("\n".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
