"""Issue 19, items 9 and 19: one stuck call must not stall the others, a cancelled call stops its
work, and a console line still being written is read once, whole. Each test is named after the
attack it stops and runs it on real fixture runs (or a log re-framed from their records).

Bounds are generous (another call answers within 5 s while a read takes much longer) so that a
slow, busy CI machine does not fail them.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from helpers import run_dir
from mcp import Client

from runwise_mcp.config import load_settings
from runwise_mcp.server import build_server

pytestmark = pytest.mark.anyio

LIVE = 5.0  # seconds: an answer that must not wait for another call's long read comes within this


def client_for(root: Path, env: dict[str, str] | None = None) -> Client:
    return Client(build_server(load_settings([str(root)], env={"RUNWISE_CACHE_DIR": "off", **(env or {})})),
                  raise_exceptions=True)


def text(res) -> str:
    return "\n".join(c.text for c in res.content)


def copy_run(scenario: str, root: Path) -> Path:
    src = run_dir(scenario)
    dst = root / src.parent.name / src.name
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ---- item 19: a partly written last line of output.log ---------------------------------------------


def cursor_of(answer: str) -> str:
    m = re.search(r'cursor="([^"]+)"', answer)
    assert m, answer
    return m.group(1)


async def test_attack_partial_console_line_not_read_twice(tmp_path):
    """The training job writes a console line in two writes, and the tools are called between
    them. The half line is neither parsed nor shown (no `step 400 val_nine_spe...` key, no tail
    line, the cursor does not move), and once its newline arrives the line is read exactly once:
    no `step 400 val_nine_spestep 400 ...`, no garbled key, one new tail line, values exact."""
    d = copy_run("finished", tmp_path)
    out = d / "files" / "output.log"
    size0 = out.stat().st_size
    line = b"step 400 val_nine_species/token_accuracy 0.5 loss 0.05"
    async with client_for(tmp_path) as c:
        first = text(await c.call_tool("tail_run", {"run": "R001"}))
        cur = cursor_of(first)
        assert cur == f"1:{size0}"
        with out.open("ab") as f:
            f.write(line[:21])  # "step 400 val_nine_spe", no newline yet
        mid_tail = text(await c.call_tool("tail_run", {"run": "R001", "cursor": cur}))
        mid_keys = text(await c.call_tool("list_keys", {"run": "R001"}))
        mid_hist = text(await c.call_tool("get_history", {"run": "R001", "source": "console"}))
        assert "no new console output since the cursor" in mid_tail, mid_tail
        assert cursor_of(mid_tail) == cur  # the cursor does not pass the half line
        assert "val_nine" not in mid_tail + mid_keys + mid_hist
        assert "4 lines; steps 0–300" in mid_keys
        with out.open("ab") as f:
            f.write(line[21:] + b"\n")
        end_tail = text(await c.call_tool("tail_run", {"run": "R001", "cursor": cur}))
        end_keys = text(await c.call_tool("list_keys", {"run": "R001"}))
        end_hist = text(await c.call_tool("get_history", {"run": "R001", "source": "console"}))
        again = text(await c.call_tool("tail_run", {"run": "R001", "cursor": cursor_of(end_tail)}))
    shown = [ln for ln in end_tail.splitlines() if ln.startswith("  step")]
    assert shown == ["  " + line.decode()], end_tail  # exactly once, whole
    assert "last 1 line since the cursor" in end_tail
    assert cursor_of(end_tail) == f"1:{size0 + len(line) + 1}"
    assert "no new console output since the cursor" in again, again
    assert "5 lines; steps 0–400" in end_keys, end_keys
    keys = re.findall(r"^  (\S+)\s+\d+ pts", end_keys.split("console keys", 1)[1], re.M)
    # the console's loss prints the logged train/loss: one line says so; the new key is listed
    assert sorted(keys) == ["val_nine_species/token_accuracy"], end_keys
    assert "loss = train/loss (the console goes on to step 400)" in end_keys
    assert "lostep" not in end_keys + end_hist and "spestep" not in end_keys + end_hist
    rows = [ln for ln in end_hist.splitlines() if ln and ln[0].isdigit()]
    assert end_hist.splitlines()[1] == "step,train/loss,val_nine_species/token_accuracy", end_hist
    assert rows == ["0,2.0422,", "100,0.8915,", "200,0.4177,", "300,0.1702,", "400,0.05,0.5"], end_hist
    assert "latest printed @400: loss 0.05 | val_nine_species/token_accuracy 50.0%" in end_tail


def test_attack_partial_console_line_offsets_stay_exact(tmp_path):
    """A line arriving in many writes (one longer than the cap kept of a line) is parsed once,
    and the end offsets the cursor counts stay the file's real ones."""
    from runwise_mcp.sources.console import ConsoleFile, file_key

    class Small(ConsoleFile):
        MAX_LINE = 16  # a runaway line: only its last 16 bytes are kept

    log = tmp_path / "output.log"
    log.write_bytes(b"")
    cf = Small(str(log))
    writes = [b"step 1 loss 0.9\nstep 2 ", b"x" * 40, b"y" * 40, b" loss 0.5", b"\nstep 3 lo", b"ss 0.25\n"]
    for w in writes:
        with log.open("ab") as f:
            f.write(w)
        cf.update(file_key(str(log)))
    data = log.read_bytes()
    ends = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    assert [pos for pos, _ in cf.tail] == ends
    assert cf.offset == len(data)
    assert [t for _, t in cf.tail][0] == "step 1 loss 0.9" and [t for _, t in cf.tail][2] == "step 3 loss 0.25"
    assert cf.parsed.lines == 3
    h = cf.history()
    # the runaway line kept only its last 16 bytes ("yyyyyyy loss 0.5": no step), parsed once
    assert list(h.steps) == [1, 3] and list(h.columns["loss"].values) == [0.9, 0.25]
    assert [t for _, t in cf.tail][1] == "y" * 7 + " loss 0.5"


