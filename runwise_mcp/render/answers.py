"""The text of each tool's answer, from values computed elsewhere."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..model import Run
from . import text as t


def run_label(run: Run, among: list[Run] | None = None) -> str:
    """'R008A (r008akil)': name first, id for exact follow-up calls. A run whose id is its name
    (TensorBoard) and whose name another run of ``among`` shares: 'tensorboard:name', which
    resolves to it alone. Name and id come from files: escaped (``t.clean``)."""
    if run.name and run.name != run.id:
        return f"{t.clean(run.name)} ({t.clean(run.id)})"
    if among and run.source != "wandb" and sum(r.name.lower() == run.name.lower() for r in among) > 1:
        return f"{run.source}:{t.clean(run.id)}"
    return t.clean(run.id)


# ---- list_runs ---------------------------------------------------------------------------------


LIST_LIMIT = 30  # list_runs' default page: a typical project (~24 runs) in one answer of <= 1,200 tokens


@dataclass
class RunLine:
    run: Run
    metric: str | None = None
    last: float | None = None
    direction: int = 0  # trend of the metric: 1 rising, -1 falling, 0 flat
    step: int | None = None  # step of ``last``
    label: str = ""  # how the run is named in the list ("" = run_label)


def _common(values: list[str]) -> str:
    """The value every line shares ("" when they differ, or for fewer than 2 lines)."""
    return values[0] if len(values) > 1 and values[0] and all(v == values[0] for v in values) else ""


def copies_word(r: Run) -> str:
    """'1 copy', '3 copies' of a run found in other directories (run_summary says where)."""
    n = len(r.copies)
    return f"{n:,} {'copy' if n == 1 else 'copies'} elsewhere"


def copies_line(r: Run) -> str:
    """Where the copies of a run are: 'copies (listed once, read from <path>): <path>; ...'."""
    shown = [t.clean(p) + (f" ({t.clean(why)})" if why else "") for p, why in r.copies[:5]]
    more = f"; … {len(r.copies) - 5:,} more" if len(r.copies) > 5 else ""
    kept = " + ".join(t.clean(s.path) for s in r.segments)
    same = "identical " if not any(why for _, why in r.copies) else ""
    return f"{same}copies (listed once, read from {kept}): " + "; ".join(shown) + more


def run_line(line: RunLine, now: float, *, date: bool = True, metric: bool = True, group: bool = True,
             tags: bool = True, source: bool = False, basis: bool = True) -> str:
    """One run. The flags leave out what the list's header already says for every line (the
    start date, the metric's name, the group, the tags); ``source`` names the run's format
    (in a list that mixes formats)."""
    r = line.run
    parts = [f"{t.clean(line.label) if line.label else run_label(r)} {t.state(r.state, now, basis)}"]
    if source:
        parts.append(r.source)
    if len(r.segments) > 1:
        parts.append(f"{len(r.segments)} segments (resumed)")
    if r.copies:
        parts.append(copies_word(r))
    when = t.when(r.start_time, now)
    parts.append(when if date or not r.start_time else when.rsplit(" ", 1)[-1])
    if r.sample_note:  # a skim that found no (last) row: say so, not "no history yet"
        note = t.clean(r.sample_note)
        parts.append(f"step {t.step(r.last_step)} ({note})" if r.last_step is not None else note)
    else:
        parts.append(f"step {t.step(r.last_step)}" if r.last_step is not None else "no history yet")
    parts.append(t.duration(r.runtime))
    if line.metric:
        at = f"@{t.step(line.step)}" if line.step is not None and line.step != r.last_step else ""
        name = f"{t.clean(line.metric)} " if metric else ""
        parts.append(f"{name}{t.num(line.last, line.metric)}{at} {t.arrow(line.direction)}")
    if group and r.group and not r.name.startswith(r.group):
        parts.append(f"group {t.clean(r.group)}")
    if tags and r.tags:
        parts.append("tags " + ",".join(t.clean(x) for x in r.tags))
    return " | ".join(parts)


def run_list(lines: list[RunLine], *, total: int, matched: int, offset: int, limit: int, query: str,
             state: str, roots: list[str], now: float, problems: list[str]) -> str:
    filt = []
    if query:
        filt.append(f"query {query!r}")
    if state != "any":
        filt.append(f"state {state}")
    where = ", ".join(t.clean(x) for x in roots)
    if not lines:
        if total == 0:
            return no_runs_message(roots, problems)
        if offset >= matched and matched:
            return (f"offset {offset} is past the end: {t.plural(matched, 'run')} match. "
                    f"Try {t.call('list_runs', **_args(query, state, 0, limit))}.")
        return (f"No run matches {' and '.join(filt)} among {t.plural(total, 'run')} under {where}. "
                f"Query terms match id, name, tags, group, notes and job type; tag:, group:, name: restrict "
                f"to one field. Try {t.call('list_runs')} to see all runs.")
    head = f"{t.plural(matched, 'run')}"
    if filt:
        head += f" matching {' and '.join(filt)} (of {total:,})"
    head += f" under {where}; newest first, times UTC, date shown when it changes"
    if offset or len(lines) < matched:
        head += f"; showing {offset + 1}–{offset + len(lines)} of {matched:,}"
    # what every line shares is said once
    metric = _common([x.metric or "" for x in lines])
    group = _common([x.run.group if x.run.group and not x.run.name.startswith(x.run.group) else "" for x in lines])
    tags = _common([",".join(t.clean(tag) for tag in x.run.tags) for x in lines])
    shared = [f"value: last {t.clean(metric)}, with its trend"] if metric else []
    shared += [f"group {t.clean(group)}"] if group else []
    shared += [f"tags {tags}"] if tags else []
    # the format: said once when every run shares one other than W&B, on each line when they mix
    sources = {x.run.source for x in lines}
    mixed = len(sources) > 1
    if len(sources) == 1 and sources != {"wandb"}:
        shared.insert(0, f"{next(iter(sources))} runs")
    # the basis of a state that a format cannot record ("TensorBoard records no exit status")
    no_exit = _common([x.run.state.basis if x.run.state.stopped else "" for x in lines])
    if no_exit:
        shared.append(t.clean(no_exit))
    if shared:
        head += "\nall: " + "; ".join(shared)
    body = []
    day = None
    for x in lines:
        d = t.when(x.run.start_time, now).rsplit(" ", 1)[0] if x.run.start_time else None
        body.append(run_line(x, now, date=d != day, metric=not metric, group=not group, tags=not tags,
                             source=mixed, basis=not no_exit))
        day = d if d is not None else day
    out = [head] + body
    if offset + len(lines) < matched:
        out.append(f"next page: {t.call('list_runs', **_args(query, state, offset + len(lines), limit))}")
    if problems:
        out.append(f"unreadable: {t.plural(len(problems), 'problem')}, first: {t.clean(problems[0])} "
                   f"(runwise-mcp --check lists all)")
    return "\n".join(out)


def _args(query: str, state: str, offset: int, limit: int) -> dict[str, Any]:
    a: dict[str, Any] = {}
    if query:
        a["query"] = query
    if state != "any":
        a["state"] = state
    if offset:
        a["offset"] = offset
    if limit != LIST_LIMIT:
        a["limit"] = limit
    return a


def no_runs_message(roots: list[str], problems: list[str]) -> str:
    from ..sources import SOURCES  # what every registered format looks for

    where = ", ".join(t.clean(x) for x in roots)
    links = [p for p in problems if p.startswith("skipped symlink ")]  # wandb -> /scratch/u/wandb: say it first
    problems = [p for p in problems if p not in links]
    found = f": {'; '.join(t.clean(p) for p in links[:5])}" if links else ""
    msg = (f"No runs found under {where}{found}. Looked for: {'; '.join(s.describe for s in SOURCES)}. "
           f"Point the server at the directory that contains your runs (e.g. your wandb/ or runs/ folder's "
           f"parent): --root PATH or RUNWISE_PROJECT_ROOT (several paths separated by '{os.pathsep}').")
    if problems:
        msg += " Problems: " + "; ".join(t.clean(p) for p in problems[:5])
    return msg


# ---- list_keys ---------------------------------------------------------------------------------


@dataclass
class KeyLine:
    name: str
    count: int
    first_step: int | None
    last_step: int | None
    last: Any
    nan: int = 0
    inf: int = 0
    kind: str = ""  # "" numeric, else text/histogram/...
    aggregate: dict[str, Any] | None = None  # define_metric summary, e.g. {"max": 0.9}
    span: str = ""  # shown instead of the step range (system metrics: time since start)


def key_line(k: KeyLine, label: str, width: int) -> str:
    """One key; ``label`` (and ``width``) already escaped (``t.clean``)."""
    if k.kind:
        where = f"@{t.step(k.last_step)}" if k.count == 1 else f"{t.steps_range(k.first_step, k.last_step)}"
        return (f"  {label:<{width}}  {t.clean(k.kind)}, {t.plural(k.count, 'point')} {where}, "
                f"last {t.short(k.last, 40, quoted=True)}")
    rng = k.span or t.steps_range(k.first_step, k.last_step)
    s = f"  {label:<{width}}  {k.count:>6,} pts  {rng:<15} last {t.num(k.last, k.name)}"
    flags = []
    if k.nan:
        flags.append(f"{k.nan:,} NaN")
    if k.inf:
        flags.append(f"{k.inf:,} inf")
    if k.aggregate:
        flags.append("summary " + ", ".join(f"{t.clean(a)} {t.num(v, k.name)}" for a, v in k.aggregate.items()))
    return s + (f"  ({'; '.join(flags)})" if flags else "")


def system_keys_answer(run: Run, lines: list[KeyLine], *, samples: int, pattern: str) -> str:
    if not lines:
        return (f"{run_label(run)}: no system metric matches {pattern!r}"
                + (f"; {t.call('list_keys', run=run.id, pattern='system/')} lists all" if samples else
                   " (this run recorded no system metrics)"))
    out = [f"{run_label(run)}: {t.plural(len(lines), 'system metric')}, {t.plural(samples, 'sample')} "
           f"(time since start)"]
    width = max(len(t.clean(k.name)) for k in lines)
    out.extend(key_line(k, t.clean(k.name), width) for k in lines)
    return "\n".join(out)


def keys_answer(run: Run, groups: list[tuple[str, list[KeyLine], str]], *, shown: int, total: int,
                pattern: str, system: tuple[int, int, list[str]] | None, cut: int, empty_note: str = "") -> str:
    h = run.history
    head = (f"{run_label(run)}: {t.plural(total, 'key')}"
            + (f" matching {pattern!r}" if pattern else "")
            + f", {t.plural(h.rows, 'row')}, steps {t.steps_range(h.first_step, h.last_step)}")
    out = [head]
    for group, lines, note in groups:
        labels = [t.clean(_label(group, k.name)) for k in lines]
        width = max(len(x) for x in labels)
        out.append(f"{t.clean(group) or '(no prefix)'}{' ' + t.clean(note) if note else ''}")
        out.extend(key_line(k, x, width) for k, x in zip(lines, labels))
    if cut:
        out.append(f"… {t.plural(cut, 'more key')} not shown; narrow with "
                   f"{t.call('list_keys', run=run.id, pattern='<prefix or glob>')}")
    if system:
        n, samples, names = system
        out.append(f"system: {t.plural(n, 'key')}, {t.plural(samples, 'sample')} ({', '.join(map(t.clean, names[:4]))}"
                   f"{', …' if n > 4 else ''}); expand: {t.call('list_keys', run=run.id, pattern='system/')}")
    if shown == 0:
        out.append(f"no key matches {pattern!r}; {t.call('list_keys', run=run.id)} lists all" if pattern
                   else t.clean(empty_note) or "no metrics logged")
    return "\n".join(out)


def _label(group: str, name: str) -> str:
    return name[len(group):] if group and name.startswith(group) else name


# ---- get_config --------------------------------------------------------------------------------


def config_answer(run: Run, items: list[tuple[str, Any]], *, total: int, pattern: str, limit_chars: int,
                  max_items: int, source: str) -> str:
    head = f"{run_label(run)} config: {t.plural(total, 'key')}" + (f" matching {pattern!r}" if pattern else "")
    if source:
        head += f" (from {t.clean(source)})"
    out = [head]
    shortened = 0
    for k, v in items[:max_items]:
        s = _config_value(v)
        if len(s) > limit_chars:
            s = f"{s[: max(limit_chars - 20, 20)]}… ({len(s):,} chars)"
            shortened += 1
        out.append(f"{t.clean(k)}: {s}")
    if len(items) > max_items:
        out.append(f"… {t.plural(len(items) - max_items, 'more key')}; narrow with "
                   f"{t.call('get_config', run=run.id, pattern='<prefix or glob>')}")
    if shortened:
        ex = next(k for k, v in items[:max_items] if len(_config_value(v)) > limit_chars)
        out.append(f"{t.plural(shortened, 'long value')} shortened; a pattern that matches one key shows up "
                   f"to 4,000 chars: {t.call('get_config', run=run.id, pattern=ex)}")
    return "\n".join(out)


def _config_value(v: Any) -> str:
    """A config value in full: a string as it is when it reads unambiguously, else as a Python
    literal (quoted, escapes visible: blanks at the ends, newlines, control characters)."""
    if isinstance(v, str):
        return v if v and v.strip() == v and t.is_clean(v) else repr(v)
    return t.short(v, 10**9)
