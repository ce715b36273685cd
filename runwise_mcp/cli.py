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
    ENV_ROOT,
    ENV_STALE,
    load_settings,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="runwise-mcp",
        description="MCP server (stdio) that reads ML training runs on this machine: W&B run directories "
                    "of every generation, including offline, killed and running runs.",
        epilog=f"Environment: {ENV_ROOT} (roots, os.pathsep-separated), {ENV_STALE} (default 10), "
               f"{ENV_DEPTH} (default 6), {ENV_CACHE_MB} (default 1024), {ENV_MAIN_METRIC} (comma-separated keys), "
               f"{ENV_CACHE_DIR} (default $XDG_CACHE_HOME/runwise-mcp/logs; off to disable), "
               f"{ENV_MLFLOW_URI} (an MLflow tracking server or store; with MLFLOW_TRACKING_TOKEN, "
               f"MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_INSECURE_TLS, RUNWISE_MLFLOW_TIMEOUT).",
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
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="runwise-mcp %(levelname)s %(name)s: %(message)s")
    for problem in settings.config_problems:  # e.g. RUNWISE_SCAN_DEPTH capped, runwise.toml ignored
        logging.getLogger("runwise_mcp").warning("%s", problem)
    from .server import build_server

    build_server(settings).run()


if __name__ == "__main__":
    main()
