"""Console logs on their own as runs: ``*.log``, ``*.out`` (``slurm-1234.out``, ``nohup.out``)
and files matched by ``runwise.toml`` ``[sources] include`` globs.

Discovery: such a file is a run only when the console parser (``console.py``) finds metrics with
an x axis in it. The check parses the file's head and tail only (64 KiB each), so a
million-line log costs milliseconds to list; a verdict is cached by the file's (size, mtime)
and a file once found to be a run stays one while it grows. Files inside a W&B run directory
(``files/output.log``, ``logs/debug.log``) are never reached: the W&B source owns that
directory. wandb's own ``debug.log`` / ``debug-internal.log`` are skipped by name.

A run is one file (a :class:`RunPart` whose ``path`` is the file). Its history *is* the console
history, read through the same :class:`ConsoleFile` that a W&B run's ``output.log`` uses, so
``tail_run`` cursors, tracebacks and ``get_history(source="console")`` work unchanged. Run lists
parse only the tail of a log over ``skim_above`` bytes; tools on one run read it all.

Name: the path relative to the root without its suffix (``slurm-1234``, ``exp/train``), unless
another log of the same stem (or a directory of that name) sits next to it; then the suffix
stays.

State: console logs record no exit status. A Python traceback at the end of the log means
``crashed`` (its exception line is the basis); otherwise the run is ``running?`` or ``stopped``
by the age of the last timestamp printed in the log, or, without one, the file's mtime, and the
answer says which.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from ..confine import Refused, open_read, stat_file
from ..model import CRASHED, KILLED, RUNNING, History, RunState
from .base import Claim, ReadContext, RunPart, SegmentInfo, Source, WalkRules
from .console import ConsoleFile, ConsoleHistory, last_traceback

SUFFIXES = (".log", ".out")
WANDB_OWN = frozenset({"debug.log", "debug-internal.log"})
PROBE_BYTES = 64 << 10  # head and tail parsed to decide whether a file is a run
SKIM_TAIL = 256 << 10  # bytes of a large log parsed for run lists
MIN_ROWS = 2  # steps with metrics a log needs to be a run (1 for an include glob match)
NO_EXIT = "console logs record no exit status"
TB_HEAD = "Traceback (most recent call last)"
_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T_](\d{2}):(\d{2}):(\d{2})")


def is_candidate_name(name: str) -> bool:
    return name.endswith(SUFFIXES) and name not in WANDB_OWN


def _timestamp(line: str) -> float | None:
    """Seconds since the epoch of a ``YYYY-MM-DD HH:MM:SS`` timestamp within a line's first 64
    characters (local time, as loggers print it), or None."""
    m = _TS.search(line[:64])
    if m is None:
        return None
    try:
        return time.mktime(tuple(int(g) for g in m.groups()) + (0, 0, -1))  # type: ignore[arg-type]
    except (OverflowError, ValueError):
        return None


def probe(path: str, size: int) -> int:
    """Steps with metrics the console parser finds in the head and tail of ``path``."""
    with open_read(path) as f:
        head = f.read(PROBE_BYTES)
        tail = b""
        if size > 2 * PROBE_BYTES:
            f.seek(size - PROBE_BYTES)
            tail = f.read(PROBE_BYTES)
            tail = tail[tail.find(b"\n") + 1:]
        elif size > PROBE_BYTES:
            tail = f.read(size - PROBE_BYTES)
    rows = 0
    for chunk, drop_last in ((head, size > PROBE_BYTES), (tail, False)):
        if not chunk:
            continue
        lines = chunk.decode("utf-8", "replace").split("\n")
        if drop_last:
            lines.pop()  # cut mid-line
        ch = ConsoleHistory()
        for ln in lines:
            ch.feed(ln)
        h = ch.snapshot()
        if any(not k.startswith("_") for k in h.columns):
            rows += h.rows
    return rows


class ConsoleRun(RunPart):
    """One console log file as a run."""

    source = "console"

    def __init__(self, path: str, root: str) -> None:
        self.path = path
        self.root = root
        self.name = self._name()
        self.cf: ConsoleFile | None = None
        self.patterns: list | None = None
        self.key: tuple[int, int] | None = None
        self.error = ""
        self.version = 0
        self.first_ts: float | None = None
        self._head_done = False

    def _name(self) -> str:
        rel = os.path.relpath(self.path, self.root) if self.root else os.path.basename(self.path)
        rel = rel.replace(os.sep, "/")
        stem, suffix = os.path.splitext(rel)
        if not suffix:
            return rel
        d, base = os.path.split(self.path)
        bstem = os.path.splitext(base)[0]
        try:
            clash = any(n != base and os.path.splitext(n)[0] == bstem for n in os.listdir(d))
        except OSError:
            clash = True
        return rel if clash or not stem else stem

    # ---- reading -----------------------------------------------------------------------------------
    def _stat(self) -> tuple[int, int] | None:
        try:
            st = stat_file(self.path)
        except (Refused, OSError) as e:
            self.error = f"cannot read {os.path.basename(self.path)}: {getattr(e, 'why', '') or e.strerror or e}"
            return None
        self.error = ""
        return (st.st_size, st.st_mtime_ns)

    def _read(self, full: bool, tail_only: int = 0, patterns: list | None = None) -> bool:
        key = self._stat()
        if key is None:
            changed = self.cf is not None
            self.cf, self.key = None, None
            return changed
        if patterns is not None and (patterns or None) != (self.patterns or None):
            self.patterns, self.cf = patterns, None
        replaced = False
        if self.cf is None or (self.cf.start_offset and full):
            self.cf = ConsoleFile(self.path, self.patterns)
            replaced = True
        changed = self.cf.update(key, tail_only=0 if full else tail_only)
        if not self._head_done:
            self._head_done = True
            with open_read(self.path) as f:
                for ln in f.read(8 << 10).decode("utf-8", "replace").split("\n")[:50]:
                    ts = _timestamp(ln)
                    if ts is not None:
                        self.first_ts = ts
                        break
        self.key = key
        if changed or replaced:
            self.version += 1
        return changed or replaced

    def refresh(self, full: bool = False, skim_above: int = 0,
                progress: Callable[[int, int], None] | None = None) -> bool:
        tail = max(skim_above, SKIM_TAIL) if skim_above else 0
        return self._read(full, tail_only=tail)

    @property
    def sampled(self) -> bool:
        return bool(self.cf is not None and self.cf.start_offset)

    @property
    def full(self) -> bool:
        return not self.sampled

    @property
    def sample_note(self) -> str:
        if self.sampled and self.cf is not None:
            return f"only the last {self.key[0] - self.cf.start_offset:,} bytes of the log were parsed" if self.key else ""
        return ""

    def console(self, patterns: list | None = None, tail_only: int = 0) -> ConsoleFile | None:
        try:
            self._read(full=not tail_only, tail_only=tail_only, patterns=patterns if patterns is not None else None)
        except OSError:
            return None
        return self.cf

    @property
    def console_tail(self) -> list[str]:
        return [t for _, t in self.cf.tail] if self.cf is not None else []

    # ---- the part's view -----------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.name

    @property
    def group_key(self) -> str:
        return f"console:{self.path}"

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "tags": []}

    @property
    def start_time(self) -> float | None:
        if self.first_ts is not None:
            return self.first_ts
        return self.key[1] / 1e9 if self.key else None

    @property
    def info(self) -> SegmentInfo:
        base = os.path.basename(self.path)
        hints = {
            "empty": (f"the console parser found no metric with a step in {base} yet "
                      f"({self.log_bytes:,} bytes); add a regex with named groups under [console] patterns in "
                      f"runwise.toml for your format"),
            "no_config": "a console log holds no config",
            "config_from": "none (a console log)",
            "clock": "log timestamps" if self._last_ts() is not None else "file writes",
        }
        return SegmentInfo("console", "log", self.path, label=base, files=[base], hints=hints)

    @property
    def producer(self) -> str:
        return "console log"

    @property
    def history(self) -> History:
        return self.cf.history() if self.cf is not None else History()

    def notes(self) -> list[str]:
        return [self.sample_note] if self.sampled and self.sample_note else []

    @property
    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, col in self.history.columns.items():
            if not name.startswith("_") and len(col):
                out[name] = col.values[-1]
        return out

    @property
    def runtime(self) -> float | None:
        last = self._last_ts()
        if self.first_ts is not None and last is not None and last >= self.first_ts:
            return last - self.first_ts
        return None

    @property
    def log_bytes(self) -> int:
        return self.key[0] if self.key else 0

    def _last_ts(self) -> float | None:
        if self.cf is None:
            return None
        for _, ln in reversed(self.cf.tail):
            ts = _timestamp(ln)
            if ts is not None:
                return ts
        return None

    def crash(self) -> str | None:
        """The exception line of a traceback that ends the log (at most 5 lines after it), or None."""
        if self.cf is None:
            return None
        lines = []
        for _, ln in list(self.cf.tail)[-400:]:
            at = ln.find(TB_HEAD)
            lines.append(ln[at:] if at > 0 else ln)  # a traceback glued to a progress bar's last redraw
        tb = last_traceback(lines)
        if tb is None:
            return None
        exc = tb[0]
        start = max(i for i, x in enumerate(lines) if x.startswith(TB_HEAD))
        after = lines[start:]
        if exc:
            at = next((i for i, x in enumerate(after) if x.strip() == exc), len(after) - 1)
            rest = [x for x in after[at + 1:] if x.strip()]
            if len(rest) > 5:
                return None
        return exc or "traceback without an exception line"

    def state(self, now: float, stale_after: float) -> RunState:
        last_ts = self._last_ts()
        last_write = self.key[1] / 1e9 if self.key else None
        exc = self.crash()
        if exc is not None:
            return RunState(CRASHED, f"traceback: {exc[:200]}", None, last_ts or last_write, certain=True)
        if last_ts is not None:
            return RunState(RUNNING if now - last_ts <= stale_after else KILLED,
                            f"{NO_EXIT}; judged from the last timestamp in the log", None, last_ts,
                            certain=False, clock="timestamp", stopped=True)
        running = last_write is not None and now - last_write <= stale_after
        return RunState(RUNNING if running else KILLED,
                        f"{NO_EXIT} and prints no timestamp; judged from the file's mtime", None, last_write,
                        certain=False, stopped=True)

    def problems(self) -> list[str]:
        return [self.error] if self.error else []


class ConsoleSource(Source):
    """Console logs standing alone. Claims files, not directories."""

    name = "console"
    describe = "console logs (*.log, *.out, slurm-*.out, nohup.out) that print metrics with a step"

    def __init__(self) -> None:
        self._verdicts: dict[str, tuple[int, int, bool]] = {}

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Any) -> Claim | None:
        return None

    def claim_files(self, path: str, files: tuple[str, ...], rules: WalkRules) -> list[str]:
        out = []
        for name in files:
            full = os.path.join(path, name)
            included = rules.included(full)
            if not included and not is_candidate_name(name):
                continue
            if rules.excluded(full):
                continue
            if self._is_run(full, MIN_ROWS if not included else 1):
                out.append(name)
        return out

    def _is_run(self, path: str, need: int) -> bool:
        try:
            st = stat_file(path)
        except (Refused, OSError):
            return False
        seen = self._verdicts.get(path)
        if seen is not None:
            size, mtime, ok = seen
            if (size, mtime) == (st.st_size, st.st_mtime_ns) or (ok and st.st_size >= size):
                return ok
        try:
            ok = probe(path, st.st_size) >= need
        except (Refused, OSError):
            ok = False
        if len(self._verdicts) > 100_000:
            self._verdicts.clear()
        self._verdicts[path] = (st.st_size, st.st_mtime_ns, ok)
        return ok

    def open(self, path: str, ctx: ReadContext) -> ConsoleRun:
        return ConsoleRun(path, ctx.root)

