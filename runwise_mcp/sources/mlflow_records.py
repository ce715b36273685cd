"""What every MLflow store reader (file store, SQLite store, tracking server) hands to the one
MLflow mapping: plain records in the shape of MLflow's own REST ``Run`` JSON, so the three
stores map onto the run model through the same code.

Readers fill these; ``sources/mlflow.py`` (the source) turns them into run parts. Nothing here
reads files or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class MlflowExperiment:
    experiment_id: str
    name: str
    lifecycle_stage: str = "active"  # "active" | "deleted"


@dataclass
class MlflowMetricPoint:
    """One logged value. ``value`` is a float (NaN where the store says NaN: ``is_nan=1`` in
    SQLite, ``"NaN"`` over REST, ``nan`` in the file store)."""

    step: int
    timestamp_ms: int
    value: float


@dataclass
class MlflowRunRecord:
    """One run's info and data, as ``runs/search`` returns it (latest metric values only)."""

    run_id: str
    experiment_id: str
    name: str = ""  # run_name / mlflow.runName
    status: str = "RUNNING"  # RUNNING | SCHEDULED | FINISHED | FAILED | KILLED (text, as in SQLite/REST)
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    lifecycle_stage: str = "active"  # "deleted" runs are left out by the readers
    user_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # key -> latest point (latest_metrics table / REST data.metrics / last line of metrics/<key>)
    latest: dict[str, MlflowMetricPoint] = field(default_factory=dict)
    store: str = ""  # a short label of where it came from: a path relative to the root, or a URL


class MlflowStoreError(Exception):
    """A store could not be read. The message is one actionable sentence: what was tried (the
    path or URL, never a secret), what went wrong, and what to check."""


class MlflowStore(Protocol):
    """One MLflow store: a ``mlruns/`` file store, a SQLite ``mlflow.db``, or a tracking server.
    The MLflow source maps what these return onto the run model; all three implement it.

    Optional members (looked up with ``getattr`` by ``sources/mlflow.py``; a store may leave
    them out):

    * ``fingerprint() -> hashable``: cheap, and changes whenever what ``runs()`` returns may have
      changed (SQLite: the (size, mtime) of the database and its ``-wal``). While it is unchanged
      the store is not listed again;
    * ``problems(run_id: str | None = None) -> list[str]``: what could not be read, one sentence
      each; with a run id, only that run's (e.g. skipped metric lines), without, the store's own
      (e.g. an experiment's damaged ``meta.yaml``);
    * ``kind: str``: how answers name the kind of store ("file store", "SQLite store", ...);
    * ``history_arrays(run_id, keys=None) -> {key: (steps, timestamps_ms, values)}`` as
      ``array("q")``, ``array("q")``, ``array("d")`` in (step, timestamp) order: ``history``
      without one object per point (the local stores have it; the mapping uses it when present).
    """

    label: str  # how answers name the store: a path relative to its root, or the server URL (no credentials)

    def experiments(self) -> list[MlflowExperiment]:
        """Active experiments."""
        ...

    def runs(self) -> list[MlflowRunRecord]:
        """Every run that is not deleted, with params, tags and latest metric values."""
        ...

    def history(self, run_id: str, keys: list[str] | None = None) -> dict[str, list[MlflowMetricPoint]]:
        """Every logged point of ``keys`` (all keys when None), in log order (step, then timestamp)."""
        ...
