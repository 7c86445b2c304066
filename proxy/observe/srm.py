"""Sample ratio mismatch: are the chaos and control cohorts the sizes the policy says?

The policy gives each cohort a share of the matching traffic (``chaos``, ``control`` percent), so of the
requests that landed in either cohort a fraction ``chaos / (chaos + control)`` should be chaos. A
chi-square goodness-of-fit test with 1 degree of freedom on the two counts says how surprising the
observed split is; its p-value is ``erfc(√(χ²/2))``. A mismatch (p < ``alpha`` = 0.001, the usual SRM
level, strict because the check runs continuously) means the comparison between the cohorts is biased
(a sticky key some clients do not send, retries, a cache in front) and is exported as
``mlchaos_sample_ratio_mismatch{experiment} 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SRM_ALPHA", "SrmResult", "sample_ratio_mismatch", "srm_check", "srm_pvalue"]

SRM_ALPHA = 0.001


def srm_pvalue(n_chaos: int, n_control: int, expected_ratio: float) -> float:
    """p-value of the observed counts when ``n_chaos / n_control`` should be ``expected_ratio``
    (the chaos share over the control share: 1.0 for 2% vs 2%).

    1.0 with no requests. A ratio of 0 (or ``math.inf``) expects no chaos (no control) requests at all:
    p is 1.0 if there are none and 0.0 otherwise.
    """
    if n_chaos < 0 or n_control < 0:
        raise ValueError("counts must be non-negative")
    if math.isnan(expected_ratio) or expected_ratio < 0:
        raise ValueError("expected_ratio must be a non-negative number")
    total = n_chaos + n_control
    if total == 0:
        return 1.0
    if expected_ratio == 0.0:
        return 1.0 if n_chaos == 0 else 0.0
    if math.isinf(expected_ratio):
        return 1.0 if n_control == 0 else 0.0
    share = expected_ratio / (1.0 + expected_ratio)
    e_chaos, e_control = total * share, total * (1.0 - share)
    stat = (n_chaos - e_chaos) ** 2 / e_chaos + (n_control - e_control) ** 2 / e_control
    return math.erfc(math.sqrt(stat / 2.0))


def sample_ratio_mismatch(n_chaos: int, n_control: int, chaos_share: float, control_share: float,
                          alpha: float = SRM_ALPHA) -> bool:
    """True when the counts are too unlikely (p < ``alpha``) under the policy's shares (percent or
    fractions: only their ratio matters)."""
    return srm_check(n_chaos, n_control, chaos_share, control_share, alpha).mismatch


@dataclass(frozen=True)
class SrmResult:
    p_value: float
    mismatch: bool
    # Of the requests in either cohort, the fraction in each (0.0 with none).
    observed_share: dict[str, float]
    expected_share: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        """The report's ``srm`` object."""
        return {"p_value": self.p_value, "mismatch": self.mismatch, "observed_share": dict(self.observed_share),
                "expected_share": dict(self.expected_share)}


def srm_check(n_chaos: int, n_control: int, chaos_share: float, control_share: float,
              alpha: float = SRM_ALPHA) -> SrmResult:
    """The SRM test with the observed and expected shares, for the report and ``mlchaos_cohort_share``."""
    if chaos_share < 0 or control_share < 0 or chaos_share + control_share <= 0:
        raise ValueError("shares must be non-negative and not both zero")
    ratio = math.inf if control_share == 0 else chaos_share / control_share
    p = srm_pvalue(n_chaos, n_control, ratio)
    total = n_chaos + n_control
    observed = {"chaos": n_chaos / total if total else 0.0, "control": n_control / total if total else 0.0}
    s = chaos_share + control_share
    expected = {"chaos": chaos_share / s, "control": control_share / s}
    return SrmResult(p_value=p, mismatch=p < alpha, observed_share=observed, expected_share=expected)
