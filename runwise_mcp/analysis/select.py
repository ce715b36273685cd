"""Choosing and filtering: the main metric of a run, run queries, key patterns."""

from __future__ import annotations

import fnmatch
import re

from ..model import RESERVED_KEYS, Run, unescape


def metric_keys(run: Run) -> list[str]:
    """Numeric history keys that are metrics (not _step/_runtime/_timestamp)."""
    return [k for k in run.history.columns if k not in RESERVED_KEYS]


def x_axis_keys(run: Run) -> set[str]:
    """Keys used as a custom x axis by define_metric (e.g. "epoch")."""
    return {m.step_metric for m in run.metrics.values() if m.step_metric}


_LOSS = re.compile(r"(^|[/_.])loss$")


def main_metric(run: Run, preferred: list[str] | None = None) -> str | None:
    """The key that best says how a run is doing: a preferred key if present, else the train loss,
    else any loss, else the metric with the most points."""
    cols = run.history.columns
    keys = [k for k in metric_keys(run) if k not in x_axis_keys(run) and len(cols[k])]
    if not keys:
        return None
    for p in preferred or []:
        if p in cols and len(cols[p]):
            return p
    losses = [k for k in keys if _LOSS.search(k.lower())]
    if losses:
        def rank(k: str) -> tuple:
            low = k.lower()
            return (not low.startswith("train"), "val" in low or "eval" in low or "test" in low,
                    -len(cols[k]), k)
        return min(losses, key=rank)
    return min(keys, key=lambda k: (-len(cols[k]), k))


def query_matches(run: Run, query: str) -> bool:
    """Whitespace-separated terms, all must match, case-insensitive substrings. A term may be
    restricted to one field: ``tag:x``, ``group:x``, ``name:x``, ``id:x``, ``job:x``, ``notes:x``."""
    fields = {
        "id": [run.id], "name": [run.name], "tag": run.tags, "group": [run.group],
        "job": [run.job_type], "notes": [run.notes],
    }
    for term in query.lower().split():
        field, sep, value = term.partition(":")
        if sep and field in fields:
            hay = fields[field]
        else:
            value = term
            hay = [x for v in fields.values() for x in v]
        if not any(value in (h or "").lower() for h in hay):
            return False
    return True


def is_glob(pattern: str) -> bool:
    """Whether a key pattern has a wildcard (fnmatch's *, ? or [...])."""
    return any(c in pattern for c in "*?[")


def key_matches(key: str, pattern: str) -> bool:
    """Case-insensitive glob when the pattern has a wildcard, else substring."""
    if not pattern:
        return True
    p = pattern.lower()
    k = key.lower()
    if is_glob(p):
        return fnmatch.fnmatchcase(k, p)
    return p in k


# ---- what a key is ------------------------------------------------------------------------------

