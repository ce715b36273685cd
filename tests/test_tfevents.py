"""The TensorBoard event-file reader (runwise_mcp.sources.tfevents) against TensorBoard's own
EventAccumulator, on files written by the real tensorboardX (and hand-framed events built from
TensorBoard's protos for encodings no installed writer emits), plus damage, growth and purges."""

from __future__ import annotations

import itertools
import math
import os
import pickle
import shutil
import struct
import threading
import tracemalloc
from array import array
from pathlib import Path

import pytest

pytest.importorskip("tensorboardX")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.util import tensor_util
from tensorboardX import SummaryWriter
from tensorboardX.proto import event_pb2 as tbx_event_pb2
from tensorboardX.proto import summary_pb2 as tbx_summary_pb2
from tensorboardX.record_writer import RecordWriter
from tensorboardX.record_writer import masked_crc32c as tbx_masked_crc32c

from runwise_mcp.sources import tfevents
from runwise_mcp.sources.tfevents import EventFile, is_event_file

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tensorboard_runs"
KEEP_ALL = {"scalars": 0, "tensors": 0, "histograms": 0, "images": 0, "audio": 0, "compressedHistograms": 0}


# ---- helpers ---------------------------------------------------------------------------------------


def read(path, **kw) -> EventFile:
    ef = EventFile(str(path), **kw)
    ef.update()
    return ef


def only_file(d: Path) -> Path:
    files = sorted(p for p in d.rglob("*") if p.is_file() and is_event_file(p.name))
    assert len(files) == 1, files
    return files[0]


def accumulator(path) -> EventAccumulator:
    ea = EventAccumulator(str(path), size_guidance=KEEP_ALL)
    ea.Reload()
    return ea


