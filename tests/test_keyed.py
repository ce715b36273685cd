"""Keyed reads: a tool that names its keys decodes only those keys of a log not read in full.

The reader check runs over every fixture log and every key; the tool checks compare each answer
from a keyed read with the answer from a full read, byte for byte."""

from __future__ import annotations

import math
import shutil

import pytest
from helpers import REPO, all_logs, log_file

from runwise_mcp import answers
from runwise_mcp.answers.common import UserError
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.sources.wandb_log import WandbLog

ANALYSIS = REPO / "tests" / "fixtures" / "analysis_runs"


def same_column(a, b) -> bool:
    return (list(a.steps) == list(b.steps) and len(a.values) == len(b.values)
            and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values, b.values)))


@pytest.mark.parametrize("path", all_logs(), ids=lambda p: p.parent.name)
def test_keyed_read_decodes_only_its_keys_and_equals_the_full_read(path):
    full = WandbLog(str(path))
    full.update()
    keys = sorted(full.history.columns)
    groups = [[k] for k in keys] + ([keys[:3]] if len(keys) > 3 else [])
    for group in groups:
        kl = WandbLog(str(path), keys=frozenset(group))
        kl.update()
        assert set(kl.history.columns) == set(group), group  # nothing else decoded
        for k in group:
            assert same_column(full.history.columns[k], kl.history.columns[k]), k
        # every row's step is kept, and every other record is read as in a full read
        assert list(kl.history.steps) == list(full.history.steps)
        assert (kl.config, kl.identity, kl.metrics, kl.has_exit, kl.exit_code) == \
            (full.config, full.identity, full.metrics, full.has_exit, full.exit_code)
        assert kl.console.tail() == full.console.tail() and kl.records == full.records


