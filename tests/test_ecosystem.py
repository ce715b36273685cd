"""Issue 17: portable tool schemas, plain argument errors, the `runwise` command (same text as the
tools), plot_runs (a real PNG), --help and the bare-terminal note, the Inspector's strict check and
the sdist."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from helpers import FIXTURES, REPO, run_dir
from mcp import Client

from runwise_mcp import human_cli
from runwise_mcp.config import (
    ENV_CACHE_DIR,
    ENV_CACHE_MB,
    ENV_DEPTH,
    ENV_MAIN_METRIC,
    ENV_ROOT,
    ENV_STALE,
    ENV_WANDB_CLI,
    load_settings,
)
from runwise_mcp.server import build_server

pytestmark = pytest.mark.anyio
ENV_VARS = (ENV_ROOT, ENV_STALE, ENV_DEPTH, ENV_MAIN_METRIC, ENV_CACHE_MB, ENV_WANDB_CLI, ENV_CACHE_DIR)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def client_for(*roots) -> Client:
    return Client(build_server(load_settings([str(r) for r in roots], env={})), raise_exceptions=True)


def texts(res) -> str:
    return "\n".join(c.text for c in res.content if c.type == "text")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---- schemas and arguments -----------------------------------------------------------------------


def _type_lists(schema, path="inputSchema"):
    if isinstance(schema, dict):
        if isinstance(schema.get("type"), list):
            yield path
        for k, v in schema.items():
            yield from _type_lists(v, f"{path}.{k}")
    elif isinstance(schema, list):
        for i, v in enumerate(schema):
            yield from _type_lists(v, f"{path}[{i}]")


async def test_every_parameter_has_one_type():
    async with client_for(FIXTURES) as c:
        tools = (await c.list_tools()).tools
    bad = [f"{t.name}: {p}" for t in tools for p in _type_lists(t.input_schema)]
    assert not bad, bad
    for t in tools:
        for name, prop in t.input_schema.get("properties", {}).items():
            assert "type" in prop or "enum" in prop, (t.name, name, prop)


async def test_list_or_string_parameters_still_take_a_comma_string():
    """keys/runs are declared as arrays; the comma-separated string they used to take still works."""
    async with client_for(FIXTURES) as c:
        as_list = await c.call_tool("get_history", {"run": "R002-crashed", "keys": ["train/loss", "train/acc"]})
        as_text = await c.call_tool("get_history", {"run": "R002-crashed", "keys": "train/loss,train/acc"})
        cmp_text = await c.call_tool("compare_runs", {"runs": "R001-finished,R002-crashed"})
    assert not as_list.is_error and texts(as_list) == texts(as_text)
    assert not cmp_text.is_error and "R002-crashed" in texts(cmp_text)


@pytest.mark.parametrize("tool,args,want", [
    ("list_runs", {"limit": 0}, "limit must be between 1 and 200; got 0"),
    ("list_runs", {"limit": 201}, "limit must be between 1 and 200; got 201"),
    ("list_runs", {"offset": -1}, "offset must be at least 0; got -1"),
    ("list_runs", {"limit": "many"}, 'limit must be an integer between 1 and 200; got "many"'),
    ("list_runs", {"state": "done"}, 'state must be one of any, running, finished, crashed, killed; got "done"'),
    ("get_history", {"samples": 0}, "samples must be between 1 and 2000; got 0"),
    ("get_history", {"keys": 5}, "keys must be a list of strings (or one comma-separated string); got 5"),
    ("compare_runs", {"runs": ["a", "b"], "config_diff": "perhaps"}, 'config_diff must be true or false; got "perhaps"'),
    ("best_run", {}, "metric is required: pass one metric name (list_keys shows them)"),
    ("plot_runs", {"log_y": [1]}, "log_y must be true or false; got [1]"),
])
async def test_rejected_value_is_one_plain_sentence(tool, args, want):
    async with client_for(FIXTURES) as c:
        res = await c.call_tool(tool, args)
    out = texts(res)
    assert res.is_error and out == f"Error executing tool {tool}: {want}"
    assert "\n" not in out and "http" not in out and "validation error" not in out and "type=" not in out


async def test_unknown_argument_names_the_accepted_ones():
    async with client_for(FIXTURES) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        res = await c.call_tool("list_keys", {"run": "R002-crashed", "patern": "train"})
        two = await c.call_tool("get_history", {"run": "R002-crashed", "key": "train/loss", "sample": 5})
        ok = await c.call_tool("list_keys", {"run": "R002-crashed", "pattern": "train"})
    accepted = ", ".join(tools["list_keys"].input_schema["properties"])
    assert res.is_error and texts(res) == f"Error executing tool list_keys: unknown argument patern; this tool accepts {accepted}"
    assert two.is_error and "unknown arguments key, sample;" in texts(two)
    for name in tools["get_history"].input_schema["properties"]:
        assert name in texts(two)
    assert not ok.is_error


def test_inspector_strict_tools_list_has_no_warnings():
    """The MCP Inspector's portability check (`--strict`) over the real stdio server."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed: the MCP Inspector CLI cannot run here")
    cmd = [npx, "-y", "@modelcontextprotocol/inspector@2.12.0", "--cli", "-e", f"PYTHONPATH={REPO}",
           sys.executable, "-m", "runwise_mcp", "--root", str(FIXTURES), "--method", "tools/list", "--strict"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(REPO))
    if p.returncode != 0 and any(s in p.stderr for s in ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "E404", "ECONNREFUSED")):
        pytest.skip(f"npx could not fetch @modelcontextprotocol/inspector@2.12.0: {p.stderr.strip()[-200:]}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Warning" not in p.stderr and "Issue:" not in p.stderr, p.stderr[-3000:]
    tools = json.loads(p.stdout)["tools"]
    assert "plot_runs" in [t["name"] for t in tools]


# ---- runwise-mcp: --help and the bare terminal ------------------------------------------------------


def test_help_lists_every_env_var_and_config_file():
    out = subprocess.run([sys.executable, "-m", "runwise_mcp", "--help"], capture_output=True, text=True,
                         cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60).stdout
    for name in (*ENV_VARS, "runwise.toml", "[tool.runwise]", "pyproject.toml", "--check"):
        assert name in out, name


def test_bare_start_in_a_terminal_says_what_it_is_on_stderr():
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "runwise_mcp", "--root", str(FIXTURES)], stdin=slave,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO),
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    os.close(slave)
    try:
        line = p.stderr.readline().decode()
    finally:
        p.kill()
        out, _ = p.communicate(timeout=30)
        os.close(master)
    assert "MCP server" in line and "--check" in line and line.endswith("\n")
    assert out == b""  # nothing but protocol on stdout


