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
    """Decoding and the summary fold alone, with dict values (media objects) that drop the
    keys below them: four times the keys take about four times the time (not sixteen)."""
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

    small, large = timed(4_000, "a"), timed(16_000, "b")  # under the per-run key cap
    assert large < LIVE
    assert large < 10 * small + 0.5, (small, large)  # quadratic was 16x


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


# ---- item 10: RUNWISE_CACHE_MB bounds what stays in memory ----------------------------------------


def _len(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def unique_key_rows(rows: int, per_row: int, first_step: int = 10_000) -> list[bytes]:
    """History records (built byte by byte: a million items through the protobuf classes take
    minutes) in which every item has a key never seen before: HistoryRecord {1 item {1 key,
    16 value_json}, 2 step {1 num}}."""
    out = []
    n = 0
    for r in range(rows):
        items = []
        for _ in range(per_row):
            items.append(_field(0x0A, _field(0x0A, b"k%x" % n) + b"\x82\x01" + _field(0, b"1")[1:]))
            n += 1
        step = _field(0x12, b"\x08" + _len(first_step + r))
        out.append(_field(0x12, b"".join(items) + step))
    return out


PEAK_CHILD = """
import asyncio, json, sys
from mcp import Client
from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server

root, env, calls = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def hwm():  # peak RSS of this process image, MB (ru_maxrss would include the parent's before exec)
    with open("/proc/self/status") as f:
        return int(next(ln for ln in f if ln.startswith("VmHWM:")).split()[1]) / 1024

async def main():
    async with Client(build_server(load_settings([root], env={"RUNWISE_CACHE_DIR": "off", **env})),
                      raise_exceptions=True) as c:
        base = hwm()
        answers = []
        for tool, args in [["list_runs", {}]] + calls:
            res = await c.call_tool(tool, args)
            answers.append("\\n".join(x.text for x in res.content))
        peak = hwm()
        print(json.dumps({"growth_mb": peak - base, "peak_mb": peak, "answers": answers[1:]}))

asyncio.run(main())
"""


def peak_memory(root: Path, calls: list, env: dict | None = None) -> dict:
    """Run list_runs and ``calls`` on a server over ``root`` in a fresh interpreter (Linux): its
    peak RSS growth over the state before them, and the answers to ``calls``."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (VmHWM) to measure the peak")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK_CHILD), str(root), json.dumps(env or {}),
                          json.dumps(calls)], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)


def test_attack_million_unique_keys_memory_bounded(tmp_path):
    """A 17 MB log with a million unique keys (peaked at 809 MB): history keys are capped per
    run (HISTORY_KEY_CAP), further keys counted and named in a note, and the peak stays small."""
    from runwise_mcp.sources.wandb_log import HISTORY_KEY_CAP

    rows = unique_key_rows(1000, 1000)
    assert pb.Record.FromString(rows[0]).history.item[5].key == "k5"  # what wandb's classes read
    log = hostile_run(tmp_path, rows)
    assert log.stat().st_size > 13 << 20
    got = peak_memory(tmp_path, [["run_summary", {"run": "R001"}], ["list_keys", {"run": "R001", "pattern": "k1"}]])
    summary, keys = got["answers"]
    assert got["growth_mb"] < 250, got["growth_mb"]
    assert f"more keys not kept: over the per-run cap of {HISTORY_KEY_CAP:,}" in summary, summary
    assert "k1 " in keys and "k1000 " in keys  # the first keys are kept


def huge_summary(mib: int) -> bytes:
    """A SummaryRecord of one key whose value is a JSON list of ``mib`` MiB of numbers."""
    r = pb.Record()
    it = r.summary.update.add()
    it.key = "eval/predictions"
    it.value_json = "[" + ",".join(["0.123456"] * (mib * 1024 * 1024 // 9)) + "]"
    return r.SerializeToString()


def test_attack_huge_summaries_memory_bounded(tmp_path):
    """Four runs with 28 MB summaries read in full with RUNWISE_CACHE_MB=64 (peaked at 1.27
    GB): a summary value over the per-value cap is kept as a note of its size, the answers
    say so, and the peak stays small."""
    big = huge_summary(28)
    for i in range(4):
        hostile_run(tmp_path, [big], run_id=f"bigsum{i}")
    calls = [["run_summary", {"run": f"hostile-bigsum{i}"}] for i in range(4)]
    calls.append(["get_config", {"run": "hostile-bigsum0"}])
    got = peak_memory(tmp_path, calls, env={"RUNWISE_CACHE_MB": "64"})
    assert got["growth_mb"] < 300, got["growth_mb"]
    assert all("summary value(s) not kept" in a for a in got["answers"][:4]), got["answers"][0]


def test_attack_many_console_streams_memory_bounded(tmp_path):
    """Output records on 40,000 distinct console streams, each an unfinished 2 KiB line (300k
    streams peaked at 1.5 GB: every stream kept its pending line). Streams beyond the first
    CONSOLE_STREAMS are counted, not kept."""
    recs = []
    line = "y" * 2048
    for i in range(40_000):
        r = pb.Record()
        r.output_raw.output_type = 2 + i
        r.output_raw.line = line
        recs.append(r.SerializeToString())
    log = hostile_run(tmp_path, recs)
    assert log.stat().st_size > 75 << 20
    got = peak_memory(tmp_path, [["run_summary", {"run": "R001"}], ["tail_run", {"run": "R001"}]])
    assert got["growth_mb"] < 60, got["growth_mb"]
    assert "39,993 console record(s) of streams beyond the first 8 not kept" in got["answers"][0], got["answers"][0]


def test_attack_kept_structures_count_in_the_budget(tmp_path):
    """The memory budget counts what a read log keeps besides history points (keys, summary,
    values, console): logs holding only a large summary are evicted when the budget is small."""
    from runwise_mcp.config import load_settings
    from runwise_mcp.index import RunIndex

    big = huge_summary(1)  # under the per-value cap: kept
    for i in range(4):
        hostile_run(tmp_path, [big] * 1, run_id=f"sum{i}")
    index = RunIndex(load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off", "RUNWISE_CACHE_MB": "6"}))
    for run in index.runs():
        index.read_full(run)
    held = [s for s in index._segments.values() if s.in_memory]
    assert 1 <= len(held) < 4, len(held)  # points alone (a few thousand) never filled 6 MB
    assert sum(s.points for s in held) * 16 <= 6 << 20 or len(held) == 1
