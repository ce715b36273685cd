"""MLflow local stores through every tool (issue 14): the file store (``mlruns/``) and the SQLite
store (``mlflow.db``) in tests/fixtures/mlflow_runs, both written by the real mlflow client
(tests/fixtures/make_mlflow_runs.py), checked against what was logged (manifest.json) and against
``MlflowClient.get_metric_history`` on the same store where mlflow is installed. Stores are
checksummed around every tool call; a real writer process logs to a WAL-mode database while the
tools read it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FIXTURES, REPO
from mcp import Client, StdioServerParameters

from runwise_mcp import answers, confine
from runwise_mcp.answers.common import UserError
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.server import build_server
from runwise_mcp.sources.mlflow import MlflowParts, mlflow_parts, typed
from runwise_mcp.sources.mlflow_filestore import FileStore
from runwise_mcp.sources.mlflow_records import MlflowStoreError
from runwise_mcp.sources.mlflow_sqlite import CLAMPED, SqliteStore

ML = REPO / "tests" / "fixtures" / "mlflow_runs"
TB = REPO / "tests" / "fixtures" / "tensorboard_runs"
MANIFEST = json.loads((ML / "manifest.json").read_text())
STORES = ("mlruns", "mlflow.db")
SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
T0 = 1_767_225_600  # the fixtures' first timestamp (s)


def num(v) -> float:
    return SPECIAL[v] if isinstance(v, str) else float(v)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def live_runs(store: str) -> dict[str, dict]:
    return {n: r for n, r in MANIFEST["stores"][store]["runs"].items() if not r["deleted"]}


def expected_series(points: list) -> tuple[list[int], list[float]]:
    """What a correct reader gives for points as logged: in (step, timestamp) order, the last
    value logged at each step kept."""
    pts = sorted(((s, t, i, num(v)) for i, (s, t, v) in enumerate(points)), key=lambda p: (p[0], p[1], p[2]))
    steps: list[int] = []
    values: list[float] = []
    for s, _, _, v in pts:
        if steps and steps[-1] == s:
            values[-1] = v
        else:
            steps.append(s)
            values.append(v)
    return steps, values


def copy_store(store: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    src = ML / store
    if src.is_dir():
        shutil.copytree(src, dest / store)
    else:
        shutil.copy2(src, dest / store)
    return dest / store


def index(*roots, clock=None) -> RunIndex:
    settings = load_settings([str(r) for r in roots], env={"RUNWISE_CACHE_DIR": "off"})
    return RunIndex(settings, clock=clock) if clock else RunIndex(settings)


def checksums(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (files by content, directories and links by name)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(params=STORES)
def store_root(request, tmp_path) -> tuple[str, Path]:
    copy_store(request.param, tmp_path / "root")
    return request.param, tmp_path / "root"


# ---- every value against what was logged --------------------------------------------------------------


def test_every_run_matches_the_manifest(store_root):
    store, root = store_root
    ix = index(root)
    runs = {r.name: r for r in ix.runs()}
    expect = live_runs(store)
    assert sorted(runs) == sorted(expect)  # the deleted run is not listed
    assert "bert-deleted" in MANIFEST["stores"][store]["runs"]
    for name, spec in expect.items():
        r = ix.resolve(spec["run_id"], full=True)
        assert r.name == name and r.id == spec["run_id"] and r.source == "mlflow"
        assert r.group == spec["experiment"]
        assert r.notes == spec["note"]
        assert sorted(r.tags) == sorted(f"{k}={v}" for k, v in spec["tags"].items())
        assert r.config == {k: typed(v) for k, v in spec["params"].items()}
        assert r.environment["user"] == "alice" and r.environment["program"] == "train.py"
        assert r.start_time == spec["start_time_ms"] / 1000
        for key, points in spec["metrics"].items():
            steps, values = expected_series(points)
            got_steps, got_values = r.history.series(key)
            assert list(got_steps) == steps, (name, key)
            assert all(same(a, b) for a, b in zip(got_values, values)) and len(got_values) == len(values), (name, key)
            last = max(points, key=lambda p: (p[0], p[1]))  # MLflow's latest: greatest (step, timestamp)
            assert same(r.summary[key], num(last[2])), (name, key)
        assert not [k for k in r.history.columns if not k.startswith("_") and k not in spec["metrics"]]


def test_params_are_typed_where_they_parse(store_root):
    _, root = store_root
    r = index(root).resolve("bert-small", full=True)
    assert r.config == {"lr": 3e-4, "model": "bert-small", "warmup_steps": 100, "dropout": 0.1}
    assert isinstance(r.config["warmup_steps"], int) and isinstance(r.config["lr"], float)
    assert typed("1e") == "1e" and typed("nan") == "nan" and typed(" 7 ") == 7


def test_duplicate_values_at_one_step_keep_the_last_and_say_so(store_root):
    _, root = store_root
    ix = index(root)
    r = ix.resolve("resnet-baseline", full=True)
    steps, values = r.history.series("train/loss")
    assert values[list(steps).index(10)] == 0.987654  # logged again at step 10, later
    summary = answers.run_summary(ix, "resnet-baseline")
    assert "train/loss: 1 value(s) logged again at a step already logged; the last logged value" in summary


def test_nan_and_inf_are_read_and_the_clamp_is_said(store_root):
    store, root = store_root
    ix = index(root)
    r = ix.resolve("resnet-lr-high", full=True)
    _, loss = r.history.series("train/loss")
    _, gn = r.history.series("grad_norm")
    assert math.isnan(loss[20]) and loss[25] == math.inf and gn[26] == -math.inf
    diag = answers.diagnose_run(ix, "resnet-lr-high")
    assert "first NaN @20" in diag and "-inf: grad_norm first -inf @26" in diag
    notes = " ".join(r.notes_read)
    if store == "mlflow.db":  # SQL stores keep ±inf as ±1.797e308
        assert "train/loss: 1 value(s) stored as ±1.7976931348623157e308" in notes and "read as ±inf" in notes
        assert "grad_norm: 1 value(s) stored as ±1.7976931348623157e308" in notes
    else:  # the file store writes inf literally
        assert "1.7976931348623157e308" not in notes


def test_status_mapping_and_the_never_set_status(store_root):
    _, root = store_root
    runs = {r.name: r for r in index(root).runs()}
    assert runs["resnet-baseline"].state.state == "finished"
    assert runs["resnet-lr-high"].state.state == "crashed" and runs["resnet-lr-high"].state.basis == "MLflow status FAILED"
    assert runs["resnet-killed"].state.state == "killed" and runs["resnet-killed"].state.certain
    old = runs["bert-small"].state
    assert old.state == "killed" and not old.certain and "never gets its status set" in old.basis
    listing = answers.list_runs(index(root))
    assert "bert-small killed? MLflow status RUNNING (a crashed MLflow run never gets its status set), nothing written for" in listing
    assert "resnet-killed killed (MLflow status KILLED)" in listing
    last = max(p[1] for ps in live_runs("mlruns")["bert-small"]["metrics"].values() for p in ps) / 1000
    fresh = index(root, clock=lambda: last + 30).runs()  # 30 s after its last metric: still running
    st = next(r for r in fresh if r.name == "bert-small").state
    assert st.state == "running" and not st.certain and st.last_write == last


def test_run_accepts_name_id_prefix_and_experiment_slash_name(store_root):
    store, root = store_root
    ix = index(root)
    rid = live_runs(store)["resnet-killed"]["run_id"]
    for ref in ("resnet-killed", rid, rid[:10], "vision/resnet-killed", "VISION/resnet-killed", "mlflow:resnet-killed"):
        assert ix.resolve(ref).id == rid, ref
    with pytest.raises(Exception) as e:
        ix.resolve("resnet")
    assert "matches 3 runs" in str(e.value)


def test_the_same_runs_in_both_stores_are_told_apart(tmp_path):
    copy_store("mlruns", tmp_path)
    copy_store("mlflow.db", tmp_path)
    ix = index(tmp_path)
    named = [r for r in ix.runs() if r.name == "resnet-baseline"]
    assert len(named) == 2 and len({r.id for r in named}) == 2
    listing = answers.list_runs(ix, limit=50)
    for r in named:
        assert f"resnet-baseline ({r.id})" in listing
        assert ix.resolve(r.id).segments[0].label.split()[0] in ("mlruns", "mlflow.db")


# ---- MLflow's own client on the same store ------------------------------------------------------------


def _client(store: str, path: Path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    if store == "mlruns":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        for meta in path.glob("*/*/meta.yaml"):  # MLflow wants artifacts/ (empty: not kept by git)
            for sub in ("artifacts", "params", "tags", "metrics"):
                (meta.parent / sub).mkdir(exist_ok=True)
        return MlflowClient(tracking_uri=f"file:{path}")
    return MlflowClient(tracking_uri=f"sqlite:///{path}")


def test_every_point_equals_mlflow_client_get_metric_history(store_root, tmp_path, monkeypatch):
    """Our store readers vs MlflowClient on a copy of the same store (the client may write)."""
    store, root = store_root
    theirs = copy_store(store, tmp_path / "client")
    client = _client(store, theirs, monkeypatch)
    ours = FileStore(str(root / store), store) if store == "mlruns" else SqliteStore(str(root / store), store)
    records = {r.run_id: r for r in ours.runs()}
    assert sorted(records) == sorted(s["run_id"] for s in live_runs(store).values())
    checked = 0
    for rid, rec in records.items():
        run = client.get_run(rid)
        assert rec.status == run.info.status and rec.name == run.info.run_name
        assert rec.params == run.data.params
        assert {k: v for k, v in rec.tags.items()} == run.data.tags
        hist = ours.history(rid)
        assert sorted(hist) == sorted(run.data.metrics)
        for key, pts in hist.items():
            got = sorted((p.step, p.timestamp_ms, p.value) for p in pts)
            want = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(rid, key))
            assert len(got) == len(want), (rid, key)
            for g, w in zip(got, want):
                assert g[:2] == w[:2] and same(g[2], w[2]), (rid, key, g, w)
                checked += 1
            assert same(rec.latest[key].value, run.data.metrics[key]), (rid, key)
    assert checked == sum(len(ps) for r in live_runs(store).values() for ps in r["metrics"].values())
    if store == "mlflow.db":  # the clamped inf, as MLflow returns it
        rid = live_runs(store)["resnet-lr-high"]["run_id"]
        assert any(m.value == CLAMPED for m in client.get_metric_history(rid, "train/loss"))


# ---- every tool, both stores, checksummed ---------------------------------------------------------------

TOOL_CALLS = [
    ("list_runs", {}, "all: mlflow runs"),
    ("list_keys", {"run": "resnet-baseline"}, "val/"),
    ("get_config", {"run": "vision/resnet-baseline"}, "optimizer: adam"),
    ("run_summary", {"run": "resnet-baseline"}, "notes: baseline with the default augmentations"),
    ("get_history", {"run": "resnet-baseline", "keys": ["train/loss"], "samples": 5}, "step,train/loss"),
    ("history_stats", {"run": "resnet-lr-high"}, "train/loss: 30 pts 0–29"),
    ("best_run", {"metric": "train/loss"}, "1. resnet-baseline"),
    ("compare_runs", {"runs": ["resnet-baseline@10", "resnet-killed@10"]}, "train/loss  0.9877"),
    ("aggregate_runs", {"query": "resnet", "keys": ["train/loss"]}, "n=3"),
    ("diagnose_run", {"run": "resnet-lr-high"}, "first NaN @20"),
    ("tail_run", {"run": "bert-small"}, "latest logged @396"),
    ("sync_runs", {"runs": ["resnet-baseline"]}, "applies to W&B runs only"),
]


@pytest.mark.anyio
async def test_every_tool_answers_on_both_stores_and_changes_nothing(store_root):
    store, root = store_root
    before = checksums(root)
    async with Client(build_server(load_settings([str(root)], env={"RUNWISE_CACHE_DIR": "off"})),
                      raise_exceptions=True) as c:
        for tool, args, expect in TOOL_CALLS:
            res = await c.call_tool(tool, args)
            body = "\n".join(x.text for x in res.content)
            assert expect in body, (store, tool, body)
            assert res.is_error == (tool == "sync_runs"), (tool, body)
            assert checksums(root) == before, (store, tool)  # no byte changed, no file appeared
    assert not list(root.glob("*-journal")) and not list(root.glob("*-wal")) and not list(root.glob("*-shm"))


@pytest.mark.anyio
async def test_every_tool_answers_over_stdio(tmp_path):
    copy_store("mlflow.db", tmp_path / "root")
    before = checksums(tmp_path / "root")
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(tmp_path / "root")],
                                   env={"PYTHONPATH": str(REPO), "RUNWISE_CACHE_DIR": "off"}, cwd=str(REPO))
    async with Client(params) as c:
        for tool, args, expect in TOOL_CALLS:
            res = await c.call_tool(tool, args)
            assert expect in "\n".join(x.text for x in res.content), tool
    assert checksums(tmp_path / "root") == before


def test_mixed_tree_ranks_compares_and_aggregates_across_formats(tmp_path):
    root = tmp_path / "mixed"
    copy_store("mlflow.db", root / "mlflow")
    shutil.copytree(FIXTURES / "wandb", root / "wb" / "wandb", symlinks=True)
    shutil.copytree(TB / "tbx_basic", root / "tb" / "tbx_basic")
    before = checksums(root / "mlflow")
    ix = index(root)
    sources = {r.source for r in ix.runs()}
    assert {"mlflow", "wandb", "tensorboard"} <= sources
    best = answers.best_run(ix, "train/loss", top=100)
    assert "resnet-baseline" in best and "R001-finished" in best and "tbx_basic" in best
    cmp = answers.compare_runs(ix, ["resnet-baseline@20", "R001-finished@20", "tbx_basic@20"], keys=["train/loss"])
    assert "resnet-baseline" in cmp and "R001-finished" in cmp and "tbx_basic" in cmp and "at step 20" in cmp
    agg = answers.aggregate_runs(ix, runs=["resnet-baseline", "R001-finished", "tbx_basic"], keys=["train/loss"])
    assert "n=3" in agg
    assert checksums(root / "mlflow") == before


def test_sync_runs_says_it_is_for_wandb_only(store_root):
    _, root = store_root
    with pytest.raises(UserError) as e:
        answers.sync_runs(index(root), ["resnet-baseline"])
    assert "sync_runs applies to W&B runs only" in str(e.value) and "mlflow run" in str(e.value)


# ---- SQLite: read-only, never in a writer's way ---------------------------------------------------------

WRITER = """
import sqlite3, sys, time
db, run_id, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
con = sqlite3.connect(db, timeout=0, isolation_level=None)  # timeout 0: any lock held by a reader fails at once
assert con.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
busy = 0
step = 1000
end = time.time() + seconds
print("ready", flush=True)
while time.time() < end:
    try:
        con.execute("BEGIN IMMEDIATE")
        ts = int(time.time() * 1000)
        for _ in range(20):
            con.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,0)",
                        ("loss", 1.0 / step, ts, run_id, step))
            con.execute("INSERT OR REPLACE INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                        "VALUES (?,?,?,?,0,?)", ("loss", 1.0 / step, ts, step, run_id))
            step += 1
        time.sleep(0.01)  # the write transaction stays open a while
        con.execute("COMMIT")
    except sqlite3.OperationalError as e:
        busy += 1
        print("busy", e, flush=True)
        try:
            con.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass
print("done", step, busy, flush=True)
"""


def test_a_live_wal_writer_is_never_blocked_and_its_rows_are_read(tmp_path):
    db = copy_store("mlflow.db", tmp_path / "root")
    rid = live_runs("mlflow.db")["bert-small"]["run_id"]
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(db), rid, "6"], stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().strip() == "ready"
        ix = index(tmp_path / "root", clock=time.time)
        seen = []
        reads = 0
        t_end = time.time() + 4
        while time.time() < t_end:
            r = ix.resolve("bert-small", full=True)
            seen.append(r.history.last_step)
            answers.list_runs(ix)
            answers.tail_run(ix, "bert-small")
            reads += 1
        out = w.communicate(timeout=60)[0]
    finally:
        if w.poll() is None:
            w.kill()
    done = out.strip().splitlines()[-1].split()
    assert done[0] == "done" and int(done[2]) == 0, out  # never "database is locked"
    assert int(done[1]) > 1500, out  # it kept logging while we read
    assert reads >= 3 and seen[-1] > seen[0] >= 396  # the new rows (in the WAL) were read as they came
    r = index(tmp_path / "root", clock=time.time).resolve("bert-small")
    assert r.state.state == "running"  # its last metric is seconds old
    assert ix.problems() == []


def test_a_wal_database_without_writer_gets_no_side_files(tmp_path):
    db = copy_store("mlflow.db", tmp_path / "root")
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
    con.close()
    assert sorted(os.listdir(tmp_path / "root")) == ["mlflow.db"]  # the last writer closed: no -wal
    before = checksums(tmp_path / "root")
    ix = index(tmp_path / "root")
    assert len(ix.runs()) == 4
    assert "first NaN @20" in answers.diagnose_run(ix, "resnet-lr-high")
    store = SqliteStore(str(db), "mlflow.db")
    store.runs()
    assert store.mode == "immutable (WAL, no writer)"
    assert checksums(tmp_path / "root") == before  # no -wal, no -shm created


def test_a_rollback_journal_database_is_read_with_mode_ro(tmp_path):
    db = copy_store("mlflow.db", tmp_path / "root")
    store = SqliteStore(str(db), "mlflow.db")
    assert len(store.runs()) == 4 and store.mode == "ro"


# ---- damage and attacks ----------------------------------------------------------------------------------


def test_symlinked_mlflow_db_pointing_outside_the_roots_is_refused(tmp_path):
    outside = copy_store("mlflow.db", tmp_path / "outside")
    root = tmp_path / "root"
    root.mkdir()
    (root / "mlflow.db").symlink_to(outside)
    ix = index(root)
    assert ix.runs() == []  # nothing from outside the roots
    assert any("mlflow.db is not read: it leads outside the roots" in p for p in ix.problems()), ix.problems()
    with confine.using(confine.Roots([str(root)])):
        with pytest.raises(MlflowStoreError) as e:
            SqliteStore(str(root / "mlflow.db"), "mlflow.db").runs()
    assert "leads outside the roots" in str(e.value)
    inside = tmp_path / "root" / "data"
    copy_store("mlflow.db", inside)
    (root / "alias.db").symlink_to(inside / "mlflow.db")  # a link inside the roots is fine
    assert len(index(root).runs()) >= 4


def test_symlinked_metric_file_pointing_outside_is_not_read(tmp_path):
    store = copy_store("mlruns", tmp_path / "root")
    secret = tmp_path / "secret"
    secret.write_text("1767225600000 42.0 0\n")
    rid = live_runs("mlruns")["resnet-killed"]["run_id"]
    run_dir = next(store.glob(f"*/{rid}"))
    (run_dir / "metrics" / "stolen").symlink_to(secret)
    ix = index(tmp_path / "root")
    r = ix.resolve("resnet-killed", full=True)
    assert "stolen" not in r.history.columns and "stolen" not in r.summary
    assert "train/loss" in r.history.columns


def test_corrupt_metric_lines_are_skipped_counted_and_reported(tmp_path):
    store = copy_store("mlruns", tmp_path / "root")
    rid = live_runs("mlruns")["resnet-killed"]["run_id"]
    f = next(store.glob(f"*/{rid}/metrics/train/loss"))
    lines = f.read_text().splitlines()
    lines.insert(3, "not a metric line")
    lines.insert(6, "1767225600000 abc 5")
    f.write_text("\n".join(lines) + "\n")
    ix = index(tmp_path / "root")
    r = ix.resolve("resnet-killed", full=True)
    assert len(r.history.series("train/loss")[0]) == 15  # every good line kept
    probs = " ".join(ix.problems())
    assert "metrics/train/loss: 2 line(s) skipped that are not 'timestamp value step' (line 4, 7)" in probs


def test_corrupt_meta_yaml_leaves_the_run_out_and_says_why(tmp_path):
    store = copy_store("mlruns", tmp_path / "root")
    rid = live_runs("mlruns")["resnet-killed"]["run_id"]
    meta = next(store.glob(f"*/{rid}/meta.yaml"))
    meta.write_text("run_id: [unclosed\n  status: : :\n")
    exp_meta = next(p for p in store.glob("*/meta.yaml") if "name: nlp" in p.read_text())
    exp_meta.write_text("- a list\n- not a mapping\n")
    ix = index(tmp_path / "root")
    names = sorted(r.name for r in ix.runs())
    assert names == ["resnet-baseline", "resnet-lr-high"]  # the broken run and the nlp experiment's run
    probs = " ".join(ix.problems())
    assert f"{rid}: meta.yaml not read: it is not valid YAML" in probs
    assert "meta.yaml not read: it is not a key: value mapping" in probs
    assert "resnet-baseline" in answers.list_runs(ix)


def test_truncated_database_gives_a_clear_error_and_the_rest_still_answers(tmp_path):
    root = tmp_path / "root"
    copy_store("mlruns", root)
    db = copy_store("mlflow.db", root / "cut")
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    ix = index(root)
    assert len(ix.runs()) == 4  # the file store's runs
    probs = " ".join(ix.problems())
    assert "mlflow.db" in probs and ("truncated or damaged" in probs or "cannot be read" in probs), probs
    (root / "cut" / "mlflow.db").write_bytes(data[:50])  # not even a header
    probs = " ".join(index(root).problems())
    assert "is not an SQLite database" in probs or "mlflow.db" not in probs


def test_a_database_that_is_not_mlflows_is_not_a_store(tmp_path):
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("CREATE TABLE runs (x)")
    con.commit()
    con.close()
    ix = index(tmp_path)
    assert ix.runs() == [] and ix.problems() == []


# ---- following a store as it grows ----------------------------------------------------------------------


def test_file_store_reads_only_new_metric_lines(tmp_path):
    store = copy_store("mlruns", tmp_path / "root")
    rid = live_runs("mlruns")["bert-small"]["run_id"]
    f = next(store.glob(f"*/{rid}/metrics/loss"))
    ix = index(tmp_path / "root")
    assert ix.resolve("bert-small", full=True).history.last_step == 396
    fs = next(iter(ix._stores.values())).store
    follower = fs._files[str(f)]
    offset = follower.offset
    with open(f, "a") as out:
        out.write("1767226000000 0.3 400\n1767226001000 0.29 404\n")
    r = ix.resolve("bert-small", full=True)
    assert r.history.last_step == 404 and r.summary["loss"] == 0.29
    assert follower.offset > offset and fs._files[str(f)] is follower  # the same follower, read on


def test_sqlite_store_is_listed_again_only_when_it_changed(tmp_path):
    db = copy_store("mlflow.db", tmp_path / "root")
    parts = MlflowParts(SqliteStore(str(db), "mlflow.db"), str(db))
    first = parts.parts()
    assert parts.parts() == first and all(a is b for a, b in zip(parts.parts(), first))
    con = sqlite3.connect(db)
    rid = live_runs("mlflow.db")["resnet-killed"]["run_id"]
    con.execute("UPDATE runs SET status='FINISHED' WHERE run_uuid=?", (rid,))
    con.commit()
    con.close()
    again = {p.run_id: p for p in parts.parts()}
    assert again[rid].record.status == "FINISHED" and again[rid].version > 0


def test_mlflow_parts_maps_any_store_not_on_disk(tmp_path):
    """The mapping takes any MlflowStore (the tracking-server reader's way in)."""
    db = copy_store("mlflow.db", tmp_path / "root")

    class Remote:  # a store that is not a path: what the REST reader hands over
        label = "http://mlflow.example:5000"

        def __init__(self) -> None:
            self.inner = SqliteStore(str(db), "x")

        def experiments(self):
            return self.inner.experiments()

        def runs(self):
            return self.inner.runs()

        def history(self, run_id, keys=None):
            return self.inner.history(run_id, keys)

    parts = mlflow_parts(Remote()).parts()
    assert len(parts) == 4 and all(p.path.startswith("http://mlflow.example:5000/") for p in parts)
    p = next(p for p in parts if p.identity["name"] == "resnet-lr-high")
    assert p.refresh(full=True) and p.full and math.isnan(p.history.series("train/loss")[1][20])


def test_fixture_holds_no_machine_path():
    for p in ML.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            for bad in (b"/tmp/", b"/work/", b"/root/", b"/home/"):
                assert bad not in data, (p, bad)


def test_a_database_swapped_between_the_check_and_sqlites_open_is_refused(tmp_path):
    """The post-open check: the connection must hold the very inode that was opened confined. A
    connection that opened another file (what a path swapped for a symlink after the check would
    give SQLite) fails it; one holding the checked file passes."""
    from runwise_mcp.sources.mlflow_sqlite import _fds

    checked = copy_store("mlflow.db", tmp_path / "root")
    other = copy_store("mlflow.db", tmp_path / "elsewhere")
    st = os.stat(checked)
    before = _fds()
    con = sqlite3.connect(f"file:{other}?mode=ro", uri=True)
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    assert not SqliteStore._holds(before, st, str(checked))
    con.close()
    before = _fds()
    con = sqlite3.connect(f"file:{checked}?mode=ro", uri=True)
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    assert SqliteStore._holds(before, st, str(checked))
    con.close()


def test_old_two_field_metric_lines_are_step_zero(tmp_path):
    """Very old file stores wrote "timestamp value" (no step): read at step 0, the last kept."""
    store = copy_store("mlruns", tmp_path / "root")
    rid = live_runs("mlruns")["resnet-killed"]["run_id"]
    metrics = next(store.glob(f"*/{rid}/metrics"))
    (metrics / "old").write_text("1767225600000 0.5\n1767225601000 0.25\n")
    ix = index(tmp_path / "root")
    r = ix.resolve("resnet-killed", full=True)
    assert list(r.history.series("old")[0]) == [0] and r.history.series("old")[1][0] == 0.25
    assert ix.problems() == []
