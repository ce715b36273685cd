"""sync_runs: what is unsynced or damaged, standard files exported from the transaction log, and
`wandb sync` on request.

Nothing here writes unless the caller asked for an export or an upload. An export goes to a
destination directory outside every root (by default the user cache), into the run's own
``files/`` only with ``in_place`` (a real directory inside the roots, never through a symlink),
and never overwrites a file that exists (files are created with ``confine.create_new``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml

from .config import ENV_WANDB_CLI, user_cache_dir
from .confine import create_new, file_key
from .model import Run, sane_time
from .sources.wandb_dir import RunDir

EXPORT_FILES = ("wandb-history.jsonl", "wandb-summary.json", "config.yaml", "wandb-metadata.json")
UPLOAD_TIMEOUT = 600.0


def default_export_root(env: dict[str, str] | None = None) -> str:
    return os.path.join(user_cache_dir(dict(os.environ) if env is None else env), "export")


def safe_name(run_id: str) -> str:
    """A run id as one harmless path component: no separators, no dots-only names."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", run_id).strip(".") or "run"
    return name[:120]


# ---- status -------------------------------------------------------------------------------------


@dataclass
class SegmentStatus:
    path: str
    synced: str  # "synced" | "sync attempted, not finished" | "not synced" | "online run"
    log: str  # "complete" | "torn tail: ..." | "missing" | ...
    log_ok: bool
    rows: int
    last_step: int | None
    console: str  # "output.log, 12 KB" | "no output.log" ...
    side_files: dict[str, bool] = field(default_factory=dict)  # config.yaml etc. present?
    issues: list[str] = field(default_factory=list)  # keys of REMEDIES


def segment_status(seg: RunDir) -> SegmentStatus:
    base = seg.files_dir
    log = seg.log
    side = {name: file_key(os.path.join(base, name)) is not None
            for name in ("wandb-summary.json", "config.yaml", "wandb-metadata.json")}
    if seg.log_path is not None:
        marker = seg.log_path + ".synced"
        state = seg.log_path + ".syncstate"
        if file_key(marker) is not None:
            synced = "synced"
        elif file_key(state) is not None:
            synced = "sync attempted, not finished (.syncstate without .synced)"
        elif os.path.basename(seg.path).startswith("run-"):
            synced = "online run (streamed to W&B while it ran)"
        else:
            synced = "not synced"
    else:
        synced = {"dryrun": "pre-0.10 layout (no .wandb log)",
                  "jsonl": "files/ layout (no .wandb log)"}.get(seg.layout, "no .wandb log")
    issues: list[str] = []  # codes grouped into remedies by the answer
    if log is None:
        log_desc, ok = ({"console": "missing: only files/ is left",
                         "jsonl": "none (history in files/wandb-history.jsonl)"}.get(
                             seg.layout, "none (pre-0.10 layout: wandb-history.jsonl)"),
                        seg.layout in ("dryrun", "jsonl"))
        if seg.layout == "console":
            issues.append("console-only")
    else:
        r = log.reader
        size = r.size
        if r.header_ok is False:
            log_desc, ok = "not a .wandb log (bad header)", False
            issues.append("damaged")
        elif r.tail:
            log_desc, ok = f"torn tail ({size - r.offset:,} of {size:,} bytes unread: {r.tail})", False
            issues.append("torn")
        else:
            log_desc, ok = f"complete ({size:,} bytes)", True
        if r.damage.any:
            log_desc += f"; {r.damage.describe()}"
            ok = False
            issues.append("damaged")
    out = os.path.join(base, "output.log")
    out_key = file_key(out)  # opened under the roots: a link to a file elsewhere reports nothing about it
    console = f"output.log {out_key[0]:,} bytes" if out_key is not None else "no output.log"
    if synced == "not synced":
        issues.append("unsynced")
    if not all(side.values()) and seg.layout == "wandb":
        issues.append("files")
    return SegmentStatus(seg.path, synced, log_desc, ok, seg.history.rows, seg.history.last_step, console, side,
                         issues)


