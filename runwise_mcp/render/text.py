"""Number, time and trend formatting shared by every answer."""

from __future__ import annotations

import json
import math
import re
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from ..model import CRASHED, KILLED, MAX_SECONDS, RUNNING, RunState, sane_time

SPARK = "▁▂▃▄▅▆▇█"
_FRACTION_NAME = re.compile(r"acc|accuracy|precision|recall|(^|[/_.])f1|auc|iou|dice|top[-_]?\d", re.IGNORECASE)


# Keys a source printed as percentages (console "31.2%"), for the answer being rendered.
PERCENT_KEYS: ContextVar[frozenset[str]] = ContextVar("percent_keys", default=frozenset())


@contextmanager
def percent_keys(keys: set[str] | frozenset[str]):
    """Within the block, these keys are shown as percentages whatever their names."""
    token = PERCENT_KEYS.set(frozenset(keys))
    try:
        yield
    finally:
        PERCENT_KEYS.reset(token)


def is_fraction_key(key: str) -> bool:
    """Keys whose values in [0, 1] read best as percentages (accuracy-like, never loss or lr)."""
    if key in PERCENT_KEYS.get():
        return True
    low = key.lower()
    if "loss" in low or "lr" in low.split("/")[-1] or "learning_rate" in low:
        return False
    return bool(_FRACTION_NAME.search(low))


def num(v: Any, key: str = "") -> str:
    """A value as short text: 4 significant digits, thousands separators, percent for accuracies."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if not isinstance(v, (int, float)):
        return short(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    if key and is_fraction_key(key) and 0.0 <= v <= 1.0 and not isinstance(v, int):
        return f"{v * 100:.1f}%"
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1e4:
        return f"{v:,.0f}"
    if a >= 1e-3:
        return f"{v:.4g}"
    return f"{v:.3g}"


def step(s: int | None) -> str:
    return "-" if s is None else f"{s:,}"


def steps_range(a: int | None, b: int | None) -> str:
    if a is None:
        return "-"
    return step(a) if a == b else f"{step(a)}–{step(b)}"


def duration(seconds: float | None) -> str:
    """3.2s, 42s, 12m, 3h12m, 4.2d."""
    if seconds is None or seconds != seconds:
        return "-"
    if not abs(seconds) < MAX_SECONDS:  # infinite or centuries: a bad value, not a duration
        return "?"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f}s"
    if s < 90:
        return f"{s:.0f}s"
    m = s / 60
    if m < 90:
        return f"{m:.0f}m"
    h = int(s // 3600)
    if h < 48:
        return f"{h}h{int((s - h * 3600) // 60):02d}m"
    return f"{s / 86400:.1f}d"


def when(epoch: float | None, now: float | None = None) -> str:
    """Start time in UTC, to the minute; the year only when it is not the current one."""
    if not epoch:
        return "-"
    if sane_time(epoch) is None:  # before 1970, after 9999, infinite: not a time to format
        return "?"
    dt = datetime.fromtimestamp(epoch, tz=timezone.utc)
    if sane_time(now) is not None and datetime.fromtimestamp(now, tz=timezone.utc).year == dt.year:
        return dt.strftime("%m-%d %H:%M")
    return dt.strftime("%Y-%m-%d %H:%M")


def state(st: RunState, now: float) -> str:
    """'finished', 'crashed (exit code 1)', 'killed? no exit record, nothing written for 3h12m'."""
    if st.state == CRASHED:
        return f"crashed ({st.basis})"
    if st.state in (RUNNING, KILLED):
        age = duration(now - st.last_write) if st.last_write else "?"
        if st.stopped:  # the format has no exit status: say what we know, no guess
            if st.state == RUNNING:
                return f"running? last {st.clock} {age} ago; {st.basis}"
            return f"stopped (last {st.clock} {age} ago; {st.basis})"
        if st.state == RUNNING:
            return f"running? {st.basis}, last {st.clock} {age} ago"
        return f"killed? {st.basis}, nothing written for {age}"
    return st.state


def sparkline(buckets: list[float]) -> str:
    """One character a bucket, scaled between the bucket min and max; '·' for no finite value."""
    finite = [b for b in buckets if math.isfinite(b)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    out = []
    for b in buckets:
        if not math.isfinite(b):
            out.append("·")
        elif hi == lo:
            out.append(SPARK[3])
        else:
            out.append(SPARK[min(7, int((b - lo) / (hi - lo) * 8))])
    return "".join(out)


def arrow(direction: int) -> str:
    return {1: "↑", -1: "↓"}.get(direction, "→")


def short(v: Any, limit: int = 80) -> str:
    """Any value as one line of at most ``limit`` characters, with the full length when cut."""
    if isinstance(v, str):
        text = v
    elif isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)):
        return num(v)
    elif v is None:
        return "null"
    elif isinstance(v, bool):
        return "true" if v else "false"
    else:
        try:
            text = json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(v)
    text = text.replace("\n", "\\n")
    if len(text) > limit:
        return f"{text[: limit - 20]}… ({len(text):,} chars)"
    return text


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def call(tool: str, **kwargs: Any) -> str:
    """The exact follow-up call, e.g. list_runs(query="R00", offset=20)."""
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items())
    return f"{tool}({args})"
