"""MLflow's SQLite store (``mlflow.db``), read directly as an :class:`MlflowStore` with the
standard library's ``sqlite3``, never through SQLAlchemy or mlflow.

Detection is by shape: an SQLite file (``SQLite format 3\\0`` header) holding the tables
``alembic_version``, ``runs``, ``metrics`` and ``experiments`` (OTHER_FORMATS.md §2.3).

**Read-only, never in a training process's way.** Each read opens its own connection through a
URI and closes it at once:

* rollback-journal databases (MLflow's default, ``journal_mode=delete``): ``mode=ro``. A reader
  never creates a ``-journal`` and takes only SHARED locks, for the length of one query;
* WAL databases whose ``-wal`` and ``-shm`` files exist (a writer is live, or was): ``mode=ro``,
  which reads the committed frames of the WAL through the existing ``-shm``. WAL readers never
  block a writer;
* WAL databases without a ``-wal`` file (every writer closed; everything is in the main file):
  ``mode=ro`` would *create* ``-wal`` and ``-shm`` next to it, so these are opened with
  ``immutable=1`` (no locks, no side files). A writer that starts meanwhile writes to a new
  ``-wal`` and changes the main file only at a checkpoint, so the read is checked afterwards:
  if a ``-wal`` appeared or the main file's (size, mtime) changed during it, the read is done
  again the ``mode=ro`` way (the ``-wal``/``-shm`` then exist).

**Confinement.** The database is first opened through ``confine`` (no final symlink followed
unless it resolves inside the roots, a regular file, its real location inside the roots); SQLite
is then given that *resolved* real path, and after it has opened the file the connection is
checked to hold that very inode open: some file descriptor of this process opened by the
connection must have the (device, inode) of the confined descriptor (``/proc/self/fd``, Linux),
or else the path is stat-ed again and compared (elsewhere). A path swapped for a symlink between
the check and SQLite's open is caught by this and refused. Connecting through
``/proc/self/fd/N`` instead is not used: SQLite derives the ``-wal``/``-shm``/``-journal`` names
from the path it was given, so a WAL database's recent frames (and a hot journal) would be
missed.

NaN is stored as ``value=0, is_nan=1``; MLflow stores ±inf as ±1.7976931348623157e308 (the
largest double) and so do we report it: :data:`CLAMPED` marks such values (``clamped_inf``).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from .. import confine
from .mlflow_records import MlflowExperiment, MlflowMetricPoint, MlflowRunRecord, MlflowStoreError

HEADER = b"SQLite format 3\x00"
NEEDED = frozenset({"alembic_version", "runs", "metrics", "experiments"})
CLAMPED = 1.7976931348623157e308  # MLflow's stand-in for +-inf in SQL stores
_PROC_FD = "/proc/self/fd"
_FD_LOCK = threading.Lock()  # one connect-and-verify at a time (the fd scan compares before/after)


def clamped_inf(v: float) -> bool:
    return v == CLAMPED or v == -CLAMPED


def is_sqlite(head: bytes) -> bool:
    return head.startswith(HEADER)


def _fds() -> dict[str, tuple[int, int]]:
    """This process's open descriptors: number -> (device, inode) of what each has open."""
    out: dict[str, tuple[int, int]] = {}
    try:
        names = os.listdir(_PROC_FD)
    except OSError:
        return out
    for n in names:
        try:
            st = os.stat(f"{_PROC_FD}/{n}")
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[n] = (st.st_dev, st.st_ino)
    return out


