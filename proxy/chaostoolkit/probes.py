"""Chaos Toolkit probes: an experiment's verdict, the rollout gate, per-cohort counts and latency.

``verdict`` answers the question the experiment's ``hypothesis:`` asks, with the HTTP status of
GET /experiments/NAME/verdict in ``status`` (200 held, 503 deviated, 425 not decided yet): a tolerance of
``200`` holds only on held, like chaostoolkit's own HTTP probes; a jsonpath tolerance can test
``$.verdict``. Each takes ``configuration`` and ``secrets`` like the actions (proxy/chaostoolkit/actions.py).

No ``from __future__ import annotations``: chaoslib's discovery reads the annotations as types.
"""

import time
from typing import Any
from urllib.parse import quote

from .client import admin_call

__all__ = ["cohort_metrics", "gate", "verdict"]

# The sidecar judges hypotheses in its bookkeeping task every half second; polling faster learns nothing.
POLL_SECONDS = 0.5
# Upper bound of ``wait``: a probe that waits longer than this is a run that should be told to wait.
MAX_WAIT_SECONDS = 600.0


def _state(name: str, configuration: dict[str, Any] | None, secrets: dict[str, Any] | None) -> str:
    _, data = admin_call("GET", "/experiments", configuration, secrets)
    for exp in data["experiments"]:
        if exp["name"] == name:
            return str(exp["state"])
    return "unknown"


def verdict(experiment: str, wait: float = 0.0, configuration: dict[str, Any] | None = None,
            secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The verdict of ``experiment``'s hypothesis: ``{"status": 200|503|425, "verdict":
    "held"|"deviated"|"inconclusive", "checks": {...}}``. With ``wait`` (seconds, at most 600), while the
    verdict is not decided and the experiment runs, ask again every half second until it is or the time is
    up; a stopped experiment gathers no more evidence, so it is answered at once."""
    path = f"/experiments/{quote(experiment, safe='')}/verdict"
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_SECONDS)
    while True:
        status, data = admin_call("GET", path, configuration, secrets, ok=(200, 425, 503))
        if status != 425 or time.monotonic() >= deadline or _state(experiment, configuration, secrets) != "active":
            return {"status": status, **data}
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))


def gate(experiment: str | None = None, configuration: dict[str, Any] | None = None,
         secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rollout gate's verdict (``pass``, ``fail`` or ``inconclusive``) for ``experiment``, or for every
    experiment combined: the kill switch's guards and the hypothesis together (GET /gate)."""
    query = f"?experiment={quote(experiment, safe='')}" if experiment is not None else ""
    _, data = admin_call("GET", "/gate" + query, configuration, secrets)
    return dict(data)


def _quantile(buckets: list[list[Any]], q: float) -> float | None:
    """The q-quantile of a cumulative histogram ([upper bound, count so far], ..., ["+Inf", n]), linear
    within a bucket as Prometheus' histogram_quantile; the last finite bound when it falls in +Inf."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if bound == "+Inf":
                return lower
            return lower + (float(bound) - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = float(bound), count
    return lower


def _cohort(data: dict[str, Any]) -> dict[str, Any]:
    n, errors = int(data["requests"]), int(data["errors"])
    buckets = data["latency_seconds"]["buckets"]
    return {"requests": n, "errors": errors, "error_rate": errors / n if n else None,
            "latency_seconds": {f"p{round(q * 100)}": _quantile(buckets, q) for q in (0.5, 0.95, 0.99)}}


def cohort_metrics(experiment: str, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Requests, errors, error rate and latency quantiles (p50, p95, p99, seconds) of the chaos and
    control cohorts of ``experiment`` (GET /experiments/NAME/report), and ``error_rate_increase``, chaos
    minus control, for a ``range`` tolerance with ``"target": "error_rate_increase"``."""
    _, report = admin_call("GET", f"/experiments/{quote(experiment, safe='')}/report", configuration, secrets)
    chaos, control = _cohort(report["cohorts"]["chaos"]), _cohort(report["cohorts"]["control"])
    increase = (chaos["error_rate"] - (control["error_rate"] or 0.0)) if chaos["error_rate"] is not None else None
    return {"experiment": experiment, "state": report["state"], "chaos": chaos, "control": control,
            "faults_injected": report["cohorts"]["chaos"].get("faults", {}), "error_rate_increase": increase}
