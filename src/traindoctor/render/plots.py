"""Inline SVG line plots for the HTML report: no matplotlib, no JavaScript, nothing fetched.

Raw values are never changed. Only the *drawing* of a long series is reduced: each pixel column
keeps its minimum and its maximum, in the order they occurred, so a one-step spike stays visible
(the min/max decimation used by oscilloscopes and by plotting libraries such as Bokeh's datashader).
Every piece of text that comes from a log is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

__all__ = ["Line", "line_plot", "decimate", "nice_ticks", "PALETTE"]

# Colour-blind-safe (Okabe & Ito 2008); train blue, val orange, test green.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
SPLIT_COLOURS = {"train": PALETTE[0], "val": PALETTE[1], "test": PALETTE[2]}


@dataclass(frozen=True)
class Line:
    name: str
    x: np.ndarray
    y: np.ndarray
    colour: str = PALETTE[0]
    dashed: bool = False


def decimate(x: np.ndarray, y: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~2 points per pixel column (its min and max, in step order). Finite input only."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size <= 2 * columns or x.size == 0:
        return x, y
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo or 1.0
    col = np.minimum(((x - lo) / span * columns).astype(np.int64), columns - 1)
    order = np.argsort(col, kind="stable")
    col_s = col[order]
    starts = np.flatnonzero(np.r_[True, col_s[1:] != col_s[:-1]])
    keep = []
    for a, b in zip(starts, np.r_[starts[1:], col_s.size]):
        idx = order[a:b]
        i_min = idx[np.argmin(y[idx])]
        i_max = idx[np.argmax(y[idx])]
        keep.extend(sorted({int(idx[0]), int(i_min), int(i_max), int(idx[-1])}))
    keep = np.array(sorted(set(keep)))
    return x[keep], y[keep]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (Heckbert 1990, 'Nice numbers for graph labels')."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2g}"
    return f"{v:.4g}"


def line_plot(
    lines: Sequence[Line],
    *,
    title: str = "",
    xlabel: str = "step",
    shade: tuple[float, float] | None = None,
    marks: Sequence[tuple[float, str]] = (),
    points: Sequence[tuple[float, float, str]] = (),
    width: int = 860,
    height: int = 280,
) -> str:
    """An SVG chart of `lines`. `shade` = (x0, x1) window; `marks` = vertical lines with labels;
    `points` = (x, y, label) dots (the best epoch). Non-finite values break the line and are
    marked with a red triangle at the top edge."""
    ml, mr, mt, mb = 62, 14, 28, 40
    pw, ph = width - ml - mr, height - mt - mb
    finite = [(ln, np.isfinite(ln.x) & np.isfinite(ln.y)) for ln in lines]
    xs = [ln.x[m] for ln, m in finite if m.any()]
    ys = [ln.y[m] for ln, m in finite if m.any()]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{escape(title)}</title>",
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    if title:
        parts.append(f'<text x="{ml}" y="17" class="pt">{escape(title)}</text>')
    if not xs:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="pl">'
                     "no finite values to draw</text></svg>")
        return "".join(parts)
    x_lo = float(min(a.min() for a in xs))
    x_hi = float(max(a.max() for a in xs))
    y_all = np.concatenate(ys + [np.array([p[1] for p in points if math.isfinite(p[1])], dtype=float)])
    y_lo, y_hi = float(y_all.min()), float(y_all.max())
    # a log axis when a positive series spans more than two decades (losses often do)
    log = y_lo > 0 and y_hi / y_lo > 100
    fy = np.log10 if log else (lambda v: np.asarray(v, dtype=float))
    ty_lo, ty_hi = float(fy(y_lo)), float(fy(y_hi))
    if ty_hi == ty_lo:
        pad = abs(ty_lo) * 0.05 or 1.0
        ty_lo, ty_hi = ty_lo - pad, ty_hi + pad
    else:
        pad = (ty_hi - ty_lo) * 0.05
        ty_lo, ty_hi = ty_lo - pad, ty_hi + pad
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1

    def px(v):
        return ml + (np.asarray(v, dtype=float) - x_lo) / (x_hi - x_lo) * pw

    def py(v):
        return mt + ph - (fy(np.asarray(v, dtype=float)) - ty_lo) / (ty_hi - ty_lo) * ph

    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fbfbfd" stroke="#c8c8d0"/>')
    if shade is not None and all(isinstance(v, (int, float)) and math.isfinite(v) for v in shade):
        a, b = sorted(float(v) for v in shade)
        a, b = max(a, x_lo), min(b, x_hi)
        if b >= a:
            x0, x1 = float(px(a)), float(px(b))
            parts.append(f'<rect class="shade" x="{x0:.1f}" y="{mt}" width="{max(x1 - x0, 2):.1f}" '
                         f'height="{ph}" fill="#d62728" fill-opacity="0.10"/>')
    # grid and ticks
    for t in nice_ticks(x_lo, x_hi, 6):
        X = float(px(t))
        parts.append(f'<line x1="{X:.1f}" y1="{mt}" x2="{X:.1f}" y2="{mt + ph}" stroke="#ececf0"/>'
                     f'<text x="{X:.1f}" y="{mt + ph + 15}" text-anchor="middle" class="tk">{_label(t)}</text>')
    if log:
        decades = range(math.floor(ty_lo), math.ceil(ty_hi) + 1)
        mult = (1, 2, 5) if ty_hi - ty_lo < 4 else (1,)
        yt = [m * 10.0 ** k for k in decades for m in mult if ty_lo <= math.log10(m * 10.0 ** k) <= ty_hi]
    else:
        yt = nice_ticks(ty_lo, ty_hi, 5)
    for t in yt:
        Y = float(py(t))
        parts.append(f'<line x1="{ml}" y1="{Y:.1f}" x2="{ml + pw}" y2="{Y:.1f}" stroke="#ececf0"/>'
                     f'<text x="{ml - 6}" y="{Y + 4:.1f}" text-anchor="end" class="tk">{_label(t)}</text>')
    parts.append(f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle" class="pl">'
                 f"{escape(xlabel)}{' (log y)' if log else ''}</text>")
    for x, label in marks:
        if math.isfinite(x) and x_lo <= x <= x_hi:
            X = float(px(x))
            parts.append(f'<line x1="{X:.1f}" y1="{mt}" x2="{X:.1f}" y2="{mt + ph}" stroke="#444" '
                         f'stroke-dasharray="4 3"/><text x="{X + 4:.1f}" y="{mt + 12}" class="tk">'
                         f"{escape(label)}</text>")
    # the series
    legend_x = ml + pw
    for ln, mask in finite:
        dash = ' stroke-dasharray="6 3"' if ln.dashed else ""
        # split into runs of finite points so a NaN leaves a gap instead of a false line
        idx = np.flatnonzero(mask)
        if idx.size:
            breaks = np.flatnonzero(np.diff(idx) > 1) + 1
            for seg in np.split(idx, breaks):
                sx, sy = decimate(ln.x[seg], ln.y[seg], pw)
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(sx), py(sy)))
                if sx.size == 1:
                    parts.append(f'<circle cx="{float(px(sx[0])):.1f}" cy="{float(py(sy[0])):.1f}" r="2.5" '
                                 f'fill="{ln.colour}"/>')
                else:
                    parts.append(f'<polyline class="series" fill="none" stroke="{ln.colour}" '
                                 f'stroke-width="1.6"{dash} points="{pts}"/>')
        bad = np.flatnonzero(~np.isfinite(ln.y) & np.isfinite(ln.x))
        for j in bad[:50]:
            X = float(px(ln.x[j]))
            parts.append(f'<path d="M{X - 4:.1f},{mt} L{X + 4:.1f},{mt} L{X:.1f},{mt + 7} Z" fill="#d62728">'
                         f"<title>{escape(ln.name)}: {escape(str(ln.y[j]))} at {_label(float(ln.x[j]))}"
                         "</title></path>")
        # legend, right-aligned in the title row
        label = escape(ln.name)
        lw = 7 * len(ln.name) + 26
        legend_x -= lw
        parts.append(f'<line x1="{legend_x:.0f}" y1="13" x2="{legend_x + 16:.0f}" y2="13" stroke="{ln.colour}" '
                     f'stroke-width="2.5"{dash}/><text x="{legend_x + 20:.0f}" y="17" class="tk">{label}</text>')
    for x, y, label in points:
        if math.isfinite(x) and math.isfinite(y):
            X, Y = float(px(x)), float(py(y))
            parts.append(f'<circle class="best" cx="{X:.1f}" cy="{Y:.1f}" r="5" fill="none" stroke="#d62728" '
                         f'stroke-width="2"/><text x="{X + 7:.1f}" y="{Y - 7:.1f}" class="bl">'
                         f"{escape(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)