REMEDIES = {
    "unsynced": "not synced: {upload} uploads (needs WANDB_API_KEY and network), or run `wandb sync <run dir>`",
    "files": "files/ lacks wandb-summary.json, config.yaml or wandb-metadata.json (wandb writes them only online "
             "or when syncing): {export} rebuilds them from the log",
    "torn": "torn tail (killed mid-write, or a live run between flushes): nothing to repair; everything before "
            "the tear is read, and exported by {export}",
    "damaged": "damaged records are skipped block by block and reported; the rest is read",
    "console-only": "the .wandb log is gone: get_history(run=..., source=\"console\") reads the metrics printed to "
                    "output.log",
}


# ---- export -------------------------------------------------------------------------------------


def history_rows(run: Run, numeric_only: bool = False) -> Iterator[dict[str, Any]]:
    """The run's history as wandb-history.jsonl rows (step order), from the columns: a k-way walk,
    one row at a time, never the whole table in memory."""
    h = run.history
    cols = [(name, c.steps, c.values) for name, c in h.columns.items()]
    pos = [0] * len(cols)
    last_other = {} if numeric_only else {name: o for name, o in h.other.items()}
    prev = None
    for step in h.steps:
        if step == prev:
            continue  # a step split over several rows: one row in the export
        prev = step
        row: dict[str, Any] = {"_step": step}
        for i, (name, steps, values) in enumerate(cols):
            j = pos[i]
            n = len(steps)
            while j < n and steps[j] < step:
                j += 1
            if j < n and steps[j] == step:
                if name != "_step":
                    v = values[j]
                    row[name] = int(v) if name == "_timestamp" and v == v and v.is_integer() else v
                j += 1
            pos[i] = j
        for name, o in last_other.items():
            if o.last_step == step and o.count == 1:
                row[name] = o.last
        yield row


def config_yaml(run: Run) -> str:
    """wandb's config.yaml layout: every top-level key wrapped in ``value:``."""
    doc: dict[str, Any] = {}
    producer = next((s.producer for s in reversed(run.segments) if s.producer), "")
    version = producer.split(" ", 1)[1] if producer.startswith("wandb ") else ""
    doc["_wandb"] = {"value": {"cli_version": version, "exported_by": "runwise-mcp"}}
    for k, v in run.config.items():
        doc[str(k)] = {"value": v}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, indent=4)


def summary_json(run: Run) -> str:
    out: dict[str, Any] = {}
    for k, v in run.summary.items():
        out[k] = v
    h = run.history
    if h.last_step is not None:
        out.setdefault("_step", h.last_step)
    rt = run.runtime
    if rt is not None:
        out.setdefault("_runtime", rt)
        out["_wandb"] = {"runtime": int(rt)}
    ts = h.columns.get("_timestamp")
    if ts is not None and len(ts):
        out.setdefault("_timestamp", ts.values[-1])
    return json.dumps(out, default=str, ensure_ascii=False)


