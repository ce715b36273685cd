"""The persistent cache of decoded logs: answers identical with and without it, a restart resumes
from the cached offset, corrupt, foreign and hostile entries are ignored, and it can be turned off."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import FIXTURES, REPO, run_dir

from runwise_mcp import answers
from runwise_mcp.cache import MAGIC
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex

SCENARIOS = ("finished", "crashed", "killed", "resume1", "resume2", "typed", "legacy016-killed")
CALLS = [
    ("list_runs", {}),
    ("run_summary", {"run": "R001-finished"}),
    ("run_summary", {"run": "R004-killed"}),
    ("list_keys", {"run": "R001-finished"}),
    ("get_config", {"run": "R001-finished"}),
    ("get_history", {"run": "R001-finished", "keys": "train/loss,val/loss,optim.grad_norm", "samples": 40}),
    ("history_stats", {"run": "R005-resumed"}),
    ("diagnose_run", {"run": "R002-crashed"}),
    ("compare_runs", {"runs": ["R001-finished@100", "R002-crashed@50"]}),
    ("best_run", {"metric": "train/loss"}),
    ("aggregate_runs", {"query": "fixture", "keys": "train/loss"}),
    ("tail_run", {"run": "R004-killed"}),
    ("sync_runs", {}),
]


def make_tree(tmp: Path) -> Path:
    root = tmp / "runs"
    for s in SCENARIOS:
        src = run_dir(s)
        shutil.copytree(src, root / src.relative_to(FIXTURES), symlinks=True)
    return root


def index(root: Path, cache: Path | None, now: float) -> RunIndex:
    s = load_settings([str(root)], env={"RUNWISE_CACHE_DIR": str(cache) if cache else "off"})
    s.cache_min_bytes = 0  # cache even these small logs
    return RunIndex(s, clock=lambda: now)


def answers_of(ix: RunIndex) -> list[str]:
    out = []
    for tool, args in CALLS:
        try:
            out.append(getattr(answers, tool)(ix, **args))
        except answers.UserError as e:
            out.append(f"error: {e}")
    return out


def test_answers_are_identical_with_and_without_the_cache(tmp_path):
    root = make_tree(tmp_path)
    now = max(p.stat().st_mtime for p in root.rglob("*.wandb")) + 3600
    plain = answers_of(index(root, None, now))
    cold_ix = index(root, tmp_path / "cache", now)
    cold = answers_of(cold_ix)
    assert cold_ix.cache.hits == 0 and len(list((tmp_path / "cache").glob("*.rwc"))) == len(SCENARIOS)  # one per log
    warm_ix = index(root, tmp_path / "cache", now)  # a restarted server
    warm = answers_of(warm_ix)
    assert warm_ix.cache.hits == len(SCENARIOS) and not warm_ix.cache.rejected
    for (tool, args), a, b, c in zip(CALLS, plain, cold, warm):
        assert a == b == c, (tool, args)


def test_a_restart_resumes_from_the_cached_offset(tmp_path):
    src = run_dir("finished")
    d = tmp_path / "runs" / "wandb" / src.name
    shutil.copytree(src, d, symlinks=True)
    log = next(d.glob("run-*.wandb"))
    full = log.read_bytes()
    log.write_bytes(full[: len(full) // 2])  # a live run, half written
    first = index(tmp_path / "runs", tmp_path / "cache", 0).resolve("vtt9wpqc", full=True)
    half_rows = first.history.rows
    with open(log, "ab") as f:
        f.write(full[len(full) // 2:])  # it goes on
    ix = index(tmp_path / "runs", tmp_path / "cache", 0)
    run = ix.resolve("R001-finished", full=True)
    seg = ix.segments(run)[0]
    assert ix.cache.hits == 1 and 0 < seg._saved_offset <= len(full)
    fresh = index(tmp_path / "runs", None, 0).resolve("R001-finished", full=True)
    assert half_rows < run.history.rows == fresh.history.rows == 401
    assert run.summary == fresh.summary and run.state.state == fresh.state.state == "finished"
    assert list(run.history.columns["train/loss"].values)[-5:] == list(fresh.history.columns["train/loss"].values)[-5:]


def test_corrupt_foreign_and_hostile_entries_are_ignored(tmp_path):
    root = make_tree(tmp_path)
    cache = tmp_path / "cache"
    expected = answers_of(index(root, None, 0))
    answers_of(index(root, cache, 0))  # writes the entries
    entries = sorted(cache.glob("*.rwc"))
    # 1: a flipped byte in the payload; 2: not a cache file at all; 3: a valid header and
    # checksum around a pickle that would run a command
    data = bytearray(entries[0].read_bytes())
    data[-50] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    entries[1].write_bytes(b"garbage, not a cache entry\n")
    marker = tmp_path / "pwned"
    evil = pickle.dumps(type("Evil", (), {"__reduce__": lambda self: (os.system, (f"touch {marker}",))})())
    meta = json.loads(entries[2].read_bytes()[len(MAGIC):].split(b"\n", 1)[0])
    meta["sha256"] = hashlib.sha256(evil).hexdigest()
    entries[2].write_bytes(MAGIC + json.dumps(meta).encode() + b"\n" + evil)
    ix = index(root, cache, 0)
    assert answers_of(ix) == expected
    reasons = " | ".join(ix.cache.rejected)
    assert "checksum mismatch" in reasons or "not allowed" in reasons
    assert "not a runwise cache file" in reasons and "is not allowed in a runwise cache" in reasons
    assert not marker.exists()
    assert ix.cache.hits == len(SCENARIOS) - 3


def test_cache_can_be_turned_off(tmp_path):
    assert load_settings(["."], env={"RUNWISE_CACHE_DIR": "off"}).cache_dir is None
    assert load_settings(["."], env={"XDG_CACHE_HOME": "/x/y"}).cache_dir == "/x/y/runwise-mcp/logs"
    out = subprocess.run([sys.executable, "-m", "runwise_mcp", "--root", str(FIXTURES), "--check", "--no-cache"],
                         capture_output=True, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
                         timeout=120, check=False).stdout
    assert "cache of decoded logs: off" in out


def test_list_runs_reports_progress_on_a_cold_index(tmp_path):
    import anyio
    from mcp import Client

    from runwise_mcp.server import build_server

    src = run_dir("typed")
    for i in range(230):  # many small runs: progress every 100 directories
        shutil.copytree(src, tmp_path / "wandb" / f"offline-run-20261127_000000-c{i:04d}", symlinks=True)
    seen: list[tuple[float, float | None]] = []

    async def main() -> str:
        async def on_progress(progress, total, message):
            seen.append((progress, total))

        async with Client(build_server(load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})),
                          raise_exceptions=True) as c:
            res = await c.call_tool("list_runs", {"limit": 1}, progress_callback=on_progress)
        return res.content[0].text

    out = anyio.run(main)
    assert out.startswith("1 run under")  # one run id: the copies share it (segments of one run)
    assert seen == [(100, 230), (200, 230)]


def skim_first_index(tmp_path) -> RunIndex:
    """An index over a copy of the "finished" run whose log counts as large: listed from a skim,
    read in full in the background by run_summary and list_keys, which wait 0.2 s for it."""
    src = run_dir("finished")
    shutil.copytree(src, tmp_path / "wandb" / src.name, symlinks=True)
    s = load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})
    s.skim_above, s.first_answer_wait, s.background_above = 20_000, 0.2, 0
    return RunIndex(s)


def test_first_summary_of_a_large_log_comes_from_a_skim_while_it_is_read(tmp_path):
    """A log not read yet: run_summary answers at once from the skim (exact identity, state and
    last values), reads the log in a background thread, and gives the full answer once it is read.
    Holding the index lock keeps the background read from finishing during the first answer."""
    ix = skim_first_index(tmp_path)
    with ix._lock:
        first = answers.run_summary(ix, "R001-finished")
    assert "anomalies: not checked yet: reading the whole log" in first and "% done" in first
    assert 'call run_summary(run="vtt9wpqc") again' in first
    assert first.splitlines()[0].startswith("R001-finished (vtt9wpqc) finished | step 400")
    assert "(skim: head, tail and sampled blocks; last values exact" in first.splitlines()[-1]
    loss = next(ln for ln in first.splitlines() if ln.startswith("train/loss "))
    ix._jobs["vtt9wpqc"].finished.wait(60)
    full = answers.run_summary(ix, "R001-finished")
    reference = answers.run_summary(RunIndex(load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})),
                                    "R001-finished")
    assert full == reference and "anomalies: train/loss NaN from 123;" in full  # checked on every point now
    assert loss.split(" ")[1] == next(ln for ln in full.splitlines() if ln.startswith("train/loss ")).split(" ")[1]


def test_summary_statistics_are_memoised_across_restarts_without_changing_the_answer(tmp_path, monkeypatch):
    from runwise_mcp.answers import single

    monkeypatch.setattr(single, "MEMO_MIN_POINTS", 0)  # memoise even these small runs
    root = make_tree(tmp_path)
    now = max(p.stat().st_mtime for p in root.rglob("*.wandb")) + 3600
    names = ("R001-finished", "R002-crashed", "R004-killed", "R005-resumed", "L016-killed")
    plain = index(root, None, now)
    expected = [answers.run_summary(plain, n) for n in names]
    assert [answers.run_summary(plain, n) for n in names] == expected  # from the in-memory memo
    assert len(plain.memo.mem) == len(names)
    cold = index(root, tmp_path / "cache", now)
    assert [answers.run_summary(cold, n) for n in names] == expected
    assert len(list((tmp_path / "cache" / "memo").glob("*.json"))) == len(names)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "memo").glob("*.json")}
    warm = index(root, tmp_path / "cache", now)  # a restart: the statistics come from disk
    assert [answers.run_summary(warm, n) for n in names] == expected
    assert len(warm.memo.mem) == len(names)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # read, not recomputed and rewritten
    keyed = answers.run_summary(warm, "R001-finished", keys=["train/loss"])  # other keys: another entry
    assert keyed != expected[0] and len(warm.memo.mem) == len(names) + 1
    # damaged or foreign memo files (valid JSON of another shape) are recomputed, not trusted
    for p, bad in zip(sorted(stamps), ['{"lines": 3}', '[]', '{"lines": [{"nope": 1}], "anomalies": ""}',
                                       '{"lines": [], "anomalies": 7}', '{"anomalies": "x"}']):
        p.write_text(bad)
    broken = index(root, tmp_path / "cache", now)
    assert [answers.run_summary(broken, n) for n in names] == expected


def test_memo_keeps_a_few_entries_per_run(tmp_path):
    from runwise_mcp.cache import AnswerMemo

    memo = AnswerMemo(str(tmp_path))
    keys = [AnswerMemo.key_for("live/run", ["version", i]) for i in range(7)]
    for i, k in enumerate(keys):
        memo.put(k, {"i": i})
        os.utime(tmp_path / "memo" / f"{k}.json", ns=(i * 10**9, i * 10**9))  # distinct ages
    memo.put(AnswerMemo.key_for("other", [1]), {"x": 1})
    memo.put(keys[-1], {"i": 6})  # rewriting the newest one prunes the oldest of that run
    left = sorted(p.name for p in (tmp_path / "memo").glob("live_run.*.json"))
    assert len(left) == AnswerMemo.KEEP_PER_RUN and f"{keys[-1]}.json" in left and f"{keys[0]}.json" not in left
    assert len(list((tmp_path / "memo").glob("other.*.json"))) == 1
    assert AnswerMemo(str(tmp_path)).get(keys[-1]) == {"i": 6}  # read back from disk


def test_tools_report_progress_while_a_log_is_read_in_full(tmp_path, monkeypatch):
    import anyio
    from mcp import Client

    from runwise_mcp.server import build_server
    from runwise_mcp.sources import wandb_log

    monkeypatch.setattr(wandb_log, "PROGRESS_EVERY", 200)  # this fixture has ~1,200 records
    src = run_dir("finished")
    shutil.copytree(src, tmp_path / "wandb" / src.name, symlinks=True)
    size = (src / next(src.glob("run-*.wandb")).name).stat().st_size
    settings = {"RUNWISE_CACHE_DIR": "off"}  # the log (434 KB) is above skim_above: listing only skims it

    async def call(args: dict) -> tuple[str, list]:
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        # a new server each time: the log is not read yet
        async with Client(build_server(load_settings([str(tmp_path)], env=settings)), raise_exceptions=True) as c:
            res = await c.call_tool("history_stats", {"run": "R001-finished", **args}, progress_callback=on_progress)
        return res.content[0].text, seen

    # a named key: a keyed read, reported as such
    out, seen = anyio.run(call, {"keys": "train/loss"})
    assert "train/loss: 400 pts 0–399" in out
    assert len(seen) >= 3 and all(m.startswith(f"reading train/loss from {src.name}: ") for _, _, m in seen)
    done = [p for p, _, _ in seen]
    assert done == sorted(done) and seen[0][1] == size
    # the default keys: a full read
    out, seen = anyio.run(call, {})
    assert "train/loss: 400 pts 0–399" in out
    assert len(seen) >= 3 and all(m.startswith(f"reading {src.name}: ") for _, _, m in seen)
    done = [p for p, _, _ in seen]
    assert done == sorted(done) and seen[0][1] == size


def test_first_list_keys_of_a_large_log_comes_from_a_skim_while_it_is_read(tmp_path):
    """A log not read yet: list_keys names the keys the skim saw, with their exact last values,
    starts the full read in the background, and gives the full answer once it is read."""
    ix = skim_first_index(tmp_path)
    with ix._lock:
        first = answers.list_keys(ix, "R001-finished")
    lines = first.splitlines()
    assert "seen in a skim (head, tail and sampled blocks" in lines[0] and "last values exact" in lines[0]
    assert lines[-1].startswith("full read: reading the whole log") and "% done" in lines[-1]
    assert 'call list_keys(run="vtt9wpqc") again for point counts' in lines[-1]
    ix._jobs["vtt9wpqc"].finished.wait(60)
    full = answers.list_keys(ix, "R001-finished")
    reference = answers.list_keys(RunIndex(load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})),
                                  "R001-finished")
    assert full == reference and "seen in a skim" not in full
    reader = RunIndex(load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"}))
    run = reader.resolve("R001-finished", full=True)
    skim_keys = {ln.split()[0] for ln in lines[1:-1]}
    assert skim_keys and skim_keys <= set(run.history.columns) | set(run.history.other)
    loss = next(ln for ln in lines if ln.split()[0] == "train/loss")  # the last value is the full read's
    col = run.history.columns["train/loss"]
    assert f"@{col.last_step}," in loss or f"@{col.last_step:,}," in loss
    assert loss.split("last ")[1].split(" @")[0] in full


def test_a_first_answer_waits_for_a_background_read_only_while_it_can_finish():
    """wait_briefly returns at once for a finished read, and gives up before its limit when the
    speed so far says the read cannot finish in time (here: 10% read in 10 s, 30 s allowed)."""
    import time

    from runwise_mcp.index import FullRead

    done = FullRead("r", 100)
    done.finished.set()
    assert done.wait_briefly(30) is True
    slow = FullRead("r", 100)
    slow.started -= 10
    slow.advance(10)
    t = time.monotonic()
    assert slow.wait_briefly(30) is False
    assert time.monotonic() - t < 15  # gave up early instead of waiting the 30 s out
    unknown = FullRead("r", 100)  # no progress yet: waits the (short) limit out
    assert unknown.wait_briefly(0.1) is False
