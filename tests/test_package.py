"""Packaging facts: server.json against the registry schema, the README contract, no machine paths."""

from __future__ import annotations

import json
import os
import re
import sys

import jsonschema
import pytest
from helpers import FIXTURES, REPO

from runwise_mcp import __version__
from runwise_mcp.config import (
    ENV_CACHE_DIR,
    ENV_CACHE_MB,
    ENV_DEPTH,
    ENV_MAIN_METRIC,
    ENV_ROOT,
    ENV_STALE,
    ENV_WANDB_CLI,
)

README = (REPO / "README.md").read_text()
SERVER_JSON = json.loads((REPO / "server.json").read_text())


def test_server_json_validates_against_registry_schema():
    schema = json.loads((REPO / "tests" / "schemas" / "server.schema.2025-12-11.json").read_text())
    errors = list(jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
                  .iter_errors(SERVER_JSON))
    assert not errors, [e.message for e in errors]


def test_server_json_version_and_description():
    assert SERVER_JSON["version"] == __version__
    for pkg in SERVER_JSON["packages"]:
        assert pkg["version"] == __version__  # exact, never a range or "latest"
        assert re.fullmatch(r"\d+\.\d+\.\d+", pkg["version"])
    assert len(SERVER_JSON["description"]) <= 100
    env = {e["name"] for p in SERVER_JSON["packages"] for e in p.get("environmentVariables", [])}
    assert env == {ENV_ROOT, ENV_STALE, ENV_DEPTH, ENV_MAIN_METRIC, ENV_CACHE_MB, ENV_WANDB_CLI, ENV_CACHE_DIR}


def test_readme_contract():
    assert f"<!-- mcp-name: {SERVER_JSON['name']} -->" in README
    for var in (ENV_ROOT, ENV_STALE, ENV_DEPTH, ENV_MAIN_METRIC, ENV_CACHE_MB, ENV_WANDB_CLI, ENV_CACHE_DIR):
        assert var in README
    snapshot = json.loads((REPO / "tests" / "snapshots" / "tools_list.json").read_text())
    assert len(snapshot) == 13
    tools_doc = (REPO / "docs" / "tools.md").read_text()
    for tool in (t["name"] for t in snapshot):
        assert re.search(rf"^\| `{tool}` \|.*\| `{tool}\(.*\)` \| `.+` \|$", README, re.M), tool  # table row
        assert f"### `{tool}`" in tools_doc  # every tool has a section with a real call and answer
        assert re.search(rf"\$ {tool}\(", tools_doc)
    for host in ("claude mcp add", "--scope user", "--scope project", ".mcp.json", "claude_desktop_config.json",
                 ".cursor/mcp.json", ".vscode/mcp.json", "Remote-SSH", "ssh", "uvx --from git+"):
        assert host in README
    for section in ("## Troubleshooting", "## Removal", "## Runs on a remote training machine", "runwise plot",
                    "claude mcp remove", ".cache/runwise-mcp", "running?"):
        assert section in README


def test_readme_is_short_and_its_links_resolve():
    assert len(README.splitlines()) <= 250
    # pages other branches add (MLflow, file runs): linked ahead of their merge
    pending = {"docs/mlflow.md", "docs/mlflow-server.md", "docs/file-runs.md", "docs/analysis.md"}
    for page, text in [("README.md", README), *((f"docs/{p.name}", p.read_text())
                                                for p in (REPO / "docs").glob("*.md"))]:
        base = (REPO / page).parent
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path = (base / target).resolve()
            rel = path.relative_to(REPO.resolve()).as_posix()
            assert path.exists() or rel in pending, f"{page} links to missing {target}"


