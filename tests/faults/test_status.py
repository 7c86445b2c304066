"""``status``: the model answers, the client sees another status with the model's body."""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, OVERRIDE_ENV, chaos_experiment, faults_total


async def test_status_replaces_the_code_after_the_model_has_answered(start_upstream, start_sidecar):
    calls = {"n": 0}

    async def model(request: web.Request) -> web.Response:
        calls["n"] += 1
        return web.json_response({"predictions": [1, 2]})

    up = await start_upstream({"/v1/models/m:predict": model})
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "status", "status": 500}])),
                             env=OVERRIDE_ENV)
    url = f"http://127.0.0.1:{sc.proxy_port}/v1/models/m:predict"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"instances": [[1]]}, headers=FORCE_CHAOS) as r:
            assert r.status == 500
            body = await r.read()
            assert json.loads(body) == {"predictions": [1, 2]}
            assert r.headers["x-mlchaos-fault"] == "status"
            assert r.headers["content-length"] == str(len(body))
            assert "x-mlchaos-error" not in r.headers
        async with s.post(url, json={"instances": [[1]]}, headers=FORCE_CONTROL) as r:
            assert r.status == 200
    assert calls["n"] == 2  # the model did the work both times
    assert faults_total(sc, "e1", "status") == 1


async def test_a_response_over_the_inspection_limit_streams_through_untouched(start_upstream, start_sidecar):
    big = b"x" * 300_000

    async def model(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(0, len(big), 50_000):
            await resp.write(big[i:i + 50_000])
        await resp.write_eof()
        return resp

    up = await start_upstream({"/big": model})
    policy = policy_from(up.url, {**chaos_experiment([{"type": "status", "status": 500}]),
                                  "limits": {"inspect_body_bytes": "64KiB"}})
    sc = await start_sidecar(policy, env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{sc.proxy_port}/big", headers=FORCE_CHAOS) as r:
            assert r.status == 200
            assert await r.read() == big
    value = sc.metrics.registry.get_sample_value("mlchaos_proxy_errors_total",
                                                 {"kind": "response_over_inspect_limit"})
    assert value == 1
