"""One function per tool: resolve runs through the index, analyse, render.

Shared by the MCP server and the command line. Problems the caller can act on raise
``UserError`` with a message that says what was looked at and what to do next.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import re
import time
from collections.abc import Callable
from typing import Any

from .analysis.anomalies import Thresholds, default_keys, diagnose
from .analysis.compare import (aggregate, best_of, parse_entry, parse_step, rank, read_at, relative_change,
                               stage_keys, stage_start)
from .analysis.compare import config_diff as compare_config
from .analysis.sampling import bucket_means, sample_join
from .analysis.select import (KeyRole, closest_keys, key_matches, main_keys, main_metric, metric_goal, metric_keys,
                              pick_keys, query_matches, x_axis_keys)
from .analysis.stats import series_stats, tail_slope, trend
from .index import ConsoleView, RunIndex, RunNotFound
from .model import RESERVED_KEYS, STATES, History, Run, history_after, merge_histories
from .render import answers as ra
from .render import reports as rs
from . import sync as sy
from .render import text as t
from .sources.console import ERROR_LINE, WARN_LINE

SPARK_BUCKETS = 6  # ~2 tokens a character: a 6-step picture plus an arrow
MAX_KEYS = 120
MAX_CONFIG = 200
CONFIG_CHARS = 120
CONFIG_CHARS_ONE = 4000


class UserError(Exception):
    """A problem the caller can fix; the message is shown as the tool error."""


# ---- shared ------------------------------------------------------------------------------------


def get_run(index: RunIndex, ref: str) -> Run:
    """The run named by ``ref``, read in full."""
    try:
        return index.resolve(ref, full=True)
    except RunNotFound as e:
        roots = ", ".join(index.settings.roots)
        if not e.candidates:
            raise UserError(ra.no_runs_message(index.settings.roots, index.problems())) from None
        cands = ", ".join(ra.run_label(r) for r in e.candidates)
        raise UserError(f"{e.reason} under {roots}. Closest: {cands}. Pass an exact name or id, "
                        f"or call list_runs(query=...) to search.") from None


def empty_log_note(run: Run) -> str:
    """Why a run has no data yet, when its only log is empty or header-only."""
    seg = run.segments[-1] if run.segments else None
    if seg is None or seg.log_path is None:
        if seg is not None and seg.layout == "console":
            return "only files/output.log is left in this run directory (no .wandb log, no history file)"
        return "no history was found in this run directory"
    name = os.path.basename(seg.log_path)
    if run.state.state in ("finished", "crashed"):
        return (f"it {run.state.state} ({run.state.basis}) without logging any row: wandb.log() was never "
                f"called, so only its console (files/output.log) can hold metrics")
    if seg.log_bytes <= 7:
        what = "holds no records yet (only the 7-byte header)" if seg.log_bytes == 7 else "is empty"
        return (f"its {name} {what}: wandb writes the log every 15 s, so the run either just started or "
                f"was killed in its first seconds. Call again in a minute; the console is in files/output.log")
    return (f"its {name} ({seg.log_bytes:,} bytes) holds the run's start but no logged rows yet: the run has "
            f"not called wandb.log() so far, or was killed before the first rows were written. "
            f"Call again in a minute; the console is in files/output.log")


# ---- list_runs ---------------------------------------------------------------------------------


def list_runs(index: RunIndex, query: str = "", state: str = "any", limit: int = 20, offset: int = 0) -> str:
    if state != "any" and state not in STATES:
        raise UserError(f"state must be one of any, {', '.join(STATES)}; got {state!r}")
    runs = index.runs()
    now = index.clock()
    matched = [r for r in runs if (not query or query_matches(r, query)) and (state == "any" or r.state.state == state)]
    page = matched[offset : offset + limit]
    lines = [_run_line(r, index.settings.main_metrics) for r in page]
    return ra.run_list(lines, total=len(runs), matched=len(matched), offset=offset, limit=limit, query=query,
                       state=state, roots=index.settings.roots, now=now, problems=index.problems())


def _run_line(run: Run, prefs: list[str]) -> ra.RunLine:
    key = main_metric(run, prefs)
    if key is None:
        return ra.RunLine(run)
    col = run.history.columns[key]
    values = col.values
    return ra.RunLine(run, key, values[-1], bucket_means(values, SPARK_BUCKETS), trend(values), col.last_step)


# ---- list_keys ---------------------------------------------------------------------------------


def list_keys(index: RunIndex, run: str = "latest", pattern: str = "") -> str:
    r = get_run(index, run)
    h = r.history
    view = index.console(r)
    if h.rows == 0 and not r.system.rows and not view.history.rows:
        raise UserError(f"{ra.run_label(r)} has no metrics yet: {empty_log_note(r)}; console: "
                        f"{console_missing(index, r, view)}")
    out = _list_keys(index, r, pattern, view) if h.rows or r.system.rows else \
        f"{ra.run_label(r)}: no logged history ({empty_log_note(r)})"
    if view.history.rows and not pattern.lower().startswith("system"):
        out += "\n" + _console_keys(r, view, pattern)
    console_problems = [p for p in index.settings.config_problems if "console pattern" in p]
    if console_problems:
        out += "\nconfig: " + "; ".join(console_problems) + " (ignored; fix runwise.toml and restart the server)"
    return out


def _console_keys(r: Run, view: ConsoleView, pattern: str) -> str:
    """The keys parsed from the console, marked as such."""
    ch = view.history
    names = sorted(k for k in ch.columns if key_matches(k, pattern))
    head = (f"console keys (parsed from {' + '.join(view.files)}, {t.plural(view.lines, 'line')}"
            f"{', last lines only' if view.partial else ''}; steps {t.steps_range(ch.first_step, ch.last_step)}; "
            f"read with get_history(source=\"console\")):")
    if not names:
        return head + f" none match {pattern!r}"
    proxy = _with_history(r, ch)
    lines = [_key_line(proxy, k, {}) for k in names[:MAX_KEYS]]
    width = max(len(k.name) for k in lines)
    with t.percent_keys(view.percent):
        body = [ra.key_line(k, k.name, width) for k in lines]
    if len(names) > MAX_KEYS:
        body.append(f"… {len(names) - MAX_KEYS} more console keys")
    return "\n".join([head] + body)


def _list_keys(index: RunIndex, r: Run, pattern: str, view: ConsoleView) -> str:
    h = r.history
    sys_keys = sorted(r.system.keys())
    if pattern.lower() == "system" or pattern.lower().startswith("system/"):
        sub = pattern[len("system/"):]
        system_lines = [_key_line(r, k, {}, system=True) for k in sys_keys if key_matches(k, sub)]
        return ra.system_keys_answer(r, system_lines, samples=r.system.rows, pattern=pattern)
    names = [k for k in metric_keys(r) + list(h.other) if k not in RESERVED_KEYS]
    matched = sorted(k for k in names if key_matches(k, pattern))
    summary = r.summary
    lines = [_key_line(r, k, summary) for k in matched[:MAX_KEYS]]
    groups = _group(lines, r, x_axis_keys(r))
    system = (len(sys_keys), r.system.rows, sys_keys) if sys_keys and not pattern else None
    return ra.keys_answer(r, groups, shown=len(lines), total=len(matched) if pattern else len(names),
                          pattern=pattern, system=system, cut=max(0, len(matched) - MAX_KEYS),
                          empty_note=f"no metric rows yet: {empty_log_note(r)}" if h.rows == 0 else "")


def _key_line(run: Run, key: str, summary: dict[str, Any], system: bool = False) -> ra.KeyLine:
    h = run.system if system else run.history
    col = h.columns.get(key)
    if col is not None:
        st = series_stats(col.steps, col.values)
        agg = summary.get(key)
        line = ra.KeyLine(key, st.count, st.first_step, st.last_step, st.last, st.nan, st.inf,
                          aggregate=agg if isinstance(agg, dict) and "_type" not in agg else None)
        if system:  # system samples are keyed by wall-clock time: show time since start
            t0 = run.start_time or (st.first_step or 0)
            line.span = (f"t+{t.duration((st.first_step or 0) - t0)}–{t.duration((st.last_step or 0) - t0)}"
                         if st.count > 1 else f"t+{t.duration((st.first_step or 0) - t0)}")
        return line
    o = h.other[key]
    return ra.KeyLine(key, o.count, o.first_step, o.last_step, o.last, kind=o.kind or "value")


def _group(lines: list[ra.KeyLine], run: Run, axes: set[str]) -> list[tuple[str, list[ra.KeyLine], str]]:
    groups: dict[str, list[ra.KeyLine]] = {}
    for k in lines:
        if "/" in k.name:
            g = k.name.split("/", 1)[0] + "/"
        elif "." in k.name:
            g = k.name.split(".", 1)[0] + "."
        else:
            g = ""
        groups.setdefault(g, []).append(k)
    out = []
    steps = {m.glob or m.name: m.step_metric for m in run.metrics.values() if m.step_metric}
    for g in sorted(groups, key=lambda x: (x == "", x)):
        ks = groups[g]
        xs = {x for pat, x in steps.items() for k in ks if fnmatch.fnmatchcase(k.name, pat)}
        note = f"(x axis: {', '.join(sorted(xs))})" if xs else ""
        if not g and axes & {k.name for k in ks}:
            note = "(includes x-axis keys: " + ", ".join(sorted(axes & {k.name for k in ks})) + ")"
        out.append((g, ks, note))
    return out


# ---- get_config --------------------------------------------------------------------------------


def flatten_config(cfg: dict[str, Any], prefix: str = "", out: list[tuple[str, Any]] | None = None,
                   budget: list[int] | None = None) -> list[tuple[str, Any]]:
    """a.b.c: value pairs; lists stay values; at most 10,000 leaves (guards hostile YAML)."""
    out = [] if out is None else out
    budget = [10_000] if budget is None else budget
    for k, v in cfg.items():
        if budget[0] <= 0:
            break
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            flatten_config(v, name, out, budget)
        else:
            out.append((name, v))
            budget[0] -= 1
    return out


def get_config(index: RunIndex, run: str = "latest", pattern: str = "") -> str:
    r = get_run(index, run)
    items = sorted((kv for kv in flatten_config(r.config) if not kv[0].startswith("_wandb")), key=lambda kv: kv[0])
    if not items:
        if r.history.rows == 0 and not r.summary:
            raise UserError(f"{ra.run_label(r)} has no config yet: {empty_log_note(r)}")
        return (f"{ra.run_label(r)} has an empty config: wandb.init() got no config= and nothing was set "
                f"later with run.config[...] or run.config.update().")
    matched = [kv for kv in items if key_matches(kv[0], pattern)]
    if not matched:
        return (f"{ra.run_label(r)}: no config key matches {pattern!r} among {t.plural(len(items), 'key')}; "
                f"{t.call('get_config', run=r.id)} lists all")
    limit = CONFIG_CHARS_ONE if len(matched) == 1 else CONFIG_CHARS
    source = "config.yaml" if r.segments and r.segments[-1].layout == "dryrun" else ""
    return ra.config_answer(r, matched, total=len(matched), pattern=pattern, limit_chars=limit,
                            max_items=MAX_CONFIG, source=source)


# ---- check (for humans) ------------------------------------------------------------------------


def check_report(index: RunIndex) -> tuple[bool, str]:
    """What `runwise-mcp --check` prints, and whether everything is usable."""
    s = index.settings
    t0 = time.perf_counter()
    runs = index.runs()
    dt = time.perf_counter() - t0
    now = index.clock()
    out = [f"roots (from {s.roots_from}):"]
    for root in s.roots:
        out.append(f"  {root}")
    out.append(f"scan depth {s.max_depth}, running/killed threshold {t.duration(s.stale_after)}")
    out.append(f"{t.plural(len(runs), 'run')} found in {dt:.2f}s:")
    for r in runs:
        segs = f", {len(r.segments)} segments" if len(r.segments) > 1 else ""
        out.append(f"  {ra.run_label(r)}: {t.state(r.state, now)}, {t.plural(r.history.rows, 'row')}"
                   f"{segs}, {r.segments[-1].producer if r.segments else ''}, {r.segments[-1].path if r.segments else ''}")
    problems = index.problems()
    if problems:
        out.append("could not read:")
        out.extend(f"  {p}" for p in problems)
    missing = [p for p in index.last_scan.problems if p.startswith("root ")]
    if missing:
        out.append("FAIL: " + "; ".join(missing))
        return False, "\n".join(out)
    if not runs:
        out.append("FAIL: " + ra.no_runs_message(s.roots, []))
        return False, "\n".join(out)
    out.append("OK")
    return True, "\n".join(out)


# ---- shared by the analysis tools ---------------------------------------------------------------

MAX_HISTORY_SAMPLES = 2000
MAX_STATS_KEYS = 40
MAX_COMPARE_KEYS = 40
MAX_CONFIG_DIFF = 30


def parse_keys(keys: list[str] | str | None) -> list[str]:
    """A list of keys, or one comma-separated string; blanks dropped, order kept."""
    if keys is None:
        return []
    items = keys.split(",") if isinstance(keys, str) else [x for k in keys for x in str(k).split(",")]
    return list(dict.fromkeys(k.strip() for k in items if k.strip()))


def numeric_keys(run: Run) -> list[str]:
    return sorted(k for k in metric_keys(run) if len(run.history.columns[k]))


def choose_keys(run: Run, keys: list[str] | str | None, prefs: list[str], tool: str) -> list[str]:
    """The requested keys (exact, case-insensitive or glob), else the run's main metrics. Unknown
    keys raise with their closest existing keys."""
    want = parse_keys(keys)
    available = numeric_keys(run)
    if not want:
        return main_keys(run, prefs)
    found, unknown = pick_keys(want, available + [k for k in run.history.other if k not in available])
    if unknown:
        raise UserError(unknown_keys_message(run, unknown, available, tool))
    text_keys = [k for k in found if k in run.history.other and k not in run.history.columns]
    if text_keys:
        raise UserError(f"{ra.run_label(run)}: {', '.join(text_keys)} hold non-numeric values "
                        f"({', '.join(run.history.other[k].kind for k in text_keys)}); "
                        f"{t.call('list_keys', run=run.id)} shows their last values")
    return found


def unknown_keys_message(run: Run, unknown: list[tuple[str, list[str]]], available: list[str], tool: str) -> str:
    parts = []
    for k, close in unknown:
        if k.lower().startswith("system/") or k.lower() in {s.lower() for s in run.system.keys()}:
            parts.append(f"{k!r} is a system metric (sampled by time, not step): "
                         f"{t.call('list_keys', run=run.id, pattern='system/')}")
        elif close:
            parts.append(f"{k!r} is not logged; closest: {', '.join(close)}")
        else:
            parts.append(f"{k!r} is not logged")
    if not available:
        return f"{ra.run_label(run)} has no numeric metrics yet: {empty_log_note(run)}"
    return (f"{ra.run_label(run)}: " + "; ".join(parts) + f". {t.call('list_keys', run=run.id)} lists all "
            f"{t.plural(len(available), 'key')}")


def cadence(run: Run, key: str) -> str:
    """'logged only at validation steps (12 points, every ~50 steps from 49)' for a sparse key,
    '' for a key logged at most steps."""
    col = run.history.columns.get(key)
    rows = run.history.rows
    if col is None or not len(col) or len(col) >= 0.5 * rows:
        return ""
    steps = col.steps
    every = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else 0
    kind = "validation steps" if KeyRole(key).split in ("val", "test") or len(col) < 0.2 * rows else "some steps"
    rhythm = f", every ~{t.num(round(every))} steps" if every else ""
    return f"logged only at {kind} ({t.plural(len(col), 'point')}{rhythm} from {t.step(steps[0])})"


def require_history(run: Run, what: str) -> None:
    if run.history.rows == 0 or not numeric_keys(run):
        raise UserError(f"{ra.run_label(run)} has no {what} yet: {empty_log_note(run)}")


def thresholds(index: RunIndex) -> tuple[Thresholds, list[str]]:
    """The diagnose thresholds and what was wrong with the project config file, if anything."""
    th, problems = Thresholds.from_mapping(index.settings.diagnose)
    where = index.settings.config_file
    return th, index.settings.config_problems + [f"{where}: {p}, ignored" for p in problems]


def goals_for(run: Run, keys: list[str]) -> dict[str, str]:
    return {k: metric_goal(run, k)[0] for k in keys}


def history_source(run: Run) -> str:
    """Which files the numbers come from, e.g. 'run-abc.wandb (history to 599)'."""
    parts = []
    for seg in run.segments:
        name = os.path.basename(seg.log_path) if seg.log_path else ("wandb-history.jsonl" if seg.layout == "dryrun"
                                                                     else os.path.basename(seg.path))
        rng = f"history to {t.step(seg.last_step)}" if seg.last_step is not None else "no rows"
        parts.append(f"{name} ({rng})")
    return " + ".join(parts)


# ---- run_summary ---------------------------------------------------------------------------------


def run_summary(index: RunIndex, run: str = "latest", keys: list[str] | str | None = None) -> str:
    r0 = get_run(index, run)
    r, src, pct = metric_run(index, r0, "auto")
    with t.percent_keys(pct):
        return _run_summary(index, r0, r, src, keys)


def _run_summary(index: RunIndex, r0: Run, r: Run, src: str, keys: list[str] | str | None) -> str:
    prefs = index.settings.main_metrics
    now = index.clock()
    if not numeric_keys(r):
        why = empty_log_note(r) if r.history.rows == 0 else "it logged only non-numeric values"
        view = index.console(r0)
        return rs.summary_answer(r, now, [], [], [], "", f"{history_source(r)}; no metrics: {why}; console: "
                                 f"{console_missing(index, r0, view)}", 0, False)
    chosen = choose_keys(r, keys, prefs, "run_summary")
    goals = goals_for(r, chosen)
    rows = r.history.rows
    lines: list[rs.MetricLine] = []
    compact: list[rs.MetricLine] = []
    for k in chosen:
        col = r.history.columns[k]
        st = series_stats(col.steps, col.values)
        goal = goals[k]
        role = KeyRole(k)
        best, best_step = (st.min, st.min_step) if goal == "minimize" else (st.max, st.max_step)
        m = rs.MetricLine(k, st.last, st.last_step, st.last_finite, best if goal else None,
                          best_step if goal else None, goal, bucket_means(col.values, SPARK_BUCKETS),
                          trend(col.values), st.count, sparse=st.count < 0.5 * rows,
                          compact=role.kind in ("lr", "grad_norm", "throughput") and not parse_keys(keys))
        (compact if m.compact else lines).append(m)
    groups = _group_val_sets(lines)
    grouped = {m.key for _, ms in groups for m in ms}
    lines = [m for m in lines if m.key not in grouped]
    diag = diagnose(r, default_keys(r, prefs) if not parse_keys(keys) else chosen,
                    goals_for(r, default_keys(r, prefs) if not parse_keys(keys) else chosen), thresholds(index)[0])
    extra = len(numeric_keys(r)) - len(chosen)
    anomalies = rs.anomalies_line(diag, r.id)
    ahead = _console_ahead(index, r0)
    if ahead:
        anomalies = ahead + "\n" + anomalies
    return rs.summary_answer(r, now, lines, groups, compact, anomalies,
                             _summary_source(r0, chosen, src), extra, bool(parse_keys(keys)))


def _console_ahead(index: RunIndex, r0: Run) -> str:
    """'console ahead: history to 900; console to 990: loss 0.1714 | token_acc 69.5%'."""
    if not numeric_keys(r0):
        return ""
    view = index.console(r0)
    ch = view.history
    if not ch.rows or ch.last_step is None or r0.last_step is None or ch.last_step <= r0.last_step:
        return ""
    last = ch.last_step
    with t.percent_keys(view.percent):
        vals = [f"{k} {t.num(c.values[-1], k)}" for k, c in ch.columns.items() if c.last_step == last][:5]
    return (f"console ahead: history to {t.step(r0.last_step)}; console to {t.step(last)}: " + " | ".join(vals))


def _group_val_sets(lines: list[rs.MetricLine]) -> list[tuple[str, list[rs.MetricLine]]]:
    """Validation sets with the same metric on one line: 'val_*/accuracy: setA 81.0% | setB 70.0%'."""
    by: dict[tuple[str, str], list[rs.MetricLine]] = {}
    for m in lines:
        role = KeyRole(m.key)
        if role.split in ("val", "test") and role.dataset and "/" in m.key:
            head = m.key.split("/")[0]
            prefix = head[: len(head) - len(role.dataset)]
            by.setdefault((prefix, m.key.split("/", 1)[1]), []).append(m)
    return [(f"{p}*/{metric}", ms) for (p, metric), ms in by.items() if len(ms) > 1]


def _summary_source(r: Run, keys: list[str], src: str) -> str:
    notes = []
    if not r.summary:
        notes.append("no summary record (the run did not reach one): values from history")
    else:
        differ = []
        for k in keys:
            sv = r.summary.get(k)
            col = r.history.columns.get(k)
            if isinstance(sv, (int, float)) and not isinstance(sv, bool) and col is not None and len(col):
                hv = col.values[-1]
                if sv != hv and not (sv != sv and hv != hv):
                    differ.append(f"{k} summary {t.num(sv, k)} vs history last {t.num(hv, k)}")
        if differ:
            notes.append("disagree: " + "; ".join(differ[:3]) + " (shown: history)")
    if r.sampled:
        notes.append("read from a skim")
    notes.extend(r.notes_read[:2])
    return src + ("; " + "; ".join(notes) if notes else "")


# ---- get_history ---------------------------------------------------------------------------------


def get_history(index: RunIndex, run: str = "latest", keys: list[str] | str | None = None, samples: int = 100,
                step_min: int | None = None, step_max: int | None = None, source: str = "auto") -> str:
    if samples < 1 or samples > MAX_HISTORY_SAMPLES:
        raise UserError(f"samples must be between 1 and {MAX_HISTORY_SAMPLES:,}; got {samples}")
    if step_min is not None and step_max is not None and step_min > step_max:
        raise UserError(f"step_min ({step_min:,}) is after step_max ({step_max:,})")
    r0 = get_run(index, run)
    r, src, pct = metric_run(index, r0, source)
    if not numeric_keys(r):
        raise UserError(f"{ra.run_label(r)} has no history yet: {empty_log_note(r)}; and no console metrics: "
                        f"{console_missing(index, r0, index.console(r0))}")
    chosen = choose_keys(r, keys, index.settings.main_metrics, "get_history")[:12]
    series = {k: (r.history.columns[k].steps, r.history.columns[k].values) for k in chosen}
    sampled = sample_join(series, samples, step_min, step_max)
    if not sampled.steps:
        h = r.history
        why = [f"{k} is {c}" for k in chosen if (c := cadence(r, k))]
        raise UserError(f"{ra.run_label(r)}: no point of {', '.join(chosen)} in steps "
                        f"{step_min if step_min is not None else ''}..{step_max if step_max is not None else ''}; "
                        f"the run's steps are {t.steps_range(h.first_step, h.last_step)}"
                        + (f"; {'; '.join(why)}: widen the range" if why else ""))
    out = rs.history_answer(r, chosen, sampled, samples, step_min, step_max, src)
    shown_pct = [k for k in chosen if k in pct]
    if shown_pct:
        out = out.replace("\nstep,", f"\n# printed as percentages, given here as fractions: {', '.join(shown_pct)}\nstep,", 1)
    return out


# ---- history_stats -------------------------------------------------------------------------------


def history_stats(index: RunIndex, run: str = "latest", keys: list[str] | str | None = None) -> str:
    r = get_run(index, run)
    require_history(r, "history")
    chosen = choose_keys(r, keys, index.settings.main_metrics, "history_stats")
    rows = []
    for k in chosen[:MAX_STATS_KEYS]:
        col = r.history.columns[k]
        rows.append((k, series_stats(col.steps, col.values), tail_slope(col.steps, col.values)))
    out = rs.stats_answer(r, rows)
    if len(chosen) > MAX_STATS_KEYS:
        rest = chosen[MAX_STATS_KEYS:]
        out += (f"\n… {len(rest)} more keys; next: "
                f"{t.call('history_stats', run=r.id, keys=rest[:MAX_STATS_KEYS])}")
    return out


# ---- diagnose_run --------------------------------------------------------------------------------


def diagnose_run(index: RunIndex, run: str = "latest", keys: list[str] | str | None = None) -> str:
    r0 = get_run(index, run)
    r, src, pct = metric_run(index, r0, "auto")
    if not numeric_keys(r):
        raise UserError(f"{ra.run_label(r)} has no history to diagnose yet: {empty_log_note(r)}; and no console "
                        f"metrics: {console_missing(index, r0, index.console(r0))}")
    chosen = choose_keys(r, keys, index.settings.main_metrics, "diagnose_run") if parse_keys(keys) \
        else default_keys(r, index.settings.main_metrics)
    th, problems = thresholds(index)
    d = diagnose(r, chosen, goals_for(r, chosen), th)
    with t.percent_keys(pct):
        out = rs.diagnose_answer(r, d)
    if r is not r0:
        out += f"\nsource: {src}"
    if problems:
        out += "\nconfig: " + "; ".join(problems) + " (defaults used; fix the file and restart the server)"
    return out


# ---- best_run ------------------------------------------------------------------------------------

_GOALS = {"auto": "", "min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}


def _select_runs(index: RunIndex, query: str) -> list[Run]:
    runs = [r for r in index.runs() if not query or query_matches(r, query)]
    if not runs:
        if not index.runs():
            raise UserError(ra.no_runs_message(index.settings.roots, index.problems()))
        raise UserError(f"no run matches query {query!r}; {t.call('list_runs')} shows all runs")
    return [index.resolve(r.id, full=True) if r.sampled else r for r in runs]


def best_run(index: RunIndex, metric: str, goal: str = "auto", top: int = 5, query: str = "", by: str = "best") -> str:
    if goal not in _GOALS:
        raise UserError(f"goal must be auto, min or max; got {goal!r}")
    if by not in ("best", "last"):
        raise UserError(f"by must be best or last; got {by!r}")
    metric = metric.strip()
    if not metric:
        raise UserError("metric is empty; pass a key such as val/loss (list_keys shows a run's keys)")
    runs = _select_runs(index, query)
    have = [r for r in runs if metric in r.history.columns and len(r.history.columns[metric])]
    if not have:
        allkeys = sorted({k for r in runs for k in numeric_keys(r)})
        close = closest_keys(metric, allkeys)
        scope = f"the {t.plural(len(runs), 'run')}" + (f" matching {query!r}" if query else "")
        hint = f"closest: {', '.join(close)}" if close else f"{t.call('list_keys')} lists a run's keys"
        raise UserError(f"no run among {scope} logged {metric!r}; {hint}")
    g = _GOALS[goal]
    basis = "argument"
    if not g:
        votes = [metric_goal(r, metric) for r in have]
        declared = [v for v in votes if v[1] == "define_metric"]
        g, basis = (declared[0] if declared else votes[0])
        if not g:
            raise UserError(f"cannot tell whether higher or lower {metric} is better: no define_metric goal and "
                            f"the name does not say; {t.call('best_run', metric=metric, goal='max')} or goal='min'")
    ranked = rank([b for b in (best_of(r, metric, g) for r in have) if b is not None], g, by)
    missing = [r for r in runs if r not in have]
    return rs.best_answer(metric, g, basis, by, ranked, missing, top, query, len(runs), index.clock())


# ---- compare_runs --------------------------------------------------------------------------------


def compare_runs(index: RunIndex, runs: list[str] | str, keys: list[str] | str | None = None,
                 prefix: str | None = None, min_change_pct: float = 0, config_diff: bool = True,
                 format: str = "text") -> str:
    entries = parse_keys(runs)
    if not 2 <= len(entries) <= 10:
        raise UserError(f"compare_runs takes 2 to 10 runs; got {len(entries)}. Example: "
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
        r = get_run(index, p.ref)
        cols.append(_point(r, p))
    runs_ = [c.run for c in cols]
    available, chosen = _keys_across(runs_, keys)
    want = parse_keys(keys)
    if not want and prefix:
        chosen = [k for k in available if k.startswith(prefix)]
        if not chosen:
            close = sorted({k.split("/")[0] + "/" for k in available if "/" in k})
            raise UserError(f"no key starts with {prefix!r} in these runs; prefixes: {', '.join(close[:12])}")
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
    if config_diff:
        flat = [{k: v for k, v in flatten_config(r.config) if not k.startswith("_wandb")} for r in runs_]
        diffs = compare_config(flat)
        ccut = max(0, len(diffs) - MAX_CONFIG_DIFF)
        diffs = diffs[:MAX_CONFIG_DIFF]
    notes = []
    for k in chosen:  # say why a cell is empty
        for c, x in zip(cols, cells[k]):
            if x.value is None:
                if k not in c.run.history.columns:
                    notes.append(f"-: {c.run.display_name} never logged {k}")
                else:
                    first = c.run.history.columns[k].first_step
                    how = cadence(c.run, k) or f"logged from step {t.step(first)}"
                    notes.append(f"-: {c.run.display_name} {k} is {how}: none at or before step {t.step(c.step)}")
    notes = list(dict.fromkeys(notes))[:6]
    extra = len(available) - len(chosen) - hidden
    if not want and not prefix and extra > 0 and format in ("text", "md"):
        notes.append(f"{t.plural(extra, 'other key')}: pass keys=[...] or prefix=")
    return rs.compare_answer(cols, chosen, cells, diffs, format, hidden, min_change_pct, cut, config_diff, ccut, notes,
                             next_call)


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
                                  + (f"; closest: {', '.join(c)}" if c else "") for k, c in unknown))
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
                            + (f"; closest: {', '.join(close)}" if close else ""))
        s = stage_start(r, key, p.stage)
        if s is None:
            col = r.history.columns[key]
            top = max((v for v in col.values if v == v), default=math.nan)
            raise UserError(f"{p.label}: {key} of {ra.run_label(r)} never reaches {p.stage:g} "
                            f"(highest {t.num(top)} by step {t.step(col.last_step)})")
        return rs.Column(r, p.label, s, f"{key} reaches {p.stage:g} at step {s:,}")
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
        step = at if isinstance(at, int) else parse_step(str(at))
        if step is None:
            raise UserError(f"at must be a step such as 50000, 50k or 1.2M; got {at!r}")
    if refs:
        chosen_runs = []
        for ref in refs:
            r = get_run(index, ref)
            if r not in chosen_runs:
                chosen_runs.append(r)
        if query:
            chosen_runs = [r for r in chosen_runs if query_matches(r, query)]
        scope = ", ".join(refs[:6]) + ("…" if len(refs) > 6 else "")
    else:
        chosen_runs = _select_runs(index, query)
        scope = f"query {query!r}" if query else "all runs"
    chosen_runs = [index.resolve(r.id, full=True) if r.sampled else r for r in chosen_runs]
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


# ---- console as a source -------------------------------------------------------------------------

SOURCES = ("auto", "history", "console")


def _with_history(run: Run, h: History) -> Run:
    return dataclasses.replace(run, history=h)


def console_missing(index: RunIndex, r: Run, view: ConsoleView) -> str:
    """Why the console gave no metrics, and what to do."""
    if not view.files:
        return ("it has no files/output.log (wandb writes it a few seconds after the first print; "
                "runs started with WANDB_CONSOLE=off have none)")
    return (f"{' + '.join(view.files)} has {t.plural(view.lines, 'line')} but none printed a metric with a "
            f"step (e.g. 'step 100 loss 2.3', 'iter 100: loss=2.3', a dict with a step); add a regex with "
            f"named groups under [console] patterns in runwise.toml for your format")


def metric_run(index: RunIndex, r: Run, source: str = "auto") -> tuple[Run, str, frozenset[str]]:
    """The run with the history a tool should read for ``source``, a description of where its
    numbers come from, and the keys printed as percentages. ``auto``: the history, with console
    rows beyond its last step appended; the console alone when there is no history."""
    if source not in SOURCES:
        raise UserError(f"source must be auto, history or console; got {source!r}")
    if source == "history":
        return r, history_source(r), frozenset()
    view = index.console(r)
    ch = view.history
    label = ra.run_label(r)
    desc = ""
    if ch.rows:
        desc = (f"{' + '.join(view.files)} (console{', last lines only' if view.partial else ''}, "
                f"steps {t.steps_range(ch.first_step, ch.last_step)})")
    if source == "console":
        if not ch.rows:
            raise UserError(f"{label}: no metrics in its console: {console_missing(index, r, view)}. "
                            f"{t.call('get_history', run=r.id, source='history')} reads the logged history")
        return _with_history(r, ch), desc, frozenset(view.percent)
    h = r.history
    if not numeric_keys(r):
        if ch.rows:
            return _with_history(r, ch), desc + "; the run has no logged history", frozenset(view.percent)
        return r, history_source(r), frozenset()
    if ch.rows and h.last_step is not None and (ch.last_step or 0) > h.last_step:
        part = history_after(ch, h.last_step)
        merged, _ = merge_histories([h, part])
        return (_with_history(r, merged),
                f"{history_source(r)} + {' + '.join(view.files)} (console to {t.step(part.last_step)}, "
                f"used beyond the history)", frozenset(view.percent))
    return r, history_source(r), frozenset()


# ---- tail_run ------------------------------------------------------------------------------------

TAIL_READ_BYTES = 4 << 20  # a first tail_run on a huge output.log parses only its last 4 MiB
TOTAL_KEYS = ("max_steps", "total_steps", "num_train_steps", "train_steps", "num_steps", "max_iters",
              "max_iter", "iterations", "total_iters", "steps")
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (.+)$')


def tail_run(index: RunIndex, run: str = "latest", lines: int = 20, cursor: str | None = None) -> str:
    if not 0 <= lines <= 500:
        raise UserError(f"lines must be between 0 and 500; got {lines}")
    r = get_run(index, run)
    view = index.console(r, tail_only=TAIL_READ_BYTES)
    now = index.clock()
    cf = view.cursor_file
    out = [f"{ra.run_label(r)} {t.state(r.state, now)} | step {t.step(r.last_step)}"
           + (f" | console {' + '.join(view.files)}" if view.files else " | no console output found")]
    raw = list(cf.tail) if cf is not None else [(0, ln) for ln in view.tail]
    crash = _crash(raw) if r.state.state == "crashed" else []
    out.extend(crash)
    with t.percent_keys(view.percent):
        out.extend(_latest_lines(index, r, view))
    speed = _speed(r, view) if r.state.state in ("running", "killed") else ""
    if speed:
        out.append(speed)
    new_cursor = ""
    headed = False
    if cf is not None:
        new_cursor = f"{len(view.files)}:{cf.offset}"
        if cursor:
            try:
                n_files, off = (int(x) for x in cursor.split(":", 1))
            except ValueError:
                raise UserError(f"cursor {cursor!r} is not one this tool returned; call tail_run without a cursor "
                                f"to start over") from None
            if n_files != len(view.files) or off > cf.offset:
                out.append("the console was rewritten or a new segment started since that cursor; its last lines:")
                shown = raw[-lines:] if lines else []
            else:
                shown = [x for x in raw if x[0] > off]
                if not shown:
                    out.append(f"no new console output since the cursor (output.log unchanged at "
                               f"{cf.offset:,} bytes)")
                elif len(shown) > lines:
                    out.append(f"{t.plural(len(shown), 'new line')} since the cursor; the last {lines}"
                               " (! error, ~ warning):")
                    shown = shown[-lines:]
                    headed = True
        else:
            shown = raw[-lines:] if lines else []
    else:
        shown = raw[-lines:] if lines else []
    if shown:
        if not headed:
            out.append(f"last {t.plural(len(shown), 'line')}" + (" since the cursor" if cursor else "")
                       + " (! error, ~ warning):")
        out.extend(_flagged([text for _, text in shown]))
    if new_cursor:
        out.append(f"cursor {new_cursor}: {t.call('tail_run', run=r.id, cursor=new_cursor)} returns only what is new")
    elif view.files:
        out.append("no cursor: this run has no output.log (lines come from the .wandb console records)")
    return "\n".join(out)


def _flagged(lines: list[str]) -> list[str]:
    """Lines with ! for errors and tracebacks, ~ for warnings; repeats collapsed."""
    out: list[str] = []
    prev, count = None, 0
    in_tb = False

    def emit(line: str | None, n: int) -> None:
        if line is None:
            return
        out.append(line + (f"  (×{n})" if n > 1 else ""))

    for ln in lines:
        text = ln.rstrip()
        if text.startswith("Traceback (most recent call last)"):
            in_tb = True
        mark = "!" if in_tb or ERROR_LINE.search(text) else ("~" if WARN_LINE.search(text) else " ")
        if in_tb and text and not text.startswith((" ", "Traceback")):
            in_tb = False  # the exception line ends the traceback
        line = f"{mark} {t.short(text, 200) if len(text) > 200 else text}"
        if line == prev:
            count += 1
            continue
        emit(prev, count)
        prev, count = line, 1
    emit(prev, count)
    return out


def _crash(raw: list[tuple[int, str]]) -> list[str]:
    """The exception line and the last frames of the last traceback in the console."""
    texts = [x for _, x in raw]
    start = max((i for i, x in enumerate(texts) if x.startswith("Traceback (most recent call last)")), default=-1)
    if start < 0:
        return []
    frames: list[str] = []
    exc = ""
    i = start + 1
    while i < len(texts):
        m = _FRAME.match(texts[i])
        if m:
            code = texts[i + 1].strip() if i + 1 < len(texts) and not _FRAME.match(texts[i + 1]) else ""
            frames.append(f"  at {os.path.basename(m.group(1))}:{m.group(2)} in {m.group(3)}"
                          + (f": {t.short(code, 100)}" if code else ""))
        elif texts[i].strip() and not texts[i].startswith((" ", "\t")):
            exc = texts[i].strip()
            break
        i += 1
    return ([f"crash: {t.short(exc, 200)}"] if exc else ["crash: traceback without an exception line"]) + frames[-2:]


def _latest_lines(index: RunIndex, r: Run, view: ConsoleView) -> list[str]:
    out = []
    if numeric_keys(r):
        parts = []
        for k in main_keys(r, index.settings.main_metrics)[:6]:
            col = r.history.columns[k]
            at = f" @{t.step(col.last_step)}" if col.last_step != r.last_step else ""
            parts.append(f"{k} {t.num(col.values[-1], k)}{at}")
        out.append(f"latest logged @{t.step(r.last_step)}: " + " | ".join(parts))
    ch = view.history
    if ch.rows:
        last = ch.last_step
        parts = []
        for k, col in ch.columns.items():
            if col.last_step is not None and last is not None and col.last_step >= last and len(parts) < 8:
                parts.append(f"{k} {t.num(col.values[-1], k)}")
        evals = [(k, col) for k, col in ch.columns.items()
                 if col.last_step != last and KeyRole(k).split in ("val", "test")]
        for k, col in evals[:4]:  # the latest validation values, printed at an earlier step
            parts.append(f"{k} {t.num(col.values[-1], k)} @{t.step(col.last_step)}")
        ahead = ""
        if r.last_step is not None and last is not None and last > r.last_step:
            ahead = f" (ahead of the logged history, which ends at {t.step(r.last_step)})"
        out.append(f"latest printed @{t.step(last)}{ahead}: " + " | ".join(parts))
    return out


def _speed(r: Run, view: ConsoleView) -> str:
    rate = None
    how = ""
    rt = r.history.columns.get("_runtime")
    if rt is not None and len(rt) >= 2:
        steps, vals = rt.steps, rt.values
        end = vals[-1]
        import bisect

        # runtime ascends within a segment; look back up to 10 minutes
        i = max(0, bisect.bisect_left(vals, end - 600, 0, len(vals)))
        if vals[i] > vals[-1]:
            i = len(vals) - 2
        dt = vals[-1] - vals[i]
        if dt > 0 and steps[-1] > steps[i]:
            rate = (steps[-1] - steps[i]) / dt
            how = f"over the last {t.duration(dt)} of _runtime"
    if rate is None and view.rate:
        rate, how = view.rate, "as printed by the progress bar"
    if rate is None:
        return ""
    total, basis = view.total, "progress counter"
    if not total:
        flat = dict(flatten_config(r.config))
        for k in TOTAL_KEYS:
            for name, v in flat.items():
                if name.split(".")[-1] == k and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                    total, basis = int(v), f"config {name}"
                    break
            if total:
                break
    s = f"speed: {t.num(rate)} steps/s {how}"
    last = r.last_step if r.last_step is not None else view.history.last_step
    if total and last is not None and last < total and r.state.state == "running":
        s += f"; ETA {t.duration((total - last) / rate)} to step {total:,} ({basis})"
    elif total and r.state.state == "running":
        s += f"; total {total:,} ({basis}) reached"
    return s


# ---- sync_runs -----------------------------------------------------------------------------------

MAX_STATUS_RUNS = 30


def sync_runs(index: RunIndex, runs: list[str] | str | None = None, action: str = "status", dest: str | None = None,
              in_place: bool = False, progress: Callable[[float, float, str], None] | None = None,
              env: dict[str, str] | None = None) -> str:
    if action not in ("status", "export", "upload"):
        raise UserError(f"action must be status, export or upload; got {action!r}")
    refs = parse_keys(runs)
    if action != "status" and not refs:
        unsynced = [r for r in index.runs() if any(sy.segment_status(s).synced == "not synced"
                                                   for s in index.segments(r))]
        hint = (f"; not synced: {t.call('sync_runs', runs=[r.id for r in unsynced[:5]], action=action)}"
                if unsynced else "")
        raise UserError(f"{action} needs runs=[...] (names or ids); it never acts on every run at once{hint}")
    if in_place and action != "export":
        raise UserError("in_place applies to action=\"export\" only")
    if dest is not None and action != "export":
        raise UserError("dest applies to action=\"export\" only")
    chosen: list[Run] = []
    for ref in refs:
        r = get_run(index, ref)
        if r not in chosen:
            chosen.append(r)
    if action == "status":
        return _sync_status(index, chosen or index.runs(), bool(refs))
    if action == "export":
        return _sync_export(index, chosen, dest, in_place, progress, env)
    return _sync_upload(index, chosen, progress, env)


def _sync_status(index: RunIndex, runs: list[Run], explicit: bool) -> str:
    if not runs:
        raise UserError(ra.no_runs_message(index.settings.roots, index.problems()))
    lines = []
    by_issue: dict[str, list[str]] = {}
    synced = dirs = 0
    for r in runs[:MAX_STATUS_RUNS]:
        segs = index.segments(r)
        for i, s in enumerate(segs, 1):
            st = sy.segment_status(s)
            dirs += 1
            synced += st.synced == "synced"
            for code in st.issues:
                ids = by_issue.setdefault(code, [])
                if r.id not in ids:
                    ids.append(r.id)
            seg = f" segment {i}/{len(segs)}" if len(segs) > 1 else ""
            missing = [n for n, ok in st.side_files.items() if not ok]
            bits = [f"{ra.run_label(r)}{seg}: {st.synced}", f"log {st.log}",
                    f"{t.plural(st.rows, 'row')} to step {t.step(st.last_step)}" if st.rows else "no rows",
                    st.console]
            if s.layout == "wandb":
                bits.append("files/ complete" if not missing else "files/ lacks " + ", ".join(missing))
            lines.append(" | ".join(bits))
    head = f"{t.plural(len(runs), 'run')} ({t.plural(dirs, 'run directory', 'run directories')}): {synced} synced"
    if by_issue.get("unsynced"):
        head += f", {len(by_issue['unsynced'])} not synced"
    if by_issue.get("torn") or by_issue.get("damaged"):
        head += f", {len(set(by_issue.get('torn', []) + by_issue.get('damaged', [])))} with a torn or damaged log"
    out = [head] + lines
    if len(runs) > MAX_STATUS_RUNS:
        out.append(f"… {len(runs) - MAX_STATUS_RUNS} more runs: {t.call('sync_runs', runs=['<name>'])}")
    if by_issue:
        out.append("remedies:")
        for code in ("unsynced", "files", "torn", "damaged", "console-only"):
            ids = by_issue.get(code)
            if not ids:
                continue
            text = sy.REMEDIES[code].format(upload=t.call("sync_runs", runs=ids[:6], action="upload"),
                                            export=t.call("sync_runs", runs=ids[:6], action="export"))
            out.append(f"- {text}" + (f" (+{len(ids) - 6} more runs)" if len(ids) > 6 else ""))
    return "\n".join(out)


def _sync_export(index: RunIndex, runs: list[Run], dest: str | None, in_place: bool,
                 progress: Callable[[float, float, str], None] | None, env: dict[str, str] | None) -> str:
    if in_place and dest:
        raise UserError("pass either dest or in_place=true, not both")
    root = ""
    if not in_place:
        root = os.path.abspath(os.path.expanduser(dest)) if dest else sy.default_export_root(env)
        if os.path.exists(root) and not os.path.isdir(root):
            raise UserError(f"dest {root} is a file; pass a directory")
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create dest {root}: {e.strerror or e}; pass a writable directory") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise UserError(f"dest {root} is not writable; pass a writable directory")
    out = []
    for n, r in enumerate(runs, 1):
        full = index.resolve(r.id, full=True)
        segs = index.segments(full)
        if in_place:
            target = segs[-1].files_dir if segs else ""
            if not target or not os.path.isdir(target):
                raise UserError(f"{ra.run_label(full)} has no files/ directory to export into; use dest= instead")
        else:
            target = os.path.join(root, sy.safe_name(full.id))
            real_root = os.path.realpath(root)
            if not os.path.realpath(target).startswith(real_root.rstrip(os.sep) + os.sep):
                raise UserError(f"run id {full.id!r} would leave dest; not exported")
            os.makedirs(target, exist_ok=True)

        def rows_progress(done: int, total: int, _n: int = n) -> None:
            if progress is not None:
                progress(_n - 1 + done / max(total, 1), len(runs), f"{full.display_name}: {done:,} rows")

        if progress is not None:
            progress(n - 1, len(runs), f"exporting {full.display_name}")
        written = sy.write_export(full, target, overwrite=not in_place, progress=rows_progress)
        parts = []
        for w in written:
            name = os.path.basename(w.path)
            if w.skipped:
                parts.append(f"{name} ({w.skipped})")
            elif name == "wandb-history.jsonl":
                parts.append(f"{name} ({t.plural(len(set(full.history.steps)), 'row')}, {w.bytes:,} bytes)")
            else:
                parts.append(f"{name} ({w.bytes:,} bytes)")
        where = f"its own {os.path.relpath(target, os.path.dirname(segs[-1].path))}/" if in_place else target
        out.append(f"exported {ra.run_label(full)} to {where}: " + ", ".join(parts))
        for s in segs:
            st = sy.segment_status(s)
            if not st.log_ok and s.log is not None:
                out.append(f"  note: {os.path.basename(s.log_path or '')}: {st.log}; exported everything up to "
                           f"there (step {t.step(s.history.last_step)})")
        others = sorted(full.history.other)
        if others:
            out.append(f"  note: non-numeric history values ({', '.join(others[:4])}{'…' if len(others) > 4 else ''}) "
                       f"are in the history rows only where logged once; their last values are in the summary")
        if len(segs) > 1:
            out.append(f"  note: the {len(segs)} resumed segments are exported as one run (later segments win "
                       f"on steps logged twice)")
    if progress is not None:
        progress(len(runs), len(runs), "done")
    return "\n".join(out)


def _sync_upload(index: RunIndex, runs: list[Run], progress: Callable[[float, float, str], None] | None,
                 env: dict[str, str] | None) -> str:
    cli = sy.find_wandb_cli(env)
    if cli is None:
        raise UserError("the wandb CLI was not found (looked at RUNWISE_WANDB_CLI, PATH and next to this Python): "
                        "install it with `pip install wandb`, or set RUNWISE_WANDB_CLI to its path. Nothing was "
                        "uploaded.")
    dirs = [(r, s.path) for r in runs for s in index.segments(r)]
    out = [f"wandb sync with {cli}:"]
    failed = False
    for i, (r, d) in enumerate(dirs):
        if progress is not None:
            progress(i, len(dirs), f"wandb sync {os.path.basename(d)}")
        res = sy.upload(cli, d)
        status = "timed out" if res.code is None else f"exit {res.code}"
        out.append(f"{ra.run_label(r)} {os.path.basename(d)}: {status}")
        out.extend("  " + ln for ln in res.output.splitlines()[-12:])
        failed |= res.code != 0
    if progress is not None:
        progress(len(dirs), len(dirs), "done")
    if failed:
        out.append("upload needs a W&B API key (WANDB_API_KEY in the server's environment, or `wandb login`) and "
                   "network access to api.wandb.ai (or your WANDB_BASE_URL); a failed sync leaves the run's data "
                   "as it was. sync_runs(action=\"export\") makes the standard files locally without either.")
    else:
        out.append("done: sync_runs(action=\"status\") shows the .synced markers")
    return "\n".join(out)
