"""MLflow's file store (``mlruns/``), read directly as an :class:`MlflowStore`.

Layout (OTHER_FORMATS.md §2.2)::

    mlruns/<exp_id>/meta.yaml              name, experiment_id, lifecycle_stage, ...
    mlruns/<exp_id>/<run_id>/meta.yaml     run_id, run_name, status (int), start_time, end_time,
                                           lifecycle_stage, user_id, ...
    mlruns/<exp_id>/<run_id>/metrics/<key> "<timestamp_ms> <value> <step>" per line (old: no step)
    mlruns/<exp_id>/<run_id>/params/<key>  the raw value
    mlruns/<exp_id>/<run_id>/tags/<key>    mlflow.runName, mlflow.user, user tags, ...

Keys holding ``/`` are sub-directories (``metrics/train/loss``): walked recursively, the key is the
relative path. ``.trash/`` (deleted experiments) and ``models/`` (MLflow 3 logged models) are
skipped, and so are runs and experiments whose ``lifecycle_stage`` is ``deleted``.
``artifact_uri`` / ``artifact_location`` (absolute paths of the writing machine) are never used.

Every file and directory is opened through ``confine`` (the active roots); ``meta.yaml`` is parsed
with the bounded safe loader (``safeyaml``). A line of a metric file that does not parse is
skipped and counted (``problems()`` says how many, where). Metric files are append-only: each is
followed by (size, mtime) and a grown file is read only from where the last read stopped.
"""

from __future__ import annotations

import os
import re
import stat
from array import array
from typing import Any

from .. import confine
from .mlflow_records import MlflowExperiment, MlflowMetricPoint, MlflowRunRecord, MlflowStoreError
from .safeyaml import safe_load

STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
SKIP = frozenset({".trash", "models", "tags", "datasets", "traces", "outputs", "artifacts"})
MAX_META = 1 << 20  # a meta.yaml larger than this is not parsed
MAX_VALUE = 1 << 20  # a param / tag file larger than this is cut
_LINES = re.compile(rb"(?:\S+ \S+ \S+\n)*")  # whole lines as MLflow writes them: "ts value step"
MAX_DEPTH = 16  # nested key levels walked
TAIL = 65536  # bytes read from a metric file's end for its latest point


def _roots() -> confine.Roots:
    return confine.ACTIVE.get() or confine.default_roots()


def list_dir(path: str) -> tuple[list[str], list[str]]:
    """(sub-directories, other entries) of ``path``, opened confined (no symlinked directory is
    entered: a symlink is listed as an "other" entry and opened confined when read)."""
    fd = _roots().open_dir(path)
    dirs, files = [], []
    try:
        with os.scandir(fd) as it:
            for e in it:
                try:
                    (dirs if e.is_dir(follow_symlinks=False) else files).append(e.name)
                except OSError:
                    continue
    finally:
        os.close(fd)
    return sorted(dirs), sorted(files)


def is_experiment_dir(path: str) -> bool:
    try:
        st = os.stat(os.path.join(path, "meta.yaml"), follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode)


def looks_like_mlruns(path: str, subdirs: tuple[str, ...] | list[str]) -> bool:
    """A directory of experiment directories: a numeric sub-directory holding ``meta.yaml``."""
    return any(d.isdigit() and is_experiment_dir(os.path.join(path, d)) for d in subdirs)


def read_meta(path: str) -> dict[str, Any]:
    """A flat ``meta.yaml`` as a dict (MlflowStoreError when it is not one)."""
    try:
        data = _roots().read(path, MAX_META)
    except ValueError as e:
        raise MlflowStoreError(str(e)) from None
    try:
        doc = safe_load(data)
    except Exception as e:  # yaml.YAMLError, YamlRefused, bad UTF-8
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MlflowStoreError(f"it is not valid YAML ({first[:120]})") from None
    if not isinstance(doc, dict):
        raise MlflowStoreError("it is not a key: value mapping")
    return doc


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return None


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def parse_line(line: bytes) -> MlflowMetricPoint | None:
    """``timestamp value [step]`` -> a point (None when the line does not parse)."""
    parts = line.split()
    if len(parts) not in (2, 3):
        return None
    try:
        ts = int(parts[0])
        value = float(parts[1])
        step = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        return None
    if abs(step) >= 1 << 63:
        return None
    return MlflowMetricPoint(step, ts, value)


