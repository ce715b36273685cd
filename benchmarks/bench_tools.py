#!/usr/bin/env python3
"""Benchmark the analysis tools on the 1,000,000-step run of bench_reader.py (made once by the
real wandb and cached in benchmarks/.data/).

    python benchmarks/bench_tools.py
    python benchmarks/bench_tools.py --steps 100000

Each call is measured three ways: cold (a new process without the persistent cache: scan, full
decode of the log, or of the named keys only, answer), warm (the same call again in that process: the fastest of three) and
after a restart (a new process with the persistent cache filled by an earlier server that was asked
the same question: scan, cache load, answer). Also
the size of the answer, the Python-heap peak of a warm call (tracemalloc) and the process's peak
RSS (which includes the loaded run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_reader import DATA, make_run  # noqa: E402

CHILD = """
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
root, tool, args, cache = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
t0 = time.perf_counter()
ix = RunIndex(load_settings([root], env={{"RUNWISE_CACHE_DIR": cache}}))
run_id = ix.runs()[0].id
args = {{k: (v.replace("RUN", run_id) if isinstance(v, str) else [x.replace("RUN", run_id) for x in v]
        if isinstance(v, list) else v) for k, v in args.items()}}
fn = getattr(answers, tool)
out = fn(ix, **args)
first = time.perf_counter() - t0  # a new server process: scan, read (or load the cache), answer
segs = list(ix._segments.values())
first_kind = ("skim" if "not checked yet" in out else "full" if any(s.full for s in segs)
              else "keyed" if any(s.in_memory for s in segs) else "skim")
for job in list(ix._jobs.values()):
    job.finished.wait(600)  # a background full read started by run_summary: warm means read
times = []
for _ in range(3):
    t = time.perf_counter(); out = fn(ix, **args); times.append(time.perf_counter() - t)
tracemalloc.start()
fn(ix, **args)
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({{"first": first, "first_kind": first_kind, "time": min(times), "chars": len(out), "lines": out.count(chr(10)) + 1,
                  "heap_mb": peak / 2**20, "hits": ix.cache.hits if ix.cache else 0,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

CALLS = [
    ("run_summary", {"run": "RUN"}),
    ("get_history", {"run": "RUN", "samples": 500}),
    ("get_history", {"run": "RUN", "keys": ["train/loss", "val/loss"], "samples": 100}),
    ("get_history", {"run": "RUN", "keys": ["val/loss"], "samples": 100}),
    ("history_stats", {"run": "RUN"}),
    ("history_stats", {"run": "RUN", "keys": ["train/loss"]}),
    ("diagnose_run", {"run": "RUN"}),
    ("compare_runs", {"runs": ["RUN@500k", "RUN"]}),
    ("compare_runs", {"runs": ["RUN@500k", "RUN"], "keys": ["val/loss"]}),
    ("best_run", {"metric": "train/loss"}),
    ("best_run", {"metric": "val/loss"}),
]


def child(root: Path, tool: str, args: dict, cache: str) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(root), tool, json.dumps(args), cache],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    a = ap.parse_args()
    log = make_run(a.steps)
    root = log.parent.parent.parent
    cache = DATA / "tool-cache"
    shutil.rmtree(cache, ignore_errors=True)
    child(root, "list_keys", {"run": "RUN"}, str(cache))  # fills the persistent cache once
    print(f"\n{a.steps:,}-step run, 6 metrics: 5 logged every step, val/loss every 100 steps\n")
    print("| call | cold: new process, no cache | read on the cold call | warm: same process | after a restart: "
          "new process, cache | answer | heap peak of a warm call | process peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for tool, args in CALLS:
        cold = child(root, tool, args, "off")
        child(root, tool, args, str(cache))  # asked once with the cache on (fills its memo, if any)
        restart = child(root, tool, args, str(cache))  # a restarted server asked again
        assert restart["hits"] == 1 or log.stat().st_size < 4 << 20, restart  # small logs are not cached
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items() if k != "run")
        read = {"skim": "skim; full read in the background", "full": "full", "keyed": "keyed (named keys only)"}
        print(f"| {tool}({shown}) | {cold['first']:.2f} s | {read[cold['first_kind']]} | {cold['time']:.2f} s | "
              f"{restart['first']:.2f} s | "
              f"{cold['lines']} lines, {cold['chars']:,} chars | {cold['heap_mb']:.1f} MB | "
              f"{max(cold['maxrss_mb'], restart['maxrss_mb']):.0f} MB |")
    print("\nrun_summary's statistics and anomaly check are memoised per run version, so its warm and "
          "after-a-restart figures reuse them; its cold call answers from the skim while the log is read "
          "in the background. A call that names its keys exactly decodes only those keys on its cold call "
          "(keyed read); after a restart every call loads the whole log from the persistent cache instead.")


if __name__ == "__main__":
    main()
