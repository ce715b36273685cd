"""The tracking-server reader against a real ``mlflow server`` (SQLite backend, localhost), with
runs logged by the real ``MlflowClient``; and against stdlib servers that are slow, refuse, or
answer hostile JSON."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from helpers import FIXTURES as WANDB
from helpers import REPO
from mcp import Client, StdioServerParameters
from mlflow_server import answer, free_port, mlflow_server, tiny_server

from runwise_mcp import answers
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex
from runwise_mcp.server import build_server
from runwise_mcp.sources.mlflow_records import MlflowStoreError
from runwise_mcp.sources.mlflow_rest import RestStore

N_RUNS_A = 7  # experiment "alpha": more than two pages of 3 runs
LONG = 130  # points of the long run's "loss": three pages of 50


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("mlflow")
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def logged(server):
    """Two experiments; finished, failed and never-terminated runs; NaN, inf, nested keys, several
    values at one step; one long run."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=server)
    a = c.create_experiment("alpha")
    b = c.create_experiment("beta")
    t0 = int(time.time() * 1000) - 3_600_000
    runs = {}
    for i in range(N_RUNS_A):
        r = c.create_run(a, run_name=f"alpha-{i}", tags={"team": "vision"})
        rid = r.info.run_id
        pts = [Metric("loss", 1.0 / (s + 1 + i), t0 + s * 1000, s) for s in range(5)]
        pts += [Metric("train/acc", 0.1 * s, t0 + s * 1000, s) for s in range(5)]
        c.log_batch(rid, metrics=pts, params=[Param("lr", str(0.001 * (i + 1))), Param("opt", "adam")],
                    tags=[RunTag("mlflow.note.content", f"note {i}")])
        if i % 3 == 0:
            c.set_terminated(rid, "FINISHED")
        elif i % 3 == 1:
            c.set_terminated(rid, "FAILED")
        runs[rid] = f"alpha-{i}"  # i % 3 == 2: never terminated (RUNNING forever)
    r = c.create_run(b, run_name="long")
    rid = r.info.run_id
    vals = [math.nan if s == 17 else math.inf if s == 18 else -math.inf if s == 19 else 2.0 - s / LONG
            for s in range(LONG)]
    c.log_batch(rid, metrics=[Metric("loss", v, t0 + s * 10, s) for s, v in enumerate(vals)])
    c.log_batch(rid, metrics=[Metric("loss", 9.5, t0 + 5 * 10 + 1, 5)])  # a second value at step 5
    c.log_batch(rid, metrics=[Metric("nested/deep/key", float(s), t0 + s, s) for s in range(3)])
    c.set_terminated(rid, "FINISHED")
    runs[rid] = "long"
    return {"client": c, "runs": runs, "long": rid, "experiments": {"alpha": a, "beta": b}}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_every_metric_point_matches_the_client(server, logged):
    c = logged["client"]
    store = RestStore(server, history_page=50, runs_page=3, experiments_page=1)
    checked = 0
    for rid in logged["runs"]:
        ours = store.history(rid)
        keys = sorted(c.get_run(rid).data.metrics)
        assert sorted(ours) == keys
        for key in keys:
            theirs = sorted(c.get_metric_history(rid, key), key=lambda m: (m.step, m.timestamp))
            got = ours[key]
            assert len(got) == len(theirs), (rid, key)
            for p, m in zip(got, theirs):
                assert (p.step, p.timestamp_ms) == (m.step, m.timestamp), (rid, key)
                assert _same(p.value, m.value), (rid, key, p, m)
                checked += 1
    assert checked == N_RUNS_A * 10 + LONG + 1 + 3
    arrays = store.history_arrays(logged["long"])  # the mapping's fast path: the same points as arrays
    pts = store.history(logged["long"])
    for key, (steps, stamps, values) in arrays.items():
        assert list(steps) == [p.step for p in pts[key]] and list(stamps) == [p.timestamp_ms for p in pts[key]]
        assert all(_same(a, p.value) for a, p in zip(values, pts[key])) and len(values) == len(pts[key])


