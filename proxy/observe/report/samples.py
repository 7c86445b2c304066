"""The report's data-validation section: the verdicts of ``mlchaos expectations`` over the experiment's samples
(proxy/expectations), shown only when the experiment declares samples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .values import as_mapping, esc

__all__ = ["samples_section"]

_KIND = {"caught": "ok", "missed": "alarm", "broken": "muted"}


def samples_section(data: Mapping[str, Any]) -> str:
    """Empty without samples; the samples written, and the suite's verdict per fault and expectation when
    ``mlchaos expectations`` has run over them."""
    samples = as_mapping(data.get("samples"))
    if not samples:
        return ""
    files = as_mapping(samples.get("files"))
    written = ", ".join(f"{esc(k)}: {v}" for k, v in files.items()) or "none yet"
    parts = ["<h2>Data validation</h2>",
             f'<p class="meta">Samples in {esc(samples.get("dir", "?"))} (files per cohort and fault: {written}).</p>']
    found = as_mapping(data.get("expectations"))
    verdicts = found.get("verdicts") if isinstance(found.get("verdicts"), list) else None
    if not verdicts:
        parts.append(f'<p class="muted">No suite run yet: <code>mlchaos expectations --suite SUITE --samples '
                     f'{esc(samples.get("dir", "DIR"))}</code>.</p>')
        return "\n".join(parts)
    rows = []
    for v in verdicts:
        v = as_mapping(v)
        verdict = str(v.get("verdict", "?"))
        rows.append(f'<tr><td>{esc(v.get("fault", "?"))}</td><td>{esc(v.get("expectation", "?"))}</td>'
                    f'<td><span class="badge {_KIND.get(verdict, "muted")}">{esc(verdict)}</span></td></tr>')
    faults = as_mapping(found.get("faults"))
    summary = " · ".join(f"{esc(k.partition('/')[2] or k)}: {esc(v)}" for k, v in faults.items())
    parts += [f'<p class="meta">Suite {esc(found.get("suite", "?"))}: {summary}. Caught: passed on control, failed '
              "on chaos; missed: passed on both; broken: failed on control.</p>",
              '<table class="grid"><tr><th>fault</th><th>expectation</th><th>verdict</th></tr>'
              f'{"".join(rows)}</table>']
    return "\n".join(parts)
