"""The .wandb reader on real runs written by wandb 0.31.0 and 0.16.6 (tests/fixtures)."""

from __future__ import annotations

import math

import pytest
from helpers import log_file, run_dir

from runwise_mcp.sources.wandb_dir import RunDir
from runwise_mcp.sources.wandb_log import WandbLog, iter_history


def read(scenario: str) -> WandbLog:
    log = WandbLog(str(log_file(scenario)))
    log.update()
    return log


def test_finished_identity_config_exit():
    log = read("finished")
    ident = log.identity
    assert ident["name"] == "R001-finished"
    assert ident["tags"] == ["baseline", "fixture"]
    assert ident["notes"] == "finished run: every kind of value"
    assert ident["group"] == "R001" and ident["job_type"] == "train" and ident["project"] == "fixtures"
    assert log.run_id == log_file("finished").name[len("run-"):-len(".wandb")]
    assert log.start_time and log.start_time > 1.7e9
    assert log.has_exit and log.exit_code == 0
    assert log.version == "0.31.0"
    cfg = log.config
    assert cfg["model"] == {"width": 256, "layers": [2, 2], "act": "gelu"}
    assert cfg["data"]["splits"] == {"train": 0.9, "val": 0.1}
    assert cfg["lr"] == 0.001 and cfg["batch_size"] == 32
    assert cfg["notes_long"] == "x" * 40000  # a later config record, > 32 KiB: FIRST/MIDDLE/LAST
    assert log.bad_records == 0 and not log.reader.damage.any and log.reader.tail == ""


def test_finished_history_values():
    h = read("finished").history
    assert h.rows == 401 and h.first_step == 0 and h.last_step == 400
    steps, loss = h.series("train/loss")
    assert len(loss) == 400 and list(steps[:3]) == [0, 1, 2]
    assert math.isnan(loss[123]) and not math.isnan(loss[122])  # NaN kept as a value
    gsteps, grad = h.series("optim.grad_norm")  # nested dict -> dotted name
    assert grad[list(gsteps).index(200)] == math.inf and grad[list(gsteps).index(201)] == -math.inf
    vsteps, _ = h.series("val/loss")  # sparse key: every 50 steps
    assert list(vsteps) == [49, 99, 149, 199, 249, 299, 349, 399]
    assert h.other["sample_text"].last == "the quick brown fox"
    hist = h.other["weights"]  # media object regrouped from its per-field items
    assert hist.kind == "histogram" and hist.last["values"] == [3, 10, 24, 10, 3]
    assert h.other["big_blob"].last == "y" * 70000 and h.other["big_blob"].last_step == 400


def test_finished_summary_and_metrics():
    log = read("finished")
    s = log.summary()
    assert s["best_val_acc"] == 0.9
    assert "temp_key" not in s  # set, then deleted
    assert s["val/acc"] == {"max": 0.9}  # define_metric(summary="max") aggregate stays an object
    assert s["_step"] == 400
    assert s["train/loss"] == log.history.series("train/loss")[1][-1]
    m = log.metrics
    assert m["val/*"].step_metric == "epoch" and m["val/acc"].summary == ("max",)
    assert any("step 0 loss" in line for line in log.console.tail())


@pytest.mark.parametrize("scenario,code", [("crashed", 1), ("interrupted", 255)])
def test_exit_codes(scenario, code):
    log = read(scenario)
    assert log.has_exit and log.exit_code == code


def test_killed_has_no_exit_and_ends_cleanly():
    log = read("killed")
    assert not log.has_exit
    assert log.history.rows > 10
    # rows are complete and consecutive up to the kill
    assert list(log.history.steps) == list(range(log.history.rows))
    assert log.bad_records == 0 and not log.reader.damage.any


def test_typed_encoding_and_no_step_argument():
    log = read("typed")
    h = log.history
    assert list(h.steps) == list(range(30))  # run.log() without step=: _step 0, 1, 2, ...
    assert list(h.series("count")[1]) == [float(i) for i in range(30)]
    assert list(h.series("flag")[1])[:3] == [1.0, 0.0, 1.0]
    assert h.series("big")[1][-1] == float(2**40 + 29)
    assert h.other["label"].last == "item-29" and h.other["label"].count == 30
    assert h.other["vec"].last == [29, 30]
    assert h.other["nothing"].kind == "null"