class _MetricFile:
    """One ``metrics/<key>`` file, followed incrementally (MLflow only appends to it), held as
    arrays (steps, timestamps, values) in file order."""

    __slots__ = ("bad", "bad_lines", "key", "lines", "offset", "steps", "stamps", "values")

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.offset = 0  # bytes parsed (whole lines only)
        self.lines = 0
        self.steps = array("q")
        self.stamps = array("q")
        self.values = array("d")
        self.bad = 0
        self.bad_lines: list[int] = []  # the first few bad line numbers

    def update(self, path: str) -> None:
        with confine.open_read(path) as f:
            st = os.fstat(f.fileno())
            key = (st.st_size, st.st_mtime_ns)
            if key == self.key:
                return
            if st.st_size < self.offset:  # rewritten smaller: start over
                self.__init__()
            f.seek(self.offset)
            data = f.read(max(0, st.st_size - self.offset))
        end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        chunk = data[:end]
        if not self._fast(chunk):
            for line in chunk.split(b"\n"):
                if not line.strip():
                    continue
                self.lines += 1
                p = parse_line(line)
                if p is None:
                    self.bad += 1
                    if len(self.bad_lines) < 3:
                        self.bad_lines.append(self.lines)
                else:
                    self.steps.append(p.step)
                    self.stamps.append(p.timestamp_ms)
                    self.values.append(p.value)
        self.offset += end
        self.key = key

    def _fast(self, chunk: bytes) -> bool:
        """The common case at C speed: every line is ``timestamp value step`` (False: parse line
        by line instead, nothing added)."""
        if _LINES.fullmatch(chunk) is None:
            return False
        tokens = chunk.split()  # three a line, exactly (the match above)
        n = len(tokens) // 3
        try:
            stamps = array("q", map(int, tokens[0::3]))
            values = array("d", map(float, tokens[1::3]))
            steps = array("q", map(int, tokens[2::3]))
        except (ValueError, OverflowError):
            return False
        self.stamps.extend(stamps)
        self.values.extend(values)
        self.steps.extend(steps)
        self.lines += n
        return True


def sort_points(steps: array, stamps: array, values: array) -> tuple[array, array, array]:
    """The points in (step, timestamp) order (as they are when logged in order: no copy)."""
    ordered = all(a < b for a, b in zip(steps, steps[1:])) or all(
        (s1, t1) <= (s2, t2) for s1, s2, t1, t2 in zip(steps, steps[1:], stamps, stamps[1:]))
    if ordered:
        return steps, stamps, values
    order = sorted(range(len(steps)), key=lambda i: (steps[i], stamps[i]))
    return (array("q", (steps[i] for i in order)), array("q", (stamps[i] for i in order)),
            array("d", (values[i] for i in order)))


def _walk_keys(base: str, rel: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """(key, path) of every file below ``base`` (keys with ``/`` are sub-directories)."""
    try:
        dirs, files = list_dir(os.path.join(base, rel) if rel else base)
    except FileNotFoundError:
        return []
    out = [(f"{rel}/{n}" if rel else n, os.path.join(base, rel, n)) for n in files]
    if depth < MAX_DEPTH:
        for d in dirs:
            out += _walk_keys(base, f"{rel}/{d}" if rel else d, depth + 1)
    return out


def _read_value(path: str) -> str:
    with confine.open_read(path) as f:
        data = f.read(MAX_VALUE + 1)
    text = data[:MAX_VALUE].decode("utf-8", errors="replace")
    return text + ("…" if len(data) > MAX_VALUE else "")


def _last_point(path: str) -> MlflowMetricPoint | None:
    """The latest point as MLflow defines it (the greatest (step, timestamp, value)), from the
    lines in the file's last ``TAIL`` bytes (all of a small file)."""
    with confine.open_read(path) as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - TAIL))
        data = f.read(TAIL)
    lines = data.split(b"\n")
    if size > TAIL:
        lines = lines[1:]  # the first may be cut
    best = None
    for line in lines:
        p = parse_line(line) if line.strip() else None
        if p is not None and (best is None or _order(p) > _order(best)):
            best = p
    return best


