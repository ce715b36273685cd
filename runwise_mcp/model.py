"""The run model every reader produces and every tool consumes.

History is columnar: one ``Column`` per metric key with compact arrays, never a dict per row.
A column that has been logged in every row since it first appeared shares the history's
step array (8 bytes a point); a sparse column keeps its own steps (16 bytes a point).
"""

from __future__ import annotations

import hashlib
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

# Keys wandb adds to every row; they are kept but are not "metrics".
RESERVED_KEYS = ("_step", "_runtime", "_timestamp")

STEP_LIMIT = 1 << 63  # steps are 64-bit integers (the history's step array holds int64)
MAX_EPOCH = 253_402_300_800.0  # 10000-01-01: a later (or infinite) time is no time a run started
MAX_SECONDS = 1e10  # ~317 years: a longer (or infinite) runtime is a bad value


def sane_time(t: float | None) -> float | None:
    """An epoch time a run can have started at (1970 to 9999), else None."""
    return t if isinstance(t, (int, float)) and 0 < t < MAX_EPOCH else None


def sane_seconds(s: float | None) -> float | None:
    """A duration a run can have taken (finite, 0 to ~317 years), else None."""
    return s if isinstance(s, (int, float)) and 0 <= s < MAX_SECONDS else None


class Column:
    """The numeric points of one key. Steps ascend within one file."""

    __slots__ = ("_history", "_last_row", "_start_row", "_steps", "name", "values")

    def __init__(self, name: str, history: History) -> None:
        self.name = name
        self.values = array("d")
        self._steps: array | None = None  # None while dense (rows _start_row.._last_row)
        self._start_row = -1
        self._last_row = -2
        self._history = history

    @classmethod
    def install(cls, history: History, name: str, steps: array, values: array) -> Column:
        """A column holding its own steps (formats whose keys are logged independently: TensorBoard
        tags, MLflow metrics), put into ``history`` under ``name``."""
        col = cls(name, history)
        col._steps = steps
        col.values = values
        col._start_row, col._last_row = 0, len(values) - 1
        history.columns[name] = col
        return col

    def append(self, row: int, step: int, value: float) -> None:
        if self._steps is None:
            if self._start_row < 0:
                self._start_row = row
            elif row != self._last_row + 1:
                # Became sparse: materialise the steps shared so far.
                self._steps = self._history.steps[self._start_row : self._last_row + 1]
                self._steps.append(step)
                self._last_row = row
                self.values.append(value)
                return
            self._last_row = row
        else:
            self._steps.append(step)
            self._last_row = row
        self.values.append(value)

    def extend(self, row0: int, steps: array, values: array) -> None:
        """``append`` of ``values[i]`` at row ``row0 + i``, step ``steps[i]``, for every i (rows
        ``row0``... are new rows of the history, added together)."""
        n = len(values)
        if not n:
            return
        if self._steps is None and (self._start_row < 0 or row0 == self._last_row + 1):
            if self._start_row < 0:
                self._start_row = row0
        elif self._steps is not None:
            self._steps.extend(steps)
        else:
            self.append(row0, steps[0], values[0])  # becomes sparse here
            if n > 1:
                self.extend(row0 + 1, steps[1:], values[1:])
            return
        self._last_row = row0 + n - 1
        self.values.extend(values)

    def extend_from(self, other: Column, row0: int) -> None:
        """Append ``other``'s points, whose rows are numbered from ``row0`` in this column's
        history (the rows of a later part of the same file, decoded apart: a parallel read)."""
        if not other.values:
            return
        if other._steps is None:  # dense over its rows: contiguous from its _start_row
            arr, lo, hi = other.step_view()
            self.extend(row0 + other._start_row, arr[lo:hi], other.values)
            return
        if self._steps is None:  # becomes sparse (it would have at other's first gap)
            self._steps = self.steps
            if self._start_row < 0:
                self._start_row = row0 + other._start_row
        self._steps.extend(other._steps)
        self.values.extend(other.values)
        self._last_row = row0 + other._last_row

    @property
    def last_row(self) -> int:
        """Index of the history row that holds the last point (-1 when empty)."""
        return self._last_row if self.values else -1

    @property
    def steps(self) -> array:
        if self._steps is not None:
            return self._steps
        if self._start_row < 0:
            return array("q")
        return self._history.steps[self._start_row : self._last_row + 1]

    def step_view(self) -> tuple[array, int, int]:
        """(array, lo, hi): the steps of the points are ``array[lo:hi]``, without copying a dense
        column's share of the history's steps (``steps`` copies it)."""
        if self._steps is not None:
            return self._steps, 0, len(self._steps)
        if self._start_row < 0 or not self.values:
            return array("q"), 0, 0
        return self._history.steps, self._start_row, self._last_row + 1

    def __len__(self) -> int:
        return len(self.values)

    @property
    def last_step(self) -> int | None:
        if not self.values:
            return None
        if self._steps is not None:
            return self._steps[-1]
        return self._history.steps[self._last_row]

    @property
    def first_step(self) -> int | None:
        if not self.values:
            return None
        if self._steps is not None:
            return self._steps[0]
        return self._history.steps[self._start_row]


