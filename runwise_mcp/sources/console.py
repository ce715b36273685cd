"""Console logs (``output.log`` and friends) as a metric source, with no per-project regexes.

The parser works line by line, each ``\\r`` segment being one progress-bar redraw:

1. ANSI codes are dropped; a leading timestamp / logger prefix is skipped.
2. ``{...}`` lines are JSON or Python dicts (HF Trainer); numeric strings count as numbers.
3. Other lines: an x anchor is looked for (``step``/``iter``/``global_step`` keys, a leading
   ``Step N``/``iter N:``/``Epoch N``, bracket counters ``[n/N]``, tqdm ``n/total``, Keras
   ``Epoch N/M`` headers), then fields split on ``|``, `` - ``, ``, ``, tabs and runs of spaces
   give ``key: value``, ``key=value`` and ``key value`` pairs (multi-word keys become
   ``snake_case``), with ``%`` values stored as fractions and ``1.23 (1.30)`` running averages
   reduced to the value.
4. A line without an x anchor is used only if it is a validation line (``Val (set) | ...``,
   ``eval ...``) or a dict: it attaches to the last step seen.

Numbers followed by ``:``, ``/``, ``-`` or another digit group (times, dates, paths, versions) are
never values. Lines are cached by their shape (the line with its numbers blanked): a shape seen
before is parsed again by position only, which is what makes a million-line log affordable.
"""

from __future__ import annotations

import ast
import json
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..confine import file_key as confine_file_key
from ..confine import open_read
from ..model import STEP_LIMIT, History

try:  # the regex parser, to check [console] patterns for nested repeats
    from re import _constants as _sre_constants
    from re import _parser as _sre_parse
except ImportError:  # Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_REPEATS = {getattr(_sre_constants, n) for n in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
            if hasattr(_sre_constants, n)}
_MAXREPEAT = _sre_constants.MAXREPEAT
_SUBPATTERN = _sre_constants.SUBPATTERN
_BRANCH = _sre_constants.BRANCH
_ASSERTS = {_sre_constants.ASSERT, _sre_constants.ASSERT_NOT}
_ATOMIC = getattr(_sre_constants, "ATOMIC_GROUP", object())
_GROUPREF_EXISTS = _sre_constants.GROUPREF_EXISTS

# the end of a tqdm bar: "[elapsed<remaining, rate]" ("[00:01<00:02, 3.21it/s, loss=0.5]"), or
# "[elapsed, rate]" without a total; text right after it is another writer's line glued to the
# bar's last redraw (a logging line to the same stream, HF Trainer's {'loss': ...} dict)
_TQDM_END = re.compile(r"\[(?:\d+:)?\d\d:\d\d(?:<(?:(?:\d+:)?\d\d:\d\d|\?))?, *(?:[\d.?]+ ?[a-zA-Z]*(?:it|B)/s|"
                       r"[\d.?]+ ?s/(?:it|[a-zA-Z]*B))[^\]\n]{0,200}\]")


def split_glued(seg: str) -> list[str]:
    """A ``\\r`` segment that is a tqdm bar with another line glued after it, as two segments."""
    m = None
    for m in _TQDM_END.finditer(seg):
        pass
    if m is None or not seg[m.end():].strip():
        return [seg]
    return [seg[: m.end()], seg[m.end():]]


NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM = re.compile(NUM)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")
_PREFIXES = [re.compile(p) for p in (
    r"^\[?\d{2,4}[-/]\d{1,2}[-/]\d{1,4}[ T_]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\]?",
    r"^\[?\d{1,2}[/-]\d{1,2}[ T]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:\s+[\w.]+)?\]?:?",  # [04/05 01:30:24 d2.x]:
    r"^\[?\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\]?",
    r"^\s*[-|:]?\s*(?:[\w.]+\s*-\s*)?(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s*(?:-|:|\|)\s*",
    r"^\s*(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:",  # logging's default format
    r"^\s*\[(?:rank|RANK)\s*\d+\]:?",
)]
_PREFIX_ANY = re.compile("|".join(f"(?:{p.pattern.lstrip('^')})" for p in _PREFIXES).join(("^(?:", ")")))
_LEAD = re.compile(
    r"^\s*(?:(step|global[ _]step|iter|iteration|it|update|updates|batch|epoch)\s*[:#]?\s*\[?\s*(\d+)"
    r"(?:\s*/\s*(\d+))?\s*\]?\s*[:|,\-]?)(?=\s|$)", re.IGNORECASE)
