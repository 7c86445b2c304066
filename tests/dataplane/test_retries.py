"""Safe retries on stale upstream connections (RFC 9110 9.2.2): a request the model may have read is sent
again only when sending it twice is harmless, and the pool retires idle connections before the upstream does."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest

from proxy.app import Sidecar
from tests.conftest import policy_from
from tests.dataplane.conftest import RawClient, RawConn, errors_total, get, http_response
from tests.dataplane.test_errors import assert_proxy_error


def read_then_close_after_the_first(first_answered: list[int]):
    """A script: the first connection answers one request, then reads the next and closes without answering (it
    read it: the model may have run it); later connections answer everything."""
    async def script(conn: RawConn) -> None:
        first = not first_answered
        req = await conn.read_request()
        await conn.send(http_response(200, req.target.encode()))
        first_answered.append(1)
        while True:
            req = await conn.read_request()
            if first:
                return  # the keep-alive race, or a model that died after reading
            await conn.send(http_response(200, req.target.encode()))
    return script


def answer_500_then_close(conn_count: list[int]):
    """A script: like uvicorn after the 500 of an exception, answer 500 (no Connection: close) and close."""
    async def script(conn: RawConn) -> None:
        conn_count.append(1)
        while True:
            req = await conn.read_request()
            if req.target == "/boom":
                await conn.send(http_response(500, b"boom"))
                return
            await conn.send(http_response(200, req.target.encode()))
    return script


async def test_a_connection_that_answered_5xx_is_not_reused(raw_upstream, start_sidecar):
    """The POST after a 500 goes on a fresh connection, so it never meets the close that follows the 500."""
    connections: list[int] = []
    up = await raw_upstream(answer_500_then_close(connections))
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        for _ in range(20):
            # Pipelined: the proxy starts the POST the moment the 500 is relayed, before the close arrives.
            await c.send(get("/boom", method="POST", body=b"{}") + get("/infer", method="POST", body=b'{"x": 1}'))
            boom, r = await c.responses(2)
            assert boom.status == 500
            assert (r.status, r.body) == (200, b"/infer")
    assert errors_total(sc, "upstream_stale_not_retried") == 0
    assert len(connections) >= 20  # one fresh connection after each 500


def seen(up, target: str) -> int:
    return sum(r.target == target for r in up.requests)


async def test_a_post_the_upstream_read_before_closing_is_not_sent_again(raw_upstream, start_sidecar):
    up = await raw_upstream(read_then_close_after_the_first([]))
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/warm"))).status == 200
        r = await c.request(get("/infer", method="POST", body=b'{"x": 1}'))
        assert_proxy_error(r, 502)
        assert (await c.request(get("/after"))).status == 200  # the client connection is still good
    assert seen(up, "/infer") == 1
    assert errors_total(sc, "upstream_stale_not_retried") == 1
    assert errors_total(sc, "upstream_stale_retry") == 0


async def test_declared_idempotent_a_post_is_sent_again_once_and_answered(raw_upstream, start_sidecar):
    up = await raw_upstream(read_then_close_after_the_first([]))
    sc = await start_sidecar(policy_from(up.url, upstream_idempotent=True))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/warm"))).status == 200
        r = await c.request(get("/infer", method="POST", body=b'{"x": 1}'))
    assert (r.status, r.body) == (200, b"/infer")
    assert seen(up, "/infer") == 2
    assert errors_total(sc, "upstream_stale_retry") == 1
    assert errors_total(sc, "upstream_stale_not_retried") == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_idempotent_method_is_sent_again_once_by_default(raw_upstream, start_sidecar, method):
    up = await raw_upstream(read_then_close_after_the_first([]))
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/warm"))).status == 200
        r = await c.request(get("/again", method=method, body=b"b" if method == "PUT" else None))
    assert (r.status, r.body) == (200, b"/again")
    assert seen(up, "/again") == 2
    assert errors_total(sc, "upstream_stale_retry") == 1


async def test_a_post_whose_write_failed_is_sent_again_since_it_never_left(raw_upstream, start_sidecar):
    reset_now = asyncio.Event()

    async def script(conn: RawConn) -> None:
        req = await conn.read_request()
        await conn.send(http_response(200, req.target.encode()))
        if req.target == "/warm":
            await reset_now.wait()
            conn.reset()  # RST: the proxy's next write on this socket fails (EPIPE/ECONNRESET)
            return
        while True:
            req = await conn.read_request()
            await conn.send(http_response(200, req.target.encode()))

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    assert sc.plane is not None
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/warm"))).status == 200
        pooled = sc.plane.primary.idle
        assert len(pooled) == 1
        # Not reading the idle connection, the proxy cannot see the reset before it writes: only the failed
        # write tells it, which is what happens when the reset lands between the loop's poll and the write.
        pooled[0].pause_reading()
        reset_now.set()
        await asyncio.sleep(0.2)
        r = await c.request(get("/infer", method="POST", body=b'{"x": 1}'))
    assert (r.status, r.body) == (200, b"/infer")
    assert seen(up, "/infer") == 1
    assert errors_total(sc, "upstream_stale_retry") == 1
    assert errors_total(sc, "upstream_stale_not_retried") == 0


async def test_a_post_on_a_fresh_connection_that_closes_unanswered_is_not_retried(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        await conn.read_request()  # read, then close: not a stale connection, a failing model

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url, upstream_idempotent=True))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert_proxy_error(await c.request(get("/infer", method="POST", body=b"{}")), 502)
    assert seen(up, "/infer") == 1
    assert errors_total(sc, "upstream_stale_retry") == 0


@pytest.mark.parametrize(("pause", "connections"), [(0.05, 1), (0.4, 2)])
async def test_a_pooled_connection_idle_past_upstream_idle_is_closed_not_reused(raw_upstream, start_sidecar,
                                                                                  pause, connections):
    async def script(conn: RawConn) -> None:
        while True:
            req = await conn.read_request()
            await conn.send(http_response(200, req.target.encode()))

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url, {"timeouts": {"upstream_idle": "200ms"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        assert (await c.request(get("/1"))).status == 200
        await asyncio.sleep(pause)
        assert (await c.request(get("/2"))).status == 200
    assert len(up.peers) == connections


# --- the keep-alive race against a real server ----------------------------------------------------------

KEEP_ALIVE = 0.5
UPSTREAM = textwrap.dedent("""
    import asyncio, sys
    from aiohttp import web

    async def handler(request):
        await request.read()
        return web.Response(text="ok")

    async def main():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=float(sys.argv[1]), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


