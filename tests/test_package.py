"""Packaging facts: server.json against the registry schema, the README contract, no machine paths."""

from __future__ import annotations

import json
import os
import re

import jsonschema
import pytest
from helpers import REPO

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
    assert len(snapshot) == 12
    for tool in (t["name"] for t in snapshot):
        assert f"### `{tool}`" in README  # every tool has a section with a real call and answer
        assert re.search(rf"\$ {tool}\(", README)
    for host in ("claude mcp add", ".mcp.json", "claude_desktop_config.json", ".cursor/mcp.json", ".vscode/mcp.json"):
        assert host in README


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
