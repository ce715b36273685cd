#!/usr/bin/env python3
"""A large JSONL metric log read as a run, next to plain `json.loads` line by line (issue 15).

    python benchmarks/bench_metric_logs.py            # ~200 MB file, made once in benchmarks/.data/
    python benchmarks/bench_metric_logs.py --mb 20    # a smaller one

The file: one JSON object a line ({"step", "loss", "acc", "lr", "grad_norm", "split"}), as a
custom training loop writes it. Measured, each in a fresh process, in alternated pairs: the floor `for line in f:
json.loads(line)` (no storing), and runwise reading the file as a run (RunIndex.resolve(full=True):
every value into the columnar History), with the process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

FLOOR = """
import json, resource, sys, time
t = time.perf_counter(); c = time.process_time(); n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line); n += 1
print(json.dumps({"t": time.perf_counter() - t, "cpu": time.process_time() - c, "rows": n,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

OURS = """
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[2])
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
ix = RunIndex(load_settings([os.path.dirname(sys.argv[1])], env={"RUNWISE_CACHE_DIR": "off"}))
t = time.perf_counter(); c = time.process_time()
r = ix.resolve("metrics", full=True)
dt, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"t": dt, "cpu": cpu, "rows": r.history.rows, "keys": len(r.history.columns),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make(mb: int) -> Path:
    target = HERE / ".data" / f"jsonl{mb}" / "metrics.jsonl"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w") as f:
        step, size = 0, 0
        while size < mb << 20:
            line = json.dumps({"step": step, "loss": 2.5 / (1 + step * 1e-4), "acc": min(1.0, step * 1e-6),
                               "lr": 3e-4, "grad_norm": 1.0 + (step % 97) / 97, "split": "train"}) + "\n"
            f.write(line)
            size += len(line)
            step += 1
    tmp.rename(target)
    return target


def child(code: str, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    path = make(a.mb)
    pairs = []
    for _ in range(a.repeat):  # alternated: floor, ours, floor, ours... (load drifts on a shared machine)
        pairs.append((child(FLOOR, str(path)), child(OURS, str(path), str(REPO))))
    size = path.stat().st_size / 2**20
    floor = min((f for f, _ in pairs), key=lambda r: r["t"])
    ours = min((o for _, o in pairs), key=lambda r: r["t"])
    print(f"{floor['rows']:,}-line JSONL metric log ({size:,.0f} MiB), {ours['keys']} columns\n")
    print("| measurement | time (best of %d) | CPU time | peak memory |" % a.repeat)
    print("|---|---|---|---|")
    print(f"| json.loads line by line (floor, nothing stored) | {floor['t']:.2f} s | {floor['cpu']:.2f} s "
          f"| {floor['rss']:.0f} MB RSS |")
    print(f"| runwise: the file read as a run (every value stored) | {ours['t']:.2f} s "
          f"({ours['t'] / floor['t']:.2f}× the floor) | {ours['cpu']:.2f} s "
          f"({ours['cpu'] / floor['cpu']:.2f}×) | {ours['rss']:.0f} MB RSS |")
    ratios = sorted(o["t"] / f["t"] for f, o in pairs)
    cpu = sorted(o["cpu"] / f["cpu"] for f, o in pairs)
    print(f"\nper pair (runwise / floor): wall {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"CPU {', '.join(f'{r:.2f}' for r in cpu)}; median wall {ratios[len(ratios) // 2]:.2f}, "
          f"CPU {cpu[len(cpu) // 2]:.2f}")


if __name__ == "__main__":
    main()