def test_nan_and_infinities_round_trip(server, logged):
    pts = RestStore(server, history_page=50).history(logged["long"], ["loss"])["loss"]
    by_step = {}
    for p in pts:
        by_step.setdefault(p.step, []).append(p.value)
    assert math.isnan(by_step[17][0])
    # the SQLite backend clamps infinities to the largest float (the mapping shows "inf (clamped)")
    assert by_step[18] == [sys.float_info.max] and by_step[19] == [-sys.float_info.max]
    assert by_step[5] == [2.0 - 5 / LONG, 9.5]  # both values at one step, in log order
    assert len(pts) == LONG + 1


def test_runs_paginated_across_experiments(server, logged):
    store = RestStore(server, runs_page=3, experiments_page=1)
    recs = store.runs()
    c = logged["client"]
    want = {r.info.run_id: r for e in logged["experiments"].values() for r in c.search_runs([e], max_results=1000)}
    assert {r.run_id for r in recs} == set(want) == set(logged["runs"])
    assert store.requests >= 1 + 3 + 1  # experiments pages + 3 pages of alpha runs + beta
    for r in recs:
        w = want[r.run_id]
        assert r.name == w.info.run_name == logged["runs"][r.run_id]
        assert r.status == w.info.status
        assert r.start_time_ms == w.info.start_time and r.end_time_ms == w.info.end_time
        assert r.params == w.data.params and r.tags == w.data.tags
        assert {k: p.value for k, p in r.latest.items() if not math.isnan(p.value)} == \
            {k: v for k, v in w.data.metrics.items() if not math.isnan(v)}
        assert r.store == server
    statuses = {r.name: r.status for r in recs}
    assert statuses["alpha-0"] == "FINISHED" and statuses["alpha-1"] == "FAILED" and statuses["alpha-2"] == "RUNNING"
    assert sorted(e.name for e in store.experiments()) == ["Default", "alpha", "beta"]


def test_history_refreshes_only_changed_keys(server, logged):
    c = logged["client"]
    store = RestStore(server, history_page=50, workers=1)
    rid = [r for r, n in logged["runs"].items() if n == "alpha-2"][0]  # still RUNNING
    first = store.history(rid)
    n = store.requests
    again = store.history(rid)
    assert store.requests == n + 1  # runs/get only: nothing changed
    assert again == first
    c.log_metric(rid, "loss", 0.01, timestamp=int(time.time() * 1000), step=99)
    third = store.history(rid)
    assert store.requests == n + 1 + 2  # runs/get + one page of "loss"; "train/acc" not fetched again
    assert third["loss"][-1].step == 99 and third["train/acc"] == first["train/acc"]
    c.set_terminated(rid, "KILLED")  # end_time changes: every key again
    store.history(rid)
    assert store.requests == n + 3 + 1 + 2


def test_wrong_token_gets_401_sentence():
    def handle(req):
        ok = req.headers.get("Authorization") == "Bearer right"
        answer(req, 200 if ok else 401, {"experiments": []} if ok else {"error_code": "UNAUTHENTICATED"})

    with tiny_server(handle) as url:
        store = RestStore(url, env={"MLFLOW_TRACKING_TOKEN": "s3cr3t-wrong"}, timeout=5)
        with pytest.raises(MlflowStoreError) as e:
            store.experiments()
        msg = str(e.value)
        assert "401" in msg and "MLFLOW_TRACKING_TOKEN" in msg and url in msg
        assert "s3cr3t" not in msg
        assert RestStore(url, env={"MLFLOW_TRACKING_TOKEN": "right"}).experiments() == []


def test_stopped_server_answers_within_the_timeout():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = RestStore(url, env={}, timeout=2)
    t = time.monotonic()
    with pytest.raises(MlflowStoreError) as e:
        store.runs()
    assert time.monotonic() - t < 2
    msg = str(e.value)
    assert "connection refused" in msg and url in msg and "running" in msg


