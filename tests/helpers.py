"""Shared helpers for tests: where the real fixture runs are, and wandb's own decoder."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "wandb_runs"
EXAMPLES = REPO / "examples"
MANIFEST: dict[str, dict[str, str]] = json.loads((FIXTURES / "manifest.json").read_text())


def run_dir(scenario: str) -> Path:
    return FIXTURES / MANIFEST[scenario]["dir"]


def log_file(scenario: str) -> Path:
    logs = sorted(run_dir(scenario).glob("run-*.wandb"))
    assert len(logs) == 1, logs
    return logs[0]


def all_logs() -> list[Path]:
    return sorted(FIXTURES.rglob("run-*.wandb")) + sorted(EXAMPLES.rglob("run-*.wandb"))


def wandb_cli() -> str | None:
    """The `wandb` command of this interpreter's environment, if wandb is installed."""
    cand = Path(sys.executable).parent / "wandb"
    if cand.exists():
        return str(cand)
    return shutil.which("wandb")


def leet_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a .wandb file as decoded by wandb's own reader (`wandb leet inspect`)."""
    cli = wandb_cli()
    assert cli is not None
    out = subprocess.run([cli, "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def leet_summary(path: Path) -> dict[str, Any]:
    cli = wandb_cli()
    assert cli is not None
    out = subprocess.run([cli, "leet", "inspect", "--summary", "--json", str(path)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out)


def same_value(a: Any, b: Any) -> bool:
    """Equality across decoders: numbers by value (int 1 == float 1.0 == True), NaN == NaN,
    leet's "NaN"/"Infinity" strings equal to the floats, containers recursively."""
    specials = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    if isinstance(a, str) and a in specials:
        a = specials[a]
    if isinstance(b, str) and b in specials:
        b = specials[b]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def leet_last_time(path: Path) -> float:
    """The newest time written inside a .wandb log, as wandb's own reader decodes it: the rows'
    `_timestamp`, stats and console record times (what a run's liveness is judged from)."""
    from datetime import datetime

    times: list[float] = []
    for r in leet_records(path):
        body = r.get(r.get("type", ""), {})
        if r.get("type") == "history":
            ts = body.get("item", {}).get("_timestamp")
            if isinstance(ts, (int, float)):
                times.append(float(ts))
        elif isinstance(body, dict) and isinstance(body.get("timestamp"), str):
            times.append(datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp())
    return max(times)
