"""Which console keys are logged keys under another name: ``loss`` printed as ``Loss: 0.1875`` is
``train/loss`` logged as 0.1875 at the same step; ``val_x/token`` printed as ``Token: 20.2%`` is
``val_x/token_accuracy`` logged as 0.202.

The values decide (they must agree at the steps both have); the names only break ties and let a
key with one or two shared points through. Pure functions over ``History`` objects."""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

from ..model import RESERVED_KEYS, History

MIN_POINTS_BY_VALUE = 3  # shared steps needed when the names are unrelated
REL_TOL = 0.005  # printed values are rounded: they agree within 0.5%, or the rounding of their printed digits
PCT_TOL = 0.0005  # a value printed as a percentage with one decimal ("65.0%") is 0.65 +- 0.0005

_SYNONYMS = {"lr": "learning_rate", "acc": "accuracy", "ppl": "perplexity", "gnorm": "grad_norm"}


@dataclass(frozen=True)
class Alias:
    console_key: str
    logged_key: str
    shared: int  # shared steps compared (all agreed)


def _last_part(key: str) -> str:
    return re.split(r"[/.]", key.lower())[-1]


def _words(part: str) -> str:
    return "_".join(_SYNONYMS.get(w, w) for w in re.split(r"[_\-\s]+", part) if w)


def name_relation(console_key: str, logged_key: str) -> int:
    """2: same last name part (``loss``, ``train/loss``); 1: one is a prefix of the other
    (``token_acc``, ``token_accuracy``) or a known abbreviation (``lr``, ``learning_rate``); 0: none."""
    a, b = _last_part(console_key), _last_part(logged_key)
    if a == b:
        return 2
    wa, wb = _words(a), _words(b)
    if wa == wb:
        return 2
    if a and b and (b.startswith(a) or a.startswith(b) or wb.startswith(wa) or wa.startswith(wb)):
        return 1
    return 0


def printed_tolerance(v: float) -> float:
    """Half a unit of the last decimal the console value shows (``0.1875`` -> 0.00005,
    ``1.5e-05`` -> 5e-07): what rounding to the printed digits can move it by."""
    r = repr(float(v)).lower()
    mant, _, exp = r.partition("e")
    decimals = len(mant.split(".", 1)[1]) if "." in mant else 0
    if mant.endswith(".0"):
        decimals = 0
    decimals -= int(exp) if exp else 0
    return 0.5 * 10.0 ** -decimals


def _agree(c: float, h: float, percent: bool) -> bool:
    if not (math.isfinite(c) and math.isfinite(h)):
        return (c != c and h != h) or c == h
    d = abs(c - h)
    rel = REL_TOL * max(abs(c), abs(h)) + (PCT_TOL if percent else 0.0)
    if d <= rel:
        return True
    if c == 0 or d > 0.5 * abs(c) + rel:  # beyond any rounding of c's digits (printed 0 says no digits)
        return False
    return d <= max(REL_TOL * max(abs(c), abs(h)), printed_tolerance(c) * 1.001) + (PCT_TOL if percent else 0.0)


PROBES = 64  # console points probed per pair, spread over the console's whole range


def _probes(m: int) -> list[int]:
    """Up to PROBES indices of m points, spread evenly, the newest first."""
    if m <= PROBES:
        return list(range(m - 1, -1, -1))
    return sorted({(m - 1) * k // (PROBES - 1) for k in range(PROBES)}, reverse=True)


def _compare(csteps, cvalues, probes: list[int], hview, hvalues, percent: bool) -> tuple[int, float]:
    """Compare at the shared steps among PROBES console points spread over its whole range (the
    newest first): how many agree (-1 at the first disagreement; 0: none shared), and the spread of the
    compared values (a constant agrees with any equal constant: weak evidence)."""
    hsteps, lo, hi = hview
    n = 0
    vmin, vmax = math.inf, -math.inf
    for i in probes:
        s = csteps[i]
        j = bisect.bisect_left(hsteps, s, lo, hi)
        if j >= hi or hsteps[j] != s:
            continue
        c, h = cvalues[i], hvalues[j - lo]
        if not _agree(c, h, percent):
            return -1, 0.0
        n += 1
        if math.isfinite(c):
            vmin, vmax = min(vmin, c), max(vmax, c)
    return n, (vmax - vmin) if n and vmax >= vmin else 0.0


def console_aliases(logged: History, console: History, percent: set[str] | frozenset[str] = frozenset()
                    ) -> dict[str, Alias]:
    """Console key -> the logged key it mirrors. A pair qualifies when the values agree at every
    compared shared step and there are at least MIN_POINTS_BY_VALUE of them, varying (not one
    constant), or at least one when the names are related. Among qualifying logged keys the best
    related name wins, then the most shared steps; an unrelated tie is left unmapped. Each logged
    key takes one console key."""
    logged_cols = [(k, c, c.step_view()) for k, c in logged.columns.items() if k not in RESERVED_KEYS and len(c)]
    cands: list[tuple[tuple[int, int, int], str, str, int]] = []
    for ck, ccol in console.columns.items():
        if not len(ccol) or ck in RESERVED_KEYS:
            continue
        csteps, cvalues = ccol.steps, ccol.values
        probes = _probes(len(csteps))
        found = []
        for hk, hcol, hview in logged_cols:
            hsteps, lo, hi = hview
            if csteps[0] > hsteps[hi - 1] or csteps[-1] < hsteps[lo]:
                continue
            n, spread = _compare(csteps, cvalues, probes, hview, hcol.values, ck in percent)
            if n <= 0:
                continue
            rel = name_relation(ck, hk)
            varies = spread > 5 * (REL_TOL * max(abs(cvalues[-1]), 1e-12) + (PCT_TOL if ck in percent else 0))
            if rel or (n >= MIN_POINTS_BY_VALUE and varies):
                found.append(((rel, n, -len(hk)), hk, n))
        if not found:
            continue
        found.sort(reverse=True)
        best = found[0]
        if best[0][0] == 0 and len(found) > 1 and found[1][0][:2] == best[0][:2]:
            continue  # two unrelated names with the same values: not decidable
        cands.append((best[0], ck, best[1], best[2]))
    out: dict[str, Alias] = {}
    taken: set[str] = set()
    for _score, ck, hk, n in sorted(cands, reverse=True):
        if hk in taken:
            continue
        taken.add(hk)
        out[ck] = Alias(ck, hk, n)
    return dict(sorted(out.items()))


def renamed(console: History, aliases: dict[str, Alias]) -> History:
    """``console`` with its mirrored keys under their logged names (the same columns, shared)."""
    if not aliases:
        return console
    out = History()
    out.steps = console.steps
    for k, col in console.columns.items():
        a = aliases.get(k)
        out.columns[a.logged_key if a else k] = col
    out.other = dict(console.other)
    return out
