"""Incremental reader of JSON-lines files (wandb 0.9 `wandb-history.jsonl`, generic logs).

Only complete lines are parsed; a line still being written is left for the next read. NaN and
±Infinity tokens are accepted (Python ``json`` does). Lines that are not JSON objects are
counted, never raised; so is a row whose values the caller cannot store (its ``emit`` raised
ValueError, OverflowError or TypeError).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from ..confine import open_read

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20
MAX_LINE = 16 << 20  # a longer "line" is skipped, not buffered


class JsonlReader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0  # byte offset after the last complete line
        self.bad_lines = 0
        self.bad_rows = 0  # JSON objects whose values could not be stored (a step past 64 bits...)
        self.lines = 0

    def read(self, emit: Callable[[dict[str, Any]], None]) -> int:
        """Emit every complete new line that holds a JSON object; return how many."""
        n = 0

        def lines(complete: bytes) -> None:
            nonlocal n
            n += self.decode_lines(complete.split(b"\n")[:-1], emit)

        self.read_blocks(lines)
        return n

    def decode_lines(self, lines: list[bytes], emit: Callable[[dict[str, Any]], None],
                     seen: Callable[[bytes, dict[str, Any]], None] | None = None) -> int:
        """``json.loads`` each line and emit the objects (counting what is not one); how many.
        ``seen(line, obj)`` is told of every object emitted."""
        n = 0
        for line in lines:
            self.lines += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                self.bad_lines += 1
                continue
            if not isinstance(obj, dict):
                self.bad_lines += 1
                continue
            try:
                emit(obj)
            except (ValueError, OverflowError, TypeError) as e:  # e.g. a _step of 1e300: skip the row
                self.bad_rows += 1
                log.warning("%s: row skipped (%s: %s)", self.path, type(e).__name__, e)
                continue
            n += 1
            if seen is not None:
                seen(line, obj)
        return n

    def read_blocks(self, handle: Callable[[bytes], None], read_size: int = READ_SIZE) -> None:
        """Hand every run of new complete lines (bytes ending in a newline, ``read_size`` or so
        at a time) to ``handle``; a line still being written is left for the next read."""
        with open_read(self.path) as f:
            size = os.fstat(f.fileno()).st_size
            if size < self.offset:  # truncated/replaced: start over (the caller resets state)
                self.offset = 0
            f.seek(self.offset)
            carry = b""
            pos = self.offset
            while pos < size:
                block = f.read(min(read_size, size - pos))
                if not block:
                    break
                pos += len(block)
                data = carry + block if carry else block
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry = data
                    if len(carry) > MAX_LINE:  # one enormous line: skip past it
                        self.bad_lines += 1
                        self.offset += len(carry)
                        carry = b""
                    continue
                complete, carry = data[: cut + 1], data[cut + 1 :]
                handle(complete)
                self.offset += len(complete)
