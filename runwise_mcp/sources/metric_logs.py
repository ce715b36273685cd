"""Metric log files that are runs on their own: JSON lines (custom loops, fairseq
``--log-format json``), CSV with a step-like column, and Keras ``CSVLogger`` files (``epoch,`` +
metric columns, one row per epoch; OTHER_FORMATS.md §3.1).

Each such file is one run, named by its path relative to the root without the extension
(where no sibling shares the stem). Detection is strict, so a dataset CSV, a
``requirements.txt`` or a JSON config never becomes a run:

* JSON lines (``.jsonl``, ``.ndjson``, ``.json``): the first lines (up to 8) are all JSON
  objects, each with a step-like key (``global_step``, ``step``, ``num_updates``, ``iteration``,
  ``iter``, ``epoch``) holding an integer, and at least one other numeric value; a ``.json``
  file needs two such lines (a one-line config is not a log);
* CSV (``.csv``; ``.log``/``.txt`` only for the Keras header): a header with a step-like column
  and another column, and sampled rows whose step cells are non-decreasing integers and whose
  other cells are numbers or empty.

Numeric strings are coerced (fairseq writes ``"3.097"``, ``"100%"``); other strings are kept
as non-numeric keys. Keras files (first column ``epoch``, no other step column) have the epoch
as x axis, and the answers say so. JSON lines are read incrementally (only new complete lines).
These files record no exit status: the state is from the file's mtime, with that basis.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..confine import stat_file
from ..model import KILLED, RUNNING, RunState, sane_time
from .base import Claim, ReadContext, SegmentInfo, Source, WalkRules
from .filebase import STEP_KEYS, CsvTail, FilePart, RowBuilder, as_step, coerce, head_bytes, strip_suffix
from .jsonl import JsonlReader, Rewritten
from .jsonl_shapes import ShapeDecoder
from .lightning_csv import METRICS, LightningSource, csv_rows

JSONL_EXT = (".jsonl", ".ndjson", ".json")
CSV_EXT = (".csv",)
KERAS_EXT = (".csv", ".log", ".txt", ".tsv")
SAMPLE = 8
TIME_KEYS = ("timestamp", "_timestamp", "time", "wall_time", "walltime", "wallclock")  # epoch seconds
READ_BLOCK = 4 << 20  # JSON lines are decoded this many bytes at a time (shape templates: jsonl_shapes.py)
SKIP_NAMES = frozenset({"requirements.txt", "package.json", "package-lock.json", "tsconfig.json",
                        "manifest.json", "config.json", "trainer_state.json"})


def _is_num(v: Any) -> bool:
    v = coerce(v)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _step_key(keys: Any) -> str | None:
    return next((k for k in STEP_KEYS if k in keys), None)


def detect_jsonl(data: bytes, ext: str) -> str | None:
    """The step key when ``data`` (a file's head) reads as a JSON-lines metric log."""
    lines = [ln for ln in data.split(b"\n")[:-1] if ln.strip()][:SAMPLE]
    if len(lines) < (2 if ext == ".json" else 1):
        return None
    key = None
    for ln in lines:
        try:
            obj = json.loads(ln)
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        k = _step_key(obj)
        if k is None or as_step(obj[k]) is None:
            return None
        if not any(_is_num(v) for n, v in obj.items() if n != k):
            return None
        key = key or k
    return key


def detect_csv(data: bytes, ext: str) -> tuple[str, bool] | None:
    """(step column, keras layout) when ``data`` reads as a CSV metric log."""
    header, rows = csv_rows(data)
    header = [h.strip() for h in header]
    if len(header) < 2 or len(set(header)) != len(header) or any(not h for h in header):
        return None
    keras = header[0] == "epoch" and _step_key(header[1:]) is None
    if ext not in CSV_EXT and not keras:
        return None
    key = _step_key(header)
    if key is None:
        return None
    si = header.index(key)
    last = None
    for row in rows[:SAMPLE]:
        if len(row) != len(header):
            return None
        step = as_step(row[si])
        if step is None or (last is not None and step < last):
            return None
        last = step
        if any(c.strip() and not _is_num(c) for i, c in enumerate(row) if i != si):
            return None
        if not any(c.strip() for i, c in enumerate(row) if i != si):
            return None
    if not rows and not keras:
        return None
    return key, keras


def detect(path: str, included: bool = False) -> tuple[str, str, bool] | None:
    """("jsonl" | "csv", step key, keras) for a metric log file, else None. ``included`` (a
    ``[sources] include`` glob matched the file): any name, read as JSON lines or else as CSV."""
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1].lower()
    if name.lower() in SKIP_NAMES:
        return None
    if included:
        found = detect(path)
        if found is not None:
            return found
        data = head_bytes(path, 16384)
        k = detect_jsonl(data, ".jsonl")
        if k:
            return "jsonl", k, False
        d = detect_csv(data, ".csv")
        return ("csv", d[0], d[1]) if d else None
    if ext not in JSONL_EXT + KERAS_EXT:
        return None
    data = head_bytes(path, 16384)
    if ext in JSONL_EXT:
        k = detect_jsonl(data, ext)
        return ("jsonl", k, False) if k else None
    d = detect_csv(data, ext)
    return ("csv", d[0], d[1]) if d else None


