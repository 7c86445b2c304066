"""The protocol-neutral exchange: one request and its answer, as the faults, the cohorts and the guards see it.

A request flows one way: a protocol edge (``proxy/edges/http1``; later gRPC) parses it and asks the router
for an ``Assignment``; ``Exchange.start`` runs the chaos cohort's faults, which return outcomes (answer, drop,
wait, or go on); the edge forwards to the upstream and relays the answer, through the response and stream
hooks faults registered; ``record`` counts the finished exchange and feeds the kill switch's guards, and a
guard that trips stops the experiment before the next request is assigned.

An edge subclasses ``Exchange`` and supplies what is protocol-specific: reading and changing the request
(``FaultContext``'s request side), ``forward`` to the upstream, ``local_reply`` and ``drop_client`` for
outcomes that answer without it, and ``finish`` to release its connections. Both classes are compiled by
mypyc (setup.py's HOT), so the split costs a native virtual call, not a Python attribute lookup.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from .cohort import CHAOS
from .faults.base import Drop, Outcome, Reply, ResponseHook, StreamHook, Wait
from .payload.bodies import ExchangePayload

if TYPE_CHECKING:
    from .dataplane.state import DataPlane
    from .experiments import ExperimentState
    from .metrics import CohortMetrics
    from .observe.llm import StreamMeter
    from .routing import Assignment

__all__ = ["DROPPED", "Exchange"]

_rand = random.random
log = logging.getLogger("mlchaos")
# Status of a request whose connection a fault dropped; counted as code="dropped".
DROPPED = 0


class Exchange:
    """What every protocol's exchange shares: the assignment, the faults and their holds, the hooks on the
    answer, and the record of how it ended."""

    __slots__ = (
        "_payload", "applied", "cohort", "finished", "hooks", "loop", "matched", "meter", "plane", "recorded",
        "resume_at", "st", "status", "stream_hooks", "t0", "task", "tee", "throttle_bps", "timer", "upstream_name",
    )

    def __init__(self, plane: DataPlane, assignment: Assignment, loop: asyncio.AbstractEventLoop) -> None:
        self.plane = plane
        st = assignment.experiment
        self.st: ExperimentState | None = st
        self.cohort: int = assignment.cohort
        # The experiment that matched the request but put it in no cohort (its guards still learn from it).
        self.matched: ExperimentState | None = assignment.matched
        # The edge's own reference to the loop: a native attribute read, where the data plane's is a Python one.
        self.loop = loop
        self.t0 = loop.time()
        self.status = 0
        self.applied: list[str] | None = None
        self.resume_at = 0
        # FaultContext: where and how fast the answer comes (set by fallback, wrong_version, throttle).
        self.upstream_name: str | None = None
        self.throttle_bps: float | None = None
        # Response hooks of faults (and observers); with any, the response is held until complete.
        self.hooks: list[ResponseHook] | None = None
        # Stream hooks: called per body chunk as it arrives, nothing held beyond what a hook holds.
        self.stream_hooks: list[StreamHook] | None = None
        self._payload: ExchangePayload | None = None
        # An LLM answer's meter (chaos and control of an OpenAI-compatible path): the edge feeds it what it
        # writes to the client; ``record`` closes it.
        self.meter: StreamMeter | None = None
        # A copy of the response body for the experiment's prediction observer (chaos and control only,
        # JSON only, at most inspect_body_bytes); parsed later in a background task, never here.
        self.tee: list[bytes] | None = [] if st is not None and st.observer is not None and st.observer.wants() \
            else None
        self.finished = False
        self.recorded = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- FaultContext: the protocol-neutral part (the request side is the edge's)
    def payload(self) -> ExchangePayload:
        """The exchange's payloads, parsed on first use with the experiment's payload settings."""
        if self._payload is None:
            assert self.st is not None
            self._payload = ExchangePayload(self, self.st.spec.payload, self.st.adapter_options)
        return self._payload

    def count_unparsed(self, direction: str) -> None:
        if self.st is not None:
            self.st.unparsed[self.cohort][direction].value += 1

    def on_response(self, hook: ResponseHook) -> None:
        if self.hooks is None:
            self.hooks = []
        self.hooks.append(hook)

    def on_stream(self, hook: StreamHook) -> None:
        if self.stream_hooks is None:
            self.stream_hooks = []
        self.stream_hooks.append(hook)

    # -- what an edge supplies: the request side of FaultContext ...
    @property
    def method(self) -> str:
        raise NotImplementedError

    @property
    def target(self) -> str:
        raise NotImplementedError

    @property
    def path(self) -> str:
        raise NotImplementedError

    def header(self, name: bytes) -> bytes | None:
        raise NotImplementedError

    def request_body(self) -> bytes | None:
        raise NotImplementedError

    def replace_request_body(self, data: bytes) -> None:
        raise NotImplementedError

    def set_request_header(self, name: bytes, value: bytes) -> None:
        raise NotImplementedError

    def set_target(self, target: str) -> None:
        raise NotImplementedError

    def sticky_value(self) -> bytes | None:
        raise NotImplementedError

    # ... and the way to the upstream and back
    def forward(self) -> None:
        """Send the request to the upstream (``upstream_name`` or the primary) and relay its answer."""
        raise NotImplementedError

    def local_reply(self, reply: Reply) -> None:
        """Answer with ``reply`` instead of the upstream."""
        raise NotImplementedError

    def drop_client(self, drop: Drop) -> None:
        """Close the client's connection (or stream) without an answer."""
        raise NotImplementedError

    def finish(self, upstream_keep: bool = False) -> None:
        """The exchange is over: release its upstream connection, record it, let the connection go on."""
        raise NotImplementedError

    # -- the faults
    def start(self) -> None:
        """Run the chaos cohort's faults, then forward; the assignment is already made."""
        if self.cohort == CHAOS and self.st is not None and self.st.spec.faults:
            outcome = self.run_faults(0)
            if isinstance(outcome, Wait):
                self.hold(outcome)
                return
            if outcome is not None:
                self.short_circuit(outcome)
                return
        self.forward()

    def run_faults(self, start: int) -> Outcome:
        """The experiment's faults from index ``start``, each drawn by its probability, in policy order,
        until one answers or waits (then ``resume_at`` is where to go on after the wait)."""
        assert self.st is not None
        st = self.st
        faults = st.spec.faults
        for i in range(start, len(faults)):
            fault = faults[i]
            p = fault.probability
            if p < 1.0 and (p <= 0.0 or _rand() >= p):
                continue
            if self.applied is None:
                self.applied = []
            self.applied.append(fault.type)
            st.fault_counters[i].value += 1
            st.faults_injected += 1
            try:
                outcome = fault.apply(self)
            except Exception:  # a fault's bug must not fail the request: it goes on without that fault
                self.plane.metrics.errors["internal"].value += 1
                log.exception("fault %s failed; the request goes on without it", fault.type)
                continue
            if outcome is not None:
                if isinstance(outcome, Wait):
                    self.resume_at = i + 1
                return outcome
        return None

    def hold(self, wait: Wait) -> None:
        """A fault's wait: a timer, not a task; the client leaving cancels it (``abandon``)."""
        self.timer = self.loop.call_later(wait.seconds, self._resume, wait)

    def _resume(self, wait: Wait) -> None:
        self.timer = None
        if self.finished:
            return
        outcome = wait.then if wait.then is not None else self.run_faults(self.resume_at)
        if isinstance(outcome, Wait):
            self.hold(outcome)
        elif outcome is not None:
            self.short_circuit(outcome)
        else:
            self.forward()

    def short_circuit(self, outcome: Reply | Drop) -> None:
        """A fault answered instead of the upstream, or dropped the connection."""
        if isinstance(outcome, Reply):
            self.local_reply(outcome)
        else:
            self.drop_client(outcome)
            self.status = DROPPED
        self.finish()

    # -- the record
    def unlink(self) -> None:
        """Drop what points back at this exchange (its payload, the faults' hooks): without the cycles,
        reference counting frees a finished exchange at once. Left to the cyclic GC, every chaos request
        with a payload fault kept its parsed body alive until the next collection, and the collections it
        caused cost ~300 instructions per request (callgrind) with a colder heap."""
        self._payload = None
        self.hooks = None
        self.stream_hooks = None

    def cancel_waits(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.timer is not None:
            self.timer.cancel()

    def record(self) -> None:
        """Count the finished exchange once, and feed the guards; one that trips stops the experiment."""
        if self.recorded:
            return
        self.recorded = True
        seconds = self.loop.time() - self.t0
        st = self.st
        plane = self.plane
        if st is None:
            self.count(plane.metrics.untouched, seconds)
            matched = self.matched
            if matched is not None and matched.tripped is None:
                tripped = matched.observe_untouched(self.status, seconds)
                if tripped is not None:
                    plane.experiments.trip(matched, tripped)
            return
        meter = self.meter
        ttft = -1.0
        if meter is not None:
            self.meter = None
            # A stream that failed after its 200 (an error event, no [DONE]) counts as a cut one does.
            if meter.close(self.status, False):
                self.status = DROPPED
            if meter.sse:
                ttft = meter.ttft(self.loop.time())
        self.count(st.cohort_metrics[self.cohort], seconds)
        applied = self.applied
        if applied is not None:
            st.outcomes.record(applied, self.status)
            if st.marker is not None:
                st.marker_of += 1  # a faulted response, for the hypothesis's marker share (the edge counts seen)
        tripped = st.observe(self.cohort, self.status, seconds)
        if tripped is None and ttft >= 0.0 and st.guards is not None:
            tripped = st.guards.observe_ttft(self.cohort == CHAOS, ttft, False)
        if tripped is not None:
            plane.experiments.trip(st, tripped)

    def count(self, metrics: CohortMetrics, seconds: float) -> None:
        """Count the answer in the request metrics; an edge whose protocol has its own codes labels them."""
        metrics.count(self.status, seconds)

    def record_abandoned(self) -> None:
        """The client left. Answered already: an ordinary record. Gone before an answer: no error (the
        client's reasons are its own), but a slow request for the latency guard when it waited past the SLO,
        on the chaos side and the comparison side alike."""
        meter = self.meter
        if meter is not None:
            self.meter = None
            meter.close(self.status, True)
            st = self.st
            if meter.sse and st is not None and st.guards is not None and st.tripped is None:
                tripped = st.guards.observe_ttft(self.cohort == CHAOS, meter.ttft(self.loop.time()), True)
                if tripped is not None:
                    self.plane.experiments.trip(st, tripped)
        if self.status:
            self.record()
            return
        self.recorded = True
        st, chaos = (self.st, self.cohort == CHAOS) if self.st is not None else (self.matched, False)
        if st is not None and st.guards is not None and st.tripped is None:
            tripped = st.guards.observe_abandoned(chaos, self.loop.time() - self.t0)
            if tripped is not None:
                self.plane.experiments.trip(st, tripped)
