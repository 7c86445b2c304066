"""CountGuard: hand-computed cases, exactness under H0, properties, and a rare-event A/A run."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.killswitch import DEFAULT_EFFECTS, DEFAULT_WEIGHTS, CountGuard

requests = st.lists(st.tuples(st.booleans(), st.booleans()), max_size=300)
counts = st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.integers(0, 60)).map(
    lambda t: (t[0], min(t[1], t[0]), t[2], min(t[3], t[2]))
)


def feed(g: CountGuard, seq: list[tuple[bool, bool]]) -> None:
    for chaos, bad in seq:
        g.observe(chaos, bad)


def block_factor(r: Fraction, s: Fraction, bc: int, bk: int, gc: int, gk: int) -> Fraction:
    """The block factor straight from its definition, in exact arithmetic."""
    ta = r * s / (r * s + 1 - s)
    t0 = ((bc + bk) * ta + (gc + gk) * s) / (bc + bk + gc + gk)
    num = ta**bc * (1 - ta) ** bk * s**gc * (1 - s) ** gk
    return num / (t0 ** (bc + gc) * (1 - t0) ** (bk + gk))


# -- hand computations ---------------------------------------------------------------------------------


def test_one_block_by_hand() -> None:
    g = CountGuard(effects=(3.0,))
    assert g.observe(False, False) is False
    assert g.e_value == 1.0  # no block closed yet
    assert g.observe(True, True) is False
    # s = 1/2 (the prior only), theta_a = 3/4, theta_0 = (3/4 + 1/2) / 2 = 5/8:
    # (3/4) / (5/8) * (1/2) / (3/8) = 1.6
    assert g.e_value == pytest.approx(1.6, rel=1e-12)
    assert g.blocks == 1


def test_two_blocks_and_a_mixture_by_hand() -> None:
    g = CountGuard(effects=(2.0, 4.0), weights=(1.0, 3.0), prior=0.5)
    # Block 1: two bad events wait (no good request yet), then three good ones, then a bad one closes it.
    feed(g, [(True, True), (False, True), (True, False), (False, False), (False, False)])
    assert g.blocks == 0 and g.e_value == 1.0
    g.observe(True, True)
    f1 = {r: block_factor(Fraction(r), Fraction(1, 2), bc=2, bk=1, gc=1, gk=2) for r in (2, 4)}
    expected = Fraction(1, 4) * f1[2] + Fraction(3, 4) * f1[4]
    assert g.e_value == pytest.approx(float(expected), rel=1e-12)
    # Block 2: the share now comes from block 1's good requests: (1 + 1/2) / (3 + 1) = 3/8.
    assert g.share == pytest.approx(3 / 8)
    feed(g, [(False, False), (True, True)])
    s2 = Fraction(3, 8)
    f2 = {r: block_factor(Fraction(r), s2, bc=1, bk=0, gc=0, gk=1) for r in (2, 4)}
    expected = Fraction(1, 4) * f1[2] * f2[2] + Fraction(3, 4) * f1[4] * f2[4]
    assert g.e_value == pytest.approx(float(expected), rel=1e-12)
    assert g.snapshot()["blocks"] == 2


def test_rare_events_reduce_to_the_conditional_binomial() -> None:
    # A bad event after many good requests weighs r / (r*s + 1 - s) in chaos, 1 / (r*s + 1 - s) in control.
    for chaos, expected in ((True, 3 / 2), (False, 1 / 2)):
        g = CountGuard(effects=(3.0,), alpha=1e-9)
        g.observe_many(10**6, 0, 10**6, 0)
        g.observe(False, True)  # closes the first block (its e-value is ~1: s is the prior's 1/2)
        before = g.e_value
        g.observe_many(10**6, 0, 10**6, 0)
        g.observe(chaos, True)
        assert g.e_value / before == pytest.approx(expected, rel=1e-5)


def test_a_hard_fault_trips_within_ten_chaos_requests_when_cohorts_alternate() -> None:
    g = CountGuard()
    for _ in range(100):
        g.observe(False, False)
        if g.observe(True, True):
            break
    i = g.n_chaos
    assert g.tripped and i <= 8, i
    assert g.e_value >= 100
    snap = g.snapshot()
    assert snap["tripped"] is True and snap["bad_chaos"] == i and snap["bad_control"] == 0
    assert snap["effect"] > 10


# -- exactness: E[e-value] <= 1 under H0, by enumeration ----------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    outcomes=st.lists(st.booleans(), min_size=1, max_size=9),
    q=st.floats(0.05, 0.95),
    skew=st.floats(0.0, 1.0),
    effects=st.sampled_from([DEFAULT_EFFECTS, (1.5,), (10_000.0,), (2.0, 50.0)]),
)
def test_expected_e_value_is_at_most_one_under_the_null(
    outcomes: list[bool], q: float, skew: float, effects: tuple[float, ...]
) -> None:
    """Whatever the outcomes and the chaos share q, E[E_T] <= 1 (every label sequence, weighted).

    With ``skew`` > 0 the bad events are *less* often chaos than the good ones (chaos is better than
    control): the one-sided null, where the expectation must stay below 1 too.
    """
    q_bad = q * (1 - skew)
    total = 0.0
    for labels in itertools.product((False, True), repeat=len(outcomes)):
        p = 1.0
        for bad, chaos in zip(outcomes, labels, strict=True):
            pc = q_bad if bad else q
            p *= pc if chaos else 1 - pc
        g = CountGuard(alpha=1e-300, effects=effects)  # never trips: the e-value keeps moving
        for bad, chaos in zip(outcomes, labels, strict=True):
            g.observe(chaos, bad)
        total += p * g.e_value
    assert total <= 1 + 1e-9


def test_the_plug_in_null_is_not_exact() -> None:
    """Why the null probability is theta_0 and not the estimated share: taking "a bad event is chaos with
    probability s", s estimated from the good requests before it, gives E[factor] > 1. Here two good
    requests then a bad one, q = 1/2, r = 10: s is 1/6, 1/2 or 5/6 and E = (q*r + 1 - q) / (r*s + 1 - s)
    averages to ~1.21 over the good requests' labels."""
    r, q = 10.0, 0.5
    total = 0.0
    for c1, c2, c3 in itertools.product((False, True), repeat=3):
        p = math.prod(q if c else 1 - q for c in (c1, c2, c3))
        s = (c1 + c2 + 0.5) / 3
        total += p * (r / (r * s + 1 - s) if c3 else 1 / (r * s + 1 - s))
    assert total == pytest.approx(1.2118, abs=1e-4)
    # The guard itself on the same three requests: exactly at most 1.
    total = 0.0
    for c1, c2, c3 in itertools.product((False, True), repeat=3):
        g = CountGuard(alpha=1e-300, effects=(r,))
        feed(g, [(c1, False), (c2, False), (c3, True)])
        total += math.prod(q if c else 1 - q for c in (c1, c2, c3)) * g.e_value
    assert total <= 1 + 1e-12


