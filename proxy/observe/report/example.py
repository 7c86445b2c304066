"""A realistic report to draw, deterministic for a seed (the tests render it; so can anyone trying the page)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from ...metrics import LATENCY_BUCKETS
from ..drift import DEFAULT_THRESHOLDS, compare_classes, compare_numeric
from ..srm import srm_check

__all__ = ["example_report"]


def _bucketize(samples: np.ndarray[Any, np.dtype[np.float64]]) -> list[list[Any]]:
    edges = np.array(LATENCY_BUCKETS)
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