@dataclass
class OtherKey:
    """A key whose values are not numbers (text, media objects, lists, null)."""

    count: int = 0
    first_step: int = 0
    last_step: int = 0
    last: Any = None
    kind: str = ""
    last_row: int = -1


DROPPED_TRACKED = 100_000  # distinct keys over a cap that are counted exactly (then: "over N")


class History:
    """Sparse rows stored by column.

    ``max_keys`` (None: no cap) bounds the keys kept; further keys are dropped and counted
    (``dropped``: distinct keys, exact up to DROPPED_TRACKED; ``dropped_names``: the first few)."""

    def __init__(self, max_keys: int | None = None) -> None:
        self.steps = array("q")  # step of every row, in file order
        self.columns: dict[str, Column] = {}
        self.other: dict[str, OtherKey] = {}
        self.max_keys = max_keys
        self._dropped: set[int] | None = None  # hashes of the dropped keys
        self.dropped_names: list[str] = []

    def admit(self, name: str) -> bool:
        """Whether ``name`` is (or may become) one of the kept keys; counts it when not."""
        if self.max_keys is None or name in self.columns or name in self.other \
                or len(self.columns) + len(self.other) < self.max_keys:
            return True
        self.drop(name)
        return False

    def drop(self, name: str) -> None:
        """Count ``name`` as a key not kept."""
        if self._dropped is None:
            self._dropped = set()
        if len(self._dropped) < DROPPED_TRACKED:
            n = len(self._dropped)
            self._dropped.add(int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"),
                                                             digest_size=8).digest(), "little"))
            if len(self._dropped) > n and len(self.dropped_names) < 3:
                self.dropped_names.append(name)

    @property
    def dropped(self) -> int:
        return len(self._dropped) if self._dropped else 0

    def dropped_note(self, what: str = "keys") -> str:
        """"N more keys not kept: over the per-run cap of M (first: a, b, c)", or ""."""
        n = self.dropped
        if not n:
            return ""
        count = f"over {n:,}" if n >= DROPPED_TRACKED else f"{n:,}"
        first = ", ".join(x[:60] for x in self.dropped_names)
        return f"{count} more {what} not kept: over the per-run cap of {self.max_keys:,} (first: {first})"

    @property
    def rows(self) -> int:
        return len(self.steps)

    def column(self, name: str) -> Column:
        col = self.columns.get(name)
        if col is None:
            col = self.columns[name] = Column(name, self)
        return col

    def add_other(self, name: str, step: int, value: Any, row: int = -1) -> None:
        o = self.other.get(name)
        if o is None:
            if not self.admit(name):
                return
            o = self.other[name] = OtherKey(first_step=step)
        o.count += 1
        o.last_step = step
        o.last = value
        o.kind = value_kind(value)
        o.last_row = row if row >= 0 else len(self.steps) - 1

    def extend_other(self, name: str, steps: array, last: Any, row0: int) -> None:
        """``add_other`` at rows ``row0``... (steps ``steps``), the last value ``last``."""
        o = self.other.get(name)
        if o is None:
            if not self.admit(name):
                return
            o = self.other[name] = OtherKey(first_step=steps[0])
        o.count += len(steps)
        o.last_step = steps[-1]
        o.last = last
        o.kind = value_kind(last)
        o.last_row = row0 + len(steps) - 1

    def extend_from(self, other: History) -> None:
        """Append ``other``'s rows (a later part of the same file, decoded apart) to these, keys
        in the order they first appear; ``other``'s columns are used up. The caller makes sure
        neither holds dropped keys or nears the key cap (admission order would then matter)."""
        row0 = len(self.steps)
        for name in list(other.columns):
            col = other.columns.pop(name)  # ``other`` is used up: each column freed once copied
            self.column(name).extend_from(col, row0)
            del col
        for name, o in other.other.items():
            mine = self.other.get(name)
            if mine is None:
                mine = self.other[name] = OtherKey(first_step=o.first_step)
            mine.count += o.count
            mine.last_step, mine.last, mine.kind = o.last_step, o.last, o.kind
            mine.last_row = row0 + o.last_row
        self.steps.extend(other.steps)

    def add_row(self, step: int, items: list[tuple[str, Any]]) -> None:
        """Append one row of (name, value) pairs; numbers go to columns, the rest to ``other``."""
        row = len(self.steps)
        self.steps.append(step)
        self.add_items(row, step, items)

    def add_items(self, row: int, step: int, items: list[tuple[str, Any]]) -> None:
        """Add (name, value) pairs to an existing row."""
        for name, v in items:
            if v.__class__ is float or (isinstance(v, (int, bool)) and abs(v) < 2**63):
                if name in self.columns or self.admit(name):
                    self.column(name).append(row, step, float(v))
            else:
                self.add_other(name, step, v, row)

    @property
    def first_step(self) -> int | None:
        return self.steps[0] if self.steps else None

    @property
    def last_step(self) -> int | None:
        return self.steps[-1] if self.steps else None

    def keys(self) -> list[str]:
        return sorted(set(self.columns) | set(self.other))

    def series(self, name: str) -> tuple[array, array]:
        col = self.columns.get(name)
        if col is None:
            return array("q"), array("d")
        return col.steps, col.values


