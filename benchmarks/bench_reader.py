#!/usr/bin/env python3
"""Benchmark the .wandb reader and the run index on a 1,000,000-step run made by the real wandb.

    python benchmarks/bench_reader.py            # makes the run once (~5 min), then measures
    python benchmarks/bench_reader.py --steps 100000

Measured, each in a fresh process (peak memory = the process's max RSS):
  * full parse: a new index reads the whole run (history columns, summary, config, state);
  * unchanged: a second index call on the same, unchanged file;
  * append: the index has read the run up to 1,000 rows before its end; the rest is appended
    (as a live run would flush it) and the index is called again;
  * keyed: a tool that names one key reads the log for that key only (a dense and a sparse key);
and, for reference on the same file: wandb's own decoder (`wandb leet inspect --json > /dev/null`)
and the read floor (`cat file > /dev/null`). The run is cached in benchmarks/.data/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data"

GEN = """
import math, os, sys
os.environ["WANDB_MODE"] = "offline"; os.environ["WANDB_SILENT"] = "true"
import wandb
n = int(sys.argv[1])
run = wandb.init(project="bench", name=f"bench-{n}", config={"lr": 0.001, "steps": n})
for i in range(n):
    row = {"train/loss": 1.0 / (i + 1), "train/acc": i / n, "lr": 0.001, "grad_norm": math.sin(i), "tokens": i * 512.0}
    if i % 100 == 99:  # validation every 100 steps
        row["val/loss"] = 2.0 / (i + 1)
    run.log(row, step=i)