_BRACKETS = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*(?:\(\s*\d+%\s*\))?\s*\]")
_EPOCH_IN = re.compile(r"\bepoch\s*(?:\(\w+\))?\s*[:#]?\s*\[?\s*(\d+)\s*\]?", re.I)
_TQDM = re.compile(r"(?<!\d)(?:(\d+)%\|[^|]*\|\s*)?(\d+)/(\d+)\s*\[[^\]]*?(?:,\s*([\d.]+)\s*(it/s|s/it))?(?:,\s*(.*))?\]")
_KERAS_BAR = re.compile(r"^\s*(\d+)/(\d+)\s+(?:━+|\[[=>.]+\]|-)")
_KERAS_EPOCH = re.compile(r"^\s*Epoch\s+(\d+)/(\d+)\s*$")
_VAL_HEAD = re.compile(r"^\s*(val|valid|validation|eval|evaluation|test|testing|dev)\b\s*"
                       r"(?:\(([^)]*)\)|\[([^\]]*)\]|on\s+'?(\w+)'?\s+subset|(\w+)\s*(?=[|:]))?", re.I)
_KV = re.compile(  # used with match() at the positions _KEY_START finds, never with search()
    r"(?P<key>[A-Za-z_][\w./\-]*(?: [A-Za-z_][\w./\-]*){0,3}?)\s*(?:[:=]|\s)\s*"
    r"(?P<val>" + NUM + r"|nan|NaN|inf|-inf|Inf)(?P<pct>%)?(?P<unit>ms|s|sec|it/s|/s|x|M|K|k|G|B)?"
    r"(?:\s*\(\s*" + NUM + r"%?\s*\))?(?![\w:/.\-]|\.\d)")
# The first letter of each run of key characters: the only place a _KV match can start (a
# later letter of the run ends the key at the same place, so it fails wherever the first fails).
_KEY_START = re.compile(r"(?<![\w./\-])[\w./\-]*?[A-Za-z_]")
# A separator that begins with blanks starts only at the first blank of a run, for the same reason.
_SPLIT = re.compile(r"(?:(?<!\s)\s+)?\|\s*|(?<!\s)\s+-\s+|,\s+|\t+|;\s*|(?<![:=\s])\s{2,}")
_FILEISH = re.compile(r"\.(py|cpp|cc|c|h|hpp|java|js|ts|rs|go|log|txt|json|ya?ml|sh|cu)$", re.I)
STEP_KEYS = ("global_step", "step", "iteration", "iter", "num_updates", "updates", "trainer/global_step", "it")
DROP_KEYS = {"eta", "v_num", "elapsed", "remaining", "pid", "version", "ver", "rank", "local_rank", "world_size",
             "seed", "date", "time_stamp", "timestamp"}
ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception|Interrupt)\b|\bERROR\b|"
                        r"CUDA out of memory|Killed|Segmentation fault|core dumped", re.I)
_NAN_WORD = re.compile(r"\bnan\b", re.I)
WARN_LINE = re.compile(r"\bwarn(ing)?\b", re.I)
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (.+)$')


def is_error_line(text: str) -> bool:
    """A console line that reports an error: a traceback, an exception, ERROR, CUDA OOM, a crash,
    or a NaN loss (the word nan and "loss" on one line; tested apart, since a regex
    ``nan.*loss|loss.*nan`` rescans the rest of the line from every "nan" and every "loss")."""
    return bool(ERROR_LINE.search(text) or ("loss" in text.lower() and _NAN_WORD.search(text)))


def norm_key(key: str) -> str:
    k = key.strip().strip(":=").strip()
    k = re.sub(r"\s+", "_", k)
    return k.lower()


