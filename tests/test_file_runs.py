"""Runs that are just files: HF Trainer output directories, Lightning and Keras CSVLogger files,
JSON-lines metric logs (fixtures written by the real producers: tests/fixtures/make_file_runs.py;
ground truth in tests/fixtures/file_runs/manifest.json)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time

import pytest
from helpers import FIXTURES, REPO
from mcp import Client

from runwise_mcp import answers
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex, RunNotFound
from runwise_mcp.server import build_server

FR = REPO / "tests" / "fixtures" / "file_runs"
TB = REPO / "tests" / "fixtures" / "tensorboard_runs"
MAN = json.loads((FR / "manifest.json").read_text())
RUN_NAMES = {"hf/out", "lightning/demo/version_0", "lightning/demo/version_1", "keras/training", "jsonl/metrics"}


def index(*roots, clock=None) -> RunIndex:
    settings = load_settings([str(r) for r in roots], env={"RUNWISE_CACHE_DIR": "off"})
    return RunIndex(settings, clock=clock) if clock else RunIndex(settings)


def text(res) -> str:
    return "\n".join(c.text for c in res.content)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def series(run, key):
    steps, values = run.history.series(key)
    return list(steps), list(values)


# ---- discovery and names --------------------------------------------------------------------------


def test_every_fixture_is_one_run_and_nothing_else():
    runs = index(FR).runs()
    assert {r.name for r in runs} == RUN_NAMES
    assert {r.name: r.source for r in runs} == {
        "hf/out": "hf_trainer", "lightning/demo/version_0": "lightning", "lightning/demo/version_1": "lightning",
        "keras/training": "metric_log", "jsonl/metrics": "metric_log"}
    # checkpoint-N folders are part of the output directory, not runs
    assert not any("checkpoint" in r.name for r in runs)


def test_suffix_resolution_on_path_component_boundaries():
    ix = index(FR)
    assert ix.resolve("demo/version_0").name == "lightning/demo/version_0"
    assert ix.resolve("lightning/demo/version_1").name == "lightning/demo/version_1"
    assert ix.resolve("training").name == "keras/training"
    assert ix.resolve("metrics").name == "jsonl/metrics"
    assert ix.resolve("out").name == "hf/out"
    with pytest.raises(RunNotFound) as e:  # ends two run paths
        ix.resolve("version_0x")
    with pytest.raises(RunNotFound) as e:
        ix.resolve("emo/version_0")  # not on a component boundary
    assert "no run matches" in str(e.value.reason)


def test_ambiguous_suffix_names_the_candidates(tmp_path):
    shutil.copytree(FR / "lightning", tmp_path / "a" / "lightning")
    shutil.copytree(FR / "lightning", tmp_path / "b" / "lightning")
    ix = index(tmp_path)
    with pytest.raises(RunNotFound) as e:
        ix.resolve("version_0")
    assert "pass more of the path" in e.value.reason and len(e.value.candidates) == 2
    assert ix.resolve("a/lightning/demo/version_0").name == "a/lightning/demo/version_0"


def test_wandb_resolution_unchanged_next_to_file_runs():
    ix = index(FIXTURES, FR)
    assert ix.resolve("R001-finished").source == "wandb"


# ---- HF Trainer ------------------------------------------------------------------------------------


def test_hf_trainer_history_summary_config_state_against_manifest():
    m = MAN["hf/out"]
    run = index(FR).resolve("hf/out", full=True)
    # the manifest's log_history goes on past save_state() with the final evaluate() (eval_results.json)
    cut = next(i for i, e in enumerate(m["log_history"]) if "train_runtime" in e) + 1
    saved = m["log_history"][:cut]
    assert m["log_history"][cut:] == [m["eval_results"] | {"step": m["global_step"]}]
    train = [e for e in saved if "loss" in e]
    evals = [e for e in saved if "eval_loss" in e]
    final = [e for e in saved if "train_runtime" in e]
    assert train and evals and len(final) == 1
    for key in ("loss", "grad_norm", "learning_rate"):
        steps, values = series(run, key)
        assert steps == [e["step"] for e in train]
        assert all(close(a, e[key]) for a, e in zip(values, train))
    steps, values = series(run, "eval_loss")
    assert steps == [e["step"] for e in evals] and all(close(a, e["eval_loss"]) for a, e in zip(values, evals))
    # the final summary entry is the summary, not history, and means finished
    for k, v in final[0].items():
        if k != "step":
            assert k not in run.history.columns or k in ("epoch",)
    assert run.state.state == "finished" and "final summary entry" in run.state.basis
    s = run.summary
    assert s["global_step"] == m["global_step"] and s["max_steps"] == m["max_steps"]
    assert close(s["best_metric"], m["best_metric"])
    assert s["best_model_checkpoint"].endswith(m["best_model_checkpoint"].split("/")[-1])
    assert close(s["train_runtime"], m["train_results"]["train_runtime"])
    assert close(s["eval_loss"], m["eval_results"]["eval_loss"])
    assert s["progress"].startswith(f"{m['global_step']:,}/{m['max_steps']:,}")
    for k, v in m["config"].items():
        assert run.config["model"][k] == v
    assert run.config["trainer"]["logging_steps"] == 2
    assert sorted(os.listdir(FR / "hf" / "out")).count("checkpoint-4") == 1
    assert m["checkpoints"] == ["checkpoint-4", "checkpoint-12"]


def test_hf_checkpoints_only_newest_state_and_named(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(FR / "hf" / "out", out)
    for n in ("trainer_state.json", "all_results.json", "train_results.json", "eval_results.json"):
        (out / n).unlink()
    (out / "training_args.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'touch PWNED'\ntR.")  # never unpickled
    run = index(tmp_path).resolve("out", full=True)
    assert run.state.state != "finished" and "no final summary entry" in run.state.basis
    src = answers.run_summary(index(tmp_path), "out")
    assert "checkpoint-12/trainer_state.json" in src
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")
    m = MAN["hf/out"]
    assert run.history.last_step == 12 and run.summary["global_step"] == m["global_step"]


# ---- Lightning ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lightning/demo/version_0", "lightning/demo/version_1"])
def test_lightning_csv_against_manifest(name):
    m = MAN[name]
    run = index(FR).resolve(name, full=True)
    assert run.config == m["hparams"]
    assert run.group == "lightning/demo"
    step_rows = [r for r in m["logged"] if r["kind"] == "step" and "train_loss_step" in r]
    steps, values = series(run, "train_loss_step")
    # logged every log_every_n_steps=2: the CSV holds every second step's value (step = global_step - 1)
    logged = {r["step"] - 1: r["train_loss_step"] for r in step_rows}
    assert steps and all(close(v, logged[s]) for s, v in zip(steps, values))
    epochs = [r for r in m["logged"] if r["kind"] == "epoch"]
    steps, values = series(run, "train_loss_epoch")
    assert len(values) == len(epochs) == m["max_epochs"]
    assert all(math.isclose(v, e["train_loss_epoch"], rel_tol=1e-6) for v, e in zip(values, epochs))
    _, vals = series(run, "val_loss")
    assert all(math.isclose(v, e["val_loss"], rel_tol=1e-6) for v, e in zip(vals, epochs))
    assert math.isclose(run.summary["val_loss"], m["callback_metrics"]["val_loss"], rel_tol=1e-6)
    assert run.state.stopped and "CSV logs record no exit status" in run.state.basis


def test_lightning_header_rewrite_is_followed(tmp_path):
    d = tmp_path / "lightning_logs" / "version_0"
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text("epoch,loss,step\n0,1.0,0\n0,0.9,1\n")
    ix = index(tmp_path)
    assert ix.resolve("version_0", full=True).history.last_step == 1
    time.sleep(0.01)
    (d / "metrics.csv").write_text("acc,epoch,loss,step\n,0,1.0,0\n,0,0.9,1\n0.5,0,,1\n0.7,1,0.8,2\n")
    os.utime(d / "metrics.csv", (time.time() + 5, time.time() + 5))
    run = ix.resolve("version_0", full=True)
    assert series(run, "acc") == ([1, 2], [0.5, 0.7]) and series(run, "loss")[1] == [1.0, 0.9, 0.8]


# ---- Keras / JSONL -------------------------------------------------------------------------------------


def test_keras_csv_epoch_axis_against_manifest():
    m = MAN["keras/training.log"]
    ix = index(FR)
    run = ix.resolve("keras/training", full=True)
    for key, values in m["history"].items():
        steps, got = series(run, key)
        assert steps == list(range(len(values)))
        assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, values))
    assert "x axis = epoch" in answers.run_summary(ix, "keras/training")


def test_jsonl_against_manifest_and_strings_kept():
    rows = MAN["jsonl/metrics.jsonl"]["rows"]
    run = index(FR).resolve("jsonl/metrics", full=True)
    for key in ("loss", "lr", "val_loss"):
        steps, values = series(run, key)
        want = [(r["step"], r[key]) for r in rows if key in r]
        assert list(zip(steps, values)) == want
    assert run.history.other["phase"].count == len(rows) and run.history.other["phase"].last == "train"


def test_fairseq_numeric_strings_coerced(tmp_path):
    lines = [{"epoch": 1, "num_updates": "10", "loss": "3.097", "clip": "100%", "lr": "0.0005"},
             {"epoch": 1, "num_updates": "20", "loss": "2.5", "clip": "50%", "lr": "0.0004"}]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = index(tmp_path).resolve("train_log", full=True)
    assert series(run, "loss") == ([10, 20], [3.097, 2.5]) and series(run, "clip")[1] == [100.0, 50.0]


def test_growing_jsonl_is_read_incrementally(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 0, "loss": 1}\n{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    ix = index(tmp_path)
    assert ix.resolve("m", full=True).history.last_step == 1
    with open(p, "a") as f:
        f.write('ss": 0.25}\n')
    os.utime(p, (time.time() + 5, time.time() + 5))
    assert series(ix.resolve("m", full=True), "loss") == ([0, 1, 2], [1.0, 0.5, 0.25])


def test_jsonl_replaced_by_a_longer_file_is_read_again(tmp_path):
    """Another file put at the path (a rerun's log, renamed into place), longer than what was
    read: its rows alone, not the old rows plus the new file's bytes after the old read position."""
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n" for i in range(5)))
    ix = index(tmp_path)
    assert series(ix.resolve("m", full=True), "loss")[0] == [0, 1, 2, 3, 4]
    new = tmp_path / "m.new"
    new.write_text("".join(json.dumps({"step": 100 + i, "loss": 2.0 + i}) + "\n" for i in range(8)))
    os.replace(new, p)
    os.utime(p, (time.time() + 5, time.time() + 5))
    assert series(ix.resolve("m", full=True), "loss") == ([100 + i for i in range(8)], [2.0 + i for i in range(8)])


@pytest.mark.parametrize("where", ["first line", "last line read"])
def test_jsonl_rewritten_in_place_with_the_same_size_is_read_again(tmp_path, where):
    """The file rewritten in place (same inode, same size): other bytes in its first line or just
    before the read position make it read again from the start."""
    p = tmp_path / "m.jsonl"
    rows = [{"step": i, "loss": 0.5 + i} for i in range(6)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ix = index(tmp_path)
    assert series(ix.resolve("m", full=True), "loss")[1] == [0.5 + i for i in range(6)]
    changed = 0 if where == "first line" else 5
    rows[changed]["loss"] = 7.5  # as many characters as 0.5 + i
    with open(p, "r+") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    os.utime(p, (time.time() + 5, time.time() + 5))
    want = [0.5 + i for i in range(6)]
    want[changed] = 7.5
    assert series(ix.resolve("m", full=True), "loss") == (list(range(6)), want)


# ---- state ------------------------------------------------------------------------------------------------


def test_state_from_mtime_with_basis(tmp_path):
    shutil.copytree(FR / "keras", tmp_path / "keras")
    old = time.time() - 3 * 3600
    os.utime(tmp_path / "keras" / "training.log", (old, old))
    out = answers.run_summary(index(tmp_path), "training")
    assert "stopped (last write 3h" in out and "CSV logs record no exit status" in out


# ---- no false runs --------------------------------------------------------------------------------------


def make_decoys(root):
    data = root / "data"
    data.mkdir(parents=True)
    (data / "iris.csv").write_text("sepal_length,sepal_width,species\n5.1,3.5,setosa\n4.9,3.0,setosa\n")
    (data / "prices.csv").write_text("date,price\n2024-01-01,3.5\n2024-01-02,3.6\n")
    (data / "labels.csv").write_text("epoch,label\n0,cat\n1,dog\n")  # a step-like column, text values
    (data / "steps.csv").write_text("step,name\n3,a\n1,b\n")
    (root / "requirements.txt").write_text("torch==2.1\nnumpy\n")
    (root / "config.json").write_text(json.dumps({"epoch": 10, "lr": 0.1, "model": "bert"}, indent=2))
    (root / "settings.json").write_text(json.dumps({"step": 1, "lr": 0.1}) + "\n")  # one line: a config
    (root / "events.jsonl").write_text('{"user": "a", "action": "click"}\n{"user": "b", "action": "view"}\n')
    (root / "notes.txt").write_text("epoch,loss\nthis is prose, not a log\n")
    (root / "pip.log").write_text("Collecting torch\n  Downloading torch-2.1.whl (600 MB)\nSuccessfully installed\n")


def test_decoys_are_not_runs(tmp_path):
    make_decoys(tmp_path)
    assert index(tmp_path).runs() == []


def test_files_inside_wandb_runs_are_not_read_as_file_runs(tmp_path):
    shutil.copytree(FIXTURES / "wandb", tmp_path / "wandb", symlinks=True)
    for d in (tmp_path / "wandb").iterdir():
        if d.is_dir() and (d / "files").is_dir():
            (d / "files" / "metrics.jsonl").write_text('{"step": 0, "loss": 1}\n{"step": 1, "loss": 0.5}\n')
    runs = index(tmp_path).runs()
    assert runs and all(r.source == "wandb" for r in runs)


# ---- every tool through the MCP client, alone and mixed ------------------------------------------------


TOOL_CALLS = [
    ("list_runs", {}, "hf/out"),
    ("list_keys", {"run": "jsonl/metrics"}, "phase"),
    ("get_config", {"run": "demo/version_0"}, "lr: 0.05"),
    ("get_config", {"run": "hf/out"}, "model.hidden_size: 16"),
    ("run_summary", {"run": "hf/out"}, "global_step 12 of max_steps 12 (100%), best_metric 0.693908 (checkpoint-4)"),
    ("run_summary", {"run": "keras/training"}, "x axis = epoch"),
    ("get_history", {"run": "jsonl/metrics", "keys": ["loss"], "samples": 5}, "step,loss"),
    ("history_stats", {"run": "keras/training"}, "loss"),
    ("best_run", {"metric": "val_loss"}, "best val_loss"),
    ("compare_runs", {"runs": ["demo/version_0", "demo/version_1"]}, "version_1"),
    ("aggregate_runs", {"query": "version", "keys": ["val_loss"]}, "mean "),
    ("diagnose_run", {"run": "hf/out"}, "hf/out"),
    ("tail_run", {"run": "jsonl/metrics"}, "190"),
    ("sync_runs", {"runs": ["hf/out"]}, "applies to W&B runs only"),
]


@pytest.mark.anyio
async def test_every_tool_answers_on_file_runs_in_process():
    async with Client(build_server(load_settings([str(FR)], env={})), raise_exceptions=True) as c:
        for tool, args, expect in TOOL_CALLS:
            res = await c.call_tool(tool, args)
            body = text(res)
            assert expect in body, (tool, body)
            assert res.is_error == (tool == "sync_runs"), (tool, body)
            assert "No W&B" not in body
        for name in sorted(RUN_NAMES):
            for tool in ("run_summary", "list_keys", "get_config", "get_history", "history_stats", "diagnose_run",
                         "tail_run"):
                res = await c.call_tool(tool, {"run": name})
                assert not res.is_error, (tool, name, text(res))


@pytest.mark.anyio
async def test_mixed_with_wandb_and_tensorboard_rank_and_compare():
    async with Client(build_server(load_settings([str(FIXTURES), str(TB), str(FR)], env={})),
                      raise_exceptions=True) as c:
        listing = text(await c.call_tool("list_runs", {"limit": 100}))
        assert "R001-finished" in listing and "tbx_basic" in listing and "demo/version_0" in listing
        best = text(await c.call_tool("best_run", {"metric": "loss", "top": 50}))
        assert "jsonl/metrics" in best and "keras/training" in best and "hf/out" in best
        cmp = text(await c.call_tool("compare_runs", {"runs": ["R001-finished", "tbx_basic", "hf/out",
                                                                "keras/training"]}))
        for n in ("R001-finished", "tbx_basic", "hf/out", "keras/training"):
            assert n in cmp


def test_no_machine_paths_in_fixtures():
    for dirpath, _, files in os.walk(FR):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                data = fh.read()
            for bad in (b"/tmp/", b"/home/", b"/work/", b"/root/", b"/Users/"):
                assert bad not in data, (f, bad)


def test_sources_include_makes_any_file_a_metric_log_candidate_and_exclude_skips(tmp_path):
    """[sources] include globs reach the metric-log reader (any file name; JSON lines or CSV),
    exclude works for every source (a JSONL log, a Lightning version, an HF output dir)."""
    src = FR / "jsonl" / "metrics.jsonl"
    (tmp_path / "exp" / "a").mkdir(parents=True)
    shutil.copy(src, tmp_path / "exp" / "a" / "metrics.txt")  # JSON lines under a name no default takes
    rows = MAN["jsonl/metrics.jsonl"]["rows"]
    keys = ["step", "loss", "lr"]
    (tmp_path / "exp" / "b").mkdir()
    (tmp_path / "exp" / "b" / "log.dat").write_text(
        ",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows if "loss" in r))
    (tmp_path / "exp" / "c").mkdir()
    shutil.copy(src, tmp_path / "exp" / "c" / "notes.txt")  # included by no glob: not a run
    shutil.copytree(FR / "lightning", tmp_path / "lightning")
    shutil.copytree(FR / "hf", tmp_path / "hf")
    (tmp_path / "scratch").mkdir()
    shutil.copy(src, tmp_path / "scratch" / "old.jsonl")
    before = sorted(r.id for r in index(tmp_path).runs())
    assert "scratch/old" in before and "lightning/demo/version_1" in before and "exp/a/metrics" not in before
    (tmp_path / "runwise.toml").write_text('[sources]\ninclude = ["exp/a/metrics.txt", "exp/**/*.dat", '
                                           '"lightning/**/metrics.csv"]\n'
                                           'exclude = ["scratch/**", "lightning/demo/version_1", "hf"]\n')
    s = load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})
    assert s.config_problems == []
    ix = RunIndex(s)
    got = sorted((r.source, r.id) for r in ix.runs())
    assert got == [("lightning", "lightning/demo/version_0"), ("metric_log", "exp/a/metrics"),
                   ("metric_log", "exp/b/log")]
    run = ix.resolve("exp/a/metrics", full=True)
    assert series(run, "loss") == ([r["step"] for r in rows if "loss" in r], [r["loss"] for r in rows if "loss" in r])
    run = ix.resolve("exp/b/log", full=True)
    assert series(run, "lr") == ([r["step"] for r in rows if "loss" in r], [r["lr"] for r in rows if "loss" in r])
    assert "x axis = step" in answers.run_summary(ix, "exp/b/log")


def _hf_in_progress(tmp_path, checkpoints, ages):
    """An HF output directory as it is while training: the real checkpoint state files only
    (no final trainer_state.json), each saved ``age`` seconds ago."""
    out = tmp_path / "hf_live"
    now = time.time()
    for c, age in zip(checkpoints, ages):
        shutil.copytree(FR / "hf" / "out" / c, out / c)
        os.utime(out / c / "trainer_state.json", (now - age, now - age))
    return out, now


def test_hf_progress_without_rate_in_tail_run(tmp_path):
    out, now = _hf_in_progress(tmp_path, ["checkpoint-4"], [5])
    st = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    ix = index(tmp_path, clock=lambda: now)
    tail = answers.tail_run(ix, "hf_live")
    gs, ms = st["global_step"], st["max_steps"]
    assert gs < ms
    assert f"progress: step {gs:,} of {ms:,} ({100 * gs / ms:.0f}%, max_steps in checkpoint-4/trainer_state.json)" in tail
    assert "no rate to give an ETA" in tail


def test_hf_rate_from_checkpoint_saves_and_eta_in_tail_run(tmp_path):
    out, now = _hf_in_progress(tmp_path, ["checkpoint-4", "checkpoint-12"], [45, 5])
    ix = index(tmp_path, clock=lambda: now)
    tail = answers.tail_run(ix, "hf_live")
    st = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    rate = (12 - 4) / 40
    assert f"speed: {rate:.3g} steps/s over checkpoint saves checkpoint-4 to checkpoint-12 (file times)" in tail
    assert st["global_step"] == st["max_steps"]
    assert f"total {st['max_steps']:,} (max_steps in checkpoint-12/trainer_state.json) reached" in tail
    # the ETA: the newest save at step 4 of 12. The fixture has no save before step 4, so the real
    # checkpoint-4 state is copied in as checkpoint-2 to stand for one (only its name and file time
    # are used for the rate: 2 steps in 20 s)
    (out / "checkpoint-12").rename(tmp_path / "gone")
    shutil.copytree(FR / "hf" / "out" / "checkpoint-4", out / "checkpoint-2")
    os.utime(out / "checkpoint-2" / "trainer_state.json", (now - 25, now - 25))
    os.utime(out / "checkpoint-4" / "trainer_state.json", (now - 5, now - 5))
    tail = answers.tail_run(index(tmp_path, clock=lambda: now), "hf_live")
    assert "speed: 0.1 steps/s over checkpoint saves checkpoint-2 to checkpoint-4" in tail
    assert "ETA 80s to step 12 (max_steps in checkpoint-4/trainer_state.json)" in tail


def _history_of(run):
    h = run.history
    return list(h.steps), {k: (list(c.steps), list(c.values)) for k, c in h.columns.items()}


@pytest.mark.parametrize("rel", ["lightning/demo/version_0/metrics.csv", "keras/training.log"])
def test_growing_csv_is_read_incrementally(tmp_path, rel):
    """A CSV log growing (cut at any byte, mid-line included) is parsed only in its new bytes,
    and each state equals a fresh read of the same bytes."""
    from runwise_mcp.sources.lightning_csv import LightningRun
    from runwise_mcp.sources.metric_logs import MetricLogRun

    blob = (FR / rel).read_bytes()
    lightning = rel.startswith("lightning")
    d = tmp_path / ("version_0" if lightning else "k")
    d.mkdir()
    target = d / os.path.basename(rel)
    make = (lambda: LightningRun(str(d), str(tmp_path))) if lightning else \
        (lambda: MetricLogRun(str(target), str(tmp_path)))
    target.write_bytes(blob[: blob.index(b"\n") + 1])
    grow = make()
    grow.refresh()
    cut = blob.index(b"\n") + 1
    step = max(1, len(blob) // 9)
    while cut < len(blob):
        cut = min(len(blob), cut + step)
        target.write_bytes(blob[:cut])
        grow.keys = {}  # changed (mtime may not tick between writes)
        grow.refresh()
        fresh = make()
        fresh.refresh()
        assert _history_of(grow) == _history_of(fresh)
        assert grow._csv.offset == blob[:cut].rfind(b"\n") + 1
    assert grow._csv.resets == 0 and grow._csv.reads >= 2
    full = make()
    full.refresh()
    assert _history_of(grow) == _history_of(full) and full.history.rows > 0


def test_rewritten_csv_is_read_again(tmp_path):
    """A rewrite with a new header (Lightning, when a key appears) or other bytes before the read
    position (a file replaced by one of the same size or longer) is read again from the start."""
    from runwise_mcp.sources.lightning_csv import LightningRun

    d = tmp_path / "version_0"
    d.mkdir()
    src = (FR / "lightning/demo/version_0/metrics.csv").read_bytes()
    head, body = src.split(b"\n", 1)
    (d / "metrics.csv").write_bytes(src)
    run = LightningRun(str(d), str(tmp_path))
    run.refresh()
    before = _history_of(run)
    other = (FR / "lightning/demo/version_1/metrics.csv").read_bytes()
    (d / "metrics.csv").write_bytes(other)
    run.keys = {}
    run.refresh()
    fresh = LightningRun(str(d), str(tmp_path))
    fresh.refresh()
    assert _history_of(run) == _history_of(fresh) != before and run._csv.resets == 1


def test_jsonl_state_from_the_last_timestamp_it_records(tmp_path):
    """A log whose rows carry epoch seconds is judged by its last one, not by the file's mtime."""
    t0 = time.time() - 3 * 3600 - 20 * 60
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1 / (i + 1), "timestamp": t0 + i})
                                              + "\n" for i in range(10)))
    ix = index(tmp_path)
    r = ix.resolve("m", full=True)
    assert r.state.state == "killed" and r.state.stopped and r.state.clock == "timestamp"
    assert r.state.basis == "JSONL logs record no exit status; judged from the last timestamp in the log"
    assert r.state.last_write == t0 + 9
    assert re.search(r"stopped \(last timestamp 3h\d+m ago; JSONL logs", answers.run_summary(ix, "m"))
