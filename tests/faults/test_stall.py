"""``stall``: hold the chaos request without an answer until the cap, then close, reset or pass."""

from __future__ import annotations

import time

import pytest

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


async def test_stall_holds_the_request_until_the_cap_then_closes_without_an_answer(upstream, start_sidecar):
    fault = {"type": "stall", "cap": "300ms", "then": "close"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        t0 = time.monotonic()
        await c.send(get("/v1/infer", headers=FORCE_CHAOS))
        assert await c.read_to_eof(timeout=2) == b""
        assert 0.29 <= time.monotonic() - t0 < 1.0
    assert faults_total(sc, "e1", "stall") == 1


async def test_stall_then_reset_resets_the_connection_at_the_cap(upstream, start_sidecar):
    fault = {"type": "stall", "cap": "300ms", "then": "reset"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        t0 = time.monotonic()
        await c.send(get("/v1/infer", headers=FORCE_CHAOS))
        with pytest.raises(ConnectionResetError):
            await c.read_to_eof(timeout=2)
        assert time.monotonic() - t0 >= 0.29


async def test_stall_then_pass_forwards_the_request_after_the_cap(upstream, start_sidecar):
    fault = {"type": "stall", "cap": "300ms", "then": "pass"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        t0 = time.monotonic()
        r = await c.request(get("/v1/infer", headers=FORCE_CHAOS))
        assert time.monotonic() - t0 >= 0.29
        assert r.status == 200 and r.json()["path"] == "/v1/infer"
        assert r.header("x-mlchaos-fault") == "stall"


async def test_a_client_that_gives_up_on_a_stall_is_counted_and_the_proxy_keeps_serving(upstream, start_sidecar):
    fault = {"type": "stall", "cap": "5s"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    c = await RawClient.connect(sc.proxy_port)
    await c.send(get("/v1/infer", headers=FORCE_CHAOS))
    with pytest.raises(TimeoutError):
        await c.response(timeout=0.2)
    await c.close()
    assert await eventually(lambda: errors_total(sc, "client_disconnect") == 1, timeout=1)
    assert await eventually(lambda: len(sc.plane.connections) == 0, timeout=1)
    async with await RawClient.connect(sc.proxy_port) as c2:
        r = await c2.request(get("/v1/infer", headers=FORCE_CONTROL))
    assert r.status == 200


async def test_a_stalled_chaos_request_does_not_hold_up_other_connections(upstream, start_sidecar):
    fault = {"type": "stall", "cap": "1s"}
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([fault])), env=OVERRIDE_ENV)
    stalled = await RawClient.connect(sc.proxy_port)
    await stalled.send(get("/", headers=FORCE_CHAOS))
    t0 = time.monotonic()
    async with await RawClient.connect(sc.proxy_port) as c:
        for _ in range(5):
            assert (await c.request(get("/", headers=FORCE_CONTROL))).status == 200
    assert time.monotonic() - t0 < 0.5
    await stalled.close()
