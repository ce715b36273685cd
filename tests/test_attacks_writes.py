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


# ---- items 15-17: exports ---------------------------------------------------------------------

EXPORTED = ("wandb-history.jsonl", "wandb-summary.json", "config.yaml", "wandb-metadata.json")


def export(ix: RunIndex, **kw) -> str:
    """sync_runs(action="export") on R002, its answer or the text of its tool error."""
    try:
        return answers.sync_runs(ix, runs=["R002-crashed"], action="export", **kw)
    except answers.UserError as e:
        return f"error: {e}"


def test_attack_inplace_export_through_files_symlink_refused(tmp_path):
    """files/ is a symlink to an outside directory (or to another directory inside the root):
    in_place export used to write there. It is refused, and nothing is written anywhere."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside\n")
    d = copy_run("crashed", root)
    real_files = root / "elsewhere-inside"
    shutil.move(d / "files", real_files)
    for link_to in (outside, real_files):
        if (d / "files").is_symlink():
            (d / "files").unlink()
        os.symlink(link_to, d / "files")
        ix = index(root)
        answers.list_runs(ix)
        before, before_out = tree(root), tree(outside)
        out = export(ix, in_place=True)
        assert out.startswith("error: R002-crashed (riserfai): its files/ is not a real directory (a symlink or a file); "
                              "nothing exported; use dest= instead"), out
        assert tree(root) == before and tree(outside) == before_out
    # the run directory itself swapped for a symlink to an outside copy that has a real files/
    (d / "files").unlink()
    shutil.move(real_files, d / "files")
    shutil.copytree(d, outside / "run", symlinks=True)
    ix = index(root)
    answers.list_runs(ix)
    moved = root / "moved-away"
    os.rename(d, moved)
    os.symlink(outside / "run", d)
    before_out = tree(outside)
    out = export(ix, in_place=True)  # the rescan no longer sees a run there (symlinks are not walked)
    assert out.startswith("error: "), out
    assert tree(outside) == before_out
    # had the swap come after the rescan, the opened files/ is checked where it really is
    from runwise_mcp.confine import Refused, Roots

    try:
        Roots([str(root)]).open_dir_to_write(str(d / "files"), under_roots=True)
        raise AssertionError("not refused")
    except Refused as e:
        assert e.why == f"it leads outside the roots (to {outside / 'run' / 'files'})"


def test_attack_inplace_export_files_swapped_with_symlink_race(tmp_path):
    """A swapper thread turns files/ into a symlink to an outside directory and back into a fresh
    real directory, over and over, while in_place exports run. Not one file lands outside; every
    export either writes into a real files/ or is refused; the server answers afterwards."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    d = copy_run("crashed", root)
    ix = index(root)
    answers.list_runs(ix)
    stop = threading.Event()
    link = d / ".files-link"
    os.symlink(outside, link)

    def swap() -> None:
        n = 0
        while not stop.is_set():
            os.rename(d / "files", d / f".old-{n}")
            if n % 2:
                os.mkdir(d / ".files-new")
                os.rename(d / ".files-new", d / "files")
            else:
                os.symlink(outside, d / ".files-new")
                os.rename(d / ".files-new", d / "files")
            n += 1
            time.sleep(0.0005)

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    outcomes = {"exported": 0, "refused": 0, "other": 0}
    end = time.monotonic() + RACE_SECONDS
    try:
        while time.monotonic() < end:
            out = export(ix, in_place=True)
            if out.startswith("exported R002-crashed (riserfai) to "):
                outcomes["exported"] += 1
            elif "its files/" in out or "no files/ directory" in out:
                outcomes["refused"] += 1
            else:
                outcomes["other"] += 1
                raise AssertionError(out)
    finally:
        stop.set()
        t.join()
    assert list(outside.iterdir()) == [], list(outside.iterdir())  # zero leaks
    assert outcomes["refused"] > 0 and sum(outcomes.values()) > 5, outcomes
    fresh = [p for p in d.glob(".old-*") if not p.is_symlink() and p.name != ".old-0"]  # .old-0: the original
    for p in fresh:  # every real files/ the swapper made holds exports only, complete ones
        assert {q.name for q in p.iterdir()} <= set(EXPORTED)
    if (d / "files").is_symlink():
        (d / "files").unlink()
        os.mkdir(d / "files")
    assert export(ix, in_place=True).startswith("exported R002-crashed (riserfai) to its own ")  # still answers


