"""What a feature store fed the application, per cohort: feature statuses, value distributions and drift.

The prediction observer hands over the features of each chaos or control answer it reads (a Feast answer's
``feast.response`` table and its statuses), in the background task, never on the request path. Labels are
bounded: at most ``max_features`` feature names (the rest count as ``__other__``, status counts only), the
five Feast statuses (anything else is ``INVALID``), and class labels per feature as for predictions.

- ``mlchaos_feature_status_total{experiment,cohort,feature,status}``: cells served, by status;
- ``mlchaos_feature_value{experiment,cohort,feature}``: numeric values (edges learned from the first control
  values, then frozen, as for predictions);
- ``mlchaos_feature_drift{experiment,feature,statistic}``: chaos against control over the sliding window.
"""

from __future__ import annotations

import math
from typing import Any

from ..metrics import Distribution
from ..payload.table import is_number
from .classes import OTHER
from .drift import DriftReport, learn_edges
from .window import PredictionWindows

__all__ = ["FEATURE_STATUSES", "FeatureStats"]

COHORT_NAMES = ("chaos", "control")
FEATURE_STATUSES = ("INVALID", "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE")
# Control values learned from before a feature's histogram edges freeze.
LEARN_FROM = 200


class _Feature:
    __slots__ = ("edges", "pending", "values")

    def __init__(self) -> None:
        self.edges: tuple[float, ...] = ()
        self.pending: dict[str, list[float]] = {c: [] for c in COHORT_NAMES}
        self.values: dict[str, Distribution] = {}


class FeatureStats:
    def __init__(self, max_features: int, window: int, window_seconds: float, max_classes: int) -> None:
        self.max_features = max_features
        self.windows = PredictionWindows(window, window_seconds, max_classes=max_classes, max_outputs=max_features)
        # (cohort, feature, status) -> cells
        self.statuses: dict[tuple[str, str, str], int] = {}
        self.features: dict[str, _Feature] = {}
        self.drift: dict[str, DriftReport] = {}
        self.answers = dict.fromkeys(COHORT_NAMES, 0)

    def _name(self, name: str) -> str:
        if name in self.features or len(self.features) < self.max_features:
            self.features.setdefault(name, _Feature())
            return name
        return OTHER

    def add(self, cohort: str, names: list[str], columns: list[list[Any]], statuses: list[list[str]] | None,
            t: float) -> None:
        """One answer's features: ``columns[j]`` holds feature ``names[j]`` per entity row, ``statuses[j]``
        their statuses (None: a format without statuses, every non-null cell counts as PRESENT)."""
        self.answers[cohort] += 1
        for j, raw in enumerate(names):
            name = self._name(raw)
            col = columns[j]
            col_statuses = statuses[j] if statuses is not None else \
                ["NULL_VALUE" if v is None else "PRESENT" for v in col]
            for s in col_statuses:
                label = s if s in FEATURE_STATUSES else "INVALID"
                key = (cohort, name, label)
                self.statuses[key] = self.statuses.get(key, 0) + 1
            if name == OTHER:
                continue
            numbers = [float(v) for v in col if is_number(v) and math.isfinite(float(v))]
            labels = [v for v in col if isinstance(v, (str, bool))]
            if numbers and not labels:
                if self.windows.add_numeric(name, cohort, numbers, t):
                    self._histogram(self.features[name], cohort, numbers)
            elif labels and not numbers:
                self.windows.add_classes(name, cohort, labels, t)

    def _histogram(self, feature: _Feature, cohort: str, values: list[float]) -> None:
        if not feature.edges:
            feature.pending[cohort].extend(values)
            control = feature.pending["control"]
            if len(control) < LEARN_FROM:
                if len(feature.pending[cohort]) > 50 * LEARN_FROM:
                    del feature.pending[cohort][:-LEARN_FROM]  # chaos alone never sets the edges; bound it
                return
            feature.edges = learn_edges(control)
            backlog, feature.pending = feature.pending, {c: [] for c in COHORT_NAMES}
            for c, vs in backlog.items():
                self._histogram(feature, c, vs)
            return
        dist = feature.values.get(cohort)
        if dist is None:
            dist = feature.values[cohort] = Distribution(feature.edges)
        dist.observe_all(values)

    def compute(self, t: float) -> None:
        for name in list(self.windows.outputs):
            report = self.windows.drift(name, t)
            if report is not None:
                self.drift[name] = report

    def families(self, experiment: str) -> dict[str, list[tuple[list[str], Any]]]:
        status = [([experiment, c, f, s], float(n)) for (c, f, s), n in self.statuses.items()]
        value = [([experiment, c, name], dist.exposition()) for name, feat in self.features.items()
                 for c, dist in feat.values.items()]
        drift = [([experiment, name, stat], v) for name, report in self.drift.items()
                 for stat, v in report.statistics().items()]
        return {"feature_status": status, "feature_value": value, "feature_drift": drift}

    def report(self, t: float) -> dict[str, Any]:
        """The report's ``features``: answers read, per feature the status counts per cohort, the values and
        drift as for predictions."""
        statuses: dict[str, dict[str, dict[str, int]]] = {}
        for (c, f, s), n in sorted(self.statuses.items()):
            statuses.setdefault(f, {c: {} for c in COHORT_NAMES})[c][s] = n
        return {"answers": dict(self.answers), "statuses": statuses,
                "values": self.windows.report_outputs(t)}