@dataclass
class Parsed:
    """What one console segment says: an x anchor and (key, value) pairs."""

    x: int | None = None  # explicit step/iteration
    epoch: float | None = None
    total: int | None = None  # planned total of the x counter, when printed (n/N)
    attach: bool = False  # no x of its own: belongs to the last step (validation, eval dicts)
    items: list[tuple[str, float]] = field(default_factory=list)
    percent: set[str] = field(default_factory=set)
    rate: float | None = None  # it/s printed by a progress bar
    keras_epoch: tuple[int, int] | None = None
    is_dict: bool = False


def _number(text: str) -> float | None:
    t = text.strip().lower()
    if t in ("nan", "-nan"):
        return float("nan")
    if t in ("inf", "+inf", "infinity"):
        return float("inf")
    if t in ("-inf", "-infinity"):
        return float("-inf")
    try:
        return float(t.rstrip("%"))
    except ValueError:
        return None


_LEVELS = ("INFO", "WARN", "DEBUG", "ERROR", "CRITICAL")


def strip_prefix(line: str) -> str:
    head = line.lstrip()[:1]
    if not (head.isdigit() or head in "[-|:" or any(lv in line[:80] for lv in _LEVELS)):
        return line
    for _ in range(3):
        m = _PREFIX_ANY.match(line)
        if not m or not m.end():
            break
        line = line[m.end():].lstrip(" -|:")
    return line


def parse_dict(text: str) -> dict[str, Any] | None:
    try:
        v = json.loads(text)
    except (ValueError, RecursionError):
        try:
            v = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return None
    return v if isinstance(v, dict) else None


