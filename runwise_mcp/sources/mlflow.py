"""MLflow runs: the source (local stores found under the roots) and the one mapping from an
:class:`MlflowStore`'s records onto the run model, shared by every store (the ``mlruns/`` file
store, a SQLite ``mlflow.db``, a tracking server).

Discovery (by shape, never by name alone):

* a directory with a numeric sub-directory holding ``meta.yaml`` is a file store (``mlruns/``);
* a file named ``*.db`` / ``*.sqlite`` / ``*.sqlite3`` that is an SQLite database holding
  MLflow's tables (``alembic_version``, ``runs``, ``metrics``, ``experiments``) is a SQLite store.

A store holds many runs: the source opens it as a :class:`~.base.PartStore` (:class:`MlflowParts`),
one run part per MLflow run. :func:`mlflow_parts` builds the same from any MlflowStore (the
tracking-server reader uses it with a store that is not on disk).

Mapping (issue 14, item 4):

* params -> config (ints and floats typed where the whole string parses as one);
* tags: ``mlflow.runName`` -> name (with the run's own name first), ``mlflow.note.content`` ->
  notes, ``mlflow.user`` / ``mlflow.source.name`` / ``mlflow.source.git.commit`` -> environment;
  other ``mlflow.*`` tags are left out; user tags -> tags as ``key=value`` (``key`` alone when
  the value is empty); experiment name -> group;
* each metric key is a column with its own steps; several values at one step keep the last
  logged (by timestamp) and the answer says how many were replaced; ``_timestamp`` (seconds) is
  the latest timestamp at each step, ``_runtime`` that minus the run's start;
* ±1.7976931348623157e308 (how SQL stores keep ±inf) is read as ±inf, and said so; NaN stays NaN;
* status: FINISHED -> finished, FAILED -> crashed, KILLED -> killed; RUNNING (or SCHEDULED) is
  ``running?`` while the last metric (or the start) is within the staleness threshold, else
  ``killed?`` with its age: a process that crashes never gets its MLflow status set.

Reading: a run list holds only each run's latest values (a skim: ``sampled``); a tool that needs
the history reads the run in full (``store.history``), and a run whose record changed since is
skimmed again until asked for (SQLite: one query per key; file store: only new metric lines).
"""

from __future__ import annotations

import math
import os
import re
from array import array
from collections.abc import Callable
from typing import Any

from .. import confine
from ..model import CRASHED, FINISHED, KILLED, RUNNING, Column, History, RunState
from .base import Claim, PartStore, ReadContext, RunPart, SegmentInfo, Source, WalkRules
from .filebase import head_bytes, rel_name
from .mlflow_filestore import FileStore, looks_like_mlruns
from .mlflow_records import MlflowExperiment, MlflowMetricPoint, MlflowRunRecord, MlflowStore, MlflowStoreError
from .mlflow_sqlite import CLAMPED, NEEDED, SqliteStore, is_sqlite

DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")
ENV_TAGS = {"mlflow.user": "user", "mlflow.source.name": "program", "mlflow.source.git.commit": "git_commit",
            "mlflow.source.type": "source_type"}
NO_STATUS = "a crashed MLflow run never gets its status set"


def typed(v: str) -> Any:
    """A param as a number where the whole string is one (MLflow stores params as text)."""
    s = v.strip()
    if _INT.match(s) and len(s) < 19:
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    return v


def unclamp(v: float) -> float:
    """MLflow's SQL stand-in for ±inf back to ±inf."""
    if v == CLAMPED:
        return math.inf
    if v == -CLAMPED:
        return -math.inf
    return v




def as_arrays(points: dict[str, list[MlflowMetricPoint]]) -> dict[str, tuple[array, array, array]]:
    """Points (a store's ``history``) as (steps, timestamps, values) arrays per key."""
    return {k: (array("q", (p.step for p in pts)), array("q", (p.timestamp_ms for p in pts)),
                array("d", (p.value for p in pts))) for k, pts in points.items()}


