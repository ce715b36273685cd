"""Follow a real wandb run while it trains: the index sees it running and growing, then finished.

Uses the real `wandb` (offline, log flushed every second) in a subprocess, like a user's trainer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import wandb_cli

from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.model import FINISHED, RUNNING
from runwise_mcp.sources.wandb_log import iter_history

pytestmark = pytest.mark.skipif(wandb_cli() is None, reason="wandb is not installed (pip install -e '.[test]')")

TRAINER = """
import math, os, time
import wandb
run = wandb.init(project="live", name="live-run", mode="offline", config={"lr": 0.1})
for i in range(120):
    run.log({"train/loss": 1.0 / (i + 1), "train/acc": i / 120}, step=i)
    time.sleep(0.05)
run.finish()
"""


def test_follow_a_live_run(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAINER))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL": "1", "WANDB_DISABLE_GIT": "true"}
    proc = subprocess.Popen([sys.executable, "train.py"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ix = RunIndex(load_settings([str(tmp_path)], env={}))
    seen: list[tuple[str, int]] = []
    deadline = time.time() + 120
    try:
        while proc.poll() is None and time.time() < deadline:
            runs = ix.runs()
            if runs:
                seen.append((runs[0].state.state, runs[0].history.rows))
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.wait() == 0
    (run,) = ix.runs()
    assert run.name == "live-run" and run.state.state == FINISHED and run.history.rows == 120
    # while training: running, with a row count that only grew and was partial at some point
    running_rows = [rows for state, rows in seen if state == RUNNING]
    assert running_rows and any(0 < r < 120 for r in running_rows)
    assert running_rows == sorted(running_rows)
    # the incrementally read history equals a fresh read of the finished file
    seg = next(iter(ix._segments.values()))
    fresh = iter_history(seg.log.path)
    assert [s for s, _ in fresh] == list(run.history.steps)
    assert [r["train/loss"] for _, r in fresh] == list(run.history.series("train/loss")[1])
