"""timeouts.header: a request head must be complete within it, counted from its first byte (from the connection's
start for the first request); slow or half-sent heads (slowloris) are closed without holding other traffic."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import textwrap
import time

import pytest

from proxy.app import Sidecar
from tests.conftest import policy_from
from tests.dataplane.conftest import RawClient, errors_total, get

HALF_HEAD = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"


async def test_a_half_sent_head_gets_408_and_a_close_after_the_header_timeout_and_is_counted(upstream,
                                                                                             start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"timeouts": {"header": "400ms"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(HALF_HEAD)
        t0 = time.monotonic()
        r = await c.response(timeout=3.0)
        waited = time.monotonic() - t0
        assert await c.closed_by_peer()
    assert r.status == 408 and r.header("x-mlchaos-error") == "1" and r.closes
    assert 0.35 <= waited < 1.5
    assert errors_total(sc, "client_header_timeout") == 1
    assert errors_total(sc, "client_timeout") == 0


async def test_a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout_though_never_idle(upstream,
                                                                                          start_sidecar):
    # Every byte resets the idle clock; the header timeout counts from the first one.
    sc = await start_sidecar(policy_from(upstream.url, {"timeouts": {"header": "400ms", "idle": "10s"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        t0 = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            for byte in HALF_HEAD * 4:
                await c.send(bytes([byte]))
                await asyncio.sleep(0.01)
        assert time.monotonic() - t0 < 2.0
    assert errors_total(sc, "client_header_timeout") == 1


async def test_a_connection_that_never_sends_a_byte_is_closed_quietly_after_the_header_timeout(upstream,
                                                                                              start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"timeouts": {"header": "300ms"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        t0 = time.monotonic()
        assert await c.read_to_eof(timeout=3.0) == b""  # no 408 to a preconnect or a probe
        assert time.monotonic() - t0 >= 0.25
    assert errors_total(sc, "client_header_timeout") == 1


async def test_an_idle_keep_alive_connection_between_requests_is_not_cut_by_the_header_timeout(upstream,
                                                                                              start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"timeouts": {"header": "200ms", "idle": "10s"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/1"))).status == 200
        await asyncio.sleep(0.5)
        r = await c.request(get("/2"))
    assert r.status == 200 and r.json()["path"] == "/2"
    assert errors_total(sc, "client_header_timeout") == 0


async def test_a_complete_head_whose_body_is_slow_is_governed_by_the_idle_timeout_not_the_header_one(
        upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"timeouts": {"header": "200ms", "idle": "10s"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc")
        await asyncio.sleep(0.5)
        r = await c.request(b"def")
    assert r.status == 200 and r.json()["body"] == "abcdef"
    assert errors_total(sc, "client_header_timeout") == 0


# --- 500 half-heads while normal traffic flows ------------------------------------------------------------

HEADER = 1.0
HALF_HEADS = 500


async def paced_latencies(port: int, seconds: float, every: float = 0.002) -> list[float]:
    """Latency of each request of a bounded stream (one every ``every`` s on one keep-alive connection)."""
    out = []
    async with await RawClient.connect(port) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = await c.request(get("/normal"))
            out.append(time.perf_counter() - t0)
            assert r.status == 200
            await asyncio.sleep(every)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


# The half-heads come from another process, so that 500 client sockets do not load the event loop the proxy
# (and the measured stream) run on: what is measured is the proxy's handling of them. It prints "ready" once
# every half-head is sent, then one line: for each connection, the seconds from its send until the proxy closed
# it, and whether the proxy said 408 first.
ATTACKER = textwrap.dedent("""
    import json, selectors, socket, sys, time
    port, n, half = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode("latin-1")
    sel = selectors.DefaultSelector()
    sent, got = {}, {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(half)
        sent[s] = time.monotonic()
        got[s] = b""
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    out = []
    deadline = time.monotonic() + 15
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except ConnectionError:
                data = b""
            if data:
                got[s] += data
                continue
            out.append([time.monotonic() - sent[s], got[s].startswith(b"HTTP/1.1 408 ")])
            sel.unregister(s)
            s.close()
    print(json.dumps(out), flush=True)
""")


@pytest.mark.slow
async def test_500_half_heads_are_closed_within_the_header_timeout_while_normal_traffic_keeps_its_p99(
        upstream, start_sidecar):
    sc: Sidecar = await start_sidecar(policy_from(upstream.url, {"timeouts": {"header": f"{HEADER:g}s"}}))
    stream = HEADER + 0.6  # long enough to span the moment all of them are cut
    await paced_latencies(sc.proxy_port, 0.3)  # warm-up: pooled upstream connections
    baseline = await paced_latencies(sc.proxy_port, stream)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ATTACKER, str(sc.proxy_port), str(HALF_HEADS), HALF_HEAD.decode("latin-1"),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
        during = await paced_latencies(sc.proxy_port, stream)
        results = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

    assert len(results) == HALF_HEADS
    closed_after = [t for t, _ in results]
    # The sweep checks every 100 ms: each is cut between the timeout and a sweep (and a loaded loop) later.
    assert min(closed_after) >= HEADER - 0.05, min(closed_after)
    assert max(closed_after) <= HEADER + 0.6, max(closed_after)
    assert all(said_408 for _, said_408 in results)
    assert errors_total(sc, "client_header_timeout") == HALF_HEADS
    base_p99, during_p99 = p99(baseline), p99(during)
    print(f"\n{HALF_HEADS} half-heads cut after {min(closed_after):.3f}-{max(closed_after):.3f} s "
          f"(timeouts.header {HEADER:g} s); normal p99 {base_p99 * 1e3:.2f} ms alone, "
          f"{during_p99 * 1e3:.2f} ms during ({len(baseline)} and {len(during)} requests)")
    # Generous: the stream shares two cores with the attacker process (and whatever else runs); a proxy that
    # stalled on the cut (500 closes in one callback, ~10-30 ms measured before batching) fails it.
    assert during_p99 <= 3 * base_p99 + 0.010
