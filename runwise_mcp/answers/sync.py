"""sync_runs: status, export, upload."""

from __future__ import annotations

import os
from collections.abc import Callable

from .. import confine
from .. import wandb_sync as sy
from ..index import RunIndex
from ..model import Run
from ..render import answers as ra
from ..render import text as t
from .common import UserError, get_run, parse_keys, searched

# ---- sync_runs -----------------------------------------------------------------------------------

MAX_STATUS_RUNS = 30


def sync_runs(index: RunIndex, runs: list[str] | str | None = None, action: str = "status", dest: str | None = None,
              in_place: bool = False, progress: Callable[[float, float, str], None] | None = None,
              env: dict[str, str] | None = None, format: str = "wandb") -> str:
    with confine.using(index.roots):  # the status reads files of the run directories: under the roots only
        return _sync_runs(index, runs, action, dest, in_place, progress, env, format)


def _sync_runs(index: RunIndex, runs: list[str] | str | None, action: str, dest: str | None, in_place: bool,
               progress: Callable[[float, float, str], None] | None, env: dict[str, str] | None,
               format: str = "wandb") -> str:
    if action not in ("status", "export", "upload"):
        raise UserError(f"action must be status, export or upload; got {action!r}")
    if format not in ("wandb", "csv"):
        raise UserError(f"format must be wandb (wandb's own files) or csv (one wide history.csv); got {format!r}")
    if format != "wandb" and action != "export":
        raise UserError("format applies to action=\"export\" only")
    refs = parse_keys(runs)
    if action != "status" and not refs:
        unsynced = [r for r in index.runs() if r.source == "wandb" and any(sy.segment_status(s).synced == "not synced"
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
    other = [r for r in chosen if r.source != "wandb"]
    if other:
        raise UserError(f"sync_runs applies to W&B runs only; {', '.join(ra.run_label(r) for r in other[:5])} "
                        f"{'is a' if len(other) == 1 else 'are'} {other[0].source} run{'s' if len(other) > 1 else ''}, "
                        f"read directly by every other tool")
    if action == "status":
        return _sync_status(index, chosen or [r for r in index.runs() if r.source == "wandb"], bool(refs))
    if action == "export":
        return _sync_export(index, chosen, dest, in_place, progress, env, format)
    return _sync_upload(index, chosen, progress, env)


def _sync_status(index: RunIndex, runs: list[Run], explicit: bool) -> str:
    if not runs:
        everything = index.runs()
        if everything:
            raise UserError(f"sync_runs applies to W&B runs only; the {t.plural(len(everything), 'run')} here "
                            f"are {', '.join(sorted({r.source for r in everything}))} runs")
        raise UserError(ra.no_runs_message(searched(index), index.problems()))
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
            bits = [f"{ra.run_label(r)}{seg}: {st.synced}", f"log {t.clean(st.log)}",
                    f"{t.plural(st.rows, 'row')} to step {t.step(st.last_step)}" if st.rows else "no rows",
                    t.clean(st.console)]
            if s.layout == "wandb":
                bits.append("files/ complete" if not missing else "files/ lacks " + ", ".join(map(t.clean, missing)))
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
                 progress: Callable[[float, float, str], None] | None, env: dict[str, str] | None,
                 format: str = "wandb") -> str:
    if in_place and dest:
        raise UserError("pass either dest or in_place=true, not both")
    if dest and "\0" in dest:
        raise UserError("dest contains a NUL character, which no path can hold; pass a directory path")
    root = ""
    if not in_place:
        try:
            root = os.path.abspath(os.path.expanduser(dest)) if dest else sy.default_export_root(env)
            real_root = os.path.realpath(root)
        except ValueError as e:  # e.g. a NUL in dest
            raise UserError(f"dest is not a usable path ({e}); pass a directory outside the roots") from None
        if dest and index.roots.contains(real_root):
            raise UserError(f"dest {root} is inside a root ({_root_of(index, real_root)}); an export never writes "
                            f"under the roots it reads: pass a dest outside them, or in_place=true to add the "
                            f"files to the run's own files/")
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
        full = index.read_full(r)
        segs = index.segments(full)
        if in_place:
            target = segs[-1].files_dir if segs else ""
            if not target or not os.path.lexists(target):
                raise UserError(f"{ra.run_label(full)} has no files/ directory to export into; use dest= instead")
        else:
            target = os.path.join(root, sy.safe_name(full.id))
            real_target = os.path.realpath(target)
            if not real_target.startswith(real_root.rstrip(os.sep) + os.sep):
                raise UserError(f"run id {full.id!r} would leave dest; not exported")
            if dest and index.roots.contains(real_target):
                raise UserError(f"dest {target} leads inside a root; nothing exported")
            os.makedirs(target, exist_ok=True)
        try:  # the directory written into, opened once: every file is created relative to it
            dir_fd = index.roots.open_dir_to_write(target, under_roots=in_place)
        except confine.Refused as e:
            what = "its files/" if in_place else f"dest {target}"
            raise UserError(f"{ra.run_label(full)}: {what} {e.why.removeprefix('it ')}; nothing exported"
                            + ("; use dest= instead" if in_place else "")) from None
        except FileNotFoundError:
            raise UserError(f"{ra.run_label(full)} has no files/ directory to export into; use dest= instead") \
                from None

        def rows_progress(done: int, total: int, _n: int = n) -> None:
            if progress is not None:
                progress(_n - 1 + done / max(total, 1), len(runs), f"{t.clean(full.display_name)}: {done:,} rows")

        if progress is not None:
            progress(n - 1, len(runs), f"exporting {t.clean(full.display_name)}")
        try:
            if format == "csv":
                written_csv, n_rows, n_cols = sy.write_csv(full, dir_fd, target, progress=rows_progress)
            else:
                written = sy.write_export(full, dir_fd, target, progress=rows_progress)
        except confine.Refused as e:
            raise UserError(f"{ra.run_label(full)}: {os.path.basename(e.filename or '')} {e.why}; the export "
                            f"stopped there") from None
        finally:
            os.close(dir_fd)
        where = t.clean(f"its own {os.path.relpath(target, os.path.dirname(segs[-1].path))}/" if in_place else target)
        if format == "csv":
            w = written_csv
            what = (f"{sy.CSV_FILE} ({t.clean(w.skipped)})" if w.skipped else
                    f"{sy.CSV_FILE} ({t.plural(n_rows, 'row')} × {t.plural(n_cols, 'column')}, {w.bytes:,} bytes; "
                    f"one row per step, blank = not logged then)")
            out.append(f"exported {ra.run_label(full)} to {where}: {what}")
            others = sorted(full.history.other)
            if others:
                names = ", ".join(map(t.clean, others[:4]))
                out.append(f"  note: non-numeric keys ({names}{'…' if len(others) > 4 else ''}) are not in the CSV; "
                           f"format=\"wandb\" keeps them")
            if len(segs) > 1:
                out.append(f"  note: the {len(segs)} resumed segments are one table (later segments win on steps "
                           f"logged twice)")
            continue
        parts = []
        for w in written:
            name = os.path.basename(w.path)
            if w.skipped:
                parts.append(f"{t.clean(name)} ({t.clean(w.skipped)})")
            elif name == "wandb-history.jsonl":
                parts.append(f"{name} ({t.plural(len(set(full.history.steps)), 'row')}, {w.bytes:,} bytes)")
            else:
                parts.append(f"{t.clean(name)} ({w.bytes:,} bytes)")
        out.append(f"exported {ra.run_label(full)} to {where}: " + ", ".join(parts))
        for s in segs:
            st = sy.segment_status(s)
            if not st.log_ok and s.log is not None:
                out.append(f"  note: {t.clean(os.path.basename(s.log_path or ''))}: {t.clean(st.log)}; exported "
                           f"everything up to "
                           f"there (step {t.step(s.history.last_step)})")
        others = sorted(full.history.other)
        if others:
            names = ", ".join(map(t.clean, others[:4]))
            out.append(f"  note: non-numeric history values ({names}{'…' if len(others) > 4 else ''}) "
                       f"are in the history rows only where logged once; their last values are in the summary")
        if len(segs) > 1:
            out.append(f"  note: the {len(segs)} resumed segments are exported as one run (later segments win "
                       f"on steps logged twice)")
    if progress is not None:
        progress(len(runs), len(runs), "done")
    return "\n".join(out)


def _root_of(index: RunIndex, real: str) -> str:
    return next((r for r in index.roots.real if confine.inside(real, [r])), index.roots.real[0])


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
            progress(i, len(dirs), f"wandb sync {t.clean(os.path.basename(d))}")
        res = sy.upload(cli, d)
        status = "timed out" if res.code is None else f"exit {res.code}"
        out.append(f"{ra.run_label(r)} {t.clean(os.path.basename(d))}: {status}")
        out.extend("  " + t.clean(ln) for ln in res.output.splitlines()[-12:])
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