def parse_segment(seg: str, patterns: list[re.Pattern] | None = None) -> Parsed | None:
    """Parse one line or redraw (ANSI already removed). None when it holds no metric."""
    line = strip_prefix(seg).strip().lstrip("| ")
    if not line or not any(c.isdigit() for c in line) and "nan" not in line.lower():
        return None
    p = Parsed()
    for rx in patterns or ():
        m = rx.search(line, 0, PATTERN_INPUT)  # a user's regex sees a bounded line (backtracking)
        if m:
            for k, v in m.groupdict().items():
                num = _number(v) if v is not None else None
                if num is None:
                    continue
                if k in ("step", "x"):
                    p.x = int(num)
                else:
                    p.items.append((k, num))
            if p.items:
                p.attach = p.x is None
                return p
    if line.startswith("{") and line.endswith("}"):
        d = parse_dict(line)
        if d is None:
            return None
        for k, v in d.items():
            if isinstance(v, bool):
                continue
            num = v if isinstance(v, (int, float)) else (_number(v) if isinstance(v, str) else None)
            if num is None:
                continue
            key = norm_key(str(k))
            if key in STEP_KEYS and num == num:
                p.x = int(num)
            elif key == "epoch":
                p.epoch = float(num)
                p.items.append(("epoch", float(num)))
            elif key not in DROP_KEYS:
                p.items.append((str(k), float(num)))
                if isinstance(v, str) and v.strip().endswith("%"):
                    p.items[-1] = (str(k), float(num) / 100)
                    p.percent.add(str(k))
        p.is_dict = True
        if p.x is None:
            p.attach = True
        return p if p.items or p.x is not None else None
    m = _KERAS_EPOCH.match(line)
    if m:
        p.keras_epoch = (int(m.group(1)), int(m.group(2)))
        return p
    rest = line
    prefix = ""
    m = _VAL_HEAD.match(rest)
    if m and (m.end() < len(rest)):
        name = next((g for g in m.groups()[1:] if g), "")
        head = m.group(1).lower()
        head = "val" if head in ("valid", "validation", "dev") else ("eval" if head == "evaluation" else head)
        head = "test" if head == "testing" else head
        tail = rest[m.end():]
        if tail.lstrip().startswith(("|", ":", "-")) or name:
            prefix = f"{head}_{norm_key(re.sub(r'[^A-Za-z0-9_ ]', ' ', name))}/" if name else f"{head}/"
            rest = tail.lstrip(" |:-")
    m = _KERAS_BAR.match(rest)
    if m:
        p.x = None
        p.total = int(m.group(2))
        p.items.append(("__batch", float(m.group(1))))
        rest = rest[m.end():]
    # a bar ends with "]": searching only up to the last one keeps the search linear (a start
    # with no "]" after it would scan to the end of the line, and so would every later start)
    close = rest.rfind("]")
    m = _TQDM.search(rest, 0, close + 1) if close > 0 else None
    if m and m.group(3):
        n, total = int(m.group(2)), int(m.group(3))
        lead = rest[: m.start()]
        e = _EPOCH_IN.search(lead)
        if e:
            p.epoch = float(e.group(1))
            p.x = int(e.group(1)) * total + n
        else:
            p.x, p.total = n, total
        if m.group(4):
            r = float(m.group(4))
            p.rate = r if m.group(5) == "it/s" else (1 / r if r else None)
        rest = m.group(6) or ""
    if p.x is None:
        m = _LEAD.match(rest)
        if m:
            word = m.group(1).lower().replace(" ", "_")
            if word == "epoch":
                p.epoch = float(m.group(2))
            else:
                p.x = int(m.group(2))
                if m.group(3):
                    p.total = int(m.group(3))
            rest = rest[m.end():]
    if p.x is None:
        b = _BRACKETS.search(rest)
        if b:
            e = _EPOCH_IN.search(rest[: b.start()]) or re.search(r"^\s*\w+:\s*(\d+)\s*$", rest[: b.start()])
            n, total = int(b.group(1)), int(b.group(2))
            if e:
                p.epoch = float(e.group(1))
                p.x = int(e.group(1)) * total + n
            else:
                p.x, p.total = n, total
            rest = rest[: (e.start() if e else b.start())] + " " + rest[b.end():]
    if p.epoch is None:
        e = _EPOCH_IN.match(rest.strip())
        if e:
            p.epoch = float(e.group(1))
            rest = rest.strip()[e.end():]
    _fields(rest, prefix, p)
    for i, (k, v) in enumerate(p.items):
        if k in STEP_KEYS and p.x is None and v == v:
            p.x = int(v)
    p.items = [(k, v) for k, v in p.items if k not in STEP_KEYS and k not in DROP_KEYS]
    if p.epoch is not None and not any(k == "epoch" for k, _ in p.items):
        p.items.append(("epoch", p.epoch))
    if p.x is None:
        if prefix and p.items:
            p.attach = True
        elif p.epoch is None and not any(k == "__batch" for k, _ in p.items):
            return None  # no anchor: config dumps, "number of parameters: 10.65M"
    if not p.items and p.x is None:
        return None
    return p


def _fields(text: str, prefix: str, p: Parsed) -> None:
    for fld in _SPLIT.split(text):
        fld = fld.strip()
        if not fld or not any(c.isdigit() for c in fld) and "nan" not in fld.lower() and "inf" not in fld.lower():
            continue
        label = ""
        lm = re.match(r"^([A-Za-z][\w ]{0,30}?):\s+(?=[A-Za-z]\w*\s*=)", fld)  # "Pos: N=7% M=9%"
        if lm:
            label = norm_key(lm.group(1)) + "_"
            fld = fld[lm.end():]
        for m in _kv_matches(fld):
            key = m.group("key").strip()
            if not key or _FILEISH.search(key) or key[-1] in "./-":
                continue
            v = _number(m.group("val"))
            if v is None:
                continue
            name = prefix + label + norm_key(key)
            if m.group("pct"):
                v /= 100
                p.percent.add(name)
            p.items.append((name, v))


def _kv_matches(text: str):
    """What ``_KV.finditer(text)`` finds, in linear time: a match is tried only where a key can
    start (``_KEY_START``), so a long word is scanned once, not once per letter."""
    pos, end = 0, len(text)
    while pos < end:
        s = _KEY_START.search(text, pos)
        if s is None:
            return
        m = _KV.match(text, s.end() - 1)
        if m is None:
            pos = s.end()
            continue
        yield m
        pos = m.end()


