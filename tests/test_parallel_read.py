"""A large log's first read in parallel processes (issue 18) builds exactly the state of one
sequential read, or falls back to one.

The fixture logs are small, so these tests cut them finer than a user's reads would (the size
threshold is 0 and up to 6 workers): every 32 KiB block boundary a part starts at is a place
where a record crosses into the next part, a summary update waits for its row in the next part,
or a console/config record is handed back to be read in order. Everything a tool reads from a
log is compared, value for value, with the sequential read of the same file; the pinned W&B
answers are then produced with parallel reads, in-process and over stdio.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys

import pytest
from helpers import REPO, all_logs
from mcp import Client, StdioServerParameters
from wandb_answers import answers_of

from runwise_mcp import config
from runwise_mcp.sources import wandb_parallel as par
from runwise_mcp.sources.leveldb_log import BLOCK
from runwise_mcp.sources.wandb_log import WandbLog

SNAPSHOT = REPO / "tests" / "snapshots" / "wandb_answers.json"
BIG = [p for p in all_logs() if p.stat().st_size >= 2 * BLOCK]  # logs that split into parts


def _num(v):
    return "nan" if isinstance(v, float) and math.isnan(v) else v


def state(log: WandbLog) -> dict:
    """Everything a tool can read of a log, in comparable form."""
    h = log.history
    return {
        "records": log.records, "bad_records": log.bad_records, "bad_rows": log.bad_rows,
        "steps": list(h.steps),
        "columns": {k: ([_num(v) for v in c.values], list(c.steps), c.last_row) for k, c in h.columns.items()},
        "column_order": list(h.columns), "other_order": list(h.other),
        "other": {k: (o.count, o.first_step, o.last_step, repr(o.last), o.kind, o.last_row) for k, o in h.other.items()},
        "row_seq": list(log._row_seq), "summary_raw": log._summary_raw,
        "summary": repr(sorted((k, _num(v)) for k, v in log.summary().items())),
        "config": repr(log.config), "console": log.console.tail(), "console_count": log.console.count,
        "identity": repr(log.identity), "metrics": repr(log.metrics), "exit": (log.has_exit, log.exit_code, log.exit_runtime),
        "start": log.start_time, "record_time": log.record_time, "environment": repr(log.environment),
        "system": (list(log.system.steps), {k: [_num(v) for v in c.values] for k, c in log.system.columns.items()}),
        "producer": log.producer, "reader": (log.reader.offset, log.reader.tail, log.reader.damage.parts()),
        "cuts": (log.values_cut, log.summary_cut), "media": sorted(log._media),
    }


def sequential(path, keys=None) -> WandbLog:
    log = WandbLog(str(path), keys=keys)
    log.update(workers=1)
    assert log.parts_read == 1 and log.part_times is None
    return log


def parallel(path, workers: int, keys=None) -> WandbLog:
    log = WandbLog(str(path), keys=keys)
    log.update(workers=workers, min_bytes=0)
    return log


def test_the_fixtures_hold_logs_large_enough_to_split():
    assert len(BIG) >= 5, [p.name for p in BIG]


@pytest.mark.parametrize("path", BIG, ids=lambda p: p.parent.name)
def test_a_parallel_read_equals_the_sequential_read(path):
    want = state(sequential(path))
    for workers in (2, 6):
        log = parallel(path, workers)
        assert state(log) == want, workers
        # CPU seconds by stage, for the benchmark's projection to more cores
        t = log.part_times
        assert len(t.workers) == log.parts_read - 1 and min(t.workers) > 0 and t.first > 0
        assert t.critical_path() >= max(t.first, *t.workers)
        if log.producer:  # (0.16.x numbers stepless rows from the row before: read sequentially)
            assert log.parts_read == len(par.part_bounds(path.stat().st_size, workers)) - 1 > 1


def test_attack_row_after_a_field_that_fails_to_read_is_read_as_in_one_process(tmp_path):
    """A hand-made record: a config field whose item is not readable, then a whole history row.
    One process stops at the config field (the row is not read; the record counts as bad); a
    part cannot tell whether that field reads (it is read later, in order), so it must not read
    the row either: it falls back to one process."""
    from test_attacks import read_records, write_records

    src = max(BIG, key=lambda p: p.stat().st_size)
    path = tmp_path / src.name
    records = read_records(src)

    def body(r: bytes) -> int:  # where the record's body begins, after its number (field 1)
        k = 1
        while r[k] & 0x80:
            k += 1
        return k + 1

    i = next(i for i in range(len(records) * 3 // 4, len(records))
             if records[i][0] == 0x08 and records[i][body(records[i])] == 0x12)  # a row, late in the file
    b = body(records[i])
    bad_config = b"\x2a\x03\x0a\x01\xff"  # Record.config {update: item b"\xff"}: no item can be read
    records[i] = records[i][:b] + bad_config + records[i][b:]
    write_records(path, src.read_bytes()[:7], records)
    want = sequential(path)
    assert want.bad_records == 1 and len(want.history.steps) == len(sequential(src).history.steps) - 1
    for workers in (2, 3):
        log = parallel(path, workers)
        assert state(log) == state(want), workers


def test_a_016_log_falls_back_to_one_process_and_equals_the_sequential_read():
    """wandb 0.16.x rows carry no step (each is numbered from the row before): such a log is
    read in one process, on from where the first part ended (a log made by the real 0.16.6)."""
    (path,) = sorted((REPO / "tests/fixtures/wandb_legacy_long").glob("wandb/offline-run-*/run-*.wandb"))
    assert path.stat().st_size >= 4 * BLOCK
    want = sequential(path)
    assert want.stepless == len(want.history.steps) == 1000 and want.bad_records == 0
    for workers in (2, 4):
        log = parallel(path, workers)
        assert log.parts_read == 1 and log.part_times is None
        assert state(log) == state(want), workers


def test_a_log_named_by_a_relative_path_is_read_in_parallel(monkeypatch):
    """Workers run in another directory: a relative path is made absolute for them (it made
    every worker fail, and the read fall back to one process)."""
    path = max(BIG, key=lambda p: p.stat().st_size)
    monkeypatch.chdir(path.parent.parent)
    log = parallel(os.path.join(path.parent.name, path.name), 3)
    assert log.parts_read == 3
    assert state(log) == state(sequential(path))


def test_a_summary_update_waiting_in_one_part_for_its_row_in_the_next_is_matched():
    """0.31 writes each row into the summary just before the row; where a part boundary falls
    between the two, the join must match them as the sequential read does (else the update
    would be folded as a summary change of its own)."""
    crossed = 0
    for path in BIG:
        seq = sequential(path)
        if not seq.producer:
            continue
        st = path.stat()
        for start in par.part_bounds(st.st_size, 6)[1:-1]:
            part = par.decode_part(str(path), (st.st_dev, st.st_ino), st.st_size, start, None, None)
            crossed += part.first_row is not None  # the part began with a row, its update before
        assert state(parallel(path, 6)) == state(seq)
    assert crossed >= 1


@pytest.mark.parametrize("keys", [["train/loss"], ["train/loss", "val/loss"], ["optim.grad_norm"], ["no/such/key"]])
def test_a_keyed_parallel_read_equals_the_sequential_keyed_read(keys):
    for path in BIG:
        want = state(sequential(path, frozenset(keys)))
        assert state(parallel(path, 3, frozenset(keys))) == want, path.parent.name


def test_a_damaged_log_falls_back_to_one_process_and_counts_the_same_damage(tmp_path):
    src = max(BIG, key=lambda p: p.stat().st_size)
    data = bytearray(src.read_bytes())
    data[BLOCK + BLOCK // 2] ^= 0xFF  # a payload byte in the second block: a checksum mismatch
    bad = tmp_path / src.name
    bad.write_bytes(bytes(data))
    want = sequential(bad)
    assert want.reader.damage.parts()  # the damage is there to be counted
    log = parallel(bad, 3)
    assert log.parts_read == 1 and state(log) == state(want)


def test_a_log_read_in_parallel_while_written_is_followed_as_it_grows(tmp_path):
    src = max(BIG, key=lambda p: p.stat().st_size)
    data = src.read_bytes()
    log_path = tmp_path / src.name
    cut = len(data) * 2 // 3 + 13  # mid-record
    log_path.write_bytes(data[:cut])
    log = parallel(log_path, 3)
    assert log.parts_read > 1 and log.reader.tail  # the last part ends in the record being written
    assert state(log) == state(sequential(log_path))
    with open(log_path, "ab") as f:
        f.write(data[cut:])
    log.update()
    assert state(log) == state(sequential(src))


def test_worker_refuses_a_log_swapped_for_another_file(tmp_path):
    """A worker opens the log by path; it must find the very file the index opened (same
    device and inode), never whatever was put at the path since."""
    src = max(BIG, key=lambda p: p.stat().st_size)
    a, b = tmp_path / "a.wandb", tmp_path / "b.wandb"
    shutil.copy(src, a)
    shutil.copy(src, b)
    st = os.stat(a)
    with pytest.raises(par.Fallback):
        par.decode_part(str(b), (st.st_dev, st.st_ino), st.st_size, BLOCK, None, None)


def test_worker_refuses_a_log_swapped_for_a_symlink(tmp_path):
    src = max(BIG, key=lambda p: p.stat().st_size)
    outside = tmp_path / "outside.wandb"
    shutil.copy(src, outside)
    link = tmp_path / "root" / "run-x.wandb"
    link.parent.mkdir()
    link.symlink_to(outside)
    st = os.stat(outside)
    with pytest.raises(OSError):  # O_NOFOLLOW: the link is not followed
        par.decode_part(str(link), (st.st_dev, st.st_ino), st.st_size, BLOCK, None, None)


def test_worker_does_not_hang_on_a_log_swapped_for_a_fifo(tmp_path):
    """A FIFO put at the log's path after the index opened the log: opening it for reading
    would block until a writer comes. The worker opens without blocking and refuses it."""
    import threading

    src = max(BIG, key=lambda p: p.stat().st_size)
    st = src.stat()
    fifo = tmp_path / "run-x.wandb"
    os.mkfifo(fifo)
    outcome: list = []

    def run():
        try:
            par.decode_part(str(fifo), (st.st_dev, st.st_ino), st.st_size, BLOCK, None, None)
        except Exception as e:
            outcome.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "decode_part blocked on a FIFO"
    assert outcome and isinstance(outcome[0], par.Fallback)


def test_worker_does_not_import_modules_planted_in_the_working_directory(tmp_path, monkeypatch):
    """A server started inside a hostile run tree: a `json.py` or `pickle.py` there must not
    be imported by the worker processes (they run isolated, from this package's directory)."""
    src = max(BIG, key=lambda p: p.stat().st_size)
    planted = tmp_path / "tree"
    planted.mkdir()
    marker = tmp_path / "imported"
    for name in ("json", "pickle", "struct", "zlib"):
        (planted / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    monkeypatch.chdir(planted)
    monkeypatch.setenv("PYTHONPATH", str(planted))
    log = parallel(src, 3)
    assert log.parts_read > 1 and not marker.exists()
    assert state(log) == state(sequential(src))


def test_a_part_over_its_share_of_other_records_gives_up_early():
    src = max(BIG, key=lambda p: p.stat().st_size)
    st = src.stat()
    with pytest.raises(par.Fallback, match="other records"):  # (a zero share: the first one is over)
        par.decode_part(str(src), (st.st_dev, st.st_ino), st.st_size, BLOCK, None, None, 0)


def test_attack_console_flood_read_in_parallel_reads_on_from_the_first_part(tmp_path):
    """A log that is mostly console output (handed back raw by the parts, so held all at once):
    the parts give up and the first part, read here already, is read on in one process; the
    result is the sequential one and the records are decoded once, not twice."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    from test_attacks_scale import hostile_run

    recs = []
    for i in range(36_000):  # ~72 MiB of console records: the second part holds more than its 32 MiB share
        r = pb.Record()
        r.output_raw.output_type = 1
        r.output_raw.line = f"step {i} " + "z" * 2000 + "\n"
        recs.append(r.SerializeToString())
    path = hostile_run(tmp_path, recs)
    emitted = []
    log = WandbLog(str(path))
    real = log._record
    log._record = lambda rec: (emitted.append(1), real(rec))[1]
    log.update(workers=2, min_bytes=0)
    assert log.parts_read == 1
    assert state(log) == state(sequential(path))
    assert len(emitted) == log.records  # every record decoded once: the first part was not read again
    assert log.console.count >= 36_000


def test_a_worker_that_fails_leaves_the_sequential_read(tmp_path, monkeypatch):
    """A worker that cannot run (here: an interpreter that exits at once) costs only time."""
    src = max(BIG, key=lambda p: p.stat().st_size)
    monkeypatch.setattr(par.sys, "executable", "/bin/false")
    log = parallel(src, 2)
    assert log.parts_read == 1 and state(log) == state(sequential(src))


def test_a_fault_of_the_parallel_read_itself_leaves_a_sequential_read(monkeypatch, caplog):
    src = max(BIG, key=lambda p: p.stat().st_size)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in joining")

    monkeypatch.setattr(par, "_join", broken)
    log = parallel(src, 2)
    assert log.parts_read == 1 and state(log) == state(sequential(src))
    assert "a bug in joining" in caplog.text and "reading it in one process" in caplog.text


def test_pinned_wandb_answers_with_parallel_reads():
    pinned = json.loads(SNAPSHOT.read_text())
    now = answers_of(REPO, env={config.ENV_READ_WORKERS: "3", config.ENV_PARALLEL_MIN_MB: "0.01"})
    changed = [k for k in pinned if pinned[k] != now[k]]
    assert not changed, f"{len(changed)} answers changed, first {changed[0]!r}:\n{now[changed[0]]}"


@pytest.mark.anyio
async def test_answers_over_stdio_with_parallel_reads_equal_sequential_ones(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(REPO / "tests" / "fixtures" / "wandb_runs", root, symlinks=True)
    run = "vtt9wpqc"  # the "finished" fixture, 14 blocks long
    calls = [("history_stats", {"run": run}), ("history_stats", {"run": run, "keys": ["train/loss"]}),
             ("run_summary", {"run": run}), ("list_keys", {"run": run}), ("diagnose_run", {"run": run})]
    bodies = {}
    for workers in ("1", "3"):
        env = {"PYTHONPATH": str(REPO), "RUNWISE_CACHE_DIR": "off", config.ENV_READ_WORKERS: workers,
               config.ENV_PARALLEL_MIN_MB: "0.01"}
        params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(root)],
                                       env=env, cwd=str(REPO))
        async with Client(params) as c:
            out = []
            for tool, args in calls:
                res = await c.call_tool(tool, args)
                out.append("\n".join(x.text for x in res.content))
            bodies[workers] = out
    assert bodies["1"] == bodies["3"]
    assert "train/loss" in bodies["1"][0]


def test_part_bounds_are_block_aligned_and_cover_the_file():
    for size in (7, BLOCK, 2 * BLOCK + 5, 10 * BLOCK, 123_456_789):
        for parts in (2, 3, 4, 16):
            b = par.part_bounds(size, parts)
            assert b[0] == 0 and b[-1] == size and b == sorted(set(b))
            assert all(x % BLOCK == 0 for x in b[1:-1])
            assert len(b) - 1 <= parts


def test_default_workers_follow_a_container_cpu_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")  # no quota: the cores decide
    free = config.default_workers(str(cpu_max))
    assert 1 <= free <= config.MAX_READ_WORKERS
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: 2 processes at most
    assert config.default_workers(str(cpu_max)) == min(free, 2)
    cpu_max.write_text("50000 100000\n")  # half a CPU: one process
    assert config.default_workers(str(cpu_max)) == 1
    for bad in ("", "garbage", "1 0", "-5 100000"):
        cpu_max.write_text(bad)
        assert config.default_workers(str(cpu_max)) >= 1
    assert config.default_workers(str(tmp_path / "absent")) == free


def test_read_workers_setting(tmp_path):
    base = {"RUNWISE_CACHE_DIR": "off"}
    assert config.load_settings([str(tmp_path)], env=base).read_workers == config.default_workers()
    s = config.load_settings([str(tmp_path)], env={**base, config.ENV_READ_WORKERS: "3",
                                                   config.ENV_PARALLEL_MIN_MB: "0.5"})
    assert (s.read_workers, s.parallel_min_bytes) == (3, 1 << 19)
    for bad in ("many", "0", "-2"):  # said at start, as every other variable
        with pytest.raises(ValueError, match=config.ENV_READ_WORKERS):
            config.load_settings([str(tmp_path)], env={**base, config.ENV_READ_WORKERS: bad})
