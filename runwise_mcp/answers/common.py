"""Shared by the tools: run resolution, key choice, "why is it missing" notes, the console as a source."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..analysis.aliases import Alias, console_aliases, renamed
from ..analysis.anomalies import Thresholds
from ..analysis.select import KeyRole, is_glob, main_keys, metric_goal, metric_keys, pick_keys
from ..analysis.stats import cadence as stats_cadence
from ..analysis.stats import trend
from ..index import ConsoleView, RunIndex, RunNotFound
from ..model import RESERVED_KEYS, History, Run, history_after, merge_histories
from ..render import answers as ra
from ..render import text as t
from ..sources.console import MAX_PARSE

SPARK_BUCKETS = 6  # ~2 tokens a character: a 6-step picture plus an arrow
MAX_KEYS = 120
MAX_CONFIG = 200
CONFIG_CHARS = 120
CONFIG_CHARS_ONE = 4000


class UserError(Exception):
    """A problem the caller can fix; the message is shown as the tool error."""


# ---- shared ------------------------------------------------------------------------------------


def background_read_note(r: Run, job: Any, again: str, prefix: str = "") -> str:
    """How a background full read of ``r`` stands, for an answer given from its skim meanwhile:
    its failure, or its progress and the call (``again``, "<call> again for <what>") that gets
    the full answer."""
    if job.error is not None:
        return f"the full read failed ({t.clean(job.error)}); runwise-mcp --check shows what it can read"
    size = sum(s.log_bytes for s in r.segments)
    eta = job.eta()
    return (f"{prefix}reading the whole log ({size / 2**20:,.0f} MiB) in the background, {job.fraction * 100:.0f}% done"
            + (f", about {t.duration(eta)} left" if eta else "") + f"; call {again}")


def searched(index: RunIndex) -> list[str]:
    """Where runs were looked for, as answers say it: the roots, then each configured MLflow
    tracking server (its URL without credentials)."""
    from ..sources.mlflow_rest import MlflowStoreError, split_uri

    out = list(index.settings.roots)
    for uri in getattr(index.settings, "mlflow_servers", []):
        try:
            out.append("MLflow server " + split_uri(uri)[0])
        except MlflowStoreError:
            out.append("an MLflow server URI that does not parse")
    return out


def get_run(index: RunIndex, ref: str, full: bool = True) -> Run:
    """The run named by ``ref``, read in full (``full=False``: possibly only skimmed)."""
    try:
        return index.resolve(ref, full=full)
    except RunNotFound as e:
        roots = ", ".join(index.settings.roots)
        if not e.candidates:
            raise UserError(ra.no_runs_message(searched(index), index.problems())) from None
        cands = ", ".join(ra.run_label(r, e.candidates) for r in e.candidates)
        raise UserError(f"{e.reason} under {roots}. Closest: {cands}. Pass an exact name or id, "
                        f"or call list_runs(query=...) to search.") from None


def _exact_names(keys: list[str] | str | None) -> list[str]:
    """The requested keys when every one is an exact name (no glob), else []."""
    names = parse_keys(keys)
    return [] if any(is_glob(k) for k in names) else names


def read_for_keys(index: RunIndex, r: Run, keys: list[str] | str | None, extra: tuple[str, ...] = ()) -> Run:
    """``r`` with the history of the requested keys complete. A run not read in full, asked for
    keys by exact name that its skim has seen, gets a keyed read: only those keys (and
    ``extra``) are decoded. Defaults, globs and names the skim has not seen (an unknown key's
    closest matches come from the whole log) read it in full."""
    if not r.sampled:
        return r
    names = _exact_names(keys)
    if names and all(k in r.history.columns for k in names):
        return index.read_keys(r, set(names) | set(extra))
    return index.read_full(r)


def read_runs_for_keys(index: RunIndex, runs: list[Run], keys: list[str] | str | None) -> list[Run]:
    """``read_for_keys`` for the runs of a cross-run tool: with exact names that some run's skim
    has seen, every run not read in full gets a keyed read (a run that never logged a key then
    costs a keyed read, not a full one); otherwise all are read in full."""
    names = _exact_names(keys)
    if names and all(any(k in r.history.columns for r in runs) for k in names):
        return [index.read_keys(r, names) for r in runs]
    return [index.read_full(r) for r in runs]


def empty_log_note(run: Run) -> str:
    """Why a run has no data yet, when its only log is empty or header-only (file names escaped)."""
    seg = run.segments[-1] if run.segments else None
    if seg is not None and seg.source != "wandb":
        return t.clean(seg.hints.get("empty") or f"its {seg.source} files hold no metric yet")
    if seg is None or seg.log_path is None:
        if seg is not None and seg.layout == "console":
            return "only files/output.log is left in this run directory (no .wandb log, no history file)"
        return "no history was found in this run directory"
    name = t.clean(os.path.basename(seg.log_path))
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


def eval_groups(columns: dict) -> dict[str, list[str]]:
    """Each validation or test set's main keys (its loss and its accuracy, the keys with the most
    points of each kind), by set: {"val_proteometools": [...], "val": [...]}, sets in name order."""
    groups: dict[str, dict[str, tuple]] = {}
    for k, col in columns.items():
        if k in RESERVED_KEYS or not len(col):
            continue
        r = KeyRole(k)
        if r.split in ("val", "test") and r.kind in ("loss", "acc"):
            name = k.rsplit("/", 1)[0] if "/" in k else r.split
            best = groups.setdefault(name, {}).get(r.kind)
            rank = (-len(col), len(k), k)
            if best is None or rank < best[0]:
                groups[name][r.kind] = (rank, k)
    return {g: [kinds[x][1] for x in ("loss", "acc") if x in kinds]
            for g, kinds in sorted(groups.items(), key=lambda kv: (not kv[0].startswith("val"), kv[0]))}


def latest_eval(columns: dict, limit: int = 8) -> tuple[int, list[tuple[str, float, int]], int] | None:
    """(the latest eval step, [(key, value, step)] of every set's main keys there, number of sets):
    each key's value at that step, or its last value with its own step when that set was not
    evaluated there. None without validation keys."""
    groups = eval_groups(columns)
    keys = [k for ks in groups.values() for k in ks]
    if not keys:
        return None
    last = max(columns[k].last_step for k in keys)
    out = [(k, columns[k].values[-1], columns[k].last_step) for k in keys]
    out.sort(key=lambda x: x[2] != last)  # the sets evaluated at the latest step first
    return last, out[:limit], len(groups)


def eval_line(ev: tuple[int, list[tuple[str, float, int]], int], label: str = "latest eval") -> str:
    """'latest eval @86,000: val_proteometools/token_accuracy 14.0% | val_nine_species/... 7.6%'."""
    last, parts, _ = ev
    return f"{label} @{t.step(last)}: " + " | ".join(
        f"{t.clean(k)} {t.num(v, k)}" + (f" @{t.step(s)}" if s != last else "") for k, v, s in parts)


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
        raise UserError(f"{ra.run_label(run)}: {', '.join(map(t.clean, text_keys))} hold non-numeric values "
                        f"({', '.join(t.clean(run.history.other[k].kind) for k in text_keys)}); "
                        f"{t.call('list_keys', run=run.id)} shows their last values")
    return found


def unknown_keys_message(run: Run, unknown: list[tuple[str, list[str]]], available: list[str], tool: str) -> str:
    parts = []
    for k, close in unknown:
        if k.lower().startswith("system/") or k.lower() in {s.lower() for s in run.system.keys()}:
            parts.append(f"{k!r} is a system metric (sampled by time, not step): "
                         f"{t.call('list_keys', run=run.id, pattern='system/')}")
        elif close:
            parts.append(f"{k!r} is not logged; closest: {', '.join(map(t.clean, close))}")
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
    c = stats_cadence(col.steps, run.history.rows) if col is not None else None
    if c is None:
        return ""
    kind = "validation steps" if KeyRole(key).split in ("val", "test") or c.rare else "some steps"
    rhythm = f", every ~{t.num(round(c.every))} steps" if c.every else ""
    return f"logged only at {kind} ({t.plural(c.points, 'point')}{rhythm} from {t.step(c.first_step)})"


def require_history(run: Run, what: str) -> None:
    if run.history.rows == 0 or not numeric_keys(run):
        raise UserError(f"{ra.run_label(run)} has no {what} yet: {empty_log_note(run)}")


def thresholds(index: RunIndex) -> tuple[Thresholds, list[str]]:
    """The diagnose thresholds and what was wrong with the project config file, if anything."""
    th, problems = Thresholds.from_mapping(index.settings.diagnose)
    where = index.settings.config_file
    return th, index.settings.config_problems + [f"{where}: {p}, ignored" for p in problems]


def recent_trend(steps, values, th: Thresholds) -> int:
    """The arrow's direction: the recent trend over diagnose's plateau window and improvement."""
    return trend(steps, values, th.plateau_fraction, th.plateau_min_improvement)


def goals_for(run: Run, keys: list[str]) -> dict[str, str]:
    return {k: metric_goal(run, k)[0] for k in keys}


def history_source(run: Run) -> str:
    """Which files the numbers come from, e.g. 'run-abc.wandb (history to 599)'."""
    parts = []
    for seg in run.segments:
        if seg.source != "wandb":  # the format named in a word (W&B goes unsaid: its log's name says it)
            rng = f"history to {t.step(seg.last_step)}" if seg.last_step is not None else "no rows"
            parts.append(f"{seg.source} {t.clean(seg.label or os.path.basename(seg.log_path or seg.path))} ({rng})")
            continue
        name = os.path.basename(seg.log_path) if seg.log_path else (seg.label or os.path.basename(seg.path))
        rng = f"history to {t.step(seg.last_step)}" if seg.last_step is not None else "no rows"
        parts.append(f"{t.clean(name)} ({rng})")
    return " + ".join(parts)


# ---- console as a source -------------------------------------------------------------------------

SOURCES = ("auto", "history", "console")


def _with_history(run: Run, h: History) -> Run:
    return dataclasses.replace(run, history=h)


def console_notes(view: ConsoleView) -> str:
    """What the console parser skipped or cut ("" when nothing): ', 2 lines over 8 KiB parsed
    up to 8 KiB, 1 line skipped (a step past 64 bits)'."""
    notes = []
    if view.capped:
        notes.append(f"{t.plural(view.capped, 'line')} over {MAX_PARSE >> 10} KiB parsed up to {MAX_PARSE >> 10} KiB")
    if view.bad_rows:
        notes.append(f"{t.plural(view.bad_rows, 'line')} skipped (a step or counter that is not a 64-bit integer)")
    return "".join(f", {n}" for n in notes)


def console_missing(index: RunIndex, r: Run, view: ConsoleView) -> str:
    """Why the console gave no metrics, and what to do."""
    if not view.files and r.source != "wandb":
        return f"{r.source} runs have no console log; their metrics are the logged scalars"
    if not view.files:
        return ("it has no files/output.log (wandb writes it a few seconds after the first print; "
                "runs started with WANDB_CONSOLE=off have none)")
    files = " + ".join(map(t.clean, view.files))
    return (f"{files} has {t.plural(view.lines, 'line')}{console_notes(view)} but none printed a metric with a "
            f"step (e.g. 'step 100 loss 2.3', 'iter 100: loss=2.3', a dict with a step); add a regex with "
            f"named groups under [console] patterns in runwise.toml for your format")


def console_logged_names(r: Run, view: ConsoleView) -> tuple[History, frozenset[str], dict[str, Alias]]:
    """The console's history with the keys that mirror logged keys under the logged names (the
    values agree at shared steps: ``analysis.aliases``), the keys printed as percentages under
    the same names, and the mapping."""
    aliases: dict[str, Alias] = {}
    if view.history.rows and numeric_keys(r):
        h = r.history
        memo_key = (r.id, id(h), h.rows, h.last_step, len(h.columns), view.history.rows)
        aliases = view.aliases.get(memo_key)
        if aliases is None:
            aliases = console_aliases(h, view.history, view.percent)
            view.aliases.clear()  # one history at a time: a newer read replaces it
            view.aliases[memo_key] = aliases
    pct = frozenset(aliases[k].logged_key if k in aliases else k for k in view.percent)
    return renamed(view.history, aliases), pct, aliases


def aliases_note(aliases: dict[str, Alias], limit: int = 4) -> str:
    """'console loss = train/loss, token_acc = train/token_accuracy' ("" when none)."""
    if not aliases:
        return ""
    pairs = [f"{t.clean(a.console_key)} = {t.clean(a.logged_key)}" for a in aliases.values()]
    more = f" +{len(pairs) - limit}" if len(pairs) > limit else ""
    return "console " + ", ".join(pairs[:limit]) + more


def in_logged_names(index: RunIndex, r: Run, keys: list[str] | str | None) -> list[str] | str | None:
    """``keys`` with console names that mirror logged keys given as the logged names (``loss`` ->
    ``train/loss``), so that either name reaches the one series."""
    want = parse_keys(keys)
    if not want or not r.history.rows:
        return keys
    view = index.console(r)
    if not view.history.rows:
        return keys
    aliases = console_logged_names(r, view)[2]
    return list(dict.fromkeys(aliases[k].logged_key if k in aliases and k not in r.history.columns else k
                              for k in want))


def metric_run(index: RunIndex, r: Run, source: str = "auto") -> tuple[Run, str, frozenset[str]]:
    """The run with the history a tool should read for ``source``, a description of where its
    numbers come from, and the keys printed as percentages. ``auto``: the history, with console
    rows beyond its last step appended; the console alone when there is no history. Console
    keys that mirror logged keys go by the logged names (``console_logged_names``)."""
    if source not in SOURCES:
        raise UserError(f"source must be auto, history or console; got {source!r}")
    if source == "history":
        return r, history_source(r), frozenset()
    view = index.console(r)
    ch, pct, aliases = console_logged_names(r, view)
    label = ra.run_label(r)
    desc = ""
    named = f"; {aliases_note(aliases)}" if aliases else ""
    if ch.rows:
        desc = (f"{' + '.join(map(t.clean, view.files))} (console{', last lines only' if view.partial else ''}, "
                f"steps {t.steps_range(ch.first_step, ch.last_step)}{console_notes(view)}){named}")
    if source == "console":
        if not ch.rows:
            raise UserError(f"{label}: no metrics in its console: {console_missing(index, r, view)}. "
                            f"{t.call('get_history', run=r.id, source='history')} reads the logged history")
        return _with_history(r, ch), desc, pct
    h = r.history
    if not numeric_keys(r):
        if ch.rows:
            return _with_history(r, ch), desc + "; the run has no logged history", pct
        return r, history_source(r), frozenset()
    if ch.rows and h.last_step is not None and (ch.last_step or 0) > h.last_step:
        part = history_after(ch, h.last_step)
        merged, _ = merge_histories([h, part])
        return (_with_history(r, merged),
                f"{history_source(r)} + {' + '.join(map(t.clean, view.files))} (console to {t.step(part.last_step)}, "
                f"used beyond the history{console_notes(view)}){named}", pct)
    # the logged history alone; a logged key the console printed as a percentage reads as one
    return r, history_source(r), frozenset(a.logged_key for k, a in aliases.items() if k in view.percent)


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
