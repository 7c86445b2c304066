"""Seatbelt: an absolute limit on the chaos cohort's bad rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.killswitch import Seatbelt

requests = st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200)
counts = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 5), st.integers(0, 5)).map(
    lambda t: (t[0], min(t[1], t[0]), t[2], min(t[3], t[2]))
)


def brute_force(seq: list[tuple[bool, bool]], max_rate: float, min_requests: int, window: int | None) -> list[bool]:
    """After each request: has the rate ever exceeded max_rate from the min_requests-th chaos request on?"""
    outcomes: list[bool] = []
    tripped = False
    out = []
    for chaos, bad in seq:
        if chaos:
            outcomes.append(bad)
            last = outcomes if window is None else outcomes[-window:]
            if len(outcomes) >= min_requests and sum(last) > max_rate * len(last):
                tripped = True
        out.append(tripped)
    return out


def test_trips_above_the_rate_after_min_requests() -> None:
    belt = Seatbelt(max_rate=0.5, min_requests=20)
    assert [belt.observe(True, True) for _ in range(19)] == [False] * 19
    assert belt.observe(True, True) is True
    assert belt.tripped and belt.rate == 1.0


def test_exactly_the_rate_is_not_above_it() -> None:
    belt = Seatbelt(max_rate=0.5, min_requests=4)
    for i in range(1000):
        assert belt.observe(True, i % 2 == 1) is False
    assert belt.rate == 0.5


def test_checks_at_the_min_requests_th_request_even_when_it_is_good() -> None:
    belt = Seatbelt(max_rate=0.5, min_requests=10)
    for _ in range(9):
        belt.observe(True, True)
    assert belt.observe(True, False) is True  # 9 bad out of 10


def test_control_requests_do_not_count() -> None:
    belt = Seatbelt(max_rate=0.5, min_requests=5)
    assert [belt.observe(False, True) for _ in range(100)] == [False] * 100
    assert belt.n_chaos == 0 and belt.bad_control == 100 and belt.rate == 0.0
    assert [belt.observe(True, True) for _ in range(5)] == [False] * 4 + [True]


def test_stays_tripped() -> None:
    belt = Seatbelt(max_rate=0.1, min_requests=1)
    assert belt.observe(True, True)
    assert all(belt.observe(True, False) for _ in range(1000))
    assert belt.observe_many(100, 0, 100, 0) is True


def test_a_window_catches_a_late_fault() -> None:
    cumulative, windowed = Seatbelt(0.5, 20), Seatbelt(0.5, 20, window=50)
    for _ in range(10_000):
        cumulative.observe(True, False)
        windowed.observe(True, False)
    n_cum = n_win = 0
    for i in range(1, 20_001):
        if not cumulative.tripped and cumulative.observe(True, True):
            n_cum = i
        if not windowed.tripped and windowed.observe(True, True):
            n_win = i
    assert n_win == 26  # 26 of the last 50 are bad
    assert n_cum == 10_001
    assert windowed.snapshot()["window"] == 50


@given(seq=requests, max_rate=st.sampled_from([0.0, 0.2, 0.5, 0.9]), min_requests=st.integers(1, 30),
       window=st.sampled_from([None, 1, 7, 25]))
def test_observe_matches_the_definition(
    seq: list[tuple[bool, bool]], max_rate: float, min_requests: int, window: int | None
) -> None:
    belt = Seatbelt(max_rate, min_requests, window=window)
    got = [belt.observe(chaos, bad) for chaos, bad in seq]
    assert got == brute_force(seq, max_rate, min_requests, window)


@given(prefix=requests, batches=st.lists(counts, max_size=4), max_rate=st.sampled_from([0.2, 0.5]),
       min_requests=st.integers(1, 40), window=st.sampled_from([None, 3, 10]))
def test_observe_many_is_good_requests_then_bad_ones(
    prefix: list[tuple[bool, bool]],
    batches: list[tuple[int, int, int, int]],
    max_rate: float,
    min_requests: int,
    window: int | None,
) -> None:
    a, b = Seatbelt(max_rate, min_requests, window=window), Seatbelt(max_rate, min_requests, window=window)
    for chaos, bad in prefix:
        a.observe(chaos, bad)
        b.observe(chaos, bad)
    for chaos_n, chaos_bad, control_n, control_bad in batches:
        got = a.observe_many(chaos_n, chaos_bad, control_n, control_bad)
        for _ in range(chaos_n - chaos_bad):
            b.observe(True, False)
        for _ in range(chaos_bad):
            b.observe(True, True)
        for i in range(control_n):
            b.observe(False, i < control_bad)
        assert got == b.tripped
        assert a.snapshot() == b.snapshot()


@pytest.mark.parametrize(
    "kwargs",
    [{"max_rate": -0.1}, {"max_rate": 1.0}, {"min_requests": 0}, {"window": 0}],
)
def test_rejects_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Seatbelt(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"min_requests": 2.5}, {"window": 2.5}, {"min_requests": "20"}])
def test_rejects_parameters_of_the_wrong_type(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        Seatbelt(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [(-1, 0, 0, 0), (1, 2, 0, 0), (0, 0, 1, 2)])
def test_observe_many_rejects_bad_counts(batch: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        Seatbelt().observe_many(*batch)


def test_snapshot() -> None:
    belt = Seatbelt()
    assert (belt.max_rate, belt.min_requests, belt.window) == (0.5, 20, None)
    belt.observe_many(10, 3, 5, 5)
    assert belt.snapshot() == {
        "tripped": False,
        "rate": 0.3,
        "max_rate": 0.5,
        "min_requests": 20,
        "window": 0,
        "n_chaos": 10,
        "n_control": 5,
        "bad_chaos": 3,
        "bad_control": 5,
    }
    assert "Seatbelt(" in repr(belt)
