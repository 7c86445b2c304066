"""Judging an experiment's hypothesis: copy the evidence out of its state, run each declared check, combine.

Run by the bookkeeping task (``observe.bookkeeping``) every pass, never per request; the result is kept on
the experiment's state for /metrics, ``GET /experiments/NAME/verdict``, the report and the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cohort import CHAOS, CONTROL
from .check import INCONCLUSIVE, Evidence, Result, Status, combine

if TYPE_CHECKING:
    from ..experiments import ExperimentState
    from ..policy.model import HypothesisSpec

__all__ = ["Verdict", "evidence_of", "judge", "judge_evidence"]


@dataclass(frozen=True, slots=True)
class Verdict:
    experiment: str
    status: Status
    confidence: float
    checks: tuple[Result, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "verdict": self.status, "confidence": self.confidence,
                "checks": {r.check: r.to_dict() for r in self.checks}}


def evidence_of(st: ExperimentState, staging: bool = False) -> Evidence:
    """The numbers the checks read, copied from ``st`` (lists copied: the data plane keeps counting)."""
    chaos, control = st.cohort_metrics[CHAOS].duration, st.cohort_metrics[CONTROL].duration
    ks: dict[str, tuple[float, int, int]] = {}
    rows: dict[str, int] = {}
    flips: dict[str, int] = {}
    same: dict[str, int] = {}
    delta: dict[str, tuple[tuple[float, ...], list[int]]] = {}
    obs = st.observer
    if obs is not None:
        for name, report in obs.drift.items():
            if report.ks is not None:
                ks[name] = (report.ks, report.n_chaos, report.n_control)
        rows, flips, same = dict(obs.shadow_rows), dict(obs.shadow_flips), dict(obs.shadow_same)
        delta = {name: (d.bounds, list(d.counts)) for name, d in obs.shadow_delta.items()}
    return Evidence(
        requests=(st.requests[CHAOS], st.requests[CONTROL]), errors=(st.errors[CHAOS], st.errors[CONTROL]),
        latency_bounds=chaos.bounds, latency_counts=(list(chaos.counts), list(control.counts)),
        ks=ks, shadow_rows=rows, shadow_flips=flips, shadow_same=same, shadow_delta=delta,
        # A response whose head carried the marker is counted before it finishes (and counts in marker_of).
        marker=(min(st.marker_seen, st.marker_of), st.marker_of), staging=staging)


def judge_evidence(name: str, spec: HypothesisSpec, evidence: Evidence) -> Verdict:
    results = []
    for check, config in spec.asked():
        try:
            results.append(check.judge(config, evidence, spec.confidence))
        except (ArithmeticError, ValueError) as exc:  # a check that cannot judge says so; it never decides
            results.append(Result(check.name, INCONCLUSIVE, None, None, None, "", 0, check.INTERVAL,
                                  f"could not judge: {exc!r}"))
    return Verdict(name, combine(results), spec.confidence, tuple(results))


def judge(st: ExperimentState) -> Verdict | None:
    """The experiment's verdict, or None when it declares no hypothesis. Without a control cohort (staging's
    default) the checks that compare take their absolute forms."""
    spec = st.spec.hypothesis
    if not spec.asked():
        return None
    return judge_evidence(st.spec.name, spec, evidence_of(st, staging=st.spec.control_buckets == 0))
