"""A hypothesis judged at the ingress sidecar of a service whose dependency's sidecar injects the fault: two real
sidecars, each holding an experiment of the same name and sticky key, agree on cohorts with no coordination. The
ingress experiment has no faults of its own: every chaos answer counts for the marker, and every chaos request
gets a shadow twin, which the dependency's sidecar leaves alone (x-mlchaos-shadow)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import policy_from

BAGGAGE = ("x-user-id", "x-mlchaos-shadow")


def experiment(faults: list[dict[str, Any]], hypothesis: dict[str, Any] | None = None,
               shadow: bool = False) -> dict[str, Any]:
    exp: dict[str, Any] = {"name": "dep", "chaos": 25, "control": 25, "sticky_key": "header:x-user-id",
                           "faults": faults, "kill_switch": {"enabled": False},
                           "reveal": {"cohort": True, "fault": True}}
    if hypothesis:
        exp["hypothesis"] = hypothesis
    if shadow:
        exp["observe"] = {"shadow": {"enabled": True, "max_concurrency": 64}}
    return {"max_blast_radius": 25, "experiments": [exp]}


async def test_marker_and_twins_across_two_sidecars(start_upstream, start_sidecar) -> None:
    seen: list[tuple[str | None, str | None]] = []  # (x-mlchaos-shadow, cohort) of what the model was asked

    async def model(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"predictions": [1]})

    model_up = await start_upstream({"/invocations": model})
    dep = await start_sidecar(policy_from(model_up.url, experiment([{"type": "abort", "status": 503}])))
    session = aiohttp.ClientSession()

    async def service(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: request.headers[k] for k in BAGGAGE if k in request.headers}
        async with session.post(f"http://127.0.0.1:{dep.proxy_port}/invocations", data=body,
                                headers={**headers, "content-type": "application/json"}) as r:
            await r.read()
            seen.append((request.headers.get("x-mlchaos-shadow"), r.headers.get("x-mlchaos-cohort", "none")))
            if r.status == 200:
                return web.json_response({"predictions": [1]})
        # The error path: a fallback model that answers otherwise, and says so.
        return web.json_response({"predictions": [0]}, headers={"x-model-version": "fallback"})

    try:
        svc = await start_upstream({"/invocations": service})
        hypothesis = {"marker": {"header": "x-model-version: fallback", "min_share": 0.9, "min_sample": 30},
                      "agreement": {"min_share": 0.9, "min_sample": 30}}
        ingress = await start_sidecar(policy_from(svc.url, experiment([], hypothesis, shadow=True)))
        async with aiohttp.ClientSession() as client:
            for i in range(400):
                async with client.post(f"http://127.0.0.1:{ingress.proxy_port}/invocations",
                                       json={"inputs": [[i]]}, headers={"x-user-id": f"u{i}"}) as r:
                    await r.read()
                    cohort = r.headers.get("x-mlchaos-cohort", "none")
                    # Same name, same key: the dependency's sidecar put the request in the same cohort.
                    assert seen[-1] == (None, cohort), (i, seen[-1], cohort)
                    assert (r.headers.get("x-model-version") == "fallback") == (cohort == "chaos")
            st = ingress.experiments.states["dep"]
            for _ in range(50):  # the twins go out from the bookkeeping task, every half second
                if st.observer is not None and sum(st.observer.shadow_results.values()) >= st.requests[0]:
                    break
                await asyncio.sleep(0.1)
        report = ingress.report("dep")
        assert report is not None
        verdict = report["hypothesis"]
        n_chaos = st.requests[0]
        assert n_chaos >= 60
        marker = verdict["checks"]["marker"]
        assert (marker["status"], marker["estimate"], marker["n"]) == ("held", 1.0, n_chaos)
        # Each twin reached the model unfaulted (no cohort at the dependency's sidecar) and answered 1, where the
        # chaos answer was the fallback's 0: no row agrees.
        twins = [s for s in seen if s[0] is not None]
        compared = st.observer.shadow_results["compared"] if st.observer is not None else 0
        assert len(twins) == compared > 30 and all(t == ("1", "none") for t in twins)
        agreement = verdict["checks"]["agreement"]
        assert (agreement["status"], agreement["estimate"], agreement["n"]) == ("deviated", 0.0, compared)
        assert dep.experiments.states["dep"].requests[0] == n_chaos  # the twins were not counted there either
    finally:
        await session.close()