# -- properties ----------------------------------------------------------------------------------------


@given(seq=requests)
def test_e_value_is_finite_and_nonnegative(seq: list[tuple[bool, bool]]) -> None:
    g = CountGuard(alpha=1e-300)
    for chaos, bad in seq:
        g.observe(chaos, bad)
        assert 0.0 <= g.e_value < math.inf
        assert math.isfinite(g.log_e_value)
    assert g.n_chaos + g.n_control == len(seq)
    assert g.bad_chaos == sum(1 for c, b in seq if c and b)
    assert g.bad_control == sum(1 for c, b in seq if b and not c)


@given(prefix=requests, batch=counts, alpha=st.sampled_from([0.01, 0.05, 1e-300]))
def test_observe_many_is_the_documented_sequence_of_observe(
    prefix: list[tuple[bool, bool]], batch: tuple[int, int, int, int], alpha: float
) -> None:
    chaos_n, chaos_bad, control_n, control_bad = batch
    a, b = CountGuard(alpha), CountGuard(alpha)
    feed(a, prefix)
    feed(b, prefix)
    got = a.observe_many(*batch)
    bads = [False] * control_bad + [True] * chaos_bad
    last = bads.pop() if bads else None
    seq = [(chaos, True) for chaos in bads]
    seq += [(True, False)] * (chaos_n - chaos_bad) + [(False, False)] * (control_n - control_bad)
    if last is not None:
        seq.append((last, True))
    results = [b.observe(chaos, bad) for chaos, bad in seq]
    assert got == b.tripped == (results[-1] if results else b.tripped)
    assert a.e_value == b.e_value
    assert a.snapshot() == b.snapshot()