def ea_scalars(path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar TensorBoard shows for one file: simple_value scalars, and one-element tensors of
    tags whose plugin is `scalars` (what the scalars dashboard reads)."""
    ea = accumulator(path)
    out: dict[str, tuple[list[int], list[float]]] = {}
    for tag in ea.Tags()["scalars"]:
        evs = ea.Scalars(tag)
        out[tag] = ([e.step for e in evs], [e.value for e in evs])
    for tag in ea.Tags()["tensors"]:
        if ea.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        steps, values = [], []
        for e in ea.Tensors(tag):
            try:
                arr = tensor_util.make_ndarray(e.tensor_proto)
            except TypeError:  # a dtype tensorboard's numpy shim does not know (bfloat16 without TF)
                continue
            if arr.size != 1 or arr.dtype.kind not in "fiub":
                continue
            steps.append(e.step)
            values.append(float(arr.item()))
        if steps:
            out[tag] = (steps, values)
    return out


def ours(ef: EventFile) -> dict[str, tuple[list[int], list[float]]]:
    return {tag: (list(s), list(v)) for tag, (s, v) in ef.scalars.items()}


def same(a: dict, b: dict) -> bool:
    """Scalar dicts equal, NaN equal to NaN."""
    if a.keys() != b.keys():
        return False
    for k, (sa, va) in a.items():
        sb, vb = b[k]
        if sa != sb or len(va) != len(vb):
            return False
        if any(not (x == y or (math.isnan(x) and math.isnan(y))) for x, y in zip(va, vb)):
            return False
    return True


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def scalars_meta() -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def tensor_event(tag: str, step: int, tensor: bytes, meta: bool, wall: float = 1.7e9) -> bytes:
    """An Event whose one value is a tensor given as raw TensorProto bytes (so unpacked repeated
    fields, which protobuf itself never writes, can be tested too)."""
    value = summary_pb2.Summary.Value(tag=tag)
    if meta:
        value.metadata.CopyFrom(scalars_meta())
    value_bytes = value.SerializeToString() + ld(8, tensor)
    head = event_pb2.Event(wall_time=wall + step, step=step).SerializeToString()
    return head + ld(5, ld(1, value_bytes))


def write_records(path: Path, events: list[bytes], version: str | None = "brain.Event:2") -> None:
    w = RecordWriter(str(path))
    if version is not None:
        w.write(event_pb2.Event(wall_time=1.7e9, file_version=version).SerializeToString())
    for e in events:
        w.write(e)
    w.close()


def tbx_run(d: Path, steps: int = 40, extra: bool = True) -> Path:
    """A small but varied tensorboardX run: 3 scalar tags (one sparse), histogram, image, text."""
    import numpy as np

    w = SummaryWriter(str(d))
    for i in range(steps):
        w.add_scalar("train/loss", 1.0 / (i + 1), i)
        w.add_scalar("train/acc", i / steps, i)
        if i % 10 == 9:
            w.add_scalar("val/loss", 2.0 / (i + 1), i)
        if extra and i % 20 == 0:
            w.add_histogram("weights", np.arange(10.0) * (i + 1), i)
            w.add_image("sample", np.full((3, 4, 4), i / steps), i)
            w.add_text("note", f"step {i}", i)
    w.add_scalar("train/loss", float("nan"), steps)
    w.add_scalar("train/acc", float("inf"), steps)
    w.add_scalar("big_step", 3.0, 5_000_000_000)  # a step needing a 5-byte varint
    w.close()
    return only_file(d)


# ---- CRC and names -------------------------------------------------------------------------------


def test_crc32c_known_vectors():
    assert tfevents.crc32c_py(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert tfevents.crc32c_py(b"") == 0
    for data in (b"", b"a", b"\x00" * 8, bytes(range(256)), struct.pack("<Q", 47)):
        assert tfevents.mask(tfevents.crc32c_py(data)) == tbx_masked_crc32c(data)
        assert tfevents.masked_crc32c(data) == tbx_masked_crc32c(data)
    assert tfevents.length_crc(47) == tbx_masked_crc32c(struct.pack("<Q", 47))


def test_is_event_file_follows_tensorboard():
    assert is_event_file("events.out.tfevents.1700000000.host")
    assert is_event_file("/a/b/events.out.tfevents.1700000000.host.123.0.v2")
    assert is_event_file("x.tfevents.y")
    assert not is_event_file("events.out.tfevents.1700000000.host.profile-empty")
    assert not is_event_file("events.out.1700000000.host")
    assert not is_event_file("/tfevents/readme.txt")  # only the base name counts


# ---- agreement with TensorBoard ------------------------------------------------------------------


def test_tensorboardx_run_matches_event_accumulator(tmp_path):
    path = tbx_run(tmp_path / "run")
    ef = read(path)
    assert ef.file_version == "brain.Event:2" and ef.writer == ""
    assert same(ours(ef), ea_scalars(path))
    assert set(ef.scalars) == {"train/loss", "train/acc", "val/loss", "big_step"}
    assert ef.scalars["big_step"][0].tolist() == [5_000_000_000]
    assert math.isnan(ef.scalars["train/loss"][1][-1]) and ef.scalars["train/acc"][1][-1] == math.inf
    assert ef.tags_seen == set(ef.scalars)
    ea = accumulator(path)
    assert ef.other["weights"].kind == "histogram" and ef.other["weights"].count == len(ea.Histograms("weights"))
    assert ef.other["sample"].kind == "image" and ef.other["sample"].count == len(ea.Images("sample"))
    assert ef.other["sample"].first_step == 0 and ef.other["sample"].last_step == 20
    text_tag = next(t for t in ef.other if t.startswith("note"))
    assert ef.other[text_tag].plugin == "text" and ef.other[text_tag].count == len(ea.Tensors(text_tag)) == 2
    assert ef.damage.any is False and ef.damage.describe() == "" and ef.tail == ""
    assert ef.offset == ef.size == path.stat().st_size
    assert ef.records == 1 + 40 * 2 + 4 + 3 * 2 + 2 + 1  # version, scalars, val, hist+image+text, nan/inf, big
    assert ef.last_step == 5_000_000_000
    assert ef.first_wall_time is not None and ef.first_wall_time <= ef.last_wall_time
    assert ea.FirstEventTimestamp() == ef.first_wall_time


def test_timeline_keeps_last_wall_time_per_step(tmp_path):
    events = []
    walls = {0: [10.0, 11.0], 1: [12.0, 13.5], 2: [14.0]}
    for step, ws in walls.items():
        for k, w in enumerate(ws):
            events.append(event_pb2.Event(wall_time=w, step=step, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=f"t{k}", simple_value=step)])).SerializeToString())
    path = tmp_path / "events.out.tfevents.1.t"
    write_records(path, events)
    ef = read(path)
    assert ef.timeline[0].tolist() == [0, 1, 2]
    assert ef.timeline[1].tolist() == [11.0, 13.5, 14.0]
    assert (ef.first_wall_time, ef.last_wall_time, ef.last_step) == (1.7e9, 14.0, 2)


def test_hparams_run(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"))
    w.add_hparams({"lr": 0.1, "bs": 32, "opt": "adam", "flag": True}, {"hp/acc": 0.9, "hp/loss": 0.25})
    w.close()
    path = next(p for p in (tmp_path / "run").rglob("*") if p.is_file() and "_hparams_" not in p.name
                and p.parent != tmp_path / "run")
    ef = read(path)
    assert ef.hparams == {"lr": 0.1, "bs": 32.0, "opt": "adam", "flag": True}
    assert sorted(ef.hparam_metrics) == ["hp/acc", "hp/loss"]
    assert {t for t, o in ef.other.items() if o.kind == "hparams"} == {
        "_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    assert all(o.plugin == "hparams" for o in ef.other.values())
    assert same(ours(ef), ea_scalars(path))
    assert ef.scalars["hp/loss"][1].tolist() == [0.25]


def encodings() -> list[tuple[str, bytes, float | None]]:
    """(tag, TensorProto bytes, expected scalar or None for 'not a scalar')."""
    T = tensor_pb2.TensorProto
    f32 = struct.pack("<f", 1.5)
    out = [
        ("float_packed", T(dtype=1, float_val=[1.5]).SerializeToString(), 1.5),
        ("float_unpacked", b"\x08\x01" + b"\x2d" + f32, 1.5),
        ("float_shape1", T(dtype=1, float_val=[3.0], tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])).SerializeToString(), 3.0),
        ("double_packed", T(dtype=2, double_val=[0.1]).SerializeToString(), 0.1),
        ("double_unpacked", b"\x08\x02" + b"\x31" + struct.pack("<d", 0.1), 0.1),
        ("int32_packed", T(dtype=3, int_val=[-7]).SerializeToString(), -7.0),
        ("int32_unpacked", b"\x08\x03" + b"\x38" + varint(-7), -7.0),
        ("int64_packed", T(dtype=9, int64_val=[1 << 40]).SerializeToString(), float(1 << 40)),
        ("int64_unpacked", b"\x08\x09" + b"\x50" + varint(-(1 << 40)), -float(1 << 40)),
        ("half_packed", T(dtype=19, half_val=[0x3800]).SerializeToString(), 0.5),
        ("half_unpacked", b"\x08\x13" + b"\x68" + varint(0x3E00), 1.5),
        ("bf16_val", T(dtype=14, half_val=[0x3FC0]).SerializeToString(), 1.5),
        ("content_float", T(dtype=1, tensor_content=f32, tensor_shape=tensor_shape_pb2.TensorShapeProto())
         .SerializeToString(), 1.5),
        ("content_double", T(dtype=2, tensor_content=struct.pack("<d", 2.25)).SerializeToString(), 2.25),
        ("content_int32", T(dtype=3, tensor_content=struct.pack("<i", -3)).SerializeToString(), -3.0),
        ("content_int64", T(dtype=9, tensor_content=struct.pack("<q", 1 << 50)).SerializeToString(),
         float(1 << 50)),
        ("content_half", T(dtype=19, tensor_content=struct.pack("<e", -2.5)).SerializeToString(), -2.5),
        ("content_bf16", T(dtype=14, tensor_content=b"\xc0\x3f").SerializeToString(), 1.5),
        ("vector", T(dtype=1, float_val=[1.0, 2.0, 3.0], tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)])).SerializeToString(), None),
        ("string", T(dtype=7, string_val=[b"hi"]).SerializeToString(), None),
    ]
    return out


def test_every_tensor_encoding(tmp_path):
    events = []
    cases = encodings()
    for step in range(3):
        for tag, raw, _ in cases:
            # TF2 writes metadata with every value, TF1 with a tag's first value only: do both
            meta = step == 0 or tag.endswith(("packed", "_val"))
            events.append(tensor_event(f"enc/{tag}", step, raw, meta))
    path = tmp_path / "events.out.tfevents.1.enc"
    write_records(path, events)
    ef = read(path)
    for tag, _, want in cases:
        if want is None:
            assert f"enc/{tag}" not in ef.scalars
            assert ef.other[f"enc/{tag}"].count == 3 and ef.other[f"enc/{tag}"].plugin == "scalars"
        else:
            steps, values = ef.scalars[f"enc/{tag}"]
            assert steps.tolist() == [0, 1, 2], tag
            assert values.tolist() == [want] * 3, tag
    # TensorBoard agrees wherever its make_ndarray handles the dtype
    theirs = ea_scalars(path)
    assert len(theirs) >= 14
    for tag, got in theirs.items():
        assert got == ours(ef)[tag], tag
    assert ef.damage.any is False and ef.tail == ""


def test_scalar_pb_tensor_events_and_tf1_metadata(tmp_path):
    """tensor-form scalars written through tensorboard's own scalar_pb (the TF2 summary layout)."""
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb

    w = SummaryWriter(str(tmp_path / "run"))
    for i in range(30):
        summary = scalar_pb("tf2/loss", 1.0 / (i + 1))
        if i > 0:  # TF1's FileWriter strips the metadata after a tag's first value
            summary.value[0].ClearField("metadata")
        for s in (summary, scalar_pb("tf2/lr", 0.5 ** i)):
            w.file_writer.add_summary(tbx_summary_pb2.Summary.FromString(s.SerializeToString()), i)
    w.close()
    path = only_file(tmp_path / "run")
    ef = read(path)
    assert same(ours(ef), ea_scalars(path))
    assert ef.scalars["tf2/loss"][0].tolist() == list(range(30))


def test_merged_summaries_of_many_values(tmp_path):
    """TF1's merge_all: one event holds several values (fast path for plain simple values, the
    generic decoder for anything else in the same file)."""
    V = tbx_summary_pb2.Summary.Value
    long_tag = "deep/" + "x" * 150  # a tag over 127 bytes: two-byte lengths
    w = SummaryWriter(str(tmp_path / "run"))
    for i in range(60):
        values = [V(tag="a", simple_value=i * 0.5), V(tag="b", simple_value=-i), V(tag="c/d", simple_value=i % 3)]
        if i % 10 == 0:
            values.append(V(tag=long_tag, simple_value=float(i)))
        if i % 15 == 0:
            values.append(V(tag="h", histo=tbx_summary_pb2.HistogramProto(min=0.0, max=1.0, num=1)))
        w.file_writer.add_summary(tbx_summary_pb2.Summary(value=values), i)
    many = [V(tag=f"m{k:02d}", simple_value=k) for k in range(12)]  # a summary over 127 bytes
    w.file_writer.add_summary(tbx_summary_pb2.Summary(value=many), 60)
    w.close()
    path = only_file(tmp_path / "run")
    ef = read(path)
    assert same(ours(ef), ea_scalars(path))
    assert ef.scalars["a"][1].tolist() == [i * 0.5 for i in range(60)]
    assert ef.scalars[long_tag][0].tolist() == list(range(0, 60, 10))
    assert ef.scalars["m11"][1].tolist() == [11.0] and ef.other["h"].count == 4
    keyed = read(path, keys=frozenset({"b", long_tag}))
    assert set(keyed.scalars) == {"b", long_tag} and keyed.tags_seen == ef.tags_seen
    assert keyed.scalars["b"] == ef.scalars["b"] and keyed.scalars[long_tag] == ef.scalars[long_tag]


def test_merged_summaries_out_of_order_purge(tmp_path):
    def ev(step, tags):
        return event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=t, simple_value=step + k) for k, t in enumerate(tags)]))\
            .SerializeToString()

    events = [ev(i, ("a", "b")) for i in range(20)] + [ev(i, ("a", "c")) for i in range(8, 12)]
    path = tmp_path / "events.out.tfevents.1.v1"
    write_records(path, events, version="brain.Event:1")
    ef = read(path)
    assert same(ours(ef), ea_scalars(path))
    assert ef.scalars["a"][0].tolist() == list(range(12)) and len(ef.scalars["b"][0]) == 20
    assert len(ef.purged) == 1 and "12 point(s) of a at steps >= 8" in ef.purged[0]


