"""Reader of the wandb transaction log `run-<id>.wandb` (wandb 0.10 through 0.31+).

Standard library only. Framing comes from ``leveldb_log``; each record is a protobuf
``wandb_internal.Record`` of which we decode only the fields we use (WANDB_FORMAT.md §7).
``WandbLog`` folds records into history columns, summary, config, identity, exit, metric
definitions, console tail and system stats. ``update()`` reads only bytes added since the
previous call, so following a live run costs only its new records.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

from ..confine import open_read, stat_file
from ..model import STEP_LIMIT, History, MetricDef, sane_time
from . import protowire as pw
from .leveldb_log import BLOCK, LogReader

HEADER = b":W&B" + b"\xe1\xbe" + b"\x00"


class ReadInOneProcess(Exception):
    """A parallel read's parts could not be joined into exactly the sequential state (see
    ``wandb_parallel``): the log is read on in one process."""


FIRST_ROW = (-1, b"")  # pending at the start of a parallel read's part: "whatever the part before left"

# Record oneof field numbers
R_HISTORY, R_SUMMARY, R_OUTPUT, R_CONFIG, R_STATS = 2, 3, 4, 5, 7
R_METRIC, R_OUTPUT_RAW, R_RUN, R_EXIT, R_HEADER, R_ENVIRONMENT = 12, 13, 17, 18, 21, 26

CONSOLE_TAIL_LINES = 200
CONSOLE_STREAMS = 8  # console streams kept per log (wandb writes 0 stderr and 1 stdout); records of others are counted
HISTORY_KEY_CAP = 20_000  # history keys kept per log; further keys are counted and named in a note
SYSTEM_KEY_CAP = 2_000  # system metric keys kept per log
NAMES_CAP = 2 * HISTORY_KEY_CAP  # distinct item keys (history and summary, media fields apart) decoded per log
SUMMARY_VALUE_MAX = 1 << 20  # bytes of one summary value kept (a larger one is replaced by a note of its size)
SUMMARY_MAX_BYTES = 8 << 20  # bytes of summary values kept per log
VALUE_MAX = 1 << 20  # bytes of one non-numeric history value kept
MEMO_MAX = 64 << 10  # a summary record is remembered for the next identical one only up to this size
CONSOLE_MAX_LINE = 1 << 16  # characters kept of one console line (a 64 MiB output record stays 64 KiB)
SKIM_HEAD = 64 << 10  # a skim reads the head (run record, config),
SKIM_TAIL = 32 << 10  # the tail (last rows, summary, exit record), widened until it holds a row
SKIM_BLOCKS = 32  # and this many evenly spaced 32 KiB blocks in between (trend samples)
SKIM_TAIL_ROWS = 8  # the tail is widened until it holds this many history rows
SKIM_READ_BUDGET = 8 << 20  # bytes a skim reads at most, whatever the log's layout
ITEM_MEMO_MAX = 4096  # item layouts (key and value length) remembered per log for the fast path
MEDIA_DEPTH = 16  # a key is tried as a field of a media object at its first this many dots
PROGRESS_EVERY = 50_000  # records between progress reports of a long read
PARALLEL_MIN_BYTES = 32 << 20  # a first read of a smaller log uses one process (Settings.parallel_min_bytes)
_SUMMARY_KINDS = {1: "min", 2: "max", 3: "mean", 4: "best", 5: "last", 6: "none", 7: "copy", 8: "first"}


def max_time(t: float | None, col: Any) -> float | None:
    """The later of ``t`` and the newest sane time among the last values of a ``_timestamp``
    column (a bad value in the last row does not hide the row before it)."""
    if col is not None:
        vals = col.values
        for v in reversed(vals[-8:]):
            v = sane_time(v)
            if v is not None:
                t = v if t is None or v > t else t
                break
    return t


def cut_note(size: int) -> str:
    """What a value over a size cap is kept as."""
    return f"<{size:,} bytes, not kept: over the per-run size cap>"


def decode_json(raw: bytes) -> Any:
    """A value_json payload: JSON with NaN/Infinity tokens allowed. Never raises."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")


def _number_or_json(raw: bytes) -> Any:
    try:
        return float(raw)  # fast path: most history values are numbers (also NaN/Infinity)
    except ValueError:
        return decode_json(raw)


def flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    """Nested dicts become dotted keys (wandb's naming); media objects (``_type``) stay whole."""
    if isinstance(value, dict) and value and "_type" not in value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append((prefix, value))


def step_num(buf: bytes, s: int, e: int) -> int:
    """HistoryStep.num of the HistoryStep at buf[s:e], which begins with num's tag (0x08). The
    step of every row: a varint of 1-3 bytes that is the whole field is read inline (a call to
    protowire costs more than the rest of it), any other through protowire."""
    n = e - s
    if n == 2 and buf[s + 1] < 0x80:
        return buf[s + 1]
    if n == 3 and buf[s + 2] < 0x80 <= buf[s + 1]:
        return (buf[s + 1] & 0x7F) | buf[s + 2] << 7
    if n == 4 and buf[s + 3] < 0x80 <= buf[s + 2] and buf[s + 1] >= 0x80:
        return (buf[s + 1] & 0x7F) | (buf[s + 2] & 0x7F) << 7 | buf[s + 3] << 14
    return pw.int64(pw.varint(buf, s + 1, e)[0])


def _item_end(buf: bytes, pos: int, end: int) -> int:
    """End of the length-delimited field whose tag is at ``pos``."""
    ln = buf[pos + 1]
    if ln < 0x80:
        return pos + 2 + ln
    ln, s = pw.varint(buf, pos + 1, end)
    return s + ln


def _split_items(buf: bytes) -> list[bytes] | None:
    """Split a message made only of field-1 sub-messages into their raw bytes (tag included)."""
    out = []
    pos, end = 0, len(buf)
    while pos < end:
        if buf[pos] != 0x0A:
            return None
        ln = buf[pos + 1]
        if ln < 0x80:
            s = pos + 2
        else:
            ln, s = pw.varint(buf, pos + 1, end)
        out.append(buf[pos : s + ln])
        pos = s + ln
    return out if pos == end else None


class Console:
    """Bounded console tail rebuilt from output records (`\\r` redraws resolved)."""

    def __init__(self, max_lines: int = CONSOLE_TAIL_LINES) -> None:
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.pending: dict[int, str] = {}
        self.count = 0
        self.dropped = 0  # records of streams over CONSOLE_STREAMS, not kept

    def write(self, stream: int, text: str) -> None:
        if stream not in self.pending and len(self.pending) >= CONSOLE_STREAMS:
            self.dropped += 1
            return
        buf = self.pending.get(stream, "") + text
        if "\n" in buf:
            *done, buf = buf.split("\n")
            for line in done:
                line = line.rstrip("\r")
                cut = line.rfind("\r")
                line = line[cut + 1 :] if cut >= 0 else line
                self.lines.append(line[:CONSOLE_MAX_LINE])  # as output.log lines: longer ones are cut
                self.count += 1
        cut = buf.rfind("\r")
        if cut > 0:
            buf = buf[cut:]
        self.pending[stream] = buf[-4096:]

    def tail(self) -> list[str]:
        out = list(self.lines)
        for stream in sorted(self.pending):
            rest = self.pending[stream].lstrip("\r")
            if rest:
                out.append(rest)
        return out


class WandbLog:
    """Everything we keep from one `.wandb` file, updated incrementally.

    ``keys``: a keyed read. Only these history keys get their values decoded (every row's step
    is still kept, so the history's rows and step range are those of the whole log); a row
    whose bytes hold none of their names is not parsed beyond its step, and summary records are
    skipped (a keyed log's ``summary()`` holds only the wanted keys' last row values). Every
    other record (run, config, metric definitions, exit, console, system stats) is read as in a
    full read."""

    _summary_peak = 0  # (class defaults for states cached before they existed)
    # A parallel read's part (wandb_parallel.PartLog): records other than rows and summary
    # updates are kept raw here for the joining process; rows without a step are counted.
    parts_read = 1  # how many parts the first read was decoded in (wandb_parallel)
    part_times = None  # wandb_parallel.PartTimes of that read, when parallel
    deferred: list[bytes] | None = None
    deferred_bytes = 0
    deferred_max = 0
    deferred_unsafe = False
    stepless = 0
    first_row: list[bytes] | None = None
    _keys: frozenset[str] | None = None
    _sigs: list[tuple[bytes, bytes | None]] | None = None
    _item_memo: dict[bytes, list] | None = None

    def __init__(self, path: str, keys: frozenset[str] | None = None) -> None:
        self.path = path
        self._keys = keys
        self.only: frozenset[str] | None = None if keys is None else frozenset(keys) | {"_step"}
        # Bytes that a row holding a wanted key must contain: the key's first dotted part (a
        # nested key is stored as parts, a 0.16.x nested dict as its top-level key).
        self._sigs: list[tuple[bytes, bytes | None]] | None = None  # for _keyed_row
        self._marks: tuple[bytes, ...] | None = None if keys is None else tuple(sorted(
            {k.split(".", 1)[0].encode("utf-8", "surrogatepass") for k in keys if k.split(".", 1)[0]}))
        self.reader = LogReader(path, HEADER)
        if keys is not None:  # a keyed read skips summary updates: the framing passes them over
            self.reader.skip_tag = 0x1A
        self.records = 0
        self.bad_records = 0  # complete records whose protobuf did not decode
        self.bad_rows = 0  # history rows skipped: a step past 64 bits (0.16.x `_step` item of 1e300)
        self.bad_start: float | None = None  # a run record's start time out of range (ignored)
        self.producer = ""  # HeaderRecord producer, e.g. "0.31.0+abc"; "" for 0.16.x
        self.cli_version = ""  # from run telemetry
        self.run_id = ""
        self.identity: dict[str, Any] = {}
        self.start_time: float | None = None
        self.config: dict[str, Any] = {}
        self.history = History(max_keys=HISTORY_KEY_CAP)
        self.system = History(max_keys=SYSTEM_KEY_CAP)
        self.summary_cut = 0  # summary values over the summary caps, kept as a note of their size
        self.values_cut = 0  # history values over VALUE_MAX, kept as a note of their size
        self._summary_bytes = 0  # bytes of the summary values kept
        self._summary_peak = 0  # the most they ever were
        self.metrics: dict[str, MetricDef] = {}
        self.exit_code: int | None = None
        self.has_exit = False
        self.exit_runtime: float | None = None
        self.record_time: float | None = None  # newest time a stats or console record carries (epoch s)
        self.environment: dict[str, Any] = {}
        self.console = Console()
        # Summary updates that are not row mirrors: name -> (record number, value_json or None
        # for a removal). Row mirrors are kept as the record number of each row (row_seq).
        self._summary_raw: dict[str, tuple[int, bytes | None]] = {}
        self._row_seq = array("q")  # per history row: record number of its mirror, or -1
        self._pending: tuple[int, bytes] | None = None  # a summary record not yet classified
        self._fold_memo: tuple[bytes, list] | None = None
        self._summary_cache: dict[str, Any] | None = None
        self._names: dict[bytes, list] = {}  # item key bytes -> [name, column, media prefix]
        # an item's first bytes (tag, length, key, value tag, value length) -> its _names entry
        self._item_memo: dict[bytes, list] = {}
        self._media: set[str] = set()
        self._media_gen = 0  # bumped when a new media object name appears
        # Optional callback(step, [(name, value), ...]) for every history row as decoded,
        # before it is stored by column (used by iter_history).
        self.row_sink = None
        self.sampled = False  # True for a skim: history holds only sampled rows
        self.skim_note = ""  # a skim whose sampled parts hold no (last) rows says so here

    # ---- reading ---------------------------------------------------------------------------

    def update(self, progress: Callable[[int, int], None] | None = None, workers: int = 1,
               min_bytes: int = PARALLEL_MIN_BYTES) -> int:
        """Read records added since the last call. Returns the number of new records.
        ``progress(offset, size)`` is called every PROGRESS_EVERY records.

        The first read of a log of ``min_bytes`` and more uses ``workers`` processes (the index
        passes Settings.read_workers, RUNWISE_READ_WORKERS); see ``wandb_parallel``. Its result
        is that of one sequential read."""
        from . import wandb_parallel as par

        if par.worth_parallel(self, workers, min_bytes):
            try:
                return par.read_parallel(self, workers, progress)
            except ReadInOneProcess:
                self._summary_cache = None  # what was read here (the first part, if any) stands
            except OSError:
                raise  # the log cannot be read: as a sequential read reports it
            except Exception as e:  # a fault of the parallel read itself: never the user's problem
                logging.getLogger(__name__).warning("parallel read of %s failed (%s: %s); reading it in one process",
                                                    os.path.basename(self.path), type(e).__name__, e)
                fresh = WandbLog(self.path, keys=self._keys)
                self.__dict__.clear()
                self.__dict__.update(fresh.__dict__)
        every = PROGRESS_EVERY
        emit = self._record if self._marks is None else self._record_keyed
        if progress is None:
            n = self.reader.read(emit)
            n += self.count_skipped()
        else:
            count = [0, every]  # records emitted, next report at (records passed over count too)

            def record(rec: bytes) -> None:
                emit(rec)
                count[0] += 1
                if count[0] + self.reader.skipped >= count[1]:
                    count[1] = count[0] + self.reader.skipped + every
                    progress(self.reader.offset, self.reader.size)

            n = self.reader.read(record)
            n += self.count_skipped()
        if n:
            self._summary_cache = None
        return n

    def count_skipped(self) -> int:
        """Count the records the framing passed over (a keyed read's summary updates)."""
        n = self.reader.skipped
        if n:
            self.reader.skipped = 0
            self.records += n
        return n

    @property
    def last_runtime(self) -> float | None:
        """Seconds since start at the last row (`_runtime`)."""
        col = self.history.columns.get("_runtime")
        return col.values[-1] if col is not None and len(col) else None

    def _record(self, rec: bytes) -> None:
        self.records += 1
        try:
            end = len(rec)
            pos = 0
            if end and rec[0] == 0x08:  # field 1: num (varint)
                pos = 1
                while rec[pos] & 0x80:
                    pos += 1
                pos += 1
            while pos < end:
                tag = rec[pos]
                if tag == 0x12 or tag == 0x1A:  # history / summary: the hot path
                    ln = rec[pos + 1]
                    if ln < 0x80:
                        a = pos + 2
                    elif rec[pos + 2] < 0x80:
                        ln = (ln & 0x7F) | rec[pos + 2] << 7
                        a = pos + 3
                    else:
                        ln, a = pw.varint(rec, pos + 1, end)
                    b = a + ln
                    if b > end:
                        raise pw.WireError("record field runs past the record")
                    if tag == 0x12:
                        self._history(rec, a, b)
                    elif self.only is None:  # a keyed read skips summary updates
                        if self._pending is not None:  # (``_summary`` inline)
                            self._flush_pending()
                        self._pending = (self.records, rec[a:b])
                    pos = b
                    continue
                # any other layout (e.g. _info before the record body): walk generically
                if self.deferred is not None:
                    # A parallel read's part: rows and summary updates here, in order; the other
                    # fields in the joining process, in order (``replay``).
                    self.deferred.append(rec)
                    self.deferred_bytes += len(rec)
                    if self.deferred_bytes > self.deferred_max:  # e.g. a console-heavy log
                        raise ReadInOneProcess(f"over {self.deferred_max >> 20} MiB of other records in one part")
                    try:
                        decoded = False  # a field before that ``_other`` decodes (it may fail)
                        for f, wt, a, b in pw.fields(rec, pos, end):
                            if wt != pw.LEN:
                                continue
                            if f == R_HISTORY or (f == R_SUMMARY and self.only is None):
                                if decoded:  # read here only if that field reads: not known here
                                    self.deferred_unsafe = True
                                    break
                                if f == R_HISTORY:
                                    self._history(rec, a, b)
                                else:
                                    self._summary(rec[a:b])
                            elif f in self.OTHER:
                                decoded = True
                    except (pw.WireError, IndexError, ValueError, TypeError, OverflowError, RecursionError):
                        self.deferred_unsafe = True  # (a damaged record: read in one process)
                    break
                for f, wt, a, b in pw.fields(rec, pos, end):
                    if wt != pw.LEN:
                        continue
                    if f == R_HISTORY:
                        self._history(rec, a, b)
                    elif f == R_SUMMARY:
                        if self.only is None:
                            self._summary(rec[a:b])
                    else:
                        self._other(f, rec, a, b)
                break
        except (pw.WireError, IndexError, ValueError, TypeError, OverflowError, RecursionError):
            self._take_back(len(self.history.steps))  # a row cut short keeps none of its values
            self.bad_records += 1

    def replay(self, rec: bytes) -> None:
        """A record a parallel read's part handed back (``deferred``): every field but rows and
        summary updates (read in the part), as ``_record``'s walk reads them. Not counted again."""
        try:
            pos = 0
            if rec and rec[0] == 0x08:
                pos = 1
                while rec[pos] & 0x80:
                    pos += 1
                pos += 1
            for f, wt, a, b in pw.fields(rec, pos, len(rec)):
                if wt == pw.LEN and f != R_HISTORY and f != R_SUMMARY:
                    self._other(f, rec, a, b)
        except (pw.WireError, IndexError, ValueError, TypeError, OverflowError, RecursionError):
            self.bad_records += 1

    def _record_keyed(self, rec: bytes) -> None:
        """A record of a keyed read: a summary update is skipped; a history row without a wanted
        key's name in its bytes keeps only its step; a row holding the wanted keys as plain
        numeric items (0.31's layout) is read without decoding its other items; anything else is
        read in full (``_record``)."""
        try:
            pos = 0
            if rec[0] == 0x08:  # field 1: num (varint)
                pos = 1
                while rec[pos] & 0x80:
                    pos += 1
                pos += 1
            tag = rec[pos]
            if tag == 0x1A or tag == 0x12:
                ln = rec[pos + 1]
                if ln < 0x80:
                    a = pos + 2
                elif rec[pos + 2] < 0x80:
                    ln = (ln & 0x7F) | rec[pos + 2] << 7
                    a = pos + 3
                else:
                    ln, a = pw.varint(rec, pos + 1, len(rec))
                if a + ln == len(rec):  # the update or row is the whole record
                    if tag == 0x1A:
                        self.records += 1  # skipped whole
                        return
                    if self.row_sink is None and self._keyed_row(rec, a, a + ln):
                        return
            for m in self._marks:
                if m in rec:
                    self._record(rec)
                    return
            if tag == 0x12:
                ln, a = pw.varint(rec, pos + 1, len(rec))
                step = self._step_of(rec, a, a + ln)
                if step is not None and self.row_sink is None:
                    self.records += 1
                    self._row_seq.append(-1)
                    self.history.steps.append(step)
                    return
        except (pw.WireError, IndexError):
            pass
        self._record(rec)  # anything else, or a row to decode in full (0.16.x keeps its step in an item)

    def _keyed_row(self, rec: bytes, a: int, end: int) -> bool:
        """The history row at rec[a:end] of a keyed read, read from its wanted items alone when
        every mention of a wanted key's name is one such item: a one-part key shorter than 128
        bytes with a numeric value_json, met at an item boundary (items are walked by their
        lengths, not decoded). False (nothing done) for any other row: it is read in full."""
        sigs = self._sigs
        if sigs is None:
            sigs = self._sigs = self._keyed_sigs()
        if not sigs:
            return False
        found = None
        for mark, want in sigs:
            p = rec.find(mark, a, end)
            if p < 0:
                continue
            if want is None or rec.find(mark, p + 1, end) >= 0:
                return False
            p -= 2  # the item's key field (tag, length) starts 2 bytes before the name
            if not rec.startswith(want, p):
                return False
            if found is None:
                found = {}
            found[p - 2] = want
        # walk the items by their lengths: each found item must start at an item boundary,
        # and the row's step comes last
        targets = sorted(found) if found is not None else ()
        met = 0
        target = targets[0] if targets else -1
        pos = a
        while True:
            ln = rec[pos + 1]
            if rec[pos] != 0x0A or ln >= 0x80:
                break
            if pos == target:
                met += 1
                target = targets[met] if met < len(targets) else -1
            pos += 2 + ln
        if rec[pos] != 0x12 or ln >= 0x80 or pos + 2 + ln != end or met != len(targets):
            return False
        if ln == 0:
            step = 0
        elif rec[pos + 2] != 0x08:
            return False
        else:
            step = step_num(rec, pos + 2, end)
        h = self.history
        items = []
        if found is not None:
            names = self._names
            for s in targets:  # in the row's order
                want = found[s]
                e = s + 2 + rec[s + 1]
                q = s + 2 + len(want)
                if rec[q] != 0x82 or rec[q + 1] != 0x01 or q + 3 + rec[q + 2] != e:
                    return False
                try:
                    v = float(rec[q + 3 : e])
                except ValueError:
                    return False
                ent = names.get(want)
                if ent is None:
                    if len(names) >= NAMES_CAP:
                        return False
                    ent = names[want] = self._new_entry(self._key_name(want))
                if not ent[3]:
                    return False
                items.append((ent, v))
        self.records += 1
        row = len(h.steps)
        if not items:  # none of the wanted keys: the row's step alone
            h.steps.append(step)
            self._row_seq.append(-1)
            return True
        if len(items) == 1:  # one wanted key: straight into its column while it is dense
            (ent, v), = items
            col = ent[1]
            if col is not None and col._last_row == row - 1 and col._steps is None:
                h.steps.append(step)
                col.values.append(v)
                col._last_row = row
                self._row_seq.append(-1)
                return True
        if self._add_row(step, items) is not False:
            self._row_seq.append(-1)
        return True

    def _keyed_sigs(self) -> list[tuple[bytes, bytes | None]]:
        """(name bytes, item key bytes) per wanted key for ``_keyed_row``; for a key that is not
        one plain part (dotted, or 128 bytes and longer), (its first part, None)."""
        out = []
        for k in sorted(self.only - {"_step"}):
            kb = k.encode("utf-8", "surrogatepass")
            if "." not in k and 0 < len(kb) < 0x80:
                out.append((kb, b"\x12" + bytes([len(kb)]) + kb))
            else:  # found by its first part (as _marks): a row mentioning it is read in full
                out.append((k.split(".", 1)[0].encode("utf-8", "surrogatepass"), None))
        return out

    # the record fields other than rows and summary updates that are read, and their readers
    OTHER = {R_RUN: "_run", R_CONFIG: "_config_items", R_OUTPUT_RAW: "_output", R_OUTPUT: "_output",
             R_STATS: "_stats", R_METRIC: "_metric", R_EXIT: "_exit", R_HEADER: "_header",
             R_ENVIRONMENT: "_environment"}

    def _other(self, f: int, rec: bytes, a: int, b: int) -> None:
        name = self.OTHER.get(f)
        if name is not None:
            getattr(self, name)(rec, a, b)

    # ---- items (HistoryItem / SummaryItem / ConfigItem / StatsItem share this layout) ----

    @staticmethod
    def _item(buf: bytes, s: int, e: int) -> tuple[int, int, int, int]:
        """Return (key end, value kind, value start, value end) of an item at buf[s:e].

        Key fields (1 key, 2 nested_key) come first; kind 16 = value_json, 3..8 = typed value.
        """
        p = s
        kend = s
        kind = vs = ve = 0
        while p < e:
            t = buf[p]
            if t == 0x0A or t == 0x12:
                ln = buf[p + 1]
                if ln < 0x80:
                    p += 2 + ln
                else:
                    ln, q = pw.varint(buf, p + 1, e)
                    p = q + ln
                kend = p
            elif t == 0x82 and buf[p + 1] == 0x01:
                ln = buf[p + 2]
                if ln < 0x80:
                    vs = p + 3
                else:
                    ln, vs = pw.varint(buf, p + 2, e)
                ve = vs + ln
                kind = 16
                p = ve
            else:
                key, q = pw.varint(buf, p, e)
                f, wt = key >> 3, key & 7
                if wt == pw.VARINT:
                    _, p2 = pw.varint(buf, q, e)
                    if kind != 16 and 3 <= f <= 5:
                        kind, vs, ve = f, q, p2
                    p = p2
                elif wt == pw.FIXED64:
                    if kind != 16 and f == 6:
                        kind, vs, ve = 6, q, q + 8
                    p = q + 8
                elif wt == pw.LEN:
                    ln, q2 = pw.varint(buf, q, e)
                    if kind != 16 and f in (7, 8):
                        kind, vs, ve = f, q2, q2 + ln
                    p = q2 + ln
                elif wt == pw.FIXED32:
                    p = q + 4
                else:
                    raise pw.WireError("bad wire type in item")
        if p != e or ve > e:
            raise pw.WireError("item fields run past the item")
        return kend, kind, vs, ve

    @staticmethod
    def _key_name(sig: bytes) -> str:
        key = ""
        path: list[str] = []
        for f, wt, a, b in pw.fields(sig):
            if wt != pw.LEN:
                continue
            if f == 1:
                key = pw.text(sig, a, b)
            elif f == 2:
                path.append(pw.text(sig, a, b))
        return key if key else ".".join(path)

    @staticmethod
    def _typed(buf: bytes, kind: int, vs: int, ve: int) -> Any:
        if kind == 6:
            return pw.double(buf, vs)
        if kind == 5:
            return pw.zigzag(pw.varint(buf, vs, ve)[0])
        if kind == 4:
            return bool(pw.varint(buf, vs, ve)[0])
        if kind == 3:
            return None
        if kind == 7:
            return pw.text(buf, vs, ve)
        if kind == 8:
            return decode_json(buf[vs:ve])
        return None

    # ---- history ---------------------------------------------------------------------------

    def _take_back(self, row: int) -> None:
        """Take back the values appended at history row ``row``, which is not added after all."""
        for col in self.history.columns.values():
            if col._last_row == row and col._steps is None and col.values:
                col.values.pop()
                col._last_row = row - 1

    def _history(self, buf: bytes, pos: int, end: int) -> None:
        # A number for a key whose column is dense up to the row before is appended to it at
        # once; the rest goes through _add_row. A row that is not added after all (a 0.16.x
        # step out of range here; a malformed record in _record's handler) takes them back.
        row = len(self.history.steps)
        prev = row - 1
        pending = self._pending
        starts: list[int] | None = None if pending is None else []  # where the row's items begin
        items: list[tuple[list, Any]] = []
        step = None
        names = self._names
        memo = self._item_memo
        if memo is None:  # (a state cached before it existed)
            memo = self._item_memo = {}
        fuse = self.row_sink is None
        first = pos
        other_at = -1  # where the first field that is not an item begins
        while pos < end:
            tag = buf[pos]
            ln = buf[pos + 1]
            ent = None
            if tag == 0x0A and ln < 0x80:
                # An item whose first bytes (tag, length, key, value tag, value length) are those
                # of an item decoded before: the same layout, so its value is the rest.
                vs = pos + 7 + buf[pos + 3]
                ent = memo.get(buf[pos:vs])
            if ent is not None:
                e = ve = pos + 2 + ln
                if e > end:
                    raise pw.WireError("history field runs past the record")
                kind = 16
                if starts is not None:
                    starts.append(pos)
                if not ent[3]:  # (became over the key cap)
                    pos = e
                    continue
            elif tag == 0x0A:  # an item of a layout not met before
                if ln < 0x80:
                    s = pos + 2
                else:
                    ln, s = pw.varint(buf, pos + 1, end)
                e = s + ln
                if e > end:
                    raise pw.WireError("history field runs past the record")
                if starts is not None:
                    starts.append(pos)
                # fast path: one nested_key component then value_json, short lengths
                kend = s + 2 + buf[s + 1]
                simple = (buf[s] == 0x12 and buf[s + 1] < 0x80 and kend + 3 <= e and buf[kend] == 0x82
                          and buf[kend + 1] == 0x01 and kend + 3 + buf[kend + 2] == e)
                if simple:
                    kind, vs, ve = 16, kend + 3, e
                else:
                    kend, kind, vs, ve = self._item(buf, s, e)
                ent = names.get(buf[s:kend])
                if ent is None:
                    sig = buf[s:kend]
                    if len(names) >= NAMES_CAP:  # over the per-run cap: counted, not kept
                        self.history.drop(self._key_name(sig))
                        pos = e
                        continue
                    ent = names[sig] = self._new_entry(self._key_name(sig))
                if not ent[3]:  # a keyed read and not a wanted key, or a key over the cap
                    pos = e
                    continue
                if simple and s == pos + 2 and len(memo) < ITEM_MEMO_MAX:
                    memo[buf[pos:vs]] = ent
            if ent is not None:  # the item's value
                if kind == 16:
                    if ve - vs > VALUE_MAX:
                        v = cut_note(ve - vs)
                        self.values_cut += 1
                    else:
                        raw = buf[vs:ve]
                        try:
                            v = float(raw)
                        except ValueError:
                            v = decode_json(raw)
                        else:
                            col = ent[1]
                            if fuse and col is not None and col._last_row == prev and col._steps is None:
                                col.values.append(v)
                                col._last_row = row
                                pos = e
                                continue
                elif kind:
                    v = self._typed(buf, kind, vs, ve)
                else:
                    pos = e
                    continue
                items.append((ent, v))
            else:  # a field that is not an item
                if ln < 0x80:
                    s = pos + 2
                else:
                    ln, s = pw.varint(buf, pos + 1, end)
                e = s + ln
                if e > end:
                    raise pw.WireError("history field runs past the record")
                if other_at < 0:
                    other_at = pos
                if tag == 0x12:  # HistoryStep {1 num}
                    step = 0
                    if e > s:
                        if buf[s] == 0x08:
                            step = step_num(buf, s, e)
                        else:
                            for f, wt, a, _ in pw.fields(buf, s, e):
                                if f == 1 and wt == pw.VARINT:
                                    step = pw.int64(a)
                elif (tag & 7) != pw.LEN:
                    # an unexpected scalar field: validate the rest generically and stop
                    for _ in pw.fields(buf, pos, end):
                        pass
                    break
            pos = e
        mirror = -1
        if pending is not None:
            self._pending = None
            sbytes = pending[1]
            # the items are one run of bytes when no other field comes before or between them
            run = bool(starts) and (other_at < 0 or starts[-1] < other_at)
            stop = other_at if other_at >= 0 else pos
            if run and pending is not FIRST_ROW:
                # 0.31's mirror holds the row's items in another order, seen to be a rotation of
                # the row's (rows of 8 and of 30 items alike). The update is the row's mirror when
                # the row's items are the update's bytes rotated at one of the row's item
                # boundaries (both then hold the same items); else the exact comparison decides.
                x = buf[first:stop]
                if len(x) == len(sbytes):
                    k = (sbytes + sbytes).find(x)
                    if k == 0 or (k > 0 and first + len(sbytes) - k in starts):
                        mirror = pending[0]
            if mirror < 0:
                if run:
                    seen = [buf[p:q] for p, q in zip(starts, starts[1:] + [stop])]
                else:
                    seen = [buf[p : _item_end(buf, p, end)] for p in starts]
                mirror = self._match_pending(pending, seen)
        if step is not None and self.row_sink is None and (
                not items or (len(items) == 1 and items[0][0][0] == "_step")):
            # every value went straight into its column (the `_step` item only repeats the step)
            self.history.steps.append(step)
            self._row_seq.append(mirror)
        elif self._add_row(step, items) is not False:
            self._row_seq.append(mirror)
        else:
            self._take_back(row)

    def _match_pending(self, pending: tuple[int, bytes], seen: list[bytes]) -> int:
        """The record number of the pending summary update when it mirrors the row whose items
        are ``seen`` (0.31 writes each row into the summary just before the row: the same items
        in another order; such an update is the row itself), else -1 after folding it."""
        if pending is FIRST_ROW:
            self.first_row = seen
            return -1
        seq, sbytes = pending
        parts = _split_items(sbytes)
        if parts is not None and len(parts) == len(seen) and sorted(parts) == sorted(seen):
            return seq
        self._fold_summary(seq, sbytes)
        return -1

    @staticmethod
    def _step_of(buf: bytes, pos: int, end: int) -> int | None:
        """The HistoryStep of a history record at buf[pos:end] without decoding its items (None
        when it has none, as in 0.16.x, whose step is the `_step` item)."""
        while pos < end:
            tag = buf[pos]
            ln = buf[pos + 1]
            if ln < 0x80:
                s = pos + 2
            else:
                ln, s = pw.varint(buf, pos + 1, end)
            e = s + ln
            if e > end or (tag & 7) != pw.LEN:
                raise pw.WireError("history field runs past the record")
            if tag == 0x12:
                if e > s and buf[s] == 0x08:
                    return pw.int64(pw.varint(buf, s + 1, e)[0])
                return None
            pos = e
        return None

    def _wants(self, name: str) -> bool:
        only = self.only
        return only is None or name in only or any(w.startswith(name + ".") for w in only)

    def _new_entry(self, name: str) -> list:
        """[name, column (set on first numeric value), media prefix or None, wanted, media
        generation] for a new key (wanted: False for a key a keyed read does not decode).

        0.19+ writes a media object ({"_type": "histogram", ...}) as one item per field
        (`w._type`, `w.bins`, ...); those items are regrouped into one object named `w`. Which
        object a field belongs to is decided when a row is stored (``_media_of``), so a
        `w._type` item seen after `w.bins` still claims it, without a walk over every key
        (40,000 media keys made that walk quadratic).
        """
        ent: list = [name, None, None, self._wants(name), -1]
        if name.endswith("._type"):
            prefix = name[: -len("._type")]
            if prefix not in self._media:
                self._media.add(prefix)
                self._media_gen += 1
            ent[2] = prefix
            ent[4] = None  # its own object, for good
        return ent

    def _media_of(self, ent: list) -> str | None:
        """The media object ``ent``'s key is a field of (None: none), as far as the `._type`
        items seen so far say; looked up again only after a new media object appeared. Only
        the first MEDIA_DEPTH dots of a key are tried (a linear cost in the key's length)."""
        gen = self._media_gen
        if ent[4] is None or ent[4] == gen:
            return ent[2]
        ent[4] = gen
        name, media = ent[0], self._media
        found = None
        p = name.find(".")
        n = 0
        while p >= 0 and n < MEDIA_DEPTH:
            if name[:p] in media:
                found = name[:p]
                break
            p = name.find(".", p + 1)
            n += 1
        ent[2] = found
        return found

    def _add_row(self, step: int | None, items: list[tuple[list, Any]]) -> bool | None:
        h = self.history
        if step is None:  # 0.16.x: no HistoryStep, use the _step item
            self.stepless += 1
            for ent, v in items:
                if ent[0] == "_step" and isinstance(v, (int, float)) and math.isfinite(v):
                    step = int(v)
                    break
            else:
                step = h.steps[-1] + 1 if h.steps else 0
            if not -STEP_LIMIT <= step < STEP_LIMIT:  # a `_step` of 1e300: the row is skipped and counted
                self.bad_rows += 1
                return False
        if self.row_sink is not None:
            self.row_sink(step, [(ent[0], v) for ent, v in items])
        row = len(h.steps)
        h.steps.append(step)
        media: dict[str, dict[str, Any]] | None = None
        prev = row - 1
        for ent, v in items:
            col = ent[1]
            if col is not None and v.__class__ is float:
                if col._last_row == prev and col._steps is None:  # dense column: inline append
                    col.values.append(v)
                    col._last_row = row
                else:
                    col.append(row, step, v)
                continue
            name = ent[0]
            if name == "_step":
                continue
            owner = ent[2] if ent[4] is None or not self._media else self._media_of(ent)
            if owner is not None:  # a field of a media object
                if media is None:
                    media = {}
                media.setdefault(owner, {})[name[len(owner) + 1 :]] = v
            elif v.__class__ is float or (isinstance(v, (int, bool)) and abs(v) < 2**63):
                if col is None:
                    if not h.admit(name):
                        ent[3] = False  # over the key cap: never decoded again
                        continue
                    col = ent[1] = h.column(name)
                col.append(row, step, float(v))
            elif isinstance(v, dict) and v and "_type" not in v:  # 0.16.x nested dict
                flat: list[tuple[str, Any]] = []
                flatten(name, v, flat)
                if self.only is not None:
                    flat = [(k, x) for k, x in flat if k in self.only]
                h.add_items(row, step, flat)
            else:
                if name not in h.other and not h.admit(name):
                    ent[3] = False  # over the key cap: never decoded again
                    continue
                h.add_other(name, step, v, row)
        if media:
            for prefix, obj in media.items():
                h.add_other(prefix, step, obj, row)

    # ---- summary ---------------------------------------------------------------------------

    def _summary(self, body: bytes) -> None:
        # Hold it: if the next history row has the very same items, this update is that row
        # (0.31 writes every row into the summary just before the row).
        if self._pending is not None:
            self._flush_pending()
        self._pending = (self.records, body)

    def _flush_pending(self) -> None:
        if self._pending is not None:
            seq, sbytes = self._pending
            self._pending = None
            if seq >= 0:  # (not FIRST_ROW)
                self._fold_summary(seq, sbytes)

    def _fold_summary(self, seq: int, buf: bytes) -> None:
        """Apply a SummaryRecord {1 update, 2 remove} that is not a row mirror."""
        memo = self._fold_memo
        if memo is not None and memo[0] == buf:
            ops = memo[1]  # same bytes as the previous one (0.31's per-row runtime record)
        else:
            ops = []
            for f, wt, s, e in pw.fields(buf):
                if wt != pw.LEN or f not in (1, 2):
                    continue
                kend, kind, vs, ve = self._item(buf, s, e)
                sig = buf[s:kend]
                ent = self._names.get(sig)
                if ent is None:
                    if len(self._names) >= NAMES_CAP:  # over the per-run cap: counted, not kept
                        self.history.drop(self._key_name(sig))
                        continue
                    ent = self._names[sig] = self._new_entry(self._key_name(sig))
                if f == 2:
                    ops.append((ent[0], None))
                elif kind == 16:
                    ops.append((ent[0], buf[vs:ve]))
                else:
                    ops.append((ent[0], json.dumps(self._typed(buf, kind, vs, ve)).encode()))
            self._fold_memo = (buf, ops) if len(buf) <= MEMO_MAX else None
        raw = self._summary_raw
        for name, value in ops:
            old = raw.get(name)
            if old is not None and old[1] is value and value is not None:
                raw[name] = (seq, value)  # the very value kept before (a memoised update): counted already
                continue
            if old is not None and old[1] is not None:
                self._summary_bytes -= len(old[1])
            if value is not None:
                if len(value) > SUMMARY_VALUE_MAX or self._summary_bytes + len(value) > SUMMARY_MAX_BYTES:
                    self.summary_cut += 1
                    value = json.dumps(cut_note(len(value))).encode()
                self._summary_bytes += len(value)
                if self._summary_bytes > self._summary_peak:
                    self._summary_peak = self._summary_bytes
            raw[name] = (seq, value)
        self._summary_cache = None

    def aggregate_names(self, names: list[str]) -> set[str]:
        """Those of ``names`` whose summary is a define_metric aggregate ({"max": ...})."""
        defs = [m for m in self.metrics.values() if m.summary]
        exact = {m.name for m in defs if m.name}
        globs = [m.glob for m in defs if m.glob]
        out = set()
        for name in names:
            if name in exact or any(fnmatch.fnmatchcase(name, g) for g in globs):
                out.add(name)
        return out

    def summary(self) -> dict[str, Any]:
        """The folded summary: flat dotted keys; define_metric aggregates stay objects.

        Updates apply in file order. A row mirror sets every key of its row to the row's
        value, which is the history's value of that key at that row.
        """
        self._flush_pending()
        if self._summary_cache is not None:
            return self._summary_cache
        ops: list[tuple[int, str, Any, bool]] = []  # (seq, name, value, is_removal)
        for name, (seq, raw) in self._summary_raw.items():
            ops.append((seq, name, None if raw is None else decode_json(raw), raw is None))
        h, row_seq = self.history, self._row_seq
        if h.rows:
            seq = row_seq[-1]
            if seq >= 0:
                ops.append((seq, "_step", h.steps[-1], False))
            for name, col in h.columns.items():
                seq = row_seq[col.last_row] if col.last_row >= 0 else -1
                if seq >= 0:
                    ops.append((seq, name, col.values[-1], False))
            for name, o in h.other.items():
                seq = row_seq[o.last_row] if 0 <= o.last_row < len(row_seq) else -1
                if seq >= 0:
                    ops.append((seq, name, o.last, False))
        ops.sort(key=lambda op: op[0])
        out: dict[str, Any] = {}
        aggregates = self.aggregate_names([name for _, name, v, _ in ops if isinstance(v, dict)])
        # A dict value or a removal at `name` drops every key below it (`name.*`). Which keys
        # those are is indexed as keys are set, by the names that can drop keys (a walk over
        # every key for each such name was quadratic: 40,000 media objects took minutes).
        droppers = {name for _, name, value, removal in ops if removal or isinstance(value, dict)}
        lens = sorted({len(n) for n in droppers})
        below: dict[str, list[str]] = {}

        def put(k: str, v: Any) -> None:
            if k not in out and droppers:
                if k.count(".") <= len(lens):
                    p = k.find(".")
                    while p >= 0:
                        if k[:p] in droppers:
                            below.setdefault(k[:p], []).append(k)
                        p = k.find(".", p + 1)
                else:
                    for n in lens:
                        if n >= len(k):
                            break
                        if k[n] == "." and k[:n] in droppers:
                            below.setdefault(k[:n], []).append(k)
            out[k] = v

        for _, name, value, removal in ops:
            if removal or isinstance(value, dict):
                for k in below.pop(name, ()):
                    out.pop(k, None)
            if removal:
                out.pop(name, None)
            elif isinstance(value, dict) and name not in aggregates and "_type" not in value:
                flat: list[tuple[str, Any]] = []
                flatten(name, value, flat)
                out.pop(name, None)
                for k, v in flat:
                    put(k, v)
            else:
                put(name, value)
        self._summary_cache = out
        return out

    # ---- the rest ---------------------------------------------------------------------------

    def _config_items(self, buf: bytes, a: int, b: int) -> None:
        """ConfigRecord {1 update, 2 remove} of ConfigItem; nested_key is a path."""
        for f, wt, s, e in pw.fields(buf, a, b):
            if wt != pw.LEN or f not in (1, 2):
                continue
            kend, kind, vs, ve = self._item(buf, s, e)
            key = ""
            path: list[str] = []
            for f2, wt2, x, y in pw.fields(buf, s, kend):
                if wt2 == pw.LEN and f2 == 1:
                    key = pw.text(buf, x, y)
                elif wt2 == pw.LEN and f2 == 2:
                    path.append(pw.text(buf, x, y))
            if not path:
                path = [key]
            node = self.config
            for p in path[:-1]:
                nxt = node.get(p)
                if not isinstance(nxt, dict):
                    nxt = node[p] = {}
                node = nxt
            if f == 1:
                node[path[-1]] = decode_json(buf[vs:ve]) if kind == 16 else self._typed(buf, kind, vs, ve)
            else:
                node.pop(path[-1], None)

    def _run(self, buf: bytes, a: int, b: int) -> None:
        ident: dict[str, Any] = {"tags": []}
        strings = {1: "run_id", 2: "entity", 3: "project", 6: "group", 7: "job_type", 8: "name", 9: "notes",
                   12: "sweep_id", 13: "host"}
        for f, wt, x, y in pw.fields(buf, a, b):
            if wt == pw.LEN:
                if f in strings:
                    ident[strings[f]] = pw.text(buf, x, y)
                elif f == 10:
                    ident["tags"].append(pw.text(buf, x, y))
                elif f == 4:
                    self._config_items(buf, x, y)
                elif f == 17:
                    ident["start_time"] = pw.timestamp(buf, x, y)
                elif f == 19:
                    for f2, wt2, p, q in pw.fields(buf, x, y):
                        if f2 == 5 and wt2 == pw.LEN:
                            self.cli_version = pw.text(buf, p, q)
            elif wt == pw.VARINT and f in (18, 24):
                ident["resumed" if f == 18 else "resume"] = bool(x)
            elif wt == pw.VARINT and f == 14:
                ident["starting_step"] = pw.int64(x)
        if ident.get("run_id"):
            self.run_id = ident["run_id"]
        if ident.get("start_time") and sane_time(ident["start_time"]) is None:  # 10**15 s: no date
            self.bad_start = ident.pop("start_time")
        if ident.get("start_time") and not self.start_time:
            self.start_time = ident["start_time"]
        prev = self.identity
        # The last RunRecord wins, but never forget the id, project or start time.
        for k in ("run_id", "project", "entity", "start_time"):
            if not ident.get(k) and prev.get(k):
                ident[k] = prev[k]
        self.identity = ident

    def _output(self, buf: bytes, a: int, b: int) -> None:
        stream, line = 1, ""
        for f, wt, x, y in pw.fields(buf, a, b):
            if f == 1 and wt == pw.VARINT:
                stream = x
            elif f == 2 and wt == pw.LEN:
                self._saw_time(pw.timestamp(buf, x, y))
            elif f == 3 and wt == pw.LEN:
                line = pw.text(buf, x, y)
        if line:
            self.console.write(stream, line)

    def _stats(self, buf: bytes, a: int, b: int) -> None:
        ts = 0.0
        items: list[tuple[str, Any]] = []
        for f, wt, x, y in pw.fields(buf, a, b):
            if f == 2 and wt == pw.LEN:
                ts = pw.timestamp(buf, x, y)
            elif f == 3 and wt == pw.LEN:
                kend, kind, vs, ve = self._item(buf, x, y)
                name = self._key_name(buf[x:kend])
                if kind == 16:
                    v = _number_or_json(buf[vs:ve])
                    if isinstance(v, dict):
                        flatten(name, v, items)
                    else:
                        items.append((name, v))
        self._saw_time(ts)
        if items:
            self.system.add_row(int(ts), items)

    def _saw_time(self, ts: float) -> None:
        ts = sane_time(ts)
        if ts is not None and (self.record_time is None or ts > self.record_time):
            self.record_time = ts

    @property
    def last_event(self) -> float | None:
        """The newest time written inside the log: the last rows' ``_timestamp``, stats and
        console record times (epoch seconds; None when the log holds none). Values that are no
        date (1e300, infinite) are passed over."""
        return max_time(self.record_time, self.history.columns.get("_timestamp"))

    def _metric(self, buf: bytes, a: int, b: int) -> None:
        m = MetricDef()
        summary: list[str] = []
        for f, wt, x, y in pw.fields(buf, a, b):
            if wt == pw.LEN:
                if f == 1:
                    m.name = pw.text(buf, x, y)
                elif f == 2:
                    m.glob = pw.text(buf, x, y)
                elif f == 4:
                    m.step_metric = pw.text(buf, x, y)
                elif f == 6:
                    for f2, wt2, v, _ in pw.fields(buf, x, y):
                        if f2 == 2 and wt2 == pw.VARINT:
                            m.hidden = bool(v)
                elif f == 7:
                    for f2, wt2, v, _ in pw.fields(buf, x, y):
                        if wt2 == pw.VARINT and v and f2 in _SUMMARY_KINDS:
                            summary.append(_SUMMARY_KINDS[f2])
            elif wt == pw.VARINT and f == 8:
                m.goal = {1: "minimize", 2: "maximize"}.get(x, "")
        m.summary = tuple(summary)
        key = m.name or m.glob
        if key:
            self.metrics[key] = m

    def _exit(self, buf: bytes, a: int, b: int) -> None:
        code = 0
        for f, wt, x, _ in pw.fields(buf, a, b):
            if f == 1 and wt == pw.VARINT:
                code = pw.int64(x)
            elif f == 2 and wt == pw.VARINT:
                self.exit_runtime = float(pw.int64(x))
        self.has_exit = True
        self.exit_code = code

    def _header(self, buf: bytes, a: int, b: int) -> None:
        for f, wt, x, y in pw.fields(buf, a, b):
            if f == 1 and wt == pw.LEN:
                for f2, wt2, p, q in pw.fields(buf, x, y):
                    if f2 == 1 and wt2 == pw.LEN:
                        self.producer = pw.text(buf, p, q)

    def _environment(self, buf: bytes, a: int, b: int) -> None:
        if not self.producer:  # 0.16.x used field 26 for something else
            return
        strings = {1: "os", 2: "python", 6: "program", 12: "host", 18: "gpu_type", 25: "cuda_version"}
        env = self.environment
        gpus: list[str] = []
        for f, wt, x, y in pw.fields(buf, a, b):
            if wt == pw.LEN and f in strings:
                env[strings[f]] = pw.text(buf, x, y)
            elif wt == pw.LEN and f == 3:
                env["started_at"] = pw.timestamp(buf, x, y)
            elif wt == pw.VARINT and f in (16, 17, 19):
                env[{16: "cpu_count", 17: "cpu_count_logical", 19: "gpu_count"}[f]] = x
            elif wt == pw.LEN and f == 24:
                for f2, wt2, p, q in pw.fields(buf, x, y):
                    if f2 == 1 and wt2 == pw.LEN:
                        gpus.append(pw.text(buf, p, q))
        if gpus:
            env["gpus"] = gpus

    # ---- derived -----------------------------------------------------------------------------

    def cap_notes(self) -> list[str]:
        """What this log holds beyond the per-run caps and was not kept (for the run's notes)."""
        out = [n for n in (self.history.dropped_note("keys"), self.system.dropped_note("system metric keys")) if n]
        if self.summary_cut:
            out.append(f"{self.summary_cut:,} summary value(s) not kept: over the per-value cap of "
                       f"{SUMMARY_VALUE_MAX >> 20} MiB or the summary cap of {SUMMARY_MAX_BYTES >> 20} MiB")
        if self.values_cut:
            out.append(f"{self.values_cut:,} history value(s) over {VALUE_MAX >> 20} MiB not kept")
        if self.console.dropped:
            out.append(f"{self.console.dropped:,} console record(s) of streams beyond the first "
                       f"{CONSOLE_STREAMS} not kept")
        return out

    def held_bytes(self) -> int:
        """An estimate of the memory this log's kept structures take besides history points:
        keys, summary, non-numeric values, console (for the memory budget)."""
        n = len(self._names) + sum(len(h.columns) + len(h.other) for h in (self.history, self.system))
        size = n * 400 + 4 * self._summary_bytes + len(self.config) * 200
        for o in self.history.other.values():
            size += len(o.last) if isinstance(o.last, str) else 200
        size += sum(len(x) for x in self.console.lines) + sum(len(x) for x in self.console.pending.values())
        return size

    def value_notes(self) -> list[str]:
        """Values this log holds that could not be used, for the run's problems."""
        out = []
        if self.bad_rows:
            out.append(f"{self.bad_rows} history row(s) with a step past 64 bits, skipped")
        if self.bad_start is not None:
            out.append(f"run start time {self.bad_start:.4g} s is not a date; ignored")
        return out

    @property
    def version(self) -> str:
        """The wandb version that wrote the file, as far as the file says."""
        v = self.producer.split("+", 1)[0] or self.cli_version
        return v


