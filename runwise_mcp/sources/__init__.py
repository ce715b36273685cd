"""Source formats. Each module reads one format into the shared run model (``model.py``)
through the interface in ``base.py``; the index asks every source in ``SOURCES`` which
directories it claims, in this order (the first claim wins, so a format whose directories may
hold another's files comes first).

To add a format: write ``sources/<format>.py`` with a ``Source`` subclass and its ``RunPart``,
and add one line below.
"""

from __future__ import annotations

from typing import Any

from .base import PartStore, Source
from .console_run import ConsoleSource
from .hf_trainer import HFTrainerSource
from .lightning_csv import LightningSource
from .metric_logs import MetricLogSource
from .mlflow import MlflowSource, mlflow_parts
from .tensorboard import TensorBoardSource
from .wandb_dir import WandbSource

SOURCES: tuple[Source, ...] = (
    WandbSource(),  # first: a wandb run directory may hold event files of its own
    MLFLOW := MlflowSource(),  # before TensorBoard: an mlruns/ store may hold event files as artifacts
    TensorBoardSource(),
    HFTrainerSource(),
    LightningSource(),
    MetricLogSource(),  # files that are runs of their own; other sources still see the directory
    ConsoleSource(),  # claims files (*.log, *.out) in directories no other source owns whole
)


def configured_stores(settings: Any) -> tuple[list[tuple[Source, PartStore]], list[str]]:
    """Stores named in the settings rather than found under the roots (MLflow tracking servers:
    ``--mlflow`` / ``MLFLOW_TRACKING_URI``), each with the source that owns its runs; and one
    sentence per configured store that cannot be used (a malformed URI)."""
    from .mlflow_rest import server_stores

    stores, problems = server_stores(settings)
    return [(MLFLOW, mlflow_parts(s)) for s in stores], problems
