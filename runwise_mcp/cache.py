"""A persistent cache of decoded `.wandb` logs, so a restarted server resumes where the last one
stopped instead of decoding a multi-GB log again.

An entry holds one log's decoded state (history columns, summary, config, identity, the reader's
offset...) and is keyed by the file's identity: its real path, and a SHA-256 of its first 32 KiB
block; it also records the size and mtime it was read at. A `.wandb` log only grows, so an entry
is used when the identity matches and the file is at least as large as when it was cached; the
reader then continues from the cached offset. Anything else (a shorter file, another first block,
a corrupt, truncated or foreign cache file, another format version) is ignored, and the log is
read again. Entries are written atomically; loading accepts only the classes of our own model
(never arbitrary pickled objects).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from typing import Any

from . import __version__
from .confine import open_read

log = logging.getLogger(__name__)

MAGIC = b"RWCACHE1\n"
FORMAT = 4  # 2: key entries carry a "wanted" flag (keyed reads); 3: and a media generation; 4: a log keeps its record time
FIRST_BLOCK = 32768

_ALLOWED = {
    ("runwise_mcp.sources.wandb_log", "WandbLog"),
    ("runwise_mcp.sources.wandb_log", "Console"),
    ("runwise_mcp.sources.leveldb_log", "LogReader"),
    ("runwise_mcp.sources.leveldb_log", "Damage"),
    ("runwise_mcp.model", "History"),
    ("runwise_mcp.model", "Column"),
    ("runwise_mcp.model", "OtherKey"),
    ("runwise_mcp.model", "MetricDef"),
    ("array", "array"),
    ("array", "_array_reconstructor"),
    ("collections", "deque"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "slice"),
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a runwise cache")
        return super().find_class(module, name)


def first_block_hash(path: str) -> str:
    with open_read(path) as f:
        return hashlib.sha256(f.read(FIRST_BLOCK)).hexdigest()


class _Hashing:
    """A file wrapper that hashes what passes through it (pickle reads and writes through it)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def write(self, b: bytes) -> int:
        self.h.update(b)
        return self.f.write(b)

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.h.update(b)
        return b

    def readinto(self, buf: Any) -> int:
        n = self.f.readinto(buf)
        self.h.update(memoryview(buf)[:n])
        return n

    def readline(self, n: int = -1) -> bytes:
        b = self.f.readline(n)
        self.h.update(b)
        return b

    def peek(self, n: int = 0) -> bytes:
        return self.f.peek(n)

    def rest(self) -> bool:
        """True when bytes follow the pickle (a foreign or damaged file)."""
        return bool(self.f.read(1))

    def hexdigest(self) -> str:
        return self.h.hexdigest()


