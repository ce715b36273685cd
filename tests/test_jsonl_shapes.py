"""JSON-lines metric logs decoded through shape templates (sources/jsonl_shapes.py) give exactly
what decoding every line with json.loads gives: the same rows, steps, values (bit for bit, NaN,
±inf and -0.0 included) and non-numeric keys, on lines written by Python's json module with the
awkward values a training loop can write."""

from __future__ import annotations

import json
import math
import random
import struct

import pytest

from runwise_mcp.sources.metric_logs import MetricLogRun


def bits(v: float) -> bytes:
    return struct.pack("<d", v)


def snapshot(run: MetricLogRun):
    h = run.history
    cols = {k: (list(c.steps), [bits(v) for v in c.values]) for k, c in h.columns.items()}
    other = {k: (o.count, o.first_step, o.last_step, repr(o.last), o.kind, o.last_row) for k, o in h.other.items()}
    return list(h.steps), cols, other, run.notes()


def read_both(path, tmp_path):
    fast = MetricLogRun(str(path), str(tmp_path))
    slow = MetricLogRun(str(path), str(tmp_path))
    slow.shapes = False
    fast.refresh(full=True)
    slow.refresh(full=True)
    return fast, slow


AWKWARD = [0, -1, 7, 123456789012345678, 1234567890123456789012, -0.0, 0.0, 1e-7, 2.5e300, 1e308 * 10,
           -1e308 * 10, float("nan"), 3.141592653589793, -2.2250738585072014e-308, 5e-324, 10**400]


def write_lines(path, objs, **dump):
    with open(path, "w") as f:
        for o in objs:
            f.write((o if isinstance(o, str) else json.dumps(o, **dump)) + "\n")


def test_plain_training_log_is_all_fast_and_identical(tmp_path):
    p = tmp_path / "m.jsonl"
    write_lines(p, [{"step": s, "loss": 2.5 / (1 + s * 1e-4), "acc": min(1.0, s * 1e-6), "lr": 3e-4,
                     "grad_norm": 1.0 + (s % 97) / 97, "split": "train"} for s in range(5000)])
    fast, slow = read_both(p, tmp_path)
    assert snapshot(fast) == snapshot(slow)
    assert fast._shapes.fast_rows >= 4980  # the shape path did the work (not json.loads)
    assert fast.history.rows == 5000 and fast.history.other["split"].count == 5000


@pytest.mark.parametrize("seed", range(6))
def test_random_awkward_lines_same_as_json_loads(tmp_path, seed):
    rnd = random.Random(seed)
    objs: list = []
    step = 0
    for _ in range(3000):
        kind = rnd.random()
        if kind < 0.02:
            objs.append(rnd.choice(["", "   ", "not json", "[1, 2]", '{"step": 1, "step": 2, "loss": 1}',
                                    '{"step": 01, "loss": 1}', '{"step": 3, "loss": 1.}', '{"step": -0, "x": 1}',
                                    '{"step": 3, "loss": 1e5, "n": -0}', '{"step":4,"loss":0.5}',
                                    '  {"step": 4, "loss": 0.5}', '{"step": 5, "loss": 0.5}\r']))
            continue
        step += rnd.choice([0, 1, 1, 1, 2, 10, -3])
        o: dict = {"step": step}
        if rnd.random() < 0.05:
            o["step"] = rnd.choice([float(step), str(step), step + 0.5, None, 1e300])
        shape = rnd.randrange(4)
        if shape == 0:
            o.update(loss=rnd.choice(AWKWARD + [rnd.random()]), lr=rnd.random() * 1e-3)
        elif shape == 1:
            o.update(val_loss=rnd.choice(AWKWARD), val_acc=rnd.random(), phase=rnd.choice(["val", "eval"]))
        elif shape == 2:
            o.update(loss=rnd.random(), note=rnd.choice(["a\"b", "tab\there", "é", "x\\y", "3.5", "50%", "nan",
                                                         "plain"]),
                     flag=rnd.choice([True, False, None]))
        else:
            o.update(loss=rnd.random(), cfg={"a": 1}, tags=[1, 2], n=rnd.choice(AWKWARD))
        if rnd.random() < 0.1:
            o = dict(reversed(list(o.items())))
        objs.append(o)
    compact = seed % 2 == 1
    p = tmp_path / "m.jsonl"
    write_lines(p, objs, **({"separators": (",", ":")} if compact else {}), ensure_ascii=seed % 3 != 0)
    fast, slow = read_both(p, tmp_path)
    assert snapshot(fast) == snapshot(slow)
    assert fast._shapes.fast_rows > 500


def test_growing_file_with_partial_lines_same_as_json_loads(tmp_path):
    p = tmp_path / "m.jsonl"
    lines = [json.dumps({"step": s, "loss": 1 / (s + 1), "phase": "train"}) + "\n" for s in range(400)]
    lines += [json.dumps({"step": s, "val_loss": float("nan") if s % 7 == 1 else s * 0.5}) + "\n"
              for s in range(400, 600)]
    blob = "".join(lines).encode()
    fast = MetricLogRun(str(p), str(tmp_path))
    slow = MetricLogRun(str(p), str(tmp_path))
    slow.shapes = False
    rnd = random.Random(3)
    cut = 0
    while cut < len(blob):
        cut = min(len(blob), cut + rnd.randrange(1, 3000))
        p.write_bytes(blob[:cut])
        for r in (fast, slow):
            r.keys = {}  # the file changed: re-read (mtime may not tick between writes)
            r.refresh()
        assert snapshot(fast) == snapshot(slow)
    assert fast.history.rows == 600 and math.isnan(fast.history.columns["val_loss"].values[0])


@pytest.mark.parametrize("with_neg_zero", [False, True])
def test_one_shape_with_every_number_spelling(tmp_path, with_neg_zero):
    """One shape throughout (the whole-block pass), numbers in every spelling JSON allows,
    and the ones float() reads differently from json.loads (-0, 19+ digit integers)."""
    toks = ["-0.0", "0", "1e5", "-1E-5", "2.5e+300", "1e400", "NaN", "Infinity", "-Infinity", "123456789012345678",
            "1234567890123456789", "-98765432109876543210", "0.5", "-7"] + (["-0"] if with_neg_zero else [])
    p = tmp_path / "m.jsonl"
    with open(p, "w") as f:
        for i in range(20000):
            f.write(f'{{"step": {i}, "loss": {toks[i % len(toks)]}, "lr": {toks[(i * 7) % len(toks)]}}}\n')
    fast, slow = read_both(p, tmp_path)
    assert snapshot(fast) == snapshot(slow)
    assert fast._shapes.fast_rows > 10000
    h = fast.history
    assert math.copysign(1, h.columns["loss"].values[0]) == -1  # -0.0 stays negative zero
    if with_neg_zero:
        i = toks.index("-0")
        loss = dict(zip(h.columns["loss"].steps, h.columns["loss"].values))
        assert loss[i] == 0 and math.copysign(1, loss[i]) == 1  # the integer 0, not -0.0
    assert "loss" in h.other  # the integers past 64 bits are kept as text-like values, as json.loads gives them
