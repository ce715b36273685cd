"""Command line: serve over stdio (default), --check, --version."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .config import (
    ENV_CACHE_DIR,
    ENV_CACHE_MB,
    ENV_DEPTH,
    ENV_MAIN_METRIC,
    ENV_MLFLOW_URI,
    ENV_PARALLEL_MIN_MB,
    ENV_READ_WORKERS,
    ENV_ROOT,
    ENV_STALE,
    ENV_WANDB_CLI,
    load_settings,
)

TTY_NOTE = ("runwise-mcp is an MCP server that your editor starts (it talks JSON-RPC on stdin/stdout); "
            "to see what it can read, run: runwise-mcp --check [--root PATH]; for a terminal, use: runwise --help")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="runwise-mcp",
        description="MCP server (stdio) that reads ML training runs on this machine: W&B run directories "
                    "of every generation, including offline, killed and running runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""environment variables:
  {ENV_ROOT}    directories to search (os.pathsep-separated); --root wins
  {ENV_STALE}   minutes without a write before a run counts as killed (default 10)
  {ENV_DEPTH}      how deep to search below each root (default 6)
  {ENV_CACHE_MB}        memory for fully read histories, MB (default 1024)
  {ENV_CACHE_DIR}       cache of decoded logs (default $XDG_CACHE_HOME/runwise-mcp/logs; off to disable)
  {ENV_READ_WORKERS}    processes for the first read of a large .wandb log (default: the cores, at most 8; 1: one)
  {ENV_PARALLEL_MIN_MB} logs smaller than this are read in one process (default 32)
  {ENV_MAIN_METRIC}     comma-separated metric keys list_runs shows, in order of preference
  {ENV_WANDB_CLI}       the wandb command sync_runs(action="upload") runs (default: wandb on PATH)
  XDG_CACHE_HOME          base of the cache directory (default ~/.cache)
  {ENV_MLFLOW_URI}     an MLflow tracking server (http/https) or store (file:, sqlite:); --mlflow wins
  MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_INSECURE_TLS
                          credentials and TLS for that server, as MLflow uses them
  RUNWISE_MLFLOW_TIMEOUT  seconds per request to an MLflow server (default 10)

config files (the first found in the roots, then the working directory):
  runwise.toml            tables [diagnose] (thresholds), [console] (patterns), [sources] (include/exclude)
  pyproject.toml          the same settings in a [tool.runwise] table

Started by an editor over stdio; in a terminal use --check, or the `runwise` command.""",
    )
    ap.add_argument("--root", action="append", metavar="PATH",
                    help=f"directory to search for runs (repeatable); default ${ENV_ROOT}, else the working directory")
    ap.add_argument("--mlflow", action="append", metavar="URI",
                    help=f"an MLflow tracking server (http(s)://host:port) or store (file:…, sqlite:///…) to read "
                         f"(repeatable); default ${ENV_MLFLOW_URI}")
    ap.add_argument("--no-cache", action="store_true",
                    help=f"do not read or write the persistent cache of decoded logs (also: {ENV_CACHE_DIR}=off)")
    ap.add_argument("--check", action="store_true",
                    help="print the roots, the runs found and what could not be read, then exit (0 ok, 1 not)")
    ap.add_argument("--version", action="version", version=f"runwise-mcp {__version__}")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings(args.root, mlflow=args.mlflow)
        if args.no_cache:
            settings.cache_dir = None
    except ValueError as e:
        print(f"runwise-mcp: {e}", file=sys.stderr)
        sys.exit(2)
    if args.check:
        from .answers import check_report
        from .index import RunIndex

        ok, report = check_report(RunIndex(settings))
        print(report)
        sys.exit(0 if ok else 1)
    if sys.stdin is not None and sys.stdin.isatty():  # started by hand: say what this is, on stderr only
        print(TTY_NOTE, file=sys.stderr, flush=True)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="runwise-mcp %(levelname)s %(name)s: %(message)s")
    for problem in settings.config_problems:  # e.g. RUNWISE_SCAN_DEPTH capped, runwise.toml ignored
        logging.getLogger("runwise_mcp").warning("%s", problem)
    from .server import build_server

    build_server(settings).run()


if __name__ == "__main__":
    main()