def test_started_by_an_editor_prints_no_note(tmp_path):
    p = subprocess.run([sys.executable, "-m", "runwise_mcp", "--root", str(FIXTURES)], input=b"",
                       capture_output=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert p.returncode == 0 and b"MCP server that your editor starts" not in p.stderr and p.stdout == b""


# ---- runwise: the same text as the tools ---------------------------------------------------------------


NOW = time.time()  # one clock for the tool and the command: "last write 14m ago" must not tick between them


def fixed_index(root=FIXTURES):
    from runwise_mcp.index import RunIndex

    return RunIndex(load_settings([str(root)], env={}), clock=lambda: NOW)


def fixed_client(root=FIXTURES) -> Client:
    return Client(build_server(index=fixed_index(root)), raise_exceptions=True)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        human_cli.main(["--root", str(FIXTURES), *argv], index=fixed_index())
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


CLI_CASES = [
    (["list", "-q", "R00"], "list_runs", {"query": "R00"}),
    (["list", "--state", "crashed", "--limit", "3"], "list_runs", {"state": "crashed", "limit": 3}),
    (["summary", "R002-crashed"], "run_summary", {"run": "R002-crashed"}),
    (["summary", "R001-finished", "-k", "train/loss"], "run_summary", {"run": "R001-finished", "keys": ["train/loss"]}),
    (["keys", "R002-crashed"], "list_keys", {"run": "R002-crashed"}),
    (["config", "R002-crashed", "-p", "lr"], "get_config", {"run": "R002-crashed", "pattern": "lr"}),
    (["history", "R002-crashed", "-k", "train/loss", "--samples", "5"], "get_history",
     {"run": "R002-crashed", "keys": ["train/loss"], "samples": 5}),
    (["history", "R001-finished", "-k", "train/loss", "-k", "train/acc", "--step-min", "10", "--step-max", "60"],
     "get_history", {"run": "R001-finished", "keys": ["train/loss", "train/acc"], "step_min": 10, "step_max": 60}),
    (["stats", "R002-crashed"], "history_stats", {"run": "R002-crashed"}),
    (["best", "train/loss", "--by", "last"], "best_run", {"metric": "train/loss", "by": "last"}),
    (["compare", "R001-finished@50", "R002-crashed@50"], "compare_runs", {"runs": ["R001-finished@50", "R002-crashed@50"]}),
    (["compare", "R001-finished", "R002-crashed", "--json"], "compare_runs",
     {"runs": ["R001-finished", "R002-crashed"], "format": "json"}),
    (["aggregate", "-q", "fixture", "-k", "train/loss", "--at", "50"], "aggregate_runs",
     {"query": "fixture", "keys": ["train/loss"], "at": 50}),
    (["diagnose", "R002-crashed"], "diagnose_run", {"run": "R002-crashed"}),
    (["tail", "R002-crashed", "-n", "5"], "tail_run", {"run": "R002-crashed", "lines": 5}),
    (["status"], "sync_runs", {}),
    (["summary", "no-such-run"], "run_summary", {"run": "no-such-run"}),
    (["history", "R002-crashed", "-k", "no/such/key"], "get_history", {"run": "R002-crashed", "keys": ["no/such/key"]}),
]


@pytest.mark.parametrize("argv,tool,args", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
async def test_cli_prints_what_the_tool_returns(argv, tool, args, capsys):
    async with fixed_client() as c:
        res = await c.call_tool(tool, args)
    code, out, err = run_cli(argv, capsys)
    if res.is_error:
        assert code == 1 and out == ""
        assert err == "runwise: " + texts(res).removeprefix(f"Error executing tool {tool}: ") + "\n"
    else:
        assert code == 0 and err == ""
        assert out == texts(res) + "\n"


async def test_cli_history_csv_is_the_tools_csv(capsys):
    async with fixed_client() as c:
        res = await c.call_tool("get_history", {"run": "R001-finished", "keys": ["train/loss"], "samples": 50})
    code, out, _ = run_cli(["history", "R001-finished", "-k", "train/loss", "--samples", "50", "--csv"], capsys)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["step", "train/loss"] and 10 < len(rows) <= 51
    assert not any(r and r[0].startswith("#") for r in rows) and all(r[0].isdigit() for r in rows[1:])
    assert out.rstrip("\n") in texts(res)


async def test_cli_export_writes_what_the_tool_writes(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    async with fixed_client() as c:
        res = await c.call_tool("sync_runs", {"runs": ["R002-crashed"], "action": "export", "dest": str(a)})
    code, out, err = run_cli(["export", "R002-crashed", "--dest", str(b)], capsys)
    assert not res.is_error and code == 0, err
    assert out.rstrip("\n").replace(str(b), "DEST") == texts(res).replace(str(a), "DEST")
    got_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    assert got_a and got_a == sorted(p.relative_to(b) for p in b.rglob("*"))


def test_runwise_console_script_exit_status(tmp_path):
    exe = Path(sys.executable).parent / "runwise"
    if not exe.exists():
        pytest.skip("the runwise console script is not installed in this environment (pip install -e .)")
    ok = subprocess.run([str(exe), "--root", str(FIXTURES), "list", "-q", "R00"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and "R001-finished" in ok.stdout and ok.stderr == ""
    bad = subprocess.run([str(exe), "--root", str(FIXTURES), "summary", "no-such-run"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout == "" and bad.stderr.startswith("runwise: ")
    usage = subprocess.run([str(exe), "--root", str(FIXTURES), "history", "latest"], capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode != 0 and "-k" in usage.stderr  # keys are required for history


def _copy_run(tmp_path: Path, scenario: str) -> Path:
    dst = tmp_path / "runs" / "wandb" / run_dir(scenario).name
    shutil.copytree(run_dir(scenario), dst, symlinks=True)
    return dst


def test_tail_follow_prints_new_console_lines(tmp_path):
    d = _copy_run(tmp_path, "crashed")
    log = d / "files" / "output.log"
    settings = load_settings([str(tmp_path / "runs")], env={})
    from runwise_mcp.index import RunIndex

    index = RunIndex(settings)
    args = human_cli._parser().parse_args(["tail", "R002-crashed", "-f", "--interval", "0"])
    seen: list[str] = []
    looks = iter([["step 80 new line one"], [], ["step 81 new line two", "Traceback (most recent call last):"]])

    def sleep(_):
        lines = next(looks)
        if lines:
            with open(log, "a") as f:
                f.write("".join(x + "\n" for x in lines))

    human_cli.follow(args, index, seen.append, sleep=sleep, rounds=3)
    assert len(seen) == 3  # the first answer, then one per look that found new lines (the quiet one prints nothing)
    assert "new line one" in seen[1] and "new line two" not in seen[1]
    assert "new line two" in seen[2] and "new line one" not in seen[2]
    assert "! Traceback" in seen[2] or "Traceback" in seen[2]


def test_tail_follow_stops_on_ctrl_c(tmp_path):
    _copy_run(tmp_path, "crashed")
    # Ctrl-C as a terminal delivers it: a runner that starts the tests in the background (where
    # SIGINT is ignored, and a child inherits that) must not make the command deaf to it.
    p = subprocess.Popen([sys.executable, "-m", "runwise_mcp.human_cli", "--root", str(tmp_path / "runs"), "tail",
                          "R002-crashed", "-f", "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = p.stdout.readline().decode()
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert "R002-crashed" in first
    assert p.returncode == 0 and b"Traceback" not in err


# ---- plot_runs -------------------------------------------------------------------------------------------


def _image(res) -> bytes:
    imgs = [c for c in res.content if c.type == "image"]
    assert len(imgs) == 1 and imgs[0].mime_type == "image/png"
    return base64.b64decode(imgs[0].data)


async def test_plot_is_a_small_png_with_a_one_line_caption():
    async with client_for(FIXTURES) as c:
        res = await c.call_tool("plot_runs", {"runs": ["R001-finished", "R002-crashed"], "keys": ["train/loss"]})
    assert not res.is_error, texts(res)
    png = _image(res)
    w, h = png_size(png)
    assert 560 <= w <= 640 and 280 <= h <= 320
    assert len(png) < 60_000
    cap = texts(res)
    assert "\n" not in cap and "train/loss" in cap and "R001-finished" in cap and "R002-crashed" in cap
    assert f"({len(png) / 1024:.0f} KB PNG)" in cap


async def test_plot_marks_agree_with_the_other_tools():
    """The caption's first NaN is the first NaN row of get_history (every point), and its best is
    history_stats' min."""
    async with client_for(FIXTURES) as c:
        res = await c.call_tool("plot_runs", {"runs": "R001-finished", "keys": "train/loss"})
        hist = texts(await c.call_tool("get_history", {"run": "R001-finished", "keys": ["train/loss"],
                                                        "samples": 2000, "source": "history"}))
        stats = texts(await c.call_tool("history_stats", {"run": "R001-finished", "keys": ["train/loss"]}))
    cap = texts(res)
    rows = [r for r in csv.reader(io.StringIO(hist.split("\nstep,", 1)[1])) if r][1:]
    nan_steps = [int(r[0]) for r in rows if r[1].lower() in ("nan", "inf", "-inf")]
    if nan_steps:
        assert f"first NaN train/loss@{nan_steps[0]:,}" in cap or f"first NaN train/loss@{nan_steps[0]}" in cap
    else:
        assert "first NaN" not in cap
    finite = [(float(r[1]), int(r[0])) for r in rows if r[1] and r[1].lower() not in ("nan", "inf", "-inf")]
    best_value, best_step = min(finite)
    assert f"@{best_step}" in cap.split("best ●", 1)[1] and "min" in stats


ANALYSIS = REPO / "tests" / "fixtures" / "analysis_runs"
ANALYSIS_TRUTH = json.loads((ANALYSIS / "manifest.json").read_text())


async def test_plot_marks_the_generators_truth():
    """On runs made with a known spike and a known first NaN (the fixture generator's truth), the
    caption marks them; 1,000-point runs are drawn through get_history's bucket sampling."""
    spike, nan = ANALYSIS_TRUTH["A01-spike"]["truth"], ANALYSIS_TRUTH["A02-nan"]["truth"]
    async with client_for(ANALYSIS) as c:
        s = await c.call_tool("plot_runs", {"runs": ["A01-spike"], "keys": ["train/loss"]})
        n = await c.call_tool("plot_runs", {"runs": ["A02-nan"], "keys": ["train/loss"]})
        part = await c.call_tool("plot_runs", {"runs": ["A01-spike"], "keys": ["train/loss"], "step_min": 100,
                                               "step_max": 200})
        both = await c.call_tool("plot_runs", {"runs": ["A01-spike", "A02-nan"], "keys": ["train/loss"]})
    for res in (s, n, part, both):
        assert not res.is_error, texts(res)
        w, h = png_size(_image(res))
        assert (w, h) == (600, 300) and len(_image(res)) < 60_000
    cap = texts(s)
    assert " spike" in cap and f"of {spike['last_step'] + 1:,} points drawn" in cap, cap
    assert f"first NaN train/loss@{nan['first_nan_step']}" in texts(n), texts(n)
    assert "steps 100–200" in texts(part) and "points drawn" not in texts(part)  # 101 points: every one
    assert "A01-spike" in texts(both) and "A02-nan" in texts(both)
    assert "first NaN train/loss@" in texts(both) and "(A02-nan" in texts(both).split("first NaN", 1)[1]


async def test_plot_errors_are_plain():
    async with client_for(FIXTURES) as c:
        unknown = await c.call_tool("plot_runs", {"runs": ["R002-crashed"], "keys": ["no/such/key"]})
        empty = await c.call_tool("plot_runs", {"runs": ["R002-crashed"], "step_min": 10**9})
        rng = await c.call_tool("plot_runs", {"runs": ["R002-crashed"], "step_min": 50, "step_max": 10})
    assert unknown.is_error and "no/such/key" in texts(unknown) and not any(x.type == "image" for x in unknown.content)
    assert empty.is_error and "no point of" in texts(empty)
    assert rng.is_error and "step_min (50) is after step_max (10)" in texts(rng)


async def test_cli_plot_writes_the_same_png(tmp_path, capsys):
    async with fixed_client() as c:
        res = await c.call_tool("plot_runs", {"runs": ["R002-crashed"], "keys": ["train/loss"], "log_y": True})
    out_file = tmp_path / "loss.png"
    code, out, err = run_cli(["plot", "R002-crashed", "-k", "train/loss", "--log-y", "-o", str(out_file)], capsys)
    assert code == 0, err
    assert out_file.read_bytes() == _image(res)
    assert out == f"{texts(res)}\nwrote {out_file}\n"


def test_plot_without_matplotlib_says_how_to_install_it():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from runwise_mcp.config import load_settings\nfrom runwise_mcp.index import RunIndex\n"
            "from runwise_mcp.answers import UserError\nfrom runwise_mcp.answers.plot import plot_runs\n"
            f"idx = RunIndex(load_settings([{str(FIXTURES)!r}], env={{}}))\n"
            "try:\n    plot_runs(idx, ['R002-crashed'])\nexcept UserError as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and len(lines) == 1, (p.stdout, p.stderr)
    assert "pip install 'runwise-mcp[plot]'" in lines[0]


# ---- the sdist ---------------------------------------------------------------------------------------------


def test_sdist_is_the_package_without_tests(tmp_path):
    """Decision: the sdist leaves tests out (they need the generated fixtures and producer
    libraries; they run from a clone). It carries every module, the license and SPDX metadata."""
    pytest.importorskip("build", reason="the `build` package (test extra) builds the sdist")
    p = subprocess.run([sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and ("No matching distribution" in p.stdout + p.stderr
                              or "Could not find a version" in p.stdout + p.stderr):
        pytest.skip("the isolated build could not install setuptools>=77 (no package index reachable)")
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    (sdist,) = tmp_path.glob("runwise_mcp-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = [n.split("/", 1)[1] for n in tf.getnames() if "/" in n]
        pkg_info = tf.extractfile(next(m for m in tf.getmembers() if m.name.endswith("/PKG-INFO")
                                       and m.name.count("/") == 1)).read().decode()
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "runwise_mcp").rglob("*.py"))
    assert [m for m in modules if m not in names] == []
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]
    assert "LICENSE" in names and "README.md" in names
    assert "License-Expression: MIT" in pkg_info and "Project-URL: Repository, " in pkg_info
    assert "Provides-Extra: plot" in pkg_info
