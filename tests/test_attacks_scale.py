"""Issue 19, scale attacks (items 8, 10, 11): logs with huge key counts, huge summaries, many
console streams, and large logs whose sampled parts hold no rows. Each test is named after the
attack it stops and runs it on a real fixture run made hostile by the test: records are built
with wandb's own protobuf classes and framed as wandb frames them.

Bounds are generous (an answer within 5 s, peak memory in hundreds of MB) so that a slow CI
machine does not fail them; the attacks they stop took minutes or gigabytes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import run_dir
from test_attacks import LIVE, client_for, read_records, text, timed_call, write_records

pytestmark = pytest.mark.anyio

pb = pytest.importorskip("wandb.proto.wandb_internal_pb2", reason="wandb is not installed (pip install -e '.[test]')")


def hostile_run(root: Path, extra_records, scenario: str = "finished", name: str | None = None) -> Path:
    """A copy of a real fixture run under ``root`` whose log gets ``extra_records`` (serialized
    Records, or a function of the original records returning the new list) before its exit
    record. Returns the .wandb path."""
    src = run_dir(scenario)
    d = root / "wandb" / (name or src.name)
    shutil.copytree(src, d, symlinks=True)
    (log,) = d.glob("run-*.wandb")
    header = log.read_bytes()[:7]
    recs = read_records(log)
    if callable(extra_records):
        recs = extra_records(recs)
    else:
        recs = recs[:-1] + list(extra_records) + recs[-1:]
    write_records(log, header, recs)
    return log


def media_rows(keys: int, per_row: int = 100, first_step: int = 10_000, field_first: bool = False) -> list[bytes]:
    """Rows logging ``keys`` distinct media objects (`m<i>._type`, `m<i>.path`), each row
    mirrored into the summary just before it, as 0.31 writes them. ``field_first``: the `path`
    item comes before the `_type` item that makes it a media field."""
    out = []
    for r in range(keys // per_row):
        h, s = pb.Record(), pb.Record()
        h.history.step.num = first_step + r
        for i in range(r * per_row, (r + 1) * per_row):
            fields = [("_type", '"image-file"'), ("path", f'"media/images/m{i}.png"')]
            for field, val in (fields[::-1] if field_first else fields):
                it = h.history.item.add()
                it.nested_key.extend([f"m{i}", field])
                it.value_json = val
                su = s.summary.update.add()
                su.nested_key.extend([f"m{i}", field])
                su.value_json = val
        out += [s.SerializeToString(), h.SerializeToString()]
    return out


# ---- item 8: decoding is linear in the number of keys -------------------------------------------


async def test_attack_40000_keys_decode_linearly(tmp_path):
    """40,000 distinct media keys (the reported log took 54 s, growing with the square of the
    key count: each new media object walked every key, and the summary fold walked every
    summary key for each object). Every tool on the run answers within 5 s; the media
    objects are still regrouped, also when a field comes before its `_type` item."""
    rows = media_rows(40_000, field_first=True)[:2] + media_rows(40_000)[2:]
    hostile_run(tmp_path, rows)
    async with client_for(tmp_path) as c:
        for tool, args in [("list_runs", {}), ("run_summary", {"run": "R001"}), ("list_keys", {"run": "R001"}),
                           ("list_keys", {"run": "R001", "pattern": "m0"}), ("get_history", {"run": "R001"})]:
            res, took = await timed_call(c, tool, args)
            assert not res.is_error, (tool, text(res))
            assert took < LIVE, (tool, took)
        keys = text(await c.call_tool("list_keys", {"run": "R001", "pattern": "m1"}))
    # m0..m99 came path-first, the rest _type-first: both regrouped into one image-file object
    assert "\n  m1 " in keys and "image-file, 1 point @10,000" in keys
    assert "m1.path" not in keys and "m1._type" not in keys


def test_attack_40000_keys_summary_fold_is_linear(tmp_path):
    """The summary fold alone, with dict values that drop the keys below them: twice the keys
    take about twice the time (not four times), and a removal still drops a nested key."""
    from runwise_mcp.sources.wandb_log import WandbLog

    def timed(n: int, sub: str) -> float:
        log = hostile_run(tmp_path / sub, media_rows(n))
        t0 = time.monotonic()
        w = WandbLog(str(log))
        w.update()
        s = w.summary()
        took = time.monotonic() - t0
        assert f"m{n - 1}" in s and s[f"m{n - 1}"]["_type"] == "image-file"
        return took

    small, large = timed(10_000, "a"), timed(40_000, "b")
    assert large < LIVE
    assert large < 12 * small + 0.5, (small, large)  # quadratic was 16x
