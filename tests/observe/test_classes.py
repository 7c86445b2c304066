"""ClassCounter: the ``class`` label stays bounded whatever the responses carry."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observe.classes import MAX_LABEL_CHARS, OTHER, ClassCounter, label_string


def test_the_first_classes_keep_their_names_later_ones_are_other() -> None:
    c = ClassCounter(max_classes=3)
    assert [c.label_for(v) for v in ("cat", "dog", "cat", "bird", "fish", "dog", "eel")] == [
        "cat", "dog", "cat", "bird", OTHER, "dog", OTHER]
    assert c.labels == ("cat", "dog", "bird") and len(c) == 3


def test_label_strings() -> None:
    assert label_string(True) == "true" and label_string(False) == "false"
    assert label_string(2) == "2" and label_string(2.0) == "2" and label_string(-0.0) == "0"
    assert label_string(0.5) == "0.5" and label_string(float("nan")) == "nan"
    assert label_string(None) == "null"
    assert label_string("x" * 500) == "x" * MAX_LABEL_CHARS
    assert label_string(10**5000) == "big" and label_string(-(10**5000)) == "-big"
    assert label_string("\ud800abc") == "?abc"  # a lone surrogate cannot be UTF-8
    assert label_string([1, 2]) == "[1, 2]"


def test_values_with_the_same_label_are_one_class() -> None:
    c = ClassCounter(max_classes=2)
    assert c.label_for(1) == c.label_for(1.0) == c.label_for("1") == "1"
    long_a, long_b = "a" * 64 + "1", "a" * 64 + "2"  # the same once cut to 64 characters
    assert c.label_for(long_a) == c.label_for(long_b) == "a" * 64
    assert len(c) == 2


def test_other_itself_takes_no_slot() -> None:
    c = ClassCounter(max_classes=1)
    assert c.label_for(OTHER) == OTHER and len(c) == 0
    assert c.label_for("a") == "a"


def test_counts_and_known_labels() -> None:
    c = ClassCounter(max_classes=2, known=["setosa"])
    assert c.labels == ("setosa",)
    for v in ("virginica", "setosa", "virginica", "x", "y"):
        c.count(v)
    c.count("setosa", 3)
    assert c.counts() == {"setosa": 4, "virginica": 2, OTHER: 2}
    idx = np.array([c.index_for(v) for v in ("setosa", "zzz", "virginica", "virginica")])
    assert c.counts_of(np.bincount(idx, minlength=c.max_classes + 1)) == {"setosa": 1, "virginica": 2, OTHER: 1}
    assert ClassCounter(3).counts() == {}


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


@given(st.lists(values, max_size=200), st.integers(1, 30))
def test_label_cardinality_is_bounded_whatever_arrives(seq: list[object], max_classes: int) -> None:
    c = ClassCounter(max_classes=max_classes)
    labels = {c.label_for(v) for v in seq}
    assert len(labels) <= max_classes + 1
    for label in labels:
        assert len(label) <= MAX_LABEL_CHARS
        label.encode("utf-8")  # always valid UTF-8: fit for Prometheus text and JSON


@given(st.lists(st.text(), min_size=1, max_size=40))
def test_labels_survive_the_prometheus_text_format(seq: list[str]) -> None:
    c = ClassCounter(max_classes=5)
    registry = CollectorRegistry()
    counter = Counter("mlchaos_prediction_class", "doc", ["class"], registry=registry)
    for v in seq:
        counter.labels(c.label_for(v)).inc()
    families = list(text_string_to_metric_families(generate_latest(registry).decode("utf-8")))
    seen = {s.labels["class"] for f in families for s in f.samples if s.name == "mlchaos_prediction_class_total"}
    assert seen == {c.label_for(v) for v in seq}
    assert len(seen) <= 6
