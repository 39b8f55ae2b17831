"""Small inline-SVG charts for the HTML report: no plotting library, no network, no script.

Every function returns one ``<svg>`` element as text (explicit ``width``/``height`` and ``viewBox``, a
``<title>`` for screen readers) that the report inlines in its page; matplotlib stays a dev-only
dependency and ``moeplan report`` works on a plain ``pip install -e .``. The charts are the few the
report needs: grouped bars, lines and points with reference lines, a heatmap and horizontal range bars.

>>> svg = bar_chart(["a", "b"], {"GB": [1.0, 2.0]}, title="memory", ylabel="GB")
>>> svg.startswith("<svg") and svg.count("<rect") >= 2
True
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

__all__ = ["PALETTE", "bar_chart", "line_chart", "heatmap", "range_bars", "nice_ticks"]

#: colour-blind-safe series colours (Okabe-Ito)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

_W, _H = 640, 320
_M = dict(left=64, right=16, top=34, bottom=64)


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.3g}M"
    if a >= 1e4:
        return f"{x / 1e3:.3g}k"
    if a >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``.

    >>> nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step)
    return [k * step for k in range(first, first + int(math.ceil((hi - first * step) / step - 1e-9)) + 1)]


class _Frame:
    """Plot area and the linear maps from data to pixels."""

    def __init__(self, x_range, y_range, width=_W, height=_H):
        self.w, self.h = width, height
        self.x0, self.x1 = _M["left"], width - _M["right"]
        self.y0, self.y1 = height - _M["bottom"], _M["top"]
        self.xlo, self.xhi = x_range
        self.ylo, self.yhi = y_range

    def x(self, v: float) -> float:
        return self.x0 + (v - self.xlo) / ((self.xhi - self.xlo) or 1.0) * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        return self.y0 - (v - self.ylo) / ((self.yhi - self.ylo) or 1.0) * (self.y0 - self.y1)


def _open(width: float, height: float, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" class="fig">',
            f"<title>{escape(title)}</title>",
            f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
            f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="14" font-weight="600">{escape(title)}</text>']


def _axes(f: _Frame, xlabel: str, ylabel: str, yticks: Sequence[float], xticks=None) -> list[str]:
    out = [f'<line x1="{f.x0}" y1="{f.y0}" x2="{f.x1}" y2="{f.y0}" stroke="#333"/>',
           f'<line x1="{f.x0}" y1="{f.y0}" x2="{f.x0}" y2="{f.y1}" stroke="#333"/>']
    for t in yticks:
        y = f.y(t)
        out.append(f'<line x1="{f.x0}" y1="{y:.1f}" x2="{f.x1}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{f.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_fmt(t)}</text>')
    xticks = list(xticks or [])
    tilt = len(xticks) > 3 and max(len(str(label)) for _, label in xticks) * len(xticks) > 60
    for t, label in xticks:
        x = f.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{f.y0}" x2="{x:.1f}" y2="{f.y0 + 4}" stroke="#333"/>')
        if tilt:  # long category names: slanted so they do not overlap
            out.append(f'<text x="{x:.1f}" y="{f.y0 + 12}" text-anchor="end" font-size="10" '
                       f'transform="rotate(-20 {x:.1f} {f.y0 + 12})">{escape(str(label))}</text>')
        else:
            out.append(f'<text x="{x:.1f}" y="{f.y0 + 16}" text-anchor="middle" font-size="11">{escape(str(label))}</text>')
    out.append(f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{f.h - 10}" text-anchor="middle" font-size="12">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{(f.y0 + f.y1) / 2:.1f}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {(f.y0 + f.y1) / 2:.1f})">{escape(ylabel)}</text>')
    return out


def _legend(names: Sequence[str], width: float) -> list[str]:
    out, x = [], width - _M["right"] - 8
    for i, name in reversed(list(enumerate(names))):
        x -= 12 + 7 * len(name)
        out.append(f'<rect x="{x:.0f}" y="{_M["top"] - 4}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 13:.0f}" y="{_M["top"] + 5}" font-size="11">{escape(name)}</text>')
    return out


def _hline(f: _Frame, y: float, label: str) -> list[str]:
    py = f.y(y)
    return [f'<line x1="{f.x0}" y1="{py:.1f}" x2="{f.x1}" y2="{py:.1f}" stroke="#D55E00" stroke-dasharray="6 4" stroke-width="1.5"/>',
            f'<text x="{f.x1 - 4}" y="{py - 5:.1f}" text-anchor="end" font-size="11" fill="#D55E00">{escape(label)}</text>']


def bar_chart(categories: Sequence[str], series: dict[str, Sequence[float]], *, title: str, ylabel: str,
              xlabel: str = "", hline: tuple[float, str] | None = None, width: int = _W, height: int = _H) -> str:
    """Grouped vertical bars: one group per category, one bar per series; an optional dashed reference line."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    top = max(values + ([hline[0]] if hline else []) + [0.0])
    ticks = nice_ticks(0.0, top or 1.0)
    f = _Frame((0, max(1, len(categories))), (0.0, ticks[-1]), width, height)
    step = len(categories) > 24 and math.ceil(len(categories) / 24) or 1
    out = _open(width, height, title)
    out += _axes(f, xlabel, ylabel, ticks, [(i + 0.5, c) for i, c in enumerate(categories) if i % step == 0])
    group = (f.x1 - f.x0) / max(1, len(categories))
    bar = group * 0.8 / max(1, len(series))
    for j, (name, vs) in enumerate(series.items()):
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                continue
            x = f.x0 + i * group + group * 0.1 + j * bar
            out.append(f'<rect x="{x:.1f}" y="{f.y(v):.1f}" width="{max(bar - 1, 1):.1f}" height="{f.y0 - f.y(v):.1f}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(categories[i])} {escape(name)}: {v:.4g}</title></rect>')
    if hline:
        out += _hline(f, *hline)
    if len(series) > 1:
        out += _legend(list(series), width)
    return "\n".join(out + ["</svg>"])


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str, xlabel: str, ylabel: str,
               hline: tuple[float, str] | None = None, vline: tuple[float, str] | None = None,
               points_only: Sequence[str] = (), highlight: tuple[float, float, str] | None = None,
               y_from_zero: bool = True, width: int = _W, height: int = _H) -> str:
    """Lines with markers (``points_only`` series: markers alone), optional reference lines and one starred point."""
    xs = [x for s in series.values() for x in s[0]] + ([vline[0]] if vline else [])
    ys = [y for s in series.values() for y in s[1] if math.isfinite(y)] + ([hline[0]] if hline else [])
    lo = 0.0 if y_from_zero else min(ys, default=0.0)
    yt = nice_ticks(min(lo, min(ys, default=0.0)), max(ys, default=1.0))
    xt = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    f = _Frame((xt[0], xt[-1]), (yt[0], yt[-1]), width, height)
    out = _open(width, height, title) + _axes(f, xlabel, ylabel, yt, [(t, _fmt(t)) for t in xt])
    for j, (name, (sx, sy)) in enumerate(series.items()):
        colour = PALETTE[j % len(PALETTE)]
        pts = [(f.x(x), f.y(y)) for x, y in zip(sx, sy) if math.isfinite(y)]
        if name not in points_only and len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (px, py), x, y in zip(pts, sx, sy):
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"><title>{escape(name)}: '
                       f'{x:.4g}, {y:.4g}</title></circle>')
    if hline:
        out += _hline(f, *hline)
    if vline:
        px = f.x(vline[0])
        out += [f'<line x1="{px:.1f}" y1="{f.y0}" x2="{px:.1f}" y2="{f.y1}" stroke="#555" stroke-dasharray="3 3"/>',
                f'<text x="{px + 4:.1f}" y="{f.y1 + 12}" font-size="11" fill="#555">{escape(vline[1])}</text>']
    if highlight:
        hx, hy, label = highlight
        out += [f'<circle cx="{f.x(hx):.1f}" cy="{f.y(hy):.1f}" r="8" fill="none" stroke="#000" stroke-width="2"/>',
                f'<text x="{f.x(hx) + 10:.1f}" y="{f.y(hy) - 8:.1f}" font-size="11">{escape(label)}</text>']
    if len(series) > 1:
        out += _legend(list(series), width)
    return "\n".join(out + ["</svg>"])