def build_history(cols: dict[str, tuple[array, array, array]], start_ms: int | None,
                  ) -> tuple[History, dict[str, int], dict[str, int]]:
    """The History of an MLflow run: per key (steps, timestamps, values) in log order (step, then
    timestamp). Returns it with the count of values replaced at a repeated step (the last logged
    is kept) and of clamped infs (read as ±inf), per key."""
    h = History()
    replaced: dict[str, int] = {}
    clamped: dict[str, int] = {}
    stamp: dict[int, int] = {}  # step -> latest timestamp (ms)
    for key in sorted(cols):
        steps, stamps, values = cols[key]
        if not len(values):
            continue
        inf = values.count(CLAMPED) + values.count(-CLAMPED)
        if inf:
            values = array("d", (unclamp(v) for v in values))
            clamped[key] = inf
        if not all(a < b for a, b in zip(steps, steps[1:])):  # a step logged more than once: keep the last
            keep = [i for i in range(len(steps) - 1) if steps[i] != steps[i + 1]] + [len(steps) - 1]
            replaced[key] = len(steps) - len(keep)
            steps = array("q", (steps[i] for i in keep))
            top = {}
            for s, t in zip(cols[key][0], stamps):
                if top.get(s, -1) < t:
                    top[s] = t
            stamps = array("q", (top[s] for s in steps))
            values = array("d", (values[i] for i in keep))
        if not stamp:
            stamp = dict(zip(steps, stamps))
        else:
            for s, t in zip(steps, stamps):
                if stamp.get(s, -1) < t:
                    stamp[s] = t
        Column.install(h, key, array("q", steps), values if values is not cols[key][2] else array("d", values))
    all_steps = sorted(stamp)
    h.steps = array("q", all_steps)
    if all_steps:
        ts = array("d", (stamp[s] / 1000.0 for s in all_steps))
        Column.install(h, "_timestamp", array("q", all_steps), ts)
        t0 = start_ms / 1000.0 if start_ms else ts[0]
        Column.install(h, "_runtime", array("q", all_steps), array("d", (x - t0 for x in ts)))
    return h, replaced, clamped


