"""Settings from the command line and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .confine import Refused, Roots

ENV_ROOT = "RUNWISE_PROJECT_ROOT"
ENV_STALE = "RUNWISE_STALE_MINUTES"
ENV_DEPTH = "RUNWISE_SCAN_DEPTH"
ENV_MAIN_METRIC = "RUNWISE_MAIN_METRIC"
ENV_CACHE_MB = "RUNWISE_CACHE_MB"
ENV_WANDB_CLI = "RUNWISE_WANDB_CLI"  # the wandb command sync_runs(action="upload") runs
ENV_CACHE_DIR = "RUNWISE_CACHE_DIR"  # where decoded logs are cached; "off" disables the cache
ENV_READ_WORKERS = "RUNWISE_READ_WORKERS"  # processes for the first read of a large .wandb log (1: one)
ENV_PARALLEL_MIN_MB = "RUNWISE_PARALLEL_MIN_MB"  # logs smaller than this are read in one process
ENV_MLFLOW_URI = "MLFLOW_TRACKING_URI"  # MLflow's own variable: a tracking server, or a file:/sqlite: store

DEFAULT_STALE_MINUTES = 10.0
DEFAULT_DEPTH = 6
MAX_DEPTH = 64  # RUNWISE_SCAN_DEPTH is capped here (the walk recurses once per level)
DEFAULT_CACHE_MB = 1024
DEFAULT_PARALLEL_MIN_MB = 32.0
MAX_READ_WORKERS = 8  # the default number of read processes is the cores, at most this many
CPU_MAX = "/sys/fs/cgroup/cpu.max"  # a cgroup v2 CPU quota ("QUOTA PERIOD", or "max PERIOD")
SKIM_ABOVE_BYTES = 256 << 10  # run lists only skim logs larger than this; tools on one run read it all
BYTES_PER_POINT = 16  # memory estimate of one cached history value (value + step)


@dataclass
class Settings:
    roots: list[str]
    stale_after: float = DEFAULT_STALE_MINUTES * 60  # seconds without a write before "killed"
    max_depth: int = DEFAULT_DEPTH
    main_metrics: list[str] = field(default_factory=list)  # preferred main metric keys, in order
    roots_from: str = "cwd"  # "--root" | ENV_ROOT | "cwd"
    cache_mb: float = DEFAULT_CACHE_MB  # memory for fully read histories; least recently used go first
    skim_above: int = SKIM_ABOVE_BYTES
    diagnose: dict = field(default_factory=dict)  # [diagnose] thresholds from the project config file
    console_patterns: list = field(default_factory=list)  # [console] patterns: extra regexes for output.log
    config_file: str = ""  # the runwise.toml / pyproject.toml it came from
    config_problems: list[str] = field(default_factory=list)
    cache_dir: str | None = None  # persistent cache of decoded logs (None: off)
    # our own directories (the user cache: decoded logs, answer memos, default exports): never
    # walked nor read as run data, even when a root holds them (root = $HOME)
    own_dirs: list[str] = field(default_factory=list)
    cache_min_bytes: int = 4 << 20  # logs smaller than this are not cached (decoding them is quicker)
    first_answer_wait: float = 1.5  # seconds run_summary, list_keys wait at most for a background read (less if it cannot finish)
    background_above: int = 32 << 20  # logs (bytes, all segments) that run_summary and list_keys read in the background
    include: list[str] = field(default_factory=list)  # [sources] include: globs (relative to a root) of extra run files
    exclude: list[str] = field(default_factory=list)  # [sources] exclude: globs of paths the walk skips
    # MLflow tracking servers (http(s) URIs) from --mlflow, else MLFLOW_TRACKING_URI; read over REST
    mlflow_servers: list[str] = field(default_factory=list)
    # local MLflow stores named by file:/sqlite: URIs there (a mlruns/ directory, a .db file): read by
    # the local MLflow readers; each is added to the roots when no root holds it already
    mlflow_local: list[str] = field(default_factory=list)
    mlflow_from: str = ""  # "--mlflow" | ENV_MLFLOW_URI | ""
    env: dict[str, str] = field(default_factory=dict, repr=False)  # the environment read (MLFLOW_TRACKING_* auth)
    read_workers: int = 1  # processes for the first read of a large .wandb log (sources/wandb_parallel.py)
    parallel_min_bytes: int = int(DEFAULT_PARALLEL_MIN_MB * 2**20)  # smaller logs: one process


def _float_env(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not v > 0:
        raise ValueError(f"{name}={raw!r} must be greater than 0")
    return v


def load_settings(roots: list[str] | None = None, env: dict[str, str] | None = None,
                  cwd: str | None = None, mlflow: list[str] | None = None) -> Settings:
    """--root wins, else RUNWISE_PROJECT_ROOT (os.pathsep-separated), else the working directory.
    --mlflow wins, else MLFLOW_TRACKING_URI."""
    env = dict(os.environ) if env is None else env
    if roots:
        chosen, source = list(roots), "--root"
    elif env.get(ENV_ROOT, "").strip():
        chosen = [p for p in env[ENV_ROOT].split(os.pathsep) if p.strip()]
        source = ENV_ROOT
    else:
        chosen, source = [cwd or os.getcwd()], "cwd"
    chosen = [os.path.abspath(os.path.expanduser(p.strip())) for p in chosen]
    depth = _float_env(env, ENV_DEPTH, DEFAULT_DEPTH)
    project, config_file, problems = load_project_config(list(dict.fromkeys(chosen)) + [cwd or os.getcwd()])
    if depth > MAX_DEPTH:
        problems.append(f"{ENV_DEPTH}={env[ENV_DEPTH].strip()[:20]} is over the maximum of {MAX_DEPTH}: "
                        f"searching {MAX_DEPTH} directory levels below each root; set {ENV_DEPTH} to {MAX_DEPTH} "
                        f"or less, or pass a deeper directory as the root")
        depth = MAX_DEPTH
    depth = int(depth)
    diagnose = project.get("diagnose", {})
    if not isinstance(diagnose, dict):
        problems.append(f"{config_file}: [diagnose] must be a table")
        diagnose = {}
    cache_dir = _cache_dir(env)
    console = project.get("console", {})
    patterns = console.get("patterns", []) if isinstance(console, dict) else []
    include, exclude = _source_globs(project.get("sources", {}), config_file, problems)
    try:
        servers, local, mlflow_from = mlflow_uris(mlflow, env, cwd or os.getcwd())
    except ValueError as e:
        if mlflow:  # given on the command line: an error
            raise
        # MLflow's own variable may be set for other tools (databricks, postgresql://...): say so, go on
        problems.append(f"{e}; MLflow runs are not read")
        servers, local, mlflow_from = [], [], ""
    roots_final = list(dict.fromkeys(chosen))
    for path in local:  # a local store named by URI is read where it is, like a root
        where = path if os.path.isdir(path) else os.path.dirname(path)
        if not any(_under(where, r) for r in roots_final):
            roots_final.append(where)
    return Settings(
        roots=roots_final,
        stale_after=_float_env(env, ENV_STALE, DEFAULT_STALE_MINUTES) * 60,
        max_depth=depth,
        main_metrics=[m.strip() for m in env.get(ENV_MAIN_METRIC, "").split(",") if m.strip()],
        roots_from=source,
        cache_mb=_float_env(env, ENV_CACHE_MB, DEFAULT_CACHE_MB),
        diagnose=diagnose,
        console_patterns=patterns if isinstance(patterns, list) else [patterns],
        config_file=config_file,
        config_problems=problems,
        cache_dir=cache_dir,
        own_dirs=[user_cache_dir(env)] + ([cache_dir] if cache_dir else []),
        include=include,
        exclude=exclude,
        mlflow_servers=servers,
        mlflow_local=local,
        mlflow_from=mlflow_from,
        env=env,
        read_workers=min(int(_float_env(env, ENV_READ_WORKERS, 0) or default_workers()), 64),
        parallel_min_bytes=int(_float_env(env, ENV_PARALLEL_MIN_MB, DEFAULT_PARALLEL_MIN_MB) * 2**20),
    )


def default_workers(cpu_max: str = CPU_MAX) -> int:
    """Read processes by default: the cores this process may use (its CPU affinity), capped by a
    cgroup v2 CPU quota (a container given 2 CPUs of a 64-core host), at most MAX_READ_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cpu_quota(cpu_max)
    if quota is not None:
        cores = min(cores, quota)
    return max(1, min(cores, MAX_READ_WORKERS))


