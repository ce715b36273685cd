"""Tool arguments checked before a call runs: an unknown argument names the accepted ones, and a
value the schema rejects is one plain sentence (``limit must be between 1 and 200; got 0``), never
pydantic's error codes and documentation URLs."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from .render import text as rt

_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_TYPE_WORDS = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
               "array": "a list of strings"}


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _bounds(prop: dict) -> str:
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if lo is not None and hi is not None:
        return f"between {_num(lo)} and {_num(hi)}"
    if lo is not None:
        return f"at least {_num(lo)}"
    if hi is not None:
        return f"at most {_num(hi)}"
    for key, word in (("exclusiveMinimum", "above"), ("exclusiveMaximum", "below")):
        if key in prop:
            return f"{word} {_num(prop[key])}"
    return ""


def expected(prop: dict, error_type: str = "") -> str:
    """What a parameter accepts, in words, from its (compacted) JSON schema."""
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return f"{prop['const']}"
    bounds = _bounds(prop)
    if bounds and error_type in _RANGE_ERRORS:
        return bounds
    word = _TYPE_WORDS.get(prop.get("type", ""), "a valid value")
    if prop.get("type") == "array":
        word += " (or one comma-separated string)"
    return f"{word} {bounds}" if bounds else word


def shown(value: Any, limit: int = 40) -> str:
    """A rejected value, short and on one line (it is the caller's data: never echoed in full)."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit] + "…"
    try:
        s = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        s = type(value).__name__
    if len(s) > limit + 2:
        s = s[:limit] + "…"
    return rt.clean(s)


def problem(schema: dict, arguments: dict[str, Any], validate, hints: dict[str, str] | None = None) -> str | None:
    """The sentence for the first thing wrong with ``arguments``, or None when they are valid.
    ``validate`` is the tool's own argument validation (raises pydantic's ValidationError)."""
    props: dict = schema.get("properties", {}) or {}
    unknown = [k for k in arguments if k not in props]
    if unknown:
        names = ", ".join(rt.clean(shown(k, 30).strip('"')) for k in unknown[:3])
        accepted = ", ".join(props) or "no arguments"
        return (f"unknown argument{'s' if len(unknown) > 1 else ''} {names}; this tool accepts {accepted}")
    try:
        validate(arguments)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        if not errors:
            return "the arguments are not valid"
        err = errors[0]
        name = str(err["loc"][0]) if err.get("loc") else "an argument"
        prop = props.get(name, {})
        if err.get("type") == "missing":
            return f"{name} is required: pass {(hints or {}).get(name) or expected(prop)}"
        more = len({str(x["loc"][0]) for x in errors if x.get("loc")} - {name})
        tail = f" ({more} more argument{'s' if more > 1 else ''} also rejected)" if more else ""
        return f"{name} must be {expected(prop, err.get('type', ''))}; got {shown(err.get('input'))}{tail}"
    return None
