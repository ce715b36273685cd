"""The shared run index: discovery, grouping of resumed runs, state, caching, resolution, roots."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import FIXTURES, MANIFEST, leet_last_time, log_file, run_dir

from runwise_mcp.config import ENV_ROOT, ENV_STALE, load_settings
from runwise_mcp.index import RunIndex, RunNotFound
from runwise_mcp.model import CRASHED, FINISHED, KILLED, RUNNING


def index(*roots, clock=None, env=None) -> RunIndex:
    settings = load_settings([str(r) for r in roots], env=env or {})
    return RunIndex(settings, clock=clock) if clock else RunIndex(settings)


def by_name(runs):
    return {r.name: r for r in runs}


def test_discovers_every_fixture_run_once():
    runs = index(FIXTURES).runs()
    names = sorted(r.name for r in runs)
    assert names == sorted({
        "R001-finished", "R002-crashed", "R003-interrupted", "R004-killed", "R005-resumed", "R006-typed",
        "L016-finished", "L016-killed", "L097-dryrun"})
    assert len(runs) == len(MANIFEST) - 1  # two directories of one resumed run


def test_resumed_run_is_one_run_with_merged_history():
    r = by_name(index(FIXTURES).runs())["R005-resumed"]
    assert r.id == "resume-me-1" and len(r.segments) == 2
    assert r.segments[0].start_time < r.segments[1].start_time
    steps, seg = r.history.series("seg")
    assert list(steps) == list(range(160))
    # segment 2 (resumed from step 80) overrides steps 80..99 of segment 1
    assert set(seg[:80]) == {1.0} and set(seg[80:]) == {2.0}
    assert any("overridden" in n for n in r.notes_read)
    assert r.state.state == FINISHED
    assert r.config["resumed_from"] == 80  # config of the later segment wins


def test_states_with_basis():
    ix = index(FIXTURES)
    runs = by_name(ix.runs())
    assert runs["R001-finished"].state.state == FINISHED and runs["R001-finished"].state.basis == "exit code 0"
    assert runs["R002-crashed"].state.state == CRASHED and runs["R002-crashed"].state.exit_code == 1
    s = runs["R003-interrupted"].state
    assert s.state == CRASHED and s.exit_code == 255 and "interrupted" in s.basis
    k = runs["R004-killed"]
    assert k.state.state in (KILLED, RUNNING) and not k.state.certain and k.state.basis == "no exit record"
    assert runs["L097-dryrun"].state.basis == "exit code 0 (wandb-metadata.json)"


def test_running_versus_killed_depends_on_the_logs_clock():
    """Without an exit record a run is judged from the newest time written inside its log (rows'
    `_timestamp`, stats and console records, as wandb's own reader decodes them), not from file
    times, which a copy or a git checkout makes fresh."""
    last = leet_last_time(log_file("killed"))
    soon = by_name(index(FIXTURES, clock=lambda: last + 60).runs())["R004-killed"]
    assert soon.state.state == RUNNING and soon.state.last_write == pytest.approx(last, abs=1e-3)
    assert soon.state.clock == "log record"
    later = by_name(index(FIXTURES, clock=lambda: last + 3 * 3600).runs())["R004-killed"]
    assert later.state.state == KILLED
    # the threshold is configurable (minutes)
    env = {ENV_STALE: "300"}
    mid = by_name(index(FIXTURES, clock=lambda: last + 3 * 3600, env=env).runs())["R004-killed"]
    assert mid.state.state == RUNNING


def test_second_call_parses_nothing():
    ix = index(FIXTURES)
    first = ix.runs()
    counts = {p: s.log.records for p, s in ix._segments.items() if s.log is not None}
    second = ix.runs()
    assert [id(r) for r in first] == [id(r) for r in second]  # cached Run objects reused
    assert counts == {p: s.log.records for p, s in ix._segments.items() if s.log is not None}
    assert all(s.refresh(skim_above=ix.settings.skim_above) is False for s in ix._segments.values())


def test_grown_log_is_read_from_where_it_stopped(tmp_path):
    src = run_dir("finished")
    dst = tmp_path / "wandb" / src.name
    shutil.copytree(src, dst, symlinks=True)
    log = dst / log_file("finished").name
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2])
    written = leet_last_time(log_file("finished"))
    ix = index(tmp_path, clock=lambda: written + 1)  # as the run wrote it
    (r1,) = ix.runs()
    rows1, recs1 = r1.history.rows, ix._segments[str(dst)].log.records
    assert r1.state.state == RUNNING  # no exit record yet, its last record just written
    with open(log, "ab") as f:
        f.write(data[len(data) // 2 :])
    (r2,) = ix.runs()
    seg = ix._segments[str(dst)]
    assert r2.history.rows == 401 > rows1
    assert r2.state.state == FINISHED
    full = index(FIXTURES)
    full.resolve("R001-finished", full=True)  # a fresh, complete read to compare with
    full_seg = next(s for s in full._segments.values() if s.path.endswith(src.name))
    assert seg.log.records == full_seg.log.records > recs1  # each record parsed exactly once


def test_resolve():
    ix = index(FIXTURES)
    runs = ix.runs()
    crashed = by_name(runs)["R002-crashed"]
    assert ix.resolve(crashed.id).name == "R002-crashed"
    assert ix.resolve("r002-CRASHED").id == crashed.id  # name, case-insensitive
    assert ix.resolve("R002").id == crashed.id  # unique prefix of a name
    assert ix.resolve(crashed.id[:5]).id == crashed.id  # unique prefix of an id
    assert ix.resolve("latest").start_time == max(r.start_time for r in runs)
    assert ix.resolve("") is ix.resolve("latest")
    with pytest.raises(RunNotFound) as e:
        ix.resolve("R00")
    assert len(e.value.candidates) >= 2 and "matches" in e.value.reason
    with pytest.raises(RunNotFound) as e:
        ix.resolve("R002-crashd")
    assert e.value.candidates[0].name == "R002-crashed"


def test_roots_env_and_precedence(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(run_dir("crashed"), a / "wandb" / run_dir("crashed").name, symlinks=True)
    shutil.copytree(run_dir("typed"), b / ".wandb" / run_dir("typed").name, symlinks=True)
    s = load_settings(None, env={ENV_ROOT: f"{a}{os.pathsep}{b}"})
    assert s.roots == [str(a), str(b)] and s.roots_from == ENV_ROOT
    assert sorted(r.name for r in RunIndex(s).runs()) == ["R002-crashed", "R006-typed"]  # .wandb/ too
    s2 = load_settings([str(b)], env={ENV_ROOT: str(a)})
    assert [r.name for r in RunIndex(s2).runs()] == ["R006-typed"]
    s3 = load_settings(None, env={}, cwd=str(a))
    assert s3.roots == [str(a)] and s3.roots_from == "cwd"
    # a run directory, or the latest-run symlink, can itself be a root
    assert [r.name for r in index(a / "wandb" / run_dir("crashed").name).runs()] == ["R002-crashed"]
    os.symlink(run_dir("crashed").name, a / "wandb" / "latest-run")
    assert [r.name for r in index(a / "wandb" / "latest-run").runs()] == ["R002-crashed"]


def test_bad_roots_are_reported(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    ix = index(tmp_path / "missing", f)
    assert ix.runs() == []
    assert ix.problems() == [f"root {tmp_path / 'missing'} does not exist",
                             f"root {f} is a file, not a directory"]


def test_depth_limit_and_skipped_directories(tmp_path):
    src = run_dir("crashed")
    for parent in ("node_modules/pkg", ".git/x", "venv_like", "a/b/c/d/e/f/g"):
        shutil.copytree(src, tmp_path / parent / "wandb" / src.name, symlinks=True)
    (tmp_path / "venv_like" / "pyvenv.cfg").write_text("home = /usr\n")
    shutil.copytree(run_dir("typed"), tmp_path / "proj" / "wandb" / run_dir("typed").name, symlinks=True)
    assert [r.name for r in index(tmp_path).runs()] == ["R006-typed"]
    deep = RunIndex(load_settings([str(tmp_path)], env={"RUNWISE_SCAN_DEPTH": "12"}))
    assert sorted(r.name for r in deep.runs()) == ["R002-crashed", "R006-typed"]


def test_symlinks_out_of_the_roots_are_not_followed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    shutil.copytree(run_dir("crashed"), outside / "wandb" / run_dir("crashed").name, symlinks=True)
    (root / "wandb").mkdir(parents=True)
    os.symlink(outside / "wandb" / run_dir("crashed").name, root / "wandb" / run_dir("crashed").name)
    assert index(root).runs() == []
    # a .wandb file inside the root that links outside it is skipped and reported
    d = root / "wandb" / "offline-run-20261127_000000-evil"
    d.mkdir()
    os.symlink(log_file("crashed"), d / "run-evil.wandb")
    ix = index(root)
    assert ix.runs() == []
    assert any("outside the roots" in p for p in ix.problems())


def tree_digest(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            h = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, h)
    return out


def test_index_never_writes_under_a_root(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "fx", symlinks=True)
    before = tree_digest(tmp_path)
    ix = index(tmp_path)
    for r in ix.runs():
        ix.resolve(r.id)
    ix.runs()
    ix.problems()
    assert tree_digest(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX permissions")
def test_unreadable_directory_is_reported():
    """A 000 directory is reported and the rest is still read. Root ignores permissions, so as
    root the check runs in a forked child that drops to uid/gid 65534 (nobody)."""
    top = Path(tempfile.mkdtemp(prefix="rw-perm-"))
    try:
        shutil.copytree(run_dir("crashed"), top / "ok" / "wandb" / run_dir("crashed").name, symlinks=True)
        secret = top / "secret"
        shutil.copytree(run_dir("typed"), secret / "wandb" / run_dir("typed").name, symlinks=True)
        for dirpath, _dirnames, filenames in os.walk(top):
            os.chmod(dirpath, 0o755)
            for n in filenames:
                if not (Path(dirpath) / n).is_symlink():
                    os.chmod(Path(dirpath) / n, 0o644)
        secret.chmod(0o000)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(r)
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                ix = RunIndex(load_settings([str(top)], env={}))
                out = json.dumps([[x.name for x in ix.runs()], ix.problems()])
                os.write(w, out.encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            names, problems = json.loads(f.read() or "[[], []]")
        os.waitpid(pid, 0)
        assert names == ["R002-crashed"]
        assert problems == [f"cannot read directory {secret}: Permission denied"]
    finally:
        (top / "secret").chmod(0o755)
        shutil.rmtree(top)


def test_suffixed_directory_and_id_with_dashes(tmp_path):
    """`-1` suffixed directories (same id, same second) and ids containing '-': the id comes from
    the log, never from the directory name."""
    src = run_dir("resume2")
    shutil.copytree(src, tmp_path / "wandb" / (src.name + "-1"), symlinks=True)
    (r,) = index(tmp_path).runs()
    assert r.id == "resume-me-1" and r.name == "R005-resumed"


def test_summary_file_fills_in_what_the_log_lacks(tmp_path):
    """An online run's files/wandb-summary.json and config.yaml (written at finish) fill in keys the
    log does not hold; where both have a key, the log wins."""
    src = run_dir("killed")  # killed: its log summary is partial
    dst = tmp_path / "wandb" / src.name
    shutil.copytree(src, dst, symlinks=True)
    legacy = run_dir("legacy097-dryrun")  # real wandb-written summary and config files
    shutil.copy(legacy / "wandb-summary.json", dst / "files" / "wandb-summary.json")
    shutil.copy(legacy / "config.yaml", dst / "files" / "config.yaml")
    (r,) = index(tmp_path).runs()
    log_only = index(FIXTURES).resolve("R004-killed")
    assert r.summary["best_acc"] == 0.98 and "eval.acc" in r.summary  # only in the file
    assert r.summary["train/loss"] == log_only.summary["train/loss"]  # in both: the log wins
    assert r.config["model"] == {"width": 64}  # only in config.yaml
    assert r.config["lr"] == log_only.config["lr"] == 0.003  # in both: the log wins


def test_side_files_linking_outside_the_roots_are_not_read(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    dst = root / "wandb" / run_dir("crashed").name
    shutil.copytree(run_dir("crashed"), dst, symlinks=True)
    os.unlink(dst / "files" / "output.log")
    os.symlink(secret, dst / "files" / "output.log")
    ix = index(root)
    (r,) = ix.runs()
    assert not any("TOP-SECRET" in line for line in r.console_tail)
    assert any("files/output.log not read: it leads outside the roots" in p for p in ix.problems())