@dataclass
class _Plan:
    items: list[tuple[str, int, float]]  # (key, index of the number, scale)
    x: int | tuple[int, int] | None  # index of the step, or (batches, n) of epoch * batches + n
    epoch: int | None
    total: int | None
    percent: set[str]
    attach: bool
    is_dict: bool
    rate: tuple[int, bool] | None = None  # (index, inverted: s/it)


def _make_plan(rest: str, parsed: Parsed) -> _Plan | bool:
    """How ``parsed`` follows from the numbers of ``rest`` by position; True when it does not
    (values computed from several numbers, NaN, redraw rates, Keras headers...)."""
    if parsed.keras_epoch is not None:
        return True
    toks = list(_NUM.finditer(rest))
    if not toks or len(toks) > 200:
        return True
    pieces, last = [], 0
    cand: dict[float, tuple[int, float]] = {}
    for k, m in enumerate(toks):
        text = m.group()
        sign = text[0] if text[0] in "+-" else ""
        mant, e, exp = text.lstrip("+-").lower().partition("e")
        probe = f"{sign}{7_000_001 + k}" + (".5" if "." in mant else "") + (f"e{exp}" if e else "")
        pieces.append(rest[last:m.start()])
        pieces.append(probe)
        last = m.end()
        v = float(probe)
        for value, scale in ((v, 1.0), (v / 100, 0.01)):
            cand.setdefault(value, (k, scale))
        cand.setdefault(float(int(v)), (k, 1.0))
    pieces.append(rest[last:])
    q = parse_segment("".join(pieces))
    if q is None or len(q.items) != len(parsed.items) or q.attach != parsed.attach:
        return True
    items = []
    for (key, v), (key2, _v2) in zip(q.items, parsed.items):
        if key != key2 or v not in cand:
            return True
        k, scale = cand[v]
        items.append((key, k, scale))

    def where(v: float | None) -> int | None | bool:
        if v is None:
            return None
        hit = cand.get(float(v))
        return hit[0] if hit and hit[1] == 1.0 else False

    x, epoch, total = where(q.x), where(q.epoch), where(q.total)
    if x is False and isinstance(epoch, int):  # x = epoch * batches + n (tqdm/bracket counters)
        ints = [(k, int(float(m.group()))) for k, m in enumerate(toks)]
        e = int(q.epoch)
        x = next(((kt, kn) for kt, vt in ints for kn, vn in ints if kt != kn and e * vt + vn == q.x), False)
    rate: tuple[int, bool] | None = None
    if q.rate is not None:
        hit = cand.get(q.rate)
        inv = cand.get(1 / q.rate) if q.rate else None
        rate = (hit[0], False) if hit and hit[1] == 1.0 else ((inv[0], True) if inv and inv[1] == 1.0 else None)
        if rate is None:
            return True
    if x is False or epoch is False or total is False:
        return True
    return _Plan(items, x, epoch, total, set(parsed.percent), parsed.attach, parsed.is_dict, rate)


# ---- a console file read incrementally --------------------------------------------------------------


TAIL_LINES = 2000
MAX_PARSE = 8 << 10  # characters of one line (of one \r redraw) that are parsed; a longer one is cut and counted


def cap_line(seg: str, limit: int = MAX_PARSE) -> str:
    """The first ``limit`` characters of a long line, without a word the cut splits (a number
    cut in two would be read as another number)."""
    head = seg[:limit]
    if len(seg) > limit and not seg[limit].isspace():
        cut = head.rfind(" ")
        if cut > 0:
            head = head[:cut]
    return head