def test_keyed_read_of_a_growing_log_follows_it(tmp_path):
    src = log_file("finished")
    data = src.read_bytes()
    dst = tmp_path / src.name
    dst.write_bytes(data[: len(data) // 3 + 11])  # cut mid-record
    kl = WandbLog(str(dst), keys=frozenset({"train/loss"}))
    kl.update()
    first = len(kl.history.columns["train/loss"])
    with open(dst, "ab") as f:
        f.write(data[len(data) // 3 + 11:])
    kl.update()
    full = WandbLog(str(src))
    full.update()
    assert 0 < first < len(full.history.columns["train/loss"])
    assert same_column(full.history.columns["train/loss"], kl.history.columns["train/loss"])
    assert list(kl.history.steps) == list(full.history.steps)


def test_a_keyed_row_filter_ignores_names_that_only_occur_in_values(tmp_path):
    # "val" occurs in the bytes of rows through "val/acc"; asking for "val" itself (never logged
    # as a key) must decode nothing, and "loss" must not match "val/loss" or "train/loss".
    path = str(next(ANALYSIS.rglob("run-*.wandb")))
    for name in ("val", "loss"):
        kl = WandbLog(path, keys=frozenset({name}))
        kl.update()
        assert kl.history.columns == {}
        assert kl.history.rows > 0


def settings(root, **kw):
    s = load_settings([str(root)], env={"RUNWISE_CACHE_DIR": "off"})
    for k, v in kw.items():
        setattr(s, k, v)
    return s


CALLS = [
    ("get_history", dict(run="A03-overfit", keys=["val/acc", "train/loss"], samples=40)),
    ("get_history", dict(run="A03-overfit", keys="val/loss", samples=500, step_min=300, step_max=700)),
    ("get_history", dict(run="C01-curriculum", keys=["loss"], samples=30)),
    ("history_stats", dict(run="A02-nan", keys=["train/loss", "train/grad_norm"])),
    ("history_stats", dict(run="B01-peaky", keys="val/acc")),
    ("diagnose_run", dict(run="A01-spike", keys=["train/loss"])),
    ("diagnose_run", dict(run="A06-slowdown", keys=["train/loss"])),
    ("diagnose_run", dict(run="A03-overfit", keys=["val/loss", "train/loss"])),
    ("compare_runs", dict(runs=["S00-seed0@499", "S01-seed1@550"], keys=["val/acc", "train/loss"])),
    ("compare_runs", dict(runs=["C01-curriculum@curriculum/stage=2", "C02-curriculum@curriculum/stage=2"],
                          keys=["loss"])),
    ("best_run", dict(metric="val/acc")),
    ("best_run", dict(metric="train/loss", query="group:seed-sweep", by="last")),
    ("aggregate_runs", dict(query="group:seed-sweep", keys=["val/acc", "train/loss"], at="500")),
    ("aggregate_runs", dict(runs=["S00-seed0", "S01-seed1", "S02-seed2"], keys="train/loss")),
]


@pytest.mark.parametrize("tool,args", CALLS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CALLS)])
def test_keyed_answers_equal_full_answers(tool, args):
    full = RunIndex(settings(ANALYSIS, skim_above=0))  # never skims: every log is read in full
    keyed = RunIndex(settings(ANALYSIS, skim_above=1024))  # skims every log: named keys read keyed
    want = getattr(answers, tool)(full, **args)
    got = getattr(answers, tool)(keyed, **args)
    assert got == want
    segs = list(keyed._segments.values())
    assert any(s.in_memory and not s.full for s in segs), "no keyed read happened"
    assert not any(s.full for s in segs), "a log was read in full"


def test_unknown_or_glob_keys_read_in_full_for_exact_hints():
    full = RunIndex(settings(ANALYSIS, skim_above=0))
    keyed = RunIndex(settings(ANALYSIS, skim_above=1024))
    for ix in (full, keyed):
        with pytest.raises(UserError) as e:
            answers.get_history(ix, run="A03-overfit", keys=["val/acc_top1"])
        ix.msg = str(e.value)
    assert keyed.msg == full.msg and "closest: val/acc" in keyed.msg
    out = answers.history_stats(keyed, run="A03-overfit", keys="val/*")
    assert out == answers.history_stats(full, run="A03-overfit", keys="val/*")
    seg = next(s for s in keyed._segments.values() if s.run_id == keyed.resolve("A03-overfit").id)
    assert seg.full  # a glob needs every key: read in full


def test_keyed_read_uses_a_persistent_cache_entry_instead(tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(ANALYSIS / "wandb", root / "wandb", symlinks=True)
    cache = tmp_path / "cache"

    def index() -> RunIndex:
        s = load_settings([str(root)], env={"RUNWISE_CACHE_DIR": str(cache)})
        s.skim_above, s.cache_min_bytes = 1024, 1024
        return RunIndex(s)

    first = index()
    want = answers.get_history(first, run="A01-spike", keys=["train/loss"])
    seg = next(s for s in first._segments.values() if s.in_memory)
    assert not seg.full and first.cache.hits == 0  # keyed: nothing cached
    answers.list_keys(first, run="A01-spike")  # a full read fills the cache
    second = index()
    assert answers.get_history(second, run="A01-spike", keys=["train/loss"]) == want
    seg = next(s for s in second._segments.values() if s.in_memory)
    assert seg.full and second.cache.hits == 1  # loaded whole from the cache, not decoded by key


def test_a_running_background_read_is_waited_for_not_repeated():
    ix = RunIndex(settings(ANALYSIS, skim_above=1024))
    run = ix.resolve("A00-healthy")
    assert run.sampled
    job = ix.read_in_background(run)
    got = ix.read_keys(run, {"train/loss"})
    assert job.finished.is_set() and job.error is None
    assert got.keys_read is None and not got.sampled and len(got.history.columns) > 1


def test_a_failing_keyed_read_falls_back_to_a_full_read(monkeypatch):
    from runwise_mcp.sources.wandb_dir import RunDir

    full = RunIndex(settings(ANALYSIS, skim_above=0))
    want = answers.history_stats(full, run="A04-plateau", keys=["train/acc"])

    def broken(self, names, progress=None):
        raise RuntimeError("reader bug")

    monkeypatch.setattr(RunDir, "read_keys", broken)
    keyed = RunIndex(settings(ANALYSIS, skim_above=1024))
    assert answers.history_stats(keyed, run="A04-plateau", keys=["train/acc"]) == want
    assert any("keyed read of" in p and "reader bug" in p and "read in full" in p for p in keyed.problems())


def test_keyed_reads_count_against_the_memory_budget():
    ix = RunIndex(settings(ANALYSIS, skim_above=1024, cache_mb=0.05))  # ~3,000 points: one keyed run
    runs = {r.name: r for r in ix.runs()}
    a = ix.read_keys(runs["A00-healthy"], ["train/loss"])
    assert a.keys_read == {"train/loss"} and len(a.history.columns["train/loss"]) == 1000
    segs = {s.run_id: s for s in ix._segments.values()}
    assert segs[a.id].in_memory and not segs[a.id].full
    b = ix.read_keys(runs["A01-spike"], ["train/loss"])
    assert segs[b.id].in_memory and not segs[a.id].in_memory  # the older keyed read was dropped
    again = ix.read_keys(runs["A00-healthy"], ["train/loss"])  # read again when asked again
    assert list(again.history.columns["train/loss"].values) == list(a.history.columns["train/loss"].values)


def test_attack_fake_item_inside_a_key_is_not_read_as_the_wanted_key(tmp_path):
    """A keyed read takes a 0.31 row's wanted item where the key's name occurs once in the row,
    after walking the row's items to prove it starts at an item boundary. A key crafted to end
    with the bytes of a `train/loss` item (its host's value then completing that fake item) must
    not give `train/loss` a value at a row that has none: the keyed read equals the full read."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    from test_attacks_scale import hostile_run

    value = "0.5"
    fake_len = 12 + 3 + len(value)  # \x12 \x0a train/loss, \x82\x01 VL, then the host's value
    host_key = "x\n" + chr(fake_len) + "\x12\ntrain/loss"
    recs = []
    for step in (10_000, 10_001):
        r = pb.Record()
        item = r.history.item.add()
        item.nested_key.append(host_key)
        item.value_json = value
        r.history.step.num = step
        recs.append(r.SerializeToString())
    assert b"\n" + bytes([fake_len]) + b"\x12\ntrain/loss\x82\x01\x03" + value.encode() in recs[0]
    path = hostile_run(tmp_path, recs)
    full = WandbLog(str(path))
    full.update(workers=1)
    keyed = WandbLog(str(path), keys=frozenset({"train/loss"}))
    keyed.update(workers=1)
    want, got = full.history.columns["train/loss"], keyed.history.columns["train/loss"]
    assert 10_000 not in list(want.steps)
    assert same_column(want, got) and list(keyed.history.steps) == list(full.history.steps)
    assert host_key in full.history.columns


def test_attack_empty_record_at_the_end_of_a_keyed_read(tmp_path):
    """A keyed read passes summary records over inside the framing loop by peeking at a record's
    first bytes; an empty record (a zero-length chunk) as the last thing in the file has none to
    peek at. The read must go on as a full read does, not fail on the missing byte."""
    from test_attacks import read_records, write_records

    src = log_file("finished")
    path = tmp_path / src.name
    write_records(path, src.read_bytes()[:7], read_records(src) + [b""])
    full = WandbLog(str(path))
    full.update(workers=1)
    keyed = WandbLog(str(path), keys=frozenset({"train/loss"}))
    keyed.update(workers=1)
    assert keyed.records == full.records and keyed.reader.offset == full.reader.offset == path.stat().st_size
    assert same_column(full.history.columns["train/loss"], keyed.history.columns["train/loss"])
