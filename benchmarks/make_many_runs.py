#!/usr/bin/env python3
"""Make a project with many runs for the list_runs benchmark: a few real wandb 0.31 runs (offline)
as templates, then copies with distinct ids: the id is rewritten in the directory name, the log's
file name and every record (same length, CRCs recomputed), so each copy is a run of its own.

    python benchmarks/make_many_runs.py [--runs 1000]   # writes benchmarks/.data/many<N>/
"""

from __future__ import annotations

import argparse
import random
import shutil
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data"
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

from make_wandb_runs import framing_rewrite  # noqa: E402

TEMPLATE = """
import math, os, random, sys
os.environ["WANDB_MODE"] = "offline"; os.environ["WANDB_SILENT"] = "true"
import wandb
k = int(sys.argv[1]); steps = int(sys.argv[2])
random.seed(k)
run = wandb.init(project="many", name=f"T{k}", group=f"g{k % 2}", tags=["bench"],
                 config={"lr": 10 ** -(3 + k / 4), "seed": k, "model": {"width": 128 * (k + 1)}})
for i in range(steps):
    d = {"train/loss": 3 / (1 + i / 100) + 0.02 * random.random(), "train/acc": min(0.99, i / steps),
         "train/lr": 1e-3 * (1 - i / steps)}
    if i % 50 == 49:
        d["val/loss"] = d["train/loss"] + 0.1
        d["val/acc"] = min(0.99, i / steps - 0.05)
    run.log(d, step=i)
if k == 3:
    raise SystemExit(1)  # one template crashed
run.finish()
"""


def make(n: int, templates: int = 4, steps: int = 2000) -> Path:
    out = DATA / f"many{n}"
    if (out / "wandb").exists() and len(list((out / "wandb").glob("*-run-*"))) == n:
        return out
    work = Path(tempfile.mkdtemp(prefix="many-"))
    try:
        (work / "t.py").write_text(textwrap.dedent(TEMPLATE))
        for k in range(templates):
            subprocess.run([sys.executable, "t.py", str(k), str(steps)], cwd=work, check=k != 3,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.1)
        runs = sorted(p for p in (work / "wandb").glob("offline-run-*") if p.is_dir())
        shutil.rmtree(out, ignore_errors=True)
        (out / "wandb").mkdir(parents=True)
        rng = random.Random(0)
        alphabet = string.ascii_lowercase + string.digits
        for i in range(n):
            src = runs[i % len(runs)]
            old_id = src.name.rsplit("-", 1)[1]
            new_id = "".join(rng.choice(alphabet) for _ in old_id)
            stamp = f"2026{1 + i // 400 % 12:02d}{1 + i // 14 % 28:02d}_{i // 60 % 24:02d}{i % 60:02d}00"
            dst = out / "wandb" / f"offline-run-{stamp}-{new_id}"
            shutil.copytree(src, dst, symlinks=True)
            log = dst / f"run-{old_id}.wandb"
            framing_rewrite(log, lambda b, o=old_id.encode(), nw=new_id.encode(): b.replace(o, nw))
            log.rename(dst / f"run-{new_id}.wandb")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    print(make(ap.parse_args().runs))
