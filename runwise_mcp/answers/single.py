"""Tools on one run: run_summary, get_history, history_stats, diagnose_run."""

from __future__ import annotations

import dataclasses

from ..analysis.anomalies import default_keys, diagnose
from ..analysis.sampling import bucket_means, bucket_means_by_step, sample_join
from ..analysis.select import KeyRole
from ..analysis.stats import series_stats, tail_slope
from ..cache import AnswerMemo
from ..index import RunIndex
from ..model import Run
from ..render import answers as ra
from ..render import reports as rs
from ..render import text as t
from .common import (
    MAX_HISTORY_SAMPLES,
    MAX_STATS_KEYS,
    SPARK_BUCKETS,
    UserError,
    background_read_note,
    cadence,
    choose_keys,
    console_logged_names,
    console_missing,
    empty_log_note,
    eval_line,
    get_run,
    goals_for,
    history_source,
    in_logged_names,
    latest_eval,
    metric_run,
    numeric_keys,
    parse_keys,
    read_for_keys,
    recent_trend,
    require_history,
    thresholds,
)

# ---- run_summary ---------------------------------------------------------------------------------


def run_summary(index: RunIndex, run: str = "latest", keys: list[str] | str | None = None) -> str:
    r0 = get_run(index, run, full=False)
    if r0.sampled and sum(s.log_bytes for s in r0.segments) >= index.settings.background_above:
        # a large log not read yet: read it in the background, answer from the skim meanwhile
        job = index.read_in_background(r0)
        job.wait_briefly(index.settings.first_answer_wait)
        if not job.finished.is_set() or job.error is not None:
            return _skim_summary(index, r0, job, keys)
    r0 = get_run(index, run)
    r, src, pct = metric_run(index, r0, "auto")
    with t.percent_keys(pct):
        return _run_summary(index, r0, r, src, in_logged_names(index, r0, keys))


def _run_summary(index: RunIndex, r0: Run, r: Run, src: str, keys: list[str] | str | None) -> str:
    prefs = index.settings.main_metrics
    now = index.clock()
    if not numeric_keys(r):
        why = empty_log_note(r) if r.history.rows == 0 else "it logged only non-numeric values"
        view = index.console(r0)
        return rs.summary_answer(r, now, [], [], [], "", f"{history_source(r)}; no metrics: {why}; console: "
                                 f"{console_missing(index, r0, view)}", 0, False)
    chosen = choose_keys(r, keys, prefs, "run_summary")
    diag_keys = default_keys(r, prefs) if not parse_keys(keys) else chosen
    th = thresholds(index)[0]
    memo_key = _memo_key(r, chosen, diag_keys, th, bool(parse_keys(keys)))
    memo = index.memo.get(memo_key) if memo_key else None
    try:  # the same data as a previous answer: its statistics, not recomputed
        metric_lines = [rs.MetricLine(**m) for m in memo["lines"]]
        anomalies = memo["anomalies"]
        if not isinstance(anomalies, str):
            raise TypeError("anomalies is not text")
    except (TypeError, KeyError):  # none, or a damaged or foreign memo file: compute again
        memo = None
    if memo is None:
        metric_lines = _metric_lines(r, chosen, keys, th)
        diag = diagnose(r, diag_keys, goals_for(r, diag_keys), th)
        anomalies = rs.anomalies_line(diag, r.id)
        if memo_key:
            index.memo.put(memo_key, {"lines": [dataclasses.asdict(m) for m in metric_lines],
                                      "anomalies": anomalies})
    lines = [m for m in metric_lines if not m.compact]
    compact = [m for m in metric_lines if m.compact]
    groups = _group_val_sets(lines)
    grouped = {m.key for _, ms in groups for m in ms}
    lines = [m for m in lines if m.key not in grouped]
    extra = len(numeric_keys(r)) - len(chosen)
    ahead = _console_ahead(index, r0, {m.key for m in metric_lines})
    if ahead:
        anomalies = ahead + "\n" + anomalies
    out = rs.summary_answer(r, now, lines, groups, compact, anomalies,
                            _summary_source(r0, chosen, src), extra, bool(parse_keys(keys)))
    ev = _eval_head(index, r0, r, bool(groups))
    if ev:  # in the head: every validation set's value at the latest eval step
        head, _, rest = out.partition("\n")
        if rest.startswith("notes: "):
            notes, _, rest = rest.partition("\n")
            head += "\n" + notes
        out = head + "\n" + ev + ("\n" + rest if rest else "")
    return out


