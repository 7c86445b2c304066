"""The drawing kit of the report's plots: colours, one plot's geometry (``W`` × ``H`` with margins), tick
choice, the ``Axes`` transform and the ``<svg>`` wrapper with title and legend."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ...cohort import COHORT_NAMES
from .values import esc

__all__ = [
    "ALARM_COLOR",
    "CHAOS_COLOR",
    "COHORT_COLORS",
    "CONTROL_COLOR",
    "DRAW_ORDER",
    "MB",
    "MT",
    "PSI_COLOR",
    "P_COLOR",
    "WARN_COLOR",
    "Axes",
    "H",
    "duration_label",
    "linear_ticks",
    "nice_step",
    "no_data",
    "percent",
    "plot_svg",
    "pt",
    "tick_label",
]


CHAOS_COLOR = "#d6604d"
CONTROL_COLOR = "#4393c3"
COHORT_COLORS = dict(zip(COHORT_NAMES, (CHAOS_COLOR, CONTROL_COLOR), strict=True))
# Control is drawn first, so chaos lies on top where the two overlap.
DRAW_ORDER = COHORT_NAMES[::-1]
PSI_COLOR = "#762a83"
P_COLOR = "#1b7837"
WARN_COLOR = "#e08214"
ALARM_COLOR = "#b2182b"
GRID_COLOR = "#e5e5e5"
AXIS_COLOR = "#444444"

W, H = 560, 360
ML, MR, MT, MB = 66, 18, 70, 58  # margins: left, right, top, bottom


def pt(v: float) -> str:
    """A pixel coordinate as SVG text: a tenth of a pixel is finer than any screen shows."""
    return f"{v:.1f}"


def nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    step = nice_step(hi - lo, n)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def percent(v: float) -> str:
    return f"{round(v * 100, 6):g}%"


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e5:
        return f"{v:.0e}"
    return f"{v:.4g}"


class Axes:
    """A plot area inside an SVG of ``W`` × ``H``: data → pixel transforms and the drawing of axes."""

    def __init__(self, xlim: tuple[float, float], ylim: tuple[float, float], *, xlog: bool = False,
                 ylog: bool = False, top: float = MT, bottom: float = H - MB) -> None:
        self.x0, self.x1 = float(ML), float(W - MR)
        self.y0, self.y1 = bottom, top  # y0: the bottom pixel row of the area
        self.xlog, self.ylog = xlog, ylog
        self.xlim = (math.log10(xlim[0]), math.log10(xlim[1])) if xlog else xlim
        self.ylim = (math.log10(ylim[0]), math.log10(ylim[1])) if ylog else ylim
        self.parts: list[str] = []

    def x(self, v: float) -> float:
        t = math.log10(v) if self.xlog else v
        lo, hi = self.xlim
        return self.x0 + (t - lo) / ((hi - lo) or 1.0) * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        t = math.log10(v) if self.ylog else v
        lo, hi = self.ylim
        return self.y0 - (t - lo) / ((hi - lo) or 1.0) * (self.y0 - self.y1)

    def frame(self, xticks: Iterable[tuple[float, str]], yticks: Iterable[tuple[float, str]],
              xlabel: str, ylabel: str) -> None:
        p = self.parts
        for v, label in yticks:
            y = round(self.y(v)) + 0.5
            p.append(f'<line x1="{pt(self.x0)}" x2="{pt(self.x1)}" y1="{y}" y2="{y}" stroke="{GRID_COLOR}"/>')
            p.append(f'<text x="{pt(self.x0 - 6)}" y="{pt(y + 4)}" text-anchor="end" class="tick">{esc(label)}</text>')
        for v, label in xticks:
            x = round(self.x(v)) + 0.5
            p.append(f'<line x1="{x}" x2="{x}" y1="{pt(self.y1)}" y2="{pt(self.y0)}" stroke="{GRID_COLOR}"/>')
            p.append(f'<line x1="{x}" x2="{x}" y1="{pt(self.y0)}" y2="{pt(self.y0 + 5)}" stroke="{AXIS_COLOR}"/>')
            p.append(f'<text x="{x}" y="{pt(self.y0 + 18)}" text-anchor="middle" class="tick">{esc(label)}</text>')
        p.append(f'<path d="M{pt(self.x0)},{pt(self.y1)} V{pt(self.y0)} H{pt(self.x1)}" fill="none" '
                 f'stroke="{AXIS_COLOR}" shape-rendering="crispEdges"/>')
        if xlabel:
            p.append(f'<text x="{pt((self.x0 + self.x1) / 2)}" y="{pt(self.y0 + 38)}" text-anchor="middle" '
                     f'class="label">{esc(xlabel)}</text>')
        if ylabel:
            cy = (self.y0 + self.y1) / 2
            p.append(f'<text x="16" y="{pt(cy)}" text-anchor="middle" class="label" '
                     f'transform="rotate(-90 16 {pt(cy)})">{esc(ylabel)}</text>')

    def hline(self, v: float, color: str, label: str, *, below: bool = False) -> None:
        y = self.y(v)
        self.parts.append(f'<line x1="{pt(self.x0)}" x2="{pt(self.x1)}" y1="{pt(y)}" y2="{pt(y)}" '
                          f'stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>')
        # Below the line: at the left end, so two close levels do not write over each other.
        ty, tx, anchor = (y + 12, self.x0 + 4, "start") if below else (y - 4, self.x1 - 4, "end")
        self.parts.append(f'<text x="{pt(tx)}" y="{pt(ty)}" text-anchor="{anchor}" class="note" '
                          f'fill="{color}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{esc(label)}</text>')


def plot_svg(title: str, parts: Sequence[str], legend: Sequence[tuple[str, str]] = (), subtitle: str = "") -> str:
    out = [f'<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">',
           f"<title>{esc(title)}</title>",
           f'<text x="{ML}" y="20" class="title">{esc(title)}</text>']
    if subtitle:
        out.append(f'<text x="{ML}" y="36" class="note">{esc(subtitle)}</text>')
    # The legend: one row under the subtitle, left-aligned with the plot area.
    x = float(ML)
    for label, color in legend:
        out.append(f'<rect x="{pt(x)}" y="50" width="20" height="4" fill="{color}"/>')
        out.append(f'<text x="{pt(x + 26)}" y="56" class="legend">{esc(label)}</text>')
        x += 26 + 7.2 * len(label) + 22
    out.extend(parts)
    out.append("</svg>")
    return "\n".join(out)


def no_data(title: str, message: str) -> str:
    return plot_svg(title, [f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{H - MT - MB}" '
                        f'fill="#fafafa" stroke="{GRID_COLOR}"/>',
                        f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="note">{esc(message)}</text>'])


def duration_label(v: float) -> str:
    if v < 1:
        ms = v * 1000
        return f"{ms:g} ms" if ms >= 1 else f"{ms * 1000:g} µs"
    return f"{v:g} s"
