"""Issue 19, writes and incremental reads (items 15-18, 20, 21): exports that cannot be turned
against the tree they read, a persistent cache that is the only write of read-only tools, and
incremental reads that survive a resumed run restarting earlier and a log replaced at its path.

Each test is named after the attack it stops, on real fixture runs made hostile by the test. Race
tests run a swapper or creator thread for a few seconds against repeated calls and assert zero
leaks or overwrites, and that the server still answers afterwards.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from helpers import log_file, run_dir

from runwise_mcp import answers
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex

RACE_SECONDS = 3.0
NOW = 2_000_000_000.0  # a fixed clock: answers of two indexes compare byte for byte


def copy_run(scenario: str, root: Path) -> Path:
    dst = root / "wandb" / run_dir(scenario).name
    shutil.copytree(run_dir(scenario), dst, symlinks=True)
    return dst


def index(root: Path, env: dict[str, str] | None = None) -> RunIndex:
    return RunIndex(load_settings([str(root)], env={"RUNWISE_CACHE_DIR": "off"} if env is None else env),
                    clock=lambda: NOW)


def tree(top: Path) -> dict[str, tuple]:
    """Every path below ``top`` with its kind, size, mtime and content hash (files)."""
    import hashlib

    out: dict[str, tuple] = {}
    for p in sorted(top.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p)] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        else:
            out[str(p)] = ("dir",)
    return out


# ---- item 20: a resumed run whose later segment restarts at an earlier step ----------------------


def _console(path: Path, steps: range, loss, extra: dict[int, str] | None = None) -> None:
    lines = []
    for i in steps:
        lines.append(f"step {i} loss {loss(i):.4f}")
        if extra and i in extra:
            lines.append(extra[i])
    path.write_text("\n".join(lines) + "\n")


def test_attack_resumed_segment_restarting_earlier_tail_run(tmp_path):
    """R005's two real segments, each with an output.log: segment 1 prints steps 0..99 and a
    validation loss at 90..99; segment 2 (resumed from an earlier checkpoint) restarts printing at
    step 10. Every validation point of segment 1 is overridden by the restart; tail_run used to
    index the emptied column (IndexError). Now the overridden key is dropped with the rest, and
    every tool on the run answers."""
    root = tmp_path / "root"
    s1, s2 = copy_run("resume1", root), copy_run("resume2", root)
    _console(s1 / "files" / "output.log", range(100), lambda i: 2 - i / 100,
             {i: f"step {i} val_loss {1.3 - i / 1000:.4f}" for i in range(90, 100)})
    _console(s2 / "files" / "output.log", range(10, 160), lambda i: 1.5 - i / 400)
    ix = index(root)
    out = answers.tail_run(ix, "R005", lines=5)
    assert "latest printed @159: loss 1.103" in out, out
    assert "val_loss" not in out.split("last 5 lines")[0]  # overridden by the restart: not "latest"
    assert out.count("\n  step ") == 5 and out.rstrip().endswith("returns only what is new")
    cursor = out.rsplit("\ncursor ", 1)[1].split(": ", 1)[0]
    with open(s2 / "files" / "output.log", "a") as f:  # the resumed segment goes on
        f.write("step 160 loss 1.0990\n")
    more = answers.tail_run(ix, "R005", lines=5, cursor=cursor)
    assert "latest printed @160 (ahead of the logged history, which ends at 159): loss 1.099" in more
    assert "last 1 line since the cursor" in more and "  step 160 loss 1.0990" in more
    assert "step 159" not in more.split("since the cursor")[1]
    # the other tools on the console history of the restarted run
    hist = answers.get_history(ix, "R005", source="console", keys="loss", samples=500)
    assert "val_loss" not in answers.list_keys(ix, "R005")
    assert "loss" in hist and "step 9 " not in hist  # segment 1 up to the restart, then segment 2
    for tool in (answers.run_summary, answers.history_stats, answers.diagnose_run):
        assert tool(ix, "R005")

    # the same restart earlier than segment 1's first step: all of segment 1 is overridden
    _console(s1 / "files" / "output.log", range(50, 100), lambda i: 2 - i / 100,
             {i: f"step {i} val_loss 1.2" for i in range(90, 100)})
    _console(s2 / "files" / "output.log", range(0, 40), lambda i: 1.5 - i / 400)
    ix = index(root)
    out = answers.tail_run(ix, "R005", lines=3)
    assert "latest printed @39: loss 1.403" in out and "val_loss" not in out


# ---- item 21: a .wandb replaced at the same path --------------------------------------------------

CALLS = [
    ("list_runs", {}),
    ("run_summary", {"run": "latest"}),
    ("list_keys", {"run": "latest"}),
    ("get_history", {"run": "latest", "keys": "train/loss", "samples": 30}),
    ("history_stats", {"run": "latest"}),
    ("get_config", {"run": "latest"}),
    ("sync_runs", {}),
]


def answers_of(ix: RunIndex, calls=CALLS) -> list[str]:
    return [getattr(answers, tool)(ix, **args) for tool, args in calls]


def _warm(ix: RunIndex) -> None:
    """Read the run every way the index can hold it: listed (a skim for a large log), keyed
    (get_history with keys) and in full (run_summary)."""
    answers.list_runs(ix)
    answers.get_history(ix, "latest", keys="train/loss")
    answers.run_summary(ix, "latest")


def test_attack_wandb_log_replaced_same_path_rereads(tmp_path):
    """A run's .wandb is replaced at the same path by another run's (larger) log between two
    calls. The index read it up to an offset; reading on from there in the new file mixed the
    two runs. Now the reader sees another inode and other first bytes and reads from the start:
    every answer equals a fresh index's answer for the new content."""
    for first, second in (("crashed", "finished"), ("killed", "finished"), ("crashed", "killed")):
        root = tmp_path / f"{first}-{second}"
        d = copy_run(first, root)
        target = d / log_file(first).name
        ix = index(root)
        _warm(ix)
        assert first[:5] in answers.list_runs(ix)
        tmp = d / ".replacement"
        shutil.copyfile(log_file(second), tmp)
        assert tmp.stat().st_size > target.stat().st_size  # larger than what was read: no shrink to see
        os.replace(tmp, target)
        got = answers_of(ix)
        fresh = answers_of(index(root))
        assert got == fresh, (first, second)
        assert f"R00{'1' if second == 'finished' else '4'}-{second}" in got[0]
        assert "corrupt chunk" not in got[0] and "orphan" not in got[0]


