"""The text of the analysis answers: summary, history, stats, best run, compare, aggregate,
diagnose. Values come computed; this module only words and lays them out."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..analysis.anomalies import Diagnosis, Finding, Stability
from ..analysis.compare import MISSING, Aggregate, Cell, Ranked, delta
from ..analysis.sampling import Sampled
from ..analysis.stats import SeriesStats
from ..model import Run
from . import text as t
from .answers import copies_line, copies_word, run_label


def sci(v: float | None) -> str:
    """A slope or small rate: 2 significant digits, scientific when small."""
    if v is None or v != v:
        return "-"
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-2 <= a < 1e4:
        return f"{v:+.2g}"
    return f"{v:+.1e}"


def pct(v: float) -> str:
    return f"{v:+.0f}%" if abs(v) >= 10 else f"{v:+.1f}%"


# ---- run_summary ------------------------------------------------------------------------------


@dataclass
class MetricLine:
    key: str
    last: float
    last_step: int | None
    last_finite: float | None = None
    best: float | None = None
    best_step: int | None = None
    goal: str = ""
    spark: list[float] = field(default_factory=list)
    direction: int = 0
    points: int = 0
    sparse: bool = False  # logged at far fewer steps than the run has (validation)
    compact: bool = False  # lr / grad norm: value and trend only


def metric_line(m: MetricLine, label: str | None = None) -> str:
    label = t.clean(label or m.key)
    v = t.num(m.last, m.key)
    at = f" @{t.step(m.last_step)}" if m.sparse and m.last_step is not None else ""
    if m.last != m.last and m.last_finite is not None:
        v += f" (last finite {t.num(m.last_finite, m.key)})"
    s = f"{label} {v}{at} {t.sparkline(m.spark)}{t.arrow(m.direction)}"
    if m.compact:
        return s
    if m.best is not None and m.goal:
        if m.best != m.last_finite or m.best_step != m.last_step:
            s += f" best {t.num(m.best, m.key)} @{t.step(m.best_step)}"
        else:
            s += " (best)"
    if m.sparse:
        s += f" ({m.points:,} pts)"
    return s


def summary_answer(run: Run, now: float, lines: list[MetricLine], groups: list[tuple[str, list[MetricLine]]],
                   compact: list[MetricLine], anomalies: str, source: str, extra_keys: int, keys_given: bool) -> str:
    head = [f"{run_label(run)} {t.state(run.state, now)}"]
    if len(run.segments) > 1:
        head.append(f"{len(run.segments)} segments (resumed)")
    if run.copies:
        head.append(copies_word(run))
    head.append(f"step {t.step(run.last_step)}" if run.last_step is not None else "no history yet")
    head.append(t.duration(run.runtime))
    if run.group and not run.name.startswith(run.group):
        head.append(f"group {t.clean(run.group)}")
    if run.tags:
        head.append("tags " + ",".join(t.clean(x) for x in run.tags))
    out = [" | ".join(head)]
    if run.notes:  # free text: quoted when it holds anything to escape
        out.append("notes: " + t.short(run.notes, 100, quoted=True))
    # validation sets logged with one metric name first: each set's latest value, at its step
    for pattern, ms in groups:
        out.append(f"{t.clean(pattern)}: " + " | ".join(metric_line(m, _set_name(m.key)) for m in ms))
    out.extend(metric_line(m) for m in lines)
    if compact:
        out.append(" | ".join(metric_line(m) for m in compact))
    if extra_keys and not keys_given:
        out.append(f"+{extra_keys:,} more keys: {t.call('list_keys', run=run.id)}; "
                   f"pick with {t.call('run_summary', run=run.id, keys=['<key>'])}")
    if anomalies:
        out.append(anomalies)
    out.append("source: " + t.clean(source))
    if run.copies:
        out.append(copies_line(run))
    return "\n".join(out)


def _set_name(key: str) -> str:
    head = key.split("/")[0]
    for p in ("val_", "valid_", "validation_", "eval_", "test_", "dev_"):
        if head.lower().startswith(p):
            return head[len(p):]
    return head


def anomalies_line(d: Diagnosis, run_id: str, limit: int = 3) -> str:
    if not d.findings:
        return f"anomalies: none over {d.points:,} points ({', '.join(d.checked)} checked)"
    # a grad-norm spike at a loss spike's step goes on that spike's words
    joined = {(f.data["with"], f.step): f for f in d.findings if f.check == "spike" and f.data.get("with")}
    findings = [f for f in d.findings if not (f.check == "spike" and f.data.get("with"))]
    shown = []
    for f in findings[:limit]:
        s = short_finding(f)
        g = joined.get((f.key, f.step)) if f.check == "spike" else None
        if g is not None:
            s += f" (with {t.clean(g.key)}" + (f" {g.data['ratio']:.0f}×)" if g.data["ratio"] is not None else ")")
        shown.append(s)
    more = len(findings) - limit
    return ("anomalies: " + "; ".join(shown) + (f"; +{more} more" if more > 0 else "")
            + f" (details: {t.call('diagnose_run', run=run_id)})")


def short_finding(f: Finding) -> str:
    """One finding in a few words, for run_summary."""
    d = f.data
    k = t.clean(f.key)
    if f.check == "nan":
        return f"{k} {d['kind']} from {t.step(f.step)}"
    if f.check == "spike":
        ratio = f" {d['ratio']:.0f}×" if d["ratio"] is not None else ""
        return f"{k} spike{ratio} @{t.step(f.step)}{', recovered' if d['recovered'] else ''}"
    if f.check == "divergence":
        return f"{k} diverging since ~{t.step(f.step)} ({pct(d['rise'] * 100)})"
    if f.check == "overfit":
        word = "peak" if d["goal"] == "maximize" else "min"
        return f"overfit: {k} {word} @{t.step(f.step)}"
    if f.check == "plateau":
        return f"{k} plateau since ~{t.step(f.step)}"
    if f.check == "grad_norm":
        return f"{k} {d['kind']} from ~{t.step(f.step)}"
    if f.check == "throughput":
        return f"throughput {pct(d['change'] * 100)} from ~{t.step(f.step)}"
    if f.check == "noise":
        return f"{k} noise ×{d['ratio']:.0f}"
    return f"{t.clean(f.check)} {k}"


# ---- diagnose_run -----------------------------------------------------------------------------


def finding(f: Finding) -> str:
    d = f.data
    key = f.key
    k = t.clean(key)
    if f.check == "nan":
        kind = d["kind"]
        parts = []
        if d["nan"]:
            parts.append(f"{d['nan']:,} NaN")
        if d["inf"]:
            parts.append(f"{d['inf']:,} inf")
        end = "to the end" if d["to_end"] else (f"finite again @{t.step(d['recovered_at'])}"
                                                 if d["recovered_at"] is not None else "")
        return f"{kind}: {k} first {kind} @{t.step(f.step)} ({', '.join(parts)}{', ' + end if end else ''})"
    if f.check == "spike":
        med = f"the median {t.num(d['baseline'], key)} of the {d.get('window', 50)} points before"
        size = f"{d['ratio']:.1f}× {med}" if d["ratio"] else med
        rec = "at the end of the run" if d["at_end"] else ("recovered" if d["recovered"] else "did not recover")
        # how many points rose over the spike threshold, and over which steps
        n = (f"; {d['points']} points above the spike threshold, steps {t.step(d['first'])}–{t.step(d['last'])}"
             if d["points"] > 1 and "first" in d else "")
        same = f"; same step as the {t.clean(d['with'])} spike" if d.get("with") else ""
        return f"spike: {k} {t.num(d['value'], key)} @{t.step(f.step)} ({size}{n}), {rec}{same}"
    if f.check == "divergence":
        if "low_point" not in d:  # a finding memoised before the raw points were kept
            return (f"divergence: {k} rising since ~{t.step(f.step)}: lowest {t.num(d['min'], key)}, "
                    f"now {t.num(d['last'], key)} ({pct(d['rise'] * 100)}) at {t.step(d['last_step'])}")
        # the raw lowest point (run_summary's best) and the smoothed curve the rise is measured on
        return (f"divergence: {k} rising since ~{t.step(f.step)}: lowest point {t.num(d['low_point'], key)} "
                f"@{t.step(d['low_step'])}, last {t.num(d['last_point'], key)} @{t.step(d['last_step'])}; "
                f"smoothed (means of {d['blocks']} blocks) {t.num(d['min'], key)} → {t.num(d['last'], key)} "
                f"({pct(d['rise'] * 100)})")
    if f.check == "overfit":
        word = "peaked" if d["goal"] == "maximize" else "lowest"
        s = (f"overfit: {k} {word} {t.num(d['best'], key)} @{t.step(f.step)}, now {t.num(d['last'], key)} "
             f"({pct(-d['change'] * 100 if d['goal'] == 'maximize' else d['change'] * 100)})")
        if "train_key" in d:
            s += (f" while {t.clean(d['train_key'])} fell {t.num(d['train_at_best'], d['train_key'])} → "
                  f"{t.num(d['train_last'], d['train_key'])}")
        return s + f"; best checkpoint ≈ step {t.step(f.step)}"
    if f.check == "plateau":
        return (f"plateau: {k} flat since ~{t.step(f.step)} ({t.step(d['span'])} steps, "
                f"{d['fraction'] * 100:.0f}% of the run) at ~{t.num(d['level'], key)}")
    if f.check == "grad_norm":
        return (f"grad norm: {k} {d['kind']} from ~{t.step(f.step)}: {t.num(d['early'], key)} early → "
                f"{t.num(d['late'], key)} late")
    if f.check == "throughput":
        name = "steps/s (from _runtime)" if d["derived"] else k
        return (f"throughput: {name} {t.num(d['early'])} → {t.num(d['late'])} "
                f"({pct(d['change'] * 100)}) from ~{t.step(f.step)}")
    if f.check == "noise":
        return f"noise: {k} step-to-step std at the end is {d['ratio']:.1f}× its typical level"
    return f"{t.clean(f.check)}: {k} @{t.step(f.step)}"


def stability_line(stab: list[Stability], limit: int = 6) -> str:
    parts = []
    for s in stab[:limit]:
        noise = f" noise ×{s.noise_ratio:.1f}" if s.noise_ratio is not None else ""
        parts.append(f"{t.clean(s.key)} {sci(s.slope)}/step{noise}")
    more = f" | +{len(stab) - limit} keys" if len(stab) > limit else ""
    return "trend (Theil–Sen slope; noise = rolling std at the end vs typical): " + " | ".join(parts) + more


def diagnose_answer(run: Run, d: Diagnosis, limit: int = 8) -> str:
    label = run_label(run)
    checks = ", ".join(d.checked)
    if not d.findings:
        out = [f"{label}: healthy, no anomalies over {d.points:,} points of {t.plural(len(d.keys), 'key')} "
               f"(checked: {checks})"]
    else:
        out = [f"{label}: {t.plural(len(d.findings), 'finding')} over {d.points:,} points of "
               f"{t.plural(len(d.keys), 'key')} (checked: {checks})"]
        out.extend(finding(f) for f in d.findings[:limit])
        if len(d.findings) > limit:
            out.append(f"… {len(d.findings) - limit} more; narrow with "
                       f"{t.call('diagnose_run', run=run.id, keys=[d.findings[limit].key])}")
    if d.stability:
        out.append(stability_line(d.stability))
    return "\n".join(out)


# ---- get_history ------------------------------------------------------------------------------


def csv_num(v: float | None) -> str:
    if v is None:
        return ""
    if v != v:
        return "nan"
    if v in (math.inf, -math.inf):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def history_answer(run: Run, keys: list[str], s: Sampled, samples: int, step_min: int | None,
                   step_max: int | None, source: str) -> str:
    rng = ""
    if step_min is not None or step_max is not None:
        rng = f" in steps {'' if step_min is None else f'{step_min:,}'}..{'' if step_max is None else f'{step_max:,}'}"
    counts = ", ".join(f"{t.clean(k)} {s.points[k]:,} pts" for k in keys)
    head = f"# {run_label(run)}{rng}: {counts}; {t.plural(len(s.steps), 'row')}"
    if s.buckets:
        full = [k for k in keys if s.kept[k] == s.points[k]]
        head += (f", sampled: per key the min, max and first NaN of each of {s.buckets:,} step buckets, "
                 f"plus first and last point")
        if full:
            head += f"; every point of {', '.join(map(t.clean, full))}"
    else:
        head += ", every point"
    head += "; blank = not logged at that step"
    if source:
        head += f"; from {t.clean(source)}"
    out = [head]
    if s.buckets:
        lo = s.steps[0] if s.steps else 0
        hi = s.steps[-1] if s.steps else 0
        mid = (lo + hi) // 2
        out.append(f"# zoom: {t.call('get_history', run=run.id, keys=keys, step_min=lo, step_max=mid)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", *map(t.clean, keys)])  # escaped, then CSV-quoted (commas, quotes)
    for i, st in enumerate(s.steps):
        w.writerow([st, *(csv_num(s.cells[k][i]) for k in keys)])
    return "\n".join(out) + "\n" + buf.getvalue().rstrip("\n")


# ---- history_stats ----------------------------------------------------------------------------


def stats_answer(run: Run, rows: list[tuple[str, SeriesStats, float | None]]) -> str:
    out = [f"{run_label(run)}: stats over all points (slope: least squares over the last 10% of points)"]
    for key, st, slope in rows:
        k = t.clean(key)
        if not st.count:
            out.append(f"{k}: no points")
            continue
        bits = [f"{k}: {st.count:,} pts {t.steps_range(st.first_step, st.last_step)}",
                f"first {t.num(st.first, key)} last {t.num(st.last, key)}"]
        if st.min is not None:
            bits.append(f"min {t.num(st.min, key)} @{t.step(st.min_step)} max {t.num(st.max, key)} "
                        f"@{t.step(st.max_step)}")
            bits.append(f"mean {t.num(st.mean, key)}")
        bad = []
        if st.nan:
            bad.append(f"{st.nan:,} NaN")
        if st.inf:
            bad.append(f"{st.inf:,} inf")
        if bad:
            bits.append(", ".join(bad))
        if slope is not None:
            bits.append(f"slope {sci(slope)}/step")
        out.append(" | ".join(bits))
    return "\n".join(out)


# ---- best_run ---------------------------------------------------------------------------------


def short_state(st) -> str:
    """A run's state in a word ("killed?" when judged from silence, not from an exit record)."""
    return t.state(st, 0.0).split(" ", 1)[0]


