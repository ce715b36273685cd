"""A cold read of a large `.wandb` log in parallel processes (issue 18).

The file is cut at 32 KiB block boundaries into one part per worker; every block boundary is a
resynchronisation point of the LevelDB-log framing, so each part is framed and decoded on its
own: its records are those that *begin* in it (a record crossing into the next part is read to
its end by its own part, whose continuation chunks the next part passes over). This process
decodes the first part while the others run in worker processes; the parts are then joined in
file order into exactly the state one sequential read builds:

- history rows are appended part after part (columns keep their first-seen order);
- record numbers (which order summary updates against row mirrors) are offset by the records
  of the parts before;
- a summary update left pending at the end of a part is matched against the first row of the
  next part, as the sequential read does when it meets that row;
- records other than history rows and summary updates (run, config, console, system stats,
  metric definitions, exit...) are handed back raw (a record that holds both, like wandb's
  `_info` + summary records, has its rows and updates read in the part) and their other fields
  read here in file order, so everything order-dependent in them is read sequentially.

Whenever joining could differ from a sequential read, the parts are discarded and the file is
read sequentially instead (``Fallback``): damage anywhere, a part that stops early, rows
without a step (wandb 0.16.x numbers those from the row before), media fields whose object
was announced in another part, key counts near the caps, summary bytes near their cap, a row
or summary update after another decoded field of its record (whether one process reads the row
depends on whether that field reads; hand-made logs only), or a worker that could not run.
Correctness never depends on the parallel path; only speed does.

Workers open the file by path with O_NOFOLLOW and must find the very inode this process opened
through ``confine`` (decided from what was opened); a worker that finds anything else fails and
the read falls back. Workers never write anywhere and print nothing.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..confine import open_read, stat_file
from . import wandb_log
from .leveldb_log import BLOCK, LogReader
from .wandb_log import FIRST_ROW, HISTORY_KEY_CAP, NAMES_CAP, SUMMARY_MAX_BYTES, ReadInOneProcess, WandbLog

Fallback = ReadInOneProcess  # joining the parts could differ from a sequential read
DEFERRED_BUDGET = 32 << 20  # bytes of records other than rows and updates handed back, all parts together


@dataclass
class PartTimes:
    """CPU seconds of a parallel read, by stage, and its wall-clock seconds
    (``WandbLog.part_times``; for benchmarks and debugging). On as many idle cores as parts,
    the read takes about ``max(first, *workers) + receive + join`` (``critical_path``)."""

    first: float  # this process decoding the first part
    workers: list[float]  # each worker process, whole (interpreter start, imports, its part)
    receive: float  # this process unpickling the workers' results
    join: float  # this process checking and joining the parts
    wall: float  # the whole read, start to end, as it ran here

    def critical_path(self) -> float:
        return max(self.first, *self.workers) + self.receive + self.join


def part_bounds(size: int, parts: int) -> list[int]:
    """Block-aligned cut points [0, c1, ..., size] for ``parts`` equal parts of a ``size``-byte
    file (parts that round to nothing are left out)."""
    cuts = sorted({size * k // parts // BLOCK * BLOCK for k in range(1, parts)} - {0})
    return [0, *[c for c in cuts if c < size], size]


# ---- in a worker ---------------------------------------------------------------------------


class PartLog(WandbLog):
    """A WandbLog over one part of the file: history rows and summary updates are decoded as
    usual; every other record is kept raw (``deferred``) for the joining process; the part's
    first row, met with no summary update before it in the part, keeps its item bytes
    (``first_row``) to be matched against the update the part before left pending."""

    cpu_seconds = 0.0  # in a worker: the worker process's CPU seconds once its part is decoded

    def __init__(self, path: str, keys: frozenset[str] | None, deferred_max: int = DEFERRED_BUDGET) -> None:
        super().__init__(path, keys=keys)
        self.deferred = []
        self.deferred_max = deferred_max
        if self._marks is None:  # (a keyed read skips summary updates: nothing is ever pending)
            self._pending = FIRST_ROW


def decode_part(path: str, ident: tuple[int, int], size: int, start: int, stop: int | None,
                keys: frozenset[str] | None, deferred_max: int = DEFERRED_BUDGET) -> PartLog:
    """Decode the records beginning in [start, stop) of the file (to ``size``); runs in a worker.
    Raises Fallback early when the part hands back more than ``deferred_max`` bytes of other
    records (they would all be held at once by the joining process)."""
    log = PartLog(path, keys, deferred_max)
    reader = log.reader
    # O_NONBLOCK: a FIFO put at the path must not stall the open (it is then refused by its inode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != ident or not stat.S_ISREG(st.st_mode):
            raise Fallback("the file at the path is not the one opened")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        if not reader.skip_continuations(f, start, size):
            raise Fallback("damage at a part boundary")
        reader.header_ok = True
        reader.size = size
        emit = log._record if log._marks is None else log._record_keyed
        reader._read_chunks(f, size, emit, stop=stop)
    log.count_skipped()
    log.reader = _EndOf(reader)
    return log


class _EndOf:
    """What the joining process needs of a part's reader (not the reader itself)."""

    def __init__(self, r: LogReader) -> None:
        self.offset, self.end, self.tail = r.offset, r.end, r.tail
        self.damaged = bool(r.damage.parts())


