"""Each hypothesis check on seeded evidence: held, deviated and inconclusive; and the combination."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from proxy.hypothesis.check import DEVIATED, HELD, INCONCLUSIVE, Evidence, Result, combine, hypothesis_values
from proxy.hypothesis.intervals import newcombe, quantile_bounds, wilson
from proxy.hypothesis.judge import judge_evidence
from proxy.hypothesis.marker import marker_bytes, seen
from proxy.metrics import LATENCY_BUCKETS, Distribution
from proxy.policy.model import HypothesisSpec
from tests.conftest import policy_from

CONF = 0.95


def spec_of(hypothesis: dict[str, object]) -> HypothesisSpec:
    policy = policy_from("http://127.0.0.1:1", {"experiments": [{"name": "e", "chaos": 1, "hypothesis": hypothesis}]})
    spec: HypothesisSpec = policy.experiments[0].hypothesis
    return spec


def errors_evidence(seed: int, n: int, p_chaos: float, p_control: float) -> Evidence:
    rng = random.Random(seed)
    k1 = sum(rng.random() < p_chaos for _ in range(n))
    k2 = sum(rng.random() < p_control for _ in range(n))
    return Evidence(requests=(n, n), errors=(k1, k2))


def latency_evidence(seed: int, n: int, chaos_scale: float) -> Evidence:
    rng = random.Random(seed)
    chaos, control = Distribution(LATENCY_BUCKETS), Distribution(LATENCY_BUCKETS)
    for _ in range(n):
        control.observe(rng.lognormvariate(-4.0, 0.4))  # ~18 ms median
        chaos.observe(chaos_scale * rng.lognormvariate(-4.0, 0.4))
    return Evidence(latency_bounds=LATENCY_BUCKETS, latency_counts=(chaos.counts, control.counts))


def verdict(hypothesis: dict[str, object], evidence: Evidence) -> Result:
    v = judge_evidence("e", spec_of(hypothesis), evidence)
    assert len(v.checks) == 1
    assert v.status == v.checks[0].status
    return v.checks[0]


@pytest.mark.parametrize(("p_chaos", "n", "expected"), [
    (0.01, 4000, HELD),  # same error rate as control: the whole interval is below +2 points
    (0.10, 4000, DEVIATED),  # +9 points: wholly above
    (0.03, 4000, INCONCLUSIVE),  # +2 points: the interval straddles the tolerance
    (0.10, 50, INCONCLUSIVE),  # below min_sample
])
def test_error_rate(p_chaos: float, n: int, expected: str) -> None:
    r = verdict({"error_rate": {"max_increase": 0.02, "min_sample": 100}}, errors_evidence(7, n, p_chaos, 0.01))
    assert r.status == expected, r.reason
    if n >= 100:
        assert r.estimate is not None and r.low is not None and r.high is not None
        assert r.low <= r.estimate <= r.high
        assert r.interval == "newcombe"


def test_error_rate_in_staging_judges_the_chaos_rate_alone() -> None:
    ev = replace(errors_evidence(3, 2000, 0.005, 0.0), requests=(2000, 0), staging=True)
    r = verdict({"error_rate": {"max_increase": 0.02}}, ev)
    assert (r.status, r.interval) == (HELD, "wilson")


@pytest.mark.parametrize(("scale", "n", "expected"), [
    (1.0, 3000, HELD),  # same latency: the p99 ratio is within 3x
    (6.0, 3000, DEVIATED),  # six times slower: wholly beyond 3x
    (6.0, 100, INCONCLUSIVE),  # below min_sample
])
def test_latency_ratio(scale: float, n: int, expected: str) -> None:
    r = verdict({"latency": {"quantile": 0.99, "max_ratio": 3, "min_sample": 200}}, latency_evidence(11, n, scale))
    assert r.status == expected, r.reason
    if expected != INCONCLUSIVE:
        assert r.low is not None and r.high is not None and r.estimate is not None
        assert r.low <= r.estimate <= r.high


def test_latency_ratio_straddling_the_tolerance_is_inconclusive() -> None:
    # Three times slower against a 3x tolerance: the bucketed interval must cover 3.
    r = verdict({"latency": {"quantile": 0.5, "max_ratio": 3, "min_sample": 200}}, latency_evidence(5, 3000, 3.0))
    assert r.status == INCONCLUSIVE, r.reason


@pytest.mark.parametrize(("ks", "n", "expected"), [
    (0.02, 5000, HELD), (0.5, 5000, DEVIATED), (0.2, 5000, INCONCLUSIVE), (0.5, 50, INCONCLUSIVE)])
def test_drift_ks_bound(ks: float, n: int, expected: str) -> None:
    r = verdict({"drift": {"max_ks": 0.2}}, Evidence(ks={"score": (ks, n, n)}))
    assert r.status == expected, r.reason


def test_drift_without_a_numeric_output_is_inconclusive() -> None:
    assert verdict({"drift": {"max_ks": 0.2}}, Evidence()).status == INCONCLUSIVE


@pytest.mark.parametrize(("same", "rows", "expected"), [
    (990, 1000, HELD), (500, 1000, DEVIATED), (905, 1000, INCONCLUSIVE), (10, 10, INCONCLUSIVE)])
def test_agreement(same: int, rows: int, expected: str) -> None:
    ev = Evidence(shadow_rows={"label": rows}, shadow_same={"label": same}, shadow_flips={"label": rows - same})
    r = verdict({"agreement": {"min_share": 0.9, "min_sample": 100}}, ev)
    assert r.status == expected, r.reason
    assert r.interval == "wilson"


def test_agreement_with_a_tolerance_reads_the_shadow_delta_histogram() -> None:
    dist = Distribution((0.001, 0.01, 0.1, 1.0))
    rng = random.Random(2)
    for _ in range(1000):
        dist.observe(abs(rng.gauss(0, 0.003)))  # nearly all within 0.01, few within 0.001
    ev = Evidence(shadow_rows={"score": 1000}, shadow_same={"score": 0},
                  shadow_delta={"score": (dist.bounds, dist.counts)})
    assert verdict({"agreement": {"min_share": 0.9, "tolerance": 0.01}}, ev).status == HELD
    assert verdict({"agreement": {"min_share": 0.9, "tolerance": 0.001}}, ev).status == DEVIATED
    assert verdict({"agreement": {"min_share": 0.9}}, ev).status == DEVIATED  # exact: none unchanged


@pytest.mark.parametrize(("k", "n", "expected"), [
    (200, 200, HELD), (20, 200, DEVIATED), (190, 200, INCONCLUSIVE), (5, 5, INCONCLUSIVE)])
def test_marker_share(k: int, n: int, expected: str) -> None:
    r = verdict({"marker": {"header": "x-model-version: fallback", "min_share": 0.95}}, Evidence(marker=(k, n)))
    assert r.status == expected, r.reason


def test_marker_is_found_in_header_lines_case_insensitively_by_name_only() -> None:
    m = marker_bytes(spec_of({"marker": {"header": "X-Model-Version:  fallback"}}).config("marker").header)
    assert seen(b"content-type: application/json\r\nX-MODEL-VERSION: fallback\r\n", m)
    assert seen(b"x-model-version:fallback\r\n", m)
    assert not seen(b"x-model-version: Fallback\r\n", m)
    assert not seen(b"x-model-version: primary\r\n", m)
    assert not seen(b"x-other-model-version: fallback\r\n", m)
    assert not seen(b"", m)


def test_a_marker_that_is_no_header_is_refused() -> None:
    from proxy.declare.errors import PolicyError
    with pytest.raises(PolicyError, match=r"hypothesis\.marker\.header"):
        spec_of({"marker": {"header": "fallback"}})


def test_combine_and_the_metric_values() -> None:
    def r(status: str) -> Result:
        return Result("c", status, None, None, None, "", 0, "", "")  # type: ignore[arg-type]
    assert combine([r(HELD), r(DEVIATED), r(INCONCLUSIVE)]) == DEVIATED
    assert combine([r(HELD), r(HELD)]) == HELD
    assert combine([r(HELD), r(INCONCLUSIVE)]) == INCONCLUSIVE
    assert combine([]) == INCONCLUSIVE
    v = judge_evidence("e", spec_of({"error_rate": {"max_increase": 0.02}, "drift": {"max_ks": 0.1}}),
                       errors_evidence(1, 3000, 0.2, 0.01))
    assert v.status == DEVIATED
    assert hypothesis_values(v) == {"error_rate": -1.0, "drift": 0.0, "verdict": -1.0}
    assert hypothesis_values(None) == {}


def test_undeclared_checks_are_not_asked() -> None:
    assert spec_of({}).asked() == []
    assert [c.name for c, _ in spec_of({"latency": {"max_ratio": 2}, "marker": {"header": "a: b"}}).asked()] == [
        "latency", "marker"]


def test_intervals_are_ordered_and_bounded() -> None:
    for k, n in ((0, 10), (10, 10), (3, 50), (500, 1000)):
        lo, hi = wilson(k, n, CONF)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo, hi = newcombe(30, 100, 10, 100, CONF)
    assert lo < 0.2 < hi
    est, lo, hi = quantile_bounds((1.0, 2.0, 3.0), [0, 100, 0, 0], 0.5, CONF)
    assert (lo, hi) == (1.0, 2.0) and lo <= est <= hi


def test_a_latency_ratio_without_control_cannot_decide() -> None:
    ev = replace(latency_evidence(4, 3000, 1.0), staging=True)
    assert verdict({"latency": {"max_ratio": 3}}, ev).status == INCONCLUSIVE
    held = verdict({"latency": {"max_ratio": 3, "max_seconds": 1.0, "quantile": 0.99}}, ev)
    assert held.status == HELD and held.tolerance == "<= 1"
