#!/usr/bin/env python3
"""Runs coray's benchmark suite and writes its results.

    scripts/bench.py            full run (about 6 minutes on 2 cores, plus the build)
    scripts/bench.py --quick    quick run (under 2 minutes)

Builds bench/ in Release (build/bench), runs every program in bench/ with --json, times
the compiler on examples/hello.cpp (the part named compile_time), and writes
bench/results/<date>-<host>.json (a quick run: <date>-<host>-quick.json) with
  {"machine": {...}, "run": {...}, "metrics": {"<name>": {"value", "unit",
   "higher_is_better", "note"}}}
and the same figures as a Markdown table beside it (.md): coray, the best peer, Ray's
published figure with its source (bench/ray_reference.json), this machine's limit, the
ratios, and the targets coray is held to.

    scripts/bench.py --report FILE.json      rewrite FILE.md from FILE.json
    scripts/bench.py --update-readme [FILE]  put FILE's table (default: the newest full run)
                                             into README.md's Performance section and draw
                                             docs/performance.svg
    scripts/bench.py --check-readme          fail if README.md's Performance section is not
                                             the table of the newest full run
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
README = ROOT / "README.md"
CHART = ROOT / "docs" / "performance.svg"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# The order programs run in: the machine's limits first, then the runtime, then workloads.
ORDER = ["machine_limits", "core_bench", "actor_bench", "pool_bench", "sync_bench",
         "workload_convolution", "workload_prefix_count", "workload_model", "workload_tiny_tasks"]

# What the issues hold coray to: name -> (comparison, bound).
TARGETS = {
    "single_client_tasks_sync": (">=", 100_000),
    "single_client_tasks_async": (">=", 500_000),
    "single_client_put_calls": (">=", 1_000_000),
    "single_client_get_calls": (">=", 2_000_000),
    "put_800mb_vs_memcpy": (">=", 0.8),
    "single_client_get_object_containing_10k_refs": (">=", 1340),
    "task_returning_ref_vs_value": (">=", 0.5),
    "get_view_72mb": ("<=", 5000),
    "runtime_start_to_first_result": ("<=", 20),
    "idle_worker_rss": ("<=", 5),
    "1_1_actor_calls_sync": (">=", 200_000),
    "1_1_actor_calls_async": (">=", 1_000_000),
    "semaphore_acquire_release_ns": ("<=", 100),
    "event_set_ns": ("<=", 100),
    "event_is_set_ns": ("<=", 100),
    "event_set_clear_ns": ("<=", 100),
    **{f"{w}_coray_speedup_vs_serial": (">=", 1.7) for w in ("convolution", "prefix_count", "model")},
    **{f"{w}_coray_vs_threads": ("<=", 1.15) for w in ("convolution", "prefix_count", "model")},
    **{f"{w}_coray_speedup_vs_mp": (">=", 3) for w in ("convolution", "prefix_count")},
    "hello_compile_header_only": ("<=", 8),
    "hello_compile_compiled_mode": ("<=", 3),
    "cross_node_sync_task_vs_raw_mpi": ("<=", 3),
    "cross_node_async_tasks": (">=", 200_000),
    **{f"cross_node_object_{m}MiB_vs_raw_mpi": (">=", 0.8) for m in (8, 64, 256)},
}

# The programs that run as ranks of this machine under mpiexec, the TCP transport forced (the
# network path, not shared memory), as tests/cluster does, and the rank counts each runs with:
# cluster_bench on 3; cluster_workloads on 1 and on 3, whose times give its speed-ups.
MPIEXEC = "mpiexec"
CLUSTER = {"cluster_bench": [3], "cluster_workloads": [1, 3]}
CLUSTER_ENV = {"OMPI_MCA_btl": "tcp,self", "OMPI_MCA_rmaps_base_oversubscribe": "1",
               "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}

RAY_ROWS = ["single_client_tasks_sync", "single_client_tasks_async", "multi_client_tasks_async",
            "1_1_actor_calls_sync", "1_1_actor_calls_async", "n_n_actor_calls_async",
            "single_client_put_calls", "single_client_get_calls", "single_client_put_gigabytes",
            "single_client_wait_1k_refs", "single_client_get_object_containing_10k_refs"]

# A metric whose measurement is not Ray's operation carries "rays_operation": false (its note
# says why): shown, never divided by Ray's figure.

WORKLOADS = [("convolution", "Numerical: 3000×3000 convolution, 10 iterations"),
             ("prefix_count", "Stateful: streaming prefix count, 10 documents per worker"),
             ("model", "Expensive initialisation: 100 MB model, 10 batches")]


# ---- running ------------------------------------------------------------------------------

def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def build(build_dir: Path) -> None:
    sh(["cmake", "-S", ".", "-B", str(build_dir), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
        "-DCORAY_BUILD_TESTS=OFF", "-DCORAY_BUILD_EXAMPLES=OFF", "-DCORAY_PACKAGE_TESTS=OFF"],
       stdout=subprocess.DEVNULL)
    sh(["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 1)])


def programs() -> list[str]:
    found = sorted(p.stem for p in BENCH.glob("*.cpp"))
    return [p for p in ORDER if p in found] + [p for p in found if p not in ORDER] + ["compile_time"]


def compile_time(build_dir: Path, quick: bool) -> dict[str, dict]:
    """The compiler's CPU time (user + system) on examples/hello.cpp at -O2, header-only and in
    compiled mode (CORAY_COMPILED_LIB: the runtime's own code is declared, not defined), the
    median of three runs each (one in a quick run), alternating; with g++, also its own count
    of the memory it allocated, which does not depend on the machine's speed."""
    cache = read(str(build_dir / "CMakeCache.txt"))
    cxx = re.search(r"CMAKE_CXX_COMPILER:\w+=(.*)", cache)
    compiler = cxx.group(1) if cxx else "c++"
    flags = ["-std=c++20", "-O2", "-DNDEBUG", "-I", str(ROOT / "include"),
             "-isystem", "/usr/include/concurrentqueue", "-c", str(ROOT / "examples" / "hello.cpp")]
    modes = {"hello_compile_header_only": [], "hello_compile_compiled_mode": ["-DCORAY_COMPILED_LIB"]}
    times: dict[str, list[float]] = {k: [] for k in modes}
    allocated: dict[str, float] = {}
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    gcc = "Free Software Foundation" in version  # g++ (clang's -ftime-report differs)
    who = version.splitlines()[0] if version else Path(compiler).name
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(1 if quick else 3):
            for name, extra in modes.items():
                before = os.times()
                subprocess.run([compiler, *flags, *extra, "-o", str(Path(tmp) / "hello.o")],
                               cwd=ROOT, capture_output=True, text=True, check=True)
                after = os.times()
                times[name].append((after.children_user - before.children_user)
                                   + (after.children_system - before.children_system))
        # Apart from the timed runs: -ftime-report's own timers more than double the time.
        for name, extra in modes.items() if gcc else ():
            out = subprocess.run([compiler, *flags, *extra, "-o", str(Path(tmp) / "hello.o"),
                                  "-ftime-report"], cwd=ROOT, capture_output=True, text=True,
                                 check=True)
            total = re.search(r"TOTAL\s*:.*?(\d+)M\s*$", out.stderr, re.M)
            if total:
                allocated[name] = float(total.group(1))
    metrics = {}
    for name, ts in times.items():
        note = f"{who}, -O2, CPU seconds (user + system), median of {len(ts)}"
        metrics[name] = {"value": round(sorted(ts)[len(ts) // 2], 2), "unit": "s",
                         "higher_is_better": False,
                         "note": note}
        if name in allocated:
            metrics[name + "_allocated"] = {"value": allocated[name], "unit": "MB",
                                            "higher_is_better": False,
                                            "note": "g++'s own count of the memory it allocated "
                                                    "(-ftime-report)"}
    return metrics


def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine(build_dir: Path) -> dict:
    cpu = re.search(r"model name\s*:\s*(.*)", read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+)", read("/proc/meminfo"))
    cache = read(str(build_dir / "CMakeCache.txt"))
    cxx = re.search(r"CMAKE_CXX_COMPILER:\w+=(.*)", cache)
    compiler = ""
    if cxx:
        out = subprocess.run([cxx.group(1), "--version"], capture_output=True, text=True)
        compiler = out.stdout.splitlines()[0] if out.stdout else cxx.group(1)
    return {
        "host": socket.gethostname(),
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "kernel": platform.release(),
        "os": (re.search(r'PRETTY_NAME="(.*)"', read("/etc/os-release")) or [None, ""])[1],
        "compiler": compiler,
    }


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    # Changes to what a run writes (results, README, chart) do not make the code dirty.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)bench/results", ":(exclude)README.md",
                            ":(exclude)docs/performance.svg"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"


def run(args: argparse.Namespace) -> Path:
    build_dir = Path(args.build_dir).resolve()
    if not args.no_build:
        build(build_dir)
    names = args.only or programs()
    metrics: dict[str, dict] = {}
    failed = []
    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name == "compile_time":
                print(f"== {name}", flush=True)
                t0 = time.time()
                try:
                    for key, m in compile_time(build_dir, args.quick).items():
                        metrics[key] = dict(m, program=name)
                except (subprocess.CalledProcessError, OSError) as e:
                    print(f"   {e}", file=sys.stderr)
                    failed.append(name)
                print(f"   ({time.time() - t0:.1f} s)", flush=True)
                continue
            exe = build_dir / "bench" / name
            launchers, env = [[]], None  # one run, as it is
            if name in CLUSTER:
                if not exe.exists() or not shutil.which(MPIEXEC):
                    print(f"== {name}: skipped (no MPI: built only with coray::mpi)", flush=True)
                    continue
                launchers = [[MPIEXEC, "-n", str(n)] for n in CLUSTER[name]]
                env = dict(os.environ, **CLUSTER_ENV)
            print(f"== {name}", flush=True)
            t0 = time.time()
            found: dict[str, dict] = {}
            for i, launcher in enumerate(launchers):
                out = Path(tmp) / f"{name}-{i}.json"
                cmd = launcher + [str(exe), "--json", str(out)] + (["--quick"] if args.quick else [])
                try:
                    proc = subprocess.run(cmd, cwd=ROOT, timeout=args.timeout, env=env)
                    ok = proc.returncode == 0 and out.exists()
                except subprocess.TimeoutExpired:
                    ok = False
                if not ok:
                    break
                found.update(json.loads(out.read_text())["metrics"])
            print(f"   ({time.time() - t0:.1f} s)", flush=True)
            if not ok:
                failed.append(name)
                continue
            for key, m in found.items():
                metrics[key] = dict(m, program=name)
    metrics.update(cluster_speedups(metrics))
    date = datetime.date.today().isoformat()
    host = socket.gethostname()
    result = {
        "machine": machine(build_dir),
        "run": {"date": date, "mode": "quick" if args.quick else "full", "commit": git_commit(),
                "programs": names, "partial": bool(args.only),
                "seconds": round(time.time() - started, 1),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "failed": failed},
        "metrics": metrics,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ("-quick" if args.quick else "") + ("-partial" if args.only else "")
    path = Path(args.out) if args.out else RESULTS / f"{date}-{host}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".md").write_text(report(result))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} and .md"
          f" ({result['run']['seconds']} s)")
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        sys.exit(1)
    return path


def ranks_tag(n: int) -> str:
    """How cluster_workloads names a number of ranks in its rows: 1_rank, 3_ranks."""
    return "1_rank" if n == 1 else f"{n}_ranks"


def cluster_speedups(m: dict) -> dict[str, dict]:
    """cluster_workloads' speed-up from 1 rank to 3, per workload: the same work's time on 1
    rank over its time on 3."""
    one, many = CLUSTER["cluster_workloads"]
    out = {}
    for key, _ in WORKLOADS:
        t1, tn = (m.get(f"cluster_{key}_{ranks_tag(n)}", {}).get("value") for n in (one, many))
        if t1 and tn:
            out[f"cluster_{key}_speedup_{ranks_tag(many)}"] = {
                "value": float(f"{t1 / tn:.4g}"), "unit": "x", "higher_is_better": True,
                "note": f"time on {one} rank / time on {many} ranks, the same work (the ranks "
                        "share this machine's cores)",
                "program": "cluster_workloads"}
    return out


# ---- reporting ----------------------------------------------------------------------------

def reference() -> dict:
    return json.loads((BENCH / "ray_reference.json").read_text())


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "s" and 0 < abs(value) < 1:  # times: the unit that keeps 1-3 digits before the point
        for scale, name in ((1e3, "ms"), (1e6, "µs"), (1e9, "ns")):
            if abs(value) * scale >= 1:
                return fmt(value * scale, name)
        return fmt(value * 1e9, "ns")
    unit = {"us": "µs", "calls/s": "/s"}.get(unit, unit)
    a = abs(value)
    if a >= 1e6:
        s = f"{value / 1e6:.2f} M"
    elif a >= 1e4:
        s = f"{value / 1e3:.0f} k"
    elif a >= 100:
        s = f"{value:.0f}"
    elif a >= 10:
        s = f"{value:.1f}"
    elif a >= 0.01:
        s = f"{value:.3g}"
    else:
        s = f"{value:.2g}"
    if unit in ("x", "ratio"):
        return s + "×"
    if unit == "/s":
        return f"{s.strip()}/s" if s.endswith(("M", "k")) else f"{s}/s"
    return f"{s} {unit}".replace("M ", "M").replace("k ", "k").strip() if s.endswith(("M", "k")) else f"{s} {unit}".strip()


def ratio(coray: float | None, other: float | None, higher_is_better: bool) -> str:
    """How many times better coray is (above 1: coray better)."""
    if not coray or not other:
        return "—"
    r = coray / other if higher_is_better else other / coray
    return f"{r:,.3g}×" if r < 1000 else f"{r:,.0f}×"


def verdict(name: str, value: float | None) -> str:
    if name not in TARGETS or value is None:
        return ""
    op, bound = TARGETS[name]
    ok = value >= bound if op == ">=" else value <= bound
    return f"{op} {fmt(bound)} {'✓' if ok else '✗ miss'}"


def derived_peers(m: dict) -> dict[str, tuple[float, str, float | None]]:
    """Best peer and machine limit for the call-rate rows, from machine_limits' figures."""
    get = lambda k: m.get(k, {}).get("value")
    pipe_us, line_ns, memcpy = get("pipe_round_trip"), get("cache_line_round_trip"), get("memcpy_bandwidth")
    out = {}
    for row in ("single_client_tasks_sync", "1_1_actor_calls_sync"):
        out[row] = (1e6 / pipe_us if pipe_us else None, "pipe round trip",
                    1e9 / line_ns if line_ns else None)
    for row in ("task_call_latency_p50", "actor_call_latency_p50"):
        out[row] = (pipe_us, "pipe round trip", line_ns / 1e3 if line_ns else None)
    out["single_client_put_gigabytes"] = (None, "", memcpy)
    return out


def report(result: dict) -> str:
    m, mach, run_ = result["metrics"], result["machine"], result["run"]
    ref = reference()
    val = lambda k: m.get(k, {}).get("value")
    lines = []
    w = lines.append
    w(f"Run {run_['date']}, {run_['mode']} mode, commit `{run_['commit']}`: {mach['cpu']}, "
      f"{mach['cores']} cores, {mach['memory_gib']} GiB, {mach['os']}, Linux {mach['kernel']}, "
      f"{mach['compiler']}. Load average before/after: "
      f"{run_['load_average_before'][0]} / {run_['load_average_after'][0]}. "
      "Medians of repeated runs. Ratios read \"how many times better coray is\" (above 1: coray wins).")
    if run_.get("failed"):
        w(f"\n**Programs that failed:** {', '.join(run_['failed'])}.")
    w("")
    w("#### Ray's microbenchmark rows")
    w("")
    w("| row | coray | best peer | Ray (published) | machine limit | vs peer | vs Ray | of limit | target |")
    w("|---|---|---|---|---|---|---|---|---|")
    peers = derived_peers(m)
    for row in RAY_ROWS + ["task_call_latency_p50", "task_call_latency_p99", "actor_call_latency_p50",
                           "actor_call_latency_p99"]:
        if row not in m:
            continue
        x = m[row]
        unit, hib = x["unit"], x["higher_is_better"]
        peer, peer_name, limit = peers.get(row, (None, "", None))
        r = ref["metrics"].get(row)
        vs_ray = ratio(x["value"], r["value"] if r else None, hib)
        if not x.get("rays_operation", True):
            vs_ray = "n/a: " + x.get("note", "not Ray's operation")
        w(f"| `{row}` | {fmt(x['value'], unit)} | "
          f"{fmt(peer, unit) + ' (' + peer_name + ')' if peer else '—'} | "
          f"{fmt(r['value'], r['unit']) if r else '—'} | {fmt(limit, unit) if limit else '—'} | "
          f"{ratio(x['value'], peer, hib)} | {vs_ray} | "
          f"{ratio(x['value'], limit, hib) if limit else '—'} | "
          f"{verdict(row, x['value']) if x.get('rays_operation', True) else ''} |")
    w("")
    w("Ray's figures: " + ref["sources"]["ray_microbenchmark"] + ". Peer and limit rows come from "
      "`machine_limits` in the same run: a pipe round trip between two processes (the floor of a "
      "multiprocessing-style call) and a cache line's round trip between two cores (the floor of any "
      "cross-process call).")
    w("")
    w("#### Seed workloads, 2 workers (seed 004)")
    w("")
    w("| workload | serial | std::thread | multiprocessing-style | coray | vs serial | vs std::thread | vs multiprocessing | targets |")
    w("|---|---|---|---|---|---|---|---|---|")
    for key, title in WORKLOADS:
        if f"{key}_coray" not in m:
            continue
        s, t, p, c = (val(f"{key}_{v}") for v in ("serial", "threads", "mp", "coray"))
        targets = "; ".join(v for v in (verdict(f"{key}_coray_speedup_vs_serial", s / c if s and c else None),
                                        verdict(f"{key}_coray_vs_threads", c / t if c and t else None),
                                        verdict(f"{key}_coray_speedup_vs_mp", p / c if p and c else None)) if v)
        w(f"| {title} | {fmt(s, 's')} | {fmt(t, 's')} | {fmt(p, 's')} | {fmt(c, 's')} | "
          f"{ratio(c, s, False)} | {ratio(c, t, False)} | {ratio(c, p, False)} | {targets} |")
    blog = [(k, ref["metrics"].get(f"{k}_coray")) for k, _ in WORKLOADS]
    blog = [(k, r) for k, r in blog if r]
    if blog:
        w("")
        w("Ray's published figures for the same workloads (" + ref["sources"]["ray_blog_48_cores"] + "): " +
          "; ".join(f"{k}: Ray {r['value']} s, {r['serial'] / r['value']:.0f}× serial Python, "
                    f"{r['mp'] / r['value']:.1f}× multiprocessing" for k, r in blog) +
          ". Those speedups come from 48 cores against Python; here 2 cores cap any speedup at 2×.")
    if any(k.startswith("tiny_tasks_") for k in m):
        w("")
        w("#### Tiny tasks: `x*10` per item (seed 000)")
        w("")
        w("| items | serial | std::thread | multiprocessing-style | coray, task per item | coray, pool map |")
        w("|---|---|---|---|---|---|")
        for n, label in (("100", "100"), ("1m", "1,000,000")):
            vs = [val(f"tiny_tasks_{n}_{v}") for v in ("serial", "threads", "mp", "coray_tasks", "coray_pool_map")]
            w(f"| {label} | " + " | ".join(fmt(v, "s") for v in vs) + " |")
    w("")
    w("#### Other figures")
    w("")
    w("| figure | value | target | note |")
    w("|---|---|---|---|")
    shown = set(RAY_ROWS) | {f"{k}_{v}" for k, _ in WORKLOADS for v in ("serial", "threads", "mp", "coray")}
    shown |= {r for r in m if r.startswith("tiny_tasks_") and not r.endswith("per_item")}
    shown |= {f"{k}_coray_{r}" for k, _ in WORKLOADS for r in ("speedup_vs_serial", "vs_threads", "speedup_vs_mp")}
    shown |= {"task_call_latency_p50", "task_call_latency_p99", "actor_call_latency_p50", "actor_call_latency_p99"}
    for name in sorted(m):
        if name in shown:
            continue
        x = m[name]
        w(f"| `{name}` | {fmt(x['value'], x['unit'])} | {verdict(name, x['value'])} | {x.get('note', '')} |")
    w("")
    return "\n".join(lines)


# ---- README and chart ---------------------------------------------------------------------

def newest_full() -> Path:
    """The newest complete full run in bench/results/ (not quick, not --only)."""
    runs = [(json.loads(p.read_text())["run"], p) for p in RESULTS.glob("*.json")]
    full = [(r["date"], p.name, p) for r, p in runs if r["mode"] == "full" and not r.get("partial")]
    if not full:
        sys.exit("no full run in bench/results/: run scripts/bench.py first")
    return max(full)[2]


def readme_section(path: Path) -> str:
    result = json.loads(path.read_text())
    rel = path.relative_to(ROOT)
    return (f"{BEGIN}\n<!-- Generated by scripts/bench.py --update-readme from {rel}; do not edit. -->\n\n"
            f"![coray against its peers and Ray](docs/performance.svg)\n\n"
            f"{report(result)}\nRaw figures: [`{rel}`]({rel}), [`{rel.with_suffix('.md')}`]"
            f"({rel.with_suffix('.md')}).\n{END}")


def update_readme(path: Path) -> None:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"README.md has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + readme_section(path) + tail)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_chart.py"), str(path), str(CHART)], check=True)
    print(f"README.md and {CHART.relative_to(ROOT)} now show {path.relative_to(ROOT)}")


