#!/usr/bin/env python3
"""MLflow over a tracking server's REST API (issue 14): one run with 100,000 points of one metric
(and 4 more keys of 25,000), logged by the real ``MlflowClient`` to a real ``mlflow server``
(SQLite backend, localhost), read back by runwise's stdlib REST reader and by
``MlflowClient.get_metric_history`` over http.

    python benchmarks/bench_mlflow_server.py               # 100k points
    python benchmarks/bench_mlflow_server.py --points 20000

Needs ``mlflow`` (the test extra). Each measurement is the best of ``--repeat`` runs in this
process (the server is warm after the first); the page-size sweep shows why the reader asks for
pages of 25,000 points.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def best(fn, repeat: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from mlflow_server import mlflow_server

    from runwise_mcp.sources.mlflow_rest import RestStore

    n = args.points
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        with mlflow_server(Path(d)) as url:
            start = time.perf_counter() - t
            c = MlflowClient(tracking_uri=url)
            exp = c.create_experiment("bench")
            rid = c.create_run(exp, run_name="big").info.run_id
            t0 = int(time.time() * 1000)
            t = time.perf_counter()
            for i in range(0, n, 1000):
                c.log_batch(rid, metrics=[Metric("loss", 1 / (1 + s), t0 + s, s) for s in range(i, min(n, i + 1000))])
            for k in range(4):
                q = n // 4
                for i in range(0, q, 1000):
                    c.log_batch(rid, metrics=[Metric(f"k{k}", math.sin(s), t0 + s, s)
                                              for s in range(i, min(q, i + 1000))])
            with contextlib.redirect_stdout(sys.stderr):  # the client prints "View run ... at" links
                c.set_terminated(rid)
            logged = time.perf_counter() - t

            rows = Rows()
            rows += [f"server start (first /health 200): {start:.1f} s; logging {n:,} + 4 x {n // 4:,} points "
                    f"with log_batch: {logged:.1f} s", "",
                    "| measurement | time | ratio |", "|---|---|---|"]
            theirs, pts = best(lambda: c.get_metric_history(rid, "loss"), args.repeat)
            assert len(pts) == n
            rows.append(f"| MlflowClient.get_metric_history over http, {n:,} points | {theirs:.2f} s | 1.00x |")
            for page in (5_000, 10_000, 25_000, 50_000):
                def ours(page=page):
                    return RestStore(url, env={}, history_page=page, timeout=60).history(rid, ["loss"])["loss"]
                dt, got = best(ours, args.repeat)
                assert len(got) == n
                rows.append(f"| runwise REST reader, pages of {page:,} points | {dt:.2f} s | {dt / theirs:.2f}x |")
            store = RestStore(url, env={}, timeout=60)
            dt, _ = best(lambda: store.history(rid), 1)
            rows.append(f"| runwise, a fresh cache: all 5 keys ({n + n:,} points), 4 keys at a time | {dt:.2f} s | |")
            dt1, _ = best(lambda: RestStore(url, env={}, workers=1, timeout=60).history(rid), 1)
            rows.append(f"| runwise, the same one key at a time | {dt1:.2f} s | |")
            dt, _ = best(lambda: store.history(rid), args.repeat)
            rows.append(f"| runwise, again, run unchanged (one runs/get, cache hit) | {dt * 1000:.1f} ms | |")
            their_all, _ = best(lambda: [c.get_metric_history(rid, k) for k in ("loss", "k0", "k1", "k2", "k3")], 1)
            rows.append(f"| MlflowClient.get_metric_history, all 5 keys one after another | {their_all:.2f} s | |")


class Rows(list):
    """Rows printed as they are measured (a long run shows its progress)."""

    def append(self, row: str) -> None:
        print(row, flush=True)
        super().append(row)

    def __iadd__(self, rows):  # noqa: ANN001
        for r in rows:
            self.append(r)
        return self


if __name__ == "__main__":
    main()
