"""Issue 16, items 3-5, on real wandb runs: trend words that agree across tools, diagnose_run on
what field use showed (A07-field: a loss spike with a grad-norm spike at the same step, grad norm
growing exponentially from a known step, a constant learning rate, two validation sets), and
tail_run's speed and latest eval values. Expected values come from the generator's manifest."""

from __future__ import annotations

import json
import math
import re

import pytest
from helpers import REPO
from mcp import Client

from runwise_mcp.analysis.sampling import bucket_means
from runwise_mcp.analysis.stats import MIN_RATE_ROWS, MIN_RATE_SPAN, wall_rate
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.render.text import SPARK, sparkline
from runwise_mcp.server import build_server

pytestmark = pytest.mark.anyio

ROOT = REPO / "tests" / "fixtures" / "analysis_runs"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
RUNS = REPO / "tests" / "fixtures" / "wandb_runs"
RUNS_MANIFEST = json.loads((RUNS / "manifest.json").read_text())
FIELD = MANIFEST["A07-field"]["truth"]


async def call(tool: str, root=ROOT, **args) -> str:
    async with Client(build_server(load_settings([str(root)], env={})), raise_exceptions=True) as c:
        res = await c.call_tool(tool, args)
    text = "\n".join(x.text for x in res.content)
    assert not res.is_error, text
    return text


def line_with(text: str, *needles: str) -> str:
    hits = [ln for ln in text.splitlines() if all(n in ln for n in needles)]
    assert len(hits) == 1, (needles, text)
    return hits[0]


def num(text: str) -> float:
    return float(text.replace(",", ""))


def pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def index(root=ROOT) -> RunIndex:
    return RunIndex(load_settings([str(root)], env={"RUNWISE_CACHE_DIR": "off"}))


# ---- 3. trend words ------------------------------------------------------------------------------


async def test_list_runs_arrow_is_the_recent_trend_and_agrees_with_diagnose():
    listing = await call("list_runs", limit=50)
    arrows = {}
    for name in MANIFEST:
        line = line_with(listing, f"{name} ")
        m = re.search(r" ([↑↓→]) ", line)
        assert m, line
        arrows[name] = m.group(1)
    # a loss flat since step 220 of 1,000 (diagnose: plateau) is flat now, though it fell before
    diag = await call("diagnose_run", run="A04-plateau")
    assert "plateau: train/loss flat since" in diag
    assert arrows["A04-plateau"] == "→"
    assert arrows["A05-diverge"] == "↑"  # rising since step 400
    assert arrows["A00-healthy"] == "↓"  # 3 / (1 + i / 50) still falls 25% over its last quarter
    for name, arrow in arrows.items():  # no run that diagnose calls a plateau has a moving arrow
        summary = await call("run_summary", run=name)
        main = summary.splitlines()[2] if summary.splitlines()[1].startswith("notes") else summary.splitlines()[1]
        key = main.split(" ")[0]
        if f"{key} plateau since" in summary:
            assert arrow == "→", (name, summary)


async def test_run_summary_arrow_is_flat_on_a_plateau_and_for_a_constant():
    out = await call("run_summary", run="A04-plateau")
    line = next(ln for ln in out.splitlines() if ln.startswith("train/loss "))
    assert line.split(" ")[2].endswith("→"), line
    field = await call("run_summary", run="A07-field")
    lr = re.search(r"train/lr (\S+) (\S+)", field)
    assert num(lr.group(1)) == FIELD["lr"]
    assert lr.group(2).endswith("→") and len(set(lr.group(2)[:-1])) == 1, field  # flat sparkline


