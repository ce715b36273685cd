#!/usr/bin/env python3
"""How long matching console keys to logged keys takes (``analysis.aliases.console_aliases``,
issue 16 item 6): a run logging KEYS keys over ROWS steps, and a console printing 12 keys every
10th step, 4 of which mirror logged keys (the rest print other values).

    python benchmarks/bench_aliases.py                   # 1,000 keys x 20,000 steps
    python benchmarks/bench_aliases.py --keys 200 --rows 100000

Prints the time of one matching pass (best of 3) and the mapping found; answers compute it once
per console state and run (memoised on the console view).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runwise_mcp.analysis.aliases import console_aliases  # noqa: E402
from runwise_mcp.model import History  # noqa: E402


def build(keys: int, rows: int) -> tuple[History, History]:
    logged = History()
    names = [f"group{k % 20}/metric_{k}" for k in range(keys)]
    for s in range(rows):
        logged.add_row(s, [(n, math.sin(s / 100 + i) + i) for i, n in enumerate(names)])
    console = History()
    for s in range(0, rows, 10):
        items = [(f"m{i}", round(math.sin(s / 100 + i) + i, 4)) for i in range(4)]  # mirrors
        items += [(f"other{i}", s * 0.001 + i) for i in range(8)]
        console.add_row(s, items)
    return logged, console


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=20_000)
    a = ap.parse_args()
    t = time.perf_counter()
    logged, console = build(a.keys, a.rows)
    print(f"built {a.keys:,} keys x {a.rows:,} steps + console {console.rows:,} rows in {time.perf_counter() - t:.1f}s")
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        found = console_aliases(logged, console)
        best = min(best, time.perf_counter() - t)
    print(f"console_aliases: {best * 1000:.1f} ms (best of 3); "
          + ", ".join(f"{a.console_key}={a.logged_key}" for a in found.values()))


if __name__ == "__main__":
    main()
