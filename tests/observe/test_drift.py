"""Drift statistics: reference values, the seeded shift and A/A scenarios on the demo model, calibration of
the KS p-value, and properties (finite, in range, symmetric, zero on identical samples)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from proxy.demo.model import predict, sample_rows
from proxy.observe.drift import (
    DEFAULT_THRESHOLDS,
    STATISTICS,
    Thresholds,
    chi2_sf,
    chi_square,
    compare_classes,
    compare_numeric,
    js_categorical,
    js_distance,
    kolmogorov_sf,
    ks,
    learn_edges,
    psi,
    psi_categorical,
    quantile_edges,
    wasserstein_normalized,
)

# ------------------------------------------------------------------------------------- reference values
# Computed once with scipy 1.17.1 (stats.ks_2samp(a, b, method="exact"), special.kolmogorov, stats.chi2.sf,
# stats.chi2_contingency(correction=False), spatial.distance.jensenshannon(base=2),
# stats.wasserstein_distance / np.std(pooled)); scipy is not a dependency.


def _sines(n: int, f: float, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return np.sin(np.arange(n) * f) * scale + shift


# (n, m, scale, shift, D, exact p, normalized W1): a = sin(1.7 i), b = sin(2.3 j) * scale + shift.
KS_REFERENCE = [
    (60, 60, 1.0, 0.35, 0.26666666666666666, 0.027628318680706847, 0.4876294036670437),
    (500, 500, 1.1, 0.08, 0.184, 8.2169644411341e-08, 0.1147787728192998),
    (40, 70, 1.0, 0.3, 0.2714285714285714, 0.038619390643120595, 0.4082145172448793),
    (300, 450, 1.2, 0.05, 0.2111111111111111, 1.7618830290988584e-07, 0.16722099159466983),
    (7, 9, 1.0, 0.5, 0.3492063492063492, 0.5727272727272728, 0.6000566674987252),
    # n·m above EXACT_KS_MAX_PRODUCT: the asymptotic distribution (scipy's exact p is 9.17e-05).
    (1000, 1500, 1.0, 0.04, 0.091, 9.173248960402165e-05, 0.05487064599579817),
]


@pytest.mark.parametrize(("n", "m", "scale", "shift", "d_ref", "p_ref", "w_ref"), KS_REFERENCE)
def test_ks_and_wasserstein_match_scipy(n: int, m: int, scale: float, shift: float, d_ref: float, p_ref: float,
                                        w_ref: float) -> None:
    a, b = _sines(n, 1.7), _sines(m, 2.3, scale, shift)
    d, p = ks(a, b)
    assert d == pytest.approx(d_ref, abs=1e-12)
    if n * m <= 1_000_000:
        assert p == pytest.approx(p_ref, rel=1e-6, abs=1e-12)  # exact regimes
    else:
        assert p == pytest.approx(p_ref, rel=0.1)  # asymptotic: 8.74e-05
    assert wasserstein_normalized(a, b) == pytest.approx(w_ref, rel=1e-9)


@pytest.mark.parametrize(("lam", "ref"), [
    (0.3, 0.9999906941986655), (0.5, 0.9639452436648751), (1.0, 0.26999967167735456),
    (1.36, 0.049485876755377876), (2.0, 0.0006709252557796953), (3.0, 3.045995948942526e-08),
])
def test_kolmogorov_series_matches_scipy(lam: float, ref: float) -> None:
    assert kolmogorov_sf(lam)[0] == pytest.approx(ref, rel=1e-12)


def test_kolmogorov_sf_edges() -> None:
    assert kolmogorov_sf([0.0, -1.0])[0] == 1.0
    assert kolmogorov_sf(50.0)[0] == 0.0
    values = kolmogorov_sf(np.linspace(0.01, 4, 200))
    assert np.all(np.diff(values) <= 1e-15) and np.all((values >= 0) & (values <= 1))


@pytest.mark.parametrize(("x", "dof", "ref"), [
    (3.841458820694124, 1, 0.04999999999999989), (1.0, 2, 0.6065306597126334), (7.5, 3, 0.0575584519726364),
    (20.0, 10, 0.029252688076961124), (30.0, 19, 0.05179845889302389), (0.2, 5, 0.9991138612111875),
])
def test_chi2_sf_matches_scipy(x: float, dof: int, ref: float) -> None:
    assert chi2_sf(x, dof) == pytest.approx(ref, rel=1e-10)


def test_chi2_sf_edges() -> None:
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(1e4, 4) == 0.0
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)


CONTROL_CLASSES = {"setosa": 330, "versicolor": 340, "virginica": 330}
CHAOS_CLASSES = {"setosa": 250, "versicolor": 420, "virginica": 300, "weird": 30}


def test_categorical_statistics_match_references() -> None:
    stat, p = chi_square(CONTROL_CLASSES, CHAOS_CLASSES)
    assert stat == pytest.approx(50.88410681877106, rel=1e-12)
    assert p == pytest.approx(5.178264778767532e-11, rel=1e-9)
    assert js_categorical(CONTROL_CLASSES, CHAOS_CLASSES) == pytest.approx(0.15016955300417334, rel=1e-12)
    # PSI with proportions floored at 1e-4 ("weird" is 0 in control).
    assert psi_categorical(CONTROL_CLASSES, CHAOS_CLASSES) == pytest.approx(0.21251766780758904, rel=1e-12)
    assert chi_square({"a": 5}, {"a": 9}) == (0.0, 1.0)


def test_psi_by_hand() -> None:
    expected = np.arange(100.0)  # quartile edges 24.75, 49.5, 74.25: 25 values in each bin
    actual = np.concatenate([np.full(10, 10.0), np.full(20, 30.0), np.full(30, 60.0), np.full(40, 90.0)])
    p, q = np.full(4, 0.25), np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(expected, actual, bins=4) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    # Explicit edges; a value on an edge belongs to the bin the edge closes (Prometheus "le").
    assert psi([1.0, 2.0], [1.0, 1.0], edges=[1.0]) == pytest.approx(
        (1.0 - 0.5) * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))


def test_quantile_edges_merge_ties() -> None:
    assert quantile_edges([3.0] * 50, 10).tolist() == [3.0]
    assert list(quantile_edges(np.arange(1000.0), 4)) == pytest.approx([249.75, 499.5, 749.25])
    with pytest.raises(ValueError):
        quantile_edges([1.0], 1)


def test_non_finite_values_are_dropped_and_empty_samples_refused() -> None:
    a = np.array([0.1, 0.4, np.nan, 0.2, np.inf, 0.9])
    assert ks(a, [0.1, 0.4, 0.2, 0.9]) == (0.0, 1.0)
    assert psi(a, [0.1, 0.4, 0.2, 0.9]) == 0.0
    for f in (psi, ks, js_distance, wasserstein_normalized):
        with pytest.raises(ValueError, match="no finite values"):
            f([np.nan], [1.0])
    with pytest.raises(ValueError):
        psi_categorical({}, {"a": 1})
    with pytest.raises(ValueError):
        chi_square({"a": -1}, {"a": 1})


# ------------------------------------------------------------------------------- learned bucket edges

def test_learn_edges_are_quantiles_rounded_to_three_digits() -> None:
    edges = learn_edges(np.linspace(0.0, 1.0, 1001), n=4)
    assert edges == (0.2, 0.4, 0.6, 0.8)
    rng = np.random.default_rng(3)
    edges = learn_edges(rng.lognormal(0.0, 1.0, 5000), n=12)
    assert len(edges) == 12 and edges == tuple(sorted(set(edges)))
    assert all(float(f"{e:.3g}") == e for e in edges)


def test_learn_edges_keep_distinct_quantiles_apart() -> None:
    # 3 significant digits would merge these quantiles into 1000: more digits are kept instead.
    edges = learn_edges(np.linspace(1000.1, 1000.9, 101), n=3)
    assert len(edges) == 3 and edges[0] < edges[1] < edges[2]
    assert learn_edges([7.0] * 30) == (7.0,)
    with pytest.raises(ValueError):
        learn_edges([], n=3)


@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=300), st.integers(1, 20))
def test_learn_edges_property(values: list[float], n: int) -> None:
    edges = learn_edges(values, n)
    assert 1 <= len(edges) <= n
    assert all(math.isfinite(e) for e in edges)
    assert edges == tuple(sorted(set(edges)))


# ------------------------------------------------------------------------ seeded scenarios on the demo model

N = 2000
SEED = 20261201


def _demo_predictions(rng: np.random.Generator, n: int, scale: float = 1.0, offset: float = 0.0,
                      petal_length_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The demo iris model on realistic rows, the rows shifted like the ``shift`` fault (x * scale + offset):
    P(virginica) as a numeric score, the confidence, and the label counts."""
    x = sample_rows(rng, n) * scale + offset
    x[:, 2] += petal_length_offset
    labels, proba = predict(x)
    counts = {str(k): int(c) for k, c in zip(*np.unique(labels, return_counts=True), strict=True)}
    return proba[:, 2], proba.max(axis=1), counts


