"""Issue 19, confinement: every file is opened under the roots and judged from what was opened.

Each test is named after the attack it stops. Race tests run a swapper thread for a few seconds
against repeated calls and assert that no answer leaked outside content and that the server
still answers afterwards.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from helpers import run_dir

from runwise_mcp import answers
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex

SECRET = "TOP-SECRET-OUTSIDE-LINE"
RACE_SECONDS = 3.0


def make_root(tmp_path: Path, scenario: str = "crashed") -> tuple[Path, Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    dst = root / "wandb" / run_dir(scenario).name
    shutil.copytree(run_dir(scenario), dst, symlinks=True)
    return root, outside, dst


def index(root: Path) -> RunIndex:
    return RunIndex(load_settings([str(root)], env={}))


def call_text(fn, *args, **kw) -> str:
    """The answer, or the text of the error a tool would return (errors are answers too)."""
    try:
        return fn(*args, **kw)
    except Exception as e:  # noqa: BLE001 - a UserError is an answer; anything else fails below
        assert type(e).__name__ in ("UserError", "RunNotFound"), f"internal error: {type(e).__name__}: {e}"
        return str(e)


def swap_forever(target: Path, variants: list[Path], stop: threading.Event) -> int:
    """Atomically rename copies of ``variants`` onto ``target`` in turn until ``stop``."""
    n = 0
    while not stop.is_set():
        src = variants[n % len(variants)]
        tmp = target.with_name(f".swap-{n}")
        if src.is_symlink():
            os.symlink(os.readlink(src), tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)
        n += 1
        time.sleep(0.0005)
    return n


def test_attack_directory_symlink_repointed_outside_after_first_read(tmp_path):
    """A file symlink points through a directory symlink inside the root; once read, the directory
    symlink is re-pointed outside. No verdict is cached: the outside file is never read."""
    root, outside, dst = make_root(tmp_path)
    inside = root / "inside"
    inside.mkdir()
    (inside / "out.log").write_text("step 1 loss 0.5\nINSIDE-LINE\n")
    (outside / "out.log").write_text(f"step 1 loss 0.5\n{SECRET}\n")
    os.symlink(inside, root / "shared")
    out = dst / "files" / "output.log"
    out.unlink()
    os.symlink(root / "shared" / "out.log", out)
    ix = index(root)
    first = answers.tail_run(ix, "R002", lines=20)
    assert "INSIDE-LINE" in first
    os.unlink(root / "shared")
    os.symlink(outside, root / "shared")
    time.sleep(0.01)
    for _ in range(3):
        again = call_text(answers.tail_run, ix, "R002", lines=20)
        assert SECRET not in again
    assert any("output.log not read: it leads outside the roots" in p for p in ix.problems())


def test_attack_output_log_swapped_with_outside_symlink_leaks_nothing(tmp_path):
    """files/output.log is swapped between a regular file and a symlink to an outside file while
    tail_run, run_summary and list_keys are called over and over: no answer holds the outside text."""
    root, outside, dst = make_root(tmp_path)
    (outside / "secret.log").write_text(f"{SECRET}\nstep 5 loss 9.9 {SECRET}\n" * 50)
    variants_dir = tmp_path / "variants"
    variants_dir.mkdir()
    regular = variants_dir / "regular.log"
    regular.write_text("step 1 loss 0.5\nstep 2 loss 0.4\n")
    link = variants_dir / "link.log"
    os.symlink(outside / "secret.log", link)
    target = dst / "files" / "output.log"
    stop = threading.Event()
    swapper = threading.Thread(target=swap_forever, args=(target, [regular, link], stop), daemon=True)
    swapper.start()
    ix = index(root)
    calls = 0
    deadline = time.time() + RACE_SECONDS
    try:
        while time.time() < deadline:
            for fn in (answers.tail_run, answers.run_summary, answers.list_keys):
                text = call_text(fn, ix, "R002")
                assert SECRET not in text, f"{fn.__name__} leaked outside content"
                calls += 1
    finally:
        stop.set()
        swapper.join(5)
    assert calls > 10
    os.replace(regular, target)
    assert "R002-crashed" in answers.tail_run(ix, "R002")  # still answers


def test_attack_config_yaml_swapped_with_outside_symlink_leaks_nothing(tmp_path):
    root, outside, dst = make_root(tmp_path, "finished")
    (outside / "config.yaml").write_text(f"secret_key:\n  value: {SECRET}\n")
    variants_dir = tmp_path / "variants"
    variants_dir.mkdir()
    regular = variants_dir / "config.yaml"
    regular.write_text("inside_key:\n  value: 1\n")
    link = variants_dir / "link.yaml"
    os.symlink(outside / "config.yaml", link)
    stop = threading.Event()
    swapper = threading.Thread(target=swap_forever, args=(dst / "files" / "config.yaml", [regular, link], stop),
                               daemon=True)
    swapper.start()
    ix = index(root)
    calls = 0
    deadline = time.time() + RACE_SECONDS
    try:
        while time.time() < deadline:
            text = call_text(answers.get_config, ix, "R001")
            assert SECRET not in text
            calls += 1
    finally:
        stop.set()
        swapper.join(5)
    assert calls > 5


def test_attack_fifo_swapped_in_cannot_hang_the_server(tmp_path):
    """output.log swapped with a FIFO (which a blocking open would wait on forever): every call
    answers, and a call on another run answers meanwhile."""
    root, outside, dst = make_root(tmp_path)
    variants_dir = tmp_path / "variants"
    variants_dir.mkdir()
    regular = variants_dir / "regular.log"
    regular.write_text("step 1 loss 0.5\n")
    fifo = variants_dir / "fifo"
    os.mkfifo(fifo)
    shutil.copytree(run_dir("finished"), root / "wandb" / run_dir("finished").name, symlinks=True)
    target = dst / "files" / "output.log"
    ix = index(root)
    results: list[str] = []

    def calls() -> None:
        deadline = time.time() + RACE_SECONDS
        while time.time() < deadline:
            results.append(call_text(answers.tail_run, ix, "R002"))
            results.append(call_text(answers.run_summary, ix, "R001"))

    stop = threading.Event()

    def swapper() -> None:
        n = 0
        while not stop.is_set():
            tmp = target.with_name(f".swap-{n}")
            if n % 2:
                os.mkfifo(tmp)
            else:
                shutil.copyfile(regular, tmp)
            os.replace(tmp, target)
            n += 1
            time.sleep(0.001)

    s = threading.Thread(target=swapper, daemon=True)
    s.start()
    worker = threading.Thread(target=calls, daemon=True)
    worker.start()
    worker.join(RACE_SECONDS + 30)
    stop.set()
    s.join(5)
    assert not worker.is_alive(), "a call hung on a FIFO"
    assert len(results) > 4
    os.unlink(target)
    os.mkfifo(target)  # a FIFO left in place: refused and reported, never opened for good
    ix2 = index(root)
    text = answers.tail_run(ix2, "R002")
    assert "R002-crashed" in text
    assert any("output.log not read: it is not a regular file" in p for p in ix2.problems())


def test_attack_runwise_toml_symlinked_outside_is_not_read(tmp_path):
    root, outside, _ = make_root(tmp_path)
    (outside / "secret.toml").write_text(f'[diagnose]\nspike_ratio = "{SECRET}"\n')
    os.symlink(outside / "secret.toml", root / "runwise.toml")
    settings = load_settings([str(root)], env={}, cwd=str(root))
    assert settings.diagnose == {}
    assert any("runwise.toml ignored: it leads outside the roots" in p for p in settings.config_problems)
    assert not any(SECRET in p for p in settings.config_problems)
    text = answers.diagnose_run(RunIndex(settings), "R002")
    assert SECRET not in text


def test_attack_sync_status_reports_nothing_of_an_outside_file(tmp_path):
    """sync_runs status once gave the size of an outside file behind a symlinked output.log."""
    root, outside, dst = make_root(tmp_path)
    (outside / "shadow").write_bytes(b"x" * 631)
    out = dst / "files" / "output.log"
    out.unlink()
    os.symlink(outside / "shadow", out)
    text = answers.sync_runs(index(root), ["R002"])
    assert "631" not in text
    assert "no output.log" in text


def test_attack_symlink_replaced_mid_scan_never_breaks_the_listing(tmp_path):
    """A run directory swapped between a real directory and a symlink while runs are listed: no
    uncaught OSError, the listing answers every time."""
    root, outside, dst = make_root(tmp_path)
    shutil.copytree(run_dir("finished"), root / "wandb" / run_dir("finished").name, symlinks=True)
    spare = tmp_path / "spare"
    shutil.copytree(dst, spare, symlinks=True)
    link = tmp_path / "link"
    os.symlink(outside, link)
    stop = threading.Event()

    swaps = [0]

    def swapper() -> None:
        n = 0
        while not stop.is_set():
            tmp, aside = dst.with_name(f".swap-{n}"), dst.with_name(f".aside-{n}")
            if n % 2:
                os.symlink(outside, tmp)
            else:
                shutil.copytree(spare, tmp, symlinks=True)
            os.rename(dst, aside)  # the directory and the symlink trade places
            os.rename(tmp, dst)
            if aside.is_symlink():
                aside.unlink()
            else:
                shutil.rmtree(aside)
            n += 1
            swaps[0] = n

    s = threading.Thread(target=swapper, daemon=True)
    s.start()
    ix = index(root)
    listed = 0
    deadline = time.time() + RACE_SECONDS
    try:
        while time.time() < deadline:
            text = answers.list_runs(ix)
            assert "R001-finished" in text
            listed += 1
    finally:
        stop.set()
        s.join(10)
    assert listed > 3 and swaps[0] > 3