# ---- joining -------------------------------------------------------------------------------

_SOURCES_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(_SOURCES_DIR))


def _start_worker(path: str, ident: tuple[int, int], size: int, start: int, stop: int | None,
                  keys: frozenset[str] | None, deferred_max: int) -> subprocess.Popen:
    """A new interpreter running ``decode_part``: its arguments as JSON on the command line, its
    result pickled on its stdout (a pipe to us, never our stdout). Isolated mode (-I): no
    PYTHON* variables, no user site, and neither the working directory (possibly a hostile
    run tree) nor any script directory on its import path, only this package's; no site
    module (-S: no site-packages, no .pth files run). The ``sources`` package is entered
    without its ``__init__``, which imports every format's reader: the worker needs the W&B
    log's modules only (interpreter start to decoding: 0.19 -> 0.11 s of CPU, measured)."""
    code = (f"import sys, types; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
            "pkg = types.ModuleType('runwise_mcp.sources'); "
            f"pkg.__path__ = [{_SOURCES_DIR!r}]; "
            "sys.modules['runwise_mcp.sources'] = pkg; "
            "from runwise_mcp.sources.wandb_parallel import _main; _main(sys.argv[1])")
    arg = json.dumps([os.path.abspath(path), list(ident), size, start, stop,  # (workers run in another directory)
                      None if keys is None else sorted(keys), deferred_max])
    return subprocess.Popen([sys.executable, "-I", "-S", "-W", "ignore", "-c", code, arg], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=_PACKAGE_PARENT, close_fds=True)


def _result(proc: subprocess.Popen) -> PartLog:
    """The part a worker decoded, unpickled as it streams in (never held twice)."""
    try:
        result = pickle.load(proc.stdout)
    except Exception:  # (a worker that died: no or a cut result)
        result = None
    err = proc.stderr.read() if proc.stderr is not None else b""
    proc.wait()
    if result is None or proc.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise Fallback(f"a worker failed: {last[0][:200]}")
    if isinstance(result, str):
        raise Fallback(result)
    return result


def _main(arg: str) -> None:
    """A worker: decode one part and pickle it onto stdout (a message string when it cannot)."""
    result: object
    try:
        path, ident, size, start, stop, keys, deferred_max = json.loads(arg)
        result = decode_part(path, (ident[0], ident[1]), size, start, stop,
                             None if keys is None else frozenset(keys), deferred_max)
        result.cpu_seconds = time.process_time()  # this worker's whole: start, imports, decoding
    except Fallback as e:
        result = str(e)
    except Exception as e:  # reported by the joining process, which reads the log itself
        result = f"{type(e).__name__}: {e}"
    out = sys.stdout.buffer
    pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()


