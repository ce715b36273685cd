"""The MCP server: tool declarations only. Each tool parses its arguments and calls answers."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from . import __version__, answers
from .answers.plot import plot_runs as plot_answer
from .arguments import problem as argument_problem
from .config import Settings, load_settings
from .index import READ_PROGRESS, RunIndex, log_failure
from .liveness import CANCEL, Cancelled
from .render import text as rt
from .render.answers import LIST_LIMIT

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Reads ML training runs on this machine (W&B run directories, offline or online, including killed "
    "and running runs; TensorBoard event files; MLflow stores and tracking servers; HF Trainer, Lightning, "
    "Keras, JSONL/CSV metric logs; console logs). Start with list_runs or run_summary. `run`: a run's name "
    "or id, a unique prefix, latest, or source:name (tensorboard:exp1) when formats share a name. `keys`: metric names or globs, as a list or comma-separated; default: the run's main "
    "metrics. `query`: words matched in name/id/tags/group/notes, or tag:x group:x name:x."
)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)

# the read tools when an MLflow tracking server is configured (--mlflow / MLFLOW_TRACKING_URI): they
# list and read its runs over the network, so they are not closed-world any more (docs/mlflow-server.md)
READ_ONLY_NETWORK = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                    open_world_hint=True)

# sync_runs may write (export) and reach the network (upload) but never deletes or overwrites
SYNC = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)

RunArg = str
PatternArg = Annotated[str, Field(description="Substring or glob filter on keys")]
QueryArg = Annotated[str, Field(description="words in name/id/tags/group/notes, or tag:x group:x name:x")]
RunFilter = Annotated[str, Field(description="as list_runs' query")]
KeysArg = list[str] | str | None


# ---- argument sizes -------------------------------------------------------------------------------
# Checked before any work (the schemas stay as they are): a 200 MB `run` would otherwise be
# compared with every run name, and 100,000 unknown keys echoed back in a 2.4 MB error.

MAX_TEXT = 1_000  # characters of run, query, pattern, metric, prefix, cursor and of one key or run
MAX_ITEMS = 200  # keys or runs in one call
MAX_LIST_TEXT = 20_000  # characters of keys or runs given as one comma-separated string
MAX_PATH = 4_096  # characters of dest
STEP_LIMIT = 1 << 63  # steps are 64-bit integers

_WHAT = {
    "run": "a run's name or id, a unique prefix, or latest (list_runs shows them)",
    "runs": "run names or ids (list_runs shows them)",
    "keys": "metric names or globs such as train/* (list_keys shows them)",
    "query": "a few words, or tag:x group:x name:x",
    "pattern": "a substring or glob of key names",
    "metric": "one metric name (list_keys shows them)",
    "prefix": "a key prefix such as val/",
    "cursor": "the cursor the previous tail_run answer gave",
    "at": "a step such as 50000, 50k or 1.2M",
    "dest": "a directory path",
}


def check_args(**args: object) -> None:
    """Raise ToolError for an argument too long, too many items, a NUL in a path or a step past
    64 bits: one sentence saying what is wrong and what to pass instead (never echoing it)."""
    for name, v in args.items():
        what = _WHAT.get(name, "a shorter value")
        if isinstance(v, str):
            limit = MAX_PATH if name == "dest" else MAX_LIST_TEXT if name in ("keys", "runs") else MAX_TEXT
            if len(v) > limit:
                raise ToolError(f"`{name}` is {len(v):,} characters long, over the limit of {limit:,}; pass {what}.")
            if name == "dest" and "\0" in v:
                raise ToolError("`dest` contains a NUL character, which no path can hold; pass a directory path.")
            if name in ("keys", "runs") and v.count(",") >= MAX_ITEMS:
                raise ToolError(f"`{name}` lists more than {MAX_ITEMS} entries, over the limit of {MAX_ITEMS}; "
                                f"pass fewer {name}" + (", or a glob such as train/*." if name == "keys" else "."))
        elif isinstance(v, list):
            if len(v) > MAX_ITEMS:
                raise ToolError(f"`{name}` has {len(v):,} entries, over the limit of {MAX_ITEMS}; pass fewer {name}"
                                + (", or a glob such as train/*." if name == "keys" else "."))
            for item in v:
                if isinstance(item, str) and len(item) > MAX_TEXT:
                    raise ToolError(f"an entry of `{name}` is {len(item):,} characters long, over the limit of "
                                    f"{MAX_TEXT:,}; pass {what}.")
        elif isinstance(v, int) and not isinstance(v, bool) and not -STEP_LIMIT <= v < STEP_LIMIT:
            raise ToolError(f"`{name}` is out of range: steps are 64-bit integers (below 9.2e18); pass a step "
                            f"such as 50000.")


def _answer(fn: Callable[..., str], *args, **kwargs) -> str:
    """A tool's answer, or its error as a ToolError; either passes ``guard`` last (a control or
    bidi character that reached the text unescaped is escaped; the fields are escaped where they
    enter it)."""
    try:
        return rt.guard(fn(*args, **kwargs))
    except Cancelled:  # the client cancelled the call: nobody waits for an answer, and it is no error
        log.debug("%s stopped: its call was cancelled", getattr(fn, "__name__", fn))
        raise
    except answers.UserError as e:
        raise ToolError(rt.guard(str(e))) from None
    except Exception as e:  # never let a reader bug become an opaque failure
        log_failure(f"tool {getattr(fn, '__name__', fn)} failed", e, log)
        raise ToolError(rt.guard(f"internal error: {type(e).__name__}: {e}. This is a bug in runwise-mcp; "
                                 f"`runwise-mcp --check` shows what it can read.")) from None


def _progress(ctx: Context) -> Callable[[float, float, str], None]:
    """A progress callback for work running in a worker thread (no-op without a progress token)."""

    def report(done: float, total: float, message: str) -> None:
        try:
            anyio.from_thread.run(ctx.report_progress, done, total, rt.guard(message))
        except Exception:  # progress is best effort; never fail the call for it
            log.debug("progress notification failed", exc_info=True)

    return report


async def _in_thread(work: Callable[[], str]) -> str:
    """Run ``work`` in a worker thread (the event loop stays free). When the client cancels the
    call, the await ends at once and the work is told to stop: it raises ``Cancelled`` at its next
    checkpoint (``liveness``) instead of running on, unseen, while later calls wait."""
    cancel = threading.Event()

    def run() -> str:
        token = CANCEL.set(cancel)
        try:
            return work()
        finally:
            CANCEL.reset(token)

    try:
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        raise


async def _call(ctx: Context, fn: Callable[..., str], *args) -> str:
    """Run a tool's answer in a worker thread, reporting progress while a log is read in full;
    a cancelled call stops its work (``_in_thread``)."""
    progress = _progress(ctx)

    def run() -> str:
        token = READ_PROGRESS.set(progress)
        try:
            return _answer(fn, *args)
        finally:
            READ_PROGRESS.reset(token)

    return await _in_thread(run)


class RunwiseServer(MCPServer):
    """MCPServer whose tools reject an unknown argument (naming the accepted ones) and answer a
    rejected value with one plain sentence instead of pydantic's report."""

    async def call_tool(self, name, arguments, context=None):
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            why = argument_problem(tool.parameters, arguments or {}, tool.fn_metadata.validate_arguments,
                                   _WHAT)
            if why:
                raise ToolError(rt.guard(f"Error executing tool {name}: {why}"))
        return await super().call_tool(name, arguments, context)