class MlflowRunPart(RunPart):
    """One MLflow run of a store."""

    source = "mlflow"

    def __init__(self, owner: MlflowParts, record: MlflowRunRecord, experiment: str) -> None:
        self.owner = owner
        self.record = record
        self.experiment = experiment
        self.path = f"{owner.path}/{record.experiment_id}/{record.run_id}"
        self.version = 0
        self._history = History()
        self._full = False
        self._stale = True  # the held history is older than the record
        self._replaced: dict[str, int] = {}
        self._clamped: dict[str, int] = {}
        self._error = ""
        self._points = 0
        self._config: tuple[MlflowRunRecord, dict[str, Any]] | None = None

    def update(self, record: MlflowRunRecord, experiment: str) -> None:
        if record != self.record or experiment != self.experiment:
            self.record, self.experiment = record, experiment
            self._stale = True
            self.version += 1

    # ---- identity ------------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def group_key(self) -> str:
        return f"mlflow:{self.path}"

    @property
    def identity(self) -> dict[str, Any]:
        r = self.record
        tags = [k if v == "" else f"{k}={v}" for k, v in sorted(r.tags.items()) if not k.startswith("mlflow.")]
        return {"name": r.name or r.tags.get("mlflow.runName") or r.run_id[:8], "group": self.experiment,
                "notes": r.tags.get("mlflow.note.content", ""), "tags": tags}

    @property
    def start_time(self) -> float | None:
        return self.record.start_time_ms / 1000.0 if self.record.start_time_ms else None

    @property
    def info(self) -> SegmentInfo:
        store = self.owner.store
        kind = getattr(store, "kind", "store")
        hints = {
            "empty": f"the run has logged no metric yet (MLflow {kind} {self.owner.label})",
            "no_config": "no params were logged (mlflow.log_param / log_params write them)",
            "config_from": f"MLflow params ({kind} {self.owner.label})",
            "clock": "metric timestamps",
        }
        return SegmentInfo("mlflow", "mlflow", None, label=f"{self.owner.label} {self.record.run_id[:8]}",
                           hints=hints)

    @property
    def producer(self) -> str:
        return f"mlflow {getattr(self.owner.store, 'kind', 'store')}"

    # ---- data ----------------------------------------------------------------------------------------

    @property
    def history(self) -> History:
        return self._history

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None or self._config[0] is not self.record:
            self._config = (self.record, {k: typed(v) for k, v in sorted(self.record.params.items())})
        return dict(self._config[1])

    @property
    def summary(self) -> dict[str, Any]:
        return {k: unclamp(p.value) for k, p in sorted(self.record.latest.items())}

    @property
    def environment(self) -> dict[str, Any]:
        env = {ENV_TAGS[k]: v for k, v in sorted(self.record.tags.items()) if k in ENV_TAGS and v}
        if self.record.user_id and "user" not in env:
            env["user"] = self.record.user_id
        return env

    def _last_ms(self) -> int | None:
        times = [p.timestamp_ms for p in self.record.latest.values() if p.timestamp_ms]
        return max(times) if times else None

    @property
    def runtime(self) -> float | None:
        r = self.record
        end = r.end_time_ms or self._last_ms()
        return (end - r.start_time_ms) / 1000.0 if end and r.start_time_ms else None

    @property
    def points(self) -> int:
        return self._points if self._full else 0

    @property
    def sampled(self) -> bool:
        return not self._full

    @property
    def full(self) -> bool:
        return self._full

    @property
    def in_memory(self) -> bool:
        return self._full

    def notes(self) -> list[str]:
        out = []
        for k, n in sorted(self._replaced.items()):
            out.append(f"{k}: {n:,} value(s) logged again at a step already logged; the last logged value "
                       f"at each step is kept")
        for k, n in sorted(self._clamped.items()):
            out.append(f"{k}: {n:,} value(s) stored as ±1.7976931348623157e308, MLflow's stand-in for ±inf in "
                       f"its database (clamped); read as ±inf")
        return out

    # ---- reading -------------------------------------------------------------------------------------

    def refresh(self, full: bool = False, skim_above: int = 0,
                progress: Callable[[int, int], None] | None = None) -> bool:
        if full and (not self._full or self._stale):
            store = self.owner.store
            fast = getattr(store, "history_arrays", None)
            try:
                cols = fast(self.record.run_id) if fast is not None else as_arrays(store.history(self.record.run_id))
                self._error = ""
            except MlflowStoreError as e:
                self._error = str(e)
                cols = None
            if cols is not None:
                self._history, self._replaced, self._clamped = build_history(cols, self.record.start_time_ms)
                self._points = sum(len(c[2]) for c in cols.values())
                self._full, self._stale = True, False
                self.version += 1
                return True
        if self._stale or (not self._full and not self._history.steps and self.record.latest):
            self._skim()
            return True
        return False

    def _skim(self) -> None:
        """The run list's view: each metric's latest point (a row per distinct step)."""
        h = History()
        stamp: dict[int, int] = {}
        self._clamped = {}
        for key in sorted(self.record.latest):
            p = self.record.latest[key]
            v = p.value
            if v == CLAMPED or v == -CLAMPED:
                self._clamped[key] = 1
                v = unclamp(v)
            Column.install(h, key, array("q", (p.step,)), array("d", (v,)))
            if stamp.get(p.step, -1) < p.timestamp_ms:
                stamp[p.step] = p.timestamp_ms
        steps = sorted(stamp)
        h.steps = array("q", steps)
        if steps:
            ts = array("d", (stamp[s] / 1000.0 for s in steps))
            Column.install(h, "_timestamp", array("q", steps), ts)
            t0 = self.record.start_time_ms / 1000.0 if self.record.start_time_ms else ts[0]
            Column.install(h, "_runtime", array("q", steps), array("d", (x - t0 for x in ts)))
        self._history = h
        self._replaced = {}
        self._full, self._stale, self._points = False, False, 0
        self.version += 1

    def evict(self) -> None:
        if self._full:
            self._skim()

    # ---- state ---------------------------------------------------------------------------------------

    def state(self, now: float, stale_after: float) -> RunState:
        r = self.record
        status = r.status.upper()
        end = r.end_time_ms / 1000.0 if r.end_time_ms else None
        if status == "FINISHED":
            return RunState(FINISHED, "MLflow status FINISHED", None, end)
        if status == "FAILED":
            return RunState(CRASHED, "MLflow status FAILED", None, end)
        if status == "KILLED":
            return RunState(KILLED, "MLflow status KILLED", None, end, certain=True)
        last_ms = self._last_ms() or r.start_time_ms
        last = last_ms / 1000.0 if last_ms else None
        what = "MLflow status SCHEDULED" if status == "SCHEDULED" else "MLflow status RUNNING"
        if last is not None and now - last <= stale_after:
            return RunState(RUNNING, what, None, last, certain=False, clock="metric")
        return RunState(KILLED, f"{what} ({NO_STATUS})", None, last, certain=False, clock="metric")

    def problems(self) -> list[str]:
        out = [self._error] if self._error else []
        probe = getattr(self.owner.store, "problems", None)
        if probe is not None:
            out += probe(self.record.run_id)
        return out