def test_shift_fault_raises_every_statistic_past_its_alarm_level() -> None:
    rng = np.random.default_rng(SEED)
    score_c, conf_c, cls_c = _demo_predictions(rng, N)
    score_x, conf_x, cls_x = _demo_predictions(rng, N, scale=1.5, offset=1.0)
    for control, chaos in ((score_c, score_x), (conf_c, conf_x)):
        r = compare_numeric(control, chaos)
        assert r.psi > 0.25 and r.ks_p is not None and r.ks_p < 0.05
        assert r.js > 0.1 and r.wasserstein is not None and r.wasserstein > 0.1
        assert set(r.alarms) == {"psi", "ks", "js", "wasserstein"}
    rc = compare_classes(cls_c, cls_x)
    assert rc.psi > 0.25 and rc.chi2_p is not None and rc.chi2_p < 0.05
    assert {"psi", "chi2"} <= set(rc.alarms)


def test_a_mild_shift_still_crosses_psi_and_ks_levels() -> None:
    # Only petal length, +0.3 cm on every row: a skew a person would miss in the features.
    rng = np.random.default_rng(SEED)
    score_c, _, _ = _demo_predictions(rng, N)
    score_x, _, _ = _demo_predictions(rng, N, petal_length_offset=0.3)
    r = compare_numeric(score_c, score_x)
    assert r.psi > 0.2 and r.ks_p is not None and r.ks_p < 1e-6
    assert "psi" in r.alarms and "ks" in r.alarms