def test_a_constant_draws_flat_when_its_bucket_means_differ_in_the_last_bits():
    col = index().resolve("A07-field", full=True).history.columns["train/lr"]
    assert set(col.values) == {FIELD["lr"]}
    # uneven buckets of the real values: their means differ by rounding for some lengths
    means = next((m for n in range(600, len(col.values)) if len(set(m := bucket_means(col.values[:n], 6))) > 1), None)
    assert means is not None
    assert sparkline(means) == SPARK[3] * 6
    assert len(set(sparkline([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))) == 6  # a real change still draws


# ---- 4. diagnose_run ------------------------------------------------------------------------------


async def test_diagnose_reports_the_grad_norm_spike_at_the_loss_spike_step():
    out = await call("diagnose_run", run="A07-field")
    grad = line_with(out, "spike: train/grad_norm")
    m = re.search(r"train/grad_norm ([\d.,]+) @([\d,]+) \(([\d.]+)× the median ([\d.]+) of the (\d+) points before", grad)
    assert m, grad
    assert num(m.group(1)) == pytest.approx(FIELD["grad_spike"], rel=1e-3)
    assert int(num(m.group(2))) == FIELD["spike_step"]
    assert num(m.group(4)) == pytest.approx(FIELD["grad_base"], rel=0.05)
    assert "same step as the train/loss spike" in grad and "recovered" in grad
    loss = line_with(out, "spike: train/loss")
    assert f"@{FIELD['spike_step']} " in loss
    summary = await call("run_summary", run="A07-field")
    assert f"spike 8× @{FIELD['spike_step']}, recovered (with train/grad_norm " in line_with(summary, "anomalies:") or \
        "(with train/grad_norm " in line_with(summary, "anomalies:")


async def test_diagnose_dates_exponential_grad_growth_at_its_onset():
    out = await call("diagnose_run", run="A07-field")
    grad = line_with(out, "grad norm: train/grad_norm exploding")
    step = int(num(re.search(r"from ~([\d,]+)", grad).group(1)))
    assert abs(step - FIELD["growth_from_step"]) <= 15, grad
    # the late threshold crossing (10x the early norm) would be ~230 steps later
    crossing = FIELD["growth_from_step"] + math.log(10) / math.log(FIELD["grad_growth_per_step"])
    assert step < crossing - 150


async def test_diagnose_says_what_its_counts_and_values_are():
    for name in MANIFEST:
        out = await call("diagnose_run", run=name)
        assert not re.search(r"\d pts\b", out), out  # no bare "26 pts"
        assert "window median" not in out


# ---- 5. tail_run ----------------------------------------------------------------------------------


async def test_head_has_every_validation_set_at_the_latest_eval_step():
    last_eval = FIELD["eval_steps"][-1]
    want = {key: pct(eval(formula, {"math": math, "i": last_eval})) for key, formula in FIELD["val_sets"].items()}
    tail = await call("tail_run", run="A07-field")
    line = next((ln for ln in tail.splitlines()[:3] if ln.startswith("latest eval @")), None)
    assert line and line.startswith(f"latest eval @{last_eval:,}: "), tail
    for key, v in want.items():
        assert f"{key} {v}" in line, (key, line)
    summary = await call("run_summary", run="A07-field")
    head = summary.splitlines()[:3]  # the header, the notes, then the validation sets
    line = next((ln for ln in head if all(k.split("/")[0][4:] in ln for k in want)), None)
    assert line, summary
    for key, v in want.items():  # each set: its value at the latest eval step
        assert f"{key.split('/')[0][4:]} {v} @{last_eval:,}" in line, (key, line)


def test_tail_run_speed_is_measured_over_a_real_window():
    from runwise_mcp import answers

    ix = RunIndex(load_settings([str(RUNS)], env={}))
    out = answers.tail_run(ix, "R004-killed", lines=0)
    speed = line_with(out, "speed: ")
    m = re.search(r"speed: ([\d.,]+) steps/s over the last ([\d.]+)s \(([\d,]+) rows\) of _timestamp", speed)
    assert m, speed
    # R004 sleeps 0.01 s a step: at most 100 steps/s, and measured over seconds, not a burst
    assert 10 < num(m.group(1)) <= 100
    assert num(m.group(2)) >= MIN_RATE_SPAN and num(m.group(3)) >= MIN_RATE_ROWS


def test_a_rate_from_too_few_rows_or_seconds_is_unknown():
    r = index(RUNS).resolve("R004-killed", full=True)
    ts = r.history.columns["_timestamp"]
    rate, dt, rows = wall_rate(ts.steps[-3:], ts.values[-3:])  # the last three real rows
    assert rate is None and rows == 3 and dt < MIN_RATE_SPAN
    rate, dt, rows = wall_rate(ts.steps, ts.values)
    assert rate is not None and rate * dt == pytest.approx(ts.steps[-1] - ts.steps[-1 - (rows - 1)])
    # a clock that jumps back (a restart) ends the stretch: only rows after it count
    vals = list(ts.values)
    k = len(vals) - 5
    vals[k - 1] = vals[k] + 100.0
    rate, dt, rows = wall_rate(ts.steps, vals)
    assert rows == 5 and rate is None


def test_a_resumed_run_is_timed_over_its_last_segment_only():
    r = index(RUNS).resolve("R005-resumed", full=True)
    assert len(r.segments) == 2
    ts = r.history.columns["_timestamp"]
    seg0 = r.segments[-1].first_step
    rate, dt, rows = wall_rate(ts.steps, ts.values, first_step=seg0)
    assert rows == sum(1 for s in ts.steps if s >= seg0)  # not the rows of the first segment
    whole = wall_rate(ts.steps, ts.values)
    assert whole[2] == len(ts.steps) and whole[1] > dt  # across the resume: the pause counted too
