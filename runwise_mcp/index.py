"""The run index every tool shares: discovery under the roots, identity, grouping of resume
segments, resolution of a ``run`` argument, and caching. It knows no file format: each
directory is offered to the registered sources (``sources.SOURCES``), which claim runs and
read them through the interface in ``sources/base.py`` (a store of many runs, such as an MLflow
database, is claimed as one path and lists its run parts itself).

Discovery walks each root to a limited depth, never follows directory symlinks, skips
``.git``, ``node_modules``, virtualenvs and our own cache directory (compared by real path: with
root = ``$HOME`` it lies below the root), and never writes anything. Directory listings are
cached by the directory's mtime; run parts by the (size, mtime) of each file they read, so a
second call on unchanged runs parses nothing and a grown log is read only from where the
previous read stopped. Every file is opened under the roots (``confine``), decided from what
was opened.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from . import confine
from .cache import AnswerMemo, LogCache
from .config import BYTES_PER_POINT, Settings
from .liveness import Flight, checkpoint
from .model import History, Run, Segment, merge_histories, sane_seconds, sane_time, unescape
from .sources import SOURCES, configured_stores
from .sources.base import PartStore, ReadContext, RunPart, Source, WalkRules, glob_regex
from .sources.console import compile_patterns, parse_lines

log = logging.getLogger(__name__)

SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", "site-packages", ".ipynb_checkpoints",
    ".idea", ".vscode",
})


def one_line(e: BaseException) -> str:
    """An exception as one log line: type, message (cut at 300 characters, whitespace and newlines
    folded) and where it was raised; the traceback goes to debug level."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:300]}{'…' if len(msg) > 300 else ''}{where}"


def log_failure(what: str, e: BaseException, logger: logging.Logger | None = None) -> None:
    """Log ``what`` failed, with ``e``, as one line (``one_line``); the traceback at debug level.
    Call it from the ``except`` block that caught ``e``."""
    logger = logger or log
    logger.error("%s: %s", what, one_line(e))
    logger.debug("traceback of the failure above", exc_info=True)


class RunNotFound(LookupError):
    """An unknown or ambiguous ``run`` argument; ``candidates`` are the closest runs."""

    def __init__(self, ref: str, reason: str, candidates: list[Run]) -> None:
        super().__init__(reason)
        self.ref = ref
        self.reason = reason
        self.candidates = candidates


@dataclass
class ConsoleView:
    """A run's console-derived metrics and where they came from."""

    history: History = field(default_factory=History)
    percent: set[str] = field(default_factory=set)  # keys printed as percentages
    files: list[str] = field(default_factory=list)
    lines: int = 0
    capped: int = 0  # lines longer than console.MAX_PARSE, parsed only up to it
    bad_rows: int = 0  # lines skipped for a step or counter that is not a 64-bit integer
    partial: bool = False  # only a tail was parsed
    total: int | None = None  # planned steps, when a progress counter printed n/N
    rate: float | None = None  # it/s printed by a progress bar
    tail: list[str] = field(default_factory=list)  # the last raw lines (\r collapsed)
    cursor_file: Any = None  # the ConsoleFile of the newest segment (for tail_run cursors)
    aliases: dict = field(default_factory=dict)  # memo of the console keys mirroring logged keys, by history


# Set by the server around a tool call: progress(done, total, message) while a log is read in full.
READ_PROGRESS: ContextVar[Callable[[float, float, str], None] | None] = ContextVar("read_progress", default=None)


class FullRead:
    """A background full read of one run's logs."""

    def __init__(self, run_id: str, total: int) -> None:
        self.run_id = run_id
        self.total = max(total, 1)  # bytes to read
        self.done = 0
        self.error: str | None = None
        self.finished = threading.Event()
        self.started = time.time()
        self.thread: threading.Thread | None = None

    def advance(self, done: int) -> None:
        self.done = min(done, self.total)

    @property
    def fraction(self) -> float:
        return self.done / self.total

    def eta(self) -> float | None:
        """Seconds left at the speed so far."""
        spent = time.time() - self.started
        return spent * (1 - self.fraction) / self.fraction if self.fraction > 0.02 else None

    def wait_briefly(self, limit: float) -> bool:
        """Wait up to ``limit`` seconds for the read to finish, but stop as soon as its speed so
        far says it will not finish in time (a first answer from a skim then comes without the
        wasted wait). True if the read has finished."""
        end = time.monotonic() + limit
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return self.finished.is_set()
            if self.finished.wait(min(0.05, left)):
                return True
            eta = self.eta()
            if eta is not None and eta > 2 * (end - time.monotonic()):
                return False


@dataclass
class ScanReport:
    roots: list[str]
    problems: list[str] = field(default_factory=list)  # roots missing, unreadable dirs
    run_dirs: list[str] = field(default_factory=list)
    found: list[tuple[str, Source, str]] = field(default_factory=list)  # (path, source, root) of each run part


