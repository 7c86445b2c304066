"""HTTP/1.1 framing through the proxy, seen from real sockets on both sides."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.conftest import policy_from
from tests.dataplane.conftest import RawClient, RawConn, RawResponse, errors_total, get, http_response, read_request

CURL = "/usr/bin/curl"


async def peer_port(request: web.Request) -> web.Response:
    """The proxy-side port of the upstream connection this request came on."""
    await request.read()
    assert request.transport is not None
    return web.Response(text=str(request.transport.get_extra_info("peername")[1]))


def headers_seen(resp: RawResponse) -> dict[str, str]:
    """The request headers the echo upstream reports, with lower-cased names."""
    return {k.lower(): v for k, v in resp.json()["headers"].items()}


async def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [CURL, "--silent", "--show-error", "--max-time", "5", *args],
        capture_output=True, text=True, timeout=10, check=False)


# --- bodies -------------------------------------------------------------------------------------------


async def test_content_length_bodies_are_forwarded_both_ways(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    payload = os.urandom(10_000)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{sc.proxy_port}/infer", data=payload) as r:
            assert r.status == 200
            assert r.headers["content-length"] == str(len(await r.read()))
            seen = await r.json()
    assert seen["body_len"] == len(payload)
    assert seen["body"].encode("latin-1") == payload
    assert seen["headers"]["Content-Length"] == str(len(payload))


async def test_a_chunked_request_body_sent_in_one_write_arrives_intact(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    assert r.status == 200
    assert r.json()["body"] == "hello world"


async def test_a_chunked_request_body_trickled_over_time_arrives_intact(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        req = await conn.read_request()
        await conn.send(http_response(200, req.body))

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    pieces = [b"first-", b"second-", os.urandom(3000), b"last"]
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            await asyncio.sleep(0.03)
            await c.send(b"%x\r\n%b\r\n" % (len(piece), piece))
        await c.send(b"0\r\n\r\n")
        r = await c.response()
    assert r.status == 200 and r.body == b"".join(pieces)
    assert up.requests[0].header("content-length") or up.requests[0].chunked


async def test_a_chunked_response_is_relayed_chunked_with_its_bytes(start_upstream, start_sidecar):
    parts = [b"alpha ", b"beta ", os.urandom(5000), b" omega"]

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for p in parts:
            await resp.write(p)
        await resp.write_eof()
        return resp

    up = await start_upstream({"/chunked": chunked})
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/chunked"))
        assert r.status == 200 and r.chunked and r.body == b"".join(parts)
        assert r.header("content-length") is None
        # The connection is still good after the terminating chunk.
        assert (await c.request(get("/after"))).json()["path"] == "/after"


# --- connections --------------------------------------------------------------------------------------


async def test_many_requests_on_one_client_connection_reuse_few_upstream_connections(start_upstream, start_sidecar):
    up = await start_upstream({"/peer": peer_port})
    sc = await start_sidecar(policy_from(up.url))
    peers = set()
    async with await RawClient.connect(sc.proxy_port) as c:
        for _ in range(30):
            r = await c.request(get("/peer"))
            assert r.status == 200 and not r.closes
            peers.add(r.body)
    assert len(peers) <= 2


async def test_keep_alive_through_aiohttp_uses_one_client_and_few_upstream_connections(start_upstream,
                                                                                       start_sidecar):
    up = await start_upstream({"/peer": peer_port})
    sc = await start_sidecar(policy_from(up.url))
    peers = set()
    conn = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=conn) as s:
        for _ in range(30):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/peer") as r:
                peers.add(await r.text())
    assert len(peers) <= 2
    assert len(sc.plane.connections) <= 1


async def test_five_pipelined_requests_in_one_write_get_five_responses_in_order(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"".join(get(f"/p{i}?n={i}") for i in range(5)))
        rs = await c.responses(5)
        assert [r.json()["path"] for r in rs] == [f"/p{i}?n={i}" for i in range(5)]
        assert all(r.status == 200 for r in rs)
        assert (await c.request(get("/more"))).json()["path"] == "/more"


async def test_pipelined_requests_with_bodies_keep_their_own_bodies(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"".join(get(f"/b{i}", method="POST", body=b"x" * i * 7) for i in range(5)))
        rs = await c.responses(5)
    assert [(r.json()["path"], r.json()["body_len"]) for r in rs] == [(f"/b{i}", i * 7) for i in range(5)]


async def test_pipelined_streamed_uploads_and_gets_are_answered_in_order(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"limits": {"inspect_body_bytes": "1KiB"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/up", method="POST", body=b"u" * 100_000) + get("/g")
                     + get("/up2", method="POST", body=b"v" * 3000) + get("/g2"))
        rs = [r.json() for r in await c.responses(4)]
    assert [(r["path"], r["body_len"]) for r in rs] == [("/up", 100_000), ("/g", 0), ("/up2", 3000), ("/g2", 0)]


async def test_an_http_1_0_request_without_keep_alive_gets_a_response_then_close(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"GET /old HTTP/1.0\r\n\r\n")
        assert r.status == 200 and r.json()["path"] == "/old"
        assert await c.closed_by_peer()


async def test_an_http_1_0_request_with_connection_keep_alive_keeps_the_connection(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r1 = await c.request(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert r1.status == 200 and (r1.header("connection") or "").lower() == "keep-alive"
        assert r1.header("content-length") is not None
        r2 = await c.request(b"GET /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert r2.json()["path"] == "/two"


async def test_curl_http_1_0_gets_the_upstream_answer(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    out = await _curl("--http1.0", "--include", f"http://127.0.0.1:{sc.proxy_port}/curl10?q=1")
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert head.startswith("HTTP/1.1 200")
    assert json.loads(body)["path"] == "/curl10?q=1"


async def test_an_http_1_0_response_without_length_is_delimited_by_close(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil-eof-body")

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"GET / HTTP/1.0\r\n\r\n")
        assert r.status == 200 and r.body == b"until-eof-body"


async def test_connection_close_from_the_client_is_honoured(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/bye", headers={"Connection": "close"}))
        assert r.status == 200 and r.closes
        assert await c.closed_by_peer()


async def test_expect_100_continue_gets_100_then_the_final_response_and_the_body_reaches_upstream(
        upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    body = b"z" * 2048
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2048\r\n\r\n")
        interim = await c.response()
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)
        await c.send(body)
        final = await c.response()
    assert final.status == 200
    seen = final.json()
    assert seen["body_len"] == 2048 and seen["body"] == body.decode()
    assert "expect" not in headers_seen(final)


async def test_curl_with_expect_100_continue_sees_100_continue(upstream, start_sidecar, tmp_path):
    sc = await start_sidecar(policy_from(upstream.url))
    data = tmp_path / "body.bin"
    data.write_bytes(b"c" * 5000)
    out = await _curl("--verbose", "--expect100-timeout", "5", "-H", "Expect: 100-continue",
                      "--data-binary", f"@{data}", f"http://127.0.0.1:{sc.proxy_port}/cont")
    assert out.returncode == 0, out.stderr
    assert "< HTTP/1.1 100 Continue" in out.stderr
    assert "< HTTP/1.1 200" in out.stderr
    assert json.loads(out.stdout)["body_len"] == 5000


async def test_expect_100_continue_behind_a_pipelined_request_gets_its_100_after_the_earlier_answer(
        upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/a") + b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        first = await c.response()
        interim = await c.response()
        await c.send(b"hello")
        final = await c.response()
    assert first.status == 200 and first.json()["path"] == "/a"
    assert interim.status == 100
    assert final.status == 200 and final.json()["body"] == "hello"


async def test_expect_100_continue_with_a_streamed_body_gets_100_and_the_body_reaches_upstream(
        upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, {"limits": {"inspect_body_bytes": "1KiB"}}))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 50000\r\n\r\n")
        assert (await c.response()).status == 100
        await c.send(b"s" * 50000)
        final = await c.response()
    assert final.status == 200 and final.json()["body_len"] == 50000


async def test_curl_with_expect_and_a_large_streamed_upload(upstream, start_sidecar, tmp_path):
    sc = await start_sidecar(policy_from(upstream.url, {"limits": {"inspect_body_bytes": "64KiB"}}))
    data = tmp_path / "big.bin"
    data.write_bytes(os.urandom(2 * 1024 * 1024))
    out = await _curl("--verbose", "--expect100-timeout", "5", "-H", "Expect: 100-continue",
                      "--data-binary", f"@{data}", f"http://127.0.0.1:{sc.proxy_port}/big")
    assert out.returncode == 0, out.stderr
    assert "< HTTP/1.1 100 Continue" in out.stderr
    assert json.loads(out.stdout)["body_len"] == 2 * 1024 * 1024


async def test_an_http_1_0_client_gets_a_chunked_upstream_response_delimited_by_close(start_upstream, start_sidecar):
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"abc")
        await resp.write(b"def")
        await resp.write_eof()
        return resp

    up = await start_upstream({"/c": chunked})
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert r.status == 200 and r.body == b"abcdef"  # read to EOF: HTTP/1.0 has no chunked encoding
        assert not r.chunked and r.header("transfer-encoding") is None
        assert r.closes


async def test_an_upstream_connection_close_answer_is_not_reused(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        req = await conn.read_request()
        await conn.send(http_response(200, req.target.encode(), {"Connection": "close"}))
        await asyncio.sleep(1)  # says close but lingers: a reused connection would hang here

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        for i in range(3):
            r = await c.request(get(f"/r{i}"), timeout=1)
            assert r.status == 200 and r.body == f"/r{i}".encode()
            assert not r.closes  # the upstream's Connection header is its own, not the client's
    assert len(up.peers) == 3


async def test_an_http_1_0_upstream_connection_is_not_reused(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await asyncio.sleep(1)

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        for i in range(3):
            r = await c.request(get(f"/r{i}"), timeout=1)
            assert r.status == 200 and r.body == b"ok"
    assert len(up.peers) == 3


# --- headers ------------------------------------------------------------------------------------------


async def test_hop_by_hop_request_headers_are_not_forwarded(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/h", headers={
            "Connection": "keep-alive, X-Hop-Only", "X-Hop-Only": "secret", "Keep-Alive": "timeout=5",
            "TE": "trailers", "Proxy-Authorization": "Basic Zm9vOmJhcg==", "Proxy-Connection": "keep-alive",
            "Upgrade": "h2c", "X-End-To-End": "kept"}))
    seen = headers_seen(r)
    for name in ("x-hop-only", "keep-alive", "te", "proxy-authorization", "proxy-connection", "upgrade"):
        assert name not in seen, name
    assert seen["x-end-to-end"] == "kept"
    assert seen.get("connection", "keep-alive").lower() == "keep-alive"


async def test_hop_by_hop_response_headers_are_not_relayed_and_the_body_is_reframed(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: 1\r\nKeep-Alive: timeout=9\r\n"
                        b"Proxy-Authenticate: Basic\r\nX-Model: m1\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/"))
    names = r.header_names()
    assert {"x-resp-hop", "keep-alive", "proxy-authenticate"}.isdisjoint(names)
    assert r.header("x-model") == "m1"
    assert r.body == b"abcdefg"
    assert [v for n, v in r.headers if n.lower() == "transfer-encoding"] in ([], ["chunked"])


async def test_a_chunked_request_is_reframed_for_the_upstream(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        req = await conn.read_request()
        await conn.send(http_response(200, b"ok"))
        assert req.body == b"abcdef"
        te = req.header("transfer-encoding")
        assert (te is None) != (req.header("content-length") is None)
        assert te is None or te.lower() == "chunked"

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
    assert r.status == 200
    assert len(up.requests) == 1


async def test_x_forwarded_for_is_set_to_the_client_address(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        seen = headers_seen(await c.request(get("/")))
    assert seen["x-forwarded-for"] == "127.0.0.1"


async def test_x_forwarded_for_is_appended_to_an_existing_one(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        seen = headers_seen(await c.request(get("/", headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1"})))
    assert seen["x-forwarded-for"] == "203.0.113.7, 10.0.0.1, 127.0.0.1"


async def test_x_forwarded_proto_is_http_when_absent_and_kept_when_present(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        absent = headers_seen(await c.request(get("/")))
        present = headers_seen(await c.request(get("/", headers={"X-Forwarded-Proto": "https"})))
    assert absent["x-forwarded-proto"] == "http"
    assert present["x-forwarded-proto"] == "https"


async def test_the_client_host_header_is_preserved_by_default(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        seen = headers_seen(await c.request(get("/", host="models.example:8443")))
    assert seen["host"] == "models.example:8443"


async def test_preserve_host_false_sends_the_upstream_authority(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url, preserve_host=False))
    async with await RawClient.connect(sc.proxy_port) as c:
        seen = headers_seen(await c.request(get("/", host="models.example")))
    assert seen["host"] == f"127.0.0.1:{upstream.port}"


async def test_an_http_1_0_request_without_host_gets_the_upstream_authority(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        seen = headers_seen(await c.request(b"GET /nohost HTTP/1.0\r\n\r\n"))
    assert seen["host"] == f"127.0.0.1:{upstream.port}"


async def test_an_http_1_1_request_without_host_is_refused(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"GET / HTTP/1.1\r\n\r\n")
    assert r.status == 400 and r.header("x-mlchaos-error") == "1"


async def test_duplicate_request_headers_reach_the_upstream_in_order(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        req = await conn.read_request()
        await conn.send(http_response(200, orjson.dumps(req.headers)))

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"GET / HTTP/1.1\r\nX-Dup: 1\r\nHost: t\r\nX-Dup: 2\r\nAccept: a/b\r\n\r\n")
    seen = [tuple(h) for h in r.json()]
    assert [v for n, v in seen if n.lower() == "x-dup"] == ["1", "2"]
    assert ("Accept", "a/b") in seen


async def test_repeated_response_headers_such_as_set_cookie_are_all_relayed(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\nSet-Cookie: c=3\r\n"
                        b"Content-Length: 0\r\n\r\n")

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/"))
    assert [v for n, v in r.headers if n.lower() == "set-cookie"] == ["a=1", "b=2; Path=/", "c=3"]


# --- request targets ----------------------------------------------------------------------------------


async def test_an_absolute_form_target_goes_to_the_policy_upstream_with_its_path(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r1 = await c.request(b"GET http://evil.example/x?y=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        r2 = await c.request(b"GET http://evil.example HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert r1.status == 200 and r1.json()["path"] == "/x?y=1"
    assert r2.status == 200 and r2.json()["path"] == "/"


async def test_the_request_target_reaches_the_upstream_byte_for_byte(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        while True:
            req = await conn.read_request()
            await conn.send(http_response(200, f"{req.method} {req.target}".encode()))

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r1 = await c.request(b"GET /a%2Fb/../c//d?q=%20+x&z&=;k HTTP/1.1\r\nHost: t\r\n\r\n")
        r2 = await c.request(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r1.body == b"GET /a%2Fb/../c//d?q=%20+x&z&=;k"  # not normalised, not decoded
    assert r2.body == b"OPTIONS *"


async def test_connect_is_refused_with_400(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n")
        assert r.status == 400
        assert r.header("x-mlchaos-error") == "1" and r.json()["source"] == "mlchaos"
        assert await c.closed_by_peer()
    assert errors_total(sc, "malformed_request") == 1


async def test_an_upgrade_request_is_not_tunnelled_and_its_headers_are_not_forwarded(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                "Sec-WebSocket-Version": "13"}))
    assert r.status != 101
    if r.status == 200:
        seen = headers_seen(r)
        assert "upgrade" not in seen and "connection" not in seen


async def test_an_upgrade_request_gets_exactly_one_response(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        first = await c.request(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        assert first.status != 101
        try:
            extra = await c.read_to_eof(timeout=0.3)  # the proxy may close the connection after it...
        except TimeoutError:
            extra = b""  # ...or keep it open, but must send nothing unasked
    assert extra == b""


async def test_curl_http2_upgrade_attempts_get_their_own_answers(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    base = f"http://127.0.0.1:{sc.proxy_port}"
    # curl --http2 on http:// asks for h2c with Connection: Upgrade, HTTP2-Settings on each request.
    out = await _curl("--http2", "--write-out", "\n%{http_code}\n", f"{base}/a", f"{base}/b")
    assert out.returncode == 0, out.stderr
    codes = [line for line in out.stdout.splitlines() if line.isdigit()]
    assert codes == ["200", "200"], out.stdout
    assert '"path": "/b"' in out.stdout


# --- bodiless responses -------------------------------------------------------------------------------


async def test_a_head_request_gets_headers_only_and_the_connection_stays_usable(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        h = await c.request(get("/head", method="HEAD"), head=True)
        assert h.status == 200 and not h.closes
        r = await c.request(get("/after-head"))
        assert r.status == 200 and r.json()["path"] == "/after-head"
        h2 = await c.request(get("/head2", method="HEAD"), head=True)
        assert h2.status == 200
        assert (await c.request(get("/last"))).json()["path"] == "/last"


async def test_a_pipelined_head_then_get_get_the_right_responses(upstream, start_sidecar):
    sc = await start_sidecar(policy_from(upstream.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        await c.send(get("/h", method="HEAD") + get("/g") + get("/h2", method="HEAD") + get("/g2"))
        h = await c.response(head=True)
        g = await c.response()
        h2 = await c.response(head=True)
        g2 = await c.response()
    assert (h.status, h2.status) == (200, 200)
    assert (g.json()["path"], g2.json()["path"]) == ("/g", "/g2")


async def test_a_head_request_to_a_chunked_resource_has_no_body(start_upstream, start_sidecar):
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method != "HEAD":
            await resp.write(b"x" * 100)
        await resp.write_eof()
        return resp

    up = await start_upstream({"/big": big})
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        h = await c.request(get("/big", method="HEAD"), head=True)
        assert h.status == 200
        r = await c.request(get("/plain"))
        assert r.status == 200 and r.json()["path"] == "/plain"


async def test_204_and_304_responses_have_no_body_and_keep_the_connection(start_upstream, start_sidecar):
    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"x-kind": "204"})

    async def not_modified(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"v1"'})

    up = await start_upstream({"/204": no_content, "/304": not_modified})
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r204 = await c.request(get("/204"))
        r304 = await c.request(get("/304", headers={"If-None-Match": '"v1"'}))
        after = await c.request(get("/after"))
    assert r204.status == 204 and r204.header("x-kind") == "204"
    assert r204.header("transfer-encoding") is None
    assert r304.status == 304 and r304.header("etag") == '"v1"'
    assert r304.header("transfer-encoding") is None
    assert after.status == 200 and after.json()["path"] == "/after"


async def test_204_and_304_are_relayed_through_aiohttp(start_upstream, start_sidecar):
    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    up = await start_upstream({"/s/{code}": status})
    sc = await start_sidecar(policy_from(up.url))
    async with aiohttp.ClientSession() as s:
        got: list[Any] = []
        for code in (204, 304, 200, 204):
            async with s.get(f"http://127.0.0.1:{sc.proxy_port}/s/{code}") as r:
                got.append((r.status, await r.read()))
    assert got == [(204, b""), (304, b""), (200, b""), (204, b"")]


async def test_an_upstream_100_continue_is_not_relayed_without_expect(raw_upstream, start_sidecar):
    async def script(conn: RawConn) -> None:
        await read_request(conn.reader)
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n" + http_response(200, b"final"))

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        r = await c.request(get("/", method="POST", body=b"abc"))
    assert r.status == 200 and r.body == b"final"


@pytest.mark.parametrize("split", ["whole", "byte by byte"])
async def test_the_upstream_head_is_relayed_as_sent_after_an_interim_response(raw_upstream, start_sidecar, split):
    head = (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nX-B:   spaced value \t\r\nx-a: 1\r\nConnection: keep-alive, X-B\r\n"
            b"Content-Length: 2\r\n\r\nok")

    async def script(conn: RawConn) -> None:
        for _ in range(2):
            await conn.read_request()
            if split == "whole":
                await conn.send(head)
            else:
                for i in range(len(head)):
                    await conn.send(head[i:i + 1])

    up = await raw_upstream(script)
    sc = await start_sidecar(policy_from(up.url))
    async with await RawClient.connect(sc.proxy_port) as c:
        for _ in range(2):  # the second on the pooled connection: nothing of the first head is left over
            r = await c.request(get("/"))
            assert (r.status, r.body) == (201, b"ok")
            assert r.header("x-a") == "1" and r.header("link") is None
            assert r.header("x-b") is None  # named by Connection: hop-by-hop
            assert [n.lower() for n, _ in r.headers][:2] == ["x-a", "content-length"]
    assert len(up.requests) == 2
