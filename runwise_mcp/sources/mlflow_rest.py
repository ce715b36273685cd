"""An MLflow tracking server read over its REST API, with the standard library only (no
``mlflow`` import): ``experiments/search``, ``runs/search`` and ``metrics/get-history``, all
paginated, as an :class:`~runwise_mcp.sources.mlflow_records.MlflowStore`.

* Credentials: ``MLFLOW_TRACKING_TOKEN`` (Bearer), else ``MLFLOW_TRACKING_USERNAME`` /
  ``MLFLOW_TRACKING_PASSWORD`` (Basic), else ``user:password@`` in the URI (Basic).
  ``MLFLOW_TRACKING_INSECURE_TLS=true`` skips certificate checks; ``MLFLOW_TRACKING_SERVER_CERT_PATH``
  names a CA bundle. Secrets are sent only to the configured host (redirects are refused, since
  urllib would forward the Authorization header to wherever a redirect points) and never appear
  in labels, errors or logs.
* Every request has a timeout (connect and each read, and the whole response), every response a
  byte cap, every listing a page cap; a server that answers something else than MLflow's JSON
  gets a :class:`MlflowStoreError` naming what was tried, what happened and what to check.
* Histories are cached in memory per run and key, and a key is fetched again only when its latest
  point (timestamp, step) in the run's ``data.metrics`` changed, or the run's ``end_time`` or
  status did.
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .mlflow_records import MlflowExperiment, MlflowMetricPoint, MlflowRunRecord, MlflowStoreError

API = "/api/2.0/mlflow/"
ENV_URI = "MLFLOW_TRACKING_URI"
ENV_TOKEN = "MLFLOW_TRACKING_TOKEN"
ENV_USER = "MLFLOW_TRACKING_USERNAME"
ENV_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
ENV_INSECURE = "MLFLOW_TRACKING_INSECURE_TLS"
ENV_CA = "MLFLOW_TRACKING_SERVER_CERT_PATH"
ENV_TIMEOUT = "RUNWISE_MLFLOW_TIMEOUT"  # seconds per request (connect, each read, whole response)

DEFAULT_TIMEOUT = 10.0
HISTORY_PAGE = 25_000  # points per get-history page (measured: see benchmarks/bench_mlflow_server.py)
RUNS_PAGE = 1000  # runs per runs/search page (the server's default; its maximum is 50,000)
EXPERIMENTS_PAGE = 1000
EXPERIMENT_IDS_PER_SEARCH = 100  # experiment ids per runs/search request
MAX_RESPONSE_BYTES = 64 << 20  # one response; a 25k-point page is about 2 MB
MAX_PAGES = 2000  # per listing: 50M runs or 50M points of one key at the default page sizes
MAX_WORKERS = 4  # keys of one run fetched in parallel
CACHE_POINTS = 8_000_000  # points kept in memory across runs (24 bytes each); least recently used runs go first
LISTING_TTL = 5.0  # seconds a run listing (and a failed one) is reused before the server is asked again


def is_server_uri(uri: str) -> bool:
    return uri.strip().lower().startswith(("http://", "https://"))


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def split_uri(uri: str) -> tuple[str, tuple[str, str] | None]:
    """``(label, userinfo)``: the URI without credentials, query or fragment (what answers and
    errors show), and ``(user, password)`` when the URI carried them."""
    p = urllib.parse.urlsplit(uri.strip())
    if p.scheme.lower() not in ("http", "https") or not p.hostname:
        raise MlflowStoreError(f"{_safe(uri)!r} is not an http(s) tracking server URI; give it as "
                               f"http://host:port or https://host[/prefix]")
    host = p.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = p.port
    except ValueError:
        raise MlflowStoreError(f"{_safe(uri)!r} has a port that is not a number; give the URI as "
                               f"http://host:port") from None
    netloc = host + (f":{port}" if port else "")
    label = urllib.parse.urlunsplit((p.scheme.lower(), netloc, p.path.rstrip("/"), "", ""))
    creds = None
    if p.username is not None:
        creds = (urllib.parse.unquote(p.username), urllib.parse.unquote(p.password or ""))
    return label, creds


def _safe(uri: str) -> str:
    """A URI for messages: credentials removed even when it does not parse."""
    try:
        p = urllib.parse.urlsplit(uri.strip())
        if "@" in p.netloc:
            return urllib.parse.urlunsplit((p.scheme, p.netloc.rsplit("@", 1)[1], p.path, "", ""))[:200]
        return urllib.parse.urlunsplit((p.scheme, p.netloc, p.path, "", ""))[:200]
    except ValueError:
        return "<unparsable URI>"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None  # the 3xx surfaces as an HTTPError, reported below


@dataclass
class _KeyCache:
    """One key's points in compact arrays (24 bytes a point)."""

    mark: tuple  # (timestamp, step) of the key's latest point when it was fetched
    steps: array
    stamps: array
    values: array

    @classmethod
    def of(cls, mark: tuple, pts: list[MlflowMetricPoint]) -> _KeyCache:
        return cls(mark, array("q", (p.step for p in pts)), array("q", (p.timestamp_ms for p in pts)),
                   array("d", (p.value for p in pts)))

    def points(self) -> list[MlflowMetricPoint]:
        return [MlflowMetricPoint(s, t, v) for s, t, v in zip(self.steps, self.stamps, self.values)]

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class _RunCache:
    mark: tuple  # (status, end_time)
    keys: dict[str, _KeyCache] = field(default_factory=dict)