def read_parallel(log: WandbLog, workers: int, progress: Callable[[int, int], None] | None = None) -> int:
    """Read ``log`` (never read yet) in ``workers`` processes; return the records read. Raises
    Fallback when the result could differ from a sequential read; ``log`` then holds exactly
    what a sequential read of the first part gives (or nothing), and is read on from there."""
    reader = log.reader
    with open_read(log.path) as f:
        st = os.fstat(f.fileno())
        size = st.st_size
        bounds = part_bounds(size, workers)
        if len(bounds) < 3:
            raise Fallback("too small to split")
        ident = (st.st_dev, st.st_ino)
        procs: list[subprocess.Popen] = []
        try:
            try:
                share = max(4 << 20, DEFERRED_BUDGET // (len(bounds) - 2))
                for i in range(1, len(bounds) - 1):
                    procs.append(_start_worker(log.path, ident, size, bounds[i],
                                               bounds[i + 1] if i + 2 < len(bounds) else None, log._keys, share))
            except OSError as e:
                raise Fallback(f"no worker processes: {e}") from e
            reader.size = size
            wall0, first0 = time.perf_counter(), time.thread_time()
            emit = log._record if log._marks is None else log._record_keyed
            if progress is not None:
                # The parts advance at about the same pace: the first part's share read stands
                # for the whole file's.
                every = wandb_log.PROGRESS_EVERY
                first, count, plain = bounds[1], [0, every], emit

                def emit(rec: bytes) -> None:
                    plain(rec)
                    count[0] += 1
                    if count[0] + reader.skipped >= count[1]:
                        count[1] = count[0] + reader.skipped + every
                        progress(min(size, reader.offset * size // first), size)

            reader._read_from(f, size, emit, stop=bounds[1])
            log.count_skipped()
            first_cpu = time.thread_time() - first0
            if reader.header_ok is not True:
                return log.records
            try:
                if reader.tail or reader.damage.parts():
                    raise Fallback("the first part did not end cleanly")
                receive0 = time.thread_time()
                parts = [_result(p) for p in procs]
                join0 = time.thread_time()
                _check(log, parts)
            except Fallback:
                reader._remember(f.fileno(), st)  # read on from the first part, in this file only
                raise
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                for stream in (p.stdout, p.stderr):
                    if stream is not None:
                        stream.close()
        n = len(parts)
        workers_cpu = [p.cpu_seconds for p in parts]
        for i in range(n):
            part, parts[i] = parts[i], None  # each part freed once joined
            _join(log, part, last=i == n - 1)
            del part
        log.parts_read = n + 1
        log.part_times = PartTimes(first_cpu, workers_cpu, join0 - receive0, time.thread_time() - join0,
                                   time.perf_counter() - wall0)
        reader._remember(f.fileno(), st)
    log._summary_cache = None
    return log.records


def _check(log: WandbLog, parts: list[PartLog]) -> None:
    """Raise Fallback unless joining ``parts`` after ``log`` equals one sequential read."""
    every = [log, *parts]
    for i, p in enumerate(parts):
        if p.deferred_unsafe:
            raise Fallback("a damaged record")
        if p.reader.damaged or (p.reader.tail and i < len(parts) - 1):
            raise Fallback("a part did not end cleanly")
        if p.stepless or p.bad_rows:
            raise Fallback("rows without a step (numbered from the row before)")
        if p.bad_records:  # (a row that failed may have taken the mirror meant for the part's first row)
            raise Fallback("a damaged record")
    if any(x.history.dropped or x.system.dropped for x in every):
        raise Fallback("keys over the cap")
    if sum(len(x.history.columns) + len(x.history.other) for x in every) > HISTORY_KEY_CAP // 2 \
            or sum(len(x._names) for x in every) > NAMES_CAP // 2:
        raise Fallback("near the key cap")
    if sum(x._summary_peak for x in every) > SUMMARY_MAX_BYTES:
        raise Fallback("near the summary size cap")
    media = set().union(*(x._media for x in every))
    if media:
        for x in every:
            foreign = media - x._media
            if foreign and any(_under(name, foreign) for name in (*x.history.columns, *x.history.other)):
                raise Fallback("a media object's fields in another part than its type")


def _under(name: str, prefixes: set[str]) -> bool:
    p = name.find(".")
    while p >= 0:
        if name[:p] in prefixes:
            return True
        p = name.find(".", p + 1)
    return False


def _join(log: WandbLog, part: PartLog, last: bool) -> None:
    base = log.records
    pending = log._pending
    row_seq = part._row_seq
    if pending is not None and part._pending is not FIRST_ROW:  # else the part met no row or update
        log._pending = None
        if part.first_row is None:  # the part's first row or update was an update
            log._fold_summary(*pending)
        else:
            mirror = log._match_pending(pending, part.first_row)
            if mirror >= 0:
                row_seq[0] = mirror - base  # becomes ``mirror`` once offset below
    log.history.extend_from(part.history)
    log._row_seq.extend(s + base if s >= 0 else -1 for s in row_seq)
    for name, (seq, value) in part._summary_raw.items():
        log._summary_raw[name] = (seq + base, value)
    log._summary_bytes = sum(len(v) for _, v in log._summary_raw.values() if v is not None)
    log._summary_peak += part._summary_peak
    if part._pending is not None and part._pending is not FIRST_ROW:
        log._pending = (part._pending[0] + base, part._pending[1])
    log._fold_memo = None
    if part._media - log._media:
        log._media |= part._media
        log._media_gen += 1
    log.records = base + part.records
    for name in ("bad_records", "bad_rows", "values_cut", "summary_cut"):
        setattr(log, name, getattr(log, name) + getattr(part, name))
    for rec in part.deferred:  # in file order, through the sequential code
        log.replay(rec)
    r = log.reader
    r.offset = max(r.offset, part.reader.offset)
    r.end = part.reader.end
    if last:
        r.tail = part.reader.tail


def worth_parallel(log: WandbLog, workers: int, min_bytes: int) -> bool:
    """Whether a read of ``log`` should use ``workers`` processes: its first read, a file of at
    least ``min_bytes`` (and two blocks), nothing that needs every row in order (``row_sink``)."""
    if workers < 2 or log.reader.offset or log.records or log.row_sink is not None or log.sampled:
        return False
    try:
        size = stat_file(log.path).st_size
    except OSError:
        return False
    return size >= max(min_bytes, 2 * BLOCK)
