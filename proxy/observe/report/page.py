"""The report page: the cohort, drift and kill switch tables, the inline CSS, and the plots laid out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...cohort import COHORT_NAMES
from ..drift import DEFAULT_THRESHOLDS
from .charts import classes_plot, drift_plot, histogram_plot, latency_plot
from .samples import samples_section
from .svg import COHORT_COLORS
from .values import (
    as_int,
    as_mapping,
    cohort_buckets,
    esc,
    finite,
    fmt,
    fmt_p,
    fmt_seconds,
    fmt_share,
    latency_quantile,
)

__all__ = ["plot_count", "render_report"]


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{esc(text)}</span>'


def _cohort_table(data: Mapping[str, Any]) -> str:
    cohorts = as_mapping(data.get("cohorts"))
    srm = as_mapping(data.get("srm"))
    observed = as_mapping(srm.get("observed_share"))
    policy = {"chaos": finite(data.get("chaos_percent")), "control": finite(data.get("control_percent"))}
    rows = []
    for name in COHORT_NAMES:
        c = as_mapping(cohorts.get(name))
        req, err = as_int(c.get("requests")), as_int(c.get("errors"))
        b = cohort_buckets(c)
        faults = as_mapping(c.get("faults"))
        fault_text = ", ".join(f"{k}: {as_int(v):,}" for k, v in faults.items()) or "—"
        rows.append(
            f'<tr><td><span class="swatch" style="background:{COHORT_COLORS[name]}"></span>{name}</td>'
            f"<td>{fmt(policy[name])}%</td><td>{fmt_share(observed.get(name))}</td>"
            f"<td>{req:,}</td><td>{err:,}</td><td>{fmt_share(err / req if req else None)}</td>"
            f"<td>{fmt_seconds(latency_quantile(b, 0.5))}</td><td>{fmt_seconds(latency_quantile(b, 0.9))}</td>"
            f"<td>{fmt_seconds(latency_quantile(b, 0.99))}</td><td>{esc(fault_text)}</td></tr>")
    head = ("<tr><th>cohort</th><th>policy share</th><th>observed share</th><th>requests</th><th>errors</th>"
            "<th>error rate</th><th>p50</th><th>p90</th><th>p99</th><th>faults injected</th></tr>")
    return f'<table class="grid">{head}{"".join(rows)}</table>'


def _srm_line(data: Mapping[str, Any]) -> str:
    srm = data.get("srm") if isinstance(data.get("srm"), Mapping) else None
    if srm is None:
        return '<p class="muted">Sample ratio: no data.</p>'
    mismatch = bool(srm.get("mismatch"))
    badge = _badge("sample ratio mismatch", "alarm") if mismatch else _badge("ratio as expected", "ok")
    return (f"<p>Sample ratio check (chi-square, alarm at p &lt; 0.001): p = {fmt_p(srm.get('p_value'))} "
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
        d = as_mapping(entry.get("drift"))
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
            f"<tr><td>{esc(name)}</td><td>{esc(entry.get('kind', ''))}</td><td>{as_int(d.get('n_control')):,}</td>"
            f"<td>{as_int(d.get('n_chaos')):,}</td><td>{fmt(d.get('psi'))}</td><td>{fmt(d.get('ks'))}</td>"
            f"<td>{fmt_p(d.get('ks_p'))}</td><td>{fmt(d.get('js'))}</td><td>{fmt(d.get('wasserstein'))}</td>"
            f"<td>{fmt_p(d.get('chi2_p'))}</td><td>{status}</td></tr>")
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
                text = fmt(v, 4)
            elif isinstance(v, str):
                text = v
            else:
                text = ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)
            rows.append(f"<tr><td>{esc(key)}</td><td>{esc(text[:500])}</td></tr>")
    return rows


def _kill_switch(data: Mapping[str, Any]) -> str:
    ks = data.get("kill_switch")
    if not isinstance(ks, Mapping) or not ks:
        return '<p class="muted">No kill switch state.</p>'
    tripped = bool(ks.get("tripped"))
    badge = _badge("tripped", "alarm") if tripped else _badge("armed, not tripped", "ok")
    return f'<p>Kill switch: {badge}</p><table class="grid kv">{"".join(_kv_rows(ks))}</table>'


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
            if k in th and (f := finite(v)) is not None and f > 0:
                th[k] = f
    cohorts = as_mapping(data.get("cohorts"))

    plots = [latency_plot(cohorts)]
    for out_name, entry in outputs.items():
        plots.append(classes_plot(out_name, entry) if entry.get("kind") == "class"
                     else histogram_plot(out_name, entry))
    for out_name in outputs:
        plots.append(drift_plot(out_name, history, th))

    window = as_mapping(data.get("window"))
    window_text = ""
    if window:
        window_text = (f" · drift window: last {as_int(window.get('max_n')):,} predictions, at most "
                       f"{fmt(window.get('max_age_seconds'))} s")
    any_alarm = any((e.get("alarms") or []) for e in outputs.values())
    verdict = _badge("prediction drift", "alarm") if any_alarm else _badge("no prediction drift alarm", "ok")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mlchaos report: {esc(name)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>mlchaos experiment report: {esc(name)}</h1>",
        f'<p class="meta">state: <b>{esc(data.get("state", "?"))}</b> · chaos {fmt(data.get("chaos_percent"))}% '
        f'vs control {fmt(data.get("control_percent"))}% of matching traffic · generated '
        f'{esc(data.get("generated_at", "?"))}{esc(window_text)} · {verdict}</p>',
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
        samples_section(data),
        "<h2>Kill switch</h2>",
        _kill_switch(data),
        "</main></body></html>",
    ]
    return "\n".join(parts)
