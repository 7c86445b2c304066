"""Prediction perturbation, and writing perturbed predictions back through each adapter."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from proxy.payload import AdapterOptions, get_adapter, perturb, read_predictions, write_predictions
from proxy.payload.predictions import changed_count
from tests.payload import same


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_noise_on_scores_only():
    pred: dict[str, list[Any]] = {"score": [0.5, 1.5, math.nan, None], "label": [0, 1, 1, 0],
                                  "name": ["a", "b", "a", "b"]}
    out = perturb(pred, noise_std=0.1, rng=rng())
    assert all(a != b for a, b in zip(out["score"][:2], pred["score"][:2], strict=True))
    assert math.isnan(out["score"][2]) and out["score"][3] is None
    assert out["label"] == pred["label"] and out["name"] == pred["name"]
    assert pred["score"][0] == 0.5  # input untouched


def test_label_flips_use_seen_labels_or_classes():
    pred = {"label": [0, 1, 2, 0, 1, 2] * 5}
    out = perturb(pred, flip_rate=1.0, rng=rng())
    assert all(a != b and b in (0, 1, 2) for a, b in zip(pred["label"], out["label"], strict=True))
    assert all(isinstance(v, int) for v in out["label"])
    out = perturb({"label": ["cat", "cat"]}, flip_rate=1.0, classes=["cat", "dog"], rng=rng())
    assert out == {"label": ["dog", "dog"]}
    assert perturb({"label": ["cat", "cat"]}, flip_rate=1.0, rng=rng()) == {"label": ["cat", "cat"]}  # nothing else
    assert perturb({"b": [True, False]}, flip_rate=1.0, rng=rng()) == {"b": [False, True]}
    half = perturb({"label": [0, 1] * 500}, flip_rate=0.2, rng=rng())
    flips = changed_count({"label": [0, 1] * 500}, half)
    assert 150 < flips < 250


def test_probability_vectors_stay_distributions():
    pred: dict[str, list[Any]] = {"p": [[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]]}
    out = perturb(pred, noise_std=0.05, rng=rng())
    for vec in out["p"]:
        assert math.isclose(sum(vec), 1.0) and all(x >= 0 for x in vec)
    flipped = perturb(pred, flip_rate=1.0, rng=rng())
    assert [int(np.argmax(v)) for v in flipped["p"]] != [0, 2]
    assert all(sorted(a) == sorted(b) for a, b in zip(pred["p"], flipped["p"], strict=True))
    logits = perturb({"z": [[2.0, -1.0]]}, noise_std=0.1, rng=rng())
    assert not math.isclose(sum(logits["z"][0]), 1.0)  # not a distribution: plain noise


def test_seeded_and_validated():
    pred: dict[str, list[Any]] = {"s": [0.1, 0.2], "l": [1, 2]}
    assert perturb(pred, noise_std=1, flip_rate=0.5, rng=rng(5)) == perturb(pred, noise_std=1, flip_rate=0.5,
                                                                             rng=rng(5))
    with pytest.raises(ValueError):
        perturb(pred, noise_std=-1, rng=rng())
    with pytest.raises(ValueError):
        perturb(pred, flip_rate=2, rng=rng())


RESPONSES = [
    ("v2", {"model_name": "m", "outputs": [{"name": "predict", "shape": [2, 1], "datatype": "INT64",
                                           "data": [[0], [2]]},
                                          {"name": "proba", "shape": [2, 2], "datatype": "FP32",
                                           "data": [0.25, 0.75, 0.5, 0.5]}]}, AdapterOptions()),
    ("v1", {"predictions": [{"label": "a", "p": [0.9]}, {"label": "b", "p": [0.1]}]}, AdapterOptions()),
    ("v1", {"predictions": [0.5, 0.25]}, AdapterOptions()),
    ("mlflow", {"predictions": [[0.9, 0.1], [0.3, 0.7]]}, AdapterOptions()),
    ("mlflow", [1, 2], AdapterOptions()),
    ("generic", {"r": {"y": [1.0, 2.0]}, "k": 1}, AdapterOptions(predictions_pointer="/r/y")),
]


@pytest.mark.parametrize(("adapter", "doc", "options"), RESPONSES)
def test_perturbed_predictions_round_trip(adapter, doc, options):
    preds = read_predictions(adapter, doc, options)
    assert preds is not None
    assert same(write_predictions(get_adapter(adapter), doc, preds, options), doc)
    new = perturb(preds, noise_std=0.2, flip_rate=1.0, classes=[0, 1, 2, "a", "b"], rng=rng())
    out = write_predictions(adapter, doc, new, options)
    assert out is not None
    back = read_predictions(adapter, out, options)
    assert back is not None and same(back, new) and changed_count(preds, back) > 0
