#!/usr/bin/env python3
"""Benchmark the TensorBoard event-file reader on a 1,000,000-scalar file made by the real tensorboardX.

    python benchmarks/bench_tensorboard.py                  # makes the file once (~1 min), then measures
    python benchmarks/bench_tensorboard.py --steps 25000    # 4 tags x 25k steps
    python benchmarks/bench_tensorboard.py --data /tmp/tb   # cache the file somewhere else

The file: tensorboardX `add_scalar` (simple_value) for 4 tags x 250,000 steps, one file. Measured,
each in a fresh process (peak memory = the process's max RSS):
  * full read: `EventFile(path).update()`, every point of every tag;
  * keyed read of one tag (the other three noted, not decoded);
  * full read verifying every record's data CRC (C `google_crc32c`/`crc32c` when importable);
  * unchanged: `update()` again on the same, unchanged file (best of 5);
  * append: the reader has read the file up to 1,000 events before its end; the rest is appended
    (as a live writer would flush it) and `update()` is called again;
and, on the same file: TensorBoard's `EventAccumulator(path, size_guidance={"scalars": 0})` (keeps
every point; needs `tensorboard` importable, else skipped) and the read floor `cat file > /dev/null`.
The file is cached in benchmarks/.data/tensorboard/ (or --data). Generating needs tensorboardX in
this interpreter (or --gen-python).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data" / "tensorboard"
TAGS = ("train/loss", "train/acc", "lr", "grad_norm")

GEN = """
import math, sys
from tensorboardX import SummaryWriter
out, n = sys.argv[1], int(sys.argv[2])
w = SummaryWriter(out, max_queue=1000, flush_secs=3600)
for i in range(n):
    w.add_scalar("train/loss", 1.0 / (i + 1), i)
    w.add_scalar("train/acc", i / n, i)
    w.add_scalar("lr", 0.001 * math.cos(i / n), i)
    w.add_scalar("grad_norm", math.sin(i), i)
w.close()
"""

CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
from runwise_mcp.sources import tfevents
from runwise_mcp.sources.tfevents import EventFile
mode, path, cut = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {{}}
if mode == "append":
    with open(path + ".full", "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(cut))
keys = frozenset([mode[6:]]) if mode.startswith("keyed:") else None
ef = EventFile(path, keys=keys, verify=mode == "verify")
t = time.perf_counter(); ef.update(); out["read"] = time.perf_counter() - t
out["records"] = ef.records
out["points"] = sum(len(s) for s, _ in ef.scalars.values())
out["tags"] = len(ef.tags_seen)
out["damage"] = ef.damage.describe()
out["crc"] = "C" if tfevents._C_CRC else "pure Python"
if mode == "unchanged":
    times = []
    for _ in range(5):
        t = time.perf_counter(); changed = ef.update(); times.append(time.perf_counter() - t)
        assert not changed
    out["second"] = min(times)
if mode == "append":
    before = ef.records
    with open(path + ".full", "rb") as src, open(path, "ab") as dst:
        src.seek(cut)
        dst.write(src.read())
    t = time.perf_counter(); ef.update(); out["append"] = time.perf_counter() - t
    out["appended"] = ef.records - before
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

EA_CHILD = """
import json, resource, sys, time
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
t = time.perf_counter()
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
dt = time.perf_counter() - t
points = sum(len(ea.Scalars(tag)) for tag in ea.Tags()["scalars"])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"read": dt, "points": points, "maxrss_mb": rss}))
"""


TOOLS_CHILD = """
import json, os, resource, shutil, sys, time
sys.path.insert(0, {repo!r})
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp import answers
src, work, cut = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = os.path.join(work, "run")
os.makedirs(run)
dst = os.path.join(run, os.path.basename(src))
data = open(src, "rb").read()
open(dst, "wb").write(data[:cut])
ix = RunIndex(load_settings([work], env={{"RUNWISE_CACHE_DIR": "off"}}))
out = {{}}
t = time.perf_counter(); answers.list_runs(ix); out["list_cold"] = time.perf_counter() - t
t = time.perf_counter(); answers.run_summary(ix, "run"); out["summary_cold"] = time.perf_counter() - t
t = time.perf_counter(); answers.run_summary(ix, "run"); out["summary_unchanged"] = time.perf_counter() - t
with open(dst, "ab") as f:
    f.write(data[cut:])
t = time.perf_counter(); r = ix.resolve("run", full=True); out["follow"] = time.perf_counter() - t
out["rows"] = r.history.rows
t = time.perf_counter(); answers.run_summary(ix, "run"); out["summary_after"] = time.perf_counter() - t
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def make_file(data: Path, steps: int, python: str) -> Path:
    target = data / f"tbx{steps}"
    found = min(target.glob("events.out.tfevents.*"), default=None)
    if found is not None:
        return found
    print(f"making a {4 * steps:,}-scalar tensorboardX file (once; cached in {target})...", file=sys.stderr)
    tmp = data / f"tmp{steps}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t = time.time()
    subprocess.run([python, "-c", textwrap.dedent(GEN), str(tmp), str(steps)], check=True)
    print(f"  took {time.time() - t:.0f}s", file=sys.stderr)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return min(target.glob("events.out.tfevents.*"))