@pytest.fixture
async def short_keep_alive_upstream() -> AsyncIterator[int]:
    """An aiohttp server in its own process (its keep-alive closes race the proxy's writes for real) that closes
    idle keep-alive connections after KEEP_ALIVE seconds; yields its port."""
    proc = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(KEEP_ALIVE)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
        yield int(line)
    finally:
        proc.kill()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


async def stale_hits(start_sidecar, port: int, upstream_idle: str, clients: int = 64,
                     rounds: int = 4) -> tuple[float, int]:
    """Requests on ``clients`` connections, each coming back KEEP_ALIVE (+-5 ms) after its previous answer, when
    the upstream closes the pooled connection that answered it: how many met a stale connection, and how many
    pooled connections the proxy retired itself."""
    sc: Sidecar = await start_sidecar(policy_from(f"http://127.0.0.1:{port}",
                                                  {"timeouts": {"upstream_idle": upstream_idle}}))
    conns = [await RawClient.connect(sc.proxy_port) for _ in range(clients)]

    async def client(c: RawClient) -> None:
        assert (await c.request(get("/warm"))).status == 200
        for _ in range(rounds):
            await asyncio.sleep(KEEP_ALIVE + random.uniform(-0.005, 0.005))
            assert (await c.request(get("/again"))).status == 200  # GET: retried when stale

    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    hits = errors_total(sc, "upstream_stale_retry") + errors_total(sc, "upstream_stale_not_retried")
    assert sc.plane is not None
    return hits, sc.plane.pool(None).expired


@pytest.mark.slow
async def test_retiring_idle_connections_before_the_upstream_keep_alive_avoids_the_race(start_sidecar,
                                                                                        short_keep_alive_upstream):
    port = short_keep_alive_upstream
    # Without the expiry the race is a matter of microseconds (the request lands as the upstream's timer
    # fires): measured here (in about half the runs of 256 reuses some 3-25 meet it), not asserted.
    without: list[float] = []
    for _ in range(3):
        hits, expired = await stale_hits(start_sidecar, port, "60s")
        assert expired == 0
        without.append(hits)
        if hits:
            break
    with_expiry, expired = await stale_hits(start_sidecar, port, f"{KEEP_ALIVE * 0.7:g}s")
    print(f"\nstale upstream connections met in {64 * 4} reuses at the upstream's keep-alive ({KEEP_ALIVE:g}s):"
          f" without idle expiry {without}; with upstream_idle {KEEP_ALIVE * 0.7:g}s: {with_expiry:g}"
          f" ({expired} pooled connections retired first)")
    assert with_expiry == 0
    assert expired >= 64  # every pooled connection came back past the expiry: the proxy, not the upstream, closed it
