"""plot_runs: one PNG of one or several runs' curves, with the first NaN, spikes and each run's best
point marked, and a one-line caption. The curves go through get_history's sampling (each bucket's
min, max and first NaN kept); the marks come from every point."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..analysis.anomalies import check_nonfinite, check_spikes, finite_points
from ..analysis.sampling import sample_join
from ..analysis.select import metric_goal
from ..index import RunIndex
from ..render import answers as ra
from ..render import text as t
from .common import UserError, choose_keys, get_run, metric_run, numeric_keys, parse_keys, read_for_keys, thresholds

MAX_PLOT_RUNS = 8
MAX_PLOT_KEYS = 4
PLOT_SAMPLES = 600  # rows per run: one per pixel column of the 600-pixel-wide image
INSTALL_HINT = ("plot_runs needs matplotlib, which is not installed: pip install 'runwise-mcp[plot]' "
                "(or pip install matplotlib) in the server's environment, then restart the server")


@dataclass
class Curve:
    run: str  # label
    key: str
    steps: list[int]
    values: list[float | None]
    goal: str = ""  # min, max or "" (unknown)
    first_nan: int | None = None  # step
    spikes: list[tuple[int, float]] = field(default_factory=list)  # (step, value)
    best: tuple[int, float] | None = None  # (step, value)
    points: int = 0  # in the step range


@dataclass
class Plot:
    curves: list[Curve]
    log_y: bool
    step_min: int | None
    step_max: int | None
    title: str


def _best(steps, values, goal: str) -> tuple[int, float] | None:
    """(step, value) of the lowest (goal min...) or highest finite value; the first on ties."""
    if not goal.startswith(("min", "max")):  # minimize / maximize (define_metric or the name), else unknown
        return None
    xs, ys = finite_points(steps, values)
    if not len(ys):
        return None
    v = min(ys) if goal.startswith("min") else max(ys)
    return xs[ys.index(v)], v


def plot_data(index: RunIndex, runs: list[str] | str | None = None, keys: list[str] | str | None = None,
              step_min: int | None = None, step_max: int | None = None, log_y: bool = False) -> Plot:
    """The curves and marks of a plot (no drawing: that needs matplotlib, see ``render_png``)."""
    refs = parse_keys(runs) or ["latest"]
    if len(refs) > MAX_PLOT_RUNS:
        raise UserError(f"plot_runs draws at most {MAX_PLOT_RUNS} runs; got {len(refs)}. Pass fewer runs")
    if step_min is not None and step_max is not None and step_min > step_max:
        raise UserError(f"step_min ({step_min:,}) is after step_max ({step_max:,})")
    th, _problems = thresholds(index)
    curves: list[Curve] = []
    chosen_first: list[str] = []
    resolved = []
    for ref in refs:
        r0 = get_run(index, ref, full=False)
        if any(r0.id == x.id for x in resolved):
            continue
        resolved.append(r0)
    for r0 in resolved:
        r0 = read_for_keys(index, r0, keys or chosen_first or None)
        r, _src, _pct = metric_run(index, r0, "auto")
        if not numeric_keys(r):
            raise UserError(f"{ra.run_label(r)} has no metric history to plot yet")
        if parse_keys(keys):
            chosen = choose_keys(r, keys, index.settings.main_metrics, "plot_runs")
        elif not chosen_first:
            chosen = choose_keys(r, None, index.settings.main_metrics, "plot_runs")[:1]
        else:
            chosen = [k for k in chosen_first if k in r.history.columns]
        if not chosen:
            raise UserError(f"{ra.run_label(r)} logged none of {', '.join(map(t.clean, chosen_first))}; "
                            f"pass keys= that every run logged ({t.call('list_keys', run=r.id)} shows them)")
        if len(chosen) > MAX_PLOT_KEYS:
            raise UserError(f"plot_runs draws at most {MAX_PLOT_KEYS} keys per run; the keys given match "
                            f"{len(chosen)} in {ra.run_label(r)}. Pass fewer keys")
        chosen_first = chosen_first or chosen
        label = ra.run_label(r, resolved)
        series = {k: (r.history.columns[k].steps, r.history.columns[k].values) for k in chosen}
        sampled = sample_join(series, PLOT_SAMPLES, step_min, step_max)
        for k in chosen:
            steps, values = series[k]
            goal = metric_goal(r, k)[0]
            c = Curve(label, k, sampled.steps, sampled.cells[k], goal, points=sampled.points[k])
            lo = 0 if step_min is None else _bisect_left(steps, step_min)
            hi = len(steps) if step_max is None else _bisect_right(steps, step_max)
            st, vs = steps[lo:hi], values[lo:hi]
            nan = check_nonfinite(k, st, vs)
            c.first_nan = nan.step if nan else None
            c.spikes = [(f.step, f.data["value"]) for f in check_spikes(k, st, vs, th)]
            c.best = _best(st, vs, goal)
            curves.append(c)
    if not any(c.points for c in curves):
        raise UserError(f"no point of {', '.join(map(t.clean, chosen_first))} in steps "
                        f"{'' if step_min is None else step_min}..{'' if step_max is None else step_max}")
    title = ", ".join(dict.fromkeys(c.run for c in curves))
    return Plot(curves, log_y, step_min, step_max, title)


def _bisect_left(a, x) -> int:
    import bisect
    return bisect.bisect_left(a, x)


def _bisect_right(a, x) -> int:
    import bisect
    return bisect.bisect_right(a, x)


def caption(p: Plot, png_bytes: int) -> str:
    """One line: what is drawn and what is marked."""
    runs = list(dict.fromkeys(c.run for c in p.curves))
    keys = list(dict.fromkeys(c.key for c in p.curves))
    steps = [s for c in p.curves for s in c.steps]
    rng = t.steps_range(min(steps), max(steps)) if steps else "none"
    marks = []
    nans = [c for c in p.curves if c.first_nan is not None]
    if nans:
        marks.append("first NaN " + ", ".join(f"{t.clean(c.key)}@{t.step(c.first_nan)}"
                                              + (f" ({t.clean(c.run)})" if len(runs) > 1 else "") for c in nans))
    n_spikes = sum(len(c.spikes) for c in p.curves)
    if n_spikes:
        marks.append(t.plural(n_spikes, "spike"))
    bests = [c for c in p.curves if c.best]
    if bests:
        marks.append("best ● " + ", ".join(f"{t.clean(c.key)} {t.num(c.best[1], c.key)}@{t.step(c.best[0])}"
                                           + (f" ({t.clean(c.run)})" if len(runs) > 1 else "") for c in bests))
    pts = sum(c.points for c in p.curves)
    shown = sum(sum(v is not None for v in c.values) for c in p.curves)
    sampled = "" if shown == pts else f", {shown:,} of {pts:,} points drawn (each bucket's min, max and first NaN)"
    return (f"plot of {', '.join(map(t.clean, keys))} for {', '.join(map(t.clean, runs))}: steps {rng}"
            f"{', log y' if p.log_y else ''}{sampled}; " + ("; ".join(marks) if marks else "no NaN, spike or best marked")
            + f" ({png_bytes / 1024:.0f} KB PNG)")


def plot_runs(index: RunIndex, runs: list[str] | str | None = None, keys: list[str] | str | None = None,
              step_min: int | None = None, step_max: int | None = None, log_y: bool = False) -> tuple[bytes, str]:
    """(PNG bytes, caption). Raises UserError with the install line when matplotlib is missing."""
    try:
        from ..render.plot import render_png
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    p = plot_data(index, runs, keys, step_min, step_max, log_y)
    png = render_png(p)
    return png, caption(p, len(png))