def cpu_quota(path: str) -> int | None:
    """Whole CPUs of a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD": none), rounded up."""
    try:
        with open(path, encoding="ascii") as f:
            quota, period = f.read(64).split()[:2]
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _under(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def mlflow_uris(given: list[str] | None, env: dict[str, str], cwd: str) -> tuple[list[str], list[str], str]:
    """``(servers, local paths, where from)``. A tracking URI is ``http(s)://…`` (a server),
    ``file:…`` or a plain path (a ``mlruns/`` file store), or ``sqlite:///…`` (a SQLite store;
    three slashes and a relative path, four and an absolute one, as in SQLAlchemy). Anything else
    (``databricks``, ``postgresql://…``) is an error: runwise cannot read it."""
    if given:
        raw, source = [u for u in given if u.strip()], "--mlflow"
    elif env.get(ENV_MLFLOW_URI, "").strip():
        raw, source = [env[ENV_MLFLOW_URI]], ENV_MLFLOW_URI
    else:
        return [], [], ""
    servers: list[str] = []
    local: list[str] = []
    for uri in raw:
        u = uri.strip()
        low = u.lower()
        if low.startswith(("http://", "https://")):
            servers.append(u)
        elif low.startswith("sqlite:"):
            rest = u[len("sqlite:"):]
            if not rest.startswith("///") or len(rest) == 3:
                raise ValueError(f"{source}: {_no_secret(u)!r} is not a SQLite store URI; write sqlite:///relative/m.db "
                                 f"or sqlite:////absolute/m.db")
            path = rest[3:].split("?", 1)[0]
            local.append(os.path.abspath(os.path.join(cwd, os.path.expanduser(path))))
        elif low.startswith("file:"):
            from urllib.parse import unquote, urlsplit

            p = urlsplit(u)
            path = unquote(p.path) if p.netloc in ("", "localhost") else ""
            if not path:
                raise ValueError(f"{source}: {_no_secret(u)!r} is not a local file store URI; write file:///abs/mlruns "
                                 f"or file:./mlruns")
            local.append(os.path.abspath(os.path.join(cwd, os.path.expanduser(path))))
        elif low.split(":", 1)[0] in ("databricks", "databricks-uc", "uc"):
            raise ValueError(f"{source}: {_no_secret(u)!r} is a Databricks workspace, which runwise cannot read; give "
                             f"an http(s):// tracking server, a file: store (mlruns/) or a sqlite:/// database")
        elif "://" not in u and ":" not in u.split("/", 1)[0]:  # a plain path, as mlflow accepts
            local.append(os.path.abspath(os.path.join(cwd, os.path.expanduser(u))))
        else:
            raise ValueError(f"{source}: {_no_secret(u)!r} is a store runwise cannot read; give an http(s):// tracking "
                             f"server, a file: store (mlruns/) or a sqlite:/// database, or unset {ENV_MLFLOW_URI}")
    return list(dict.fromkeys(servers)), list(dict.fromkeys(local)), source


def _no_secret(uri: str) -> str:
    """A URI for messages, without ``user:password@``."""
    head, sep, tail = uri.partition("://")
    if sep and "@" in tail.split("/", 1)[0]:
        tail = tail.split("@", 1)[1]
    return (head + sep + tail)[:200]


def _source_globs(table: object, config_file: str, problems: list[str]) -> tuple[list[str], list[str]]:
    """``[sources] include`` / ``exclude``: lists of globs relative to a root (a single string is
    accepted as a list of one). Bad entries are reported and dropped; the rest apply."""
    if not isinstance(table, dict):
        problems.append(f"{config_file}: [sources] must be a table, e.g. [sources] include = [\"exp/**/metrics.jsonl\"]")
        return [], []
    out: dict[str, list[str]] = {"include": [], "exclude": []}
    for key in sorted(table):
        if key not in out:
            problems.append(f"{config_file}: [sources] has no setting {str(key)[:40]!r} (only include and exclude)")
            continue
        raw = table[key]
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list):
            problems.append(f"{config_file}: [sources] {key} must be a list of globs, e.g. {key} = [\"scratch/**\"]")
            continue
        for g in items:
            if not isinstance(g, str) or not g.strip():
                problems.append(f"{config_file}: [sources] {key}: {str(g)[:60]!r} is not a glob (a non-empty string)")
            elif os.path.isabs(g) or g.strip().startswith("..") or "/../" in g:
                problems.append(f"{config_file}: [sources] {key}: {g[:100]!r} must be relative to a root "
                                f"(no leading / or ..); ignored")
            else:
                out[key].append(g.strip())
    return out["include"], out["exclude"]


