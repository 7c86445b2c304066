"""Experiments at run time: which are active, and what each has counted.

The compiled ``Experiment`` is frozen; ``ExperimentState`` adds what changes while it runs (started,
stopped, counts). Every change (start, stop, schedule tick, reload, trip) builds a new ``Router``
(proxy/routing.py), the snapshot the hot path walks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .cohort import CHAOS, COHORTS, CONTROL
from .hypothesis.check import hypothesis_values
from .hypothesis.scan import marker_bytes
from .killswitch.guards import GUARD_NAMES, ExperimentGuards, is_error
from .metrics import CohortMetrics, Count, ExperimentFamilies, ExperimentReading, Metrics
from .observe.llm import LlmObserver
from .observe.observer import PredictionObserver
from .observe.outcomes import FaultOutcomes
from .observe.samples import SampleWriter
from .payload.bodies import adapter_options
from .policy.model import BUCKETS, Experiment, Policy, Schedule, StickyKey
from .routing import Router

__all__ = ["ExperimentState", "Experiments"]


class ExperimentState:
    __slots__ = (
        "guards",
        "header_rules",
        "include_4xx",
        "methods",
        "path_re",
        "sticky_key",
        "tripped",
        "trip_counters",
        "adapter_options",
        "unparsed",
        "observer",
        "llm",
        "samples",
        "outcomes",
        "bounds",
        "chaos_buckets",
        "cohort_metrics",
        "errors",
        "fault_counters",
        "faults_elsewhere",
        "faults_injected",
        "twin_every_chaos",
        "manual",
        "marker",
        "marker_of",
        "marker_seen",
        "reason",
        "requests",
        "running_since",
        "salt",
        "spec",
        "stopped_at",
        "verdict",
    )

    def __init__(self, spec: Experiment, metrics: Metrics) -> None:
        self.spec = spec
        # blake2b keys are at most 64 bytes; names are capped at 63 characters by the loader.
        self.salt = spec.name.encode()[:64]
        self.chaos_buckets = spec.chaos_buckets
        self.bounds = spec.chaos_buckets + spec.control_buckets
        # What the router reads for every request, copied out of the (interpreted, frozen) spec into native
        # attributes: reading them through spec.match cost ~1,200 instructions per request.
        self.methods: frozenset[str] | None = spec.match.methods
        self.path_re: re.Pattern[str] | None = spec.match.path
        self.header_rules: tuple[tuple[str, re.Pattern[str]], ...] = spec.match.headers
        self.sticky_key: StickyKey | None = spec.sticky_key
        self.cohort_metrics: tuple[CohortMetrics, CohortMetrics] = metrics.cohorts(spec.name)
        self.fault_counters = tuple(metrics.faults.labels(spec.name, f.type) for f in spec.faults)
        # None: follows the policy; "started"/"stopped": set through the admin API (or a limit).
        self.manual: str | None = None
        self.reason = ""
        self.running_since: float | None = None
        self.stopped_at: float | None = None
        # Per cohort (chaos, control): answered requests, and those that failed (5xx, dropped, proxy error).
        self.requests = [0, 0]
        self.errors = [0, 0]
        self.faults_injected = 0
        self.guards = ExperimentGuards(spec.kill_switch) if spec.kill_switch.enabled else None
        # What counts as an error, in the counts too (the errors guard's setting), copied out of the spec.
        self.include_4xx: bool = spec.kill_switch.config("errors").include_4xx
        # Why and when the kill switch tripped; it stays until re-armed, across reloads and restarts.
        self.tripped: dict[str, Any] | None = None
        self.trip_counters: dict[str, Count] = {g: metrics.killswitch_trips.labels(spec.name, g) for g in GUARD_NAMES}
        self.adapter_options = adapter_options(spec.payload)
        # Prediction bookkeeping (off the request path); None costs the hot path nothing.
        self.observer: PredictionObserver | None = PredictionObserver(
            spec.name, spec.observe, spec.payload, self.adapter_options) if spec.observe.predictions else None
        # Samples of the tables each cohort was served, per fault (off the request path); None costs nothing.
        samples = spec.samples
        self.samples: SampleWriter | None = SampleWriter(
            spec.name, samples.dir, samples.max_rows, samples.max_files, samples.format,
            tuple(f.type for f in spec.faults)) if samples.dir is not None else None
        # LLM answers of OpenAI-compatible paths (time to first token, stream outcomes, drift); None when the
        # payload format rules them out, so other experiments' exchanges pay nothing for it.
        self.llm: LlmObserver | None = LlmObserver(spec.name, metrics.llm) \
            if spec.payload.format in ("auto", "openai") else None
        # The hypothesis's marker header, looked for only on faulted chaos responses when declared; of those
        # responses (marker_of), how many carried it (marker_seen).
        header = spec.hypothesis.config("marker").header
        self.marker: tuple[bytes, bytes] | None = marker_bytes(header) if header is not None else None
        self.marker_seen = 0
        self.marker_of = 0
        # No faults of its own: the experiment observes faults that act elsewhere, at the sidecar of a dependency
        # holding an experiment of the same name and sticky key (cohorts agree with no coordination:
        # proxy/cohort.py). Every chaos response then counts for the marker, and with observe.shadow every chaos
        # request gets its twin (which that sidecar leaves alone: routing.py).
        self.faults_elsewhere: bool = not spec.faults
        self.twin_every_chaos: bool = self.faults_elsewhere and self.observer is not None \
            and spec.observe.shadow.enabled
        # The fault outcome matrix; the observer's shadow twins settle its answered requests.
        self.outcomes: FaultOutcomes = self.observer.outcomes if self.observer is not None else FaultOutcomes()
        # The hypothesis's last verdict (hypothesis.judge.Verdict), set by the bookkeeping task.
        self.verdict: Any = None
        # Per cohort (chaos, control): payloads that could not be read, by direction.
        self.unparsed = tuple({d: metrics.payload_unparsed.labels(spec.name, COHORTS[c], d)
                               for d in ("request", "response")} for c in (CHAOS, CONTROL))

    def adopt(self, prev: ExperimentState) -> None:
        """Carry run-time state over a reload that kept this experiment."""
        self.manual, self.reason = prev.manual, prev.reason
        self.running_since, self.stopped_at = prev.running_since, prev.stopped_at
        self.requests, self.errors, self.faults_injected = prev.requests, prev.errors, prev.faults_injected
        self.tripped = prev.tripped
        self.marker_seen, self.marker_of = prev.marker_seen, prev.marker_of
        if prev.observer is not None and (prev.spec.observe, prev.spec.payload) == (self.spec.observe,
                                                                                    self.spec.payload):
            self.observer = prev.observer  # the windows and histograms gathered so far still count
        if prev.samples is not None and self.samples is not None and prev.spec.samples == self.spec.samples:
            self.samples = prev.samples  # the files written so far still count against the bounds
        if prev.llm is not None and self.llm is not None:
            self.llm = prev.llm  # the answers compared so far still count
        self.outcomes = prev.outcomes
        if self.observer is not None:
            self.observer.outcomes = self.outcomes
        if prev.spec.kill_switch == self.spec.kill_switch:
            self.guards = prev.guards  # same guards: the evidence gathered so far still counts

    def observe_untouched(self, status: int, seconds: float) -> str | None:
        """A request the experiment matched but left in no cohort: the guards' comparison traffic.

        Control alone is as large as chaos, which caps how fast any valid test can tell a 2x or 5x error
        rate apart at base rates of 1% or less (benchmarks/RESULTS.md); every untouched request the
        experiment matched was assigned by the same random draw, so comparing chaos against all of them
        keeps the test exact and gives it the power the detection targets need.
        """
        guards = self.guards
        return guards.observe(False, status, seconds) if guards is not None else None

    def observe(self, cohort: int, status: int, seconds: float) -> str | None:
        """Count one finished request of a cohort; returns a guard's name when it trips."""
        self.requests[cohort] += 1
        if is_error(status, self.include_4xx):
            self.errors[cohort] += 1
        guards = self.guards
        return guards.observe(cohort == CHAOS, status, seconds) if guards is not None else None