run.finish()
"""

CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
mode, root, log, cut = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = {{}}
if mode == "append":
    full = open(log + ".full", "rb").read()
    with open(log, "wb") as f:
        f.write(full[:cut])
    del full
cache = os.environ.get("BENCH_CACHE", "off")  # off: measure decoding, not a cache load
ix = RunIndex(load_settings([root], env={{"RUNWISE_CACHE_DIR": cache}}))
if mode == "list":  # what list_runs does: large logs are skimmed
    t = time.perf_counter(); runs = ix.runs(); out["list"] = time.perf_counter() - t
    out["list_last_step"] = runs[0].last_step
    out["list_state"] = runs[0].state.state
elif mode.startswith("keyed:"):  # what a tool that names its keys does: decode only those
    run = ix.runs()[0]
    t = time.perf_counter(); run = ix.read_keys(run, mode[6:].split(",")); out["keyed"] = time.perf_counter() - t
    out["points"] = {{k: len(c) for k, c in run.history.columns.items()}}
    out["rows"] = run.history.rows
else:  # what a tool on one run does: read it in full
    run_id = ix.runs()[0].id
    t = time.perf_counter(); run = ix.resolve(run_id, full=True); out["full"] = time.perf_counter() - t
    out["rows"] = run.history.rows
    out["keys"] = len(run.history.columns)
    out["state"] = run.state.state
if mode == "unchanged":
    times = []
    for _ in range(5):
        t = time.perf_counter(); ix.resolve(run_id, full=True); ix.runs(); times.append(time.perf_counter() - t)
    out["second"] = min(times)
if mode == "append":
    before = run.history.rows
    with open(log, "ab") as f:
        f.write(open(log + ".full", "rb").read()[cut:])
    t = time.perf_counter(); run = ix.resolve(run_id, full=True); out["append"] = time.perf_counter() - t
    out["appended_rows"] = run.history.rows - before
    out["state_after"] = run.state.state
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def make_run(steps: int) -> Path:
    target = DATA / f"run{steps}"
    logs = sorted(target.glob("wandb/*/run-*.wandb"))
    if logs:
        return logs[0]
    print(f"making a {steps:,}-step run with the real wandb (once; cached in {target})...", file=sys.stderr)
    tmp = DATA / f"tmp{steps}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "gen.py").write_text(textwrap.dedent(GEN))
    t = time.time()
    subprocess.run([sys.executable, "gen.py", str(steps)], cwd=tmp, check=True)
    print(f"  took {time.time() - t:.0f}s", file=sys.stderr)
    (tmp / "gen.py").unlink()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return sorted(target.glob("wandb/*/run-*.wandb"))[0]


def cut_before_last_rows(path: Path, rows: int) -> int:
    """Byte offset of the record boundary that leaves ``rows`` history rows to append
    (a walk of the LevelDB-log framing; history records are Record field 2, tag 0x12)."""
    data = path.read_bytes()
    block = 32768
    ends: list[int] = []
    pos, parts = 7, []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        n = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        parts.append(data[pos + 7 : pos + 7 + n])
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST: a record ends here
            rec = b"".join(parts)
            parts = []
            i = 1
            while rec[i] & 0x80:
                i += 1
            if rec[i + 1] == 0x12:
                ends.append(pos)
    return ends[-rows - 1]


def timed(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def child(mode: str, root: Path, log: Path, cut: int, cache: str = "off") -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), mode, str(root), str(log), str(cut)],
                       capture_output=True, text=True, check=True, env={**os.environ, "BENCH_CACHE": cache})
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--append-rows", type=int, default=1000)
    a = ap.parse_args()
    log = make_run(a.steps)
    size = log.stat().st_size
    root = log.parent.parent.parent

    listing = child("list", root, log, 0)
    full = child("full", root, log, 0)
    dense = child("keyed:train/loss", root, log, 0)
    sparse = child("keyed:val/loss", root, log, 0)
    unchanged = child("unchanged", root, log, 0)
    cache_dir = DATA / "reader-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    child("full", root, log, 0, str(cache_dir))  # decodes and fills the persistent cache
    restart = child("full", root, log, 0, str(cache_dir))  # a restarted server: loads it

    work = DATA / "append"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(root, work, symlinks=True)
    wlog = next(work.glob("wandb/*/run-*.wandb"))
    shutil.copyfile(wlog, str(wlog) + ".full")
    cut = cut_before_last_rows(log, a.append_rows)
    app = child("append", work, wlog, cut)
    shutil.rmtree(work, ignore_errors=True)

    cat = min(timed(f"cat '{log}' > /dev/null") for _ in range(3))
    wandb_cli = Path(sys.executable).parent / "wandb"
    leet = timed(f"'{wandb_cli}' leet inspect --json '{log}' > /dev/null") if wandb_cli.exists() else None

    print(f"\n{a.steps:,}-step run, {full['keys']} numeric keys (6 metrics, val/loss every 100 steps; + _runtime, "
          f"_timestamp), "
          f"{size / 2**20:,.0f} MiB .wandb file\n")
    print("| measurement | time | peak memory |")
    print("|---|---|---|")
    print(f"| runwise: full parse, every row (first call of a tool on the run) | {full['full']:.2f} s | "
          f"{full['maxrss_mb']:.0f} MB RSS |")
    for label, k in (("train/loss, logged every step", dense), ("val/loss, logged every 100 steps", sparse)):
        (name, pts), = k["points"].items()
        print(f"| runwise: keyed read of one key ({label}: {pts:,} points; the other keys not decoded) | "
              f"{k['keyed']:.2f} s ({k['keyed'] / full['full']:.2f}× the full parse) | {k['maxrss_mb']:.0f} MB RSS |")
    print(f"| runwise: second call, file unchanged | {unchanged['second'] * 1000:.2f} ms | |")
    print(f"| runwise: the same read after a server restart (persistent cache) | {restart['full']:.2f} s | "
          f"{restart['maxrss_mb']:.0f} MB RSS |")
    print(f"| runwise: pick up {app['appended_rows']:,} appended rows | {app['append'] * 1000:.0f} ms | |")
    print(f"| runwise: list_runs view (thin skim: head, tail, sampled blocks) | {listing['list'] * 1000:.0f} ms | "
          f"{listing['maxrss_mb']:.0f} MB RSS |")
    if leet is not None:
        print(f"| wandb leet inspect --json > /dev/null (wandb's decoder) | {leet:.2f} s | |")
    print(f"| cat file > /dev/null (read floor) | {cat:.2f} s | |")
    print(f"\nrows read: {full['rows']:,}; state {full['state']}; skim: last step {listing['list_last_step']:,}, "
          f"state {listing['list_state']}; after append: {app['state_after']}")


if __name__ == "__main__":
    main()