def build_server(settings: Settings | None = None, index: RunIndex | None = None) -> MCPServer:
    """The server over ``index`` (default: a new index of ``settings``; tests pass one with a fixed clock)."""
    index = index or RunIndex(settings or load_settings())
    # every read tool below takes this (shadowing the module's): open-world only with a tracking server
    READ_ONLY = READ_ONLY_NETWORK if index.settings.mlflow_servers else globals()["READ_ONLY"]  # noqa: N806
    mcp = RunwiseServer("runwise", version=__version__, instructions=INSTRUCTIONS)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def list_runs(
        ctx: Context,
        query: QueryArg = "",
        state: Literal["any", "running", "finished", "crashed", "killed"] = "any",
        limit: Annotated[int, Field(ge=1, le=200)] = LIST_LIMIT,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> str:
        """Find runs: state and why, start, step, runtime, main metric trend, tags."""
        check_args(query=query, offset=offset)
        progress = _progress(ctx)
        return await _in_thread(
            lambda: _answer(answers.list_runs, index, query, state, limit, offset,
                            lambda done, total: progress(done, total, f"{done:,} of {total:,} run directories")))

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def list_keys(ctx: Context, run: RunArg = "latest", pattern: PatternArg = "") -> str:
        """A run's logged metric keys by prefix: points, step range, last value. System metrics collapsed."""
        check_args(run=run, pattern=pattern)
        return await _call(ctx, answers.list_keys, index, run, pattern)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def get_config(ctx: Context, run: RunArg = "latest", pattern: PatternArg = "") -> str:
        """A run's config (hyperparameters) as sorted a.b.c: value lines."""
        check_args(run=run, pattern=pattern)
        return await _call(ctx, answers.get_config, index, run, pattern)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def run_summary(ctx: Context, run: RunArg = "latest", keys: KeysArg = None) -> str:
        """How training goes: state, step, main metrics (last, best, trend), anomalies, sources."""
        check_args(run=run, keys=keys)
        return await _call(ctx, answers.run_summary, index, run, keys)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def get_history(
        ctx: Context,
        run: RunArg = "latest",
        keys: KeysArg = None,
        samples: Annotated[int, Field(ge=1, le=2000)] = 100,
        step_min: int | None = None,
        step_max: int | None = None,
        source: Literal["auto", "history", "console"] = "auto",
    ) -> str:
        """Metric history as CSV joined on step; downsampling keeps each bucket's min, max and NaN."""
        check_args(run=run, keys=keys, step_min=step_min, step_max=step_max)
        return await _call(ctx, answers.get_history, index, run, keys, samples, step_min, step_max, source)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def history_stats(ctx: Context, run: RunArg = "latest", keys: KeysArg = None) -> str:
        """Per key over all points: count, first, last, min/max@step, mean, NaN/inf, recent slope."""
        check_args(run=run, keys=keys)
        return await _call(ctx, answers.history_stats, index, run, keys)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def best_run(
        ctx: Context,
        metric: str,
        goal: Literal["auto", "min", "max"] = "auto",
        top: Annotated[int, Field(ge=1, le=100)] = 5,
        query: RunFilter = "",
        by: Literal["best", "last"] = "best",
    ) -> str:
        """Rank runs by a metric's best (or last) value; goal auto: define_metric's, else by name."""
        check_args(metric=metric, query=query)
        return await _call(ctx, answers.best_run, index, metric, goal, top, query, by)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def compare_runs(
        ctx: Context,
        runs: Annotated[list[str] | str, Field(description="1-10 runs, each optionally @STEP (50k), @KEY=VALUE, @stage:K (where a stage/phase key first reaches K)")],
        keys: KeysArg = None,
        prefix: str | None = None,
        min_change_pct: Annotated[float, Field(ge=0)] = 0,
        config_diff: bool = True,
        format: Literal["text", "md", "csv", "json"] = "text",
    ) -> str:
        """Runs side by side (final, at a step or stage) with deltas vs the first; config differences."""
        check_args(runs=runs, keys=keys, prefix=prefix)
        return await _call(ctx, answers.compare_runs, index, runs, keys, prefix, min_change_pct, config_diff, format)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def aggregate_runs(
        ctx: Context,
        runs: list[str] | str | None = None,
        query: RunFilter = "",
        keys: KeysArg = None,
        at: int | str | None = None,
    ) -> str:
        """Mean ± std, min, max across runs (seeds, sweeps) at their end or at step `at`."""
        check_args(runs=runs, query=query, keys=keys, at=at)
        return await _call(ctx, answers.aggregate_runs, index, runs, query, keys, at)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def diagnose_run(ctx: Context, run: RunArg = "latest", keys: KeysArg = None) -> str:
        """Anomalies over all points: NaN, spikes, divergence, overfit, plateau, grad norm, throughput."""
        check_args(run=run, keys=keys)
        return await _call(ctx, answers.diagnose_run, index, run, keys)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def tail_run(
        ctx: Context,
        run: RunArg = "latest",
        lines: Annotated[int, Field(ge=0, le=500)] = 20,
        cursor: str | None = None,
    ) -> str:
        """Live view: latest values, speed/ETA, last console lines (errors flagged); pass cursor for only new output."""
        check_args(run=run, cursor=cursor)
        return await _call(ctx, answers.tail_run, index, run, lines, cursor)

    @mcp.tool(annotations=SYNC, structured_output=False)
    async def sync_runs(
        ctx: Context,
        runs: list[str] | str | None = None,
        action: Literal["status", "export", "upload"] = "status",
        dest: Annotated[str | None, Field(description="export: a directory outside the roots (default: cache)")] = None,
        in_place: bool = False,
        format: Literal["wandb", "csv"] = "wandb",
    ) -> str:
        """Sync state and damaged logs; export wandb's files or csv (one wide table, for pandas); upload via wandb sync."""
        check_args(runs=runs, dest=dest)
        if action == "status":
            return _answer(answers.sync_runs, index, runs, action, dest, in_place, None, None, format)
        progress = _progress(ctx)
        return await _in_thread(
            lambda: _answer(answers.sync_runs, index, runs, action, dest, in_place, progress, None, format))

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    async def plot_runs(
        ctx: Context,
        runs: list[str] | str | None = None,
        keys: KeysArg = None,
        step_min: int | None = None,
        step_max: int | None = None,
        log_y: bool = False,
    ) -> CallToolResult:
        """PNG chart of runs' curves (default latest, main metric); marks first NaN, spikes, best point."""
        check_args(runs=runs, keys=keys, step_min=step_min, step_max=step_max)
        png: list[bytes] = []

        def work() -> str:
            image, caption = plot_answer(index, runs, keys, step_min, step_max, log_y)
            png.append(image)
            return caption

        caption = await _call(ctx, work)
        return CallToolResult(content=[
            TextContent(type="text", text=caption),
            ImageContent(type="image", data=base64.b64encode(png[0]).decode("ascii"), mime_type="image/png"),
        ])

    _compact_schemas(mcp)
    return mcp


def _compact_schemas(mcp: MCPServer) -> None:
    """Make input schemas cheaper for every client's prompt without changing what is accepted:
    drop the auto-generated "title" entries (they repeat the names), drop ``"default": null`` and
    the null branch of optional parameters (omitting them is how a client says "none"), and write
    ``anyOf`` of plain types as one ``type``: the array for a list-or-string parameter, else the
    string (never a ``type`` list, which single-type schema dialects reject). Arguments are still
    validated by the full pydantic model, so null and the other branch stay accepted."""
    manager = getattr(mcp, "_tool_manager", None)
    for tool in getattr(manager, "_tools", {}).values():
        schema = getattr(tool, "parameters", None)
        if isinstance(schema, dict):
            schema.pop("title", None)
            for prop in schema.get("properties", {}).values():
                if isinstance(prop, dict):
                    _compact_prop(prop)


def _compact_prop(prop: dict) -> None:
    prop.pop("title", None)
    d = prop.get("default", 1)
    if d is None or d is False or d == "":
        del prop["default"]  # none, empty text, false: what omitting the argument says anyway
    branches = prop.get("anyOf")
    if not isinstance(branches, list):
        return
    branches = [b for b in branches if b != {"type": "null"}]
    if not all(isinstance(b, dict) and set(b) <= {"type", "items"} and isinstance(b.get("type"), str)
               for b in branches):
        return
    items = [b["items"] for b in branches if "items" in b]
    if len(items) > 1:
        return
    del prop["anyOf"]
    # one type per parameter: clients that map schemas onto a single-type dialect (Gemini function
    # declarations) reject type lists. A list-or-string parameter is declared as the list; its
    # comma-separated string form stays accepted (the pydantic model validates, not the schema).
    types = [b["type"] for b in branches]
    prop["type"] = "array" if "array" in types else "string" if "string" in types else types[0]
    if items and prop["type"] == "array":
        prop["items"] = items[0]
