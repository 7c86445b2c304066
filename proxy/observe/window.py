"""Sliding windows of predictions per output and cohort, for the drift statistics.

``Window`` keeps the last ``max_n`` values no older than ``max_age`` seconds in two preallocated numpy ring
buffers (time, value): ``add`` is O(1), ``add_many`` one or two slice copies, ``values(now)`` one
vectorized mask. Times are whatever clock the caller uses (``time.monotonic()`` in the proxy); they should
not go backwards (values older than ``now - max_age`` are dropped from the front, and any that are out of
order are masked out on read).

``PredictionWindows`` holds, for each output (at most ``max_outputs``, in order of first appearance) and
cohort (``chaos``, ``control``): a window of numeric values, a window of confidences (the largest entry
of a probability vector) and a window of class indexes from a ``ClassCounter`` shared by both cohorts of
the output (so chaos and control are counted against the same bounded label set). ``drift(output, now)``
compares the two cohorts' windows with ``drift.compare_numeric`` / ``compare_classes``; ``report_outputs``
builds the ``outputs`` object of the report (see ``report.py``).

The event loop is the only writer: no lock. Compute drift off the hot path (a periodic task), not per
request.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..cohort import COHORT_NAMES
from .classes import ClassCounter
from .drift import DEFAULT_THRESHOLDS, DriftReport, Thresholds, compare_classes, compare_numeric

__all__ = ["COHORT_NAMES", "KINDS", "DriftHistory", "OutputWindows", "PredictionWindows", "Window"]

KINDS = ("numeric", "class", "probability")


class Window:
    """The last ``max_n`` ``(t, value)`` pairs no older than ``max_age`` seconds (``math.inf``: no age limit)."""

    __slots__ = ("_head", "_size", "_t", "_v", "max_age", "max_n")

    def __init__(self, max_n: int, max_age: float = math.inf) -> None:
        if max_n < 1:
            raise ValueError("max_n must be at least 1")
        if not max_age > 0:
            raise ValueError("max_age must be positive")
        self.max_n, self.max_age = max_n, max_age
        self._t = np.zeros(max_n, dtype=np.float64)
        self._v = np.zeros(max_n, dtype=np.float64)
        self._head = 0  # where the next value goes
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        self._head = self._size = 0

    def add(self, value: float, t: float) -> None:
        h = self._head
        self._t[h] = t
        self._v[h] = value
        self._head = (h + 1) % self.max_n
        if self._size < self.max_n:
            self._size += 1

    def add_many(self, values: ArrayLike, t: float) -> None:
        """Add a batch of values observed at time ``t`` (e.g. the rows of one response)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        k = v.size
        if k == 0:
            return
        if k >= self.max_n:
            v, k = v[-self.max_n:], self.max_n
        h = self._head
        first = min(k, self.max_n - h)
        self._v[h:h + first] = v[:first]
        self._t[h:h + first] = t
        if first < k:
            self._v[:k - first] = v[first:]
            self._t[:k - first] = t
        self._head = (h + k) % self.max_n
        self._size = min(self._size + k, self.max_n)

    def _ordered(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        start = (self._head - self._size) % self.max_n
        if start + self._size <= self.max_n:
            sl = slice(start, start + self._size)
            return self._t[sl], self._v[sl]
        idx = (start + np.arange(self._size)) % self.max_n
        return self._t[idx], self._v[idx]

    def values(self, now: float) -> NDArray[np.float64]:
        """The values of the window at ``now``, oldest first (a copy). Drops those older than ``max_age``."""
        if self._size == 0:
            return np.empty(0, dtype=np.float64)
        t, v = self._ordered()
        if math.isinf(self.max_age):
            return v.copy()
        keep = t >= now - self.max_age
        if not keep.all():
            # Forget the expired prefix for good (times are in insertion order).
            expired = int(np.argmax(keep)) if keep.any() else self._size
            self._size -= expired
            return v[keep].copy()
        return v.copy()


@dataclass
class OutputWindows:
    """The windows of one output: numeric values, confidences and class indexes per cohort."""

    kind: str
    classes: ClassCounter
    numeric: dict[str, Window]
    confidence: dict[str, Window]
    class_index: dict[str, Window]
    # Predictions seen per cohort since the start, kept or not.
    seen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COHORT_NAMES, 0))


