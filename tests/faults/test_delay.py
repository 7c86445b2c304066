"""``delay``: the chaos cohort waits before the model is called; each distribution draws what it claims."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.faults.delay import Delay
from tests.conftest import policy_from
from tests.dataplane.conftest import (
    FORCE_CHAOS,
    FORCE_CONTROL,
    OVERRIDE_ENV,
    RawClient,
    chaos_experiment,
    errors_total,
    eventually,
    faults_total,
    get,
)

DRAWS = 5000


def delay_from(fault: dict[str, Any]) -> Delay:
    """A delay fault compiled from its policy text, as the sidecar would build it."""
    policy = policy_from("http://127.0.0.1:9", chaos_experiment([{"type": "delay", **fault}]))
    compiled = policy.experiments[0].faults[0]
    assert isinstance(compiled, Delay)
    return compiled


def draws(fault: dict[str, Any], seed: int = 1) -> list[float]:
    d = delay_from(fault)
    rng = random.Random(seed)
    return [d.sample(rng) for _ in range(DRAWS)]


async def test_a_fixed_200ms_delay_holds_the_chaos_cohort_but_not_control(upstream, start_sidecar):
    fault = {"type": "delay", "distribution": "fixed", "duration": "200ms"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    url = f"http://127.0.0.1:{sc.proxy_port}/v1/infer"
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.post(url, json={"q": 1}, headers=FORCE_CHAOS) as r:
            body = await r.json()
        chaos_elapsed = time.monotonic() - t0
        assert r.status == 200 and body["path"] == "/v1/infer"
        assert r.headers["x-mlchaos-fault"] == "delay"
        t0 = time.monotonic()
        async with s.post(url, json={"q": 1}, headers=FORCE_CONTROL) as r:
            await r.read()
        control_elapsed = time.monotonic() - t0
    assert 0.195 <= chaos_elapsed < 0.6
    assert control_elapsed < 0.15
    assert faults_total(sc, "e1", "delay") == 1


async def test_delayed_requests_are_held_concurrently_not_one_after_another(upstream, start_sidecar):
    fault = {"type": "delay", "duration": "200ms"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        async def one() -> int:
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/", headers=FORCE_CHAOS) as r:
                return r.status

        t0 = time.monotonic()
        statuses = await asyncio.gather(*(one() for _ in range(10)))
    assert statuses == [200] * 10
    assert time.monotonic() - t0 < 0.6


async def test_a_client_that_leaves_during_a_delay_is_counted_and_the_model_is_never_called(start_upstream,
                                                                                            start_sidecar):
    calls = 0

    async def model(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(text="answer")

    up = await start_upstream({"/v1/infer": model})
    fault = {"type": "delay", "duration": "1s"}
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    c = await RawClient.connect(sc.proxy_port)
    await c.send(get("/v1/infer", headers=FORCE_CHAOS))
    await asyncio.sleep(0.1)
    await c.close()
    assert await eventually(lambda: errors_total(sc, "client_disconnect") == 1, timeout=1)
    await asyncio.sleep(1.0)  # past the delay: the abandoned request must not reach the model
    assert calls == 0
    async with await RawClient.connect(sc.proxy_port) as c2:
        assert (await c2.request(get("/v1/infer", headers=FORCE_CONTROL))).body == b"answer"
    assert calls == 1


async def test_pipelined_delayed_and_undelayed_requests_keep_their_order(upstream, start_sidecar):
    fault = {"type": "delay", "duration": "200ms"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"".join(get(f"/p{i}", headers=FORCE_CHAOS if i % 2 == 0 else FORCE_CONTROL)
                              for i in range(4)))
        rs = await c.responses(4, timeout=3)
    assert [r.json()["path"] for r in rs] == ["/p0", "/p1", "/p2", "/p3"]
    assert [r.header("x-mlchaos-fault") for r in rs] == ["delay", None, "delay", None]


def test_a_fixed_delay_is_always_its_duration():
    assert set(draws({"distribution": "fixed", "duration": "150ms"})) == {0.15}


def test_a_uniform_delay_stays_in_its_bounds_with_the_expected_mean():
    xs = draws({"distribution": "uniform", "min": "100ms", "max": "300ms"})
    assert min(xs) >= 0.1 and max(xs) <= 0.3
    assert statistics.fmean(xs) == pytest.approx(0.2, rel=0.02)
    assert statistics.pstdev(xs) == pytest.approx(0.2 / 12 ** 0.5, rel=0.05)


def test_a_normal_delay_has_its_mean_and_stddev():
    xs = draws({"distribution": "normal", "mean": "200ms", "stddev": "30ms"})
    assert statistics.fmean(xs) == pytest.approx(0.2, rel=0.02)
    assert statistics.pstdev(xs) == pytest.approx(0.03, rel=0.05)


def test_a_normal_delay_never_goes_below_zero():
    xs = draws({"distribution": "normal", "mean": "10ms", "stddev": "50ms"})
    assert min(xs) == 0.0
    # P(N(10ms, 50ms) < 0) = P(Z < -0.2) ~ 0.42
    assert sum(x == 0.0 for x in xs) / DRAWS == pytest.approx(0.42, abs=0.03)


def test_a_lognormal_delay_has_its_median():
    xs = draws({"distribution": "lognormal", "median": "200ms", "sigma": 0.5})
    assert statistics.median(xs) == pytest.approx(0.2, rel=0.10)
    assert min(xs) > 0


def test_a_pareto_delay_starts_at_its_scale_with_the_expected_median():
    xs = draws({"distribution": "pareto", "scale": "100ms", "alpha": 2})
    assert min(xs) >= 0.1
    assert statistics.median(xs) == pytest.approx(0.1 * 2 ** 0.5, rel=0.10)


@pytest.mark.parametrize("fault", [
    pytest.param({"distribution": "pareto", "scale": "100ms", "alpha": 0.5, "cap": "1s"}, id="pareto"),
    pytest.param({"distribution": "lognormal", "median": "800ms", "sigma": 1.5, "cap": "1s"}, id="lognormal"),
    pytest.param({"distribution": "normal", "mean": "900ms", "stddev": "500ms", "cap": "1s"}, id="normal"),
])
def test_no_delay_exceeds_its_cap(fault):
    xs = draws(fault)
    assert max(xs) == 1.0
    assert sum(x == 1.0 for x in xs) > DRAWS // 20  # the tail really is cut, not merely rare


def test_the_same_seed_draws_the_same_delays():
    fault = {"distribution": "lognormal", "median": "200ms", "sigma": 0.5}
    assert draws(fault, seed=7) == draws(fault, seed=7)
    assert draws(fault, seed=7) != draws(fault, seed=8)
