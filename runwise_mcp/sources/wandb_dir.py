"""One wandb run directory of any generation, read incrementally.

* 0.10+ (``run-*``, ``offline-run-*``): ``run-<id>.wandb`` is authoritative; ``files/``
  (``wandb-summary.json``, ``config.yaml``, ``wandb-metadata.json``, ``output.log``) only fills
  in what the log does not hold.
* pre-0.10 (``dryrun-*`` and old online ``run-*`` without a ``.wandb``): everything is in the
  run directory itself: ``wandb-history.jsonl``, ``wandb-events.jsonl``, ``config.yaml``,
  ``wandb-summary.json``, ``wandb-metadata.json``, ``output.log``.
* the same files in ``files/`` (layout "jsonl": ``run-*/files/wandb-history.jsonl`` with the
  summary, config and metadata beside it and no ``.wandb``), as run directories copied from
  W&B's files or exported by tools keep them.

Each file is re-read only when its (size, mtime) changes; the log and the jsonl files are read
from where the previous read stopped.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import yaml

from ..config import BYTES_PER_POINT
from ..confine import Refused, open_read, stat_file
from ..model import KILLED, RUNNING, History, RunState, judge_state
from . import wandb_log
from .base import Claim, ReadContext, RunPart, SegmentInfo, Source
from .console import ConsoleFile
from .jsonl import JsonlReader, Rewritten
from .leveldb_log import Replaced
from .safeyaml import YamlRefused, safe_load
from .wandb_log import WandbLog, flatten, max_time, skim

RUN_DIR_PREFIXES = ("run-", "offline-run-", "dryrun-")
FILES_HISTORY = os.path.join("files", "wandb-history.jsonl")  # the "jsonl" layout's history
# the files answers name for a run without a .wandb log: (history, config), by layout
_JSONL_FILES = {"dryrun": ("wandb-history.jsonl", "config.yaml"),
                "jsonl": ("files/wandb-history.jsonl", "files/config.yaml")}
_DRYRUN_ID = re.compile(r"^(?:dryrun|run|offline-run)-\d{8}_\d{6}-(.+)$")
MAX_KEYED_NAMES = 32  # a keyed read widened beyond this many keys is started afresh with the new ones
MAX_SIDE_FILE = 32 << 20  # json/yaml side files larger than this are not loaded
CONSOLE_TAIL_BYTES = 64 << 10


def looks_like_run_dir(name: str) -> bool:
    return name.startswith(RUN_DIR_PREFIXES)


def find_logs(path: str) -> list[str]:
    """`run-<id>.wandb` files directly in a run directory."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted(os.path.join(path, n) for n in names
                  if n.startswith("run-") and n.endswith(".wandb") and _stat_key(os.path.join(path, n)))


def is_run_dir(path: str) -> bool:
    """A directory that holds a `.wandb` log, or the pre-0.10 jsonl layout."""
    name = os.path.basename(path.rstrip(os.sep))
    if not looks_like_run_dir(name):
        return False
    if find_logs(path):
        return True
    return any(os.path.isfile(os.path.join(path, f))
               for f in ("wandb-history.jsonl", "wandb-metadata.json", os.path.join("files", "output.log"),
                         FILES_HISTORY))