class ConsoleHistory:
    """Parsed metrics of one console stream, fed line by line; rows merge redraws of one step."""

    def __init__(self, patterns: list[re.Pattern] | None = None) -> None:
        self.history = History()
        self.percent: set[str] = set()
        self.patterns = patterns or []
        self.cur_x: int | None = None
        self.row: dict[str, float] = {}
        self.last_x: int | None = None  # the last step seen (validation lines attach to it)
        self.synthetic = 0  # dict lines without a step counted as steps
        self.seen_steps = False  # an explicit step/iteration was printed
        self.keras: tuple[int, int] | None = None
        self.total: int | None = None
        self.rate: float | None = None
        self.lines = 0  # lines parsed
        self.used = 0  # lines that gave values
        self.capped = 0  # lines longer than MAX_PARSE, parsed only up to it
        self.bad_rows = 0  # lines skipped: a step or counter that is not a 64-bit integer
        self._shapes: dict[str, tuple] = {}

    def feed(self, raw: str) -> None:
        self.lines += 1
        if "\x1b" in raw:
            raw = _ANSI.sub("", raw)
        segs = raw.split("\r") if "\r" in raw else (raw,)
        if "it]" in raw or "it/s" in raw or "s/it" in raw:  # a log line glued to a tqdm bar's last redraw
            segs = [part for seg in segs for part in split_glued(seg)]
        capped = False
        for seg in segs:
            if len(seg) > MAX_PARSE:
                seg, capped = cap_line(seg), True
            if seg.strip():
                try:
                    p = self._parse(seg)
                    if p is not None:
                        self._apply(p)
                except (ValueError, OverflowError):  # int() of 5,000 digits, of an infinite step...
                    self.bad_rows += 1
        self.capped += capped

    def _parse(self, seg: str) -> Parsed | None:
        """parse_segment, memoised by the line's shape: a shape seen before is re-parsed by
        number position only (the plan maps each output value to the index of the number it
        came from, found by parsing a probe line whose numbers are unique)."""
        if self.patterns:
            return parse_segment(seg, self.patterns)
        rest = strip_prefix(seg)
        shape = _NUM.sub("#", rest)
        plan = self._shapes.get(shape)
        if plan is None:
            p = parse_segment(rest)
            plan = _make_plan(rest, p) if p is not None else False
            if len(self._shapes) > 4096:
                self._shapes.clear()
            self._shapes[shape] = plan
            return p
        if plan is False:
            return None
        if plan is True:  # not expressible by position: parse in full
            return parse_segment(rest)
        nums = _NUM.findall(rest)
        p = Parsed(percent=plan.percent, attach=plan.attach, is_dict=plan.is_dict)
        p.items = [(k, float(nums[i]) * sc) for k, i, sc in plan.items]
        if isinstance(plan.x, tuple):
            p.x = int(float(nums[plan.epoch])) * int(float(nums[plan.x[0]])) + int(float(nums[plan.x[1]]))
        elif plan.x is not None:
            p.x = int(float(nums[plan.x]))
        if plan.rate is not None:
            r = float(nums[plan.rate[0]])
            p.rate = (1 / r if r else None) if plan.rate[1] else r
        if plan.epoch is not None:
            p.epoch = float(nums[plan.epoch])
        if plan.total is not None:
            p.total = int(float(nums[plan.total]))
        return p

    def _apply(self, p: Parsed) -> None:
        if p.total is not None and not 0 < p.total < STEP_LIMIT:
            p.total = None  # a planned total past 64 bits is no plan
        if p.keras_epoch is not None:
            self.keras = p.keras_epoch
            return
        x = p.x
        batch = next((v for k, v in p.items if k == "__batch"), None)
        if x is None and batch is not None and p.total:
            epoch, epochs = self.keras or (1, 1)
            x = (epoch - 1) * p.total + int(batch)
            self.total = epochs * p.total if epochs * p.total < STEP_LIMIT else None
            if self.keras:
                p.items.append(("epoch", float(epoch)))
        p.items = [(k, v) for k, v in p.items if k != "__batch"]
        if x is None and p.attach:
            evaluation = any(k.lower().startswith(("eval", "val", "test")) for k, _ in p.items)
            if p.is_dict and not evaluation:  # a train dict without a step (HF Trainer): count them
                self.synthetic += 1
                x = self.synthetic
            else:
                x = self.last_x if self.last_x is not None else 0
        if x is None and p.epoch is not None:
            x = self.last_x if self.seen_steps and self.last_x is not None else int(p.epoch)
        if x is None or not p.items:
            return
        if not -STEP_LIMIT <= x < STEP_LIMIT:  # a step past 64 bits: the row is skipped and counted
            self.bad_rows += 1
            return
        if p.x is not None:
            self.seen_steps = True
        if p.total and p.x is not None:
            self.total = p.total
        if p.rate is not None:
            self.rate = p.rate
        if x != self.cur_x:
            self._flush()
            self.cur_x = x
        for k, v in p.items:
            self.row[k] = v
        self.percent |= p.percent
        self.last_x = x
        self.used += 1

    def _flush(self) -> None:
        if self.cur_x is not None and self.row:
            self.history.add_row(self.cur_x, list(self.row.items()))
        self.row = {}

    def snapshot(self) -> History:
        """The history including the row still being filled (a live bar's latest state); the
        row stays open, so later redraws of the same step still merge into... a new row."""
        self._flush()
        return self.history