@dataclass
class _DirEntry:
    mtime_ns: int
    subdirs: list[str]
    files: tuple[str, ...]  # names of the other entries (files, symlinks, ...)
    links: tuple[tuple[str, str], ...] = ()  # (name, target) of symlinks that look like run folders


LINK_NAMES = frozenset({"wandb", ".wandb", "runs", "mlruns", "lightning_logs", "tb_logs", "logs", "outputs"})


def _run_folder_name(name: str) -> bool:
    """A symlink of this name probably leads to runs (wandb -> /scratch/$USER/wandb)."""
    return name in LINK_NAMES or any(src.name_hint(name) for src in SOURCES)


class RunIndex:
    """Discovers and caches runs under the configured roots. Thread-safe."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.RLock()
        self._dirs: dict[str, _DirEntry] = {}
        self._segments: dict[str, RunPart] = {}  # path -> run part
        self._stores: dict[str, PartStore] = {}  # path -> a store of many run parts (e.g. mlflow.db)
        self._runs: dict[str, tuple[tuple, Run]] = {}  # run id -> (segment versions, Run)
        self._groups: dict[str, list[RunPart]] = {}  # run id -> its parts
        self._copies: dict[str, list[tuple[str, str]]] = {}  # run id -> copies left out (see split_copies)
        self._used: dict[str, int] = {}  # run id -> last use, for the cache budget
        self._tick = itertools.count()
        self.last_scan = ScanReport(roots=list(settings.roots))
        self.roots = confine.Roots(settings.roots, exclude=settings.own_dirs)
        self._patterns: list | None = None  # compiled [console] patterns
        self._views: dict[str, tuple[tuple, ConsoleView]] = {}  # run id -> (console versions, merged view)
        self._jobs: dict[str, FullRead] = {}  # background full reads by run id
        self._flights: dict[tuple, Flight] = {}  # decodes in flight outside the lock, shared by calls
        self._keyed_runs: dict[str, tuple[tuple, Run]] = {}  # run id -> (keyed reads' state, keyed Run)
        self._unchecked = 0  # points added by keyed reads since the memory budget was last checked
        self.cache = LogCache(settings.cache_dir, settings.cache_min_bytes) if settings.cache_dir else None
        self.memo = AnswerMemo(settings.cache_dir)  # computed answer parts (on disk only with a cache dir)
        self._include = tuple(glob_regex(g) for g in settings.include)  # [sources] globs
        self._exclude = tuple(glob_regex(g) for g in settings.exclude)
        self._rules = WalkRules()
        # stores named in the settings, not found by walking (MLflow tracking servers): listed with the rest
        self._configured, self._configured_problems = configured_stores(settings)
        self._configured_said: set[str] = set()

    # ---- discovery -----------------------------------------------------------------------------

    def scan(self) -> ScanReport:
        report = ScanReport(roots=list(self.settings.roots))
        seen: set[str] = set()
        for root in self.settings.roots:
            if not os.path.exists(root):
                report.problems.append(f"root {root} does not exist")
                continue
            if not os.path.isdir(root):
                report.problems.append(f"root {root} is a file, not a directory")
                continue
            real = os.path.realpath(root)
            self._rules = WalkRules(real, self._include, self._exclude)
            self._walk(real, 0, report, seen, real)
        self.last_scan = report
        return report

    def _walk(self, path: str, depth: int, report: ScanReport, seen: set[str], root: str) -> None:
        entry = self._list_dir(path, report)
        if entry is None:
            return
        for name, target in entry.links:
            self._skipped_link(os.path.join(path, name), target, report)
        descend = True
        names = tuple(os.path.basename(d) for d in entry.subdirs)
        for src in SOURCES:
            try:
                claim = src.claim(path, entry.files, names, self.roots)
            except Exception as e:  # a source's bug must not take the listing down
                log.warning("%s could not judge %s: %s: %s", src.name, path, type(e).__name__, e)
                report.problems.append(f"{src.name} could not judge {path}: {type(e).__name__}")
                continue
            if claim is None:
                continue
            for name in claim.files:  # files that are runs of their own
                fp = os.path.join(path, name)
                if fp not in seen and not self._rules.excluded(fp):
                    seen.add(fp)
                    report.found.append((fp, src, root))
                    report.run_dirs.append(fp)
            if claim.files and not claim.run:
                continue
            if claim.run and path not in seen and not (path != root and self._rules.excluded(path, is_dir=True)):
                seen.add(path)
                report.found.append((path, src, root))
                report.run_dirs.append(path)
            descend = claim.descend
            break
        if not descend:  # the directory is one run (or part of one) with all its files
            return
        self._claim_files(path, entry.files, report, seen, root)
        for sub in entry.subdirs:
            name = os.path.basename(sub)
            if self.roots.is_excluded(sub):  # our own cache directory (the walk's paths are real)
                continue
            if self._rules.excluded(sub, is_dir=True):  # [sources] exclude
                continue
            if depth + 1 <= self.settings.max_depth and name not in SKIP_DIRS:
                self._walk(sub, depth + 1, report, seen, root)
            elif any(src.name_hint(name) for src in SOURCES):  # a run directory just below the depth
                sub_entry = self._list_dir(sub, report)
                if sub_entry is None:
                    continue
                sub_names = tuple(os.path.basename(d) for d in sub_entry.subdirs)
                for src in SOURCES:
                    claim = src.claim(sub, sub_entry.files, sub_names, self.roots)
                    if claim is not None:
                        if claim.run and sub not in seen:
                            seen.add(sub)
                            report.found.append((sub, src, root))
                            report.run_dirs.append(sub)
                        break

    def _context(self, root: str) -> ReadContext:
        st = self.settings
        return ReadContext(self.roots, root, self.cache, st.read_workers, st.parallel_min_bytes)

    def _skipped_link(self, link: str, target: str, report: ScanReport) -> None:
        """Say that a symlink that looks like a run folder (``wandb -> /scratch/u/wandb``) was
        not followed, and the exact root that would read it. Only the link itself is read: its
        target is never opened or stat-ed (it may lie outside the roots). A target inside a
        root is not said: the walk finds its runs there."""
        where = os.path.normpath(os.path.join(os.path.dirname(link), target))
        if self.roots.contains(where):
            return
        report.problems.append(f"skipped symlink {link} -> {target}: symlinks are not followed (runs are read "
                               f"only under the roots); to read it, add --root {where}")

    def _claim_files(self, path: str, files: tuple[str, ...], report: ScanReport, seen: set[str], root: str) -> None:
        """Files in ``path`` that a source claims as runs of their own (console logs), each
        one run part; the first source to claim a file has it."""
        taken: set[str] = set()
        for src in SOURCES:
            for name in src.claim_files(path, files, self._rules):
                full = os.path.join(path, name)
                if name in taken or full in seen or self._rules.excluded(full):
                    continue
                taken.add(name)
                seen.add(full)
                report.found.append((full, src, root))
                report.run_dirs.append(full)

    def _list_dir(self, path: str, report: ScanReport) -> _DirEntry | None:
        try:
            fd = self.roots.open_dir(path)
        except OSError as e:
            report.problems.append(f"cannot read directory {path}: {e.strerror or e}")
            return None
        try:
            st = os.fstat(fd)
            cached = self._dirs.get(path)
            if cached is not None and cached.mtime_ns == st.st_mtime_ns:
                return cached
            subdirs: list[str] = []
            files: list[str] = []
            links: list[tuple[str, str]] = []
            venv = False
            try:
                with os.scandir(fd) as it:
                    for e in it:
                        name = e.name
                        try:
                            if e.is_dir(follow_symlinks=False):
                                subdirs.append(os.path.join(path, name))
                            else:
                                files.append(name)
                                venv = venv or name == "pyvenv.cfg"
                                if _run_folder_name(name) and e.is_symlink():  # never followed
                                    links.append((name, os.readlink(name, dir_fd=fd)))
                        except OSError:
                            continue
            except OSError as e:
                report.problems.append(f"cannot read directory {path}: {e.strerror or e}")
                return None
        finally:
            os.close(fd)
        if venv:
            subdirs = []
        subdirs.sort()
        entry = _DirEntry(st.st_mtime_ns, subdirs, tuple(sorted(files)), tuple(sorted(links)))
        self._dirs[path] = entry
        return entry

    # ---- runs ------------------------------------------------------------------------------------

    def runs(self, progress: Callable[[int, int], None] | None = None) -> list[Run]:
        """All runs, newest start first. Re-reads only what changed since the last call;
        ``progress(done, total)`` is called every 100 run directories read.

        Large logs (over ``settings.skim_above`` bytes) that no tool has asked for in full are
        only skimmed here (their Run has ``sampled=True``); ``resolve(..., full=True)`` reads one
        run completely.
        """
        with self._lock, confine.using(self.roots):
            report = self.scan()
            found = self._expand_stores(report)
            live = {path: src for path, src, _, _ in found}
            for path in list(self._segments):
                if live.get(path) is None or live[path].name != self._segments[path].source:
                    del self._segments[path]
            groups: dict[str, list[RunPart]] = {}
            total = len(found)
            for i, (path, src, root, part) in enumerate(found):
                checkpoint()  # between directories: nothing is half read here
                if progress is not None and i % 100 == 0 and i:
                    progress(i, total)
                seg = self._segments.get(path)
                if part is not None and seg is not part:
                    seg = self._segments[path] = part
                elif seg is None:
                    seg = self._segments[path] = src.open(path, self._context(root))
                if seg.skip_reason:
                    report.problems.append(f"skipped {path}: {seg.skip_reason}")
                    continue
                if not self._refresh(seg, full=False):
                    continue
                groups.setdefault(seg.group_key, []).append(seg)
            now = self.clock()
            runs: list[Run] = []
            fresh: dict[str, tuple[tuple, Run]] = {}
            by_id: dict[str, list[RunPart]] = {}
            for segs in groups.values():
                segs, copies = split_copies(segs)
                self._copies[segs[0].run_id] = copies
                run = self._build(segs)
                self._apply_state(run, segs, now)  # depends on the clock: judged on every call
                fresh[run.id] = (self._key(segs), run)
                by_id[run.id] = segs
                runs.append(run)
            self._runs = fresh
            self._groups = by_id
            runs.sort(key=lambda r: (-(r.start_time or 0.0), r.id))
            if self._over_budget() and self._enforce_budget(keep=""):
                return self.runs()  # evicted runs are listed from skims now
            return runs

    def _expand_stores(self, report: ScanReport) -> list[tuple[str, Source, str, RunPart | None]]:
        """The found paths with each store (a path of a ``many`` source: a database of many
        runs) replaced by its run parts, listed by the store (called under the lock)."""
        out: list[tuple[str, Source, str, RunPart | None]] = []
        live: set[str] = set()
        for path, src, root in report.found:
            if not src.many:
                out.append((path, src, root, None))
                continue
            live.add(path)
            store = self._stores.get(path)
            try:
                if store is None or store.source != src.name:
                    store = self._stores[path] = src.open(path, self._context(root))
                parts = store.parts()
            except Exception as e:  # a store's damage or a reader bug must not take the listing down
                log_failure(f"cannot read {path}", e)
                why = str(e) if type(e).__name__.endswith("StoreError") else f"{type(e).__name__}: {e}"
                report.problems.append(f"cannot read {path}: {why}")
                continue
            out += [(p.path, src, root, p) for p in parts]
        report.problems.extend(self._configured_problems)
        for src, store in self._configured:
            live.add(store.path)
            self._stores[store.path] = store
            try:
                parts = store.parts()
            except Exception as e:  # an unreachable server: said, and the other runs are listed
                why = str(e) if type(e).__name__.endswith("StoreError") else f"{type(e).__name__}: {e}"
                if why not in self._configured_said:  # said once on stderr; every answer lists it
                    self._configured_said.add(why)
                    log.warning("cannot read %s: %s", store.path, why)
                report.problems.append(f"cannot read {store.path}: {why}")
                continue
            out += [(p.path, src, "", p) for p in parts]
        for gone in set(self._stores) - live:
            del self._stores[gone]
        return out

    def _over_budget(self) -> bool:
        budget = self.settings.cache_mb * (1 << 20) / BYTES_PER_POINT
        return sum(s.points for s in self._segments.values() if s.in_memory) > budget

    def _refresh(self, seg: RunPart, full: bool) -> bool:
        progress = READ_PROGRESS.get() if full else None
        try:
            seg.refresh(full=full, skim_above=self.settings.skim_above,
                        progress=(lambda off, size: progress(off, size, f"reading {os.path.basename(seg.path)}: "
                                                            f"{off / 2**20:,.0f} of {size / 2**20:,.0f} MiB"))
                        if progress else None)
            return True
        except Exception as e:  # a reader bug must not take the index down
            log_failure(f"cannot read {seg.path}", e)
            self.last_scan.problems.append(f"cannot read {seg.path}: {type(e).__name__}: {e}")
            return False

    @staticmethod
    def _key(segs: list[RunPart]) -> tuple:
        return tuple((s.path, s.version) for s in segs)

    def _build(self, segs: list[RunPart]) -> Run:
        segs.sort(key=lambda s: (s.start_time or 0.0, s.path))
        cached = self._runs.get(segs[0].run_id)
        if cached is not None and cached[0] == self._key(segs):
            run = cached[1]
        else:
            run = build_run(segs[0].run_id, segs)
        run.copies = self._copies.get(run.id, [])
        return run

    def _apply_state(self, run: Run, segs: list[RunPart], now: float) -> None:
        stale = self.settings.stale_after
        for seg, s in zip(segs, run.segments):
            s.state = seg.state(now, stale)
        run.state = run.segments[-1].state if run.segments else run.state

    def resolve(self, ref: str | None, full: bool = False) -> Run:
        """A run by exact id, exact name (case-insensitive), unique prefix of either, or latest.
        With ``full``, its logs are read completely (the answer never rests on a skim)."""
        run = resolve(self.runs(), ref)
        return self.read_full(run) if full else self._touch(run)

    def _touch(self, run: Run) -> Run:
        self._used[run.id] = next(self._tick)
        return run

    def read_full(self, run: Run) -> Run:
        """``run`` (from ``runs()``) read completely; no rescan of the roots, so a tool can read
        many listed runs in full without listing them again for each. A running background full
        read of it is waited for instead of decoding the log a second time.

        Large logs are decoded outside the index lock (other calls go on meanwhile), by one call
        for all that ask at once, and installed under it; a cancelled call stops decoding at its
        next checkpoint."""
        if run.sampled:
            self._wait_for_job(run)
            self._decode_outside_lock(run)
            with self._lock, confine.using(self.roots):
                segs = self._groups[run.id]
                for seg in segs:
                    self._refresh(seg, full=True)  # after the decode: only what was appended since
                self._used[run.id] = next(self._tick)
                run = self._build(segs)
                self._apply_state(run, segs, self.clock())
                self._runs[run.id] = (self._key(segs), run)
                self._enforce_budget(keep=run.id)
            return run
        return self._touch(run)

    def read_keys(self, run: Run, names: list[str] | set[str] | frozenset[str]) -> Run:
        """``run`` (from ``runs()``) with the history of ``names`` complete, decoding no other
        history key of a log that is not read in full (see ``RunPart.read_keys``). The result is
        a Run of its own (``keys_read`` = names), never listed; it answers only about those keys,
        with summary and runtime from the skim. A run read in full is returned as is; a running
        background full read of it is waited for instead. The keyed decode runs outside the
        index lock, like ``read_full``'s."""
        if not run.sampled:
            return self._touch(run)
        if self._wait_for_job(run):
            return self.read_full(run)
        want = frozenset(n for n in names if n)
        self._decode_outside_lock(run, want)
        with self._lock, confine.using(self.roots):
            segs = self._groups[run.id]
            progress = READ_PROGRESS.get()
            try:
                for seg in segs:  # after the decode: only what was appended since
                    seg.read_keys(want, progress=(
                        lambda off, size, seg=seg: progress(off, size, f"reading {', '.join(sorted(want)[:3])} from "
                                                                       f"{os.path.basename(seg.path)}: {off / 2**20:,.0f}"
                                                                       f" of {size / 2**20:,.0f} MiB"))
                                  if progress else None)
                failed = ""
            except Exception as e:  # a reader bug must not take the index down: read in full
                log_failure(f"keyed read of {run.id} failed", e)
                failed = f"keyed read of {run.id} failed ({type(e).__name__}: {e}); read in full"
                self.last_scan.problems.append(failed)
                for seg in segs:
                    seg.drop_keyed()
            if not failed:
                keyed = self._keyed_run(run, segs, want)
        # outside the lock: read_full may wait for a background read, which needs the lock to finish
        return self.read_full(run) if failed else keyed

    def _decode_outside_lock(self, run: Run, want: frozenset[str] | None = None) -> None:
        """Decode the logs of ``run`` that a full read (``want`` None) or a keyed read of
        ``want`` would decode from the start, without holding the index lock, and install each
        result under it. Concurrent calls asking for the same share one decode (an in-flight
        map); a call that is cancelled stops at its next checkpoint (``liveness.Cancelled``),
        leaving nothing half installed, and a call waiting for it then decodes itself. A part
        that cannot decode detached (or fails to) is read under the lock afterwards, as before."""
        progress = READ_PROGRESS.get()
        flight_key = ("full", run.id) if want is None else ("keys", run.id, want)
        while True:
            checkpoint()
            with self._lock, confine.using(self.roots):
                flight = self._flights.get(flight_key)
                mine = flight is None
                if mine:
                    segs = self._groups.get(run.id, [])
                    if want is None:
                        plans = [(seg, ("full",)) for seg in segs if seg.sampled]
                    else:
                        plans = [(seg, seg.keyed_plan(want)) for seg in segs if seg.sampled]
                        plans = [(seg, plan) for seg, plan in plans if plan is not None]
                    if not plans:
                        return
                    flight = self._flights[flight_key] = Flight(sum(seg.log_bytes for seg, _ in plans))
            if not mine:  # another call decodes it: wait (still cancellable), reporting its progress
                waited = 0
                while not flight.finished.wait(0.25):
                    checkpoint()
                    waited += 1
                    if progress is not None and waited % 4 == 0:
                        progress(flight.done, flight.total, f"reading {run.id} for another call: "
                                                            f"{flight.done / 2**20:,.0f} of {flight.total / 2**20:,.0f} MiB")
                if flight.ok:
                    return
                continue  # its call was cancelled or it failed: decode here
            try:
                self._decode_plans(run, plans, want, flight, progress)
                flight.ok = True
                return
            finally:
                with self._lock:
                    self._flights.pop(flight_key, None)
                flight.finished.set()

    def _decode_plans(self, run: Run, plans: list, want: frozenset[str] | None, flight: Flight,
                      progress: Callable[[float, float, str], None] | None) -> None:
        base = 0
        for seg, plan in plans:
            name = os.path.basename(seg.path)
            what = f"{', '.join(sorted(want)[:3])} from {name}" if want is not None and plan[0] != "full" else name

            def step(off: int, size: int, base: int = base, what: str = what) -> None:
                checkpoint()  # between records of a private decode: safe to stop
                flight.done = base + off
                if progress is not None:
                    progress(off, size, f"reading {what}: {off / 2**20:,.0f} of {size / 2**20:,.0f} MiB")

            try:
                with confine.using(self.roots):
                    if plan[0] == "full":
                        decoded, install = seg.decode_detached(step), seg.install_full
                    else:
                        decoded, install = seg.decode_keyed(plan, step), seg.install_keyed
            except Exception as e:  # read again under the lock, which reports it
                log.debug("decode of %s outside the lock failed: %s: %s", seg.path, type(e).__name__, e)
                continue
            checkpoint()
            if decoded is not None:
                with self._lock:
                    install(decoded)
            base += seg.log_bytes

    def _keyed_run(self, run: Run, segs: list, want: frozenset[str]) -> Run:
        """The Run of keyed views of ``segs`` (or the full Run when every log is read in full);
        called under the lock."""
        self._used[run.id] = next(self._tick)
        if not any(seg.sampled for seg in segs):  # all read in full (e.g. from the persistent cache)
            full = self._build(segs)
            self._apply_state(full, segs, self.clock())
            self._runs[run.id] = (self._key(segs), full)
            return full
        state = tuple(seg.keyed_state for seg in segs)
        memo = self._keyed_runs.get(run.id)
        if memo is not None and memo[0] == state and want <= memo[1].keys_read:
            keyed = memo[1]  # the same keyed read as last time: nothing new on disk
        else:
            keyed = build_run(run.id, [seg.keyed_view() if seg.sampled else seg for seg in segs])
            keyed.copies = self._copies.get(run.id, [])
            keyed.keys_read = frozenset(k for seg in segs if seg.sampled for k in seg.keyed_names) or want
            self._keyed_runs[run.id] = (state, keyed)
            # a keyed read holds little: check the budget (a walk over every directory) only
            # once keyed reads have added a 64th of it since the last check
            self._unchecked += sum(seg.points for seg in segs)
            if self._unchecked * 64 >= self.settings.cache_mb * (1 << 20) / BYTES_PER_POINT:
                self._enforce_budget(keep=run.id)
        self._apply_state(keyed, segs, self.clock())
        return keyed

    def _wait_for_job(self, run: Run) -> bool:
        """Wait for a running background full read of ``run`` (reporting its progress); True if
        there was one. Reading the log again meanwhile would only compete with it."""
        with self._lock:
            job = self._jobs.get(run.id)
        if job is None or job.thread is None or not job.thread.is_alive():
            return False
        progress = READ_PROGRESS.get()
        while not job.finished.wait(0.5):
            checkpoint()  # a cancelled call stops waiting; the background read goes on for others
            if progress is not None:
                progress(job.done, job.total, f"reading {run.id} in the background: "
                                              f"{job.done / 2**20:,.0f} of {job.total / 2**20:,.0f} MiB")
        return True

    def read_in_background(self, run: Run) -> FullRead:
        """Start (or find) a background full read of a skimmed run; tools answer from the skim
        meanwhile and say how far the read is. Each log is decoded privately and installed under
        the lock, so other calls are never blocked by the decode."""

        def work(job: FullRead, segs: list[RunPart]) -> None:
            token = confine.ACTIVE.set(self.roots)  # a new thread starts with no active roots
            try:
                done = 0
                for seg in segs:
                    if seg.full:
                        continue
                    decoded = seg.decode_detached(lambda off, size, b=done: job.advance(b + off))
                    if decoded is not None:
                        with self._lock:
                            seg.install_full(decoded)
                        done += seg.log_bytes  # the size it was read to
                job.advance(job.total)
            except Exception as e:  # reported by the tool that asks next
                log_failure(f"background read of {job.run_id} failed", e)
                job.error = f"{type(e).__name__}: {e}"
            finally:
                confine.ACTIVE.reset(token)
                job.finished.set()

        with self._lock:
            job = self._jobs.get(run.id)
            if job is not None and job.thread is not None and job.thread.is_alive():
                return job  # a finished job is not reused: the run may have been evicted since
            segs = list(self._groups.get(run.id, []))
            job = FullRead(run.id, sum(s.log_bytes for s in segs))
            self._jobs[run.id] = job
            job.thread = threading.Thread(target=work, args=(job, segs), name=f"runwise-read-{run.id}", daemon=True)
            job.thread.start()
            return job

    def _enforce_budget(self, keep: str) -> int:
        """Evict the least recently used fully read logs beyond the memory budget; return how
        many were evicted."""
        budget = self.settings.cache_mb * (1 << 20) / BYTES_PER_POINT
        self._unchecked = 0
        held = [s for s in self._segments.values() if s.in_memory]
        total = sum(s.points for s in held)
        evicted = 0
        if total <= budget:
            return 0
        for seg in sorted(held, key=lambda s: (self._used.get(s.run_id, -1), -s.points)):
            if total <= budget:
                break
            if seg.run_id == keep:
                continue
            total -= seg.points
            seg.evict()
            self._runs.pop(seg.run_id, None)
            self._keyed_runs.pop(seg.run_id, None)
            evicted += 1
        return evicted

    def segments(self, run: Run) -> list[RunPart]:
        """The run directories of ``run``, in start order."""
        with self._lock:
            return list(self._groups.get(run.id, []))

    def console(self, run: Run, tail_only: int = 0) -> ConsoleView:
        """The metrics printed to the console of ``run``: each segment's ``files/output.log``
        (or, without one, the console lines kept in its .wandb log), concatenated in start order.
        ``tail_only``: parse only the last that many bytes of a log not parsed before."""
        if self._patterns is None:
            self._patterns, problems = compile_patterns(self.settings.console_patterns)
            self.settings.config_problems.extend(problems)
        view = ConsoleView()
        parts = []
        with self._lock, confine.using(self.roots):
            segs = self._groups.get(run.id, [])
            consoles = [seg.console(self._patterns, tail_only=tail_only) for seg in segs]  # reads what is new
            key = tuple((id(cf), cf.offset, cf.start_offset) if cf is not None else (seg.path, seg.version)
                        for seg, cf in zip(segs, consoles))
            cached = self._views.get(run.id)
            if cached is not None and cached[0] == key:
                return cached[1]  # nothing new: the merged view of the previous call
            for i, (seg, cf) in enumerate(zip(segs, consoles), 1):
                where = f" (segment {i})" if len(segs) > 1 else ""
                if cf is not None:
                    h = cf.history()
                    shown = os.path.basename(cf.path) if cf.path == seg.path else os.path.relpath(cf.path, seg.path)
                    view.files.append(shown + where)
                    view.lines += cf.parsed.lines
                    view.capped, view.bad_rows = view.capped + cf.parsed.capped, view.bad_rows + cf.parsed.bad_rows
                    view.partial = view.partial or bool(cf.start_offset)
                    view.percent |= cf.parsed.percent
                    view.total = cf.parsed.total or view.total
                    view.rate = cf.parsed.rate or view.rate
                    view.tail = [t for _, t in cf.tail]
                    view.cursor_file = cf
                    parts.append(h)
                else:
                    lines = seg.log_console_lines
                    if lines:
                        ch = parse_lines(lines, self._patterns)
                        view.files.append(os.path.basename(seg.info.main_file or seg.path) + f" console records{where}")
                        view.lines += ch.lines
                        view.capped, view.bad_rows = view.capped + ch.capped, view.bad_rows + ch.bad_rows
                        view.partial = True
                        view.percent |= ch.percent
                        view.total = ch.total or view.total
                        view.tail = list(lines)
                        parts.append(ch.history)
            view.history, _ = merge_histories(parts)
            self._views[run.id] = (key, view)
        return view

    def problems(self, full_paths: bool = False) -> list[str]:
        """What could not be read, each once: scan problems, then each run part's, named by its
        directory's name (``full_paths``: its path, as --check prints them)."""
        out = list(self.last_scan.problems)
        with self._lock:
            for path in sorted(self._stores):
                out += self._stores[path].problems()
            for path in sorted(self._segments):
                for p in self._segments[path].problems():
                    out.append(f"{path if full_paths else os.path.basename(path)}: {p}")
        return list(dict.fromkeys(out))