# ---- growth ----------------------------------------------------------------------------------------


class CountingFile:
    """A real open file that counts the bytes read through it (to show reads are incremental)."""

    def __init__(self, path: str, counter: list[int]) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 (closed by __exit__)
        self.counter = counter

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.counter[0] += len(b)
        return b

    def seek(self, *a):
        return self.f.seek(*a)

    def tell(self):
        return self.f.tell()

    def fileno(self):
        return self.f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_incremental_reads_only_new_records(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"), flush_secs=10_000)
    for i in range(100):
        w.add_scalar("a", i * 0.5, i)
        w.add_scalar("b", -i, i)
    w.flush()
    path = only_file(tmp_path / "run")
    counter = [0]
    ef = EventFile(str(path), opener=lambda p: CountingFile(p, counter))
    assert ef.update() is True
    first_size, first_records = ef.size, ef.records
    assert ef.offset == first_size and first_records > 100  # (the writer's thread may still hold a few)
    counter[0] = 0
    assert ef.update() is False  # nothing new
    assert counter[0] <= tfevents.HEAD_BYTES
    for i in range(100, 160):
        w.add_scalar("a", i * 0.5, i)
        w.add_scalar("b", -i, i)
    w.close()
    counter[0] = 0
    assert ef.update() is True
    grown = path.stat().st_size - first_size
    assert ef.records == 1 + 2 * 160 and ef.records > first_records
    assert counter[0] <= grown + tfevents.HEAD_BYTES  # only the new bytes (and the head check)
    assert same(ours(ef), ours(read(path)))
    assert same(ours(ef), ea_scalars(path))


def test_truncation_at_every_offset_is_a_prefix(tmp_path):
    src = tbx_run(tmp_path / "run", steps=12, extra=True)
    data = src.read_bytes()
    full = read(src)
    whole = ours(full)
    path = tmp_path / "cut" / "events.out.tfevents.1.cut"
    path.parent.mkdir()
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        ef = read(path)
        assert not ef.damage.any, cut
        assert ef.offset <= cut and ef.records <= full.records
        for tag, (s, v) in ours(ef).items():
            n = len(s)
            assert s == whole[tag][0][:n], (cut, tag)
            assert same({tag: (s, v)}, {tag: (whole[tag][0][:n], whole[tag][1][:n])}), (cut, tag)
        assert (ef.tail in ("", "empty file")) == (ef.offset == cut), cut
        if 0 < cut < len(data) and ef.offset < cut:
            assert "not written yet" in ef.tail, (cut, ef.tail)
        # the writer finishes the file: the same reader catches up to the whole result
        path.write_bytes(data)
        ef.update()
        assert ef.records == full.records and same(ours(ef), whole), cut
        assert {t: o.count for t, o in ef.other.items()} == {t: o.count for t, o in full.other.items()}
        assert ef.timeline[0].tolist() == full.timeline[0].tolist()


def test_live_writer_followed_from_another_thread(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"), max_queue=1, flush_secs=10_000)
    w.add_scalar("x", 0.0, 0)
    w.flush()
    path = only_file(tmp_path / "run")
    ef = EventFile(str(path))
    stop = threading.Event()

    def follow():
        while not stop.is_set():
            ef.update()

    t = threading.Thread(target=follow)
    t.start()
    for i in range(1, 400):
        w.add_scalar("x", float(i), i)
    w.close()
    stop.set()
    t.join()
    ef.update()
    assert ef.scalars["x"][0].tolist() == list(range(400))
    assert ef.scalars["x"][1].tolist() == [float(i) for i in range(400)]
    assert not ef.damage.any and ef.tail == ""


# ---- damage ----------------------------------------------------------------------------------------


def record_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos + 12 <= len(data):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return starts


@pytest.mark.parametrize("verify", [False, True])
def test_byte_flips_never_raise_and_are_reported(tmp_path, verify):
    src = tbx_run(tmp_path / "run", steps=6, extra=False)
    data = src.read_bytes()
    full = read(src)
    starts = record_starts(data)
    path = tmp_path / "flip" / "events.out.tfevents.1.flip"
    path.parent.mkdir()
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0xA5
        path.write_bytes(bytes(bad))
        ef = read(path, verify=verify)
        start = max(s for s in starts if s <= pos)
        rel = pos - start
        n = struct.unpack_from("<Q", data, start)[0]
        reported = ef.damage.any or ef.tail != ""
        if rel < 12 or verify:
            # a header byte always (the length checksum), any byte when verifying data checksums
            assert reported, (pos, rel)
            assert ef.damage.describe() or ef.tail
        if reported and ef.damage.any:
            assert ef.damage.first_offsets[0] == start, pos
        # one record lost at most: resynchronisation finds the next one
        assert ef.records >= full.records - 1, (pos, rel, ef.records)
        if verify:
            assert ef.records == full.records - 1, pos
        if rel < 12 or verify or rel >= 12 + n:
            for tag, (s, v) in ours(ef).items():  # the lost point is one of the full file's, not garbage
                assert set(zip(s, map(repr, v))) <= set(zip(*[full.scalars[tag][0].tolist(),
                                                               map(repr, full.scalars[tag][1])])), (pos, tag)


class NoFastPath(EventFile):
    shape_memo = 0  # every event through the generic decoder


def state(ef: EventFile) -> tuple:
    return ({t: (st.tolist(), v.tobytes()) for t, (st, v) in ef.scalars.items()}, ef.records, ef.offset,
            ef.damage.corrupt_records, ef.damage.crc_mismatches,
            ef.damage.skipped_bytes, {t: (o.count, o.steps.tolist()) for t, o in ef.other.items()},
            ef.timeline[0].tolist(), ef.timeline[1].tolist(), ef.purged, ef.hparams, ef.tags_seen,
            ef.first_wall_time, ef.last_wall_time, ef.last_step, ef.file_version, ef.writer, ef.tail)


def test_random_damage_never_raises_and_growth_gives_the_same_result(tmp_path):
    """Random flips, overwrites, deletions, insertions and duplications of a varied file: reading
    never raises, and reading the damaged bytes in pieces (as a live file grows) ends in exactly
    the state of one read of the whole."""
    import random

    rng = random.Random(1234)
    base = tbx_run(tmp_path / "run", steps=25, extra=True).read_bytes()
    tensors = tmp_path / "events.out.tfevents.1.t"
    write_records(tensors, [tensor_event(f"enc/{tag}", step, raw, True) for step in range(2)
                            for tag, raw, _ in encodings()])
    base += tensors.read_bytes()
    merged = [event_pb2.Event(wall_time=1.7e9 + i, step=i, summary=summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=t, simple_value=i * k) for k, t in enumerate(("m/a", "m/b", "m/c"))]))
        .SerializeToString() for i in range(10)]
    write_records(tensors, merged, version=None)
    base += tensors.read_bytes()
    path = tmp_path / "events.out.tfevents.1.fuzz"
    for it in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            a = rng.randrange(len(data))
            b = min(len(data), a + rng.choice([1, 1, 2, 8, 40, 300]))
            kind = rng.choice(["flip", "garbage", "delete", "insert", "duplicate", "zero"])
            if kind == "flip":
                data[a] ^= 1 << rng.randrange(8)
            elif kind == "garbage":
                data[a:b] = rng.randbytes(b - a)
            elif kind == "zero":
                data[a:b] = bytes(b - a)
            elif kind == "delete":
                del data[a:b]
            elif kind == "insert":
                data[a:a] = rng.randbytes(b - a)
            else:
                data[a:a] = data[a:b]
        verify = it % 2 == 1
        path.write_bytes(bytes(data))
        whole = read(path, verify=verify)
        assert whole.offset <= len(data)
        assert whole.damage.any or whole.tail or whole.records > 0
        slow = NoFastPath(str(path), verify=verify)
        slow.update()
        assert state(slow) == state(whole), it  # the fast paths decode exactly as the generic decoder
        cuts = sorted(rng.sample(range(len(data)), 3)) + [len(data)]
        ef = EventFile(str(path), verify=verify)
        for cut in cuts:
            path.write_bytes(bytes(data[:cut]))
            ef.update()
        assert state(ef) == state(whole), it


