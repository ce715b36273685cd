"""Statistics of one series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class SeriesStats:
    count: int
    nan: int
    inf: int
    first_step: int | None
    last_step: int | None
    last: float | None  # last logged value (may be NaN)
    last_finite: float | None
    min: float | None
    min_step: int | None
    max: float | None
    max_step: int | None


def series_stats(steps: Sequence[int], values: Sequence[float]) -> SeriesStats:
    nan = inf = 0
    lo = hi = None
    lo_step = hi_step = None
    last_finite = None
    for s, v in zip(steps, values):
        if v != v:
            nan += 1
            continue
        if v in (math.inf, -math.inf):
            inf += 1
            continue
        last_finite = v
        if lo is None or v < lo:
            lo, lo_step = v, s
        if hi is None or v > hi:
            hi, hi_step = v, s
    n = len(values)
    return SeriesStats(
        count=n, nan=nan, inf=inf,
        first_step=steps[0] if n else None, last_step=steps[-1] if n else None,
        last=values[-1] if n else None, last_finite=last_finite,
        min=lo, min_step=lo_step, max=hi, max_step=hi_step,
    )


def trend(values: Sequence[float]) -> int:
    """-1 falling, 1 rising, 0 flat or unknown: last tenth of the finite points versus the first."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 4:
        return 0
    k = max(1, len(finite) // 10)
    a = sum(finite[:k]) / k
    b = sum(finite[-k:]) / k
    span = max(finite) - min(finite)
    if span == 0 or abs(b - a) < 0.05 * span:
        return 0
    return 1 if b > a else -1