def test_slow_server_hits_the_timeout():
    def handle(req):
        time.sleep(3)
        answer(req, 200, {"experiments": []})

    with tiny_server(handle) as url:
        store = RestStore(url, env={}, timeout=0.5)
        t = time.monotonic()
        with pytest.raises(MlflowStoreError) as e:
            store.experiments()
        took = time.monotonic() - t
        assert took < 2.5
        assert "within 0.5 s" in str(e.value) and "RUNWISE_MLFLOW_TIMEOUT" in str(e.value)


def test_trickling_server_hits_the_whole_response_deadline():
    def handle(req):
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.end_headers()
        try:
            req.wfile.write(b'{"experiments": [')
            for _ in range(40):
                req.wfile.write(b" ")
                req.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    with tiny_server(handle) as url:
        store = RestStore(url, env={}, timeout=0.3)
        # a byte every 0.1 s never hits the socket timeout (0.3 s); the whole-response deadline
        # (3 x timeout) ends it
        t = time.monotonic()
        with pytest.raises(MlflowStoreError) as e:
            store.experiments()
        assert time.monotonic() - t < 2.5
        assert "still sending" in str(e.value)


@pytest.mark.parametrize("body,why", [
    (b"<html>login</html>", "not JSON"),
    (b"[1, 2]", "not an object"),
    ({"experiments": "oops"}, "not a list"),
    ({"experiments": [{"experiment_id": {"a": 1}, "name": "x"}]}, "experiment_id"),
    ({"experiments": [{"experiment_id": "1", "name": "x"}], "next_page_token": "same"}, "repeats"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (b'{"experiments": [' + b'{"experiment_id": "1", "name": "' + b"x" * (3 << 20) + b'"}]}', "more than 1 MB"),
])
def test_hostile_json_is_a_clear_error(body, why):
    with tiny_server(lambda req: answer(req, 200, body)) as url:
        store = RestStore(url, env={"MLFLOW_TRACKING_TOKEN": "s3cr3t"}, timeout=5, max_response_bytes=1 << 20)
        with pytest.raises(MlflowStoreError) as e:
            store.experiments()
        msg = str(e.value)
        assert why in msg and url in msg and "s3cr3t" not in msg


def test_hostile_metric_values_are_a_clear_error():
    def handle(req):
        if "runs/get" in req.path:
            answer(req, 200, {"run": {"info": {"run_id": "r1", "experiment_id": "0"},
                                      "data": {"metrics": [{"key": "loss", "value": 1, "timestamp": 1, "step": 1}]}}})
        else:
            answer(req, 200, {"metrics": [{"key": "loss", "value": "lots", "timestamp": 1, "step": 1}]})

    with tiny_server(handle) as url:
        with pytest.raises(MlflowStoreError) as e:
            RestStore(url, env={}, timeout=5).history("r1")
        assert "'lots' is not a number" in str(e.value)


def test_redirects_are_not_followed_with_credentials():
    seen = []

    def handle(req):
        seen.append(req.headers.get("Authorization"))
        answer(req, 302, {}, {"Location": "http://elsewhere.invalid/api"})

    with tiny_server(handle) as url:
        store = RestStore("http://bob:pw@" + url.split("//", 1)[1], env={}, timeout=5)
        assert store.label == url
        with pytest.raises(MlflowStoreError) as e:
            store.experiments()
        msg = str(e.value)
        assert "redirect" in msg and "elsewhere.invalid" in msg and "pw" not in msg.replace(url, "")
        assert len(seen) == 1 and seen[0].startswith("Basic ")


def test_uri_errors_name_no_secret():
    with pytest.raises(MlflowStoreError) as e:
        RestStore("ftp://bob:hunter2@host/x", env={})
    assert "hunter2" not in str(e.value)


def test_history_cache_is_bounded():
    import urllib.parse

    def handle(req):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
        rid = q["run_id"][0]
        if "runs/get" in req.path:
            answer(req, 200, {"run": {"info": {"run_id": rid, "experiment_id": "0", "status": "FINISHED",
                                               "end_time": 5},
                                      "data": {"metrics": [{"key": "loss", "value": 1, "timestamp": 9, "step": 9}]}}})
        else:
            answer(req, 200, {"metrics": [{"key": "loss", "value": s / 10, "timestamp": s, "step": s}
                                          for s in range(10)]})

    with tiny_server(handle) as url:
        store = RestStore(url, env={}, cache_points=15)
        a = store.history("a")
        n = store.requests
        assert store.history("a") == a and store.requests == n + 1  # cached: runs/get only
        store.history("b")  # 20 points > 15: "a" goes
        n = store.requests
        assert store.history("b")["loss"] == a["loss"] and store.requests == n + 1  # "b" kept
        assert store.history("a") == a and store.requests == n + 3  # "a" fetched again


# ---- the tracking server's runs through every tool ------------------------------------------------------

AUTH_PASSWORD = "runwise-Admin-9f3x"  # the basic-auth app's bootstrap admin (a throwaway test server)


@pytest.fixture(scope="module")
def scenario(server):
    """The scenario of the local-store fixtures (tests/fixtures/make_mlflow_runs.py), logged to the
    server by the real client: the same runs, so the same answers."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from make_mlflow_runs import scenario as make

    return make(server)


def _settings(root: Path, *servers: str, **env: str):
    return load_settings([str(root)], env={"RUNWISE_CACHE_DIR": "off", **env}, mlflow=list(servers))


def test_server_runs_match_what_was_logged(server, scenario, tmp_path):
    from test_mlflow import expected_series, num, same

    ix = RunIndex(_settings(tmp_path, server))
    listed = {r.name: r for r in ix.runs() if r.group in ("vision", "nlp")}
    live = {n: s for n, s in scenario["runs"].items() if not s["deleted"]}
    assert sorted(listed) == sorted(live)  # the deleted run is left out
    for name, spec in live.items():
        r = ix.resolve(spec["run_id"], full=True)
        assert (r.name, r.source, r.group, r.notes) == (name, "mlflow", spec["experiment"], spec["note"])
        assert r.segments[-1].path.startswith(server + "/")
        for key, points in spec["metrics"].items():
            steps, values = expected_series(points)
            got_steps, got_values = r.history.series(key)
            assert list(got_steps) == steps, (name, key)
            assert len(got_values) == len(values) and all(same(a, b) for a, b in zip(got_values, values)), (name, key)
            last = max(points, key=lambda p: (p[0], p[1]))
            assert same(r.summary[key], num(last[2])), (name, key)
    states = {n: r.state.state for n, r in listed.items()}
    assert states == {"resnet-baseline": "finished", "resnet-lr-high": "crashed", "resnet-killed": "killed",
                      "bert-small": "killed"}  # bert-small: RUNNING, no metric for months -> killed?


@pytest.mark.anyio
async def test_every_tool_answers_on_server_runs(server, scenario, tmp_path):
    from test_mlflow import TOOL_CALLS

    async with Client(build_server(_settings(tmp_path, server)), raise_exceptions=True) as c:
        tools = await c.list_tools()
        for tool in tools.tools:  # a configured server makes the read tools reach the network
            assert tool.annotations.open_world_hint is True, tool.name
        for tool, args, expect in TOOL_CALLS:
            res = await c.call_tool(tool, args)
            body = "\n".join(x.text for x in res.content)
            assert expect in body, (tool, body)
            assert res.is_error == (tool == "sync_runs"), (tool, body)
    assert list(tmp_path.iterdir()) == []  # nothing written into the root


@pytest.mark.anyio
async def test_stdio_server_reads_the_tracking_server(server, scenario, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUNWISE_"))}
    env.update(PYTHONPATH=str(REPO), RUNWISE_CACHE_DIR="off", MLFLOW_TRACKING_URI=server)
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(tmp_path)],
                                   env=env, cwd=str(tmp_path))
    async with Client(params) as c:
        listing = "\n".join(x.text for x in (await c.call_tool("list_runs", {"query": "resnet"})).content)
        assert "resnet-baseline" in listing and "resnet-killed" in listing
        hist = "\n".join(x.text for x in (await c.call_tool(
            "get_history", {"run": "vision/resnet-lr-high", "keys": ["train/loss"], "samples": 100})).content)
        assert "step,train/loss" in hist and "nan" in hist.lower()


def test_mixed_roots_and_server_rank_together(server, scenario, tmp_path):
    shutil.copytree(WANDB / "wandb", tmp_path / "wb" / "wandb", symlinks=True)
    ix = RunIndex(_settings(tmp_path, server))
    assert {"mlflow", "wandb"} <= {r.source for r in ix.runs()}
    best = answers.best_run(ix, "train/loss", top=100)
    assert "resnet-baseline" in best and "R001-finished" in best


def test_an_unreachable_server_leaves_the_other_runs_answering(tmp_path):
    shutil.copytree(WANDB / "wandb", tmp_path / "wb" / "wandb", symlinks=True)
    url = f"http://127.0.0.1:{free_port()}"
    ix = RunIndex(_settings(tmp_path, url, MLFLOW_TRACKING_TOKEN="s3cr3t"))
    t = time.monotonic()
    runs = ix.runs()
    assert runs and {r.source for r in runs} == {"wandb"}
    assert time.monotonic() - t < 10
    problems = " ".join(ix.problems())
    assert f"cannot read {url}: POST {url}/api/2.0/mlflow/experiments/search failed: connection refused" in problems
    assert "s3cr3t" not in problems
    listing = answers.list_runs(ix)
    assert "R001-finished" in listing
    # the header says where runs were looked for: the root and the server (never its token)
    head = listing.split("\n")[0]
    assert str(tmp_path) in head and f"MLflow server {url}" in head and "s3cr3t" not in listing


def test_the_listing_names_the_server_it_read(server, scenario, tmp_path):
    ix = RunIndex(_settings(tmp_path, server))
    head = answers.list_runs(ix).split("\n")[0]
    assert f"under {tmp_path}, MLflow server {server};" in head, head
    assert "resnet" in answers.list_runs(ix, query="resnet")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    pytest.importorskip("mlflow")
    pytest.importorskip("flask_wtf")  # mlflow[auth]
    with mlflow_server(tmp_path_factory.mktemp("mlflow-auth"), app_name="basic-auth",
                       env={"MLFLOW_AUTH_ADMIN_PASSWORD": AUTH_PASSWORD,
                            "MLFLOW_FLASK_SERVER_SECRET_KEY": "runwise-test-only"}) as url:
        yield url


def test_basic_auth_server_wrong_password_is_a_401_sentence(auth_server):
    store = RestStore(auth_server, env={"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wr0ng-pw"},
                      timeout=60)
    with pytest.raises(MlflowStoreError) as e:
        store.runs()
    msg = str(e.value)
    assert "401 unauthorized with a user name and password (MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD)" in msg
    assert auth_server in msg and "wr0ng-pw" not in msg
    with pytest.raises(MlflowStoreError) as e:
        RestStore(auth_server, env={}, timeout=60).experiments()
    assert "no credentials were sent" in str(e.value)
    with pytest.raises(MlflowStoreError) as e:
        RestStore(auth_server, env={"MLFLOW_TRACKING_TOKEN": "not-a-token"}, timeout=60).experiments()
    assert "401 unauthorized with a token (MLFLOW_TRACKING_TOKEN)" in str(e.value)


def test_basic_auth_server_right_password_reads(auth_server):
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": AUTH_PASSWORD}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the real client reads them from the environment
    try:
        c = MlflowClient(tracking_uri=auth_server)
        rid = c.create_run(c.create_experiment("guarded"), run_name="guarded-run").info.run_id
        c.log_metric(rid, "loss", 0.5, step=3)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    store = RestStore(auth_server, env=env, timeout=60)
    assert [r.name for r in store.runs()] == ["guarded-run"]
    assert [(p.step, p.value) for p in store.history(rid)["loss"]] == [(3, 0.5)]
    as_uri = RestStore(auth_server.replace("//", f"//admin:{AUTH_PASSWORD}@"), env={}, timeout=60)
    assert as_uri.label == auth_server and [r.run_id for r in as_uri.runs()] == [rid]