def test_corrupt_middle_resynchronises(tmp_path):
    src = tbx_run(tmp_path / "run", steps=50, extra=False)
    data = bytearray(src.read_bytes())
    starts = record_starts(bytes(data))
    a, b = starts[20], starts[30]
    data[a:b] = os.urandom(b - a)  # ten records' worth of garbage
    path = tmp_path / "events.out.tfevents.1.bad"
    path.write_bytes(bytes(data))
    ef = read(path)
    assert ef.damage.corrupt_records >= 1 and ef.damage.first_offsets[0] == a
    assert ef.damage.skipped_bytes >= b - a - 64 and ef.tail == ""
    full = read(src)
    assert ef.records >= full.records - 11
    assert ef.scalars["train/loss"][0][-1] == full.scalars["train/loss"][0][-1]  # read past the damage
    assert "corrupt record" in ef.damage.describe()
    # zeroed block (a crash that left a hole) in the middle
    data = bytearray(src.read_bytes())
    data[a:b] = bytes(b - a)
    path.write_bytes(bytes(data))
    ef = read(path)
    assert ef.records == full.records - 10 and ef.damage.corrupt_records == 1 and ef.damage.skipped_bytes == b - a


def test_corrupt_tail_counted_once_then_resolved(tmp_path):
    src = tbx_run(tmp_path / "run", steps=10, extra=False)
    data = src.read_bytes()
    path = tmp_path / "events.out.tfevents.1.tail"
    path.write_bytes(data + b"\x07" * 12)  # garbage where a header should be
    ef = read(path)
    assert ef.damage.corrupt_records == 1 and ef.offset == len(data) and "unreadable" in ef.tail
    with open(path, "ab") as f:
        f.write(b"\x07" * 3)
    ef.update()
    assert ef.damage.corrupt_records == 1  # the same damage, not counted again
    # a valid record appears after the garbage: it is read and the garbage skipped
    tail_record = data[record_starts(data)[-1]:]
    with open(path, "ab") as f:
        f.write(tail_record)
    ef.update()
    assert ef.damage.corrupt_records == 1 and ef.damage.skipped_bytes == 15 and ef.tail == ""
    assert ef.records == read(src).records + 1