def best_answer(metric: str, goal: str, goal_basis: str, by: str, ranked: list[Ranked], missing: list[Run],
                top: int, query: str, total: int, now: float, labels: dict[str, str] | None = None) -> str:
    """The ranking: a line per run (its name alone when that names one run), the other value only
    where it differs, the state in a word, said once when every shown run shares it."""
    labels = labels or {}
    scope = f"{t.plural(total, 'run')}" + (f" matching {query!r}" if query else "")
    how = "best value over history" if by == "best" else "last logged value"
    other = "last" if by == "best" else "best"
    shown = ranked[:top]
    states = {short_state(r.run.state) for r in shown}
    shared = next(iter(states)) if len(states) == 1 else ""
    head = (f"best {t.clean(metric)} ({goal}, from {t.clean(goal_basis)}) by {how} ({other} shown where it "
            f"differs): {len(ranked):,} of {scope} logged it" + (f"; all shown {shared}" if shared else ""))
    out = [head]
    for i, r in enumerate(shown, 1):
        label = labels.get(r.run.id) or run_label(r.run)
        if by == "best":
            main = f"{t.num(r.best, metric)} @{t.step(r.best_step)}"
            differs = (r.last, r.last_step) != (r.best, r.best_step)
            main += f" (last {t.num(r.last, metric)} @{t.step(r.last_step)})" if differs else ""
        else:
            main = f"last {t.num(r.last, metric)} @{t.step(r.last_step)}"
            differs = (r.last, r.last_step) != (r.best, r.best_step)
            main += f" (best {t.num(r.best, metric)} @{t.step(r.best_step)})" if differs else ""
        bad = f", {r.nonfinite:,} NaN/inf" if r.nonfinite else ""
        state = "" if shared else f" | {short_state(r.run.state)}"
        out.append(f"{i}. {label} {main}{bad}{state}")
    if len(ranked) > top:
        out.append(f"… {len(ranked) - top} more: {t.call('best_run', metric=metric, top=len(ranked))}")
    if missing:
        names = ", ".join(labels.get(r.id) or run_label(r) for r in missing[:8])
        more = f" +{len(missing) - 8}" if len(missing) > 8 else ""
        out.append(f"without {t.clean(metric)}: {names}{more}")
    return "\n".join(out)


