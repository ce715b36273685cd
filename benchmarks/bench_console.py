#!/usr/bin/env python3
"""Benchmark the console parser on a 1,000,000-line output.log.

    python benchmarks/bench_console.py            # writes the log once to benchmarks/.data/
    python benchmarks/bench_console.py --lines 100000
    python benchmarks/bench_console.py --list-only 5   # only the standalone listing, 5 fresh processes

The log mixes what a trainer prints: logging-prefixed step lines with a percentage, a validation
line every 50 lines, tqdm-style redraws joined by \\r, and noise (warnings, config lines). Each
measurement runs in a fresh process: a full parse (throughput in lines/s, peak RSS) and the
first tail_run-style read (only the last 4 MiB), and listing the log as a run on its own
(``train.log`` in an otherwise empty root: discovery probes its head and tail, the run list
parses only its tail).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data"

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from runwise_mcp.sources.console import ConsoleFile, file_key
path, tail = sys.argv[1], int(sys.argv[2])
cf = ConsoleFile(path)
t = time.perf_counter()
cf.update(file_key(path), tail_only=tail)
h = cf.history()
dt = time.perf_counter() - t
print(json.dumps({{"time": dt, "lines": cf.parsed.lines, "rows": h.rows, "keys": len(h.columns),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

CHILD_LIST = """
import json, os, sys, tempfile, time
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
src = sys.argv[1]
with tempfile.TemporaryDirectory() as root:
    dst = os.path.join(root, "train.log")
    try:
        os.link(src, dst)
    except OSError:
        import shutil; shutil.copy(src, dst)
    ix = RunIndex(load_settings([root], env={{"RUNWISE_CACHE_DIR": "off"}}))
    t = time.perf_counter()
    runs = ix.runs()
    dt = time.perf_counter() - t
    t = time.perf_counter()
    ix.runs()
    again = time.perf_counter() - t
    print(json.dumps({{"time": dt, "again": again, "runs": [r.id for r in runs], "last_step": runs[0].last_step if runs else None}}))
"""


def make_log(n: int) -> Path:
    path = DATA / f"console{n}.log"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            step = i * 10
            if i % 50 == 49:
                f.write(f"Val (ProteomeTools) | Token: {rng.random() * 100:.1f}% | Gain: +0.6% | Pos: N=7% M=9%\n")
            elif i % 50 == 25:
                f.write(f"WARNING: step {step} took {rng.random() * 5:.2f}s longer than usual\n")
            elif i % 10 == 5:
                bars = "".join(f"\r{k * 10}%|{'#' * k}{' ' * (10 - k)}| {k}/10 [00:0{k}<00:05, 2.0it/s, loss={rng.random():.3f}]"
                               for k in range(1, 11))
                f.write(f"Epoch {i // 10}:{bars}\n")
            else:
                f.write(f"2026-11-27 10:{i // 60 % 60:02d}:{i % 60:02d},123 - trainer - INFO - Step {step} | "
                        f"Loss: {rng.random():.4f} | Token Acc: {rng.random() * 100:.1f}% | LR: 3.0e-04\n")
    return path


def child(path: Path, tail: int) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(path), str(tail)],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--list-only", type=int, default=0, metavar="N",
                    help="only list the log as a standalone run, N times (each in a fresh process)")
    a = ap.parse_args()
    path = make_log(a.lines)
    size = path.stat().st_size
    if a.list_only:
        times = []
        for _ in range(a.list_only):
            p = subprocess.run([sys.executable, "-c", CHILD_LIST.format(repo=str(REPO)), str(path)],
                               capture_output=True, text=True, check=True)
            listed = json.loads(p.stdout)
            times.append(listed["time"])
        times.sort()
        print(f"{a.lines:,}-line log ({size / 2**20:.0f} MiB) listed as a standalone run "
              f"({', '.join(listed['runs'])}, last step {listed['last_step']:,}): "
              f"{', '.join(f'{t * 1000:.0f}' for t in times)} ms (median {times[len(times) // 2] * 1000:.0f} ms)")
        return
    full = child(path, 0)
    tail = child(path, 4 << 20)
    print(f"\n{a.lines:,}-line output.log, {size / 2**20:.0f} MiB\n")
    print("| measurement | time | lines parsed | throughput | peak memory |")
    print("|---|---|---|---|---|")
    print(f"| full parse | {full['time']:.2f} s | {full['lines']:,} | {full['lines'] / full['time']:,.0f} lines/s | "
          f"{full['maxrss_mb']:.0f} MB RSS |")
    print(f"| first tail_run read (last 4 MiB only) | {tail['time'] * 1000:.0f} ms | {tail['lines']:,} | "
          f"{tail['lines'] / tail['time']:,.0f} lines/s | {tail['maxrss_mb']:.0f} MB RSS |")
    p = subprocess.run([sys.executable, "-c", CHILD_LIST.format(repo=str(REPO)), str(path)],
                       capture_output=True, text=True, check=True)
    listed = json.loads(p.stdout)
    print(f"| list_runs with it as a standalone run ({', '.join(listed['runs'])}, last step "
          f"{listed['last_step']:,}) | {listed['time'] * 1000:.0f} ms (again: {listed['again'] * 1000:.0f} ms) | tail only | | |")
    print(f"\nfull parse: {full['rows']:,} steps, {full['keys']} keys")


if __name__ == "__main__":
    main()