class RestStore:
    """One tracking server. ``env`` defaults to ``os.environ`` (read once, here)."""

    def __init__(self, uri: str, *, env: Mapping[str, str] | None = None, timeout: float | None = None,
                 history_page: int = HISTORY_PAGE, runs_page: int = RUNS_PAGE,
                 experiments_page: int = EXPERIMENTS_PAGE, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 max_pages: int = MAX_PAGES, workers: int = MAX_WORKERS, listing_ttl: float = LISTING_TTL,
                 cache_points: int = CACHE_POINTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self.label, creds = split_uri(uri)
        self.base = self.label  # requests go to base + API + endpoint
        if timeout is None:
            raw = env.get(ENV_TIMEOUT, "").strip()
            try:
                timeout = float(raw) if raw else DEFAULT_TIMEOUT
            except ValueError:
                raise MlflowStoreError(f"{ENV_TIMEOUT}={raw[:20]!r} is not a number of seconds; "
                                       f"set it to e.g. 10") from None
            if not timeout > 0:
                raise MlflowStoreError(f"{ENV_TIMEOUT}={raw[:20]!r} must be greater than 0 seconds")
        self.timeout = float(timeout)
        self.history_page = int(history_page)
        self.runs_page = int(runs_page)
        self.experiments_page = int(experiments_page)
        self.max_response_bytes = int(max_response_bytes)
        self.max_pages = int(max_pages)
        self.workers = max(1, int(workers))
        self._clock = clock
        self.listing_ttl = float(listing_ttl)
        self.cache_points = int(cache_points)
        self._failed: tuple[float, MlflowStoreError] | None = None  # the last listing failure and when
        self._exps: tuple[float, list[MlflowExperiment]] | None = None  # the last experiments listing and when
        self.kind = "tracking server"
        self._headers = {"Accept": "application/json", "User-Agent": "runwise-mcp"}
        token = env.get(ENV_TOKEN, "")
        user, password = env.get(ENV_USER, ""), env.get(ENV_PASSWORD, "")
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
            self.auth = f"a token ({ENV_TOKEN})"
        elif user or password:
            self._headers["Authorization"] = _basic(user, password)
            self.auth = f"a user name and password ({ENV_USER}/{ENV_PASSWORD})"
        elif creds:
            self._headers["Authorization"] = _basic(*creds)
            self.auth = "the user name and password in the URI"
        else:
            self.auth = ""
        handlers: list[Any] = [_NoRedirect()]
        if self.label.startswith("https:"):
            ctx = ssl.create_default_context(cafile=env.get(ENV_CA) or None)
            if _truthy(env.get(ENV_INSECURE)):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self._opener = urllib.request.build_opener(*handlers)
        self._lock = threading.Lock()
        self._cache: dict[str, _RunCache] = {}
        self._records: dict[str, MlflowRunRecord] = {}  # run_id -> the last listing's record
        self.requests = 0  # how many HTTP requests were made (tests and benchmarks read it)

    # -- the MlflowStore protocol ------------------------------------------------------------

    def experiments(self) -> list[MlflowExperiment]:
        out = self._guard(self._experiments_now)
        self._exps = (self._clock(), out)
        return list(out)

    def _experiments_now(self) -> list[MlflowExperiment]:
        out: list[MlflowExperiment] = []
        for page in self._pages("experiments/search", {"max_results": self.experiments_page}, "experiments"):
            for e in page:
                e = _obj(e, "an experiment", self, "experiments/search")
                out.append(MlflowExperiment(
                    experiment_id=_str(e.get("experiment_id"), "experiment_id", self, "experiments/search"),
                    name=_str(e.get("name", ""), "name", self, "experiments/search"),
                    lifecycle_stage=_str(e.get("lifecycle_stage", "active"), "lifecycle_stage", self,
                                         "experiments/search")))
        return [e for e in out if e.lifecycle_stage != "deleted"]

    def fingerprint(self) -> int:
        """Changes every ``listing_ttl`` seconds: the MLflow source lists a server's runs again only
        then, so the tools of one question do not each ask the server (a local store's fingerprint
        is its files' state; a server has no cheap equivalent)."""
        return int(self._clock() // self.listing_ttl) if self.listing_ttl > 0 else id(object())

    def runs(self) -> list[MlflowRunRecord]:
        return self._guard(self._runs_now)

    def _guard(self, fn: Callable[[], Any]) -> Any:
        failed = self._failed
        if failed is not None and self._clock() - failed[0] < self.listing_ttl:
            raise failed[1]  # an unreachable server is not waited for again at once
        try:
            out = fn()
        except MlflowStoreError as e:
            self._failed = (self._clock(), e)
            raise
        self._failed = None
        return out

    def _runs_now(self) -> list[MlflowRunRecord]:
        exps = self._exps  # the experiments just listed (the source lists them first), else fresh ones
        if exps is None or self._clock() - exps[0] >= min(self.listing_ttl, 1.0):
            exps = (self._clock(), self._experiments_now())
        ids = [e.experiment_id for e in exps[1]]
        out: list[MlflowRunRecord] = []
        for i in range(0, len(ids), EXPERIMENT_IDS_PER_SEARCH):
            body = {"experiment_ids": ids[i:i + EXPERIMENT_IDS_PER_SEARCH], "max_results": self.runs_page,
                    "run_view_type": "ACTIVE_ONLY"}
            for page in self._pages("runs/search", body, "runs"):
                for r in page:
                    rec = self._record(r, "runs/search")
                    if rec.lifecycle_stage != "deleted":
                        out.append(rec)
        with self._lock:
            self._records = {r.run_id: r for r in out}
        return out

    def run(self, run_id: str) -> MlflowRunRecord:
        """One run, fresh from ``runs/get``."""
        data = self._call("GET", "runs/get", {"run_id": run_id})
        rec = self._record(data.get("run"), "runs/get")
        with self._lock:
            self._records[rec.run_id] = rec
        return rec

    def history(self, run_id: str, keys: list[str] | None = None) -> dict[str, list[MlflowMetricPoint]]:
        """Every point of ``keys`` (all the run's keys when None). The run is looked up fresh
        (one ``runs/get``); keys whose latest point is what was cached are not fetched again."""
        return {k: kc.points() for k, kc in self._keys(run_id, keys).items()}

    def history_arrays(self, run_id: str, keys: list[str] | None = None) -> dict[str, tuple[array, array, array]]:
        """``history`` as (steps, timestamps ms, values) arrays per key (copies of the cache)."""
        return {k: (array("q", kc.steps), array("q", kc.stamps), array("d", kc.values))
                for k, kc in self._keys(run_id, keys).items()}

    def _keys(self, run_id: str, keys: list[str] | None) -> dict[str, _KeyCache]:
        rec = self.run(run_id)
        wanted = sorted(rec.latest) if keys is None else [k for k in keys if k in rec.latest]
        run_mark = (rec.status, rec.end_time_ms)
        with self._lock:
            cached = self._cache.get(run_id)
            if cached is None or cached.mark != run_mark:  # the run ended (or came back): fetch every key again
                cached = self._cache[run_id] = _RunCache(run_mark)
            marks = {k: (rec.latest[k].timestamp_ms, rec.latest[k].step) for k in wanted}
            todo = [k for k in wanted if k not in cached.keys or cached.keys[k].mark != marks[k]]
        fetched: dict[str, list[MlflowMetricPoint]] = {}
        if len(todo) > 1 and self.workers > 1:
            with ThreadPoolExecutor(min(self.workers, len(todo))) as pool:
                for k, pts in zip(todo, pool.map(lambda k: self._key_history(run_id, k), todo)):
                    fetched[k] = pts
        else:
            for k in todo:
                fetched[k] = self._key_history(run_id, k)
        with self._lock:
            for k, pts in fetched.items():
                cached.keys[k] = _KeyCache.of(marks[k], pts)
            out = {k: cached.keys[k] for k in wanted}
            self._cache[run_id] = self._cache.pop(run_id, cached)  # most recently used last
            self._trim(keep=run_id)
            return out

    def _trim(self, keep: str) -> None:
        """Drop least recently used runs' cached points beyond ``cache_points`` (never ``keep``'s)."""
        total = sum(len(kc) for rc in self._cache.values() for kc in rc.keys.values())
        for rid in list(self._cache):
            if total <= self.cache_points:
                return
            if rid != keep:
                total -= sum(len(kc) for kc in self._cache.pop(rid).keys.values())

    # -- checks ------------------------------------------------------------------------------

    def check(self) -> str:
        """One line for ``--check``: experiments and runs found (raises MlflowStoreError)."""
        exps = self.experiments()
        runs = self.runs()
        return f"{self.label}: reachable, {len(exps)} experiment(s), {len(runs)} run(s)"

    # -- HTTP --------------------------------------------------------------------------------

    def _key_history(self, run_id: str, key: str) -> list[MlflowMetricPoint]:
        pts: list[MlflowMetricPoint] = []
        params = {"run_id": run_id, "metric_key": key, "max_results": self.history_page}
        for page in self._pages("metrics/get-history", params, "metrics", method="GET"):
            for m in page:
                m = _obj(m, "a metric point", self, "metrics/get-history")
                pts.append(MlflowMetricPoint(
                    step=_int(m.get("step", 0), "step", self, "metrics/get-history"),
                    timestamp_ms=_int(m.get("timestamp", 0), "timestamp", self, "metrics/get-history"),
                    value=_float(m.get("value"), "value", self, "metrics/get-history")))
        pts.sort(key=lambda p: (p.step, p.timestamp_ms))  # stable: log order within one (step, time)
        return pts

    def _pages(self, endpoint: str, params: dict, field_name: str, method: str = "POST"):  # noqa: ANN202
        token = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            q = dict(params)
            if token:
                q["page_token"] = token
            data = self._call(method, endpoint, q)
            items = data.get(field_name, [])
            if not isinstance(items, list):
                raise self._bad(endpoint, f"its {field_name!r} is a {type(items).__name__}, not a list")
            yield items
            token = data.get("next_page_token")
            if not token:
                return
            if not isinstance(token, str) or token in seen:
                raise self._bad(endpoint, "its next_page_token repeats or is not a string (the listing would "
                                          "never end)")
            seen.add(token)
        raise MlflowStoreError(
            f"{self.label}: {endpoint} was still paginating after {self.max_pages} pages, so the listing was "
            f"cut off; check that {self.label} is an MLflow tracking server, or read a narrower set of runs")

    def _call(self, method: str, endpoint: str, params: dict) -> dict:
        url = self.base + API + endpoint
        if method == "GET":
            req = urllib.request.Request(url + "?" + urllib.parse.urlencode(params), headers=self._headers)
        else:
            req = urllib.request.Request(url, data=json.dumps(params).encode(), method="POST",
                                         headers={**self._headers, "Content-Type": "application/json"})
        where = f"{method} {self.label}{API}{endpoint}"
        self.requests += 1
        deadline = self._clock() + self.timeout * 3  # connect + headers + body, each within timeout
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = self._read_capped(resp, where, deadline)
        except urllib.error.HTTPError as e:
            raise self._http_error(e, where) from None
        except MlflowStoreError:
            raise
        except (TimeoutError, socket.timeout):
            raise MlflowStoreError(
                f"{where} got no answer within {self.timeout:g} s; check that the server is up and not "
                f"overloaded, or raise {ENV_TIMEOUT}") from None
        except urllib.error.URLError as e:
            raise MlflowStoreError(f"{where} failed: {_reason(e.reason, self.timeout)}; {_hint(e.reason)}") from None
        except (OSError, ValueError, http_client_errors()) as e:
            raise MlflowStoreError(f"{where} failed: {type(e).__name__}: {str(e)[:200]}; check that the "
                                   f"URI points at an MLflow tracking server") from None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise MlflowStoreError(f"{where} answered something that is not JSON ({len(raw)} bytes); check that "
                                   f"the URI points at an MLflow tracking server (not a proxy login page or "
                                   f"another web app)") from None
        if not isinstance(data, dict):
            raise MlflowStoreError(f"{where} answered JSON that is not an object ({type(data).__name__}); check "
                                   f"that the URI points at an MLflow tracking server")
        return data

    def _read_capped(self, resp: Any, where: str, deadline: float) -> bytes:
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_response_bytes:
            raise self._too_large(where)
        chunks: list[bytes] = []
        total = 0
        read = getattr(resp, "read1", resp.read)  # what has arrived: a trickle cannot hold a read past the deadline
        while True:
            chunk = read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > self.max_response_bytes:
                raise self._too_large(where)
            if self._clock() > deadline:
                raise MlflowStoreError(f"{where} was still sending its answer after {self.timeout * 3:g} s; "
                                       f"check the server's load and the network, or raise {ENV_TIMEOUT}")
            chunks.append(chunk)

    def _too_large(self, where: str) -> MlflowStoreError:
        return MlflowStoreError(f"{where} answered more than {self.max_response_bytes >> 20} MB in one response, "
                                f"so it was not read; check that the URI points at an MLflow tracking server")

    def _http_error(self, e: urllib.error.HTTPError, where: str) -> MlflowStoreError:
        code = e.code
        detail = ""
        try:
            body = e.read(4096)
            msg = json.loads(body).get("message") if body else None
            if isinstance(msg, str):
                detail = f" ({_clip(msg)})"
        except Exception:  # noqa: BLE001 - the body is only decoration
            pass
        if code == 401:
            what = (f"was refused: 401 unauthorized with {self.auth}; check that credential" if self.auth else
                    f"was refused: 401 unauthorized (no credentials were sent); set {ENV_TOKEN}, or "
                    f"{ENV_USER} and {ENV_PASSWORD}")
        elif code == 403:
            what = (f"was refused: 403 forbidden{detail}; check that the account has read permission on the "
                    f"experiments (and, for a server on another host, its --allowed-hosts setting)")
        elif code == 404:
            what = (f"answered 404 not found{detail}; check that the URI is the tracking server's base address "
                    f"(with its path prefix, if any) and that the server is MLflow 2 or later")
        elif 300 <= code < 400:
            loc = _safe(e.headers.get("Location", "") or "")
            what = (f"answered a redirect ({code}) to {loc or 'another address'}, which is not followed (it would "
                    f"send the credentials there); set the URI to the address it redirects to")
        elif code >= 500:
            what = f"failed on the server: {code}{detail}; check the tracking server's log, or try again"
        else:
            what = f"was refused: {code}{detail}; check the URI and the server version"
        return MlflowStoreError(f"{where} {what}")

    def _bad(self, endpoint: str, what: str) -> MlflowStoreError:
        return MlflowStoreError(f"{self.label}{API}{endpoint} answered JSON that is not MLflow's: {what}; check "
                                f"that the URI points at an MLflow tracking server")

    def _record(self, r: Any, endpoint: str) -> MlflowRunRecord:
        r = _obj(r, "a run", self, endpoint)
        info = _obj(r.get("info", {}), "a run's info", self, endpoint)
        data = _obj(r.get("data", {}), "a run's data", self, endpoint)
        run_id = _str(info.get("run_id") or info.get("run_uuid"), "run_id", self, endpoint)
        params = _pairs(data.get("params", []), "params", self, endpoint)
        tags = _pairs(data.get("tags", []), "tags", self, endpoint)
        latest: dict[str, MlflowMetricPoint] = {}
        for m in _list(data.get("metrics", []), "metrics", self, endpoint):
            m = _obj(m, "a metric", self, endpoint)
            latest[_str(m.get("key"), "metric key", self, endpoint)] = MlflowMetricPoint(
                step=_int(m.get("step", 0), "step", self, endpoint),
                timestamp_ms=_int(m.get("timestamp", 0), "timestamp", self, endpoint),
                value=_float(m.get("value"), "value", self, endpoint))
        end = info.get("end_time")
        start = info.get("start_time")
        return MlflowRunRecord(
            run_id=run_id,
            experiment_id=_str(info.get("experiment_id", ""), "experiment_id", self, endpoint),
            name=_str(info.get("run_name") or tags.get("mlflow.runName", ""), "run_name", self, endpoint),
            status=_str(info.get("status", "RUNNING"), "status", self, endpoint),
            start_time_ms=None if start is None else _int(start, "start_time", self, endpoint),
            end_time_ms=None if end is None else _int(end, "end_time", self, endpoint),
            lifecycle_stage=_str(info.get("lifecycle_stage", "active"), "lifecycle_stage", self, endpoint),
            user_id=_str(info.get("user_id", ""), "user_id", self, endpoint),
            params=params, tags=tags, latest=latest, store=self.label)


# -- validation of what the server sent ------------------------------------------------------

def _obj(v: Any, what: str, s: RestStore, ep: str) -> dict:
    if not isinstance(v, dict):
        raise s._bad(ep, f"{what} is a {type(v).__name__}, not an object")
    return v


def _list(v: Any, what: str, s: RestStore, ep: str) -> list:
    if not isinstance(v, list):
        raise s._bad(ep, f"{what} is a {type(v).__name__}, not a list")
    return v


def _str(v: Any, what: str, s: RestStore, ep: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):  # ids may come as numbers
        return str(v)
    raise s._bad(ep, f"{what} is a {type(v).__name__}, not a string")


def _int(v: Any, what: str, s: RestStore, ep: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit() and len(v) < 40:  # int64 as a JSON string
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise s._bad(ep, f"{what} {_clip(repr(v))} is not an integer")


_SPECIAL = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}


def _float(v: Any, what: str, s: RestStore, ep: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):  # NaN / Infinity come as strings; numbers may too
        low = v.strip().lower()
        if low in _SPECIAL:
            return _SPECIAL[low]
        if len(v) < 64:
            try:
                return float(v)
            except ValueError:
                pass
    raise s._bad(ep, f"{what} {_clip(repr(v))} is not a number")


def _pairs(v: Any, what: str, s: RestStore, ep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in _list(v, what, s, ep):
        p = _obj(p, f"an entry of {what}", s, ep)
        out[_str(p.get("key"), f"a key of {what}", s, ep)] = _str(p.get("value", ""), f"a value of {what}", s, ep)
    return out


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


def _reason(reason: Any, timeout: float) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no connection within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"the TLS certificate was not accepted ({_clip(str(reason.verify_message or reason))})"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({_clip(str(reason))})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return _clip(str(reason))


def _hint(reason: Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "check that the tracking server is running and the host and port are right"
    if isinstance(reason, socket.gaierror):
        return "check the host name in the URI"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (f"set {ENV_CA} to the server's CA bundle, or {ENV_INSECURE}=true to skip the check on a trusted "
                f"network")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"check the host, the port and any firewall, or raise {ENV_TIMEOUT}"
    return "check the URI and that the tracking server is reachable from this machine"


def server_stores(settings: Any) -> tuple[list[RestStore], list[str]]:
    """The configured tracking servers as stores, and one problem sentence per URI that cannot be
    used (a bad URI or timeout setting)."""
    stores: list[RestStore] = []
    problems: list[str] = []
    for uri in getattr(settings, "mlflow_servers", []):
        try:
            budget = int(getattr(settings, "cache_mb", 0) * (1 << 20) / 24) or CACHE_POINTS
            stores.append(RestStore(uri, env=getattr(settings, "env", None) or None,
                                    cache_points=min(CACHE_POINTS, budget)))
        except MlflowStoreError as e:
            problems.append(str(e))
    return stores, problems
