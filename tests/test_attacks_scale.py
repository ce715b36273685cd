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


def hostile_run(root: Path, extra_records, scenario: str = "finished", run_id: str | None = None) -> Path:
    """A copy of a real fixture run under ``root`` whose log gets ``extra_records`` (serialized
    Records, or a function of the original records returning the new list) before its exit
    record; ``run_id`` gives the copy an id (and name) of its own. Returns the .wandb path."""
    src = run_dir(scenario)
    d = root / "wandb" / (src.name if run_id is None else f"offline-run-20261127_125233-{run_id}")
    shutil.copytree(src, d, symlinks=True)
    (log,) = d.glob("run-*.wandb")
    header = log.read_bytes()[:7]
    recs = read_records(log)
    if run_id is not None:
        log = log.rename(d / f"run-{run_id}.wandb")
        for i, raw in enumerate(recs):
            rec = pb.Record.FromString(raw)
            if rec.WhichOneof("record_type") == "run":
                rec.run.run_id, rec.run.display_name = run_id, f"hostile-{run_id}"
                recs[i] = rec.SerializeToString()
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


# ---- item 11: a skim reads a bounded number of bytes ----------------------------------------------


def console_flood(mib: int, line_kib: int = 60) -> list[bytes]:
    """OutputRaw records of ``mib`` MiB: console output and no history row."""
    out = []
    line = ("x" * (line_kib * 1024 - 1)) + "\n"
    for i in range(mib * 1024 // line_kib):
        r = pb.Record()
        r.output_raw.output_type = 1
        r.output_raw.line = line
        out.append(r.SerializeToString())
    return out


def bytes_read() -> int:
    """Bytes this process has read through read(2) so far (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        return int(next(ln for ln in f if ln.startswith("rchar:")).split()[1])


@pytest.fixture(scope="module")
def rowless_tail_log(tmp_path_factory) -> Path:
    """A ~48 MB log: the fixture run's rows, then 40 MiB of console output and no row after."""
    if not Path("/proc/self/io").exists():
        pytest.skip("needs /proc/self/io to count the bytes read")
    root = tmp_path_factory.mktemp("rowless")
    log = hostile_run(root, lambda recs: recs[:-1] + console_flood(40) + recs[-1:])
    return log


@pytest.mark.parametrize("budget", [8 << 20, 2 << 20])
def test_attack_skim_reads_bounded_bytes(rowless_tail_log, monkeypatch, budget):
    """A log whose last 40 MiB hold no history row: the skim used to widen its tail until it
    found rows (up to 128 MiB per log; three 157 MB logs took 13.5 s to list). It now reads
    at most SKIM_READ_BUDGET bytes, counted by the kernel, whatever that budget is set to,
    and says that its sampled tail holds no row."""
    from runwise_mcp.sources import wandb_log

    monkeypatch.setattr(wandb_log, "SKIM_READ_BUDGET", budget)
    assert rowless_tail_log.stat().st_size > 40 << 20
    before = bytes_read()
    sk = wandb_log.skim(str(rowless_tail_log))
    read = bytes_read() - before
    assert read <= budget, (read, budget)
    assert sk.has_exit and sk.identity.get("name") == "R001-finished"  # the head and the tail were read
    assert "no rows in the sampled tail" in sk.skim_note


async def test_attack_skim_rowless_tail_listed_promptly_with_a_note(tmp_path):
    """Three such logs: list_runs answers within 5 s and says on each line that the sampled
    parts hold no last row and that run_summary reads it all; a log with no row at all in its
    sampled parts says that instead of "no history yet"."""
    for i in range(3):
        hostile_run(tmp_path, lambda recs: recs[:-1] + console_flood(24) + recs[-1:], run_id=f"rowless{i}")
    no_rows = hostile_run(tmp_path, lambda recs: [r for r in recs if rec_kind(r) != "history"][:-1] + console_flood(8)
                          + recs[-1:], run_id="norows")
    assert no_rows.stat().st_size > 8 << 20
    async with client_for(tmp_path) as c:
        res, took = await timed_call(c, "list_runs", {})
        out = text(res)
        assert not res.is_error and took < LIVE, (took, out)
        assert out.count("no rows in the sampled tail: the step shown is the last sampled; run_summary reads it all") == 3
        assert "no rows in the sampled parts; run_summary reads it all" in out
        assert "no history yet" not in out
        res = await c.call_tool("run_summary", {"run": "hostile-rowless0"})  # reads it all: the last rows
        assert not res.is_error and "| step 400 |" in text(res).splitlines()[0], text(res)


def rec_kind(raw: bytes) -> str:
    return pb.Record.FromString(raw).WhichOneof("record_type") or ""
