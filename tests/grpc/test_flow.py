"""Messages larger than every HTTP/2 window on the way (the client's 64 KiB, the edge's 1 MiB a stream) pass whole
and in order: the edge sends only what the peer's windows allow and gives back what it has relayed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Callable
from typing import Any

import hpack
import pytest

pytest.importorskip("grpc")

from proxy.edges.grpc.h2.connection import PREFACE, frame

from .conftest import UpstreamServer

BIG = 3 * 1024 * 1024 + 17  # under grpc's 4 MiB message limit, over three of the edge's stream windows


@pytest.mark.parametrize("method", ["/test.Echo/Unary", "/inference.GRPCInferenceService/ModelInfer"])
async def test_a_large_unary_message_both_ways(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                               channel_to: Callable[[int], Any], method: str) -> None:
    """Relayed as it comes (Unary) and held whole for the faults (ModelInfer)."""
    sc = await grpc_sidecar(grpc_upstream)
    message = os.urandom(BIG)
    for _ in range(3):  # the connection's windows are given back between calls too
        assert await channel_to(sc.grpc_port).unary_unary(method)(message, timeout=20) == message[::-1]
    assert grpc_upstream.seen.requests == [message]


async def test_many_large_messages_on_one_stream(grpc_upstream: UpstreamServer, grpc_sidecar: Any,
                                                 channel_to: Callable[[int], Any]) -> None:
    sc = await grpc_sidecar(grpc_upstream)
    words = [os.urandom(300_000) for _ in range(12)]  # 3.6 MB each way on one stream
    call = channel_to(sc.grpc_port).stream_stream("/test.Echo/Bidi")(iter(words), timeout=20)
    answers = [m async for m in call]
    assert answers == [w.upper() for w in words]
    assert grpc_upstream.seen.requests == words


async def test_an_answer_the_client_window_holds_back_ends_when_the_window_opens(
        grpc_upstream: UpstreamServer, grpc_sidecar: Any) -> None:
    """A client that lets 1,000 bytes in at a time: the answer's rest and its trailers wait in the edge for
    the client's WINDOW_UPDATE, after the upstream has finished the call, and then arrive."""
    sc = await grpc_sidecar(grpc_upstream)
    reader, writer = await asyncio.open_connection("127.0.0.1", sc.grpc_port)
    headers = hpack.Encoder().encode([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/test.Echo/Unary"),
                                      (b":authority", b"x"), (b"content-type", b"application/grpc"),
                                      (b"te", b"trailers")])
    message = os.urandom(5000)
    settings = struct.pack(">HL", 4, 1000)  # SETTINGS_INITIAL_WINDOW_SIZE
    writer.write(PREFACE + frame(4, 0, 0, settings) + frame(1, 0x4, 1, headers)
                 + frame(0, 0x1, 1, b"\x00" + struct.pack(">L", len(message)) + message))
    await writer.drain()
    got = bytearray()

    async def read_until_end(seconds: float) -> bool:
        """DATA of stream 1 into ``got`` until its END_STREAM HEADERS (True) or ``seconds`` (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    head = await reader.readexactly(9)
                    payload = await reader.readexactly(int.from_bytes(head[:3]))
                    if int.from_bytes(head[5:9]) != 1:
                        continue
                    if head[3] == 0:
                        got.extend(payload)
                    elif head[3] == 1 and head[4] & 0x1:
                        return True
        return False

    assert not await read_until_end(1.0)
    assert len(got) == 1000  # the window's worth, then nothing until it opens
    writer.write(frame(8, 0, 1, struct.pack(">L", 10_000)) + frame(8, 0, 0, struct.pack(">L", 10_000)))
    await writer.drain()
    assert await read_until_end(5.0)
    assert bytes(got) == b"\x00" + struct.pack(">L", len(message)) + message[::-1]
    writer.close()
