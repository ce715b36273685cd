"""TensorBoard runs through every tool (issue 13): the real writers' event files in
tests/fixtures/tensorboard_runs (made by tests/fixtures/make_tensorboard_runs.py), read through
the same index and answers as W&B runs, checked against what the writers logged (the manifest)
and against tensorboard's own EventAccumulator."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys

import pytest
from helpers import FIXTURES, REPO
from mcp import Client, StdioServerParameters

from runwise_mcp import answers
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.server import build_server

TB = REPO / "tests" / "fixtures" / "tensorboard_runs"
MANIFEST = json.loads((TB / "manifest.json").read_text())["runs"]
HPARAM_DIRS = {k for k, v in MANIFEST.items() if v["hparams"]}  # add_hparams sessions: attached, not runs
RUNS = sorted(k for k in MANIFEST if k not in HPARAM_DIRS)


def f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def expected_points(run: str, tag: str) -> list[tuple[int, float]]:
    spec = MANIFEST[run]["scalars"][tag]
    conv = f32 if spec.get("stored_as", "float32") == "float32" else float
    pts = [(int(s), conv(float(v))) for s, v in spec["points"]]
    return later_file_wins(pts) if MANIFEST[run].get("restart") else pts


def later_file_wins(pts: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Points of a restarted writer (file order) as read here: where the step goes back (the
    second file starts), the first file's points at or after that step are dropped."""
    back = next((i for i in range(1, len(pts)) if pts[i][0] < pts[i - 1][0]), None)
    if back is None:
        return pts
    at = pts[back][0]
    return [p for p in pts[:back] if p[0] < at] + pts[back:]


def last_wall(run_name: str, ix: RunIndex) -> float:
    r = ix.resolve(run_name)
    return r.history.columns["_timestamp"].values[-1]


def index(*roots, clock=None) -> RunIndex:
    settings = load_settings([str(r) for r in roots], env={"RUNWISE_CACHE_DIR": "off"})
    return RunIndex(settings, clock=clock) if clock else RunIndex(settings)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# ---- discovery and logdir semantics ---------------------------------------------------------------


def test_every_run_directory_is_a_run_named_by_its_path():
    ix = index(TB)
    names = sorted(r.name for r in ix.runs())
    assert names == RUNS
    assert all(r.source == "tensorboard" for r in ix.runs())
    assert ix.problems() == []


def test_add_hparams_session_is_the_parent_runs_config():
    ix = index(TB)
    for sub in HPARAM_DIRS:
        parent = sub.rsplit("/", 1)[0]
        r = ix.resolve(parent)
        assert r.config == MANIFEST[sub]["hparams"]  # torch writes bools as numbers: 0 == False
        for metric in MANIFEST[sub]["hparam_metrics"]:
            value = MANIFEST[sub]["scalars"][metric]["points"][-1][1]
            assert r.summary[metric] == pytest.approx(f32(value))
        text = answers.get_config(ix, parent)
        assert f"add_hparams session in {sub.rsplit('/', 1)[1]}/ (attached to this run)" in text
        for k in MANIFEST[sub]["hparams"]:
            assert f"\n{k}: " in text


def test_add_scalars_and_keras_sub_runs_are_grouped_under_their_parent():
    ix = index(TB)
    groups = {r.name: r.group for r in ix.runs()}
    assert groups["tbx_basic/compare/a"] == groups["tbx_basic/compare/b"] == "tbx_basic"
    assert groups["torch_newstyle/compare_a"] == "torch_newstyle"
    assert groups["keras_callback/train"] == groups["keras_callback/validation"] == "keras_callback"
    assert groups["tbx_basic"] == ""
    assert "2 runs" in answers.list_runs(ix, query="group:keras_callback")


# ---- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_every_scalar_equals_what_the_writer_logged(run):
    r = index(TB).resolve(run, full=True)
    tags = MANIFEST[run]["scalars"]
    assert {k for k in r.history.columns if not k.startswith("_")} == set(tags)
    for tag in tags:
        want = expected_points(run, tag)
        steps, values = r.history.series(tag)
        assert list(steps) == [s for s, _ in want], tag
        assert all(same(a, b) for a, (_, b) in zip(values, want)), tag


@pytest.mark.parametrize("run", RUNS)
def test_every_scalar_equals_tensorboards_event_accumulator(run):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_accumulator")
    from tensorboard.util import tensor_util
    acc = ea_mod.EventAccumulator(str(TB / run), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    got: dict[str, list[tuple[int, float]]] = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        got[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto).item()))
                    for e in acc.Tensors(tag)]
    r = index(TB).resolve(run, full=True)
    ours = {k for k in r.history.columns if not k.startswith("_")}
    assert ours == set(got)
    restart = MANIFEST[run].get("restart")
    for tag, pts in got.items():
        if restart:  # EventAccumulator keeps both copies of the restarted steps; the later file wins here
            pts = later_file_wins(pts)
        steps, values = r.history.series(tag)
        assert list(steps) == [s for s, _ in pts], tag
        assert all(same(a, b) for a, (_, b) in zip(values, pts)), tag


