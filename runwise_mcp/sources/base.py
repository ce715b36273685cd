"""The interface every source format implements, and what the index hands to it.

A **source** (one module in this package, registered in ``sources/__init__.py``) answers:

* discovery: ``claim(path, files, subdirs)`` says whether a directory under a root is a run of
  this format (or holds runs as files), and whether the walk goes on below it;
* reading: ``open(path, ctx)`` returns a :class:`RunPart`, one unit of a run on disk (a wandb
  run directory, a TensorBoard run directory, ...). Parts with the same ``group_key`` are
  segments of one run (a resumed wandb run), merged by the index in start order;
* stores of many runs: a source with ``many = True`` (MLflow's ``mlruns/`` and ``mlflow.db``)
  returns a :class:`PartStore` from ``open``, whose ``parts()`` lists one RunPart per run; the
  index treats each like a part found on its own.

A :class:`RunPart` gives identity (id, name, group, tags, notes, start time), a cheap skim for
run lists, full and keyed reads into the shared ``History`` model, incremental follow of
growing files (``refresh`` reads only what is new), and the run's state with its basis. The
defaults below are what a simple format needs; the wandb part overrides them all (skims, keyed
reads, background reads, console).

The index never looks inside a part: adding a format is one module here plus one line in
``SOURCES``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..confine import Roots
from ..model import History, RunState


@dataclass
class ReadContext:
    """What a source gets from the index: the roots (readers open files through
    ``confine.open_read``, which the index confines to them), the persistent cache, the root the
    part was found under, how many processes a first read of a large log may use."""

    roots: Roots
    root: str = ""  # the configured root (resolved) this part was found under
    cache: Any = None  # LogCache or None
    read_workers: int = 1  # processes for the first read of a large log (Settings.read_workers)
    parallel_min_bytes: int = 32 << 20  # smaller logs are read in one process


@dataclass
class Claim:
    """A directory a source recognises."""

    run: bool = True  # the directory is one run part
    descend: bool = False  # the walk goes on into its sub-directories (other runs may be there)
    # names of files in the directory that are runs of their own (file-based formats). A claim
    # with files and ``run=False`` does not stop the other sources from looking at the directory.
    files: tuple[str, ...] = ()


@dataclass
class WalkRules:
    """``runwise.toml`` ``[sources]`` globs for one root, matched against paths relative to it:
    ``include`` makes a file a run candidate whatever its name, ``exclude`` skips a path (and
    everything below it) for every source."""

    root: str = ""
    include: tuple[re.Pattern, ...] = ()
    exclude: tuple[re.Pattern, ...] = ()

    def rel(self, path: str) -> str:
        rel = os.path.relpath(path, self.root) if self.root else path
        return rel.replace(os.sep, "/")

    def included(self, path: str) -> bool:
        if not self.include:
            return False
        rel = self.rel(path)
        return any(rx.match(rel) for rx in self.include)

    def excluded(self, path: str, is_dir: bool = False) -> bool:
        if not self.exclude:
            return False
        rel = self.rel(path)
        return any(rx.match(rel) or (is_dir and rx.match(rel + "/")) for rx in self.exclude)


@dataclass
class SegmentInfo:
    """How a part describes itself in answers (the ``source:`` line, --check, empty-log notes)."""

    source: str  # the format in a word: "wandb", "tensorboard", ...
    layout: str  # a finer kind within the format (wandb: "wandb" | "dryrun" | "console")
    main_file: str | None  # the file the history comes from (its newest, when several)
    label: str = ""  # how the source line names it ("" = basename of main_file)
    files: list[str] = field(default_factory=list)
    # format-specific wording for answers (absent: the W&B wording):
    #   empty: why the run has no metric yet; no_config: the answer for an empty config;
    #   config_from: where the config came from; clock: what rates are measured over
    #   (a rate is then only given over at least MIN_RATE_SPAN seconds)
    hints: dict[str, str] = field(default_factory=dict)
    # where the format records them (HF Trainer): (steps done, planned total, where the total is
    # from) and (steps per second, what the rate is measured over), for progress and ETA
    progress: tuple[int, int, str] | None = None
    rate: tuple[float, str] | None = None


class RunPart:
    """One unit of a run on disk, read incrementally. Subclasses set ``path``, ``source`` and
    implement the abstract members; the optional features default to "not supported"."""

    source = ""
    path = ""
    version = 0  # bumped whenever anything it holds changed

    # ---- identity -------------------------------------------------------------------------------
    @property
    def group_key(self) -> str:
        """Parts with the same key are segments of one run."""
        return f"{self.source}:{self.run_id}"

    @property
    def run_id(self) -> str:
        raise NotImplementedError

    @property
    def identity(self) -> dict[str, Any]:
        """name, project, entity, group, job_type, notes, host, tags (where the format has them)."""
        return {}

    @property
    def start_time(self) -> float | None:
        return None

    @property
    def info(self) -> SegmentInfo:
        raise NotImplementedError

    @property
    def producer(self) -> str:
        return self.source

    # ---- data ------------------------------------------------------------------------------------
    @property
    def history(self) -> History:
        raise NotImplementedError

    @property
    def system(self) -> History:
        return History()

    @property
    def config(self) -> dict[str, Any]:
        return {}

    @property
    def summary(self) -> dict[str, Any]:
        return {}

    @property
    def config_errors(self) -> list[str]:
        """Why config files could not be read (e.g. refused as an alias bomb), for get_config."""
        return []

    @property
    def metrics(self) -> dict[str, Any]:
        """Metric definitions (MetricDef by name) the format records."""
        return {}

    @property
    def environment(self) -> dict[str, Any]:
        return {}

    @property
    def runtime(self) -> float | None:
        return None

    @property
    def log_bytes(self) -> int:
        """Size of what the history is read from (for progress and notes)."""
        return 0

    def notes(self) -> list[str]:
        """Reader notes about the data (purged steps, restarts): said where the history is shown."""
        return []

    # ---- reading ---------------------------------------------------------------------------------
    def refresh(self, full: bool = False, skim_above: int = 0,
                progress: Callable[[int, int], None] | None = None) -> bool:
        """Re-read what changed on disk (only the new bytes of a grown file); True if anything
        changed. A part may skim logs over ``skim_above`` bytes unless ``full``."""
        raise NotImplementedError

    sampled = False  # only a skim is held
    sample_note = ""  # what a skim could not find (e.g. no rows in the sampled parts)
    full = True  # everything is held (and followed incrementally)
    in_memory = False  # counts against the memory budget
    points = 0

    def read_keys(self, names: frozenset[str], progress: Callable[[int, int], None] | None = None) -> bool:
        """Make the history of ``names`` complete; True when the part is now read in full."""
        self.refresh(full=True, progress=progress)
        return True

    def keyed_plan(self, names: frozenset[str]) -> tuple | None:
        """What a keyed read of ``names`` would decode from the start, to be decoded outside the
        index lock by ``decode_keyed`` and put in place by ``install_keyed`` (None: nothing, or
        not supported; ``read_keys`` then does it all under the lock)."""
        return None

    def decode_keyed(self, plan: tuple, progress: Callable[[int, int], None] | None = None) -> tuple | None:
        return None

    def install_keyed(self, decoded: tuple) -> None:
        pass

    def drop_keyed(self) -> None:
        pass

    keyed_names: frozenset[str] = frozenset()

    @property
    def keyed_state(self) -> tuple:
        return (self.path, self.version)

    def keyed_view(self) -> RunPart:
        return self

    def decode_detached(self, progress: Callable[[int, int], None] | None = None) -> tuple | None:
        """A full decode for a background thread (None: nothing to do in the background)."""
        return None

    def install_full(self, decoded: tuple) -> None:
        pass

    def evict(self) -> None:
        """Forget decoded data to free memory (the next refresh reads again)."""

    # ---- console ---------------------------------------------------------------------------------
    def console(self, patterns: list | None = None, tail_only: int = 0) -> Any:
        """A ConsoleFile of the part's console log, or None without one."""
        return None

    @property
    def log_console_lines(self) -> list[str]:
        return []

    @property
    def console_tail(self) -> list[str]:
        return []

    # ---- state -----------------------------------------------------------------------------------
    def state(self, now: float, stale_after: float) -> RunState:
        raise NotImplementedError

    def problems(self) -> list[str]:
        return []

    skip_reason = ""  # set when the part must not be listed at all (its only log is refused)