def test_legacy_016_finished():
    log = read("legacy016-finished")
    assert log.producer == "" and log.version == "0.16.6"
    h = log.history
    assert list(h.steps) == list(range(30))  # 0.16 has no HistoryStep: steps from _step
    assert "eval.acc" in h.columns  # nested dict logged as one JSON object, flattened
    assert math.isnan(h.series("maybe_nan")[1][0])
    assert log.summary()["best_acc"] == 0.98 and log.has_exit and log.exit_code == 0
    assert log.identity["tags"] == ["legacy", "v0.16"]


def test_legacy_016_killed():
    log = read("legacy016-killed")
    assert not log.has_exit and log.history.rows >= 5
    assert log.summary() == {}  # killed 0.16 runs write no summary
    assert log.bad_records == 0


def test_legacy_097_dryrun_directory():
    d = RunDir(str(run_dir("legacy097-dryrun")))
    d.refresh()
    assert d.layout == "dryrun" and d.log is None
    assert d.identity["name"] == "L097-dryrun"
    assert d.history.rows == 30 and "eval.acc" in d.history.columns
    assert math.isnan(d.history.series("maybe_nan")[1][0])
    assert d.config == {"lr": 0.01, "model": {"width": 64}}
    assert d.summary["best_acc"] == 0.98 and d.summary["eval.acc"] > 0.9
    assert d.producer == "wandb 0.9.7"
    assert "system" not in " ".join(d.system.keys()) and d.system.rows >= 1


def test_iter_history_matches_columns():
    path = str(log_file("finished"))
    rows = iter_history(path)
    log = WandbLog(path)
    log.update()
    assert [s for s, _ in rows] == list(log.history.steps)
    for name, col in log.history.columns.items():
        want = [(s, r[name]) for s, r in rows if name in r]
        got = list(zip(col.steps, col.values))
        assert len(want) == len(got), name
        for (s1, v1), (s2, v2) in zip(want, got):
            assert s1 == s2 and (v1 == v2 or (math.isnan(v1) and math.isnan(v2)) or float(v1) == v2)


def test_run_dir_combines_log_and_files():
    d = RunDir(str(run_dir("finished")))
    assert d.refresh() is True
    assert d.refresh() is False  # unchanged: nothing re-read
    assert d.run_id == read("finished").run_id
    assert "_wandb" not in d.config
    assert not any(k.startswith("_wandb") for k in d.summary)
    assert d.console_tail and d.console_tail[0].startswith("step 0")  # from files/output.log


@pytest.mark.parametrize("case", ["rotated mirror", "reordered mirror", "same length, other value"])
def test_a_summary_update_before_a_row_is_its_mirror_only_with_the_same_items(tmp_path, case):
    """0.31 writes each row into the summary just before the row, its items in another order (a
    rotation of the row's for rows of up to 8 items, which the reader checks first). An update of
    the same length with another value is a real summary update: it must be folded, and the
    summary keep its value rather than the row's."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    from test_attacks_scale import hostile_run

    keys = [("train/loss", "0.5"), ("train/acc", "0.25"), ("lr", "0.001")]

    def items(msg, pairs):
        for k, v in pairs:
            it = msg.add()
            it.nested_key.append(k)
            it.value_json = v

    row = pb.Record()
    items(row.history.item, keys)
    row.history.step.num = 10_000
    update = pb.Record()
    if case == "rotated mirror":
        items(update.summary.update, keys[1:] + keys[:1])
    elif case == "reordered mirror":
        items(update.summary.update, [keys[0], keys[2], keys[1]])
    else:
        items(update.summary.update, [("train/loss", "0.7")] + keys[1:])
    path = hostile_run(tmp_path, [update.SerializeToString(), row.SerializeToString()])
    log = WandbLog(str(path))
    log.update(workers=1)
    mirrored = log._row_seq[-1] >= 0
    assert mirrored == (case != "same length, other value")
    assert log.summary()["train/loss"] == (0.7 if case == "same length, other value" else 0.5)
