"""The confidence interval benchmarks/paired.py gives for a median (loaded from its file, as a script)."""

from __future__ import annotations

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from tests.benchmark_scripts import load

paired = load("paired")


def below(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) < k), exactly."""
    return sum(math.comb(n, i) for i in range(k)) / 2**n


def test_the_ranks_are_the_narrowest_with_95_percent_coverage() -> None:
    for n in range(6, 201):
        lo, hi = paired.median_interval([float(i) for i in range(n)])
        k = int(lo) + 1  # the k-th smallest of 0..n-1 is k - 1
        assert hi == n - k, n  # symmetric: the k-th largest
        # [x_(k), x_(n-k+1)] misses the median with probability 2 P(B < k): at most 5%, and one rank
        # narrower would miss it more often than that.
        assert 2 * below(n, k) <= 0.05, n
        assert 2 * below(n, k + 1) > 0.05, n


def test_too_few_values_give_the_extremes() -> None:
    # Below 6 values even min..max covers the median less than 95% of the time: paired.py refuses them.
    assert paired.median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)
    assert 2 * below(5, 1) > 0.05


@given(st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=6, max_size=80))
def test_the_interval_holds_the_median_and_is_made_of_the_values(values: list[float]) -> None:
    lo, hi = paired.median_interval(values)
    assert lo in values and hi in values
    assert lo <= statistics.median(values) <= hi
