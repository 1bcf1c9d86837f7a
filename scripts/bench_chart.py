#!/usr/bin/env python3
"""Draws a results file of scripts/bench.py as an SVG chart (no plotting library needed).

    scripts/bench_chart.py bench/results/<date>-<host>.json docs/performance.svg

Left: Ray's microbenchmark rows, coray against Ray's published figure, calls (or GB) per
second on a log scale. Right: seed 004's workloads with 2 workers, each variant's time as a
fraction of the serial time (shorter is faster).
"""
from __future__ import annotations

import json
import math
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench import NOT_RAYS_OPERATION, RAY_ROWS, WORKLOADS, fmt  # noqa: E402

CORAY, RAY = "#1f6feb", "#b0b7c3"
VARIANTS = [("serial", "serial", "#b0b7c3"), ("threads", "std::thread", "#6e7781"),
            ("mp", "multiprocessing-style", "#d4a72c"), ("coray", "coray", CORAY)]


def text(x, y, s, size=11, anchor="start", weight="normal", fill="#24292f"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>')


def rect(x, y, w, h, fill):
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{h:.1f}" fill="{fill}"/>'


def micro_panel(m: dict, ref: dict, x0: float, y0: float, width: float) -> tuple[list[str], float]:
    rows = [r for r in RAY_ROWS if r in m and r in ref and r not in NOT_RAYS_OPERATION]
    out = [text(x0, y0, "Ray's microbenchmark rows: coray vs Ray (log scale)", 13, weight="bold")]
    label_w, bar_w = 250, width - 250 - 70
    values = [m[r]["value"] for r in rows] + [ref[r]["value"] for r in rows]
    lo = math.floor(math.log10(min(values)))
    hi = math.ceil(math.log10(max(values)))
    scale = lambda v: bar_w * (math.log10(v) - lo) / (hi - lo)
    y = y0 + 22
    for d in range(lo, hi + 1):
        gx = x0 + label_w + scale(10 ** d)
        out.append(f'<line x1="{gx:.1f}" y1="{y - 4}" x2="{gx:.1f}" y2="{y + len(rows) * 30}" stroke="#eaeef2"/>')
        out.append(text(gx, y + len(rows) * 30 + 12, f"1e{d}", 9, "middle", fill="#57606a"))
    for r in rows:
        c, rv = m[r]["value"], ref[r]["value"]
        out.append(text(x0 + label_w - 6, y + 13, r, 10, "end"))
        out.append(rect(x0 + label_w, y + 2, scale(c), 11, CORAY))
        out.append(text(x0 + label_w + scale(c) + 4, y + 11, fmt(c, m[r]["unit"]), 9))
        out.append(rect(x0 + label_w, y + 14, scale(rv), 9, RAY))
        out.append(text(x0 + label_w + scale(rv) + 4, y + 22, f"Ray {fmt(rv, m[r]['unit'])}", 9, fill="#57606a"))
        y += 30
    y += 24
    out.append(rect(x0 + label_w, y - 9, 10, 10, CORAY) + text(x0 + label_w + 14, y, "coray (this run)", 10))
    out.append(rect(x0 + label_w + 130, y - 9, 10, 10, RAY) +
               text(x0 + label_w + 144, y, "Ray's published release figures", 10))
    return out, y


def workload_panel(m: dict, x0: float, y0: float, width: float) -> tuple[list[str], float]:
    out = [text(x0, y0, "Seed workloads, 2 workers: time relative to serial", 13, weight="bold")]
    label_w = 150
    keys = [(k, t) for k, t in WORKLOADS if f"{k}_serial" in m]
    ratios = [m.get(f"{k}_{v}", {}).get("value", 0) / m[f"{k}_serial"]["value"] for k, _ in keys for v, _, _ in VARIANTS]
    top = max([1.0] + ratios)
    bar_w = width - label_w - 60
    y = y0 + 22
    for k, title in keys:
        out.append(text(x0, y + 12, title.split(":")[0], 11, weight="bold"))
        y += 18
        for v, name, colour in VARIANTS:
            x = m.get(f"{k}_{v}")
            if not x:
                continue
            r = x["value"] / m[f"{k}_serial"]["value"]
            out.append(text(x0 + label_w - 6, y + 10, name, 10, "end"))
            out.append(rect(x0 + label_w, y + 1, bar_w * r / top, 11, colour))
            out.append(text(x0 + label_w + bar_w * r / top + 4, y + 10, f"{fmt(x['value'], 's')} ({r:.2f})", 9))
            y += 15
        y += 8
    return out, y


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    result = json.loads(Path(sys.argv[1]).read_text())
    ref = json.loads((ROOT / "bench" / "ray_reference.json").read_text())["metrics"]
    m, mach, run = result["metrics"], result["machine"], result["run"]
    width = 1100
    left, hl = micro_panel(m, ref, 20, 50, 620)
    right, hr = workload_panel(m, 670, 50, 410)
    height = max(hl, hr) + 20
    caption = (f"coray {run['commit']}, {run['date']} ({run['mode']} run): {mach['cpu']}, "
               f"{mach['cores']} cores, {mach['compiler']}")
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
           f'viewBox="0 0 {width} {height:.0f}" font-family="Helvetica, Arial, sans-serif">',
           rect(0, 0, width, height, "#ffffff"), text(20, 24, caption, 11, fill="#57606a")]
    svg += left + right + ["</svg>"]
    Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
    Path(sys.argv[2]).write_text("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