def test_non_scalars_are_listed_by_kind_not_decoded():
    ix = index(TB)
    text = answers.list_keys(ix, "torch_newstyle")
    for tag, spec in MANIFEST["torch_newstyle"]["non_scalars"].items():
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(tag.rsplit("/", 1)[-1]))
        assert spec["kind"] in line and f"{len(spec['steps'])} point" in line
    r = ix.resolve("torch_newstyle", full=True)
    assert not set(MANIFEST["torch_newstyle"]["non_scalars"]) & set(r.history.columns)


def test_restarted_writer_later_file_wins_and_says_so():
    ix = index(TB)
    spec = MANIFEST["tbx_restart"]
    text = answers.run_summary(ix, "tbx_restart")
    first, second = (f["name"] for f in spec["files"])
    lo, hi = spec["restart"]["duplicated_steps"]
    assert f"{first} steps {lo}..{hi} ({hi - lo + 1} rows) overridden by a later event file" in text
    assert "source: tensorboard 2 event files (history to 149)" in text
    steps, values = ix.resolve("tbx_restart").history.series("train/loss")
    assert list(steps) == sorted(set(steps))  # one value per step, in order


def test_truncated_last_record_is_not_written_yet():
    ix = index(TB)
    for run in ("tbx_truncated/cut_in_length", "tbx_truncated/cut_in_payload"):
        cut = MANIFEST[run]["truncation"]
        r = ix.resolve(run)
        assert r.last_step == cut["last_complete_step"]
        assert "not written yet" in answers.run_summary(ix, run)
    assert ix.problems() == []  # a torn tail is not damage


# ---- state --------------------------------------------------------------------------------------------


def test_state_is_judged_from_the_last_events_wall_time_not_file_times(tmp_path):
    dst = tmp_path / "tbx_basic"
    shutil.copytree(TB / "tbx_basic", dst)
    wall = last_wall("tbx_basic", index(dst))
    for f in dst.rglob("events.*"):
        os.utime(f, (wall + 10 * 86400, wall + 10 * 86400))  # a copy made 10 days later: fresh mtimes
    running = index(dst, clock=lambda: wall + 30)
    listing = answers.list_runs(running)
    assert "running? last event 30s ago |" in listing.splitlines()[-1]
    assert "TensorBoard records no exit status" in listing.splitlines()[1]  # said once, in the header
    assert answers.run_summary(running, "tbx_basic").startswith(
        "tbx_basic running? last event 30s ago; TensorBoard records no exit status")
    stopped = index(dst, clock=lambda: wall + 3 * 3600)
    assert "stopped (last event 3h00m ago; TensorBoard records no exit status)" in answers.run_summary(
        stopped, "tbx_basic")
    assert "tbx_basic stopped (last event 3h00m ago) |" in answers.list_runs(stopped)
    assert "stopped (last event" in answers.list_runs(stopped, state="killed")


# ---- live and damaged files ---------------------------------------------------------------------------