# ---- compare_runs -----------------------------------------------------------------------------


@dataclass
class Column:
    run: Run
    label: str  # the entry as given
    step: int | None  # the step read (None: final values)
    how: str  # "final", "step 50,000", "stage 1 (curriculum/stage) = step 300"


def _cell(c: Cell, key: str, col: Column) -> str:
    if c.value is None:
        return "-"
    s = t.num(c.value, key)
    if col.step is not None and c.step != col.step:
        s += f" @{t.step(c.step)}"
    return s


def _delta(base: Cell, c: Cell, key: str) -> str:
    d = delta(base.value, c.value, t.is_fraction_key(key))
    if d is None:
        return ""
    unit, v = d
    if unit == "pp":
        return f" ({v:+.1f}pp)"
    if unit == "abs":
        return f" ({v:+.3g})"
    return f" ({pct(v)})"


def compare_answer(cols: list[Column], keys: list[str], cells: dict[str, list[Cell]], diffs: list[tuple[str, list[Any]]],
                   fmt: str, hidden: int, min_change: float, cut: int, config_diff: bool, config_cut: int,
                   notes: list[str], next_call: str = "", keys_given: bool = False) -> str:
    if fmt == "json":
        return json.dumps({
            "runs": [{"entry": c.label, "id": c.run.id, "name": c.run.name, "step": c.step, "read": c.how} for c in cols],
            "metrics": {k: [{"value": _json_num(x.value), "step": x.step} for x in cells[k]] for k in keys},
            "config_diff": {k: [None if v is MISSING else v for v in vals] for k, vals in diffs} if config_diff else None,
            "notes": notes,
        }, separators=(",", ":"), default=str, allow_nan=False)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        # fields escaped (no raw newline), then CSV-quoted by the csv module (commas, quotes)
        w.writerow(["key", *(t.clean(c.run.display_name) + (f"@{c.step}" if c.step is not None else "")
                             for c in cols)])
        for k in keys:
            w.writerow([t.clean(k), *(csv_num(x.value) for x in cells[k])])
        for k, vals in diffs if config_diff else []:
            w.writerow([f"config.{t.clean(k)}", *("" if v is MISSING else t.short(v, 200) for v in vals)])
        return buf.getvalue().rstrip("\n")
    names = [t.clean(c.run.display_name) for c in cols]
    use_letters = len(set(names)) < len(names) or max(len(n) for n in names) > 24
    heads = [chr(65 + i) if use_letters else n for i, n in enumerate(names)]
    out = []
    if len(cols) == 1:
        out.append(f"{run_label(cols[0].run)}: {cols[0].how}; values at or before that step (@ marks an earlier step)")
        use_letters = False
    else:
        where = "final values" if all(c.step is None for c in cols) else \
            "values at or before each step (@ marks an earlier step)"
        out.append(f"compare {len(cols)} runs, {where}; Δ vs {heads[0]} (pp for accuracies)")
        for h, c in zip(heads, cols):
            out.append(f"{h} = {run_label(c.run)}: {c.how}" if use_letters else f"{run_label(c.run)}: {c.how}")
    rows = [[t.clean(k)] + [_cell(cells[k][0], k, cols[0])] +
            [_cell(x, k, c) + _delta(cells[k][0], x, k) for x, c in zip(cells[k][1:], cols[1:])] for k in keys]
    table_head = ["key", *heads] if len(cols) > 1 else ["key", "value"]
    if fmt == "md":
        out.extend(_md([table_head] + rows))
    else:
        out.extend(_aligned([table_head] + rows))
    if not keys:
        out.append("no metric to show" + (f" changes by at least {min_change:g}%" if min_change else ""))
    if hidden:
        out.append(f"{t.plural(hidden, 'key')} changing less than {min_change:g}% hidden")
    if cut:
        out.append(f"… {t.plural(cut, 'more key')}; next: {next_call}")
    if config_diff:
        out.extend(_config_lines(cols, heads, diffs, config_cut, fmt, keys_given))
    out.extend(t.clean(x) for x in notes)
    return "\n".join(x for x in out if x)


