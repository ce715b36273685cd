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


RECENT_FRACTION = 0.25  # the recent stretch a trend arrow is about: as diagnose's plateau_fraction
MIN_CHANGE = 0.01  # ...and the change that counts: as diagnose's plateau_min_improvement
TREND_POINTS = 200  # a longer window is fitted on this many block means


def trend(steps: Sequence[int], values: Sequence[float], fraction: float = RECENT_FRACTION,
          min_change: float = MIN_CHANGE) -> int:
    """The recent trend: -1 falling, 1 rising, 0 flat, within noise or unknown.

    Over the last ``fraction`` of the run's steps (diagnose's plateau window), the least-squares
    line of the finite points: its change across the window counts when it is more than
    ``min_change`` of the level (diagnose's plateau improvement) and more than three standard
    errors (from the residuals). So a curve that diagnose calls a plateau draws ``→`` whatever
    it did before, and unevenly spaced samples (a skim: a few early rows, a dense tail) weigh
    by their steps, not by their count. A window of more than 2 × TREND_POINTS points is fitted
    on the means of TREND_POINTS equal blocks (their residuals carry the means' noise): O(n) in C."""
    n = len(values)
    if n < 4 or steps[-1] <= steps[0]:
        return 0
    lo = steps[-1] - (steps[-1] - steps[0]) * fraction
    import bisect

    i = max(0, min(bisect.bisect_left(steps, lo), n - 5))  # a sparse key (validation): its last 5 points
    m = n - i
    xs: Sequence[float] = []
    ys: Sequence[float] = []
    if m > 2 * TREND_POINTS:
        # a long window: the means of TREND_POINTS equal blocks (C-speed slices and sums), each at
        # the middle of its steps; a block with NaN or inf sends it to the finite points instead
        xs, ys = [], []
        for j in range(TREND_POINTS):
            a, b = i + j * m // TREND_POINTS, i + (j + 1) * m // TREND_POINTS
            xs.append((steps[a] + steps[b - 1]) / 2)
            ys.append(sum(values[a:b]) / (b - a))
        if not math.isfinite(sum(ys)):
            xs = []
    if xs:
        m = TREND_POINTS
    else:
        xs, ys = finite_pairs(steps[i:], values[i:])
        m = len(xs)
        if m < 4:
            return 0
    mx = math.fsum(xs) / m
    my = math.fsum(ys) / m
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0
    slope = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    span = xs[-1] - xs[0]
    change = slope * span
    if change == 0:
        return 0
    resid = math.fsum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
    se = math.sqrt(resid / (m - 2) / sxx) if m > 2 else 0.0
    level = max(abs(my + slope * (xs[0] - mx)), abs(my + slope * (xs[-1] - mx)))
    if abs(change) <= max(min_change * level, 3 * se * span):
        return 0
    return 1 if change > 0 else -1


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


MIN_RATE_SPAN = 2.0  # seconds: a rate measured over less is noise (rows flushed together), not a speed
MIN_RATE_ROWS = 10  # ...and over fewer rows


def wall_rate(steps: Sequence[int], times: Sequence[float], window: float = 600.0, min_span: float = MIN_RATE_SPAN,
              min_rows: int = MIN_RATE_ROWS, first_step: int | None = None) -> tuple[float | None, float, int]:
    """(steps per second or None, seconds measured, rows measured) over the last ``window``
    seconds of a clock (at least ``min_rows`` rows), within the last stretch where both the clock
    and the step go up (a resume or a clock jump ends it; so does ``first_step``, the first step
    of the last segment of a resumed run: the pause between segments is no speed). None when the rows found span less
    than ``min_span`` seconds or are fewer than ``min_rows``: the speed cannot be told from them."""
    n = len(times)
    if n < 2:
        return None, 0.0, n
    end = n - 1
    i = end
    while i > 0:
        a, b = times[i - 1], times[i]
        if not (math.isfinite(a) and a <= b and steps[i - 1] < steps[i]) or \
                (first_step is not None and steps[i - 1] < first_step):
            break  # a restart, a clock jump or a repeated step: the stretch ends here
        if times[end] - a > window and end - i + 1 >= min_rows:
            break
        i -= 1
    dt = times[end] - times[i]
    rows = end - i + 1
    if rows < min_rows or not dt >= min_span or not math.isfinite(dt):
        return None, dt if math.isfinite(dt) else 0.0, rows
    return (steps[end] - steps[i]) / dt, dt, rows


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
