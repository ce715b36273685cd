"""list_runs, list_keys, get_config, and the --check report."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Any

from ..analysis.aliases import Alias
from ..analysis.anomalies import Thresholds
from ..analysis.select import key_matches, main_metric, metric_keys, query_matches, x_axis_keys
from ..analysis.stats import series_stats
from ..index import ConsoleView, RunIndex
from ..model import RESERVED_KEYS, STATES, Run
from ..render import answers as ra
from ..render import text as t
from .common import (
    CONFIG_CHARS,
    CONFIG_CHARS_ONE,
    MAX_CONFIG,
    MAX_KEYS,
    UserError,
    _with_history,
    background_read_note,
    console_logged_names,
    console_missing,
    console_notes,
    empty_log_note,
    flatten_config,
    get_run,
    recent_trend,
    searched,
    thresholds,
)

# ---- list_runs ---------------------------------------------------------------------------------


def list_runs(index: RunIndex, query: str = "", state: str = "any", limit: int = ra.LIST_LIMIT, offset: int = 0,
              progress: Callable[[int, int], None] | None = None) -> str:
    if state != "any" and state not in STATES:
        raise UserError(f"state must be one of any, {', '.join(STATES)}; got {state!r}")
    runs = index.runs(progress)
    now = index.clock()
    matched = [r for r in runs if (not query or query_matches(r, query)) and (state == "any" or r.state.state == state)]
    page = matched[offset : offset + limit]
    th = thresholds(index)[0]
    lines = [_run_line(r, index.settings.main_metrics, th) for r in page]
    # a name alone when it names one run (names resolve case-insensitively); else "name (id)"
    seen: dict[str, int] = {}
    for r in runs:
        for ref in {r.name.lower(), r.id.lower()} - {""}:
            seen[ref] = seen.get(ref, 0) + 1
    for line in lines:
        r = line.run
        line.label = r.name if r.name and r.name != r.id and seen.get(r.name.lower()) == 1 else ra.run_label(r, runs)
    return ra.run_list(lines, total=len(runs), matched=len(matched), offset=offset, limit=limit, query=query,
                       state=state, roots=searched(index), now=now, problems=index.problems())


def _run_line(run: Run, prefs: list[str], th: Thresholds) -> ra.RunLine:
    """A run's line: its main metric's last value and trend (a sparkline costs ~8 tokens a line,
    too much for a list of 30 runs in ~1,200 tokens: run_summary draws it)."""
    key = main_metric(run, prefs)
    if key is None:
        return ra.RunLine(run)
    col = run.history.columns[key]
    values = col.values
    # the recent trend, as diagnose's plateau sees it (a skim's from step buckets of its samples)
    direction = recent_trend(col.steps, values, th)
    return ra.RunLine(run, key, values[-1], direction, col.last_step)


# ---- list_keys ---------------------------------------------------------------------------------


def list_keys(index: RunIndex, run: str = "latest", pattern: str = "") -> str:
    r0 = get_run(index, run, full=False)
    if (r0.sampled and r0.history.rows and not pattern.lower().startswith("system")
            and sum(s.log_bytes for s in r0.segments) >= index.settings.background_above):
        # a large log not read yet: name its keys from the skim while it is read in the background
        job = index.read_in_background(r0)
        job.wait_briefly(index.settings.first_answer_wait)
        if not job.finished.is_set() or job.error is not None:
            return _skim_keys(r0, job, pattern)
    r = get_run(index, run)
    h = r.history
    view = index.console(r)
    if h.rows == 0 and not r.system.rows and not view.history.rows:
        raise UserError(f"{ra.run_label(r)} has no metrics yet: {empty_log_note(r)}; console: "
                        f"{console_missing(index, r, view)}")
    _ch, _pct, aliases = console_logged_names(r, view)
    # a logged key that the console prints as a percentage reads as one here too
    with t.percent_keys({a.logged_key for k, a in aliases.items() if k in view.percent}):
        out = _list_keys(index, r, pattern, view) if h.rows or r.system.rows else \
            f"{ra.run_label(r)}: no logged history ({empty_log_note(r)})"
    if view.history.rows and not pattern.lower().startswith("system"):
        out += "\n" + _console_keys(r, view, pattern, aliases)
    console_problems = [p for p in index.settings.config_problems if "console pattern" in p]
    if console_problems:
        out += ("\nconfig: " + "; ".join(map(t.clean, console_problems))
                + " (ignored; fix runwise.toml and restart the server)")
    return out


def _skim_keys(r: Run, job, pattern: str) -> str:
    """list_keys from a skim (head, tail and sampled blocks) while the full read runs: the keys of
    the sampled rows with their exact last values; counts, first steps, NaN/inf and console keys
    come with the full read."""
    h = r.history
    names = sorted(k for k in list(h.columns) + list(h.other) if k not in RESERVED_KEYS and key_matches(k, pattern))
    again = t.call('list_keys', run=r.id, pattern=pattern) if pattern else t.call('list_keys', run=r.id)
    status = background_read_note(r, job, f"{again} again for point counts, first steps, NaN/inf, system and console keys")
    head = (f"{ra.run_label(r)}: {t.plural(len(names), 'key')}" + (f" matching {pattern!r}" if pattern else "")
            + f" seen in a skim (head, tail and sampled blocks: {t.plural(h.rows, 'sampled row')}), last step "
            f"{t.step(h.last_step)}; last values exact; a key logged only between the samples shows after the full read")
    out = [head]
    shown = names[:MAX_KEYS]
    width = max((len(t.clean(k)) for k in shown), default=0)
    for k in shown:
        col = h.columns.get(k)
        if col is not None:
            share = "every sampled row" if len(col) == h.rows else f"{len(col):,} of the sampled rows"
            out.append(f"  {t.clean(k):<{width}}  last {t.num(col.values[-1], k)} @{t.step(col.last_step)}, in {share}")
        else:
            o = h.other[k]
            out.append(f"  {t.clean(k):<{width}}  {t.clean(o.kind or 'value')}, last {t.short(o.last, 40, quoted=True)}"
                       f" @{t.step(o.last_step)}")
    if len(names) > MAX_KEYS:
        out.append(f"… {t.plural(len(names) - MAX_KEYS, 'more key')} not shown; narrow with "
                   f"{t.call('list_keys', run=r.id, pattern='<prefix or glob>')}")
    if not names:
        out.append(f"no key matches {pattern!r} in the samples" if pattern else "no metric keys in the samples")
    out.append(f"full read: {status}")
    return "\n".join(out)


def _console_keys(r: Run, view: ConsoleView, pattern: str, aliases: dict[str, Alias]) -> str:
    """The keys parsed from the console: those that mirror a logged key (the same values at the
    steps both have) on one line, then only the keys the console adds."""
    ch = view.history
    names = sorted(k for k in ch.columns if key_matches(k, pattern)
                   or (k in aliases and key_matches(aliases[k].logged_key, pattern)))
    head = (f"console keys (parsed from {' + '.join(map(t.clean, view.files))}, {t.plural(view.lines, 'line')}"
            f"{', last lines only' if view.partial else ''}{console_notes(view)}; steps {t.steps_range(ch.first_step, ch.last_step)}; "
            f"read with get_history(source=\"console\")):")
    if not names:
        return head + f" none match {pattern!r}"
    mirrored = [k for k in names if k in aliases]
    own = [k for k in names if k not in aliases]
    body = []
    if mirrored:
        pairs = ", ".join(f"{t.clean(k)} = {t.clean(aliases[k].logged_key)}" for k in mirrored)
        logged_to = max((r.history.columns[aliases[k].logged_key].last_step or 0 for k in mirrored), default=0)
        console_to = max((ch.columns[k].last_step or 0 for k in mirrored), default=0)
        on = f" (the console goes on to step {t.step(console_to)})" if console_to > logged_to else ""
        body.append(f"  same values as logged keys (answers use the logged names): {pairs}{on}"
                    + ("; only in the console:" if own else "; no other key"))
    if own:
        proxy = _with_history(r, ch)
        lines = [_key_line(proxy, k, {}) for k in own[:MAX_KEYS]]
        labels = [t.clean(k.name) for k in lines]
        width = max(len(x) for x in labels)
        with t.percent_keys(view.percent):
            body.extend(ra.key_line(k, x, width) for k, x in zip(lines, labels))
        if len(own) > MAX_KEYS:
            body.append(f"… {len(own) - MAX_KEYS} more console keys")
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


def get_config(index: RunIndex, run: str = "latest", pattern: str = "") -> str:
    r = get_run(index, run)
    items = sorted((kv for kv in flatten_config(r.config) if not kv[0].startswith("_wandb")), key=lambda kv: kv[0])
    # a config.yaml that could not be read (e.g. refused as an alias bomb) is said where the config is asked for
    unread = list(dict.fromkeys(e for seg in index.segments(r) for e in seg.config_errors))
    if unread:
        note = "; ".join(unread)
        if not items:
            return f"{ra.run_label(r)} has no config to show: {note}"
        return _config_answer(r, items, pattern) + f"\nnot shown: {note}"
    if not items:
        if r.history.rows == 0 and not r.summary:
            raise UserError(f"{ra.run_label(r)} has no config yet: {empty_log_note(r)}")
        if r.source != "wandb":
            hint = r.segments[-1].hints.get("no_config") if r.segments else None
            return f"{ra.run_label(r)} has no config: {t.clean(hint or f'none in its {r.source} files')}"
        return (f"{ra.run_label(r)} has an empty config: wandb.init() got no config= and nothing was set "
                f"later with run.config[...] or run.config.update().")
    return _config_answer(r, items, pattern)


def _config_answer(r: Run, items: list[tuple[str, Any]], pattern: str) -> str:
    matched = [kv for kv in items if key_matches(kv[0], pattern)]
    if not matched:
        return (f"{ra.run_label(r)}: no config key matches {pattern!r} among {t.plural(len(items), 'key')}; "
                f"{t.call('get_config', run=r.id)} lists all")
    limit = CONFIG_CHARS_ONE if len(matched) == 1 else CONFIG_CHARS
    source = t.clean(r.segments[-1].hints.get("config_from", "")) if r.segments else ""
    return ra.config_answer(r, matched, total=len(matched), pattern=pattern, limit_chars=limit,
                            max_items=MAX_CONFIG, source=source)


# ---- check (for humans) ------------------------------------------------------------------------


CHECK_FULL_READ = 64 << 20  # --check reads logs up to this size in full (exact row counts); larger are skimmed
CHECK_FULL_BUDGET = 512 << 20  # and up to this many bytes of such logs in all


def check_report(index: RunIndex) -> tuple[bool, str]:
    """What `runwise-mcp --check` prints, and whether everything is usable."""
    s = index.settings
    t0 = time.perf_counter()
    runs = index.runs()
    dt = time.perf_counter() - t0
    now = index.clock()
    out = [f"roots (from {s.roots_from}):"]
    for root in s.roots:
        out.append(f"  {t.clean(root)}")
    out.append(f"scan depth {s.max_depth}, running/killed threshold {t.duration(s.stale_after)}")
    out.extend(f"config: {p}" for p in s.config_problems)
    out.append(f"cache of decoded logs: {s.cache_dir or 'off'}" + (
        f" (logs of {s.cache_min_bytes >> 20} MiB and more)" if s.cache_dir else ""))
    servers_ok, server_runs = _check_mlflow_servers(s, out)
    out.append(f"{t.plural(len(runs), 'run')} found in {dt:.2f}s:")
    budget = CHECK_FULL_BUDGET
    for r in runs:
        segs = f", {len(r.segments)} segments" if len(r.segments) > 1 else ""
        size = sum(seg.log_bytes for seg in r.segments)
        if r.sampled and size <= min(CHECK_FULL_READ, budget):  # a skim's rows are samples: count them in full
            budget -= size
            r = index.read_full(r)
        if r.sampled:  # larger: say that the count is not known rather than give the skim's
            rows = (f"steps to {t.step(r.last_step)}" if r.last_step is not None else "no rows in the skim")
            rows += f" (log of {size / 2**20:,.1f} MiB skimmed; rows not counted)"
        else:
            rows = t.plural(r.history.rows, 'row')
        out.append(f"  {ra.run_label(r)}: {t.state(r.state, now)}, {rows}"
                   f"{segs}, {t.clean(r.segments[-1].producer) if r.segments else ''}, "
                   f"{t.clean(r.segments[-1].path) if r.segments else ''}")
        if r.copies:
            out.append(f"    {ra.copies_line(r)}")
    problems = index.problems(full_paths=True)
    if problems:
        out.append("could not read:")
        out.extend(f"  {t.clean(p)}" for p in problems)
    missing = [p for p in index.last_scan.problems if p.startswith("root ")]
    if missing:
        out.append("FAIL: " + "; ".join(map(t.clean, missing)))
        return False, "\n".join(out)
    if not servers_ok:
        out.append("FAIL: an MLflow tracking server could not be read (see above)")
        return False, "\n".join(out)
    if not runs and not server_runs:
        out.append("FAIL: " + ra.no_runs_message(s.roots, []))
        return False, "\n".join(out)
    out.append("OK")
    return True, "\n".join(out)


def _check_mlflow_servers(s: Any, out: list[str]) -> tuple[bool, int]:
    """``--check`` lines for the configured MLflow tracking servers: reachable, with how many
    experiments and runs, or the error sentence. Returns (all readable, runs on them)."""
    if not getattr(s, "mlflow_servers", None):
        return True, 0
    from ..sources.mlflow_records import MlflowStoreError
    from ..sources.mlflow_rest import server_stores

    out.append(f"MLflow tracking servers (from {s.mlflow_from}):")
    stores, problems = server_stores(s)
    ok = not problems
    n = 0
    for p in problems:
        out.append(f"  {t.clean(p)}")
    for store in stores:
        t0 = time.perf_counter()
        try:
            exps = store.experiments()
            recs = store.runs()
        except MlflowStoreError as e:
            out.append(f"  {t.clean(str(e))}")
            ok = False
            continue
        n += len(recs)
        out.append(f"  {t.clean(store.label)}: reachable in {time.perf_counter() - t0:.2f}s, "
                   f"{t.plural(len(exps), 'experiment')}, {t.plural(len(recs), 'run')}")
    return ok, n