def _config_lines(cols: list[Column], heads: list[str], diffs: list[tuple[str, list[Any]]], config_cut: int,
                  fmt: str, keys_given: bool) -> list[str]:
    """The config differences: keys set in only one run as one line per run ("8 keys only in B:
    batch_size, data.name, …"), then a row per key whose values differ. With ``keys`` given (the
    question is about metrics), only the first few value rows."""
    if not diffs:
        return ["config: identical"]
    only: dict[int, list[str]] = {}
    rows = []
    for k, vals in diffs:
        present = [i for i, v in enumerate(vals) if v is not MISSING]
        if len(present) == 1 and len(vals) > 1:
            only.setdefault(present[0], []).append(k)
        else:
            rows.append((k, vals))
    total = len(diffs) + config_cut
    out = [f"config: {t.plural(total, 'key')} differ" + (" (first shown)" if config_cut else "")]
    for i, ks in sorted(only.items()):
        names = ", ".join(t.clean(k) for k in ks[:4]) + (", …" if len(ks) > 4 else "")
        out.append(f"{t.plural(len(ks), 'key')} only in {heads[i]}" + ("" if keys_given else f": {names}"))
    limit = 6 if keys_given else len(rows)
    crow = [[t.clean(k), *("-" if v is MISSING else t.short(v, 40) for v in vals)] for k, vals in rows[:limit]]
    if crow:
        if fmt == "md":
            out.extend(_md([["config", *heads]] + crow))
        else:
            out.extend(_aligned(crow))
    if len(rows) > limit or config_cut:
        out.append(f"… {len(rows) - limit + config_cut} more config values differ: get_config(run=..., pattern=...)")
    return out