def _copy_key(seg: RunPart) -> tuple:
    """What makes two run parts of one run id copies of one segment rather than segments of a
    resumed run: the same start time (each resume starts anew), or without one, the same
    content (log size, rows, last step)."""
    start = sane_time(seg.start_time)
    if start is not None:
        return ("start", round(start, 3))
    h = seg.history
    return ("content", seg.log_bytes, h.rows, h.last_step)


def split_copies(segs: list[RunPart]) -> tuple[list[RunPart], list[tuple[str, str]]]:
    """The parts of one run id without copies of one another (copies of a run directory made
    with cp, rsync or a second checkout are one segment, not a resume), and the copies left
    out: (path, "" when identical to the part kept, else how it differs). Of copies, the most
    complete one (largest log, most rows) is read, then the first by path."""
    if len(segs) < 2:
        return segs, []
    buckets: dict[tuple, list[RunPart]] = {}
    for seg in segs:
        buckets.setdefault(_copy_key(seg), []).append(seg)
    if len(buckets) == len(segs):
        return segs, []
    kept: list[RunPart] = []
    copies: list[tuple[str, str]] = []
    for bucket in buckets.values():
        bucket.sort(key=lambda s: (-s.log_bytes, -s.history.rows, s.path))
        keep = bucket[0]
        kept.append(keep)
        for other in bucket[1:]:
            same = (other.log_bytes, other.history.rows, other.history.last_step) == \
                   (keep.log_bytes, keep.history.rows, keep.history.last_step)
            if same:
                copies.append((other.path, ""))
            else:
                h = other.history
                to = f" to step {h.last_step:,}" if h.last_step is not None else ""
                copies.append((other.path, f"an older or partial copy: {h.rows:,} rows{to}, "
                                           f"{other.log_bytes:,} bytes of log; not read"))
    copies.sort()
    return kept, copies


