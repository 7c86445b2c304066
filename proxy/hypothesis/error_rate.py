"""error_rate: the chaos cohort's error rate may exceed control's by at most ``max_increase`` (absolute).
In staging (no control cohort) the chaos error rate itself must stay at most ``max_increase``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..declare.fields import spec
from .check import Check, Evidence, Result, at_most, too_few
from .intervals import newcombe, wilson

__all__ = ["ErrorRateCheck", "ErrorRateConfig"]


@dataclass(frozen=True, slots=True)
class ErrorRateConfig:
    max_increase: float | None = spec("probability", None, help="Largest error-rate increase of chaos over "
                                                                "control (0.02: two points); staging: largest "
                                                                "chaos error rate.")
    min_sample: int = spec("integer", 100, minimum=1, help="Requests per cohort before the check decides.")


class ErrorRateCheck(Check):
    name = "error_rate"
    HELP = "Errors (5xx, dropped; 4xx with kill_switch.errors.include_4xx): chaos minus control."
    INTERVAL = "newcombe"
    Config = ErrorRateConfig

    @classmethod
    def asked(cls, config: Any) -> bool:
        return config.max_increase is not None

    @classmethod
    def judge(cls, config: Any, evidence: Evidence, confidence: float) -> Result:
        (n1, n2), (k1, k2) = evidence.requests, evidence.errors
        bound = config.max_increase
        if evidence.staging:
            if n1 < config.min_sample:
                return too_few(cls.name, n1, config.min_sample, f"<= {bound:g}", "wilson", "chaos requests")
            lo, hi = wilson(k1, n1, confidence)
            return at_most(cls.name, k1 / n1, lo, hi, bound, n1, "wilson", "chaos error rate")
        n = min(n1, n2)
        if n < config.min_sample:
            return too_few(cls.name, n, config.min_sample, f"<= {bound:g}", cls.INTERVAL, "requests per cohort")
        lo, hi = newcombe(k1, n1, k2, n2, confidence)
        return at_most(cls.name, k1 / n1 - k2 / n2, lo, hi, bound, n, cls.INTERVAL, "error-rate increase")