# ---- item 9: one stuck call must not stall the others; a cancelled call stops its work ------------

BIG_ROWS = 300_000  # a ~62 MB .wandb: decoding it in full takes seconds of CPU time


def big_log_run(root: Path, rows: int = BIG_ROWS, run_id: str = "bigbig01") -> Path:
    """A run whose .wandb holds ``rows`` history rows: the "finished" fixture's records re-framed
    (its run record renamed, its history row repeated with new steps and losses), written with
    the framing wandb uses (tests/test_attacks.py)."""
    from test_attacks import read_records, write_records
    from wandb.proto import wandb_internal_pb2 as pb

    src = run_dir("finished")
    d = root / "wandb" / f"offline-run-20261127_120000-{run_id}"
    shutil.copytree(src, d, symlinks=True)
    (old,) = d.glob("run-*.wandb")
    header = old.read_bytes()[:7]
    recs = [pb.Record.FromString(r) for r in read_records(old)]
    first = next(i for i, r in enumerate(recs) if r.WhichOneof("record_type") == "history")
    for r in recs[:first]:
        if r.WhichOneof("record_type") == "run":
            r.run.run_id, r.run.display_name = run_id, f"big-{run_id}"
    out = [r.SerializeToString() for r in recs[:first] if r.WhichOneof("record_type") != "summary"]
    row = recs[first]
    items = {"/".join(it.nested_key): it for it in row.history.item}
    for i in range(rows):
        items["_step"].value_json = str(i)
        items["train/loss"].value_json = repr(1.0 / (i + 1))
        row.history.step.num = i
        out.append(row.SerializeToString())
    out += [r.SerializeToString() for r in recs if r.WhichOneof("record_type") == "exit"]
    old.unlink()
    write_records(d / f"run-{run_id}.wandb", header, out)
    (d / "files" / "output.log").unlink()
    return d


@pytest.fixture(scope="module")
def big_root(tmp_path_factory) -> Path:
    """A root with one big run (bigbig01) and the small "crashed" fixture run (riserfai)."""
    pytest.importorskip("wandb.proto.wandb_internal_pb2")
    root = tmp_path_factory.mktemp("big")
    big_log_run(root)
    copy_run("crashed", root)
    return root