@given(seq=requests, seed=st.integers(0, 2**32))
def test_the_order_of_good_requests_between_bad_events_does_not_matter(
    seq: list[tuple[bool, bool]], seed: int
) -> None:
    rng = random.Random(seed)
    shuffled: list[tuple[bool, bool]] = []
    run: list[tuple[bool, bool]] = []
    for item in seq:
        if item[1]:
            rng.shuffle(run)
            shuffled += run
            run = []
            shuffled.append(item)
        else:
            run.append(item)
    shuffled += run
    a, b = CountGuard(alpha=1e-300), CountGuard(alpha=1e-300)
    feed(a, seq)
    feed(b, shuffled)
    assert a.e_value == b.e_value


@given(seq=requests)
def test_no_trip_without_chaos_bad_events(seq: list[tuple[bool, bool]]) -> None:
    # Every block then has a factor <= 1 for every effect (weighted AM-GM), so E <= 1 throughout.
    g = CountGuard(alpha=0.5)
    for chaos, bad in seq:
        if chaos and bad:
            continue
        assert g.observe(chaos, bad) is False
        assert g.e_value <= 1 + 1e-12


@given(seq=requests, data=st.data())
def test_monotone_in_which_cohort_the_bad_events_fall(seq: list[tuple[bool, bool]], data: st.DataObject) -> None:
    """Moving a bad event from control to chaos never lowers the e-value, at any time.

    (Turning a good chaos request into a bad one is not monotone in general: a good chaos request is also
    evidence about the exposure share, and a block's null probability adapts to its composition.)
    """
    control_bad = [i for i, (chaos, bad) in enumerate(seq) if bad and not chaos]
    if not control_bad:
        return
    i = data.draw(st.sampled_from(control_bad))
    moved = list(seq)
    moved[i] = (True, True)
    a, b = CountGuard(alpha=1e-300), CountGuard(alpha=1e-300)
    for x, y in zip(seq, moved, strict=True):
        a.observe(*x)
        b.observe(*y)
        assert b.log_e_value >= a.log_e_value - 1e-12


@given(prefix=requests, batch=counts)
def test_observe_many_is_monotone_in_chaos_bad(
    prefix: list[tuple[bool, bool]], batch: tuple[int, int, int, int]
) -> None:
    chaos_n, chaos_bad, control_n, control_bad = batch
    if control_bad == 0:
        return
    a, b = CountGuard(alpha=1e-300), CountGuard(alpha=1e-300)
    feed(a, prefix)
    feed(b, prefix)
    a.observe_many(chaos_n, chaos_bad, control_n, control_bad)
    # One bad event moves from control to chaos; the good requests stay as they were.
    b.observe_many(chaos_n + 1, chaos_bad + 1, control_n - 1, control_bad - 1)
    assert b.log_e_value >= a.log_e_value - 1e-12


@given(seq=requests)
def test_once_tripped_it_stays_tripped(seq: list[tuple[bool, bool]]) -> None:
    g = CountGuard()
    for _ in range(30):
        g.observe(False, False)
        g.observe(True, True)
    assert g.tripped
    frozen = g.e_value
    for chaos, bad in seq:
        assert g.observe(chaos, bad) is True
    assert g.observe_many(5, 0, 5, 5) is True
    assert g.e_value == frozen