class ConsoleFile:
    """``output.log`` parsed incrementally: new bytes are parsed on ``update()``; the last
    ``TAIL_LINES`` lines are kept raw (``\\r`` redraws collapsed) with their end offsets.

    A last line without its newline yet (the writer is mid-line) is neither parsed nor shown:
    its bytes are held in ``partial`` and the next ``update()`` reads on after them, so the line
    is parsed once, whole, when its newline arrives. ``offset`` is the end of the last complete
    line (what tail_run cursors count)."""

    MAX_LINE = 1 << 16

    def __init__(self, path: str, patterns: list[re.Pattern] | None = None) -> None:
        self.path = path
        self.patterns = patterns
        self.reset()

    def reset(self) -> None:
        self.parsed = ConsoleHistory(self.patterns)
        self.offset = 0
        self.partial = b""  # the incomplete last line read so far (its last MAX_LINE bytes)
        self.pending = 0  # bytes of that line read so far (read on from offset + pending)
        self.tail: deque[tuple[int, str]] = deque(maxlen=TAIL_LINES)  # (end offset, line)
        self.key: tuple[int, int] | None = None
        self.start_offset = 0  # 0: parsed from the start; else only the tail was read

    def update(self, key: tuple[int, int] | None, tail_only: int = 0) -> bool:
        """Read what was appended since the last call. ``tail_only``: on a first read, parse only
        the last that many bytes (for a quick look at a huge log)."""
        if key == self.key:
            return False
        if key is None:
            self.reset()
            return True
        if self.key is not None and key[0] < self.offset + self.pending:  # rewritten or truncated: start over
            self.reset()
        self.key = key
        with open_read(self.path) as f:
            if self.offset == 0 and tail_only and key[0] > tail_only:
                self.offset = key[0] - tail_only
                self.start_offset = self.offset
                f.seek(self.offset)
                chunk = f.read(tail_only)
                nl = chunk.find(b"\n")
                chunk = chunk[nl + 1:] if nl >= 0 else b""
                self.offset = key[0] - len(chunk)
                self.start_offset = self.offset
                self._consume(chunk, final=False)
            else:
                f.seek(self.offset + self.pending)  # after the incomplete line's bytes already held
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    self._consume(chunk, final=False)
        return True

    def _consume(self, chunk: bytes, final: bool) -> None:
        data = self.partial + chunk
        lines = data.split(b"\n")
        cut = self.pending - len(self.partial)  # bytes of the held line dropped by the cut below
        self.partial = lines.pop()
        if lines:
            self.pending = len(self.partial)
        else:  # still no newline: the held line grew
            self.pending += len(chunk)
        if len(self.partial) > self.MAX_LINE:  # a runaway line without newline: cut it
            self.partial = self.partial[-self.MAX_LINE:]
        pos = self.offset
        feed = self.parsed.feed
        tail = self.tail
        for raw in lines:
            pos += len(raw) + 1 + cut
            cut = 0
            text = raw[-self.MAX_LINE:].decode("utf-8", "replace")
            feed(text)
            if "\r" in text:
                text = text.rstrip("\r")
                text = text[text.rfind("\r") + 1:]
            tail.append((pos, _ANSI.sub("", text) if "\x1b" in text else text))
        self.offset = pos

    def history(self) -> History:
        return self.parsed.snapshot()


