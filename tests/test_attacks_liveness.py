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
    assert sorted(keys) == ["loss", "val_nine_species/token_accuracy"], end_keys
    assert "lostep" not in end_keys + end_hist and "spestep" not in end_keys + end_hist
    rows = [ln for ln in end_hist.splitlines() if ln and ln[0].isdigit()]
    assert end_hist.splitlines()[1] == "step,loss,val_nine_species/token_accuracy", end_hist
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
