"""The report's data: the JSON of ``GET /experiments/{name}/report`` (the shape in the package docstring),
read from one experiment's run-time state."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ...cohort import CHAOS, COHORT_NAMES

if TYPE_CHECKING:
    from ...experiments import ExperimentState

__all__ = ["report_data"]


def report_data(st: ExperimentState, active: bool) -> dict[str, Any]:
    """Per cohort counts, latency and injected faults, the kill switch, and the observer's predictions, drift
    and SRM (when the experiment observes predictions)."""
    faults: dict[str, int] = {}
    for fault, counter in zip(st.spec.faults, st.fault_counters, strict=True):
        faults[fault.type] = faults.get(fault.type, 0) + int(counter.value)
    cohorts: dict[str, Any] = {}
    for i, cohort in enumerate(COHORT_NAMES):
        dist = st.cohort_metrics[i].duration
        running, buckets = 0, []
        for bound, n in zip((*dist.bounds, "+Inf"), dist.counts, strict=True):
            running += n
            buckets.append([bound, running])
        cohorts[cohort] = {"requests": st.requests[i], "errors": st.errors[i],
                           "latency_seconds": {"buckets": buckets, "sum": dist.sum},
                           **({"faults": faults} if i == CHAOS else {})}
    data: dict[str, Any] = {
        "experiment": st.spec.name, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "state": "active" if active else "stopped", "reason": st.reason,
        "chaos_percent": st.spec.chaos_percent, "control_percent": st.spec.control_percent,
        "cohorts": cohorts, "outputs": {}, "drift_history": [], "srm": None,
        "fault_outcomes": st.outcomes.to_dict(),
        "hypothesis": st.verdict.to_dict() if st.verdict is not None else None,
        "kill_switch": {"enabled": st.spec.kill_switch.enabled, "tripped": st.tripped,
                        "guards": st.guards.snapshot() if st.guards is not None else {}},
    }
    if st.observer is not None:
        data.update(st.observer.report())
    if st.samples is not None:
        data["samples"] = st.samples.report()
        data["expectations"] = st.samples.verdicts()
    if st.llm is not None:
        st.llm.process()
        st.llm.compute(time.monotonic())
        data["llm"] = st.llm.report()
    return data
