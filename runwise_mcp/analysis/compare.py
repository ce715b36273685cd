"""Runs side by side: values at a step or curriculum stage, best runs, aggregates, config diffs."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from ..model import Run
from .select import KeyRole
from .stats import series_stats, value_at

_STEP = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([kKmMbB]?)\s*$")
_MULT = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def parse_step(text: str) -> int | None:
    """"50000", "50,000", "50k", "1.2M" -> an int step; None when it is not a step. Raises
    ValueError for a step past 64 bits (a 5,000-digit one would overflow on the way)."""
    m = _STEP.match(text)
    if not m:
        return None
    digits = m.group(1).replace(",", "").replace("_", "")
    num = float(digits) * _MULT[m.group(2).lower()]
    if not num < 2**63:  # float() of any digit string is finite or inf, never an error
        shown = digits if len(digits) <= 24 else f"{digits[:12]}…({len(digits):,} digits)"
        raise ValueError(f"step {shown}{m.group(2)} is past 64 bits: steps are below 9.2e18")
    return int(round(num))


@dataclass
class Point:
    """Where to read a run: its final values, a step, or the start of a curriculum stage."""

    ref: str  # the run reference as given
    step: int | None = None  # requested step
    stage_key: str | None = None  # stage metric (None: detect)
    stage: float | None = None
    label: str = ""  # the entry as written, e.g. "R001@50k"


def parse_entry(entry: str) -> Point:
    """``RUN``, ``RUN@STEP`` (50k, 1.2M), ``RUN@stage:K`` or ``RUN@KEY=VALUE``. Raises ValueError."""
    entry = entry.strip()
    ref, sep, at = entry.rpartition("@")
    if not sep:
        return Point(entry, label=entry)
    if not ref:
        raise ValueError(f"{entry!r} has no run before '@'")
    at = at.strip()
    low = at.lower()
    if low.startswith("stage:"):
        v = _number(at[6:])
        if v is None:
            raise ValueError(f"{entry!r}: the stage after 'stage:' must be a number, e.g. {ref}@stage:2")
        return Point(ref, stage=v, label=entry)
    if "=" in at:
        key, _, val = at.partition("=")
        v = _number(val)
        if not key.strip() or v is None:
            raise ValueError(f"{entry!r}: write @KEY=VALUE with a numeric value, e.g. {ref}@curriculum/stage=2")
        return Point(ref, stage_key=key.strip(), stage=v, label=entry)
    try:
        s = parse_step(at)
    except ValueError as e:
        short = ref if len(ref) <= 60 else ref[:60] + "…"
        raise ValueError(f"{short}@…: {e}; write {short}@50000, {short}@50k or {short}@1.2M") from None
    if s is None:
        raise ValueError(f"{entry!r}: {at!r} is not a step; write {ref}@50000, {ref}@50k, {ref}@1.2M, "
                         f"{ref}@stage:2 or {ref}@KEY=VALUE")
    return Point(ref, step=s, label=entry)


def _number(text: str) -> float | None:
    try:
        v = float(text.strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def stage_keys(run: Run) -> list[str]:
    """Numeric keys that look like a curriculum stage, most likely first."""
    cands = [k for k, c in run.history.columns.items() if len(c) and KeyRole(k).kind == "stage"]

    def rank(k: str) -> tuple:
        low = k.lower()
        return ("stage" not in low, "curriculum" not in low, len(k), k)

    return sorted(cands, key=rank)


def stage_start(run: Run, key: str, stage: float) -> int | None:
    """The first step at which ``key`` reaches ``stage`` (>=)."""
    col = run.history.columns.get(key)
    if col is None:
        return None
    for s, v in zip(col.steps, col.values):
        if v >= stage:
            return s
    return None


@dataclass
class Cell:
    value: float | None  # None: not logged at or before the step
    step: int | None  # step the value was logged at


def read_at(run: Run, key: str, step: int | None) -> Cell:
    """The value of ``key`` at ``step`` (the last point at or before it), or its last value."""
    col = run.history.columns.get(key)
    if col is None or not len(col):
        return Cell(None, None)
    if step is None:
        return Cell(col.values[-1], col.last_step)
    hit = value_at(col.steps, col.values, step)
    return Cell(None, None) if hit is None else Cell(hit[1], hit[0])


def delta(base: float | None, v: float | None, fraction: bool) -> tuple[str, float] | None:
    """("pp", d) for fractions in percentage points, ("%", d) relative, ("abs", d) near zero."""
    if base is None or v is None or not (math.isfinite(base) and math.isfinite(v)):
        return None
    if fraction and 0 <= base <= 1 and 0 <= v <= 1:
        return "pp", (v - base) * 100
    if abs(base) < 1e-9 or (abs(base) < 1e-3 and abs(v - base) > 10 * abs(base)):
        return "abs", v - base
    return "%", (v - base) / abs(base) * 100


def relative_change(base: float | None, v: float | None) -> float:
    """|change| in % of the base, for filtering (inf when the base is 0 and v differs)."""
    if base is None or v is None or not (math.isfinite(base) and math.isfinite(v)):
        return math.inf if (base is None) != (v is None) else 0.0
    if base == v:
        return 0.0
    return abs(v - base) / abs(base) * 100 if base else math.inf


# ---- best run -----------------------------------------------------------------------------------


@dataclass
class Ranked:
    run: Run
    best: float
    best_step: int
    last: float
    last_step: int
    points: int
    nonfinite: int = 0


def best_of(run: Run, key: str, goal: str) -> Ranked | None:
    col = run.history.columns.get(key)
    if col is None or not len(col):
        return None
    st = series_stats(col.steps, col.values)  # C-speed on finite series, no copies
    v, at = (st.max, st.max_step) if goal == "maximize" else (st.min, st.min_step)
    if v is None:
        return Ranked(run, math.nan, col.last_step or 0, col.values[-1], col.last_step or 0, len(col), len(col))
    return Ranked(run, v, at or 0, col.values[-1], col.last_step or 0, len(col), st.nan + st.inf)


def rank(entries: list[Ranked], goal: str, by: str) -> list[Ranked]:
    sign = -1.0 if goal == "maximize" else 1.0

    def k(r: Ranked) -> tuple:
        v = r.best if by == "best" else r.last
        bad = not math.isfinite(v)
        return (bad, sign * v if not bad else 0.0, r.run.display_name)

    return sorted(entries, key=k)


# ---- aggregate ----------------------------------------------------------------------------------


@dataclass
class Aggregate:
    key: str
    values: list[tuple[Run, float, int]] = field(default_factory=list)  # run, value, its step
    missing: list[Run] = field(default_factory=list)  # runs that did not log the key by the step
    nonfinite: list[Run] = field(default_factory=list)  # runs whose value there is NaN or inf

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(v for _, v, _ in self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single run."""
        return statistics.stdev(v for _, v, _ in self.values) if self.n > 1 else None

    @property
    def min(self) -> float | None:
        return min(v for _, v, _ in self.values) if self.values else None

    @property
    def max(self) -> float | None:
        return max(v for _, v, _ in self.values) if self.values else None


def aggregate(runs: list[Run], key: str, at: int | None) -> Aggregate:
    agg = Aggregate(key)
    for r in runs:
        c = read_at(r, key, at)
        if c.value is None:
            agg.missing.append(r)
        elif not math.isfinite(c.value):
            agg.nonfinite.append(r)
        else:
            agg.values.append((r, c.value, c.step or 0))
    return agg


# ---- config -------------------------------------------------------------------------------------


class _MissingType:
    """A config key a run does not have."""

    def __repr__(self) -> str:
        return "-"


MISSING = _MissingType()


def config_diff(flat: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Keys whose values differ between the flattened configs; a run without the key gets MISSING."""
    keys = sorted(set().union(*[set(f) for f in flat])) if flat else []
    out = []
    for k in keys:
        vals = [f.get(k, MISSING) for f in flat]
        if any(v is MISSING for v in vals) or any(_differs(vals[0], v) for v in vals[1:]):
            out.append((k, vals))
    return out


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return False
    return a != b
