"""Draw a ``Plot`` as a 600×300 PNG with matplotlib (the optional extra runwise-mcp[plot]).

Imported only when a plot is asked for; the Agg backend draws without a display. The PNG carries
no date or version metadata, so the same data gives the same bytes."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)

from . import text as t  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
STYLES = ["-", "--", ":", "-."]
WIDTH, HEIGHT, DPI = 6.0, 3.0, 100  # 600×300 pixels


def _label(s: str, limit: int = 40) -> str:
    s = t.clean(s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def render_png(p) -> bytes:
    runs = list(dict.fromkeys(c.run for c in p.curves))
    keys = list(dict.fromkeys(c.key for c in p.curves))
    rc = {"text.parse_math": False, "text.usetex": False, "font.size": 7, "svg.hashsalt": "runwise",
          "path.simplify": True, "agg.path.chunksize": 10000}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
        ax = fig.add_axes((0.09, 0.13, 0.89, 0.8))
        ymax = None
        for c in p.curves:
            color = COLORS[runs.index(c.run) % len(COLORS)]
            style = STYLES[keys.index(c.key) % len(STYLES)]
            xs = [s for s, v in zip(c.steps, c.values) if v is not None and math.isfinite(v)
                  and (not p.log_y or v > 0)]
            ys = [v for v in c.values if v is not None and math.isfinite(v) and (not p.log_y or v > 0)]
            if ys:
                ymax = max(ys) if ymax is None else max(ymax, max(ys))
            name = " · ".join(x for x in ((_label(c.run) if len(runs) > 1 else ""),
                                          (_label(c.key) if len(keys) > 1 or len(runs) == 1 else "")) if x)
            ax.plot(xs, ys, style, color=color, linewidth=1.0, label=name)
            spikes = [(s, v) for s, v in c.spikes if not p.log_y or v > 0]
            if spikes:
                ax.plot([s for s, _ in spikes], [v for _, v in spikes], "^", color=color, markersize=5,
                        markerfacecolor="none")
            if c.best is not None and (not p.log_y or c.best[1] > 0):
                ax.plot([c.best[0]], [c.best[1]], "o", color=color, markersize=5)
            if c.first_nan is not None:
                ax.axvline(c.first_nan, color=color, linestyle=":", linewidth=1.0)
                ax.annotate("NaN", (c.first_nan, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -9),
                            textcoords="offset points", color=color, fontsize=7)
        if p.log_y:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        if len(keys) == 1:
            ax.set_ylabel(_label(keys[0]))
        ax.grid(True, linewidth=0.3, alpha=0.5)
        ax.set_title(_label(p.title, 56) + "   (● best, △ spike, dotted: first NaN)", fontsize=7, loc="left")
        if len(p.curves) > 1:
            ax.legend(fontsize=6, loc="best", frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
