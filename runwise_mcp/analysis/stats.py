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
    mean: float | None = None  # of the finite values
    first: float | None = None  # first logged value


def series_stats(steps: Sequence[int], values: Sequence[float]) -> SeriesStats:
    """Count, NaN/inf counts, first/last, min/max with their steps and the mean, over all points.
    Finite series take a fast path through C builtins (one pass each)."""
    n = len(values)
    if n:
        total = math.fsum(values) if n < 64 else sum(values)
        if math.isfinite(total):  # no NaN or inf anywhere
            lo, hi = min(values), max(values)
            return SeriesStats(
                count=n, nan=0, inf=0, first_step=steps[0], last_step=steps[-1], last=values[-1],
                last_finite=values[-1], min=lo, min_step=steps[values.index(lo)], max=hi,
                max_step=steps[values.index(hi)], mean=math.fsum(values) / n, first=values[0],
            )
    nan = inf = 0
    acc = 0.0
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
        acc += v
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
        mean=acc / (n - nan - inf) if n - nan - inf else None, first=values[0] if n else None,
    )


@dataclass
class Cadence:
    """How a sparse key was logged: its points, their mean spacing in steps, its first step."""

    points: int
    every: float  # 0 for a single point
    first_step: int
    rare: bool  # in fewer than a fifth of the rows


def cadence(steps: Sequence[int], rows: int) -> Cadence | None:
    """The logging rhythm of a key with these steps in a history of ``rows`` rows; None for a
    key logged in at least half of the rows (or never)."""
    n = len(steps)
    if not n or n >= 0.5 * rows:
        return None
    every = (steps[-1] - steps[0]) / (n - 1) if n > 1 else 0
    return Cadence(n, every, steps[0], n < 0.2 * rows)


def trend(values: Sequence[float]) -> int:
    """-1 falling, 1 rising, 0 flat or unknown: last tenth of the finite points versus the first."""
    finite = values if math.isfinite(sum(values)) else [v for v in values if math.isfinite(v)]
    if len(finite) < 4:
        return 0
    k = max(1, len(finite) // 10)
    a = sum(finite[:k]) / k
    b = sum(finite[-k:]) / k
    span = max(finite) - min(finite)
    if span == 0 or abs(b - a) < 0.05 * span:
        return 0
    return 1 if b > a else -1


def finite_pairs(steps: Sequence[int], values: Sequence[float]) -> tuple[list[int], list[float]]:
    """The points with finite values."""
    if math.isfinite(sum(values)):
        return list(steps), list(values)
    xs, ys = [], []
    for s, v in zip(steps, values):
        if math.isfinite(v):
            xs.append(s)
            ys.append(v)
    return xs, ys


def ls_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs (None for fewer than 2 distinct xs)."""
    n = len(xs)
    if n < 2:
        return None
    mx = math.fsum(xs) / n
    my = math.fsum(ys) / n
    sxx = math.fsum((x - mx) * (x - mx) for x in xs)
    if sxx == 0:
        return None
    return math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def tail_slope(steps: Sequence[int], values: Sequence[float], fraction: float = 0.1) -> float | None:
    """Least-squares slope per step over the last ``fraction`` of the finite points (at least 3)."""
    k = max(3, int(round(len(values) * fraction)))
    xs, ys = finite_pairs(steps[-k:], values[-k:])
    if len(xs) < 3:
        return None
    return ls_slope(xs, ys)


def theil_sen(steps: Sequence[int], values: Sequence[float], max_points: int = 150) -> float | None:
    """Theil–Sen slope (median of pairwise slopes) per step, on at most ``max_points`` evenly
    spaced finite points: O(max_points² log), independent of the series length."""
    total = len(values)
    if total > max_points:  # evenly spaced points first: never a copy of a long series
        idx = [i * (total - 1) // (max_points - 1) for i in range(max_points)]
        steps = [steps[i] for i in idx]
        values = [values[i] for i in idx]
    xs, ys = finite_pairs(steps, values)
    n = len(xs)
    if n < 3:
        return None
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i]]
    if not slopes:
        return None
    slopes.sort()
    m = len(slopes)
    return slopes[m // 2] if m % 2 else (slopes[m // 2 - 1] + slopes[m // 2]) / 2


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if not n:
        return math.nan
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def value_at(steps: Sequence[int], values: Sequence[float], step: int) -> tuple[int, float] | None:
    """The last point logged at or before ``step`` (None when the key starts after it)."""
    import bisect

    i = bisect.bisect_right(steps, step) - 1
    if i < 0:
        return None
    return steps[i], values[i]


MIN_RATE_SPAN = 1.0  # seconds: a rate measured over less is noise (rows flushed together), not a speed


def recent_rate(steps: Sequence[int], runtime: Sequence[float], window: float = 600.0,
                min_span: float = 0.0) -> tuple[float, float] | None:
    """(steps per second, seconds measured) over the last ``window`` seconds of `_runtime`
    (runtime ascends within a segment; a restart leaves only the last two readings). None when
    the points span less than ``min_span`` seconds (e.g. ``MIN_RATE_SPAN``): the speed cannot be
    told from them."""
    import bisect

    n = len(runtime)
    if n < 2:
        return None
    i = max(0, bisect.bisect_left(runtime, runtime[-1] - window, 0, n))
    if runtime[i] > runtime[-1]:
        i = n - 2
    dt = runtime[-1] - runtime[i]
    if dt > 0 and dt >= min_span and steps[-1] > steps[i]:
        return (steps[-1] - steps[i]) / dt, dt
    return None
