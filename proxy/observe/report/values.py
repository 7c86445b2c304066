"""Reading the report's JSON tolerantly, and formatting its numbers: every value may be missing, null, NaN or
of the wrong type (the page is drawn from whatever the admin API or a saved file holds)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = ["as_int", "as_mapping", "cohort_buckets", "esc", "finite", "fmt", "fmt_p", "fmt_seconds", "fmt_share",
           "latency_quantile", "parse_time", "window_values"]


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def as_mapping(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def finite(x: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities, bools and non-numbers."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def fmt(x: Any, digits: int = 3) -> str:
    f = finite(x)
    if f is None:
        return "—"
    if f != 0 and (abs(f) < 10 ** -digits or abs(f) >= 10**6):
        return f"{f:.{max(digits - 1, 1)}e}"
    return f"{f:.{digits}g}" if abs(f) < 1 else f"{f:,.{digits}g}" if abs(f) >= 1000 else f"{f:.{digits}g}"


def fmt_p(x: Any) -> str:
    f = finite(x)
    if f is None:
        return "—"
    return f"{f:.2e}" if f < 0.001 else f"{f:.3f}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1.0:
        return f"{s * 1000:.3g} ms"
    return f"{s:.3g} s"


def as_int(x: Any) -> int:
    f = finite(x)
    return int(f) if f is not None else 0


def cohort_buckets(cohort: Mapping[str, Any]) -> list[tuple[float, float]]:
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
            le = finite(le_raw)
        cum = finite(cum_raw)
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


def window_values(side: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    raw = side.get("values") if isinstance(side, Mapping) else None
    if not isinstance(raw, list):
        return np.empty(0)
    arr = np.array([f for v in raw if (f := finite(v)) is not None], dtype=np.float64)
    return arr


def parse_time(s: Any) -> datetime | None:
    if not isinstance(s, str):
        return None
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def fmt_share(x: Any) -> str:
    f = finite(x)
    return "—" if f is None else f"{f:.2%}"
