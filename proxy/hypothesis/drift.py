"""drift: the Kolmogorov-Smirnov distance between chaos and control predictions of a numeric output at
most ``max_ks``, over the observer's drift window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..declare.fields import spec
from .check import INCONCLUSIVE, Check, Evidence, Result, at_most, too_few
from .intervals import dkw

__all__ = ["DriftCheck", "DriftConfig"]


@dataclass(frozen=True, slots=True)
class DriftConfig:
    max_ks: float | None = spec("probability", None, help="Largest KS distance between chaos and control "
                                                          "predictions.")
    output: str | None = spec("string", None, help="The output to judge; default the first numeric one.")
    min_sample: int = spec("integer", 200, minimum=10, help="Predictions per cohort before the check decides.")


class DriftCheck(Check):
    name = "drift"
    HELP = "Prediction drift of chaos against control (KS distance) stays within a bound."
    # |D_hat - D| <= eps_chaos + eps_control with each DKW bound at 1 - (1 - confidence) / 2: an interval of
    # the population KS distance with coverage at least ``confidence``.
    INTERVAL = "dkw"
    Config = DriftConfig

    @classmethod
    def asked(cls, config: Any) -> bool:
        return config.max_ks is not None

    @classmethod
    def judge(cls, config: Any, evidence: Evidence, confidence: float) -> Result:
        tol = f"<= {config.max_ks:g}"
        name = config.output if config.output is not None else next(iter(evidence.ks), None)
        got = evidence.ks.get(name) if name is not None else None
        if got is None:
            return Result(cls.name, INCONCLUSIVE, None, None, None, tol, 0, cls.INTERVAL,
                          "no numeric output with drift yet" + (f" (output {name!r})" if name else ""))
        ks, n1, n2 = got
        n = min(n1, n2)
        if n < config.min_sample:
            return too_few(cls.name, n, config.min_sample, tol, cls.INTERVAL, "predictions per cohort")
        each = 1 - (1 - confidence) / 2
        eps = dkw(n1, each) + dkw(n2, each)
        return at_most(cls.name, ks, max(0.0, ks - eps), min(1.0, ks + eps), config.max_ks, n, cls.INTERVAL,
                       f"KS distance of {name}")