def _shade(v: float) -> str:
    """White (0) to dark blue (1), via Okabe-Ito blue; values are clipped to [0, 1]."""
    v = min(1.0, max(0.0, v))
    r, g, b = (int(255 + (c - 255) * v) for c in (0, 60, 140))
    return f"rgb({r},{g},{b})"


def heatmap(matrix: Sequence[Sequence[float]], *, title: str, xlabel: str, ylabel: str,
            row_labels: Sequence[str] | None = None, vmax: float | None = None, width: int = _W, height: int = _H) -> str:
    """Cells shaded by value / ``vmax`` (default the matrix's maximum), with a colour bar."""
    rows = [list(r) for r in matrix]
    nr, nc = len(rows), max((len(r) for r in rows), default=0)
    top = vmax if vmax else max((v for r in rows for v in r), default=1.0) or 1.0
    f = _Frame((0, max(nc, 1)), (0, max(nr, 1)), width - 50, height)
    cw, ch = (f.x1 - f.x0) / max(nc, 1), (f.y0 - f.y1) / max(nr, 1)
    out = _open(width, height, title)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            out.append(f'<rect x="{f.x0 + j * cw:.2f}" y="{f.y1 + i * ch:.2f}" width="{cw + 0.3:.2f}" height="{ch + 0.3:.2f}" '
                       f'fill="{_shade(v / top)}"><title>{escape(row_labels[i] if row_labels else str(i))}, {j}: {v:.4g}</title></rect>')
    step = max(1, math.ceil(nr / 12))
    for i in range(0, nr, step):
        label = row_labels[i] if row_labels else str(i)
        out.append(f'<text x="{f.x0 - 6}" y="{f.y1 + (i + 0.5) * ch + 4:.1f}" text-anchor="end" font-size="10">{escape(label)}</text>')
    cstep = max(1, math.ceil(nc / 16))
    for j in range(0, nc, cstep):
        out.append(f'<text x="{f.x0 + (j + 0.5) * cw:.1f}" y="{f.y0 + 14}" text-anchor="middle" font-size="10">{j}</text>')
    out.append(f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{height - 12}" text-anchor="middle" font-size="12">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{(f.y0 + f.y1) / 2:.1f}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {(f.y0 + f.y1) / 2:.1f})">{escape(ylabel)}</text>')
    bx = width - 40
    for k in range(20):
        out.append(f'<rect x="{bx}" y="{f.y0 - (k + 1) * (f.y0 - f.y1) / 20:.1f}" width="12" '
                   f'height="{(f.y0 - f.y1) / 20 + 0.5:.1f}" fill="{_shade((k + 0.5) / 20)}"/>')
    out.append(f'<text x="{bx + 6}" y="{f.y1 - 4}" text-anchor="middle" font-size="10">{_fmt(top)}</text>')
    out.append(f'<text x="{bx + 6}" y="{f.y0 + 12}" text-anchor="middle" font-size="10">0</text>')
    return "\n".join(out + ["</svg>"])


def range_bars(rows: Sequence[tuple[str, float, float, float, str]], *, title: str, xlabel: str, x_max: float,
               width: int = _W, height: int | None = None) -> str:
    """Horizontal bars ``(label, start, stop, shade in [0, 1], note)``: e.g. the layers each node holds,
    shaded by its flow / capacity, the note printed right of the bar."""
    height = height or int(_M["top"] + _M["bottom"] + 18 * max(1, len(rows)))
    f = _Frame((0.0, x_max), (0, max(1, len(rows))), width, height)
    f.x0 = 150
    out = _open(width, height, title)
    ticks = nice_ticks(0.0, x_max)
    out += _axes(f, xlabel, "", [], [(t, _fmt(t)) for t in ticks if t <= x_max])
    ch = (f.y0 - f.y1) / max(1, len(rows))
    for i, (label, start, stop, shade, note) in enumerate(rows):
        y = f.y1 + i * ch
        out.append(f'<text x="{f.x0 - 6}" y="{y + ch / 2 + 4:.1f}" text-anchor="end" font-size="10">{escape(label)}</text>')
        out.append(f'<rect x="{f.x(start):.1f}" y="{y + 2:.1f}" width="{max(1.0, f.x(stop) - f.x(start)):.1f}" '
                   f'height="{max(ch - 4, 2):.1f}" fill="{_shade(0.25 + 0.75 * shade)}" stroke="#333" stroke-width="0.5">'
                   f"<title>{escape(label)}: {start:g}-{stop:g} {escape(note)}</title></rect>")
        if note:
            out.append(f'<text x="{min(f.x(stop) + 4, f.x1 - 4):.1f}" y="{y + ch / 2 + 4:.1f}" font-size="10" '
                       f'text-anchor="{"start" if f.x(stop) + 80 < f.x1 else "end"}">{escape(note)}</text>')
    return "\n".join(out + ["</svg>"])
