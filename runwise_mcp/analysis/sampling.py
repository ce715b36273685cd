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
        acc = 0.0
        k = 0
        for v in values[a:b]:
            if math.isfinite(v):
                acc += v
                k += 1
        out.append(acc / k if k else math.nan)
    return out