class LogCache:
    """Entries in one directory, one file per log."""

    def __init__(self, directory: str, min_bytes: int = 4 << 20) -> None:
        self.dir = directory
        self.min_bytes = min_bytes  # logs smaller than this decode faster than a cache round trip
        self.hits = 0
        self.rejected: list[str] = []  # why entries were not used (for --check and tests)

    def _entry(self, real: str) -> str:
        return os.path.join(self.dir, hashlib.sha256(real.encode("utf-8", "surrogatepass")).hexdigest()[:32] + ".rwc")

    @staticmethod
    def _head(f: Any, path: str, real: str, size: int) -> dict[str, Any]:
        """The header of an open entry file, checked against the log; raises ValueError."""
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("not a runwise cache file")
        head = json.loads(f.readline(1 << 16))
        if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("version") != __version__:
            raise ValueError(f"written by another version ({head.get('version') if isinstance(head, dict) else '?'})")
        if head.get("path") != real:
            raise ValueError("for another file")
        if not isinstance(head.get("size"), int) or size < head["size"]:
            raise ValueError("the log is shorter than when cached (rewritten)")
        if first_block_hash(path) != head.get("first_block"):
            raise ValueError("the log's first block changed (another file)")
        return head

    def has(self, path: str, size: int) -> bool:
        """Whether an entry for the log at ``path`` (size ``size`` now) looks usable (its
        header matches; the payload is checked only by ``load``)."""
        if size < self.min_bytes:
            return False
        real = os.path.realpath(path)
        try:
            with open(self._entry(real), "rb") as f:
                self._head(f, path, real, size)
            return True
        except (OSError, ValueError):
            return False

    def load(self, path: str, size: int) -> Any | None:
        """The cached state of the log at ``path`` (size ``size`` now), or None."""
        if size < self.min_bytes:
            return None
        real = os.path.realpath(path)
        entry = self._entry(real)
        try:
            f = open(entry, "rb")
        except OSError:
            return None
        try:
            with f:
                head = self._head(f, path, real, size)
                reader = _Hashing(f)
                state = _Unpickler(reader).load()  # streamed: no copy of the whole payload
                if reader.rest() or reader.hexdigest() != head.get("sha256"):
                    raise ValueError("checksum mismatch (corrupt or truncated)")
            if type(state).__name__ != "WandbLog":
                raise ValueError("unexpected content")
        except Exception as e:  # any problem: ignore the entry, decode the log again
            self.rejected.append(f"{entry}: {e}")
            log.info("cache entry for %s ignored: %s", path, e)
            return None
        state.path = path
        state.reader.path = path
        state.reader.ident = None  # checked by path, size and first block above: adopt the file's inode
        self.hits += 1
        return state

    def save(self, path: str, state: Any) -> bool:
        """Write the state of a log read up to ``state.reader.offset``; False when skipped."""
        size = state.reader.size
        if size < self.min_bytes:
            return False
        real = os.path.realpath(path)
        try:
            os.makedirs(self.dir, exist_ok=True)
            fd, body = tempfile.mkstemp(prefix=".body.", dir=self.dir)
            sink, state.row_sink = state.row_sink, None
            try:
                with os.fdopen(fd, "wb") as f:
                    w = _Hashing(f)
                    pickle.dump(state, w, protocol=pickle.HIGHEST_PROTOCOL)  # streamed to disk
            finally:
                state.row_sink = sink
            head = {"format": FORMAT, "version": __version__, "path": real, "size": size,
                    "offset": state.reader.offset, "first_block": first_block_hash(path),
                    "sha256": w.hexdigest(), "written": time.time()}
            fd, tmp = tempfile.mkstemp(prefix=".entry.", dir=self.dir)
            try:
                with os.fdopen(fd, "wb") as out, open(body, "rb") as src:
                    out.write(MAGIC + json.dumps(head).encode() + b"\n")
                    shutil.copyfileobj(src, out, 1 << 20)
                os.replace(tmp, self._entry(real))
            finally:
                for p in (body, tmp):
                    if os.path.exists(p):
                        os.unlink(p)
            return True
        except (OSError, pickle.PicklingError, RecursionError) as e:
            log.warning("could not write the cache entry for %s: %s", path, e)
            return False


class AnswerMemo:
    """Computed parts of answers (e.g. run_summary's per-key lines and anomaly check), keyed by a
    digest of everything they depend on, in memory and, with a cache directory, on disk: so a
    restarted server does not recompute statistics over millions of points. Values are JSON."""

    def __init__(self, directory: str | None, limit: int = 256) -> None:
        self.dir = os.path.join(directory, "memo") if directory else None
        self.mem: dict[str, Any] = {}
        self.limit = limit

    @staticmethod
    def key_for(run_id: str, parts: Any) -> str:
        """'<run id as a file name>.<digest of parts>'."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_id)[:80] or "run"
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:40]
        return f"{safe}.{digest}"

    KEEP_PER_RUN = 4  # entries kept on disk per run: a live run's older versions are dropped

    def get(self, key: str) -> Any | None:
        """``key``: "<run id>.<digest>" (see ``key_for``)."""
        if key in self.mem:
            return self.mem[key]
        if self.dir is None:
            return None
        try:
            with open(os.path.join(self.dir, key + ".json"), encoding="utf-8") as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        self._remember(key, value)
        return value

    def put(self, key: str, value: Any) -> None:
        self._remember(key, value)
        if self.dir is None:
            return
        try:
            os.makedirs(self.dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".memo.", dir=self.dir)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(value, f)
            os.replace(tmp, os.path.join(self.dir, key + ".json"))
            run = key.rsplit(".", 1)[0] + "."
            mine = [e for e in os.scandir(self.dir) if e.name.startswith(run) and e.name.endswith(".json")]
            mine.sort(key=lambda e: e.stat().st_mtime_ns, reverse=True)
            for old in mine[self.KEEP_PER_RUN:]:
                os.unlink(old.path)
        except (OSError, TypeError, ValueError) as e:
            log.warning("could not write an answer memo: %s", e)

    def _remember(self, key: str, value: Any) -> None:
        if len(self.mem) >= self.limit:
            self.mem.pop(next(iter(self.mem)))
        self.mem[key] = value