def test_bogus_huge_lengths_allocate_nothing(tmp_path):
    src = tbx_run(tmp_path / "run", steps=5, extra=False)
    good = src.read_bytes()
    path = tmp_path / "events.out.tfevents.1.huge"
    for n, valid_crc in ((2**60, True), (2**60, False), (2**64 - 1, True), (tfevents.MAX_RECORD, True),
                         (tfevents.MAX_RECORD - 1, False), (1 << 31, True)):
        head = struct.pack("<Q", n)
        crc = tbx_masked_crc32c(head) if valid_crc else 12345
        path.write_bytes(good + head + struct.pack("<I", crc) + b"\x09" * 100)
        tracemalloc.start()
        ef = read(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 1_000_000, (n, peak)
        assert ef.records == read(src).records
        if valid_crc:  # a believable header: the record is just not there yet
            assert ef.offset == len(good) and "not written yet" in ef.tail and not ef.damage.any
        else:
            assert ef.damage.corrupt_records == 1 and "unreadable" in ef.tail


def test_oversized_record_skipped_unread(tmp_path):
    class Small(EventFile):
        max_record = 4096

    w = SummaryWriter(str(tmp_path / "run"))
    w.add_scalar("x", 1.0, 0)
    w.add_text("big", "y" * 20_000, 0)
    w.add_scalar("x", 2.0, 1)
    w.close()
    path = only_file(tmp_path / "run")
    ef = Small(str(path))
    tracemalloc.start()
    ef.update()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ef.damage.oversized_records == 1 and "size limit" in ef.damage.describe()
    assert ef.scalars["x"][1].tolist() == [1.0, 2.0] and ef.tail == ""
    assert "big/text_summary" not in ef.other
    full = read(path)
    assert full.other["big/text_summary"].count == 1 and not full.damage.any
    assert peak < 200_000


def test_record_larger_than_window(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"))
    w.add_scalar("x", 1.0, 0)
    w.add_text("big", "z" * (tfevents.WINDOW + 1000), 1)
    w.add_scalar("x", 2.0, 2)
    w.close()
    path = only_file(tmp_path / "run")
    for verify in (False, True):
        ef = read(path, verify=verify)
        assert ef.scalars["x"][0].tolist() == [0, 2] and ef.other["big/text_summary"].count == 1
        assert not ef.damage.any and ef.tail == "" and ef.offset == path.stat().st_size
    data = bytearray(path.read_bytes())
    data[record_starts(bytes(data))[2] + 12 + tfevents.WINDOW // 2] ^= 0x01  # inside the text
    path.write_bytes(bytes(data))
    ef = read(path, verify=True)
    assert ef.damage.crc_mismatches == 1 and "big/text_summary" not in ef.other
    assert ef.scalars["x"][0].tolist() == [0, 2]


def test_verify_default(monkeypatch, tmp_path):
    monkeypatch.setenv(tfevents.VERIFY_ENV, "1")
    assert EventFile("x").verify is True
    monkeypatch.setenv(tfevents.VERIFY_ENV, "0")
    assert EventFile("x").verify is False
    assert EventFile("x", verify=True).verify is True
    monkeypatch.delenv(tfevents.VERIFY_ENV)
    assert EventFile("x").verify is (tfevents._C_CRC is not None)


def test_empty_and_partial_header(tmp_path):
    path = tmp_path / "events.out.tfevents.1.empty"
    path.write_bytes(b"")
    ef = EventFile(str(path))
    assert ef.update() is False
    assert ef.tail == "empty file" and ef.records == 0 and ef.offset == 0 and ef.file_version is None
    assert ef.scalars == {} and ef.timeline[0].tolist() == [] and ef.last_step is None
    src = tbx_run(tmp_path / "run", steps=3, extra=False)
    data = src.read_bytes()
    path.write_bytes(data[:5])
    assert ef.update() is False and "torn record header at byte 0" in ef.tail
    path.write_bytes(data)
    assert ef.update() is True and ef.file_version == "brain.Event:2" and ef.tail == ""
    assert same(ours(ef), ours(read(src)))


def test_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "events.out.tfevents.1.fifo"
    os.mkfifo(fifo)

    def opener(p: str):
        return os.fdopen(os.open(p, os.O_RDONLY | os.O_NONBLOCK), "rb")

    done: list[bool] = []
    t = threading.Thread(target=lambda: done.append(EventFile(str(fifo), opener=opener).update()), daemon=True)
    t.start()
    t.join(5)
    assert done == [False]


def test_rewritten_file_is_read_again(tmp_path):
    a = tbx_run(tmp_path / "a", steps=20, extra=False)
    b = tbx_run(tmp_path / "b", steps=30, extra=False)
    path = tmp_path / "events.out.tfevents.1.rw"
    shutil.copyfile(a, path)
    ef = read(path)
    assert len(ef.scalars["train/loss"][0]) == 21
    shutil.copyfile(b, path)  # another writer truncated and rewrote it ('wb'), now longer
    assert ef.update() is True
    assert ef.rewrites == 1 and same(ours(ef), ours(read(b)))


def test_shrunk_file_is_read_again_and_missing_file_raises(tmp_path):
    a = tbx_run(tmp_path / "a", steps=30, extra=False)
    path = tmp_path / "events.out.tfevents.1.sh"
    shutil.copyfile(a, path)
    ef = read(path)
    data = a.read_bytes()
    path.write_bytes(data[: record_starts(data)[10]])
    assert ef.update() is True and ef.rewrites == 1 and ef.records == 10
    path.unlink()
    with pytest.raises(FileNotFoundError):
        ef.update()
    assert ef.records == 10


def test_pickle_round_trip_then_continue(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"), flush_secs=10_000)
    for i in range(50):
        w.add_scalar("a", float(i), i)
    w.flush()
    path = only_file(tmp_path / "run")
    ef = read(path)
    ef2 = pickle.loads(pickle.dumps(ef))
    assert ef2.opener is None and ours(ef2) == ours(ef) and ef2.offset == ef.offset
    for i in range(50, 80):
        w.add_scalar("a", float(i), i)
    w.close()
    assert ef2.update() is True
    assert ef2.scalars["a"][0].tolist() == list(range(80))


# ---- keyed reads -----------------------------------------------------------------------------------


def test_keyed_read(tmp_path):
    path = tbx_run(tmp_path / "run")
    full = read(path)
    keyed = read(path, keys=frozenset({"train/acc", "val/loss", "no/such/tag"}))
    assert set(keyed.scalars) == {"train/acc", "val/loss"}
    for tag in keyed.scalars:
        assert keyed.scalars[tag][0] == full.scalars[tag][0]
        assert keyed.scalars[tag][1].tobytes() == full.scalars[tag][1].tobytes()
    assert keyed.tags_seen == full.tags_seen
    assert keyed.timeline == full.timeline and keyed.records == full.records
    assert {t: o.count for t, o in keyed.other.items()} == {t: o.count for t, o in full.other.items()}


def test_keyed_read_of_tensor_scalars(tmp_path):
    events = [tensor_event(tag, i, tensor_pb2.TensorProto(dtype=1, float_val=[i * k]).SerializeToString(), True)
              for i in range(20) for k, tag in ((1.0, "p"), (2.0, "q"))]
    path = tmp_path / "events.out.tfevents.1.kt"
    write_records(path, events)
    keyed = read(path, keys=frozenset({"q"}))
    assert set(keyed.scalars) == {"q"} and keyed.tags_seen == {"p", "q"}
    assert keyed.scalars["q"][1].tolist() == [2.0 * i for i in range(20)]
    assert "p" not in keyed.other


# ---- purges ----------------------------------------------------------------------------------------


def test_session_start_purges_like_tensorboard(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"))
    for i in range(100):
        w.add_scalar("loss", 1.0 / (i + 1), i)
        if i % 10 == 0:
            w.add_histogram("h", [1.0, 2.0, float(i)], i)
    # the job restarts from its step-60 checkpoint
    w.file_writer.add_event(tbx_event_pb2.Event(
        step=60, wall_time=2e9, session_log=tbx_event_pb2.SessionLog(status=tbx_event_pb2.SessionLog.START)))
    for i in range(60, 80):
        w.add_scalar("loss", 10.0 + i, i)
    w.close()
    path = only_file(tmp_path / "run")
    ef = read(path)
    assert same(ours(ef), ea_scalars(path))
    assert ef.scalars["loss"][0].tolist() == list(range(80))
    assert ef.scalars["loss"][1][60] == 70.0
    assert ef.purged == [("SessionLog.START at step 60: 40 point(s) at steps >= 60 purged "
                          "(and 4 non-scalar event(s))")]
    assert ef.other["h"].count == len(accumulator(path).Histograms("h")) == 6 and ef.other["h"].last_step == 50


def test_out_of_order_purge_without_file_version_2(tmp_path):
    def ev(tag, step, v):
        return event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=v)])).SerializeToString()

    events = [ev(t, i, float(i)) for i in range(10) for t in ("a", "b")]
    events += [ev("a", i, 100.0 + i) for i in range(5, 8)]  # a alone restarts at 5
    events += [ev("b", 12, 12.0)]
    for version in (None, "brain.Event:1"):
        path = tmp_path / f"events.out.tfevents.1.{version}"
        write_records(path, events, version=version)
        ef = read(path)
        assert same(ours(ef), ea_scalars(path)), version
        assert ef.scalars["a"][0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
        assert ef.scalars["a"][1].tolist()[5:] == [105.0, 106.0, 107.0]
        assert ef.scalars["b"][0].tolist() == list(range(10)) + [12]
        assert len(ef.purged) == 1 and "step goes back from 9 to 5" in ef.purged[0]
        assert "5 point(s) of a at steps >= 5 purged" in ef.purged[0]


def test_steps_going_back_with_file_version_2_are_kept(tmp_path):
    w = SummaryWriter(str(tmp_path / "run"))
    for i in list(range(10)) + list(range(5, 12)):
        w.add_scalar("x", float(i), i)
    w.close()
    path = only_file(tmp_path / "run")
    ef = read(path)
    assert same(ours(ef), ea_scalars(path))
    assert len(ef.scalars["x"][0]) == 17
    assert len(ef.purged) == 1 and "points kept, as TensorBoard does" in ef.purged[0]


def test_progress_reports(tmp_path):
    events = [event_pb2.Event(wall_time=1.0, step=i, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="x", simple_value=i)])).SerializeToString() for i in range(120_000)]
    path = tmp_path / "events.out.tfevents.1.p"
    write_records(path, events)
    seen: list[tuple[int, int]] = []
    ef = EventFile(str(path))
    ef.update(progress=lambda o, s: seen.append((o, s)))
    size = path.stat().st_size
    assert len(seen) >= 3 and seen[-1] == (size, size)
    assert all(a[0] < b[0] for a, b in itertools.pairwise(seen)) and all(s == size for _, s in seen)
    assert ef.scalars["x"][0] == array("q", range(120_000))


