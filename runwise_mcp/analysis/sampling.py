"""Downsampling for sparklines and previews."""

from __future__ import annotations

import math
from collections.abc import Sequence


def bucket_means(values: Sequence[float], n: int) -> list[float]:
    """Split ``values`` into ``n`` equal buckets (fewer if there are fewer values) and return the
    mean of the finite values of each; a bucket without finite values is NaN."""
    total = len(values)
    if total == 0 or n <= 0:
        return []
    n = min(n, total)
    out = []
    for i in range(n):
        a = i * total // n
        b = (i + 1) * total // n
        fast = sum(values[a:b])  # C speed; NaN or inf inside makes it non-finite
        if math.isfinite(fast):
            out.append(fast / (b - a))
            continue
        acc = 0.0
        k = 0
        for v in values[a:b]:
            if math.isfinite(v):
                acc += v
                k += 1
        out.append(acc / k if k else math.nan)
    return out


def bucket_means_by_step(steps: Sequence[int], values: Sequence[float], n: int) -> list[float]:
    """Like bucket_means, but buckets are equal step ranges: for samples taken unevenly (a skimmed
    log: one row per sampled block, every row of its tail), so a dense stretch does not dominate."""
    total = len(values)
    if total == 0 or n <= 0:
        return []
    lo, hi = steps[0], steps[-1]
    if hi <= lo or total < n:
        return bucket_means(values, n)
    acc = [0.0] * n
    cnt = [0] * n
    for s, v in zip(steps, values):
        if math.isfinite(v):
            i = min(n - 1, int((s - lo) * n / (hi - lo + 1)))
            acc[i] += v
            cnt[i] += 1
    return [a / c if c else math.nan for a, c in zip(acc, cnt)]


def _bucket_picks(steps, values, a: int, b: int, edges: list[float], out: set[int]) -> None:
    """Indices to keep from steps[a:b]: per step bucket the minimum, the maximum and the first
    non-finite point, so spikes and NaNs survive the downsampling."""
    import bisect

    lo = a
    for e in edges[1:]:
        hi = bisect.bisect_right(steps, e, lo, b) if e != edges[-1] else b
        if hi > lo:
            chunk = values[lo:hi]
            if math.isfinite(sum(chunk)):
                out.add(lo + chunk.index(min(chunk)))
                out.add(lo + chunk.index(max(chunk)))
            else:
                best_lo = best_hi = -1
                first_bad = -1
                for j in range(lo, hi):
                    v = values[j]
                    if not math.isfinite(v):
                        if first_bad < 0:
                            first_bad = j
                    else:
                        if best_lo < 0 or v < values[best_lo]:
                            best_lo = j
                        if best_hi < 0 or v > values[best_hi]:
                            best_hi = j
                out.update(j for j in (first_bad, best_lo, best_hi) if j >= 0)
        lo = hi


class Sampled:
    """Rows of an outer join on step: ``steps`` and, per key, the value at each row (None where
    the key was not logged at that step)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.cells: dict[str, list[float | None]] = {}
        self.points: dict[str, int] = {}  # points of each key within the step range
        self.kept: dict[str, int] = {}  # of which shown
        self.buckets = 0  # 0: every point shown


def sample_join(series: dict[str, tuple], samples: int, step_min: int | None = None,
                step_max: int | None = None) -> Sampled:
    """At most ``samples`` rows over [step_min, step_max]. When everything fits, every point is
    kept; otherwise each key keeps its min, max and first non-finite point per step bucket plus its
    first and last point, with as many buckets as the budget allows. Sparse keys (validation
    metrics) thus keep all their points while they fit."""
    import bisect

    out = Sampled()
    ranges: dict[str, tuple[int, int]] = {}
    lo_step, hi_step = None, None
    for k, (steps, _values) in series.items():
        a = 0 if step_min is None else bisect.bisect_left(steps, step_min)
        b = len(steps) if step_max is None else bisect.bisect_right(steps, step_max)
        ranges[k] = (a, b)
        out.points[k] = max(0, b - a)
        if b > a:
            lo_step = steps[a] if lo_step is None else min(lo_step, steps[a])
            hi_step = steps[b - 1] if hi_step is None else max(hi_step, steps[b - 1])
    if lo_step is None or samples <= 0:
        for k in series:
            out.cells[k] = []
            out.kept[k] = 0
        return out

    def all_steps() -> set[int] | None:
        acc: set[int] = set()
        for k, (steps, _v) in series.items():
            a, b = ranges[k]
            if len(acc) + (b - a) > 4 * samples:
                return None
            acc.update(steps[a:b])
        return acc

    chosen = all_steps()
    if chosen is None or len(chosen) > samples:
        # sparse keys first (validation metrics): every point while together they fill at most
        # three quarters of the budget; the rest is shared by the dense keys' bucket extremes
        reserved: set[int] = set()
        dense: list[str] = []
        for k in sorted(series, key=lambda k: (out.points[k], k)):
            a, b = ranges[k]
            if dense or b - a > samples:
                dense.append(k)
                continue
            cand = reserved | set(series[k][0][a:b])
            if len(cand) <= max(1, samples * 3 // 4):
                reserved = cand
            else:
                dense.append(k)
        nb = max(1, (samples - len(reserved)) // 2)
        while True:
            span = (hi_step - lo_step) or 1
            edges = [lo_step - 0.5 + span * i / nb for i in range(nb)] + [hi_step + 0.5]
            picks: set[int] = set(reserved)
            for k in dense:
                steps, values = series[k]
                a, b = ranges[k]
                if b <= a:
                    continue
                idx: set[int] = {a, b - 1}
                _bucket_picks(steps, values, a, b, edges, idx)
                picks.update(steps[i] for i in idx)
            if len(picks) <= samples or nb == 1:
                chosen = picks
                break
            nb = max(1, min(nb - 1, int(nb * (samples - len(reserved)) / max(1, len(picks) - len(reserved)) * 0.95)))
        out.buckets = nb
    rows = sorted(chosen)
    if len(rows) > samples:  # only when nb == 1 could not fit: keep evenly spaced rows
        rows = [rows[i * (len(rows) - 1) // (samples - 1)] for i in range(samples)] if samples > 1 else rows[-1:]
    out.steps = rows
    for k, (steps, values) in series.items():
        a, b = ranges[k]
        col: list[float | None] = []
        kept = 0
        for s in rows:
            i = bisect.bisect_left(steps, s, a, b)
            if i < b and steps[i] == s:
                col.append(values[i])
                kept += 1
            else:
                col.append(None)
        out.cells[k] = col
        out.kept[k] = kept
    return out
