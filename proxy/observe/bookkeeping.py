"""The prediction bookkeeping task, off the request path: parse the responses the data plane copied, compute
drift and the sample ratio check, and send the shadow twins of changed chaos requests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from ..cohort import CHAOS, CONTROL
from ..hypothesis.judge import judge
from ..logs import event
from .shadow import send_queued

if TYPE_CHECKING:
    from ..experiments import Experiments

__all__ = ["OBSERVE_SECONDS", "OBSERVE_SLICE", "judge_all", "observe_forever", "observe_once"]

# How often copied responses are parsed into prediction metrics (drift runs at its own, slower interval),
# and how many are parsed before the loop serves requests again (each takes some tens of microseconds).
OBSERVE_SECONDS = 0.5
OBSERVE_SLICE = 32
# A shadow request that takes longer is counted as failed.
SHADOW_TIMEOUT = 30.0


async def observe_forever(experiments: Experiments, upstream_url: Callable[[], str]) -> None:
    """Every ``OBSERVE_SECONDS``: refill each observer's parse budget, parse, compute, send shadows."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SHADOW_TIMEOUT)) as session:
        while True:
            await asyncio.sleep(OBSERVE_SECONDS)
            # Parse in slices and let requests through in between: a pass over half a second of
            # copies at 10k req/s would otherwise hold the loop for tens of milliseconds.
            for st in list(experiments.states.values()):
                if st.observer is not None:
                    st.observer.refill(OBSERVE_SECONDS)
                while st.observer is not None and st.observer.queue:
                    st.observer.process(limit=OBSERVE_SLICE)
                    await asyncio.sleep(0)
                while st.llm is not None and st.llm.pending:
                    st.llm.process(limit=OBSERVE_SLICE)
                    await asyncio.sleep(0)
                if st.samples is not None and st.samples.queue:
                    try:
                        await st.samples.drain()  # in a worker thread: file I/O never runs on the loop
                    except Exception:  # as below: one experiment's samples must not stop the others' bookkeeping
                        logging.getLogger("mlchaos").exception("writing samples failed for %s", st.spec.name)
            observe_once(experiments)
            judge_all(experiments)
            observers = [st.observer for st in list(experiments.states.values()) if st.observer is not None]
            send_queued(session, observers, upstream_url())


def observe_once(experiments: Experiments, now: float | None = None) -> None:
    """Parse what is queued and, where an experiment's ``drift_interval`` has passed, compute drift and SRM."""
    t = time.monotonic() if now is None else now
    for st in list(experiments.states.values()):
        llm = st.llm
        if llm is not None and t - llm.last_compute >= st.spec.observe.drift_interval:
            try:
                llm.process()
                llm.compute(t)
            except Exception:  # as below: one experiment's numbers must not stop the others'
                logging.getLogger("mlchaos").exception("LLM bookkeeping failed for %s", st.spec.name)
        obs = st.observer
        if obs is None:
            continue
        try:
            obs.process(t)
            if t - obs.last_compute >= st.spec.observe.drift_interval:
                spec = st.spec
                if obs.compute(st.requests[CHAOS], st.requests[CONTROL], spec.chaos_buckets, spec.control_buckets, t):
                    assert obs.srm is not None
                    event("sample_ratio_mismatch", logging.WARNING, experiment=spec.name,
                          p_value=obs.srm.p_value, observed=obs.srm.observed_share,
                          expected=obs.srm.expected_share)
        except Exception:  # one experiment's bad numbers must not stop the others' bookkeeping
            logging.getLogger("mlchaos").exception("prediction bookkeeping failed for %s", st.spec.name)


def judge_all(experiments: Experiments) -> None:
    """Judge each experiment's hypothesis from its current numbers; a change of verdict is logged."""
    for st in list(experiments.states.values()):
        try:
            verdict = judge(st)
        except Exception:  # one experiment's bad numbers must not stop the others' verdicts
            logging.getLogger("mlchaos").exception("hypothesis judgement failed for %s", st.spec.name)
            continue
        before = st.verdict.status if st.verdict is not None else None
        st.verdict = verdict
        if verdict is not None and verdict.status != before:
            event("hypothesis_verdict", logging.WARNING if verdict.status == "deviated" else logging.INFO,
                  experiment=st.spec.name, verdict=verdict.status,
                  checks={r.check: r.status for r in verdict.checks})
