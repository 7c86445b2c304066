"""Bounded class labels: the ``class`` label of ``mlchaos_prediction_class_total`` and the class windows.

Predicted classes come from responses, so a model (or a fault, or a client echoing input) could emit any
number of distinct values. ``ClassCounter`` keeps the label set bounded whatever arrives: the first
``max_classes`` distinct labels keep their name, every later one is counted as ``__other__``. Labels are
strings of at most ``MAX_LABEL_CHARS`` characters and always valid UTF-8, so they can go into Prometheus
text and JSON as they are. The event loop is the only writer: no lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["MAX_LABEL_CHARS", "OTHER", "ClassCounter", "label_string"]

OTHER = "__other__"
MAX_LABEL_CHARS = 64
# Computed once: as literals in label_string they were a big-integer power per predicted label.
_INT_LABEL_LIMIT = 10**MAX_LABEL_CHARS
_INT64_LIMIT = 2**63


def label_string(value: object) -> str:
    """The label string of one predicted value, before capping.

    ``str`` as it is, ``bool`` as ``true``/``false`` (JSON spelling), an integral number as an integer
    (``1`` and ``1.0`` are the same class), other floats by ``repr``, ``None`` as ``null``, anything else by
    ``str``. Cut to ``MAX_LABEL_CHARS`` characters; lone surrogates (not encodable as UTF-8) become ``?``.
    """
    if isinstance(value, str):
        s = value
    elif isinstance(value, bool):
        s = "true" if value else "false"
    elif isinstance(value, int):
        s = str(value) if abs(value) < _INT_LABEL_LIMIT else ("big" if value > 0 else "-big")
    elif isinstance(value, float):
        integral = math.isfinite(value) and value.is_integer() and abs(value) < _INT64_LIMIT
        s = str(int(value)) if integral else repr(value)
    elif value is None:
        s = "null"
    else:
        try:
            s = str(value)
        except Exception:  # an object whose __str__ fails is still a (single) class
            s = type(value).__name__
    s = s[:MAX_LABEL_CHARS]
    if not s.isascii():
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s


class ClassCounter:
    """At most ``max_classes`` named labels plus ``OTHER``, with cumulative counts.

    Each admitted label has an index (``0 .. max_classes - 1``, in order of first appearance);
    ``OTHER`` has index ``max_classes``, so ``np.bincount(indexes, minlength=max_classes + 1)`` counts a batch.
    ``known`` labels (from the policy, say) are admitted first. A value whose label string is ``OTHER``
    itself takes no slot.
    """

    __slots__ = ("_index", "_labels", "max_classes", "totals")

    def __init__(self, max_classes: int = 20, known: Iterable[object] = ()) -> None:
        if max_classes < 1:
            raise ValueError("max_classes must be at least 1")
        self.max_classes = max_classes
        self._index: dict[str, int] = {}
        self._labels: list[str] = []
        # Cumulative count per index, OTHER last.
        self.totals = [0] * (max_classes + 1)
        for value in known:
            self.index_for(value)

    @property
    def labels(self) -> tuple[str, ...]:
        """The admitted labels in index order, without ``OTHER``."""
        return tuple(self._labels)

    def index_for(self, value: object) -> int:
        """The index of ``value``'s label, admitting it if there is room."""
        label = label_string(value)
        i = self._index.get(label)
        if i is not None:
            return i
        if label == OTHER or len(self._labels) >= self.max_classes:
            return self.max_classes
        i = len(self._labels)
        self._labels.append(label)
        self._index[label] = i
        return i

    def label_at(self, index: int) -> str:
        return OTHER if index >= len(self._labels) else self._labels[index]

    def label_for(self, value: object) -> str:
        """The bounded label string for ``value``: its own (cut) name or ``OTHER``."""
        return self.label_at(self.index_for(value))

    def count(self, value: object, n: int = 1) -> str:
        """Add ``n`` to ``value``'s label and return the label."""
        i = self.index_for(value)
        self.totals[i] += n
        return self.label_at(i)

    def counts(self) -> dict[str, int]:
        """Cumulative counts by label; ``OTHER`` only when something was counted as it."""
        out = {label: self.totals[i] for i, label in enumerate(self._labels)}
        if self.totals[self.max_classes]:
            out[OTHER] = self.totals[self.max_classes]
        return out

    def counts_of(self, index_counts: Iterable[int]) -> dict[str, int]:
        """Label -> count for per-index counts (e.g. a ``np.bincount`` of indexes); zero counts left out."""
        return {self.label_at(i): int(c) for i, c in enumerate(index_counts) if c}

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:
        return f"ClassCounter(max_classes={self.max_classes}, labels={len(self._labels)})"
