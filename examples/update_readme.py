#!/usr/bin/env python3
"""Regenerate the README's "Tools" section from the live server: each tool's description and
parameters from tools/list, and real calls with their real answers on the example runs.

    python examples/update_readme.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import anyio
from demo import prepare
from mcp import Client, StdioServerParameters

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
START, END = "<!-- tools:start -->", "<!-- tools:end -->"

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
}


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


async def build() -> str:
    root = prepare()
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(root)],
                                   env={"PYTHONPATH": str(REPO)})
    parts = []
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        for tool in tools:
            parts.append(f"### `{tool.name}`\n\n{tool.description}\n\n{params_doc(tool.input_schema)}\n")
            for args in EXAMPLES.get(tool.name, []):
                res = await client.call_tool(tool.name, args)
                call = f"{tool.name}({', '.join(f'{k}={json.dumps(v)}' for k, v in args.items())})"
                answer = "\n".join(c.text for c in res.content)
                parts.append(f"```\n$ {call}{'   # -> tool error' if res.is_error else ''}\n{answer}\n```\n")
    return "\n".join(parts)


def main() -> None:
    # the export example's own scratch output: an export never overwrites, so a second run of this
    # script would show "exists, kept" instead of the files written
    shutil.rmtree("/tmp/runwise-export", ignore_errors=True)
    section = anyio.run(build)
    text = README.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    README.write_text(text[:a] + "\n" + section + text[b:])
    print("README.md tools section updated")


if __name__ == "__main__":
    main()
