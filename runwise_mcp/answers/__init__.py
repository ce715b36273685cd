"""One function per tool: resolve runs through the index, analyse, render.

Shared by the MCP server and the command line. Problems the caller can act on raise
``UserError`` with a message that says what was looked at and what to do next.

  common.py   run resolution, key choice, "why is it missing" notes, the console as a source
  runs.py     list_runs, list_keys, get_config (and the --check report)
  single.py   run_summary, get_history, history_stats, diagnose_run
  across.py   best_run, compare_runs, aggregate_runs
  live.py     tail_run
  sync.py     sync_runs
"""

from .across import aggregate_runs, best_run, compare_runs
from .common import UserError
from .live import tail_run
from .runs import check_report, get_config, list_keys, list_runs
from .single import diagnose_run, get_history, history_stats, run_summary
from .sync import sync_runs

__all__ = [
    "UserError", "aggregate_runs", "best_run", "check_report", "compare_runs", "diagnose_run", "get_config",
    "get_history", "history_stats", "list_keys", "list_runs", "run_summary", "sync_runs", "tail_run",
]
