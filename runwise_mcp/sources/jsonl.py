"""Incremental reader of JSON-lines files (wandb 0.9 `wandb-history.jsonl`, generic logs).

Only complete lines are parsed; a line still being written is left for the next read. NaN and
±Infinity tokens are accepted (Python ``json`` does). Lines that are not JSON objects are
counted, never raised; so is a row whose values the caller cannot store (its ``emit`` raised
ValueError, OverflowError or TypeError).

A file that is no longer the one read so far (shorter than the read position, or other bytes in
its first line or just before the read position: replaced by another file of the same size or
longer, rewritten in place) raises ``Rewritten`` before anything of it is read: the caller drops
what it built and reads it again from the start, as ``CsvTail`` does for CSV files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from ..confine import open_read
from .filebase import CHECK, same_as_read

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20
MAX_LINE = 16 << 20  # a longer "line" is skipped, not buffered
HEAD = 256  # at most this much of the first line compared on every read


class Rewritten(Exception):
    """The file is not the one read so far: read it again from the start (a new reader)."""


class JsonlReader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0  # byte offset after the last complete line
        self.head = b""  # the file's first bytes (at most its first line, HEAD bytes), as read
        self.tail = b""  # the CHECK bytes before offset, as read
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
            if self.offset and not same_as_read(f, size, self.offset, self.head, self.tail):
                raise Rewritten(f"{self.path}: not the file read so far")
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
                        self._advance(carry)
                        carry = b""
                    continue
                complete, carry = data[: cut + 1], data[cut + 1 :]
                handle(complete)
                self._advance(complete)

    def _advance(self, consumed: bytes) -> None:
        if not self.offset:
            line = consumed.find(b"\n")
            self.head = consumed[: min(HEAD, line + 1 if line >= 0 else len(consumed))]
        self.offset += len(consumed)
        self.tail = (self.tail + consumed[-CHECK:])[-CHECK:]
