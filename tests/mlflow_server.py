"""A real ``mlflow server`` for tests and benchmarks (SQLite backend, localhost, free port), and
tiny stdlib HTTP servers that misbehave (slow, 401, hostile JSON)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_command() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    return [str(exe)] if exe.exists() else [shutil.which("mlflow") or "mlflow"]


@contextmanager
def mlflow_server(workdir: Path, app_name: str | None = None, wait: float = 300.0,
                  env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ``mlflow server`` on a free localhost port with a SQLite backend in ``workdir``;
    yield its URL once ``/health`` answers; stop it (and its workers) afterwards. ``wait`` is
    generous: the server needs about 15 s on 2 idle cores, minutes on a loaded machine."""
    port = free_port()
    db = workdir / "m.db"
    cmd = mlflow_command() + ["server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
                              "--port", str(port), "--workers", "1",
                              "--default-artifact-root", (workdir / "artifacts").as_uri()]
    if app_name:
        cmd += ["--app-name", app_name]
    log = open(workdir / "server.log", "wb")
    # no job runner (huey consumers): only the tracking API is needed, and it starts sooner
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({proc.returncode}): "
                                   f"{(workdir / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except urllib.error.HTTPError as e:
                if e.code == 401:  # the basic-auth app guards /health too: it is up
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not up after {wait} s: "
                                   f"{(workdir / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def tiny_server(handle: Handler) -> Iterator[str]:
    """A stdlib HTTP server on a free localhost port; ``handle(request)`` answers every GET and POST."""

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            handle(self)

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("Content-Length") or 0)
            self.body = self.rfile.read(n)
            handle(self)

        def log_message(self, *a) -> None:  # quiet
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def answer(req: http.server.BaseHTTPRequestHandler, code: int, body: bytes | object,
           headers: dict[str, str] | None = None) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req.send_response(code)
    req.send_header("Content-Type", "application/json")
    req.send_header("Content-Length", str(len(raw)))
    for k, v in (headers or {}).items():
        req.send_header(k, v)
    req.end_headers()
    try:
        req.wfile.write(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass
