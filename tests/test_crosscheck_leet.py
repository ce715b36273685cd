"""Our reader against wandb's own decoder (`wandb leet inspect --json`) on every real run.

Runs when `wandb` is installed (it is part of the test extra, so CI always runs these).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import all_logs, leet_records, leet_summary, same_value, wandb_cli

from runwise_mcp.sources.wandb_log import WandbLog, iter_history

pytestmark = pytest.mark.skipif(wandb_cli() is None, reason="wandb is not installed (pip install -e '.[test]')")

LOGS = all_logs()


def flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Dotted names for nested dicts, independent of the code under test."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            flat(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value


def test_fixture_set_is_complete():
    assert len(LOGS) >= 13  # 0.31 scenarios, 0.16.6 runs, examples


@pytest.mark.parametrize("path", LOGS, ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}")
def test_every_history_row_equals_wandb_decoder(path):
    theirs = []
    for rec in leet_records(path):
        if rec["type"] != "history":
            continue
        h = rec["history"]
        items = h.get("item", {})
        step = h["step"].get("num", 0) if "step" in h else items["_step"]
        row: dict[str, Any] = {}
        for k, v in items.items():
            if k != "_step":
                flat(k, v, row)
        theirs.append((int(step), row))
    ours = []
    for step, row in iter_history(str(path)):
        r: dict[str, Any] = {}
        for k, v in row.items():
            flat(k, v, r)
        ours.append((step, r))
    assert len(ours) == len(theirs) > 0
    for (s1, r1), (s2, r2) in zip(ours, theirs):
        assert s1 == s2
        assert r1.keys() == r2.keys(), (s1, set(r1) ^ set(r2))
        bad = [k for k in r1 if not same_value(r1[k], r2[k])]
        assert not bad, (s1, {k: (r1[k], r2[k]) for k in bad[:3]})


@pytest.mark.parametrize("path", LOGS, ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}")
def test_summary_config_state_equal_wandb_decoder(path):
    ref = leet_summary(path)
    log = WandbLog(str(path))
    log.update()
    theirs: dict[str, Any] = {}
    flat("", ref.get("summary") or {}, theirs)
    ours: dict[str, Any] = {}
    flat("", {k: v for k, v in log.summary().items() if not k.startswith("_wandb")}, ours)
    assert ours.keys() == theirs.keys()
    assert all(same_value(ours[k], theirs[k]) for k in ours), [k for k in ours if not same_value(ours[k], theirs[k])]
    cfg = {k: v for k, v in log.config.items() if k != "_wandb"}
    assert same_value(cfg, ref.get("config") or {})
    if ref.get("exit_code") is None:  # leet: "running", or "crashed" once the file is stale
        assert ref["state"] in ("running", "crashed") and not log.has_exit
    else:
        assert log.has_exit and log.exit_code == int(ref["exit_code"])
        assert ref["state"] == ("finished" if log.exit_code == 0 else "failed")
    assert log.history.last_step == int(ref["step"])
    assert (log.identity.get("name") or "") == (ref.get("name") or "")
    assert (log.identity.get("tags") or []) == (ref.get("tags") or [])
