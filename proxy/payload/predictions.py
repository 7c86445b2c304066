"""Predictions read from responses, perturbed, and written back.

``Predictions`` maps an output name to one value per row: a float (score or regression value), an int, str
or bool (a label), a list of numbers (a probability vector or scores), or None.

``perturb`` adds Gaussian noise to floats and to vector entries (a vector that was a probability
distribution, entries in [0, 1] summing to 1, is clipped at 0 and re-normalised), and flips labels at a
rate: an int, str or bool becomes another class of the same type (from ``classes``, or from the distinct
labels seen in that output; a bool flips), a probability vector swaps its largest entry with another.
Ints are labels: they get flips, never noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .adapters import ADAPTERS, DEFAULT_OPTIONS, AdapterOptions, BaseAdapter, Predictions
from .table import cells_equal, is_number

__all__ = ["Predictions", "changed_count", "perturb", "read_predictions", "write_predictions"]


def _adapter(adapter: BaseAdapter | str) -> BaseAdapter:
    return ADAPTERS[adapter] if isinstance(adapter, str) else adapter


def read_predictions(
    adapter: BaseAdapter | str, doc: Any, options: AdapterOptions = DEFAULT_OPTIONS,
) -> Predictions | None:
    """The predictions of a response doc; None when the adapter finds none (pass the response through)."""
    return _adapter(adapter).predictions(doc, options)


def write_predictions(
    adapter: BaseAdapter | str, doc: Any, preds: Predictions, options: AdapterOptions = DEFAULT_OPTIONS,
) -> Any | None:
    """A new response doc with ``preds`` in place of what the adapter read (same forms: ``[x]`` stays wrapped,
    flat stays flat); None when ``preds`` do not fit the doc (other outputs, other row counts)."""
    return _adapter(adapter).write_predictions(doc, preds, options)


def _is_label(v: Any) -> bool:
    return isinstance(v, bool | str) or (isinstance(v, int) and not isinstance(v, bool))


def _is_distribution(vec: Sequence[Any]) -> bool:
    if len(vec) < 2 or not all(is_number(x) and math.isfinite(x) for x in vec):
        return False
    return all(0.0 <= x <= 1.0 for x in vec) and abs(sum(vec) - 1.0) < 1e-3


def _noisy_vector(vec: list[Any], noise_std: float, rng: np.random.Generator) -> list[Any]:
    dist = _is_distribution(vec)
    out: list[Any] = []
    for x in vec:
        if is_number(x) and math.isfinite(x):
            out.append(float(x) + float(rng.normal(0.0, noise_std)))
        else:
            out.append(x)
    if dist:
        clipped = [max(0.0, float(x)) for x in out]
        total = sum(clipped)
        if total > 0:
            return [x / total for x in clipped]
        return list(vec)
    return out


def _flip_vector(vec: list[Any], rng: np.random.Generator) -> list[Any]:
    numeric = [(float(x), k) for k, x in enumerate(vec) if is_number(x) and math.isfinite(x)]
    if len(numeric) < 2:
        return vec
    top = max(numeric)[1]
    others = [k for _, k in numeric if k != top]
    other = others[int(rng.integers(len(others)))]
    out = list(vec)
    out[top], out[other] = vec[other], vec[top]
    return out


def perturb(
    pred: Predictions, *, noise_std: float = 0.0, flip_rate: float = 0.0, classes: Sequence[Any] | None = None,
    rng: np.random.Generator,
) -> Predictions:
    """New predictions: noise of ``noise_std`` on scores, and label flips in a ``flip_rate`` of the rows."""
    if noise_std < 0 or not (0.0 <= flip_rate <= 1.0):
        raise ValueError("noise_std must be >= 0 and flip_rate within [0, 1]")
    out: Predictions = {}
    for name, values in pred.items():
        seen = list(dict.fromkeys(v for v in values if _is_label(v)))
        pool = list(classes) if classes is not None else seen
        new_values: list[Any] = []
        for v in values:
            flip = flip_rate > 0 and rng.random() < flip_rate
            if isinstance(v, list):
                w = _noisy_vector(v, noise_std, rng) if noise_std > 0 else list(v)
                new_values.append(_flip_vector(w, rng) if flip else w)
            elif isinstance(v, float):
                new_values.append(v + float(rng.normal(0.0, noise_std)) if noise_std > 0 and math.isfinite(v) else v)
            elif _is_label(v) and flip:
                if isinstance(v, bool) and classes is None:
                    new_values.append(not v)
                    continue
                choices = [c for c in pool if type(c) is type(v) and not cells_equal(c, v)]
                new_values.append(choices[int(rng.integers(len(choices)))] if choices else v)
            else:
                new_values.append(v)
        out[name] = new_values
    return out


def changed_count(before: Mapping[str, Sequence[Any]], after: Mapping[str, Sequence[Any]]) -> int:
    """How many row values differ between two Predictions with the same outputs."""
    return sum(
        1 for name, values in before.items() for a, b in zip(values, after.get(name, ()), strict=False)
        if not cells_equal(a, b)
    )
