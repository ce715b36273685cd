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

CHECK_POINTS = 8  # shared steps compared per pair, newest first
MIN_POINTS_BY_VALUE = 3  # shared steps needed when the names are unrelated
REL_TOL = 0.01  # printed values are rounded (4 digits, "65.0%"): agree within 1% ...
PCT_TOL = 0.0006  # ... or, for a value printed as a percentage with one decimal, within 0.06 points

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


def _agree(c: float, h: float, percent: bool) -> bool:
    if not (math.isfinite(c) and math.isfinite(h)):
        return (c != c and h != h) or c == h
    tol = REL_TOL * max(abs(c), abs(h)) + (PCT_TOL if percent else 1e-12)
    return abs(c - h) <= tol


def _compare(csteps, cvalues, hsteps, hvalues, percent: bool) -> int:
    """How many of the newest shared steps agree (-1 at the first disagreement; 0: none shared)."""
    n = 0
    for i in range(len(csteps) - 1, -1, -1):
        s = csteps[i]
        j = bisect.bisect_left(hsteps, s)
        if j >= len(hsteps) or hsteps[j] != s:
            continue
        if not _agree(cvalues[i], hvalues[j], percent):
            return -1
        n += 1
        if n >= CHECK_POINTS:
            break
    return n


def console_aliases(logged: History, console: History, percent: set[str] | frozenset[str] = frozenset()
                    ) -> dict[str, Alias]:
    """Console key -> the logged key it mirrors. A pair qualifies when the values agree at every
    compared shared step and there are at least MIN_POINTS_BY_VALUE of them, or at least one when
    the names are related. Among qualifying logged keys the best related name wins, then the most
    shared steps; an unrelated tie is left unmapped. Each logged key takes one console key."""
    logged_cols = {k: c for k, c in logged.columns.items() if k not in RESERVED_KEYS and len(c)}
    cands: list[tuple[tuple[int, int, int], str, str, int]] = []
    for ck, ccol in console.columns.items():
        if not len(ccol) or ck in RESERVED_KEYS:
            continue
        csteps, cvalues = ccol.steps, ccol.values
        found = []
        for hk, hcol in logged_cols.items():
            hsteps = hcol.steps
            if csteps[0] > hsteps[-1] or csteps[-1] < hsteps[0]:
                continue
            n = _compare(csteps, cvalues, hsteps, hcol.values, ck in percent)
            if n <= 0:
                continue
            rel = name_relation(ck, hk)
            if n >= MIN_POINTS_BY_VALUE or rel:
                found.append(((rel, n, -len(hk)), hk, n))
        if not found:
            continue
        found.sort(reverse=True)
        best = found[0]
        if best[0][0] == 0 and len(found) > 1 and found[1][0][:2] == best[0][:2]:
            continue  # two unrelated names with the same values (e.g. constants): not decidable
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