class MlflowParts(PartStore):
    """The runs of one MlflowStore as run parts (see :func:`mlflow_parts`)."""

    source = "mlflow"

    def __init__(self, store: MlflowStore, path: str, label: str | None = None) -> None:
        self.store = store
        self.path = path
        self.label = label or store.label
        self._parts: dict[str, MlflowRunPart] = {}
        self._mark: Any = None
        self._order: list[MlflowRunPart] = []
        self._failed = ""  # why the last listing failed (its runs are the previous listing's)

    def parts(self) -> list[RunPart]:
        mark_of = getattr(self.store, "fingerprint", None)
        mark = mark_of() if mark_of is not None else None
        if mark is not None and mark == self._mark:
            return list(self._order)
        try:
            exps: dict[str, MlflowExperiment] = {e.experiment_id: e for e in self.store.experiments()}
            records = self.store.runs()
        except MlflowStoreError as e:
            if not self._order:
                raise
            # a passing failure (a writer's lock held past the timeout): the runs of the last read
            self._failed = f"listed from its last read: {e}"
            return list(self._order)
        self._failed = ""
        fresh: dict[str, MlflowRunPart] = {}
        for rec in records:
            if rec.lifecycle_stage == "deleted" or rec.experiment_id not in exps:
                continue
            exp = exps[rec.experiment_id].name
            part = self._parts.get(rec.run_id)
            if part is None or part.record.experiment_id != rec.experiment_id:
                part = MlflowRunPart(self, rec, exp)
            else:
                part.update(rec, exp)
            fresh[rec.run_id] = part
        self._parts = fresh
        self._order = [fresh[k] for k in sorted(fresh)]
        self._mark = mark
        return list(self._order)

    def problems(self) -> list[str]:
        """What the store could not read outside any one run (a damaged experiment meta.yaml, ...)."""
        probe = getattr(self.store, "problems", None)
        out = [f"{self.label}: {p}" for p in probe()] if probe is not None else []
        return out + ([f"{self.label}: {self._failed}"] if self._failed else [])


def mlflow_parts(store: MlflowStore, path: str | None = None, label: str | None = None) -> MlflowParts:
    """The run parts of any MlflowStore (a local store, or a tracking server's): ``path`` is a
    unique stable key for the store (default: its label), used as the prefix of its parts' paths."""
    return MlflowParts(store, path or store.label, label)


class MlflowSource(Source):
    name = "mlflow"
    describe = "MLflow stores (mlruns/ directories, mlflow.db SQLite files)"
    many = True

    def __init__(self) -> None:
        self._db_verdicts: dict[str, tuple[tuple[int, int] | None, bool]] = {}

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Any) -> Claim | None:
        if looks_like_mlruns(path, subdirs):
            return Claim(run=True, descend=False)  # the store's runs are listed by the store
        return None

    def claim_files(self, path: str, files: tuple[str, ...], rules: WalkRules) -> list[str]:
        out = []
        for name in files:
            if not name.lower().endswith(DB_SUFFIXES):
                continue
            full = os.path.join(path, name)
            if self._is_store(full):
                out.append(name)
        return out

    def _is_store(self, path: str) -> bool:
        key = confine.file_key(path)
        known = self._db_verdicts.get(path)
        if known is not None and known[0] == key:
            return known[1]
        verdict = False
        if key is None and os.path.basename(path).lower() == "mlflow.db" and os.path.islink(path):
            verdict = True  # a refused link named like MLflow's database: listed, so the refusal is said
        elif key is not None and is_sqlite(head_bytes(path, 16)):
            try:
                verdict = NEEDED <= SqliteStore(path, os.path.basename(path)).tables()
            except MlflowStoreError:  # damaged: listed (so its error is said) when named like MLflow's
                verdict = os.path.basename(path).lower() == "mlflow.db"
        self._db_verdicts[path] = (key, verdict)
        return verdict

    def name_hint(self, name: str) -> bool:
        return name == "mlruns"

    def open(self, path: str, ctx: ReadContext) -> MlflowParts:
        label = rel_name(path, ctx.root)
        store: MlflowStore = FileStore(path, label) if os.path.isdir(path) else SqliteStore(path, label)
        return MlflowParts(store, path, label)