def test_attack_export_dest_inside_root_refused(tmp_path):
    """dest inside a root (directly, through a symlink that resolves inside, or the root itself)
    is refused before anything is created; a second export into the same (outside) dest keeps
    every file the first wrote ("exists, kept"), even one changed since."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    copy_run("crashed", root)
    os.symlink(root / "wandb", outside / "into-root")
    ix = index(root)
    before = tree(root)
    for dest in (root / "exports", root, root / "wandb" / "x" / "y", outside / "into-root" / "sub",
                 outside / "into-root"):
        out = export(ix, dest=str(dest))
        assert out.startswith(f"error: dest {dest} is inside a root ({root}); an export never writes under the "
                              f"roots it reads"), out
    assert tree(root) == before
    assert not (root / "exports").exists() and not (outside / "into-root" / "sub").exists()
    # NUL in dest: a clear error, not an internal one
    assert export(ix, dest=str(outside / "a\0b")).startswith("error: dest contains a NUL character")
    # the second export never overwrites the first
    dest = outside / "exports"
    first = export(ix, dest=str(dest))
    assert first.startswith(f"exported R002-crashed (riserfai) to {dest / 'riserfai'}: wandb-history.jsonl (80 rows, ")
    (dest / "riserfai" / "config.yaml").write_text("edited: by hand\n")
    kept = tree(dest)
    second = export(ix, dest=str(dest))
    assert second.count("(exists, kept)") == 4, second
    assert tree(dest) == kept and (dest / "riserfai" / "config.yaml").read_text() == "edited: by hand\n"
    assert sorted(p.name for p in (dest / "riserfai").iterdir()) == sorted(EXPORTED)  # no temporary files left


def test_attack_concurrent_create_during_inplace_export_not_overwritten(tmp_path):
    """Another process creates the export's files in files/ while an in_place export runs (at a
    random moment inside it). The check-then-replace export used to overwrite them. Now each file
    is linked into place only if absent: whoever creates a file first keeps it, and the export's
    answer says "exists, kept" for exactly the files the other process created."""
    import random

    root = tmp_path / "root"
    d = copy_run("crashed", root)
    files = d / "files"
    ix = index(root)
    answers.list_runs(ix)
    t0 = time.monotonic()
    export(ix, in_place=True)
    took = time.monotonic() - t0
    rounds = overwritten = contested = 0
    end = time.monotonic() + RACE_SECONDS
    rng = random.Random(19)
    while time.monotonic() < end or rounds < 10:
        for name in EXPORTED:
            (files / name).unlink(missing_ok=True)
        mine: dict[str, bytes] = {}
        delay = rng.uniform(0, took)
        names = list(EXPORTED)
        rng.shuffle(names)

        def create(delay=delay, names=names, mine=mine, n=rounds) -> None:
            time.sleep(delay)
            for name in names:
                body = f"created by another process, round {n}\n".encode()
                try:
                    fd = os.open(files / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                mine[name] = body

        t = threading.Thread(target=create)
        t.start()
        out = export(ix, in_place=True)
        t.join()
        assert out.startswith("exported R002-crashed (riserfai) to its own "), out
        for name in EXPORTED:
            data = (files / name).read_bytes()
            if name in mine:
                contested += 1
                overwritten += data != mine[name]
                assert f"{name} (exists, kept)" in out, (name, out)
            else:
                assert f"{name} (exists, kept)" not in out and not data.startswith(b"created by another")
        assert sorted(p.name for p in files.iterdir()) == sorted(EXPORTED + ("output.log", "requirements.txt")
                                                                 if (files / "output.log").exists() else
                                                                 EXPORTED + ("requirements.txt",))
        rounds += 1
    assert overwritten == 0 and contested > 0 and rounds >= 10
    assert "crashed (exit code 1)" in answers.run_summary(ix, "R002")  # still answers


def test_attack_export_temporary_file_swapped_refused(tmp_path):
    """Without O_TMPFILE the temporary file has a name; swapping that name for a symlink to an
    outside file while it is written must not link the outside file into the run: the link is
    checked to be the file written, removed and refused otherwise."""
    from runwise_mcp.confine import Refused, create_new

    target, outside = tmp_path / "files", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("SECRET\n")

    def hostile_write(f) -> None:
        f.write("exported\n")
        tmp = next(p for p in target.iterdir() if p.name.startswith(".config.yaml."))
        tmp.unlink()
        os.symlink(outside / "secret", tmp)

    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            create_new(fd, "config.yaml", hostile_write, tmpfile=False)
            raise AssertionError("not refused")
        except Refused as e:
            assert "temporary file was replaced" in e.why
        assert list(target.iterdir()) == [] and (outside / "secret").read_text() == "SECRET\n"
        assert create_new(fd, "config.yaml", lambda f: f.write("a: 1\n"), tmpfile=False) == 5
        assert create_new(fd, "config.yaml", lambda f: f.write("b: 2\n"), tmpfile=False) is None
        assert create_new(fd, "config.yaml", lambda f: f.write("c: 3\n")) is None  # the O_TMPFILE way
        assert create_new(fd, "other.yaml", lambda f: f.write("c: 3\n")) == 5
        assert (target / "config.yaml").read_text() == "a: 1\n" and (target / "other.yaml").read_text() == "c: 3\n"
        assert sorted(p.name for p in target.iterdir()) == ["config.yaml", "other.yaml"]
        assert oct((target / "other.yaml").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    finally:
        os.close(fd)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ---- item 18: root = the working directory = $HOME -------------------------------------------


async def _home_session(home: Path, cache: Path) -> dict[str, str]:
    import sys

    from helpers import REPO
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp"], cwd=str(home),
                                   env={"HOME": str(home), "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(REPO),
                                        "PYTHONDONTWRITEBYTECODE": "1"})
    got: dict[str, str] = {}
    async with Client(params) as c:
        for tool, args in (("list_runs", {}), ("run_summary", {"run": "R002"}), ("tail_run", {"run": "R002"}),
                           ("get_history", {"run": "R002", "keys": "train/loss"}), ("list_keys", {"run": "R002"}),
                           ("sync_runs", {"runs": ["R002"], "action": "export"}), ("list_runs", {"query": ""}),
                           ("sync_runs", {})):
            res = await c.call_tool(tool, args)
            text = "\n".join(x.text for x in res.content)
            assert not res.is_error, (tool, text)
            got[f"{tool} {sorted(args.items())}"] = text
    return got


def test_attack_home_as_root_cache_not_written_under_root(tmp_path):
    """The server started as users do, with no root: root = the working directory = $HOME, whose
    ~/.cache holds our cache directory. A real stdio session runs read tools and a default export
    (which goes to the cache). Nothing under the root changes except the cache directory; the
    cache directory's files are never listed as runs (a W&B run planted there is not seen) nor
    read as run data (the run's output.log linked into the cache is refused)."""
    import anyio

    home = tmp_path / "home"
    cache = home / ".cache"
    ours = cache / "runwise-mcp"
    d = copy_run("crashed", home / "project")
    # a run inside our cache directory, as an export or a copy might leave one: not a run of the root
    copy_run("finished", ours / "export")
    (ours / "logs").mkdir(parents=True)
    secret = ours / "logs" / "notes.log"
    secret.write_text("step 1 loss 0.5\nSECRET-FROM-THE-CACHE-DIR\n")
    out_log = d / "files" / "output.log"
    os.rename(out_log, d / "files" / "output.log.orig")
    os.symlink(secret, out_log)  # run data that is really a file of the cache directory
    (home / ".bashrc").write_text("# a home directory\n")
    before = {p: v for p, v in tree(home).items() if not p.startswith(str(ours))}
    got = anyio.run(_home_session, home, cache)
    after = {p: v for p, v in tree(home).items() if not p.startswith(str(ours))}
    assert after == before  # nothing under the root but the cache directory changed
    listed = got["list_runs []"]
    assert listed.startswith(f"1 run under {home}") and "R002-crashed" in listed and "R001" not in listed, listed
    assert "R001" not in got["sync_runs []"] and "1 run (1 run directory)" in got["sync_runs []"]
    assert all("SECRET-FROM-THE-CACHE-DIR" not in text for text in got.values())
    assert "output.log not read" in got["sync_runs []"] or "no output.log" in got["sync_runs []"]
    export_dir = ours / "export" / "riserfai"
    assert f"exported R002-crashed (riserfai) to {export_dir}:" in got["sync_runs [('action', 'export'), ('runs', ['R002'])]"]
    assert sorted(p.name for p in export_dir.iterdir()) == sorted(EXPORTED)  # the cache dir was written
    assert got["list_runs [('query', '')]"] == listed  # and what was written there is not a run either