def cut_before_last_events(path: Path, events: int) -> int:
    """Byte offset of the record boundary that leaves ``events`` records to append."""
    ends = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 12 <= len(data):
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
        ends.append(pos)
    return ends[-events - 1]


def child(mode: str, path: Path, cut: int = 0) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), mode, str(path), str(cut)],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def timed(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=250_000, help="steps per tag (4 tags)")
    ap.add_argument("--append-events", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=DATA, help="where the generated file is cached")
    ap.add_argument("--gen-python", default=sys.executable, help="an interpreter with tensorboardX")
    ap.add_argument("--ea-python", default=sys.executable, help="an interpreter with tensorboard")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each of our measurements (best kept)")
    ap.add_argument("--no-ea", action="store_true", help="skip EventAccumulator (~18 s per 1M scalars)")
    a = ap.parse_args()
    path = make_file(a.data, a.steps, a.gen_python)
    size = path.stat().st_size

    def best(mode: str, key: str, cut: int = 0, target: Path = path) -> dict:
        runs = [child(mode, target, cut) for _ in range(a.repeat)]
        return min(runs, key=lambda r: r[key])

    full = best("full", "read")
    keyed = best(f"keyed:{TAGS[0]}", "read")
    verify = best("verify", "read")
    unchanged = best("unchanged", "second")

    work = a.data / "append"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    wfile = work / path.name
    shutil.copyfile(path, str(wfile) + ".full")
    cut = cut_before_last_events(path, a.append_events)
    app = best("append", "append", cut, wfile)
    shutil.rmtree(work, ignore_errors=True)
    tool_runs = []
    for _ in range(a.repeat):  # the same file through the index and the tools, as a client asks
        shutil.rmtree(work, ignore_errors=True)
        p = subprocess.run([sys.executable, "-c", TOOLS_CHILD.format(repo=str(REPO)), str(path), str(work), str(cut)],
                           capture_output=True, text=True, check=True)
        tool_runs.append(json.loads(p.stdout))
    shutil.rmtree(work, ignore_errors=True)
    tools = min(tool_runs, key=lambda r: r["summary_cold"])

    cat = min(timed(f"cat '{path}' > /dev/null") for _ in range(3))
    ea = None
    if not a.no_ea:
        p = subprocess.run([a.ea_python, "-c", EA_CHILD, str(path)], capture_output=True, text=True, check=False)
        if p.returncode == 0:
            ea = json.loads(p.stdout)
        else:
            print(f"(EventAccumulator skipped: {p.stderr.strip().splitlines()[-1:]})", file=sys.stderr)

    points = full["points"]
    print(f"\n{points:,} scalars ({len(TAGS)} tags x {a.steps:,} steps, tensorboardX simple_value), "
          f"{full['records']:,} records, {size / 2**20:,.1f} MiB event file\n")
    print("| measurement | time | peak memory |")
    print("|---|---|---|")
    ratio = f" ({full['read'] / ea['read']:.3f}× EventAccumulator)" if ea else ""
    print(f"| runwise: full read, every point | {full['read']:.2f} s{ratio} | {full['maxrss_mb']:.0f} MB RSS |")
    print(f"| runwise: keyed read of one tag ({keyed['points']:,} points; {keyed['tags'] - 1} other tags noted, "
          f"not decoded) | {keyed['read']:.2f} s | {keyed['maxrss_mb']:.0f} MB RSS |")
    print(f"| runwise: full read verifying every data CRC ({verify['crc']} CRC-32C) | {verify['read']:.2f} s "
          f"({verify['read'] / full['read']:.1f}× the full read) | {verify['maxrss_mb']:.0f} MB RSS |")
    print(f"| runwise: update() again, file unchanged | {unchanged['second'] * 1000:.2f} ms | |")
    print(f"| runwise: pick up {app['appended']:,} appended events | {app['append'] * 1000:.1f} ms | |")
    if ea is not None:
        print(f"| TensorBoard EventAccumulator(size_guidance={{'scalars': 0}}) ({ea['points']:,} points) | "
              f"{ea['read']:.2f} s | {ea['maxrss_mb']:.0f} MB RSS |")
    print(f"| cat file > /dev/null (read floor) | {cat:.2f} s | |")
    print(f"\nThrough the tools (index + answers, in one process; the run is the same file, "
          f"{a.append_events:,} events short at first):\n")
    print("| call | time | peak memory |")
    print("|---|---|---|")
    print(f"| list_runs, cold (skim: head and tail of the file) | {tools['list_cold'] * 1000:.0f} ms | |")
    print(f"| run_summary, cold (full read + anomaly checks) | {tools['summary_cold']:.2f} s | |")
    print(f"| run_summary again, file unchanged | {tools['summary_unchanged'] * 1000:.1f} ms | |")
    print(f"| take in {a.append_events:,} appended events (index refresh) | {tools['follow'] * 1000:.1f} ms | |")
    print(f"| run_summary after the append (statistics recomputed) | {tools['summary_after']:.2f} s | "
          f"{tools['maxrss_mb']:.0f} MB RSS (whole process) |")
    if full["damage"] or verify["damage"]:
        print(f"\ndamage reported: {full['damage'] or verify['damage']}")


if __name__ == "__main__":
    main()
