#!/usr/bin/env python3
"""Regenerate the tool reference (docs/tools.md) and the README's tools table from the live server:
each tool's description and parameters from tools/list, and real calls with their real answers on
the example runs (the README shows one call per tool, its answer shortened). plot_runs' image is
written to docs/plot_runs.png.

    python examples/update_readme.py
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import anyio
from demo import prepare
from mcp import Client, StdioServerParameters

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TOOLS_DOC = REPO / "docs" / "tools.md"
PLOT_PNG = REPO / "docs" / "plot_runs.png"
START, END = "<!-- tools:start -->", "<!-- tools:end -->"
TABLE_START, TABLE_END = "<!-- table:start -->", "<!-- table:end -->"

EXAMPLES = {
    "list_runs": [{}, {"query": "tag:baseline"}, {"state": "crashed"}],
    "list_keys": [{"run": "R003"}, {"run": "R001-baseline", "pattern": "system/"}, {"run": "R009"}],
    "get_config": [{"run": "r002-lr1e-3"}, {"run": "R001", "pattern": "model.*"}],
    "run_summary": [{}, {"run": "R003"}],
    "get_history": [{"run": "R002", "keys": ["train/loss", "val/loss"], "samples": 12},
                    {"run": "R003", "source": "console"},
                    {"run": "R002", "keys": "val/loss", "step_min": 300, "step_max": 450}],
    "history_stats": [{"run": "R002", "keys": "train/loss,val/loss,train/lr"}],
    "best_run": [{"metric": "val/token_accuracy"}, {"metric": "val/token_accuracy", "by": "last", "top": 2},
                 {"metric": "val/acc"}],
    "compare_runs": [{"runs": ["R001", "R002@300"]},
                     {"runs": ["R001@300", "R002@300"], "format": "md", "min_change_pct": 5, "config_diff": False}],
    "aggregate_runs": [{"query": "lr", "keys": ["val/loss", "val/token_accuracy"], "at": "300"}],
    "diagnose_run": [{"run": "R002"}, {"run": "R003"}, {"run": "R001"}],
    "tail_run": [{"run": "R003", "lines": 5}, {"run": "R003", "cursor": "1:354"}],
    "sync_runs": [{}, {"runs": ["R004"], "action": "export", "dest": "/tmp/runwise-export"}],
    "plot_runs": [{"runs": ["R001", "R002", "R003"], "keys": ["val/loss"]}],
}

# the README's table: per tool, which example (index into EXAMPLES) and which answer lines it shows
TABLE = {
    "list_runs": (0, [2, 4]), "list_keys": (0, [0, 3]), "get_config": (1, [0, 1]), "run_summary": (1, [0, 2]),
    "get_history": (0, [2, 4]), "history_stats": (0, [1]), "best_run": (0, [0, 1]), "compare_runs": (0, [3, 6]),
    "aggregate_runs": (0, [1]), "diagnose_run": (1, [1, 2]), "tail_run": (0, [1, 11]), "sync_runs": (0, [0, 1]),
    "plot_runs": (0, [0]),
}
CELL = 150  # characters of answer per table row


def params_doc(schema: dict) -> str:
    out = []
    for name, p in schema.get("properties", {}).items():
        kind = "|".join(p["enum"]) if "enum" in p else p.get("type", "")
        if isinstance(kind, list):
            kind = " or ".join(f"{k} of {p['items']['type']}" if k == "array" and "items" in p else k for k in kind)
        if "default" in p:
            bits = [f"`{name}`: {kind}, default `{json.dumps(p['default'])}`"]
        elif name in schema.get("required", []):
            bits = [f"`{name}`: {kind}, required"]
        else:
            bits = [f"`{name}`: {kind}, optional"]
        if "minimum" in p or "maximum" in p:
            bits.append(f"range {p.get('minimum', '')}..{p.get('maximum', '')}")
        if p.get("description"):
            bits.append(p["description"])
        out.append("- " + "; ".join(bits))
    return "\n".join(out)


def call_text(name: str, args: dict) -> str:
    return f"{name}({', '.join(f'{k}={json.dumps(v)}' for k, v in args.items())})"


def cell(text: str) -> str:
    text = text if len(text) <= CELL else text[: CELL - 1] + "…"
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


async def build() -> tuple[str, str]:
    root = prepare()
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(root)],
                                   env={"PYTHONPATH": str(REPO)})
    parts = []
    rows = ["| tool | what it answers | example call | real answer, shortened |", "|---|---|---|---|"]
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        for tool in tools:
            parts.append(f"### `{tool.name}`\n\n{tool.description}\n\n{params_doc(tool.input_schema)}\n")
            for i, args in enumerate(EXAMPLES.get(tool.name, [])):
                res = await client.call_tool(tool.name, args)
                answer = "\n".join(c.text for c in res.content if c.type == "text")
                for c in res.content:
                    if c.type == "image":
                        PLOT_PNG.parent.mkdir(exist_ok=True)
                        PLOT_PNG.write_bytes(base64.b64decode(c.data))
                        answer += "\n[image/png: docs/plot_runs.png]"
                parts.append(f"```\n$ {call_text(tool.name, args)}{'   # -> tool error' if res.is_error else ''}\n"
                             f"{answer}\n```\n")
                if tool.name in TABLE and TABLE[tool.name][0] == i:
                    lines = answer.splitlines()
                    shown = " ⏎ ".join(" ".join(lines[j].split()) for j in TABLE[tool.name][1] if j < len(lines))
                    rows.append(f"| `{tool.name}` | {tool.description} | `{call_text(tool.name, args)}` | "
                                f"{cell(shown)} |")
    return "\n".join(parts), "\n".join(rows) + "\n"


def _replace(text: str, start: str, end: str, body: str) -> str:
    a, b = text.index(start) + len(start), text.index(end)
    return text[:a] + "\n" + body + text[b:]


def main() -> None:
    # the export example's own scratch output: an export never overwrites, so a second run of this
    # script would show "exists, kept" instead of the files written
    shutil.rmtree("/tmp/runwise-export", ignore_errors=True)
    section, table = anyio.run(build)
    TOOLS_DOC.write_text(_replace(TOOLS_DOC.read_text(), START, END, section))
    README.write_text(_replace(README.read_text(), TABLE_START, TABLE_END, table))
    print("docs/tools.md and the README's tools table updated")


if __name__ == "__main__":
    main()
