"""The analysis functions issue 16 added or changed, on 1,000,000-point series (pure functions,
no file read): the recent-trend arrow (run_summary, list_runs), the grad-norm growth onset and
the spike check on a grad norm (diagnose_run), the wall-clock step rate (tail_run).

    python benchmarks/bench_analysis.py
"""

from __future__ import annotations

import math
import random
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runwise_mcp.analysis.anomalies import Thresholds, check_grad_norm, check_spikes  # noqa: E402
from runwise_mcp.analysis.stats import trend, wall_rate  # noqa: E402

N = 1_000_000


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rnd = random.Random(0)
    steps = array("q", range(N))
    loss = array("d", (3 / (1 + i / 50_000) + 0.01 * rnd.gauss(0, 1) for i in range(N)))
    onset = 300_000
    grad = array("d", (0.87 + 0.03 * rnd.gauss(0, 1) if i < onset else 0.87 * math.exp((i - onset) / 100_000)
                       for i in range(N)))
    grad[150_000] = 150.8
    flat = array("d", (0.87 + 0.03 * rnd.gauss(0, 1) for i in range(N)))
    clock = array("d", (1.8e9 + i * 0.01 for i in range(N)))
    th = Thresholds()
    rows = [
        ("trend (recent-trend arrow), 1,000,000 points", lambda: trend(steps, loss), trend(steps, loss)),
        ("check_grad_norm (growth onset), 1,000,000 points", lambda: check_grad_norm("g", steps, grad, th),
         check_grad_norm("g", steps, grad, th).step),
        ("check_spikes on a grad norm, 1,000,000 points", lambda: check_spikes("g", steps, grad, th),
         [f.step for f in check_spikes("g", steps, grad, th)][:3]),
        ("check_spikes on a steady grad norm (no spike), 1,000,000 points", lambda: check_spikes("g", steps, flat, th),
         len(check_spikes("g", steps, flat, th))),
        ("wall_rate (tail_run speed), 1,000,000 rows at 100 steps/s", lambda: wall_rate(steps, clock),
         round(wall_rate(steps, clock)[0], 2)),
    ]
    print("| function | best of 3 | result |")
    print("|---|---|---|")
    for name, fn, result in rows:
        print(f"| {name} | {best_of(fn) * 1000:.1f} ms | {result} |")
    print(f"\ngrowth onset constructed at step {onset:,}; spike at step 150,000")


if __name__ == "__main__":
    main()
