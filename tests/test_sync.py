"""sync_runs on the real fixtures: status, export (checked against wandb's own decoder), in-place
export that never overwrites, upload through the real wandb CLI, bad input; and the "missing data
explains itself" messages of the other tools."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import FIXTURES, leet_records, log_file, run_dir, same_value, wandb_cli
from mcp import Client
from test_crosscheck_leet import flat

from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server
from runwise_mcp.wandb_sync import safe_name

pytestmark = pytest.mark.anyio


def client(root) -> Client:
    return Client(build_server(load_settings([str(root)], env={})), raise_exceptions=True)


async def call(root, tool="sync_runs", progress=None, **args) -> str:
    async with client(root) as c:
        res = await c.call_tool(tool, args, progress_callback=progress)
    text = "\n".join(x.text for x in res.content)
    assert not res.is_error, text
    return text


async def call_error(root, tool="sync_runs", **args) -> str:
    async with client(root) as c:
        res = await c.call_tool(tool, args)
    assert res.is_error, res.content
    return "\n".join(x.text for x in res.content)


def snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_mtime_ns, p.lstat().st_size) for p in tree.rglob("*")}


def copy_run(scenario: str, dst: Path) -> Path:
    target = dst / "wandb" / run_dir(scenario).name
    shutil.copytree(run_dir(scenario), target, symlinks=True)
    return target


# ---- status ---------------------------------------------------------------------------------------


async def test_status_reads_only_and_names_remedies(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "fx", symlinks=True)
    before = snapshot(tmp_path)
    out = await call(tmp_path)
    assert snapshot(tmp_path) == before
    lines = out.splitlines()
    assert lines[0].startswith("9 runs (10 run directories): 0 synced, 8 not synced, 2 with a torn or damaged log")
    killed = next(ln for ln in lines if ln.startswith("R004-killed"))
    assert "not synced" in killed and "log torn tail (" in killed and "not completely written" in killed
    assert "files/ lacks wandb-summary.json, config.yaml, wandb-metadata.json" in killed
    assert any(ln.startswith("L097-dryrun") and "pre-0.10 layout" in ln for ln in lines)
    remedies = out.split("remedies:")[1]
    assert 'action="upload")' in remedies and "WANDB_API_KEY" in remedies
    assert 'action="export") rebuilds them from the log' in remedies
    assert "torn tail (killed mid-write" in remedies and '"73m516s3"' in remedies


async def test_status_sees_sync_markers(tmp_path):
    a = copy_run("finished", tmp_path)
    b = copy_run("crashed", tmp_path)
    (Path(str(next(a.glob("run-*.wandb"))) + ".synced")).touch()  # what a successful `wandb sync` leaves
    Path(str(next(b.glob("run-*.wandb"))) + ".syncstate").write_text('{"starting_step":0,"starting_runtime":0}')
    out = await call(tmp_path)
    assert out.splitlines()[0].startswith("2 runs (2 run directories): 1 synced")
    assert next(ln for ln in out.splitlines() if ln.startswith("R001-finished")).split(" | ")[0].endswith(": synced")
    assert "sync attempted, not finished" in next(ln for ln in out.splitlines() if ln.startswith("R002-crashed"))


# ---- export ---------------------------------------------------------------------------------------


@pytest.mark.skipif(wandb_cli() is None, reason="needs the wandb CLI for the cross-check")
async def test_export_matches_wandbs_own_decoder(tmp_path):
    dest = tmp_path / "out"
    before = snapshot(FIXTURES)
    seen: list[float] = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    out = await call(FIXTURES, progress=on_progress, runs=["R001-finished"], action="export", dest=str(dest))
    assert snapshot(FIXTURES) == before  # the run directory is untouched
    assert seen and seen[-1] == 1  # progress notifications, ending at done
    target = dest / "vtt9wpqc"
    assert out.startswith(f"exported R001-finished (vtt9wpqc) to {target}: wandb-history.jsonl (401 rows")
    rows = [json.loads(ln) for ln in (target / "wandb-history.jsonl").read_text().splitlines()]
    leet = [r["history"] for r in leet_records(log_file("finished")) if r["type"] == "history"]
    assert len(rows) == len(leet) == 401
    for ours, h in zip(rows, leet):
        items = h.get("item", {})
        step = h["step"].get("num", 0) if "step" in h else items["_step"]
        theirs: dict = {}
        for k, v in items.items():
            if k != "_step":
                flat(k, v, theirs)
        assert ours["_step"] == int(step)
        numeric = {k: v for k, v in theirs.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) or v in ("NaN", "Infinity", "-Infinity")}
        assert numeric, ours["_step"]
        for k, v in numeric.items():
            assert same_value(ours.get(k), v), (ours["_step"], k, ours.get(k), v)
    cfg = yaml.safe_load((target / "config.yaml").read_text())
    assert cfg["lr"] == {"value": 0.001} and cfg["model"]["value"]["width"] == 256
    summary = json.loads((target / "wandb-summary.json").read_text())
    assert summary["best_val_acc"] == 0.9 and summary["_step"] == 400 and "temp_key" not in summary
    meta = json.loads((target / "wandb-metadata.json").read_text())
    assert meta["name"] == "R001-finished" and meta["tags"] == ["baseline", "fixture"] and meta["state"] == "finished"
    assert oct(os.stat(target / "config.yaml").st_mode & 0o777) != "0o600"


async def test_export_of_a_torn_log_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the default destination
    out = await call(FIXTURES, runs="R004-killed", action="export")
    target = tmp_path / "cache" / "runwise-mcp" / "export" / "73m516s3"
    assert f"to {target}:" in out
    assert "torn tail" in out and "exported everything up to there (step 259)" in out
    rows = (target / "wandb-history.jsonl").read_text().splitlines()
    assert len(rows) == 260 and json.loads(rows[-1])["_step"] == 259


async def test_export_in_place_never_overwrites(tmp_path):
    d = copy_run("crashed", tmp_path)
    (d / "files" / "config.yaml").write_text("mine: keep\n")
    out = await call(tmp_path, runs=["R002-crashed"], action="export", in_place=True)
    assert "to its own offline-run-" in out and "config.yaml (exists, kept)" in out
    assert (d / "files" / "config.yaml").read_text() == "mine: keep\n"
    assert json.loads((d / "files" / "wandb-summary.json").read_text())["_step"] == 79
    again = await call(tmp_path, runs=["R002-crashed"], action="export", in_place=True)
    assert again.count("(exists, kept)") == 4  # a second export changes nothing


async def test_export_bad_input(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert "is a file; pass a directory" in await call_error(FIXTURES, runs="R001", action="export", dest=str(f))
    err = await call_error(FIXTURES, runs="R001", action="export", dest=str(f / "sub"))
    assert "cannot create dest" in err and "writable directory" in err
    err = await call_error(FIXTURES, action="export")
    assert "needs runs=[...]" in err and 'action="export")' in err
    assert "in_place applies to" in await call_error(FIXTURES, runs="R001", in_place=True)
    assert "either dest or in_place" in await call_error(FIXTURES, runs="R001", action="export", dest=str(tmp_path),
                                                         in_place=True)


async def test_run_id_with_path_characters_stays_inside_dest(tmp_path):
    evil = tmp_path / "root" / "wandb" / "offline-run-20261127_000000-.."
    (evil / "files").mkdir(parents=True)
    (evil / "files" / "output.log").write_text("step 1 loss 2.0\n")
    assert safe_name("..") == "run" and safe_name("../../etc") == "_.._etc" and "/" not in safe_name("a/b")
    dest = tmp_path / "dest"
    out = await call(tmp_path / "root", runs="..", action="export", dest=str(dest))
    assert f"to {dest / 'run'}:" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "root"]


# ---- upload ---------------------------------------------------------------------------------------


async def test_upload_without_the_cli_says_how_to_install(monkeypatch):
    monkeypatch.setenv("RUNWISE_WANDB_CLI", "/nonexistent/wandb")
    err = await call_error(FIXTURES, runs="R001", action="upload")
    assert "wandb CLI was not found" in err and "pip install wandb" in err and "Nothing was uploaded" in err


@pytest.mark.skipif(wandb_cli() is None, reason="needs the wandb CLI")
async def test_upload_runs_wandb_sync_and_explains_failure(tmp_path, monkeypatch):
    d = copy_run("crashed", tmp_path / "root")
    home = tmp_path / "home"
    home.mkdir()
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))  # no ~/.netrc, no saved login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.setenv("RUNWISE_WANDB_CLI", wandb_cli())
    before = snapshot(d)
    out = await call(tmp_path / "root", runs="R002-crashed", action="upload")
    assert out.startswith(f"wandb sync with {wandb_cli()}:")
    assert "R002-crashed (riserfai) offline-run-" in out and ": exit 1" in out
    assert "No API key configured" in out and "WANDB_API_KEY" in out.splitlines()[-1]
    assert snapshot(d) == before


async def test_sync_annotations_are_truthful():
    async with client(FIXTURES) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    a = tools["sync_runs"].annotations
    assert (a.read_only_hint, a.destructive_hint, a.open_world_hint) == (False, False, True)


# ---- missing data explains itself -----------------------------------------------------------------


async def test_key_logged_only_at_validation_steps_is_explained():
    out = await call(FIXTURES, "compare_runs", runs=["R001-finished@20", "R002-crashed@20"], keys=["val/loss"],
                     config_diff=False)
    assert "-: R001-finished val/loss is logged only at validation steps (8 points, every ~50 steps from 49): " \
           "none at or before step 20" in out
    assert "-: R002-crashed never logged val/loss" in out
    err = await call_error(FIXTURES, "get_history", run="R001-finished", keys="val/loss", step_min=0, step_max=40)
    assert "val/loss is logged only at validation steps" in err and "widen the range" in err


async def test_never_logged_key_names_the_closest():
    err = await call_error(FIXTURES, "history_stats", run="R001-finished", keys="val/accuracy")
    assert "'val/accuracy' is not logged; closest: val/acc" in err and 'list_keys(run="vtt9wpqc")' in err


async def test_killed_before_any_row_and_header_only_are_explained(tmp_path):
    d = copy_run("killed", tmp_path / "a")
    log = next(d.glob("run-*.wandb"))
    log.write_bytes(log.read_bytes()[:7])  # the state a run is in during its first 15 s
    (d / "files" / "output.log").unlink()
    err = await call_error(tmp_path / "a", "get_history", run="73m516s3")  # no name before the first record
    assert "only the 7-byte header" in err and "wandb writes the log every 15 s" in err
    assert "no files/output.log" in err
    out = await call(tmp_path / "a", "run_summary", run="73m516s3")
    assert "no metrics:" in out and "Call again in a minute" in out


# ---- export as one wide CSV (issue 16 item 15) ---------------------------------------------------


def read_wide_csv(path: Path) -> tuple[list[str], dict[int, dict[str, float]]]:
    """The CSV as pandas would read it, with the csv module: header, and per step the non-blank cells."""
    import csv
    import math

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    assert all(len(r) == len(head) for r in body)
    out: dict[int, dict[str, float]] = {}
    for r in body:
        step = int(r[0])
        assert step not in out  # one row per step
        out[step] = {k: float(v) for k, v in zip(head[1:], r[1:]) if v != ""}
        assert all(isinstance(v, float) and (math.isfinite(v) or v != v or abs(v) == math.inf) for v in out[step].values())
    return head, out


def flat_numbers(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_numbers(v, name + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = v
    return out


async def test_export_csv_is_one_wide_table_matching_wandbs_own_history_file(tmp_path):
    """wandb 0.9.7 wrote its history as wandb-history.jsonl: the CSV export holds the same numbers."""
    src = run_dir("legacy097-dryrun")
    dest = tmp_path / "out"
    before = snapshot(FIXTURES)
    out = await call(FIXTURES, runs=["ukrq8mrk"], action="export", format="csv", dest=str(dest))
    assert snapshot(FIXTURES) == before
    target = dest / "ukrq8mrk" / "history.csv"
    assert out.startswith("exported ") and f"{dest / 'ukrq8mrk'}: history.csv (" in out
    head, table = read_wide_csv(target)
    theirs = [json.loads(ln) for ln in (src / "wandb-history.jsonl").read_text().splitlines()]
    assert head[0] == "_step" and f"({len(theirs)} rows × {len(head)} columns" in out
    assert sorted(table) == sorted(r["_step"] for r in theirs)
    for row in theirs:
        nums = {k: v for k, v in flat_numbers(row).items() if k != "_step"}
        assert set(table[row["_step"]]) == set(nums), row["_step"]
        for k, v in nums.items():
            assert same_value(table[row["_step"]][k], v), (row["_step"], k)
    again = await call(FIXTURES, runs=["ukrq8mrk"], action="export", format="csv", dest=str(dest))
    assert "history.csv (exists, kept)" in again


async def test_export_csv_agrees_with_the_jsonl_export_nan_inf_and_resumes(tmp_path):
    analysis = FIXTURES.parent / "analysis_runs"
    for root, run in ((analysis, "A02-nan"), (FIXTURES, "R005-resumed")):
        jdir, cdir = tmp_path / "j", tmp_path / "c"
        await call(root, runs=[run], action="export", dest=str(jdir))
        out = await call(root, runs=[run], action="export", format="csv", dest=str(cdir))
        (jt,) = list(jdir.iterdir())
        rows = [json.loads(ln) for ln in (jt / "wandb-history.jsonl").read_text().splitlines()]
        _head, table = read_wide_csv(cdir / jt.name / "history.csv")
        assert sorted(table) == [r["_step"] for r in rows]
        for r in rows:
            nums = {k: v for k, v in r.items() if k != "_step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
            assert set(table[r["_step"]]) == set(nums)
            assert all(same_value(table[r["_step"]][k], v) for k, v in nums.items())
        if run == "R005-resumed":
            assert "2 resumed segments are one table" in out
        else:  # NaN and inf cells as pandas reads them
            cells = (cdir / jt.name / "history.csv").read_text().replace("\n", ",").split(",")
            assert "nan" in cells and "inf" in cells
        shutil.rmtree(jdir)
        shutil.rmtree(cdir)


async def test_export_csv_bad_input(tmp_path):
    err = await call_error(FIXTURES, runs="R001", action="status", format="csv")
    assert 'format applies to action="export" only' in err
    err = await call_error(FIXTURES, runs="R001", action="export", format="csv", dest=str(FIXTURES / "x"))
    assert "inside a root" in err
