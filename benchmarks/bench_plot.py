#!/usr/bin/env python3
"""plot_runs: time and PNG size, on the analysis fixtures and on a long metric log.

    .venv/bin/python benchmarks/bench_plot.py [POINTS]     # default 1,000,000 points (written once)

Measures, in one process: the first plot (matplotlib imported then), warm plots of one and of four
1,000-point runs (tests/fixtures/analysis_runs), and a plot of a JSONL metric log of POINTS steps
(three keys, one with a spike and a NaN) with its history already read, so the time is sampling,
the spike and NaN checks over every point, and drawing.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from runwise_mcp.answers.plot import plot_runs  # noqa: E402
from runwise_mcp.config import load_settings  # noqa: E402
from runwise_mcp.index import RunIndex  # noqa: E402


def long_log(points: int) -> Path:
    d = HERE / ".data" / f"plot_{points}"
    f = d / "metrics.jsonl"
    if f.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(0)
    with open(f.with_suffix(".tmp"), "w") as out:
        for i in range(points):
            loss = 3 / (1 + i / (points / 20)) + 0.01 * rnd.gauss(0, 1)
            if i == points * 6 // 10:
                loss *= 10
            row = {"step": i, "loss": loss if i != points * 9 // 10 else math.nan,
                   "lr": 1e-3 * (1 - i / points), "acc": 1 - loss / 4}
            out.write(json.dumps(row) + "\n")
    f.with_suffix(".tmp").rename(f)
    return d


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    points = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    ix = RunIndex(load_settings([str(REPO / "tests" / "fixtures" / "analysis_runs")], env={"RUNWISE_CACHE_DIR": "off"}))
    first, (png, _) = timed(lambda: plot_runs(ix, ["A01-spike"], ["train/loss"]))
    print(f"first plot (imports matplotlib): {first:.2f} s, {len(png):,} bytes")
    warm, (png, _) = timed(lambda: plot_runs(ix, ["A01-spike"], ["train/loss"]), 5)
    print(f"one 1,000-point run, warm: {warm * 1000:.0f} ms, {len(png):,} bytes")
    warm4, (png, cap) = timed(lambda: plot_runs(ix, ["A00", "A01", "A02", "A03"], ["train/loss"]), 5)
    print(f"four runs, warm: {warm4 * 1000:.0f} ms, {len(png):,} bytes")
    d = long_log(points)
    ix2 = RunIndex(load_settings([str(d)], env={"RUNWISE_CACHE_DIR": "off"}))
    read, _ = timed(lambda: plot_runs(ix2, ["metrics"], ["loss"]))
    print(f"{points:,}-point metric log, first plot (reads the log): {read:.2f} s")
    big, (png, cap) = timed(lambda: plot_runs(ix2, ["metrics"], ["loss", "acc"]), 3)
    print(f"{points:,}-point metric log, 2 keys, warm: {big:.2f} s, {len(png):,} bytes")
    print(f"caption: {cap}")


if __name__ == "__main__":
    main()