def _in_schedule(s: Schedule, now: datetime) -> bool:
    if s.start is not None and now < s.start:
        return False
    if s.end is not None and now >= s.end:
        return False
    if not s.windows:
        return True
    now = now.astimezone(UTC)  # windows are written in UTC
    t, day = now.time(), now.weekday()
    for w in s.windows:
        if w.start <= w.end:
            if day in w.days and w.start <= t < w.end:
                return True
        elif (day in w.days and t >= w.start) or ((day - 1) % 7 in w.days and t < w.end):
            return True  # the window spans midnight: its tail belongs to the previous day
    return False


class Experiments:
    """All experiments of the running policy and their run-time state."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # Called after a kill switch trips or is re-armed (persist, log, webhook); never on the request path.
        self.on_trip: Callable[[ExperimentState], None] = lambda st: None
        self.on_rearm: Callable[[ExperimentState], None] = lambda st: None
        ExperimentFamilies(metrics.registry, self.readings)
        self.policy: Policy | None = None
        self.states: dict[str, ExperimentState] = {}
        self.router = Router()
        self.override_token: bytes | None = None
        self.max_blast_buckets = 500
        # Set by POST /halt: nothing runs again until an experiment is started by name, reloads included.
        self.halted: str | None = None
        # Trips of experiments the running policy does not have: they return tripped if a reload brings
        # them back, and stay in the state file meanwhile.
        self.dormant_trips: dict[str, dict[str, Any]] = {}

    def apply_policy(self, policy: Policy, override_token: bytes | None) -> None:
        old = self.states
        states = {}
        for spec in policy.experiments:
            st = ExperimentState(spec, self.metrics)
            if spec.name in old:
                st.adopt(old[spec.name])
            states[spec.name] = st
        for name, prev in old.items():
            if name not in states:
                self.metrics.forget_experiment(name, {f.type for f in prev.spec.faults})
                if prev.tripped is not None:
                    self.dormant_trips[name] = prev.tripped
        for name, st in states.items():
            trip = self.dormant_trips.pop(name, None) if st.tripped is None else None
            if trip is not None:
                st.tripped = trip
                st.reason = f"kill switch tripped ({trip.get('guard', '?')}) before; re-arm to resume"
        self.policy, self.states = policy, states
        self.override_token = override_token if policy.cohort_override.enabled else None
        self.max_blast_buckets = policy.max_blast_radius_buckets
        self.refresh()

    def wants_to_run(self, st: ExperimentState, now: datetime) -> bool:
        if self.policy is None or self.policy.halted or st.manual == "stopped":
            return False
        if st.tripped is not None:
            return False
        if st.manual != "started" and (not st.spec.enabled or self.halted is not None):
            return False
        return _in_schedule(st.spec.schedule, now)

    def refresh(self, now: datetime | None = None) -> list[tuple[str, bool, str]]:
        """Recompute the active set; returns (name, now_active, reason) for each experiment that changed."""
        now = now or datetime.now(UTC)
        mono = time.monotonic()
        changes = []
        active = []
        # Running experiments keep their place; newcomers join only while the chaos shares fit the cap,
        # whatever brought them (a schedule opening, a reload, a start by hand).
        order = sorted(self.states.values(), key=lambda s: s.running_since is None)
        chaos = 0
        for st in order:
            run = self.wants_to_run(st, now)
            limit = st.spec.schedule.max_duration
            if run and limit is not None and st.running_since is not None and mono - st.running_since >= limit:
                st.manual, st.reason, run = "stopped", "max_duration reached", False
            if run and chaos + st.chaos_buckets > self.max_blast_buckets:
                run = False
                if st.running_since is None:
                    st.reason = (f"waiting: it would put {(chaos + st.chaos_buckets) * 100 / BUCKETS:g}% of traffic "
                                 f"in chaos, over max_blast_radius {self.max_blast_buckets * 100 / BUCKETS:g}%")
            if run:
                chaos += st.chaos_buckets
            was = st.running_since is not None
            if run and not was:
                st.running_since, st.stopped_at = mono, None
                changes.append((st.spec.name, True, st.reason or "policy"))
            elif not run and was:
                st.running_since, st.stopped_at = None, mono
                changes.append((st.spec.name, False, st.reason or self._why_off(st, now)))
            if run:
                active.append(st)
            self.metrics.experiment_active.labels(st.spec.name).set(1 if run else 0)
        # The router walks experiments in policy order: that order decides who takes an overlapping request.
        rank = {name: i for i, name in enumerate(self.states)}
        active.sort(key=lambda s: rank[s.spec.name])
        self.router = Router(tuple(active), self.override_token)
        return changes

    def trip(self, st: ExperimentState, guard: str) -> None:
        """Stop routing chaos at once: the router is rebuilt before the next request is assigned."""
        if st.tripped is not None:
            return
        reason = st.guards.trip_reason if st.guards is not None else guard
        st.tripped = {
            "guard": guard, "reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "n_chaos": st.requests[CHAOS], "n_control": st.requests[CONTROL],
            "errors_chaos": st.errors[CHAOS], "errors_control": st.errors[CONTROL],
            "guards": st.guards.snapshot() if st.guards is not None else {},
        }
        st.reason = f"kill switch tripped ({guard}): {reason}"
        st.trip_counters[guard].value += 1
        self.refresh()
        self.on_trip(st)

    def rearm(self, name: str) -> str | None:
        st = self.states.get(name)
        if st is None:
            return f"no experiment named {name!r}"
        if st.tripped is None:
            return "its kill switch has not tripped"
        st.tripped = None
        st.guards = ExperimentGuards(st.spec.kill_switch) if st.spec.kill_switch.enabled else None
        st.requests, st.errors = [0, 0], [0, 0]
        st.manual, st.reason = None, "re-armed through the admin API"
        self.refresh()
        self.on_rearm(st)
        return None

    def restore_tripped(self, tripped: dict[str, dict[str, Any]]) -> None:
        """Mark experiments tripped in an earlier run as tripped again; names the policy lacks wait, dormant."""
        for name, info in tripped.items():
            st = self.states.get(name)
            if st is None:
                self.dormant_trips[name] = info
            elif st.tripped is None:
                st.tripped = info
                st.reason = f"kill switch tripped ({info.get('guard', '?')}) in an earlier run; re-arm to resume"
        self.refresh()

    def tripped_state(self) -> dict[str, dict[str, Any]]:
        """Every remembered trip, dormant ones included: what the state file holds."""
        live = {name: st.tripped for name, st in self.states.items() if st.tripped is not None}
        return {**self.dormant_trips, **live}

    def readings(self) -> list[ExperimentReading]:
        """What /metrics reads of each experiment (the families are metrics.ExperimentFamilies')."""
        return [ExperimentReading(name, st.tripped is not None,
                                  st.guards.e_values() if st.guards is not None else {},
                                  st.observer.families() if st.observer is not None else None,
                                  st.llm.rows() if st.llm is not None else [],
                                  hypothesis_values(st.verdict), st.outcomes.samples(name))
                for name, st in list(self.states.items())]

    def _why_off(self, st: ExperimentState, now: datetime) -> str:
        if self.policy is not None and self.policy.halted:
            return "policy halted"
        if not st.spec.enabled and st.manual != "started":
            return "disabled in policy"
        return "outside schedule"

    def start(self, name: str) -> str | None:
        """Start by hand; returns a reason when refused."""
        st = self.states.get(name)
        if st is None:
            return f"no experiment named {name!r}"
        if self.policy is not None and self.policy.halted:
            return "the policy says halted: true"
        others = sum(o.chaos_buckets for o in self.router.active if o is not st)
        if others + st.chaos_buckets > self.max_blast_buckets:
            return (f"starting it would put {(others + st.chaos_buckets) * 100 / BUCKETS:g}% of traffic in "
                    f"chaos, over max_blast_radius {self.max_blast_buckets * 100 / BUCKETS:g}%")
        if st.tripped is not None:
            return "its kill switch has tripped: re-arm it first (POST /experiments/NAME/rearm)"
        if not _in_schedule(st.spec.schedule, datetime.now(UTC)):
            return "outside its schedule (start, end or daily windows)"
        st.manual, st.reason = "started", "started through the admin API"
        self.refresh()
        return None

    def stop(self, name: str, reason: str) -> str | None:
        st = self.states.get(name)
        if st is None:
            return f"no experiment named {name!r}"
        st.manual, st.reason = "stopped", reason
        self.refresh()
        return None

    def halt(self, reason: str) -> None:
        self.halted = reason
        for st in self.states.values():
            st.manual, st.reason = "stopped", reason
        self.refresh()
