"""First calls on a large run in a new process, next to wandb's compiled decoder (issue 18).

    python benchmarks/bench_cold.py [--steps 200000] [--pairs 2] [--workers 1,2,4] [--json]

Each measurement is a whole new process (interpreter start, run discovery, read, answer; no
persistent cache), alternated pair by pair with `wandb leet inspect --summary LOG` (wandb's Go
decoder printing the run's state and metrics) so that load from other work on the machine hits
both alike. The ratio is ours / leet --summary per pair; the range over pairs is shown. `cat` is
the read floor; `--json` adds one run of `leet inspect --json` (every record as JSON, much
slower). Each call is measured with each number of read processes in `--workers`
(RUNWISE_READ_WORKERS; 1 = one process). Peak RSS is ours and, separately, the largest worker's.
Needs the `wandb` CLI of the test extra (wandb 0.31) for the leet columns.

"On N idle cores" projects a measurement with N read processes to a machine with at least N
idle cores: the same process's time with its parallel read's wall-clock time replaced by the
read's critical path in CPU seconds (``WandbLog.part_times``: the slowest of this process's
first part and each whole worker process, then receiving and joining the results). Where N is
at most the cores here it is a check of the projection against the measurement. It assumes
each part decodes at the one-core rate while N run at once (no memory-bandwidth or clock limit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_reader import make_run  # noqa: E402
from bench_tools import REPO  # noqa: E402

CHILD = """
import json, os, resource, sys
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
root, tool, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ix = RunIndex(load_settings([root], env={{**os.environ, "RUNWISE_CACHE_DIR": "off"}}))  # RUNWISE_READ_WORKERS
run_id = ix.runs()[0].id
args = {{k: v.replace("RUN", run_id) if isinstance(v, str) else v for k, v in args.items()}}
out = getattr(answers, tool)(ix, **args)
segs = list(ix._segments.values())
kind = "full" if any(s.full for s in segs) else "keyed" if any(s.in_memory for s in segs) else "skim"
logs = [getattr(s, a, None) for s in segs for a in ("_full", "_keyed")]  # (a W&B run's reads)
pt = [x.part_times for x in logs if x is not None and x.part_times is not None]
print(json.dumps({{"first_kind": kind, "chars": len(out),
                  "read_wall": pt[0].wall if pt else None, "critical": pt[0].critical_path() if pt else None,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
sys.stdout.flush()
import os; os._exit(0)  # do not wait for a background read: the answer is out
"""

CALLS = [
    ("list_keys", {"run": "RUN"}),
    ("history_stats", {"run": "RUN"}),
    ("history_stats", {"run": "RUN", "keys": ["train/loss"]}),
]


def ours(root: Path, tool: str, args: dict, workers: int) -> tuple[float, dict]:
    env = {**os.environ, "RUNWISE_READ_WORKERS": str(workers)}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(root), tool, json.dumps(args)],
                       capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - t, json.loads(p.stdout)


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--workers", default="1,2", help="read processes to measure, comma-separated")
    ap.add_argument("--json", action="store_true", help="also time leet inspect --json once")
    a = ap.parse_args()
    log = make_run(a.steps)
    root = log.parent.parent
    wandb_cli = Path(sys.executable).parent / "wandb"
    wandb_cli = str(wandb_cli) if wandb_cli.exists() else shutil.which("wandb")
    mib = log.stat().st_size / 2**20
    print(f"{a.steps:,}-step run, {mib:.0f} MiB .wandb file; {a.pairs} pairs, alternated; {os.cpu_count()} cores\n")
    print("| first call (new process) | read processes | ours | peak RSS (worker) | leet --summary "
          "| ours / leet --summary | read on the call | on N idle cores (projected) | its ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tool, args in CALLS:
        for workers in [int(w) for w in a.workers.split(",")]:
            mine, leet, ratios, proj, proj_ratios = [], [], [], [], []
            info: dict = {}
            for _ in range(a.pairs):
                s, info = ours(root, tool, args, workers)
                mine.append(s)
                p = s - info["read_wall"] + info["critical"] if info["read_wall"] is not None else None
                if p is not None:
                    proj.append(p)
                if wandb_cli:
                    w = timed([wandb_cli, "leet", "inspect", "--summary", str(log)])
                    leet.append(w)
                    ratios.append(s / w)
                    if p is not None:
                        proj_ratios.append(p / w)
            shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "run")
            r = f"{min(ratios):.2f}–{max(ratios):.2f}×" if ratios else "n/a"
            lt = f"{min(leet):.2f}–{max(leet):.2f} s" if leet else "n/a"
            rss = f"{info['maxrss_mb']:.0f} MB" + (f" ({info['worker_rss_mb']:.0f} MB)" if info["worker_rss_mb"] else "")
            pr = f"{min(proj):.2f}–{max(proj):.2f} s" if proj else ""
            prr = f"{min(proj_ratios):.2f}–{max(proj_ratios):.2f}×" if proj_ratios else ""
            print(f"| {tool}({shown}) | {workers} | {min(mine):.2f}–{max(mine):.2f} s | {rss} | {lt} | {r} "
                  f"| {info['first_kind']} | {pr} | {prr} |")
    cat = min(timed(["cat", str(log)]) for _ in range(3))
    print(f"\ncat file > /dev/null (read floor): {cat:.2f} s")
    if a.json and wandb_cli:
        print(f"leet inspect --json (once): {timed([wandb_cli, 'leet', 'inspect', '--json', str(log)]):.2f} s")


if __name__ == "__main__":
    main()
