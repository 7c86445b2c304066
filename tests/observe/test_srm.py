"""Sample ratio mismatch: chi-square with 1 dof, reference values, calibration, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.observe.srm import SRM_ALPHA, sample_ratio_mismatch, srm_check, srm_pvalue


# scipy.stats.chisquare([n_chaos, n_control], expected) computed once (scipy 1.17.1).
@pytest.mark.parametrize(("n_chaos", "n_control", "ratio", "ref"), [
    (1000, 1100, 1.0, 0.029096331741252267),
    (1000, 1200, 1.0, 2.007865612426481e-05),
    (250, 750, 1 / 3, 1.0),
    (5210, 4790, 1.0, 2.6691498031812692e-05),
    (130, 100, 1.0, 0.04791275500844781),
    (4000, 5000, 0.75, 0.002343077710375859),
])
def test_p_values_match_scipy(n_chaos: int, n_control: int, ratio: float, ref: float) -> None:
    assert srm_pvalue(n_chaos, n_control, ratio) == pytest.approx(ref, rel=1e-9)


def test_mismatch_at_the_usual_level() -> None:
    assert SRM_ALPHA == 0.001
    assert sample_ratio_mismatch(1000, 1200, 2, 2)  # p = 2e-5
    assert not sample_ratio_mismatch(1000, 1100, 2, 2)  # p = 0.029: suspicious, not a mismatch
    assert not sample_ratio_mismatch(250, 750, 1, 3)  # 1% vs 3%: as the policy says
    assert sample_ratio_mismatch(500, 500, 1, 3)
    assert sample_ratio_mismatch(1000, 1100, 2, 2, alpha=0.05)


def test_edge_cases() -> None:
    assert srm_pvalue(0, 0, 1.0) == 1.0
    assert srm_pvalue(0, 10, 0.0) == 1.0 and srm_pvalue(1, 10, 0.0) == 0.0
    assert srm_pvalue(10, 0, math.inf) == 1.0 and srm_pvalue(10, 1, math.inf) == 0.0
    with pytest.raises(ValueError):
        srm_pvalue(-1, 3, 1.0)
    with pytest.raises(ValueError):
        srm_pvalue(1, 3, float("nan"))
    with pytest.raises(ValueError):
        srm_check(1, 1, 0, 0)


def test_check_reports_the_shares() -> None:
    r = srm_check(2391, 2421, 2.0, 2.0)
    assert not r.mismatch and r.p_value == pytest.approx(0.6654, abs=1e-4)
    assert r.observed_share == pytest.approx({"chaos": 2391 / 4812, "control": 2421 / 4812})
    assert r.expected_share == {"chaos": 0.5, "control": 0.5}
    assert r.to_dict()["mismatch"] is False
    assert srm_check(0, 0, 1, 1).observed_share == {"chaos": 0.0, "control": 0.0}


def test_seeded_a_a_splits_rarely_mismatch() -> None:
    """2000 experiments routed 2% / 3% as the policy says: p < 0.05 in about 5% and p < 0.001 in about 0.1%."""
    rng = np.random.default_rng(11)
    total = rng.integers(500, 50_000, size=2000)
    chaos = rng.binomial(total, 0.4)
    ps = np.array([srm_pvalue(int(c), int(t - c), 2 / 3) for c, t in zip(chaos, total, strict=True)])
    assert 0.03 < float(np.mean(ps < 0.05)) < 0.07
    assert int(np.sum(ps < SRM_ALPHA)) <= 8


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.floats(1e-3, 1e3))
def test_p_value_properties(a: int, b: int, ratio: float) -> None:
    p = srm_pvalue(a, b, ratio)
    assert 0.0 <= p <= 1.0
    assert srm_pvalue(b, a, 1 / ratio) == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert srm_pvalue(a, a, 1.0) == 1.0