def build_run(run_id: str, segs: list[RunPart]) -> Run:
    """Combine the segments of one run id (ordered by start time) into a Run."""
    run = Run(id=run_id)
    for seg in segs:
        ident = seg.identity
        for attr in ("name", "project", "entity", "group", "job_type", "notes", "host"):
            v = ident.get(attr)
            if isinstance(v, str) and v:
                setattr(run, attr, v)
        if ident.get("tags") or seg is segs[-1]:
            tags = ident.get("tags") or run.tags
            run.tags = [str(t) for t in tags]
        run.config.update(seg.config)
        run.summary.update(seg.summary)
        run.metrics.update(seg.metrics)
        run.environment.update(seg.environment)
        h = seg.history
        info = seg.info
        run.segments.append(Segment(
            path=seg.path, log_path=info.main_file, layout=info.layout,
            start_time=seg.start_time, log_bytes=seg.log_bytes,
            producer=seg.producer, rows=h.rows,
            first_step=h.first_step, last_step=h.last_step, source=info.source, label=info.label,
            hints=info.hints, progress=info.progress, rate=info.rate,
        ))
        run.notes_read.extend(seg.notes())
    run.start_time = sane_time(next((s.start_time for s in segs if s.start_time), None))  # 1e300: unknown
    runtimes = [s.runtime for s in segs if s.runtime is not None]
    run.runtime = sane_seconds(sum(runtimes)) if runtimes else None  # an infinite _runtime: unknown
    run.history, notes = merge_histories([s.history for s in segs])
    run.system, _ = merge_histories([s.system for s in segs])
    run.notes_read.extend(notes)
    last = segs[-1]
    run.console_tail = last.console_tail
    run.sampled = any(s.sampled for s in segs)
    run.sample_note = next((s.sample_note for s in reversed(segs) if s.sample_note), "")
    return run