def other_threads_cpu() -> float:
    """CPU seconds this process spent outside the calling (event loop) thread: the server's
    worker threads, including ones that have exited."""
    return time.process_time() - time.thread_time()


async def settled_cpu(deadline: float = 30.0) -> float:
    """Wait until the worker threads are idle (under 0.1 s of CPU in a second); their CPU then."""
    import anyio

    end = time.monotonic() + deadline
    prev = other_threads_cpu()
    while time.monotonic() < end:
        await anyio.sleep(1.0)
        now = other_threads_cpu()
        if now - prev < 0.1:
            return now
        prev = now
    return other_threads_cpu()


SMALL_CALLS = [("run_summary", {"run": "R002-crashed"}), ("list_runs", {}), ("tail_run", {"run": "R002-crashed"}),
               ("list_keys", {"run": "R002-crashed"}), ("get_config", {"run": "R002-crashed"})]


@pytest.mark.parametrize("slow", [("history_stats", {"run": "bigbig01"}),
                                  ("get_history", {"run": "bigbig01", "keys": ["train/loss"]})],
                         ids=["full read", "keyed read"])
async def test_attack_stuck_call_does_not_stall_others(big_root, slow):
    """While one call decodes a 62 MB log (in full, or for one key), calls on another run and
    list_runs each answer within 5 s, while the decode goes on (its progress notifications
    continue after they answered); then the long call answers with the whole history. (They
    waited for the index lock until the decode ended.)"""
    import anyio

    async with client_for(big_root) as c:
        listed = text(await c.call_tool("list_runs", {}))
        assert "big-bigbig01" in listed and "R002-crashed" in listed
        started = anyio.Event()
        progress_at: list[float] = []
        ended: dict[str, object] = {}

        async def on_progress(progress, total, message):
            progress_at.append(time.monotonic())
            started.set()

        async def long_call():
            ended["res"] = await c.call_tool(slow[0], slow[1], progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            with anyio.fail_after(120):
                await started.wait()  # the decode is under way
            for tool, args in SMALL_CALLS:
                t0 = time.monotonic()
                res = await c.call_tool(tool, args)
                took = time.monotonic() - t0
                assert not res.is_error, (tool, text(res))
                assert took < LIVE, (tool, took)
            answered = time.monotonic()
        # the decode was still reporting progress after the other calls had answered
        assert progress_at[-1] > answered, (progress_at, answered)
        out = text(ended["res"])
        assert not ended["res"].is_error, out
        if slow[0] == "history_stats":
            assert re.search(r"train/loss: 300,000 pts 0–299,999", out), out
        else:
            rows = [ln for ln in out.splitlines() if ln[:1].isdigit()]
            assert rows[0] == "0,1" and rows[-1] == "299999,3.33333e-06", out[-400:]  # every row decoded


async def test_attack_cancelled_call_stops_its_work(big_root):
    """The client cancels a call while it decodes a 62 MB log (the Client sends
    notifications/cancelled when the awaiting task is cancelled). The server's worker threads
    then spend less than half the CPU time a complete read of that log costs (the decode stopped
    at its next checkpoint instead of running to the end, unseen), the next call answers within
    5 s, and the same read, asked again, completes."""
    import anyio

    async with client_for(big_root) as c:
        await c.call_tool("list_runs", {})
        started = anyio.Event()

        async def on_progress(progress, total, message):
            started.set()

        async def long_call():
            await c.call_tool("history_stats", {"run": "bigbig01"}, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            with anyio.fail_after(120):
                await started.wait()  # a sixth of the log is decoded
            at_cancel = other_threads_cpu()
            tg.cancel_scope.cancel()
        after_cancel = await settled_cpu() - at_cancel
        t0 = time.monotonic()
        res = await c.call_tool("run_summary", {"run": "R002-crashed"})
        assert not res.is_error and time.monotonic() - t0 < LIVE, text(res)
        before = other_threads_cpu()
        res = await c.call_tool("history_stats", {"run": "bigbig01"})
        complete = await settled_cpu() - before
    assert "train/loss: 300,000 pts 0–299,999" in text(res), text(res)
    assert after_cancel < 0.5 * complete, (after_cancel, complete)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``, from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_attack_cancelled_call_stops_its_work_over_stdio(big_root):
    """The same over real stdio: the server process, sent notifications/cancelled for a call
    decoding the 62 MB log, spends less than half the CPU of a complete read afterwards, and
    answers the next calls (the cancelled one gets no answer, as the protocol says)."""
    import json
    import os
    import subprocess
    import sys

    from helpers import REPO

    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to measure the server's CPU time")
    p = subprocess.Popen([sys.executable, "-m", "runwise_mcp", "--root", str(big_root)],
                         cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO), "RUNWISE_CACHE_DIR": "off"},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdin is not None and p.stdout is not None

    def send(msg: dict) -> None:
        p.stdin.write(json.dumps({"jsonrpc": "2.0", **msg}).encode() + b"\n")
        p.stdin.flush()

    def receive() -> dict:
        line = p.stdout.readline()
        assert line, "the server closed stdout"
        return json.loads(line)

    def call(i: int, tool: str, args: dict, token: int | None = None) -> None:
        params: dict = {"name": tool, "arguments": args}
        if token is not None:
            params["_meta"] = {"progressToken": token}
        send({"id": i, "method": "tools/call", "params": params})

    def settled(deadline: float = 30.0) -> float:
        end, prev = time.monotonic() + deadline, _proc_cpu(p.pid)
        while time.monotonic() < end:
            time.sleep(1.0)
            now = _proc_cpu(p.pid)
            if now - prev < 0.1:
                return now
            prev = now
        return _proc_cpu(p.pid)

    try:
        send({"id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        assert receive()["id"] == 1
        send({"method": "notifications/initialized"})
        call(2, "list_runs", {})
        assert receive()["id"] == 2
        call(3, "history_stats", {"run": "bigbig01"}, token=3)
        msg = receive()
        assert msg.get("method") == "notifications/progress", msg  # the decode is under way
        at_cancel = _proc_cpu(p.pid)
        send({"method": "notifications/cancelled", "params": {"requestId": 3, "reason": "test"}})
        after_cancel = settled() - at_cancel
        t0 = time.monotonic()
        call(4, "run_summary", {"run": "R002-crashed"})
        while (msg := receive()).get("id") != 4:
            assert msg.get("id") != 3, msg  # no answer to the cancelled call
        assert time.monotonic() - t0 < LIVE and msg["result"]["isError"] is False, msg
        before = _proc_cpu(p.pid)
        call(5, "history_stats", {"run": "bigbig01"})
        while (msg := receive()).get("id") != 5:
            assert msg.get("id") != 3, msg
        complete = settled() - before
        assert "train/loss: 300,000 pts 0–299,999" in msg["result"]["content"][0]["text"], msg
        assert after_cancel < 0.5 * complete, (after_cancel, complete)
    finally:
        p.stdin.close()
        p.wait(timeout=60)


async def test_attack_two_calls_on_one_big_log_share_one_decode(big_root):
    """Two calls reading the same 62 MB log at once (decoded outside the index lock) share one
    decode: together they cost well under twice the CPU of one complete read, and both answer
    with the whole history."""
    import anyio

    async def one(c: Client, out: list) -> None:
        out.append(text(await c.call_tool("history_stats", {"run": "bigbig01"})))

    async with client_for(big_root) as c:
        await c.call_tool("list_runs", {})
        before = other_threads_cpu()
        single: list[str] = []
        await one(c, single)
        complete = await settled_cpu() - before
    async with client_for(big_root) as c:  # a new server: the log is not read yet
        await c.call_tool("list_runs", {})
        before = other_threads_cpu()
        both: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, c, both)
            tg.start_soon(one, c, both)
        shared = await settled_cpu() - before
    assert len(both) == 2 and all("train/loss: 300,000 pts 0–299,999" in out for out in single + both), both
    assert shared < 1.5 * complete, (shared, complete)
