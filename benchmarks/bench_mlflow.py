#!/usr/bin/env python3
"""Benchmark the MLflow readers against MLflow's own client, on stores made by the real mlflow.

    python benchmarks/bench_mlflow.py                 # makes the stores once (~2 min), then measures
    python benchmarks/bench_mlflow.py --points 20000  # a smaller run
    python benchmarks/bench_mlflow.py --runs 200      # fewer runs for the list_runs measurement

Data (cached in benchmarks/.data/mlflow/, made with `MlflowClient`, needs `mlflow` importable):
  * one run with one metric of 100,000 points (steps 0..99,999), in a file store (`mlruns/`) and in
    a SQLite store (`mlflow.db`);
  * 1,000 runs (3 params, 3 metrics x 20 steps each, 2 experiments) in another SQLite store.
Measured, each in a fresh process:
  * our read of the 100k-point history: `store.history_arrays(run_id)` (the reader alone) and a tool
    call that needs it (`history_stats`, through the index: listing, full read, answer);
  * `MlflowClient(uri).get_metric_history(run_id, key)` on the same store (import and client
    creation not counted; the file store needs MLFLOW_ALLOW_FILE_STORE=true);
  * `list_runs` over the 1,000-run SQLite store, cold (a fresh index) and warm (best of 5).
Targets (issue 14): our read at most 0.1x MlflowClient's time; list_runs cold within 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data" / "mlflow"

GEN_BIG = """
import os, sys, math
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
from mlflow.tracking import MlflowClient
from mlflow.entities import Metric
uri, n = sys.argv[1], int(sys.argv[2])
c = MlflowClient(tracking_uri=uri)
e = c.create_experiment("bench")
r = c.create_run(e, run_name="big", start_time=1767225600000)
t0 = 1767225600000
for i in range(0, n, 1000):
    c.log_batch(r.info.run_id, metrics=[Metric("loss", 1.0 / (s + 1) + 0.01 * math.sin(s), t0 + s, s)
                                         for s in range(i, min(n, i + 1000))])
c.set_terminated(r.info.run_id)
print(r.info.run_id)
"""

GEN_MANY = """
import sys
from mlflow.tracking import MlflowClient
from mlflow.entities import Metric, Param
uri, n = sys.argv[1], int(sys.argv[2])
c = MlflowClient(tracking_uri=uri)
exps = [c.create_experiment("sweep-a"), c.create_experiment("sweep-b")]
t0 = 1767225600000
for i in range(n):
    r = c.create_run(exps[i % 2], run_name=f"run-{i:04d}", start_time=t0 + 60000 * i)
    m = [Metric(k, (i % 17) / (s + 1) + j, t0 + 60000 * i + 1000 * s, s) for j, k in enumerate(("loss", "acc", "lr"))
         for s in range(20)]
    c.log_batch(r.info.run_id, metrics=m, params=[Param("lr", str(0.001 * (i % 7 + 1))), Param("seed", str(i)),
                                                   Param("opt", "adam")])
    c.set_terminated(r.info.run_id, end_time=t0 + 60000 * i + 20000)
"""

OURS = """
import json, sys, time
sys.path.insert(0, {repo!r})
kind, path, run_id = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
from runwise_mcp.sources.mlflow_filestore import FileStore
from runwise_mcp.sources.mlflow_sqlite import SqliteStore
store = FileStore(path, "mlruns") if kind == "file" else SqliteStore(path, "mlflow.db")
store.runs()
t = time.perf_counter()
h = store.history_arrays(run_id)
read = time.perf_counter() - t
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
ix = RunIndex(load_settings([str(__import__("os").path.dirname(path))], env={{"RUNWISE_CACHE_DIR": "off"}}))
t = time.perf_counter()
out = answers.history_stats(ix, "big")
tool = time.perf_counter() - t
print(json.dumps({{"read": read, "points": sum(len(v[2]) for v in h.values()), "tool": tool,
                  "answer": out.splitlines()[1]}}))