def parse_lines(lines: Iterable[str], patterns: list[re.Pattern] | None = None) -> ConsoleHistory:
    """Parse console text already split into lines (e.g. the .wandb console records)."""
    ch = ConsoleHistory(patterns)
    for ln in lines:
        ch.feed(ln)
    ch.snapshot()
    return ch


PATTERN_INPUT = 512  # characters of a line that [console] patterns are matched against (bounds backtracking)


def _nested_repeat(parsed: Any, inside: bool = False) -> bool:
    """Whether a parsed regex repeats without bound (``*``, ``+``, ``{n,}``) something that
    itself repeats without bound, like ``(a+)+`` or ``(\\w+\\s*)*``: such a regex can try
    exponentially many ways to split a line that does not match."""
    for op, av in parsed:
        if op in _REPEATS:
            _, hi, sub = av
            unbounded = hi == _MAXREPEAT
            if unbounded and inside:
                return True
            if _nested_repeat(sub, inside or unbounded):
                return True
        elif op is _SUBPATTERN:
            if _nested_repeat(av[-1], inside):
                return True
        elif op is _BRANCH:
            if any(_nested_repeat(b, inside) for b in av[1]):
                return True
        elif op in _ASSERTS:
            if _nested_repeat(av[1], inside):
                return True
        elif op is _ATOMIC:
            if _nested_repeat(av, inside):
                return True
        elif op is _GROUPREF_EXISTS:
            if any(b is not None and _nested_repeat(b, inside) for b in av[1:]):
                return True
    return False


def _shown(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 120 else pattern[:100] + "…")


def compile_patterns(raw: Any) -> tuple[list[re.Pattern], list[str]]:
    """Project patterns from the config: regexes with named groups (``step`` for the x axis,
    every other group a metric). A pattern that repeats a repeated group (``(a+)+``) is refused:
    it can backtrack exponentially; every pattern sees at most PATTERN_INPUT characters of a line."""
    out: list[re.Pattern] = []
    problems: list[str] = []
    if raw is None:
        return out, problems
    if not isinstance(raw, list):
        return out, ["[console] patterns must be a list of regular expressions"]
    for p in raw:
        if not isinstance(p, str):
            problems.append(f"console pattern {p!r} is not a string")
            continue
        try:
            rx = re.compile(p)
            nested = _nested_repeat(_sre_parse.parse(p))
        except (re.error, RecursionError, OverflowError) as e:
            problems.append(f"console pattern {_shown(p)} does not compile: {e}")
            continue
        if nested:
            problems.append(f"console pattern {_shown(p)} repeats a group that itself repeats (like (a+)+ or "
                            f"(\\w+\\s*)*), which can take exponential time on a line it does not match; "
                            f"write the group once, e.g. (a+) for (a+)+")
            continue
        if not rx.groupindex:
            problems.append(f"console pattern {_shown(p)} has no named group (?P<name>...)")
            continue
        out.append(rx)
    return out, problems


def file_key(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path`` opened the confined way (see ``confine.file_key``)."""
    return confine_file_key(path)


def last_traceback(lines: list[str]) -> tuple[str, list[tuple[str, str, str, str]]] | None:
    """The last Python traceback in console lines: its exception line ("" if cut off) and its
    frames as (file, line, function, code line); None when there is none."""
    start = max((i for i, x in enumerate(lines) if x.startswith("Traceback (most recent call last)")), default=-1)
    if start < 0:
        return None
    frames: list[tuple[str, str, str, str]] = []
    i = start + 1
    while i < len(lines):
        m = _FRAME.match(lines[i])
        if m:
            code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME.match(lines[i + 1]) else ""
            frames.append((m.group(1), m.group(2), m.group(3), code))
        elif lines[i].strip() and not lines[i].startswith((" ", "\t")):
            return lines[i].strip(), frames
        i += 1
    return "", frames
