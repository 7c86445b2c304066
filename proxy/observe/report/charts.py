"""The report's plots, one ``<svg>`` each: the latency CDF of both cohorts, per output a histogram (numeric
values or confidences) or grouped class bars, and per output drift over time."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from .svg import (
    ALARM_COLOR,
    COHORT_COLORS,
    DRAW_ORDER,
    MB,
    MT,
    P_COLOR,
    PSI_COLOR,
    WARN_COLOR,
    Axes,
    H,
    duration_label,
    linear_ticks,
    nice_step,
    no_data,
    percent,
    plot_svg,
    pt,
    tick_label,
)
from .values import as_int, cohort_buckets, esc, finite, parse_time, window_values

__all__ = ["classes_plot", "drift_plot", "histogram_plot", "latency_plot"]


# Tick spacings of a time axis, seconds.
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def latency_plot(cohorts: Mapping[str, Any]) -> str:
    title = "Latency CDF per cohort"
    series: dict[str, list[tuple[float, float]]] = {}
    for name in DRAW_ORDER:
        b = cohort_buckets(cohorts.get(name) or {})
        if b and b[-1][1] > 0:
            series[name] = b
    if not series:
        return no_data(title, "no requests yet")
    finite = [le for b in series.values() for le, _ in b if math.isfinite(le) and le > 0]
    if not finite:
        return no_data(title, "no latency buckets")
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
    ax = Axes((lo, hi), (0.0, 1.0), xlog=True)
    xticks = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 3) if math.log10(hi / lo) < 2.5 else (1,):
            v = m * 10.0**k
            if lo <= v <= hi:
                xticks.append((v, duration_label(v)))
    yticks = [(v, f"{v:.2f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    ax.frame(xticks, yticks, "latency (log scale), as the client sees it", "fraction of requests ≤ latency")
    for name, b in series.items():
        total = b[-1][1]
        pts: list[str] = []
        y_prev = 0.0
        x_start = ax.x(lo)
        pts.append(f"M{pt(x_start)},{pt(ax.y(0.0))}")
        for le, cum in b:
            if not math.isfinite(le) or le <= 0:
                continue
            le_c = min(max(le, lo), hi)
            frac = cum / total
            x = round(ax.x(le_c))
            # A step: flat up to the bucket's upper bound, then up to its cumulative fraction.
            pts.append(f"H{x} V{pt(ax.y(frac))}")
            y_prev = frac
        pts.append(f"H{pt(ax.x(hi))}")
        del y_prev
        ax.parts.append(f'<path d="{" ".join(pts)}" fill="none" stroke="{COHORT_COLORS[name]}" stroke-width="2.5" '
                        f'shape-rendering="crispEdges" class="series-{name}"/>')
    for q, dash in ((0.5, "2 3"), (0.99, "6 3")):
        ax.parts.append(f'<line x1="{pt(ax.x0)}" x2="{pt(ax.x1)}" y1="{pt(ax.y(q))}" y2="{pt(ax.y(q))}" '
                        f'stroke="#999999" stroke-dasharray="{dash}"/>')
        ax.parts.append(f'<text x="{pt(ax.x0 + 4)}" y="{pt(ax.y(q) - 4)}" class="note">p{round(q * 100)}</text>')
    legend = [(f"{name} ({as_int(b[-1][1]):,} requests)", COHORT_COLORS[name]) for name, b in series.items()]
    return plot_svg(title, ax.parts, legend, subtitle="cumulative histogram buckets, step at each bucket bound")


def histogram_plot(name: str, entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind", "numeric")
    prob = kind == "probability"
    title = f"{name}: {'confidence' if prob else 'prediction'} histogram, chaos vs control"
    data = {c: window_values(entry.get(c)) for c in DRAW_ORDER}
    pooled = np.concatenate(list(data.values()))
    if pooled.size == 0:
        return no_data(title, "no predictions in the window yet")
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
    ax = Axes((lo, hi), (0.0, top))
    xt = [(v, tick_label(v)) for v in linear_ticks(lo, hi, 6)]
    yt = [(v, percent(v)) for v in linear_ticks(0.0, top, 5)]
    ax.frame(xt, yt, "confidence (largest class probability)" if prob else "predicted value",
             "share of the cohort's predictions")
    for c in DRAW_ORDER:
        if c not in shares:
            continue
        s = shares[c]
        d = [f"M{pt(ax.x(edges[0]))},{pt(ax.y(0.0))}"]
        for i in range(nbins):
            d.append(f"V{pt(ax.y(float(s[i])))} H{pt(ax.x(float(edges[i + 1])))}")
        d.append(f"V{pt(ax.y(0.0))}")
        path = " ".join(d)
        color = COHORT_COLORS[c]
        ax.parts.append(f'<path d="{path} Z" fill="{color}" fill-opacity="0.22" stroke="none"/>')
        ax.parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2.5" '
                        f'shape-rendering="crispEdges" class="series-{c}"/>')
    legend = [(f"{c} (n={data[c].size:,})", COHORT_COLORS[c]) for c in DRAW_ORDER if c in shares]
    note = "each cohort as a share of its own predictions" + ("" if prob else "; outer 0.5% clipped into the end bins")
    return plot_svg(title, ax.parts, legend, subtitle=note)


def classes_plot(name: str, entry: Mapping[str, Any]) -> str:
    title = f"{name}: predicted classes, chaos vs control"
    counts: dict[str, dict[str, float]] = {}
    for c in DRAW_ORDER:
        side = entry.get(c)
        raw = side.get("classes") if isinstance(side, Mapping) else None
        counts[c] = {str(k): f for k, v in (raw or {}).items() if (f := finite(v)) is not None and f >= 0} \
            if isinstance(raw, Mapping) else {}
    totals = {c: sum(v.values()) for c, v in counts.items()}
    labels = sorted({k for v in counts.values() for k in v},
                    key=lambda k: (k == "__other__", -sum(counts[c].get(k, 0) for c in counts), k))
    if not labels or not any(totals.values()):
        return no_data(title, "no predictions in the window yet")
    share = {c: {k: (counts[c].get(k, 0) / totals[c] if totals[c] else 0.0) for k in labels} for c in counts}
    top = max(max(s.values()) for s in share.values())
    top = top * 1.12 if top > 0 else 1.0
    ax = Axes((0.0, float(len(labels))), (0.0, top))
    many = len(labels) > 6
    yt = [(v, percent(v)) for v in linear_ticks(0.0, top, 5)]
    ax.frame([], yt, "" if many else "class", "share of the cohort's predictions")
    slot = (ax.x1 - ax.x0) / len(labels)
    bar = max(min(slot * 0.38, 40.0), 1.0)
    for i, label in enumerate(labels):
        cx = ax.x0 + slot * (i + 0.5)
        for j, c in enumerate(DRAW_ORDER):
            if not totals[c]:
                continue
            v = share[c][label]
            x = cx - bar + j * bar
            y = ax.y(v)
            ax.parts.append(f'<rect x="{round(x)}" y="{round(y)}" width="{max(round(bar) - 1, 1)}" '
                            f'height="{max(round(ax.y0) - round(y), 0)}" fill="{COHORT_COLORS[c]}" '
                            f'shape-rendering="crispEdges" class="series-{c}"><title>{esc(label)} {c}: '
                            f'{v:.1%}</title></rect>')
        short = label if len(label) <= 14 else label[:13] + "…"
        if many:
            ax.parts.append(f'<text x="{pt(cx)}" y="{pt(ax.y0 + 12)}" text-anchor="end" class="tick" '
                            f'transform="rotate(-35 {pt(cx)} {pt(ax.y0 + 12)})">{esc(short)}</text>')
        else:
            ax.parts.append(f'<text x="{pt(cx)}" y="{pt(ax.y0 + 18)}" text-anchor="middle" class="tick">'
                            f'{esc(short)}</text>')
    legend = [(f"{c} (n={as_int(totals[c]):,})", COHORT_COLORS[c]) for c in DRAW_ORDER if totals[c]]
    return plot_svg(title, ax.parts, legend, subtitle="each cohort as a share of its own predictions")


def drift_plot(name: str, history: Sequence[Mapping[str, Any]], thresholds: Mapping[str, float]) -> str:
    title = f"{name}: drift over time"
    pts = [(t, h) for h in history if h.get("output") == name and (t := parse_time(h.get("t"))) is not None]
    pts.sort(key=lambda th: th[0])
    if not pts:
        return no_data(title, "no drift evaluations yet")
    t0 = pts[0][0]
    xs = [(t - t0).total_seconds() for t, _ in pts]
    span = max(xs[-1], 1.0)
    psis = [finite(h.get("psi")) for _, h in pts]
    p_key = "ks_p" if any(finite(h.get("ks_p")) is not None for _, h in pts) else "chi2_p"
    ps = [finite(h.get(p_key)) for _, h in pts]
    psi_warn, psi_alarm = thresholds["psi_warn"], thresholds["psi_alarm"]
    p_level = thresholds["ks_p" if p_key == "ks_p" else "chi2_p"]
    panel_gap = 22
    mid = MT + (H - MT - MB - panel_gap) / 2
    top_max = max([psi_alarm * 1.5, *[p * 1.1 for p in psis if p is not None]])
    a1 = Axes((0.0, span), (0.0, top_max), top=MT, bottom=mid)
    # A log axis down to a decade below the smallest p-value, 1e-4 at least and 1e-12 at most.
    p_min = min([1e-4, *[p for p in ps if p is not None and p > 0]])
    p_floor = max(10.0 ** math.floor(math.log10(p_min) - 1e-9), 1e-12) if p_min < 1e-4 else 1e-4
    a2 = Axes((0.0, span), (p_floor, 1.0), ylog=True, top=mid + panel_gap, bottom=H - MB)
    step = next((s for s in _TIME_STEPS if span / s <= 6), nice_step(span, 5))
    first = (-t0.timestamp()) % step  # ticks on round clock times
    tick_secs = [first + k * step for k in range(int((span - first) // step) + 1)]

    def tlabel(sec: float) -> str:
        return (t0 + timedelta(seconds=sec)).strftime("%H:%M:%S" if step < 60 else "%H:%M")

    a1.frame([(s, "") for s in tick_secs], [(v, tick_label(v)) for v in linear_ticks(0.0, top_max, 4)], "",
             "PSI")
    decades = range(math.ceil(math.log10(p_floor)), 1)
    every = max(1, math.ceil(len(decades) / 5))
    a2.frame([(s, tlabel(s)) for s in tick_secs],
             [(10.0**k, "1" if k == 0 else f"1e{k}") for k in decades if k % every == 0],
             f"time (UTC, from {t0.strftime('%Y-%m-%d %H:%M:%S')})", "p-value")
    a1.hline(psi_warn, WARN_COLOR, f"warn {psi_warn:g}", below=True)
    a1.hline(psi_alarm, ALARM_COLOR, f"alarm {psi_alarm:g}")
    a2.hline(p_level, ALARM_COLOR, f"alarm below {p_level:g}")

    def line(ax: Axes, ys: Sequence[float | None], color: str, floor: float | None = None) -> None:
        segs: list[str] = []
        dots: list[str] = []
        pen = "M"
        for x, y in zip(xs, ys, strict=True):
            if y is None:
                pen = "M"
                continue
            yy = max(y, floor) if floor is not None else y
            px, py = pt(ax.x(x)), pt(ax.y(yy))
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
    return plot_svg(title, [*a1.parts, *a2.parts], legend, subtitle=sub)
