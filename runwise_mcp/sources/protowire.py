"""Minimal protobuf wire-format decoding: just what the readers need, standard library only.

A message is walked field by field; fields we do not know are skipped by wire type, so
messages from newer or older producers (whose field numbers were reused) never break us.
Every function raises ``WireError`` on malformed input; callers turn that into a counted,
reported skip instead of an exception that escapes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; return (value, position after it)."""
    result = shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")
    raise WireError("truncated varint")


def fields(buf: bytes, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, a, b) for each field of a message.

    For VARINT fields ``a`` is the value; for LEN fields ``a:b`` is the payload range; for
    FIXED64/FIXED32 ``a:b`` is the raw range. Groups (wire types 3/4) are malformed for us.
    """
    if end is None:
        end = len(buf)
    while pos < end:
        key, pos = varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if wt == VARINT:
            value, pos = varint(buf, pos, end)
            yield field, wt, value, pos
        elif wt == LEN:
            n, pos = varint(buf, pos, end)
            stop = pos + n
            if stop > end:
                raise WireError("length-delimited field runs past its message")
            yield field, wt, pos, stop
            pos = stop
        elif wt == FIXED64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield field, wt, pos, pos + 8
            pos += 8
        elif wt == FIXED32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield field, wt, pos, pos + 4
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wt}")


def int64(v: int) -> int:
    """A varint read as a signed int32/int64 (negative values are 10-byte varints)."""
    return v - (1 << 64) if v >= (1 << 63) else v


def zigzag(v: int) -> int:
    """A varint read as sint64."""
    return (v >> 1) ^ -(v & 1)


def double(buf: bytes, a: int) -> float:
    return _DOUBLE.unpack_from(buf, a)[0]


def float32(buf: bytes, a: int) -> float:
    return _FLOAT.unpack_from(buf, a)[0]


def text(buf: bytes, a: int, b: int) -> str:
    return buf[a:b].decode("utf-8", "replace")


def timestamp(buf: bytes, a: int, b: int) -> float:
    """google.protobuf.Timestamp -> epoch seconds."""
    seconds = nanos = 0
    for f, wt, x, _ in fields(buf, a, b):
        if f == 1 and wt == VARINT:
            seconds = int64(x)
        elif f == 2 and wt == VARINT:
            nanos = int64(x)
    return seconds + nanos / 1e9
