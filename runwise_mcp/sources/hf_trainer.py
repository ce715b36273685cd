"""HF Trainer output directories (OTHER_FORMATS.md §3.1).

A run is a directory holding ``trainer_state.json`` (``trainer.save_state()``) or
``checkpoint-N/trainer_state.json`` folders; the checkpoints are not runs of their own. The
history is the newest state file (highest ``global_step``; the top-level file wins a tie, as
``save_state`` writes it last), and the source line says which one.

``log_history``: train entries (``loss``, ``grad_norm``, ``learning_rate``, ``epoch``), eval
entries (``eval_*``), keyed by ``step``; the final summary entry (``train_runtime``,
``train_loss``, ...; only in the state saved after training) goes to the summary and means the
run finished. ``config.json`` (the model config) goes to the config; ``all_results.json``,
``train_results.json`` and ``eval_results.json`` to the summary. ``training_args.bin`` is a
pickle and is never read.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ..model import FINISHED, RunState
from .base import Claim, ReadContext, SegmentInfo, Source
from .filebase import FilePart, RowBuilder, as_step, read_bytes

STATE = "trainer_state.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")
_RESULTS = ("all_results.json", "train_results.json", "eval_results.json")
_TRAINER_KEYS = ("logging_steps", "eval_steps", "save_steps", "train_batch_size", "num_train_epochs", "max_steps")
NO_EXIT = "trainer_state.json has no final summary entry (HF records no exit status)"


def _load_json(path: str) -> Any:
    return json.loads(read_bytes(path, 64 << 20))


def _is_state(path: str) -> bool:
    try:
        from ..confine import stat_file

        stat_file(path)
        return True
    except OSError:
        return False


class HFTrainerRun(FilePart):
    source = "hf_trainer"
    no_exit = NO_EXIT

    def __init__(self, path: str, root: str) -> None:
        super().__init__(path, root)
        self.state_file = ""  # relative to the run directory
        self.finished = False
        self.progress: tuple[int, int] | None = None

    def _checkpoints(self) -> list[str]:
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        return sorted((n for n in names if _CKPT.match(n) and os.path.isdir(os.path.join(self.path, n))),
                      key=lambda n: int(_CKPT.match(n).group(1)))

    def watched(self) -> list[str]:
        out = [os.path.join(self.path, STATE)]
        out += [os.path.join(self.path, c, STATE) for c in self._checkpoints()]
        out += [os.path.join(self.path, n) for n in ("config.json", *_RESULTS)]
        return out

    def parse(self) -> None:
        states = []
        for p in self.watched():
            if os.path.basename(p) != STATE or p not in self.keys:
                continue
            try:
                st = _load_json(p)
            except (OSError, ValueError) as e:
                self.errors.append(f"cannot read {os.path.relpath(p, self.path)}: {e}")
                continue
            if not isinstance(st, dict):
                continue
            top = os.path.dirname(p) == self.path
            states.append(((as_step(st.get("global_step")) or 0, top, self.keys[p][1]), p, st))
        if not states:
            self._history = RowBuilder().h
            return
        _, path, st = max(states, key=lambda s: s[0])
        self.state_file = os.path.relpath(path, self.path).replace(os.sep, "/")
        rb = RowBuilder()
        summary: dict[str, Any] = {}
        self.finished = False
        for entry in st.get("log_history") or []:
            if not isinstance(entry, dict):
                continue
            step = as_step(entry.get("step"))
            if any(k in entry for k in _SUMMARY_KEYS) and "loss" not in entry:
                self.finished = True
                summary.update({k: v for k, v in entry.items() if k != "step"})
                continue
            if step is None:
                continue
            rb.add(step, [(k, v) for k, v in entry.items() if k != "step"])
        self._history = rb.h
        for k in ("global_step", "max_steps", "epoch", "best_metric", "best_model_checkpoint", "best_global_step"):
            if st.get(k) is not None:
                summary[k] = st[k]
        gs, ms = as_step(st.get("global_step")), as_step(st.get("max_steps"))
        self.progress = (gs, ms) if gs is not None and ms else None
        if self.progress:
            summary["progress"] = f"{gs:,}/{ms:,} steps ({100 * gs / ms:.0f}%)"
        cfg: dict[str, Any] = {}
        trainer = {k: st[k] for k in _TRAINER_KEYS if st.get(k) is not None}
        if trainer:
            cfg["trainer"] = trainer
        for p in (os.path.join(self.path, "config.json"), os.path.join(os.path.dirname(path), "config.json")):
            try:
                model = _load_json(p)
            except (OSError, ValueError):
                continue
            if isinstance(model, dict):
                cfg["model"] = model
                break
        for n in _RESULTS:
            p = os.path.join(self.path, n)
            if p not in self.keys:
                continue
            try:
                res = _load_json(p)
            except (OSError, ValueError) as e:
                self.errors.append(f"cannot read {n}: {e}")
                continue
            if isinstance(res, dict):
                summary.update(res)
                if n == "train_results.json":
                    self.finished = True
        self._config = cfg
        self._summary = summary
        said = []
        if self.progress:
            said.append(f"global_step {gs:,} of max_steps {ms:,} ({100 * gs / ms:.0f}%)")
        if isinstance(st.get("best_metric"), (int, float)):
            best = st.get("best_model_checkpoint")
            said.append(f"best_metric {st['best_metric']:.6g}"
                        + (f" ({os.path.basename(str(best).rstrip('/'))})" if best else ""))
        if said:
            self._notes.append(f"{self.state_file}: " + ", ".join(said))
        ck = self._checkpoints()
        if len(ck) > 1 or (ck and self.state_file != STATE):
            self._notes.append(f"history from {self.state_file} (the newest of {len(ck)} checkpoint state file"
                               f"{'s' if len(ck) != 1 else ''}{' and the saved state' if os.path.join(self.path, STATE) in self.keys else ''})")

    @property
    def info(self) -> SegmentInfo:
        main = os.path.join(self.path, self.state_file) if self.state_file else None
        hints = {
            "empty": "trainer_state.json holds no log_history entry yet (the Trainer logs every logging_steps)",
            "no_config": "no config.json next to trainer_state.json (training_args.bin is a pickle and is not read)",
            "config_from": "HF Trainer config.json (model) and trainer_state.json (trainer settings)",
        }
        progress = (self.progress[0], self.progress[1], f"max_steps in {self.state_file or STATE}") \
            if self.progress else None
        return SegmentInfo("hf_trainer", "hf_trainer", main, label=self.state_file or STATE,
                           files=[os.path.relpath(p, self.path) for p in self.keys], hints=hints,
                           progress=progress, rate=self.save_rate())

    def save_rate(self) -> tuple[float, str] | None:
        """Steps per second between the newest checkpoint saves (``checkpoint-N`` is saved at
        global step N; the time is its trainer_state.json's mtime), or None (fewer than two)."""
        saves = []
        for c in self._checkpoints():
            key = self.keys.get(os.path.join(self.path, c, STATE))
            if key is not None:
                saves.append((int(_CKPT.match(c).group(1)), key[1] / 1e9, c))
        saves = saves[-5:]
        if len(saves) < 2:
            return None
        (n0, t0, c0), (n1, t1, c1) = saves[0], saves[-1]
        if n1 <= n0 or t1 <= t0:
            return None
        return (n1 - n0) / (t1 - t0), f"checkpoint saves {c0} to {c1} (file times)"

    @property
    def producer(self) -> str:
        return "HF Trainer"

    def state(self, now: float, stale_after: float) -> RunState:
        if self.finished:
            return RunState(FINISHED, f"final summary entry in {self.state_file or STATE}", None, self.last_write)
        return super().state(now, stale_after)


class HFTrainerSource(Source):
    name = "hf_trainer"
    describe = "HF Trainer output directories (trainer_state.json, checkpoint-N/trainer_state.json)"

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Any) -> Claim | None:
        base = os.path.basename(path.rstrip(os.sep))
        if _CKPT.match(base) and STATE in files and not any(os.path.realpath(path) == r for r in roots.real):
            return Claim(run=False, descend=False)  # read by the output directory above it
        if STATE in files or any(_CKPT.match(d) and _is_state(os.path.join(path, d, STATE)) for d in subdirs):
            return Claim(run=True, descend=True)  # runs/ (TensorBoard) may be below
        return None

    def open(self, path: str, ctx: ReadContext) -> HFTrainerRun:
        return HFTrainerRun(path, ctx.root)
