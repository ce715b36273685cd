"""tail_run: the live view of a run for agents."""

from __future__ import annotations

import os

from ..analysis.select import KeyRole, main_keys
from ..analysis.stats import MIN_RATE_ROWS, MIN_RATE_SPAN, wall_rate
from ..index import ConsoleView, RunIndex
from ..model import Run
from ..render import answers as ra
from ..render import text as t
from ..sources.console import WARN_LINE, is_error_line, last_traceback
from .common import UserError, eval_line, flatten_config, get_run, latest_eval, numeric_keys

# ---- tail_run ------------------------------------------------------------------------------------

TAIL_READ_BYTES = 4 << 20  # a first tail_run on a huge output.log parses only its last 4 MiB
TOTAL_KEYS = ("max_steps", "total_steps", "num_train_steps", "train_steps", "num_steps", "max_iters",
              "max_iter", "iterations", "total_iters", "steps")


def tail_run(index: RunIndex, run: str = "latest", lines: int = 20, cursor: str | None = None) -> str:
    if not 0 <= lines <= 500:
        raise UserError(f"lines must be between 0 and 500; got {lines}")
    r = get_run(index, run)
    view = index.console(r, tail_only=TAIL_READ_BYTES)
    now = index.clock()
    cf = view.cursor_file
    out = [f"{ra.run_label(r)} {t.state(r.state, now)} | step {t.step(r.last_step)}"
           + (f" | console {' + '.join(map(t.clean, view.files))}" if view.files else
              f" | no console: {r.source} records logged values only" if r.source != "wandb" else
              " | no console output found")]
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
        text = ln.rstrip(" \t\r\n")  # blanks only: a trailing control character is shown, escaped
        if text.startswith("Traceback (most recent call last)"):
            in_tb = True
        mark = "!" if in_tb or is_error_line(text) else ("~" if WARN_LINE.search(text) else " ")
        if in_tb and text and not text.startswith((" ", "Traceback")):
            in_tb = False  # the exception line ends the traceback
        # the line's own content is escaped: a newline or control character in it is shown as \n,
        # \x1b..., so it stays one line, after its mark, and cannot pass for a line of ours
        line = f"{mark} {t.short(text, 200) if len(text) > 200 else t.clean(text)}"
        if line == prev:
            count += 1
            continue
        emit(prev, count)
        prev, count = line, 1
    emit(prev, count)
    return out


def _crash(raw: list[tuple[int, str]]) -> list[str]:
    """The exception line and the last frames of the last traceback in the console."""
    head = "Traceback (most recent call last)"  # may follow a progress bar's last redraw on its line
    tb = last_traceback([x[x.find(head):] if x.find(head) > 0 else x for _, x in raw])
    if tb is None:
        return []
    exc, frames = tb
    shown = [f"  at {t.clean(os.path.basename(path))}:{t.clean(line)} in {t.clean(func)}"
             + (f": {t.short(code, 100)}" if code else "")
             for path, line, func, code in frames[-2:]]
    return ([f"crash: {t.short(exc, 200)}"] if exc else ["crash: traceback without an exception line"]) + shown


def _latest_lines(index: RunIndex, r: Run, view: ConsoleView) -> list[str]:
    out = []
    if numeric_keys(r):
        ev = latest_eval(r.history.columns)
        shown = {k for k, _, _ in ev[1]} if ev else set()
        parts = []
        for k in [k for k in main_keys(r, index.settings.main_metrics, limit=20) if k not in shown][:6]:
            col = r.history.columns[k]
            at = f" @{t.step(col.last_step)}" if col.last_step != r.last_step else ""
            parts.append(f"{t.clean(k)} {t.num(col.values[-1], k)}{at}")
        if parts:
            out.append(f"latest logged @{t.step(r.last_step)}: " + " | ".join(parts))
        if ev:  # every validation set at the latest eval step, on its own line
            out.append(eval_line(ev))
    ch = view.history
    if ch.rows:
        last = ch.last_step
        parts = []
        for k, col in ch.columns.items():
            if col.last_step is not None and last is not None and col.last_step >= last and len(parts) < 8:
                parts.append(f"{t.clean(k)} {t.num(col.values[-1], k)}")
        # the latest validation values printed at an earlier step: every set's, latest first
        evals = sorted(((k, col) for k, col in ch.columns.items()
                        if col.last_step != last and KeyRole(k).split in ("val", "test")),
                       key=lambda kc: (-(kc[1].last_step or 0), kc[0]))
        for k, col in evals[:6]:
            parts.append(f"{t.clean(k)} {t.num(col.values[-1], k)} @{t.step(col.last_step)}")
        ahead = ""
        if r.last_step is not None and last is not None and last > r.last_step:
            ahead = f" (ahead of the logged history, which ends at {t.step(r.last_step)})"
        out.append(f"latest printed @{t.step(last)}{ahead}: " + " | ".join(parts))
    return out


def _speed(r: Run, view: ConsoleView) -> str:
    """The step rate over the last ten minutes of wall clock (`_timestamp`; else `_runtime` or the
    console's clock), from at least MIN_RATE_ROWS rows over at least MIN_RATE_SPAN seconds of one
    stretch (a resume ends it); else the progress bar's rate; else why it cannot be told."""
    rate = None
    how = ""
    cols = r.history.columns
    clock = r.segments[-1].hints.get("clock") if r.segments else None
    col, name = cols.get("_timestamp"), "_timestamp (wall clock)"
    if col is None or len(col) < 2:
        col, name = cols.get("_runtime"), clock or "_runtime"
    unknown = ""
    if col is not None and len(col) >= 2:
        seg0 = r.segments[-1].first_step if len(r.segments) > 1 else None  # a resume: its last segment
        rate, dt, rows = wall_rate(col.steps, col.values, first_step=seg0)
        if rate is not None:
            how = f"over the last {t.duration(dt)} ({t.plural(rows, 'row')}) of {t.clean(name)}"
        else:
            unknown = (f"speed: unknown: the last stretch of {t.clean(name)} has {t.plural(rows, 'row')} over "
                       f"{t.duration(dt)} (a rate needs {MIN_RATE_ROWS} rows over {MIN_RATE_SPAN:g}s or more)")
    if rate is None and view.rate:
        rate, how = view.rate, "as printed by the progress bar"
    if rate is None:
        return unknown
    total, basis = view.total, "progress counter"
    if not total:
        flat = dict(flatten_config(r.config))
        for k in TOTAL_KEYS:
            for name, v in flat.items():
                if name.split(".")[-1] == k and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                    total, basis = int(v), f"config {t.clean(name)}"
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
