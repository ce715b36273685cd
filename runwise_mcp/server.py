"""The MCP server: tool declarations only. Each tool parses its arguments and calls answers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from . import __version__, answers
from .config import Settings, load_settings
from .index import RunIndex

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Reads ML training runs on this machine (W&B run directories, offline or online, including killed "
    "and running runs). Start with list_runs; pass a run's name or id as `run` to the other tools."
)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)

RunArg = Annotated[str, Field(description="Run name or id, a unique prefix, or latest")]
PatternArg = Annotated[str, Field(description="Substring or glob filter on keys")]


def _answer(fn: Callable[..., str], *args, **kwargs) -> str:
    try:
        return fn(*args, **kwargs)
    except answers.UserError as e:
        raise ToolError(str(e)) from None
    except Exception as e:  # never let a reader bug become an opaque failure
        log.exception("tool failed")
        raise ToolError(f"internal error: {type(e).__name__}: {e}. This is a bug in runwise-mcp; "
                        f"`runwise-mcp --check` shows what it can read.") from None


def build_server(settings: Settings | None = None) -> MCPServer:
    index = RunIndex(settings or load_settings())
    mcp = MCPServer("runwise", version=__version__, instructions=INSTRUCTIONS)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    def list_runs(
        query: Annotated[str, Field(description="Filter: words in name/id/tags/group/notes; tag:x group:x name:x")] = "",
        state: Literal["any", "running", "finished", "crashed", "killed"] = "any",
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> str:
        """Find runs. One line each: state and why, start, last step, runtime, main metric with trend, tags."""
        return _answer(answers.list_runs, index, query, state, limit, offset)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    def list_keys(run: RunArg = "latest", pattern: PatternArg = "") -> str:
        """A run's logged metric keys by prefix: points, step range, last value. System metrics collapsed."""
        return _answer(answers.list_keys, index, run, pattern)

    @mcp.tool(annotations=READ_ONLY, structured_output=False)
    def get_config(run: RunArg = "latest", pattern: PatternArg = "") -> str:
        """A run's config (hyperparameters) as sorted a.b.c: value lines."""
        return _answer(answers.get_config, index, run, pattern)

    _compact_schemas(mcp)
    return mcp


def _compact_schemas(mcp: MCPServer) -> None:
    """Drop the auto-generated "title" entries from input schemas: they repeat the parameter
    names and cost tokens in every client's prompt."""
    manager = getattr(mcp, "_tool_manager", None)
    for tool in getattr(manager, "_tools", {}).values():
        schema = getattr(tool, "parameters", None)
        if isinstance(schema, dict):
            schema.pop("title", None)
            for prop in schema.get("properties", {}).values():
                if isinstance(prop, dict):
                    prop.pop("title", None)
