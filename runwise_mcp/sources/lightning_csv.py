"""Lightning ``CSVLogger`` runs: ``<save_dir>/<name>/version_N/metrics.csv`` + ``hparams.yaml``
(OTHER_FORMATS.md §3.1).

Columns are all keys logged, sorted; a row holds what was logged together and an empty cell
means "not logged". Train-step, validation and epoch rows can share one ``step``: they become
one history row where their keys differ. The writer rewrites the whole file with a new header
when a new key appears, so the file is parsed again (with its current header) whenever it
changed. ``hparams.yaml`` (loaded with the bounded safe loader) is the config. ``version_N``
folders of one ``<name>`` are runs of one group. CSV logs record no exit status: the state is
from the file's mtime, with that basis.
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Any

import yaml

from .base import Claim, ReadContext, SegmentInfo, Source
from .filebase import CsvTail, FilePart, RowBuilder, as_step, coerce, read_bytes, rel_name
from .safeyaml import safe_load

METRICS = "metrics.csv"
HPARAMS = "hparams.yaml"
_VERSION = re.compile(r"^version_\d+$")


def csv_rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    text = data.decode("utf-8", "replace")
    cut = text.rfind("\n")
    text = text[: cut + 1] if cut >= 0 else ""  # a line still being written is left for later
    try:  # newline="" semantics: a bare \r (a progress-bar redraw in a console log) is not a row end
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:  # not CSV (e.g. a console log probed as one): no rows
        return [], []
    return (rows[0], rows[1:]) if rows else ([], [])


class LightningRun(FilePart):
    source = "lightning"
    no_exit = "CSV logs record no exit status"

    def __init__(self, path: str, root: str) -> None:
        super().__init__(path, root)
        self._csv: CsvTail | None = None
        self._rb = RowBuilder()
        self._bad = 0

    def watched(self) -> list[str]:
        return [os.path.join(self.path, METRICS), os.path.join(self.path, HPARAMS)]

    @property
    def group(self) -> str:
        parent = os.path.dirname(self.path.rstrip(os.sep))
        return rel_name(parent, self.root) if self.root and parent.startswith(self.root.rstrip(os.sep)) else ""

    def parse(self) -> None:
        mpath, hpath = self.watched()
        if mpath in self.keys:  # only the rows appended since the last read, unless the file was rewritten
            if self._csv is None:
                self._csv = CsvTail(mpath)
            rows, reset = self._csv.read()
            if reset:
                self._rb, self._bad = RowBuilder(), 0
            header = self._csv.header
            rb = self._rb
            if "step" in header:
                si = header.index("step")
                for row in rows:
                    step = as_step(row[si]) if si < len(row) else None
                    if step is None:
                        self._bad += 1
                        continue
                    rb.add(step, [(k, coerce(v)) for k, v in zip(header, row) if v != "" and k != "step"])
            if self._bad:
                self._notes.append(f"{self._bad:,} row(s) of {METRICS} without a step skipped")
        else:
            self._csv, self._rb, self._bad = None, RowBuilder(), 0
        self._history = self._rb.h
        cfg: dict[str, Any] = {}
        if hpath in self.keys:
            try:
                doc = safe_load(read_bytes(hpath, 4 << 20))
                if isinstance(doc, dict):
                    cfg = doc
            except (yaml.YAMLError, ValueError, RecursionError) as e:  # YAML errors, refused alias bombs
                self.errors.append(f"{HPARAMS} not read: {e}")
        self._config = cfg

    @property
    def info(self) -> SegmentInfo:
        hints = {
            "empty": f"{METRICS} holds no row yet (CSVLogger flushes every 100 steps by default)",
            "no_config": f"no {HPARAMS} (call self.save_hyperparameters() in the LightningModule)",
            "config_from": f"Lightning {HPARAMS}",
        }
        return SegmentInfo("lightning", "lightning_csv", os.path.join(self.path, METRICS), label=METRICS,
                           files=[os.path.basename(p) for p in self.keys], hints=hints)

    @property
    def producer(self) -> str:
        return "Lightning CSVLogger"


class LightningSource(Source):
    name = "lightning"
    describe = "Lightning CSVLogger runs (version_N/metrics.csv + hparams.yaml)"

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Any) -> Claim | None:
        if METRICS not in files:
            return None
        if not (_VERSION.match(os.path.basename(path.rstrip(os.sep))) or HPARAMS in files):
            return None
        head = csv_rows(_head(os.path.join(path, METRICS)))[0]
        if "step" not in head:
            return None
        return Claim(run=True, descend=True)

    def open(self, path: str, ctx: ReadContext) -> LightningRun:
        return LightningRun(path, ctx.root)


def _head(path: str) -> bytes:
    from .filebase import head_bytes

    data = head_bytes(path, 4096)
    cut = data.find(b"\n")
    return data[: cut + 1] if cut >= 0 else b""
