"""A running sidecar judges a declared hypothesis in its bookkeeping task and serves the verdict: the
verdict endpoint's status, mlchaos_hypothesis, the gate and the report agree."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import policy_from
from tests.test_admin import call

HYPOTHESIS = {"error_rate": {"max_increase": 0.05, "min_sample": 30},
              "marker": {"header": "x-model-version: fallback", "min_share": 0.9, "min_sample": 30}}


async def fallback_model(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"predictions": [0]}, headers={"X-Model-Version": "fallback"})


def experiment(faults: list[dict[str, Any]], hypothesis: dict[str, Any] = HYPOTHESIS) -> dict[str, Any]:
    return {"max_blast_radius": 25, "experiments": [{
        "name": "fb", "chaos": 25, "control": 25, "faults": faults, "kill_switch": {"enabled": False},
        "hypothesis": hypothesis}]}


async def drive(port: int, n: int) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.post(f"http://127.0.0.1:{port}/predict", json={"x": 1}) as r:
                await r.read()


async def settled_verdict(sc: Any, timeout: float = 5.0) -> tuple[int, Any]:
    """The verdict once the bookkeeping task has judged what was sent (it runs every half second)."""
    deadline = time.monotonic() + timeout
    status, body = await call(sc.admin_port, "GET", "/experiments/fb/verdict")
    while status == 425 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status, body = await call(sc.admin_port, "GET", "/experiments/fb/verdict")
    return status, body


async def metric_lines(sc: Any) -> list[str]:
    _, text = await call(sc.admin_port, "GET", "/metrics")
    return [line for line in text.splitlines() if line.startswith("mlchaos_hypothesis{")]


async def test_a_working_fallback_holds(start_upstream, start_sidecar) -> None:
    primary = await start_upstream()
    fallback = await start_upstream({"/predict": fallback_model})
    sc = await start_sidecar(policy_from(primary.url, experiment([{"type": "fallback", "upstream": "fb"}]),
                                         upstreams={"fb": fallback.url}))
    assert (await call(sc.admin_port, "GET", "/experiments/fb/verdict"))[0] == 425  # nothing judged yet
    await drive(sc.proxy_port, 400)
    status, body = await settled_verdict(sc)
    assert status == 200, body
    assert body["verdict"] == "held"
    marker = body["checks"]["marker"]
    assert marker["status"] == "held" and marker["estimate"] == 1.0 and marker["n"] >= 30
    assert marker["low"] > 0.9 and marker["interval"] == "wilson"
    assert body["checks"]["error_rate"]["status"] == "held"
    lines = await metric_lines(sc)
    assert 'mlchaos_hypothesis{check="marker",experiment="fb"} 1.0' in lines
    assert 'mlchaos_hypothesis{check="verdict",experiment="fb"} 1.0' in lines
    gate = (await call(sc.admin_port, "GET", "/gate?experiment=fb"))[1]
    assert gate["hypothesis"]["verdict"] == "held"
    report = (await call(sc.admin_port, "GET", "/experiments/fb/report"))[1]
    assert report["hypothesis"]["checks"]["marker"]["status"] == "held"


async def test_a_failing_model_without_fallback_deviates(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, experiment([{"type": "abort", "status": 503}])))
    await drive(sc.proxy_port, 400)
    # The report runs a bookkeeping pass first: its verdict is current without waiting for the task.
    report = sc.report("fb")
    assert report is not None and report["hypothesis"]["verdict"] == "deviated"
    status, body = await settled_verdict(sc)
    assert status == 503, body
    assert body["verdict"] == "deviated"
    assert body["checks"]["marker"]["status"] == "deviated" and body["checks"]["marker"]["estimate"] == 0.0
    err = body["checks"]["error_rate"]
    assert err["status"] == "deviated" and err["low"] > 0.05
    assert 'mlchaos_hypothesis{check="verdict",experiment="fb"} -1.0' in await metric_lines(sc)
    gate = (await call(sc.admin_port, "GET", "/gate?experiment=fb"))[1]
    assert gate["verdict"] == "fail" and "hypothesis deviated" in gate["reason"]


async def test_too_few_requests_stay_inconclusive_with_425(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, experiment([{"type": "abort", "status": 503}])))
    await drive(sc.proxy_port, 10)
    await asyncio.sleep(1.2)  # two bookkeeping passes
    status, body = await call(sc.admin_port, "GET", "/experiments/fb/verdict")
    assert status == 425 and body["verdict"] == "inconclusive"
    assert "so far" in body["checks"]["error_rate"]["reason"]
    assert 'mlchaos_hypothesis{check="verdict",experiment="fb"} 0.0' in await metric_lines(sc)


async def test_no_hypothesis_is_404(upstream, start_sidecar) -> None:
    sc = await start_sidecar(policy_from(upstream.url, experiment([], {})))
    assert (await call(sc.admin_port, "GET", "/experiments/fb/verdict"))[0] == 404
    assert (await call(sc.admin_port, "GET", "/experiments/nope/verdict"))[0] == 404


async def test_staging_puts_all_traffic_in_chaos_and_judges_absolute_checks(upstream, start_sidecar) -> None:
    policy = policy_from(upstream.url, {"environment": "staging", "max_blast_radius": 100, "experiments": [{
        "name": "fb", "chaos": 100, "reveal": {"cohort": True}, "kill_switch": {"enabled": False},
        "faults": [{"type": "abort", "status": 503, "probability": 0.5}],
        "hypothesis": {"error_rate": {"max_increase": 0.1, "min_sample": 50}}}]})
    sc = await start_sidecar(policy)
    cohorts = set()
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            async with s.post(f"http://127.0.0.1:{sc.proxy_port}/predict", json={"x": 1}) as r:
                cohorts.add(r.headers.get("x-mlchaos-cohort"))
    assert cohorts == {"chaos"}
    status, body = await settled_verdict(sc)
    err = body["checks"]["error_rate"]
    # Half the requests fail: the chaos error rate alone (Wilson), wholly above 10%.
    assert status == 503 and err["status"] == "deviated" and err["interval"] == "wilson"
    assert err["n"] == 200 and 0.3 < err["estimate"] < 0.7