def _eval_head(index: RunIndex, r0: Run, r: Run, grouped: bool) -> str:
    """'latest eval @86,000: val_a/acc 14.0% | val_b/acc 7.6%' when the run has two or more
    validation sets that no grouped line (which comes first) shows; from the console when it
    printed a later eval than the history holds."""
    ev = latest_eval(r.history.columns)
    view = index.console(r0)
    ch, pct, _aliases = console_logged_names(r0, view)  # the console's keys under the logged names
    cev = latest_eval(ch.columns) if ch.rows else None
    if cev and cev[2] >= 2 and (ev is None or cev[0] > ev[0]):
        with t.percent_keys(pct):
            return eval_line(cev, "latest eval printed")
    return eval_line(ev) if ev and ev[2] >= 2 and not grouped else ""


MEMO_MIN_POINTS = 200_000  # below this, statistics are quicker to compute than to look up


def _memo_key(r: Run, chosen: list[str], diag_keys: list[str], th, keys_given: bool) -> str | None:
    """A digest of everything run_summary's statistics depend on; None for small runs."""
    cols = r.history.columns
    if sum(len(cols[k]) for k in diag_keys if k in cols) < MEMO_MIN_POINTS:
        return None
    per_key = [(k, len(cols[k]), cols[k].first_step, cols[k].last_step, repr(cols[k].values[-1]),
                repr(cols[k].values[len(cols[k]) // 2])) for k in sorted(set(chosen) | set(diag_keys)) if k in cols]
    ts = cols.get("_timestamp")
    return AnswerMemo.key_for(r.id, ["run_summary", 3, r.id, r.history.rows, r.history.last_step, per_key,
                              repr(ts.values[-1]) if ts is not None and len(ts) else None, chosen, diag_keys,
                              dataclasses.asdict(th), keys_given, [m.__dict__ for m in r.metrics.values()]])


def _metric_lines(r: Run, chosen: list[str], keys: list[str] | str | None, th) -> list[rs.MetricLine]:
    goals = goals_for(r, chosen)
    rows = r.history.rows
    out: list[rs.MetricLine] = []
    for k in chosen:
        col = r.history.columns[k]
        st = series_stats(col.steps, col.values)
        goal = goals[k]
        role = KeyRole(k)
        best, best_step = (st.min, st.min_step) if goal == "minimize" else (st.max, st.max_step)
        m = rs.MetricLine(k, st.last, st.last_step, st.last_finite, best if goal else None,
                          best_step if goal else None, goal, bucket_means(col.values, SPARK_BUCKETS),
                          recent_trend(col.steps, col.values, th), st.count, sparse=st.count < 0.5 * rows,
                          compact=role.kind in ("lr", "grad_norm", "throughput") and not parse_keys(keys))
        out.append(m)
    return out


def _skim_summary(index: RunIndex, r: Run, job, keys: list[str] | str | None) -> str:
    """run_summary from a skim (head, tail, sampled blocks) while the full read runs: identity,
    state and last values are exact; best values and anomalies wait for the full read."""
    now = index.clock()
    chosen = choose_keys(r, keys, index.settings.main_metrics, "run_summary") if numeric_keys(r) else []
    lines: list[rs.MetricLine] = []
    compact: list[rs.MetricLine] = []
    for k in chosen:
        col = r.history.columns[k]
        role = KeyRole(k)
        m = rs.MetricLine(k, col.values[-1], col.last_step, col.values[-1], None, None, "",
                          bucket_means_by_step(col.steps, col.values, SPARK_BUCKETS),
                          recent_trend(col.steps, col.values, thresholds(index)[0]), len(col),
                          sparse=col.last_step != r.last_step,
                          compact=role.kind in ("lr", "grad_norm", "throughput") and not parse_keys(keys))
        (compact if m.compact else lines).append(m)
    status = background_read_note(r, job, f"{t.call('run_summary', run=r.id)} again for best values and anomalies",
                                  prefix="not checked yet: ")
    source = (f"{history_source(r)} (skim: head, tail and sampled blocks; last values exact, trends from "
              f"samples)")
    return rs.summary_answer(r, now, lines, [], compact, f"anomalies: {status}", source,
                             len(numeric_keys(r)) - len(chosen), bool(parse_keys(keys)))


def _console_ahead(index: RunIndex, r0: Run, shown: set[str] = frozenset()) -> str:
    """'console ahead: history to 900; console to 990: val/x 20.2%' (logged names for the console
    keys that mirror logged keys; values already shown above are not repeated)."""
    if not numeric_keys(r0):
        return ""
    view = index.console(r0)
    ch, pct, _aliases = console_logged_names(r0, view)
    if not ch.rows or ch.last_step is None or r0.last_step is None or ch.last_step <= r0.last_step:
        return ""
    last = ch.last_step
    with t.percent_keys(pct):
        vals = [f"{t.clean(k)} {t.num(c.values[-1], k)}" for k, c in ch.columns.items()
                if c.last_step == last and k not in shown][:5]
    head = f"console ahead: history to {t.step(r0.last_step)}; console to {t.step(last)}"
    return head + (": " + " | ".join(vals) if vals else " (values after the history are from the console)")


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
                    differ.append(f"{t.clean(k)} summary {t.num(sv, k)} vs history last {t.num(hv, k)}")
        if differ:
            notes.append("disagree: " + "; ".join(differ[:3]) + " (shown: history)")
    if r.sampled:
        notes.append("read from a skim")
    notes.extend(t.clean(n) for n in r.notes_read[:2])
    return src + ("; " + "; ".join(notes) if notes else "")


# ---- get_history ---------------------------------------------------------------------------------


def get_history(index: RunIndex, run: str = "latest", keys: list[str] | str | None = None, samples: int = 100,
                step_min: int | None = None, step_max: int | None = None, source: str = "auto") -> str:
    if samples < 1 or samples > MAX_HISTORY_SAMPLES:
        raise UserError(f"samples must be between 1 and {MAX_HISTORY_SAMPLES:,}; got {samples}")
    if step_min is not None and step_max is not None and step_min > step_max:
        raise UserError(f"step_min ({step_min:,}) is after step_max ({step_max:,})")
    r0 = read_for_keys(index, get_run(index, run, full=False), keys)
    r, src, pct = metric_run(index, r0, source)
    if source != "history":
        keys = in_logged_names(index, r0, keys)
    if not numeric_keys(r):
        raise UserError(f"{ra.run_label(r)} has no history yet: {empty_log_note(r)}; and no console metrics: "
                        f"{console_missing(index, r0, index.console(r0))}")
    chosen = choose_keys(r, keys, index.settings.main_metrics, "get_history")[:12]
    series = {k: (r.history.columns[k].steps, r.history.columns[k].values) for k in chosen}
    sampled = sample_join(series, samples, step_min, step_max)
    if not sampled.steps:
        h = r.history
        why = [f"{t.clean(k)} is {c}" for k in chosen if (c := cadence(r, k))]
        raise UserError(f"{ra.run_label(r)}: no point of {', '.join(map(t.clean, chosen))} in steps "
                        f"{step_min if step_min is not None else ''}..{step_max if step_max is not None else ''}; "
                        f"the run's steps are {t.steps_range(h.first_step, h.last_step)}"
                        + (f"; {'; '.join(why)}: widen the range" if why else ""))
    out = rs.history_answer(r, chosen, sampled, samples, step_min, step_max, src)
    shown_pct = [k for k in chosen if k in pct]
    if shown_pct:
        pct_keys = ", ".join(map(t.clean, shown_pct))
        out = out.replace("\nstep,", f"\n# printed as percentages, given here as fractions: {pct_keys}\nstep,", 1)
    return out


# ---- history_stats -------------------------------------------------------------------------------


def history_stats(index: RunIndex, run: str = "latest", keys: list[str] | str | None = None) -> str:
    r = read_for_keys(index, get_run(index, run, full=False), keys)
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
    r0 = read_for_keys(index, get_run(index, run, full=False), keys, extra=("_runtime",))
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
        out += ("\nconfig: " + "; ".join(map(t.clean, problems))
                + " (defaults used; fix the file and restart the server)")
    return out
