"""Large logs: run lists skim them (head, tail, sampled blocks); tools on one run read it in full;
fully read histories are held within a memory budget, least recently used evicted first."""

from __future__ import annotations

import math

import pytest
from helpers import FIXTURES, all_logs

from runwise_mcp import answers
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.sources.wandb_log import WandbLog, skim


@pytest.mark.parametrize("path", all_logs(), ids=lambda p: p.name)
def test_skim_agrees_with_full_read(path):
    full = WandbLog(str(path))
    full.update()
    sk = skim(str(path), head=4096, tail=8192, blocks=3)  # tiny windows: force sampling
    assert sk.sampled and sk.identity == full.identity and sk.run_id == full.run_id
    assert (sk.has_exit, sk.exit_code) == (full.has_exit, full.exit_code)
    assert sk.history.last_step == full.history.last_step  # the last row is always read
    steps = list(sk.history.steps)
    assert steps == sorted(set(steps)) and set(steps) <= set(full.history.steps)
    for name, col in sk.history.columns.items():  # every sampled value is the true value
        truth = dict(zip(full.history.columns[name].steps, full.history.columns[name].values))
        for s, v in zip(col.steps, col.values):
            assert v == truth[s] or (math.isnan(v) and math.isnan(truth[s]))


def settings(**kw):
    s = load_settings([str(FIXTURES)], env={})
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_index_skims_large_logs_until_a_tool_reads_one():
    ix = RunIndex(settings(skim_above=20_000))
    runs = {r.name: r for r in ix.runs()}
    assert runs["R001-finished"].sampled and not runs["R006-typed"].sampled  # 434 kB vs 16 kB
    assert runs["R001-finished"].last_step == 400 and runs["R001-finished"].state.state == "finished"
    listing = answers.list_runs(ix)
    assert "\nR001-finished finished | " in listing and "step 400" in listing
    keys = answers.list_keys(ix, "R001-finished")  # needs every point: reads the log in full
    assert "400 pts" in keys and "(1 NaN)" in keys
    assert not {r.name: r for r in ix.runs()}["R001-finished"].sampled


def test_memory_budget_evicts_least_recently_used():
    ix = RunIndex(settings(cache_mb=0.03))  # ~2,000 points
    ix.runs()
    a = ix.resolve("R001-finished", full=True)
    assert not a.sampled and a.history.rows == 401
    b = ix.resolve("R004-killed", full=True)
    assert not b.sampled
    segs = {s.run_id: s for s in ix._segments.values()}
    assert not segs[a.id].full and segs[a.id].evicted  # older, evicted for memory
    assert segs[b.id].full
    listed = {r.name: r for r in ix.runs()}
    assert listed["R001-finished"].sampled and listed["R001-finished"].last_step == 400
    again = ix.resolve("R001-finished", full=True)  # read again on demand, same answer
    assert again.history.rows == 401 and not again.sampled