class PredictionWindows:
    """Sliding windows of predictions per (output, cohort), and the drift between the cohorts."""

    def __init__(self, max_n: int = 2000, max_age: float = 600.0, *, max_classes: int = 20,
                 max_outputs: int = 16, bins: int = 10, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> None:
        self.max_n, self.max_age = max_n, max_age
        self.max_classes, self.max_outputs = max_classes, max_outputs
        self.bins, self.thresholds = bins, thresholds
        self.outputs: dict[str, OutputWindows] = {}

    def output(self, name: str, kind: str) -> OutputWindows | None:
        """The windows of ``name``, created on first use; None past ``max_outputs`` (predictions of further
        outputs are ignored). The kind is fixed by the first call."""
        ow = self.outputs.get(name)
        if ow is not None:
            return ow
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if len(self.outputs) >= self.max_outputs:
            return None

        def per_cohort() -> dict[str, Window]:
            return {c: Window(self.max_n, self.max_age) for c in COHORT_NAMES}

        ow = OutputWindows(kind, ClassCounter(self.max_classes), per_cohort(), per_cohort(), per_cohort())
        self.outputs[name] = ow
        return ow

    @staticmethod
    def _cohort(cohort: str) -> str:
        if cohort not in COHORT_NAMES:
            raise ValueError(f"cohort must be one of {COHORT_NAMES}, got {cohort!r}")
        return cohort

    def add_numeric(self, output: str, cohort: str, values: ArrayLike, t: float) -> bool:
        """Numeric predictions (scores, regression values) of one response; non-finite ones are dropped."""
        self._cohort(cohort)
        ow = self.output(output, "numeric")
        if ow is None:
            return False
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        ow.numeric[cohort].add_many(v, t)
        ow.seen[cohort] += int(v.size)
        return True

    def add_classes(self, output: str, cohort: str, labels: Iterable[object], t: float) -> bool:
        """Class labels of one response, counted through the output's bounded ``ClassCounter``."""
        self._cohort(cohort)
        ow = self.output(output, "class")
        if ow is None:
            return False
        counter = ow.classes
        indexes = np.fromiter((counter.index_for(label) for label in labels), dtype=np.int64)
        if indexes.size:
            counts = np.bincount(indexes, minlength=counter.max_classes + 1)
            for i in np.flatnonzero(counts):
                counter.totals[i] += int(counts[i])
        ow.class_index[cohort].add_many(indexes, t)
        ow.seen[cohort] += int(indexes.size)
        return True

    def add_probabilities(self, output: str, cohort: str, vectors: ArrayLike,
                          t: float) -> tuple[list[float], list[tuple[int, int]]] | None:
        """Probability vectors of one response, shape ``[rows, classes]`` (or one vector): the confidence
        (largest entry) goes to the confidence window, the argmax (as the class index ``"0"``, ``"1"`` …)
        to the class window. Rows with a non-finite entry are dropped. Returns what was recorded, for the
        caller's own histograms: the confidence of each kept row, and ``(class index, rows)`` per predicted
        class; None when nothing could be (not a probability output, or no vectors)."""
        self._cohort(cohort)
        ow = self.output(output, "probability")
        if ow is None:
            return None
        p = np.asarray(vectors, dtype=np.float64)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2 or p.shape[1] == 0:
            return None
        finite = np.isfinite(p).all(axis=1)
        if not finite.all():
            p = p[finite]
        if p.shape[0] == 0:
            return [], []
        confidence = p.max(axis=1)
        ow.confidence[cohort].add_many(confidence, t)
        # Each distinct argmax is mapped to its class index once (a bincount: the argmax is below the
        # vector length), then every row through the lookup table.
        top = p.argmax(axis=1)
        counts = np.bincount(top)
        lut = np.zeros(counts.size, dtype=np.int64)
        found: list[tuple[int, int]] = []
        per_class = counts.tolist()
        for k in np.flatnonzero(counts).tolist():
            n = per_class[k]
            lut[k] = i = ow.classes.index_for(k)
            ow.classes.totals[i] += n
            found.append((i, n))
        ow.class_index[cohort].add_many(lut[top], t)
        ow.seen[cohort] += int(p.shape[0])
        return confidence.tolist(), found

    # ------------------------------------------------------------------------------------------ reading

    def numeric(self, output: str, cohort: str, now: float) -> NDArray[np.float64]:
        """The numeric window (the confidence window for a probability output)."""
        ow = self.outputs[output]
        w = ow.confidence if ow.kind == "probability" else ow.numeric
        return w[self._cohort(cohort)].values(now)

    def class_counts(self, output: str, cohort: str, now: float) -> dict[str, int]:
        ow = self.outputs[output]
        idx = ow.class_index[self._cohort(cohort)].values(now).astype(np.int64)
        return ow.classes.counts_of(np.bincount(idx, minlength=ow.classes.max_classes + 1))

    def drift(self, output: str, now: float) -> DriftReport | None:
        """Chaos against control for ``output`` over the current windows; None while a cohort is empty.

        Numeric outputs compare values, probability outputs confidences, class outputs label counts."""
        ow = self.outputs[output]
        if ow.kind == "class":
            control, chaos = self.class_counts(output, "control", now), self.class_counts(output, "chaos", now)
            if not control or not chaos:
                return None
            return compare_classes(control, chaos, thresholds=self.thresholds)
        a, b = self.numeric(output, "control", now), self.numeric(output, "chaos", now)
        if a.size == 0 or b.size == 0:
            return None
        return compare_numeric(a, b, bins=self.bins, thresholds=self.thresholds)

    def report_outputs(self, now: float, *, sample: int = 2000, seed: int = 0) -> dict[str, Any]:
        """The ``outputs`` object of the report: per output its kind, per cohort up to ``sample`` values
        (a seeded random subsample beyond) and the windowed class counts, the drift and its alarms."""
        rng = np.random.default_rng(seed)
        out: dict[str, Any] = {}
        for name, ow in self.outputs.items():
            entry: dict[str, Any] = {"kind": ow.kind}
            for cohort in COHORT_NAMES:
                values = self.numeric(name, cohort, now) if ow.kind != "class" else np.empty(0)
                if values.size > sample:
                    values = np.sort(rng.choice(values, size=sample, replace=False))
                entry[cohort] = {"values": [float(x) for x in values],
                                 "classes": self.class_counts(name, cohort, now),
                                 "seen": ow.seen[cohort]}
            report = self.drift(name, now)
            entry["drift"] = report.to_dict() if report is not None else None
            entry["alarms"] = list(report.alarms) if report is not None else []
            out[name] = entry
        return out


class DriftHistory:
    """The last ``max_points`` drift evaluations, for the report's ``drift_history``."""

    def __init__(self, max_points: int = 720) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=max_points)

    def append(self, t: str, output: str, report: DriftReport) -> None:
        """Record ``report`` at ``t`` (an ISO 8601 time)."""
        self.points.append({"t": t, "output": output, "psi": report.psi, "ks_p": report.ks_p,
                            "chi2_p": report.chi2_p, "js": report.js, "wasserstein": report.wasserstein})

    def to_list(self) -> list[dict[str, Any]]:
        return list(self.points)
