"""Incremental, damage-tolerant reader of LevelDB-log framed files (the `.wandb` framing).

Layout (see WANDB_FORMAT.md §6): a 7-byte file header, then 32 KiB blocks of chunks
``crc u32 | length u16 | type u8 | payload``. The CRC is plain zlib CRC-32 over the type byte
followed by the payload. Records are FULL chunks, or FIRST + MIDDLE* + LAST.

The reader remembers the offset just after the last complete record. ``read()`` parses only
bytes after it, so a grown file costs only its new part. A partly written tail (short chunk,
missing LAST, bad checksum in the file's last block) ends the read quietly and is retried next
time. Damage before the last block is skipped to the next block and counted. Memory use is
bounded by the read window plus the largest record, never by a length a chunk claims.

A read that goes on from an offset first checks that the file is still the one read so far:
the same inode, at least as long as the offset, and the same first bytes (a hash of up to the
first block). A file replaced at the same path, or recreated in place, raises ``Replaced``:
the caller starts over with a new reader, so two logs' records are never mixed.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ..confine import open_read
from .base import DamageNotes

BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
WINDOW_BLOCKS = 32  # read 1 MiB at a time
MAX_RECORD = 64 * 1024 * 1024  # a record larger than this is dropped, not buffered

_CHUNK = struct.Struct("<IHB")
IDENT_BYTES = BLOCK  # how much of the file's start identifies it


class Replaced(OSError):
    """The file at the reader's path is no longer the one it has read from (another inode,
    other first bytes, or shorter than the read offset): read it again from the start."""


@dataclass
class Damage(DamageNotes):
    """What the reader skipped, for reports. Counts only grow."""

    corrupt_chunks: int = 0  # bad checksum / impossible length before the last block
    dropped_fragments: int = 0  # FIRST/MIDDLE/LAST pieces that did not form a record
    oversized_records: int = 0

    def parts(self) -> list[str]:
        parts = []
        if self.corrupt_chunks:
            parts.append(f"{self.corrupt_chunks} corrupt chunk(s) skipped")
        if self.dropped_fragments:
            parts.append(f"{self.dropped_fragments} orphan record fragment(s) dropped")
        if self.oversized_records:
            parts.append(f"{self.oversized_records} record(s) over {MAX_RECORD >> 20} MiB skipped")
        return parts


class LogReader:
    """Reads complete records of one framed file, incrementally."""

    # Records that are one protobuf field with this tag byte (after an optional varint field 1)
    # are counted in ``skipped`` instead of emitted, when met in whole chunks (others are emitted)
    skip_tag: int | None = None
    skipped = 0
    # What identifies the file read so far (class defaults for states pickled before they existed)
    ident: tuple[int, int] | None = None  # (st_dev, st_ino)
    head_len = 0  # how many of its first bytes are hashed
    head_hash = b""

    def __init__(self, path: str, header: bytes) -> None:
        self.path = path
        self.header = header
        self.offset = 0  # next chunk to read; every record before it has been emitted
        self.header_ok: bool | None = None  # None until at least len(header) bytes exist
        self.damage = Damage()
        self.tail = ""  # why the last read stopped before the end of the file ("" = clean end)
        self.size = 0  # file size at the last read
        self.end = 0  # where the last read stopped

    def read(self, emit: Callable[[bytes], None]) -> int:
        """Emit every complete record after ``self.offset``; return how many were emitted.

        Never raises for file content. OSError (file vanished, permission) propagates so
        the caller can report it.
        """
        with open_read(self.path) as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            if self.offset:
                self._same_file(f.fileno(), st)
            self.size = size
            try:
                return self._read_from(f, size, emit)
            finally:
                if self.offset:
                    self._remember(f.fileno(), st)

    def _same_file(self, fd: int, st: os.stat_result) -> None:
        """Raise Replaced unless the opened file is the one read up to ``self.offset``."""
        if self.ident is not None and (st.st_dev, st.st_ino) != self.ident:
            raise Replaced(f"{os.path.basename(self.path)} was replaced by another file (another inode)")
        if st.st_size < self.offset:
            raise Replaced(f"{os.path.basename(self.path)} is shorter than the {self.offset:,} bytes read")
        if self.head_len:
            head = os.pread(fd, self.head_len, 0)
            if len(head) < self.head_len or hashlib.sha256(head).digest() != self.head_hash:
                raise Replaced(f"{os.path.basename(self.path)} was rewritten (its first bytes changed)")

    def _remember(self, fd: int, st: os.stat_result) -> None:
        self.ident = (st.st_dev, st.st_ino)
        want = min(st.st_size, IDENT_BYTES)
        if want > self.head_len:  # a young file: identify it by more of its start as it grows
            head = os.pread(fd, want, 0)
            self.head_len, self.head_hash = len(head), hashlib.sha256(head).digest()

    def _read_from(self, f, size: int, emit: Callable[[bytes], None], stop: int | None = None) -> int:
        if self.offset == 0:
            head = f.read(len(self.header))
            if len(head) < len(self.header):
                self.header_ok = None if self.header.startswith(head) else False
                if self.header_ok is None:
                    self.tail = "empty file" if not head else "file shorter than its header"
                return 0
            if head != self.header:
                self.header_ok = False
                self.tail = ""
                return 0
            self.header_ok = True
            self.offset = len(self.header)
        if self.header_ok is False:
            return 0
        return self._read_chunks(f, size, emit, stop=stop)

    def skip_continuations(self, f, start: int, size: int) -> bool:
        """Put ``self.offset`` on the first chunk at or after the block boundary ``start`` that
        begins a record (MIDDLE/LAST chunks of a record begun earlier are passed over, quietly:
        the reader of the part before reads that record to its end). False when a chunk on the
        way is damaged (the caller then reads the file in one piece, which counts it)."""
        pos = start
        while pos < size:
            in_block = pos % BLOCK
            if BLOCK - in_block < CHUNK_HEADER:
                pos += BLOCK - in_block
                continue
            f.seek(pos)
            head = f.read(CHUNK_HEADER)
            if len(head) < CHUNK_HEADER:
                break
            crc, length, ctype = _CHUNK.unpack(head)
            if length > BLOCK - in_block - CHUNK_HEADER or not (FULL <= ctype <= LAST):
                return False
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload, zlib.crc32(head[6:])) != crc:
                return False
            if ctype in (FULL, FIRST):
                break
            pos += CHUNK_HEADER + length
        self.offset = min(pos, size)
        return True

    def read_span(self, start: int, stop: int, emit: Callable[[bytes], None], exact: bool = False,
                  budget: int | None = None) -> int:
        """Emit the records that begin in [start, stop) and return where reading ended (a chunk
        boundary). Reading resynchronises at the block boundary at or before ``start``
        (fragments of a record begun earlier are dropped) unless ``exact`` says ``start`` is a
        chunk boundary already. A record begun before ``stop`` is read to its end, but never
        past ``budget`` bytes from where reading began (a record not complete by then is
        dropped). For sampling parts of a large file; ``self.offset`` is kept."""
        with open_read(self.path) as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(0)
            if f.read(len(self.header)) != self.header:
                return size
            saved = self.offset, self.tail
            self.offset = max(len(self.header), start if exact else start - start % BLOCK)
            end = size if budget is None else min(size, self.offset + budget)
            try:
                self._read_chunks(f, end, emit, stop=min(stop, end))
                return self.end
            finally:
                self.offset, self.tail = saved

    def _read_chunks(self, f, size: int, emit: Callable[[bytes], None], stop: int | None = None) -> int:
        emitted = 0
        pos = self.offset
        last_block = (size - 1) // BLOCK if size else 0
        parts: list[bytes] = []  # pieces of the record being assembled
        part_len = 0
        part_start = -1  # offset of its FIRST chunk
        skipping = False  # inside an oversized record: drop pieces until its LAST
        damage = self.damage
        self.tail = ""
        crc32 = zlib.crc32
        unpack = _CHUNK.unpack_from
        window = WINDOW_BLOCKS * BLOCK

        # Windows are block-aligned and chunks never cross blocks, so every chunk lies
        # inside one window; only the file's end can cut one short.
        window_start = pos - pos % BLOCK
        f.seek(window_start)
        buf = f.read(min(window, size - window_start))
        mv = memoryview(buf)
        limit = size if stop is None else min(size, stop)
        skip_tag = -1 if self.skip_tag is None else self.skip_tag
        while pos < size:
            if not parts and not skipping:
                # The common case, tight: whole records in FULL chunks inside the window.
                n = len(buf)
                while pos < limit:
                    in_block = pos & (BLOCK - 1)
                    room = BLOCK - in_block
                    if room < CHUNK_HEADER:
                        pos += room
                        if pos <= size:
                            self.offset = pos
                        continue
                    i = pos - window_start
                    if i + CHUNK_HEADER > n:
                        break
                    crc, length, ctype = unpack(buf, i)
                    end = i + CHUNK_HEADER + length
                    if ctype != FULL or length > room - CHUNK_HEADER or end > n or crc32(mv[i + 6 : end]) != crc:
                        break
                    if skip_tag >= 0:  # a record that is one field of this tag (after a varint field 1)?
                        j = i + CHUNK_HEADER
                        if j < end and buf[j] == 0x08:
                            j += 1
                            while j < end and buf[j] & 0x80:
                                j += 1
                            j += 1
                        if j + 2 < end and buf[j] == skip_tag:
                            k = buf[j + 1]
                            if k < 0x80:
                                k += j + 2
                            elif buf[j + 2] < 0x80:
                                k = (k & 0x7F | buf[j + 2] << 7) + j + 3
                            else:
                                k = -1
                            if k == end:
                                self.skipped += 1
                                pos += CHUNK_HEADER + length
                                self.offset = pos
                                continue
                    emit(buf[i + CHUNK_HEADER : end])
                    emitted += 1
                    pos += CHUNK_HEADER + length
                    self.offset = pos
                if pos >= size:
                    break
            if stop is not None and pos >= stop and not parts:
                break
            in_block = pos % BLOCK
            if BLOCK - in_block < CHUNK_HEADER:  # block trailer: zero padding
                pos += BLOCK - in_block
                if not parts and not skipping and pos <= size:
                    self.offset = pos
                continue
            i = pos - window_start
            if i >= len(buf):
                window_start += len(buf)
                f.seek(window_start)
                buf = f.read(min(window, size - window_start))
                mv = memoryview(buf)
                if not buf:
                    break
                continue
            if i + CHUNK_HEADER > len(buf):
                self.tail = f"partial chunk header at byte {pos:,}"
                break
            crc, length, ctype = unpack(buf, i)
            end = i + CHUNK_HEADER + length
            in_last_block = pos // BLOCK >= last_block
            if length > BLOCK - in_block - CHUNK_HEADER:
                bad = "impossible chunk length"  # a chunk never crosses a block boundary
            elif end > len(buf):
                # The payload is not (yet) all on disk.
                self.tail = f"record at byte {pos:,} not completely written"
                break
            elif crc32(mv[i + 6 : end]) != crc or not (FULL <= ctype <= LAST):
                bad = "checksum mismatch"
            else:
                bad = ""
            if bad:
                if in_last_block:
                    self.tail = f"{bad} at byte {pos:,} in the last block (torn write or damage)"
                    break
                damage.corrupt_chunks += 1
                damage.note(pos)
                if parts:
                    damage.dropped_fragments += 1
                    parts, part_len, part_start = [], 0, -1
                skipping = False
                pos += BLOCK - in_block  # resume at the next block, as LevelDB does
                self.offset = min(pos, size)
                continue
            next_pos = pos + CHUNK_HEADER + length
            if ctype == FULL:
                if parts or skipping:
                    damage.dropped_fragments += 1
                    damage.note(part_start if part_start >= 0 else pos)
                    parts, part_len, part_start, skipping = [], 0, -1, False
                emit(buf[i + CHUNK_HEADER : end])
                emitted += 1
                self.offset = next_pos
            elif ctype == FIRST:
                if parts or skipping:
                    damage.dropped_fragments += 1
                    damage.note(part_start if part_start >= 0 else pos)
                skipping = False
                parts = [buf[i + CHUNK_HEADER : end]]
                part_len = length
                part_start = pos
            elif not parts and not skipping:  # MIDDLE or LAST with nothing open
                damage.dropped_fragments += 1
                damage.note(pos)
                if ctype == LAST:
                    self.offset = next_pos
            elif skipping:
                if ctype == LAST:
                    skipping = False
                    self.offset = next_pos
            else:
                part_len += length
                if part_len > MAX_RECORD:
                    damage.oversized_records += 1
                    damage.note(part_start)
                    parts, part_len, part_start = [], 0, -1
                    skipping = ctype != LAST
                    if ctype == LAST:
                        self.offset = next_pos
                else:
                    parts.append(buf[i + CHUNK_HEADER : end])
                    if ctype == LAST:
                        record = b"".join(parts)
                        parts, part_len, part_start = [], 0, -1
                        emit(record)
                        emitted += 1
                        self.offset = next_pos
            pos = next_pos
        self.end = pos
        if parts and not self.tail:
            self.tail = f"record starting at byte {part_start:,} not completely written"
        elif skipping and not self.tail:
            self.tail = "oversized record not completely written"
        return emitted
