"""Number, time and trend formatting shared by every answer, and the escaping of text that comes
from files (``clean``, ``quote``): it is data in an answer, never terminal control or a line of
our own."""

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

# ---- text from files -----------------------------------------------------------------------------
# Names, tags, groups, notes, config keys and values, metric keys, file names and console lines are
# untrusted: a control character could drive the reader's terminal (ESC, OSC, BEL, backspace, C1),
# reorder what is shown (bidi controls) or, as a newline, forge a line that looks like one of ours.
# Each is escaped visibly; nothing is dropped. Escapes: \n \t \r, \xHH (other C0, DEL, C1),
# \uHHHH (bidi controls, line and paragraph separators). In a string that needs an escape, a
# backslash is doubled, so the escaped text reads back unambiguously; a string with nothing to
# escape is returned unchanged (ordinary answers stay byte for byte what they were).

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_ESCAPES: dict[int, str] = {
    c: _NAMED.get(chr(c)) or (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
    for c in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
              *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
_TABLE = {**_ESCAPES, 0x5C: "\\\\"}
_QUOTED = {**_TABLE, 0x22: '\\"'}


def is_clean(s: str) -> bool:
    """True when ``s`` holds nothing to escape (checked in C: ``isprintable`` first)."""
    return s.isprintable() or UNSAFE.search(s) is None


def clean(s: Any) -> str:
    """A short field from a file (name, id, tag, group, key, file name) as safe one-line text:
    control and bidi characters escaped visibly, unchanged when there is nothing to escape."""
    if not isinstance(s, str):
        s = str(s)
    if s.isprintable() or UNSAFE.search(s) is None:
        return s
    return s.translate(_TABLE)


def quote(s: Any) -> str:
    """Free text from a file (notes, a console line's content, a text value): unchanged when it
    holds nothing to escape; otherwise in double quotes with escapes ("a\\nb"), so that it reads
    as one quoted value and cannot pass for a line of ours."""
    if not isinstance(s, str):
        s = str(s)
    if s.isprintable() or UNSAFE.search(s) is None:
        return s
    return '"' + s.translate(_QUOTED) + '"'


def clean_cut(s: str, limit: int, table: dict[int, str] | None = None) -> str:
    """``clean(s)`` cut to at most ``limit`` characters without splitting an escape."""
    if s.isprintable() or UNSAFE.search(s) is None:
        return s[:limit]
    table = table or _TABLE
    out, size = [], 0
    for ch in s:
        e = table.get(ord(ch), ch)
        if size + len(e) > limit:
            break
        out.append(e)
        size += len(e)
    return "".join(out)


_UNSAFE_IN_ANSWER = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def guard(answer: str) -> str:
    """The last guard on a whole answer or error: any control or bidi character a field escaped
    nowhere else is escaped here (our own newlines kept). Every field is escaped where it enters
    the text (``clean``/``quote``); this only keeps a field missed in the future from reaching the
    client raw."""
    if _UNSAFE_IN_ANSWER.search(answer) is None:
        return answer
    return _UNSAFE_IN_ANSWER.sub(lambda m: _ESCAPES[ord(m.group())], answer)


def cell_md(s: str) -> str:
    """A Markdown table cell: escaped, with its pipes escaped."""
    s = clean(s)
    return s.replace("|", "\\|") if "|" in s else s

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
    if key and not isinstance(v, int):
        # a key printed as a percentage ("Gain: -0.5%") reads as one at every value, not only in [0, 1]
        if key in PERCENT_KEYS.get() or (is_fraction_key(key) and 0.0 <= v <= 1.0):
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


def state(st: RunState, now: float, basis: bool = True) -> str:
    """'finished', 'crashed (exit code 1)', 'killed? no exit record, nothing written for 3h12m'.
    ``basis=False`` leaves out the basis of a format without exit status (a list says it once)."""
    if st.state == CRASHED:
        return f"crashed ({st.basis})"
    if st.state == KILLED and st.certain:  # a recorded kill (MLflow's KILLED status)
        return f"killed ({st.basis})"
    if st.state in (RUNNING, KILLED):
        age = duration(now - st.last_write) if st.last_write else "?"
        if st.stopped:  # the format has no exit status: say what we know, no guess
            why = f"; {st.basis}" if basis else ""
            if st.state == RUNNING:
                return f"running? last {st.clock} {age} ago{why}"
            return f"stopped (last {st.clock} {age} ago{why})"
        if st.state == RUNNING:
            return f"running? {st.basis}, last {st.clock} {age} ago"
        if st.clock == "log record":  # judged from a time inside the W&B log (a copy has fresh file times)
            return f"killed? {st.basis}, last {st.clock} {age} ago"
        return f"killed? {st.basis}, nothing written for {age}"
    return st.state


def sparkline(buckets: list[float]) -> str:
    """One character a bucket, scaled between the bucket min and max; '·' for no finite value."""
    finite = [b for b in buckets if math.isfinite(b)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    # a constant's bucket means differ in the last bits (0.0002 vs 0.00019999999999999383): flat
    flat = hi - lo <= 1e-9 * max(abs(lo), abs(hi))
    out = []
    for b in buckets:
        if not math.isfinite(b):
            out.append("·")
        elif flat:
            out.append(SPARK[3])
        else:
            out.append(SPARK[min(7, int((b - lo) / (hi - lo) * 8))])
    return "".join(out)


def arrow(direction: int) -> str:
    return {1: "↑", -1: "↓"}.get(direction, "→")


def short(v: Any, limit: int = 80, quoted: bool = False) -> str:
    """Any value as one line of at most ``limit`` characters, with the full length when cut;
    escaped (``clean``), and with ``quoted`` a string that needs escapes is quoted (``quote``)."""
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
    if text.isprintable() or UNSAFE.search(text) is None:
        return f"{text[: limit - 20]}… ({len(text):,} chars)" if len(text) > limit else text
    if quoted and isinstance(v, str):
        shown = quote(text)
        if len(shown) > limit:
            shown = f'"{clean_cut(text, limit - 22, _QUOTED)}…" ({len(text):,} chars)'
        return shown
    shown = clean(text)
    if len(shown) > limit:
        return f"{clean_cut(text, limit - 20)}… ({len(text):,} chars)"
    return shown


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def call(tool: str, **kwargs: Any) -> str:
    """The exact follow-up call, e.g. list_runs(query="R00", offset=20)."""
    args = ", ".join(f"{k}={_json(v)}" for k, v in kwargs.items())
    return f"{tool}({args})"


def _json(v: Any) -> str:
    """JSON for an argument; characters JSON leaves raw (DEL, C1, bidi) as \\u escapes: still the
    exact value when the call is made."""
    s = json.dumps(v, ensure_ascii=False)
    return s if s.isprintable() or UNSAFE.search(s) is None else UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