def test_a_a_stays_below_every_level() -> None:
    rng = np.random.default_rng(SEED)
    score_a, conf_a, cls_a = _demo_predictions(rng, N)
    score_b, conf_b, cls_b = _demo_predictions(rng, N)
    for a, b in ((score_a, score_b), (conf_a, conf_b)):
        r = compare_numeric(a, b)
        assert r.psi < 0.1 and r.ks_p is not None and r.ks_p > 0.05
        assert r.js < 0.1 and r.wasserstein is not None and r.wasserstein < 0.1
        assert r.alarms == () and r.warnings == ()
    rc = compare_classes(cls_a, cls_b)
    assert rc.psi < 0.1 and rc.chi2_p is not None and rc.chi2_p > 0.05 and rc.alarms == ()


def _binomial_band(n: int, p: float, tail: float = 0.0005) -> tuple[int, int]:
    """The central 1 - 2·tail interval of Binomial(n, p)."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    cdf = np.cumsum(pmf)
    return int(np.searchsorted(cdf, tail)), int(np.searchsorted(cdf, 1 - tail))


@pytest.mark.parametrize(("n", "m"), [(2000, 2000), (300, 500), (1500, 2000)])
def test_ks_p_value_is_calibrated_over_seeded_a_a_repetitions(n: int, m: int) -> None:
    """200 A/A comparisons (equal sizes: the exact sum; 300 + 500: exact path counting; 1500 + 2000: the
    asymptotic distribution): p < 0.05 in about 5% of them, within the 99.9% binomial band. On the demo
    model's predictions (rows rounded to 0.1 cm, so ~3% of scores are ties and KS is a little conservative)
    and on continuous normal samples, whose p-values also spread evenly (mean near 1/2)."""
    rng = np.random.default_rng(SEED + n + m)
    reps = 200
    lo, hi = _binomial_band(reps, 0.05)
    demo_ps, psis = [], []
    for _ in range(reps):
        a, _, _ = _demo_predictions(rng, n)
        b, _, _ = _demo_predictions(rng, m)
        demo_ps.append(ks(a, b)[1])
        psis.append(psi(a, b))
    normal_ps = [ks(rng.normal(size=n), rng.normal(size=m))[1] for _ in range(reps)]
    for ps in (demo_ps, normal_ps):
        false_alarms = sum(p < 0.05 for p in ps)
        assert lo <= false_alarms <= hi, (false_alarms, (lo, hi))
    assert 0.42 < float(np.mean(normal_ps)) < 0.58
    assert 0.42 < float(np.mean(demo_ps)) < 0.65
    if min(n, m) >= 1000:
        assert max(psis) < 0.1  # PSI never even warns on an A/A at these sizes


def test_alarms_wait_for_enough_samples() -> None:
    rng = np.random.default_rng(SEED)
    a, b = rng.normal(size=100), rng.normal(1.0, 1.0, size=100)
    r = compare_numeric(a, b)
    assert r.psi > DEFAULT_THRESHOLDS.psi_alarm and r.alarms == ("ks",)  # distances: too few samples
    r = compare_numeric(a, b, thresholds=Thresholds(min_samples=50))
    assert {"psi", "ks", "js", "wasserstein"} == set(r.alarms)
    r = compare_numeric(a[:10], b[:10])
    assert r.alarms == ()  # below min_samples_test


def test_psi_between_the_levels_is_a_warning() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=4000), rng.normal(0.4, 1.0, size=4000)
    r = compare_numeric(a, b, thresholds=Thresholds(js=1.0, wasserstein=1.0, ks_p=0.0))
    assert 0.1 < r.psi < 0.2 and r.warnings == ("psi",) and r.alarms == ()


def test_report_dicts() -> None:
    rng = np.random.default_rng(2)
    r = compare_numeric(rng.normal(size=300), rng.normal(size=300))
    assert set(r.statistics()) == {"psi", "ks", "ks_p", "js", "wasserstein"}
    d = r.to_dict()
    assert set(STATISTICS) <= set(d) and d["chi2"] is None and d["n_control"] == 300
    rc = compare_classes(CONTROL_CLASSES, CHAOS_CLASSES)
    assert set(rc.statistics()) == {"psi", "js", "chi2", "chi2_p"} and rc.kind == "class"
    assert all(isinstance(v, float) for v in rc.statistics().values())


# ----------------------------------------------------------------------------------------------- properties

samples = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=120)


@given(samples, samples)
def test_numeric_statistics_are_finite_and_in_range(a: list[float], b: list[float]) -> None:
    p = psi(a, b)
    d, pv = ks(a, b)
    j = js_distance(a, b)
    w = wasserstein_normalized(a, b)
    assert math.isfinite(p) and p >= 0
    assert 0.0 <= d <= 1.0 and 0.0 <= pv <= 1.0
    assert 0.0 <= j <= 1.0
    assert math.isfinite(w) and w >= 0


@given(samples, samples)
def test_symmetric_statistics(a: list[float], b: list[float]) -> None:
    assert ks(a, b) == pytest.approx(ks(b, a), abs=1e-12)
    assert js_distance(a, b) == pytest.approx(js_distance(b, a), abs=1e-12)
    assert wasserstein_normalized(a, b) == pytest.approx(wasserstein_normalized(b, a), rel=1e-9, abs=1e-12)


@given(samples)
def test_identical_samples_have_no_drift(a: list[float]) -> None:
    assert psi(a, a) == 0.0
    assert ks(a, a) == (0.0, 1.0)
    assert js_distance(a, a) < 1e-6
    assert wasserstein_normalized(a, a) == 0.0
    shuffled = list(reversed(a))
    assert psi(a, shuffled) == 0.0 and ks(a, shuffled)[0] == 0.0


@given(samples, samples, st.floats(0.01, 100.0), st.floats(-1e3, 1e3))
def test_normalized_wasserstein_ignores_units(a: list[float], b: list[float], scale: float, offset: float) -> None:
    x, y = np.array(a), np.array(b)
    # Values closer than float precision at the offset's magnitude merge once shifted: no invariance to test.
    spread = float(np.ptp(np.concatenate([x, y])))
    assume(spread == 0.0 or spread * min(scale, 1.0) > 1e-9 * max(1.0, abs(offset), float(np.abs(x).max())))
    w = wasserstein_normalized(x, y)
    assert wasserstein_normalized(x * scale + offset, y * scale + offset) == pytest.approx(w, rel=1e-6, abs=1e-6)


counts = st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 1000), min_size=1).filter(
    lambda d: sum(d.values()) > 0)


@given(counts, counts)
def test_categorical_statistics_properties(a: dict[str, int], b: dict[str, int]) -> None:
    assert psi_categorical(a, b) >= 0.0
    j = js_categorical(a, b)
    assert 0.0 <= j <= 1.0 and j == pytest.approx(js_categorical(b, a), abs=1e-12)
    stat, p = chi_square(a, b)
    assert stat >= 0.0 and 0.0 <= p <= 1.0
    assert chi_square(b, a) == pytest.approx((stat, p), rel=1e-9, abs=1e-12)
    assert psi_categorical(a, a) == 0.0 and js_categorical(a, a) < 1e-6 and chi_square(a, a)[1] == pytest.approx(1.0)