def _cache_dir(env: dict[str, str]) -> str | None:
    raw = env.get(ENV_CACHE_DIR, "").strip()
    if raw.lower() in ("off", "0", "none", "false"):
        return None
    if raw:
        return os.path.abspath(os.path.expanduser(raw))
    return os.path.join(user_cache_dir(env), "logs")


def user_cache_dir(env: dict[str, str]) -> str:
    """$XDG_CACHE_HOME/runwise-mcp (default ~/.cache/runwise-mcp): the log cache and exports live here."""
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "runwise-mcp")


def load_project_config(dirs: list[str]) -> tuple[dict, str, list[str]]:
    """The first ``runwise.toml``, or ``pyproject.toml`` with a ``[tool.runwise]`` table, found in
    ``dirs`` (the roots, then the working directory). A file that does not parse is reported
    and skipped; defaults apply."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    problems: list[str] = []
    for d in dirs:
        for name in ("runwise.toml", "pyproject.toml"):
            path = os.path.join(d, name)
            if not os.path.lexists(path):
                continue
            try:  # opened inside its own directory only: a link to a file elsewhere is refused
                data = tomllib.loads(Roots([d]).read(path, 1 << 20).decode("utf-8"))
            except Refused as e:
                problems.append(f"{path} ignored: {e.why}")
                continue
            except ValueError as e:  # too large
                problems.append(f"{path} ignored: {e}")
                continue
            except OSError as e:
                problems.append(f"{path} ignored: {e.strerror or e}")
                continue
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
                problems.append(f"{path} ignored: {type(e).__name__}: {str(e)[:200]}")
                continue
            if name == "pyproject.toml":
                data = data.get("tool", {}).get("runwise")
                if not isinstance(data, dict):
                    continue
            return data, path, problems
    return {}, "", problems