class SqliteStore:
    """One ``mlflow.db`` as an MlflowStore."""

    kind = "SQLite store"

    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self.label = label
        self.mode = ""  # how the last read opened it: "ro", "ro (WAL)", "immutable (WAL, no writer)"
        self._problems: list[str] = []

    # ---- opening -----------------------------------------------------------------------------------

    def _check(self) -> tuple[str, os.stat_result, int, bool]:
        """Open the file confined: (its real path, its stat, its fd, WAL mode)."""
        try:
            f = confine.open_read(self.path)
        except confine.Refused as e:
            raise MlflowStoreError(f"the MLflow database {self.label} is not read: {e.why}") from None
        except OSError as e:
            raise MlflowStoreError(f"cannot open the MLflow database {self.label}: {e.strerror or e}") from None
        fd = f.fileno()
        try:
            st = os.fstat(fd)
            head = os.pread(fd, 100, 0)
            real = None
            if os.path.isdir(_PROC_FD):
                try:
                    real = os.readlink(f"{_PROC_FD}/{fd}")
                except OSError:
                    real = None
            real = real or os.path.realpath(self.path)
        except BaseException:
            f.close()
            raise
        if not is_sqlite(head) or len(head) < 100:
            f.close()
            raise MlflowStoreError(f"{self.label} is not an SQLite database (its header is "
                                   f"{'missing' if len(head) < 16 else 'different'}); was it truncated or overwritten?")
        wal = head[18] == 2 and head[19] == 2
        try:
            held = os.dup(fd)  # kept open while SQLite opens the path: the inode cannot be reused meanwhile
        finally:
            f.close()
        return real, st, held, wal

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection, verified to hold the confined file (see the module docstring)."""
        real, st, fd, wal = self._check()
        try:
            side = {s: _lexists(real + s) for s in ("-wal", "-shm", "-journal")}
            if wal and not side["-wal"]:
                params, self.mode = "immutable=1", "immutable (WAL, no writer)"
            else:
                params, self.mode = "mode=ro", "ro (WAL)" if wal else "ro"
            uri = f"file:{quote(real)}?{params}"
            with _FD_LOCK:
                before = _fds()
                try:
                    con = sqlite3.connect(uri, uri=True, timeout=2.0, check_same_thread=False)
                except sqlite3.Error as e:
                    raise MlflowStoreError(f"cannot open the MLflow database {self.label}: {e}") from None
                try:
                    con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # makes SQLite open the file
                    if not self._holds(before, st, real):
                        raise MlflowStoreError(f"the MLflow database {self.label} is not read: it changed while it "
                                               f"was opened (a swapped file or symlink)")
                except BaseException:
                    con.close()
                    raise
            try:
                yield con
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            raise MlflowStoreError(f"the MLflow database {self.label} cannot be read: {e} (is it truncated or "
                                   f"damaged? `sqlite3 {os.path.basename(self.path)} 'PRAGMA integrity_check'` "
                                   f"tells)") from None
        finally:
            os.close(fd)

    @staticmethod
    def _holds(before: dict[str, tuple[int, int]], st: os.stat_result, real: str) -> bool:
        """Whether a descriptor the connection opened is the confined file (same device and
        inode): one that holds it now and did not before (a number may be reused)."""
        want = (st.st_dev, st.st_ino)
        if os.path.isdir(_PROC_FD):
            after = _fds()
            return any(v == want and before.get(n) != want for n, v in after.items())
        try:
            now = os.stat(real)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == want

    def _query(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` on a fresh read-only connection; an immutable read is redone the ``mode=ro``
        way when a writer appeared during it."""
        for _ in range(3):
            k0 = confine.file_key(self.path)
            with self.connect() as con:
                mode = self.mode
                out = work(con)
            if not mode.startswith("immutable"):
                return out
            real = os.path.realpath(self.path)
            if not _lexists(real + "-wal") and confine.file_key(self.path) == k0:
                return out
        return out

    # ---- detection -----------------------------------------------------------------------------------

    def tables(self) -> set[str]:
        return self._query(lambda con: {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")})

    def is_mlflow(self) -> bool:
        try:
            return NEEDED <= self.tables()
        except MlflowStoreError:
            return False

    # ---- the store -----------------------------------------------------------------------------------

    def experiments(self) -> list[MlflowExperiment]:
        rows = self._query(lambda con: con.execute(
            "SELECT experiment_id, name, lifecycle_stage FROM experiments ORDER BY experiment_id").fetchall())
        return [MlflowExperiment(str(i), str(n or i), str(ls or "active")) for i, n, ls in rows
                if (ls or "active") != "deleted"]

    def runs(self) -> list[MlflowRunRecord]:
        def work(con: sqlite3.Connection) -> tuple:
            exps = {str(i): str(ls or "active") for i, ls in con.execute("SELECT experiment_id, lifecycle_stage FROM experiments")}
            runs = con.execute("SELECT run_uuid, name, status, start_time, end_time, lifecycle_stage, experiment_id, "
                               "user_id FROM runs").fetchall()
            params = con.execute("SELECT run_uuid, key, value FROM params").fetchall()
            tags = con.execute("SELECT run_uuid, key, value FROM tags").fetchall()
            latest = con.execute("SELECT run_uuid, key, value, timestamp, step, is_nan FROM latest_metrics").fetchall()
            return exps, runs, params, tags, latest

        try:
            exps, runs, params, tags, latest = self._query(work)
        except sqlite3.OperationalError as e:
            raise MlflowStoreError(f"the MLflow database {self.label} lacks what MLflow writes ({e}); is it an "
                                   f"MLflow tracking database?") from None
        out: dict[str, MlflowRunRecord] = {}
        self.deleted = 0
        for rid, name, status, start, end, ls, exp, user in runs:
            if (ls or "active") == "deleted" or exps.get(str(exp), "active") == "deleted":
                self.deleted += 1
                continue
            out[str(rid)] = MlflowRunRecord(
                run_id=str(rid), experiment_id=str(exp), name=str(name or ""), status=str(status or "RUNNING"),
                start_time_ms=_int(start), end_time_ms=_int(end), lifecycle_stage=str(ls or "active"),
                user_id=str(user or ""), store=self.label)
        for rid, k, v in params:
            r = out.get(str(rid))
            if r is not None:
                r.params[str(k)] = "" if v is None else str(v)
        for rid, k, v in tags:
            r = out.get(str(rid))
            if r is not None:
                r.tags[str(k)] = "" if v is None else str(v)
        for rid, k, v, ts, step, nan in latest:
            r = out.get(str(rid))
            if r is not None:
                r.latest[str(k)] = MlflowMetricPoint(_int(step) or 0, _int(ts) or 0, _value(v, nan))
        for r in out.values():
            if not r.name:
                r.name = r.tags.get("mlflow.runName", "")
        return list(out.values())

    def history(self, run_id: str, keys: list[str] | None = None) -> dict[str, list[MlflowMetricPoint]]:
        return {k: [MlflowMetricPoint(s, t, v) for s, t, v in zip(*cols)]
                for k, cols in self.history_arrays(run_id, keys).items()}

    def history_arrays(self, run_id: str, keys: list[str] | None = None) -> dict[str, tuple[array, array, array]]:
        """``history`` as (steps, timestamps, values) arrays per key: one query per key (the
        ``(run_uuid, key, step)`` index MLflow creates), NaN where ``is_nan``."""
        def work(con: sqlite3.Connection) -> dict[str, tuple[array, array, array]]:
            names = keys
            if names is None:
                names = [r[0] for r in con.execute("SELECT DISTINCT key FROM latest_metrics WHERE run_uuid=?", (run_id,))]
                if not names:  # MLflow fills latest_metrics with every point; look in metrics anyway
                    names = [r[0] for r in con.execute("SELECT DISTINCT key FROM metrics WHERE run_uuid=?", (run_id,))]
            out = {}
            for k in sorted(names):
                rows = con.execute("SELECT step, timestamp, value, is_nan FROM metrics WHERE run_uuid=? AND key=? "
                                   "ORDER BY step, timestamp", (run_id, k)).fetchall()
                if rows:
                    out[k] = _columns(rows)
            return out

        return self._query(work)

    def fingerprint(self) -> tuple:
        """Changes whenever a write may have changed what the store holds: the (size, mtime) of
        the database and of its ``-wal`` (WAL writes leave the main file alone until a checkpoint)."""
        real = os.path.realpath(self.path)
        return (confine.file_key(self.path), _lstat_key(real + "-wal"))

    def problems(self, run_id: str | None = None) -> list[str]:
        return list(self._problems) if run_id is None else []

    deleted = 0


def _columns(rows: list[tuple]) -> tuple[array, array, array]:
    """(step, timestamp, value, is_nan) rows as arrays, at C speed when the types are MLflow's."""
    steps, stamps, values, nans = zip(*rows)
    try:
        s, t, v = array("q", steps), array("q", stamps), array("d", values)
    except (TypeError, OverflowError):  # a damaged row (text, NULL, out of range): value by value
        s = array("q", (_int(x) or 0 for x in steps))
        t = array("q", (_int(x) or 0 for x in stamps))
        v = array("d", (_value(x, 0) for x in values))
    if any(nans):
        for i, n in enumerate(nans):
            if n:
                v[i] = float("nan")
    return s, t, v


def _value(v: Any, nan: Any) -> float:
    if nan:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _lexists(path: str) -> bool:
    try:
        os.lstat(path)
        return True
    except OSError:
        return False


def _lstat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)