def _stat_key(path: str) -> tuple[int, int] | None:
    """(size, mtime) of a regular file under the active roots; None if missing, refused or not
    a regular file (a FIFO or a device would block or never end)."""
    try:
        st = stat_file(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def parse_time(text: Any) -> float | None:
    """RFC 3339 / ISO time (as in wandb-metadata.json) -> epoch seconds. Naive = UTC."""
    if not isinstance(text, str) or not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(.*)$", t)
        if not m:
            return None
        frac = (m.group(2) or "")[:7]
        try:
            dt = datetime.fromisoformat(m.group(1) + frac + m.group(3))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def unwrap_config_yaml(data: Any) -> dict[str, Any]:
    """config.yaml -> plain config: unwrap ``value:``, drop ``desc``, ``_wandb``, ``wandb_version``."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict):
        return out
    for k, v in data.items():
        k = str(k)
        if k in ("wandb_version", "_wandb"):
            continue
        if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"}:
            v = v["value"]
        out[k] = v
    return out


class SideFile:
    """A small json/yaml/text file re-read only when it changes."""

    def __init__(self, path: str, kind: str, stat_key=_stat_key) -> None:
        self.path = path
        self.stat_key = stat_key
        self.kind = kind  # "json" | "yaml" | "tail"
        self.key: tuple[int, int] | None = None
        self.value: Any = None
        self.error = ""

    def refresh(self) -> bool:
        key = self.stat_key(self.path)
        if key == self.key:
            return False
        self.key = key
        self.value, self.error = None, ""
        if key is None:
            return True
        try:
            if self.kind == "tail":
                with open_read(self.path) as f:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(max(0, size - CONSOLE_TAIL_BYTES))
                    data = f.read(CONSOLE_TAIL_BYTES)
                text = data.decode("utf-8", "replace")
                lines = text.split("\n")
                if size > CONSOLE_TAIL_BYTES:
                    lines = lines[1:]  # first line is probably cut
                self.value = [ln.rsplit("\r", 1)[-1] for ln in lines]
                if self.value and self.value[-1] == "":
                    self.value.pop()
                return True
            if key[0] > MAX_SIDE_FILE:
                self.error = f"{os.path.basename(self.path)} is {key[0] >> 20} MiB; not loaded"
                return True
            with open_read(self.path) as f:
                data = f.read()
            if self.kind == "json":
                self.value = json.loads(data)
            else:
                self.value = safe_load(data)  # alias expansion bounded
        except YamlRefused as e:
            self.error = f"{os.path.basename(self.path)} not loaded: {e}"
            self.value = None
        except (OSError, ValueError, yaml.YAMLError, RecursionError) as e:
            self.error = f"{os.path.basename(self.path)} unreadable: {type(e).__name__}"
            self.value = None
        return True

    @property
    def mtime(self) -> float | None:
        return self.key[1] / 1e9 if self.key else None


def _fold_history_row(h: History, row: dict[str, Any]) -> None:
    step = row.get("_step")
    if not isinstance(step, (int, float)) or isinstance(step, bool) or step != step:
        step = h.steps[-1] + 1 if h.rows else 0
    items: list[tuple[str, Any]] = []
    for k, v in row.items():
        if k != "_step":
            flatten(str(k), v, items)
    h.add_row(int(step), items)


def _fold_events_row(h: History, row: dict[str, Any]) -> None:
    ts = row.get("_timestamp")
    items: list[tuple[str, Any]] = []
    for k, v in row.items():
        if k in ("_wandb", "_timestamp", "_runtime"):
            continue
        flatten(str(k).removeprefix("system."), v, items)
    if isinstance(ts, (int, float)):
        h.add_row(int(ts), items)


class JsonlHistory:
    """A pre-0.10 jsonl file folded into a History, read on from where it stopped as it grows."""

    def __init__(self, path: str, fold, stat_key=_stat_key) -> None:
        self.path = path
        self.fold = fold
        self.stat_key = stat_key
        self.reset()

    def reset(self) -> None:
        self.reader = JsonlReader(self.path)
        self.history = History()
        self.key: tuple[int, int] | None = None

    def refresh(self) -> bool:
        key = self.stat_key(self.path)
        if key == self.key:
            return False
        if key is not None:
            try:
                try:
                    self.reader.read(lambda row: self.fold(self.history, row))
                except Rewritten:  # not the file read so far: start over
                    self.reset()
                    self.reader.read(lambda row: self.fold(self.history, row))
            except OSError:
                pass
        self.key = key
        return True

    @property
    def mtime(self) -> float | None:
        return self.key[1] / 1e9 if self.key else None


class RunDir(RunPart):
    """A run directory and everything we keep from it."""

    source = "wandb"

    def __init__(self, path: str, cache: Any = None, read_workers: int = 1,
                 parallel_min_bytes: int = wandb_log.PARALLEL_MIN_BYTES) -> None:
        """Files are opened under the roots the index makes active (``confine.using``); a file
        that is refused is treated as absent and reported. ``cache``: a LogCache for the decoded
        state of large logs (None: no persistent cache). ``read_workers``: processes a first read
        of a log of ``parallel_min_bytes`` and more may use."""
        self.read_workers, self.parallel_min_bytes = read_workers, parallel_min_bytes
        self.path = path
        self.cache = cache
        self._saved_offset = 0  # the log offset of the last cache entry written or loaded
        self.refused: dict[str, str] = {}  # files not read, and why (outside the roots, not a regular file)
        logs = find_logs(path)
        # One directory holds one log; if a copy left two, read the biggest.
        self.log_path = max(logs, key=lambda p: _stat_key(p) or (0, 0)) if logs else None
        self.skip_reason = ""
        if not logs:
            try:
                named = [n for n in os.listdir(path) if n.startswith("run-") and n.endswith(".wandb")]
            except OSError:
                named = []
            for n in sorted(named):
                try:
                    stat_file(os.path.join(path, n))
                except Refused as e:
                    self.skip_reason = f"{n} {e.why.removeprefix('it ')}"
                except OSError:
                    pass
        top = any(os.path.isfile(os.path.join(path, f)) for f in ("wandb-history.jsonl", "wandb-metadata.json"))
        if self.log_path:
            self.layout = "wandb"
        elif not top and os.path.isfile(os.path.join(path, FILES_HISTORY)):
            self.layout = "jsonl"  # run-*/files/wandb-history.jsonl with summary, config, metadata beside it
        elif not top and os.path.isfile(os.path.join(path, "files", "output.log")):
            self.layout = "console"  # only files/ survived (the .wandb was deleted or never written)
        else:
            self.layout = "dryrun"
        base = path if self.layout == "dryrun" else os.path.join(path, "files")
        self.files_dir = base
        self._full: WandbLog | None = WandbLog(self.log_path) if self.log_path else None  # read in full
        self._skim: WandbLog | None = None  # a sampled read, for logs not (yet) read in full
        self._keyed: WandbLog | None = None  # a keyed read (some history keys only) of such a log
        self._view: WandbLog | None = None  # set only in a keyed view (see keyed_view)
        self._keyed_at: tuple[int, int] | None = None  # the log's (size, mtime) at the last keyed read
        self._points: tuple[tuple, int] = ((), 0)  # (what was counted, points held)
        self.full = False  # the whole log has been read (and is followed incrementally)
        self.evicted = False  # dropped for memory: skim it until a tool asks for it in full
        self.log_key: tuple[int, int] | None = None
        self._log_ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the log when last looked at
        self.log_error = ""
        self.summary_file = SideFile(os.path.join(base, "wandb-summary.json"), "json", self._stat)
        self.config_file = SideFile(os.path.join(base, "config.yaml"), "yaml", self._stat)
        self.meta_file = SideFile(os.path.join(base, "wandb-metadata.json"), "json", self._stat)
        self.output_file = SideFile(os.path.join(base, "output.log"), "tail", self._stat)
        self.jsonl: list[JsonlHistory] = []  # pre-0.10: [history, system events]
        if self.layout in ("dryrun", "jsonl"):
            self.jsonl = [JsonlHistory(os.path.join(base, "wandb-history.jsonl"), _fold_history_row, self._stat),
                          JsonlHistory(os.path.join(base, "wandb-events.jsonl"), _fold_events_row, self._stat)]
        self.version = 0  # bumped whenever anything we hold changed
        self._console: ConsoleFile | None = None

    # ---- refresh ------------------------------------------------------------------------------

    def _fstat(self, path: str) -> os.stat_result | None:
        try:
            st = stat_file(path)
        except Refused as e:
            self.refused[os.path.relpath(path, self.path)] = e.why
            return None
        except OSError:
            return None
        self.refused.pop(os.path.relpath(path, self.path), None)
        return st

    def _stat(self, path: str) -> tuple[int, int] | None:
        st = self._fstat(path)
        return (st.st_size, st.st_mtime_ns) if st is not None else None

    def _update_log(self, log: WandbLog, progress: Callable[[int, int], None] | None = None,
                    keys: frozenset[str] | None = None) -> WandbLog:
        """``log`` read on from its offset; when the file at its path is no longer the one it
        read (replaced, or recreated smaller or with other first bytes), a new log read from
        the start instead, so two files' records never mix."""
        for _ in range(3):
            try:
                log.update(progress, self.read_workers, self.parallel_min_bytes)
                return log
            except Replaced:
                log = WandbLog(log.path, keys=keys)
        raise Replaced(f"{os.path.basename(log.path)} was replaced again while it was read")

    @property
    def log(self) -> WandbLog | None:
        """The log as far as it has been read: in full, else the skim (None without a log)."""
        if self._full is None:
            return None
        if self._view is not None:
            return self._view
        return self._full if self.full or self._skim is None else self._skim

    @property
    def _tail_log(self) -> WandbLog | None:
        """The log whose summary and last `_runtime` are exact: in a keyed view (whose log
        skips summary updates and other keys), the skim, which holds the log's last rows."""
        return self._skim if self._view is not None and self._skim is not None else self.log

    @property
    def sample_note(self) -> str:
        """Said in run lists when the skim's sampled parts hold no (last) rows."""
        return self._skim.skim_note if self.sampled and self._skim is not None else ""

    @property
    def sampled(self) -> bool:
        """True while only a skim of the log has been read (a keyed view is not sampled: its
        history holds its keys completely)."""
        return self._full is not None and not self.full and self._view is None

    def refresh(self, full: bool = False, skim_above: int = 0,
                progress: Callable[[int, int], None] | None = None) -> bool:
        """Re-read what changed on disk. Returns True if anything changed.

        A log larger than ``skim_above`` bytes (0: never) is only skimmed unless ``full`` is
        asked for; once read in full it is followed incrementally until ``evict()``.
        """
        changed = False
        if self._full is not None:
            path = self._full.path
            st = self._fstat(path)
            key = (st.st_size, st.st_mtime_ns) if st is not None else None
            ident = (st.st_dev, st.st_ino) if st is not None else None
            if ident is not None and self._log_ident is not None and ident != self._log_ident:
                # another file at the same path (even of the same size and mtime): read it again
                self.log_key = None
                self._skim = self._keyed = self._keyed_at = None
            if ident is not None:
                self._log_ident = ident
            if key is None:
                if self.log_key is not None or not self.log_error:
                    self.log_error = "the .wandb file disappeared"
                    self.log_key = None
                    changed = True
            elif self.full or full or not skim_above or (key[0] <= skim_above and not self.evicted):
                if key != self.log_key or not self.full:
                    if self.full and self.log_key is not None and key[0] < self.log_key[0]:
                        self._full = WandbLog(path)  # shrank: rewritten, start over
                        self._saved_offset = 0
                    if self.cache is not None and self._full.reader.offset == 0:
                        cached = self.cache.load(path, key[0])
                        if cached is not None:
                            self._full = cached
                            self._saved_offset = cached.reader.offset
                    try:
                        read = self._update_log(self._full, progress)
                        if read is not self._full:  # replaced: what the cache holds is of the other file
                            self._full, self._saved_offset = read, 0
                        self.log_error = ""
                    except OSError as e:
                        self.log_error = f"cannot read {os.path.basename(path)}: {e.strerror or e}"
                    if self.cache is not None and not self.log_error:
                        grown = self._full.reader.offset - self._saved_offset
                        if grown > 0 and grown >= max(self.cache.min_bytes, self._saved_offset // 4):
                            if self.cache.save(path, self._full):
                                self._saved_offset = self._full.reader.offset
                    self.full, self._skim, self._keyed, self.evicted = True, None, None, False
                    self.log_key = key
                    changed = True
            elif key != self.log_key:
                try:
                    self._skim = skim(path)
                    self.log_error = ""
                except OSError as e:
                    self.log_error = f"cannot read {os.path.basename(path)}: {e.strerror or e}"
                self.log_key = key
                changed = True
        for side in (self.summary_file, self.config_file, self.meta_file, self.output_file):
            changed |= side.refresh()
        for j in self.jsonl:
            changed |= j.refresh()
        if changed:
            self.version += 1
        return changed

    def decode_detached(self, progress: Callable[[int, int], None] | None = None) -> tuple[WandbLog, tuple] | None:
        """Decode the whole log into a new WandbLog without touching this object's state (for a
        background thread); ``install_full`` puts the result in place. None without a log."""
        if self._full is None:
            return None
        path = self._full.path
        key = self._stat(path)
        if key is None:
            return None
        log = None
        if self.cache is not None:
            log = self.cache.load(path, key[0])
        log = log or WandbLog(path)
        saved = log.reader.offset
        read = self._update_log(log, progress)  # (a large log's first read: in parallel processes)
        if read is not log:  # another file at the path: decoded from the start
            log, saved = read, 0
        log._summary_cache = None
        if self.cache is not None and log.reader.offset - saved >= self.cache.min_bytes:
            self.cache.save(path, log)
            saved = log.reader.offset
        return log, (key, saved)

    def read_keys(self, names: frozenset[str], progress: Callable[[int, int], None] | None = None) -> bool:
        """Make the history of ``names`` complete without decoding the other keys: a keyed read
        of the log, kept and followed incrementally (a later call for other keys reads again
        for all of them, up to MAX_KEYED_NAMES). When the persistent cache holds the whole log,
        it is loaded instead. Returns True when the log is now read in full."""
        if self._full is None or self.full:
            return self.full
        path = self._full.path
        key = self._stat(path)
        if key is None:
            return False
        if self.cache is not None and self.cache.has(path, key[0]):
            self.refresh(full=True, progress=progress)
            return self.full
        k = self._keyed
        if k is not None and (key[0] < k.reader.size or not names <= k.only):
            if key[0] >= k.reader.size and len(names | k.only) <= MAX_KEYED_NAMES:
                names = names | (k.only - {"_step"})
            k = None  # rewritten, or other keys: read again
        if k is None:
            k = self._keyed = WandbLog(path, keys=frozenset(names))
        elif key == self._keyed_at:
            return False  # nothing written since the last read
        try:
            k = self._keyed = self._update_log(k, progress, keys=k.only - {"_step"})
            self._keyed_at = key
        except OSError as e:
            self.log_error = f"cannot read {os.path.basename(path)}: {e.strerror or e}"
        return False

    def keyed_plan(self, names: frozenset[str]) -> tuple | None:
        """What ``read_keys(names)`` would decode from the start, for the index to decode it
        outside its lock (``decode_keyed``, then ``install_keyed``): ``("full",)`` when the
        persistent cache holds the whole log, ``("keys", names, path)`` for a new keyed read,
        None when there is nothing to decode from the start (read in full, or a keyed read
        that only has to follow the log's growth). Called under the index lock."""
        if self._full is None or self.full:
            return None
        path = self._full.path
        key = self._stat(path)
        if key is None:
            return None
        if self.cache is not None and self.cache.has(path, key[0]):
            return ("full",)
        k = self._keyed
        if k is not None and key[0] >= k.reader.size and names <= k.only:
            return None  # the same keys: read_keys follows what was appended
        if k is not None and key[0] >= k.reader.size and len(names | k.only) <= MAX_KEYED_NAMES:
            names = names | (k.only - {"_step"})
        return ("keys", frozenset(names), path)

    def decode_keyed(self, plan: tuple, progress: Callable[[int, int], None] | None = None) -> tuple | None:
        """A keyed read of ``plan`` (from ``keyed_plan``) into a new WandbLog, touching nothing
        of this object (for a decode outside the index lock)."""
        _, names, path = plan
        key = self._stat(path)  # before reading: a later read_keys reads on if it grew meanwhile
        if key is None:
            return None
        return self._update_log(WandbLog(path, keys=names), progress, keys=names), key

    def install_keyed(self, decoded: tuple) -> None:
        """Use a keyed read made by ``decode_keyed`` (under the index lock); the next
        ``read_keys`` reads on from its offset. Kept out when a read in full, or a keyed read of
        at least its keys and as far, arrived meanwhile."""
        log, key = decoded
        if self.full or self._full is None or log.path != self._full.path:
            return
        k = self._keyed
        if k is not None and log.only <= k.only and k.reader.offset >= log.reader.offset:
            return
        self._keyed, self._keyed_at = log, key

    def drop_keyed(self) -> None:
        """Forget the keyed read (e.g. after it failed)."""
        self._keyed = self._keyed_at = None

    @property
    def keyed_names(self) -> frozenset[str]:
        """The history keys the keyed read decodes (empty without one)."""
        return self._keyed.only - {"_step"} if self._keyed is not None else frozenset()

    @property
    def keyed_state(self) -> tuple:
        """What a keyed view holds now (changes when the keyed read reads more or is replaced)."""
        k = self._keyed
        return (self.path, self.version, id(k), k.reader.offset if k is not None else -1)

    def keyed_view(self) -> RunDir:
        """This directory as a keyed read sees it: history, config, identity, exit and console
        from the keyed read; summary and last runtime from the skim. Only after ``read_keys``."""
        v = copy.copy(self)
        v._view = self._keyed
        return v

    def install_full(self, decoded: tuple[WandbLog, tuple]) -> None:
        """Use a log decoded by ``decode_detached``; the next refresh reads on from its offset."""
        log, (key, saved) = decoded
        if self.full:
            return  # a tool read it meanwhile
        self._full = log
        self._saved_offset = saved
        self.full, self._skim, self._keyed, self.evicted = True, None, None, False
        self.log_key = None  # re-stat on the next refresh: the file may have grown meanwhile
        self.version += 1

    def evict(self) -> None:
        """Forget the fully read log and any keyed read (to free memory); the next refresh skims
        or re-reads it."""
        self._keyed = None
        if self._full is not None and self.full:
            self._full = WandbLog(self._full.path)
            self.full = False
            self.evicted = True
            self._skim = None
            self.log_key = None
            self.version += 1

    @property
    def in_memory(self) -> bool:
        """Whether history decoded in full or by a keyed read is held (for the memory budget)."""
        return self.full or self._keyed is not None

    @property
    def points(self) -> int:
        """Values held in memory for this directory's history (for the cache budget); counted
        again only when what is held changed (the budget sums it over every directory)."""
        log = self._full if self.full else self._keyed
        hs = [log.history, log.system] if log is not None else [j.history for j in self.jsonl]
        key = (id(log), log.reader.offset if log is not None else self.version, hs[0].rows)
        if self._points[0] != key:
            points = sum(len(c) for h in hs for c in h.columns.values()) + sum(h.rows for h in hs)
            if log is not None:  # every other kept structure too: keys, summary, values, console
                points += log.held_bytes() // BYTES_PER_POINT
            self._points = (key, points)
        return self._points[1]

    def notes(self) -> list[str]:
        """What the log holds beyond the per-run caps (keys, summary, console streams)."""
        log = self.log
        return log.cap_notes() if log is not None else []

    # ---- the segment's view ---------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        v = self.meta_file.value
        return v if isinstance(v, dict) else {}

    @property
    def run_id(self) -> str:
        if self.log is not None:
            if self.log.run_id:
                return self.log.run_id
            name = os.path.basename(self.log.path)
            return name[len("run-") : -len(".wandb")]
        m = _DRYRUN_ID.match(os.path.basename(self.path.rstrip(os.sep)))
        # pre-0.10 directories hold no id anywhere else
        return m.group(1) if m else os.path.basename(self.path.rstrip(os.sep))

    @property
    def identity(self) -> dict[str, Any]:
        meta = self.meta
        ident: dict[str, Any] = {
            "name": meta.get("name") or meta.get("display_name") or "",
            "notes": meta.get("notes") or "",
            "job_type": meta.get("jobType") or meta.get("job_type") or "",
            "project": meta.get("project") or "",
            "host": meta.get("host") or "",
            "tags": [],
            "group": meta.get("group") or "",
        }
        ident = {k: (v if isinstance(v, (str, list)) else str(v)) for k, v in ident.items()}
        if self.log is not None:
            for k, v in self.log.identity.items():
                if v not in ("", None, []) or k == "tags":
                    ident[k] = v
        return ident

    @property
    def start_time(self) -> float | None:
        if self.log is not None and self.log.start_time:
            return self.log.start_time
        t = parse_time(self.meta.get("startedAt"))
        if t is not None:
            return t
        if self.jsonl and self.jsonl[0].history.rows:
            col = self.jsonl[0].history.columns.get("_timestamp")
            rt = self.jsonl[0].history.columns.get("_runtime")
            if col is not None and len(col):
                return col.values[0] - (rt.values[0] if rt is not None and len(rt) else 0.0)
        return None

    @property
    def history(self) -> History:
        if self.log is not None:
            return self.log.history
        return self.jsonl[0].history if self.jsonl else History()

    @property
    def system(self) -> History:
        if self.log is not None:
            return self.log.system
        return self.jsonl[1].history if self.jsonl else History()

    @property
    def config(self) -> dict[str, Any]:
        cfg = unwrap_config_yaml(self.config_file.value)
        if self.log is not None:
            cfg.update({k: v for k, v in self.log.config.items() if k != "_wandb"})
        return cfg

    @property
    def summary(self) -> dict[str, Any]:
        """Log summary, filled in from wandb-summary.json where the log lacks a key."""
        out: dict[str, Any] = {}
        file = self.summary_file.value
        if isinstance(file, dict):
            flat: list[tuple[str, Any]] = []
            aggregates = (self._tail_log.aggregate_names([k for k, v in file.items() if isinstance(v, dict)])
                          if self.log is not None else set())
            for k, v in file.items():
                if k in aggregates and isinstance(v, dict):
                    flat.append((k, v))
                else:
                    flatten(str(k), v, flat)
            out.update(flat)
        if self.log is not None:
            out.update(self._tail_log.summary())
        return {k: v for k, v in out.items() if not k.startswith("_wandb")}

    @property
    def last_write(self) -> float | None:
        times = []
        if self.log_key:
            times.append(self.log_key[1] / 1e9)
        for t in [self.output_file.mtime] + [j.mtime for j in self.jsonl]:
            if t:
                times.append(t)
        return max(times) if times else None

    @property
    def runtime(self) -> float | None:
        log = self._tail_log
        if log is not None:
            if log.exit_runtime:
                return max(log.exit_runtime, log.last_runtime or 0.0)
            return log.last_runtime
        col = self.history.columns.get("_runtime")
        if col is not None and len(col):
            return col.values[-1]
        return None

    def console(self, patterns: list | None = None, tail_only: int = 0) -> ConsoleFile | None:
        """``output.log`` parsed for metrics, read on from where the last call stopped (None when
        the directory has no output.log). ``tail_only``: a first read parses only that many
        trailing bytes."""
        path = self.output_file.path
        key = self._stat(path)
        if key is None:
            self._console = None
            return None
        if self._console is None or (self._console.start_offset and not tail_only):
            self._console = ConsoleFile(path, patterns)
        try:
            self._console.update(key, tail_only=tail_only)
        except OSError:
            return None
        return self._console

    @property
    def log_console_lines(self) -> list[str]:
        """Console lines kept in the .wandb log (its output records), for runs without output.log."""
        return self.log.console.tail() if self.log is not None else []

    @property
    def console_tail(self) -> list[str]:
        if isinstance(self.output_file.value, list):
            return self.output_file.value
        if self.log is not None:
            return self.log.console.tail()
        return []

    @property
    def info(self) -> SegmentInfo:
        files = _JSONL_FILES.get(self.layout)  # without a .wandb log: where history and config are
        if files is None:
            return SegmentInfo("wandb", self.layout, self.log.path if self.log is not None else None)
        return SegmentInfo("wandb", self.layout, None, label=files[0], hints={"config_from": files[1]})

    @property
    def config_errors(self) -> list[str]:
        return [self.config_file.error] if self.config_file.error else []

    @property
    def metrics(self) -> dict[str, Any]:
        return self.log.metrics if self.log is not None else {}

    @property
    def environment(self) -> dict[str, Any]:
        return self.log.environment if self.log is not None else {}

    @property
    def log_bytes(self) -> int:
        return self.log_key[0] if self.log_key else 0

    @property
    def group_key(self) -> str:
        return self.run_id  # resumed segments share the wandb run id

    @property
    def producer(self) -> str:
        if self.log is not None:
            v = self.log.version
            return f"wandb {v}" if v else "wandb"
        v = ""
        cfg = self.config_file.value
        if isinstance(cfg, dict):
            w = cfg.get("_wandb")
            if isinstance(w, dict):
                w = w.get("value", w)
                if isinstance(w, dict):
                    v = str(w.get("cli_version") or "")
        if v:
            return f"wandb {v}"
        if self.layout == "console":  # no log, no jsonl: nothing says which wandb wrote it
            return "wandb (version unknown: only files/output.log)"
        if self.layout == "jsonl":  # wandb's own files, from any version
            return "wandb (version unknown: files/wandb-history.jsonl)"
        return "wandb <0.10"

    @property
    def last_event(self) -> float | None:
        """The newest time written inside the run's records: the last rows' ``_timestamp``,
        system-stats and console record times (None when they hold none)."""
        if self.log is not None:
            times = [log.last_event for log in {id(x): x for x in (self.log, self._tail_log)}.values()]
        else:
            times = [max_time(None, j.history.columns.get("_timestamp")) for j in self.jsonl]
        times = [t for t in times if t is not None]
        return max(times) if times else None

    def _clocked(self, st: RunState, now: float, stale_after: float) -> RunState:
        """``st`` (judged from file times) judged again from the log's own clock: a copied or
        checked-out run gets fresh file times, but the times inside its records stay those of
        the training machine. A record time after the newest file write (another machine's
        clock ahead, or a hostile value) counts as that write."""
        if st.state not in (RUNNING, KILLED):
            return st
        event = self.last_event
        if event is None:
            return st
        last = min(event, st.last_write) if st.last_write else event
        return RunState(RUNNING if now - last <= stale_after else KILLED, st.basis, None, last,
                        certain=False, clock="log record")

    def state(self, now: float, stale_after: float) -> RunState:
        if self.log is not None:
            log = self.log
            empty = log.reader.header_ok is None or (log.reader.header_ok and log.records == 0)
            return self._clocked(judge_state(log.has_exit, log.exit_code, self.last_write, now, stale_after,
                                             empty=bool(empty), source="no exit record"), now, stale_after)
        meta = self.meta
        code = meta.get("exitcode")
        if isinstance(code, int) and not isinstance(code, bool):
            st = judge_state(True, code, self.last_write, now, stale_after)
            st.basis += " (wandb-metadata.json)"
            return st
        why = ("only files/output.log, no .wandb log or wandb-metadata.json with an exit code"
               if self.layout == "console" and not self.meta_file.key else "no exit code in wandb-metadata.json")
        return self._clocked(judge_state(False, None, self.last_write, now, stale_after, source=why),
                             now, stale_after)

    def problems(self) -> list[str]:
        """What could not be read here, for reports."""
        out: list[str] = [f"{name} not read: {why}" for name, why in sorted(self.refused.items())]
        if self.log_error:
            out.append(self.log_error)
        if self.log is not None:
            r = self.log.reader
            name = os.path.basename(self.log.path)
            if r.header_ok is False:
                out.append(f"{name} does not start with the wandb header; not a .wandb log")
            if r.damage.any:
                out.append(f"{name}: {r.damage.describe()}")
            if self.log.bad_records:
                out.append(f"{name}: {self.log.bad_records} record(s) did not decode")
            out.extend(f"{name}: {note}" for note in self.log.value_notes())
        for side in (self.summary_file, self.config_file, self.meta_file):
            if side.error:
                out.append(side.error)
        for j in self.jsonl:
            if j.reader.bad_lines:
                out.append(f"{os.path.basename(j.path)}: {j.reader.bad_lines} line(s) not JSON objects, skipped")
            if j.reader.bad_rows:
                out.append(f"{os.path.basename(j.path)}: {j.reader.bad_rows} row(s) with a step or time past 64 bits, skipped")
        return out


class WandbSource(Source):
    """W&B run directories: ``run-*``, ``offline-run-*``, ``dryrun-*`` holding a ``.wandb`` log,
    the pre-0.10 jsonl files, or only ``files/output.log``. The walk does not go below them."""

    name = "wandb"
    describe = ("W&B run-*, offline-run-* and dryrun-* directories (in wandb/ or .wandb/ folders) holding a "
                "run-<id>.wandb log or wandb-history.jsonl (or files/wandb-history.jsonl)")

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Any) -> Claim | None:
        if not looks_like_run_dir(os.path.basename(path.rstrip(os.sep))):
            return None
        if any(n.startswith("run-") and n.endswith(".wandb") for n in files) or \
                "wandb-history.jsonl" in files or "wandb-metadata.json" in files or \
                ("files" in subdirs and any(os.path.isfile(os.path.join(path, "files", f))
                                            for f in ("output.log", "wandb-history.jsonl"))):
            return Claim(run=True, descend=False)
        return None

    def name_hint(self, name: str) -> bool:
        """A directory name worth listing even below the scan depth."""
        return looks_like_run_dir(name)

    def open(self, path: str, ctx: ReadContext) -> RunDir:
        return RunDir(path, cache=ctx.cache, read_workers=ctx.read_workers, parallel_min_bytes=ctx.parallel_min_bytes)
