"""The stale-values cache: ages in requests and seconds, LRU eviction under a byte budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.payload import FeatureTable, StaleCache
from proxy.payload import mutate as M
from proxy.payload.stale import _KEY
from proxy.payload.table import MISSING


def rows(v: float) -> list[dict[str, float]]:
    return [{"x": v}]


def test_n_requests_ago():
    c = StaleCache(1 << 20, depth=4)
    for i in range(6):
        c.put("k", rows(i), now=float(i))
    assert c.get("k", now=10) == rows(5)
    assert c.get("k", age_requests=1, now=10) == rows(5)
    assert c.get("k", age_requests=3, now=10) == rows(3)
    assert c.get("k", age_requests=4, now=10) == rows(2)
    assert c.get("k", age_requests=5, now=10) is None  # beyond the ring's depth
    assert c.get("other", now=10) is None
    assert c.entries("k") == 4
    with pytest.raises(ValueError):
        c.get("k", age_requests=0)


def test_n_seconds_ago():
    c = StaleCache(1 << 20)
    for t in (0.0, 10.0, 20.0, 30.0):
        c.put("k", rows(t), now=t)
    assert c.get("k", age_seconds=5, now=31) == rows(20.0)
    assert c.get("k", age_seconds=11, now=31) == rows(20.0)
    assert c.get("k", age_seconds=11.5, now=31) == rows(10.0)
    assert c.get("k", age_seconds=100, now=31) is None
    assert c.get("k", age_seconds=5, age_requests=3, now=31) == rows(10.0)  # both must hold
    assert c.get("k", age_seconds=25, age_requests=2, now=31) == rows(0.0)


def test_clock_and_tables():
    now = [100.0]
    c = StaleCache(1 << 20, clock=lambda: now[0])
    t = FeatureTable(names=["a", "b", "t"], columns=[[1, 2], ["x", MISSING], [[1], [2]]],
                     dtypes=["number", "string", "mixed"])
    assert c.put("k", t)
    now[0] = 200.0
    assert c.get("k", age_seconds=100) == [{"a": 1, "b": "x"}, {"a": 2}]  # tensors, missing cells not kept
    assert c.get("k", age_seconds=101) is None


def test_max_age_keeps_the_last_seconds_plus_one():
    c = StaleCache(1 << 20, depth=None, max_age=10)
    for t in range(0, 100, 2):  # a request every 2 s
        c.put("k", rows(float(t)), now=float(t))
    assert c.entries("k") == 6  # 98, 96, ..., 90 (younger than 10 s at t=98), and 88 to answer with
    assert c.get("k", age_seconds=10, now=98.0) == rows(88.0)
    assert c.get("k", age_seconds=10, now=99.0) == rows(88.0)
    assert c.get("k", age_seconds=10, now=200.0) == rows(98.0)
    assert c.entries("k") == 1  # nothing older is useful any more
    with pytest.raises(ValueError):
        StaleCache(100, max_age=-1)


def test_lru_eviction_under_budget():
    c = StaleCache(4500)  # three keys of this size fit
    big = [{"x": "v" * 300}]
    c.put("a", big, now=0)
    c.put("b", big, now=1)
    c.get("a", now=2)  # a is now more recent than b
    c.put("c", big, now=3)
    c.put("d", big, now=4)
    assert c.nbytes <= 4500
    assert "a" in c and "b" not in c
    assert not c.put("huge", [{"x": "v" * 10_000}])  # larger than the whole budget: not stored
    assert "huge" not in c and c.nbytes <= 4500


def test_one_key_alone_keeps_its_newest_entries():
    c = StaleCache(2500, depth=100)
    for i in range(50):
        c.put("k", [{"x": float(i), "y": "s" * 50}], now=float(i))
    assert c.nbytes <= 2500 and 1 <= c.entries("k") < 50
    assert c.get("k", now=100) == [{"x": 49.0, "y": "s" * 50}]


def test_discard_and_clear():
    c = StaleCache(1 << 16)
    c.put("a", rows(1))
    c.put("b", rows(2))
    c.discard("a")
    c.discard("nope")
    assert len(c) == 1 and c.nbytes > 0
    c.clear()
    assert len(c) == 0 and c.nbytes == 0
    with pytest.raises(ValueError):
        StaleCache(0)


def test_feeds_the_stale_mutation():
    c = StaleCache(1 << 16)
    first = FeatureTable.from_rows(["a", "b"], [[1.0, 2.0]])
    c.put("user-1", first, now=0)
    now = FeatureTable.from_rows(["a", "b"], [[5.0, 6.0]])
    m = M.stale(now, rows=c.get("user-1", age_requests=1, now=1), rng=np.random.default_rng(0))
    assert m.table.columns == [[1.0], [2.0]] and m.changed == 2


def _norm(rs: list[dict[str, Any]]) -> list[list[tuple[str, str]]]:
    return [sorted((k, repr(v)) for k, v in r.items()) for r in rs]


values = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                   st.text(max_size=40), st.lists(st.integers(), max_size=3))
row_lists = st.lists(st.dictionaries(st.sampled_from("abcdef"), values, max_size=6), min_size=0, max_size=5)
ops = st.lists(st.tuples(st.sampled_from(["put", "get"]), st.sampled_from(["k1", "k2", "k3", "k4", "k5"]),
                         row_lists, st.integers(1, 6)), max_size=60)


@given(budget=st.integers(200, 6000), depth=st.none() | st.integers(1, 8), max_age=st.none() | st.floats(0, 10),
       ops=ops)
def test_budget_is_never_exceeded(budget, depth, max_age, ops):
    c = StaleCache(budget, depth=depth, max_age=max_age)
    t = 0.0
    history: dict[str, list[list[dict[str, Any]]]] = {}
    for op, key, rs, age in ops:
        t += 1.0
        if op == "put":
            stored = c.put(key, rs, now=t)
            if stored:
                history.setdefault(key, []).append(rs)
        else:
            got = c.get(key, age_requests=age, now=t)
            past = history.get(key, [])
            if got is not None:  # when present, it is exactly what was sent that many requests ago
                expected = [{k: v for k, v in r.items() if not isinstance(v, list)} for r in past[-age]]
                assert _norm(got) == _norm(expected)
            elif key in c and age <= c.entries(key):
                raise AssertionError("an entry that is held was not returned")
        assert 0 <= c.nbytes <= budget
        assert depth is None or all(c.entries(k) <= depth for k in ("k1", "k2", "k3", "k4", "k5"))
    # the running total matches a recount of what is held
    assert c.nbytes == sum(_KEY + sum(e.size for e in ring) for ring in c._keys.values())
