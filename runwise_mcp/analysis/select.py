"""Choosing and filtering: the main metric of a run, run queries, key patterns."""

from __future__ import annotations

import fnmatch
import re

from ..model import RESERVED_KEYS, Run


def metric_keys(run: Run) -> list[str]:
    """Numeric history keys that are metrics (not _step/_runtime/_timestamp)."""
    return [k for k in run.history.columns if k not in RESERVED_KEYS]


def x_axis_keys(run: Run) -> set[str]:
    """Keys used as a custom x axis by define_metric (e.g. "epoch")."""
    return {m.step_metric for m in run.metrics.values() if m.step_metric}


_LOSS = re.compile(r"(^|[/_.])loss$")


def main_metric(run: Run, preferred: list[str] | None = None) -> str | None:
    """The key that best says how a run is doing: a preferred key if present, else the train loss,
    else any loss, else the metric with the most points."""
    cols = run.history.columns
    keys = [k for k in metric_keys(run) if k not in x_axis_keys(run) and len(cols[k])]
    if not keys:
        return None
    for p in preferred or []:
        if p in cols and len(cols[p]):
            return p
    losses = [k for k in keys if _LOSS.search(k.lower())]
    if losses:
        def rank(k: str) -> tuple:
            low = k.lower()
            return (not low.startswith("train"), "val" in low or "eval" in low or "test" in low,
                    -len(cols[k]), k)
        return min(losses, key=rank)
    return min(keys, key=lambda k: (-len(cols[k]), k))


def query_matches(run: Run, query: str) -> bool:
    """Whitespace-separated terms, all must match, case-insensitive substrings. A term may be
    restricted to one field: ``tag:x``, ``group:x``, ``name:x``, ``id:x``, ``job:x``, ``notes:x``."""
    fields = {
        "id": [run.id], "name": [run.name], "tag": run.tags, "group": [run.group],
        "job": [run.job_type], "notes": [run.notes],
    }
    for term in query.lower().split():
        field, sep, value = term.partition(":")
        if sep and field in fields:
            hay = fields[field]
        else:
            value = term
            hay = [x for v in fields.values() for x in v]
        if not any(value in (h or "").lower() for h in hay):
            return False
    return True


def key_matches(key: str, pattern: str) -> bool:
    """Case-insensitive glob when the pattern has a wildcard, else substring."""
    if not pattern:
        return True
    p = pattern.lower()
    k = key.lower()
    if any(c in p for c in "*?["):
        return fnmatch.fnmatchcase(k, p)
    return p in k
