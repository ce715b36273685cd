"""The pure analysis functions on plain values: parsing, key roles, sampling, robust statistics."""

from __future__ import annotations

import math
import random
import statistics
from array import array

import pytest

from runwise_mcp.analysis.anomalies import Thresholds, _kth_deviation, check_nonfinite, check_spikes
from runwise_mcp.analysis.compare import delta, parse_entry, parse_step
from runwise_mcp.analysis.sampling import sample_join
from runwise_mcp.analysis.select import KeyRole, goal_from_name, pick_keys
from runwise_mcp.analysis.stats import series_stats, tail_slope, theil_sen, value_at


@pytest.mark.parametrize("text,step", [("50000", 50000), ("50,000", 50000), ("50k", 50000), ("1.2M", 1200000),
                                       ("86_000", 86000), ("0.5k", 500), ("2B", 2_000_000_000)])
def test_parse_step(text, step):
    assert parse_step(text) == step


@pytest.mark.parametrize("text", ["", "k", "soon", "1e5x", "-5"])
def test_parse_step_rejects(text):
    assert parse_step(text) is None


def test_parse_entry_forms():
    assert (parse_entry("R008A").ref, parse_entry("R008A").step) == ("R008A", None)
    p = parse_entry("R008A@50k")
    assert (p.ref, p.step) == ("R008A", 50000)
    p = parse_entry("run@with@at@1.2M")
    assert (p.ref, p.step) == ("run@with@at", 1200000)
    p = parse_entry("R1@stage:2")
    assert (p.stage_key, p.stage) == (None, 2.0)
    p = parse_entry("R1@curriculum/stage=3")
    assert (p.stage_key, p.stage) == ("curriculum/stage", 3.0)
    for bad in ("@5", "R1@stage:x", "R1@=3", "R1@soon"):
        with pytest.raises(ValueError):
            parse_entry(bad)


@pytest.mark.parametrize("key,split,dataset,kind", [
    ("train/loss", "train", "", "loss"),
    ("loss", "", "", "loss"),
    ("eval_loss", "val", "", "loss"),
    ("val/loss", "val", "", "loss"),
    ("val_proteometools/token_accuracy", "val", "proteometools", "acc"),
    ("val_nine_species/token_accuracy", "val", "nine_species", "acc"),
    ("test/f1", "test", "", "acc"),
    ("train/token_accuracy", "train", "", "acc"),
    ("learning_rate", "", "", "lr"),
    ("train/lr", "train", "", "lr"),
    ("optim/grad_norm", "", "", "grad_norm"),
    ("perf/samples_per_s", "", "", "throughput"),
    ("curriculum/stage", "", "", "stage"),
    ("eval/ppl", "val", "", "loss"),
    ("tokens", "", "", "other"),
])
def test_key_roles(key, split, dataset, kind):
    r = KeyRole(key)
    assert (r.split, r.dataset, r.kind) == (split, dataset, kind)


@pytest.mark.parametrize("key,goal", [("train/loss", "minimize"), ("val/perplexity", "minimize"),
                                      ("eval/wer", "minimize"), ("val/acc", "maximize"), ("test/f1", "maximize"),
                                      ("val/auc", "maximize"), ("bleu", "maximize"), ("episode_reward", "maximize"),
                                      ("precision", "maximize"), ("score", ""), ("tokens", "")])
def test_goal_from_name(key, goal):
    assert goal_from_name(key) == goal


def test_pick_keys_exact_case_glob_and_closest():
    avail = ["train/loss", "val/loss", "val/acc", "Train/LR"]
    assert pick_keys(["val/*", "train/lr", "train/loss"], avail) == (["val/acc", "val/loss", "Train/LR", "train/loss"], [])
    found, unknown = pick_keys(["val/accuracy"], avail)
    assert found == [] and unknown[0][0] == "val/accuracy" and unknown[0][1][0] == "val/acc"


def test_kth_deviation_is_the_median_absolute_deviation():
    rng = random.Random(3)
    for _ in range(200):
        w = rng.choice([8, 9, 20, 50, 51])
        xs = sorted(rng.gauss(0, 1) * rng.choice([1, 100]) for _ in range(w))
        half = w // 2
        brute = sorted(abs(x - xs[half]) for x in xs)[half]
        assert _kth_deviation(xs, half, half) == brute


