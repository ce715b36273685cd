"""`runwise`: the MCP tools from a terminal. Each command calls the same answer function as its tool
and prints the same text (no answer logic here). Exit status 0, or 1 with the error on stderr."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import time
from collections.abc import Callable

from . import __version__, answers
from .config import load_settings
from .render import text as rt

COMMANDS = {  # command: the tool it prints
    "list": "list_runs", "summary": "run_summary", "keys": "list_keys", "config": "get_config",
    "history": "get_history", "stats": "history_stats", "best": "best_run", "compare": "compare_runs",
    "aggregate": "aggregate_runs", "diagnose": "diagnose_run", "tail": "tail_run", "export": "sync_runs",
    "status": "sync_runs", "plot": "plot_runs",
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="runwise",
        description="Read ML training runs from the terminal: the runwise-mcp tools as commands, printing the "
                    "text the tools return.",
        epilog="RUN is a run's name or id, a unique prefix, or latest. KEY is a metric name or a glob such as "
               "train/* (several: -k a -k b, or -k a,b). Configuration as for runwise-mcp (runwise-mcp --help).")
    ap.add_argument("--root", action="append", metavar="PATH",
                    help="directory to search for runs (repeatable); default $RUNWISE_PROJECT_ROOT, else the "
                         "working directory")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the cache of decoded logs")
    ap.add_argument("--version", action="version", version=f"runwise {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=f"{help} ({COMMANDS[name]})", description=f"{help}; prints what the "
                              f"{COMMANDS[name]} tool returns.")

    def run_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", nargs="?", default="latest", metavar="RUN", help="default: latest")

    def keys_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
        p.add_argument("-k", "--keys", action="append", required=required, metavar="KEY",
                       help="metric name or glob (repeatable)" + ("" if required else "; default: main metrics"))

    p = cmd("list", "find runs")
    p.add_argument("-q", "--query", default="")
    p.add_argument("--state", default="any", choices=["any", "running", "finished", "crashed", "killed"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p = cmd("summary", "how a run goes")
    run_arg(p)
    keys_arg(p)
    for name, what in (("keys", "a run's metric keys"), ("config", "a run's config")):
        p = cmd(name, what)
        run_arg(p)
        p.add_argument("-p", "--pattern", default="", help="substring or glob filter")
    p = cmd("history", "metric history as CSV")
    run_arg(p)
    keys_arg(p, required=True)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--step-min", type=int)
    p.add_argument("--step-max", type=int)
    p.add_argument("--source", default="auto", choices=["auto", "history", "console"])
    p.add_argument("--csv", action="store_true", help="only the CSV (no # lines)")
    for name, what in (("stats", "per-key statistics over all points"), ("diagnose", "anomalies")):
        p = cmd(name, what)
        run_arg(p)
        keys_arg(p)
    p = cmd("best", "rank runs by a metric")
    p.add_argument("metric", metavar="METRIC")
    p.add_argument("--goal", default="auto", choices=["auto", "min", "max"])
    p.add_argument("--top", type=int, default=5)
    p.add_argument("-q", "--query", default="")
    p.add_argument("--by", default="best", choices=["best", "last"])
    p = cmd("compare", "runs side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="2-10 runs, each optionally @STEP, @stage:K, @KEY=VALUE")
    keys_arg(p)
    p.add_argument("--prefix")
    p.add_argument("--min-change-pct", type=float, default=0)
    p.add_argument("--no-config-diff", action="store_true")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--format", choices=["text", "md", "csv", "json"], default="text")
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="same as --format csv")
    p = cmd("aggregate", "mean ± std across runs")
    p.add_argument("runs", nargs="*", metavar="RUN", help="default: the runs matching --query")
    p.add_argument("-q", "--query", default="")
    keys_arg(p)
    p.add_argument("--at", help="a step such as 50000, 50k or 1.2M; default: each run's end")
    p = cmd("tail", "live view: latest values, speed, last console lines")
    run_arg(p)
    p.add_argument("-n", "--lines", type=int, default=20)
    p.add_argument("--cursor")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between looks with -f (default 2)")
    p = cmd("export", "export runs' logs as jsonl/json/yaml")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--dest", help="directory to write to (default: the cache directory)")
    p.add_argument("--in-place", action="store_true", help="write next to the run (into its directory)")
    p.add_argument("--csv", action="store_true", help="CSV export (the export tool's format=csv)")
    p = cmd("status", "sync state and damaged logs")
    p.add_argument("runs", nargs="*", metavar="RUN")
    p = cmd("plot", "PNG chart of runs' curves")
    p.add_argument("runs", nargs="*", metavar="RUN", help="default: latest")
    keys_arg(p)
    p.add_argument("--step-min", type=int)
    p.add_argument("--step-max", type=int)
    p.add_argument("--log-y", action="store_true")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png")
    return ap


def _keys(a: argparse.Namespace) -> list[str] | None:
    return list(a.keys) if getattr(a, "keys", None) else None


def call(a: argparse.Namespace, index) -> str:
    """The text of the tool behind command ``a``, as the tool returns it."""
    c = a.command
    if c == "list":
        return answers.list_runs(index, a.query, a.state, a.limit, a.offset)
    if c == "summary":
        return answers.run_summary(index, a.run, _keys(a))
    if c == "keys":
        return answers.list_keys(index, a.run, a.pattern)
    if c == "config":
        return answers.get_config(index, a.run, a.pattern)
    if c == "history":
        out = answers.get_history(index, a.run, _keys(a), a.samples, a.step_min, a.step_max, a.source)
        if a.csv:
            out = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
        return out
    if c == "stats":
        return answers.history_stats(index, a.run, _keys(a))
    if c == "diagnose":
        return answers.diagnose_run(index, a.run, _keys(a))
    if c == "best":
        return answers.best_run(index, a.metric, a.goal, a.top, a.query, a.by)
    if c == "compare":
        return answers.compare_runs(index, a.runs, _keys(a), a.prefix, a.min_change_pct, not a.no_config_diff,
                                    a.format)
    if c == "aggregate":
        at = int(a.at) if a.at is not None and a.at.isdigit() else a.at
        return answers.aggregate_runs(index, a.runs or None, a.query, _keys(a), at)
    if c == "tail":
        return answers.tail_run(index, a.run, a.lines, a.cursor)
    if c == "status":
        return answers.sync_runs(index, a.runs or None, "status")
    if c == "export":
        if a.csv:
            if "format" not in inspect.signature(answers.sync_runs).parameters:
                raise answers.UserError("export --csv needs the export tool's csv format, which this version "
                                        "does not have yet; without --csv it writes jsonl, json and yaml")
            return answers.sync_runs(index, a.runs, "export", a.dest, a.in_place, format="csv")
        return answers.sync_runs(index, a.runs, "export", a.dest, a.in_place)
    if c == "plot":
        from .answers.plot import plot_runs

        png, caption = plot_runs(index, a.runs or None, _keys(a), a.step_min, a.step_max, a.log_y)
        with open(a.output, "wb") as f:  # the user's own output file, not a run directory
            f.write(png)
        return f"{caption}\nwrote {a.output}"
    raise answers.UserError(f"unknown command {c}")  # argparse rejects it first


_CURSOR = re.compile(r"^cursor (\S+): ", re.M)


def follow(a: argparse.Namespace, index, emit: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
           rounds: int | None = None) -> None:
    """`tail -f`: the tail_run answer, then every ``interval`` seconds the answer for the cursor it
    gave, printed when there is something new (until Ctrl-C, or ``rounds`` looks in tests)."""
    out = rt.guard(answers.tail_run(index, a.run, a.lines, a.cursor))
    emit(out)
    cursor = m.group(1) if (m := _CURSOR.search(out)) else None
    last = out
    n = 0
    while rounds is None or n < rounds:
        n += 1
        sleep(a.interval)
        out = rt.guard(answers.tail_run(index, a.run, a.lines, cursor))
        new_cursor = m.group(1) if (m := _CURSOR.search(out)) else None
        quiet = "no new console output since the cursor" in out or (cursor is None and out == last)
        if not quiet:
            emit(out)
        cursor, last = new_cursor or cursor, out


def main(argv: list[str] | None = None, index=None) -> None:
    """``index``: an index to answer from instead of one of --root (tests pass one with a fixed clock)."""
    a = _parser().parse_args(argv)
    if index is None:
        try:
            settings = load_settings(a.root)
            if a.no_cache:
                settings.cache_dir = None
        except ValueError as e:
            print(f"runwise: {e}", file=sys.stderr)
            sys.exit(1)
        from .index import RunIndex

        index = RunIndex(settings)
    try:
        if a.command == "tail" and a.follow:
            try:
                follow(a, index, lambda s: print(s + "\n", flush=True))
            except KeyboardInterrupt:
                pass
            sys.exit(0)
        print(rt.guard(call(a, index)))
    except answers.UserError as e:
        print(f"runwise: {rt.guard(str(e))}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # e.g. `runwise list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as e:  # e.g. plot -o into a directory that does not exist
        print(f"runwise: {e.strerror or e}: {getattr(e, 'filename', '') or ''}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:
        print(f"runwise: internal error: {type(e).__name__}: {e}. This is a bug in runwise; "
              f"`runwise-mcp --check` shows what it can read.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
