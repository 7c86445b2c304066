"""agreement: the share of faulted rows whose prediction is unchanged (against the shadow twin, the
model's answer to the unchanged request) at least ``min_share``. A label or argmax that did not change is
unchanged, a number when it is equal; with ``tolerance`` > 0, a row whose numbers (or probabilities) are
all within it of the twin's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..declare.fields import spec
from .check import Check, Evidence, Result, at_least, too_few
from .intervals import wilson

__all__ = ["AgreementCheck", "AgreementConfig"]


@dataclass(frozen=True, slots=True)
class AgreementConfig:
    min_share: float | None = spec("probability", None, help="Smallest share of faulted rows whose prediction "
                                                             "the fault left unchanged.")
    tolerance: float = spec("number", 0.0, minimum=0, help="Numeric outputs: an absolute difference up to "
                                                           "this counts as unchanged (rounded down to the "
                                                           "shadow histogram's edges).")
    output: str | None = spec("string", None, help="The output to judge; default all rows of every output.")
    min_sample: int = spec("integer", 100, minimum=1, help="Rows compared before the check decides.")


def unchanged(evidence: Evidence, output: str, tolerance: float) -> tuple[int, int]:
    """(unchanged rows, rows) of one output."""
    rows = evidence.shadow_rows.get(output, 0)
    delta = evidence.shadow_delta.get(output)
    if tolerance <= 0 or delta is None:
        return evidence.shadow_same.get(output, 0), rows
    bounds, counts = delta
    # Whole buckets whose upper edge is within the tolerance: rounded down, so never more than the truth.
    within = sum(c for edge, c in zip(bounds, counts, strict=False) if edge <= tolerance)
    return within, sum(counts)


class AgreementCheck(Check):
    name = "agreement"
    HELP = "Faulted rows answered as the unchanged request would be (from observe.shadow)."
    INTERVAL = "wilson"
    Config = AgreementConfig

    @classmethod
    def asked(cls, config: Any) -> bool:
        return config.min_share is not None

    @classmethod
    def judge(cls, config: Any, evidence: Evidence, confidence: float) -> Result:
        outputs = [config.output] if config.output is not None else list(evidence.shadow_rows)
        same = total = 0
        for output in outputs:
            k, n = unchanged(evidence, output, config.tolerance)
            same, total = same + k, total + n
        if total < config.min_sample:
            return too_few(cls.name, total, config.min_sample, f">= {config.min_share:g}", cls.INTERVAL,
                           "rows compared with the shadow twin")
        lo, hi = wilson(same, total, confidence)
        return at_least(cls.name, same / total, lo, hi, config.min_share, total, cls.INTERVAL,
                        "unchanged share")