def test_growing_file_is_followed_reading_only_new_bytes(tmp_path):
    src = next((TB / "tbx_basic").glob("events.*"))
    data = src.read_bytes()
    dst = tmp_path / "live" / src.name
    dst.parent.mkdir()
    dst.write_bytes(data[: len(data) // 2])  # cut inside a record, as a live writer leaves it
    ix = index(tmp_path)
    half = ix.resolve("live")
    n_half = len(half.history.series("train/loss")[0])
    assert 0 < n_half < 200
    part = next(iter(ix._segments.values()))
    ef = part.files[src.name]
    offset = ef.offset
    assert offset <= len(data) // 2
    with open(dst, "ab") as f:
        f.write(data[len(data) // 2:])
    full = ix.resolve("live")
    assert ef is part.files[src.name] and ef.offset == len(data)  # the same reader read on
    steps, values = full.history.series("train/loss")
    want = expected_points("tbx_basic", "train/loss")
    assert list(steps) == [s for s, _ in want]
    assert ix.resolve("live") is full  # unchanged: nothing re-read, the same Run


def test_corrupt_record_in_the_middle_is_skipped_and_reported(tmp_path):
    src = next((TB / "tbx_basic").glob("events.*"))
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 40):
        data[i] ^= 0xFF
    dst = tmp_path / "hurt" / src.name
    dst.parent.mkdir()
    dst.write_bytes(bytes(data))
    ix = index(tmp_path)
    r = ix.resolve("hurt")
    points = sum(len(c) for k, c in r.history.columns.items() if not k.startswith("_"))
    assert 500 < points < 610  # 610 logged: the damaged records are lost, nothing else
    assert r.history.series("train/loss")[0][-1] == 199  # read on past the damage
    assert any(src.name in p and "corrupt" in p for p in ix.problems())


def test_fifo_named_like_an_event_file_is_refused_without_hanging(tmp_path):
    d = tmp_path / "pipe_run"
    d.mkdir()
    os.mkfifo(d / "events.out.tfevents.1700000000.host")
    shutil.copy(next((TB / "tbx_basic").glob("events.*")), d / "events.out.tfevents.1700000001.host")
    ix = index(tmp_path)
    r = ix.resolve("pipe_run")
    assert len(r.history.series("train/loss")[0]) == 200
    assert any("not a regular file" in p for p in ix.problems())


def test_empty_event_file_is_a_run_with_nothing_yet(tmp_path):
    d = tmp_path / "fresh"
    d.mkdir()
    (d / "events.out.tfevents.1700000000.host").write_bytes(b"")
    ix = index(tmp_path)
    assert "fresh" in answers.list_runs(ix)
    text = answers.run_summary(ix, "fresh")
    assert "hold no scalar yet" in text and "no event written yet" in text


# ---- every tool, in-process and over stdio, alone and mixed with W&B ------------------------------------


def test_no_runs_message_names_every_format(tmp_path):
    text = answers.list_runs(index(tmp_path))
    assert text.startswith("No runs found") and "W&B" in text and "TensorBoard event files" in text


TOOL_CALLS = [
    ("list_runs", {}, "all: tensorboard runs"),
    ("list_keys", {"run": "tbx_basic"}, "histogram"),
    ("get_config", {"run": "torch_newstyle"}, "optimizer: sgd"),
    ("run_summary", {"run": "tbx_basic"}, "source: tensorboard events.out.tfevents."),
    ("get_history", {"run": "tbx_basic", "keys": ["train/loss"], "samples": 5}, "step,train/loss"),
    ("history_stats", {"run": "tbx_basic"}, "train/loss: 200 pts 0–199"),
    ("best_run", {"metric": "train/loss"}, "best train/loss (minimize"),
    ("compare_runs", {"runs": ["tbx_basic@100", "torch_newstyle@100"]}, "at step 100"),
    ("aggregate_runs", {"query": "compare", "keys": ["compare"]}, "mean "),
    ("diagnose_run", {"run": "tbx_basic"}, "nan"),
    ("tail_run", {"run": "tbx_basic"}, "latest logged @199"),
    ("sync_runs", {"runs": ["tbx_basic"]}, "applies to W&B runs only"),
]


@pytest.mark.anyio
async def test_every_tool_answers_on_tensorboard_runs_in_process():
    async with Client(build_server(load_settings([str(TB)], env={})), raise_exceptions=True) as c:
        for tool, args, expect in TOOL_CALLS:
            res = await c.call_tool(tool, args)
            body = "\n".join(x.text for x in res.content)
            assert expect in body, (tool, body)
            assert res.is_error == (tool == "sync_runs"), (tool, body)
            assert "No W&B" not in body


@pytest.mark.anyio
async def test_every_tool_answers_on_tensorboard_runs_over_stdio():
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(TB)],
                                   env={"PYTHONPATH": str(REPO)}, cwd=str(REPO))
    async with Client(params) as c:
        for tool, args, expect in TOOL_CALLS:
            res = await c.call_tool(tool, args)
            assert expect in "\n".join(x.text for x in res.content), tool


def test_mixed_sources_list_rank_and_compare_in_one_call():
    ix = index(FIXTURES, TB)
    listing = answers.list_runs(ix, limit=50)
    lines = listing.splitlines()
    assert any(" | tensorboard | " in ln and ln.startswith("tbx_basic ") for ln in lines)
    assert any(" | wandb | " in ln and ln.startswith("R001-finished ") for ln in lines)
    best = answers.best_run(ix, "train/loss", top=50)
    assert "tbx_basic" in best and "R001-finished" in best
    cmp = answers.compare_runs(ix, ["tbx_basic@50", "R001-finished@50"], keys=["train/loss"])
    assert "tbx_basic" in cmp and "R001-finished" in cmp and "at step 50" in cmp
    agg = answers.aggregate_runs(ix, keys=["train/loss"])
    assert "tbx_basic" in agg and "R001-finished" in agg


def test_same_name_in_two_sources_is_told_apart(tmp_path):
    """A TensorBoard run named like a W&B run's name: both listed, each resolvable."""
    wb = tmp_path / "wb"
    shutil.copytree(FIXTURES / "wandb", wb / "wandb", symlinks=True)
    tb = tmp_path / "tb"
    shutil.copytree(TB / "tbx_basic", tb / "R001-finished", ignore=shutil.ignore_patterns("compare", "17*"))
    ix = index(wb, tb)
    named = [r for r in ix.runs() if r.name == "R001-finished"]
    assert sorted(r.source for r in named) == ["tensorboard", "wandb"]
    listing = answers.list_runs(ix, limit=50)
    assert "R001-finished (vtt9wpqc)" in listing  # the repeated name gets its id, as repeated names do
    assert ix.resolve("vtt9wpqc").source == "wandb"
    with pytest.raises(Exception) as e:
        ix.resolve("R001-finished")
    assert "2 runs are named" in str(e.value)
    assert "tensorboard:R001-finished" in listing  # the label that resolves to it alone
    assert ix.resolve("tensorboard:R001-finished").source == "tensorboard"
    assert ix.resolve("wandb:R001-finished").id == "vtt9wpqc"
    with pytest.raises(Exception) as e:
        answers.run_summary(ix, "R001-finished")
    assert "R001-finished (vtt9wpqc)" in str(e.value) and "tensorboard:R001-finished" in str(e.value)


def skimming_index(tmp_path, monkeypatch) -> RunIndex:
    """An index over a copy of torch_sparse_2files (as "big") that skims files over 4 KiB,
    reading 2 KiB of head and of tail."""
    import runwise_mcp.sources.tensorboard as tb

    shutil.copytree(TB / "torch_sparse_2files", tmp_path / "big")
    monkeypatch.setattr(tb, "SKIM_HEAD", 2048)
    monkeypatch.setattr(tb, "SKIM_TAIL", 2048)
    settings = load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})
    settings.skim_above = 4096
    return RunIndex(settings)