def metadata_json(run: Run) -> str:
    env = dict(run.environment)
    started = sane_time(env.pop("started_at", None)) or sane_time(run.start_time)
    meta: dict[str, Any] = {k: v for k, v in env.items() if isinstance(v, (str, int, float, list, dict))}
    if started:
        meta["startedAt"] = datetime.fromtimestamp(started, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for k in ("name", "project", "entity", "group", "notes", "host"):
        v = getattr(run, k)
        if v:
            meta.setdefault(k, v)
    if run.job_type:
        meta["jobType"] = run.job_type
    if run.tags:
        meta["tags"] = list(run.tags)
    meta["id"] = run.id
    meta["state"] = run.state.state
    if run.state.exit_code is not None:
        meta["exitcode"] = run.state.exit_code
    return json.dumps(meta, default=str, ensure_ascii=False, indent=2)


@dataclass
class Written:
    path: str
    bytes: int
    skipped: str = ""  # why not written ("exists")


def write_export(run: Run, dir_fd: int, target: str,
                 progress: Callable[[int, int], None] | None = None) -> list[Written]:
    """Write the four files into the directory open as ``dir_fd`` (its path ``target`` is for
    the report only). Each file is created atomically and never over an existing one: a file
    that exists, even one created by another process while the export runs, is kept."""
    out: list[Written] = []
    rows_total = run.history.rows
    for name in EXPORT_FILES:
        path = os.path.join(target, name)

        def write(f, name: str = name) -> None:
            if name == "wandb-history.jsonl":
                for i, row in enumerate(history_rows(run), 1):
                    f.write(json.dumps(row, default=str, ensure_ascii=False))
                    f.write("\n")
                    if progress is not None and i % 20_000 == 0:
                        progress(i, rows_total)
            elif name == "wandb-summary.json":
                f.write(summary_json(run))
            elif name == "config.yaml":
                f.write(config_yaml(run))
            else:
                f.write(metadata_json(run))

        size = create_new(dir_fd, name, write)
        out.append(Written(path, 0, "exists, kept") if size is None else Written(path, size))
    return out


CSV_FILE = "history.csv"


def csv_columns(run: Run) -> list[str]:
    """The numeric keys of the wide CSV: _step first, then _runtime and _timestamp, then the metrics
    sorted by name."""
    cols = run.history.columns
    reserved = [k for k in ("_runtime", "_timestamp") if k in cols and len(cols[k])]
    return ["_step", *reserved, *sorted(k for k in cols if k not in RESERVED_NAMES and len(cols[k]))]


RESERVED_NAMES = ("_step", "_runtime", "_timestamp")


def _csv_value(v: Any) -> str:
    """Full precision (``repr``), integers without ``.0``, ``nan``/``inf``/``-inf`` as pandas and
    numpy read them; a blank cell is a key not logged at that step."""
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (math.inf, -math.inf):
            return "inf" if v > 0 else "-inf"
        if v.is_integer() and abs(v) < 2**53:
            return str(int(v))
        return repr(v)
    return str(v)


def write_csv(run: Run, dir_fd: int, target: str,
              progress: Callable[[int, int], None] | None = None) -> tuple[Written, int, int]:
    """One wide ``history.csv`` (a row per step, a column per numeric key) in the directory open as
    ``dir_fd``, created atomically and never over an existing file. Returns what was written, its
    rows and its columns."""
    columns = csv_columns(run)
    rows_total = run.history.rows
    count = [0]

    def write(f) -> None:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for i, row in enumerate(history_rows(run, numeric_only=True), 1):
            w.writerow([_csv_value(row.get(k)) for k in columns])
            count[0] = i
            if progress is not None and i % 20_000 == 0:
                progress(i, rows_total)

    size = create_new(dir_fd, CSV_FILE, write)
    path = os.path.join(target, CSV_FILE)
    return (Written(path, 0, "exists, kept") if size is None else Written(path, size)), count[0], len(columns)


# ---- upload -------------------------------------------------------------------------------------


def find_wandb_cli(env: dict[str, str] | None = None) -> str | None:
    """RUNWISE_WANDB_CLI (a command or path), else `wandb` on PATH, else next to this Python."""
    env = dict(os.environ) if env is None else env
    want = env.get(ENV_WANDB_CLI, "").strip()
    if want:
        return shutil.which(want) or (want if os.path.isfile(want) and os.access(want, os.X_OK) else None)
    found = shutil.which("wandb")
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "wandb")
    return beside if os.path.isfile(beside) and os.access(beside, os.X_OK) else None


@dataclass
class Upload:
    dir: str
    code: int | None  # None: timed out
    output: str


def upload(cli: str, run_dir: str, timeout: float = UPLOAD_TIMEOUT) -> Upload:
    """`wandb sync <run dir>`; its output (last 1,500 characters) and exit status."""
    try:
        p = subprocess.run([cli, "sync", run_dir], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, cwd=os.path.dirname(run_dir))
        text = (p.stdout + p.stderr).strip()
        return Upload(run_dir, p.returncode, text[-1500:])
    except subprocess.TimeoutExpired as e:
        out = ((e.stdout or b"") + (e.stderr or b"")).decode("utf-8", "replace") if isinstance(e.stdout, bytes) \
            else str(e.stdout or "") + str(e.stderr or "")
        return Upload(run_dir, None, out.strip()[-1500:])
    except OSError as e:
        return Upload(run_dir, -1, f"could not start {cli}: {e}")