def _order(p: MlflowMetricPoint) -> tuple:
    v = p.value
    return (p.step, p.timestamp_ms, v if v == v else float("-inf"))


class FileStore:
    """A ``mlruns/`` directory as an MlflowStore."""

    kind = "file store"

    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self.label = label
        self._run_dirs: dict[str, str] = {}  # run id -> its directory
        self._records: dict[str, tuple[tuple, MlflowRunRecord]] = {}  # run dir -> (file keys, record)
        self._files: dict[str, _MetricFile] = {}  # metric file path -> follower
        self._problems: dict[str, str] = {}  # where -> what
        self._deleted = 0

    # ---- listing ---------------------------------------------------------------------------------

    def _experiment_dirs(self) -> list[tuple[str, str]]:
        try:
            dirs, _ = list_dir(self.path)
        except OSError as e:
            raise MlflowStoreError(f"cannot list the MLflow file store {self.label}: {e.strerror or e}") from None
        return [(d, os.path.join(self.path, d)) for d in dirs if d not in SKIP and not d.startswith(".")]

    def _meta(self, where: str, path: str) -> dict[str, Any] | None:
        try:
            meta = read_meta(path)
        except FileNotFoundError:
            return None
        except MlflowStoreError as e:
            self._problems[where] = f"meta.yaml not read: {e}"
            return None
        except OSError as e:
            self._problems[where] = f"meta.yaml not read: {getattr(e, 'why', None) or e.strerror or e}"
            return None
        self._problems.pop(where, None)
        return meta

    def _experiments(self) -> list[tuple[MlflowExperiment, str]]:
        """Active experiments with their directories."""
        out = []
        for name, d in self._experiment_dirs():
            meta = self._meta(name, os.path.join(d, "meta.yaml"))
            if meta is None:
                continue
            exp = MlflowExperiment(_str(meta.get("experiment_id") or name), _str(meta.get("name")) or name,
                                   _str(meta.get("lifecycle_stage")) or "active")
            if exp.lifecycle_stage != "deleted":
                out.append((exp, d))
        return out

    def experiments(self) -> list[MlflowExperiment]:
        return [e for e, _ in self._experiments()]

    def runs(self) -> list[MlflowRunRecord]:
        out: list[MlflowRunRecord] = []
        run_dirs: dict[str, str] = {}
        deleted = 0
        seen: set[str] = set()
        for exp, d in self._experiments():
            try:
                subdirs, _ = list_dir(d)
            except OSError:
                continue
            for sub in subdirs:
                if sub in SKIP or sub.startswith("."):
                    continue
                rd = os.path.join(d, sub)
                rec = self._run(rd, f"{os.path.basename(d)}/{sub}", exp.experiment_id)
                if rec is None:
                    continue
                seen.add(rd)
                if rec.lifecycle_stage == "deleted":
                    deleted += 1
                    continue
                rec.experiment_id = exp.experiment_id  # the experiment it is filed under
                run_dirs[rec.run_id] = rd
                out.append(rec)
        for gone in set(self._records) - seen:
            self._records.pop(gone, None)
        self._run_dirs = run_dirs
        self._deleted = deleted
        return out

    def _run(self, rd: str, where: str, exp_id: str) -> MlflowRunRecord | None:
        """One run directory's record, re-read only when one of its files changed."""
        meta_path = os.path.join(rd, "meta.yaml")
        mk = confine.file_key(meta_path)
        if mk is None:
            return None  # not a run directory (or its meta.yaml is refused: said below)
        params = _walk_keys(os.path.join(rd, "params"))
        tags = _walk_keys(os.path.join(rd, "tags"))
        metrics = _walk_keys(os.path.join(rd, "metrics"))
        key = (mk, tuple((k, confine.file_key(p)) for k, p in params), tuple((k, confine.file_key(p)) for k, p in tags),
               tuple((k, confine.file_key(p)) for k, p in metrics))
        cached = self._records.get(rd)
        if cached is not None and cached[0] == key:
            return cached[1]
        meta = self._meta(where, meta_path)
        if meta is None:
            return None
        status = meta.get("status")
        status_text = STATUS.get(_int(status), "") if _int(status) is not None else _str(status).upper()
        run_id = _str(meta.get("run_id") or meta.get("run_uuid")) or os.path.basename(rd)
        rec = MlflowRunRecord(
            run_id=run_id, experiment_id=_str(meta.get("experiment_id")) or exp_id,
            name=_str(meta.get("run_name")), status=status_text or "RUNNING",
            start_time_ms=_int(meta.get("start_time")), end_time_ms=_int(meta.get("end_time")),
            lifecycle_stage=_str(meta.get("lifecycle_stage")) or "active", user_id=_str(meta.get("user_id")),
            store=self.label)
        for k, p in params:
            try:
                rec.params[k] = _read_value(p)
            except OSError:
                continue
        for k, p in tags:
            try:
                rec.tags[k] = _read_value(p)
            except OSError:
                continue
        if not rec.name:
            rec.name = rec.tags.get("mlflow.runName", "")
        for k, p in metrics:
            try:
                last = _last_point(p)
            except OSError:
                continue
            if last is not None:
                rec.latest[k] = last
        self._records[rd] = (key, rec)
        return rec

    # ---- history ---------------------------------------------------------------------------------

    def history(self, run_id: str, keys: list[str] | None = None) -> dict[str, list[MlflowMetricPoint]]:
        return {k: [MlflowMetricPoint(s, t, v) for s, t, v in zip(*cols)]
                for k, cols in self.history_arrays(run_id, keys).items()}

    def history_arrays(self, run_id: str, keys: list[str] | None = None) -> dict[str, tuple[array, array, array]]:
        """``history`` as (steps, timestamps, values) arrays per key, in (step, timestamp) order."""
        rd = self._run_dirs.get(run_id)
        if rd is None:
            self.runs()
            rd = self._run_dirs.get(run_id)
            if rd is None:
                raise MlflowStoreError(f"run {run_id} is no longer in the MLflow file store {self.label}")
        out: dict[str, tuple[array, array, array]] = {}
        want = None if keys is None else set(keys)
        for k, p in _walk_keys(os.path.join(rd, "metrics")):
            if want is not None and k not in want:
                continue
            mf = self._files.get(p)
            if mf is None:
                mf = self._files[p] = _MetricFile()
            try:
                mf.update(p)
            except OSError as e:
                self._problems[f"{run_id}:{k}"] = f"metrics/{k} not read: {getattr(e, 'why', None) or e.strerror or e}"
                continue
            if mf.bad:
                lines = ", ".join(map(str, mf.bad_lines))
                self._problems[f"{run_id}:{k}"] = (f"metrics/{k}: {mf.bad:,} line(s) skipped that are not "
                                                   f"'timestamp value step' (line {lines})")
            else:
                self._problems.pop(f"{run_id}:{k}", None)
            out[k] = sort_points(mf.steps, mf.stamps, mf.values)
        return out

    # ---- optional members -------------------------------------------------------------------------

    def problems(self, run_id: str | None = None) -> list[str]:
        """What could not be read (meta.yaml files, metric lines), one sentence each; with
        ``run_id``, only that run's."""
        if run_id is not None:
            return [v for k, v in sorted(self._problems.items()) if k.startswith(run_id + ":")]
        return [f"{k}: {v}" for k, v in sorted(self._problems.items()) if ":" not in k]

    @property
    def deleted(self) -> int:
        return self._deleted

