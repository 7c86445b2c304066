"""The fault outcome matrix: per fault type, how the system answered the requests it acted on.

- rejected: a 4xx (the system refused loudly);
- failed: a 5xx or a connection closed without an answer;
- changed: answered, and the shadow twin (the unchanged request) shows a different prediction: silent damage;
- unchanged: answered, and the twin's predictions are the same: the fault was absorbed;
- answered: answered and not (or not yet) compared with a twin (no shadow, or the fault changed no features).

The data plane calls ``record`` once per finished faulted request (a few list increments); the shadow sender
moves a request from answered to changed or unchanged once its twin is compared (``settle``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["OUTCOMES", "FaultOutcomes"]

OUTCOMES = ("rejected", "failed", "changed", "unchanged", "answered")
_REJECTED, _FAILED, _CHANGED, _UNCHANGED, _ANSWERED = range(5)


class FaultOutcomes:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        # fault type -> counts in OUTCOMES order
        self.counts: dict[str, list[int]] = {}

    def _row(self, fault: str) -> list[int]:
        row = self.counts.get(fault)
        if row is None:
            row = self.counts[fault] = [0, 0, 0, 0, 0]
        return row

    def record(self, faults: list[str], status: int) -> None:
        """One finished request the ``faults`` acted on, answered with ``status`` (0: dropped)."""
        i = _REJECTED if 400 <= status < 500 else _FAILED if status >= 500 or status < 100 else _ANSWERED
        if len(faults) == 1:
            self._row(faults[0])[i] += 1
            return
        for fault in dict.fromkeys(faults):  # a type listed twice counts once
            self._row(fault)[i] += 1

    def settle(self, faults: list[str], changed: bool) -> None:
        """An answered request's twin was compared: its predictions ``changed`` or not."""
        for fault in dict.fromkeys(faults):
            row = self._row(fault)
            if row[_ANSWERED] > 0:
                row[_ANSWERED] -= 1
            row[_CHANGED if changed else _UNCHANGED] += 1

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {fault: dict(zip(OUTCOMES, row, strict=True)) for fault, row in self.counts.items()}

    def samples(self, experiment: str) -> list[tuple[list[str], Any]]:
        """(experiment, fault, outcome) -> count, for mlchaos_fault_outcomes."""
        return [([experiment, fault, outcome], float(n)) for fault, row in self.counts.items()
                for outcome, n in zip(OUTCOMES, row, strict=True)]