def test_attack_wandb_log_recreated_smaller_in_place_still_listed(tmp_path):
    """The log is truncated and rewritten in place (same inode) with a smaller log than the
    offset read so far, then grows past that offset again with other content (same inode, other
    first bytes). The run stays listed, with the new content each time."""
    root = tmp_path / "root"
    d = copy_run("finished", root)
    target = d / log_file("finished").name
    ix = index(root)
    _warm(ix)
    ino = target.stat().st_ino
    with open(target, "r+b") as f:  # recreated in place, smaller than the read offset
        f.truncate(0)
        f.write(log_file("crashed").read_bytes())
    assert target.stat().st_ino == ino
    got = answers_of(ix)
    assert "R002-crashed" in got[0] and got == answers_of(index(root))
    _warm(ix)
    with open(target, "r+b") as f:  # and again, larger than the offset: only the first bytes tell
        f.truncate(0)
        f.write(log_file("killed").read_bytes())
    assert target.stat().st_ino == ino and target.stat().st_size > log_file("crashed").stat().st_size
    got = answers_of(ix)
    assert "R004-killed" in got[0] and got == answers_of(index(root))


def test_attack_wandb_log_replaced_same_size_and_mtime_rereads(tmp_path):
    """The replacement has the very size and mtime of the log it replaces (padded, then its
    mtime set back): only the inode tells. It is read again from the start."""
    root = tmp_path / "root"
    d = copy_run("killed", root)
    target = d / log_file("killed").name
    ix = index(root)
    _warm(ix)
    st = target.stat()
    data = log_file("crashed").read_bytes()
    tmp = d / ".replacement"
    tmp.write_bytes(data + b"\0" * (st.st_size - len(data)))  # zero padding: an empty tail
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, target)
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    got = answers_of(ix)
    assert "R002-crashed" in got[0] and got == answers_of(index(root))


def test_attack_wandb_log_swapped_back_and_forth_never_mixes(tmp_path):
    """A swapper thread replaces the log with one of two runs' logs, in turn, for a few seconds
    while the index is asked again and again. Every history answer is one run's or the other's,
    never a mix, and the server still answers afterwards."""
    root = tmp_path / "root"
    d = copy_run("crashed", root)
    target = d / log_file("crashed").name
    variants = [log_file("crashed"), log_file("killed")]
    call = ("get_history", {"run": "latest", "keys": "train/loss", "samples": 20})
    expected = set()
    for v in variants:
        shutil.copyfile(v, target)
        expected.add(answers_of(index(root), [call])[0])
    assert len(expected) == 2
    stop = threading.Event()

    def swap() -> None:
        n = 0
        while not stop.is_set():
            tmp = d / f".swap-{n}"
            shutil.copyfile(variants[n % 2], tmp)
            os.replace(tmp, target)
            n += 1
            time.sleep(0.002)

    ix = index(root)
    t = threading.Thread(target=swap, daemon=True)
    t.start()
    seen, end = [], time.monotonic() + RACE_SECONDS
    try:
        while time.monotonic() < end:
            seen.append(answers_of(ix, [call])[0])
    finally:
        stop.set()
        t.join()
    mixed = [a for a in seen if a not in expected]
    assert not mixed, mixed[0]
    assert len(seen) > 5
    after = answers_of(ix, [call])[0]
    assert after in expected and after == answers_of(index(root), [call])[0]
