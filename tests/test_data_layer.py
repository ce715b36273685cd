"""Issue 16, correctness in the data layer (items 1, 2, 7-10), each on real runs: the fixtures and
examples written by the real wandb, copied, touched, linked and re-laid out the way users do."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EXAMPLES, FIXTURES, leet_last_time, leet_records, log_file, run_dir
from mcp import Client

from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server

pytestmark = pytest.mark.anyio


def client_for(*roots: Path) -> Client:
    return Client(build_server(load_settings([str(r) for r in roots], env={"RUNWISE_CACHE_DIR": "off"})),
                  raise_exceptions=True)


def text(res) -> str:
    return "\n".join(c.text for c in res.content)


def touch_all(root: Path, when: float) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)


# ---- item 2: liveness from the log's own clock ---------------------------------------------------


async def test_killed_example_reads_killed_right_after_a_clone(tmp_path):
    """A clone (or scp, rsync without -t) gives every file the time of the copy. The bundled
    killed example still reads as killed: judged from the times inside its log, the basis said."""
    shutil.copytree(EXAMPLES / "wandb", tmp_path / "wandb", symlinks=True)
    touch_all(tmp_path, time.time())
    (killed,) = (tmp_path / "wandb").glob("offline-run-*-oqeqwz4h")
    (log,) = killed.glob("run-*.wandb")
    age_days = (time.time() - leet_last_time(log)) / 86400
    async with client_for(tmp_path) as c:
        listing = text(await c.call_tool("list_runs", {}))
        summary = text(await c.call_tool("run_summary", {"run": "R004-long"}))
        killed_only = text(await c.call_tool("list_runs", {"state": "killed"}))
    line = next(ln for ln in listing.splitlines() if ln.startswith("R004-long "))
    assert line.startswith("R004-long killed? no exit record, last log record "), line
    assert "running" not in line and "R004-long" in killed_only
    assert summary.startswith("R004-long (oqeqwz4h) killed? no exit record, last log record ")
    if age_days > 1:  # the example was written days before this test ran
        assert f"last log record {age_days:.1f}d ago" in line or f"last log record {age_days:.0f}d ago" in line


async def test_a_copied_run_without_times_in_its_log_falls_back_to_file_times(tmp_path):
    """A run whose only data is files/output.log (no .wandb, no timestamps) is judged from file
    times, and says so ("nothing written for")."""
    src = next((EXAMPLES / "wandb").glob("offline-run-*-oqeqwz4h"))
    dst = tmp_path / "wandb" / src.name
    (dst / "files").mkdir(parents=True)
    shutil.copy(src / "files" / "output.log", dst / "files" / "output.log")
    touch_all(tmp_path, time.time() - 7200)
    async with client_for(tmp_path) as c:
        listing = text(await c.call_tool("list_runs", {}))
    assert "killed? " in listing and "nothing written for 2h" in listing, listing


# ---- item 1: copies are not resumes --------------------------------------------------------------


def copy_fixtures(dst: Path) -> Path:
    shutil.copytree(FIXTURES / "wandb", dst / "wandb", symlinks=True)
    return dst / "wandb"


async def test_identical_copies_are_listed_once_with_where_they_are(tmp_path):
    """Two copies of the fixture runs (cp -r into two folders) and a third copy of the first
    segment of the real resumed run: every run is listed once, the resumed run still has its 2
    genuine segments (different start times), and the copies are named."""
    root = tmp_path / "root"
    a, b = copy_fixtures(root / "a"), copy_fixtures(root / "b")
    seg1 = sorted(a.glob("offline-run-*-resume-me-1"))[0]
    shutil.copytree(seg1, root / "c" / "wandb" / seg1.name, symlinks=True)
    alone = tmp_path / "alone"
    copy_fixtures(alone)
    async with client_for(alone) as c:
        single = text(await c.call_tool("list_runs", {"limit": 50}))
    async with client_for(root) as c:
        listing = text(await c.call_tool("list_runs", {"limit": 50}))
        resumed = text(await c.call_tool("run_summary", {"run": "R005-resumed"}))
        finished = text(await c.call_tool("run_summary", {"run": "R001-finished"}))
        history = text(await c.call_tool("get_history", {"run": "R005-resumed", "keys": ["train/loss"],
                                                          "samples": 500}))
    names = [ln.split(" ", 1)[0] for ln in listing.splitlines() if ln.startswith(("R00", "L0"))]
    assert sorted(names) == sorted(ln.split(" ", 1)[0] for ln in single.splitlines() if ln.startswith(("R00", "L0")))
    assert len(names) == len(set(names))
    r5 = next(ln for ln in listing.splitlines() if ln.startswith("R005-resumed "))
    assert "2 segments (resumed)" in r5 and "3 copies elsewhere" in r5
    r1 = next(ln for ln in listing.splitlines() if ln.startswith("R001-finished "))
    assert "1 copy elsewhere" in r1 and "segments" not in r1
    assert "2 segments (resumed)" in resumed and "identical copies (listed once, read from " in resumed
    for d in (b / seg1.name, root / "c" / "wandb" / seg1.name):
        assert str(d) in resumed
    assert f"read from {a}/offline-run-" in finished and str(next(b.glob("offline-run-*-vtt9wpqc"))) in finished
    async with client_for(alone) as c:
        alone_history = text(await c.call_tool("get_history", {"run": "R005-resumed", "keys": ["train/loss"],
                                                                "samples": 500}))
    assert history.split("\nsource:")[0] == alone_history.split("\nsource:")[0]  # the same rows as one copy


async def test_a_partial_copy_is_not_a_resume(tmp_path):
    """A copy taken while the run was still writing (its log cut at half) has the run's start
    time: it is the same segment, older. The complete copy is read; the partial one is named as
    such, not merged as a resume."""
    copy_fixtures(tmp_path / "a")
    b = copy_fixtures(tmp_path / "b")
    (log,) = next(b.glob("offline-run-*-vtt9wpqc")).glob("run-*.wandb")
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2])
    async with client_for(tmp_path) as c:
        listing = text(await c.call_tool("list_runs", {"limit": 50}))
        summary = text(await c.call_tool("run_summary", {"run": "R001-finished"}))
    r1 = next(ln for ln in listing.splitlines() if ln.startswith("R001-finished "))
    assert r1.startswith("R001-finished finished") and "1 copy elsewhere" in r1 and "segments" not in r1
    assert "| step 400 |" in r1
    assert f"{log.parent} (an older or partial copy: " in summary and "bytes of log; not read)" in summary


# ---- item 10: --check ------------------------------------------------------------------------------


def check(*roots: Path) -> str:
    args = [sys.executable, "-m", "runwise_mcp", "--check", "--no-cache"]
    for r in roots:
        args += ["--root", str(r)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120).stdout


def test_check_counts_rows_of_a_skimmed_log_exactly(tmp_path):
    """R001's log (0.4 MiB) is over the 256 KiB skim threshold: --check printed the skim's 356
    sampled rows; it now counts every row (as many history records as wandb's own reader sees)."""
    shutil.copytree(run_dir("finished"), tmp_path / "wandb" / run_dir("finished").name, symlinks=True)
    assert log_file("finished").stat().st_size > 256 << 10
    rows = sum(r.get("type") == "history" for r in leet_records(log_file("finished")))
    out = check(tmp_path)
    assert f"R001-finished (vtt9wpqc): finished, {rows} rows, wandb 0.31.0" in out, out


def test_check_on_a_run_with_only_output_log(tmp_path):
    """A run directory holding only files/output.log (copied from a real run) is not called a
    pre-0.10 run missing its exit code."""
    src = run_dir("killed")
    dst = tmp_path / "wandb" / src.name / "files"
    dst.mkdir(parents=True)
    shutil.copy(src / "files" / "output.log", dst / "output.log")
    out = check(tmp_path)
    line = next(ln for ln in out.splitlines() if "73m516s3" in ln)
    assert "wandb <0.10" not in line and "no exit code in wandb-metadata.json" not in line
    assert "only files/output.log, no .wandb log or wandb-metadata.json with an exit code" in line
    assert "wandb (version unknown: only files/output.log)" in line


def test_check_names_each_unreadable_file_once_with_its_path(tmp_path):
    """Two copies (in two folders) of a run whose wandb-summary.json was cut mid-write: each
    "could not read" line names the run directory's path (they repeated, each as the directory's
    bare name), and no line repeats."""
    dirs = []
    for folder in ("a", "b"):
        d = tmp_path / folder / "wandb" / run_dir("crashed").name
        shutil.copytree(run_dir("crashed"), d, symlinks=True)
        (d / "files" / "wandb-summary.json").write_text('{"train/loss": 0.5, "val/')
        dirs.append(d)
    out = check(tmp_path)
    problems = [p for p in out.split("could not read:\n", 1)[1].splitlines() if p.startswith("  ")]
    assert len(problems) == len(set(problems)) == 2, out
    for d, p in zip(dirs, problems):
        assert p == f"  {d}: wandb-summary.json unreadable: JSONDecodeError", out


# ---- item 9: a symlinked wandb/ ----------------------------------------------------------------------


async def test_symlinked_wandb_folder_is_named_with_the_root_that_reads_it(tmp_path):
    """`wandb -> /scratch/$USER/wandb` (here a relative link to a copy of the real fixture runs
    outside the root): never followed, but named with its target and the exact --root that reads
    it, in the tools' answer and in --check; that root then lists the runs."""
    scratch = tmp_path / "scratch" / "wandb"
    shutil.copytree(FIXTURES / "wandb", scratch, symlinks=True)
    project = tmp_path / "project"
    project.mkdir()
    (project / "wandb").symlink_to(Path("..") / "scratch" / "wandb")
    said = f"skipped symlink {project / 'wandb'} -> ../scratch/wandb: symlinks are not followed"
    fix = f"to read it, add --root {scratch}"
    async with client_for(project) as c:
        res = await c.call_tool("list_runs", {})
        listing = text(res)
        summary = await c.call_tool("run_summary", {})
    assert listing.startswith(f"No runs found under {project}: {said}") and fix in listing, listing
    assert summary.is_error and said in text(summary) and fix in text(summary)
    out = check(project)
    assert f"  {said} (runs are read only under the roots); {fix}\n" in out and "FAIL" in out
    async with client_for(scratch) as c:
        fixed = text(await c.call_tool("list_runs", {"limit": 50}))
    assert "R001-finished finished" in fixed and "R005-resumed" in fixed
    # a link to a folder inside the root is not news: its runs are found where it points
    (project / "real").mkdir()
    shutil.copytree(FIXTURES / "wandb", project / "real" / "wandb", symlinks=True)
    (project / "wandb").unlink()
    (project / "wandb").symlink_to("real/wandb")
    out = check(project)
    assert "skipped symlink" not in out and "R001-finished" in out and out.rstrip().endswith("OK")


# ---- item 8: run-*/files/wandb-history.jsonl -----------------------------------------------------

FILES_JSONL = FIXTURES.parent / "files_jsonl_runs"


async def test_files_jsonl_layout_is_read(tmp_path):
    """Run directories holding files/wandb-history.jsonl with the summary, config and metadata
    beside it and no .wandb (converted from the real 0.31 fixture runs by wandb's own reader,
    tests/fixtures/make_files_jsonl_runs.py) are found and read: the same history as the .wandb
    they came from, state from the metadata's exit code (or the events' clock), config from
    files/config.yaml, and every tool answers."""
    import json

    manifest = json.loads((FILES_JSONL / "manifest.json").read_text())
    for scenario in ("finished", "crashed", "killed"):
        src = run_dir(scenario)
        shutil.copytree(src, tmp_path / "orig" / "wandb" / src.name, symlinks=True)
    async with client_for(FILES_JSONL) as c:
        listing = text(await c.call_tool("list_runs", {}))
        jsonl = {name: text(await c.call_tool("get_history", {"run": name, "keys": ["train/loss"],
                                                               "samples": 1000}))
                 for name in ("R001-finished", "R002-crashed", "R004-killed")}
        summary = text(await c.call_tool("run_summary", {"run": "R001-finished"}))
        config = text(await c.call_tool("get_config", {"run": "R001-finished", "pattern": "model.*"}))
        keys = text(await c.call_tool("list_keys", {"run": "R002-crashed"}))
        every = {tool: await c.call_tool(tool, args) for tool, args in (
            ("diagnose_run", {"run": "R002-crashed"}), ("tail_run", {"run": "R004-killed"}),
            ("compare_runs", {"runs": ["R001-finished", "R002-crashed"]}), ("best_run", {"metric": "train/loss"}),
            ("sync_runs", {}), ("list_keys", {"run": "R004-killed", "pattern": "system"}))}
    async with client_for(tmp_path / "orig") as c:
        orig = {name: text(await c.call_tool("get_history", {"run": name, "keys": ["train/loss"],
                                                              "samples": 1000}))
                for name in jsonl}
    assert len(manifest) == 3 and "3 runs under" in listing
    assert "R001-finished finished" in listing and "R002-crashed crashed (exit code 1 (wandb-metadata.json))" in listing
    assert "R004-killed killed? no exit code in wandb-metadata.json, last log record " in listing
    for name in jsonl:
        body, src = jsonl[name].split("\nstep,", 1)[1], orig[name].split("\nstep,", 1)[1]
        assert body.count("\n") > 50 and body == src, name
        assert "; from files/wandb-history.jsonl (history to " in jsonl[name]
    assert "source: files/wandb-history.jsonl (history to 400)" in summary
    assert "model.width: 256" in config and "files/config.yaml" in config
    assert "train/\n  acc " in keys and "\n  loss " in keys and "system: " in keys
    for tool, res in every.items():
        assert not res.is_error, (tool, text(res))
    assert "files/ layout (no .wandb log)" in text(every["sync_runs"])


# ---- item 7: numbers at the edges, all in one listing -------------------------------------------------


@pytest.fixture(scope="module")
def hostile_wandb_run(tmp_path_factory) -> Path:
    """The run test_attacks.py has the real wandb write (offline) with hostile rows and prints."""
    from test_attacks import write_hostile_wandb_run

    return write_hostile_wandb_run(tmp_path_factory.mktemp("hostile"))


async def test_every_edge_value_at_once_keeps_every_run_and_logs_one_line_each(tmp_path, hostile_wandb_run, caplog):
    """`_step: 1e300` (a 0.16 log's row), `_runtime: Infinity` (a pre-0.10 history's last row), a
    start time in year 31,690,708 (a 0.31 run record) and a console step past 64 bits (printed by
    a run the real wandb wrote), all under one root with the runs they do not touch: every run is
    listed, each bad value skips or blanks only its own row or field and is counted, every tool
    answers on every run, and nothing is logged with a traceback or over several lines.
    (Each edge on its own: tests/test_attacks.py.)"""
    from test_attacks import copy_run, history_rewrite, hostile_copy, jsonl_rows, rewrite_log, write_jsonl

    copy_run("crashed", tmp_path)
    v016 = copy_run("legacy016-finished", tmp_path)
    (log,) = v016.glob("run-*.wandb")
    assert rewrite_log(log, history_rewrite(4, "_step", "1e300")) == 1
    old = copy_run("legacy097-dryrun", tmp_path)
    rows = jsonl_rows(old / "wandb-history.jsonl")
    rows[-1]["_runtime"] = float("inf")
    write_jsonl(old / "wandb-history.jsonl", rows)
    from test_attacks import plant_start_in_year_31690708

    plant_start_in_year_31690708(copy_run("finished", tmp_path))
    hostile_copy(hostile_wandb_run, tmp_path)
    caplog.set_level("DEBUG", logger="runwise_mcp")
    runs = ("R002-crashed", "L016-finished", "L097-dryrun", "R001-finished", "hostile-run")
    async with client_for(tmp_path) as c:
        listing = text(await c.call_tool("list_runs", {}))
        for run in runs:
            for tool, args in (("run_summary", {"run": run}), ("list_keys", {"run": run}),
                               ("get_history", {"run": run}), ("history_stats", {"run": run}),
                               ("diagnose_run", {"run": run}), ("tail_run", {"run": run}),
                               ("compare_runs", {"runs": [run, "R001-finished" if run == "R002-crashed" else "R002-crashed"]})):
                res = await c.call_tool(tool, args)
                assert not res.is_error, (tool, run, text(res))
                assert "internal error" not in text(res)
        for tool, args in (("best_run", {"metric": "train/loss"}), ("aggregate_runs", {"keys": ["train/loss"]}),
                           ("sync_runs", {})):
            res = await c.call_tool(tool, args)
            assert not res.is_error, (tool, text(res))
    assert listing.startswith("5 runs under ")
    for run in runs:
        assert f"\n{run} " in listing, run
    assert "R001-finished finished | - | step 400 | 0.6s | " in listing  # start unknown, the run kept
    assert re.search(r"\nL097-dryrun finished \| (11-27 )?12:5\d \| step 29 \| - \| ", listing)  # runtime unknown
    for r in caplog.records:
        if r.levelno >= logging.WARNING:
            assert r.exc_info is None and "\n" not in r.getMessage(), r.getMessage()
