"""``throttle``: the chaos cohort's response is delivered at the policy's rate, bytes intact."""

from __future__ import annotations

import hashlib
import os
import time

import aiohttp
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import FORCE_CHAOS, FORCE_CONTROL, OVERRIDE_ENV, RawClient, chaos_experiment, get

SIZE = 100_000
RATE = 50 * 1024  # 50KiB per second: 100 KB take ~1.95 s


async def _payload_upstream(start_upstream, payload: bytes, chunked: bool = False):
    async def blob(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=payload, content_type="application/octet-stream")
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(payload), 10_000):
            await resp.write(payload[i:i + 10_000])
        await resp.write_eof()
        return resp

    return await start_upstream({"/blob": blob})


async def test_a_throttled_100kb_response_takes_about_size_over_rate_and_is_intact(start_upstream, start_sidecar):
    payload = os.urandom(SIZE)
    up = await _payload_upstream(start_upstream, payload)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "throttle", "rate": "50KiB"}])),
                             env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.get(f"http://127.0.0.1:{sc.proxy_port}/blob", headers=FORCE_CHAOS) as r:
            first_at = None
            got = bytearray()
            async for piece in r.content.iter_any():
                if first_at is None:
                    first_at = time.monotonic() - t0
                got += piece
        elapsed = time.monotonic() - t0
    assert r.status == 200 and r.headers["x-mlchaos-fault"] == "throttle"
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert 1.5 <= elapsed < 2.8, elapsed
    assert first_at is not None and first_at < 0.5  # trickled from the start, not held and then dumped


async def test_a_throttled_chunked_response_is_intact_and_still_chunked(start_upstream, start_sidecar):
    payload = os.urandom(30_000)
    up = await _payload_upstream(start_upstream, payload, chunked=True)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "throttle", "rate": "50KiB"}])),
                             env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        t0 = time.monotonic()
        r = await c.request(get("/blob", headers=FORCE_CHAOS))
        assert r.chunked and r.body == payload
        assert time.monotonic() - t0 >= 0.4
        r2 = await c.request(get("/blob", headers=FORCE_CONTROL))  # the connection is reusable after it
        assert r2.body == payload


async def test_the_control_cohort_is_not_throttled(start_upstream, start_sidecar):
    payload = os.urandom(SIZE)
    up = await _payload_upstream(start_upstream, payload)
    sc = await start_sidecar(policy_from(up.url, chaos_experiment([{"type": "throttle", "rate": "50KiB"}])),
                             env=OVERRIDE_ENV)
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.get(f"http://127.0.0.1:{sc.proxy_port}/blob", headers=FORCE_CONTROL) as r:
            assert await r.read() == payload
            assert "x-mlchaos-fault" not in r.headers
    assert time.monotonic() - t0 < 0.5