def test_large_event_files_are_skimmed_for_lists_and_read_in_full_for_one_run(tmp_path, monkeypatch):
    """A run list reads only the head and tail of a large event file; a tool on the run reads it
    all, and the values are those of a full read."""

    ix = skimming_index(tmp_path, monkeypatch)
    (listed,) = ix.runs()
    steps, _ = listed.history.series("train/loss")
    assert listed.sampled and 0 < len(steps) < 300 and steps[-1] == 299  # head and tail only
    assert "big " in answers.list_runs(ix) and "step 299" in answers.list_runs(ix)
    full = ix.resolve("big", full=True)
    want = expected_points("torch_sparse_2files", "train/loss")
    assert not full.sampled and list(full.history.series("train/loss")[0]) == [s for s, _ in want]
    assert "train/loss: 300 pts 0–299" in answers.history_stats(ix, "big")


def test_memory_budget_evicts_tensorboard_runs_to_skims(tmp_path):
    shutil.copytree(TB / "torch_sparse_2files", tmp_path / "a")
    shutil.copytree(TB / "tbx_basic", tmp_path / "b", ignore=shutil.ignore_patterns("compare", "17*"))
    settings = load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})
    settings.skim_above = 4096
    settings.cache_mb = 0.001  # about 65 points
    ix = RunIndex(settings)
    runs = ix.runs()  # small budget: every run ends up skimmed, and listing does not loop
    assert sorted(r.name for r in runs) == ["a", "b"] and all(r.sampled for r in runs)
    full = ix.resolve("a", full=True)  # one run asked for in full is read in full
    assert len(full.history.series("train/loss")[0]) == 300
    part_a = next(p for p in ix._segments.values() if p.path.endswith(os.sep + "a"))
    assert part_a.in_memory and part_a.points >= 900
    ix.resolve("b", full=True)  # over budget: the least recently used run (a) is evicted
    assert not part_a.in_memory and part_a.evicted
    again = {r.name: r for r in ix.runs()}  # listed from a skim now, without looping
    assert again["a"].sampled and again["a"].last_step == 299
    assert len(ix.resolve("a", full=True).history.series("train/loss")[0]) == 300


def test_skimmed_event_files_are_decoded_outside_the_index_lock(tmp_path, monkeypatch):
    """read_full decodes a skimmed TensorBoard run without holding the index lock (another call
    can take the lock meanwhile) and installs the readers under it."""
    import threading

    import runwise_mcp.sources.tensorboard as tb

    ix = skimming_index(tmp_path, monkeypatch)
    (listed,) = ix.runs()
    part = next(iter(ix._segments.values()))
    took_lock: list[bool] = []
    real = tb.EventFile.update

    def update(self, progress=None):  # while a full decode runs, try the index lock from another thread
        t = threading.Thread(target=lambda: took_lock.append(ix._lock.acquire(timeout=2) and not ix._lock.release()))
        t.start()
        t.join()
        return real(self, progress)

    monkeypatch.setattr(tb.EventFile, "update", update)
    full = ix.read_full(listed)
    assert took_lock and all(took_lock)  # the lock was free during the decode
    assert not part.skimmed and len(full.history.series("train/loss")[0]) == 300
