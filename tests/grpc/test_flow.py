"""Messages larger than every HTTP/2 window on the way (the client's 64 KiB, the edge's 1 MiB a stream) pass whole
and in order: the edge sends only what the peer's windows allow and gives back what it has relayed."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("grpc")

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
