"""TensorBoard runs: every directory that directly holds ``events.out.tfevents.*`` files.

Logdir semantics as TensorBoard has them (OTHER_FORMATS.md §1):

* a run is a directory holding event files, named by its path relative to the root; its files
  are read in file-name order (a restarted writer starts a new file);
* ``add_hparams`` writes its session into a sub-directory named by a timestamp
  (``1700000000.1234/``): that is read as the parent run's config (hparams) and summary (the
  hparam metrics), not listed as a run of its own;
* ``add_scalars`` sub-runs (``run/compare_a/``, ``run/compare/a/``) and Keras's ``train/`` and
  ``validation/`` are runs of their own, grouped under their parent directory.

Steps that go back: TensorBoard's own purge rules are applied inside each file (by
``tfevents.EventFile``). Across files, a later file wins from its first step on (the writer was
restarted and logged those steps again), and the answer says which points were overridden.

State: event files have no exit record. A run whose last event's ``wall_time`` (a time inside
the file, which a copy does not reset) is within the staleness threshold is ``running?``;
otherwise it is ``stopped``, with the age of its last event.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Callable
from typing import Any

from ..confine import Refused, open_read, stat_file
from ..model import KILLED, RUNNING, Column, History, OtherKey, RunState, merge_histories
from .base import Claim, ReadContext, RunPart, SegmentInfo, Source
from .tfevents import EventFile, is_event_file

_TIMESTAMP_DIR = re.compile(r"^\d{9,}(\.\d+)?$")  # add_hparams' sub-directory: str(time.time())
_KERAS_SPLITS = frozenset({"train", "validation", "eval", "test", "val"})
NO_EXIT = "TensorBoard records no exit status"
_WRITERS = {"tensorboard.summary.writer.event_file_writer": "torch",
            "tensorflow.core.util.events_writer": "tensorflow"}


def _hparams_dir(path: str) -> bool:
    """Whether ``path`` is an add_hparams session directory of a parent run."""
    if not _TIMESTAMP_DIR.match(os.path.basename(path.rstrip(os.sep))):
        return False
    try:
        return any(is_event_file(n) for n in os.listdir(os.path.dirname(path.rstrip(os.sep))))
    except OSError:
        return False




def _monotonic(steps: array) -> tuple[array, int]:
    """``steps`` made non-decreasing the way a restart is read everywhere here: where the step
    goes back, the points logged before at that step or later are dropped (the later ones win).
    Returns the indices kept as an array (empty when nothing is dropped) and the count dropped."""
    if all(a <= b for a, b in zip(steps, steps[1:])):
        return array("q"), 0
    keep: list[int] = []
    for i, s in enumerate(steps):
        while keep and steps[keep[-1]] >= s:
            keep.pop()
        keep.append(i)
    return array("q", keep), len(steps) - len(keep)


class _FileView:
    """One event file as a History, rebuilt cheaply as the file grows: rows are the distinct
    steps with events, each scalar tag a column, ``_timestamp`` / ``_runtime`` from the events'
    wall times, non-scalars as ``other``. The arrays the reader appends to are shared, not
    copied, and only their new part is checked for order (1,000 new events on a 1M-point file
    cost milliseconds, not a pass over every point)."""

    def __init__(self, ef: EventFile) -> None:
        self.ef = ef
        self.checked: dict[str, tuple[int, bool]] = {}  # array -> (length checked, in order so far)
        self.runtime = array("d")  # wall time - first wall time, per timeline entry
        self.t0: float | None = None

    def _in_order(self, key: str, arr: array, strict: bool) -> bool:
        n0, ok = self.checked.get(key, (0, True))
        n = len(arr)
        if n < n0:  # purged or rewritten: check it all again
            n0, ok = 0, True
        if ok and n > n0:
            part = arr[max(n0 - 1, 0):n]
            ok = all(a < b for a, b in zip(part, part[1:])) if strict else all(a <= b for a, b in zip(part, part[1:]))
        self.checked[key] = (n, ok)
        return ok

    def history(self, notes: list[str]) -> History:
        ef = self.ef
        h = History()
        t_steps, t_wall = ef.timeline
        ordered = self._in_order("\0timeline", t_steps, strict=True)
        h.steps = t_steps if ordered else array("q", sorted(set(t_steps)))
        for tag in sorted(ef.scalars):
            steps, values = ef.scalars[tag]
            if not len(values):
                continue
            if not self._in_order(tag, steps, strict=False):
                keep, dropped = _monotonic(steps)
                if dropped:
                    steps, values = array("q", (steps[i] for i in keep)), array("d", (values[i] for i in keep))
                    notes.append(f"{os.path.basename(ef.path)}: {tag} steps go back within the file; "
                                 f"{dropped:,} earlier point(s) at the repeated steps replaced by the later ones")
            Column.install(h, tag, steps, values)
        if len(t_wall):
            if ordered:  # one timeline entry per step already (the last wall time at that step)
                ws, wv = t_steps, t_wall
            else:
                last: dict[int, float] = dict(zip(t_steps, t_wall))
                ws = array("q", sorted(last))
                wv = array("d", (last[s] for s in ws))
            t0 = ef.first_wall_time or wv[0]
            if t0 != self.t0 or len(self.runtime) > len(wv) or not ordered:
                self.runtime, self.t0 = array("d"), t0
            self.runtime.extend(w - t0 for w in wv[len(self.runtime):])
            Column.install(h, "_timestamp", ws, wv)
            Column.install(h, "_runtime", ws, self.runtime)
        for tag, o in sorted(ef.other.items()):
            h.other[tag] = OtherKey(count=o.count, first_step=o.first_step, last_step=o.last_step, last=None,
                                    kind=o.kind or o.plugin or "tensor")
        return h


SKIM_HEAD = 256 << 10  # bytes of a large event file read from its start for a run list
SKIM_TAIL = 256 << 10  # and from its end (resynchronised on the first valid record header)


def skim_event_file(path: str, head: int | None = None, tail: int | None = None) -> EventFile:
    """A sampled read of a large event file: the records in its first ``head`` bytes (identity,
    first steps, hparams) and in its last ``tail`` bytes (latest values), for run lists. Record
    boundaries are found again at the tail by the length checksum, as after damage."""
    head = SKIM_HEAD if head is None else head
    tail = SKIM_TAIL if tail is None else tail
    ef = EventFile(path, opener=open_read)
    with open_read(path) as f:
        size = os.fstat(f.fileno()).st_size
        ef.size = size
        ef._read(f, min(head, size), None)
        start = max(ef.offset, size - tail)
        ef.tail = ""
        if start < size:
            q = ef._resync(f, start, size) if start > ef.offset else start
            if q is not None:
                ef.offset = q
                ef._read(f, size, None)
    return ef


class TensorBoardRun(RunPart):
    """One TensorBoard run directory, its event files followed incrementally."""

    source = "tensorboard"

    def __init__(self, path: str, root: str) -> None:
        self.path = path
        self.root = root
        rel = os.path.relpath(path, root) if root else os.path.basename(path)
        self.name = os.path.basename(path.rstrip(os.sep)) if rel == "." else rel.replace(os.sep, "/")
        self.files: dict[str, EventFile] = {}  # file name -> reader
        self.keys: dict[str, tuple[int, int] | None] = {}  # file name -> (size, mtime) at the last read
        self.hp_files: dict[str, EventFile] = {}  # "sub/name" -> reader of add_hparams sessions
        self.hp_keys: dict[str, tuple[int, int] | None] = {}
        self.refused: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.skimmed: set[str] = set()  # files of which only a skim is held
        self.evicted = False  # dropped for memory: skimmed until a tool asks for them in full
        self.version = 0
        self._built: tuple[int, History, list[str]] | None = None
        self._views: dict[str, _FileView] = {}  # file name -> its History builder
        self.group = self._group()

    def _group(self) -> str:
        """The nearest enclosing run's name for add_scalars sub-runs (torch ``run/tag_a/``,
        tensorboardX ``run/tag/a/``), else the parent directory's for Keras's train/validation."""
        root = self.root.rstrip(os.sep)

        def name_of(d: str) -> str:
            rel = os.path.relpath(d, root)
            return os.path.basename(root) if rel == "." else rel.replace(os.sep, "/")

        parent = os.path.dirname(self.path.rstrip(os.sep))
        d = parent
        for _ in range(3):  # tensorboardX nests add_scalars runs two levels down
            if not root or not (d == root or d.startswith(root + os.sep)):
                break
            try:
                if any(is_event_file(n) for n in os.listdir(d)):
                    return name_of(d)
            except OSError:
                break
            if d == root:
                break
            d = os.path.dirname(d)
        if root and parent.startswith(root) and os.path.basename(self.path) in _KERAS_SPLITS:
            return name_of(parent)
        return ""

    # ---- reading -----------------------------------------------------------------------------------

    def _list(self) -> tuple[list[str], list[str]]:
        try:
            names = os.listdir(self.path)
        except OSError as e:
            self.errors["."] = f"cannot list {self.name}: {e.strerror or e}"
            return [], []
        files = sorted(n for n in names if is_event_file(n))
        subs = sorted(n for n in names if _TIMESTAMP_DIR.match(n) and os.path.isdir(os.path.join(self.path, n)))
        hp = []
        for sub in subs:
            try:
                hp += [f"{sub}/{n}" for n in sorted(os.listdir(os.path.join(self.path, sub))) if is_event_file(n)]
            except OSError:
                continue
        return files, hp

    def _follow(self, readers: dict[str, EventFile], keys: dict, name: str,
                progress: Callable[[int, int], None] | None, skim: bool = False) -> bool:
        """Read what is new in one event file. ``skim``: a file not read yet is only skimmed
        (its head and tail); a skimmed file asked for in full is read again from the start."""
        path = os.path.join(self.path, name)
        try:
            st = stat_file(path)
            key = (st.st_size, st.st_mtime_ns)
            self.refused.pop(name, None)
        except Refused as e:
            self.refused[name] = e.why
            key = None
        except OSError:
            key = None
        if key is None:
            gone = readers.pop(name, None) is not None
            keys.pop(name, None)
            return gone
        skimmed = name in self.skimmed
        if keys.get(name) == key and not (skimmed and not skim):
            return False
        ef = readers.get(name)
        try:
            if skim and (ef is None or skimmed):
                readers[name] = skim_event_file(path)
                self.skimmed.add(name)
            else:
                if ef is None or skimmed or (keys.get(name) is not None and key[0] < keys[name][0]):
                    ef = readers[name] = EventFile(path, opener=open_read)  # new, or rewritten smaller: start over
                self.skimmed.discard(name)
                ef.update(progress)
            self.errors.pop(name, None)
        except OSError as e:
            self.errors[name] = f"cannot read {name}: {e.strerror or e}"
        keys[name] = key
        return True

    def refresh(self, full: bool = False, skim_above: int = 0,
                progress: Callable[[int, int], None] | None = None) -> bool:
        files, hp = self._list()
        changed = False
        for gone in set(self.files) - set(files):
            self.files.pop(gone, None)
            self.keys.pop(gone, None)
            changed = True
        for gone in set(self.hp_files) - set(hp):
            self.hp_files.pop(gone, None)
            self.hp_keys.pop(gone, None)
            changed = True
        for name in files:
            # a file not read in full yet is skimmed for a list when it is large (or was evicted)
            skim = not full and (name not in self.files or name in self.skimmed) and (
                self.evicted or bool(skim_above and self._size(name) > skim_above))
            changed |= self._follow(self.files, self.keys, name, progress, skim=skim)
        if full:
            self.evicted = False
        for name in hp:
            changed |= self._follow(self.hp_files, self.hp_keys, name, None)
        if changed:
            self.version += 1
        return changed

    def _size(self, name: str) -> int:
        try:
            return stat_file(os.path.join(self.path, name)).st_size
        except OSError:
            return 0

    @property
    def sampled(self) -> bool:
        return bool(self.skimmed)

    @property
    def full(self) -> bool:
        return not self.skimmed

    @property
    def in_memory(self) -> bool:
        return any(n not in self.skimmed for n in self.files)

    # ---- decoding outside the index lock (see RunIndex.read_full) -----------------------------------

    def keyed_plan(self, names: frozenset[str]) -> tuple | None:
        """A keyed read decodes the skimmed files in full (a full read is as fast here)."""
        return ("full",) if self.skimmed else None

    def decode_detached(self, progress: Callable[[int, int], None] | None = None) -> tuple | None:
        """Read every skimmed file in full into new readers, touching nothing of this part (for a
        call that decodes outside the index lock); ``install_full`` puts them in place."""
        out: dict[str, tuple[EventFile, tuple[int, int]]] = {}
        done = 0
        for name in sorted(list(self.skimmed)):
            path = os.path.join(self.path, name)
            st = stat_file(path)
            ef = EventFile(path, opener=open_read)
            ef.update((lambda off, size, base=done: progress(base + off, size)) if progress else None)
            out[name] = (ef, (st.st_size, st.st_mtime_ns))
            done += ef.offset
        return (out,) if out else None

    def install_full(self, decoded: tuple) -> None:
        for name, (ef, key) in decoded[0].items():
            if name in self.skimmed:  # (a read under the lock may have done it meanwhile)
                self.files[name] = ef
                self.keys[name] = key  # the next refresh reads on from here if the file grew
                self.skimmed.discard(name)
        self.evicted = False
        self.version += 1

    def evict(self) -> None:
        """Forget fully read files (for the memory budget); they are skimmed until asked for in full."""
        full = [n for n in self.files if n not in self.skimmed]
        if full:
            for n in full:
                self.files.pop(n, None)
                self.keys.pop(n, None)
            self.evicted = True
            self.version += 1

    def _build(self) -> tuple[History, list[str]]:
        if self._built is not None and self._built[0] == self.version:
            return self._built[1], self._built[2]
        names = sorted(self.files)
        within: list[str] = []
        views = {}
        for n in names:
            ef = self.files[n]
            view = self._views.get(n)
            views[n] = view if view is not None and view.ef is ef else _FileView(ef)
        self._views = views
        parts = [views[n].history(within) for n in names]
        h, merge_notes = merge_histories(parts)
        with_rows = [n for n, p in zip(names, parts) if p.rows]
        notes = []
        for note in merge_notes:  # "segment 2 steps ..." -> the file's name
            m = re.match(r"segment (\d+) (.*) overridden by a later segment$", note)
            if m and int(m.group(1)) <= len(with_rows):
                note = (f"{with_rows[int(m.group(1)) - 1]} {m.group(2)} overridden by a later event file "
                        f"(the writer restarted and logged those steps again; the later file wins)")
            notes.append(note)
        for n in names:  # purges by TensorBoard's rules (kept regressions are handled above)
            notes += [f"{n}: {p}" for p in self.files[n].purged if "points kept" not in p]
        notes += within
        for n in names:
            if self.files[n].tail:  # a live writer's last record, or a killed one's: not damage
                notes.append(f"{n}: {self.files[n].tail}")
        self._built = (self.version, h, notes)
        return h, notes

    # ---- the part's view ---------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.name

    @property
    def group_key(self) -> str:
        return f"tensorboard:{self.path}"

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "tags": []}

    @property
    def start_time(self) -> float | None:
        times = [ef.first_wall_time for ef in self.files.values() if ef.first_wall_time]
        return min(times) if times else None

    @property
    def info(self) -> SegmentInfo:
        names = sorted(self.files)
        main = os.path.join(self.path, names[-1]) if names else None
        label = names[-1] if len(names) == 1 else (f"{len(names)} event files" if names else "no event file")
        subs = sorted({n.split("/", 1)[0] for n in self.hp_files})
        hints = {
            "empty": (f"its event files ({label}, {self.log_bytes:,} bytes) hold no scalar yet: the writer has not "
                      f"flushed (TensorBoard writers flush every 120 s or 10 events by default) or logged only "
                      f"non-scalars. Call again in a minute"),
            "no_config": ("no hparams were logged (add_hparams, the hparams plugin's hp.hparams(), or a Keras "
                          "HParams callback write them)"),
            "config_from": "TensorBoard hparams" + (
                f"; config from add_hparams session{'s' if len(subs) > 1 else ''} in "
                f"{', '.join(s + '/' for s in subs)} (attached to this run)" if subs else ""),
            "clock": "event wall times",
        }
        return SegmentInfo("tensorboard", "tensorboard", main, label=label, files=names, hints=hints)

    @property
    def producer(self) -> str:
        """'tensorboard (torch)': the writer, from the source_metadata torch and TF write
        (tensorboardX writes none)."""
        writers = sorted({_WRITERS.get(ef.writer, ef.writer) for ef in self.files.values() if ef.writer})
        return "tensorboard" + (f" ({', '.join(writers)})" if writers else "")

    @property
    def history(self) -> History:
        return self._build()[0]

    def notes(self) -> list[str]:
        notes = list(self._build()[1])
        if self.hp_files:
            subs = sorted({n.split("/", 1)[0] for n in self.hp_files})
            notes.append(f"config from add_hparams session{'s' if len(subs) > 1 else ''} in "
                         f"{', '.join(s + '/' for s in subs)} (attached to this run)")
        return notes

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        for name in sorted(self.files):
            cfg.update(self.files[name].hparams)
        for name in sorted(self.hp_files):
            cfg.update(self.hp_files[name].hparams)
        return cfg

    @property
    def summary(self) -> dict[str, Any]:
        """Each scalar tag's last value; add_hparams metrics from its session directory."""
        out: dict[str, Any] = {}
        h = self.history
        for name, col in h.columns.items():
            if not name.startswith("_") and len(col):
                out[name] = col.values[-1]
        for name in sorted(self.hp_files):
            for tag, (_, values) in self.hp_files[name].scalars.items():
                if len(values):
                    out.setdefault(tag, values[-1])
        return out

    @property
    def runtime(self) -> float | None:
        firsts = [ef.first_wall_time for ef in self.files.values() if ef.first_wall_time]
        lasts = [ef.last_wall_time for ef in self.files.values() if ef.last_wall_time]
        return max(lasts) - min(firsts) if firsts and lasts else None

    @property
    def log_bytes(self) -> int:
        return sum(k[0] for k in self.keys.values() if k)

    @property
    def points(self) -> int:
        """Values held of fully read files (for the memory budget)."""
        return sum(len(v) for n, ef in self.files.items() if n not in self.skimmed for _, v in ef.scalars.values())

    def state(self, now: float, stale_after: float) -> RunState:
        last = max((ef.last_wall_time for ef in self.files.values() if ef.last_wall_time), default=None)
        if last is None:
            mtimes = [k[1] / 1e9 for k in self.keys.values() if k]
            last_write = max(mtimes) if mtimes else None
            running = last_write is not None and now - last_write <= stale_after
            return RunState(RUNNING if running else KILLED, f"no event written yet; {NO_EXIT}", None, last_write,
                            certain=False, stopped=True)
        running = now - last <= stale_after
        return RunState(RUNNING if running else KILLED, NO_EXIT, None, last, certain=False, clock="event",
                        stopped=True)

    def problems(self) -> list[str]:
        out = [f"{name} not read: {why}" for name, why in sorted(self.refused.items())]
        out += [self.errors[k] for k in sorted(self.errors)]
        for name in sorted(self.files):
            ef = self.files[name]
            if ef.damage.any:
                out.append(f"{name}: {ef.damage.describe()}")
        return out


class TensorBoardSource(Source):
    name = "tensorboard"
    describe = "TensorBoard event files (events.out.tfevents.*)"

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Any) -> Claim | None:
        if not any(is_event_file(n) for n in files):
            return None
        if _hparams_dir(path):
            return Claim(run=False, descend=False)  # read by its parent run
        return Claim(run=True, descend=True)  # sub-runs (add_scalars, splits) may be below

    def open(self, path: str, ctx: ReadContext) -> TensorBoardRun:
        return TensorBoardRun(path, ctx.root)
