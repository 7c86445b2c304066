"""Connection and process lifecycle: client disconnects, nothing leaks, and a graceful drain on stop."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import (
    RawClient,
    RawConn,
    errors_total,
    eventually,
    get,
    http_response,
    open_fds,
)


async def test_a_client_that_disconnects_mid_request_cancels_the_upstream_request(raw_upstream, start_sidecar):
    upstream_closed = asyncio.Event()

    async def script(conn: RawConn) -> None:
        req = await conn.read_request()
        if req.target != "/slow":
            await conn.send(http_response(200, b"fine"))
            return
        try:
            await conn.wait_closed_by_peer(timeout=3)
        finally:
            upstream_closed.set()

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    c = await RawClient.connect(sc.proxy_port)
    await c.send(get("/slow"))
    async with asyncio.timeout(1):
        await up.request_seen.wait()
    await c.close()
    t0 = time.monotonic()
    async with asyncio.timeout(1):
        await upstream_closed.wait()
    assert time.monotonic() - t0 < 0.5
    assert await eventually(lambda: errors_total(sc, "client_disconnect") == 1)
    async with await RawClient.connect(sc.proxy_port) as c2:
        r = await c2.request(get("/next"))
    assert r.status == 200 and r.body == b"fine"


async def test_a_client_that_leaves_mid_stream_stops_the_upstream_stream(start_upstream, start_sidecar):
    stopped = asyncio.Event()
    writes = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal writes
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(100):  # 5 s at most
                await resp.write(b"data: tick\n\n")
                writes += 1
                await asyncio.sleep(0.05)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            stopped.set()
        return resp

    up = await start_upstream({"/events": endless})
    sc = await start_sidecar(policy_from(up.url))
    c = await RawClient.connect(sc.proxy_port)
    await c.send(get("/events"))
    await c.reader.readuntil(b"data: tick\n\n")
    await c.close()
    async with asyncio.timeout(1.5):
        await stopped.wait()
    assert writes < 40
    assert await eventually(lambda: errors_total(sc, "client_disconnect") == 1)


async def test_a_client_that_leaves_while_its_request_waits_in_the_pipeline_is_counted_once(raw_upstream,
                                                                                          start_sidecar):
    async def script(conn: RawConn) -> None:
        await conn.read_request()
        await conn.wait_closed_by_peer(timeout=3)

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    c = await RawClient.connect(sc.proxy_port)
    await c.send(get("/a") + get("/b") + get("/c"))
    async with asyncio.timeout(1):
        await up.request_seen.wait()
    await c.close()
    assert await eventually(lambda: len(sc.plane.connections) == 0)
    await asyncio.sleep(0.05)
    assert errors_total(sc, "client_disconnect") == 1
    assert len(up.requests) == 1  # the queued requests were never sent


async def test_no_connections_fds_or_tasks_leak_after_a_burst_and_abandoned_requests(start_upstream, start_sidecar):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="slow")

    up = await start_upstream({"/slow": slow})
    sc = await start_sidecar(policy_from(up.url, {"limits": {"upstream_pool": 1}}))
    base = f"http://127.0.0.1:{sc.proxy_port}"
    async with aiohttp.ClientSession() as s, s.get(f"{base}/warm") as r:
        assert r.status == 200
    assert await eventually(lambda: len(sc.plane.connections) == 0)
    await asyncio.sleep(0.05)
    fds0, tasks0 = open_fds(), len(asyncio.all_tasks())

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as s:
        async def one(i: int) -> int:
            async with s.post(f"{base}/burst/{i}", data=b"x" * (i * 10)) as r:
                return (await r.json())["body_len"] if r.status == 200 else -1

        lengths = await asyncio.gather(*(one(i) for i in range(200)))
    assert lengths == [i * 10 for i in range(200)]

    abandoned = [
        get("/slow"),  # waiting on the upstream
        b"GET /partial HTTP/1.1\r\nHost: t\r\nX-Half",  # head never finished
        b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",  # body never finished
        get("/a") + get("/slow") + get("/b"),  # pipelined, gone before the answers
    ]
    clients = [await RawClient.connect(sc.proxy_port) for _ in range(20)]
    for i, c in enumerate(clients):
        await c.send(abandoned[i % len(abandoned)])
    await asyncio.sleep(0.05)
    for c in clients:
        await c.close()

    assert await eventually(lambda: len(sc.plane.connections) == 0)
    # Abandoned upstream requests finish on their own (the upstream handlers sleep 0.3 s), then close.
    assert await eventually(lambda: open_fds() <= fds0 + 2, timeout=2.5), (open_fds(), fds0)
    assert await eventually(lambda: len(asyncio.all_tasks()) <= tasks0 + 1, timeout=1.0), \
        (len(asyncio.all_tasks()), tasks0)
    async with aiohttp.ClientSession() as s, s.get(f"{base}/after") as r:
        assert r.status == 200


async def test_an_idle_keep_alive_client_connection_is_closed_after_the_idle_timeout(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"timeouts": {"idle": "300ms"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/"))).status == 200
        t0 = time.monotonic()
        assert await c.closed_by_peer(timeout=2.5)
        assert time.monotonic() - t0 >= 0.25
    assert await eventually(lambda: len(sc.plane.connections) == 0)


async def test_a_client_silent_mid_head_is_closed_after_the_idle_timeout_and_counted(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"timeouts": {"idle": "300ms"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        t0 = time.monotonic()
        assert await c.closed_by_peer(timeout=2.5)
        assert time.monotonic() - t0 >= 0.25
    assert errors_total(sc, "client_timeout") == 1


@pytest.mark.parametrize("inspect", ["1MiB", "1"], ids=["held-body", "streamed-body"])
async def test_a_client_silent_mid_body_is_closed_after_the_idle_timeout_and_counted(upstream, start_sidecar,
                                                                                     inspect):
    policy = policy_from(upstream.url, {"timeouts": {"idle": "300ms", "response": "10s"},
                                        "limits": {"inspect_body_bytes": inspect}})
    sc = await start_sidecar(policy)
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")  # 7 bytes never come
        assert await c.closed_by_peer(timeout=2.0)
    assert errors_total(sc, "client_timeout") == 1


async def test_stop_drains_in_flight_requests_refuses_new_ones_and_readyz_says_draining(start_upstream,
                                                                                        start_sidecar):
    seen = 0
    all_seen = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        if seen == 5:
            all_seen.set()
        await asyncio.sleep(0.5)
        return web.Response(text=f"done {request.path}")

    up = await start_upstream({"/slow/{n}": slow})
    sc = await start_sidecar(policy_from(up.url))
    base = f"http://127.0.0.1:{sc.proxy_port}"
    admin = f"http://127.0.0.1:{sc.admin_port}"
    async with aiohttp.ClientSession() as s, aiohttp.ClientSession() as admin_s:
        async with admin_s.get(f"{admin}/readyz") as r:
            assert r.status == 200

        async def one(n: int) -> tuple[int, str, str | None]:
            async with s.get(f"{base}/slow/{n}") as r:
                return r.status, await r.text(), r.headers.get("connection")

        async with asyncio.TaskGroup() as tg:
            inflight = [tg.create_task(one(n)) for n in range(5)]
            async with asyncio.timeout(1):
                await all_seen.wait()
            t0 = time.monotonic()
            stopping = tg.create_task(sc.stop(drain=2))
            await asyncio.sleep(0.05)
            readyz = []
            while not all(t.done() for t in inflight) and time.monotonic() - t0 < 1.5:
                async with admin_s.get(f"{admin}/readyz") as r:
                    readyz.append(r.status)
                await asyncio.sleep(0.05)
            with pytest.raises(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", sc.proxy_port)
                writer.close()
        assert stopping.done()
        elapsed = time.monotonic() - t0

    results = [t.result() for t in inflight]
    assert [(status, text) for status, text, _ in results] == [(200, f"done /slow/{n}") for n in range(5)]
    assert all((conn or "").lower() == "close" for _, _, conn in results)
    assert readyz and set(readyz) == {503}
    assert elapsed < 1.5


async def test_stop_cuts_requests_that_outlive_the_drain_deadline(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        await conn.read_request()
        await conn.wait_closed_by_peer(timeout=3)

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    c = await RawClient.connect(sc.proxy_port)
    await c.send(get("/forever"))
    async with asyncio.timeout(1):
        await up.request_seen.wait()
    t0 = time.monotonic()
    await sc.stop(drain=0.3)
    assert 0.25 <= time.monotonic() - t0 < 1.0
    assert await c.closed_by_peer(timeout=1)
    await c.close()


async def test_stop_closes_idle_keep_alive_connections_at_once(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/"))).status == 200
        t0 = time.monotonic()
        await sc.stop(drain=2)
        assert time.monotonic() - t0 < 0.5
        assert await c.closed_by_peer(timeout=1)
