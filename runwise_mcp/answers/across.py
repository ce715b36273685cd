"""Tools across runs: best_run, compare_runs, aggregate_runs."""

from __future__ import annotations

import math

from ..analysis.compare import (
    aggregate,
    best_of,
    parse_entry,
    parse_step,
    rank,
    read_at,
    relative_change,
    stage_keys,
    stage_start,
)
from ..analysis.compare import config_diff as compare_config
from ..analysis.select import closest_keys, main_keys, metric_goal, pick_keys, query_matches
from ..index import RunIndex
from ..model import Run
from ..render import answers as ra
from ..render import reports as rs
from ..render import text as t
from .common import (
    MAX_COMPARE_KEYS,
    MAX_CONFIG_DIFF,
    UserError,
    cadence,
    flatten_config,
    get_run,
    numeric_keys,
    parse_keys,
    read_for_keys,
    read_runs_for_keys,
    searched,
)

# ---- best_run ------------------------------------------------------------------------------------

_GOALS = {"auto": "", "min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}


def _select_runs(index: RunIndex, query: str, keys: list[str] | str | None = None) -> list[Run]:
    """The runs matching ``query``, read for ``keys`` (all keys when none are named exactly)."""
    runs = [r for r in index.runs() if not query or query_matches(r, query)]
    if not runs:
        if not index.runs():
            raise UserError(ra.no_runs_message(searched(index), index.problems()))
        raise UserError(f"no run matches query {query!r}; {t.call('list_runs')} shows all runs")
    return read_runs_for_keys(index, runs, keys)


def best_run(index: RunIndex, metric: str, goal: str = "auto", top: int = 5, query: str = "", by: str = "best") -> str:
    if goal not in _GOALS:
        raise UserError(f"goal must be auto, min or max; got {goal!r}")
    if by not in ("best", "last"):
        raise UserError(f"by must be best or last; got {by!r}")
    metric = metric.strip()
    if not metric:
        raise UserError("metric is empty; pass a key such as val/loss (list_keys shows a run's keys)")
    runs = _select_runs(index, query, [metric])
    have = [r for r in runs if metric in r.history.columns and len(r.history.columns[metric])]
    if not have:
        allkeys = sorted({k for r in runs for k in numeric_keys(r)})
        close = closest_keys(metric, allkeys)
        scope = f"the {t.plural(len(runs), 'run')}" + (f" matching {query!r}" if query else "")
        hint = f"closest: {', '.join(map(t.clean, close))}" if close else f"{t.call('list_keys')} lists a run's keys"
        raise UserError(f"no run among {scope} logged {metric!r}; {hint}")
    g = _GOALS[goal]
    basis = "argument"
    if not g:
        votes = [metric_goal(r, metric) for r in have]
        declared = [v for v in votes if v[1] == "define_metric"]
        g, basis = (declared[0] if declared else votes[0])
        if not g:
            raise UserError(f"cannot tell whether higher or lower {t.clean(metric)} is better: no define_metric goal "
                            f"and the name does not say; {t.call('best_run', metric=metric, goal='max')} or goal='min'")
    ranked = rank([b for b in (best_of(r, metric, g) for r in have) if b is not None], g, by)
    held = {id(r) for r in have}
    missing = [r for r in runs if id(r) not in held]
    return rs.best_answer(metric, g, basis, by, ranked, missing, top, query, len(runs), index.clock(),
                          unique_names(index.runs()))


def unique_names(runs: list[Run]) -> dict[str, str]:
    """Run id -> its name, for runs whose name names them alone (a valid `run` argument, as in list_runs)."""
    seen: dict[str, int] = {}
    for r in runs:
        for ref in {r.name.lower(), r.id.lower()} - {""}:
            seen[ref] = seen.get(ref, 0) + 1
    return {r.id: t.clean(r.name) for r in runs if r.name and r.name != r.id and seen.get(r.name.lower()) == 1}


# ---- compare_runs --------------------------------------------------------------------------------


def compare_runs(index: RunIndex, runs: list[str] | str, keys: list[str] | str | None = None,
                 prefix: str | None = None, min_change_pct: float = 0, config_diff: bool = True,
                 format: str = "text") -> str:
    entries = parse_keys(runs)
    if not 1 <= len(entries) <= 10 or (len(entries) == 1 and "@" not in entries[0]):
        one = f"{entries[0]}@50k" if len(entries) == 1 else "R001@50k"
        raise UserError(f"compare_runs takes 2 to 10 runs, or one run at a step or stage ({one}, "
                        f"{one.split('@')[0]}@stage:2); got {len(entries)}"
                        + (" without a step" if len(entries) == 1 else "") + ". Example: "
                        f"{t.call('compare_runs', runs=['R001', 'R002@50k'])}")
    if format not in ("text", "md", "csv", "json"):
        raise UserError(f"format must be text, md, csv or json; got {format!r}")
    if min_change_pct < 0:
        raise UserError("min_change_pct must be 0 or more")
    cols: list[rs.Column] = []
    for e in entries:
        try:
            p = parse_entry(e)
        except ValueError as err:
            raise UserError(str(err)) from None
        r = get_run(index, p.ref, full=False)
        if p.stage is not None and p.stage_key is None:
            r = index.read_full(r)  # the stage key is found among all keys
        elif parse_keys(keys):  # only the named keys (and a named stage key) are decoded
            r = read_for_keys(index, r, parse_keys(keys) + ([p.stage_key] if p.stage_key else []))
        else:
            r = index.read_full(r)
        cols.append(_point(r, p))
    runs_ = [c.run for c in cols]
    available, chosen = _keys_across(runs_, keys)
    want = parse_keys(keys)
    if not want and prefix:
        chosen = [k for k in available if k.startswith(prefix)]
        if not chosen:
            close = sorted({k.split("/")[0] + "/" for k in available if "/" in k})
            raise UserError(f"no key starts with {prefix!r} in these runs; "
                            f"prefixes: {', '.join(map(t.clean, close[:12]))}")
    elif not want:
        chosen = []
        for r in runs_:
            chosen.extend(k for k in main_keys(r, index.settings.main_metrics) if k not in chosen)
    if prefix and want:
        chosen = [k for k in chosen if k.startswith(prefix)]
    cells = {k: [read_at(c.run, k, c.step) for c in cols] for k in chosen}
    hidden = 0
    if min_change_pct > 0:
        keep = []
        for k in chosen:
            base = cells[k][0].value
            if any(relative_change(base, x.value) >= min_change_pct for x in cells[k][1:]):
                keep.append(k)
            else:
                hidden += 1
        chosen = keep
    cut = max(0, len(chosen) - MAX_COMPARE_KEYS)
    next_call = ""
    if cut:
        rest = chosen[MAX_COMPARE_KEYS:]
        next_call = t.call("compare_runs", runs=entries, keys=rest[:MAX_COMPARE_KEYS], config_diff=False)
    chosen = chosen[:MAX_COMPARE_KEYS]
    diffs = []
    ccut = 0
    if config_diff and len(cols) > 1:
        flat = [{k: v for k, v in flatten_config(r.config) if not k.startswith("_wandb")} for r in runs_]
        diffs = compare_config(flat)
        ccut = max(0, len(diffs) - MAX_CONFIG_DIFF)
        diffs = diffs[:MAX_CONFIG_DIFF]
    notes = []
    for k in chosen:  # say why a cell is empty
        for c, x in zip(cols, cells[k]):
            if x.value is None:
                if k not in c.run.history.columns:
                    notes.append(f"-: {t.clean(c.run.display_name)} never logged {t.clean(k)}")
                else:
                    first = c.run.history.columns[k].first_step
                    how = cadence(c.run, k) or f"logged from step {t.step(first)}"
                    notes.append(f"-: {t.clean(c.run.display_name)} {t.clean(k)} is {how}: none at or before "
                                 f"step {t.step(c.step)}")
    notes = list(dict.fromkeys(notes))[:6]
    notes.extend(_resume_notes(cols, cells, chosen))
    extra = len(available) - len(chosen) - hidden
    if not want and not prefix and extra > 0 and format in ("text", "md"):
        notes.append(f"{t.plural(extra, 'other key')}: pass keys=[...] or prefix=")
    return rs.compare_answer(cols, chosen, cells, diffs, format, hidden, min_change_pct, cut,
                             config_diff and len(cols) > 1, ccut, notes, next_call, keys_given=bool(want))


def _resume_notes(cols: list[rs.Column], cells, chosen: list[str]) -> list[str]:
    """For a resumed run read at a step or stage: where a value comes from a segment that a later
    one overrides from its first step on, say where that resume boundary is."""
    out = []
    for i, c in enumerate(cols):
        segs = [s for s in c.run.segments if s.first_step is not None and s.last_step is not None]
        if c.step is None or len(segs) < 2:
            continue
        steps = [x[i].step for x in (cells[k] for k in chosen) if x[i].step is not None]
        for n, (seg, nxt) in enumerate(zip(segs, segs[1:]), 1):
            boundary = nxt.first_step
            if seg.last_step >= boundary and any(seg.first_step <= s < boundary for s in steps):
                out.append(f"{t.clean(c.run.display_name)}@{t.step(c.step)}: values from segment {n} of "
                           f"{len(segs)}; the resume at step {t.step(boundary)} replaced its steps "
                           f"{t.steps_range(boundary, seg.last_step)} (later values: segment {n + 1})")
                break
            if seg.last_step >= boundary and any(boundary <= s <= seg.last_step for s in steps):
                out.append(f"{t.clean(c.run.display_name)}@{t.step(c.step)}: values from segment {n + 1} of "
                           f"{len(segs)}, resumed at step {t.step(boundary)}: it replaced segment {n}'s steps "
                           f"{t.steps_range(boundary, seg.last_step)}")
                break
    return out


def _keys_across(runs: list[Run], keys: list[str] | str | None) -> tuple[list[str], list[str]]:
    """The numeric keys of any of ``runs``, and the requested ones among them ([] when none were
    requested). An unknown key raises with its closest matches."""
    available = sorted({k for r in runs for k in numeric_keys(r)})
    want = parse_keys(keys)
    if not want:
        return available, []
    chosen, unknown = pick_keys(want, available)
    if unknown:
        raise UserError("; ".join(f"{k!r} is logged by none of these runs"
                                  + (f"; closest: {', '.join(map(t.clean, c))}" if c else "") for k, c in unknown))
    return available, chosen


def _point(r: Run, p) -> rs.Column:
    if p.stage is not None:
        key = p.stage_key
        if key is None:
            cands = stage_keys(r)
            if not cands:
                raise UserError(f"{p.label}: {ra.run_label(r)} logs no stage/curriculum/phase key; name it: "
                                f"{p.ref}@KEY={p.stage:g} ({t.call('list_keys', run=r.id)} lists keys)")
            key = cands[0]
        elif key not in r.history.columns:
            close = closest_keys(key, numeric_keys(r))
            raise UserError(f"{p.label}: {ra.run_label(r)} does not log {key!r}"
                            + (f"; closest: {', '.join(map(t.clean, close))}" if close else ""))
        s = stage_start(r, key, p.stage)
        if s is None:
            col = r.history.columns[key]
            top = max((v for v in col.values if v == v), default=math.nan)
            raise UserError(f"{p.label}: {t.clean(key)} of {ra.run_label(r)} never reaches {p.stage:g} "
                            f"(highest {t.num(top)} by step {t.step(col.last_step)})")
        return rs.Column(r, p.label, s, f"{t.clean(key)} reaches {p.stage:g} at step {s:,}")
    if p.step is not None:
        last = r.last_step
        how = f"at step {p.step:,}"
        if last is not None and p.step > last:
            how += f" (run ends at {last:,}: its last values)"
        return rs.Column(r, p.label, p.step, how)
    return rs.Column(r, p.label, None, f"final (step {t.step(r.last_step)})")


# ---- aggregate_runs ------------------------------------------------------------------------------


def aggregate_runs(index: RunIndex, runs: list[str] | str | None = None, query: str = "",
                   keys: list[str] | str | None = None, at: int | str | None = None) -> str:
    refs = parse_keys(runs)
    step = None
    if at is not None and str(at).strip():
        try:
            step = at if isinstance(at, int) else parse_step(str(at))
        except ValueError as e:
            raise UserError(f"at: {e}; pass a step such as 50000, 50k or 1.2M") from None
        if step is None:
            raise UserError(f"at must be a step such as 50000, 50k or 1.2M; got {at!r}")
    if refs:
        chosen_runs = []
        for ref in refs:
            r = get_run(index, ref, full=False)
            if all(r.id != c.id for c in chosen_runs):
                chosen_runs.append(r)
        if query:
            chosen_runs = [r for r in chosen_runs if query_matches(r, query)]
        scope = ", ".join(refs[:6]) + ("…" if len(refs) > 6 else "")
        chosen_runs = read_runs_for_keys(index, chosen_runs, keys)
    else:
        chosen_runs = _select_runs(index, query, keys)
        scope = f"query {query!r}" if query else "all runs"
    _available, ks = _keys_across(chosen_runs, keys)
    if not parse_keys(keys):
        counts: dict[str, int] = {}
        for r in chosen_runs:
            for k in main_keys(r, index.settings.main_metrics):
                counts[k] = counts.get(k, 0) + 1
        ks = [k for k in counts if counts[k] >= max(1, len(chosen_runs) // 2)][:8]
    if not ks:
        raise UserError(f"these {t.plural(len(chosen_runs), 'run')} share no metric; pass keys=[...]")
    aggs = [aggregate(chosen_runs, k, step) for k in ks]
    return rs.aggregate_answer(aggs, chosen_runs, step, scope)
