"""Streaming: responses reach the client as the upstream sends them, and large bodies pass intact."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import RawClient, get

BIG = 20 * 1024 * 1024


async def test_server_sent_events_reach_the_client_without_buffering(start_upstream, start_sidecar):
    loop = asyncio.get_running_loop()
    second_sent = loop.create_future()

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(b"event: token\ndata: one\n\n")
        await asyncio.sleep(0.3)
        second_sent.set_result(time.monotonic())
        await resp.write(b"event: token\ndata: two\n\n")
        await resp.write_eof()
        return resp

    up = await start_upstream({"/v1/stream": sse})
    sc = await start_sidecar(policy_from(up.url))
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{sc.proxy_port}/v1/stream") as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        first = await r.content.readuntil(b"\n\n")
        first_at = time.monotonic()
        assert not second_sent.done()
        second = await r.content.readuntil(b"\n\n")
        assert await r.content.read() == b""
    assert first == b"event: token\ndata: one\n\n" and second == b"event: token\ndata: two\n\n"
    assert second_sent.result() - first_at > 0.2


async def test_a_chunked_stream_is_relayed_one_piece_at_a_time_to_a_raw_client(start_upstream, start_sidecar):
    sent_at: list[float] = []

    async def tokens(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(4):
            sent_at.append(time.monotonic())
            await resp.write(b"tok%d " % i)
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp

    up = await start_upstream({"/tokens": tokens})
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/tokens"))
        head = await c.reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        got_at = []
        for i in range(4):
            size = int((await c.reader.readuntil(b"\r\n")).strip(), 16)
            assert await c.reader.readexactly(size + 2) == b"tok%d \r\n" % i
            got_at.append(time.monotonic())
        assert await c.reader.readexactly(5) == b"0\r\n\r\n"
    # Each piece arrives well before the upstream writes the next one (which is 100 ms later).
    for i in range(3):
        assert got_at[i] < sent_at[i + 1] + 0.02


async def test_a_20_mb_response_streams_through_intact(start_upstream, start_sidecar):
    payload = os.urandom(BIG)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="application/octet-stream")

    up = await start_upstream({"/big": big})
    sc = await start_sidecar(policy_from(up.url))
    digest = hashlib.sha256()
    n = 0
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.proxy_port}/big") as r:
        assert r.status == 200 and r.headers["content-length"] == str(BIG)
        async for piece in r.content.iter_chunked(1 << 20):
            digest.update(piece)
            n += len(piece)
    assert n == BIG and digest.digest() == hashlib.sha256(payload).digest()


async def test_a_20_mb_chunked_response_streams_through_intact(start_upstream, start_sidecar):
    block = os.urandom(1 << 20)

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(20):
            await resp.write(bytes([i]) + block[1:])
        await resp.write_eof()
        return resp

    up = await start_upstream({"/big": big})
    sc = await start_sidecar(policy_from(up.url))
    expected = hashlib.sha256(b"".join(bytes([i]) + block[1:] for i in range(20))).digest()
    digest = hashlib.sha256()
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sc.proxy_port}/big") as r:
        async for piece in r.content.iter_chunked(1 << 20):
            digest.update(piece)
    assert digest.digest() == expected


async def test_a_client_that_reads_late_still_gets_every_byte(start_upstream, start_sidecar):
    payload = os.urandom(8 * 1024 * 1024)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=payload)

    up = await start_upstream({"/big": big})
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/big"))
        await asyncio.sleep(0.5)  # socket buffers fill: the proxy must hold back, not drop
        r = await c.response(timeout=5)
        assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(payload).digest()
        assert (await c.request(get("/after"))).json()["path"] == "/after"


async def _sha_of_body(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    n = 0
    async for piece in request.content.iter_chunked(1 << 16):
        digest.update(piece)
        n += len(piece)
    return web.json_response({"sha256": digest.hexdigest(), "len": n,
                              "chunked": "chunked" in request.headers.get("transfer-encoding", "").lower()})


async def test_a_request_body_over_inspect_body_bytes_streams_through_intact(start_upstream, start_sidecar):
    up = await start_upstream({"/upload": _sha_of_body})
    sc = await start_sidecar(policy_from(up.url, {"limits": {"inspect_body_bytes": "64KiB"}}))
    payload = os.urandom(3 * 1024 * 1024)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{sc.proxy_port}/upload", data=io.BytesIO(payload)) as r:
            seen = await r.json()
    assert r.status == 200
    assert seen == {"sha256": hashlib.sha256(payload).hexdigest(), "len": len(payload), "chunked": False}


async def test_a_chunked_upload_over_inspect_body_bytes_streams_through_intact(start_upstream, start_sidecar):
    up = await start_upstream({"/upload": _sha_of_body})
    sc = await start_sidecar(policy_from(up.url, {"limits": {"inspect_body_bytes": "64KiB"}}))
    blocks = [os.urandom(100_000) for _ in range(20)]

    async def gen() -> AsyncIterator[bytes]:
        for b in blocks:
            yield b
            await asyncio.sleep(0)

    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{sc.proxy_port}/upload", data=gen()) as r:
            seen = await r.json()
    assert seen["sha256"] == hashlib.sha256(b"".join(blocks)).hexdigest()
    assert seen["len"] == 2_000_000


async def test_a_streamed_upload_reaches_the_upstream_before_the_client_finishes(start_upstream, start_sidecar):
    loop = asyncio.get_running_loop()
    head_at = loop.create_future()

    async def upload(request: web.Request) -> web.Response:
        head_at.set_result(time.monotonic())
        body = await request.read()
        return web.Response(text=str(len(body)))

    up = await start_upstream({"/upload": upload})
    sc = await start_sidecar(policy_from(up.url, {"limits": {"inspect_body_bytes": "1KiB"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n" + b"a" * 5000)
        async with asyncio.timeout(1):
            await head_at  # the upstream handler runs while three quarters of the body are still unsent
        await c.send(b"a" * 15000)
        r = await c.response()
    assert r.status == 200 and r.body == b"20000"


async def test_a_body_under_inspect_body_bytes_sent_slowly_arrives_whole(start_upstream, start_sidecar):
    up = await start_upstream({"/upload": _sha_of_body})
    sc = await start_sidecar(policy_from(up.url))
    pieces = [os.urandom(1000) for _ in range(5)]
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        for p in pieces:
            await asyncio.sleep(0.02)
            await c.send(p)
        r = await c.response()
    assert r.json()["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
