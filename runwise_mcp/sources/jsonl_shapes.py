"""Fast decoding of JSON-lines metric logs whose lines share a shape.

A training loop writes the same object again and again: the same keys in the same order, with
only the numbers changing (``{"step": 12, "loss": 2.31, "lr": 0.0003, "split": "train"}``). The
first line of a shape is decoded with ``json.loads``; from it a *template* is made: one regex for
the whole line, with the key texts and separators literal and a group for every number and
string value. A block of lines (4 MiB) that is all of the current shape is matched with one
``findall`` (the count of matches equal to the count of lines proves it; a match never spans a
line); a mixed block with ``finditer``, lines between matches going to the other shapes and to
``json.loads``. Number groups become columns with ``float``/``int`` over a whole column at once,
and the values go into the History in bulk (no dict, no item list per row).

Correctness first: the template only matches a line that ``json.loads`` decodes to the same keys,
in the same order, with the same values:

* numbers are matched by the JSON grammar (``-?(0|[1-9]d*)(.d+)?([eE][-+]?d+)?``, ``NaN``,
  ``Infinity``, ``-Infinity``), so anything JSON rejects (``01``, ``1.``, ``.5``) does not match.
  An integer of more than 18 digits (past float's exact range, or past 64 bits, which the History
  keeps as text) does not match; nor does ``-0`` (the integer zero, which float() would read as
  -0.0): a block with ``-0`` text in it is matched by a slower pattern that leaves it out;
* strings are matched only when plain printable ASCII (no backslash escape, no control
  character, no non-ASCII byte);
* ``true``/``false``/``null`` are literal in the template (a line with another one is another shape);
* nested values, leading blanks, duplicate keys: no template; those lines use ``json.loads``.

Every line that does not match a template exactly goes through ``json.loads`` and the caller's
row path, so the result is the same as decoding every line with ``json.loads``.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable
from itertools import chain, islice
from operator import le
from typing import Any

from .filebase import RowBuilder, as_step, coerce

# the JSON number grammar with an integer part of at most 18 digits (exact as a float, inside 64
# bits); it also takes -0, the integer zero that float() would read as -0.0: a block holding
# NEG_ZERO text is matched with the slower NUM, which leaves -0 out
FAST_NUM = rb"(-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|-?Infinity)"
NEG_ZERO = re.compile(rb"-0[,} \t\r]")
NUM = rb"(-?[1-9][0-9]{0,17}(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|-?0(?:\.[0-9]+)?[eE][-+]?[0-9]+|-?0\.[0-9]+|0" \
      rb"|NaN|-?Infinity)"
STR = rb'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"'
MAX_TEMPLATES = 32
MAX_KEYS = 256
OTHERS = 4  # templates tried on a line the current one does not match (the most used in the last block)
SKIP_BLOCKS = 4  # a block less than half matched: this many json.loads-only blocks (doubling, up to 64)
MAX_TRIES = 256  # lines a template was tried for and could not be made (then: json.loads only)
_SEPARATORS = ((b", ", b": "), (b",", b":"), (rb"[ \t]*,[ \t]*", rb"[ \t]*:[ \t]*"))
_LITERAL = {True: b"true", False: b"false", None: b"null"}

NUMK, STRK, CONSTK = 0, 1, 2


class Template:
    __slots__ = ("fast", "fields", "hits", "keys", "rx", "step_group")

    def __init__(self, rx: re.Pattern, fast: re.Pattern, fields: list[tuple[str, int, Any]],
                 step_group: int) -> None:
        self.rx = rx  # numbers by NUM
        self.fast = fast  # numbers by FAST_NUM (for blocks without NEG_ZERO text)
        self.fields = fields  # (key, kind, group index or constant), step key excluded
        self.step_group = step_group
        self.keys = {k for k, _, _ in fields}
        self.hits = 0


def _number(tok: bytes) -> float | int:
    return int(tok) if tok.lstrip(b"-").isdigit() else float(tok)


def make_template(line: bytes, obj: dict[str, Any], step_key: str) -> Template | None:
    """A template for lines shaped like ``line`` (which ``json.loads`` decoded to ``obj``), or None."""
    if step_key not in obj or len(obj) > MAX_KEYS:
        return None
    for ensure_ascii in (True, False):
        for comma, colon in _SEPARATORS:
            parts = [rb"^\{"]
            fields: list[tuple[str, int, Any]] = []
            step_group = -1
            group = 0
            for i, (k, v) in enumerate(obj.items()):
                if i:
                    parts.append(comma)
                parts.append(re.escape(json.dumps(k, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")))
                parts.append(colon)
                if v is None or v.__class__ is bool:
                    if k == step_key:
                        return None
                    parts.append(_LITERAL[v])
                    fields.append((k, CONSTK, v))
                    continue
                if v.__class__ is str:
                    parts.append(STR)
                    kind = STRK
                elif v.__class__ in (int, float):
                    parts.append(None)  # type: ignore[arg-type]
                    kind = NUMK
                else:
                    return None  # nested: no template
                if k == step_key:
                    if kind != NUMK:
                        return None
                    step_group = group
                else:
                    fields.append((k, kind, group))
                group += 1
            parts.append(rb"\}\r?$")
            try:
                rx = re.compile(b"".join(NUM if x is None else x for x in parts), re.M)
                fast = re.compile(b"".join(FAST_NUM if x is None else x for x in parts), re.M)
            except (re.error, OverflowError, RecursionError):
                return None
            m = rx.match(line)
            if m is None or m.end() != len(line.rstrip(b"\n")):
                continue
            tpl = Template(rx, fast, fields, step_group)
            if not fields or not _same(_decoded(tpl, m.groups(), step_key), obj):
                return None
            return tpl
    return None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same keys in the same order with the same values and types (NaN equal to NaN)."""
    if list(a) != list(b):
        return False
    for k, x in a.items():
        y = b[k]
        if x.__class__ is not y.__class__:
            return False
        if x != y and not (x.__class__ is float and x != x and y != y):
            return False
    return True


