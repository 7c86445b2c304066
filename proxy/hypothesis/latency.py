"""latency: a quantile of the chaos cohort's latency over control's at most ``max_ratio``; in staging, the
chaos quantile itself at most ``max_seconds``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..declare.fields import spec
from .check import INCONCLUSIVE, Check, Evidence, Result, at_most, too_few
from .intervals import quantile_bounds

__all__ = ["LatencyCheck", "LatencyConfig"]


@dataclass(frozen=True, slots=True)
class LatencyConfig:
    quantile: float = spec("probability", 0.99, minimum=0.5, maximum=0.999, help="Which latency quantile.")
    max_ratio: float | None = spec("number", None, minimum=1, help="Largest chaos/control ratio of the quantile.")
    max_seconds: float | None = spec("duration", None, exclusive_minimum=0,
                                     help="Staging (no control): largest chaos quantile.")
    min_sample: int = spec("integer", 200, minimum=10, help="Requests per cohort before the check decides.")


class LatencyCheck(Check):
    name = "latency"
    HELP = "A latency quantile, chaos against control, from the request-duration histograms."
    # Each cohort's quantile gets an order-statistic interval at 1 - (1 - confidence) / 2 (Bonferroni), widened
    # to the histogram's bucket edges; the ratio's interval divides their ends (conservative).
    INTERVAL = "order-statistic"
    Config = LatencyConfig

    @classmethod
    def asked(cls, config: Any) -> bool:
        return config.max_ratio is not None or config.max_seconds is not None

    @classmethod
    def judge(cls, config: Any, evidence: Evidence, confidence: float) -> Result:
        chaos, control = evidence.latency_counts
        n1, n2 = sum(chaos), sum(control)
        q = config.quantile
        if evidence.staging or config.max_ratio is None:
            if config.max_seconds is None:  # a ratio without a control cohort to divide by
                return Result(cls.name, INCONCLUSIVE, None, None, None, f"<= {config.max_ratio:g}x", n1,
                              cls.INTERVAL, "no control cohort to compare with: set max_seconds")
            bound = config.max_seconds
            if n1 < config.min_sample:
                return too_few(cls.name, n1, config.min_sample, f"<= {bound:g}", cls.INTERVAL, "chaos requests")
            est, lo, hi = quantile_bounds(evidence.latency_bounds, chaos, q, confidence)
            return at_most(cls.name, est, lo, hi, bound, n1, cls.INTERVAL, f"chaos p{q * 100:g} seconds")
        n = min(n1, n2)
        if n < config.min_sample:
            return too_few(cls.name, n, config.min_sample, f"<= {config.max_ratio:g}", cls.INTERVAL,
                           "requests per cohort")
        each = 1 - (1 - confidence) / 2
        e1, l1, h1 = quantile_bounds(evidence.latency_bounds, chaos, q, each)
        e2, l2, h2 = quantile_bounds(evidence.latency_bounds, control, q, each)
        est = e1 / e2 if e2 > 0 else math.inf
        lo = l1 / h2 if h2 > 0 and not math.isinf(h2) else 0.0
        hi = h1 / l2 if l2 > 0 else math.inf
        return at_most(cls.name, est, lo, hi, config.max_ratio, n, cls.INTERVAL, f"p{q * 100:g} ratio")
