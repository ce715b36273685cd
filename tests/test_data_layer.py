"""Issue 16, correctness in the data layer (items 1, 2, 7-10), each on real runs: the fixtures and
examples written by the real wandb, copied, touched, linked and re-laid out the way users do."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from helpers import EXAMPLES, leet_last_time
from mcp import Client

from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server

pytestmark = pytest.mark.anyio


def client_for(*roots: Path) -> Client:
    return Client(build_server(load_settings([str(r) for r in roots], env={"RUNWISE_CACHE_DIR": "off"})),
                  raise_exceptions=True)


def text(res) -> str:
    return "\n".join(c.text for c in res.content)


def touch_all(root: Path, when: float) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)


# ---- item 2: liveness from the log's own clock ---------------------------------------------------


async def test_killed_example_reads_killed_right_after_a_clone(tmp_path):
    """A clone (or scp, rsync without -t) gives every file the time of the copy. The bundled
    killed example still reads as killed: judged from the times inside its log, the basis said."""
    shutil.copytree(EXAMPLES / "wandb", tmp_path / "wandb", symlinks=True)
    touch_all(tmp_path, time.time())
    (killed,) = (tmp_path / "wandb").glob("offline-run-*-oqeqwz4h")
    (log,) = killed.glob("run-*.wandb")
    age_days = (time.time() - leet_last_time(log)) / 86400
    async with client_for(tmp_path) as c:
        listing = text(await c.call_tool("list_runs", {}))
        summary = text(await c.call_tool("run_summary", {"run": "R004-long"}))
        killed_only = text(await c.call_tool("list_runs", {"state": "killed"}))
    line = next(ln for ln in listing.splitlines() if ln.startswith("R004-long "))
    assert line.startswith("R004-long killed? no exit record, last log record "), line
    assert "running" not in line and "R004-long" in killed_only
    assert summary.startswith("R004-long (oqeqwz4h) killed? no exit record, last log record ")
    if age_days > 1:  # the example was written days before this test ran
        assert f"last log record {age_days:.1f}d ago" in line or f"last log record {age_days:.0f}d ago" in line


async def test_a_copied_run_without_times_in_its_log_falls_back_to_file_times(tmp_path):
    """A run whose only data is files/output.log (no .wandb, no timestamps) is judged from file
    times, and says so ("nothing written for")."""
    src = next((EXAMPLES / "wandb").glob("offline-run-*-oqeqwz4h"))
    dst = tmp_path / "wandb" / src.name
    (dst / "files").mkdir(parents=True)
    shutil.copy(src / "files" / "output.log", dst / "files" / "output.log")
    touch_all(tmp_path, time.time() - 7200)
    async with client_for(tmp_path) as c:
        listing = text(await c.call_tool("list_runs", {}))
    assert "killed? " in listing and "nothing written for 2h" in listing, listing
