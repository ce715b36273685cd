#!/usr/bin/env python3
"""Demo: start runwise-mcp over real stdio on the bundled example runs and print its answers.

The examples are real wandb 0.31 offline runs (made by tests/fixtures/make_wandb_runs.py): a
finished baseline, a finished run that overfits, a run that crashed on a NaN loss, and a run
killed with SIGKILL. They are copied to a temporary directory first (the server never writes
into a run directory, and neither does this demo), and their file times, which git does not
keep, are restored so the killed run reads as it did on the training machine.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent

CALLS = [
    ("list_runs", {}),
    ("run_summary", {}),
    ("list_keys", {"run": "R003"}),
    ("get_config", {"run": "R001", "pattern": "model.*"}),
    ("best_run", {"metric": "val/token_accuracy"}),
    ("compare_runs", {"runs": ["R001@300", "R002@300"]}),
    ("get_history", {"run": "R002", "keys": ["train/loss", "val/loss"], "samples": 12}),
    ("diagnose_run", {"run": "R002"}),
    ("tail_run", {"run": "R003", "lines": 5}),
    ("sync_runs", {}),
    ("list_keys", {"run": "R009"}),
]


def prepare() -> Path:
    root = Path(tempfile.gettempdir()) / "runwise-demo"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(HERE / "wandb", root / "wandb", symlinks=True)
    for rel, mtime in json.loads((HERE / "file_times.json").read_text()).items():
        p = root / "wandb" / rel
        if p.exists():
            os.utime(p, (mtime, mtime))
    return root


async def main() -> None:
    root = prepare()
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(root)],
                                   env={"PYTHONPATH": str(HERE.parent)})
    async with Client(params) as client:
        for name, args in CALLS:
            res = await client.call_tool(name, args)
            call = f"{name}({', '.join(f'{k}={json.dumps(v)}' for k, v in args.items())})"
            print(f"$ {call}{'   -> error' if res.is_error else ''}")
            print("\n".join(c.text for c in res.content))
            print()


if __name__ == "__main__":
    anyio.run(main)
