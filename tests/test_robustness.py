"""Damaged, truncated, hostile .wandb files: the reader returns every complete record before
the damage, reports what it skipped, never raises, never hangs, never trusts a length."""

from __future__ import annotations

import os
import random
import shutil
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from helpers import log_file, run_dir

from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.sources.leveldb_log import BLOCK
from runwise_mcp.sources.wandb_log import HEADER, WandbLog

DATA = log_file("finished").read_bytes()


def frame_ends(data: bytes) -> list[tuple[int, bool]]:
    """(end offset, is history) of every record, by an independent walk of the framing."""
    out = []
    pos, start_payload = 7, []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _, n, t = struct.unpack_from("<IHB", data, pos)
        start_payload.append(data[pos + 7 : pos + 7 + n])
        pos += 7 + n
        if t in (1, 4):
            rec = b"".join(start_payload)
            start_payload = []
            # Record: 08 <num varint> then the oneof tag; history is field 2 (0x12)
            i = 1
            while rec[i] & 0x80:
                i += 1
            out.append((pos, rec[i + 1] == 0x12))
    return out


ENDS = frame_ends(DATA)


def parse_prefix(path: Path, n: int) -> WandbLog:
    with open(path, "wb") as f:
        f.write(DATA[:n])
    log = WandbLog(str(path))
    log.update()
    return log


def expected(n: int) -> tuple[int, int]:
    done = [h for end, h in ENDS if end <= n]
    return len(done), sum(done)


def test_fixture_spans_several_blocks():
    assert len(DATA) > 3 * BLOCK and ENDS[-1][0] == len(DATA)