def resolve(runs: list[Run], ref: str | None, escaped: bool = True) -> Run:
    """The run ``ref`` names; a name or id as an answer showed it escaped (``\\x1b``, ``\\n``)
    names the run too (``escaped``)."""
    ref = (ref or "").strip()
    if not runs:
        raise RunNotFound(ref, "no runs found", [])
    if not ref or ref.lower() == "latest":
        return max(runs, key=lambda r: (r.start_time or 0.0, r.id))
    head, sep, rest = ref.partition(":")
    if sep and rest and head.lower() in {r.source for r in runs}:  # "tensorboard:name": one format only
        return resolve([r for r in runs if r.source == head.lower()], rest)
    low = ref.lower()
    for test in (lambda r: r.id == ref, lambda r: r.id.lower() == low, lambda r: r.name.lower() == low,
                 lambda r: bool(r.group) and f"{r.group}/{r.name}".lower() == low):  # "experiment/name"
        hits = [r for r in runs if test(r)]
        if len(hits) == 1 and hits[0].id == hits[0].name and sum(r.name.lower() == low for r in runs) > 1:
            # a format whose id is its name (TensorBoard), sharing that name with another run
            hits = [r for r in runs if r.name.lower() == low or r.id == ref]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RunNotFound(ref, f"{len(hits)} runs are named {ref!r}; pass an id", hits[:8])
    # a path-named run (TensorBoard, file runs) by a suffix on path-component boundaries:
    # "version_0", "demo/version_0" for lightning/demo/version_0 (W&B names are not paths)
    tail = low.strip("/")
    suffix = [r for r in runs if r.source != "wandb" and tail and "/" in r.name
              and r.name.lower().endswith("/" + tail)]
    if len(suffix) == 1:
        return suffix[0]
    if len(suffix) > 1:
        raise RunNotFound(ref, f"{ref!r} ends {len(suffix)} run paths; pass more of the path", suffix[:8])
    hits = [r for r in runs if r.id.lower().startswith(low) or r.name.lower().startswith(low)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise RunNotFound(ref, f"{ref!r} matches {len(hits)} runs", hits[:8])
    raw = unescape(ref) if escaped else None
    if raw is not None:
        try:
            return resolve(runs, raw, escaped=False)
        except RunNotFound:
            pass
    return_close = closest(runs, ref)
    raise RunNotFound(ref, f"no run matches {ref!r}", return_close)


def closest(runs: list[Run], ref: str, n: int = 5) -> list[Run]:
    import difflib

    low = ref.lower()

    def score(r: Run) -> float:
        best = 0.0
        for s in (r.name.lower(), r.id.lower()):
            if not s:
                continue
            q = difflib.SequenceMatcher(None, low, s).ratio()
            if low in s:
                q += 0.5
            best = max(best, q)
        return best

    ranked = sorted(runs, key=lambda r: (-score(r), r.display_name))
    return [r for r in ranked[:n] if score(r) > 0.3] or ranked[: min(n, 3)]
