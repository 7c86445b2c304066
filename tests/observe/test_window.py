"""Sliding windows: ring-buffer semantics against a reference model, ages, and the per-output windows."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.observe.classes import OTHER
from proxy.observe.drift import compare_numeric
from proxy.observe.window import DriftHistory, PredictionWindows, Window


def test_keeps_the_last_max_n_in_order() -> None:
    w = Window(max_n=4)
    for i in range(10):
        w.add(float(i), t=float(i))
    assert w.values(now=10.0).tolist() == [6.0, 7.0, 8.0, 9.0] and len(w) == 4
    w.add_many([10.0, 11.0, 12.0], t=11.0)  # wraps around the end of the buffer
    assert w.values(now=11.0).tolist() == [9.0, 10.0, 11.0, 12.0]
    w.add_many(np.arange(100.0), t=12.0)  # more than max_n at once: the last max_n
    assert w.values(now=12.0).tolist() == [96.0, 97.0, 98.0, 99.0]
    w.add_many([], t=13.0)
    assert len(w) == 4


def test_drops_values_older_than_max_age() -> None:
    w = Window(max_n=100, max_age=10.0)
    w.add_many([1.0, 2.0], t=0.0)
    w.add(3.0, t=5.0)
    w.add(4.0, t=12.0)
    assert w.values(now=9.0).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert w.values(now=12.0).tolist() == [3.0, 4.0]
    assert len(w) == 2  # forgotten for good
    assert w.values(now=100.0).tolist() == [] and len(w) == 0
    w.add(5.0, t=101.0)
    assert w.values(now=101.0).tolist() == [5.0]


def test_values_is_a_copy_and_the_buffer_is_preallocated() -> None:
    w = Window(max_n=8, max_age=math.inf)
    buf = w._v
    w.add_many(np.arange(20.0), t=0.0)
    v = w.values(now=1e9)
    v[:] = -1
    assert w.values(now=1e9).tolist() == list(np.arange(12.0, 20.0))
    assert w._v is buf
    w.clear()
    assert len(w) == 0 and w.values(0.0).size == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Window(max_n=0)
    with pytest.raises(ValueError):
        Window(max_n=3, max_age=0.0)


ops = st.lists(st.tuples(st.booleans(), st.lists(st.floats(-1e3, 1e3), max_size=12), st.floats(0, 5)),
               max_size=60)


@given(ops, st.integers(1, 20), st.floats(1.0, 30.0))
def test_matches_a_reference_model(operations: list[tuple[bool, list[float], float]], max_n: int,
                                   max_age: float) -> None:
    w = Window(max_n=max_n, max_age=max_age)
    ref: deque[tuple[float, float]] = deque(maxlen=max_n)
    now = 0.0
    for single, values, dt in operations:
        now += dt
        if single and values:
            w.add(values[0], now)
            ref.append((now, values[0]))
        else:
            w.add_many(values, now)
            ref.extend((now, v) for v in values)
        expected = [v for t, v in ref if t >= now - max_age]
        assert w.values(now).tolist() == expected


# ----------------------------------------------------------------------------------- PredictionWindows

def test_numeric_windows_and_drift() -> None:
    pw = PredictionWindows(max_n=3000, max_age=60.0)
    rng = np.random.default_rng(4)
    assert pw.add_numeric("score", "control", rng.normal(size=1500), t=0.0)
    assert pw.drift("score", now=1.0) is None  # no chaos yet
    pw.add_numeric("score", "chaos", np.append(rng.normal(1.0, 1.0, size=1500), [np.nan, np.inf]), t=1.0)
    assert pw.numeric("score", "chaos", now=1.0).size == 1500  # non-finite dropped
    r = pw.drift("score", now=2.0)
    assert r is not None and r.kind == "numeric" and {"psi", "ks"} <= set(r.alarms)
    assert pw.drift("score", now=61.0) is None  # control aged out
    with pytest.raises(ValueError):
        pw.add_numeric("score", "none", [1.0], t=0.0)


def test_probability_windows_give_confidence_and_argmax_classes() -> None:
    pw = PredictionWindows()
    pw.add_probabilities("probs", "control", [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], t=0.0)
    pw.add_probabilities("probs", "chaos", [0.5, 0.5], t=0.0)  # one vector
    pw.add_probabilities("probs", "chaos", [[np.nan, 1.0]], t=0.0)  # dropped
    assert pw.numeric("probs", "control", now=0.0).tolist() == pytest.approx([0.7, 0.8, 0.6])
    assert pw.class_counts("probs", "control", now=0.0) == {"0": 1, "1": 1, "2": 1}
    assert pw.class_counts("probs", "chaos", now=0.0) == {"0": 1}
    assert pw.outputs["probs"].seen == {"chaos": 1, "control": 3}
    assert pw.drift("probs", now=0.0) is not None


def test_probabilities_report_what_they_recorded_without_non_finite_rows() -> None:
    pw = PredictionWindows(max_classes=2)
    assert pw.add_probabilities("p", "chaos", [[np.nan, 1.0], [0.2, 0.8], [0.1, 0.1]], t=0.0) == \
        (pytest.approx([0.8, 0.1]), [(0, 1), (1, 1)])  # a batch admits its classes in argmax order
    assert pw.add_probabilities("p", "chaos", [[0.1, 0.2, 0.7]], t=0.0) == \
        (pytest.approx([0.7]), [(2, 1)])  # a third class: past max_classes, OTHER
    assert pw.add_probabilities("p", "chaos", [[np.inf, 0.0]], t=0.0) == ([], [])
    assert pw.add_probabilities("p", "chaos", [[]], t=0.0) is None
    assert pw.outputs["p"].classes.totals == [1, 1, 1]


def test_class_windows_are_bounded_and_shared_by_the_cohorts() -> None:
    pw = PredictionWindows(max_classes=3, max_age=10.0)
    pw.add_classes("label", "control", ["a", "b", "c", "a"], t=0.0)
    pw.add_classes("label", "chaos", (f"junk-{i}" for i in range(50)), t=1.0)
    pw.add_classes("label", "chaos", ["a", "b"], t=1.0)
    assert pw.class_counts("label", "control", now=1.0) == {"a": 2, "b": 1, "c": 1}
    assert pw.class_counts("label", "chaos", now=1.0) == {OTHER: 50, "a": 1, "b": 1}
    assert pw.outputs["label"].classes.counts() == {"a": 3, "b": 2, "c": 1, OTHER: 50}
    r = pw.drift("label", now=1.0)
    assert r is not None and r.kind == "class" and r.chi2_p is not None and r.chi2_p < 0.05
    assert pw.class_counts("label", "control", now=10.5) == {}  # aged out
    assert pw.drift("label", now=10.5) is None


def test_outputs_are_capped() -> None:
    pw = PredictionWindows(max_outputs=2)
    assert pw.add_numeric("a", "chaos", [1.0], t=0.0)
    assert pw.add_classes("b", "chaos", ["x"], t=0.0)
    assert not pw.add_numeric("c", "chaos", [1.0], t=0.0)
    assert list(pw.outputs) == ["a", "b"]
    with pytest.raises(ValueError):
        PredictionWindows().output("x", "tensor")


def test_report_outputs_shape() -> None:
    pw = PredictionWindows(max_n=5000)
    rng = np.random.default_rng(9)
    pw.add_numeric("score", "control", rng.normal(size=3000), t=0.0)
    pw.add_numeric("score", "chaos", rng.normal(size=2500), t=0.0)
    pw.add_classes("label", "control", ["x"] * 10, t=0.0)
    out = pw.report_outputs(now=1.0, sample=2000)
    score = out["score"]
    assert score["kind"] == "numeric" and len(score["control"]["values"]) == 2000
    assert score["chaos"]["seen"] == 2500 and score["control"]["classes"] == {}
    assert score["drift"]["n_control"] == 3000 and isinstance(score["alarms"], list)
    assert out["label"]["drift"] is None and out["label"]["control"]["classes"] == {"x": 10}
    assert out["label"]["alarms"] == [] and out["label"]["chaos"]["values"] == []


def test_drift_history_is_bounded() -> None:
    h = DriftHistory(max_points=3)
    r = compare_numeric([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    for i in range(5):
        h.append(f"2026-12-01T09:00:0{i}Z", "score", r)
    points = h.to_list()
    assert [p["t"][-3:] for p in points] == ["02Z", "03Z", "04Z"]
    assert set(points[0]) == {"t", "output", "psi", "ks_p", "chi2_p", "js", "wasserstein"}