def test_min_bad_delays_the_trip() -> None:
    plain, patient = CountGuard(), CountGuard(min_bad=20)
    n_plain = n_patient = 0
    for i in range(1, 60):
        for g in (plain, patient):
            g.observe(False, False)
            g.observe(True, True)
        n_plain = n_plain or (i if plain.tripped else 0)
        n_patient = n_patient or (i if patient.tripped else 0)
    assert 0 < n_plain < 20 == n_patient


def test_unequal_cohorts_are_handled_by_the_share() -> None:
    # Control gets 4 requests per chaos one, errors at the same rate in both: no trip.
    g = CountGuard()
    rng = random.Random(3)
    for _ in range(40_000):
        chaos = rng.random() < 0.2
        g.observe(chaos, rng.random() < 0.05)
    assert not g.tripped
    assert g.share == pytest.approx(0.2, abs=0.01)


# -- a rare-event A/A run (the normal approximation's failure mode) ------------------------------------


def test_rare_events_do_not_false_trip() -> None:
    """Base rate 0.1%, split 1% + 1%, 50k chaos requests per experiment: trips on at most ~alpha of runs.

    Replayed through ``observe`` (good requests as counts between bad events: the same thing, since their
    order within a block does not matter). A normal-approximation mSPRT with plug-in variance tripped on
    37-83% of such runs (shared/research/anchors-killswitch-canary.md).
    """
    rng = np.random.default_rng(20240601)
    experiments, trips, p = 1000, 0, 0.001
    for _ in range(experiments):
        g = CountGuard(0.01)
        # ~100 bad events per experiment (2 x 50k cohort requests x 0.1%); 400 is plenty.
        gaps = rng.geometric(p, size=400) - 1
        chaos_goods = rng.binomial(gaps, 0.5)
        labels = rng.random(400) < 0.5
        for gap, cg, chaos in zip(gaps.tolist(), chaos_goods.tolist(), labels.tolist(), strict=True):
            g.observe_many(cg, 0, gap - cg, 0)
            if g.n_chaos >= 50_000:
                break
            if g.observe(chaos, True):
                trips += 1
                break
        assert g.n_chaos >= 50_000 or g.tripped
    assert trips <= 20, f"{trips} false trips in {experiments} experiments"


# -- validation and read-outs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"effects": ()},
        {"effects": (1.0,)},
        {"effects": (math.inf,)},
        {"effects": (2.0,), "weights": (1.0, 1.0)},
        {"effects": (2.0,), "weights": (0.0,)},
        {"min_bad": -1},
        {"prior": 0.0},
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CountGuard(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"min_bad": 1.5}, {"min_bad": "3"}])
def test_rejects_parameters_of_the_wrong_type(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        CountGuard(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [(-1, 0, 0, 0), (1, 2, 0, 0), (0, 0, 1, 2), (True, 0, 0, 0)])
def test_observe_many_rejects_bad_counts(batch: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        CountGuard().observe_many(*batch)


def test_defaults_and_snapshot() -> None:
    g = CountGuard()
    assert g.alpha == 0.01 and g.threshold == 100.0
    assert g.effects == DEFAULT_EFFECTS
    assert sum(g.weights) == pytest.approx(1.0)
    assert [w / g.weights[0] for w in g.weights] == pytest.approx([w / DEFAULT_WEIGHTS[0] for w in DEFAULT_WEIGHTS])
    snap = g.snapshot()
    keys = {"tripped", "e_value", "threshold", "n_chaos", "n_control", "bad_chaos", "bad_control", "effect"}
    assert set(snap) >= keys
    assert snap["effect"] == 1.0
    assert all(isinstance(v, bool | int | float) and math.isfinite(v) for v in snap.values())
    # Overwhelming evidence in one batch: the e-value saturates instead of overflowing.
    g.observe_many(10**6, 10**6, 10**6, 0)
    assert g.tripped and math.isfinite(g.e_value)
    assert "CountGuard(" in repr(g)
