#!/usr/bin/env python3
"""Benchmark the analysis tools on the 1,000,000-step run of bench_reader.py (made once by the
real wandb and cached in benchmarks/.data/).

    python benchmarks/bench_tools.py
    python benchmarks/bench_tools.py --steps 100000

Each tool runs in a fresh process: the run is read in full first (not counted), then the tool's
answer is computed three times; the table shows the fastest, the size of the answer, the
Python-heap peak of one call (tracemalloc, on top of the loaded run) and the process's peak RSS
(which includes the loaded run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_reader import make_run  # noqa: E402

CHILD = """
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
root, tool, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ix = RunIndex(load_settings([root], env={{}}))
run_id = ix.runs()[0].id
ix.resolve(run_id, full=True)
args = {{k: (v.replace("RUN", run_id) if isinstance(v, str) else [x.replace("RUN", run_id) for x in v]
        if isinstance(v, list) else v) for k, v in args.items()}}
fn = getattr(answers, tool)
times = []
for _ in range(3):
    t = time.perf_counter(); out = fn(ix, **args); times.append(time.perf_counter() - t)
tracemalloc.start()
fn(ix, **args)
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({{"time": min(times), "chars": len(out), "lines": out.count(chr(10)) + 1,
                  "heap_mb": peak / 2**20,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

CALLS = [
    ("run_summary", {"run": "RUN"}),
    ("get_history", {"run": "RUN", "samples": 500}),
    ("get_history", {"run": "RUN", "keys": ["train/loss", "val/loss"], "samples": 100}),
    ("history_stats", {"run": "RUN"}),
    ("diagnose_run", {"run": "RUN"}),
    ("compare_runs", {"runs": ["RUN@500k", "RUN"]}),
    ("best_run", {"metric": "train/loss"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    a = ap.parse_args()
    log = make_run(a.steps)
    root = log.parent.parent.parent
    print(f"\n{a.steps:,}-step run, 6 metrics with {a.steps:,} points each\n")
    print("| call | time | answer | heap peak of the call | process peak RSS |")
    print("|---|---|---|---|---|")
    for tool, args in CALLS:
        p = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(root), tool, json.dumps(args)],
                           capture_output=True, text=True, check=True)
        r = json.loads(p.stdout)
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items() if k != "run")
        print(f"| {tool}({shown}) | {r['time']:.2f} s | {r['lines']} lines, {r['chars']:,} chars | "
              f"{r['heap_mb']:.1f} MB | {r['maxrss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