def test_no_spikes_in_plain_noise_and_one_in_a_spiked_series():
    rng = random.Random(0)
    ys = array("d", (1.0 + 0.05 * rng.gauss(0, 1) for _ in range(20000)))
    steps = array("q", range(len(ys)))
    assert check_spikes("loss", steps, ys, Thresholds()) == []
    ys[12345] = 3.0
    found = check_spikes("loss", steps, ys, Thresholds())
    assert [f.step for f in found] == [12345] and found[0].data["recovered"]


def test_nonfinite_first_step_and_recovery():
    steps = array("q", range(10))
    f = check_nonfinite("x", steps, array("d", [1, 2, math.inf, 3, math.nan, 4, 5, 6, 7, 8]))
    assert (f.step, f.data["kind"], f.data["nan"], f.data["inf"], f.data["recovered_at"]) == (2, "inf", 1, 1, 5)
    assert check_nonfinite("x", steps, array("d", range(10))) is None
    assert check_nonfinite("x", steps, array("d", [1e308] * 10)) is None  # the sum overflows; values are finite


def test_sample_join_keeps_extremes_nan_and_sparse_points():
    n = 100_000
    steps = array("q", range(n))
    dense = array("d", (math.sin(i / 500) for i in range(n)))
    dense[31_337] = 50.0
    dense[77_777] = math.nan
    sparse_steps = array("q", range(999, n, 5000))
    sparse = array("d", (float(i) for i in range(len(sparse_steps))))
    s = sample_join({"a": (steps, dense), "v": (sparse_steps, sparse)}, 60)
    assert len(s.steps) <= 60 and s.buckets > 0
    assert 31_337 in s.steps and 77_777 in s.steps and s.steps[0] == 0 and s.steps[-1] == n - 1
    kept_v = [s.steps[i] for i, v in enumerate(s.cells["v"]) if v is not None]
    assert kept_v == list(sparse_steps) and s.kept["v"] == s.points["v"] == len(sparse_steps)
    assert s.cells["a"][s.steps.index(31_337)] == 50.0
    many_steps = array("q", range(0, n, n // 70))  # 70 validation points: all kept in 100 rows
    s = sample_join({"a": (steps, dense), "v": (many_steps, array("d", [1.0] * len(many_steps)))}, 100)
    assert len(s.steps) <= 100 and s.kept["v"] == len(many_steps) and 31_337 in s.steps
    whole = sample_join({"v": (sparse_steps, sparse)}, 100)
    assert whole.buckets == 0 and whole.steps == list(sparse_steps)


def test_series_stats_fast_and_slow_paths_agree():
    rng = random.Random(1)
    vals = [rng.uniform(-5, 5) for _ in range(1000)]
    steps = array("q", range(0, 2000, 2))
    a = series_stats(steps, array("d", vals))
    with_nan = array("d", vals + [math.nan])
    b = series_stats(array("q", list(steps) + [2000]), with_nan)
    assert (a.min, a.min_step, a.max, a.max_step) == (b.min, b.min_step, b.max, b.max_step)
    assert a.mean == pytest.approx(statistics.fmean(vals)) and b.mean == pytest.approx(a.mean)
    assert b.nan == 1 and a.nan == 0 and b.last != b.last and b.last_finite == vals[-1]


def test_slopes_and_value_at():
    xs = list(range(0, 1000))
    ys = [3.0 - 0.002 * x for x in xs]
    ys[500] = 100.0  # an outlier moves least squares, not Theil–Sen
    assert theil_sen(xs, ys) == pytest.approx(-0.002)
    assert tail_slope(xs, ys) == pytest.approx(-0.002)
    assert value_at(array("q", [10, 20, 30]), array("d", [1, 2, 3]), 25) == (20, 2.0)
    assert value_at(array("q", [10, 20, 30]), array("d", [1, 2, 3]), 5) is None


def test_delta_units():
    assert delta(0.312, 0.330, True) == ("pp", pytest.approx(1.8))
    assert delta(2.0, 2.5, False) == ("%", 25.0)
    assert delta(0.0, 0.001, False) == ("abs", 0.001)
    assert delta(None, 1.0, False) is None and delta(1.0, math.nan, False) is None
