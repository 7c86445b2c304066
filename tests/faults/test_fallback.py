"""``fallback``: chaos requests go to a named alternate upstream; everything else to the primary."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import (
    FORCE_CHAOS,
    FORCE_CONTROL,
    FORCE_NONE,
    OVERRIDE_ENV,
    RawClient,
    chaos_experiment,
    closed_port,
    faults_total,
    get,
)


def _named(name: str):
    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"upstream": name, "path": request.path_qs, "body": body.decode(),
                                  "host": request.headers.get("host")})
    return handler


def _routes(name: str) -> dict[str, Any]:
    handler = _named(name)
    return {"/": handler, "/{tail:.+}": handler}


async def _two_upstreams(start_upstream):
    primary = await start_upstream(_routes("primary"))
    fallback = await start_upstream(_routes("fallback"))
    return primary, fallback


def _policy(primary, fallback, probability: float = 1.0, **top):
    extra = chaos_experiment([{"type": "fallback", "upstream": "fallback", "probability": probability}])
    return policy_from(primary.url, {**extra, "upstreams": {"fallback": fallback.url}}, **top)


async def test_fallback_sends_chaos_to_the_fallback_and_control_and_none_to_the_primary(start_upstream,
                                                                                       start_sidecar):
    primary, fallback = await _two_upstreams(start_upstream)
    sc = await start_sidecar(_policy(primary, fallback), env=OVERRIDE_ENV)
    url = f"http://127.0.0.1:{sc.proxy_port}/v1/infer?x=1"
    got = {}
    async with aiohttp.ClientSession() as s:
        for cohort, headers in (("chaos", FORCE_CHAOS), ("control", FORCE_CONTROL), ("none", FORCE_NONE)):
            async with s.post(url, data=b"prompt", headers=headers) as r:
                got[cohort] = (await r.json(), r.headers.get("x-mlchaos-fault"))
    assert got["chaos"][0] == {"upstream": "fallback", "path": "/v1/infer?x=1", "body": "prompt",
                               "host": f"127.0.0.1:{sc.proxy_port}"}
    assert got["chaos"][1] == "fallback"
    assert got["control"][0]["upstream"] == "primary" and got["control"][1] is None
    assert got["none"][0]["upstream"] == "primary" and got["none"][1] is None
    assert faults_total(sc, "e1", "fallback") == 1


async def test_fallback_with_preserve_host_false_sends_the_fallback_authority(start_upstream, start_sidecar):
    primary, fallback = await _two_upstreams(start_upstream)
    sc = await start_sidecar(_policy(primary, fallback, preserve_host=False), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        chaos = (await c.request(get("/", headers=FORCE_CHAOS))).json()
        control = (await c.request(get("/", headers=FORCE_CONTROL))).json()
    assert chaos["upstream"] == "fallback" and chaos["host"] == f"127.0.0.1:{fallback.port}"
    assert control["upstream"] == "primary" and control["host"] == f"127.0.0.1:{primary.port}"


async def test_alternating_cohorts_on_one_connection_reach_the_right_upstreams(start_upstream, start_sidecar):
    primary, fallback = await _two_upstreams(start_upstream)
    sc = await start_sidecar(_policy(primary, fallback), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"".join(get(f"/r{i}", headers=FORCE_CHAOS if i % 2 else FORCE_CONTROL) for i in range(6)))
        rs = [r.json() for r in await c.responses(6)]
    assert [(r["upstream"], r["path"]) for r in rs] == [
        ("fallback" if i % 2 else "primary", f"/r{i}") for i in range(6)]


async def test_fallback_probability_splits_chaos_within_a_binomial_band(start_upstream, start_sidecar):
    primary, fallback = await _two_upstreams(start_upstream)
    p, n = 0.3, 400
    sc = await start_sidecar(_policy(primary, fallback, probability=p), env=OVERRIDE_ENV)
    where = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/", headers=FORCE_CHAOS) as r:
                where.append((await r.json())["upstream"])
    k = where.count("fallback")
    assert abs(k - n * p) <= 4 * math.sqrt(n * p * (1 - p)), k
    assert faults_total(sc, "e1", "fallback") == k


async def test_a_fallback_upstream_that_is_down_gives_the_chaos_cohort_502(start_upstream, start_sidecar):
    primary = await start_upstream(_routes("primary"))
    extra = chaos_experiment([{"type": "fallback", "upstream": "fallback"}])
    policy = policy_from(primary.url, {**extra, "upstreams": {"fallback": f"http://127.0.0.1:{closed_port()}"}})
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        chaos = await c.request(get("/", headers=FORCE_CHAOS))
        control = await c.request(get("/", headers=FORCE_CONTROL))
    assert chaos.status == 502 and chaos.header("x-mlchaos-error") == "1"
    assert control.status == 200 and control.json()["upstream"] == "primary"