_SPLITS = {
    "train": "train", "training": "train", "tr": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val", "evaluation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
_SPLIT_PREFIX = re.compile(r"^(train|training|val|valid|validation|eval|evaluation|dev|test|testing)(?:[_\-](.+))?$")
_KINDS = (  # first match wins; tested against the last path part of the key
    ("lr", re.compile(r"(^|[_\-.])(lr|learning[_\-]?rate)($|[_\-.])")),
    ("grad_norm", re.compile(r"grad(ient)?[_\-]?norm|gnorm|grad/norm")),
    ("throughput", re.compile(r"per[_\-]?s(ec(ond)?)?$|throughput|(^|_)(it|steps|samples|tokens)_s$|/s$")),
    ("stage", re.compile(r"(^|[_\-.])(stage|curriculum|phase)($|[_\-.])|^(stage|curriculum|phase)")),
    ("loss", re.compile(r"loss|(^|[_\-.])(nll|ce|xent|perplexity|ppl|error|err|wer|cer|mse|mae|rmse)($|[_\-.])")),
    ("acc", re.compile(r"acc|(^|[_\-.])(f1|auc|auroc|bleu|rouge\w*|precision|recall|map|iou|dice|top\d+|em|"
                       r"exact_match|reward|return)($|[_\-.])")),
)
_MINIMIZE = re.compile(r"loss|(^|[_\-.])(error|err|perplexity|ppl|nll|wer|cer|mse|mae|rmse|xent)($|[_\-.])")
_MAXIMIZE = re.compile(r"acc|(^|[_\-.])(f1|auc|auroc|bleu|rouge\w*|precision|recall|reward|return|map|iou|dice|"
                       r"top\d+|em|exact_match)($|[_\-.])")


class KeyRole:
    """What a metric key measures: its split (train/val/test), validation set, base name and kind."""

    __slots__ = ("dataset", "key", "kind", "metric", "split")

    def __init__(self, key: str) -> None:
        self.key = key
        low = key.lower()
        parts = low.split("/")
        split = dataset = ""
        metric = parts[-1]
        head = parts[0] if len(parts) > 1 else ""
        m = _SPLIT_PREFIX.match(head) if head else None
        if m:
            split, dataset = _SPLITS[m.group(1)], m.group(2) or ""
            if len(parts) > 2 and not dataset:
                dataset = "/".join(parts[1:-1])
        elif not head:
            # eval_loss, train_acc, val_nine_species_acc is ambiguous: only the first word decides
            m2 = re.match(r"^(train|training|val|valid|validation|eval|test)[_\-](.+)$", low)
            if m2:
                split, metric = _SPLITS[m2.group(1)], m2.group(2)
        self.split = split
        self.dataset = dataset
        self.metric = metric
        self.kind = next((k for k, rx in _KINDS if rx.search(metric)), "other")

    @property
    def is_train(self) -> bool:
        return self.split in ("train", "")


def goal_from_name(key: str) -> str:
    """"minimize" for losses, errors and perplexities, "maximize" for accuracies, F1, AUC, BLEU,
    precision, recall and rewards, "" when the name does not say."""
    last = key.lower().split("/")[-1]
    if _MINIMIZE.search(last):
        return "minimize"
    if _MAXIMIZE.search(last):
        return "maximize"
    return ""


def metric_goal(run: Run, key: str) -> tuple[str, str]:
    """(goal, basis): define_metric's goal when the run declared one, else the name's."""
    for m in run.metrics.values():
        if m.goal and (m.name == key or (m.glob and fnmatch.fnmatchcase(key, m.glob))):
            return m.goal, "define_metric"
    g = goal_from_name(key)
    return g, "name" if g else ""


def main_keys(run: Run, preferred: list[str] | None = None, limit: int = 10) -> list[str]:
    """The keys that say how training goes, in reading order: train loss, train accuracy, each
    validation set's loss and accuracy, learning rate, grad norm. Falls back to the keys with
    the most points when none of those exist."""
    cols = run.history.columns
    axes = x_axis_keys(run)
    keys = [k for k in metric_keys(run) if k not in axes and len(cols[k])]
    out: list[str] = [p for p in preferred or [] if p in cols and len(cols[p])]
    roles = [KeyRole(k) for k in keys]

    def most_points(cands: list[KeyRole]) -> str | None:
        if not cands:
            return None
        return min(cands, key=lambda r: (r.split != "train", -len(cols[r.key]), len(r.key), r.key)).key

    train_loss = main_metric(run, None)
    train_loss = train_loss if train_loss and KeyRole(train_loss).kind == "loss" and KeyRole(train_loss).is_train else None
    picks = [train_loss, most_points([r for r in roles if r.kind == "acc" and r.is_train])]
    evals: dict[str, list[KeyRole]] = {}
    for r in roles:
        if r.split in ("val", "test") and r.kind in ("loss", "acc"):
            evals.setdefault(r.split + "/" + r.dataset, []).append(r)
    for group in sorted(evals, key=lambda g: (not g.startswith("val"), g)):
        rs = evals[group]
        picks.append(most_points([r for r in rs if r.kind == "loss"]))
        picks.append(most_points([r for r in rs if r.kind == "acc"]))
    picks.append(most_points([r for r in roles if r.kind == "lr"]))
    picks.append(most_points([r for r in roles if r.kind == "grad_norm"]))
    for p in picks:
        if p and p not in out:
            out.append(p)
    if not out:
        out = sorted(keys, key=lambda k: (-len(cols[k]), k))[:4]
    return out[:limit]


def closest_keys(key: str, available: list[str], n: int = 5) -> list[str]:
    """Existing keys that look like ``key``: same last part, substring, or similar spelling."""
    import difflib

    low = key.lower()
    tail = low.split("/")[-1]
    scored = []
    for k in available:
        kl = k.lower()
        s = difflib.SequenceMatcher(None, low, kl).ratio()
        if kl.split("/")[-1] == tail:
            s += 0.4
        if low in kl or kl in low:
            s += 0.3
        scored.append((-s, k))
    scored.sort()
    return [k for s, k in scored[:n] if -s > 0.45]


def pick_keys(requested: list[str], available: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Match requested keys (exact, then case-insensitive, then glob) against available keys.
    Returns the matched keys in request order and, for each unknown key, its closest keys."""
    out: list[str] = []
    unknown: list[tuple[str, list[str]]] = []
    by_lower = {k.lower(): k for k in available}
    for q in requested:
        if q in available:
            hits = [q]
        elif q.lower() in by_lower:
            hits = [by_lower[q.lower()]]
        elif (raw := unescape(q)) is not None and raw in available:  # as an answer showed it, escaped
            hits = [raw]
        elif is_glob(q):
            hits = sorted(k for k in available if fnmatch.fnmatchcase(k.lower(), q.lower()))
        else:
            hits = []
        if not hits:
            unknown.append((q, closest_keys(q, available)))
        out.extend(h for h in hits if h not in out)
    return out, unknown