def check_readme() -> None:
    text = README.read_text()
    path = newest_full()
    m = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), text, re.S)
    if not m or m.group(0) != readme_section(path):
        sys.exit(f"README.md's Performance section is not the table of {path.relative_to(ROOT)}: "
                 "run scripts/bench.py --update-readme")
    print(f"README.md's Performance section matches {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (under 2 minutes in all)")
    ap.add_argument("--build-dir", default=str(ROOT / "build" / "bench"))
    ap.add_argument("--no-build", action="store_true", help="use the programs already built")
    ap.add_argument("--only", nargs="+", metavar="PROGRAM", help="run only these programs")
    ap.add_argument("--out", help="results file (default bench/results/<date>-<host>.json)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per program")
    ap.add_argument("--report", metavar="JSON", help="rewrite JSON's Markdown table and exit")
    ap.add_argument("--update-readme", nargs="?", const="", metavar="JSON")
    ap.add_argument("--check-readme", action="store_true")
    args = ap.parse_args()
    if args.report:
        p = Path(args.report).resolve()
        p.with_suffix(".md").write_text(report(json.loads(p.read_text())))
    elif args.update_readme is not None:
        update_readme(Path(args.update_readme).resolve() if args.update_readme else newest_full())
    elif args.check_readme:
        check_readme()
    else:
        run(args)


if __name__ == "__main__":
    main()
