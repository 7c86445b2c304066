"""``drop``: the chaos cohort's connection is closed with no response, by FIN (close, and stream, which resets an
HTTP/2 stream only on gRPC) or RST (reset)."""

from __future__ import annotations

import pytest

from tests.conftest import policy_from
from tests.dataplane.conftest import (
    FORCE_CHAOS,
    FORCE_CONTROL,
    OVERRIDE_ENV,
    RawClient,
    chaos_experiment,
    faults_total,
    get,
)


@pytest.mark.parametrize("mode", ["close", "stream"])  # HTTP/1.1 has no stream of its own to reset: FIN
async def test_drop_close_ends_the_connection_with_eof_and_no_response(upstream, start_sidecar, mode):
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{"type": "drop", "mode": mode}])),
                             env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/v1/infer", headers=FORCE_CHAOS))
        assert await c.read_to_eof(timeout=2) == b""
    assert faults_total(sc, "e1", "drop") == 1
    dropped = sc.metrics.registry.get_sample_value(
        "mlchaos_requests_total", {"experiment": "e1", "cohort": "chaos", "code": "dropped"})
    assert dropped == 1


async def test_drop_reset_ends_the_connection_with_a_tcp_reset(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{"type": "drop", "mode": "reset"}])),
                             env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/v1/infer", headers=FORCE_CHAOS))
        with pytest.raises(ConnectionResetError):
            await c.read_to_eof(timeout=2)
    assert faults_total(sc, "e1", "drop") == 1


async def test_drop_after_earlier_answers_on_the_same_connection_delivers_those_first(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{"type": "drop"}])), env=OVERRIDE_ENV)
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/first", headers=FORCE_CONTROL) + get("/second", headers=FORCE_CHAOS))
        first = await c.response()
        assert first.status == 200 and first.json()["path"] == "/first"
        assert await c.read_to_eof(timeout=2) == b""


async def test_the_control_cohort_is_never_dropped_and_the_proxy_keeps_serving(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, chaos_experiment([{"type": "drop", "mode": "reset"}])),
                             env=OVERRIDE_ENV)
    for _ in range(3):
        async with await RawClient.connect(sc.proxy_port) as c:
            await c.send(get("/v1/infer", headers=FORCE_CHAOS))
            with pytest.raises(ConnectionResetError):
                await c.read_to_eof(timeout=2)
    async with await RawClient.connect(sc.proxy_port) as c:
        for _ in range(3):
            r = await c.request(get("/v1/infer", headers=FORCE_CONTROL))
            assert r.status == 200 and r.header("x-mlchaos-fault") is None
    assert faults_total(sc, "e1", "drop") == 3