def _md(rows: list[list[str]]) -> list[str]:
    """A Markdown table: the first row is the header; a cell's pipes are escaped (``\\|``)."""
    head, *body = rows
    return (["| " + " | ".join(map(t.cell_md, head)) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(map(t.cell_md, r)) + " |" for r in body])


def _json_num(v: float | None) -> float | str | None:
    if v is None:
        return None
    if not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return v


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# ---- aggregate_runs ---------------------------------------------------------------------------


def aggregate_answer(aggs: list[Aggregate], runs: list[Run], at: int | None, scope: str) -> str:
    where = "the last logged value" if at is None else f"the last value at or before step {at:,}"
    out = [f"aggregate over {t.plural(len(runs), 'run')} ({t.clean(scope)}), {where}; std = sample std (n-1)"]
    rows = []
    for a in aggs:
        k = a.key
        if not a.n:
            rows.append([t.clean(k), "no finite values"])
            continue
        std = "" if a.std is None else f" ± {t.num(a.std, k) if not t.is_fraction_key(k) else f'{a.std * 100:.2f}%'}"
        row = [t.clean(k), f"mean {t.num(a.mean, k)}{std}", f"min {t.num(a.min, k)}", f"max {t.num(a.max, k)}",
               f"n={a.n}"]
        if a.missing:
            row.append("not logged by " + ", ".join(t.clean(r.display_name) for r in a.missing[:5]))
        if a.nonfinite:
            row.append("NaN/inf in " + ", ".join(t.clean(r.display_name) for r in a.nonfinite[:5]))
        rows.append(row)
    width = max(len(r) for r in rows) if rows else 0
    out.extend(_aligned([r + [""] * (width - len(r)) for r in rows]) if rows else [])
    steps = {}
    for a in aggs:
        for r, _v, s in a.values:
            steps.setdefault(r.id, set()).add(s)
    used = []
    for r in runs:
        st = steps.get(r.id)
        mark = f" @{t.step(max(st))}" if st and len(st) == 1 else ""
        used.append(run_label(r) + mark)
    out.append("runs: " + ", ".join(used))
    return "\n".join(out)