def _decoded(tpl: Template, groups: tuple[bytes, ...], step_key: str) -> dict[str, Any]:
    out: dict[str, Any] = {step_key: _number(groups[tpl.step_group])}
    for k, kind, g in tpl.fields:
        out[k] = g if kind == CONSTK else (_number(groups[g]) if kind == NUMK else groups[g].decode("ascii"))
    return out


class ShapeDecoder:
    """Decodes blocks of complete lines into a :class:`RowBuilder`; ``slow(lines)`` handles the
    lines no template matches (``json.loads`` and the caller's per-row path)."""

    def __init__(self, rb: RowBuilder, step_key: str, slow: Callable[[list[bytes]], None],
                 get_last_step: Callable[[], int | None], set_last_step: Callable[[int], None]) -> None:
        self.rb = rb
        self.step_key = step_key
        self.slow_lines = slow
        self.get_last_step = get_last_step
        self.set_last_step = set_last_step
        self.templates: list[Template] = []
        self.current: Template | None = None
        self.tries = 0
        self.fast_rows = 0
        self.whole = False  # the last block matched the current template on every line
        self.others: list[Template] = []  # the templates tried on lines the current one does not match
        self.gap_hits = 0
        self.skip = 0  # blocks to decode with json.loads only (after blocks the shapes did not cover)
        self.misses = 0
        self.strict = True  # the block has NEG_ZERO text: templates match numbers by NUM

    # ---- learning ------------------------------------------------------------------------------
    def learn(self, line: bytes, obj: dict[str, Any]) -> None:
        """Called by the slow path for a line ``json.loads`` decoded to a dict."""
        if len(self.templates) >= MAX_TEMPLATES or self.tries >= MAX_TRIES:
            return
        tpl = make_template(line, obj, self.step_key)
        if tpl is None:
            self.tries += 1
            return
        self.templates.append(tpl)
        if self.current is None:
            self.current = tpl
            self.whole = True  # try the whole-block pass on the next block
        elif len(self.others) < OTHERS:
            self.others.append(tpl)

    # ---- decoding ------------------------------------------------------------------------------
    def feed(self, block: bytes) -> None:
        """Decode ``block`` (complete lines, ending with a newline) in file order."""
        if self.skip:  # shapes matched too few lines lately: json.loads for a while
            self.skip -= 1
            self.slow_lines(block.split(b"\n")[:-1])
            return
        tpl = self.current
        if tpl is None:  # no shape known yet: a few lines through json.loads, then templates
            cut = -1
            for _ in range(16):
                cut = block.find(b"\n", cut + 1)
                if cut < 0:
                    break
            if cut < 0 or cut + 1 == len(block):
                self._gap(block.split(b"\n")[:-1])
                self._choose()
                return
            self._gap(block[: cut + 1].split(b"\n")[:-1])
            if self.current is None and self.tries >= MAX_TRIES:
                self._gap(block[cut + 1:].split(b"\n")[:-1])
                return
            self.feed(block[cut + 1:])
            return
        self.strict = NEG_ZERO.search(block) is not None
        rx = tpl.rx if self.strict else tpl.fast
        if self.whole and rx.groups > 1:
            # the last block was all this shape: one findall pass, taken when every line matched
            # (a match never spans lines)
            rows = rx.findall(block)
            if len(rows) == block.count(b"\n"):
                self._flush(tpl, rows)
                return
        expect = 0
        hits = 0
        self.gap_hits = 0
        batch: list[tuple[bytes, ...]] = []
        append = batch.append
        for m in rx.finditer(block):
            start = m.start()
            if start != expect:
                if batch:
                    self._flush(tpl, batch)
                    batch = []
                    append = batch.append
                self._gap(block[expect:start].split(b"\n")[:-1])
            append(m.groups())
            expect = m.end() + 1
            hits += 1
        if batch:
            self._flush(tpl, batch)
        if expect < len(block):
            self._gap(block[expect:].split(b"\n")[:-1])
        tpl.hits += hits
        lines = block.count(b"\n")
        self.whole = expect == len(block) and hits == lines
        if 2 * (hits + self.gap_hits) < lines:  # mostly lines of no (known) shape: back off
            self.misses += 1
            self.skip = min(SKIP_BLOCKS << (self.misses - 1), 64)
        else:
            self.misses = 0
        self._choose()

    def _choose(self) -> None:
        if self.templates:
            ranked = sorted(self.templates, key=lambda t: -t.hits)
            if ranked[0].hits:
                self.current = ranked[0]
            self.others = [t for t in ranked if t is not self.current][:OTHERS]
            for t in self.templates:
                t.hits = 0

    def _gap(self, lines: list[bytes]) -> None:
        """Lines the current template did not match: the other templates, one line at a time,
        else json.loads (runs of lines of one kind are handled together, in file order)."""
        others = self.others
        pending: list[bytes] = []
        run_t: Template | None = None
        run: list[tuple[bytes, ...]] = []
        for line in lines:
            for t in others:
                m = (t.rx if self.strict else t.fast).match(line)
                if m is not None:
                    if pending:
                        self.slow_lines(pending)
                        pending = []
                    if t is not run_t:
                        if run:
                            self._run(run_t, run)  # type: ignore[arg-type]
                        run_t, run = t, []
                    run.append(m.groups())
                    t.hits += 1
                    self.gap_hits += 1
                    break
            else:
                if run:
                    self._run(run_t, run)  # type: ignore[arg-type]
                    run_t, run = None, []
                pending.append(line)
        if run:
            self._run(run_t, run)  # type: ignore[arg-type]
        if pending:
            self.slow_lines(pending)

    def _run(self, tpl: Template, batch: list[tuple[bytes, ...]]) -> None:
        """A run of lines of one template: in bulk, or one row by the row path (cheaper)."""
        if len(batch) == 1:
            self._rows(tpl, batch)
            self.fast_rows += 1
        else:
            self._flush(tpl, batch)

    def _convert(self, tpl: Template, batch: list[tuple[bytes, ...]]) -> tuple[array, dict[int, Any]] | None:
        """The steps (int), the number columns (float) and the text columns of ``batch``; None
        when a step is not an integer."""
        k = len(batch[0])
        flat = list(chain.from_iterable(batch))
        try:
            steps = array("q", map(int, flat[tpl.step_group::k]))
        except ValueError:
            return None
        return steps, {g: array("d", map(float, flat[g::k])) if kind == NUMK else flat[g::k]
                       for _, kind, g in tpl.fields if kind != CONSTK}

    def _flush(self, tpl: Template, batch: list[tuple[bytes, ...]]) -> None:
        """Rows of one template into the History, in bulk where the steps allow it."""
        conv = self._convert(tpl, batch)
        if conv is None:  # a step written as 12.0, 1e3, NaN: row by row
            self._rows(tpl, batch)
            return
        steps, nums = conv
        rb = self.rb
        h = rb.h
        i = 0  # leading rows that merge into the previous row or are dropped: by the row path
        while i < len(steps) and h.steps and (steps[i] < h.steps[-1] or (
                steps[i] == h.steps[-1] and not (tpl.keys & rb.last_keys))):
            self._rows(tpl, batch[i:i + 1])
            i += 1
        if i:
            if i == len(steps):
                return
            batch, steps = batch[i:], steps[i:]
            nums = {g: a[i:] for g, a in nums.items()}
        if len(steps) > 1 and not all(map(le, steps, islice(steps, 1, None))):  # a step going back: row by row
            self._rows(tpl, batch)
            return
        n = len(steps)
        row0 = len(h.steps)
        h.steps.extend(steps)
        for k, kind, g in tpl.fields:
            if kind == NUMK:
                if k in h.columns or h.admit(k):
                    h.column(k).extend(row0, steps, nums[g])
            elif kind == STRK:
                col = nums[g]
                values = {u: coerce(u.decode("ascii")) for u in set(col)}
                if all(v.__class__ is str for v in values.values()):
                    h.extend_other(k, steps, values[col[-1]], row0)
                elif all(v.__class__ is float for v in values.values()):
                    if k in h.columns or h.admit(k):
                        h.column(k).extend(row0, steps, array("d", [values[u] for u in col]))
                else:
                    for i in range(n):
                        h.add_items(row0 + i, steps[i], [(k, values[col[i]])])
            elif g is None:
                h.extend_other(k, steps, None, row0)
            elif k in h.columns or h.admit(k):  # true/false: numbers, as History stores bools
                h.column(k).extend(row0, steps, array("d", [float(g)]) * n)
        rb.last_keys = set(tpl.keys)
        self.set_last_step(steps[-1])
        self.fast_rows += n

    def _rows(self, tpl: Template, batch: list[tuple[bytes, ...]]) -> None:
        """Row by row through the RowBuilder (the same path as a json.loads-decoded line)."""
        for groups in batch:
            step = as_step(_number(groups[tpl.step_group]))
            if step is None:
                step = self.get_last_step()
                if step is None:
                    continue
            self.set_last_step(step)
            items = []
            for k, kind, g in tpl.fields:
                if kind == CONSTK:
                    items.append((k, g))
                elif kind == NUMK:
                    items.append((k, _number(groups[g])))
                else:
                    items.append((k, coerce(groups[g].decode("ascii"))))
            self.rb.add(step, items)
