"""Source formats. Each module reads one format into the shared run model (``model.py``)
through the interface in ``base.py``; the index asks every source in ``SOURCES`` which
directories it claims, in this order (the first claim wins, so a format whose directories may
hold another's files comes first).

To add a format: write ``sources/<format>.py`` with a ``Source`` subclass and its ``RunPart``,
and add one line below.
"""

from __future__ import annotations

from .base import Source
from .console_run import ConsoleSource
from .hf_trainer import HFTrainerSource
from .lightning_csv import LightningSource
from .metric_logs import MetricLogSource
from .mlflow import MlflowSource
from .tensorboard import TensorBoardSource
from .wandb_dir import WandbSource

SOURCES: tuple[Source, ...] = (
    WandbSource(),  # first: a wandb run directory may hold event files of its own
    MlflowSource(),  # before TensorBoard: an mlruns/ store may hold event files as artifacts
    TensorBoardSource(),
    HFTrainerSource(),
    LightningSource(),
    MetricLogSource(),  # files that are runs of their own; other sources still see the directory
    ConsoleSource(),  # claims files (*.log, *.out) in directories no other source owns whole
)
