"""Shared pieces of the sources whose runs are plain files (HF ``trainer_state.json``, Lightning
and Keras CSV logs, JSON-lines metric logs).

A :class:`FilePart` watches a few files by (size, mtime) and re-parses them when one changed
(these files are small, and Lightning rewrites its CSV with a new header anyway). It names
itself by its path relative to the root (TensorBoard's convention) and, unless the format has
an exit record, states ``running?``/``stopped`` from the newest file's mtime with the basis
given (``... records no exit status``).

Files are opened only through ``confine.open_read`` / ``stat_file``; nothing is unpickled.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

from ..confine import Refused, open_read, stat_file
from ..model import KILLED, RUNNING, History, RunState
from .base import RunPart

MAX_FILE = 256 << 20  # a state/CSV file larger than this is not parsed
STEP_KEYS = ("global_step", "step", "num_updates", "iteration", "iter", "epoch")
_NUM = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*%?\s*$|^\s*[-+]?(nan|inf|infinity)\s*$", re.IGNORECASE)


def coerce(v: Any) -> Any:
    """A number from a numeric string (fairseq logs ``"3.097"``, ``"100%"``); other values as they are."""
    if isinstance(v, str) and _NUM.match(v):
        try:
            return float(v.strip().rstrip("%").strip())
        except ValueError:
            return v
    return v


def as_step(v: Any) -> int | None:
    v = coerce(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    if v != int(v) or abs(v) >= 2**62:
        return None
    return int(v)


def read_bytes(path: str, limit: int = MAX_FILE) -> bytes:
    with open_read(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise OSError(f"{size:,} bytes, over the {limit:,}-byte limit for this format")
        return f.read(limit + 1)


def head_bytes(path: str, n: int = 8192) -> bytes:
    """The first ``n`` bytes (for detection); b"" when the file cannot be read."""
    try:
        with open_read(path) as f:
            return f.read(n)
    except OSError:
        return b""


def rel_name(path: str, root: str) -> str:
    rel = os.path.relpath(path, root) if root else os.path.basename(path)
    if rel == ".":
        rel = os.path.basename(path.rstrip(os.sep))
    return rel.replace(os.sep, "/")


def strip_suffix(path: str, name: str) -> str:
    """``name`` without the file's extension where no sibling shares the stem."""
    stem, ext = os.path.splitext(os.path.basename(path))
    if not ext:
        return name
    try:
        siblings = [n for n in os.listdir(os.path.dirname(path)) if os.path.splitext(n)[0] == stem]
    except OSError:
        return name
    return name[: -len(ext)] if len(siblings) == 1 else name


class RowBuilder:
    """Rows into a History, one row per distinct step where the keys do not collide (Lightning's
    train-step, validation and epoch rows at one step become one row)."""

    def __init__(self) -> None:
        self.h = History()
        self.last_keys: set[str] = set()

    def add(self, step: int, items: list[tuple[str, Any]]) -> None:
        h = self.h
        if not items:
            return
        keys = {k for k, _ in items}
        if h.steps and h.steps[-1] == step and not (keys & self.last_keys):
            h.add_items(len(h.steps) - 1, step, items)
            self.last_keys |= keys
        else:
            if h.steps and step < h.steps[-1]:
                return  # a step that goes back (a rewritten file mid-copy): not kept
            h.add_row(step, items)
            self.last_keys = keys