def history_after(h: History, step: int) -> History:
    """The points of ``h`` at steps after ``step`` (a new History; numeric columns only)."""
    import bisect

    out = History()
    i = bisect.bisect_right(h.steps, step)
    out.steps.extend(h.steps[i:])
    for name, col in h.columns.items():
        steps, values = col.steps, col.values
        j = bisect.bisect_right(steps, step)
        if j < len(values):
            c = Column(name, out)
            c._steps = array("q", steps[j:])
            c.values.extend(values[j:])
            c._start_row, c._last_row = 0, len(c.values) - 1
            out.columns[name] = c
    return out


def value_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return "text"
    if isinstance(v, dict):
        t = v.get("_type")
        return str(t) if isinstance(t, str) else "object"
    if isinstance(v, list):
        return "list"
    return type(v).__name__


def merge_histories(parts: list[History]) -> tuple[History, list[str]]:
    """Concatenate the histories of resume segments (in start order).

    A later segment overrides the earlier ones from its first step on: points of earlier
    segments at or after that step are dropped. Returns the merged history and notes that
    say what was overridden.
    """
    parts = [p for p in parts if p.rows]
    if len(parts) <= 1:
        return (parts[0] if parts else History()), []
    notes: list[str] = []
    # cut[i]: first step of the nearest later segment that has history (exclusive upper bound)
    cuts: list[float] = []
    for i in range(len(parts)):
        later = [p.first_step for p in parts[i + 1 :] if p.first_step is not None]
        cuts.append(min(later) if later else math.inf)
    merged = History()
    # rows: walk segment rows in order, keeping rows below the cut
    for i, part in enumerate(parts):
        cut = cuts[i]
        keep = sum(1 for s in part.steps if s < cut)
        dropped = part.rows - keep
        if dropped:
            notes.append(
                f"segment {i + 1} steps {int(cut):,}..{part.last_step or 0:,} "
                f"({dropped:,} rows) overridden by a later segment"
            )
        merged.steps.extend(s for s in part.steps if s < cut)
    # columns: concatenate each key's points below the cut, marking them sparse
    names: list[str] = []
    for part in parts:
        for n in part.columns:
            if n not in merged.columns and n not in names:
                names.append(n)
    for name in names:
        col = Column(name, merged)
        col._steps = array("q")
        for i, part in enumerate(parts):
            c = part.columns.get(name)
            if c is None:
                continue
            cut = cuts[i]
            steps, values = c.steps, c.values
            if cut == math.inf or not steps or steps[-1] < cut:
                col._steps.extend(steps)
                col.values.extend(values)
            else:
                for s, v in zip(steps, values):
                    if s < cut:
                        col._steps.append(s)
                        col.values.append(v)
        if not col.values:  # every point at or after a later segment's first step: overridden, like
            notes.append(f"{name}: every point overridden by a later segment")  # the other keys below
            continue
        col._start_row = 0
        col._last_row = len(col.values) - 1
        merged.columns[name] = col
    for i, part in enumerate(parts):
        for name, o in part.other.items():
            if o.first_step >= cuts[i]:
                continue
            m = merged.other.get(name)
            if m is None:
                merged.other[name] = OtherKey(o.count, o.first_step, o.last_step, o.last, o.kind)
            else:
                m.count += o.count
                m.last_step, m.last, m.kind = o.last_step, o.last, o.kind
    return merged, notes


# ---------------------------------------------------------------------------------------------
# Run state


FINISHED, CRASHED, RUNNING, KILLED, UNKNOWN = "finished", "crashed", "running", "killed", "unknown"
STATES = (RUNNING, FINISHED, CRASHED, KILLED)