def _readme_server_commands() -> list[tuple[str, list[str], dict[str, str]]]:
    """(command, args, env) of every config snippet and `claude mcp add` line in the README."""
    out = []
    for block in re.findall(r"```json\n(.*?)```", README, re.S):
        cfg = json.loads(block)  # every JSON snippet parses
        servers = cfg.get("mcpServers") or cfg.get("servers")
        assert isinstance(servers, dict) and list(servers) == ["runwise"], cfg
        entry = servers["runwise"]
        assert set(entry) <= {"type", "command", "args", "env"} and entry.get("type", "stdio") == "stdio", entry
        out.append((entry["command"], list(entry.get("args", [])), dict(entry.get("env", {}))))
    for line in re.findall(r"claude mcp add [^\n`]*", README):
        head, _, cmd = line.partition(" -- ")
        assert "--transport stdio" in head and re.search(r"--scope (user|project) runwise$", head), line
        parts = cmd.split()
        out.append((parts[0], parts[1:], {}))
    return out


def _local(command: str, args: list[str], env: dict[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """The snippet's command as it would run here: the placeholders become this checkout's server and
    the fixture runs; ssh runs its remote command here; uvx's git source must be the project's."""
    if command == "ssh":
        i = 0
        while args[i].startswith("-"):
            i += 2 if args[i] == "-o" else 1
        assert args[i] == "gpu-box"
        command, args = args[i + 1], args[i + 2:]
    if command == "uvx":
        assert args[:2] == ["--from", "git+" + PYPROJECT_URLS["Repository"]] and args[2] == "runwise-mcp", args
        command, args = "runwise-mcp", args[3:]
    assert command.endswith("runwise-mcp"), command
    local_exe = os.path.join(os.path.dirname(sys.executable), "runwise-mcp")
    cmd, pre = (local_exe, []) if os.path.exists(local_exe) else (sys.executable, ["-m", "runwise_mcp"])
    places = {"/abs/project": str(FIXTURES), "/data/runs": str(FIXTURES), "${workspaceFolder}": str(FIXTURES)}
    return cmd, pre + [places.get(a, a) for a in args], {k: places.get(v, v) for k, v in env.items()}


PYPROJECT_URLS = dict(re.findall(r'^(\w+) = "([^"]+)"', (REPO / "pyproject.toml").read_text().split(
    "[project.urls]", 1)[1].split("\n[", 1)[0], re.M))


@pytest.mark.anyio
@pytest.mark.parametrize("snippet", range(len(_readme_server_commands())))
async def test_readme_config_snippets_start_the_server(snippet):
    """Each editor config, ssh and claude command the README shows starts a server that finds runs."""
    from mcp import Client, StdioServerParameters

    command, args, env = _local(*_readme_server_commands()[snippet])
    env = {**env, "PYTHONPATH": str(REPO)}
    async with Client(StdioServerParameters(command=command, args=args, env=env)) as c:
        res = await c.call_tool("list_runs", {"limit": 3})
    assert not res.is_error and "runs under" in res.content[0].text, res.content[0].text


def test_quick_start_commands_are_what_ci_runs():
    block = README.split("## Quick start", 1)[1].split("```", 2)[1]
    cmds = [ln.strip() for ln in block.splitlines()[1:] if ln.strip() and not ln.strip().startswith("#")]
    assert len(cmds) == 2, cmds
    ci = (REPO / ".ci" / "run").read_text()
    assert cmds[1] in ci  # CI runs the README's test command verbatim


@pytest.mark.parametrize("folder", ["tests/fixtures", "examples", "benchmarks"])
def test_no_machine_paths_committed(folder):
    """Generated data must not carry absolute paths of the machine that made it."""
    needles = {str(REPO).encode(), b"/tmp/rw-"}
    home = os.path.expanduser("~")
    if home not in ("", "/"):
        needles.add(home.encode() + b"/")
    for p in (REPO / folder).rglob("*"):
        if p.is_symlink() or not p.is_file() or p.suffix == ".py" or ".data" in p.parts or "__pycache__" in p.parts:
            continue  # data only: scripts may name temp paths
        data = p.read_bytes()
        for n in needles:
            assert n not in data, f"{p.relative_to(REPO)} contains {n.decode()}"