def test_truncated_at_every_offset_of_the_first_two_blocks(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(DATA[: 2 * BLOCK])
    log = None
    # shrink one byte at a time: each size is a fresh reader on a file cut at that offset
    for n in range(2 * BLOCK, -1, -1):
        os.truncate(path, n)
        log = WandbLog(str(path))
        log.update()
        records, rows = expected(n)
        assert log.records == records, n
        assert log.history.rows == rows, n
        assert log.bad_records == 0 and not log.reader.damage.any, n
        if records and n > 7:
            assert log.reader.offset <= n
    assert log is not None and log.records == 0


def test_truncated_at_random_later_offsets(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "run-x.wandb"
    for n in sorted(rng.sample(range(2 * BLOCK, len(DATA)), 100)):
        log = parse_prefix(path, n)
        records, rows = expected(n)
        assert (log.records, log.history.rows) == (records, rows), n
        assert not log.reader.damage.any
        # the next read of the same file parses nothing new and raises nothing
        assert log.update() == 0


def test_growing_file_is_read_incrementally(tmp_path):
    """The same reader follows a file that grows by irregular appends (a live run)."""
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"")
    log = WandbLog(str(path))
    rng = random.Random(3)
    n = 0
    while n < len(DATA):
        n = min(len(DATA), n + rng.choice([1, 5, 7, 100, 4000, 32768, 50000]))
        with open(path, "ab") as f:
            f.write(DATA[os.path.getsize(path) : n])
        before = log.records
        got = log.update()
        assert log.records == before + got == expected(n)[0]
    full = WandbLog(str(log_file("finished")))
    full.update()
    assert log.history.rows == full.history.rows and log.summary() == full.summary() or _nan_equal(
        log.summary(), full.summary())
    assert log.update() == 0


def _nan_equal(a, b):
    return a.keys() == b.keys() and all(str(a[k]) == str(b[k]) for k in a)


def test_random_byte_flips_never_raise_and_keep_earlier_records(tmp_path):
    rng = random.Random(11)
    path = tmp_path / "run-x.wandb"
    for _ in range(150):
        data = bytearray(DATA)
        first = len(data)
        for _ in range(rng.choice([1, 1, 2, 8])):
            i = rng.randrange(7, len(data))
            data[i] ^= 1 << rng.randrange(8)
            first = min(first, i)
        path.write_bytes(bytes(data))
        log = WandbLog(str(path))
        log.update()
        # every record that ends in a block before the first damaged block is intact
        intact_block = first // BLOCK
        must = sum(1 for end, _ in ENDS if (end - 1) // BLOCK < intact_block)
        assert log.records >= must
        r = log.reader
        damaged_known = r.damage.any or r.tail or log.bad_records or log.records < len(ENDS)
        # a flip is either reported (skip, tail, undecodable record) or harmless to framing
        assert damaged_known or log.records == len(ENDS)


def test_corrupt_middle_block_is_skipped_and_counted(tmp_path):
    data = bytearray(DATA)
    hit = BLOCK + 100  # inside block 1, far from the end of the file
    data[hit] ^= 0xFF
    path = tmp_path / "run-x.wandb"
    path.write_bytes(bytes(data))
    log = WandbLog(str(path))
    log.update()
    assert log.reader.damage.corrupt_chunks >= 1
    assert "corrupt chunk" in log.reader.damage.describe()
    # everything from block 3 on is read again (resync at block boundaries)
    later = sum(1 for end, _ in ENDS if end > 3 * BLOCK + 7)
    assert log.records >= sum(1 for end, _ in ENDS if end <= BLOCK) + later - 2
    assert log.has_exit  # the exit record at the very end survived


def test_appended_garbage(tmp_path):
    rng = random.Random(5)
    path = tmp_path / "run-x.wandb"
    for size in (1, 6, 7, 100, 40000):
        path.write_bytes(DATA + bytes(rng.randrange(256) for _ in range(size)))
        log = WandbLog(str(path))
        log.update()
        assert log.records >= len(ENDS)
        assert log.has_exit and log.history.rows == sum(h for _, h in ENDS)


@pytest.mark.parametrize("content,tail", [(b"", "empty file"), (HEADER, ""), (HEADER[:4], "file shorter than its header")])
def test_empty_and_header_only(tmp_path, content, tail):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(content)
    log = WandbLog(str(path))
    assert log.update() == 0
    assert log.records == 0 and log.history.rows == 0 and not log.has_exit
    assert log.reader.tail == tail


def test_not_a_wandb_file(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    log = WandbLog(str(path))
    assert log.update() == 0 and log.reader.header_ok is False


def test_chunk_claiming_length_past_eof(tmp_path):
    data = bytearray(DATA[:5000])
    # the last complete chunk header: set its length to 0xFFFF (past EOF, past the block)
    end = [e for e, _ in ENDS if e <= 5000][-1]
    struct.pack_into("<H", data, end + 4, 0xFFFF)
    path = tmp_path / "run-x.wandb"
    tracemalloc.start()
    path.write_bytes(bytes(data))
    log = WandbLog(str(path))
    log.update()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert log.records == expected(end)[0]
    assert log.reader.tail  # reported as an unreadable/incomplete tail
    assert peak < 5 << 20


def test_bogus_protobuf_lengths_do_not_allocate(tmp_path):
    """A valid chunk whose record claims a 2**60-byte field: counted as undecodable."""
    payload = b"\x08\x01\x12" + b"\xff" * 8 + b"\x0f" + b"abc"
    crc = zlib.crc32(payload, zlib.crc32(b"\x01"))
    path = tmp_path / "run-x.wandb"
    path.write_bytes(HEADER + struct.pack("<IHB", crc, len(payload), 1) + payload + DATA[7:2000])
    tracemalloc.start()
    log = WandbLog(str(path))
    log.update()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert log.bad_records == 1
    assert log.records >= 2 and log.identity.get("name") == "R001-finished"
    assert peak < 5 << 20


def copy_run(scenario: str, dst: Path) -> Path:
    target = dst / "wandb" / run_dir(scenario).name
    shutil.copytree(run_dir(scenario), target, symlinks=True)
    return target


def test_dangling_symlinks_and_dir_without_log(tmp_path):
    d = copy_run("finished", tmp_path)
    assert os.path.islink(d / "logs" / "debug-core.log") and not (d / "logs" / "debug-core.log").exists()
    os.symlink("offline-run-20990101_000000-gone", tmp_path / "wandb" / "latest-run")  # dangling
    empty = tmp_path / "wandb" / "offline-run-20261127_000000-nolog"
    (empty / "files").mkdir(parents=True)
    (empty / "files" / "output.log").write_text("hello\n")
    idx = RunIndex(load_settings([str(tmp_path)]))
    runs = idx.runs()
    # a run directory left with only files/output.log is a run (its console is its only data)
    assert sorted(r.display_name for r in runs) == ["R001-finished", "nolog"]
    only = next(r for r in runs if r.id == "nolog")
    assert only.segments[0].layout == "console" and only.history.rows == 0
    assert idx.problems() == []


def test_index_survives_every_kind_of_damage(tmp_path):
    """The index over a tree of damaged copies: no exception, every problem reported."""
    rng = random.Random(2)
    for i in range(12):
        d = tmp_path / "wandb" / f"offline-run-20261127_00000{i:02d}-bad{i}"
        d.mkdir(parents=True)
        data = bytearray(DATA)
        kind = i % 4
        if kind == 0:
            data = data[: rng.randrange(len(data))]
        elif kind == 1:
            for _ in range(20):
                data[rng.randrange(7, len(data))] = rng.randrange(256)
        elif kind == 2:
            data = bytearray(rng.randbytes(5000))
        else:
            data = data[:7]
        (d / f"run-bad{i}.wandb").write_bytes(bytes(data))
    idx = RunIndex(load_settings([str(tmp_path)]))
    runs = idx.runs()
    # damaged copies of one run share its id and start time (from the run record): one run, read
    # from the most complete copy, the others named as its copies (not merged as resumed segments)
    assert sum(len(r.segments) + len(r.copies) for r in runs) == 12
    assert all(len(r.segments) == 1 for r in runs)
    probs = idx.problems()
    assert any("not a .wandb log" in p for p in probs)


def test_fifos_and_devices_never_block(tmp_path):
    """A named pipe where a log or output.log should be would block a naive open() forever."""
    d = copy_run("crashed", tmp_path)
    os.unlink(d / "files" / "output.log")
    os.mkfifo(d / "files" / "output.log")
    fifo_run = tmp_path / "wandb" / "offline-run-20261127_000000-fifo"
    fifo_run.mkdir()
    os.mkfifo(fifo_run / "run-fifo.wandb")
    os.symlink("/dev/zero", d / "files" / "wandb-summary.json")
    idx = RunIndex(load_settings([str(tmp_path)]))
    runs = idx.runs()  # returns: nothing opened the FIFOs or /dev/zero
    assert [r.name for r in runs] == ["R002-crashed"]