@dataclass
class DamageNotes:
    """Where a reader saw damage (the first few offsets), and the report sentence built from its
    counts. Each framing's ``Damage`` adds its own counters and ``parts()``."""

    first_offsets: list[int] = field(default_factory=list)

    def note(self, offset: int) -> None:
        if len(self.first_offsets) < 5:
            self.first_offsets.append(offset)

    def parts(self) -> list[str]:
        return []

    @property
    def any(self) -> bool:
        return bool(self.parts())

    def describe(self) -> str:
        parts = self.parts()
        if not parts:
            return ""
        where = ", ".join(f"{o:,}" for o in self.first_offsets)
        return "; ".join(parts) + (f" (at byte {where})" if where else "")


class PartStore:
    """Many run parts behind one path: a database or a store directory that holds many runs
    (MLflow's ``mlflow.db`` and ``mlruns/``). A source with ``many = True`` returns one from
    ``open``; the index calls ``parts()`` on every listing and treats each part it returns like
    a part found on its own (keyed by the part's ``path``, which must be unique and stable).
    ``parts()`` returns the same part objects for runs it returned before (updating them and
    bumping their ``version`` when the store changed), so unchanged runs cost nothing."""

    source = ""
    path = ""

    def parts(self) -> list[RunPart]:
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What the store could not read (a damaged record, a refused file), one sentence each."""
        return []


class Source:
    """A format: discovery and opening. Subclasses are registered in ``sources.SOURCES``."""

    name = ""
    describe = ""  # what it looks for, for the no-runs message
    many = False  # open() returns a PartStore (several runs behind one path), not a RunPart

    def claim(self, path: str, files: tuple[str, ...], subdirs: tuple[str, ...], roots: Roots) -> Claim | None:
        raise NotImplementedError

    def claim_files(self, path: str, files: tuple[str, ...], rules: WalkRules) -> list[str]:
        """Names of files in ``path`` (a directory no source owns whole) that are runs of this
        format, one run part each (opened with the file's path). Called for every directory the
        walk reaches that is not claimed with ``descend=False``; the default claims none."""
        return []

    def name_hint(self, name: str) -> bool:
        """Whether a directory of this name is worth listing even below the scan depth."""
        return False

    def open(self, path: str, ctx: ReadContext) -> RunPart | PartStore:
        raise NotImplementedError


def glob_regex(pattern: str) -> re.Pattern:
    """A glob relative to a root as a regex: ``**`` any number of directories, ``*`` and ``?``
    within one path part, ``[...]`` as in fnmatch."""
    out = []
    i = 0
    p = pattern.strip().strip("/")
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        elif p[i] == "[":
            j = p.find("]", i + 1)
            if j < 0:
                out.append(re.escape(p[i]))
                i += 1
            else:
                out.append(fnmatch.translate(p[i:j + 1])[4:-3])
                i = j + 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")
