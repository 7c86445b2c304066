"""How the data plane runs an experiment's faults: in policy order, across waits, and past a broken one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest

from proxy.faults.abort import Abort
from proxy.faults.base import FaultContext, Outcome
from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, OVERRIDE_ENV, chaos_experiment, errors_total, faults_total


async def test_faults_after_a_delay_run_once_the_delay_is_over(upstream, start_sidecar):
    faults: list[dict[str, Any]] = [{"type": "delay", "duration": "150ms"}, {"type": "abort", "status": 503}]
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment(faults)), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.post(f"http://127.0.0.1:{sc.proxy_port}/v1/infer", json={"q": 1}, headers=FORCE_CHAOS) as r:
            await r.read()
        elapsed = time.monotonic() - t0
    assert r.status == 503 and r.headers["x-mlchaos-fault"] == "delay,abort"
    assert 0.145 <= elapsed < 0.6
    assert faults_total(sc, "e1", "delay") == faults_total(sc, "e1", "abort") == 1


async def test_a_stall_that_passes_goes_on_to_the_next_fault(upstream, start_sidecar):
    faults: list[dict[str, Any]] = [{"type": "stall", "cap": "100ms", "then": "pass"},
                                    {"type": "abort", "status": 429}]
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment(faults)), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s, \
            s.get(f"http://127.0.0.1:{sc.proxy_port}/", headers=FORCE_CHAOS) as r:
        await r.read()
    assert r.status == 429 and r.headers["x-mlchaos-fault"] == "stall,abort"


async def test_a_fault_that_raises_is_counted_and_the_request_goes_on_without_it(upstream, start_sidecar,
                                                                                 monkeypatch):
    def broken(self: Abort, ctx: FaultContext) -> Outcome:
        raise RuntimeError("a bug in a fault")

    monkeypatch.setattr(Abort, "apply", broken)
    faults: list[dict[str, Any]] = [{"type": "abort", "status": 503}, {"type": "fallback", "upstream": "fallback"}]
    policy = policy_from(upstream.url, {**chaos_experiment(faults), "upstreams": {"fallback": upstream.url}})
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    url = f"http://127.0.0.1:{sc.proxy_port}/v1/infer"
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.post(url, json={"q": 1}, headers=FORCE_CHAOS) as r:
                body = await r.json()
            assert r.status == 200 and body["path"] == "/v1/infer"
    assert errors_total(sc, "internal") == 3
    assert faults_total(sc, "e1", "fallback") == 3


@pytest.mark.parametrize(("faults", "task"), [
    ([{"type": "abort", "status": 503}], False),
    ([{"type": "fallback", "upstream": "fallback"}], False),
    ([{"type": "delay", "duration": "10ms"}], False),  # a timer
    ([{"type": "throttle", "rate": 100000}], True),  # the throttled relay is a coroutine
])
async def test_only_throttling_gives_a_chaos_request_a_task_of_its_own(upstream, start_sidecar, monkeypatch, faults,
                                                                 task):
    from proxy.edges.http1 import exchange

    spawned: list[object] = []
    real_spawn = exchange._tasks.spawn

    def counting_spawn(coro: Coroutine[Any, Any, Any], **kwargs: Any) -> asyncio.Task[Any]:
        spawned.append(coro)
        return real_spawn(coro, **kwargs)

    policy = policy_from(upstream.url, {**chaos_experiment(faults), "upstreams": {"fallback": upstream.url}})
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    url = f"http://127.0.0.1:{sc.proxy_port}/v1/infer"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"q": 1}, headers=FORCE_CHAOS) as r:  # warms the pool
            await r.read()
        monkeypatch.setattr(exchange._tasks, "spawn", counting_spawn)
        async with s.post(url, json={"q": 1}, headers=FORCE_CHAOS) as r:
            await r.read()
    assert r.status in (200, 503)
    assert bool(spawned) is task