@dataclass
class RunState:
    state: str  # finished | crashed | running | killed | unknown
    basis: str  # why we say so, e.g. "exit code 1" or "no exit record, nothing written for 3h"
    exit_code: int | None = None
    last_write: float | None = None  # epoch seconds of the newest write we know of
    certain: bool = True  # False for running/killed, which are judged from file ages
    clock: str = "write"  # what last_write is: "write" (a file's time) or "event" (a time inside the log)
    stopped: bool = False  # the format records no exit status: "stopped", not "killed?"


@dataclass
class MetricDef:
    name: str = ""
    glob: str = ""
    step_metric: str = ""
    summary: tuple[str, ...] = ()
    goal: str = ""  # "minimize" | "maximize" | ""
    hidden: bool = False


@dataclass
class Segment:
    """One run directory (a resumed run has several)."""

    path: str  # run directory
    log_path: str | None  # the .wandb file, if any
    layout: str  # wandb: "wandb" (0.10+) | "dryrun" (pre-0.10 jsonl) | "jsonl" (files/wandb-history.jsonl) | "console" (only files/output.log); else the source
    start_time: float | None
    log_bytes: int = 0  # its size when last read
    producer: str = ""  # e.g. "wandb 0.31.0"
    rows: int = 0
    first_step: int | None = None
    last_step: int | None = None
    state: RunState | None = None
    source: str = "wandb"  # the format in a word: "wandb", "tensorboard", ...
    label: str = ""  # how the source line names it ("" = the log file's name)
    hints: dict[str, str] = field(default_factory=dict)  # format-specific wording (see sources.base.SegmentInfo)
    progress: tuple[int, int, str] | None = None  # (done, planned total, basis) where the format records it
    rate: tuple[float, str] | None = None  # (steps/s, basis) where the format gives a clock (HF checkpoint saves)


@dataclass
class Run:
    """A run as tools see it: identity, state, history, summary, config."""

    id: str
    name: str = ""
    project: str = ""
    entity: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    host: str = ""
    start_time: float | None = None
    runtime: float | None = None  # seconds
    state: RunState = field(default_factory=lambda: RunState(UNKNOWN, "not read"))
    segments: list[Segment] = field(default_factory=list)
    history: History = field(default_factory=History)
    system: History = field(default_factory=History)
    summary: dict[str, Any] = field(default_factory=dict)  # flat dotted keys
    config: dict[str, Any] = field(default_factory=dict)  # nested, without _wandb
    metrics: dict[str, MetricDef] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    console_tail: list[str] = field(default_factory=list)
    notes_read: list[str] = field(default_factory=list)  # reader notes: skipped data, overrides, fallbacks
    sampled: bool = False  # history holds only samples of a large log (run lists); tools on one run read all
    sample_note: str = ""  # a skim whose sampled parts hold no (last) rows says so (run lists show it)
    keys_read: frozenset[str] | None = None  # a keyed read: history holds only these keys (None: all)
    # other directories holding a copy of one of its segments (same run id and start): listed
    # once, read from the most complete copy; (path, "" when identical, else how it differs)
    copies: list[tuple[str, str]] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def last_step(self) -> int | None:
        return self.history.last_step

    @property
    def source(self) -> str:
        """The format of its newest segment, in a word ("wandb", "tensorboard", ...)."""
        return self.segments[-1].source if self.segments else "wandb"


def judge_state(has_exit: bool, exit_code: int | None, last_write: float | None, now: float,
                stale_after: float, *, empty: bool = False, source: str = "no exit record") -> RunState:
    """Decide a run's state from its exit record and how recently its files were written.

    With an exit record the state is certain. Without one, a run written to within
    ``stale_after`` seconds is taken as running, otherwise as killed: the files alone cannot
    tell a killed run from a silent one, so those two are marked uncertain.
    """
    if has_exit:
        code = exit_code or 0
        if code == 0:
            return RunState(FINISHED, "exit code 0", 0, last_write)
        if code == 255:
            return RunState(CRASHED, "interrupted, exit code 255", code, last_write)
        return RunState(CRASHED, f"exit code {code}", code, last_write)
    basis = "nothing logged yet" if empty else source
    if last_write is not None and now - last_write <= stale_after:
        return RunState(RUNNING, basis, None, last_write, certain=False)
    return RunState(KILLED, basis, None, last_write, certain=False)


def unescape(text: str) -> str | None:
    """The raw text behind an answer's escaped form of a name or key (the inverse of
    ``render.text.clean``: ``\\x1b``, ``\\n``, ``\\u202e``, ``\\\\``), or None when ``text`` holds no
    escape. Lets a caller pass back a name exactly as an answer showed it."""
    if "\\" not in text:
        return None
    try:
        raw = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return None
    return raw if raw != text else None
