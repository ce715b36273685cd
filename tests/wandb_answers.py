"""Every read tool's answer on the W&B fixtures with a fixed clock: the golden snapshot that pins
W&B answers byte for byte across refactors (tests/snapshots/wandb_answers.json).

Regenerate (only when an answer is meant to change) from a checkout of the code to pin:
    python tests/wandb_answers.py REPO_DIR tests/snapshots/wandb_answers.json
Paths of the checkout and file-age phrases (which depend on when files were copied) are
normalised, so the snapshot holds no machine path.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

NOW = 1796200000.0
ROOTS = ("tests/fixtures/wandb_runs", "tests/fixtures/analysis_runs", "tests/fixtures/console_runs")
_AGE = re.compile(r"(nothing written for|last write|last log record) [0-9][0-9hmsd.]*( ago)?")


def normalise(text: str, repo: Path) -> str:
    return _AGE.sub(r"\1 <AGE>\2", text.replace(str(repo), "<REPO>"))


def answers_of(repo: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Every answer; ``env``: more environment for the settings (e.g. RUNWISE_READ_WORKERS)."""
    from runwise_mcp import answers as a
    from runwise_mcp.config import load_settings
    from runwise_mcp.index import RunIndex

    settings = load_settings([str(repo / r) for r in ROOTS], env={"RUNWISE_CACHE_DIR": "off", **(env or {})},
                             cwd=str(repo))
    ix = RunIndex(settings, clock=lambda: NOW)
    res: dict[str, str] = {}

    def call(name: str, fn) -> None:
        try:
            res[name] = normalise(fn(), repo)
        except Exception as e:  # an error answer is an answer too
            res[name] = normalise(f"ERROR {type(e).__name__}: {e}", repo)

    runs = [r.id for r in ix.runs()]
    call("list_runs", lambda: a.list_runs(ix, limit=50))
    call("list_runs query", lambda: a.list_runs(ix, query="killed"))
    for rid in runs:
        call(f"run_summary {rid}", lambda: a.run_summary(ix, rid))
        call(f"list_keys {rid}", lambda: a.list_keys(ix, rid))
        call(f"get_config {rid}", lambda: a.get_config(ix, rid))
        call(f"history_stats {rid}", lambda: a.history_stats(ix, rid))
        call(f"diagnose_run {rid}", lambda: a.diagnose_run(ix, rid))
        call(f"get_history {rid}", lambda: a.get_history(ix, rid, samples=20))
        call(f"tail_run {rid}", lambda: a.tail_run(ix, rid, lines=5))
    call("best_run", lambda: a.best_run(ix, "train/loss"))
    call("compare_runs", lambda: a.compare_runs(ix, runs[:3]))
    call("compare_runs at step", lambda: a.compare_runs(ix, [f"{runs[0]}@50", runs[1]]))
    call("aggregate_runs", lambda: a.aggregate_runs(ix))
    call("sync_runs", lambda: a.sync_runs(ix))
    return res


if __name__ == "__main__":
    repo = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(repo))
    out = answers_of(repo)
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"{len(out)} answers")
