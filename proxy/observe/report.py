"""The experiment report as one self-contained HTML page: inline CSS and inline SVG plots made here, no
scripts, no external fonts, images or stylesheets (it opens offline and can be mailed or attached).

``render_report(data)`` takes the JSON that ``GET /experiments/{name}/report`` returns; ``example_report()``
returns a realistic one. The shape (keys marked ``?`` may be absent; numbers may be null where unknown)::

    {
      "experiment": str,
      "generated_at": str,                  # ISO 8601, e.g. "2026-12-01T09:20:00Z"
      "state": str,                         # e.g. "running", "stopped", "tripped"
      "chaos_percent": float, "control_percent": float,   # the policy's shares, percent
      "window"?: {"max_n": int, "max_age_seconds": float},  # the sliding window of the drift statistics
      "cohorts": {
        "chaos" | "control": {
          "requests": int,                  # answered, every status class and dropped
          "errors": int,                    # 5xx + dropped
          "latency_seconds": {              # mlchaos_request_duration_seconds of the cohort
            "buckets": [[le, cumulative_count], ...],   # le ascending; the last is "+Inf" (JSON has no inf)
            "sum"?: float, "count"?: int},
          "faults"?: {fault_type: count}    # injected faults (chaos)
        }
      },
      "outputs": {                          # per model output (at most PredictionWindows.max_outputs)
        name: {
          "kind": "numeric" | "class" | "probability",
          "chaos" | "control": {
            "values": [float, ...],         # window sample, at most 2000: the values (numeric) or the
                                            # confidences, i.e. the largest probability (probability)
            "classes": {label: count},      # window counts (class; probability: argmax index "0", "1", ...)
            "seen"?: int},                  # predictions seen since the start
          "drift": null | {                 # DriftReport.to_dict(): null where a statistic does not apply
            "psi": float, "js": float,
            "ks": float|null, "ks_p": float|null, "wasserstein": float|null,   # numeric, probability
            "chi2": float|null, "chi2_p": float|null,                          # class
            "n_control": int, "n_chaos": int, "alarms": [str], "warnings": [str]},
          "alarms": [str, ...]              # statistics past their alarm level: "psi", "ks", "js", ...
        }
      },
      "drift_history": [                    # oldest first (DriftHistory.to_list())
        {"t": str, "output": str, "psi": float, "ks_p": float|null, "chi2_p"?: float|null,
         "js": float, "wasserstein"?: float|null}, ...],
      "srm": {"p_value": float, "mismatch": bool,
              "observed_share": {"chaos": float, "control": float},      # fractions of chaos + control
              "expected_share"?: {"chaos": float, "control": float}},
      "kill_switch": {...},                 # free-form JSON object, shown as a table
      "thresholds"?: {"psi_warn": .., "psi_alarm": .., "ks_p": .., "chi2_p": .., "js": .., "wasserstein": ..}
    }

Plots (one ``<svg>`` each): the latency CDF of both cohorts (log time axis, from the cumulative buckets);
per output, the chaos and control histograms overlaid (numeric values; confidences on [0, 1] for
probability outputs) or grouped bars of class shares; per output, drift over time (PSI with its warn and
alarm levels; the KS or chi-square p-value on a log axis with its level). Chaos is drawn in ``CHAOS_COLOR``,
control in ``CONTROL_COLOR``. Every string from the data is HTML-escaped: output names and class labels
come from model responses.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from .drift import DEFAULT_THRESHOLDS, compare_classes, compare_numeric
from .srm import srm_check

__all__ = ["CHAOS_COLOR", "CONTROL_COLOR", "example_report", "latency_quantile", "plot_count", "render_report"]

CHAOS_COLOR = "#d6604d"
CONTROL_COLOR = "#4393c3"
COHORT_COLORS = {"control": CONTROL_COLOR, "chaos": CHAOS_COLOR}
PSI_COLOR = "#762a83"
P_COLOR = "#1b7837"
WARN_COLOR = "#e08214"
ALARM_COLOR = "#b2182b"
GRID_COLOR = "#e5e5e5"
AXIS_COLOR = "#444444"

# The latency buckets of proxy/metrics.py (kept here so this module imports nothing of the proxy).
_EXAMPLE_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25,
    0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0,
)

# Tick spacings of a time axis, seconds.
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

_W, _H = 560, 360
_ML, _MR, _MT, _MB = 66, 18, 70, 58  # margins: left, right, top, bottom


# ------------------------------------------------------------------------------------------- formatting

def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _obj(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _num(x: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities, bools and non-numbers."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _fmt(x: Any, digits: int = 3) -> str:
    f = _num(x)
    if f is None:
        return "—"
    if f != 0 and (abs(f) < 10 ** -digits or abs(f) >= 10**6):
        return f"{f:.{max(digits - 1, 1)}e}"
    return f"{f:.{digits}g}" if abs(f) < 1 else f"{f:,.{digits}g}" if abs(f) >= 1000 else f"{f:.{digits}g}"


def _fmt_p(x: Any) -> str:
    f = _num(x)
    if f is None:
        return "—"
    return f"{f:.2e}" if f < 0.001 else f"{f:.3f}"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1.0:
        return f"{s * 1000:.3g} ms"
    return f"{s:.3g} s"


def _c(v: float) -> str:
    return f"{v:.1f}"


def _int(x: Any) -> int:
    f = _num(x)
    return int(f) if f is not None else 0


# ------------------------------------------------------------------------------------------------ scales

def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    step = _nice_step(hi - lo, n)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _percent(v: float) -> str:
    return f"{round(v * 100, 6):g}%"


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e5:
        return f"{v:.0e}"
    return f"{v:.4g}"


class _Axes:
    """A plot area inside an SVG of ``_W`` × ``_H``: data → pixel transforms and the drawing of axes."""

    def __init__(self, xlim: tuple[float, float], ylim: tuple[float, float], *, xlog: bool = False,
                 ylog: bool = False, top: float = _MT, bottom: float = _H - _MB) -> None:
        self.x0, self.x1 = float(_ML), float(_W - _MR)
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
            p.append(f'<line x1="{_c(self.x0)}" x2="{_c(self.x1)}" y1="{y}" y2="{y}" stroke="{GRID_COLOR}"/>')
            p.append(f'<text x="{_c(self.x0 - 6)}" y="{_c(y + 4)}" text-anchor="end" class="tick">{_e(label)}</text>')
        for v, label in xticks:
            x = round(self.x(v)) + 0.5
            p.append(f'<line x1="{x}" x2="{x}" y1="{_c(self.y1)}" y2="{_c(self.y0)}" stroke="{GRID_COLOR}"/>')
            p.append(f'<line x1="{x}" x2="{x}" y1="{_c(self.y0)}" y2="{_c(self.y0 + 5)}" stroke="{AXIS_COLOR}"/>')
            p.append(f'<text x="{x}" y="{_c(self.y0 + 18)}" text-anchor="middle" class="tick">{_e(label)}</text>')
        p.append(f'<path d="M{_c(self.x0)},{_c(self.y1)} V{_c(self.y0)} H{_c(self.x1)}" fill="none" '
                 f'stroke="{AXIS_COLOR}" shape-rendering="crispEdges"/>')
        if xlabel:
            p.append(f'<text x="{_c((self.x0 + self.x1) / 2)}" y="{_c(self.y0 + 38)}" text-anchor="middle" '
                     f'class="label">{_e(xlabel)}</text>')
        if ylabel:
            cy = (self.y0 + self.y1) / 2
            p.append(f'<text x="16" y="{_c(cy)}" text-anchor="middle" class="label" '
                     f'transform="rotate(-90 16 {_c(cy)})">{_e(ylabel)}</text>')

    def hline(self, v: float, color: str, label: str, *, below: bool = False) -> None:
        y = self.y(v)
        self.parts.append(f'<line x1="{_c(self.x0)}" x2="{_c(self.x1)}" y1="{_c(y)}" y2="{_c(y)}" '
                          f'stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>')
        # Below the line: at the left end, so two close levels do not write over each other.
        ty, tx, anchor = (y + 12, self.x0 + 4, "start") if below else (y - 4, self.x1 - 4, "end")
        self.parts.append(f'<text x="{_c(tx)}" y="{_c(ty)}" text-anchor="{anchor}" class="note" '
                          f'fill="{color}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{_e(label)}</text>')


def _svg(title: str, parts: Sequence[str], legend: Sequence[tuple[str, str]] = (), subtitle: str = "") -> str:
    out = [f'<svg class="plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img">',
           f"<title>{_e(title)}</title>",
           f'<text x="{_ML}" y="20" class="title">{_e(title)}</text>']
    if subtitle:
        out.append(f'<text x="{_ML}" y="36" class="note">{_e(subtitle)}</text>')
    # The legend: one row under the subtitle, left-aligned with the plot area.
    x = float(_ML)
    for label, color in legend:
        out.append(f'<rect x="{_c(x)}" y="50" width="20" height="4" fill="{color}"/>')
        out.append(f'<text x="{_c(x + 26)}" y="56" class="legend">{_e(label)}</text>')
        x += 26 + 7.2 * len(label) + 22
    out.extend(parts)
    out.append("</svg>")
    return "\n".join(out)


def _no_data(title: str, message: str) -> str:
    return _svg(title, [f'<rect x="{_ML}" y="{_MT}" width="{_W - _ML - _MR}" height="{_H - _MT - _MB}" '
                        f'fill="#fafafa" stroke="{GRID_COLOR}"/>',
                        f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="note">{_e(message)}</text>'])


# ------------------------------------------------------------------------------------------------ latency

def _buckets(cohort: Mapping[str, Any]) -> list[tuple[float, float]]:
    """``(le, cumulative)`` pairs, +Inf as ``math.inf``, ascending and checked."""
    lat = cohort.get("latency_seconds")
    raw = lat.get("buckets") if isinstance(lat, Mapping) else None
    out: list[tuple[float, float]] = []
    for item in raw or ():
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
            continue
        le_raw, cum_raw = item
        if isinstance(le_raw, str) and le_raw.strip().lower() in ("+inf", "inf"):
            le: float | None = math.inf
        elif le_raw is None:
            le = math.inf
        else:
            le = _num(le_raw)
        cum = _num(cum_raw)
        if le is not None and cum is not None and cum >= 0:
            out.append((le, cum))
    out.sort()
    return out


def latency_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile from cumulative buckets, interpolated like PromQL's ``histogram_quantile``."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_cum = 0.0, 0.0
    for le, cum in buckets:
        if cum >= rank:
            if math.isinf(le):
                return prev_le if prev_le > 0 else None
            if cum == prev_cum:
                return le
            return prev_le + (le - prev_le) * (rank - prev_cum) / (cum - prev_cum)
        prev_le, prev_cum = le, cum
    return prev_le


def _duration_label(v: float) -> str:
    if v < 1:
        ms = v * 1000
        return f"{ms:g} ms" if ms >= 1 else f"{ms * 1000:g} µs"
    return f"{v:g} s"


def _latency_plot(cohorts: Mapping[str, Any]) -> str:
    title = "Latency CDF per cohort"
    series: dict[str, list[tuple[float, float]]] = {}
    for name in ("control", "chaos"):
        b = _buckets(cohorts.get(name) or {})
        if b and b[-1][1] > 0:
            series[name] = b
    if not series:
        return _no_data(title, "no requests yet")
    finite = [le for b in series.values() for le, _ in b if math.isfinite(le) and le > 0]
    if not finite:
        return _no_data(title, "no latency buckets")
    # From the last bucket still empty in every cohort to the first full in every one.
    lo_candidates, hi_candidates = [], []
    for b in series.values():
        total = b[-1][1]
        empties = [le for le, c in b if c == 0 and math.isfinite(le) and le > 0]
        firsts = [le for le, c in b if c > 0 and math.isfinite(le) and le > 0]
        lo_candidates.append(max(empties) if empties else (min(firsts) / 2 if firsts else min(finite)))
        fulls = [le for le, c in b if c >= total and math.isfinite(le) and le > 0]
        hi_candidates.append(min(fulls) if fulls else max(finite))
    lo, hi = min(lo_candidates), max(hi_candidates)
    if not hi > lo:
        hi = lo * 10
    lo, hi = lo / 1.15, hi * 1.15
    ax = _Axes((lo, hi), (0.0, 1.0), xlog=True)
    xticks = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 3) if math.log10(hi / lo) < 2.5 else (1,):
            v = m * 10.0**k
            if lo <= v <= hi:
                xticks.append((v, _duration_label(v)))
    yticks = [(v, f"{v:.2f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    ax.frame(xticks, yticks, "latency (log scale), as the client sees it", "fraction of requests ≤ latency")
    for name, b in series.items():
        total = b[-1][1]
        pts: list[str] = []
        y_prev = 0.0
        x_start = ax.x(lo)
        pts.append(f"M{_c(x_start)},{_c(ax.y(0.0))}")
        for le, cum in b:
            if not math.isfinite(le) or le <= 0:
                continue
            le_c = min(max(le, lo), hi)
            frac = cum / total
            x = round(ax.x(le_c))
            # A step: flat up to the bucket's upper bound, then up to its cumulative fraction.
            pts.append(f"H{x} V{_c(ax.y(frac))}")
            y_prev = frac
        pts.append(f"H{_c(ax.x(hi))}")
        del y_prev
        ax.parts.append(f'<path d="{" ".join(pts)}" fill="none" stroke="{COHORT_COLORS[name]}" stroke-width="2.5" '
                        f'shape-rendering="crispEdges" class="series-{name}"/>')
    for q, dash in ((0.5, "2 3"), (0.99, "6 3")):
        ax.parts.append(f'<line x1="{_c(ax.x0)}" x2="{_c(ax.x1)}" y1="{_c(ax.y(q))}" y2="{_c(ax.y(q))}" '
                        f'stroke="#999999" stroke-dasharray="{dash}"/>')
        ax.parts.append(f'<text x="{_c(ax.x0 + 4)}" y="{_c(ax.y(q) - 4)}" class="note">p{round(q * 100)}</text>')
    legend = [(f"{name} ({_int(b[-1][1]):,} requests)", COHORT_COLORS[name]) for name, b in series.items()]
    return _svg(title, ax.parts, legend, subtitle="cumulative histogram buckets, step at each bucket bound")


# --------------------------------------------------------------------------------------------- histograms

def _values(side: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    raw = side.get("values") if isinstance(side, Mapping) else None
    if not isinstance(raw, list):
        return np.empty(0)
    arr = np.array([f for v in raw if (f := _num(v)) is not None], dtype=np.float64)
    return arr


def _histogram_plot(name: str, entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind", "numeric")
    prob = kind == "probability"
    title = f"{name}: {'confidence' if prob else 'prediction'} histogram, chaos vs control"
    data = {c: _values(entry.get(c)) for c in ("control", "chaos")}
    pooled = np.concatenate(list(data.values()))
    if pooled.size == 0:
        return _no_data(title, "no predictions in the window yet")
    if prob:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (float(v) for v in np.quantile(pooled, [0.005, 0.995]))
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
    nbins = 25
    edges = np.linspace(lo, hi, nbins + 1)
    shares: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    for c, v in data.items():
        if v.size:
            counts = np.bincount(np.clip(np.searchsorted(edges, v, side="right") - 1, 0, nbins - 1),
                                 minlength=nbins)
            shares[c] = counts / v.size
    top = max(float(np.max(s)) for s in shares.values())
    top = top * 1.12 if top > 0 else 1.0
    ax = _Axes((lo, hi), (0.0, top))
    xt = [(v, _tick_label(v)) for v in _linear_ticks(lo, hi, 6)]
    yt = [(v, _percent(v)) for v in _linear_ticks(0.0, top, 5)]
    ax.frame(xt, yt, "confidence (largest class probability)" if prob else "predicted value",
             "share of the cohort's predictions")
    for c in ("control", "chaos"):
        if c not in shares:
            continue
        s = shares[c]
        d = [f"M{_c(ax.x(edges[0]))},{_c(ax.y(0.0))}"]
        for i in range(nbins):
            d.append(f"V{_c(ax.y(float(s[i])))} H{_c(ax.x(float(edges[i + 1])))}")
        d.append(f"V{_c(ax.y(0.0))}")
        path = " ".join(d)
        color = COHORT_COLORS[c]
        ax.parts.append(f'<path d="{path} Z" fill="{color}" fill-opacity="0.22" stroke="none"/>')
        ax.parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2.5" '
                        f'shape-rendering="crispEdges" class="series-{c}"/>')
    legend = [(f"{c} (n={data[c].size:,})", COHORT_COLORS[c]) for c in ("control", "chaos") if c in shares]
    note = "each cohort as a share of its own predictions" + ("" if prob else "; outer 0.5% clipped into the end bins")
    return _svg(title, ax.parts, legend, subtitle=note)


def _classes_plot(name: str, entry: Mapping[str, Any]) -> str:
    title = f"{name}: predicted classes, chaos vs control"
    counts: dict[str, dict[str, float]] = {}
    for c in ("control", "chaos"):
        side = entry.get(c)
        raw = side.get("classes") if isinstance(side, Mapping) else None
        counts[c] = {str(k): f for k, v in (raw or {}).items() if (f := _num(v)) is not None and f >= 0} \
            if isinstance(raw, Mapping) else {}
    totals = {c: sum(v.values()) for c, v in counts.items()}
    labels = sorted({k for v in counts.values() for k in v},
                    key=lambda k: (k == "__other__", -sum(counts[c].get(k, 0) for c in counts), k))
    if not labels or not any(totals.values()):
        return _no_data(title, "no predictions in the window yet")
    share = {c: {k: (counts[c].get(k, 0) / totals[c] if totals[c] else 0.0) for k in labels} for c in counts}
    top = max(max(s.values()) for s in share.values())
    top = top * 1.12 if top > 0 else 1.0
    ax = _Axes((0.0, float(len(labels))), (0.0, top))
    many = len(labels) > 6
    yt = [(v, _percent(v)) for v in _linear_ticks(0.0, top, 5)]
    ax.frame([], yt, "" if many else "class", "share of the cohort's predictions")
    slot = (ax.x1 - ax.x0) / len(labels)
    bar = max(min(slot * 0.38, 40.0), 1.0)
    for i, label in enumerate(labels):
        cx = ax.x0 + slot * (i + 0.5)
        for j, c in enumerate(("control", "chaos")):
            if not totals[c]:
                continue
            v = share[c][label]
            x = cx - bar + j * bar
            y = ax.y(v)
            ax.parts.append(f'<rect x="{round(x)}" y="{round(y)}" width="{max(round(bar) - 1, 1)}" '
                            f'height="{max(round(ax.y0) - round(y), 0)}" fill="{COHORT_COLORS[c]}" '
                            f'shape-rendering="crispEdges" class="series-{c}"><title>{_e(label)} {c}: '
                            f'{v:.1%}</title></rect>')
        short = label if len(label) <= 14 else label[:13] + "…"
        if many:
            ax.parts.append(f'<text x="{_c(cx)}" y="{_c(ax.y0 + 12)}" text-anchor="end" class="tick" '
                            f'transform="rotate(-35 {_c(cx)} {_c(ax.y0 + 12)})">{_e(short)}</text>')
        else:
            ax.parts.append(f'<text x="{_c(cx)}" y="{_c(ax.y0 + 18)}" text-anchor="middle" class="tick">'
                            f'{_e(short)}</text>')
    legend = [(f"{c} (n={_int(totals[c]):,})", COHORT_COLORS[c]) for c in ("control", "chaos") if totals[c]]
    return _svg(title, ax.parts, legend, subtitle="each cohort as a share of its own predictions")


# ------------------------------------------------------------------------------------------ drift history

def _parse_time(s: Any) -> datetime | None:
    if not isinstance(s, str):
        return None
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _drift_plot(name: str, history: Sequence[Mapping[str, Any]], thresholds: Mapping[str, float]) -> str:
    title = f"{name}: drift over time"
    pts = [(t, h) for h in history if h.get("output") == name and (t := _parse_time(h.get("t"))) is not None]
    pts.sort(key=lambda th: th[0])
    if not pts:
        return _no_data(title, "no drift evaluations yet")
    t0 = pts[0][0]
    xs = [(t - t0).total_seconds() for t, _ in pts]
    span = max(xs[-1], 1.0)
    psis = [_num(h.get("psi")) for _, h in pts]
    p_key = "ks_p" if any(_num(h.get("ks_p")) is not None for _, h in pts) else "chi2_p"
    ps = [_num(h.get(p_key)) for _, h in pts]
    psi_warn, psi_alarm = thresholds["psi_warn"], thresholds["psi_alarm"]
    p_level = thresholds["ks_p" if p_key == "ks_p" else "chi2_p"]
    panel_gap = 22
    mid = _MT + (_H - _MT - _MB - panel_gap) / 2
    top_max = max([psi_alarm * 1.5, *[p * 1.1 for p in psis if p is not None]])
    a1 = _Axes((0.0, span), (0.0, top_max), top=_MT, bottom=mid)
    # A log axis down to a decade below the smallest p-value, 1e-4 at least and 1e-12 at most.
    p_min = min([1e-4, *[p for p in ps if p is not None and p > 0]])
    p_floor = max(10.0 ** math.floor(math.log10(p_min) - 1e-9), 1e-12) if p_min < 1e-4 else 1e-4
    a2 = _Axes((0.0, span), (p_floor, 1.0), ylog=True, top=mid + panel_gap, bottom=_H - _MB)
    step = next((s for s in _TIME_STEPS if span / s <= 6), _nice_step(span, 5))
    first = (-t0.timestamp()) % step  # ticks on round clock times
    tick_secs = [first + k * step for k in range(int((span - first) // step) + 1)]

    def tlabel(sec: float) -> str:
        return (t0 + timedelta(seconds=sec)).strftime("%H:%M:%S" if step < 60 else "%H:%M")

    a1.frame([(s, "") for s in tick_secs], [(v, _tick_label(v)) for v in _linear_ticks(0.0, top_max, 4)], "",
             "PSI")
    decades = range(math.ceil(math.log10(p_floor)), 1)
    every = max(1, math.ceil(len(decades) / 5))
    a2.frame([(s, tlabel(s)) for s in tick_secs],
             [(10.0**k, "1" if k == 0 else f"1e{k}") for k in decades if k % every == 0],
             f"time (UTC, from {t0.strftime('%Y-%m-%d %H:%M:%S')})", "p-value")
    a1.hline(psi_warn, WARN_COLOR, f"warn {psi_warn:g}", below=True)
    a1.hline(psi_alarm, ALARM_COLOR, f"alarm {psi_alarm:g}")
    a2.hline(p_level, ALARM_COLOR, f"alarm below {p_level:g}")

    def line(ax: _Axes, ys: Sequence[float | None], color: str, floor: float | None = None) -> None:
        segs: list[str] = []
        dots: list[str] = []
        pen = "M"
        for x, y in zip(xs, ys, strict=True):
            if y is None:
                pen = "M"
                continue
            yy = max(y, floor) if floor is not None else y
            px, py = _c(ax.x(x)), _c(ax.y(yy))
            segs.append(f"{pen}{px},{py}")
            pen = "L"
            dots.append(f'<circle cx="{px}" cy="{py}" r="2.5" fill="{color}"/>')
        ax.parts.append(f'<path d="{" ".join(segs)}" fill="none" stroke="{color}" stroke-width="2"/>')
        ax.parts.extend(dots)

    line(a1, psis, PSI_COLOR)
    line(a2, ps, P_COLOR, floor=p_floor)
    p_name = "KS p-value" if p_key == "ks_p" else "χ² p-value"
    legend = [("PSI", PSI_COLOR), (p_name + " (log scale)", P_COLOR)]
    clipped = any(p is not None and p < p_floor for p in ps)
    sub = f"{len(pts)} evaluations, chaos against control" + (f"; p below {p_floor:.0e} drawn at it" if clipped else "")
    return _svg(title, [*a1.parts, *a2.parts], legend, subtitle=sub)


# ------------------------------------------------------------------------------------------------ tables

def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _cohort_table(data: Mapping[str, Any]) -> str:
    cohorts = _obj(data.get("cohorts"))
    srm = _obj(data.get("srm"))
    observed = _obj(srm.get("observed_share"))
    policy = {"chaos": _num(data.get("chaos_percent")), "control": _num(data.get("control_percent"))}
    rows = []
    for name in ("chaos", "control"):
        c = _obj(cohorts.get(name))
        req, err = _int(c.get("requests")), _int(c.get("errors"))
        b = _buckets(c)
        faults = _obj(c.get("faults"))
        fault_text = ", ".join(f"{k}: {_int(v):,}" for k, v in faults.items()) or "—"
        rows.append(
            f'<tr><td><span class="swatch" style="background:{COHORT_COLORS[name]}"></span>{name}</td>'
            f"<td>{_fmt(policy[name])}%</td><td>{_fmt_share(observed.get(name))}</td>"
            f"<td>{req:,}</td><td>{err:,}</td><td>{_fmt_share(err / req if req else None)}</td>"
            f"<td>{_fmt_seconds(latency_quantile(b, 0.5))}</td><td>{_fmt_seconds(latency_quantile(b, 0.9))}</td>"
            f"<td>{_fmt_seconds(latency_quantile(b, 0.99))}</td><td>{_e(fault_text)}</td></tr>")
    head = ("<tr><th>cohort</th><th>policy share</th><th>observed share</th><th>requests</th><th>errors</th>"
            "<th>error rate</th><th>p50</th><th>p90</th><th>p99</th><th>faults injected</th></tr>")
    return f'<table class="grid">{head}{"".join(rows)}</table>'


def _fmt_share(x: Any) -> str:
    f = _num(x)
    return "—" if f is None else f"{f:.2%}"


def _srm_line(data: Mapping[str, Any]) -> str:
    srm = data.get("srm") if isinstance(data.get("srm"), Mapping) else None
    if srm is None:
        return '<p class="muted">Sample ratio: no data.</p>'
    mismatch = bool(srm.get("mismatch"))
    badge = _badge("sample ratio mismatch", "alarm") if mismatch else _badge("ratio as expected", "ok")
    return (f"<p>Sample ratio check (chi-square, alarm at p &lt; 0.001): p = {_fmt_p(srm.get('p_value'))} "
            f"{badge}</p>")


def _drift_table(outputs: Mapping[str, Any]) -> str:
    if not outputs:
        return '<p class="muted">No predictions observed.</p>'
    head = ("<tr><th>output</th><th>kind</th><th>n control</th><th>n chaos</th><th>PSI</th><th>KS D</th>"
            "<th>KS p</th><th>JS distance</th><th>Wasserstein (norm.)</th><th>χ² p</th><th>status</th></tr>")
    rows = []
    for name, entry in outputs.items():
        if not isinstance(entry, Mapping):
            continue
        d = _obj(entry.get("drift"))
        alarms = [str(a) for a in (entry.get("alarms") or d.get("alarms") or [])]
        warnings = [str(w) for w in (d.get("warnings") or [])]
        if not d:
            status = _badge("not enough data", "muted")
        elif alarms:
            status = _badge("alarm: " + ", ".join(alarms), "alarm")
        elif warnings:
            status = _badge("warn: " + ", ".join(warnings), "warn")
        else:
            status = _badge("no drift", "ok")
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_e(entry.get('kind', ''))}</td><td>{_int(d.get('n_control')):,}</td>"
            f"<td>{_int(d.get('n_chaos')):,}</td><td>{_fmt(d.get('psi'))}</td><td>{_fmt(d.get('ks'))}</td>"
            f"<td>{_fmt_p(d.get('ks_p'))}</td><td>{_fmt(d.get('js'))}</td><td>{_fmt(d.get('wasserstein'))}</td>"
            f"<td>{_fmt_p(d.get('chi2_p'))}</td><td>{status}</td></tr>")
    return f'<table class="grid">{head}{"".join(rows)}</table>'


def _kv_rows(obj: Mapping[str, Any], prefix: str = "") -> list[str]:
    rows: list[str] = []
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and len(prefix) < 200:
            rows.extend(_kv_rows(v, key + "."))
        else:
            if isinstance(v, bool) or v is None:
                text = "true" if v is True else "false" if v is False else "—"
            elif isinstance(v, int | float):
                text = _fmt(v, 4)
            elif isinstance(v, str):
                text = v
            else:
                text = ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)
            rows.append(f"<tr><td>{_e(key)}</td><td>{_e(text[:500])}</td></tr>")
    return rows


def _kill_switch(data: Mapping[str, Any]) -> str:
    ks = data.get("kill_switch")
    if not isinstance(ks, Mapping) or not ks:
        return '<p class="muted">No kill switch state.</p>'
    tripped = bool(ks.get("tripped"))
    badge = _badge("tripped", "alarm") if tripped else _badge("armed, not tripped", "ok")
    return f'<p>Kill switch: {badge}</p><table class="grid kv">{"".join(_kv_rows(ks))}</table>'


# ------------------------------------------------------------------------------------------------- page

_CSS = """
body { font-family: "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #222;
       background: #ffffff; }
main { max-width: 1160px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 22px 0 8px; }
.meta { color: #555; font-size: 13px; margin: 0 0 8px; }
.plots { display: grid; grid-template-columns: repeat(2, 560px); gap: 14px 20px; }
.plots figure { margin: 0; border: 1px solid #e3e3e3; border-radius: 4px; background: #fff; }
svg.plot { display: block; font-family: inherit; }
svg .title { font-size: 14px; font-weight: bold; fill: #222; }
svg .tick { font-size: 11px; fill: #444; } svg .label { font-size: 12px; fill: #333; }
svg .legend { font-size: 12px; fill: #333; } svg .note { font-size: 11px; fill: #666; }
table.grid { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
table.grid th { background: #f4f4f4; } table.grid td:first-child, table.grid th:first-child { text-align: left; }
table.kv td { text-align: left; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; }
.badge.ok { background: #e3f1e3; color: #1b5e20; } .badge.warn { background: #fdebd0; color: #8a4b00; }
.badge.alarm { background: #f8d7da; color: #8b1a1a; } .badge.muted { background: #eee; color: #555; }
.muted { color: #777; }
"""


def plot_count(data: Mapping[str, Any]) -> int:
    """How many plots (``<svg>`` elements) ``render_report(data)`` draws: the latency CDF, and per output a
    histogram and a drift-over-time plot."""
    outputs = data.get("outputs")
    n = sum(1 for v in outputs.values() if isinstance(v, Mapping)) if isinstance(outputs, Mapping) else 0
    return 1 + 2 * n


def render_report(data: Mapping[str, Any]) -> str:
    """The report page for ``data`` (the shape in the module docstring); tolerant of missing parts."""
    name = str(data.get("experiment", "?"))
    outputs = {str(k): v for k, v in data.get("outputs", {}).items() if isinstance(v, Mapping)} \
        if isinstance(data.get("outputs"), Mapping) else {}
    history_raw = data.get("drift_history")
    history = [h for h in history_raw if isinstance(h, Mapping)] if isinstance(history_raw, list) else []
    th: dict[str, float] = {k: float(getattr(DEFAULT_THRESHOLDS, k))
                            for k in ("psi_warn", "psi_alarm", "ks_p", "chi2_p", "js", "wasserstein")}
    if isinstance(data.get("thresholds"), Mapping):
        for k, v in data["thresholds"].items():
            if k in th and (f := _num(v)) is not None and f > 0:
                th[k] = f
    cohorts = _obj(data.get("cohorts"))

    plots = [_latency_plot(cohorts)]
    for out_name, entry in outputs.items():
        plots.append(_classes_plot(out_name, entry) if entry.get("kind") == "class"
                     else _histogram_plot(out_name, entry))
    for out_name in outputs:
        plots.append(_drift_plot(out_name, history, th))

    window = _obj(data.get("window"))
    window_text = ""
    if window:
        window_text = (f" · drift window: last {_int(window.get('max_n')):,} predictions, at most "
                       f"{_fmt(window.get('max_age_seconds'))} s")
    any_alarm = any((e.get("alarms") or []) for e in outputs.values())
    verdict = _badge("prediction drift", "alarm") if any_alarm else _badge("no prediction drift alarm", "ok")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mlchaos report: {_e(name)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>mlchaos experiment report: {_e(name)}</h1>",
        f'<p class="meta">state: <b>{_e(data.get("state", "?"))}</b> · chaos {_fmt(data.get("chaos_percent"))}% '
        f'vs control {_fmt(data.get("control_percent"))}% of matching traffic · generated '
        f'{_e(data.get("generated_at", "?"))}{_e(window_text)} · {verdict}</p>',
        "<h2>Cohorts</h2>",
        _cohort_table(data),
        _srm_line(data),
        "<h2>Plots</h2>",
        '<div class="plots">',
        *(f"<figure>{p}</figure>" for p in plots),
        "</div>",
        "<h2>Prediction drift, chaos against control</h2>",
        _drift_table(outputs),
        (f'<p class="meta">Alarm levels: PSI warn &gt; {th["psi_warn"]:g}, alarm &gt; {th["psi_alarm"]:g}; '
         f'KS p &lt; {th["ks_p"]:g}; χ² p &lt; {th["chi2_p"]:g}; JS distance (base 2) &gt; {th["js"]:g}; '
         f'normalized Wasserstein &gt; {th["wasserstein"]:g}. Fixed-sample statistics over a sliding window: '
         "repeated looks cross a p-value level now and then by chance.</p>"),
        "<h2>Kill switch</h2>",
        _kill_switch(data),
        "</main></body></html>",
    ]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------- example

def _bucketize(samples: np.ndarray[Any, np.dtype[np.float64]]) -> list[list[Any]]:
    edges = np.array(_EXAMPLE_LATENCY_BUCKETS)
    cum = np.searchsorted(np.sort(samples), edges, side="right")
    return [[float(le), int(c)] for le, c in zip(edges, cum, strict=True)] + [["+Inf", int(samples.size)]]


def example_report(seed: int = 7) -> dict[str, Any]:
    """A realistic report (deterministic for a seed): an experiment 20 minutes in whose chaos cohort has a
    lognormal delay, some aborts and, from minute 6, shifted input features, so its predictions drift."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
    n_chaos, n_control = 2391, 2421

    control_lat = rng.lognormal(math.log(0.024), 0.35, n_control)
    delayed = rng.random(n_chaos) < 0.5
    aborted = rng.random(n_chaos) < 0.1
    chaos_lat = rng.lognormal(math.log(0.024), 0.35, n_chaos)
    chaos_lat = np.where(delayed, chaos_lat + rng.lognormal(math.log(0.2), 0.5, n_chaos), chaos_lat)
    chaos_lat = np.where(aborted, rng.uniform(0.0004, 0.002, n_chaos), chaos_lat)
    control_errors = int(rng.binomial(n_control, 0.004))

    def score(n: int, shifted: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        k = round(n * shifted)
        return np.concatenate([rng.beta(5.0, 3.0, n - k), rng.beta(8.0, 2.2, k)])

    def labels(n: int, shifted: float) -> dict[str, int]:
        p = (1 - shifted) * np.array([0.34, 0.33, 0.33]) + shifted * np.array([0.18, 0.27, 0.55])
        c = rng.multinomial(n, p)
        return {"setosa": int(c[0]), "versicolor": int(c[1]), "virginica": int(c[2])}

    def confidence(n: int, shifted: float) -> np.ndarray[Any, np.dtype[np.float64]]:
        k = round(n * shifted)
        return np.concatenate([1 - 0.62 * rng.beta(1.1, 6.0, n - k), 1 - 0.62 * rng.beta(2.2, 3.5, k)])

    # Drift every 30 s; the window fills with shifted chaos predictions after the fault starts at 6 min.
    history: list[dict[str, Any]] = []
    for step in range(1, 41):
        t = start + timedelta(seconds=30 * step)
        shifted = min(max((step - 12) / 8, 0.0), 1.0)
        n = min(60 * step, 1200)
        iso = t.strftime("%Y-%m-%dT%H:%M:%SZ")
        r = compare_numeric(score(n, 0.0), score(n, shifted))
        history.append({"t": iso, "output": "score", "psi": r.psi, "ks_p": r.ks_p, "js": r.js,
                        "wasserstein": r.wasserstein})
        rc = compare_classes(labels(n, 0.0), labels(n, shifted))
        history.append({"t": iso, "output": "label", "psi": rc.psi, "ks_p": None, "chi2_p": rc.chi2_p,
                        "js": rc.js})
        rp = compare_numeric(confidence(n, 0.0), confidence(n, shifted))
        history.append({"t": iso, "output": "probabilities", "psi": rp.psi, "ks_p": rp.ks_p, "js": rp.js,
                        "wasserstein": rp.wasserstein})

    n_win = 1200
    score_c, score_x = score(n_win, 0.0), score(n_win, 1.0)
    lab_c, lab_x = labels(n_win, 0.0), labels(n_win, 1.0)
    conf_c, conf_x = confidence(n_win, 0.0), confidence(n_win, 1.0)
    top_c = {"0": lab_c["setosa"], "1": lab_c["versicolor"], "2": lab_c["virginica"]}
    top_x = {"0": lab_x["setosa"], "1": lab_x["versicolor"], "2": lab_x["virginica"]}

    def out(kind: str, c_vals: Any, x_vals: Any, c_cls: dict[str, int], x_cls: dict[str, int]) -> dict[str, Any]:
        r = compare_classes(c_cls, x_cls) if kind == "class" else compare_numeric(c_vals, x_vals)
        return {"kind": kind,
                "control": {"values": [round(float(v), 5) for v in c_vals], "classes": c_cls, "seen": n_control},
                "chaos": {"values": [round(float(v), 5) for v in x_vals], "classes": x_cls, "seen": n_chaos},
                "drift": r.to_dict(), "alarms": list(r.alarms)}

    srm = srm_check(n_chaos, n_control, 2.0, 2.0)
    return {
        "experiment": "iris-shifted-features",
        "generated_at": (start + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "state": "running",
        "chaos_percent": 2.0,
        "control_percent": 2.0,
        "window": {"max_n": 2000, "max_age_seconds": 600.0},
        "cohorts": {
            "chaos": {"requests": n_chaos, "errors": int(aborted.sum()),
                      "latency_seconds": {"buckets": _bucketize(chaos_lat), "sum": float(chaos_lat.sum()),
                                          "count": n_chaos},
                      "faults": {"delay": int(delayed.sum()), "abort": int(aborted.sum()),
                                 "shift": int(n_chaos * 0.7)}},
            "control": {"requests": n_control, "errors": control_errors,
                        "latency_seconds": {"buckets": _bucketize(control_lat), "sum": float(control_lat.sum()),
                                            "count": n_control}},
        },
        "outputs": {
            "score": out("numeric", score_c, score_x, {}, {}),
            "label": out("class", [], [], lab_c, lab_x),
            "probabilities": out("probability", conf_c, conf_x, top_c, top_x),
        },
        "drift_history": history,
        "srm": srm.to_dict(),
        "kill_switch": {"tripped": False, "alpha": 0.01,
                        "guards": {"errors": {"e_value": 3.2, "threshold": 100.0, "n_chaos": n_chaos},
                                   "latency": {"e_value": 41.7, "threshold": 100.0, "n_chaos": n_chaos}}},
        "thresholds": {k: getattr(DEFAULT_THRESHOLDS, k)
                       for k in ("psi_warn", "psi_alarm", "ks_p", "chi2_p", "js", "wasserstein")},
    }
