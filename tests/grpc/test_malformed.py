"""What is not gRPC over HTTP/2 gets a clear error, is counted, and the listener goes on serving: bytes that are
not an HTTP/2 preface, frames that break the protocol, header blocks that are not HPACK, a message over the
limit, a client that vanishes mid-call. Raw sockets on loopback; a real grpc.aio call after each."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import hpack
import pytest

pytest.importorskip("grpc")

from proxy.edges.grpc.h2.connection import PREFACE, frame

from .conftest import UpstreamServer, grpc

aio = grpc.aio
GOAWAY, HEADERS, DATA, SETTINGS = 7, 1, 0, 4
PROTOCOL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR = 1, 6, 9


async def frames_until_close(reader: asyncio.StreamReader, seconds: float = 3.0) -> list[tuple[int, int, bytes]]:
    """(type, stream id, payload) of each frame the listener sent until it closed the connection."""
    out: list[tuple[int, int, bytes]] = []
    async with asyncio.timeout(seconds):
        while True:
            try:
                head = await reader.readexactly(9)
            except asyncio.IncompleteReadError:
                return out
            length = int.from_bytes(head[:3])
            out.append((head[3], int.from_bytes(head[5:9]) & 0x7FFFFFFF, await reader.readexactly(length)))


def goaway_code(frames: list[tuple[int, int, bytes]]) -> int:
    (payload,) = [p for kind, _sid, p in frames if kind == GOAWAY]
    return struct.unpack(">L", payload[4:8])[0]


async def still_serves(port: int, channel_to: Callable[[int], Any]) -> None:
    assert await channel_to(port).unary_unary("/test.Echo/Unary")(b"ok", timeout=5) == b"ko"


def call_headers(path: bytes = b"/test.Echo/Unary") -> bytes:
    return hpack.Encoder().encode([(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                                   (b":authority", b"x"), (b"content-type", b"application/grpc"),
                                   (b"te", b"trailers")])


@pytest.mark.parametrize(("sent", "code"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", PROTOCOL_ERROR),                                # HTTP/1.1, not h2c
    (PREFACE + frame(SETTINGS, 0, 0, b"\x00\x04"), FRAME_SIZE_ERROR),                    # SETTINGS of 2 bytes
    (PREFACE + b"\x10\x00\x01" + bytes((DATA, 0)) + b"\x00\x00\x00\x01", FRAME_SIZE_ERROR),  # a 1 MiB+1 frame
    (PREFACE + frame(HEADERS, 0x4, 1, b"\xbf\x00"), COMPRESSION_ERROR),                  # index 62: empty table
    (PREFACE + frame(HEADERS, 0x4, 2, call_headers()), PROTOCOL_ERROR),                  # a client's even id
    (PREFACE + frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),                                 # DATA on stream 0
])
async def test_protocol_errors_end_the_connection_with_goaway_and_are_counted(
        grpc_upstream: UpstreamServer, grpc_sidecar: Any, channel_to: Callable[[int], Any], sent: bytes,
        code: int) -> None:
    sc = await grpc_sidecar(grpc_upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", sc.grpc_port)
    writer.write(sent)
    await writer.drain()
    frames = await frames_until_close(reader)
    writer.close()
    assert goaway_code(frames) == code
    assert sc.metrics.errors["malformed_request"].value == 1
    assert grpc_upstream.seen.calls == 0
    await still_serves(sc.grpc_port, channel_to)


async def test_a_message_over_the_limit_is_resource_exhausted(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                                              channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(grpc_upstream, limits={"max_body_bytes": 1024, "inspect_body_bytes": 1024})
    infer = channel_to(sc.grpc_port).unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(aio.AioRpcError) as info:
        await infer(b"x" * 5000, timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over 1024 bytes" in (info.value.details() or "")
    assert sc.metrics.errors["body_too_large"].value == 1
    assert grpc_upstream.seen.calls == 0
    assert await infer(b"x" * 100, timeout=5) == b"x" * 100  # the next call on the same channel goes through


async def test_a_client_that_vanishes_mid_call_ends_the_call_upstream(
        grpc_upstream: UpstreamServer, grpc_sidecar: Any, channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(grpc_upstream)
    _reader, writer = await asyncio.open_connection("127.0.0.1", sc.grpc_port)
    message = b"\x00" + struct.pack(">L", 2) + b"hi"
    writer.write(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, 0x4, 1, call_headers(b"/test.Echo/Bidi"))
                 + frame(DATA, 0, 1, message))
    await writer.drain()
    for _ in range(100):  # the upstream got the message: the call is open end to end
        if grpc_upstream.seen.requests == [b"hi"]:
            break
        await asyncio.sleep(0.02)
    assert grpc_upstream.seen.requests == [b"hi"]
    writer.transport.abort()  # gone without a word
    for _ in range(100):
        if grpc_upstream.seen.ended and sc.metrics.errors["client_disconnect"].value:
            break
        await asyncio.sleep(0.02)
    assert grpc_upstream.seen.ended
    assert sc.metrics.errors["client_disconnect"].value == 1
    await still_serves(sc.grpc_port, channel_to)


async def test_an_upstream_that_is_not_http2_is_unavailable_and_ours(grpc_sidecar: Any,
                                                                     channel_to: Callable[[int], Any]) -> None:
    """An HTTP/1.1 server where the gRPC upstream should be: the call is UNAVAILABLE, marked as the proxy's."""

    async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http1, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    class Up:
        address = f"127.0.0.1:{port}"

    try:
        sc = await grpc_sidecar(Up())
        with pytest.raises(aio.AioRpcError) as info:
            await channel_to(sc.grpc_port).unary_unary("/test.Echo/Unary")(b"x", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "broke HTTP/2" in (info.value.details() or "")
        assert ("x-mlchaos-error", "upstream") in tuple(info.value.trailing_metadata())
        assert sc.metrics.errors["upstream_bad_response"].value == 1
    finally:
        server.close()