def iter_history(path: str) -> list[tuple[int, dict[str, Any]]]:
    """Every history row of a `.wandb` file as (step, {name: value}), values as decoded
    (numbers, text, objects), nested dicts flattened to dotted names, ``_step`` left out."""
    rows: list[tuple[int, dict[str, Any]]] = []

    def sink(step: int, items: list[tuple[str, Any]]) -> None:
        flat: list[tuple[str, Any]] = []
        for name, v in items:
            if name != "_step":
                flatten(name, v, flat)
        rows.append((step, dict(flat)))

    log = WandbLog(path)
    log.row_sink = sink
    log.update()
    return rows


def record_kind(rec: bytes) -> int:
    """The field number that follows Record.num: the record's type in the usual layout."""
    i = 0
    if rec[:1] == b"\x08":
        i = 1
        while i < len(rec) and rec[i] & 0x80:
            i += 1
        i += 1
    return rec[i] >> 3 if i < len(rec) else 0


def skim(path: str, head: int = SKIM_HEAD, tail: int = SKIM_TAIL, blocks: int = SKIM_BLOCKS,
         thin: bool = True) -> WandbLog:
    """A quick partial read of a large log for run lists: the head (identity, config), the tail
    (the last row, exit record, last run record) and evenly spaced blocks in between (history
    samples for a trend picture). Records keep their file order. ``thin`` decodes only what a
    run list shows: of the head no row but the first, one row per sampled block, and of the tail
    every record but the summary updates (0.31 mirrors each row in one), of which only the last.

    Whatever the log's layout, a skim reads at most SKIM_READ_BUDGET bytes: an eighth for the
    head, a quarter for the tail (widened while it holds fewer than SKIM_TAIL_ROWS rows, up to
    that), a quarter for the sampled blocks (each read at most to twice its size), the tail
    probes the rest. When the tail still holds no row, ``skim_note`` says so."""
    budget = SKIM_READ_BUDGET
    head_max, tail_max = budget // 8, budget // 4
    blocks = max(0, min(blocks, (budget // 4) // (2 * BLOCK)))
    log = WandbLog(path)
    log.sampled = True
    size = stat_file(path).st_size  # opened under the roots, like every read of the log
    head = min(head, head_max)
    probe = LogReader(path, HEADER)
    # The tail must hold the last rows whole: widen it while it holds fewer than SKIM_TAIL_ROWS
    # history records (e.g. large media rows at the end, or one row that starts before the tail).
    # Each widening reads only the part before what was probed already.
    tail = min(tail, tail_max)
    rows, probed = 0, size
    while size - probed < tail_max and probed > head:
        a = max(head, size - tail)
        seen: list[int] = []
        # records that begin in [start, probed) (a record running on past `probed` is read for
        # one more block at most); the first, if begun earlier, is dropped as a fragment
        start = max(len(HEADER), a - a % BLOCK)
        probe.read_span(start, probed, lambda rec: seen.append(record_kind(rec)), exact=True,
                        budget=probed - start + BLOCK)
        rows += seen.count(R_HISTORY)
        probed = start
        if rows >= SKIM_TAIL_ROWS or tail >= tail_max:
            break
        tail = min(tail * 4, tail_max)
    tail_start = max(head, size - tail)
    spans = [(0, min(head, size))]
    gap = tail_start - head
    # a sample, not a read: at most every 4th block, 8 blocks plus one per 2 MiB
    n = min(blocks, gap // (4 * BLOCK), 8 + gap // (64 * BLOCK)) if gap > 0 else 0
    for i in range(n):
        a = head + (i * gap) // n
        spans.append((a, a + BLOCK))
    if tail_start < size:
        spans.append((tail_start, size))
    with open_read(path) as f:
        first = f.read(len(HEADER))
    log.reader.header_ok = True if first == HEADER else (None if HEADER.startswith(first) else False)
    reader = LogReader(path, HEADER)  # its own reader: fragments at span starts are expected
    done = 0
    last = len(spans) - 1
    tail_rows = 0
    for i, (a, b) in enumerate(spans):
        # what one span may read: the head and the tail their share, a sampled block twice its size
        allowed = head_max if i == 0 else (tail_max + BLOCK if i == last and tail_start < size else 2 * BLOCK)
        if not thin:
            emit = log._record
        elif i == 0:
            emit = _head_records(log)  # identity, config, metric definitions; one row
        elif i < last:
            emit = _first_history(log)  # a sampled block: one row is enough for a trend picture
        else:
            buf: list[bytes] = []
            emit = buf.append  # the tail: decoded below, without all but its last row
        if a - a % BLOCK <= done:  # continue exactly where the previous span stopped: no record twice
            if done < b:
                done = reader.read_span(done, b, emit, exact=True, budget=allowed)
        else:
            done = reader.read_span(a, b, emit, budget=allowed)
        if thin and i == last and i > 0:
            kinds = [record_kind(r) for r in buf]
            tail_rows = kinds.count(R_HISTORY)
            last_sum = max((j for j, k in enumerate(kinds) if k == R_SUMMARY), default=-1)
            for j, (rec, kind) in enumerate(zip(buf, kinds)):
                if kind != R_SUMMARY or j == last_sum:  # every tail row: exact last values
                    log._record(rec)
    log._flush_pending()
    if not log.history.rows:
        log.skim_note = "no rows in the sampled parts; run_summary reads it all"
    elif thin and last > 0 and not tail_rows:
        log.skim_note = "no rows in the sampled tail: the step shown is the last sampled; run_summary reads it all"
    return log


def _head_records(log: WandbLog):
    """An emit function for a log's head: every record but history rows and summary updates,
    of which only the first row is decoded."""
    first = _first_history(log)

    def emit(rec: bytes) -> None:
        kind = record_kind(rec)
        if kind == R_HISTORY:
            first(rec)
        elif kind != R_SUMMARY:
            log._record(rec)

    return emit


def _first_history(log: WandbLog):
    """An emit function that decodes only the first history record it is given."""
    seen = [False]

    def emit(rec: bytes) -> None:
        if not seen[0] and record_kind(rec) == R_HISTORY:
            seen[0] = True
            log._record(rec)

    return emit
