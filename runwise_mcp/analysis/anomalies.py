"""Anomaly checks over every point of a run's history (never a sample).

Each check is O(n) or O(n log w) in the number of points n (w: a small window); the stability
slope uses Theil–Sen on at most 150 evenly spaced points. Findings are plain values; the render
layer words them.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from ..model import Run
from .sampling import bucket_means
from .select import KeyRole, main_keys, metric_keys, x_axis_keys
from .stats import median, theil_sen

CHECKS = ("nan", "spike", "divergence", "overfit", "plateau", "grad_norm", "throughput")


@dataclass
class Thresholds:
    """Tunable in runwise.toml ([diagnose]) or pyproject.toml ([tool.runwise.diagnose])."""

    spike_z: float = 6.0  # robust z-score (median/MAD of the trailing window) that makes a spike
    spike_min_rise: float = 0.25  # ...and at least this much above the window's median (fraction)
    spike_window: int = 50  # points in the trailing window
    divergence_rise: float = 0.5  # smoothed loss ends this fraction above its minimum
    divergence_min_fraction: float = 0.1  # ...having risen over at least this fraction of the run
    overfit_min_rise: float = 0.05  # validation loss this fraction above its minimum (accuracy: below its peak)
    plateau_fraction: float = 0.25  # no improvement over at least this fraction of the run
    plateau_min_improvement: float = 0.01  # "improvement" means at least this fraction better
    plateau_band: float = 0.05  # ...and the smoothed curve stays within this fraction of its level
    grad_explode_factor: float = 10.0  # late grad norm this many times the early one
    grad_vanish_factor: float = 100.0  # late grad norm this many times smaller than the early one
    throughput_drop: float = 0.3  # late throughput this fraction below the early one
    throughput_min_runtime: float = 60.0  # seconds of _runtime before steps/s is derived from it
    noise_rise: float = 3.0  # rolling std at the end this many times its typical value

    @classmethod
    def from_mapping(cls, raw: dict) -> tuple[Thresholds, list[str]]:
        """Thresholds from a config table; unknown names and bad values are reported, not fatal."""
        t = cls()
        problems = []
        names = {f.name: f.type for f in fields(cls)}
        for k, v in raw.items():
            if k not in names:
                problems.append(f"unknown diagnose threshold {k!r} (known: {', '.join(names)})")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                problems.append(f"diagnose threshold {k} = {v!r} must be a positive number")
                continue
            setattr(t, k, int(v) if k == "spike_window" else float(v))
        return t, problems


@dataclass
class Finding:
    check: str  # one of CHECKS, or "noise"
    key: str
    step: int | None = None  # where it starts or happens
    data: dict = field(default_factory=dict)


@dataclass
class Stability:
    key: str
    slope: float | None  # Theil–Sen, per step
    noise_ratio: float | None  # rolling std at the end / its median over the run


@dataclass
class Diagnosis:
    findings: list[Finding]
    checked: list[str]  # checks that ran
    keys: list[str]
    points: int  # points examined in total
    stability: list[Stability]


def finite_points(steps: Sequence[int], values: Sequence[float]) -> tuple[Sequence[int], Sequence[float]]:
    """The points whose value is finite (the inputs themselves when all are)."""
    if math.isfinite(sum(values)):
        return steps, values
    xs, ys = array("q"), array("d")
    for s, v in zip(steps, values):
        if math.isfinite(v):
            xs.append(s)
            ys.append(v)
    return xs, ys


# ---- single checks ------------------------------------------------------------------------------


def check_nonfinite(key: str, steps: Sequence[int], values: Sequence[float]) -> Finding | None:
    if math.isfinite(sum(values)):
        return None
    first = None
    nan = inf = 0
    last_bad = -1
    for i, v in enumerate(values):
        if v != v:
            nan += 1
        elif v in (math.inf, -math.inf):
            inf += 1
        else:
            continue
        last_bad = i
        if first is None:
            first = i
    if first is None:  # the sum overflowed, the values are finite
        return None
    return Finding("nan", key, steps[first], {
        "kind": "NaN" if values[first] != values[first] else ("inf" if values[first] > 0 else "-inf"),
        "nan": nan, "inf": inf, "to_end": last_bad == len(values) - 1 and nan + inf > 1,
        "recovered_at": None if last_bad == len(values) - 1 else steps[last_bad + 1],
    })


def check_spikes(key: str, steps: Sequence[int], values: Sequence[float], th: Thresholds) -> list[Finding]:
    """Upward spikes: points whose robust z-score against the trailing window is at least
    ``spike_z`` and that rise at least ``spike_min_rise`` above the window's median. The window's
    median and MAD are refreshed every w/5 points: O(n log w)."""
    xs, ys = finite_points(steps, values)
    n = len(ys)
    w = min(th.spike_window, n // 4)
    if w < 8:
        return []
    hop = max(1, w // 2)
    half = w // 2
    events: list[dict] = []
    cur: dict | None = None
    i = w
    rise = 1 + th.spike_min_rise
    while i < n:
        end = min(n, i + hop)
        window = ys[i - w : i]
        low = min(window)
        if low > 0 and max(ys[i:end]) <= low * rise:
            # the threshold is at least median * (1 + spike_min_rise) >= min * (1 + spike_min_rise):
            # nothing in this hop can reach it, so skip the median and MAD (most hops of a smooth curve)
            i = end
            continue
        ref = sorted(window)
        med = ref[half]
        mad = _kth_deviation(ref, half, half)
        scale = max(1.4826 * mad, 1e-12)
        thr = max(med + th.spike_z * scale, med + th.spike_min_rise * abs(med))
        if max(ys[i:end]) > thr:
            for j in range(i, end):
                v = ys[j]
                if v > thr:
                    z = (v - med) / scale
                    if cur is not None and j - cur["last"] <= w:
                        cur["last"] = j
                        if v > ys[cur["peak"]]:
                            cur.update(peak=j, z=z, base=med)
                        cur["points"] += 1
                    else:
                        cur = {"first": j, "last": j, "peak": j, "z": z, "base": med, "points": 1, "thr": thr}
                        events.append(cur)
        i = end
    out = []
    for e in events:
        after = ys[e["last"] + 1 : e["last"] + 1 + w]
        recovered = bool(after) and median(after) <= e["thr"]
        out.append(Finding("spike", key, xs[e["peak"]], {
            "value": ys[e["peak"]], "baseline": e["base"], "z": e["z"], "points": e["points"],
            "first": xs[e["first"]], "last": xs[e["last"]], "window": w,
            "ratio": ys[e["peak"]] / e["base"] if e["base"] > 0 else None,  # times the window median
            "recovered": recovered, "at_end": not after,
        }))
    return out


def _kth_deviation(ref: list[float], m: int, k: int) -> float:
    """The k-th smallest |x - ref[m]| of a sorted list: a merge of the two sides walking out from
    the median, O(k) instead of sorting the deviations."""
    med = ref[m]
    lo, hi = m - 1, m + 1  # next candidates below and above
    d = 0.0  # ref[m] itself: deviation 0 is the smallest
    for _ in range(k):
        left = med - ref[lo] if lo >= 0 else math.inf
        right = ref[hi] - med if hi < len(ref) else math.inf
        if left <= right:
            d, lo = left, lo - 1
        else:
            d, hi = right, hi + 1
    return d


def _blocks(xs: Sequence[int], ys: Sequence[float], nb: int) -> tuple[list[float], list[int]]:
    """Means of nb equal blocks of points, and each block's first step."""
    n = len(ys)
    means = bucket_means(ys, nb)
    starts = [xs[i * n // len(means)] for i in range(len(means))]
    return means, starts


def check_divergence(key: str, steps: Sequence[int], values: Sequence[float], th: Thresholds) -> Finding | None:
    """A loss whose smoothed curve ends well above its minimum after rising for a sustained stretch."""
    xs, ys = finite_points(steps, values)
    n = len(ys)
    if n < 20:
        return None
    nb = min(50, n // 4)
    b, starts = _blocks(xs, ys, nb)
    m = min(range(nb), key=b.__getitem__)
    after = nb - 1 - m
    if after < max(2, th.divergence_min_fraction * nb):
        return None
    lo, last = b[m], b[-1]
    rise = (last - lo) / abs(lo) if lo else math.inf
    if rise < th.divergence_rise:
        return None
    tail = b[m:]
    ups = sum(1 for p, q in zip(tail, tail[1:]) if q > p)
    if ups < 0.6 * (len(tail) - 1):
        return None
    # the step of the lowest point around the lowest block: where the rise starts
    a = starts[max(0, m - 1)]
    z = starts[m + 2] if m + 2 < nb else xs[-1] + 1
    best = None
    for s, v in zip(xs, ys):
        if a <= s < z and (best is None or v < best[1]):
            best = (s, v)
    low = min(range(n), key=ys.__getitem__)  # the lowest point itself: what run_summary calls best
    return Finding("divergence", key, best[0] if best else starts[m], {
        "min": lo, "last": last, "rise": rise, "last_step": xs[-1], "blocks": nb,
        "low_point": ys[low], "low_step": xs[low], "last_point": ys[-1],
    })


def _pair_train(val: KeyRole, candidates: list[KeyRole]) -> KeyRole | None:
    same = [r for r in candidates if r.metric == val.metric] or candidates
    return same[0] if same else None


def check_overfit(val_key: str, vsteps: Sequence[int], vvalues: Sequence[float], goal: str,
                  train: tuple[str, Sequence[int], Sequence[float]] | None, th: Thresholds) -> Finding | None:
    """Validation loss rising from its minimum (accuracy falling from its peak) while the train
    loss keeps falling (or is not logged)."""
    xs, ys = finite_points(vsteps, vvalues)
    n = len(ys)
    if n < 4:
        return None
    m = ys.index(max(ys) if goal == "maximize" else min(ys))  # the first best point
    if n - 1 - m < 2:
        return None
    best, last = ys[m], ys[-1]
    change = (last - best) / abs(best) if best else (math.inf if last != best else 0.0)
    if goal == "maximize":
        change = -change
    if change < th.overfit_min_rise:
        return None
    # the rise must hold: the last two points both worse than the best by the threshold / 2
    tail_ok = all(((v - best) if goal != "maximize" else (best - v)) > 0.5 * th.overfit_min_rise * abs(best)
                  for v in ys[-2:])
    if not tail_ok:
        return None
    data = {"best": best, "last": last, "change": change, "goal": goal, "points": n}
    if train is not None:
        tkey, tsteps, tvalues = train
        txs, tys = finite_points(tsteps, tvalues)
        at = [v for s, v in zip(txs, tys) if s <= xs[m]][-max(1, len(tys) // 20):]
        end = list(tys[-max(1, len(tys) // 20):])
        if at and end:
            t0, t1 = sum(at) / len(at), sum(end) / len(end)
            if t1 > t0 * (1 - 0.001):  # train loss not falling: not overfitting (maybe divergence)
                return None
            data.update(train_key=tkey, train_at_best=t0, train_last=t1)
    return Finding("overfit", val_key, xs[m], data)


def check_plateau(key: str, steps: Sequence[int], values: Sequence[float], goal: str,
                  th: Thresholds) -> Finding | None:
    """No block mean after some step is more than ``plateau_min_improvement`` better than that
    step's block, over at least ``plateau_fraction`` of the run."""
    xs, ys = finite_points(steps, values)
    n = len(ys)
    if n < 40:
        return None
    nb = min(100, n // 5)
    b, starts = _blocks(xs, ys, nb)
    sign = -1.0 if goal == "maximize" else 1.0
    best_after = math.inf
    lo_after, hi_after = math.inf, -math.inf
    start = nb
    for j in range(nb - 1, -1, -1):
        v = sign * b[j]
        best_after = min(best_after, v)
        lo_after, hi_after = min(lo_after, b[j]), max(hi_after, b[j])
        if v - best_after > th.plateau_min_improvement * abs(b[j]):
            break  # later blocks improve on this one
        if hi_after - lo_after > th.plateau_band * max(abs(lo_after), abs(hi_after)):
            break  # not flat: getting worse (a divergence) is not a plateau
        start = j
    if start >= nb or (nb - start) < th.plateau_fraction * nb:
        return None
    return Finding("plateau", key, starts[start], {
        "level": sum(b[start:]) / (nb - start), "span": xs[-1] - starts[start], "last_step": xs[-1],
        "fraction": (nb - start) / nb,
    })


def _first_block(xs: Sequence[int], ys: Sequence[float], crossed: Callable[[float], bool], default: int) -> int:
    """The first step of the first of (at most 50) equal blocks whose median ``crossed`` says
    is past a limit: where a change began; ``default`` when none is."""
    nb = min(50, len(ys) // 4)
    size = len(ys) // nb
    return next((xs[i * size] for i in range(nb) if crossed(median(ys[i * size:(i + 1) * size]))), default)


def growth_onset(xs: Sequence[int], ys: Sequence[float], blocks: int = 100) -> int:
    """Where a growth starts (the change point, not where it crosses a limit): the hinge of the
    best fit ``log y = a + b * max(0, t - c)`` (flat, then exponential) over the medians of at most
    ``blocks`` equal blocks of points; O(blocks²) whatever the series length."""
    n = len(ys)
    nb = max(2, min(blocks, n // 4))
    size = n / nb
    logs, pos = [], []
    for j in range(nb):
        a, b = int(j * size), max(int(j * size) + 1, int((j + 1) * size))
        hop = max(1, (b - a) // 501)  # at most ~501 evenly spaced points of a block for its median
        chunk = [v for v in ys[a:b:hop] if v > 0]
        if chunk:
            logs.append(math.log(median(chunk)))
            pos.append(j)
    if len(logs) < 4:
        return xs[0]
    best: tuple[float, float] | None = None  # (sse, hinge position in blocks)
    for c in range(len(pos) - 2):
        hinge = pos[c]
        h = [max(0.0, p - hinge) for p in pos]
        m = len(h)
        mh, my = sum(h) / m, sum(logs) / m
        shh = sum((x - mh) ** 2 for x in h)
        if shh == 0:
            continue
        slope = sum((x - mh) * (y - my) for x, y in zip(h, logs)) / shh
        if slope <= 0:
            continue
        sse = sum((y - my - slope * (x - mh)) ** 2 for x, y in zip(h, logs))
        if best is None or sse < best[0] - 1e-12:
            best = (sse, hinge)
    if best is None:
        return xs[0]
    # the hinge sits at its block's centre (where that block's median is)
    return xs[min(n - 1, int((best[1] + 0.5) * size))]


def check_grad_norm(key: str, steps: Sequence[int], values: Sequence[float], th: Thresholds) -> Finding | None:
    xs, ys = finite_points(steps, values)
    n = len(ys)
    if n < 20:
        return None
    k = max(3, n // 10)
    early, late = median(ys[:k]), median(ys[-k:])
    if early > 0 and late >= th.grad_explode_factor * early:
        step = growth_onset(xs, ys)
        return Finding("grad_norm", key, step, {"kind": "exploding", "early": early, "late": late,
                                                "max": max(ys)})
    if late >= 0 and early > 0 and late * th.grad_vanish_factor <= early:
        return Finding("grad_norm", key, xs[-k], {"kind": "vanishing", "early": early, "late": late})
    return None


def check_throughput(key: str, steps: Sequence[int], values: Sequence[float], th: Thresholds,
                     derived: bool = False) -> Finding | None:
    """The throughput of the last tenth well below that of the first half (after warm-up)."""
    xs, ys = finite_points(steps, values)
    n = len(ys)
    if n < 20:
        return None
    early = median(ys[max(1, n // 20) : n // 2])
    late = median(ys[-max(3, n // 10):])
    if not early > 0 or late > (1 - th.throughput_drop) * early:
        return None
    mid = (early + late) / 2
    step = _first_block(xs, ys, lambda m: m < mid, xs[-1])
    return Finding("throughput", key, step, {"early": early, "late": late, "change": late / early - 1,
                                             "derived": derived})


def steps_per_second(steps: Sequence[int], runtime: Sequence[float]) -> tuple[list[int], list[float]]:
    """Steps/s from `_runtime`, over stretches of at least 1/200 of the run's runtime (so about
    200 readings whatever the run's length; wandb's runtime has sub-millisecond resolution)."""
    xs: list[int] = []
    ys: list[float] = []
    if len(runtime) < 2:
        return xs, ys
    span = max(runtime) - min(runtime)
    min_dt = span / 200 if span > 0 else math.inf
    i0 = 0
    stride = max(1, len(runtime) // 4000)  # ~4,000 readings are plenty for ~200 stretches
    for i in range(stride, len(runtime), stride):
        dt = runtime[i] - runtime[i0]
        if dt < 0:  # resumed: runtime restarted
            i0 = i
            continue
        if dt >= min_dt and dt > 0 and steps[i] > steps[i0]:
            xs.append(steps[i])
            ys.append((steps[i] - steps[i0]) / dt)
            i0 = i
    return xs, ys


def stability(key: str, steps: Sequence[int], values: Sequence[float]) -> Stability:
    xs, ys = finite_points(steps, values)
    n = len(ys)
    ratio = None
    if n >= 40:
        nb = min(20, n // 10)
        size = n // nb
        stds = []
        for i in range(nb):
            # at most 500 consecutive points of each block: the noise level, not every point
            start = i * size + max(0, (size - 500) // 2)
            chunk = ys[start:start + min(size, 500)]
            # the std of step-to-step differences: a falling loss's noise, not its slope
            diffs = [q - p for p, q in zip(chunk, chunk[1:])]
            md = sum(diffs) / len(diffs)
            stds.append(math.sqrt(sum((d - md) ** 2 for d in diffs) / len(diffs)))
        typical = median(stds)
        ratio = stds[-1] / typical if typical > 0 else None
    return Stability(key, theil_sen(xs, ys), ratio)


def _dedupe(findings: list[Finding], roles: dict[str, KeyRole]) -> list[Finding]:
    """Drop what another finding already explains: unrecovered spikes inside a divergence (or a
    grad-norm explosion) of the same key, and an accuracy overfit when that validation set's loss already shows it."""
    div = {f.key: f.step for f in findings if f.check == "divergence"}
    div.update({f.key: f.step for f in findings if f.check == "grad_norm" and f.data["kind"] == "exploding"})
    loss_over = {(roles[f.key].split, roles[f.key].dataset) for f in findings
                 if f.check == "overfit" and roles[f.key].kind == "loss"}
    out = []
    for f in findings:
        if f.check == "spike" and f.key in div and not f.data["recovered"] and f.step >= div[f.key]:
            continue
        if f.check == "overfit" and roles[f.key].kind != "loss" and \
                (roles[f.key].split, roles[f.key].dataset) in loss_over:
            continue
        out.append(f)
    return out


# ---- all checks ---------------------------------------------------------------------------------


def default_keys(run: Run, preferred: list[str] | None = None) -> list[str]:
    """The main metrics plus every grad-norm and throughput key."""
    keys = main_keys(run, preferred, limit=12)
    cols = run.history.columns
    axes = x_axis_keys(run)
    for k in sorted(metric_keys(run)):
        if k not in keys and k not in axes and len(cols[k]) and KeyRole(k).kind in ("grad_norm", "throughput"):
            keys.append(k)
    return keys


def diagnose(run: Run, keys: list[str], goals: dict[str, str], th: Thresholds) -> Diagnosis:
    cols = run.history.columns
    findings: list[Finding] = []
    checked = set()
    roles = {k: KeyRole(k) for k in keys}
    points = 0
    train_losses = [r for k, r in roles.items() if r.kind == "loss" and r.is_train]
    train_losses.sort(key=lambda r: (r.split != "train", -len(cols[r.key])))
    for k in keys:
        col = cols.get(k)
        if col is None or not len(col):
            continue
        steps, values = col.steps, col.values
        points += len(values)
        role = roles[k]
        goal = goals.get(k, "")
        checked.add("nan")
        f = check_nonfinite(k, steps, values)
        if f:
            findings.append(f)
        if role.kind in ("loss", "grad_norm") or goal == "minimize":
            checked.add("spike")
            findings.extend(check_spikes(k, steps, values, th)[:20])
        if role.kind == "loss" and role.is_train:
            checked.add("divergence")
            f = check_divergence(k, steps, values, th)
            if f:
                findings.append(f)
        if role.split in ("val", "test") and role.kind in ("loss", "acc") and goal:
            checked.add("overfit")
            tr = _pair_train(role, train_losses)
            tcol = cols.get(tr.key) if tr else None
            f = check_overfit(k, steps, values, goal, (tr.key, tcol.steps, tcol.values) if tr and tcol else None, th)
            if f:
                findings.append(f)
        if role.is_train and role.kind in ("loss", "acc") and goal:
            checked.add("plateau")
            f = check_plateau(k, steps, values, goal, th)
            if f:
                findings.append(f)
        if role.kind == "grad_norm":
            checked.add("grad_norm")
            f = check_grad_norm(k, steps, values, th)
            if f:
                findings.append(f)
        if role.kind == "throughput":
            checked.add("throughput")
            f = check_throughput(k, steps, values, th)
            if f:
                findings.append(f)
    findings = _dedupe(findings, roles)
    loss_spikes = {f.step: f.key for f in findings if f.check == "spike" and roles[f.key].kind == "loss"}
    for f in findings:
        if f.check == "spike" and roles[f.key].kind == "grad_norm" and f.step in loss_spikes:
            f.data["with"] = loss_spikes[f.step]
    rt = cols.get("_runtime")
    if rt is not None and len(rt) >= 20 and not any(f.check == "throughput" for f in findings) \
            and max(rt.values) - min(rt.values) >= th.throughput_min_runtime:
        xs, ys = steps_per_second(rt.steps, rt.values)
        if len(ys) >= 20:
            checked.add("throughput")
            f = check_throughput("steps/s", xs, ys, th, derived=True)
            if f:
                findings.append(f)
    stab = []
    for k in keys:
        col = cols.get(k)
        if col is None or len(col) < 3 or roles[k].kind in ("lr", "stage"):
            continue
        s = stability(k, col.steps, col.values)
        stab.append(s)
        if s.noise_ratio is not None and s.noise_ratio >= th.noise_rise and roles[k].kind in ("loss", "acc"):
            findings.append(Finding("noise", k, None, {"ratio": s.noise_ratio}))
    order = {c: i for i, c in enumerate(CHECKS + ("noise",))}
    findings.sort(key=lambda f: (order[f.check], f.step if f.step is not None else -1, f.key))
    return Diagnosis(findings, [c for c in CHECKS if c in checked], keys, points, stab)