class FilePart(RunPart):
    """A run made of a few files, re-parsed when any of them changes."""

    no_exit = "these files record no exit status"

    def __init__(self, path: str, root: str) -> None:
        self.path = path
        self.root = root
        self.name = rel_name(path, root)
        self.keys: dict[str, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.version = 0
        self._history = History()
        self._config: dict[str, Any] = {}
        self._summary: dict[str, Any] = {}
        self._notes: list[str] = []

    # subclasses: the files to watch, and how to parse them
    def watched(self) -> list[str]:
        raise NotImplementedError

    def parse(self) -> None:
        raise NotImplementedError

    def refresh(self, full: bool = False, skim_above: int = 0,
                progress: Callable[[int, int], None] | None = None) -> bool:
        keys: dict[str, tuple[int, int]] = {}
        errors = []
        for p in self.watched():
            try:
                st = stat_file(p)
                keys[p] = (st.st_size, st.st_mtime_ns)
            except Refused as e:
                errors.append(f"{os.path.basename(p)} not read: {e.why}")
            except OSError:
                continue
        if keys == self.keys and self.version:
            return False
        self.keys = keys
        self.errors = errors
        self._notes = []
        try:
            self.parse()
        except (OSError, ValueError) as e:
            self.errors.append(f"cannot read {os.path.basename(self.path)}: {e}")
        self.version += 1
        return True

    @property
    def run_id(self) -> str:
        return self.name

    @property
    def group_key(self) -> str:
        return f"{self.source}:{self.path}"

    @property
    def group(self) -> str:
        return ""

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "tags": []}

    @property
    def last_write(self) -> float | None:
        return max((k[1] / 1e9 for k in self.keys.values()), default=None)

    @property
    def start_time(self) -> float | None:
        return min((k[1] / 1e9 for k in self.keys.values()), default=None)

    @property
    def history(self) -> History:
        return self._history

    @property
    def config(self) -> dict[str, Any]:
        return self._config

    @property
    def summary(self) -> dict[str, Any]:
        out = dict(self._summary)
        for name, col in self._history.columns.items():
            if len(col):
                out.setdefault(name, col.values[-1])
        return out

    @property
    def log_bytes(self) -> int:
        return sum(k[0] for k in self.keys.values())

    @property
    def points(self) -> int:
        return sum(len(c) for c in self._history.columns.values())

    def notes(self) -> list[str]:
        return list(self._notes)

    def problems(self) -> list[str]:
        return list(self.errors)

    def state(self, now: float, stale_after: float) -> RunState:
        last = self.last_write
        running = last is not None and now - last <= stale_after
        return RunState(RUNNING if running else KILLED, self.no_exit, None, last, certain=False, stopped=True)


CHECK = 64  # bytes before the read position compared on every incremental read


def same_as_read(f, size: int, offset: int, head: bytes, tail: bytes) -> bool:
    """Whether the open file ``f`` of ``size`` bytes is still the one read up to ``offset``: at
    least that long, with ``tail`` just before ``offset`` and ``head`` at its start (a file
    replaced by another of the same size or longer, or rewritten in place, is not). Decided
    from the file opened (CsvTail, jsonl.JsonlReader)."""
    if size < offset:
        return False
    f.seek(offset - len(tail))
    if f.read(len(tail)) != tail:
        return False
    f.seek(0)
    return f.read(len(head)) == head


class CsvTail:
    """A CSV file read incrementally: each ``read`` parses only the complete lines appended since
    the last one. A line still being written is left for the next read. A file that shrank, whose
    header line changed (Lightning rewrites the whole file with a new header when a key appears)
    or whose bytes before the read position changed is read again from the start (``reset``)."""

    def __init__(self, path: str, limit: int = MAX_FILE) -> None:
        self.path = path
        self.limit = limit
        self.offset = 0  # after the last complete line parsed
        self.head = b""  # the header line, as bytes
        self.header: list[str] = []
        self.tail = b""  # the CHECK bytes before offset
        self.reads = 0  # reads that parsed new bytes (incremental or whole)
        self.resets = 0

    def read(self) -> tuple[list[list[str]], bool]:
        """(new rows, whether the file was read from the start: earlier rows are void)."""
        from .lightning_csv import csv_rows

        with open_read(self.path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > self.limit:
                raise OSError(f"{size:,} bytes, over the {self.limit:,}-byte limit for this format")
            reset = not self.offset or not same_as_read(f, size, self.offset, self.head, self.tail)
            if reset:
                if self.offset:
                    self.resets += 1
                f.seek(0)
                data = f.read(size)
                header, rows = csv_rows(data)
                cut = data.rfind(b"\n") + 1
                if not header:
                    self.offset, self.head, self.header, self.tail = 0, b"", [], b""
                    return [], True
                self.head = data[: data.find(b"\n") + 1]
                self.header = header
                self.offset = cut
                self.tail = data[max(0, cut - CHECK): cut]
                self.reads += 1
                return rows, True
            f.seek(self.offset)
            data = f.read(size - self.offset)
        cut = data.rfind(b"\n") + 1
        if not cut:
            return [], False
        _, rows = csv_rows(b"\n" + data[:cut])  # an empty first line stands for the header
        self.offset += cut
        self.tail = (self.tail + data[:cut])[-CHECK:]
        self.reads += 1
        return rows, False
