"""Confidence intervals of the hypothesis checks, in the standard library only (no scipy in the sidecar).

- ``wilson``: the Wilson score interval of a proportion (good coverage down to a few dozen trials, never
  outside [0, 1]).
- ``newcombe``: Newcombe's hybrid score interval (his method 10) for a difference of two proportions,
  built from the two Wilson intervals.
- ``quantile_bounds``: the distribution-free order-statistic interval of a quantile, read off a bucketed
  histogram: the ranks come from the binomial (normal approximation with a continuity correction), and each
  rank is widened to its bucket's edges, so the interval is conservative (coverage at least the nominal).
- ``dkw``: the Dvoretzky-Kiefer-Wolfowitz (Massart) bound on an empirical CDF, giving a two-sample interval
  for the Kolmogorov-Smirnov distance.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["dkw", "newcombe", "quantile_bounds", "wilson", "z_of"]


def z_of(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (0.95 -> 1.96)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials; (0, 1) when there are none."""
    if n <= 0:
        return 0.0, 1.0
    z = z_of(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the closed form is exact at the edge; rounding must not leave [0, 1].
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def newcombe(k1: int, n1: int, k2: int, n2: int, confidence: float) -> tuple[float, float]:
    """Interval of p1 - p2 (Newcombe 1998, method 10)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lo), min(1.0, hi)


def _rank_bounds(n: int, q: float, confidence: float) -> tuple[int, int]:
    """1-based ranks (l, u) with P(X_(l) <= quantile <= X_(u)) >= confidence, clamped to [1, n]."""
    z = z_of(confidence)
    sd = math.sqrt(n * q * (1 - q))
    lo = math.floor(n * q - z * sd - 0.5)
    hi = math.ceil(n * q + z * sd + 1.5)
    return max(1, lo), min(n, hi)


def _bucket_of_rank(counts: list[int], rank: int) -> int:
    running = 0
    for i, c in enumerate(counts):
        running += c
        if running >= rank:
            return i
    return len(counts) - 1


def quantile_bounds(bounds: tuple[float, ...], counts: list[int], q: float,
                    confidence: float) -> tuple[float, float, float]:
    """(estimate, low, high) of the ``q`` quantile of a histogram with upper ``bounds`` (the last bucket is
    +Inf) and per-bucket ``counts``. The estimate interpolates linearly in its bucket (Prometheus's
    histogram_quantile); the interval takes the lower edge of the bucket holding rank l and the upper edge
    of the one holding rank u (inf past the last bound)."""
    n = sum(counts)
    edges = (0.0, *bounds, math.inf)
    target = q * n
    running = 0.0
    estimate = math.inf
    for i, c in enumerate(counts):
        if c and running + c >= target:
            lo_edge, hi_edge = edges[i], edges[i + 1]
            # In the +Inf bucket there is nothing to interpolate to: its lower edge, as histogram_quantile does.
            estimate = lo_edge if math.isinf(hi_edge) else lo_edge + (hi_edge - lo_edge) * (target - running) / c
            break
        running += c
    rl, ru = _rank_bounds(n, q, confidence)
    return estimate, edges[_bucket_of_rank(counts, rl)], edges[_bucket_of_rank(counts, ru) + 1]


def dkw(n: int, confidence: float) -> float:
    """Half-width eps with P(sup |F_n - F| > eps) <= 1 - confidence (Massart's constant)."""
    return math.sqrt(math.log(2 / (1 - confidence)) / (2 * n)) if n > 0 else 1.0
