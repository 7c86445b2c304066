"""A client that leaves before its answer is no error: abandoning delayed chaos requests never trips."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import policy_from


async def test_clients_abandoning_delayed_chaos_requests_do_not_trip_the_kill_switch(upstream, start_sidecar):
    exp = {"name": "slow", "chaos": 40, "control": 10,
           "faults": [{"type": "delay", "distribution": "fixed", "duration": "300ms"}],
           "kill_switch": {"seatbelt": {"min_requests": 5}}}
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": [exp]}, max_blast_radius=50))
    url = f"http://127.0.0.1:{sc.proxy_port}/x"
    gave_up = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.05)) as s:
        for _ in range(150):
            try:
                async with s.get(url) as r:
                    await r.read()
            except TimeoutError:
                gave_up += 1
    await asyncio.sleep(0.1)
    assert gave_up > 30  # the delayed chaos requests, abandoned by their client
    st = sc.experiments.states["slow"]
    assert st.tripped is None and st.errors == [0, 0]
    assert sc.metrics.registry.get_sample_value("mlchaos_proxy_errors_total", {"kind": "client_disconnect"}) >= 30


async def test_an_abandoned_request_past_the_latency_slo_counts_as_slow(upstream, start_sidecar):
    exp = {"name": "slow", "chaos": 50, "control": 0,
           "faults": [{"type": "delay", "distribution": "fixed", "duration": "300ms"}],
           "kill_switch": {"latency": {"slo": "20ms"}, "seatbelt": {"enabled": False}}}
    sc = await start_sidecar(policy_from(upstream.url, {"experiments": [exp]}, max_blast_radius=50))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as s:
        for _ in range(120):
            try:
                async with s.get(f"http://127.0.0.1:{sc.proxy_port}/x") as r:
                    await r.read()
            except TimeoutError:
                pass
            if sc.experiments.states["slow"].tripped is not None:
                break
    trip = sc.experiments.states["slow"].tripped
    assert trip is not None and trip["guard"] == "latency"