class MetricLogRun(FilePart):
    source = "metric_log"
    shapes = True  # JSON lines through shape templates (False: json.loads every line; the tests compare)

    def __init__(self, path: str, root: str) -> None:
        super().__init__(path, root)
        self.name = strip_suffix(path, self.name)
        d = detect(path) or detect(path, included=True)
        self.kind, self.step_key, self.keras = d if d else ("jsonl" if path.endswith(JSONL_EXT) else "csv", "step",
                                                           False)
        self.no_exit = f"{'JSONL' if self.kind == 'jsonl' else 'CSV'} logs record no exit status"
        self._reader: JsonlReader | None = None
        self._shapes: ShapeDecoder | None = None
        self._csv: CsvTail | None = None
        self._rb = RowBuilder()
        self._last_step: int | None = None

    def watched(self) -> list[str]:
        return [self.path]

    def _emit(self, obj: dict[str, Any]) -> None:
        sk = self.step_key
        step = obj.get(sk)
        if step.__class__ is not int or abs(step) >= 2**62:  # (the common case needs no coercion)
            step = as_step(step)
        if step is None:
            step = self._last_step  # e.g. a validation line without a step: the last step seen
            if step is None:
                return
        self._last_step = step
        self._rb.add(step, [(k, coerce(v) if v.__class__ is str else v) for k, v in obj.items() if k != sk])

    def _set_last_step(self, step: int) -> None:
        self._last_step = step

    def _slow(self, lines: list[bytes]) -> None:
        """Lines no shape template matches: json.loads, the row path, and a template learnt."""
        assert self._reader is not None and self._shapes is not None
        self._reader.decode_lines(lines, self._emit, self._shapes.learn)

    def parse(self) -> None:
        if self.kind == "jsonl":
            if self._reader is None:
                self._restart()
            try:
                self._read_jsonl()
            except Rewritten:  # not the file read so far: everything built from it is void
                self._restart()
                self._read_jsonl()
            if self._reader.bad_lines:
                self._notes.append(f"{self._reader.bad_lines:,} line(s) that are not JSON objects skipped")
        else:  # only the lines appended since the last read (the whole file again when rewritten)
            if self._csv is None:
                self._csv = CsvTail(self.path)
            rows, reset = self._csv.read()
            if reset:
                self._rb, self._last_step = RowBuilder(), None
            header = [h.strip() for h in self._csv.header]
            for row in rows:
                self._emit({k: v for k, v in zip(header, row) if v.strip() != ""})
        self._history = self._rb.h

    def _restart(self) -> None:
        self._reader, self._rb, self._last_step = JsonlReader(self.path), RowBuilder(), None
        self._shapes = ShapeDecoder(self._rb, self.step_key, self._slow, lambda: self._last_step,
                                    self._set_last_step)

    def _read_jsonl(self) -> None:
        if self.shapes:
            self._reader.read_blocks(self._shapes.feed, READ_BLOCK)
        else:
            self._reader.read(self._emit)

    def last_timestamp(self) -> tuple[str, float] | None:
        """(key, epoch seconds) of the newest time the log itself records (``timestamp``,
        ``time``, ``wall_time``... holding epoch seconds), or None."""
        h = self._history
        for k in TIME_KEYS:
            col = h.columns.get(k)
            if col is not None and len(col) and sane_time(col.values[-1]) and col.values[-1] > 1e9:
                return k, col.values[-1]
        return None

    def state(self, now: float, stale_after: float) -> RunState:
        ts = self.last_timestamp()
        if ts is None:
            return super().state(now, stale_after)
        key, t = ts
        return RunState(RUNNING if now - t <= stale_after else KILLED,
                        f"{self.no_exit}; judged from the last {key} in the log", None, t, certain=False,
                        clock="timestamp", stopped=True)

    @property
    def info(self) -> SegmentInfo:
        base = os.path.basename(self.path)
        if self.keras:
            what = f"{base} (epoch-indexed CSV, Keras CSVLogger layout; x axis = epoch, 0-based)"
        else:
            what = f"{base} ({'JSON lines' if self.kind == 'jsonl' else 'CSV'}; x axis = {self.step_key})"
        hints = {
            "empty": f"{base} holds no complete row yet",
            "no_config": f"{base} is a metric log only; it records no config",
            "config_from": "none (metric log file)",
            "x_axis": self.step_key,
        }
        return SegmentInfo(self.source, "keras_csv" if self.keras else self.kind, self.path, label=what,
                           files=[base], hints=hints)

    @property
    def producer(self) -> str:
        return "Keras CSVLogger" if self.keras else ("JSON lines" if self.kind == "jsonl" else "CSV")


class MetricLogSource(Source):
    name = "metric_log"
    describe = "metric log files (*.jsonl / *.csv with a step or epoch column, Keras CSVLogger)"

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[int, int, bool], bool]] = {}  # path -> ((size, mtime), is a log)

    def _detect(self, path: str, included: bool = False) -> bool:
        """``detect`` once per (size, mtime) of a file (a scan runs on every call)."""
        ext = os.path.splitext(path)[1].lower()
        if ext not in JSONL_EXT + KERAS_EXT and not included:
            return False
        try:
            st = stat_file(path)
        except OSError:
            return False
        key = (st.st_size, st.st_mtime_ns, included)
        hit = self._seen.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        if len(self._seen) > 100_000:
            self._seen.clear()
        ok = detect(path, included) is not None
        self._seen[path] = (key, ok)
        return ok

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Any) -> Claim | None:
        found = tuple(n for n in files if self._detect(os.path.join(path, n)))
        return Claim(run=False, descend=True, files=found) if found else None

    def claim_files(self, path: str, files: tuple[str, ...], rules: WalkRules) -> list[str]:
        """Files a ``[sources] include`` glob names (whatever their name) that read as metric logs."""
        if not rules.include:
            return []
        out = []
        for name in files:
            full = os.path.join(path, name)
            if name == METRICS and LightningSource().claim(path, files, (), None) is not None:
                continue  # a Lightning run's own metrics.csv
            if rules.included(full) and not rules.excluded(full) and self._detect(full, included=True):
                out.append(name)
        return out

    def open(self, path: str, ctx: ReadContext) -> MetricLogRun:
        return MetricLogRun(path, ctx.root)
