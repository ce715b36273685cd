"""Which MLflow stores are configured: ``--mlflow`` (repeatable) or ``MLFLOW_TRACKING_URI``; and
what ``runwise-mcp --check`` says about a tracking server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow_server import answer, free_port, tiny_server

from runwise_mcp.config import load_settings


def test_tracking_uri_from_the_environment(tmp_path):
    s = load_settings(env={"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}, cwd=str(tmp_path))
    assert s.mlflow_servers == ["http://mlflow.example:5000"] and s.mlflow_from == "MLFLOW_TRACKING_URI"
    assert s.roots == [str(tmp_path)]


def test_mlflow_flag_wins_and_repeats(tmp_path):
    s = load_settings(env={"MLFLOW_TRACKING_URI": "http://ignored:1"}, cwd=str(tmp_path),
                      mlflow=["https://a.example", "http://b.example:5000", "https://a.example"])
    assert s.mlflow_servers == ["https://a.example", "http://b.example:5000"] and s.mlflow_from == "--mlflow"


def test_local_uris_point_at_the_local_readers(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "mlruns").mkdir(parents=True)
    proj = tmp_path / "proj"
    proj.mkdir()
    s = load_settings(roots=[str(proj)], env={}, cwd=str(proj),
                      mlflow=[f"sqlite:///{proj}/m.db", "sqlite:///rel.db", (elsewhere / "mlruns").as_uri(),
                              "./mlruns2"])
    assert s.mlflow_servers == []
    assert s.mlflow_local == [str(proj / "m.db"), str(proj / "rel.db"), str(elsewhere / "mlruns"),
                              str(proj / "mlruns2")]
    # a store outside the roots is read where it is; one inside a root adds nothing
    assert s.roots == [str(proj), str(elsewhere / "mlruns")]


@pytest.mark.parametrize("uri", ["databricks", "postgresql://bob:hunter2@db/mlflow", "sqlite://m.db"])
def test_unreadable_uris_are_a_clear_error(tmp_path, uri):
    with pytest.raises(ValueError) as e:
        load_settings(env={}, cwd=str(tmp_path), mlflow=[uri])
    msg = str(e.value)
    assert msg.startswith("--mlflow: ") and ("cannot read" in msg or "not a SQLite store URI" in msg)
    assert "hunter2" not in msg
    # the same in MLflow's own variable (set for other tools, perhaps) is a config problem, not a stop
    s = load_settings(env={"MLFLOW_TRACKING_URI": uri}, cwd=str(tmp_path))
    assert s.mlflow_servers == s.mlflow_local == [] and s.roots == [str(tmp_path)]
    assert any(p.startswith("MLFLOW_TRACKING_URI: ") and p.endswith("MLflow runs are not read")
               and "hunter2" not in p for p in s.config_problems)


def _check(tmp_path, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUNWISE_"))}
    env.update(RUNWISE_CACHE_DIR="off", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "runwise_mcp", "--root", str(tmp_path), "--check", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_check_reports_a_reachable_server(tmp_path):
    def handle(req):
        if "experiments/search" in req.path:
            answer(req, 200, {"experiments": [{"experiment_id": "0", "name": "Default"},
                                              {"experiment_id": "1", "name": "alpha"}]})
        else:
            answer(req, 200, {"runs": [{"info": {"run_id": f"r{i}", "experiment_id": "1", "status": "FINISHED"}}
                                       for i in range(3)]})

    with tiny_server(handle) as url:
        p = _check(tmp_path, "--mlflow", url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"MLflow tracking servers (from --mlflow):\n  {url}: reachable in " in p.stdout
    assert "2 experiments, 3 runs" in p.stdout and p.stdout.rstrip().endswith("OK")


def test_check_reports_a_stopped_server_and_fails(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    p = _check(tmp_path, env_extra={"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_TOKEN": "s3cr3t"})
    assert p.returncode == 1
    assert "MLflow tracking servers (from MLFLOW_TRACKING_URI):" in p.stdout
    assert f"{url}/api/2.0/mlflow/experiments/search failed: connection refused" in p.stdout
    assert "FAIL: an MLflow tracking server could not be read" in p.stdout and "s3cr3t" not in p.stdout + p.stderr


def test_bad_uri_exits_2_with_the_reason(tmp_path):
    p = _check(tmp_path, "--mlflow", "databricks")
    assert p.returncode == 2 and "--mlflow: 'databricks' is a Databricks workspace, which runwise cannot read" in p.stderr