# ---- committed fixtures (written by real writers; see their manifest.json) --------------------------


def fixture_files() -> list[Path]:
    if not FIXTURES.is_dir():
        return []
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file() and is_event_file(p.name))


@pytest.mark.skipif(not fixture_files(), reason="no committed TensorBoard fixtures")
@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_matches_event_accumulator(path):
    ef = read(path)
    assert same(ours(ef), ea_scalars(path))
    assert ef.tags_seen == set(ef.scalars)
    assert not ef.damage.any
    assert ef.update() is False  # unchanged
    slow = NoFastPath(str(path))
    slow.update()
    assert state(slow) == state(ef)


def manifest_runs() -> list[tuple[str, dict]]:
    m = FIXTURES / "manifest.json"
    if not m.is_file():
        return []
    import json

    return sorted(json.loads(m.read_text())["runs"].items())


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


@pytest.mark.skipif(not manifest_runs(), reason="no committed TensorBoard fixtures")
@pytest.mark.parametrize("name,run", manifest_runs(), ids=[n for n, _ in manifest_runs()])
def test_fixture_run_matches_manifest(name, run):
    """Each run's files, read in name order and concatenated, give exactly the manifest's points."""
    got: dict[str, tuple[list[int], list[float]]] = {}
    other: dict[str, list[int]] = {}
    plugins: dict[str, str] = {}
    hparams: dict = {}
    metrics: list[str] = []
    efs = []
    for f in run["files"]:
        ef = read(FIXTURES / name / f["name"])
        efs.append(ef)
        assert not ef.damage.any, f["name"]
        for tag, (s, v) in ef.scalars.items():
            got.setdefault(tag, ([], []))
            got[tag][0].extend(s)
            got[tag][1].extend(v)
        for tag, o in ef.other.items():
            other.setdefault(tag, []).extend(o.steps)
            plugins[tag] = o.plugin
        hparams.update(ef.hparams)
        metrics += ef.hparam_metrics
        if f["steps"] and ef.last_step is not None:
            assert ef.last_step >= f["steps"][0]
    want = {}
    for tag, spec in run["scalars"].items():
        steps = [p[0] for p in spec["points"]]
        values = [float(p[1]) for p in spec["points"]]
        if spec["stored_as"] == "float32":
            values = [f32(v) for v in values]
        want[tag] = (steps, values)
    assert same(got, want), name
    graphs = {t for t in other if t in ("__graph__", "__meta_graph__")}
    assert set(other) - graphs == set(run["non_scalars"])
    for tag, spec in run["non_scalars"].items():
        assert other[tag] == spec["steps"], tag
        assert plugins[tag] == spec["plugin"], tag
    assert hparams == (run["hparams"] or {})
    assert metrics == (run["hparam_metrics"] or [])
    cut = run.get("truncation")
    if cut:
        (ef,) = efs
        assert ef.offset == cut["last_record_offset"] and "not written yet" in ef.tail
        assert ef.size == cut["kept_bytes"]
    else:
        assert all(ef.tail == "" and ef.offset == ef.size for ef in efs)
