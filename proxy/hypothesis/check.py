"""What a hypothesis check is: a named question about one experiment, declared like a guard.

A check module holds one ``Check`` subclass with its ``name`` (its section under ``hypothesis:`` in the
policy, its label in ``mlchaos_hypothesis``), its ``Config`` (a frozen dataclass declared with
``proxy.declare.fields.spec``; its tolerance defaults to None, meaning the experiment does not ask it) and
``judge``, which reads an ``Evidence`` (numbers the bookkeeping already keeps) and returns a ``Result``:
an estimate, its confidence interval (``INTERVAL`` says which), and held / deviated / inconclusive.

A check is decided only when its interval lies wholly on one side of the tolerance; an interval that
straddles it, or fewer observations than the check's ``min_sample``, is inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "DEVIATED", "HELD", "INCONCLUSIVE", "STATUS_VALUE", "Check", "Evidence", "Result", "at_least", "at_most", "combine",
    "hypothesis_values",
]

Status = Literal["held", "deviated", "inconclusive"]
HELD: Status = "held"
DEVIATED: Status = "deviated"
INCONCLUSIVE: Status = "inconclusive"
# mlchaos_hypothesis's value per status: 1 held, 0 inconclusive, -1 deviated.
STATUS_VALUE = {HELD: 1.0, INCONCLUSIVE: 0.0, DEVIATED: -1.0}


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the checks read, copied from one experiment's state by the bookkeeping task (never per request).
    Cohort pairs are (chaos, control); ``staging`` means there is no control cohort to compare with."""

    requests: tuple[int, int] = (0, 0)
    errors: tuple[int, int] = (0, 0)
    latency_bounds: tuple[float, ...] = ()
    latency_counts: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))
    # Per numeric output: (ks, n_chaos, n_control) over the drift window.
    ks: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    # Per output: rows compared with the shadow twin, and of those the rows whose label changed.
    shadow_rows: dict[str, int] = field(default_factory=dict)
    shadow_flips: dict[str, int] = field(default_factory=dict)
    # Per output: rows whose prediction is unchanged (same label or argmax; an equal number).
    shadow_same: dict[str, int] = field(default_factory=dict)
    # Per numeric output: the histogram (bounds, counts) of |chaos - unchanged| per row.
    shadow_delta: dict[str, tuple[tuple[float, ...], list[int]]] = field(default_factory=dict)
    # Marker: responses that carried it, of the faulted responses inspected.
    marker: tuple[int, int] = (0, 0)
    staging: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    status: Status
    estimate: float | None
    low: float | None
    high: float | None
    # What the estimate must stay within: "<= 0.02" or ">= 0.9".
    tolerance: str
    n: int
    interval: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "estimate": self.estimate, "low": self.low,
                "high": self.high, "tolerance": self.tolerance, "n": self.n, "interval": self.interval,
                "reason": self.reason}


def at_most(check: str, estimate: float, low: float, high: float, bound: float, n: int, interval: str,
            what: str) -> Result:
    """The estimate must stay at or below ``bound``: held when the whole interval is, deviated when none is."""
    status = HELD if high <= bound else DEVIATED if low > bound else INCONCLUSIVE
    verb = {HELD: "within", DEVIATED: "beyond", INCONCLUSIVE: "straddles"}[status]
    return Result(check, status, estimate, low, high, f"<= {bound:g}", n, interval,
                  f"{what} {estimate:.4g} [{low:.4g}, {high:.4g}] {verb} <= {bound:g}")


def at_least(check: str, estimate: float, low: float, high: float, bound: float, n: int, interval: str,
             what: str) -> Result:
    """The estimate must stay at or above ``bound``."""
    status = HELD if low >= bound else DEVIATED if high < bound else INCONCLUSIVE
    verb = {HELD: "within", DEVIATED: "beyond", INCONCLUSIVE: "straddles"}[status]
    return Result(check, status, estimate, low, high, f">= {bound:g}", n, interval,
                  f"{what} {estimate:.4g} [{low:.4g}, {high:.4g}] {verb} >= {bound:g}")


def too_few(check: str, n: int, need: int, tolerance: str, interval: str, what: str) -> Result:
    return Result(check, INCONCLUSIVE, None, None, None, tolerance, n, interval,
                  f"{n} {what} so far; the check needs {need}")


def hypothesis_values(verdict: Any) -> dict[str, float]:
    """mlchaos_hypothesis's samples of a ``judge.Verdict`` (or None: no hypothesis, no samples)."""
    if verdict is None:
        return {}
    return {**{r.check: STATUS_VALUE[r.status] for r in verdict.checks}, "verdict": STATUS_VALUE[verdict.status]}


def combine(results: list[Result]) -> Status:
    """The experiment's verdict: any deviated -> deviated; all held -> held; else (or none) inconclusive."""
    statuses = {r.status for r in results}
    if DEVIATED in statuses:
        return DEVIATED
    return HELD if results and statuses == {HELD} else INCONCLUSIVE


class Check:
    name: ClassVar[str] = ""
    HELP: ClassVar[str] = ""
    # Which confidence interval the check reports.
    INTERVAL: ClassVar[str] = ""
    Config: ClassVar[type] = object

    @classmethod
    def asked(cls, config: Any) -> bool:
        """Whether the experiment declared this check (its tolerance is set)."""
        raise NotImplementedError

    @classmethod
    def judge(cls, config: Any, evidence: Evidence, confidence: float) -> Result:
        raise NotImplementedError