"""

THEIRS = """
import json, os, sys, time
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
from mlflow.tracking import MlflowClient
uri, run_id = sys.argv[1], sys.argv[2]
c = MlflowClient(tracking_uri=uri)
c.get_run(run_id)  # store set up (and sqlite schema checked) before the clock starts
t = time.perf_counter()
h = c.get_metric_history(run_id, "loss")
print(json.dumps({{"read": time.perf_counter() - t, "points": len(h)}}))
"""

LIST = """
import json, sys, time
sys.path.insert(0, {repo!r})
t = time.perf_counter()
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
ix = RunIndex(load_settings([sys.argv[1]], env={{"RUNWISE_CACHE_DIR": "off"}}))
t = time.perf_counter(); out = answers.list_runs(ix, limit=30); cold = time.perf_counter() - t
warm = []
for _ in range(5):
    t = time.perf_counter(); answers.list_runs(ix, limit=30); warm.append(time.perf_counter() - t)
print(json.dumps({{"cold": cold, "warm": min(warm), "runs": len(ix.runs()), "first": out.splitlines()[0]}}))
"""


def child(code: str, *args: str, env: dict | None = None) -> dict:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                       check=False, env={**os.environ, **(env or {})})
    if p.returncode:
        sys.exit(f"child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def make(points: int, runs: int) -> dict:
    meta_path = DATA / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("points") != points:
        for sub in ("file", "sqlite"):
            d = DATA / f"big-{sub}"
            subprocess.run(["rm", "-rf", str(d)], check=True)
            d.mkdir(parents=True)
        t = time.perf_counter()
        fid = subprocess.run([sys.executable, "-c", GEN_BIG, f"file:{DATA / 'big-file' / 'mlruns'}", str(points)],
                             capture_output=True, text=True, check=True, cwd=str(DATA / "big-file")).stdout.split()[-1]
        sid = subprocess.run([sys.executable, "-c", GEN_BIG, f"sqlite:///{DATA / 'big-sqlite' / 'mlflow.db'}",
                              str(points)], capture_output=True, text=True, check=True,
                             cwd=str(DATA / "big-sqlite")).stdout.split()[-1]
        meta.update(points=points, file_run=fid, sqlite_run=sid, made_big=time.perf_counter() - t)
    if meta.get("runs") != runs:
        d = DATA / "many"
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir(parents=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", GEN_MANY, f"sqlite:///{d / 'mlflow.db'}", str(runs)], check=True,
                       capture_output=True, cwd=str(d))
        meta.update(runs=runs, made_many=time.perf_counter() - t)
    meta_path.write_text(json.dumps(meta))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    meta = make(args.points, args.runs)
    rows = []
    for kind, sub, store, uri in (
            ("file store (mlruns/)", "file", DATA / "big-file" / "mlruns", f"file:{DATA / 'big-file' / 'mlruns'}"),
            ("SQLite (mlflow.db)", "sqlite", DATA / "big-sqlite" / "mlflow.db",
             f"sqlite:///{DATA / 'big-sqlite' / 'mlflow.db'}")):
        rid = meta["file_run" if sub == "file" else "sqlite_run"]
        ours = child(OURS.format(repo=str(REPO)), sub, str(store), rid)
        theirs = min((child(THEIRS.format(), uri, rid) for _ in range(2)), key=lambda x: x["read"])
        assert ours["points"] == theirs["points"] == args.points, (ours, theirs)
        rows.append(f"| {kind} | {args.points:,} | {ours['read']:.3f} s | {ours['tool']:.3f} s | "
                    f"{theirs['read']:.3f} s | {ours['read'] / theirs['read']:.3f}x |")
    lst = child(LIST.format(repo=str(REPO)), str(DATA / "many"))
    print(textwrap.dedent(f"""\
        One run, one metric of {args.points:,} points, written by `MlflowClient.log_batch`; each figure from a
        fresh process. "ours, tool" is `history_stats` through the index (scan, listing, full read, answer).

        | store | points | ours: read | ours: tool | `MlflowClient.get_metric_history` | ratio (read) |
        |---|---|---|---|---|---|
        """) + "\n".join(rows) + "\n")
    print(f"`list_runs` over {lst['runs']:,} runs in one SQLite store (3 metrics x 20 steps, 3 params each): "
          f"cold {lst['cold']:.3f} s (fresh index), warm {lst['warm'] * 1000:.1f} ms (best of 5). "
          f"Targets: read ratio at most 0.1x, list_runs cold within 1 s.")


if __name__ == "__main__":
    main()
